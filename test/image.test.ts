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

  it('loads with resize of the shorter side and centre crop, in [-1, 1]', async () => {
    const t = await loadImage(file('photo.png'), { size: 32, multipleOf: 8 });
    assert.deepEqual(t.shape, [1, 3, 32, 32]);
    for (const v of t.data) assert.ok(v >= -1 && v <= 1);
    const jpg = await loadImage(file('photo.jpg'), { size: 16, multipleOf: 16 });
    assert.deepEqual(jpg.shape, [1, 3, 16, 16]);
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
