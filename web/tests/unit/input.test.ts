import { describe, expect, it } from 'vitest';
import { parseFixed, parsePositive } from '../../src/input';

describe('honest input', () => {
  it('reads a point decimal exactly', () => {
    expect(parseFixed('1.5', 3, 'energy')).toEqual({ ok: true, value: 1500n });
    expect(parseFixed(' .25 ', 2, 'price')).toEqual({ ok: true, value: 25n });
  });
  it('refuses a decimal comma instead of reading "1,5" as 15', () => {
    const r = parseFixed('1,5', 3, 'energy');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/has a comma: write decimals with a point \(1\.5\)/);
  });
  it('refuses thousands separators, signs and text', () => {
    expect(parseFixed('1 000', 0, 'energy').ok).toBe(false);
    expect(parseFixed('1_000', 0, 'energy').ok).toBe(false);
    expect(parseFixed('-1', 0, 'amount')).toEqual({ ok: false, error: 'The amount cannot be negative.' });
    expect(parseFixed('abc', 0, 'amount').ok).toBe(false);
  });
  it('requires a value: empty is refused, never defaulted', () => {
    expect(parseFixed('', 18, 'price')).toEqual({ ok: false, error: 'Enter the price; it is required.' });
    expect(parseFixed('   ', 18, 'price').ok).toBe(false);
  });
  it('refuses more decimals than the unit has', () => {
    expect(parseFixed('1.5', 0, 'slot')).toEqual({ ok: false, error: 'The slot must be a whole number.' });
    expect(parseFixed('0.0001', 3, 'price').ok).toBe(false);
  });
  it('refuses zero where zero does nothing', () => {
    expect(parsePositive('0', 18, 'amount')).toEqual({ ok: false, error: 'The amount must be more than zero.' });
    expect(parsePositive('0.000', 18, 'amount').ok).toBe(false);
    expect(parsePositive('0.1', 1, 'amount')).toEqual({ ok: true, value: 1n });
  });
});
