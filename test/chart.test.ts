// Tests of src/eval/chart.ts: the PNG decodes at the requested size; each series' colour is drawn at its
// data points and along its lines and nowhere outside the plot and legend; the title and legend text is
// drawn with the built-in bitmap font; log2 axes space powers of two evenly; bad specs throw clear errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { hasGlyph, lineChartPng, renderLineChart, textBitmap, textSize, writeLineChart, type Box, type LineChartSpec } from '../src/eval/chart.js';

const KS = [1, 2, 4, 8, 16, 32];

function exampleSpec(): LineChartSpec {
  return {
    title: 'Generation metrics vs k',
    xLabel: 'tokens k',
    xScale: 'log2',
    panels: [
      {
        yLabel: 'class accuracy %',
        series: [
          { name: 'generated', xs: KS, ys: [62, 74, 85, 90, 91, 91.5] },
          { name: 'reconstructions', xs: KS, ys: [75, 79, 83, 87, 89, 90] },
        ],
      },
      {
        yLabel: 'Frechet distance',
        series: [
          { name: 'generated', xs: KS, ys: [0.09, 0.05, 0.021, 0.012, 0.01, 0.0095] },
          { name: 'real floor', xs: KS, ys: KS.map(() => 0.0024), dashed: true },
        ],
      },
    ],
  };
}

async function decode(png: Buffer): Promise<{ width: number; height: number; px: Buffer }> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  return { width: info.width, height: info.height, px: data };
}

function rgbAt(img: { width: number; px: Buffer }, x: number, y: number): [number, number, number] {
  const o = (y * img.width + x) * 3;
  return [img.px[o], img.px[o + 1], img.px[o + 2]];
}

function close(a: [number, number, number], b: [number, number, number], tol = 30): boolean {
  return Math.abs(a[0] - b[0]) <= tol && Math.abs(a[1] - b[1]) <= tol && Math.abs(a[2] - b[2]) <= tol;
}

/** Whether some pixel within `r` of (x, y) has colour c. */
function colourNear(img: { width: number; height: number; px: Buffer }, x: number, y: number, c: [number, number, number], r = 2): boolean {
  for (let dy = -r; dy <= r; dy++) {
    for (let dx = -r; dx <= r; dx++) {
      const xx = Math.round(x) + dx;
      const yy = Math.round(y) + dy;
      if (xx >= 0 && yy >= 0 && xx < img.width && yy < img.height && close(rgbAt(img, xx, yy), c)) return true;
    }
  }
  return false;
}

function inBox(b: Box, x: number, y: number, margin = 0): boolean {
  return x >= b.x - margin && x < b.x + b.w + margin && y >= b.y - margin && y < b.y + b.h + margin;
}

/** Number of non-white pixels in a box. */
function ink(img: { width: number; px: Buffer }, b: Box): number {
  let n = 0;
  for (let y = b.y; y < b.y + b.h; y++) for (let x = b.x; x < b.x + b.w; x++) if (!close(rgbAt(img, x, y), [255, 255, 255], 0)) n++;
  return n;
}

test('PNG decodes at the requested size (default 900×500 and a custom size)', async () => {
  const png = await lineChartPng(exampleSpec());
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, 900);
  assert.equal(meta.height, 500);
  assert.equal(meta.channels, 3);
  const small = await sharp(await lineChartPng({ ...exampleSpec(), width: 640, height: 360, fontScale: 1 })).metadata();
  assert.deepEqual([small.width, small.height], [640, 360]);
});

