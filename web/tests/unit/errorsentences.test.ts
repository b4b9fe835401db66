// Every custom error in the ABIs the page is built against (src/generated, from bindings/artifacts)
// must have its own sentence in src/errors.ts: an error added to the contracts without one fails here.
import { type AbiParameter, encodeErrorResult } from 'viem';
import { describe, expect, it } from 'vitest';
import { decodeRevertData, revertSentence } from '../../src/errors';
import { creditTokenAbi, energyMarketAbi, meterReadingsAbi, registryAbi } from '../../src/generated/abis';

const ctx = { tick: 10n ** 15n, account: '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266', grid: '0x0000000000000000000000000000000000000099' };
const ADDRESS = '0x00000000000000000000000000000000000000aa';

/** A plausible value for an ABI parameter (the sentence must not depend on it being meaningful). */
function sample(p: AbiParameter): unknown {
  const t = p.type;
  if (t === 'address') return ADDRESS;
  if (t === 'bool') return true;
  if (t === 'string') return 'x';
  if (t.startsWith('bytes')) return `0x${'11'.repeat(t === 'bytes' ? 4 : Number(t.slice(5)))}`;
  if (t === 'uint8') return 1;
  if (/^u?int(8|16|24|32|40|48)$/.test(t)) return 7;
  if (/^u?int\d*$/.test(t)) return 7n;
  throw new Error(`no sample for ABI type ${t} (${p.name})`);
}

const abis = { EnergyMarket: energyMarketAbi, Registry: registryAbi, CreditToken: creditTokenAbi, MeterReadings: meterReadingsAbi };
const errors = Object.entries(abis).flatMap(([contract, abi]) =>
  (abi as readonly { type: string; name?: string; inputs?: readonly AbiParameter[] }[])
    .filter((i) => i.type === 'error')
    .map((e) => ({ contract, name: e.name!, inputs: e.inputs ?? [], abi })),
);

describe('every custom error of the contracts has a sentence', () => {
  it('finds the errors in the generated ABIs', () => {
    // The four contracts declare dozens of errors; an empty list would make the check below vacuous.
    expect(errors.length).toBeGreaterThan(50);
    expect(errors.map((e) => e.name)).toContain('BeyondHorizon');
    expect(errors.map((e) => e.name)).toContain('ExceedsCapacity');
  });

  it.each(errors.map((e) => [`${e.contract}.${e.name}(${e.inputs.map((i) => i.type).join(',')})`, e] as const))(
    '%s',
    (_, e) => {
      const data = encodeErrorResult({ abi: e.abi as never, errorName: e.name as never, args: e.inputs.map(sample) as never });
      const decoded = decodeRevertData(data);
      expect(decoded?.name).toBe(e.name);
      const sentence = revertSentence(decoded!, ctx);
      // The fallback names the raw error: that is what a missing sentence looks like.
      expect(sentence).not.toMatch(/^The contract refused:/);
      expect(sentence).not.toContain(e.name);
      expect(sentence).toMatch(/^[A-Z].*[.!?]$/s);
    },
  );

  it('falls back to naming the error for an unknown one (what the check above catches)', () => {
    expect(revertSentence({ name: 'SomethingNew', args: [1n] }, ctx)).toBe('The contract refused: SomethingNew(1).');
  });

  it('does not take an Object method for a sentence when an error is named like one', () => {
    expect(revertSentence({ name: 'toString', args: [] }, ctx)).toBe('The contract refused: toString().');
    expect(revertSentence({ name: 'constructor', args: [2n] }, ctx)).toBe('The contract refused: constructor(2).');
  });
});
