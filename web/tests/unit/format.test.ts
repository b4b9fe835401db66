import { describe, expect, it } from 'vitest';
import {
  costOf,
  formatCredits,
  formatDuration,
  formatEnergy,
  formatFixed,
  formatPrice,
  parseCredits,
  parseEnergyWh,
  parsePositiveCredits,
  parsePrice,
  priceDecimals,
} from '../../src/format';

const credit = 10n ** 18n;
const milli = 10n ** 15n;

describe('formatting', () => {
  it('formats every credit amount with the same 6 decimals, grouped, without raw base units', () => {
    expect(formatCredits(1000n * credit)).toBe('1,000.000000 credits');
    expect(formatCredits(12_345_678n * 10n ** 14n)).toBe('1,234.567800 credits');
    expect(formatCredits(42n * 10n ** 13n)).toBe('0.000420 credits');
    // The market's quantum: 1 Wh at the 0.001 credits/kWh tick is shown, not rounded away.
    expect(formatCredits(costOf(1n, milli))).toBe('0.000001 credits');
    expect(formatCredits(58_500n * 10n ** 12n, { unit: false })).toBe('0.058500');
    expect(formatCredits(0n)).toBe('0.000000 credits');
    expect(formatCredits(-5n * credit, { unit: false })).toBe('−5.000000');
    expect(formatCredits(5n * credit, { sign: true, unit: false })).toBe('+5.000000');
    // Finer than the last decimal (tokens moved outside the market): rounded half away from zero.
    expect(formatCredits(1_234_567_895n * 10n ** 11n)).toBe('123.456790 credits');
    expect(formatCredits(4n * 10n ** 11n)).toBe('0.000000 credits');
    expect(formatCredits(5n * 10n ** 11n)).toBe('0.000001 credits');
  });

  it('formats prices on the tick with their unit', () => {
    expect(priceDecimals(milli)).toBe(3);
    expect(formatPrice(150n * milli, milli)).toBe('0.150 credits/kWh');
    expect(formatPrice(300n * milli, milli, false)).toBe('0.300');
    expect(formatPrice(10n ** 17n, 10n ** 17n)).toBe('0.10 credits/kWh');
  });

  it('formats energy in Wh, and kWh from 10,000 Wh', () => {
    expect(formatEnergy(850n)).toBe('850 Wh');
    expect(formatEnergy(9_999n)).toBe('9,999 Wh');
    expect(formatEnergy(12_500n)).toBe('12.50 kWh');
    expect(formatEnergy(0)).toBe('0 Wh');
  });

  it('formats fixed-point values', () => {
    expect(formatFixed(1234567n, 3, 0, 3)).toBe('1,234.567');
    expect(formatFixed(1234500n, 3, 0, 3)).toBe('1,234.5');
    expect(formatFixed(1234500n, 3, 2, 3)).toBe('1,234.50');
  });

  it('formats durations', () => {
    expect(formatDuration(7)).toBe('7 s');
    expect(formatDuration(65)).toBe('1 m 05 s');
    expect(formatDuration(7380)).toBe('2 h 03 m');
    expect(formatDuration(-3)).toBe('0 s');
  });
});

describe('parsing', () => {
  it('parses credit amounts exactly', () => {
    expect(parseCredits('12.5')).toBe(125n * 10n ** 17n);
    expect(() => parseCredits('1,000')).toThrow(/comma: write decimals with a point \(1\.000\)/);
    expect(parseCredits('.001')).toBe(milli);
    expect(() => parseCredits('abc')).toThrow(/not a number/);
    // Amounts are typed at the precision they are shown with: 6 decimals at most (under, at, over).
    expect(parseCredits('0.00001')).toBe(10n ** 13n);
    expect(parseCredits('0.000001')).toBe(10n ** 12n);
    expect(() => parseCredits('0.0000001')).toThrow(/more than 6 decimals/);
    expect(parsePositiveCredits('0.000001')).toBe(10n ** 12n);
    expect(() => parsePositiveCredits('0.000000')).toThrow(/must be more than zero/);
  });

  it('checks prices against range and tick', () => {
    expect(parsePrice('0.15', milli, 80n * milli, 300n * milli)).toBe(150n * milli);
    expect(() => parsePrice('0.05', milli, 80n * milli, 300n * milli)).toThrow(/between the feed-in tariff 0.080/);
    expect(() => parsePrice('0.31', milli, 80n * milli, 300n * milli)).toThrow(/retail price 0.300/);
    expect(() => parsePrice('0.1505', milli, 80n * milli, 300n * milli)).toThrow(/price step 0.001/);
  });

  it('parses energy as whole Wh within uint32', () => {
    expect(() => parseEnergyWh('1,500')).toThrow(/comma/);
    expect(() => parseEnergyWh('1,5')).toThrow(/comma/);
    expect(() => parseEnergyWh('0')).toThrow(/at least 1 Wh/);
    expect(() => parseEnergyWh('1.5')).toThrow(/whole number/);
    expect(() => parseEnergyWh('4294967296')).toThrow(/too large/);
  });

  it('computes costs exactly', () => {
    expect(costOf(500n, 150n * milli)).toBe(75n * milli);
  });
});
