// Tests of image IO: preprocessing, saving, grids (with and without labels) and clear errors for bad files.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { composeGrid, ImageError, loadImage, saveGrid, saveGridSync, saveImage, tensorToRgb, type GridOptions } from '../src/io/image.js';
import { CAP_H, GLYPH_H, textBitmap, textSize } from '../src/io/font.js';
import { Tensor } from '../src/tensor/tensor.js';

describe('image IO', () => {
  let dir: string;
  const file = (name: string) => path.join(dir, name);

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-img-'));
    const w = 48;
    const h = 40;
    const rgb = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.set([x * 5, y * 6, (x + y) % 2 ? 255 : 0], (y * w + x) * 3);
    await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file('photo.png'));
    await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).jpeg().toFile(file('photo.jpg'));
    await sharp(Buffer.alloc(10 * 10 * 4, 128), { raw: { width: 10, height: 10, channels: 4 } }).png().toFile(file('small.png'));
    await sharp(Buffer.alloc(20 * 20, 200), { raw: { width: 20, height: 20, channels: 1 } }).png().toFile(file('grey.png'));
    const png = fs.readFileSync(file('photo.png'));
    fs.writeFileSync(file('truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
    const jpg = fs.readFileSync(file('photo.jpg'));
    fs.writeFileSync(file('truncated.jpg'), jpg.subarray(0, Math.floor(jpg.length / 2)));
    fs.writeFileSync(file('notes.png'), 'this is not an image\n');
    fs.writeFileSync(file('empty.png'), '');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Writes a w×h RGB PNG whose pixel (x, y) is px(x, y). */
  async function writePng(name: string, w: number, h: number, px: (x: number, y: number) => [number, number, number]): Promise<string> {
    const rgb = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.set(px(x, y), (y * w + x) * 3);
    await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file(name));
    return file(name);
  }
  /** Channel c of a [1, 3, H, W] tensor as 8-bit values, row by row. */
  const plane8 = (t: Tensor, c: number): number[][] => {
    const [, , h, w] = t.shape as [number, number, number, number];
    return Array.from({ length: h }, (_, y) => Array.from({ length: w }, (_, x) => Math.round((t.data[(c * h + y) * w + x]! + 1) * 127.5)));
  };

  it('loads with resize of the shorter side and centre crop, in [-1, 1]', async () => {
    const t = await loadImage(file('photo.png'), { size: 32, multipleOf: 8 });
    assert.deepEqual(t.shape, [1, 3, 32, 32]);
    for (const v of t.data) assert.ok(v >= -1 && v <= 1);
    const jpg = await loadImage(file('photo.jpg'), { size: 16, multipleOf: 16 });
    assert.deepEqual(jpg.shape, [1, 3, 16, 16]);
  });

  it('centre crop, computed by hand: a 6×4 image at size 4 keeps columns 1–4 (no resampling at scale 1)', async () => {
    // Shorter side 4 = size, so the scale is 1 and the values pass unchanged; the crop drops one column on each side.
    const wide = await writePng('wide6x4.png', 6, 4, (x, y) => [x * 40, y * 50, 10 + 7 * x + y]);
    const t = await loadImage(wide, { size: 4, multipleOf: 4 });
    assert.deepEqual(t.shape, [1, 3, 4, 4]);
    const rows = (f: (x: number, y: number) => number) => Array.from({ length: 4 }, (_, y) => Array.from({ length: 4 }, (_, x) => f(x + 1, y)));
    assert.deepEqual(plane8(t, 0), rows((x) => x * 40));
    assert.deepEqual(plane8(t, 1), rows((_, y) => y * 50));
    assert.deepEqual(plane8(t, 2), rows((x, y) => 10 + 7 * x + y));
    // The same for a portrait image: rows 1–4 of 6.
    const tall = await writePng('tall4x6.png', 4, 6, (x, y) => [y * 40, x * 50, 10 + 7 * y + x]);
    const p = await loadImage(tall, { size: 4, multipleOf: 4 });
    assert.deepEqual(plane8(p, 0), Array.from({ length: 4 }, (_, y) => new Array(4).fill((y + 1) * 40)));
    assert.deepEqual(plane8(p, 1), Array.from({ length: 4 }, () => [0, 50, 100, 150]));
  });

  it('shorter side resized, then centre-cropped, computed by hand on a linear ramp (64×16 → 8×8)', async () => {
    // The image is constant down each column and linear across: R = 2x + 40, G = 230 − 2x, B = 77. Any
    // symmetric normalised resampling filter reproduces a linear function away from the borders, so
    // scaling the shorter side 16 → 8 (factor 1/2 on both axes) gives column j (centre at source
    // x = 2j + 0.5) the value R = 4j + 41; the 32-wide result is centre-cropped to columns 12–19.
    const ramp = await writePng('ramp64x16.png', 64, 16, (x) => [2 * x + 40, 230 - 2 * x, 77]);
    const t = await loadImage(ramp, { size: 8, multipleOf: 8 });
    assert.deepEqual(t.shape, [1, 3, 8, 8]);
    const cols = Array.from({ length: 8 }, (_, i) => 12 + i);
    const near = (got: number[][], want: number[], what: string) => {
      for (const row of got) row.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= 1, `${what} column ${i}: ${v}, expected ${want[i]} (row ${row.join(' ')})`));
    };
    near(plane8(t, 0), cols.map((j) => 4 * j + 41), 'R');
    near(plane8(t, 1), cols.map((j) => 229 - 4 * j), 'G');
    near(plane8(t, 2), new Array(8).fill(77), 'B');
    // Transposed (16×64): the crop is vertical, rows 12–19 of the 32-high result.
    const rampT = await writePng('ramp16x64.png', 16, 64, (_, y) => [2 * y + 40, 230 - 2 * y, 77]);
    const v = await loadImage(rampT, { size: 8, multipleOf: 8 });
    const r = plane8(v, 0);
    r.forEach((row, y) => row.forEach((val) => assert.ok(Math.abs(val - (4 * (12 + y) + 41)) <= 1, `portrait R row ${y}: ${row.join(' ')}`)));
  });

  it('converts grey and alpha images to RGB', async () => {
    const grey = await loadImage(file('grey.png'), { resize: false, multipleOf: 4 });
    assert.deepEqual(grey.shape, [1, 3, 20, 20]);
    assert.ok(Math.abs(grey.data[0]! - (200 / 255 - 0.5) / 0.5) < 1e-6);
    const alpha = await loadImage(file('small.png'), { size: 8, multipleOf: 8 });
    assert.deepEqual(alpha.shape, [1, 3, 8, 8]);
  });

  it('without resizing, crops to a multiple of the patch and rejects images smaller than one patch', async () => {
    const t = await loadImage(file('photo.png'), { resize: false, multipleOf: 16 });
    assert.deepEqual(t.shape, [1, 3, 32, 48]);
    // 40 rows → 32: rows 4–35 are kept (G = 6y), all 48 columns (R = 5x).
    assert.deepEqual(plane8(t, 1).map((row) => row[0]), Array.from({ length: 32 }, (_, y) => 6 * (y + 4)));
    assert.deepEqual(plane8(t, 0)[0], Array.from({ length: 48 }, (_, x) => 5 * x));
    // 48×40 with multiples of 12 → 48×36: rows 2–37.
    const t12 = await loadImage(file('photo.png'), { resize: false, multipleOf: 12 });
    assert.deepEqual(t12.shape, [1, 3, 36, 48]);
    assert.equal(plane8(t12, 1)[0]![0], 12);
    // Multiples of 20 crop the width too: 48×40 → 40×40, columns 4–43 (all 40 rows).
    const t20 = await loadImage(file('photo.png'), { resize: false, multipleOf: 20 });
    assert.deepEqual(t20.shape, [1, 3, 40, 40]);
    assert.deepEqual(plane8(t20, 0)[0], Array.from({ length: 40 }, (_, x) => 5 * (x + 4)));
    await assert.rejects(loadImage(file('small.png'), { resize: false, multipleOf: 16 }), (err: Error) => {
      assert.ok(err instanceof ImageError);
      assert.match(err.message, /small\.png: the image is 10×10 pixels, smaller than one 16×16 patch/);
      return true;
    });
  });

  it('names the file of truncated, non-image, empty and missing files', async () => {
    for (const name of ['truncated.png', 'truncated.jpg']) {
      await assert.rejects(loadImage(file(name)), (err: Error) => err instanceof ImageError && err.message.startsWith(file(name)) && /truncated or corrupt/.test(err.message));
    }
    await assert.rejects(loadImage(file('notes.png')), (err: Error) => err instanceof ImageError && err.message.includes('notes.png') && /not an image/.test(err.message));
    await assert.rejects(loadImage(file('empty.png')), /empty\.png: the file is empty/);
    await assert.rejects(loadImage(file('missing.png')), /missing\.png: no such file/);
  });

  it('saves images (clamped) and reads them back', async () => {
    const values = new Float32Array(3 * 4 * 5);
    for (let i = 0; i < values.length; i++) values[i] = (i / (values.length - 1)) * 3 - 1.5;
    const img = new Tensor(values, [1, 3, 4, 5]);
    await saveImage(img, file('out/saved.png'));
    const back = await loadImage(file('out/saved.png'), { resize: false, multipleOf: 1 });
    assert.deepEqual(back.shape, [1, 3, 4, 5]);
    for (let i = 0; i < values.length; i++) {
      const expected = Math.min(1, Math.max(-1, values[i]!));
      assert.ok(Math.abs(back.data[i]! - expected) <= 1 / 255 + 1e-6, `${i}`);
    }
    await assert.rejects(saveImage(img, file('x.bmp')), /cannot write '\.bmp' images/);
  });

  it('writes grids with gaps', async () => {
    const cell = Tensor.full([1, 3, 8, 8], -1);
    await saveGrid(
      [
        [cell, cell, cell],
        [cell, null, cell],
      ],
      file('grid.png'),
      { gap: 2 },
    );
    const meta = await sharp(file('grid.png')).metadata();
    assert.equal(meta.width, 2 + 3 * (8 + 2));
    assert.equal(meta.height, 2 + 2 * (8 + 2));
    const { data } = await sharp(file('grid.png')).raw().toBuffer({ resolveWithObject: true });
    assert.equal(data[0], 255); // gap: white
    assert.equal(data[(2 * 32 + 2) * 3], 0); // first cell: black
  });

  /** A [1, 3, h, w] image of one 8-bit colour. */
  const solid = (h: number, w: number, rgb: [number, number, number]): Tensor => {
    const plane = h * w;
    const f = new Float32Array(3 * plane);
    for (let c = 0; c < 3; c++) f.fill(rgb[c]! / 127.5 - 1, c * plane, (c + 1) * plane);
    return new Tensor(f, [1, 3, h, w]);
  };
  /** A [1, 3, h, w] image whose pixels all differ (so misplaced copies show). */
  const ramp = (h: number, w: number, seed: number): Tensor => {
    const f = new Float32Array(3 * h * w);
    for (let i = 0; i < f.length; i++) f[i] = (((i * 37 + seed * 11) % 255) / 127.5) - 1;
    return new Tensor(f, [1, 3, h, w]);
  };
  const DARK_GREY = [51, 51, 51];
  /** 1 where the pixel is the label colour, over the rectangle [x, x + w) × [y, y + h) of an RGB buffer. */
  const labelInk = (g: { data: Buffer; width: number }, x: number, y: number, w: number, h: number): Uint8Array => {
    const m = new Uint8Array(w * h);
    for (let v = 0; v < h; v++) {
      for (let u = 0; u < w; u++) {
        const o = ((y + v) * g.width + x + u) * 3;
        m[v * w + u] = g.data[o] === DARK_GREY[0] && g.data[o + 1] === DARK_GREY[1] && g.data[o + 2] === DARK_GREY[2] ? 1 : 0;
      }
    }
    return m;
  };
  const count = (m: Uint8Array): number => m.reduce((a, v) => a + v, 0);

  /** composeGrid as it was before labels existed (kept verbatim): an unlabelled grid must stay byte-identical. */
  function composeGridBeforeLabels(rows: Array<Array<Tensor | null>>, opts: { gap?: number; background?: [number, number, number] } = {}): { data: Buffer; width: number; height: number } {
    const gap = opts.gap ?? 2;
    const bg = opts.background ?? [255, 255, 255];
    const nCols = Math.max(0, ...rows.map((r) => r.length));
    if (rows.length === 0 || nCols === 0) throw new Error('saveGrid: no images');
    const colW = new Array<number>(nCols).fill(0);
    const rowH = new Array<number>(rows.length).fill(0);
    const cells = rows.map((row, r) =>
      row.map((img, c) => {
        if (img === null) return null;
        const rgb = tensorToRgb(img);
        colW[c] = Math.max(colW[c]!, rgb.width);
        rowH[r] = Math.max(rowH[r]!, rgb.height);
        return rgb;
      }),
    );
    const width = gap + colW.reduce((a, w) => a + w + gap, 0);
    const height = gap + rowH.reduce((a, h) => a + h + gap, 0);
    const out = Buffer.alloc(width * height * 3);
    for (let i = 0; i < width * height; i++) out.set(bg, i * 3);
    let y = gap;
    cells.forEach((row, r) => {
      let x = gap;
      row.forEach((cell, c) => {
        if (cell !== null) {
          const ox = x + Math.floor((colW[c]! - cell.width) / 2);
          const oy = y + Math.floor((rowH[r]! - cell.height) / 2);
          for (let yy = 0; yy < cell.height; yy++) {
            cell.data.copy(out, ((oy + yy) * width + ox) * 3, yy * cell.width * 3, (yy + 1) * cell.width * 3);
          }
        }
        x += colW[c]! + gap;
      });
      y += rowH[r]! + gap;
    });
    return { data: out, width, height };
  }

  it('an unlabelled grid is byte-identical to the grid before labels existed (empty labels included)', () => {
    const cases: Array<[Array<Array<Tensor | null>>, GridOptions]> = [
      [[[ramp(8, 8, 1), ramp(8, 8, 2), ramp(8, 8, 3)], [ramp(8, 8, 4), null, ramp(8, 8, 5)]], {}],
      // mixed sizes (smaller images centred), a short row, another gap and background
      [[[ramp(6, 10, 1), ramp(12, 4, 2)], [ramp(3, 3, 3)], [null, ramp(9, 7, 4)]], { gap: 3, background: [10, 20, 30] }],
      [[[ramp(5, 5, 1)]], { gap: 0 }],
      // label options that draw nothing: no label column, no header, no title
      [[[ramp(8, 8, 1), ramp(8, 8, 2)], [ramp(8, 8, 3), ramp(8, 8, 4)]], { rowLabels: [], colLabels: ['', ''], title: '', labelScale: 3 }],
    ];
    for (const [rows, opts] of cases) {
      const got = composeGrid(rows, opts);
      const want = composeGridBeforeLabels(rows, opts);
      assert.deepEqual([got.width, got.height], [want.width, want.height]);
      assert.ok(got.data.equals(want.data), `pixels differ for ${JSON.stringify(opts)}`);
    }
  });

  it('a labelled grid: label column on the left, title and column labels on top, text where it should be and none in the cells', () => {
    const red: [number, number, number] = [255, 0, 0];
    const cell = solid(16, 16, red);
    const rows = [[cell, cell, cell], [cell, null, cell]];
    const opts: GridOptions = { gap: 2, rowLabels: ['a', 'long label'], colLabels: ['x', 'yy', 'z'], title: 'Title' };
    const g = composeGrid(rows, opts);
    // Cells of 16 px ≤ 64 → font scale 1: text 9 px high (5×7 glyphs + 2 descender rows), 6 px advance.
    // pad between a label and its cells = max(gap, 3 × scale) = 3.
    const gap = 2;
    const pad = 3;
    const labelW = 10 * 6 - 1; // 'long label'
    const left = labelW + pad;
    const titleH = GLYPH_H + pad;
    const top = titleH + GLYPH_H + pad; // title row, then the column-label row
    assert.deepEqual([g.width, g.height], [left + gap + 3 * (16 + gap), top + gap + 2 * (16 + gap)]);
    const plain = composeGrid(rows, { gap: 2 });
    assert.deepEqual([g.width - plain.width, g.height - plain.height], [left, top]);

    // The cells are where the unlabelled grid has them, shifted by (left, top), and hold only their pixels.
    const cellX = (c: number) => left + gap + c * (16 + gap);
    const cellY = (r: number) => top + gap + r * (16 + gap);
    for (let r = 0; r < 2; r++) {
      for (let c = 0; c < 3; c++) {
        assert.equal(count(labelInk(g, cellX(c), cellY(r), 16, 16)), 0, `label ink in cell ${r},${c}`);
        if (rows[r]![c] === null) continue;
        for (let v = 0; v < 16; v++) for (let u = 0; u < 16; u++) {
          const o = ((cellY(r) + v) * g.width + cellX(c) + u) * 3;
          assert.deepEqual([...g.data.subarray(o, o + 3)], red, `cell ${r},${c} pixel ${u},${v}`);
        }
      }
    }
    // Every label pixel is in the label column or the header rows.
    let inkTotal = count(labelInk(g, 0, 0, g.width, g.height));
    const head = count(labelInk(g, 0, 0, g.width, top + gap));
    const side = count(labelInk(g, 0, top + gap, left + gap, g.height - top - gap));
    assert.equal(head + side, inkTotal);
    assert.ok(head > 0 && side > 0);

    // Each text is exactly the font's bitmap at its place: row labels right-aligned against the cells with their
    // capitals centred on the row, column labels centred on the column, the title centred on the picture.
    const expectText = (text: string, x: number, y: number) => {
      const bm = textBitmap(text, 1);
      assert.deepEqual(labelInk(g, x, y, bm.w, bm.h), bm.ink, `'${text}' at ${x},${y}`);
      inkTotal -= count(bm.ink);
    };
    const capTop = Math.floor((16 - CAP_H) / 2);
    expectText('a', gap + labelW - textSize('a', 1).w, cellY(0) + capTop);
    expectText('long label', gap, cellY(1) + capTop);
    ['x', 'yy', 'z'].forEach((l, c) => expectText(l, cellX(c) + Math.floor((16 - textSize(l, 1).w) / 2), gap + titleH));
    expectText('Title', Math.floor((g.width - textSize('Title', 1).w) / 2), gap);
    assert.equal(inkTotal, 0, 'no label ink elsewhere');
  });

  it('labels: font scale 2 for cells above 64 px, wide labels widen their column, short label lists, bad options', () => {
    const big = solid(80, 80, [0, 0, 255]);
    const g = composeGrid([[big, big]], { gap: 4, rowLabels: ['r'], colLabels: ['k=1'] });
    // scale 2: text 18 px high, pad max(4, 6) = 6
    assert.deepEqual([g.width, g.height], [textSize('r', 2).w + 6 + 4 + 2 * (80 + 4), 18 + 6 + 4 + 80 + 4]);
    const bm = textBitmap('k=1', 2);
    // the column starts after the label column ('r' 10 px + pad 6) and the gap (4)
    assert.deepEqual(labelInk(g, 10 + 6 + 4 + Math.floor((80 - bm.w) / 2), 4, bm.w, bm.h), bm.ink);
    // An explicit scale wins.
    const g3 = composeGrid([[big]], { colLabels: ['k'], labelScale: 3 });
    assert.equal(g3.height, 2 + 9 * 3 + Math.max(2, 9) + 80 + 2);
    // A label wider than its images widens the column to the label + 4 font pixels, so that neighbouring labels
    // stay apart (the image stays centred); fewer labels than columns is fine.
    const small = solid(8, 8, [0, 255, 0]);
    const w = composeGrid([[small, small]], { gap: 2, colLabels: ['sample 0'] });
    assert.equal(w.width, 2 + textSize('sample 0', 1).w + 4 + 2 + 8 + 2);
    const ws = composeGrid([[small, small]], { gap: 2, colLabels: ['sample 0', 'sample 1'] });
    const sx = 2 + Math.floor((textSize('sample 0', 1).w + 4 - textSize('sample 0', 1).w) / 2);
    assert.deepEqual(labelInk(ws, sx, 2, textSize('sample 0', 1).w, 9), textBitmap('sample 0', 1).ink);
    assert.deepEqual(labelInk(ws, sx + textSize('sample 0', 1).w + 4 + 2, 2, textSize('sample 1', 1).w, 9), textBitmap('sample 1', 1).ink);
    // A dark background gets light labels; an explicit colour is used as given.
    const dark = composeGrid([[small]], { background: [0, 0, 0], title: 'T' });
    const light = composeGrid([[small]], { background: [0, 0, 0], title: 'T', labelColor: [204, 204, 204] });
    assert.ok(dark.data.equals(light.data));
    assert.ok(dark.data.includes(Buffer.from([204, 204, 204])));
    assert.throws(() => composeGrid([[small]], { rowLabels: ['a', 'b'] }), /2 row labels for 1 rows/);
    assert.throws(() => composeGrid([[small]], { colLabels: ['a', 'b'] }), /2 column labels for 1 columns/);
    assert.throws(() => composeGrid([[small]], { title: 't', labelScale: 1.5 }), /labelScale must be a whole number/);
  });

  it('characters the font lacks are drawn as a placeholder (?), not a crash', () => {
    const cell = solid(16, 16, [200, 0, 0]);
    const odd = composeGrid([[cell]], { rowLabels: ['中x'], colLabels: ['😀'], title: 'ü\t' });
    const ask = composeGrid([[cell]], { rowLabels: ['?x'], colLabels: ['?'], title: '??' });
    assert.deepEqual([odd.width, odd.height], [ask.width, ask.height]);
    assert.ok(odd.data.equals(ask.data));
    assert.ok(count(labelInk(odd, 0, 0, odd.width, odd.height)) > 0);
  });

  it('saveGridSync writes a PNG that decodes to the same pixels as saveGrid (labelled and not)', async () => {
    const rows = [[ramp(12, 12, 1), ramp(12, 12, 2)], [ramp(12, 12, 3), null]];
    for (const [name, opts] of [
      ['plain', {}],
      ['labelled', { rowLabels: ['sneaker', 'bag #1'], colLabels: ['k=1', 'k=2'], title: 'first k = 2 tokens' }],
    ] as Array<[string, GridOptions]>) {
      await saveGrid(rows, file(`${name}-async.png`), opts);
      saveGridSync(rows, file(`${name}-sync.png`), opts);
      const a = await sharp(file(`${name}-async.png`)).raw().toBuffer({ resolveWithObject: true });
      const s = await sharp(file(`${name}-sync.png`)).raw().toBuffer({ resolveWithObject: true });
      const want = composeGrid(rows, opts);
      assert.deepEqual([s.info.width, s.info.height, s.info.channels], [want.width, want.height, 3]);
      assert.deepEqual([a.info.width, a.info.height, a.info.channels], [want.width, want.height, 3]);
      assert.ok(s.data.equals(a.data), `${name}: sync and async PNGs differ`);
      assert.ok(s.data.equals(want.data), `${name}: the PNG is not the composed grid`);
    }
  });
});
