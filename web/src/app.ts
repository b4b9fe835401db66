// The page's state and everything that changes it: the node connection, the wallet, reads on every
// new block (WebSocket `newHeads` subscription), the event history, and the transactions.

import {
  type AbiEvent,
  type Address,
  type Hex,
  type TransactionReceipt,
  type WalletClient,
  createWalletClient,
  custom,
  decodeEventLog,
  getAddress,
  isAddress,
  keccak256,
  parseSignature,
  toEventSelector,
  toHex,
  zeroAddress,
} from 'viem';
import { type Connection, type MarketConfig, connectNode } from './chain';
import { type ChainIdentity, NodeMonitor, judge } from './connection';
import { gateOpen, safeDefaultSlot } from './slotchoice';
import { type TrackedTx, Tracker } from './tracker';
import { describeError, findErrorCode, isUserRejection, revertSentence } from './errors';
import { formatClock, formatCredits, formatEnergy, formatPrice } from './format';
import { creditTokenAbi, energyMarketAbi, meterReadingsAbi, registryAbi } from './generated/abis';
import {
  type Island,
  type Limits,
  type ReportRecord,
  MICROGRID_SLOTS,
  isLater,
  mergeReport,
  parseReport,
  removeReport,
  reportWindowStart,
  trimReports,
} from './microgrid';
import {
  type Bill,
  type Level,
  type Phase,
  type Premiums,
  type ReadingsFlag,
  type Schedule,
  type SettlementEvent,
  type Side,
  activeLevels,
  billOf,
  firstOpenSlot,
  gateClosureTime,
  levelPrice,
  lockFor,
  NO_PREMIUMS,
  phaseOf,
  readingsFlag,
  slotAt,
  slotEnd,
  slotStart,
  withinHorizon,
} from './market';
import {
  type Eip1193Provider,
  type ProviderDetail,
  addNetwork,
  currentAccounts,
  discoverWallets,
  requestAccounts,
  switchNetwork,
  walletChainId,
} from './wallet';

/** How many blocks of event history the page loads at start (in chunks under the node's log-range limit). */
export const HISTORY_BLOCKS = 20_000n;
const LOG_CHUNK = 5_000n;
/** Upcoming slots shown (open for orders). */
export const UPCOMING_SLOTS = 6;
/** Closed slots shown before the first open one. */
export const RECENT_SLOTS = 8;

export type Role = 'none' | 'consumer' | 'prosumer';
const ROLES: Role[] = ['none', 'consumer', 'prosumer'];

export interface Position {
  bidWh: bigint;
  bidPricePerKWh: bigint;
  askWh: bigint;
  askPricePerKWh: bigint;
  settled: boolean;
  /** The imbalance premiums its orders locked (the slot's, when they were placed). */
  premiums: Premiums;
}

export interface SlotView {
  slot: bigint;
  phase: Phase;
  status: 'empty' | 'open' | 'cleared';
  retailPerKWh: bigint;
  feedInPerKWh: bigint;
  clearingPerKWh: bigint;
  clearedWh: bigint;
  levels: Level[];
  /** The imbalance premiums orders in this slot lock: fixed when the keeper opened it (an open slot),
   *  else the registry's current ones (which a slot opened now would get). */
  premiums: Premiums;
  /** The order horizon (seconds) orders in this slot must meet: fixed when the keeper opened it (an
   *  open slot), else the market's current one (which a slot opened now would get). */
  orderHorizon: bigint;
  position?: Position;
  /** Fills the position would get if settled now (cleared slots, unsettled position). */
  preview?: { boughtWh: bigint; soldWh: bigint };
  /** Whether the account's meter has a reading inside this slot (slots past delivery with an
   *  unsettled position of the account; `MeterReadings.energyInSlot`). */
  /** The readings of the meter bound in the slot (`meterAt`), with its newest reading's time. */
  readings?: { meter: boolean; hasReading: boolean; kept: boolean; latestTimestamp?: bigint };
}

export interface Me {
  address: Address;
  role: Role;
  meter: Address | null;
  walletCredits: bigint;
  free: bigint;
  debt: bigint;
  isOperator: boolean;
  isMinter: boolean;
  /** The most this account may bid (`importWh`) and ask (`exportWh`) in one slot: its registered
   *  connection power times the slot length. */
  capacity: { importWh: bigint; exportWh: bigint };
  latestReading?: { importWh: bigint; exportWh: bigint; timestamp: bigint };
}

export interface ClearedRecord {
  slot: bigint;
  pricePerKWh: bigint;
  clearedWh: bigint;
  bidMarginalPerKWh: bigint;
  askMarginalPerKWh: bigint;
}

export interface SettlementRecord {
  ev: SettlementEvent;
  retailPerKWh: bigint;
  feedInPerKWh: bigint;
  clearingPerKWh: bigint;
  bill: Bill;
  /** What the bill rests on: the meter's readings as they stood in the settlement's block. */
  flag: ReadingsFlag;
}

export interface ReadingRecord {
  importWh: bigint;
  exportWh: bigint;
  timestamp: bigint;
}

export interface Notice {
  id: number;
  kind: 'info' | 'ok' | 'error' | 'warn';
  text: string;
  /** Stays until dismissed (by the user, or by the page when the wallet prompt it explains closes). */
  sticky?: boolean;
}

/** The explorer link of a transaction: `?explorer=TEMPLATE` (kept in localStorage) or `#/tx/{hash}`. */
export const DEFAULT_TX_LINK = '#/tx/{hash}';

export interface Participant {
  account: Address;
  role: Role;
  meters: Address[];
}

export type View = 'trade' | 'history' | 'operator';

export interface WalletState {
  wallets: ProviderDetail[];
  discovered: boolean;
  selected?: ProviderDetail;
  account?: Address;
  chainId?: number;
  connecting: boolean;
  /** Why there is no usable account, in one sentence (wrong network, locked wallet...). */
  problem?: string;
}

export interface State {
  view: View;
  loading: boolean;
  fatal?: string;
  config?: MarketConfig;
  head?: { number: bigint; timestamp: bigint };
  live: boolean;
  wallet: WalletState;
  me?: Me;
  slots: SlotView[];
  selectedSlot?: bigint;
  cleared: Map<bigint, ClearedRecord>;
  settlements: Map<bigint, SettlementRecord>;
  readings: ReadingRecord[];
  /** Slots in which the account placed orders (from OrderPlaced events). */
  ownOrderSlots: Set<bigint>;
  historyFrom?: bigint;
  defaultPrices?: { retailPerKWh: bigint; feedInPerKWh: bigint };
  /** The registry's imbalance premiums (what the keeper's next slots get). */
  imbalance?: Premiums;
  /** The market's order horizon in seconds (what the keeper's next slots get). */
  orderHorizon?: bigint;
  busy?: string;
  notices: Notice[];
  lookup?: { address: Address; role: Role; meter: Address | null; walletCredits: bigint; free: bigint; debt: bigint; isOperator: boolean };
  /** The node has not answered since this time (ms); actions are disabled meanwhile. */
  outageSince?: number;
  /** Transaction hash from a `#/tx/HASH` link: highlighted in the tracker. */
  txFocus?: string;
  txLink: string;
  /** Participants and meters from the registry's events (operator view). */
  participants: Map<Address, Participant>;
  /** The microgrid's limits, islanded state and recent reports (operator view). */
  microgrid: MicrogridState;
}

/** What the operator view knows about the microgrid: the registry's state, read when the view opens and
 *  kept up to date by a `logs` subscription, and the reports of the last {@link MICROGRID_SLOTS} slots. */
export interface MicrogridState {
  reports: Map<bigint, ReportRecord>;
  limits?: Limits;
  island?: Island;
  /** The state and the recent reports were read (since the view opened or the node came back). */
  loaded: boolean;
  /** The subscription to the registry's microgrid events runs. */
  live: boolean;
  /** Why the state or the history could not be read (the subscription may still bring new logs). */
  error?: string;
}

/** The registry's events the operator view follows for the microgrid. */
const MICROGRID_EVENTS = registryAbi.filter(
  (x) => x.type === 'event' && ['MicrogridReported', 'ConnectionLimitsSet', 'IslandedSet', 'GridConnectedSet'].includes(x.name),
) as unknown as AbiEvent[];
/** The most blocks searched for the recent reports (at a 1 s block period, 27 hours). */
export const MICROGRID_MAX_BLOCKS = 100_000n;

/** A log from eth_getLogs (hex numbers) or from the subscription (viem's numbers). */
interface AnyLog {
  topics: readonly Hex[];
  data: Hex;
  blockNumber: bigint | Hex | null;
  logIndex: number | Hex | null;
  removed?: boolean;
}

