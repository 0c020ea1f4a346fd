// Tests of src/eval/frechet.ts and src/eval/diversity.ts: the symmetric eigen solver, feature statistics,
// the Fréchet distance against closed forms, classifier features, the real-data floor on Fashion-MNIST,
// and the per-class diversity figure.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng, Tensor, pad } from '../src/tensor/index.js';
import { FASHION_MNIST_DIR, loadFashionMnist } from '../src/io/datasets.js';
import { FmnistClassifier } from '../src/eval/classifier.js';
import {
  classifierFeatures, datasetFeatures, featureDim, featureStats, frechetDistance, frechetDistanceOf, realDataFloor, selectRows,
  sqrtPsd, symmetricEigen, type FeatureStats,
} from '../src/eval/frechet.js';
import { classDiversity, meanPairwiseDistance } from '../src/eval/diversity.js';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
const shippedWeights = path.join(root, 'models', 'fmnist-classifier', 'classifier.safetensors');
const haveFmnist = fs.existsSync(path.join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'));

/** A random symmetric positive-definite n×n matrix B Bᵀ + εI (B n×(n+2) standard normal). */
function randomSpd(n: number, rng: Rng, eps = 1e-3): Float64Array {
  const m = n + 2;
  const b = new Float64Array(n * m);
  rng.fillNormal(b);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < m; k++) s += b[i * m + k] * b[j * m + k];
      a[i * n + j] = s + (i === j ? eps : 0);
    }
  }
  return a;
}

function diag(values: number[]): Float64Array {
  const n = values.length;
  const a = new Float64Array(n * n);
  values.forEach((v, i) => (a[i * n + i] = v));
  return a;
}

/** R diag(d) Rᵀ for the 2×2 rotation by θ. */
function rotated2(d: [number, number], theta: number): Float64Array {
  const c = Math.cos(theta);
  const s = Math.sin(theta);
  return Float64Array.from([c * c * d[0] + s * s * d[1], c * s * (d[0] - d[1]), c * s * (d[0] - d[1]), s * s * d[0] + c * c * d[1]]);
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function stats(mean: number[], cov: Float64Array): FeatureStats {
  return { mean: Float64Array.from(mean), cov };
}

test('symmetricEigen reconstructs random SPD matrices: V Λ Vᵀ = A, Vᵀ V = I, values ascending', () => {
  const rng = new Rng(11);
  for (const n of [1, 2, 3, 7, 31, 64]) {
    const a = randomSpd(n, rng);
    const copy = Float64Array.from(a);
    const { values, vectors: v } = symmetricEigen(a, n);
    assert.deepEqual(a, copy, 'the input is not modified');
    let err = 0;
    let orth = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let o = 0;
        for (let k = 0; k < n; k++) {
          s += v[i * n + k] * values[k] * v[j * n + k];
          o += v[k * n + i] * v[k * n + j];
        }
        err = Math.max(err, Math.abs(s - a[i * n + j]));
        orth = Math.max(orth, Math.abs(o - (i === j ? 1 : 0)));
      }
    }
    assert.ok(err < 1e-12 * maxAbs(a) * n, `n = ${n}: |VΛVᵀ − A| = ${err}`);
    assert.ok(orth < 1e-12 * n, `n = ${n}: |VᵀV − I| = ${orth}`);
    for (let k = 1; k < n; k++) assert.ok(values[k - 1] <= values[k], `n = ${n}: values not ascending`);
    assert.ok(values[0] > 0, `n = ${n}: an SPD matrix has positive eigenvalues, got ${values[0]}`);
  }
});