test('each series colour is at its data points and along its lines, and only inside its plot or legend', async () => {
  const spec = exampleSpec();
  const r = renderLineChart(spec);
  const img = await decode(await lineChartPng(spec));
  assert.deepEqual(img.px, Buffer.from(r.rgb), 'the PNG holds exactly the rendered pixels');
  assert.equal(r.layout.panels.length, 2);
  // Side by side, not overlapping, both inside the image.
  const [p0, p1] = r.layout.panels.map((p) => p.plot);
  assert.ok(p0.x + p0.w < p1.x, `panels overlap: ${JSON.stringify([p0, p1])}`);
  for (const p of [p0, p1]) assert.ok(p.x > 0 && p.y > 0 && p.x + p.w < 900 && p.y + p.h < 500, `plot ${JSON.stringify(p)} inside the image`);
  // 'generated' has the same colour in both panels; different series differ.
  assert.deepEqual(r.layout.panels[0].colors[0], r.layout.panels[1].colors[0]);
  assert.notDeepEqual(r.layout.panels[0].colors[0], r.layout.panels[0].colors[1]);
  assert.notDeepEqual(r.layout.panels[1].colors[0], r.layout.panels[1].colors[1]);

  spec.panels!.forEach((panel, pi) => {
    const lay = r.layout.panels[pi];
    const plot = lay.plot;
    // Independent of the layout's own mapping: log2 x with a quarter octave of air on each side, y linear
    // over the y range shown, which must contain the data.
    const [ylo, yhi] = lay.yRange;
    const xo = (x: number): number => plot.x + ((Math.log2(x) + 0.25) / (Math.log2(32) + 0.5)) * (plot.w - 1);
    const yo = (y: number): number => plot.y + plot.h - 1 - ((y - ylo) / (yhi - ylo)) * (plot.h - 1);
    panel.series.forEach((s, si) => {
      const c = lay.colors[si];
      for (let i = 0; i < s.xs.length; i++) {
        assert.ok(ylo <= s.ys[i] && s.ys[i] <= yhi, `y range [${ylo}, ${yhi}] holds ${s.ys[i]}`);
        assert.ok(Math.abs(lay.px(s.xs[i]) - xo(s.xs[i])) < 1e-9 && Math.abs(lay.py(s.ys[i]) - yo(s.ys[i])) < 1e-9, 'data → pixel map');
        assert.ok(colourNear(img, xo(s.xs[i]), yo(s.ys[i]), c, 1), `panel ${pi} '${s.name}': colour ${c} at point ${i}`);
        // the marker: the colour 2–3 px from the point in all four directions (a 3 px line covers only two)
        for (const [dx, dy] of [[2.5, 0], [-2.5, 0], [0, 2.5], [0, -2.5]]) {
          assert.ok(close(rgbAt(img, Math.floor(xo(s.xs[i]) + dx), Math.floor(yo(s.ys[i]) + dy)), c, 40), `panel ${pi} '${s.name}': marker at point ${i}`);
        }
      }
      if (!s.dashed) {
        for (let i = 0; i + 1 < s.xs.length; i++) {
          const mx = (xo(s.xs[i]) + xo(s.xs[i + 1])) / 2;
          const my = (yo(s.ys[i]) + yo(s.ys[i + 1])) / 2;
          assert.ok(colourNear(img, mx, my, c, 1), `panel ${pi} '${s.name}': line between points ${i} and ${i + 1}`);
        }
      }
    });
    // Every pixel in a series colour lies inside this panel's plot or legend.
    for (const c of lay.colors) {
      let n = 0;
      for (let y = 0; y < 500; y++) {
        for (let x = 0; x < 900; x++) {
          if (!close(rgbAt(img, x, y), c, 6)) continue;
          const anyPanel = r.layout.panels.some((q) => q.colors.some((qc) => close(qc, c, 0)) && (inBox(q.plot, x, y) || inBox(q.legend, x, y)));
          assert.ok(anyPanel, `colour ${c} at (${x}, ${y}) outside every plot and legend`);
          n++;
        }
      }
      assert.ok(n > 50, `colour ${c}: only ${n} pixels`);
    }
  });
  // The dashed series has gaps: along its (horizontal) line some pixels are background.
  const lay = r.layout.panels[1];
  const y = Math.round(lay.py(0.0024));
  let on = 0;
  let off = 0;
  for (let x = Math.ceil(lay.px(1)) + 8; x < Math.floor(lay.px(32)) - 8; x++) {
    if (close(rgbAt(img, x, y), lay.colors[1], 40)) on++;
    else off++;
  }
  assert.ok(on > 20 && off > 20, `dashed line: ${on} drawn, ${off} gaps`);
});

