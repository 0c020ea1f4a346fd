// Line charts as PNG, drawn pixel by pixel: axes, ticks, grid, axis titles, a title, one or more panels
// (side by side or stacked), several series per panel (anti-aliased lines, optionally dashed, and a marker
// at each point), an optional log2 x axis, and a legend box per panel.
//
// Nothing here depends on fonts or an SVG renderer: text is drawn with the 5×9 bitmap font of src/io/font.ts (ASCII
// 32–126 plus a few Latin-1 / typographic characters: é è × – — · ≈ ± °; anything else draws as '?'),
// scaled by whole pixels, and lines are rasterised as distance-to-segment coverage (anti-aliased, any
// width) into an RGB buffer that sharp encodes as PNG. So a chart renders identically on a bare machine.
//
//   const png = await lineChartPng({
//     title: 'Generation vs k', xLabel: 'tokens k', xScale: 'log2',
//     panels: [
//       { yLabel: 'class accuracy %', series: [{ name: 'generated', xs: [1, 2, 4], ys: [60, 80, 91] }] },
//       { yLabel: 'Frechet distance', series: [{ name: 'real floor', xs: [1, 4], ys: [0.002, 0.002], dashed: true }] },
//     ],
//   });

import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { CAP_H, GLYPH_H, textBitmap, textSize } from '../io/font.js';

// The font lives in src/io/font.ts (image grids use it too); re-exported for existing callers.
export { hasGlyph, textBitmap, textSize } from '../io/font.js';

// ---------------------------------------------------------------------------------------------
// spec

export interface ChartSeries {
  name: string;
  xs: readonly number[];
  ys: readonly number[];
  /** dashed line (markers stay solid) */
  dashed?: boolean;
  /** '#rrggbb'; default: the palette colour given to this series name (same name → same colour in every panel) */
  color?: string;
}

export interface ChartPanel {
  /** title above this panel (optional) */
  title?: string;
  yLabel: string;
  /** x axis title of this panel; default the chart's xLabel */
  xLabel?: string;
  series: readonly ChartSeries[];
  /** fixed y range; default from the data, widened to round tick values */
  yMin?: number;
  yMax?: number;
}

export interface LineChartSpec {
  title: string;
  /** x axis title shared by the panels */
  xLabel?: string;
  /** 'log2': x must be > 0, ticks at powers of two (1, 2, 4, …) */
  xScale?: 'linear' | 'log2';
  /** the panels; or give `series` (+ `yLabel`) for a single-panel chart */
  panels?: readonly ChartPanel[];
  series?: readonly ChartSeries[];
  yLabel?: string;
  /** 'row' (default): panels side by side; 'column': stacked */
  layout?: 'row' | 'column';
  /** pixels (default 900 × 500) */
  width?: number;
  height?: number;
  /** size of one font pixel for labels (default 2; the title uses one more) */
  fontScale?: number;
}

/** A rectangle in pixels: [x0, x0 + w) × [y0, y0 + h). */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface PanelLayout {
  /** the plot area inside the axes */
  plot: Box;
  legend: Box;
  /** where the axis titles were drawn (the y title reads upwards); null without one */
  xTitle: Box | null;
  yTitle: Box | null;
  /** data → pixel (column / row, fractional) */
  px(x: number): number;
  py(y: number): number;
  /** the colour of each series, in order, as [r, g, b] */
  colors: [number, number, number][];
  /** the y range shown */
  yRange: [number, number];
}

export interface RenderedChart {
  width: number;
  height: number;
  /** RGB, row-major, 3 bytes per pixel */
  rgb: Uint8Array;
  layout: { title: Box; panels: PanelLayout[] };
}

// ---------------------------------------------------------------------------------------------
// raster

type RGB = [number, number, number];

const WHITE: RGB = [255, 255, 255];
const AXIS: RGB = [40, 40, 40];
const GRID: RGB = [225, 225, 225];
const TEXT: RGB = [20, 20, 20];

/** Tableau-10: distinct, colour-blind-friendlier than pure hues. */
const PALETTE: RGB[] = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
];

type MarkerShape = 'circle' | 'square' | 'diamond' | 'triangle' | 'down' | 'cross';
const MARKERS: MarkerShape[] = ['circle', 'square', 'diamond', 'triangle', 'down', 'cross'];