test('symmetricEigen: known spectra (diagonal with repeats, rotated, zero, 2×2 closed form)', () => {
  const d = symmetricEigen(diag([3, 1, 3, 0, 2]), 5).values;
  assert.deepEqual(Array.from(d), [0, 1, 2, 3, 3]);
  const r = symmetricEigen(rotated2([5, 0.25], 0.7), 2).values;
  assert.ok(Math.abs(r[0] - 0.25) < 1e-14 && Math.abs(r[1] - 5) < 1e-14, `${r}`);
  assert.deepEqual(Array.from(symmetricEigen(new Float64Array(9), 3).values), [0, 0, 0]);
  // [[a, b], [b, c]]: λ = (a + c)/2 ± √(((a − c)/2)² + b²)
  const [a, b, c] = [2, -1.5, 0.5];
  const m = (a + c) / 2;
  const q = Math.sqrt(((a - c) / 2) ** 2 + b * b);
  const e = symmetricEigen([a, b, b, c], 2).values;
  assert.ok(Math.abs(e[0] - (m - q)) < 1e-14 && Math.abs(e[1] - (m + q)) < 1e-14, `${e}`);
  assert.throws(() => symmetricEigen([1, 2, 3], 2), /3 values for a 2×2 matrix/);
  assert.throws(() => symmetricEigen([1, NaN, NaN, 1], 2), /is NaN/);
});

test('sqrtPsd squares back to the matrix, clamps negative round-off', () => {
  const a = randomSpd(9, new Rng(3));
  const s = sqrtPsd(a, 9);
  let err = 0;
  for (let i = 0; i < 9; i++) {
    for (let j = 0; j < 9; j++) {
      let v = 0;
      for (let k = 0; k < 9; k++) v += s[i * 9 + k] * s[k * 9 + j];
      err = Math.max(err, Math.abs(v - a[i * 9 + j]));
    }
  }
  assert.ok(err < 1e-11 * maxAbs(a), `|S² − A| = ${err}`);
  // A tiny negative eigenvalue (round-off of a PSD matrix) becomes 0, not NaN.
  const t = sqrtPsd(diag([4, -1e-17]), 2);
  assert.deepEqual(Array.from(t), [2, 0, 0, 0]);
});

test('featureStats: mean and unbiased covariance of a hand-computed case', () => {
  // rows (1, 2), (3, 2), (5, 8): mean (3, 4); deviations (−2, −2), (0, −2), (2, 4)
  const st = featureStats([1, 2, 3, 2, 5, 8], 3, 2);
  assert.deepEqual(Array.from(st.mean), [3, 4]);
  // cov = Σ dev devᵀ / (n − 1) = [[8, 12], [12, 24]] / 2
  assert.deepEqual(Array.from(st.cov), [4, 6, 6, 12]);
  assert.throws(() => featureStats([1, 2], 1, 2), /at least 2 samples/);
  assert.throws(() => featureStats([1, 2, 3], 2, 2), /3 values for 2 × 2/);
  assert.throws(() => featureStats([1, NaN, 3, 4], 2, 2), /is NaN/);
});

test('frechetDistance: identical statistics → 0 (full-rank and rank-deficient)', () => {
  const rng = new Rng(5);
  const a = stats([0.3, -1, 2, 0, 5, 1], randomSpd(6, rng));
  assert.ok(Math.abs(frechetDistance(a, a)) < 1e-10, `${frechetDistance(a, a)}`);
  // rank 3 of 8 (e.g. fewer samples than dimensions)
  const feats = new Float64Array(4 * 8);
  rng.fillNormal(feats);
  const low = featureStats(feats, 4, 8);
  const fd = frechetDistance(low, low);
  assert.ok(fd >= 0 && fd < 1e-6, `rank-deficient: ${fd}`);
});

test('frechetDistance: diagonal covariances give |Δμ|² + Σ(√aᵢ − √bᵢ)²', () => {
  const av = [0.5, 2, 9, 1e-4, 3];
  const bv = [2, 2, 1, 4, 0];
  const ma = [1, 0, -1, 2, 0.5];
  const mb = [0, 0, 1, 2, -0.5];
  let expected = 0;
  for (let i = 0; i < 5; i++) expected += (ma[i] - mb[i]) ** 2 + (Math.sqrt(av[i]) - Math.sqrt(bv[i])) ** 2;
  const fd = frechetDistance(stats(ma, diag(av)), stats(mb, diag(bv)));
  assert.ok(Math.abs(fd - expected) < 1e-12 * expected, `${fd} vs ${expected}`);
});

