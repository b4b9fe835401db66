import { describe, expect, it } from 'vitest';
import { BACKOFF_CAP_MS, backoffMs, judge } from '../../src/connection';

describe('reconnect backoff', () => {
  it('doubles from 1 s and stops at the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffMs(n))).toEqual([1000, 2000, 4000, 8000, 16000, 30000]);
    expect(backoffMs(100)).toBe(BACKOFF_CAP_MS);
    expect(backoffMs(0)).toBe(0);
  });
  it('asks a node that is down for an hour a few times a minute, not every second', () => {
    let t = 0;
    let n = 0;
    while (t < 3_600_000) t += backoffMs(++n);
    expect(n).toBeLessThan(130);
  });
});

describe('chain identity', () => {
  const known = { genesisHash: '0xaa', head: 872n };
  it('sees a new genesis, a head going back, or the same chain', () => {
    expect(judge(known, { genesisHash: '0xbb', head: 900n })).toBe('new-genesis');
    expect(judge(known, { genesisHash: '0xbb', head: 3n })).toBe('new-genesis');
    expect(judge(known, { genesisHash: '0xaa', head: 12n })).toBe('head-backwards');
    expect(judge(known, { genesisHash: '0xaa', head: 873n })).toBe('same');
    expect(judge(undefined, { genesisHash: '0xaa', head: 1n })).toBe('same');
  });
});
