// Turns whatever went wrong (a contract's custom error, a wallet refusal, a node refusal) into one
// sentence for the page. Custom errors are decoded with the ABIs of all four contracts, because a
// call to one contract can revert with another's error (the market calling the token, say).

import { type Abi, type Hex, decodeErrorResult, isHex, keccak256, toHex } from 'viem';
import { creditTokenAbi, energyMarketAbi, meterReadingsAbi, registryAbi } from './generated/abis';
import { formatCredits, formatDateTime, formatEnergy, formatPrice, shortAddress } from './format';

const errorAbi: Abi = [...energyMarketAbi, ...registryAbi, ...creditTokenAbi, ...meterReadingsAbi].filter(
  (item) => item.type === 'error',
) as Abi;

export interface ErrorContext {
  /** Price tick (credit base units per kWh), for formatting prices. */
  tick: bigint;
  /** The connected account, so that sentences can say "you". */
  account?: string;
  /** The grid operator's account. */
  grid?: string;
}

export interface DecodedRevert {
  name: string;
  args: readonly unknown[];
}

const ROLE_NAMES: Record<string, string> = {
  [keccak256(toHex('OPERATOR_ROLE'))]: 'operator',
  [keccak256(toHex('MINTER_ROLE'))]: 'minter',
  ['0x' + '00'.repeat(32)]: 'admin',
};

/** Decodes revert data with every contract's errors; undefined if unknown. */
export function decodeRevertData(data: Hex): DecodedRevert | undefined {
  try {
    const r = decodeErrorResult({ abi: errorAbi, data });
    return { name: r.errorName, args: (r.args ?? []) as readonly unknown[] };
  } catch {
    return undefined;
  }
}

/** The revert data in an error thrown by viem (or by a provider), if any. */
export function findRevertData(err: unknown): Hex | undefined {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e && typeof e === 'object' && !seen.has(e)) {
    seen.add(e);
    const o = e as Record<string, unknown>;
    if (typeof o.raw === 'string' && isHex(o.raw) && o.raw.length >= 10) return o.raw as Hex;
    const d = o.data;
    if (typeof d === 'string' && isHex(d) && d.length >= 10) return d as Hex;
    if (d && typeof d === 'object') {
      const inner = (d as Record<string, unknown>).data;
      if (typeof inner === 'string' && isHex(inner) && inner.length >= 10) return inner as Hex;
    }
    e = o.cause ?? o.error;
  }
  return undefined;
}

/** The first EIP-1193 / JSON-RPC error code in an error's cause chain. */
export function findErrorCode(err: unknown): number | undefined {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e && typeof e === 'object' && !seen.has(e)) {
    seen.add(e);
    const o = e as Record<string, unknown>;
    if (typeof o.code === 'number' && o.code !== 3) return o.code;
    e = o.cause ?? o.error;
  }
  return undefined;
}

/** Whether the user refused the request in the wallet (EIP-1193 code 4001). */
export const isUserRejection = (err: unknown): boolean => findErrorCode(err) === 4001;

function who(address: unknown, ctx: ErrorContext): string {
  const a = String(address);
  if (ctx.account && a.toLowerCase() === ctx.account.toLowerCase()) return 'Your account';
  if (ctx.grid && a.toLowerCase() === ctx.grid.toLowerCase()) return 'The grid account';
  return `Account ${shortAddress(a)}`;
}

const side = (s: unknown): string => (Number(s) === 0 ? 'bid' : 'ask');

/** A duration in seconds as hours (and minutes), e.g. `24 h` or `1 h 30 min`. */
export const formatHorizon = (x: unknown): string => {
  const secs = Number(x);
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  if (h === 0) return m === 0 ? `${secs} s` : `${m} min`;
  return m === 0 ? `${h} h` : `${h} h ${m} min`;
};

/** Helpers the sentences share: the page's context and the unit formatters. */
interface SentenceKit {
  ctx: ErrorContext;
  price: (x: unknown) => string;
  credits: (x: unknown) => string;
  time: (x: unknown) => string;
}