test('frechetDistance: rotated and non-commuting 2×2 covariances match the closed forms', () => {
  // Same rotation (commuting): the diagonal formula in the rotated basis.
  const a = rotated2([4, 0.5], 0.6);
  const b = rotated2([1, 2], 0.6);
  const commuting = (2 - 1) ** 2 + (Math.sqrt(0.5) - Math.sqrt(2)) ** 2;
  const fd1 = frechetDistance(stats([0, 0], a), stats([0, 0], b));
  assert.ok(Math.abs(fd1 - commuting) < 1e-12, `${fd1} vs ${commuting}`);
  // Different rotations: for 2×2 SPD M, tr √M = √(tr M + 2√det M), and Σa^½ Σb Σa^½ has the eigenvalues of
  // Σa Σb, so tr(...)^½ = √(tr(Σa Σb) + 2√(det Σa det Σb)).
  const c = rotated2([3, 0.2], 0.3);
  const d = rotated2([0.7, 5], 1.9);
  const tr = (m: Float64Array): number => m[0] + m[3];
  const det = (m: Float64Array): number => m[0] * m[3] - m[1] * m[2];
  const trProd = c[0] * d[0] + c[1] * d[2] + c[2] * d[1] + c[3] * d[3];
  const expected = (1 - -2) ** 2 + (0.5 - 0.5) ** 2 + tr(c) + tr(d) - 2 * Math.sqrt(trProd + 2 * Math.sqrt(det(c) * det(d)));
  const fd2 = frechetDistance(stats([1, 0.5], c), stats([-2, 0.5], d));
  assert.ok(Math.abs(fd2 - expected) < 1e-12 * expected, `${fd2} vs ${expected}`);
});

test('frechetDistance is symmetric in its arguments and rejects bad input', () => {
  const rng = new Rng(9);
  for (const n of [3, 16]) {
    const a = stats(Array.from({ length: n }, () => rng.normal()), randomSpd(n, rng));
    const b = stats(Array.from({ length: n }, () => rng.normal()), randomSpd(n, rng));
    const ab = frechetDistance(a, b);
    const ba = frechetDistance(b, a);
    assert.ok(ab > 0, `FD of different statistics should be > 0, got ${ab}`);
    assert.ok(Math.abs(ab - ba) < 1e-9 * ab, `${ab} vs ${ba}`);
  }
  const two = stats([0, 0], diag([1, 1]));
  assert.throws(() => frechetDistance(two, stats([0], diag([1]))), /dimensions differ/);
  assert.throws(() => frechetDistance(two, { mean: Float64Array.from([0, 0]), cov: new Float64Array(3) }), /must be 2×2/);
  assert.throws(() => frechetDistance(two, stats([0, NaN], diag([1, 1]))), /μb\[1\] is NaN/);
});

test('frechetDistanceOf / realDataFloor on synthetic Gaussians: floor shrinks with n, a shifted set scores far above it', () => {
  const rng = new Rng(21);
  const dim = 4;
  const pool = new Float64Array(4000 * dim);
  rng.fillNormal(pool);
  const f100 = realDataFloor(pool, dim, 100, 0);
  const f2000 = realDataFloor(pool, dim, 2000, 0);
  assert.ok(f100 > 0 && f2000 > 0, `floors ${f100}, ${f2000} should be > 0`);
  assert.ok(f2000 < f100, `floor at n = 2000 (${f2000}) should be below n = 100 (${f100})`);
  // E[FD] between two samples of N(0, I_d) of size n is about d(d + 3)/(2n) ... order d²/n: small.
  assert.ok(f2000 < 0.05, `${f2000}`);
  assert.equal(realDataFloor(pool, dim, 100, 7), realDataFloor(pool, dim, 100, 7), 'seeded');
  const shifted = Float64Array.from(pool.subarray(0, 2000 * dim), (v, i) => (i % dim === 0 ? v + 1 : v));
  const fd = frechetDistanceOf(pool.subarray(2000 * dim), shifted, dim);
  assert.ok(Math.abs(fd - 1) < 0.15, `mean shift by 1 → FD ≈ 1, got ${fd}`);
  assert.throws(() => realDataFloor(pool, dim, 2001), /need 4002 rows, got 4000/);
  assert.throws(() => realDataFloor(pool, 3, 10), /not rows of 3 features/);
  assert.deepEqual(Array.from(selectRows(Float64Array.from([1, 2, 3, 4, 5, 6]), 2, [2, 0])), [5, 6, 1, 2]);
});

