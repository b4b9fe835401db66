import { BaseError, encodeErrorResult } from 'viem';
import { describe, expect, it } from 'vitest';
import { decodeRevertData, describeError } from '../../src/errors';
import { creditTokenAbi, energyMarketAbi, registryAbi } from '../../src/generated/abis';

const milli = 10n ** 15n;
const me = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
const ctx = { tick: milli, account: me, grid: '0x0000000000000000000000000000000000000099' };

class RevertLike extends BaseError {
  raw: `0x${string}`;
  constructor(raw: `0x${string}`) {
    super('execution reverted');
    this.raw = raw;
  }
}

describe('custom errors become sentences', () => {
  it('decodes market errors with formatted numbers', () => {
    const data = encodeErrorResult({
      abi: energyMarketAbi,
      errorName: 'PriceOutOfRange',
      args: [50n * milli, 80n * milli, 300n * milli],
    });
    expect(describeError(new RevertLike(data), ctx)).toBe(
      "The price 0.050 credits/kWh is outside this slot's range: from the feed-in tariff 0.080 credits/kWh to the retail price 0.300 credits/kWh.",
    );
    const ins = encodeErrorResult({
      abi: energyMarketAbi,
      errorName: 'InsufficientBalance',
      args: [me, 75n * milli, 10n * milli],
    });
    expect(describeError(new RevertLike(ins), ctx)).toMatch(/needs 0.075000 credits, but your account has 0.010000 credits free/);
  });

  it('explains the slot-opening and horizon rules (issue 14)', () => {
    const notOpen = encodeErrorResult({ abi: energyMarketAbi, errorName: 'SlotNotOpen', args: [42n] });
    expect(describeError(new RevertLike(notOpen), ctx)).toMatch(/^Slot 42 is not open for orders yet: the operator opens each slot/);
    const far = encodeErrorResult({
      abi: energyMarketAbi,
      errorName: 'BeyondHorizon',
      args: [500n, 1_700_000_000n, 86_400n],
    });
    expect(describeError(new RevertLike(far), ctx)).toMatch(/^Slot 500 is too far ahead: orders are taken only for slots starting within 24 h of now/);
    const bad = encodeErrorResult({ abi: registryAbi, errorName: 'InvalidOrderHorizon', args: [0n] });
    expect(describeError(new RevertLike(bad), ctx)).toBe('The order horizon must be more than zero seconds.');
  });

  it('explains the capacity bound and the imbalance price limits (issue 14, part 2)', () => {
    const cap = encodeErrorResult({ abi: energyMarketAbi, errorName: 'ExceedsCapacity', args: [me, 1, 7000n, 6250n] });
    expect(describeError(new RevertLike(cap), ctx)).toMatch(
      /^Your account may sell at most 6,250 Wh per slot \(its registered export power times the slot length\); this ask is for 7,000 Wh\./,
    );
    const bid = encodeErrorResult({ abi: energyMarketAbi, errorName: 'ExceedsCapacity', args: [me, 0, 10n, 0n] });
    expect(describeError(new RevertLike(bid), ctx)).toMatch(/may buy at most .* import power/);
    const imb = encodeErrorResult({ abi: registryAbi, errorName: 'InvalidImbalancePrices', args: [0n, milli] });
    expect(describeError(new RevertLike(imb), ctx)).toMatch(/^The imbalance prices are invalid: the short premium .* at least one price step/);
  });

  it('decodes errors of other contracts met through the market (token, registry)', () => {
    const tok = encodeErrorResult({
      abi: creditTokenAbi,
      errorName: 'ERC20InsufficientBalance',
      args: [me, 10n ** 18n, 2n * 10n ** 18n],
    });
    expect(describeError({ cause: { data: tok } }, ctx)).toBe(
      'Your account holds 1.000000 credits in the wallet, but 2.000000 credits are needed.',
    );
    const reg = encodeErrorResult({ abi: registryAbi, errorName: 'AlreadyRegistered', args: [me] });
    expect(decodeRevertData(reg)?.name).toBe('AlreadyRegistered');
  });

  it('names the missing role', () => {
    const data = encodeErrorResult({
      abi: registryAbi,
      errorName: 'AccessControlUnauthorizedAccount',
      args: [me, '0x97667070c54ef182b0f5858b034beac1b6f3089aa2d3188bb1e8929f4fa9b929'],
    });
    expect(describeError(new RevertLike(data), ctx)).toBe('Your account does not hold the operator role needed for this.');
  });

  it('explains wallet refusals', () => {
    expect(describeError({ code: 4001, message: 'User rejected the request.' }, ctx)).toMatch(/rejected the request/);
    expect(describeError({ cause: { code: 4902 } }, ctx)).toMatch(/Add network/);
    expect(describeError({ code: -32002 }, ctx)).toMatch(/already waiting/);
  });

  it('falls back to the first line of other messages', () => {
    expect(describeError(new Error('socket closed\nmore detail'), ctx)).toBe('socket closed');
  });
});