const REGISTRY_TOPICS = [
  toEventSelector('ParticipantRegistered(address,uint8)'),
  toEventSelector('ParticipantRemoved(address)'),
  toEventSelector('MeterBound(address,address,uint64)'),
  toEventSelector('MeterUnbound(address,address,uint64)'),
];
const RELOAD_NOTE = 'p2pe.reloadNote';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SETTLED_TOPIC = toEventSelector(
  'ParticipantSettled(uint64,address,uint64,uint64,uint64,uint64,uint256,uint256)',
);
const CLEARED_TOPIC = toEventSelector('SlotCleared(uint64,uint256,uint64,uint256,uint256)');
const PLACED_TOPIC = toEventSelector('OrderPlaced(uint64,address,uint8,uint256,uint32,uint256)');
const READING_TOPIC = toEventSelector('ReadingRecorded(address,uint64,uint64,uint64)');
const MICROGRID_TOPIC = toEventSelector(
  'MicrogridReported(uint64,(uint32,uint32,uint32,uint32,uint32,uint32,uint32,uint32,uint32))',
);
const MINTER_ROLE = keccak256(toHex('MINTER_ROLE'));

const addressTopic = (a: Address): Hex => `0x${a.slice(2).toLowerCase().padStart(64, '0')}` as Hex;

export class App {
  state: State = {
    view: 'trade',
    loading: true,
    live: false,
    wallet: { wallets: [], discovered: false, connecting: false },
    slots: [],
    cleared: new Map(),
    settlements: new Map(),
    readings: [],
    ownOrderSlots: new Set(),
    notices: [],
    txLink: DEFAULT_TX_LINK,
    participants: new Map(),
    microgrid: { reports: new Map(), loaded: false, live: false },
  };
  readonly tracker = new Tracker(() => this.changed());
  private monitor?: NodeMonitor;
  private identity?: ChainIdentity;
  private unwatch?: () => void;
  private reloading = false;
  private conn?: Connection;
  private walletClient?: WalletClient;
  private listeners: Array<() => void> = [];
  private refreshing = false;
  private refreshAgain = false;
  private lastLogBlock = -1n;
  private historyAccount?: Address;
  private lastHeadAt = 0;
  private noticeId = 0;
  private skew = 0;
  /** The latest block's base fee (always 0 on this chain). */
  private baseFee = 0n;
  private detachWallet?: () => void;
  private unwatchMicrogrid?: () => void;
  private microgridLoading = false;

  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  changed(): void {
    for (const fn of this.listeners) fn();
  }

  // ------------------------------------------------------------------ time

  /** The chain's clock: local time, corrected when the node's block timestamps run ahead or behind. */
  now(): bigint {
    return BigInt(Math.floor(Date.now() / 1000 + this.skew));
  }

  schedule(): Schedule | undefined {
    const c = this.state.config;
    return c && { startTime: c.startTime, slotLength: c.slotLength, gateClosure: c.gateClosure, gracePeriod: c.gracePeriod };
  }

  // ------------------------------------------------------------------ start

  async start(): Promise<void> {
    this.setTxLink();
    const note = sessionStorage.getItem(RELOAD_NOTE);
    if (note) {
      sessionStorage.removeItem(RELOAD_NOTE);
      this.notify('warn', note, { sticky: true });
    }
    this.setViewFromHash();
    window.addEventListener('hashchange', () => {
      this.setViewFromHash();
      this.followMicrogrid();
      this.changed();
    });
    discoverWallets((wallets) => {
      this.state.wallet.wallets = wallets;
      this.state.wallet.discovered = true;
      this.changed();
      void this.autoReconnect();
    });
    try {
      this.conn = await connectNode();
    } catch (err) {
      this.state.loading = false;
      this.state.fatal = `Cannot reach the market: ${describeError(err, { tick: 1n })}`;
      this.changed();
      return;
    }
    this.state.config = this.conn.config;
    this.watchHeads();
    this.monitor = new NodeMonitor(this.conn.config.rpcUrl, {
      up: (seen, wasDown) => void this.onNodeUp(seen, wasDown),
      down: (since) => {
        this.state.outageSince = since;
        this.state.live = false;
        this.changed();
      },
    });
    this.monitor.start();
    // Safety net: if the subscription goes quiet (socket reconnecting), poll the head.
    window.setInterval(() => {
      if (Date.now() - this.lastHeadAt > 8_000) void this.pollHead();
    }, 4_000);
    await this.pollHead();
    this.state.loading = false;
    this.changed();
  }

  private watchHeads(): void {
    this.unwatch?.();
    this.unwatch = this.conn!.client.watchBlocks({
      onBlock: (block) => {
        if (block) this.onHead(block.number, block.timestamp, block.baseFeePerGas);
      },
      onError: () => {
        this.state.live = false;
        this.monitor?.poke();
        this.changed();
      },
    });
    // A new connection: subscribe again and read the state and reports again (logs may have been missed).
    this.unwatchMicrogrid?.();
    this.unwatchMicrogrid = undefined;
    this.state.microgrid.live = false;
    this.state.microgrid.loaded = false;
    this.followMicrogrid();
  }

  /** The node answered: a new genesis or a head behind the one seen means another chain (a restart
   *  with a fresh data directory, a reset): everything the page knows is stale, so it reloads. After an
   *  outage on the same chain, the subscription is made again. */
  private async onNodeUp(seen: ChainIdentity, wasDownSince: number | undefined): Promise<void> {
    const verdict = judge(this.identity, seen);
    if (verdict !== 'same') {
      this.reloadForNewChain(
        verdict === 'new-genesis'
          ? 'The node restarted with a new chain (its genesis block changed); the page reloaded everything.'
          : `The chain went back from block ${this.identity!.head} to block ${seen.head}; the page reloaded everything.`,
      );
      return;
    }
    this.identity = { genesisHash: seen.genesisHash, head: seen.head > (this.identity?.head ?? 0n) ? seen.head : this.identity!.head };
    // The node answers but no head arrived for a while: the subscription is dead; make it again.
    const silent = this.lastHeadAt > 0 && Date.now() - this.lastHeadAt > 10_000;
    if (wasDownSince !== undefined || silent) {
      this.state.outageSince = undefined;
      try {
        this.conn = await connectNode();
        this.makeWalletClient(this.state.wallet.selected?.provider);
        this.watchHeads();
      } catch {
        this.monitor?.poke();
      }
      if (wasDownSince !== undefined) {
        this.notify('ok', `The node answers again (it was unreachable for ${Math.round((Date.now() - wasDownSince) / 1000)} s).`);
      }
      void this.pollHead();
    }
    this.changed();
  }

  private reloadForNewChain(note: string): void {
    if (this.reloading) return;
    this.reloading = true;
    this.monitor?.stop();
    sessionStorage.setItem(RELOAD_NOTE, note);
    window.location.reload();
  }

  private async pollHead(): Promise<void> {
    if (!this.conn) return;
    try {
      const block = await this.conn.client.getBlock();
      this.onHead(block.number, block.timestamp, block.baseFeePerGas, false);
    } catch {
      this.state.live = false;
      this.changed();
    }
  }

  private onHead(number: bigint | null, timestamp: bigint, baseFee: bigint | null, live = true): void {
    if (number === null) return;
    if (this.state.head && number < this.state.head.number) {
      // A head behind the last one: another chain, or an out-of-order answer. The monitor decides.
      this.monitor?.poke();
      return;
    }
    if (this.identity && number > this.identity.head) this.identity.head = number;
    this.lastHeadAt = Date.now();
    this.baseFee = baseFee ?? 0n;
    if (live) this.state.live = true;
    const local = Date.now() / 1000;
    const diff = Number(timestamp) - local;
    // Blocks come every period; only a clear offset (a node clock that differs) moves the page's clock.
    this.skew = Math.abs(diff) > 3 ? diff : 0;
    this.state.head = { number, timestamp };
    this.scheduleRefresh();
  }

  private setViewFromHash(): void {
    const h = window.location.hash.replace('#', '');
    const tx = /^\/tx\/(0x[0-9a-fA-F]{64})$/.exec(h);
    if (tx) {
      this.state.txFocus = tx[1].toLowerCase();
      return;
    }
    this.state.view = h === 'history' || h === 'operator' ? h : 'trade';
  }

  /** The explorer link template: `?explorer=https://explorer.example/tx/{hash}` sets it (remembered). */
  private setTxLink(): void {
    const q = new URLSearchParams(window.location.search).get('explorer');
    if (q && q.includes('{hash}')) localStorage.setItem('p2pe.txLink', q);
    this.state.txLink = localStorage.getItem('p2pe.txLink') ?? DEFAULT_TX_LINK;
  }

  // ------------------------------------------------------------------ notices

  notify(kind: Notice['kind'], text: string, opts: { sticky?: boolean } = {}): number {
    const id = ++this.noticeId;
    const sticky = this.state.notices.filter((n) => n.sticky);
    const rest = this.state.notices.filter((n) => !n.sticky).slice(-2);
    this.state.notices = [...this.state.notices.filter((n) => sticky.includes(n) || rest.includes(n)), { id, kind, text, sticky: opts.sticky }];
    this.changed();
    if (!opts.sticky && (kind === 'ok' || kind === 'info')) {
      window.setTimeout(() => this.dismiss(id), kind === 'ok' ? 8_000 : 15_000);
    }
    return id;
  }

