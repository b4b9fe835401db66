import { describe, expect, it } from 'vitest';
import { PROMPT_MARGIN_S, closesSoon, gateOpen, safeDefaultSlot } from '../../src/slotchoice';
import { gateClosureTime } from '../../src/market';

// 5 s slots as in p2pe-sim: the gate closes 1 s before a slot starts.
const sim = { startTime: 1000n, slotLength: 5n, gateClosure: 1n, gracePeriod: 1n };
const quarter = { startTime: 0n, slotLength: 900n, gateClosure: 300n, gracePeriod: 300n };

describe('safe slot choice', () => {
  it('never defaults to a slot whose gate closes within the prompt margin', () => {
    for (let now = 1000n; now < 1100n; now++) {
      const slot = safeDefaultSlot(sim, now);
      expect(gateClosureTime(sim, slot) - now >= PROMPT_MARGIN_S).toBe(true);
      // ... and it is the first such slot
      expect(gateClosureTime(sim, slot - 1n) - now < PROMPT_MARGIN_S).toBe(true);
    }
  });
  it('takes the first open slot when its gate is far enough', () => {
    // at t=0, slot 1 starts at 900, its gate closes at 600: 600 s away.
    expect(safeDefaultSlot(quarter, 0n)).toBe(1n);
    // 30 s before slot 1's gate: too close, slot 2.
    expect(safeDefaultSlot(quarter, 570n)).toBe(2n);
  });
  it('knows when a gate is closed and when it closes soon', () => {
    expect(gateOpen(quarter, 1n, 599n)).toBe(true);
    expect(gateOpen(quarter, 1n, 600n)).toBe(false);
    expect(closesSoon(quarter, 1n, 590n)).toBe(true);
    expect(closesSoon(quarter, 1n, 500n)).toBe(false);
    expect(closesSoon(quarter, 1n, 600n)).toBe(false);
  });
});
