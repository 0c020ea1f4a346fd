// Tests of src/eval/classifier.ts: shapes, 32→28 cropping, save/load round trip, a learning step, and
// the shipped weights' accuracy on Fashion-MNIST (and on the shipped demo images).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { AdamW, Rng, Tensor, crossEntropy, pad } from '../src/tensor/index.js';
import { FASHION_MNIST_DIR, loadFashionMnist } from '../src/io/datasets.js';
import { FmnistClassifier, augmentImages, evaluateAccuracy, robustnessReport } from '../src/eval/classifier.js';
import { sampleBatchWithLabels } from '../src/train/data.js';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
const shippedWeights = path.join(root, 'models', 'fmnist-classifier', 'classifier.safetensors');
const robustWeights = path.join(root, 'models', 'fmnist-classifier-robust', 'classifier.safetensors');
const haveFmnist = fs.existsSync(path.join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'));

test('shapes: logits [B, 10], features block1/block2, predictions in range', () => {
  const m = FmnistClassifier.random(new Rng(1), [8, 16, 24]);
  const x = Tensor.rand([2, 1, 28, 28], new Rng(2), 'float32', -1, 1);
  assert.deepEqual(m.logits(x).shape, [2, 10]);
  assert.deepEqual(m.features(x).shape, [2, 24, 7, 7]);
  assert.deepEqual(m.features(x, 'block1').shape, [2, 16, 14, 14]);
  assert.equal(m.features(x).requiresGrad, false);
  const p = m.predict(x);
  assert.equal(p.length, 2);
  assert.ok(p.every((v) => v >= 0 && v < 10));
  // 32×32 (padded by 2 with −1) is centre-cropped back to the same 28×28 input.
  const padded = pad(x, [[0, 0], [0, 0], [2, 2], [2, 2]], -1);
  assert.deepEqual(m.logits(padded).f, m.logits(x).f);
  assert.throws(() => m.logits(Tensor.zeros([1, 3, 28, 28])), /expected images \[B, 1, H, W\]/);
  assert.throws(() => m.logits(Tensor.zeros([1, 1, 20, 20])), /smaller than 28×28/);
});

test('save → load round-trips through F16 with the architecture in the metadata', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-clf-'));
  try {
    const m = FmnistClassifier.random(new Rng(3), [8, 16, 16]);
    const file = path.join(dir, 'c.safetensors');
    m.save(file);
    const back = FmnistClassifier.load(file);
    assert.deepEqual(back.widths, [8, 16, 16]);
    assert.ok(back.parameters().every((t) => !t.requiresGrad));
    const x = Tensor.rand([2, 1, 28, 28], new Rng(4), 'float32', -1, 1);
    const a = m.logits(x).f;
    const b = back.logits(x).f;
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 2e-2, `${a[i]} vs ${b[i]}`);
    fs.writeFileSync(path.join(dir, 'bad.safetensors'), Buffer.alloc(0));
    assert.throws(() => FmnistClassifier.load(path.join(dir, 'bad.safetensors')));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a few AdamW steps on a fixed tiny batch lower the loss', () => {
  const m = FmnistClassifier.random(new Rng(5), [8, 8, 8]);
  const opt = new AdamW(m.parameters(), { lr: 3e-2, weightDecay: 0 });
  const x = Tensor.rand([8, 1, 28, 28], new Rng(6), 'float32', -1, 1);
  const y = new Tensor(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), [8]);
  let first = 0;
  let last = 0;
  for (let s = 0; s < 20; s++) {
    const loss = crossEntropy(m.logits(x), y);
    if (s === 0) first = loss.item();
    last = loss.item();
    loss.backward();
    opt.step();
    opt.zeroGrad();
  }
  assert.ok(last < first * 0.85, `loss ${first} → ${last}`);
});