  /** Drops the error notices of earlier actions when a new action starts. */
  clearErrors(): void {
    this.state.notices = this.state.notices.filter((n) => n.kind !== 'error');
  }

  dismiss(id: number): void {
    this.state.notices = this.state.notices.filter((n) => n.id !== id);
    this.changed();
  }

  errorContext() {
    return { tick: this.state.config?.priceTick ?? 1n, account: this.state.wallet.account, grid: this.state.config?.grid };
  }

  // ------------------------------------------------------------------ wallet

  private async autoReconnect(): Promise<void> {
    const w = this.state.wallet;
    if (w.selected || w.connecting) return;
    const last = localStorage.getItem('p2pe.wallet');
    const found = w.wallets.find((x) => x.info.rdns === last);
    if (!found) return;
    try {
      const accounts = await currentAccounts(found.provider);
      if (accounts.length > 0) await this.useWallet(found, accounts);
    } catch {
      // The wallet will ask again when the user clicks Connect.
    }
  }

  async connect(detail: ProviderDetail): Promise<void> {
    const w = this.state.wallet;
    this.clearErrors();
    w.connecting = true;
    w.problem = undefined;
    this.changed();
    try {
      const accounts = await requestAccounts(detail.provider);
      if (accounts.length === 0) throw new Error('The wallet returned no account. Unlock it and try again.');
      await this.useWallet(detail, accounts);
      localStorage.setItem('p2pe.wallet', detail.info.rdns);
    } catch (err) {
      w.problem = isUserRejection(err)
        ? 'You rejected the connection request in your wallet. Click Connect to try again.'
        : describeError(err, this.errorContext());
    } finally {
      w.connecting = false;
      this.changed();
    }
  }

  disconnect(): void {
    this.detachWallet?.();
    this.detachWallet = undefined;
    localStorage.removeItem('p2pe.wallet');
    const w = this.state.wallet;
    w.selected = undefined;
    w.account = undefined;
    w.chainId = undefined;
    w.problem = undefined;
    this.walletClient = undefined;
    this.setAccount(undefined);
  }

  private async useWallet(detail: ProviderDetail, accounts: Address[]): Promise<void> {
    this.detachWallet?.();
    const w = this.state.wallet;
    w.selected = detail;
    w.chainId = await walletChainId(detail.provider);
    const p = detail.provider;
    const onAccounts = (...args: unknown[]) => {
      const list = ((args[0] as string[]) ?? []).filter((a) => isAddress(a)).map((a) => getAddress(a));
      if (list.length === 0) {
        w.account = undefined;
        w.problem = 'Your wallet is locked or this page is no longer connected to it. Click Connect.';
        this.setAccount(undefined);
        return;
      }
      if (list[0] !== w.account) {
        this.notify('info', `Switched to account ${list[0]}.`);
        this.setAccount(list[0]);
      }
    };
    const onChain = (...args: unknown[]) => {
      w.chainId = Number(BigInt(args[0] as string));
      this.checkNetwork();
      this.changed();
    };
    p.on?.('accountsChanged', onAccounts);
    p.on?.('chainChanged', onChain);
    this.detachWallet = () => {
      p.removeListener?.('accountsChanged', onAccounts);
      p.removeListener?.('chainChanged', onChain);
    };
    this.makeWalletClient(p);
    this.checkNetwork();
    this.setAccount(accounts[0]);
  }

  private makeWalletClient(p: Eip1193Provider | undefined): void {
    if (!p) return;
    this.walletClient = createWalletClient({ chain: this.conn?.chain, transport: custom(p) });
  }

  /** Whether the wallet is on this market's chain; sets the problem sentence if not. */
  checkNetwork(): boolean {
    const w = this.state.wallet;
    const c = this.state.config;
    if (!w.selected || !c || w.chainId === undefined) return false;
    if (w.chainId !== c.chainId) {
      w.problem = `Wrong network: your wallet is on chain ${w.chainId}, but this market runs on chain ${c.chainId}. Switch your wallet to "${c.chainName}" (or add it) to trade.`;
      return false;
    }
    if (w.problem?.startsWith('Wrong network')) w.problem = undefined;
    return true;
  }

  get onRightNetwork(): boolean {
    const w = this.state.wallet;
    return !!w.selected && !!this.state.config && w.chainId === this.state.config.chainId;
  }

  async addOrSwitchNetwork(mode: 'add' | 'switch'): Promise<void> {
    const w = this.state.wallet;
    const c = this.state.config;
    if (!w.selected || !c) return;
    this.clearErrors();
    const params = { chainId: c.chainId, chainName: c.chainName, rpcUrl: c.rpcUrl };
    try {
      if (mode === 'add') await addNetwork(w.selected.provider, params);
      else await switchNetwork(w.selected.provider, params);
      w.chainId = await walletChainId(w.selected.provider);
      if (this.checkNetwork()) this.notify('ok', `Your wallet is on ${c.chainName}.`);
      else if (mode === 'add') this.notify('info', `${c.chainName} was added to your wallet. Switch to it there to trade.`);
    } catch (err) {
      this.notify(
        'error',
        isUserRejection(err)
          ? 'You rejected the network request in your wallet. The wallet stays on its current network.'
          : describeError(err, this.errorContext()),
      );
    }
    this.changed();
  }

  private setAccount(account: Address | undefined): void {
    this.state.wallet.account = account;
    if (account !== this.historyAccount) {
      this.state.me = undefined;
      this.state.settlements = new Map();
      this.state.readings = [];
      this.state.ownOrderSlots = new Set();
      this.state.lookup = undefined;
      // The previous account's orders, fills and readings must not show under the new one.
      this.state.slots = this.state.slots.map((v) => ({ ...v, position: undefined, preview: undefined, readings: undefined }));
      this.lastLogBlock = -1n;
      this.historyAccount = account;
    }
    this.changed();
    this.scheduleRefresh();
  }

  // ------------------------------------------------------------------ reads

  scheduleRefresh(): void {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    void (async () => {
      do {
        this.refreshAgain = false;
        try {
          await this.refresh();
        } catch (err) {
          console.warn('refresh failed', err);
        }
      } while (this.refreshAgain);
      this.refreshing = false;
      this.changed();
    })();
  }

  private async refresh(): Promise<void> {
    const conn = this.conn;
    const head = this.state.head;
    if (!conn || !head) return;
    const { client, config: c } = conn;
    const account = this.state.wallet.account;
    const blockNumber = head.number;
    const market = { address: c.market, abi: energyMarketAbi, blockNumber } as const;

    // Events first, so that slots with own orders are known below.
    await this.loadLogs(blockNumber, account);
    if (account !== this.state.wallet.account) return;

    const meP = account ? this.readMe(account, blockNumber) : Promise.resolve(undefined);
    meP.catch(() => {}); // awaited below; a failure before then must not go unhandled
    const dp = client.readContract({ address: c.registry, abi: registryAbi, functionName: 'defaultPrices', blockNumber });
    dp.catch(() => {});
    const ip = client.readContract({ address: c.registry, abi: registryAbi, functionName: 'imbalancePrices', blockNumber });
    ip.catch(() => {});
    const hp = client.readContract({ ...market, functionName: 'orderHorizon' });
    hp.catch(() => {});

    const s = this.schedule()!;
    const now = this.now();
    const first = firstOpenSlot(s, now);
    const wanted = new Set<bigint>();
    const safe = safeDefaultSlot(s, now);
    for (let i = 0n; i < BigInt(UPCOMING_SLOTS); i++) {
      wanted.add(first + i);
      wanted.add(safe + i);
    }
    for (let i = 1n; i <= BigInt(RECENT_SLOTS) && first - i >= 0n; i++) wanted.add(first - i);
    const current = slotAt(s, now);
    // Slots outside the window with the account's orders: the 20 most recent of the last 64 (the
    // market reuses a position's storage after 64 slots).
    const own = [...this.state.ownOrderSlots].filter((slot) => slot + 64n > current).sort((a, b) => (a > b ? -1 : 1));
    for (const slot of own.slice(0, 20)) wanted.add(slot);
    const slots = [...wanted].sort((a, b) => (a < b ? -1 : 1));
    const views = await Promise.all(slots.map((slot) => this.readSlot(slot, account, blockNumber, now)));
    const [me, prices, imbalance, horizon] = await Promise.all([meP, dp, ip, hp]);
    if (account !== this.state.wallet.account) return;
    this.state.me = me;
    this.state.defaultPrices = { retailPerKWh: prices[0], feedInPerKWh: prices[1] };
    this.state.imbalance = { shortPremiumPerKWh: imbalance[0], longPenaltyPerKWh: imbalance[1] };
    this.state.orderHorizon = BigInt(horizon);
    // A slot not open yet gets the registry's premiums and the market's horizon when the keeper opens it.
    for (const v of views) {
      if (v.status === 'empty') v.premiums = this.state.imbalance;
      if (v.status !== 'open') v.orderHorizon = this.state.orderHorizon;
    }
    this.state.slots = views;
    for (const v of views) {
      // Slots outside the window stay watched only while the account has something pending there.
      if (this.state.ownOrderSlots.has(v.slot)) {
        const p = v.position;
        const empty = !p || (p.bidWh === 0n && p.askWh === 0n);
        if (p?.settled || (empty && v.phase !== 'open')) this.state.ownOrderSlots.delete(v.slot);
      }
      if (v.status === 'cleared' && !this.state.cleared.has(v.slot)) {
        this.state.cleared.set(v.slot, {
          slot: v.slot,
          pricePerKWh: v.clearingPerKWh,
          clearedWh: v.clearedWh,
          bidMarginalPerKWh: 0n,
          askMarginalPerKWh: 0n,
        });
      }
    }
    if (this.state.selectedSlot === undefined || this.state.selectedSlot < first) this.state.selectedSlot = first;
    this.changed();
  }