class Canvas {
  readonly rgb: Uint8Array;
  constructor(readonly width: number, readonly height: number) {
    this.rgb = new Uint8Array(width * height * 3).fill(255);
  }

  /** Blends colour c over pixel (x, y) with coverage a ∈ [0, 1]; pixels outside `clip` (if given) are skipped. */
  blend(x: number, y: number, c: RGB, a: number, clip?: Box): void {
    if (a <= 0 || x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    if (clip && (x < clip.x || y < clip.y || x >= clip.x + clip.w || y >= clip.y + clip.h)) return;
    const o = (y * this.width + x) * 3;
    if (a >= 1) {
      this.rgb[o] = c[0];
      this.rgb[o + 1] = c[1];
      this.rgb[o + 2] = c[2];
      return;
    }
    for (let k = 0; k < 3; k++) this.rgb[o + k] = Math.round(this.rgb[o + k] * (1 - a) + c[k] * a);
  }

  fillRect(x: number, y: number, w: number, h: number, c: RGB): void {
    for (let yy = Math.max(0, y); yy < Math.min(this.height, y + h); yy++) {
      for (let xx = Math.max(0, x); xx < Math.min(this.width, x + w); xx++) this.blend(xx, yy, c, 1);
    }
  }

  /** 1-pixel rectangle outline. */
  strokeRect(b: Box, c: RGB): void {
    this.fillRect(b.x, b.y, b.w, 1, c);
    this.fillRect(b.x, b.y + b.h - 1, b.w, 1, c);
    this.fillRect(b.x, b.y, 1, b.h, c);
    this.fillRect(b.x + b.w - 1, b.y, 1, b.h, c);
  }

  /** Text with its top-left corner at (x, y); `vertical` rotates it 90° counter-clockwise (reading upwards,
   * (x, y) is then the top-left of the rotated box). */
  text(x: number, y: number, text: string, s: number, c: RGB, vertical = false): void {
    const { w, h, ink } = textBitmap(text, s);
    for (let v = 0; v < h; v++) {
      for (let u = 0; u < w; u++) {
        if (!ink[v * w + u]) continue;
        if (vertical) this.blend(x + v, y + w - 1 - u, c, 1);
        else this.blend(x + u, y + v, c, 1);
      }
    }
  }
}

/** Coverage mask of a polyline (max over its segments), anti-aliased by distance to the segment. */
function polylineCoverage(mask: Float32Array, w: number, h: number, pts: [number, number][], width: number, dash: [number, number] | null): void {
  const hw = width / 2;
  let along = 0;
  for (let s = 0; s + 1 < pts.length; s++) {
    const [ax, ay] = pts[s];
    const [bx, by] = pts[s + 1];
    const dx = bx - ax;
    const dy = by - ay;
    const len2 = dx * dx + dy * dy;
    const len = Math.sqrt(len2);
    const x0 = Math.max(0, Math.floor(Math.min(ax, bx) - hw - 1));
    const x1 = Math.min(w - 1, Math.ceil(Math.max(ax, bx) + hw + 1));
    const y0 = Math.max(0, Math.floor(Math.min(ay, by) - hw - 1));
    const y1 = Math.min(h - 1, Math.ceil(Math.max(ay, by) + hw + 1));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const qx = x + 0.5 - ax;
        const qy = y + 0.5 - ay;
        const t = len2 > 0 ? Math.max(0, Math.min(1, (qx * dx + qy * dy) / len2)) : 0;
        const ex = qx - t * dx;
        const ey = qy - t * dy;
        const d = Math.sqrt(ex * ex + ey * ey);
        let cov = Math.max(0, Math.min(1, hw + 0.5 - d));
        if (cov > 0 && dash) {
          const pos = (along + t * len) % (dash[0] + dash[1]);
          if (pos >= dash[0]) cov = 0;
        }
        const o = y * w + x;
        if (cov > mask[o]) mask[o] = cov;
      }
    }
    along += len;
  }
}