/** One sentence per custom error of the four contracts, by error name (`errorsentences.test.ts` checks that every error has one). */
const SENTENCES: Record<string, (a: readonly unknown[], k: SentenceKit) => string> = {
  // EnergyMarket
  AlreadyCleared: (a, _k) => {
    return `Slot ${a[0]} has already been cleared.`;
  },
  AlreadySettled: (a, { ctx }) => {
    return `${who(a[1], ctx)} is already settled in slot ${a[0]}.`;
  },
  BeyondHorizon: (a, { time }) => {
    return `Slot ${a[0]} is too far ahead: orders are taken only for slots starting within ${formatHorizon(a[2])} of now, and this one starts at ${time(a[1])}.`;
  },
  BalanceOverflow: (a, { ctx }) => {
    return `${who(a[0], ctx)} would hold more credits than the market can count.`;
  },
  ExceedsCapacity: (a, { ctx }) => {
    return `${who(a[0], ctx)} may ${Number(a[1]) === 0 ? 'buy' : 'sell'} at most ${formatEnergy(BigInt(a[3] as bigint))} per slot (its registered ${Number(a[1]) === 0 ? 'import' : 'export'} power times the slot length); this ${side(a[1])} is for ${formatEnergy(BigInt(a[2] as bigint))}. Lower the amount, or ask the operator to register a larger connection.`;
  },
  GridInDebt: (a, { credits }) => {
    return `Withdrawals wait while the grid account owes ${credits(a[0])} of feed-in it could not pay (the market holds that much less than its accounts' balances). The operator repays it with a deposit for the grid account; try again then.`;
  },
  GateClosed: (a, _k) => {
    return `Orders for slot ${a[0]} are closed: its gate closure has passed, so orders can no longer be placed or cancelled.`;
  },
  GateOpen: (a, _k) => {
    return `Slot ${a[0]} cannot be cleared yet: it still takes orders until its gate closure.`;
  },
  InsufficientBalance: (a, { ctx, credits }) => {
    return ctx.grid && String(a[0]).toLowerCase() === ctx.grid.toLowerCase()
      ? `The grid account has too few credits in the market to pay the feed-in (needs ${credits(a[1])}, has ${credits(a[2])}).`
      : `Not enough free credits in the market account: this needs ${credits(a[1])}, but ${who(a[0], ctx).toLowerCase()} has ${credits(a[2])} free. Deposit more credits first.`;
  },
  InvalidSchedule: (_a, _k) => {
    return 'The contracts were deployed with inconsistent slot schedules.';
  },
  NoOrder: (a, _k) => {
    return `There is no ${side(a[2])} in slot ${a[0]} to cancel.`;
  },
  NoPosition: (a, { ctx }) => {
    return `${who(a[1], ctx)} had neither orders nor a meter in slot ${a[0]}, so there is nothing to settle.`;
  },
  SettlementExpired: (a, { ctx }) => {
    return `Slot ${a[0]} can no longer be settled for ${who(a[1], ctx)}: without orders only until the settlement of the slot 64 slots later has opened, and with orders only for 4,096 slots (a position left unsettled then expires and its locked credits are forfeited).`;
  },
  NotParticipant: (a, { ctx }) => {
    return `${who(a[0], ctx)} is not a registered participant of the market. Ask the operator to register it.`;
  },
  NotProsumer: (a, { ctx }) => {
    return `Only prosumers may sell energy; ${who(a[0], ctx).toLowerCase()} is registered as a consumer.`;
  },
  NotRegistry: (_a, _k) => {
    return 'Only the registry may report role changes to the market.';
  },
  NotRoleListener: (_a, _k) => {
    return 'The registry does not report role changes to this market.';
  },
  SlotAlreadyOpen: (a, _k) => {
    return `Slot ${a[0]} is already open.`;
  },
  LevelWordsInUse: (a, _k) => {
    return `Slot ${a[0]} cannot be opened yet: the market reuses the order-book storage of slot ${a[1]}, which still takes orders. The operator can keep at most 128 slots open ahead.`;
  },
  SlotNotOpen: (a, _k) => {
    return `Slot ${a[0]} is not open for orders yet: the operator opens each slot (and fixes its grid prices) shortly before it. Try again later or choose a nearer slot.`;
  },
  NothingToClear: (a, _k) => {
    return `Slot ${a[0]} has no orders, so there is nothing to clear.`;
  },
  OrderExists: (a, _k) => {
    return `There is already a ${side(a[2])} in slot ${a[0]}. Cancel it first to place a new one.`;
  },
  OutstandingDebt: (a, { ctx, credits }) => {
    return `${who(a[0], ctx)} owes ${credits(a[1])} to the grid. Deposit credits to repay the debt before trading or withdrawing.`;
  },
  PositionSlotBusy: (a, _k) => {
    return `The position in slot ${a[1]} is not settled yet; it must be settled before this slot can be traded (positions are reused every 64 slots).`;
  },
  BindingStillNeeded: (a, { ctx }) => {
    return `The meter change for ${who(a[0], ctx)} is refused: slot ${a[1]}, metered by ${shortAddress(String(a[2]))}, can still be settled for this participant. Settle it in slot ${a[1]} first (anyone can, once the slot's settlement opens), then try again.`;
  },
  SettlementWindowOpen: (a, { time }) => {
    return `Slot ${a[0]} can still be settled until ${time(a[1])}; its storage can be reclaimed only after that.`;
  },
  NothingToReclaim: (a, _k) => {
    return `Slot ${a[0]} has no storage left to reclaim (never opened, or reclaimed already).`;
  },
  PriceNotOnTick: (a, { price }) => {
    return `The price ${price(a[0])} is not a whole number of price steps of ${price(a[1])}.`;
  },
  PriceOutOfRange: (a, { price }) => {
    return `The price ${price(a[0])} is outside this slot's range: from the feed-in tariff ${price(a[1])} to the retail price ${price(a[2])}.`;
  },
  SafeERC20FailedOperation: (_a, _k) => {
    return 'The credit token refused the transfer.';
  },
  SettlementNotOpen: (a, { time }) => {
    return `Slot ${a[0]} can be settled from ${time(a[1])} (the slot's end plus the grace period for late meter readings).`;
  },
  SlotNotCleared: (a, _k) => {
    return `Slot ${a[0]} has not been cleared yet; clear it first.`;
  },
  ZeroAddress: (_a, _k) => {
    return 'An address is missing (zero address).';
  },
  ZeroAmount: (_a, _k) => {
    return 'The amount must be more than zero.';
  },
  ZeroEnergy: (_a, _k) => {
    return 'The energy must be more than zero.';
  },
  // Registry
  AccessControlUnauthorizedAccount: (a, { ctx }) => {
    return `${who(a[0], ctx)} does not hold the ${ROLE_NAMES[String(a[1])] ?? 'required'} role needed for this.`;
  },
  AccessControlBadConfirmation: (_a, _k) => {
    return 'A role can only be renounced by the account itself.';
  },
  AlreadyRegistered: (a, { ctx }) => {
    return `${who(a[0], ctx)} is already registered.`;
  },
  InvalidPriceTick: (a, { price }) => {
    return `The price step ${price(a[0])} is invalid.`;
  },
  InvalidPrices: (a, { price }) => {
    return `The prices are invalid: retail ${price(a[0])} and feed-in ${price(a[1])} must satisfy 0 < retail, feed-in ≤ retail, and differ by a whole number of price steps (at most 255).`;
  },
  InvalidRole: (_a, _k) => {
    return 'Choose a role: consumer or prosumer.';
  },
  MeterAlreadyBound: (a, _k) => {
    return `Meter ${shortAddress(String(a[0]))} is already bound to ${shortAddress(String(a[1]))}.`;
  },
  MeterNotBound: (a, _k) => {
    return `Meter ${shortAddress(String(a[0]))} is not bound to any participant.`;
  },
  NoAdmins: (_a, _k) => {
    return 'At least one admin is needed.';
  },
  NoSlotPrices: (a, _k) => {
    return `Slot ${a[0]} has no time-of-use prices to remove.`;
  },
  NotRegistered: (a, { ctx }) => {
    return `${who(a[0], ctx)} is not a registered participant.`;
  },
  SlotTooLate: (a, _k) => {
    return `Slot ${a[0]} is too far in the future for a meter binding.`;
  },
  ParticipantHasMeter: (a, { ctx }) => {
    return `${who(a[0], ctx)} already has meter ${shortAddress(String(a[1]))}; unbind it first.`;
  },
  RoleListenerAlreadySet: (_a, _k) => {
    return 'The registry already reports to a market.';
  },
  InvalidOrderHorizon: (_a, _k) => {
    return 'The order horizon must be more than zero seconds.';
  },
  InvalidImbalancePrices: (a, { price }) => {
    return `The imbalance prices are invalid: the short premium ${price(a[0])} and the long penalty ${price(a[1])} must each be at least one price step (an imbalance priced at retail or feed-in would cost nothing) and at most 65,535 steps.`;
  },
  PricesOutsideIslandBand: (a, { price }) => {
    return `While the microgrid is islanded, prices must lie within its band: retail ${price(a[0])} must not exceed the value of lost load and feed-in ${price(a[1])} must not be below the price floor.`;
  },
  NotIslanded: (_a, _k) => {
    return 'The microgrid is already connected to the grid.';
  },
  SlotNotDelivered: (a, _k) => {
    return `Slot ${a[0]} has not ended yet; a microgrid report can be made only for a delivered slot.`;
  },
  InvalidMicrogridReport: (_a, _k) => {
    return `The microgrid report is invalid: the storage's state of charge exceeds its capacity.`;
  },
  // CreditToken
  ERC20InsufficientAllowance: (a, { credits }) => {
    return `The market may take only ${credits(a[1])} from your wallet (allowance) but needs ${credits(a[2])}.`;
  },
  ERC20InsufficientBalance: (a, { ctx, credits }) => {
    return `${who(a[0], ctx)} holds ${credits(a[1])} in the wallet, but ${credits(a[2])} are needed.`;
  },
  ERC2612ExpiredSignature: (a, { time }) => {
    return `The permit signature expired at ${time(a[0])}; please sign again.`;
  },
  ERC2612InvalidSigner: (a, _k) => {
    return `The permit was signed by ${shortAddress(String(a[0]))}, not by the owner ${shortAddress(String(a[1]))}.`;
  },
  InvalidAccountNonce: (_a, _k) => {
    return 'The permit signature was already used; please sign again.';
  },
  ECDSAInvalidSignature: (_a, _k) => {
    return 'The signature is not valid.';
  },
  ECDSAInvalidSignatureLength: (a, k) => SENTENCES.ECDSAInvalidSignature(a, k),
  ECDSAInvalidSignatureS: (a, k) => SENTENCES.ECDSAInvalidSignature(a, k),
  ERC20InvalidApprover: (_a, _k) => {
    return 'Credits cannot be moved to or from the zero address.';
  },
  ERC20InvalidReceiver: (a, k) => SENTENCES.ERC20InvalidApprover(a, k),
  ERC20InvalidSender: (a, k) => SENTENCES.ERC20InvalidApprover(a, k),
  ERC20InvalidSpender: (a, k) => SENTENCES.ERC20InvalidApprover(a, k),
  InvalidShortString: (_a, _k) => {
    return 'A name is too long.';
  },
  StringTooLong: (a, k) => SENTENCES.InvalidShortString(a, k),
  // MeterReadings
  UnknownMeter: (a, _k) => {
    return `Meter ${shortAddress(String(a[0]))} is not bound to any participant.`;
  },
  NotOperator: (a, { ctx }) => {
    return `${who(a[0], ctx)} is not an operator.`;
  },
  TimestampInFuture: (a, _k) => {
    return `The reading of meter ${shortAddress(String(a[0]))} is dated too far in the future.`;
  },
  CounterDecreased: (a, _k) => {
    return `The counters of meter ${shortAddress(String(a[0]))} went down; the operator must record a meter reset first.`;
  },
  ConflictingReading: (a, _k) => {
    return `Meter ${shortAddress(String(a[0]))} already reported other counters for the same time.`;
  },
  CounterTooLarge: (a, _k) => {
    return `The counters of meter ${shortAddress(String(a[0]))} are too large.`;
  },
  InvalidSignature: (a, _k) => {
    return `The reading is not signed by meter ${shortAddress(String(a[0]))}.`;
  },
  SlotFinal: (a, { time }) => {
    return `The reading of meter ${shortAddress(String(a[0]))} at ${time(a[1])} is too late: its slot is final (readings are open from ${time(a[2])}).`;
  },
  CounterAboveLater: (a, _k) => {
    return `The counters of meter ${shortAddress(String(a[0]))} are above those of its later reading.`;
  },
  CounterBelowFinalised: (a, _k) => {
    return `The counters of meter ${shortAddress(String(a[0]))} are below what its final slots already counted.`;
  },
  ReadingBeforeReset: (a, _k) => {
    return `The reading of meter ${shortAddress(String(a[0]))} is older than its last counter reset.`;
  },
  TooManyReadings: (a, _k) => {
    return `Meter ${shortAddress(String(a[0]))} has more open readings than the contract keeps.`;
  },
  InvalidFinalityDelay: (a, _k) => {
    return `A finality delay of ${String(a[0])} s gives ${String(a[1])} open slots; at most 31 are allowed.`;
  },
  OnlySelf: (_a, _k) => {
    return 'Only the readings contract itself may record a relayed reading this way.';
  },
};