  /** Reads one slot's view at `blockNumber`: its auction state and book, and the account's position,
   *  fills and (past delivery, with an unsettled position) the readings of the meter bound in it. */
  private async readSlot(
    slot: bigint,
    account: Address | undefined,
    blockNumber: bigint,
    now: bigint,
  ): Promise<SlotView> {
    const { client, config: c } = this.conn!;
    const market = { address: c.market, abi: energyMarketAbi, blockNumber } as const;
    const s = this.schedule()!;
    const [info, pos] = await Promise.all([
      client.readContract({ ...market, functionName: 'slotInfo', args: [slot] }),
      account ? client.readContract({ ...market, functionName: 'positionOf', args: [slot, account] }) : undefined,
    ]);
    const status = (['empty', 'open', 'cleared'] as const)[info.status] ?? 'empty';
    let levels: Level[] = [];
    if (status !== 'empty' && info.activeLevels !== 0n) {
      const ls = activeLevels(info.activeLevels);
      const vols = await Promise.all(
        ls.map((l) => client.readContract({ ...market, functionName: 'levelVolumes', args: [slot, l] })),
      );
      levels = ls.map((l, i) => ({
        level: l,
        pricePerKWh: levelPrice(info.feedInPerKWh, c.priceTick, l),
        bidWh: vols[i][0],
        askWh: vols[i][1],
      }));
    }
    const position: Position | undefined = pos && {
      bidWh: BigInt(pos.bidWh),
      bidPricePerKWh: pos.bidPricePerKWh,
      askWh: BigInt(pos.askWh),
      askPricePerKWh: pos.askPricePerKWh,
      settled: pos.settled,
      premiums: { shortPremiumPerKWh: pos.shortPremiumPerKWh, longPenaltyPerKWh: pos.longPenaltyPerKWh },
    };
    let preview: SlotView['preview'];
    const pending = !!position && !position.settled && (position.bidWh > 0n || position.askWh > 0n);
    if (account && status === 'cleared' && pending) {
      const [b, sold] = await client.readContract({ ...market, functionName: 'previewFills', args: [slot, account] });
      preview = { boughtWh: b, soldWh: sold };
    }
    let readings: SlotView['readings'];
    const past = ['grace', 'settlement'].includes(phaseOf(s, slot, now));
    if (account && pending && past) readings = await this.slotReadings(account, slot, blockNumber);
    return {
      slot,
      phase: phaseOf(s, slot, now),
      status,
      retailPerKWh: info.retailPerKWh,
      feedInPerKWh: info.feedInPerKWh,
      clearingPerKWh: info.clearingPricePerKWh,
      clearedWh: info.clearedWh,
      levels,
      premiums:
        status === 'open'
          ? { shortPremiumPerKWh: info.shortPremiumPerKWh, longPenaltyPerKWh: info.longPenaltyPerKWh }
          : NO_PREMIUMS,
      orderHorizon: status === 'open' ? BigInt(info.orderHorizon) : 0n,
      position,
      preview,
      readings,
    };
  }

  /** What settling `slot` for `account` would read: the meter bound in the slot (the registry's
   *  binding history, as settlement reads it, not today's meter), whether it has a reading in the slot
   *  and still keeps its energy, and its newest reading's time, at `blockNumber`. */
  private async slotReadings(account: Address, slot: bigint, blockNumber?: bigint): Promise<NonNullable<SlotView['readings']>> {
    const { client, config: c } = this.conn!;
    const bound = await client.readContract({ address: c.registry, abi: registryAbi, functionName: 'meterAt', args: [account, slot], blockNumber });
    if (bound === zeroAddress) return { meter: false, hasReading: false, kept: true };
    const r = { address: c.readings, abi: meterReadingsAbi, blockNumber } as const;
    const [e, kept, latest] = await Promise.all([
      client.readContract({ ...r, functionName: 'energyInSlot', args: [bound, slot] }),
      client.readContract({ ...r, functionName: 'energyKept', args: [bound, slot] }),
      client.readContract({ ...r, functionName: 'latestReading', args: [bound] }),
    ]);
    return { meter: true, hasReading: e.hasReading, kept, latestTimestamp: latest[2] };
  }

  /** What a settlement in `block` rested on: the readings of the meter bound in the slot as they stood
   *  in that block (the state settlement read); the head's state if the node cannot read that block. */
  private async settledReadings(account: Address, slot: bigint, block: bigint): Promise<ReadingsFlag> {
    const end = slotEnd(this.schedule()!, slot);
    const at = async (blockNumber: bigint | undefined): Promise<ReadingsFlag> => {
      const r = await this.slotReadings(account, slot, blockNumber);
      return readingsFlag(r.meter, r.hasReading, r.latestTimestamp, end, r.kept);
    };
    try {
      return await at(block);
    } catch {
      return at(undefined);
    }
  }

  private async readMe(account: Address, blockNumber: bigint): Promise<Me> {
    const { client, config: c } = this.conn!;
    const reg = { address: c.registry, abi: registryAbi, blockNumber } as const;
    const [role, meter, walletCredits, acct, isOperator, isMinter, capacity] = await Promise.all([
      client.readContract({ ...reg, functionName: 'roleOf', args: [account] }),
      client.readContract({ ...reg, functionName: 'meterOf', args: [account] }),
      client.readContract({ address: c.token, abi: creditTokenAbi, functionName: 'balanceOf', args: [account], blockNumber }),
      client.readContract({ address: c.market, abi: energyMarketAbi, functionName: 'accountOf', args: [account], blockNumber }),
      client.readContract({ ...reg, functionName: 'isOperator', args: [account] }),
      client.readContract({
        address: c.token,
        abi: creditTokenAbi,
        functionName: 'hasRole',
        args: [MINTER_ROLE, account],
        blockNumber,
      }),
      client.readContract({ address: c.market, abi: energyMarketAbi, functionName: 'capacityOf', args: [account], blockNumber }),
    ]);
    const me: Me = {
      address: account,
      role: ROLES[role] ?? 'none',
      meter: meter === zeroAddress ? null : getAddress(meter),
      walletCredits,
      free: acct[0],
      debt: acct[1],
      isOperator,
      isMinter,
      capacity: { importWh: capacity[0], exportWh: capacity[1] },
    };
    if (me.meter) {
      const [importWh, exportWh, timestamp] = await client.readContract({
        address: c.readings,
        abi: meterReadingsAbi,
        functionName: 'latestReading',
        args: [me.meter],
        blockNumber,
      });
      if (timestamp !== 0n) me.latestReading = { importWh, exportWh, timestamp };
    }
    return me;
  }

  /** Loads events from the last processed block (or the history window) up to `head`. */
  private async loadLogs(head: bigint, account: Address | undefined): Promise<void> {
    const { client, config: c } = this.conn!;
    let from = this.lastLogBlock + 1n;
    if (this.lastLogBlock < 0n) {
      from = head > HISTORY_BLOCKS ? head - HISTORY_BLOCKS : 0n;
      this.state.historyFrom = from;
    }
    if (from > head) return;
    let meter: Address | null | undefined = this.state.me?.meter;
    if (account && meter === undefined) {
      const m = await client.readContract({ address: c.registry, abi: registryAbi, functionName: 'meterOf', args: [account] });
      meter = m === zeroAddress ? null : getAddress(m);
    }
    for (let start = from; start <= head; start += LOG_CHUNK) {
      const end = start + LOG_CHUNK - 1n < head ? start + LOG_CHUNK - 1n : head;
      const range = { fromBlock: toHex(start), toBlock: toHex(end) };
      const queries: Array<Promise<RawLog[]>> = [
        this.getLogs({ ...range, address: c.market, topics: [CLEARED_TOPIC] }),
        this.getLogs({ ...range, address: c.registry, topics: [REGISTRY_TOPICS] }),
      ];
      if (account) {
        const me = addressTopic(account);
        queries.push(this.getLogs({ ...range, address: c.market, topics: [SETTLED_TOPIC, null, me] }));
        queries.push(this.getLogs({ ...range, address: c.market, topics: [PLACED_TOPIC, null, me] }));
        if (meter) queries.push(this.getLogs({ ...range, address: c.readings, topics: [READING_TOPIC, addressTopic(meter)] }));
      }
      const results = await Promise.all(queries);
      if (account !== this.state.wallet.account) return;
      // Events are independent of each other; settlements need two reads each, so go in batches.
      const logs = results.flat();
      for (let i = 0; i < logs.length; i += 50) await Promise.all(logs.slice(i, i + 50).map((l) => this.onLog(l)));
    }
    this.lastLogBlock = head;
  }

