import { describe, expect, it } from 'vitest';
import { Tracker, UNSEEN_AFTER_MS, describeTx, transition, txLink } from '../../src/tracker';

const H = `0x${'ab'.repeat(32)}` as const;

describe('transaction tracker', () => {
  it('goes signing → sent → in block N', () => {
    const t = new Tracker(() => {});
    const id = t.begin('Deposit 1.00 credits', 0);
    expect(t.get(id)!.state).toBe('signing');
    t.apply(id, { type: 'hash', hash: H, at: 1000 });
    expect(t.get(id)!.state).toBe('sent');
    t.apply(id, { type: 'seen', nonce: 4 });
    t.apply(id, { type: 'mined', block: 12n, ok: true, at: 3000 });
    expect(t.get(id)).toMatchObject({ state: 'included', block: 12n, hash: H, endedAt: 3000 });
    expect(describeTx(t.get(id)!)).toBe('in block 12');
  });
  it('flags a transaction the node has not seen after the stated time, and lets the user stop waiting', () => {
    const t = new Tracker(() => {});
    const id = t.begin('Bid', 0);
    t.apply(id, { type: 'hash', hash: H, at: 1000 });
    t.apply(id, { type: 'tick', at: 1000 + UNSEEN_AFTER_MS - 1 });
    expect(t.get(id)!.unseen).toBe(false);
    t.apply(id, { type: 'tick', at: 1000 + UNSEEN_AFTER_MS });
    expect(t.get(id)!.unseen).toBe(true);
    expect(describeTx(t.get(id)!)).toMatch(/not seen this transaction after 30 s/);
    t.apply(id, { type: 'stop', at: 40_000 });
    expect(t.get(id)!.state).toBe('dropped');
    // a final state does not move any more
    t.apply(id, { type: 'mined', block: 3n, ok: true, at: 50_000 });
    expect(t.get(id)!.state).toBe('dropped');
  });
  it('does not flag a transaction the node has seen', () => {
    const t = new Tracker(() => {});
    const id = t.begin('Bid', 0);
    t.apply(id, { type: 'hash', hash: H, at: 0 });
    t.apply(id, { type: 'seen', nonce: 1 });
    t.apply(id, { type: 'tick', at: 10 * UNSEEN_AFTER_MS });
    expect(t.get(id)!.unseen).toBe(false);
  });
  it('records rejections, failures with their reason, and replacements', () => {
    const base = { id: 1, label: 'x', startedAt: 0, seen: false, unseen: false } as const;
    expect(transition({ ...base, state: 'signing' }, { type: 'rejected', at: 1 }).state).toBe('rejected');
    const failed = transition({ ...base, state: 'sent', hash: H }, { type: 'mined', block: 9n, ok: false, reason: 'The gate of slot 21 has closed.', at: 2 });
    expect(describeTx(failed)).toBe('failed in block 9: The gate of slot 21 has closed.');
    expect(transition({ ...base, state: 'sent', hash: H }, { type: 'replaced', at: 3 }).state).toBe('replaced');
    // a hash cannot arrive for a rejected prompt
    expect(transition({ ...base, state: 'rejected' }, { type: 'hash', hash: H, at: 4 }).state).toBe('rejected');
  });
  it('fills the explorer link template', () => {
    expect(txLink('#/tx/{hash}', H)).toBe(`#/tx/${H}`);
    expect(txLink('https://explorer.example/tx/{hash}?n=1', H)).toBe(`https://explorer.example/tx/${H}?n=1`);
  });
});