function insideMarker(shape: MarkerShape, dx: number, dy: number, r: number): boolean {
  switch (shape) {
    case 'circle':
      return dx * dx + dy * dy <= r * r;
    case 'square':
      return Math.abs(dx) <= r * 0.85 && Math.abs(dy) <= r * 0.85;
    case 'diamond':
      return Math.abs(dx) + Math.abs(dy) <= r * 1.15;
    case 'triangle': // apex up
      return dy <= r * 0.8 && dy >= -r * 1.1 + 2 * Math.abs(dx) * 0.95 && Math.abs(dx) <= r * 1.1;
    case 'down':
      return dy >= -r * 0.8 && -dy >= -r * 1.1 + 2 * Math.abs(dx) * 0.95 && Math.abs(dx) <= r * 1.1;
    case 'cross':
      return (Math.abs(dx - dy) <= r * 0.45 || Math.abs(dx + dy) <= r * 0.45) && Math.abs(dx) <= r && Math.abs(dy) <= r;
  }
}

/** A filled marker centred at (cx, cy), 4×4 supersampled. */
function drawMarker(cv: Canvas, cx: number, cy: number, shape: MarkerShape, r: number, c: RGB, clip?: Box): void {
  for (let y = Math.floor(cy - r - 2); y <= Math.ceil(cy + r + 2); y++) {
    for (let x = Math.floor(cx - r - 2); x <= Math.ceil(cx + r + 2); x++) {
      let hit = 0;
      for (let sy = 0; sy < 4; sy++) for (let sx = 0; sx < 4; sx++) if (insideMarker(shape, x + (sx + 0.5) / 4 - cx, y + (sy + 0.5) / 4 - cy, r)) hit++;
      cv.blend(x, y, c, hit / 16, clip);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// scales and ticks

/** Round tick values covering [lo, hi], about `target` of them, step 1, 2 or 5 × 10^k. */
function niceTicks(lo: number, hi: number, target: number): { ticks: number[]; step: number; lo: number; hi: number } {
  if (hi <= lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * 0.999) ?? 10 * mag;
  const nlo = Math.floor(lo / step + 1e-9) * step;
  const nhi = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let k = 0; ; k++) {
    const v = nlo + k * step;
    if (v > nhi + step * 1e-6) break;
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return { ticks, step, lo: nlo, hi: nhi };
}

/** Labels for one axis's ticks, formatted alike: plain decimals with as many places as the step needs;
 * k / M / G suffixes from 10,000 up; exponents for steps below 1e-4. */
function tickLabels(ticks: number[], step: number): string[] {
  const big = Math.max(...ticks.map((v) => Math.abs(v)));
  if (step < 1e-4) {
    const digits = Math.max(0, Math.min(3, Math.floor(Math.log10(big || step)) - Math.floor(Math.log10(step))));
    return ticks.map((v) => (v === 0 ? '0' : v.toExponential(digits).replace('e+', 'e')));
  }
  const [unit, suffix] = big >= 1e9 ? [1e9, 'G'] : big >= 1e6 ? [1e6, 'M'] : big >= 1e4 ? [1e3, 'k'] : [1, ''];
  const decimals = Math.max(0, Math.ceil(-Math.log10(step / unit) - 1e-9));
  return ticks.map((v) => (v === 0 ? '0' : (v / unit).toFixed(decimals) + suffix));
}

function formatPow2(e: number): string {
  return e >= 0 ? String(2 ** e) : `1/${2 ** -e}`;
}

// ---------------------------------------------------------------------------------------------
// validation

function parseColor(c: string, where: string): RGB {
  const m = /^#([0-9a-f]{6})$/i.exec(c);
  if (!m) throw new Error(`${where}: color must be '#rrggbb', got '${c}'`);
  const v = parseInt(m[1], 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function panelsOf(spec: LineChartSpec): ChartPanel[] {
  if (spec.panels !== undefined && spec.series !== undefined) throw new Error('lineChart: give either panels or series, not both');
  if (spec.panels !== undefined) {
    if (!Array.isArray(spec.panels) || spec.panels.length === 0) throw new Error('lineChart: panels is empty');
    return [...spec.panels];
  }
  if (spec.series !== undefined) return [{ yLabel: spec.yLabel ?? '', xLabel: spec.xLabel, series: spec.series }];
  throw new Error('lineChart: the spec has neither panels nor series');
}

function validate(spec: LineChartSpec, panels: ChartPanel[]): void {
  if (typeof spec.title !== 'string') throw new Error('lineChart: title must be a string');
  if (spec.xScale !== undefined && spec.xScale !== 'linear' && spec.xScale !== 'log2') throw new Error(`lineChart: xScale must be 'linear' or 'log2', got '${String(spec.xScale)}'`);
  if (spec.layout !== undefined && spec.layout !== 'row' && spec.layout !== 'column') throw new Error(`lineChart: layout must be 'row' or 'column', got '${String(spec.layout)}'`);
  for (const [k, v, lo, hi] of [['width', spec.width, 200, 8000], ['height', spec.height, 150, 8000], ['fontScale', spec.fontScale, 1, 8]] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < lo || v > hi)) throw new Error(`lineChart: ${k} must be an integer in [${lo}, ${hi}], got ${v}`);
  }
  panels.forEach((p, pi) => {
    const where = `lineChart: panel ${pi + 1}${p.yLabel ? ` ('${p.yLabel}')` : ''}`;
    if (!Array.isArray(p.series) || p.series.length === 0) throw new Error(`${where}: no series to draw (series is empty)`);
    for (const [k, v] of [['yMin', p.yMin], ['yMax', p.yMax]] as const) if (v !== undefined && !Number.isFinite(v)) throw new Error(`${where}: ${k} is ${v}`);
    if (p.yMin !== undefined && p.yMax !== undefined && !(p.yMin < p.yMax)) throw new Error(`${where}: yMin ${p.yMin} must be below yMax ${p.yMax}`);
    for (const s of p.series) {
      const sw = `${where}, series '${s.name}'`;
      if (typeof s.name !== 'string') throw new Error(`${where}: a series has no name`);
      if (!s.xs || !s.ys || s.xs.length !== s.ys.length) throw new Error(`${sw}: xs has ${s.xs?.length} values but ys has ${s.ys?.length}; they must match`);
      if (s.xs.length === 0) throw new Error(`${sw}: no points (xs and ys are empty)`);
      for (let i = 0; i < s.xs.length; i++) {
        if (typeof s.xs[i] !== 'number' || !Number.isFinite(s.xs[i])) throw new Error(`${sw}: xs[${i}] is ${s.xs[i]}, not a finite number`);
        if (typeof s.ys[i] !== 'number' || !Number.isFinite(s.ys[i])) throw new Error(`${sw}: ys[${i}] is ${s.ys[i]}, not a finite number`);
        if (spec.xScale === 'log2' && s.xs[i] <= 0) throw new Error(`${sw}: xs[${i}] = ${s.xs[i]}, but a log2 x axis needs every x > 0`);
      }
      if (s.color !== undefined) parseColor(s.color, sw);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// rendering

/** Draws the chart into an RGB buffer and returns it with the layout (plot boxes, data → pixel maps),
 * which tests and callers can use to locate things. Throws on an invalid spec (see validate). */
export function renderLineChart(spec: LineChartSpec): RenderedChart {
  const panels = panelsOf(spec);
  validate(spec, panels);
  const W = spec.width ?? 900;
  const H = spec.height ?? 500;
  const fsc = spec.fontScale ?? 2;
  const log = spec.xScale === 'log2';
  const cv = new Canvas(W, H);
  const margin = 4 * fsc;

  // Colours and markers by series name, shared by all panels.
  const names: string[] = [];
  for (const p of panels) for (const s of p.series) if (!names.includes(s.name)) names.push(s.name);
  const colorOf = (s: ChartSeries): RGB => (s.color ? parseColor(s.color, s.name) : PALETTE[names.indexOf(s.name) % PALETTE.length]);
  const markerOf = (s: ChartSeries): MarkerShape => MARKERS[names.indexOf(s.name) % MARKERS.length];

  // Title (shrunk to fit).
  let ts = fsc + 1;
  while (ts > 1 && textSize(spec.title, ts).w > W - 2 * margin) ts--;
  const tsz = textSize(spec.title, ts);
  const titleBox: Box = { x: Math.round((W - tsz.w) / 2), y: margin, w: tsz.w, h: CAP_H * ts };
  cv.text(titleBox.x, titleBox.y, spec.title, ts, TEXT);
  const top = spec.title ? titleBox.y + tsz.h + 2 * fsc : margin;

  // Panel cells.
  const n = panels.length;
  const column = spec.layout === 'column';
  const gap = 6 * fsc;
  const cellW = column ? W - 2 * margin : Math.floor((W - 2 * margin - (n - 1) * gap) / n);
  const cellH = column ? Math.floor((H - top - margin - (n - 1) * gap) / n) : H - top - margin;

  const layouts: PanelLayout[] = [];
  panels.forEach((panel, pi) => {
    const cx = margin + (column ? 0 : pi * (cellW + gap));
    const cy = top + (column ? pi * (cellH + gap) : 0);

    // Data ranges.
    let xmin = Infinity;
    let xmax = -Infinity;
    let ymin = Infinity;
    let ymax = -Infinity;
    for (const s of panel.series) {
      for (let i = 0; i < s.xs.length; i++) {
        const x = log ? Math.log2(s.xs[i]) : s.xs[i];
        xmin = Math.min(xmin, x);
        xmax = Math.max(xmax, x);
        ymin = Math.min(ymin, s.ys[i]);
        ymax = Math.max(ymax, s.ys[i]);
      }
    }
    // x: a little air around the points (5% or a quarter octave).
    if (xmax === xmin) {
      xmin -= log ? 1 : Math.abs(xmin) * 0.1 || 1;
      xmax += log ? 1 : Math.abs(xmax) * 0.1 || 1;
    }
    const xpad = log ? 0.25 : (xmax - xmin) * 0.05;
    const xlo = xmin - xpad;
    const xhi = xmax + xpad;
    let xticks: { v: number; label: string }[];
    if (log) {
      const e0 = Math.ceil(xmin - 1e-9);
      const e1 = Math.floor(xmax + 1e-9);
      const every = Math.max(1, Math.ceil((e1 - e0 + 1) / 12));
      xticks = [];
      for (let e = e0; e <= e1; e += every) xticks.push({ v: e, label: formatPow2(e) });
    } else {
      const t = niceTicks(xmin, xmax, 6);
      const kept = t.ticks.filter((v) => v >= xlo - 1e-9 && v <= xhi + 1e-9);
      const labels = tickLabels(kept, t.step);
      xticks = kept.map((v, i) => ({ v, label: labels[i] }));
    }
    // Vertical layout: panel title, plot, x tick labels, x title.
    const lineH = GLYPH_H * fsc;
    const tick = 3 * fsc;
    const panelTitleH = panel.title ? lineH + 2 * fsc : 0;
    const xLabel = panel.xLabel ?? spec.xLabel ?? '';
    const plotY = cy + panelTitleH + Math.ceil(lineH / 2);
    const plotH = cy + cellH - plotY - (tick + fsc + lineH) - (xLabel ? lineH + fsc : 0);

    // y: data range widened to round ticks (or the panel's fixed range); about one tick per 22 font pixels.
    const yt = niceTicks(panel.yMin ?? ymin, panel.yMax ?? ymax, Math.max(2, Math.min(8, Math.floor(plotH / (22 * fsc)))));
    const ylo = panel.yMin ?? yt.lo;
    const yhi = panel.yMax ?? yt.hi;
    const ykept = yt.ticks.filter((v) => v >= ylo - 1e-9 * (yhi - ylo) && v <= yhi + 1e-9 * (yhi - ylo));
    const ylabels = tickLabels(ykept, yt.step);
    const yticks = ykept.map((v, i) => ({ v, label: ylabels[i] }));

    // Legend size: one row per series (line swatch with marker, then the name), in as many columns as the
    // plot height needs.
    const pad = 3 * fsc;
    const swatch = 12 * fsc;
    const rowH = lineH + 2 * fsc;
    const inset = 3 * fsc;
    const nameW = Math.max(...panel.series.map((s) => textSize(s.name, fsc).w));
    const colW = pad * 2 + swatch + nameW;
    const maxRows = Math.max(1, Math.floor((plotH - 2 * inset - 2 * pad + 2 * fsc) / rowH));
    const legendCols = Math.ceil(panel.series.length / maxRows);
    const legendRows = Math.ceil(panel.series.length / legendCols);
    const lw = pad + legendCols * colW;
    const lh = pad * 2 + rowH * legendRows - 2 * fsc;

    // Horizontal layout; the legend goes inside the plot, in the corner that covers the fewest points of
    // the lines, or, if every corner covers some and the plot stays wide enough, to the right of the plot.
    const yTitleW = panel.yLabel ? lineH + 2 * fsc : 0;
    const yTickW = Math.max(...yticks.map((t) => textSize(t.label, fsc).w));
    const lastXLabelHalf = Math.ceil(textSize(xticks[xticks.length - 1]?.label ?? '', fsc).w / 2);
    const lineW = Math.max(2, Math.round(fsc * 1.25));
    const markerR = 2 * fsc + 0.5;
    const place = (reserveRight: number) => {
      const plot: Box = { x: cx + yTitleW + yTickW + tick + 2 * fsc, y: plotY, w: 0, h: plotH };
      plot.w = cx + cellW - plot.x - Math.max(2 * fsc, lastXLabelHalf) - reserveRight;
      const px = (x: number): number => plot.x + (((log ? Math.log2(x) : x) - xlo) / (xhi - xlo)) * (plot.w - 1);
      const py = (y: number): number => plot.y + plot.h - 1 - ((y - ylo) / (yhi - ylo)) * (plot.h - 1);
      const samples: [number, number][] = [];
      for (const s of panel.series) {
        for (let i = 0; i < s.xs.length; i++) {
          const [x0, y0] = [px(s.xs[i]), py(s.ys[i])];
          samples.push([x0, y0]);
          if (i + 1 < s.xs.length) {
            const [x1, y1] = [px(s.xs[i + 1]), py(s.ys[i + 1])];
            const steps = Math.ceil(Math.hypot(x1 - x0, y1 - y0) / 2);
            for (let k = 1; k < steps; k++) samples.push([x0 + ((x1 - x0) * k) / steps, y0 + ((y1 - y0) * k) / steps]);
          }
        }
      }
      const hits = (b: Box): number => samples.filter(([x, y]) => x >= b.x - markerR && x <= b.x + b.w + markerR && y >= b.y - markerR && y <= b.y + b.h + markerR).length;
      let legend: Box | null = null;
      let best = Infinity;
      if (reserveRight > 0) {
        legend = { x: plot.x + plot.w + 2 * fsc + Math.max(2 * fsc, lastXLabelHalf), y: plot.y, w: lw, h: lh };
        best = 0;
      } else {
        for (const [right, bottom] of [[true, false], [false, false], [true, true], [false, true]]) {
          const b: Box = { x: right ? plot.x + plot.w - lw - inset : plot.x + inset, y: bottom ? plot.y + plot.h - lh - inset : plot.y + inset, w: lw, h: lh };
          const h = hits(b);
          if (h < best) {
            best = h;
            legend = b;
          }
        }
      }
      return { plot, px, py, legend: legend!, covered: best };
    };
    let placed = place(0);
    const outside = lw + 2 * fsc;
    if (placed.covered > 0 && lh <= plotH && cellW - outside - (placed.plot.x - cx) >= 0.45 * cellW) placed = place(outside);
    const { plot, px, py, legend } = placed;
    if (plot.w < 40 || plot.h < 30) throw new Error(`lineChart: panel ${pi + 1} has no room for a plot (${plot.w}×${plot.h} px); make the chart larger or the font smaller`);
    if (legend.w > plot.w + outside || legend.h > plot.h) throw new Error(`lineChart: panel ${pi + 1}'s legend (${panel.series.length} series) does not fit; make the chart larger, the font smaller, or the names shorter`);
    const pxRaw = (v: number): number => plot.x + ((v - xlo) / (xhi - xlo)) * (plot.w - 1);

    // Grid, axes, ticks, labels.
    for (const t of yticks) {
      const y = Math.round(py(t.v));
      cv.fillRect(plot.x, y, plot.w, 1, GRID);
      cv.fillRect(plot.x - tick, y, tick, 1, AXIS);
      const sz = textSize(t.label, fsc);
      cv.text(plot.x - tick - fsc - sz.w, y - Math.floor((CAP_H * fsc) / 2), t.label, fsc, TEXT);
    }
    for (const t of xticks) {
      const x = Math.round(pxRaw(t.v));
      cv.fillRect(x, plot.y, 1, plot.h, GRID);
      cv.fillRect(x, plot.y + plot.h, 1, tick, AXIS);
      const sz = textSize(t.label, fsc);
      cv.text(Math.round(x - sz.w / 2), plot.y + plot.h + tick + fsc, t.label, fsc, TEXT);
    }
    cv.strokeRect(plot, AXIS);
    if (panel.title) {
      const sz = textSize(panel.title, fsc);
      cv.text(Math.round(plot.x + (plot.w - sz.w) / 2), cy, panel.title, fsc, TEXT);
    }
    let xTitle: Box | null = null;
    let yTitle: Box | null = null;
    if (xLabel) {
      const sz = textSize(xLabel, fsc);
      xTitle = { x: Math.round(plot.x + (plot.w - sz.w) / 2), y: plot.y + plot.h + tick + fsc + lineH + fsc, w: sz.w, h: sz.h };
      cv.text(xTitle.x, xTitle.y, xLabel, fsc, TEXT);
    }
    if (panel.yLabel) {
      const sz = textSize(panel.yLabel, fsc);
      yTitle = { x: cx, y: Math.round(plot.y + (plot.h - sz.w) / 2), w: sz.h, h: sz.w };
      cv.text(yTitle.x, yTitle.y, panel.yLabel, fsc, TEXT, true);
    }

    // Series: lines (through a coverage mask, so joints do not double-blend), then markers, clipped to
    // the inside of the axes box.
    const inner: Box = { x: plot.x + 1, y: plot.y + 1, w: plot.w - 2, h: plot.h - 2 };
    const colors: RGB[] = panel.series.map(colorOf);
    panel.series.forEach((s, si) => {
      if (s.xs.length < 2) return;
      const pts = s.xs.map((x, i) => [px(x), py(s.ys[i])] as [number, number]);
      const mask = new Float32Array(W * H);
      polylineCoverage(mask, W, H, pts, lineW, s.dashed ? [6 * fsc, 4 * fsc] : null);
      for (let y = inner.y; y < inner.y + inner.h; y++) for (let x = inner.x; x < inner.x + inner.w; x++) if (mask[y * W + x] > 0) cv.blend(x, y, colors[si], mask[y * W + x]);
    });
    panel.series.forEach((s, si) => {
      for (let i = 0; i < s.xs.length; i++) drawMarker(cv, px(s.xs[i]), py(s.ys[i]), markerOf(s), markerR, colors[si], inner);
    });

    // Legend box.
    cv.fillRect(legend.x, legend.y, legend.w, legend.h, WHITE);
    cv.strokeRect(legend, [150, 150, 150]);
    panel.series.forEach((s, si) => {
      const lx = legend.x + pad + Math.floor(si / legendRows) * colW;
      const ry = legend.y + pad + (si % legendRows) * rowH;
      const my = ry + Math.floor((CAP_H * fsc) / 2);
      const mask = new Float32Array(W * H);
      polylineCoverage(mask, W, H, [[lx, my + 0.5], [lx + swatch, my + 0.5]], lineW, s.dashed ? [3 * fsc, 2 * fsc] : null);
      for (let y = my - lineW; y <= my + lineW + 1; y++) for (let x = lx - lineW; x <= lx + swatch + lineW; x++) if (x >= 0 && y >= 0 && x < W && y < H) cv.blend(x, y, colors[si], mask[y * W + x]);
      drawMarker(cv, lx + swatch / 2, my + 0.5, markerOf(s), markerR, colors[si]);
      cv.text(lx + swatch + pad, ry, s.name, fsc, TEXT);
    });

    layouts.push({ plot, legend, xTitle, yTitle, px, py, colors, yRange: [ylo, yhi] });
  });

  return { width: W, height: H, rgb: cv.rgb, layout: { title: titleBox, panels: layouts } };
}

/** The chart as PNG bytes. */
export async function lineChartPng(spec: LineChartSpec): Promise<Buffer> {
  const r = renderLineChart(spec);
  return sharp(Buffer.from(r.rgb.buffer, r.rgb.byteOffset, r.rgb.byteLength), { raw: { width: r.width, height: r.height, channels: 3 } }).png().toBuffer();
}

/** Writes the chart as a PNG file (creating its folder). */
export async function writeLineChart(file: string, spec: LineChartSpec): Promise<void> {
  const png = await lineChartPng(spec);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, png);
}