  private async getLogs(filter: Record<string, unknown>): Promise<RawLog[]> {
    return (await this.conn!.client.request({ method: 'eth_getLogs', params: [filter] } as never)) as RawLog[];
  }

  private async onLog(log: RawLog): Promise<void> {
    const c = this.conn!.config;
    if (log.address.toLowerCase() === c.registry.toLowerCase()) {
      this.onRegistryLog(log);
      return;
    }
    if (log.address.toLowerCase() === c.readings.toLowerCase()) {
      const ev = decodeEventLog({ abi: meterReadingsAbi, data: log.data, topics: log.topics as [Hex, ...Hex[]] });
      if (ev.eventName === 'ReadingRecorded') {
        const { importWh, exportWh, timestamp } = ev.args;
        if (!this.state.readings.some((r) => r.timestamp === timestamp)) {
          this.state.readings = [...this.state.readings, { importWh, exportWh, timestamp }].sort((a, b) =>
            a.timestamp < b.timestamp ? -1 : 1,
          );
        }
      }
      return;
    }
    const ev = decodeEventLog({ abi: energyMarketAbi, data: log.data, topics: log.topics as [Hex, ...Hex[]] });
    if (ev.eventName === 'SlotCleared') {
      const a = ev.args;
      this.state.cleared.set(a.slot, {
        slot: a.slot,
        pricePerKWh: a.clearingPricePerKWh,
        clearedWh: a.clearedWh,
        bidMarginalPerKWh: a.bidMarginalPricePerKWh,
        askMarginalPerKWh: a.askMarginalPricePerKWh,
      });
    } else if (ev.eventName === 'OrderPlaced') {
      this.state.ownOrderSlots.add(ev.args.slot);
    } else if (ev.eventName === 'ParticipantSettled') {
      const a = ev.args;
      const { client } = this.conn!;
      const m = { address: c.market, abi: energyMarketAbi } as const;
      const [info, pos, flag] = await Promise.all([
        client.readContract({ ...m, functionName: 'slotInfo', args: [a.slot] }),
        client.readContract({ ...m, functionName: 'positionOf', args: [a.slot, a.account] }),
        this.settledReadings(getAddress(a.account), a.slot, BigInt(log.blockNumber)),
      ]);
      const settlement: SettlementEvent = {
        slot: a.slot,
        boughtWh: a.boughtWh,
        soldWh: a.soldWh,
        importWh: a.importWh,
        exportWh: a.exportWh,
        credited: a.credited,
        debited: a.debited,
      };
      this.state.settlements.set(a.slot, {
        ev: settlement,
        retailPerKWh: info.retailPerKWh,
        feedInPerKWh: info.feedInPerKWh,
        clearingPerKWh: info.clearingPricePerKWh,
        bill: billOf(
          settlement,
          { retailPerKWh: info.retailPerKWh, feedInPerKWh: info.feedInPerKWh, clearingPerKWh: info.clearingPricePerKWh },
          { bidPricePerKWh: pos.bidPricePerKWh, askPricePerKWh: pos.askPricePerKWh },
          c.payAsBid,
          { shortPremiumPerKWh: pos.shortPremiumPerKWh, longPenaltyPerKWh: pos.longPenaltyPerKWh },
        ),
        flag,
      });
    }
  }

  /** Keeps the participant and meter list of the operator view (from the registry's events). */
  private onRegistryLog(log: RawLog): void {
    const ev = decodeEventLog({ abi: registryAbi, data: log.data, topics: log.topics as [Hex, ...Hex[]] });
    const ps = this.state.participants;
    const get = (a: Address) => ps.get(a) ?? { account: a, role: 'none' as Role, meters: [] };
    const a = ev.args as Record<string, unknown>;
    if (ev.eventName === 'ParticipantRegistered') {
      const acc = getAddress(a.account as string);
      ps.set(acc, { ...get(acc), role: ROLES[Number(a.role)] ?? 'none' });
    } else if (ev.eventName === 'ParticipantRemoved') {
      ps.delete(getAddress(a.account as string));
    } else if (ev.eventName === 'MeterBound') {
      const acc = getAddress(a.participant as string);
      const m = getAddress(a.meter as string);
      const p = get(acc);
      ps.set(acc, { ...p, meters: [...p.meters.filter((x) => x !== m), m] });
    } else if (ev.eventName === 'MeterUnbound') {
      const acc = getAddress(a.participant as string);
      const m = getAddress(a.meter as string);
      const p = ps.get(acc);
      if (p) ps.set(acc, { ...p, meters: p.meters.filter((x) => x !== m) });
    }
  }

  // ------------------------------------------------------------------ microgrid (operator view)

  /** Follows the microgrid while the operator view is open: subscribes to the registry's microgrid events
   *  (once per connection) and reads its state and the recent reports (once per opening). */
  private followMicrogrid(): void {
    if (!this.conn || this.state.view !== 'operator') return;
    if (!this.unwatchMicrogrid) this.watchMicrogrid();
    if (!this.state.microgrid.loaded && !this.microgridLoading) void this.loadMicrogrid();
  }

  /** Subscribes (`eth_subscribe` "logs" over the node's WebSocket) to the registry's microgrid events. */
  private watchMicrogrid(): void {
    const { client, config: c } = this.conn!;
    const mg = this.state.microgrid;
    try {
      this.unwatchMicrogrid = client.watchEvent({
        address: c.registry,
        events: MICROGRID_EVENTS,
        onLogs: (logs) => {
          for (const l of logs) this.onMicrogridLog(l as unknown as AnyLog);
          this.changed();
        },
        onError: () => {
          // The head subscription notices a dead socket too; the next connection subscribes again.
          mg.live = false;
          this.unwatchMicrogrid?.();
          this.unwatchMicrogrid = undefined;
          this.changed();
        },
      });
      mg.live = true;
    } catch (err) {
      console.warn('microgrid subscription failed', err);
    }
  }

  /** Reads the registry's PCC limits and islanded state at the head, then the reports of the last
   *  {@link MICROGRID_SLOTS} slots (newest blocks first, in chunks under the node's log-range limit). */
  private async loadMicrogrid(): Promise<void> {
    const conn = this.conn!;
    const { client, config: c } = conn;
    const mg = this.state.microgrid;
    this.microgridLoading = true;
    try {
      const head = await client.getBlock();
      const reg = { address: c.registry, abi: registryAbi, blockNumber: head.number } as const;
      const [importW, exportW, islanded, floor, voll] = await Promise.all([
        client.readContract({ ...reg, functionName: 'pccImportLimitW' }),
        client.readContract({ ...reg, functionName: 'pccExportLimitW' }),
        client.readContract({ ...reg, functionName: 'islanded' }),
        client.readContract({ ...reg, functionName: 'priceFloor' }),
        client.readContract({ ...reg, functionName: 'valueOfLostLoad' }),
      ]);
      // The state at the head: a log of a later block (from the subscription) still wins.
      const at = { block: head.number, logIndex: Number.MAX_SAFE_INTEGER };
      if (isLater(at, mg.limits?.at)) mg.limits = { importW: Number(importW), exportW: Number(exportW), at };
      if (isLater(at, mg.island?.at)) mg.island = { islanded, floorPerKWh: floor, vollPerKWh: voll, at };
      this.changed();
      const back = head.number > 1_000n ? head.number - 1_000n : 0n;
      const past = back < head.number ? await client.getBlock({ blockNumber: back }) : undefined;
      const from = reportWindowStart(head, past, c.slotLength, MICROGRID_SLOTS, MICROGRID_MAX_BLOCKS);
      for (let end = head.number; ; ) {
        const start = end - from + 1n > LOG_CHUNK ? end - LOG_CHUNK + 1n : from;
        const range = { fromBlock: toHex(start), toBlock: toHex(end) };
        const logs = await this.getLogs({ ...range, address: c.registry, topics: [MICROGRID_TOPIC] });
        if (this.conn !== conn) return;
        for (const l of logs) this.onMicrogridLog(l);
        this.changed();
        if (start <= from) break;
        end = start - 1n;
      }
      mg.loaded = true;
      mg.error = undefined;
    } catch (err) {
      mg.error = `The microgrid's state could not be read: ${describeError(err, this.errorContext())}`;
    } finally {
      this.microgridLoading = false;
      this.changed();
    }
  }

