// Tests of image IO: preprocessing, saving, grids and clear errors for bad files.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { ImageError, loadImage, saveGrid, saveImage } from '../src/io/image.js';
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
});
