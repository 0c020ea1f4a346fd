// Tests of the scene metrics (src/eval/scenes.ts): on real test scenes the reader finds every empty cell and
// classifies the items about as well as the classifier does on single images; scoring and the "smallest k" rule on
// hand-checked cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FmnistClassifier } from '../src/eval/classifier.js';
import { readSceneLayouts, scoreLayouts, smallestKReaching } from '../src/eval/scenes.js';
import { FASHION_MNIST_DIR } from '../src/io/datasets.js';
import { EMPTY_CELL, loadFashionScenes, sceneLayout } from '../src/io/scenes.js';
import { Tensor } from '../src/tensor/tensor.js';

const haveFmnist = fs.existsSync(path.join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'));
const CLASSIFIER = 'models/fmnist-classifier/classifier.safetensors';

test('scoreLayouts and smallestKReaching on hand-checked cases', () => {
  const truth = Int32Array.from([3, EMPTY_CELL, EMPTY_CELL, 9, /* */ 1, 2, 3, 4]);
  const pred = Int32Array.from([3, EMPTY_CELL, EMPTY_CELL, 9, /* */ 1, 2, EMPTY_CELL, 5]);
  assert.deepEqual(scoreLayouts(pred, truth), { exact: [true, false], cellAccuracy: [1, 0.5] });
  assert.throws(() => scoreLayouts(pred.subarray(0, 4), truth), /4 predicted and 8 true cells/);
  assert.equal(smallestKReaching([1, 2, 4, 8], [0.1, 0.5, 0.96, 1.0]), 4);
  assert.equal(smallestKReaching([1, 2, 4, 8], [0.1, 0.5, 0.94, 1.0]), 8);
  assert.equal(smallestKReaching([1, 2, 4], [0.9, 0.5, 0.6]), 1);
});

test('readSceneLayouts on 300 real test scenes: every empty cell found, items classified', { skip: !haveFmnist && 'Fashion-MNIST not installed' }, () => {
  const ds = loadFashionScenes('test', { count: 300 });
  const data = new Float32Array(300 * 64 * 64);
  const truth = new Int32Array(300 * 4);
  for (let i = 0; i < 300; i++) {
    data.set(ds.get(i).image, i * 64 * 64);
    truth.set(sceneLayout(ds.items(i)), i * 4);
  }
  const pred = readSceneLayouts(new Tensor(data, [300, 1, 64, 64]), FmnistClassifier.load(CLASSIFIER));
  let items = 0;
  let right = 0;
  for (let j = 0; j < truth.length; j++) {
    assert.equal(pred[j] === EMPTY_CELL, truth[j] === EMPTY_CELL, `cell ${j}: empty ${truth[j] === EMPTY_CELL}, read ${pred[j]}`);
    if (truth[j] !== EMPTY_CELL) {
      items++;
      if (pred[j] === truth[j]) right++;
    }
  }
  assert.ok(right / items > 0.88, `item accuracy ${right}/${items}`);
  const { cellAccuracy } = scoreLayouts(pred, truth);
  assert.ok(cellAccuracy.reduce((a, b) => a + b, 0) / 300 > 0.92);
  // an all-black scene is four empty cells; a faint haze (mean brightness 0.005) too
  const haze = new Tensor(new Float32Array(2 * 64 * 64).fill(-1).map((v, i) => (i >= 64 * 64 ? -0.99 : v)), [2, 1, 64, 64]);
  assert.deepEqual(Array.from(readSceneLayouts(haze, FmnistClassifier.load(CLASSIFIER))), new Array(8).fill(EMPTY_CELL));
  assert.throws(() => readSceneLayouts(new Tensor(new Float32Array(32 * 32), [1, 1, 32, 32]), FmnistClassifier.load(CLASSIFIER)), /expected scenes \[N, 1, 64, 64\]/);
});
