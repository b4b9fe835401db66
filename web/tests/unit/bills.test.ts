// The pure rules behind issue 18 items 5 and 8: the order horizon the form applies (the market's
// BeyondHorizon check) and the readings flags of a slot (what settlement's energyInSlot rests on).
import { describe, expect, it } from 'vitest';
import { lastSlotWithinHorizon, readingsFlag, slotEnd, slotStart, withinHorizon } from '../../src/market';

const s = { startTime: 1_000n, slotLength: 900n, gateClosure: 300n, gracePeriod: 300n };

describe('order horizon', () => {
  it('takes a slot starting at most `horizon` seconds from now (under, at, over)', () => {
    const slot = 10n;
    const start = slotStart(s, slot);
    const horizon = 3_600n;
    expect(withinHorizon(s, slot, start - horizon + 1n, horizon)).toBe(true); // under the limit
    expect(withinHorizon(s, slot, start - horizon, horizon)).toBe(true); // at it (the contract refuses only start > now + horizon)
    expect(withinHorizon(s, slot, start - horizon - 1n, horizon)).toBe(false); // over it
  });

  it('names the last slot within the horizon', () => {
    const now = slotStart(s, 5n);
    expect(lastSlotWithinHorizon(s, now, 3_600n)).toBe(9n); // slot 9 starts exactly at now + 3600
    expect(withinHorizon(s, 9n, now, 3_600n)).toBe(true);
    expect(withinHorizon(s, 10n, now, 3_600n)).toBe(false);
    expect(lastSlotWithinHorizon(s, 0n, 10n)).toBe(-1n); // before the market starts
  });
});

describe('readings flags', () => {
  const end = slotEnd(s, 3n);
  it('flags a participant without a meter', () => {
    expect(readingsFlag(false, false, undefined, end)).toEqual({ kind: 'no-meter' });
  });

  it('flags a slot without any reading inside it as missing, with the last reading if any', () => {
    expect(readingsFlag(true, false, undefined, end)).toEqual({ kind: 'missing', latestTimestamp: undefined });
    expect(readingsFlag(true, false, 0n, end)).toEqual({ kind: 'missing', latestTimestamp: undefined });
    expect(readingsFlag(true, false, end - 5_000n, end)).toEqual({ kind: 'missing', latestTimestamp: end - 5_000n });
  });

  it('flags readings that stop before the slot ends as late (under, at, over the end)', () => {
    expect(readingsFlag(true, true, end - 1n, end)).toEqual({ kind: 'late', latestTimestamp: end - 1n });
    expect(readingsFlag(true, true, end, end)).toEqual({ kind: 'ok' }); // a reading at the end closes the slot
    expect(readingsFlag(true, true, end + 1n, end)).toEqual({ kind: 'ok' });
    // A meter whose energy word for the slot was reused (energyKept false): 0 Wh, whatever the readings say.
    expect(readingsFlag(true, true, end + 1n, end, false)).toEqual({ kind: 'expired' });
    expect(readingsFlag(true, false, undefined, end, false)).toEqual({ kind: 'expired' });
    expect(readingsFlag(false, false, undefined, end, false)).toEqual({ kind: 'no-meter' });
  });
});