  /** Applies one registry log about the microgrid, from the history or the subscription. A later log
   *  wins over an earlier one (a later report for the same slot replaces it); a log the page cannot
   *  decode is skipped. */
  private onMicrogridLog(log: AnyLog): void {
    if (log.blockNumber === null || log.logIndex === null) return;
    const at = { block: BigInt(log.blockNumber), logIndex: Number(log.logIndex) };
    let ev;
    try {
      ev = decodeEventLog({ abi: registryAbi, data: log.data, topics: log.topics as [Hex, ...Hex[]] });
    } catch {
      return;
    }
    const mg = this.state.microgrid;
    const a = ev.args as Record<string, unknown>;
    if (ev.eventName === 'MicrogridReported') {
      const report = parseReport(a.report);
      if (!report || typeof a.slot !== 'bigint') return;
      if (log.removed) removeReport(mg.reports, a.slot, at);
      else mergeReport(mg.reports, { slot: a.slot, report, at });
      trimReports(mg.reports);
      return;
    }
    if (log.removed) {
      // A parameter change taken off the chain (a reorg): read the state again.
      mg.limits = mg.island = undefined;
      mg.loaded = false;
      this.followMicrogrid();
      return;
    }
    if (ev.eventName === 'ConnectionLimitsSet' && isLater(at, mg.limits?.at)) {
      mg.limits = { importW: Number(a.importW), exportW: Number(a.exportW), at };
    } else if (ev.eventName === 'IslandedSet' && isLater(at, mg.island?.at)) {
      mg.island = { islanded: true, floorPerKWh: BigInt(a.floorPerKWh as bigint), vollPerKWh: BigInt(a.vollPerKWh as bigint), at };
    } else if (ev.eventName === 'GridConnectedSet' && isLater(at, mg.island?.at)) {
      mg.island = { islanded: false, floorPerKWh: 0n, vollPerKWh: 0n, at };
    }
  }

  // ------------------------------------------------------------------ transactions

  /** Why the page cannot send a transaction right now, or undefined if it can. */
  cannotSend(allowBusy = false): string | undefined {
    const w = this.state.wallet;
    if (!w.selected || !w.account) return 'Connect a wallet first.';
    if (!this.onRightNetwork) return w.problem ?? 'Switch your wallet to this market’s network first.';
    if (this.state.outageSince !== undefined) return 'The node is not answering; actions are disabled until it is back.';
    if (this.state.busy && !allowBusy) return `Wait until "${this.state.busy}" is done (or stop waiting for it in the transaction list).`;
    return undefined;
  }

  /** Simulates a call (to report a revert before the wallet opens), has the wallet send it, and follows
   *  it in the tracker until it is in a block (or the user stops waiting). Returns whether it succeeded;
   *  reports progress and errors as notices. `guard` is asked before the wallet opens: a sentence stops
   *  the call (for example a slot whose gate has closed meanwhile). */
  async send(label: string, call: ContractCall, opts: SendOpts = {}): Promise<boolean> {
    if (!opts.nested) this.clearErrors();
    const why = this.cannotSend(opts.nested) ?? opts.guard?.();
    if (why) {
      this.notify('error', why);
      return false;
    }
    const { client } = this.conn!;
    const account = this.state.wallet.account!;
    const ownBusy = !this.state.busy;
    if (ownBusy) this.state.busy = label;
    this.changed();
    try {
      try {
        await client.simulateContract({ ...call, account } as never);
      } catch (err) {
        this.notify('error', `${label}: ${describeError(err, this.errorContext())}`);
        return false;
      }
      const hash = await this.prompt(label, call, account);
      if (!hash) return false;
      const id = hash.id;
      const outcome = await this.watchTx(id, hash.hash, account);
      if (outcome.kind !== 'mined') {
        if (outcome.kind === 'replaced') {
          this.notify('error', `${label}: the transaction was replaced by another one with the same nonce.`);
          return false;
        }
        this.notify('warn', `${label}: you stopped waiting for ${hash.hash.slice(0, 10)}…; nothing more is sent for it.`);
        return false;
      }
      const receipt = outcome.receipt;
      if (receipt.status !== 'success') {
        const reason = await this.revertReason(call, account, receipt.blockNumber);
        this.tracker.apply(id, { type: 'mined', block: receipt.blockNumber, ok: false, reason, at: Date.now() });
        this.notify('error', `${label}: ${reason}`);
        return false;
      }
      this.tracker.apply(id, { type: 'mined', block: receipt.blockNumber, ok: true, at: Date.now() });
      if (!opts.quiet) this.notify('ok', `${label}: done (block ${receipt.blockNumber}).`);
      return true;
    } catch (err) {
      this.notify('error', `${label}: ${describeError(err, this.errorContext())}`);
      return false;
    } finally {
      if (ownBusy) this.state.busy = undefined;
      this.scheduleRefresh();
      this.changed();
    }
  }

  /** Opens the wallet for `call`; returns the tracker id and hash, or undefined (rejected, failed). */
  private async prompt(label: string, call: ContractCall, account: Address): Promise<{ id: number; hash: Hex } | undefined> {
    const id = this.tracker.begin(label);
    const noticeId = this.notify('info', `${label}: confirm in your wallet…`, { sticky: true });
    try {
      // Suggest the chain's own fees (base fee 0, no tip), so that a wallet does not fill in
      // fees of its own and refuse an account without ether ("insufficient funds").
      const hash = await this.walletClient!.writeContract({
        ...call,
        account,
        chain: this.conn!.chain,
        maxFeePerGas: this.baseFee,
        maxPriorityFeePerGas: 0n,
      } as never);
      this.tracker.apply(id, { type: 'hash', hash, at: Date.now() });
      return { id, hash };
    } catch (err) {
      if (isUserRejection(err)) {
        this.tracker.apply(id, { type: 'rejected', at: Date.now() });
        this.notify('error', `${label}: you rejected the transaction in your wallet. Nothing was sent.`);
      } else {
        const reason = describeError(err, this.errorContext());
        this.tracker.apply(id, { type: 'error', reason, at: Date.now() });
        this.notify('error', `${label}: ${reason}`);
      }
      return undefined;
    } finally {
      this.dismiss(noticeId);
    }
  }

  /** Polls the node for the transaction until it is in a block, replaced, or the user stops waiting. */
  private async watchTx(
    id: number,
    hash: Hex,
    account: Address,
  ): Promise<{ kind: 'mined'; receipt: TransactionReceipt } | { kind: 'stopped' | 'replaced' }> {
    let flagged: number | undefined;
    try {
      return await this.pollTx(id, hash, account, (text) => (flagged ??= this.notify('warn', text, { sticky: true })));
    } finally {
      // The warning about an unseen transaction goes once the user stopped waiting or it arrived.
      if (flagged !== undefined) this.dismiss(flagged);
    }
  }

  private async pollTx(
    id: number,
    hash: Hex,
    account: Address,
    warn: (text: string) => void,
  ): Promise<{ kind: 'mined'; receipt: TransactionReceipt } | { kind: 'stopped' | 'replaced' }> {
    for (;;) {
      const t = this.tracker.get(id);
      if (!t || t.state === 'dropped') return { kind: 'stopped' };
      const client = this.conn!.client;
      const receipt = await client.getTransactionReceipt({ hash }).catch(() => null);
      if (receipt) return { kind: 'mined', receipt };
      const tx = await client.getTransaction({ hash }).catch(() => null);
      if (tx) this.tracker.apply(id, { type: 'seen', nonce: tx.nonce });
      else if (t.seen && t.nonce !== undefined) {
        const n = await client.getTransactionCount({ address: account }).catch(() => 0);
        if (n > t.nonce) {
          this.tracker.apply(id, { type: 'replaced', at: Date.now() });
          return { kind: 'replaced' };
        }
      }
      const now = this.tracker.apply(id, { type: 'tick', at: Date.now() });
      if (now?.unseen) {
        warn(`${now.label}: the node has not seen transaction ${hash.slice(0, 10)}… after 30 s. Your wallet may not have sent it. You can stop waiting in the transaction list.`);
      }
      await sleep(500);
    }
  }

  /** The user gives up on a transaction: the page stops waiting and is usable again. */
  stopWaiting(id: number): void {
    this.tracker.apply(id, { type: 'stop', at: Date.now() });
  }

