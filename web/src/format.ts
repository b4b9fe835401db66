// Formatting and parsing of money, prices, energy and time. Every amount on the page goes through
// here, so that no raw base-unit integer ever reaches the screen.
//
// Units (contracts/README.md): energy in Wh; prices in credit base units (1e-18 credit) per kWh;
// money in credit base units; time in unix seconds.

import { InputError, must, parseFixed } from './input';

export const CREDIT_DECIMALS = 18;

function groupThousands(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Decimal string of a fixed-point integer `value / 10^decimals`, with `minFrac`..`maxFrac` decimals,
 *  thousands grouped. Rounds half away from zero at `maxFrac`. */
export function formatFixed(value: bigint, decimals: number, minFrac: number, maxFrac: number): string {
  const negative = value < 0n;
  let v = negative ? -value : value;
  if (maxFrac < decimals) {
    const drop = 10n ** BigInt(decimals - maxFrac);
    v = (v + drop / 2n) / drop;
    decimals = maxFrac;
  }
  const base = 10n ** BigInt(decimals);
  const whole = v / base;
  let frac = decimals > 0 ? (v % base).toString().padStart(decimals, '0') : '';
  while (frac.length > minFrac && frac.endsWith('0')) frac = frac.slice(0, -1);
  const text = groupThousands(whole.toString()) + (frac ? `.${frac}` : '');
  return negative && v !== 0n ? `−${text}` : text;
}

/** Decimals every credit amount is shown with, on every part of the page (balances, locks, bills,
 *  notices, error sentences). Why 6: energy is counted in whole Wh and prices lie on the registry's tick
 *  of 0.001 credits/kWh, so every amount the market moves (a trade, a grid charge, a lock, a refund) is a
 *  whole multiple of 1 Wh × 0.001 credits/kWh = 0.000001 credits. Six decimals show each of them exactly,
 *  so a bill is correct to the last shown digit and two figures that differ never look equal; fewer
 *  decimals would round bills (0.0585 at 3 decimals reads 0.059), more would only add zeros. Amounts
 *  typed by the user are limited to the same 6 decimals ({@link parseCredits}). */
export const CREDIT_SHOWN_DECIMALS = 6;

/** The one formatter of credit amounts: always {@link CREDIT_SHOWN_DECIMALS} decimals, thousands
 *  grouped, e.g. "1,000.000000 credits", "0.058500 credits". An amount finer than the last decimal (only
 *  possible for tokens moved outside the market) is rounded half away from zero. */
export function formatCredits(base: bigint, opts: { sign?: boolean; unit?: boolean } = {}): string {
  let text = formatFixed(base, CREDIT_DECIMALS, CREDIT_SHOWN_DECIMALS, CREDIT_SHOWN_DECIMALS);
  if (opts.sign && base > 0n) text = `+${text}`;
  return opts.unit === false ? text : `${text} credits`;
}

/** Number of decimals needed to show every price on a tick of `tick` base units per kWh. */
export function priceDecimals(tick: bigint): number {
  let d = CREDIT_DECIMALS;
  let t = tick;
  while (d > 0 && t % 10n === 0n) {
    t /= 10n;
    d -= 1;
  }
  return d;
}

/** A price per kWh, e.g. "0.150 credits/kWh". */
export function formatPrice(basePerKWh: bigint, tick: bigint, unit = true): string {
  const d = Math.max(2, priceDecimals(tick));
  const text = formatFixed(basePerKWh, CREDIT_DECIMALS, d, d);
  return unit ? `${text} credits/kWh` : text;
}

/** Energy: "850 Wh", "9,999 Wh", "12.50 kWh" (kWh from 10,000 Wh on). */
export function formatEnergy(wh: bigint | number, opts: { sign?: boolean } = {}): string {
  const v = BigInt(wh);
  const abs = v < 0n ? -v : v;
  let text: string;
  if (abs < 10_000n) text = `${formatFixed(v, 0, 0, 0)} Wh`;
  else text = `${formatFixed(v, 3, 2, 2)} kWh`;
  if (opts.sign && v > 0n) text = `+${text}`;
  return text;
}

/** Parses a decimal credit amount typed by the user ("12.5") into base units (input.ts rules:
 *  required, a point for decimals, a comma refused, never reinterpreted). */
export function parseCredits(text: string, what = 'amount'): bigint {
  return must(parseFixed(text, CREDIT_SHOWN_DECIMALS, what)) * 10n ** BigInt(CREDIT_DECIMALS - CREDIT_SHOWN_DECIMALS);
}

/** Like {@link parseCredits}, but refuses zero (a deposit, withdrawal or mint of 0 does nothing). */
export function parsePositiveCredits(text: string, what = 'amount'): bigint {
  const v = parseCredits(text, what);
  if (v === 0n) throw new InputError(`The ${what} must be more than zero.`);
  return v;
}

/** Parses a decimal string with at most `decimals` fraction digits. Throws a sentence on bad input. */
export function parseDecimal(text: string, decimals: number, what: string): bigint {
  return must(parseFixed(text, decimals, what));
}

/** Parses a price in credits per kWh and checks it against the slot's range and tick. */
export function parsePrice(text: string, tick: bigint, feedIn: bigint, retail: bigint): bigint {
  const price = parseDecimal(text, CREDIT_DECIMALS, 'price');
  if (price < feedIn || price > retail) {
    throw new InputError(
      `The price must lie between the feed-in tariff ${formatPrice(feedIn, tick)} and the retail price ${formatPrice(retail, tick)}.`,
    );
  }
  if ((price - feedIn) % tick !== 0n) {
    throw new InputError(`The price must be a multiple of the price step ${formatPrice(tick, tick)}.`);
  }
  return price;
}

/** Parses an energy amount in Wh (whole number, 1 .. 4,294,967,295). */
export function parseEnergyWh(text: string): bigint {
  const r = parseFixed(text, 0, 'energy');
  if (!r.ok) {
    throw new InputError(/more than 0 decimals|whole number/.test(r.error) ? `The energy "${text.trim()}" must be a whole number of Wh.` : r.error);
  }
  const v = r.value;
  if (v === 0n) throw new InputError('The energy must be at least 1 Wh.');
  if (v > 0xffffffffn) throw new InputError('The energy is too large for one order (at most 4,294,967,295 Wh).');
  return v;
}

/** Cost of `energyWh` at `basePerKWh` in credit base units (exact: prices are multiples of 1000). */
export function costOf(energyWh: bigint, basePerKWh: bigint): bigint {
  return (energyWh * basePerKWh) / 1000n;
}

/** "1 m 05 s", "42 s", "2 h 03 m". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, '0')} s`;
  const h = Math.floor(s / 3600);
  return `${h} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} m`;
}

/** Local wall-clock time of a unix timestamp: "14:05:30". */
export function formatClock(unix: bigint | number): string {
  const d = new Date(Number(unix) * 1000);
  return d.toLocaleTimeString('en-GB', { hour12: false });
}

/** Local date and time of a unix timestamp: "25 Nov, 14:05:30". */
export function formatDateTime(unix: bigint | number): string {
  const d = new Date(Number(unix) * 1000);
  return `${d.toLocaleDateString('en-GB', { day: 'numeric', month: 'short' })}, ${formatClock(unix)}`;
}

/** "0xf39F…2266". */
export function shortAddress(address: string): string {
  return `${address.slice(0, 6)}…${address.slice(-4)}`;
}
