// The microgrid as the registry describes it (contracts/README.md, "Connection limits at the point of
// common coupling", "Islanded operation", "Microgrid reports"): the PCC's import and export limits, the
// islanded state with its price band, and the operator's report per delivered slot. Pure functions over
// decoded logs, so that the operator view can show the flow at the PCC against its limits, curtailment,
// shed load and the community assets' state without trusting any figure to be present or well-formed.

import { formatEnergy, formatFixed, formatPrice } from './format';

/** A PCC limit that is no limit (`Registry.NO_CONNECTION_LIMIT`, `type(uint32).max`, as at deployment);
 *  0 W is a real limit (a zero-export connection). */
export const NO_CONNECTION_LIMIT = 0xffffffff;

/** Whether a PCC limit limits anything. */
export const hasLimit = (w: number): boolean => w !== NO_CONNECTION_LIMIT;

/** How many of the most recent slots' reports the operator view keeps (a day of 15-minute slots). */
export const MICROGRID_SLOTS = 96;

/** One `MicrogridReported` report (IRegistry.MicrogridReport): energy in Wh over the slot, power in W. */
export interface MicrogridReport {
  importWh: number;
  exportWh: number;
  peakImportW: number;
  peakExportW: number;
  curtailedWh: number;
  shedWh: number;
  storageWh: number;
  storageCapacityWh: number;
  generatorWh: number;
}

const REPORT_FIELDS: Array<keyof MicrogridReport> = [
  'importWh',
  'exportWh',
  'peakImportW',
  'peakExportW',
  'curtailedWh',
  'shedWh',
  'storageWh',
  'storageCapacityWh',
  'generatorWh',
];

/** Where a log stands in the chain: of two logs about the same thing, the later one holds. */
export interface LogPosition {
  block: bigint;
  logIndex: number;
}

/** Whether `a` comes after `b` in the chain (anything comes after nothing). */
export function isLater(a: LogPosition, b: LogPosition | undefined): boolean {
  if (!b) return true;
  return a.block !== b.block ? a.block > b.block : a.logIndex > b.logIndex;
}

/** A slot's report and the log that brought it. */
export interface ReportRecord {
  slot: bigint;
  report: MicrogridReport;
  at: LogPosition;
}

/** The PCC's limits in W ({@link NO_CONNECTION_LIMIT} for none), read from the registry or from a `ConnectionLimitsSet`. */
export interface Limits {
  importW: number;
  exportW: number;
  at: LogPosition;
}

/** Whether the microgrid runs islanded, and its band (credit base units per kWh; 0 when connected). */
export interface Island {
  islanded: boolean;
  floorPerKWh: bigint;
  vollPerKWh: bigint;
  at: LogPosition;
}

const isUint32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

/** A report from a decoded log's `report` argument, or undefined when a field is missing or is not a
 *  `uint32` (a log the page cannot read is ignored, never shown half). */
export function parseReport(raw: unknown): MicrogridReport | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const r = raw as Record<string, unknown>;
  const out = {} as MicrogridReport;
  for (const f of REPORT_FIELDS) {
    const v = typeof r[f] === 'bigint' ? Number(r[f]) : r[f];
    if (!isUint32(v)) return undefined;
    out[f] = v;
  }
  return out;
}

/** Takes `rec` unless a report of the same slot from a later log is held (a later report for a slot
 *  replaces an earlier one, whatever order the page receives them in). Returns whether it changed. */
export function mergeReport(reports: Map<bigint, ReportRecord>, rec: ReportRecord): boolean {
  const held = reports.get(rec.slot);
  if (held && !isLater(rec.at, held.at)) return false;
  reports.set(rec.slot, rec);
  return true;
}

/** Forgets the report a log taken off the chain (`removed: true`) had brought. */
export function removeReport(reports: Map<bigint, ReportRecord>, slot: bigint, at: LogPosition): boolean {
  const held = reports.get(slot);
  if (!held || held.at.block !== at.block || held.at.logIndex !== at.logIndex) return false;
  reports.delete(slot);
  return true;
}

/** Keeps the reports of the `keep` most recent slots reported. */
export function trimReports(reports: Map<bigint, ReportRecord>, keep = MICROGRID_SLOTS): void {
  if (reports.size <= keep) return;
  const slots = [...reports.keys()].sort((a, b) => (a > b ? -1 : 1));
  for (const s of slots.slice(keep)) reports.delete(s);
}

/** The report of the most recent slot reported. */
export function latestReport(reports: Map<bigint, ReportRecord>): ReportRecord | undefined {
  let best: ReportRecord | undefined;
  for (const r of reports.values()) if (!best || r.slot > best.slot) best = r;
  return best;
}

/** Power: "850 W", "9,999 W", "30.00 kW" (kW from 10,000 W on, as {@link formatEnergy} does for Wh). */
export function formatPower(w: number): string {
  const v = BigInt(Math.round(w));
  return v < 10_000n ? `${formatFixed(v, 0, 0, 0)} W` : `${formatFixed(v, 3, 2, 2)} kW`;
}

/** A PCC limit: "30.00 kW", "0 W (none may flow)", or "no limit" for {@link NO_CONNECTION_LIMIT}. */
export function limitLabel(w: number): string {
  if (!hasLimit(w)) return 'no limit';
  return w === 0 ? '0 W (none may flow)' : formatPower(w);
}

