// Market arithmetic on the page: the slot schedule, the aggregated order book, the escrow an order
// locks, and a participant's settlement broken down into trade and grid flows. Every rule here
// mirrors contracts/README.md and the contracts' code (Auction.sol, Settlement.sol).

import { costOf } from './format';

export interface Schedule {
  startTime: bigint;
  slotLength: bigint;
  gateClosure: bigint;
  gracePeriod: bigint;
}

export const slotStart = (s: Schedule, slot: bigint): bigint => s.startTime + slot * s.slotLength;
export const slotEnd = (s: Schedule, slot: bigint): bigint => slotStart(s, slot) + s.slotLength;
export const gateClosureTime = (s: Schedule, slot: bigint): bigint => {
  const start = slotStart(s, slot);
  return start > s.gateClosure ? start - s.gateClosure : 0n;
};
export const settlementOpensAt = (s: Schedule, slot: bigint): bigint => slotEnd(s, slot) + s.gracePeriod;

/** The slot containing unix time `now` (slot 0 for times before the start). */
export function slotAt(s: Schedule, now: bigint): bigint {
  return now < s.startTime ? 0n : (now - s.startTime) / s.slotLength;
}

/** The first slot that still takes orders at `now`: the contract refuses an order when
 *  `block.timestamp + gateClosure >= slotStart(slot)`. */
export function firstOpenSlot(s: Schedule, now: bigint): bigint {
  const t = now + s.gateClosure;
  if (t < s.startTime) return 0n;
  return (t - s.startTime) / s.slotLength + 1n;
}

export type Phase = 'open' | 'gate-closed' | 'delivery' | 'grace' | 'settlement';

/** Where `slot` stands at unix time `now`. */
export function phaseOf(s: Schedule, slot: bigint, now: bigint): Phase {
  if (now + s.gateClosure < slotStart(s, slot)) return 'open';
  if (now < slotStart(s, slot)) return 'gate-closed';
  if (now < slotEnd(s, slot)) return 'delivery';
  if (now < settlementOpensAt(s, slot)) return 'grace';
  return 'settlement';
}

export interface Level {
  level: number;
  pricePerKWh: bigint;
  bidWh: bigint;
  askWh: bigint;
}

/** Indices of the set bits of a slot's `activeLevels` bitmap, lowest first. */
export function activeLevels(bitmap: bigint): number[] {
  const out: number[] = [];
  for (let l = 0; bitmap >> BigInt(l) !== 0n && l < 256; l++) {
    if ((bitmap >> BigInt(l)) & 1n) out.push(l);
  }
  return out;
}

/** Price of level `l` in a slot with feed-in `feedIn`, on tick `tick` (base units per kWh). */
export const levelPrice = (feedIn: bigint, tick: bigint, level: number): bigint => feedIn + BigInt(level) * tick;

export interface Clearing {
  clearedWh: bigint;
  /** Bid marginal level `mb` and ask marginal level `ma`; meaningful when clearedWh > 0. */
  bidMarginal: number;
  askMarginal: number;
  /** The market-clearing interval [lo, hi] (levels): lo = max(ma, highest level with rejected bid
   *  volume), hi = min(mb, lowest level with rejected ask volume); meaningful when clearedWh > 0. */
  lowLevel: number;
  highLevel: number;
  /** The uniform price level: k = 1/2 of the interval rounded down, lo + floor((hi - lo) / 2). */
  priceLevel: number;
}

/** The clearing the contract would compute for these levels (Auction._computeClearing):
 *  Q = max_l min(D(l), S(l)); mb = max{l : D(l) >= Q}; ma = min{l : S(l) >= Q}; the price is the point
 *  k = 1/2 of the market-clearing interval (Auction._priceLevel), so no rejected bid lies above it and
 *  no rejected ask below it. */
export function computeClearing(levels: Level[]): Clearing {
  const sorted = [...levels].sort((a, b) => a.level - b.level);
  const none = { clearedWh: 0n, bidMarginal: 0, askMarginal: 0, lowLevel: 0, highLevel: 0, priceLevel: 0 };
  if (sorted.length === 0) return none;
  const totalBid = sorted.reduce((a, l) => a + l.bidWh, 0n);
  let q = 0n;
  let supply = 0n;
  let demand = totalBid;
  for (const l of sorted) {
    supply += l.askWh;
    const m = supply < demand ? supply : demand;
    if (m > q) q = m;
    demand -= l.bidWh;
  }
  if (q === 0n) return none;
  let ma = -1;
  let mb = 0;
  let askFill = 0n; // matched energy at the ask marginal level
  let askVolume = 0n;
  let bidFill = 0n; // matched energy at the bid marginal level: Q minus the bids above it
  let bidVolume = 0n;
  supply = 0n;
  demand = totalBid;
  for (const l of sorted) {
    supply += l.askWh;
    if (ma < 0 && supply >= q) {
      ma = l.level;
      askFill = q - (supply - l.askWh);
      askVolume = l.askWh;
    }
    if (demand >= q) {
      mb = l.level;
      bidFill = q - (demand - l.bidWh);
      bidVolume = l.bidWh;
    } else break;
    demand -= l.bidWh;
  }
  // A rationed marginal level (fill < volume) has rejected volume at that level and pins the price;
  // otherwise the nearest rejected orders between the marginal levels narrow [ma, mb].
  const between = sorted.filter((l) => l.level > ma && l.level < mb);
  let lo = ma;
  let hi = mb;
  if (bidFill < bidVolume) lo = mb;
  else for (const l of between) if (l.bidWh > 0n) lo = l.level; // ascending: the highest wins
  if (askFill < askVolume) hi = ma;
  else {
    const firstAsk = between.find((l) => l.askWh > 0n);
    if (firstAsk) hi = firstAsk.level;
  }
  return {
    clearedWh: q,
    bidMarginal: mb,
    askMarginal: ma,
    lowLevel: lo,
    highLevel: hi,
    priceLevel: lo + Math.floor((hi - lo) / 2),
  };
}