test('augmentImages: identity when off, a translate with background −1 when shifting, clamped noise, seeded', () => {
  const x = Tensor.rand([3, 1, 6, 5], new Rng(7), 'float32', -1, 1);
  const off = augmentImages(x, new Rng(1), { pShift: 0, maxShift: 2, pNoise: 0, maxNoise: 0.3 });
  assert.deepEqual(off.f, x.f);
  assert.deepEqual(off.shape, x.shape);
  // Every image is the input moved by some (dy, dx) with |dy|, |dx| ≤ 2, uncovered pixels −1.
  const shifted = augmentImages(x, new Rng(2), { pShift: 1, maxShift: 2, pNoise: 0, maxNoise: 0 });
  for (let i = 0; i < 3; i++) {
    let found: string | null = null;
    for (let dy = -2; dy <= 2 && !found; dy++) {
      for (let dx = -2; dx <= 2 && !found; dx++) {
        let same = true;
        for (let y = 0; y < 6 && same; y++) {
          for (let xx = 0; xx < 5 && same; xx++) {
            const sy = y - dy;
            const sx = xx - dx;
            const want = sy >= 0 && sy < 6 && sx >= 0 && sx < 5 ? x.f[i * 30 + sy * 5 + sx] : -1;
            same = shifted.f[i * 30 + y * 5 + xx] === want;
          }
        }
        if (same) found = `${dy},${dx}`;
      }
    }
    assert.ok(found, `image ${i} is not a ±2-pixel translate of its input`);
  }
  const noisy = augmentImages(x, new Rng(3), { pShift: 0, maxShift: 0, pNoise: 1, maxNoise: 0.5 });
  assert.ok(noisy.f.every((v) => v >= -1 && v <= 1));
  assert.ok(noisy.f.some((v, i) => v !== x.f[i]));
  assert.deepEqual(augmentImages(x, new Rng(3), { pShift: 1, maxShift: 2, pNoise: 1, maxNoise: 0.5 }).f, augmentImages(x, new Rng(3), { pShift: 1, maxShift: 2, pNoise: 1, maxNoise: 0.5 }).f);
  assert.throws(() => augmentImages(Tensor.zeros([2, 28, 28]), new Rng(1)), /expected \[B, C, H, W\]/);
});

test('robustnessReport: clean row, noise rows with growing MSE, shift row; accuracies are fractions', () => {
  const m = FmnistClassifier.random(new Rng(8), [8, 8, 8]);
  const x = Tensor.rand([6, 1, 28, 28], new Rng(9), 'float32', -1, 1);
  const labels = Int32Array.from(m.predict(x));
  const rows = robustnessReport(m, x, labels, { sigmas: [0.1, 0.3] });
  assert.deepEqual(rows.map((r) => r.perturbation), ['none', 'noise σ = 0.1', 'noise σ = 0.3', '1-pixel shift (mean of 4)']);
  assert.equal(rows[0].mse, 0);
  assert.equal(rows[0].accuracy, 1); // the labels are its own predictions
  assert.ok(rows[1].mse > 0 && rows[2].mse > rows[1].mse);
  assert.ok(rows.every((r) => r.accuracy >= 0 && r.accuracy <= 1));
});

test('shipped weights (both classifiers): ≥ 90% on the first 1000 Fashion-MNIST test images', { skip: !haveFmnist && 'dataset not installed' }, () => {
  const test1000 = loadFashionMnist('test', { limit: 1000 });
  for (const file of [shippedWeights, robustWeights]) {
    assert.ok(fs.existsSync(file), `missing ${file} (run scripts/train-classifier.ts)`);
    assert.ok(fs.statSync(file).size < 1024 * 1024);
    const acc = evaluateAccuracy(FmnistClassifier.load(file), test1000);
    assert.ok(acc >= 0.9, `${file}: accuracy ${acc}`);
  }
});

test('the augmentation-trained classifier is less moved by noise than the plain one', { skip: !haveFmnist && 'dataset not installed' }, () => {
  const { images, labels } = sampleBatchWithLabels(loadFashionMnist('test'), 300);
  const drop = (file: string): number => {
    const rows = robustnessReport(FmnistClassifier.load(file), images, labels, { sigmas: [0.25] });
    return rows[0].accuracy - rows[1].accuracy;
  };
  const plain = drop(shippedWeights);
  const robust = drop(robustWeights);
  assert.ok(robust < plain, `accuracy drop under σ = 0.25 noise: robust ${robust}, plain ${plain}`);
});

test('shipped demo images: one 28×28 grey PNG per class, mostly classified correctly', async () => {
  const dir = path.join(root, 'assets', 'fashion-mnist');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.png')).sort();
  assert.equal(files.length, 10);
  const data = new Float32Array(10 * 784);
  for (let c = 0; c < 10; c++) {
    assert.ok(files[c].startsWith(`${c}-`), files[c]);
    const meta = await sharp(path.join(dir, files[c])).metadata();
    assert.deepEqual([meta.width, meta.height, meta.channels], [28, 28, 1]);
    const px = await sharp(path.join(dir, files[c])).toColourspace('b-w').raw().toBuffer();
    assert.equal(px.length, 784);
    for (let k = 0; k < 784; k++) data[c * 784 + k] = (px[k] / 255) * 2 - 1;
  }
  // The weights ship with the repository: missing is a failure, not a skip.
  assert.ok(fs.existsSync(shippedWeights), `the shipped classifier weights are missing: ${shippedWeights}`);
  const pred = FmnistClassifier.load(shippedWeights).predict(new Tensor(data, [10, 1, 28, 28]));
  const correct = Array.from(pred).filter((p, c) => p === c).length;
  assert.ok(correct >= 8, `${correct}/10 correct: ${Array.from(pred).join(',')}`);
});