/** "75 %" (whole percent; "<1 %" for a small non-zero share). */
export function formatPercent(part: number, whole: number): string {
  const p = (part / whole) * 100;
  return p > 0 && p < 1 ? '<1 %' : `${Math.round(p)} %`;
}

/** A peak against its limit: its text ("12.00 kW of 30.00 kW, 40 %", "12.00 kW, no limit" or
 *  "850 W of 0 W") and whether it exceeds the limit. */
export function peakAgainst(peakW: number, limitW: number): { text: string; over: boolean } {
  if (!hasLimit(limitW)) return { text: `${formatPower(peakW)}, no limit`, over: false };
  if (limitW === 0) return { text: `${formatPower(peakW)} of 0 W`, over: peakW > 0 };
  return { text: `${formatPower(peakW)} of ${formatPower(limitW)}, ${formatPercent(peakW, limitW)}`, over: peakW > limitW };
}

/** The community storage at a slot's end: "7,500 Wh of 10.00 kWh (75 %)", or none reported. */
export function storageText(r: MicrogridReport): { text: string; percent?: number } {
  if (r.storageCapacityWh === 0) return { text: 'no community storage' };
  const percent = (r.storageWh / r.storageCapacityWh) * 100;
  return {
    text: `${formatEnergy(r.storageWh)} of ${formatEnergy(r.storageCapacityWh)} (${formatPercent(r.storageWh, r.storageCapacityWh)})`,
    percent,
  };
}

/** What the flow at the PCC is called: grid import and export, or (islanded, no grid) energy drawn from
 *  and fed into the community's own assets (battery, genset, PV plant). */
export function flowLabels(islanded: boolean): { import: string; export: string } {
  return islanded
    ? { import: 'Drawn from community assets', export: 'Fed into community assets' }
    : { import: 'Import', export: 'Export' };
}

/** The island's price band: "0.080 … 0.335 credits/kWh". */
export function bandLabel(floorPerKWh: bigint, vollPerKWh: bigint, tick: bigint): string {
  return `${formatPrice(floorPerKWh, tick, false)} … ${formatPrice(vollPerKWh, tick)}`;
}

/** One row of the operator view's table of reported slots. */
export interface MicrogridRow {
  slot: bigint;
  importWh: number;
  exportWh: number;
  peakImport: { text: string; over: boolean };
  peakExport: { text: string; over: boolean };
  curtailedWh: number;
  shedWh: number;
  storage: string;
  generatorWh: number;
}

/** The table's rows, newest slot first, peaks against the current limits. */
export function microgridRows(reports: Map<bigint, ReportRecord>, limits: { importW: number; exportW: number }): MicrogridRow[] {
  return [...reports.values()]
    .sort((a, b) => (a.slot > b.slot ? -1 : a.slot < b.slot ? 1 : 0))
    .map(({ slot, report: r }) => ({
      slot,
      importWh: r.importWh,
      exportWh: r.exportWh,
      peakImport: peakAgainst(r.peakImportW, limits.importW),
      peakExport: peakAgainst(r.peakExportW, limits.exportW),
      curtailedWh: r.curtailedWh,
      shedWh: r.shedWh,
      storage: storageText(r).text,
      generatorWh: r.generatorWh,
    }));
}

/** Sums over the reports held. */
export interface MicrogridTotals {
  slots: number;
  importWh: number;
  exportWh: number;
  curtailedWh: number;
  shedWh: number;
  generatorWh: number;
  /** Slots whose peak exceeded the current limit (import, export). */
  overImport: number;
  overExport: number;
}

/** Totals over the reports held (at most {@link MICROGRID_SLOTS} × 2^32 Wh: exact in a number). */
export function microgridTotals(reports: Map<bigint, ReportRecord>, limits: { importW: number; exportW: number }): MicrogridTotals {
  const t: MicrogridTotals = { slots: 0, importWh: 0, exportWh: 0, curtailedWh: 0, shedWh: 0, generatorWh: 0, overImport: 0, overExport: 0 };
  for (const { report: r } of reports.values()) {
    t.slots += 1;
    t.importWh += r.importWh;
    t.exportWh += r.exportWh;
    t.curtailedWh += r.curtailedWh;
    t.shedWh += r.shedWh;
    t.generatorWh += r.generatorWh;
    if (peakAgainst(r.peakImportW, limits.importW).over) t.overImport += 1;
    if (peakAgainst(r.peakExportW, limits.exportW).over) t.overExport += 1;
  }
  return t;
}

/** The first block to search for the last `slots` slots' reports: `head` less the blocks those slots
 *  span at the block period seen between `past` and `head` (1 s when it cannot be told), at most
 *  `maxBlocks` back. */
export function reportWindowStart(
  head: { number: bigint; timestamp: bigint },
  past: { number: bigint; timestamp: bigint } | undefined,
  slotLength: bigint,
  slots: number,
  maxBlocks: bigint,
): bigint {
  const seconds = slotLength * BigInt(slots + 1);
  let blocks = seconds;
  if (past && head.number > past.number && head.timestamp > past.timestamp) {
    // ceil(seconds / period), period = Δt / Δn, rounded towards more blocks.
    blocks = (seconds * (head.number - past.number) + (head.timestamp - past.timestamp) - 1n) / (head.timestamp - past.timestamp);
  }
  if (blocks > maxBlocks) blocks = maxBlocks;
  return head.number > blocks ? head.number - blocks : 0n;
}