export interface BookRow {
  pricePerKWh: bigint;
  energyWh: bigint;
  /** Bids: energy wanted at this price or higher. Asks: energy offered at this price or lower. */
  cumulativeWh: bigint;
}

/** Bids from the highest price down and asks from the lowest up, with cumulative energy. */
export function bookSides(levels: Level[]): { bids: BookRow[]; asks: BookRow[] } {
  const bids: BookRow[] = [];
  const asks: BookRow[] = [];
  let cum = 0n;
  for (const l of [...levels].sort((a, b) => b.level - a.level)) {
    if (l.bidWh === 0n) continue;
    cum += l.bidWh;
    bids.push({ pricePerKWh: l.pricePerKWh, energyWh: l.bidWh, cumulativeWh: cum });
  }
  cum = 0n;
  for (const l of [...levels].sort((a, b) => a.level - b.level)) {
    if (l.askWh === 0n) continue;
    cum += l.askWh;
    asks.push({ pricePerKWh: l.pricePerKWh, energyWh: l.askWh, cumulativeWh: cum });
  }
  return { bids, asks };
}

export type Side = 'bid' | 'ask';

/** A slot's imbalance premiums, credit base units per kWh (issue 14): energy sold but not delivered
 *  is bought at retail plus `shortPremiumPerKWh`; energy bought but not used goes back at feed-in
 *  less `longPenaltyPerKWh`. */
export interface Premiums {
  shortPremiumPerKWh: bigint;
  longPenaltyPerKWh: bigint;
}

/** No premiums (a slot whose terms are not known). */
export const NO_PREMIUMS: Premiums = { shortPremiumPerKWh: 0n, longPenaltyPerKWh: 0n };

/** Credits an order locks, its worst case: a bid escrows its maximum cost plus the long imbalance
 *  penalty (all of it unused); an ask locks what buying all of it at retail plus the short premium
 *  costs beyond its limit price (none of it delivered). */
export function lockFor(side: Side, energyWh: bigint, pricePerKWh: bigint, retailPerKWh: bigint, premiums: Premiums): bigint {
  return side === 'bid'
    ? costOf(energyWh, pricePerKWh + premiums.longPenaltyPerKWh)
    : costOf(energyWh, retailPerKWh + premiums.shortPremiumPerKWh - pricePerKWh);
}

export interface SettlementEvent {
  slot: bigint;
  boughtWh: bigint;
  soldWh: bigint;
  importWh: bigint;
  exportWh: bigint;
  credited: bigint;
  debited: bigint;
}

export interface SlotPrices {
  retailPerKWh: bigint;
  feedInPerKWh: bigint;
  clearingPerKWh: bigint;
}

export interface OwnPrices {
  bidPricePerKWh: bigint;
  askPricePerKWh: bigint;
}

export interface Bill {
  /** What the trades cost and earned. */
  tradeCost: bigint;
  tradeRevenue: bigint;
  /** Energy bought from the grid: used more than bought (at retail), or delivered less than sold
   *  (at retail plus the short premium). */
  fromGridWh: bigint;
  /** What the grid charged: the energy above, and the long penalty on energy bought but not used. */
  gridCharge: bigint;
  /** Imbalance premiums and penalties within `gridCharge`. */
  imbalanceCharge: bigint;
  /** Energy sold to the grid at feed-in: bought but not used, or delivered more than sold. */
  toGridWh: bigint;
  gridPayout: bigint;
  /** Net amount paid in this slot (negative: earned). Escrow released is not income. */
  net: bigint;
  /** Escrow released back to the free balance at settlement. */
  released: bigint;
  /** The same energy with the grid alone: imports at retail, exports at feed-in. */
  gridOnly: bigint;
  /** gridOnly − net: positive when the market saved money. */
  savings: bigint;
  /** Whether the breakdown reproduces the contract's own credited/debited amounts. */
  consistent: boolean;
}