test('classifierFeatures: [N, w3] pooled block2, batch-size independent, deterministic, 32×32 cropped', () => {
  const m = FmnistClassifier.random(new Rng(1), [8, 16, 24]);
  assert.equal(featureDim(m), 24);
  assert.equal(featureDim(m, 'block1'), 16);
  const x = Tensor.rand([7, 1, 28, 28], new Rng(2), 'float32', -1, 1);
  const f = classifierFeatures(m, x);
  assert.ok(f instanceof Float64Array, 'features are float64');
  assert.equal(f.length, 7 * 24);
  assert.deepEqual(classifierFeatures(m, x), f, 'deterministic');
  const batched = classifierFeatures(m, x, { batchSize: 3 });
  assert.ok(maxAbs(batched.map((v, i) => v - f[i])) < 1e-5, 'batch size does not change the features');
  // Feature j of image i is the spatial mean of channel j of the block2 map.
  const fmap = m.features(new Tensor(x.f.slice(2 * 784, 3 * 784), [1, 1, 28, 28]));
  for (const j of [0, 5, 23]) {
    let s = 0;
    for (let k = 0; k < 49; k++) s += fmap.f[j * 49 + k];
    assert.ok(Math.abs(f[2 * 24 + j] - s / 49) < 1e-5, `feature ${j}: ${f[2 * 24 + j]} vs ${s / 49}`);
  }
  const padded = pad(x, [[0, 0], [0, 0], [2, 2], [2, 2]], -1);
  assert.deepEqual(classifierFeatures(m, padded), f);
  assert.equal(classifierFeatures(m, x, { layer: 'block1' }).length, 7 * 16);
  assert.throws(() => classifierFeatures(m, Tensor.zeros([2, 3, 28, 28])), /expected images \[N, 1, H, W\]/);
  assert.throws(() => classifierFeatures(m, x, { batchSize: 0 }), /batchSize/);
});

test('diversity: hand case, identical images → 0, a shrunken copy scales the ratio', () => {
  // points 0, 3, 4 on a line: pair distances 3, 4, 1
  assert.ok(Math.abs(meanPairwiseDistance([0, 3, 4], 1) - 8 / 3) < 1e-15, `${meanPairwiseDistance([0, 3, 4], 1)} vs 8/3`);
  // 2-d: (0, 0), (3, 4) → 5
  assert.equal(meanPairwiseDistance([0, 0, 3, 4], 2), 5);
  assert.throws(() => meanPairwiseDistance([1, 2], 2), /at least 2 rows/);
  const rng = new Rng(4);
  const dim = 6;
  const real = new Float64Array(300 * dim);
  rng.fillNormal(real);
  const realLabels = Int32Array.from({ length: 300 }, (_, i) => i % 3);
  // Generated: every class a single repeated vector → diversity 0.
  const same = new Float64Array(30 * dim);
  for (let i = 0; i < 30; i++) same.set(real.subarray(0, dim), i * dim);
  const collapsed = classDiversity({ features: same, labels: Int32Array.from({ length: 30 }, (_, i) => i % 3) }, { features: real, labels: realLabels }, dim);
  assert.equal(collapsed.perClass.length, 3);
  for (const c of collapsed.perClass) {
    assert.equal(c.generated, 0);
    assert.equal(c.ratio, 0);
    assert.equal(c.nGenerated, 10);
    assert.equal(c.nReal, 100);
  }
  assert.equal(collapsed.meanRatio, 0);
  // The real set against itself is exactly 1; a copy scaled by 0.5 is exactly 0.5.
  assert.equal(classDiversity({ features: real, labels: realLabels }, { features: real, labels: realLabels }, dim).meanRatio, 1);
  const half = classDiversity({ features: real.map((v) => 0.5 * v), labels: realLabels }, { features: real, labels: realLabels }, dim);
  assert.ok(Math.abs(half.meanRatio - 0.5) < 1e-12, `${half.meanRatio}`);
  // A class missing from the generated set gives NaN for it, and the mean skips it.
  const partial = classDiversity({ features: real.subarray(0, 2 * 3 * dim), labels: realLabels.subarray(0, 6) }, { features: real, labels: realLabels }, dim, { numClasses: 4 });
  assert.ok(Number.isNaN(partial.perClass[3].ratio), `a class without samples has ratio NaN, got ${partial.perClass[3].ratio}`);
  assert.ok(Number.isFinite(partial.meanRatio), `mean ratio over the classes present, got ${partial.meanRatio}`);
  // maxPerClass subsamples, seeded.
  const capped = classDiversity({ features: real, labels: realLabels }, { features: real, labels: realLabels }, dim, { maxPerClass: 20, seed: 1 });
  assert.ok(capped.perClass.every((c) => c.nGenerated === 20 && c.nReal === 20), 'maxPerClass caps both sets at 20');
  assert.throws(() => classDiversity({ features: real, labels: realLabels.subarray(1) }, { features: real, labels: realLabels }, dim), /generated has 1800 feature values for 299 labels/);
});

