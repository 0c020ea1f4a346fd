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
import { FmnistClassifier, evaluateAccuracy } from '../src/eval/classifier.js';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
const shippedWeights = path.join(root, 'models', 'fmnist-classifier', 'classifier.safetensors');
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

test('shipped weights: ≥ 90% on the first 1000 Fashion-MNIST test images', { skip: !haveFmnist && 'dataset not installed' }, () => {
  assert.ok(fs.existsSync(shippedWeights), `missing ${shippedWeights} (run scripts/train-classifier.ts)`);
  assert.ok(fs.statSync(shippedWeights).size < 1024 * 1024);
  const m = FmnistClassifier.load(shippedWeights);
  const acc = evaluateAccuracy(m, loadFashionMnist('test', { limit: 1000 }));
  assert.ok(acc >= 0.9, `accuracy ${acc}`);
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
  if (!fs.existsSync(shippedWeights)) return;
  const pred = FmnistClassifier.load(shippedWeights).predict(new Tensor(data, [10, 1, 28, 28]));
  const correct = Array.from(pred).filter((p, c) => p === c).length;
  assert.ok(correct >= 8, `${correct}/10 correct: ${Array.from(pred).join(',')}`);
});