  /** Why a mined transaction reverted: replayed on the state it met (at its block, then the one before). */
  private async revertReason(call: ContractCall, account: Address, block: bigint): Promise<string> {
    const { client } = this.conn!;
    for (const blockNumber of [block, block - 1n]) {
      try {
        await client.simulateContract({ ...call, account, blockNumber } as never);
      } catch (err) {
        return describeError(err, this.errorContext());
      }
    }
    return `the transaction reverted in block ${block}, and replaying it there succeeds, so its reason cannot be recovered (the state changed within the block).`;
  }

  trackedTxs(): TrackedTx[] {
    return this.tracker.txs;
  }

  /** Deposits `amount` from the wallet into the market: one EIP-2612 permit signature and one
   *  `depositWithPermit` transaction; falls back to approve + deposit if the wallet cannot sign typed data. */
  async deposit(amount: bigint, nested = false, guard?: () => string | undefined): Promise<boolean> {
    if (!nested) this.clearErrors();
    const refusal = this.depositRefusal(amount, nested, guard);
    if (refusal) {
      this.notify('error', refusal);
      return false;
    }
    const c = this.conn!.config;
    const ownBusy = !this.state.busy;
    if (ownBusy) this.state.busy = 'Deposit';
    this.changed();
    try {
      const deadline = this.now() + 3600n;
      const signature = await this.signPermit(amount, deadline);
      if (signature === false) return false;
      // The signature may have taken long: check again before anything is sent.
      const late = guard?.();
      if (late) {
        this.notify('error', late);
        return false;
      }
      if (signature) {
        const sig = parseSignature(signature);
        const v = sig.v ?? 27n + BigInt(sig.yParity);
        return await this.send(
          `Deposit ${formatCredits(amount)}`,
          {
            address: c.market,
            abi: energyMarketAbi,
            functionName: 'depositWithPermit',
            args: [amount, deadline, Number(v), sig.r, sig.s],
          },
          { quiet: nested, nested: true, guard },
        );
      }
      const approved = await this.send(
        `Approve ${formatCredits(amount)}`,
        { address: c.token, abi: creditTokenAbi, functionName: 'approve', args: [c.market, amount] },
        { quiet: true, nested: true, guard },
      );
      return (
        approved &&
        (await this.send(
          `Deposit ${formatCredits(amount)}`,
          { address: c.market, abi: energyMarketAbi, functionName: 'deposit', args: [amount] },
          { quiet: nested, nested: true, guard },
        ))
      );
    } catch (err) {
      this.notify('error', `Deposit: ${describeError(err, this.errorContext())}`);
      return false;
    } finally {
      if (ownBusy) this.state.busy = undefined;
      this.changed();
    }
  }

  /** Why a deposit of `amount` cannot start now (nothing sendable, the caller's guard, the amount, the
   *  wallet's credits), or undefined. */
  private depositRefusal(amount: bigint, nested: boolean, guard?: () => string | undefined): string | undefined {
    const why = this.cannotSend(nested) ?? guard?.();
    if (why) return why;
    if (amount <= 0n) return 'The amount must be more than zero.';
    const me = this.state.me;
    if (me && me.walletCredits < amount) {
      return `Your wallet holds ${formatCredits(me.walletCredits)}, less than the ${formatCredits(amount)} to deposit. Ask the operator for credits.`;
    }
    return undefined;
  }

  /** Asks the wallet for an EIP-2612 permit letting the market take `amount` until `deadline`. Resolves to
   *  the signature; to undefined when the wallet cannot sign typed data (the caller approves instead); to
   *  false when the user declined or signing failed (already told). */
  private async signPermit(amount: bigint, deadline: bigint): Promise<Hex | undefined | false> {
    const { client, config: c } = this.conn!;
    const account = this.state.wallet.account!;
    const token = { address: c.token, abi: creditTokenAbi } as const;
    const [domain, nonce] = await Promise.all([
      client.readContract({ ...token, functionName: 'eip712Domain' }),
      client.readContract({ ...token, functionName: 'nonces', args: [account] }),
    ]);
    const id = this.notify('info', `Sign the permit in your wallet: it lets the market take ${formatCredits(amount)} from your wallet.`, {
      sticky: true,
    });
    try {
      return await this.walletClient!.signTypedData({
        account,
        domain: { name: domain[1], version: domain[2], chainId: Number(domain[3]), verifyingContract: domain[4] },
        types: {
          Permit: [
            { name: 'owner', type: 'address' },
            { name: 'spender', type: 'address' },
            { name: 'value', type: 'uint256' },
            { name: 'nonce', type: 'uint256' },
            { name: 'deadline', type: 'uint256' },
          ],
        },
        primaryType: 'Permit',
        message: { owner: account, spender: c.market, value: amount, nonce, deadline },
      });
    } catch (err) {
      const code = findErrorCode(err);
      if (code === 4001) {
        this.notify('error', 'You declined to sign the permit. Nothing was deposited.');
        return false;
      }
      if (code !== 4200 && code !== -32601) {
        this.notify('error', `Permit: ${describeError(err, this.errorContext())}`);
        return false;
      }
      this.notify('info', 'Your wallet cannot sign permits; approving the market in a separate transaction instead.');
      return undefined;
    } finally {
      this.dismiss(id);
    }
  }

  async withdraw(amount: bigint): Promise<boolean> {
    const c = this.state.config!;
    return this.send(`Withdraw ${formatCredits(amount)}`, {
      address: c.market,
      abi: energyMarketAbi,
      functionName: 'withdraw',
      args: [amount],
    });
  }

  /** Places an order, depositing the missing escrow first (with a permit) when the free balance is short. */
  async placeOrder(side: Side, slot: bigint, energyWh: bigint, pricePerKWh: bigint): Promise<boolean> {
    this.clearErrors();
    const why = this.cannotSend();
    if (why) {
      this.notify('error', why);
      return false;
    }
    const c = this.state.config!;
    const sched = this.schedule()!;
    // The gate is checked before anything is signed and again after every signature and transaction:
    // when it closes while a wallet prompt is open, nothing more is sent (no deposit without its order).
    const guard = () =>
      gateOpen(sched, slot, this.now())
        ? undefined
        : `The gate of slot ${slot} closed at ${formatClock(gateClosureTime(sched, slot))}${this.state.busy ? ' while your wallet was open' : ''}: the order was not sent, and nothing more is sent for it. Choose a later slot.`;
    const closed = guard();
    if (closed) {
      this.notify('error', closed);
      return false;
    }
    const view = this.state.slots.find((v) => v.slot === slot);
    const retail = view?.retailPerKWh ?? this.state.defaultPrices?.retailPerKWh ?? 0n;
    const lock = lockFor(side, energyWh, pricePerKWh, retail, view?.premiums ?? this.state.imbalance ?? NO_PREMIUMS);
    const me = this.state.me;
    // The contract's own checks, made before any deposit so that no credits move for an order that
    // would be refused; the sentences are those of the decoded custom errors.
    const account = this.state.wallet.account!;
    const refuse = (name: string, args: readonly unknown[]) => {
      this.notify('error', revertSentence({ name, args }, this.errorContext()));
      return false;
    };
    if (me?.role === 'none') return refuse('NotParticipant', [account]);
    // Only the operator's keeper opens a slot (and fixes its prices); orders for a slot not open revert.
    if (view?.status === 'empty') return refuse('SlotNotOpen', [slot]);
    // Orders only for slots within the horizon the slot was opened with (issue 14).
    const horizon = view?.orderHorizon ?? this.state.orderHorizon;
    if (horizon !== undefined && !withinHorizon(sched, slot, this.now(), horizon)) {
      return refuse('BeyondHorizon', [slot, slotStart(sched, slot), horizon]);
    }
    if (side === 'ask' && me?.role === 'consumer') return refuse('NotProsumer', [account]);
    const capacity = me && (side === 'bid' ? me.capacity.importWh : me.capacity.exportWh);
    if (capacity !== undefined && energyWh > capacity) {
      return refuse('ExceedsCapacity', [account, side === 'bid' ? 0 : 1, energyWh, capacity]);
    }
    if (me && me.debt > 0n) return refuse('OutstandingDebt', [account, me.debt]);
    if (view?.position && (side === 'bid' ? view.position.bidWh : view.position.askWh) > 0n) {
      return refuse('OrderExists', [slot, account, side === 'bid' ? 0 : 1]);
    }
    if (me && me.free + me.walletCredits < lock) {
      this.notify(
        'error',
        `Not enough credits: this order locks ${formatCredits(lock)}, but you have ${formatCredits(me.free)} free in the market and ${formatCredits(me.walletCredits)} in your wallet.`,
      );
      return false;
    }
    const label = `${side === 'bid' ? 'Bid' : 'Ask'} ${formatEnergy(energyWh)} at ${formatPrice(pricePerKWh, c.priceTick)} in slot ${slot}`;
    this.state.busy = label;
    this.changed();
    try {
      if (me && me.free < lock) {
        const missing = lock - me.free;
        this.notify('info', `This order locks ${formatCredits(lock)}; ${formatCredits(me.free)} are free in the market, so ${formatCredits(missing)} are deposited from your wallet first.`);
        if (!(await this.deposit(missing, true, guard))) return false;
      }
      return await this.send(label, {
        address: c.market,
        abi: energyMarketAbi,
        functionName: side === 'bid' ? 'placeBid' : 'placeAsk',
        args: [slot, Number(energyWh), pricePerKWh],
      }, { quiet: true, nested: true, guard }).then((ok) => {
        if (ok) this.notify('ok', `${label}: placed. ${formatCredits(lock)} locked until settlement.`);
        return ok;
      });
    } finally {
      this.state.busy = undefined;
      this.changed();
    }
  }