test('title and legend text are drawn with the bitmap font', async () => {
  const spec = exampleSpec();
  const r = renderLineChart(spec);
  const img = await decode(await lineChartPng(spec));
  const title = r.layout.title;
  // The title's pixels are exactly the font's bitmap of the title at scale 3, in the text colour.
  const bm = textBitmap(spec.title, 3);
  assert.deepEqual([title.w, bm.w], [bm.w, textSize(spec.title, 3).w]);
  let mismatches = 0;
  for (let y = 0; y < bm.h; y++) {
    for (let x = 0; x < bm.w; x++) {
      const dark = rgbAt(img, title.x + x, title.y + y)[0] < 128;
      if (dark !== (bm.ink[y * bm.w + x] === 1)) mismatches++;
    }
  }
  assert.equal(mismatches, 0, 'title pixels match the font bitmap');
  assert.ok(ink(img, title) > 200, 'title has ink');
  assert.ok(Math.abs(title.x + title.w / 2 - 450) <= 1, 'title is centred');
  for (const lay of r.layout.panels) {
    const lg = lay.legend;
    assert.ok(inBox(lay.plot, lg.x, lg.y) && inBox(lay.plot, lg.x + lg.w - 1, lg.y + lg.h - 1), 'legend inside the plot');
    // each row: a swatch in the series colour and dark text pixels
    let textPixels = 0;
    for (let y = lg.y + 1; y < lg.y + lg.h - 1; y++) for (let x = lg.x + 1; x < lg.x + lg.w - 1; x++) if (close(rgbAt(img, x, y), [20, 20, 20], 10)) textPixels++;
    assert.ok(textPixels > 150, `legend text pixels: ${textPixels}`);
    for (const c of lay.colors) {
      let found = false;
      for (let y = lg.y; y < lg.y + lg.h && !found; y++) for (let x = lg.x; x < lg.x + lg.w && !found; x++) found = close(rgbAt(img, x, y), c, 6);
      assert.ok(found, `legend swatch in colour ${c}`);
    }
    assert.equal(ink(img, { x: lg.x + 1, y: lg.y + 1, w: 2, h: 2 }), 0, 'legend background is white');
  }
  // The legend covers none of the data points.
  spec.panels!.forEach((panel, pi) => {
    const lay = r.layout.panels[pi];
    for (const s of panel.series) for (let i = 0; i < s.xs.length; i++) assert.ok(!inBox(lay.legend, lay.px(s.xs[i]), lay.py(s.ys[i]), 5), `panel ${pi} legend covers '${s.name}' point ${i}`);
  });
  // Axis titles: the x title as the font draws it, the y title the same bitmap turned to read upwards.
  spec.panels!.forEach((panel, pi) => {
    const lay = r.layout.panels[pi];
    const xb = textBitmap('tokens k', 2);
    const yb = textBitmap(panel.yLabel, 2);
    assert.ok(lay.xTitle && lay.yTitle, 'axis titles drawn');
    assert.deepEqual([lay.xTitle.w, lay.xTitle.h, lay.yTitle.w, lay.yTitle.h], [xb.w, xb.h, yb.h, yb.w]);
    let bad = 0;
    for (let v = 0; v < xb.h; v++) for (let u = 0; u < xb.w; u++) if ((rgbAt(img, lay.xTitle.x + u, lay.xTitle.y + v)[0] < 128) !== (xb.ink[v * xb.w + u] === 1)) bad++;
    // text pixel (u along, v down) → image (x + v, y + w − 1 − u)
    for (let v = 0; v < yb.h; v++) for (let u = 0; u < yb.w; u++) if ((rgbAt(img, lay.yTitle.x + v, lay.yTitle.y + yb.w - 1 - u)[0] < 128) !== (yb.ink[v * yb.w + u] === 1)) bad++;
    assert.equal(bad, 0, `panel ${pi}: axis title pixels match the font`);
    assert.ok(lay.yTitle.x + lay.yTitle.w < lay.plot.x, 'y title left of the plot');
    assert.ok(lay.xTitle.y > lay.plot.y + lay.plot.h, 'x title below the plot');
  });
  // Changing only the title changes only pixels in the title band.
  const other = renderLineChart({ ...spec, title: 'Another title here' });
  let changedOutside = 0;
  for (let i = 0; i < r.rgb.length; i += 3) {
    const y = Math.floor(i / 3 / 900);
    if (r.rgb[i] !== other.rgb[i] && y >= title.y + title.h + 3 * 3) changedOutside++;
  }
  assert.equal(changedOutside, 0);
});

test('bitmap font: every printable ASCII character has its own glyph; unknown characters draw as ?', () => {
  const seen = new Map<string, string>();
  for (let code = 32; code <= 126; code++) {
    const ch = String.fromCharCode(code);
    assert.ok(hasGlyph(ch), `no glyph for '${ch}'`);
    const bm = textBitmap(ch, 1);
    assert.deepEqual([bm.w, bm.h], [5, 9]);
    const key = Array.from(bm.ink).join('');
    if (code > 32) assert.ok(bm.ink.some((v) => v === 1), `'${ch}' has no ink`);
    assert.ok(!seen.has(key), `'${ch}' looks like '${seen.get(key)}'`);
    seen.set(key, ch);
  }
  assert.deepEqual(textBitmap('\u4e2d', 1).ink, textBitmap('?', 1).ink);
  assert.equal(textBitmap('é', 1).ink.some((v) => v === 1), true);
  const two = textBitmap('AB', 2);
  assert.deepEqual([two.w, two.h], [(2 * 6 - 1) * 2, 18]);
});