const max0 = (x: bigint): bigint => (x > 0n ? x : 0n);

/** Breaks a `ParticipantSettled` event down into trade and grid flows (contracts/README.md,
 *  "Settlement"); `premiums` are those the position's orders locked (`positionOf`). */
export function billOf(
  ev: SettlementEvent,
  prices: SlotPrices,
  own: OwnPrices,
  payAsBid: boolean,
  premiums: Premiums,
): Bill {
  const { boughtWh: b, soldWh: s, importWh: i, exportWh: e } = ev;
  const tradeCost = costOf(b, payAsBid ? own.bidPricePerKWh : prices.clearingPerKWh);
  const tradeRevenue = costOf(s, payAsBid ? own.askPricePerKWh : prices.clearingPerKWh);
  const fromGridWh = max0(i - b) + max0(s - e);
  const toGridWh = max0(b - i) + max0(e - s);
  const imbalanceCharge =
    costOf(max0(s - e), premiums.shortPremiumPerKWh) + costOf(max0(b - i), premiums.longPenaltyPerKWh);
  const gridCharge = costOf(fromGridWh, prices.retailPerKWh) + imbalanceCharge;
  const gridPayout = costOf(toGridWh, prices.feedInPerKWh);
  const net = tradeCost + gridCharge - tradeRevenue - gridPayout;
  const released = ev.credited - tradeRevenue - gridPayout;
  const gridOnly = costOf(i, prices.retailPerKWh) - costOf(e, prices.feedInPerKWh);
  return {
    tradeCost,
    tradeRevenue,
    fromGridWh,
    gridCharge,
    imbalanceCharge,
    toGridWh,
    gridPayout,
    net,
    released,
    gridOnly,
    savings: gridOnly - net,
    consistent: ev.debited === tradeCost + gridCharge && released >= 0n,
  };
}

/** Whether an order for `slot` is within the order horizon `horizon` (seconds) at `now`: the market
 *  refuses an order with `BeyondHorizon` when the slot starts more than `horizon` seconds after the
 *  block's time (Auction._place). */
export const withinHorizon = (s: Schedule, slot: bigint, now: bigint, horizon: bigint): boolean =>
  slotStart(s, slot) <= now + horizon;

/** The last slot an order may be placed for at `now` under `horizon` (may lie before `firstOpenSlot`). */
export function lastSlotWithinHorizon(s: Schedule, now: bigint, horizon: bigint): bigint {
  const t = now + horizon;
  return t < s.startTime ? -1n : (t - s.startTime) / s.slotLength;
}

/** What a slot's bill rests on: the meter readings settlement uses (contracts/src/MeterReadings.sol,
 *  `energyInSlot`). A slot's energy is the change of the meter's counters between its start and end
 *  boundaries, each interpolated linearly between the readings that bracket it, whatever their arrival
 *  order; a slot becomes final `finalityDelay` (the grace period) after its end, and later readings no
 *  longer change it (their energy goes to later slots).
 *  - `no-meter`: the participant had no meter bound in the slot, so settlement counts 0 Wh used and
 *    delivered.
 *  - `expired`: the meter's energy word for the slot was reused (the readings contract keeps a slot's
 *    energy for 4,096 slots, `energyKept`), so settlement counts 0 Wh used and delivered.
 *  - `missing`: no reading inside the slot and none after it (`hasReading` false): settlement counts
 *    0 Wh for the slot; a later reading that arrives before the slot is final is split into it.
 *  - `late`: the slot has a reading, but the meter's newest reading is older than the slot's end: the
 *    end boundary is not bracketed yet, so only the energy up to that reading is in the slot.
 *  - `ok`: a reading at or after the slot's end exists, so both boundaries are fixed. */
export type ReadingsFlag =
  | { kind: 'ok' }
  | { kind: 'no-meter' }
  | { kind: 'expired' }
  | { kind: 'missing'; latestTimestamp?: bigint }
  | { kind: 'late'; latestTimestamp: bigint };

/** Judges a slot's readings (see {@link ReadingsFlag}); `latestTimestamp` is the meter's newest reading
 *  (0 or undefined: none) at the time judged (now before Settle; the settlement's block in a bill);
 *  `kept` is whether the meter still keeps the slot's energy (`energyKept`). */
export function readingsFlag(
  meter: boolean,
  hasReading: boolean,
  latestTimestamp: bigint | undefined,
  slotEndTime: bigint,
  kept = true,
): ReadingsFlag {
  if (!meter) return { kind: 'no-meter' };
  if (!kept) return { kind: 'expired' };
  const latest = latestTimestamp ? latestTimestamp : undefined;
  if (!hasReading) return { kind: 'missing', latestTimestamp: latest };
  if (latest === undefined || latest < slotEndTime) return { kind: 'late', latestTimestamp: latest ?? 0n };
  return { kind: 'ok' };
}
