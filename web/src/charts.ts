// Small hand-drawn SVG charts (no charting library): a line chart and a diverging stacked bar chart.
// Both scale to their container's width through the SVG viewBox.

import { type TemplateResult, html, nothing, svg } from 'lit-html';

const H = 230;
const PAD = { left: 56, right: 14, top: 14, bottom: 34 };
/** The drawing width follows the window, so that the text stays readable on a phone. */
const width = (): number => (typeof window !== 'undefined' && window.innerWidth < 600 ? 380 : 600);

export interface LineSeries {
  name: string;
  className: string;
  points: { x: number; y: number }[];
  /** Draw dots at the points (sparse data). */
  dots?: boolean;
}

/** A "nice" axis: a round step (1, 2, 5 × 10^k) and a domain widened to whole steps. */
export function niceScale(min: number, max: number, count = 5): { min: number; max: number; ticks: number[] } {
  if (max === min) {
    const d = Math.abs(max) > 0 ? Math.abs(max) / 10 : 1;
    min -= d;
    max += d;
  }
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = lo; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toFixed(12)));
  return { min: lo, max: hi, ticks };
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** Tick positions for unix times: whole seconds, minutes, quarter hours... */
export function timeTicks(min: number, max: number, count = 4): number[] {
  const raw = (max - min) / Math.max(1, count);
  const step = TIME_STEPS.find((s) => s >= raw) ?? 86400 * Math.ceil(raw / 86400);
  const out: number[] = [];
  for (let t = Math.ceil(min / step) * step; t <= max; t += step) out.push(t);
  return out;
}

/** "Nice" tick values within [min, max] (1, 2, 5 × 10^k steps). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!isFinite(min) || !isFinite(max)) return [];
  if (max === min) {
    const d = Math.abs(max) > 0 ? Math.abs(max) / 10 : 1;
    min -= d;
    max += d;
  }
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toFixed(12)));
  return out;
}

function emptyChart(title: string, message: string): TemplateResult {
  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    <div class="chart-empty">${message}</div>
  </figure>`;
}

export interface RefLine {
  name: string;
  className: string;
  y: number;
}

export function lineChart(opts: {
  title: string;
  series: LineSeries[];
  /** Horizontal reference lines across the whole chart (dashed). */
  refs?: RefLine[];
  formatX: (x: number) => string;
  formatY: (y: number) => string;
  yLabel: string;
  empty: string;
  /** x values are unix times: ticks on whole seconds/minutes/hours. */
  timeAxis?: boolean;
  /** Widen a single-point x range by this much on each side. */
  xPad?: number;
  yFromZero?: boolean;
  testId?: string;
}): TemplateResult {
  const W = width();
  const data = opts.series.flatMap((s) => s.points);
  if (data.length === 0) return emptyChart(opts.title, opts.empty);
  const refs = opts.refs ?? [];
  let xmin = Math.min(...data.map((p) => p.x));
  let xmax = Math.max(...data.map((p) => p.x));
  if (xmin === xmax) {
    xmin -= opts.xPad ?? 1;
    xmax += opts.xPad ?? 1;
  }
  const ys = [...data.map((p) => p.y), ...refs.map((r) => r.y)];
  const ymin = opts.yFromZero ? Math.min(0, ...ys) : Math.min(...ys);
  const scale = niceScale(ymin, Math.max(...ys));
  const [y0, y1] = [scale.min, scale.max];
  const yt = scale.ticks;
  const sx = (x: number) => PAD.left + ((x - xmin) / (xmax - xmin)) * (W - PAD.left - PAD.right);
  const sy = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - PAD.top - PAD.bottom);
  const xt = (opts.timeAxis ? timeTicks(xmin, xmax, W < 500 ? 3 : 5) : niceTicks(xmin, xmax, 4)).filter(
    (x) => x >= xmin && x <= xmax,
  );
  return html`<figure class="chart" data-testid=${opts.testId ?? nothing}>
    <figcaption>${opts.title}</figcaption>
    <svg viewBox="0 0 ${W} ${H}" role="img" aria-label=${opts.title}>
      ${yt.map(
        (y) => svg`<line class="grid" x1=${PAD.left} x2=${W - PAD.right} y1=${sy(y)} y2=${sy(y)}></line>
          <text class="tick" x=${PAD.left - 6} y=${sy(y) + 4} text-anchor="end">${opts.formatY(y)}</text>`,
      )}
      ${xt.map(
        (x) => svg`<text class="tick" x=${sx(x)} y=${H - PAD.bottom + 16} text-anchor="middle">${opts.formatX(x)}</text>`,
      )}
      <text class="axis-label" x="12" y=${PAD.top + 4} transform="rotate(-90 12 ${PAD.top + 4})" text-anchor="end">${opts.yLabel}</text>
      ${refs.map(
        (r) => svg`<line class=${`line dashed ${r.className}`} x1=${PAD.left} x2=${W - PAD.right} y1=${sy(r.y)} y2=${sy(r.y)}></line>`,
      )}
      ${opts.series.map((s) => {
        const pts = [...s.points].sort((a, b) => a.x - b.x);
        const d = pts.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
        return svg`<path class=${`line ${s.className}`} d=${d}></path>
          ${s.dots ? pts.map((p) => svg`<circle class=${`dot ${s.className}`} cx=${sx(p.x)} cy=${sy(p.y)} r="3.5"></circle>`) : nothing}`;
      })}
    </svg>
    <ul class="legend">
      ${opts.series.map((s) => html`<li><span class=${`swatch ${s.className}`}></span>${s.name}</li>`)}
      ${refs.map((r) => html`<li><span class=${`swatch dashed ${r.className}`}></span>${r.name}</li>`)}
    </ul>
  </figure>`;
}