test('log2 x axis spaces powers of two evenly; linear axis maps linearly; single-panel shortcut, stacked layout', () => {
  const r = renderLineChart(exampleSpec());
  const p = r.layout.panels[0];
  const d1 = p.px(2) - p.px(1);
  for (const k of [2, 4, 8, 16]) assert.ok(Math.abs(p.px(2 * k) - p.px(k) - d1) < 1e-9, `octave ${k}`);
  const lin = renderLineChart({ title: 'linear', yLabel: 'y', xLabel: 'x', series: [{ name: 'a', xs: [0, 10, 20], ys: [1, -1, 3] }] });
  const q = lin.layout.panels[0];
  assert.ok(Math.abs(q.px(10) - (q.px(0) + q.px(20)) / 2) < 1e-9, 'linear x: the midpoint maps to the middle');
  assert.ok(q.yRange[0] <= -1 && q.yRange[1] >= 3, `y range ${q.yRange} holds the data`);
  const stacked = renderLineChart({ ...exampleSpec(), layout: 'column' });
  const [a, b] = stacked.layout.panels.map((pp) => pp.plot);
  assert.ok(a.y + a.h < b.y, 'stacked panels one above the other');
  // fixed y range
  const fixed = renderLineChart({ title: 't', panels: [{ yLabel: 'acc', yMin: 0, yMax: 100, series: [{ name: 'a', xs: [1, 2], ys: [40, 60] }] }] });
  assert.deepEqual(fixed.layout.panels[0].yRange, [0, 100]);
});

test('a legend that would cover the data moves out of the way', () => {
  // Lines through every corner region of the plot: the legend goes to the right of the plot instead.
  const xs = [0, 1, 2, 3, 4];
  const r = renderLineChart({
    title: 'crowded',
    yLabel: 'v',
    series: [
      { name: 'up', xs, ys: [0, 1, 2, 3, 4] },
      { name: 'down', xs, ys: [4, 3, 2, 1, 0] },
    ],
  });
  const { plot, legend } = r.layout.panels[0];
  assert.ok(legend.x >= plot.x + plot.w, `legend ${JSON.stringify(legend)} right of plot ${JSON.stringify(plot)}`);
  assert.ok(legend.x + legend.w <= r.width, 'legend inside the image');
});

test('bad specs throw clear errors', () => {
  const base = exampleSpec();
  const one = (series: LineChartSpec['series']): LineChartSpec => ({ title: 't', yLabel: 'y', series });
  assert.throws(() => renderLineChart({ title: 't', panels: [] }), /panels is empty/);
  assert.throws(() => renderLineChart({ title: 't' }), /neither panels nor series/);
  assert.throws(() => renderLineChart({ title: 't', panels: [{ yLabel: 'acc', series: [] }] }), /panel 1 \('acc'\): no series to draw/);
  assert.throws(() => renderLineChart(one([{ name: 'a', xs: [], ys: [] }])), /series 'a': no points/);
  assert.throws(() => renderLineChart(one([{ name: 'a', xs: [1, 2], ys: [1, NaN] }])), /series 'a': ys\[1\] is NaN, not a finite number/);
  assert.throws(() => renderLineChart(one([{ name: 'a', xs: [Infinity], ys: [1] }])), /xs\[0\] is Infinity/);
  assert.throws(() => renderLineChart(one([{ name: 'a', xs: [1, 2, 3], ys: [1, 2] }])), /series 'a': xs has 3 values but ys has 2/);
  assert.throws(() => renderLineChart({ ...one([{ name: 'a', xs: [0, 1], ys: [1, 2] }]), xScale: 'log2' }), /series 'a': xs\[0\] = 0, but a log2 x axis needs every x > 0/);
  assert.throws(() => renderLineChart({ ...one([{ name: 'a', xs: [-2, 1], ys: [1, 2] }]), xScale: 'log2' }), /xs\[0\] = -2/);
  assert.throws(() => renderLineChart(one([{ name: 'a', xs: [1], ys: [1], color: 'red' }])), /color must be '#rrggbb'/);
  assert.throws(() => renderLineChart({ ...base, width: 50 }), /width must be an integer in \[200, 8000\]/);
  assert.throws(() => renderLineChart({ title: 't', panels: [{ yLabel: 'y', yMin: 5, yMax: 1, series: [{ name: 'a', xs: [1], ys: [1] }] }] }), /yMin 5 must be below yMax 1/);
  assert.throws(() => renderLineChart({ ...base, panels: base.panels, series: [] }), /either panels or series/);
});

test('writeLineChart writes a PNG file (creating its folder)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-chart-'));
  try {
    const file = path.join(dir, 'sub', 'chart.png');
    await writeLineChart(file, exampleSpec());
    const meta = await sharp(file).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 900, 500]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