test('shipped classifier on Fashion-MNIST: real-data floor small but > 0, noisy images far above it; diversity of real halves ≈ 1', { skip: !haveFmnist && 'dataset not installed' }, () => {
  const model = FmnistClassifier.load(shippedWeights);
  const ds = loadFashionMnist('test', { limit: 2500 });
  const { features, labels, dim } = datasetFeatures(model, ds);
  assert.equal(dim, 64);
  assert.equal(features.length, 2500 * 64);
  const all = featureStats(features, 2500, dim);
  let trace = 0;
  for (let i = 0; i < dim; i++) trace += all.cov[i * dim + i];
  const floor = realDataFloor(features.subarray(0, 2000 * dim), dim, 1000, 0);
  assert.ok(floor > 1e-3 * trace, `two finite samples never match exactly: floor ${floor}, total variance ${trace}`);
  assert.ok(floor < 0.05 * trace, `floor ${floor} vs total variance ${trace}`);
  // Heavy pixel noise (σ = 0.5, clamped) on the last 500 images, against 500 others clean.
  const per = 784;
  const noisy = new Float32Array(500 * per);
  const rng = new Rng(7);
  for (let i = 0; i < 500; i++) {
    const img = ds.get(2000 + i).image;
    for (let k = 0; k < per; k++) noisy[i * per + k] = Math.max(-1, Math.min(1, img[k] + 0.5 * rng.normal()));
  }
  const noisyFeatures = classifierFeatures(model, new Tensor(noisy, [500, 1, 28, 28]));
  const fdNoise = frechetDistanceOf(features.subarray(0, 500 * dim), noisyFeatures, dim);
  assert.ok(fdNoise > 20 * floor, `FD(real, noisy) = ${fdNoise}, floor at n = 1000 = ${floor}`);
  console.log(`Fashion-MNIST test: floor(n = 1000) ${floor.toFixed(5)}, total variance ${trace.toFixed(4)}, FD(500 clean, 500 noisy σ 0.5) ${fdNoise.toFixed(4)}`);
  // Two disjoint halves of real images per class vary alike: ratio ≈ 1 for every class.
  const half = 1000;
  const div = classDiversity(
    { features: features.subarray(0, half * dim), labels: labels.subarray(0, half) },
    { features: features.subarray(half * dim, 2 * half * dim), labels: labels.subarray(half, 2 * half) },
    dim,
    { numClasses: 10 },
  );
  for (const c of div.perClass) assert.ok(Math.abs(c.ratio - 1) < 0.12, `class ${c.cls}: ratio ${c.ratio}`);
  assert.ok(Math.abs(div.meanRatio - 1) < 0.03, `mean ratio ${div.meanRatio}`);
});