export interface BarSeries {
  name: string;
  className: string;
  /** Positive values stack upwards, negative downwards. One value per category. */
  values: number[];
}

export function barChart(opts: {
  title: string;
  categories: string[];
  series: BarSeries[];
  formatY: (y: number) => string;
  yLabel: string;
  empty: string;
  testId?: string;
}): TemplateResult {
  const W = width();
  const n = opts.categories.length;
  if (n === 0) return emptyChart(opts.title, opts.empty);
  const up = opts.categories.map((_, i) => opts.series.reduce((a, s) => a + Math.max(0, s.values[i] ?? 0), 0));
  const down = opts.categories.map((_, i) => opts.series.reduce((a, s) => a + Math.min(0, s.values[i] ?? 0), 0));
  const scale = niceScale(Math.min(0, ...down), Math.max(0, ...up, 1));
  const yt = scale.ticks;
  const [y0, y1] = [scale.min, scale.max];
  const sy = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - PAD.top - PAD.bottom);
  const band = (W - PAD.left - PAD.right) / n;
  const bw = Math.max(2, Math.min(36, band * 0.7));
  const labelEvery = Math.max(1, Math.ceil(n / (W < 500 ? 5 : 10)));
  return html`<figure class="chart" data-testid=${opts.testId ?? nothing}>
    <figcaption>${opts.title}</figcaption>
    <svg viewBox="0 0 ${W} ${H}" role="img" aria-label=${opts.title}>
      ${yt.map(
        (y) => svg`<line class=${y === 0 ? 'grid zero' : 'grid'} x1=${PAD.left} x2=${W - PAD.right} y1=${sy(y)} y2=${sy(y)}></line>
          <text class="tick" x=${PAD.left - 6} y=${sy(y) + 4} text-anchor="end">${opts.formatY(y)}</text>`,
      )}
      <text class="axis-label" x="12" y=${PAD.top + 4} transform="rotate(-90 12 ${PAD.top + 4})" text-anchor="end">${opts.yLabel}</text>
      ${opts.categories.map((cat, i) => {
        const cx = PAD.left + band * i + band / 2;
        let pos = 0;
        let neg = 0;
        const rects = opts.series.map((s) => {
          const v = s.values[i] ?? 0;
          if (v === 0) return nothing;
          const from = v > 0 ? pos : neg;
          const to = from + v;
          if (v > 0) pos = to;
          else neg = to;
          const top = Math.min(sy(from), sy(to));
          return svg`<rect class=${`bar ${s.className}`} x=${cx - bw / 2} width=${bw} y=${top} height=${Math.max(1, Math.abs(sy(from) - sy(to)))}><title>${s.name}: ${opts.formatY(v)}</title></rect>`;
        });
        return svg`${rects}${i % labelEvery === 0 ? svg`<text class="tick" x=${cx} y=${H - PAD.bottom + 16} text-anchor="middle">${cat}</text>` : nothing}`;
      })}
    </svg>
    <ul class="legend">
      ${opts.series.map((s) => html`<li><span class=${`swatch ${s.className}`}></span>${s.name}</li>`)}
    </ul>
  </figure>`;
}

/** Axis labels that fit the 56 px label column: "950", "12.5 k", "18,389 k" → "18.4 M". */
export function compactNumber(y: number): string {
  const a = Math.abs(y);
  const sign = y < 0 ? '−' : '';
  const fix = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1).replace(/\.0$/, '') : v.toFixed(2).replace(/\.?0+$/, ''));
  if (a >= 1e9) return `${sign}${fix(a / 1e9)} G`;
  if (a >= 1e6) return `${sign}${fix(a / 1e6)} M`;
  if (a >= 1e4) return `${sign}${fix(a / 1e3)} k`;
  return `${sign}${Math.round(a)}`;
}

/** Cumulative counter readings as the increase since the first one, so that a meter at 18,389 kWh
 *  draws a visible line instead of a flat one at the top of a huge axis. */
export function increaseSinceFirst(points: { x: number; y: number }[]): { x: number; y: number }[] {
  if (points.length === 0) return [];
  const base = points[0].y;
  return points.map((p) => ({ x: p.x, y: p.y - base }));
}
