// The transaction tracker: every transaction the page asks the wallet to send stays listed with what
// it does, its hash, how long it has taken and its state. The state machine is pure (transition) so
// that it can be tested without a chain; the App feeds it what the wallet and the node report.

/** A transaction the node has not seen this long after the wallet returned its hash is flagged: blocks
 *  come every second or two and a broadcast transaction reaches the node's pool within a block, so 30 s
 *  (15 or more block periods) without a trace means the wallet most likely never broadcast it (or the
 *  node dropped it). It is long enough not to alarm anyone about a slow but healthy wallet. */
export const UNSEEN_AFTER_MS = 30_000;

export type TxState =
  | 'signing' // the wallet prompt is open
  | 'sent' // the wallet returned a hash; not in a block yet
  | 'included' // in block N, succeeded
  | 'failed' // reverted in block N, or the wallet/node refused it
  | 'rejected' // the user declined in the wallet: nothing was sent
  | 'replaced' // another transaction with the same nonce was included instead
  | 'dropped'; // the user stopped waiting for it

export interface TrackedTx {
  id: number;
  label: string;
  state: TxState;
  startedAt: number;
  hash?: `0x${string}`;
  sentAt?: number;
  /** The node has seen it (pool or block); its nonce once known. */
  seen: boolean;
  nonce?: number;
  /** Set once the node has not seen a sent transaction for UNSEEN_AFTER_MS. */
  unseen: boolean;
  block?: bigint;
  reason?: string;
  endedAt?: number;
}

export type TxEvent =
  | { type: 'hash'; hash: `0x${string}`; at: number }
  | { type: 'seen'; nonce: number }
  | { type: 'tick'; at: number }
  | { type: 'mined'; block: bigint; ok: boolean; reason?: string; at: number }
  | { type: 'rejected'; at: number }
  | { type: 'error'; reason: string; at: number }
  | { type: 'replaced'; at: number }
  | { type: 'stop'; at: number };

export const isFinal = (s: TxState): boolean => s !== 'signing' && s !== 'sent';

/** The next state of a tracked transaction; events that do not apply in a state change nothing. */
export function transition(tx: TrackedTx, ev: TxEvent): TrackedTx {
  if (isFinal(tx.state)) return tx;
  const end = (state: TxState, extra: Partial<TrackedTx> = {}): TrackedTx => ({ ...tx, state, endedAt: 'at' in ev ? ev.at : undefined, ...extra });
  switch (ev.type) {
    case 'hash':
      return tx.state === 'signing' ? { ...tx, state: 'sent', hash: ev.hash, sentAt: ev.at } : tx;
    case 'seen':
      return tx.state === 'sent' ? { ...tx, seen: true, unseen: false, nonce: ev.nonce } : tx;
    case 'tick':
      return tx.state === 'sent' && !tx.seen && !tx.unseen && tx.sentAt !== undefined && ev.at - tx.sentAt >= UNSEEN_AFTER_MS
        ? { ...tx, unseen: true }
        : tx;
    case 'mined':
      return tx.state === 'sent' ? end(ev.ok ? 'included' : 'failed', { block: ev.block, reason: ev.reason, seen: true, unseen: false }) : tx;
    case 'rejected':
      return tx.state === 'signing' ? end('rejected') : tx;
    case 'error':
      return end('failed', { reason: ev.reason });
    case 'replaced':
      return tx.state === 'sent' ? end('replaced') : tx;
    case 'stop':
      return end('dropped');
  }
}

/** The state in words, for the tracker list. */
export function describeTx(tx: TrackedTx): string {
  switch (tx.state) {
    case 'signing':
      return 'waiting for your wallet';
    case 'sent':
      return tx.unseen
        ? `the node has not seen this transaction after ${UNSEEN_AFTER_MS / 1000} s: your wallet may not have broadcast it`
        : tx.seen
          ? 'sent, waiting for a block'
          : 'sent, not seen by the node yet';
    case 'included':
      return `in block ${tx.block}`;
    case 'failed':
      return tx.block !== undefined ? `failed in block ${tx.block}: ${tx.reason ?? 'reverted'}` : `failed: ${tx.reason ?? 'unknown reason'}`;
    case 'rejected':
      return 'rejected in your wallet; nothing was sent';
    case 'replaced':
      return 'replaced by another transaction with the same nonce';
    case 'dropped':
      return 'you stopped waiting; if it is ever included, the page shows its effects';
  }
}

/** Fills `{hash}` in an explorer link template ("#/tx/{hash}", "https://explorer.example/tx/{hash}"). */
export function txLink(template: string, hash: string): string {
  return template.split('{hash}').join(hash);
}

/** The list of tracked transactions (newest first, at most `keep`), with change notification. */
export class Tracker {
  txs: TrackedTx[] = [];
  private nextId = 0;
  constructor(
    private readonly onChange: () => void,
    private readonly keep = 20,
  ) {}

  begin(label: string, at = Date.now()): number {
    const id = ++this.nextId;
    this.txs = [{ id, label, state: 'signing' as const, startedAt: at, seen: false, unseen: false }, ...this.txs].slice(0, this.keep);
    this.onChange();
    return id;
  }

  get(id: number): TrackedTx | undefined {
    return this.txs.find((t) => t.id === id);
  }

  apply(id: number, ev: TxEvent): TrackedTx | undefined {
    const i = this.txs.findIndex((t) => t.id === id);
    if (i < 0) return undefined;
    const next = transition(this.txs[i], ev);
    if (next !== this.txs[i]) {
      this.txs = this.txs.map((t, j) => (j === i ? next : t));
      this.onChange();
    }
    return next;
  }

  /** Removes finished entries from the list. */
  clearFinished(): void {
    this.txs = this.txs.filter((t) => !isFinal(t.state));
    this.onChange();
  }
}
