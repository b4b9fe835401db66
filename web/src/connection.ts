// Watching the node: is it answering, is it still the same chain? A small JSON-RPC poller over HTTP
// (POST to the page's origin) independent of the WebSocket, so that an outage, a restart with a new
// genesis or a head that goes backwards is noticed even when the subscription is silently dead.

/** Reconnect delays: 1 s, 2 s, 4 s ... capped at 30 s, so that a node that is down for an hour is
 *  asked 2 times a minute, not 3,600 times, and one that comes back is found within 30 s. */
export const BACKOFF_BASE_MS = 1_000;
export const BACKOFF_CAP_MS = 30_000;
/** While the node answers, it is asked this often (the WebSocket brings the heads in between). */
export const HEALTHY_POLL_MS = 3_000;
/** A request that takes longer counts as not answering. */
export const REQUEST_TIMEOUT_MS = 5_000;

export function backoffMs(failures: number, base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS): number {
  if (failures <= 0) return 0;
  return Math.min(cap, base * 2 ** Math.min(30, failures - 1));
}

export interface ChainIdentity {
  genesisHash: string;
  head: bigint;
}

/** What a fresh observation means for a page that last saw `known`. */
export type Verdict = 'same' | 'new-genesis' | 'head-backwards';

export function judge(known: ChainIdentity | undefined, seen: ChainIdentity): Verdict {
  if (!known) return 'same';
  if (known.genesisHash !== seen.genesisHash) return 'new-genesis';
  if (seen.head < known.head) return 'head-backwards';
  return 'same';
}

async function rpc(url: string, method: string, params: unknown[]): Promise<unknown> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
      signal: ctl.signal,
      cache: 'no-store',
    });
    const j = (await res.json()) as { result?: unknown; error?: { message: string } };
    if (j.error) throw new Error(j.error.message);
    return j.result;
  } finally {
    clearTimeout(timer);
  }
}

/** The chain as the node reports it now: genesis hash and head number. */
export async function observe(url: string): Promise<ChainIdentity> {
  const [genesis, head] = (await Promise.all([
    rpc(url, 'eth_getBlockByNumber', ['0x0', false]),
    rpc(url, 'eth_blockNumber', []),
  ])) as [{ hash: string } | null, string];
  if (!genesis?.hash) throw new Error('the node has no genesis block');
  return { genesisHash: genesis.hash, head: BigInt(head) };
}

export interface MonitorEvents {
  /** The node answered (after `downSince`, if it had stopped answering). */
  up(seen: ChainIdentity, wasDownSince: number | undefined): void;
  down(since: number): void;
}

/** Polls the node; on failures backs off exponentially (capped) and reports once per outage. */
export class NodeMonitor {
  failures = 0;
  downSince?: number;
  private timer?: number;
  private stopped = false;

  constructor(
    private readonly url: string,
    private readonly on: MonitorEvents,
  ) {}

  start(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) window.clearTimeout(this.timer);
  }

  /** Checks now (for example when the WebSocket reports an error). */
  poke(): void {
    if (this.failures === 0) this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer !== undefined) window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.check(), ms);
  }

  private async check(): Promise<void> {
    try {
      const seen = await observe(this.url);
      const was = this.downSince;
      this.failures = 0;
      this.downSince = undefined;
      this.on.up(seen, was);
      this.schedule(HEALTHY_POLL_MS);
    } catch {
      this.failures += 1;
      if (this.downSince === undefined) {
        this.downSince = Date.now();
        this.on.down(this.downSince);
      }
      this.schedule(backoffMs(this.failures));
    }
  }
}