  async cancelOrder(slot: bigint, side: Side): Promise<boolean> {
    const c = this.state.config!;
    return this.send(`Cancel ${side} in slot ${slot}`, {
      address: c.market,
      abi: energyMarketAbi,
      functionName: 'cancelOrder',
      args: [slot, side === 'bid' ? 0 : 1],
    });
  }

  async clearSlot(slot: bigint): Promise<boolean> {
    const c = this.state.config!;
    return this.send(`Clear slot ${slot}`, { address: c.market, abi: energyMarketAbi, functionName: 'clear', args: [slot] });
  }

  async settleSlot(slot: bigint, who: Address[]): Promise<boolean> {
    const c = this.state.config!;
    return this.send(`Settle slot ${slot}`, {
      address: c.market,
      abi: energyMarketAbi,
      functionName: 'settle',
      args: [slot, who],
    });
  }

  /** What {@link reclaim} would release now, and why the rest must wait. */
  reclaimPlan(): ReclaimPlan {
    const sched = this.schedule();
    const plan: ReclaimPlan = { ready: [], waiting: [] };
    if (!sched || !this.state.wallet.account) return plan;
    const now = this.now();
    for (const v of this.state.slots) {
      const p = v.position;
      if (!p || p.settled || (p.bidWh === 0n && p.askWh === 0n)) continue;
      const phase = phaseOf(sched, v.slot, now);
      if (phase === 'open') continue; // still in the book: Cancel gives its credits back
      const locked = positionLock(v, p);
      if (v.status !== 'cleared') {
        plan.waiting.push(`slot ${v.slot} is not cleared yet (Clear it first; ${formatCredits(locked)} locked)`);
        continue;
      }
      const unmatched = v.preview !== undefined && v.preview.boughtWh === 0n && v.preview.soldWh === 0n;
      if (!unmatched) continue; // matched orders are settled with "Settle mine" (their trade is billed)
      if (phase !== 'settlement') {
        const opens = formatClock(slotEnd(sched, v.slot) + sched.gracePeriod);
        plan.waiting.push(`slot ${v.slot}'s unmatched order (${formatCredits(locked)}) can be reclaimed from ${opens}, when its settlement opens after the grace period for late meter readings`);
        continue;
      }
      plan.ready.push({ slot: v.slot, locked });
    }
    return plan;
  }

  /** Releases the credits locked in the account's unmatched orders: one `settle(slot, [me])` per cleared
   *  slot whose settlement is open and in which none of the account's orders was filled (the market
   *  releases an order's lock only at settlement, or by `cancelOrder` before gate closure). The calls go
   *  one after the other through the transaction tracker, and each is reported. Refused, with the reason,
   *  when nothing can be reclaimed. */
  async reclaim(): Promise<boolean> {
    this.clearErrors();
    const why = this.cannotSend();
    if (why) {
      this.notify('error', why);
      return false;
    }
    const plan = this.reclaimPlan();
    if (plan.ready.length === 0) {
      this.notify('error', reclaimRefusal(plan));
      return false;
    }
    const account = this.state.wallet.account!;
    const c = this.state.config!;
    this.state.busy = 'Reclaim unmatched orders';
    this.changed();
    let released = 0n;
    const done: bigint[] = [];
    try {
      for (const r of plan.ready) {
        const label = `Reclaim ${formatCredits(r.locked)} from slot ${r.slot} (unmatched)`;
        const call = { address: c.market, abi: energyMarketAbi, functionName: 'settle', args: [r.slot, [account]] };
        if (!(await this.send(label, call, { nested: true }))) break;
        released += r.locked;
        done.push(r.slot);
      }
    } finally {
      this.state.busy = undefined;
      this.changed();
    }
    const left = plan.ready.length - done.length;
    if (done.length > 0) {
      const slots = done.map((x) => `#${x}`).join(', ');
      this.notify(
        left ? 'warn' : 'ok',
        `Reclaimed ${formatCredits(released)} from ${done.length} unmatched order${done.length > 1 ? 's' : ''} (slot${done.length > 1 ? 's' : ''} ${slots}); the slot's metered energy is billed as usual (History).${left ? ` ${left} more could not be reclaimed: see the error above.` : ''}`,
      );
    }
    return left === 0;
  }

  // ------------------------------------------------------------------ operator

  async operator(label: string, call: ContractCall): Promise<boolean> {
    return this.send(label, call);
  }

  /** Why time-of-use tariffs for `slot` would have no effect, or undefined: the market fixes a slot's
   *  tariffs at its first order, and no order can arrive after the gate closes. */
  async slotTariffProblem(slot: bigint): Promise<string | undefined> {
    const sched = this.schedule()!;
    const now = this.now();
    if (!gateOpen(sched, slot, now)) {
      return `Slot ${slot}'s gate closed at ${formatClock(gateClosureTime(sched, slot))}: no order can arrive any more, so tariffs for it would never apply. Nothing was sent.`;
    }
    const { client, config: c } = this.conn!;
    const info = await client.readContract({ address: c.market, abi: energyMarketAbi, functionName: 'slotInfo', args: [slot] });
    if (info.status !== 0) {
      return `Slot ${slot} already has orders: the market fixed its tariffs (retail ${formatPrice(info.retailPerKWh, c.priceTick)}, feed-in ${formatPrice(info.feedInPerKWh, c.priceTick)}) at its first order, so new ones would have no effect. Nothing was sent.`;
    }
    return undefined;
  }

  async lookupAccount(address: Address): Promise<void> {
    const { client, config: c } = this.conn!;
    try {
      const reg = { address: c.registry, abi: registryAbi } as const;
      const [role, meter, walletCredits, acct, isOperator] = await Promise.all([
        client.readContract({ ...reg, functionName: 'roleOf', args: [address] }),
        client.readContract({ ...reg, functionName: 'meterOf', args: [address] }),
        client.readContract({ address: c.token, abi: creditTokenAbi, functionName: 'balanceOf', args: [address] }),
        client.readContract({ address: c.market, abi: energyMarketAbi, functionName: 'accountOf', args: [address] }),
        client.readContract({ ...reg, functionName: 'isOperator', args: [address] }),
      ]);
      this.state.lookup = {
        address,
        role: ROLES[role] ?? 'none',
        meter: meter === zeroAddress ? null : getAddress(meter),
        walletCredits,
        free: acct[0],
        debt: acct[1],
        isOperator,
      };
    } catch (err) {
      this.notify('error', describeError(err, this.errorContext()));
    }
    this.changed();
  }

  get contracts() {
    const c = this.state.config!;
    return {
      registry: { address: c.registry, abi: registryAbi },
      token: { address: c.token, abi: creditTokenAbi },
      market: { address: c.market, abi: energyMarketAbi },
      readings: { address: c.readings, abi: meterReadingsAbi },
    } as const;
  }
}

interface RawLog {
  address: Address;
  topics: Hex[];
  data: Hex;
  blockNumber: Hex;
  logIndex: Hex;
}

/** Credits an unsettled position of `v` locks (both sides). */
export function positionLock(v: SlotView, p: Position): bigint {
  let sum = 0n;
  if (p.bidWh) sum += lockFor('bid', p.bidWh, p.bidPricePerKWh, v.retailPerKWh, p.premiums);
  if (p.askWh) sum += lockFor('ask', p.askWh, p.askPricePerKWh, v.retailPerKWh, p.premiums);
  return sum;
}

/** The unmatched orders whose credits can be released now, and sentences for those that must wait. */
export interface ReclaimPlan {
  ready: Array<{ slot: bigint; locked: bigint }>;
  waiting: string[];
}

/** Why {@link App.reclaim} has nothing to do, in one sentence. */
export function reclaimRefusal(plan: ReclaimPlan): string {
  const base =
    'Nothing to reclaim: no order of yours is unmatched in a cleared slot whose settlement is open (orders still open get their credits back with Cancel; matched orders with Settle mine).';
  return plan.waiting.length ? `${base} Waiting: ${plan.waiting.join('; ')}.` : base;
}

export interface SendOpts {
  quiet?: boolean;
  nested?: boolean;
  /** Asked before the wallet opens; a sentence refuses the call. */
  guard?: () => string | undefined;
}

export interface ContractCall {
  address: Address;
  abi: readonly unknown[];
  functionName: string;
  args: readonly unknown[];
}
