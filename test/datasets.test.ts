// Tests of src/io/datasets.ts: IDX reading (real Fashion-MNIST and synthetic files), image folders,
// pad/resize views and the deterministic, resumable BatchLoader.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import {
  BatchLoader, ByteImageDataset, FASHION_MNIST_DIR, encodeIdx, loadFashionMnist, loadImageFolder, resizeOrPad, writeIdxGz,
  type ImageDataset, type Sample,
} from '../src/io/datasets.js';

const haveFmnist = fs.existsSync(path.join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'));

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-ds-'));
}

/** Writes a synthetic Fashion-MNIST-shaped test split: n images of h×w with pixel = (i + y + x) mod 256. */
function writeSyntheticSplit(dir: string, n: number, h: number, w: number): { pixels: Uint8Array; labels: Uint8Array } {
  const pixels = new Uint8Array(n * h * w);
  for (let i = 0; i < n; i++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) pixels[(i * h + y) * w + x] = (i * 7 + y * 3 + x) % 256;
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  writeIdxGz(path.join(dir, 't10k-images-idx3-ubyte.gz'), pixels, [n, h, w]);
  writeIdxGz(path.join(dir, 't10k-labels-idx1-ubyte.gz'), labels, [n]);
  return { pixels, labels };
}

describe('Fashion-MNIST IDX reader', () => {
  test('real test split: 10 000 images 1×28×28, labels 0..9 balanced, values in [-1, 1]', { skip: !haveFmnist && 'dataset not installed' }, () => {
    const ds = loadFashionMnist('test');
    assert.equal(ds.size, 10000);
    assert.deepEqual([ds.channels, ds.height, ds.width, ds.numClasses], [1, 28, 28, 10]);
    assert.equal(ds.classNames[9], 'Ankle boot');
    const counts = new Array(10).fill(0);
    for (let i = 0; i < ds.size; i++) counts[ds.get(i).label]++;
    assert.deepEqual(counts, new Array(10).fill(1000));
    const s = ds.get(0);
    assert.equal(s.image.length, 784);
    assert.equal(s.label, 9); // the first test image is an ankle boot
    assert.ok(s.image.every((v) => v >= -1 && v <= 1));
    assert.equal(Math.min(...s.image), -1);
  });

  test('real train split with a limit', { skip: !haveFmnist && 'dataset not installed' }, () => {
    const ds = loadFashionMnist('train', { limit: 100 });
    assert.equal(ds.size, 100);
    assert.throws(() => ds.get(100), /out of range/);
  });

  test('synthetic gzipped IDX files round-trip exactly; env override picks the folder', () => {
    const dir = tmpDir();
    try {
      const { pixels, labels } = writeSyntheticSplit(dir, 5, 4, 3);
      const ds = loadFashionMnist('test', { dir });
      assert.deepEqual([ds.size, ds.channels, ds.height, ds.width], [5, 1, 4, 3]);
      for (let i = 0; i < 5; i++) {
        const s = ds.get(i);
        assert.equal(s.label, labels[i]);
        for (let k = 0; k < 12; k++) assert.ok(Math.abs(s.image[k] - (pixels[i * 12 + k] / 255) * 2 + 1) < 1e-6);
      }
      const saved = process.env.FLEXTOK_FASHION_MNIST;
      process.env.FLEXTOK_FASHION_MNIST = dir;
      try {
        assert.equal(loadFashionMnist('test', { limit: 2 }).size, 2);
      } finally {
        if (saved === undefined) delete process.env.FLEXTOK_FASHION_MNIST;
        else process.env.FLEXTOK_FASHION_MNIST = saved;
      }
      // Uncompressed files are accepted too.
      const plain = tmpDir();
      fs.writeFileSync(path.join(plain, 't10k-images-idx3-ubyte'), encodeIdx(pixels, [5, 4, 3]));
      fs.writeFileSync(path.join(plain, 't10k-labels-idx1-ubyte'), encodeIdx(labels, [5]));
      assert.equal(loadFashionMnist('test', { dir: plain }).size, 5);
      fs.rmSync(plain, { recursive: true, force: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('bad magic, wrong sizes, count mismatch and a missing folder give clear errors', () => {
    const dir = tmpDir();
    try {
      writeSyntheticSplit(dir, 3, 2, 2);
      const images = path.join(dir, 't10k-images-idx3-ubyte.gz');
      const good = fs.readFileSync(images);
      const bad = encodeIdx(new Uint8Array(12), [3, 2, 2]);
      bad.writeUInt32BE(0x00000d03, 0); // float type instead of unsigned byte
      fs.writeFileSync(images, zlib.gzipSync(bad));
      assert.throws(() => loadFashionMnist('test', { dir }), (e: Error) => e.message.includes(images) && /bad IDX magic 0x00000d03/.test(e.message));
      const short = encodeIdx(new Uint8Array(12), [3, 2, 2]).subarray(0, 20);
      fs.writeFileSync(images, zlib.gzipSync(short));
      assert.throws(() => loadFashionMnist('test', { dir }), /header says \[3, 2, 2\] = 12 bytes of data but the file has 4/);
      fs.writeFileSync(images, Buffer.from('not gzip at all'));
      assert.throws(() => loadFashionMnist('test', { dir }), /cannot decompress/);
      fs.writeFileSync(images, good);
      writeIdxGz(path.join(dir, 't10k-labels-idx1-ubyte.gz'), new Uint8Array(4), [4]);
      assert.throws(() => loadFashionMnist('test', { dir }), /3 images but 4 labels/);
      writeIdxGz(path.join(dir, 't10k-labels-idx1-ubyte.gz'), Uint8Array.from([0, 1, 10]), [3]);
      assert.throws(() => loadFashionMnist('test', { dir }), /label 10 at index 2 is out of range/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const missing = path.join(os.tmpdir(), 'flextok-no-such-dataset');
    assert.throws(
      () => loadFashionMnist('train', { dir: missing }),
      (e: Error) => e.message.includes(path.join(missing, 'train-images-idx3-ubyte.gz')) && e.message.includes('apt-get install dataset-fashion-mnist'),
    );
  });
});

describe('image folders', () => {
  let dir = '';
  before(async () => {
    dir = tmpDir();
    fs.mkdirSync(path.join(dir, 'bright'));
    fs.mkdirSync(path.join(dir, 'dark'));
    const solid = (v: number, w: number, h: number) => sharp({ create: { width: w, height: h, channels: 3, background: { r: v, g: v, b: v } } });
    await solid(255, 20, 10).png().toFile(path.join(dir, 'bright', 'a.png'));
    await solid(200, 8, 8).jpeg().toFile(path.join(dir, 'bright', 'b.jpg'));
    await solid(0, 10, 20).webp({ lossless: true }).toFile(path.join(dir, 'dark', 'c.webp'));
    fs.writeFileSync(path.join(dir, 'dark', 'corrupt.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4, 5]));
    fs.writeFileSync(path.join(dir, 'dark', 'notes.txt'), 'not an image');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function captureWarnings<T>(fn: () => Promise<T>): Promise<{ value: T; warnings: string[] }> {
    const warnings: string[] = [];
    const orig = console.warn;
    console.warn = (...args: unknown[]) => void warnings.push(args.map(String).join(' '));
    try {
      return { value: await fn(), warnings };
    } finally {
      console.warn = orig;
    }
  }

  test('class sub-folders become labels; a corrupt file is named, skipped and counted', async () => {
    const { value: ds, warnings } = await captureWarnings(() => loadImageFolder(dir, { size: 16, channels: 1 }));
    assert.deepEqual(ds.classNames, ['bright', 'dark']);
    assert.equal(ds.size, 3);
    assert.deepEqual([ds.channels, ds.height, ds.width], [1, 16, 16]);
    assert.deepEqual([0, 1, 2].map((i) => ds.get(i).label), [0, 0, 1]);
    assert.ok(Math.abs(ds.get(0).image[0] - 1) < 1e-6);
    assert.ok(Math.abs(ds.get(2).image[100] + 1) < 1e-6);
    assert.equal(warnings.length, 2);
    assert.ok(warnings[0].includes(path.join(dir, 'dark', 'corrupt.png')));
    assert.match(warnings[1], /skipped 1 of 4 files/);
  });

  test('RGB output, contain pads with black; a flat folder is one class', async () => {
    const { value: ds } = await captureWarnings(() => loadImageFolder(dir, { size: 8, channels: 3, fit: 'contain' }));
    const a = ds.get(0).image; // 20×10 white → 8×4 band in the middle rows, black above/below
    assert.equal(a.length, 3 * 64);
    assert.ok(Math.abs(a[0] + 1) < 1e-6, 'top-left is padding');
    assert.ok(Math.abs(a[4 * 8 + 4] - 1) < 1e-6, 'centre is image');
    const flat = await loadImageFolder(path.join(dir, 'bright'), { size: 4, channels: 3 });
    assert.deepEqual(flat.classNames, ['bright']);
    assert.equal(flat.size, 2);
  });

  test('missing or empty folders are errors that name the folder', async () => {
    await assert.rejects(loadImageFolder(path.join(dir, 'nope'), { size: 4, channels: 1 }), /nope.*no such folder/);
    const empty = tmpDir();
    await assert.rejects(loadImageFolder(empty, { size: 4, channels: 1 }), /no image files/);
    fs.rmSync(empty, { recursive: true, force: true });
  });
});

/** A dataset of n images 1×2×3 whose pixels encode the index and whose label is the index. */
function indexDataset(n: number): ImageDataset {
  return {
    name: 'index', size: n, channels: 1, height: 2, width: 3, numClasses: n, classNames: Array.from({ length: n }, String),
    get(i: number): Sample {
      return { image: Float32Array.from({ length: 6 }, (_, k) => i * 10 + k), label: i };
    },
  };
}

describe('resizeOrPad', () => {
  const bytes = new Uint8Array(2 * 4 * 4).map((_, i) => i * 8);
  const ds = new ByteImageDataset('t', bytes, Int32Array.from([3, 4]), 1, 4, 4, ['a', 'b', 'c', 'd', 'e']);

  test('pad 4 → 8 centres the image on a background of −1', () => {
    const p = resizeOrPad(ds, 8, 'pad');
    assert.deepEqual([p.height, p.width, p.size, p.channels], [8, 8, 2, 1]);
    const s = p.get(1);
    assert.equal(s.label, 4);
    const orig = ds.get(1).image;
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const inside = y >= 2 && y < 6 && x >= 2 && x < 6;
        assert.equal(s.image[y * 8 + x], inside ? orig[(y - 2) * 4 + (x - 2)] : -1);
      }
    }
    // padding to a smaller size crops the centre
    const c = resizeOrPad(ds, 2, 'pad').get(0).image;
    assert.deepEqual(Array.from(c), [5, 6, 9, 10].map((k) => ds.get(0).image[k]));
  });

  test('bilinear resize: constants stay constant, 2 → 4 matches half-pixel interpolation', () => {
    const two = new ByteImageDataset('two', Uint8Array.from([0, 255, 0, 255]), Int32Array.from([0]), 1, 2, 2, ['x']);
    const r = resizeOrPad(two, 4, 'resize').get(0).image;
    // columns: sources at x = -0.25→0 (clamped), 0.25, 0.75, 1.25→1 ⇒ weights 0, .25, .75, 1 of the right pixel
    assert.deepEqual(Array.from(r.subarray(0, 4)).map((v) => +v.toFixed(6)), [-1, -0.5, 0.5, 1]);
    assert.deepEqual(Array.from(r.subarray(12, 16)).map((v) => +v.toFixed(6)), [-1, -0.5, 0.5, 1]);
    const constant = new ByteImageDataset('c', new Uint8Array(9).fill(51), Int32Array.from([0]), 1, 3, 3, ['x']);
    for (const v of resizeOrPad(constant, 7, 'resize').get(0).image) assert.ok(Math.abs(v - (51 / 255) * 2 + 1) < 1e-6);
    assert.equal(resizeOrPad(ds, 4, 'resize'), ds);
  });
});

describe('BatchLoader', () => {
  const collect = (l: BatchLoader, n: number) => Array.from({ length: n }, () => l.next());

  test('each epoch is a permutation; the same seed gives the same batches, another seed others', () => {
    const ds = indexDataset(10);
    const a = collect(new BatchLoader(ds, { batchSize: 4, seed: 7 }), 6);
    const b = collect(new BatchLoader(ds, { batchSize: 4, seed: 7 }), 6);
    const c = collect(new BatchLoader(ds, { batchSize: 4, seed: 8 }), 3);
    assert.deepEqual(a.map((x) => x.epoch), [0, 0, 0, 1, 1, 1]);
    assert.deepEqual(a.map((x) => x.labels.length), [4, 4, 2, 4, 4, 2]);
    for (let i = 0; i < 6; i++) {
      assert.deepEqual(a[i].labels, b[i].labels);
      assert.deepEqual(a[i].images.f, b[i].images.f);
    }
    const epoch0 = a.slice(0, 3).flatMap((x) => Array.from(x.labels));
    const epoch1 = a.slice(3).flatMap((x) => Array.from(x.labels));
    assert.deepEqual([...epoch0].sort((p, q) => p - q), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual([...epoch1].sort((p, q) => p - q), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.notDeepEqual(epoch0, epoch1);
    assert.notDeepEqual(epoch0, c.flatMap((x) => Array.from(x.labels)));
    assert.deepEqual(a[0].images.shape, [4, 1, 2, 3]);
    for (let k = 0; k < 4; k++) assert.equal(a[0].images.f[k * 6], a[0].labels[k] * 10);
  });

  test('shuffle: false keeps the order; dropLast skips the partial batch', () => {
    const l = new BatchLoader(indexDataset(5), { batchSize: 2, seed: 0, shuffle: false, dropLast: true });
    assert.equal(l.batchesPerEpoch, 2);
    assert.deepEqual(collect(l, 3).map((x) => [Array.from(x.labels), x.epoch]), [[[0, 1], 0], [[2, 3], 0], [[0, 1], 1]]);
  });

  test('flip mirrors rows of about half the samples, reproducibly', () => {
    const ds = indexDataset(64);
    const l = new BatchLoader(ds, { batchSize: 64, seed: 3, flip: true });
    const { images, labels } = l.next();
    let flipped = 0;
    for (let k = 0; k < 64; k++) {
      const orig = ds.get(labels[k]).image;
      const got = images.f.subarray(k * 6, (k + 1) * 6);
      const mirror = [orig[2], orig[1], orig[0], orig[5], orig[4], orig[3]];
      if (got[0] !== orig[0]) {
        assert.deepEqual(Array.from(got), mirror);
        flipped++;
      } else assert.deepEqual(Array.from(got), Array.from(orig));
    }
    assert.ok(flipped > 16 && flipped < 48, `flipped ${flipped} of 64`);
    const again = new BatchLoader(ds, { batchSize: 64, seed: 3, flip: true }).next();
    assert.deepEqual(again.images.f, images.f);
  });

  test('a state saved mid-epoch reproduces exactly the rest of the batches (across epochs)', () => {
    const ds = indexDataset(11);
    const opts = { batchSize: 3, seed: 12345, flip: true };
    const first = new BatchLoader(ds, opts);
    collect(first, 2);
    const state = JSON.parse(JSON.stringify(first.getState()));
    assert.deepEqual(state, { epoch: 0, index: 6, seed: 12345 });
    const rest = collect(first, 7);
    const resumed = new BatchLoader(ds, { ...opts, seed: 999 });
    resumed.setState(state);
    const replay = collect(resumed, 7);
    assert.deepEqual(replay.map((x) => x.epoch), rest.map((x) => x.epoch));
    for (let i = 0; i < rest.length; i++) {
      assert.deepEqual(replay[i].labels, rest[i].labels);
      assert.deepEqual(replay[i].images.f, rest[i].images.f);
    }
    assert.throws(() => resumed.setState({ epoch: 0, index: 12, seed: 1 }), /index 12 out of range/);
  });
});