/** One sentence for a decoded custom error. */
export function revertSentence(r: DecodedRevert, ctx: ErrorContext): string {
  // Own properties only: an error named like an Object method must not find the prototype's.
  const sentence = Object.prototype.hasOwnProperty.call(SENTENCES, r.name) ? SENTENCES[r.name] : undefined;
  if (!sentence) return `The contract refused: ${r.name}(${r.args.map(String).join(', ')}).`;
  return sentence(r.args, {
    ctx,
    price: (x) => formatPrice(BigInt(x as bigint), ctx.tick),
    credits: (x) => formatCredits(BigInt(x as bigint)),
    time: (x) => formatDateTime(BigInt(x as bigint)),
  });
}

function walletSentence(code: number, err: unknown): string | undefined {
  switch (code) {
    case 4001:
      return 'You rejected the request in your wallet. Nothing was sent.';
    case 4100:
      return 'The wallet has not authorised this page. Connect the wallet again.';
    case 4200:
      return 'Your wallet does not support this request.';
    case 4900:
      return 'Your wallet is disconnected from every network.';
    case 4901:
      return 'Your wallet is not connected to this network.';
    case 4902:
      return 'Your wallet does not know this network yet. Use "Add network".';
    case -32002:
      return 'A request is already waiting in your wallet. Open the wallet to answer it.';
    case -32003:
      return 'The chain refused the transaction: this account is not on its allowlist.';
    case -32005:
      return 'The node is busy (a limit was reached). Try again in a moment.';
    default:
      void err;
      return undefined;
  }
}

/** One sentence for anything thrown by a read, a simulation, a wallet request or a transaction. */
export function describeError(err: unknown, ctx: ErrorContext): string {
  const data = findRevertData(err);
  if (data) {
    const decoded = decodeRevertData(data);
    if (decoded) return revertSentence(decoded, ctx);
  }
  const code = findErrorCode(err);
  if (code !== undefined) {
    const s = walletSentence(code, err);
    if (s) return s;
  }
  const name = (err as { name?: string })?.name;
  if (name === 'ChainMismatchError') {
    return 'Your wallet is on another network than this market. Switch the network in your wallet.';
  }
  const short = (err as { shortMessage?: string })?.shortMessage;
  const msg = short ?? (err instanceof Error ? err.message : String(err));
  return msg.split('\n')[0];
}
