import { describe, expect, it } from 'vitest';
import {
  type MicrogridReport,
  type ReportRecord,
  bandLabel,
  flowLabels,
  formatPower,
  isLater,
  latestReport,
  limitLabel,
  mergeReport,
  NO_CONNECTION_LIMIT,
  microgridRows,
  microgridTotals,
  parseReport,
  peakAgainst,
  removeReport,
  reportWindowStart,
  storageText,
  trimReports,
} from '../../src/microgrid';

const report = (over: Partial<MicrogridReport> = {}): MicrogridReport => ({
  importWh: 1_200,
  exportWh: 300,
  peakImportW: 24_000,
  peakExportW: 9_000,
  curtailedWh: 150,
  shedWh: 40,
  storageWh: 7_500,
  storageCapacityWh: 10_000,
  generatorWh: 500,
  ...over,
});
const rec = (slot: bigint, block: bigint, logIndex = 0, over: Partial<MicrogridReport> = {}): ReportRecord => ({
  slot,
  report: report(over),
  at: { block, logIndex },
});

describe('limits and labels', () => {
  it('says "no limit" for NO_CONNECTION_LIMIT, 0 W is a real limit, and formats power like energy (kW from 10,000 W)', () => {
    expect(limitLabel(NO_CONNECTION_LIMIT)).toBe('no limit');
    expect(limitLabel(2 ** 32 - 1)).toBe('no limit');
    expect(limitLabel(0)).toBe('0 W (none may flow)');
    expect(limitLabel(30_000)).toBe('30.00 kW');
    expect(limitLabel(15_000)).toBe('15.00 kW');
    expect(formatPower(850)).toBe('850 W');
    expect(formatPower(9_999)).toBe('9,999 W');
  });

  it('shows a peak against its limit, flags one over it, and never divides by a zero limit', () => {
    expect(peakAgainst(24_000, 30_000)).toEqual({ text: '24.00 kW of 30.00 kW, 80 %', over: false });
    expect(peakAgainst(18_000, 15_000)).toEqual({ text: '18.00 kW of 15.00 kW, 120 %', over: true });
    expect(peakAgainst(18_000, NO_CONNECTION_LIMIT)).toEqual({ text: '18.00 kW, no limit', over: false });
    expect(peakAgainst(850, 0)).toEqual({ text: '850 W of 0 W', over: true });
    expect(peakAgainst(0, 0)).toEqual({ text: '0 W of 0 W', over: false });
    expect(peakAgainst(10, 30_000).text).toBe('10 W of 30.00 kW, <1 %');
  });

  it('names the flow after the grid, or after the community assets when islanded', () => {
    expect(flowLabels(false)).toEqual({ import: 'Import', export: 'Export' });
    expect(flowLabels(true)).toEqual({ import: 'Drawn from community assets', export: 'Fed into community assets' });
  });

  it('shows the island band in credits/kWh at the price tick', () => {
    expect(bandLabel(80n * 10n ** 15n, 335n * 10n ** 15n, 10n ** 15n)).toBe('0.080 … 0.335 credits/kWh');
    expect(bandLabel(0n, 5n * 10n ** 18n, 20n * 10n ** 15n)).toBe('0.00 … 5.00 credits/kWh');
  });

  it('shows the storage in Wh and % of its capacity, or that there is none', () => {
    expect(storageText(report())).toEqual({ text: '7,500 Wh of 10.00 kWh (75 %)', percent: 75 });
    expect(storageText(report({ storageWh: 0, storageCapacityWh: 0 }))).toEqual({ text: 'no community storage' });
  });
});

