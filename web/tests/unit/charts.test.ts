import { describe, expect, it } from 'vitest';
import { compactNumber, increaseSinceFirst, niceTicks } from '../../src/charts';

describe('chart axes', () => {
  it('picks round tick steps within the range', () => {
    expect(niceTicks(0, 100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0.08, 0.3)).toEqual([0.1, 0.15, 0.2, 0.25, 0.3]);
    expect(niceTicks(-300, 500)).toEqual([-200, 0, 200, 400]);
    expect(niceTicks(5, 5).length).toBeGreaterThan(0);
  });
});

describe('meter chart for large counters', () => {
  it('labels fit (no 8-digit Wh labels) and the line is the increase since the first reading', () => {
    expect(compactNumber(18_389_000)).toBe('18.4 M');
    expect(compactNumber(18_389)).toBe('18.4 k');
    expect(compactNumber(950)).toBe('950');
    expect(compactNumber(250_000)).toBe('250 k');
    for (const y of [0, 5, 999, 12_345, 18_389_000, 1e10]) expect(compactNumber(y).length).toBeLessThanOrEqual(7);
    expect(increaseSinceFirst([{ x: 1, y: 18_389_000 }, { x: 2, y: 18_389_450 }])).toEqual([{ x: 1, y: 0 }, { x: 2, y: 450 }]);
  });
});
