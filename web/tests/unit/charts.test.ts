import { describe, expect, it } from 'vitest';
import { niceTicks } from '../../src/charts';

describe('chart axes', () => {
  it('picks round tick steps within the range', () => {
    expect(niceTicks(0, 100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0.08, 0.3)).toEqual([0.1, 0.15, 0.2, 0.25, 0.3]);
    expect(niceTicks(-300, 500)).toEqual([-200, 0, 200, 400]);
    expect(niceTicks(5, 5).length).toBeGreaterThan(0);
  });
});