describe('reports', () => {
  it('reads a decoded report and refuses one with a missing or out-of-range field', () => {
    expect(parseReport(report())).toEqual(report());
    expect(parseReport({ ...report(), shedWh: 5n })).toEqual(report({ shedWh: 5 }));
    const { shedWh: _, ...missing } = report();
    expect(parseReport(missing)).toBeUndefined();
    expect(parseReport({ ...report(), importWh: -1 })).toBeUndefined();
    expect(parseReport({ ...report(), importWh: 2 ** 32 })).toBeUndefined();
    expect(parseReport({ ...report(), importWh: 1.5 })).toBeUndefined();
    expect(parseReport(undefined)).toBeUndefined();
    expect(parseReport({})).toBeUndefined();
  });

  it('a later report for the same slot replaces an earlier one, whatever order they arrive in', () => {
    const m = new Map<bigint, ReportRecord>();
    expect(mergeReport(m, rec(7n, 100n, 0, { shedWh: 1 }))).toBe(true);
    expect(mergeReport(m, rec(7n, 105n, 2, { shedWh: 2 }))).toBe(true);
    expect(m.get(7n)!.report.shedWh).toBe(2);
    // The earlier log arrives late (history after the subscription): the later one stays.
    expect(mergeReport(m, rec(7n, 100n, 0, { shedWh: 1 }))).toBe(false);
    expect(mergeReport(m, rec(7n, 105n, 1, { shedWh: 3 }))).toBe(false);
    expect(mergeReport(m, rec(7n, 105n, 3, { shedWh: 4 }))).toBe(true);
    expect(m.get(7n)!.report.shedWh).toBe(4);
    expect(m.size).toBe(1);
    expect(isLater({ block: 1n, logIndex: 0 }, undefined)).toBe(true);
  });

  it('forgets a report whose log was removed, but not a later one of the slot', () => {
    const m = new Map<bigint, ReportRecord>([[7n, rec(7n, 105n, 2)]]);
    expect(removeReport(m, 7n, { block: 100n, logIndex: 0 })).toBe(false);
    expect(m.has(7n)).toBe(true);
    expect(removeReport(m, 7n, { block: 105n, logIndex: 2 })).toBe(true);
    expect(m.has(7n)).toBe(false);
  });

  it('keeps the most recent slots only', () => {
    const m = new Map<bigint, ReportRecord>();
    for (let s = 1n; s <= 100n; s++) mergeReport(m, rec(s, s));
    trimReports(m, 96);
    expect(m.size).toBe(96);
    expect(m.has(4n)).toBe(false);
    expect(m.has(5n)).toBe(true);
    expect(latestReport(m)!.slot).toBe(100n);
    expect(latestReport(new Map())).toBeUndefined();
  });

  it('builds the table rows newest first, peaks against the limits', () => {
    const m = new Map<bigint, ReportRecord>();
    mergeReport(m, rec(3n, 10n));
    mergeReport(m, rec(5n, 20n, 0, { peakExportW: 18_000, storageCapacityWh: 0, storageWh: 0 }));
    const rows = microgridRows(m, { importW: 30_000, exportW: 15_000 });
    expect(rows.map((r) => r.slot)).toEqual([5n, 3n]);
    expect(rows[0].peakExport).toEqual({ text: '18.00 kW of 15.00 kW, 120 %', over: true });
    expect(rows[0].storage).toBe('no community storage');
    expect(rows[1]).toMatchObject({
      importWh: 1_200,
      exportWh: 300,
      curtailedWh: 150,
      shedWh: 40,
      generatorWh: 500,
      storage: '7,500 Wh of 10.00 kWh (75 %)',
      peakImport: { text: '24.00 kW of 30.00 kW, 80 %', over: false },
    });
  });

  it('sums over the reports held, and counts peaks over the limits (none without a limit)', () => {
    const m = new Map<bigint, ReportRecord>();
    mergeReport(m, rec(3n, 10n));
    mergeReport(m, rec(4n, 11n, 0, { peakImportW: 31_000 }));
    mergeReport(m, rec(4n, 12n, 0, { peakImportW: 31_000, shedWh: 0 })); // a correction replaces
    expect(microgridTotals(m, { importW: 30_000, exportW: NO_CONNECTION_LIMIT })).toEqual({
      slots: 2,
      importWh: 2_400,
      exportWh: 600,
      curtailedWh: 300,
      shedWh: 40,
      generatorWh: 1_000,
      overImport: 1,
      overExport: 0,
    });
    const none = { importW: NO_CONNECTION_LIMIT, exportW: NO_CONNECTION_LIMIT };
    expect(microgridTotals(m, none).overImport).toBe(0);
    // A zero-export connection: every slot with an export peak is over it.
    expect(microgridTotals(m, { importW: NO_CONNECTION_LIMIT, exportW: 0 }).overExport).toBe(2);
    expect(microgridTotals(new Map(), none).slots).toBe(0);
  });
});

describe('history window', () => {
  it('spans the slots at the block period seen, bounded', () => {
    const head = { number: 50_000n, timestamp: 100_000n };
    // 1 s blocks, 900 s slots: 97 slots = 87,300 blocks, bounded to 20,000.
    expect(reportWindowStart(head, { number: 49_000n, timestamp: 99_000n }, 900n, 96, 20_000n)).toBe(30_000n);
    // 5 s slots: 485 blocks.
    expect(reportWindowStart(head, { number: 49_000n, timestamp: 99_000n }, 5n, 96, 100_000n)).toBe(49_515n);
    // 2 s blocks: half as many.
    expect(reportWindowStart(head, { number: 49_000n, timestamp: 98_000n }, 5n, 96, 100_000n)).toBe(50_000n - 243n);
    // Unknown period (no past block): 1 s; never below block 0.
    expect(reportWindowStart({ number: 100n, timestamp: 5n }, undefined, 5n, 96, 100_000n)).toBe(0n);
  });
});
