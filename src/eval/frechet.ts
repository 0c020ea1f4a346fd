// Fréchet distance between feature distributions (the FID recipe of Heusel et al. 2017) on the project's
// own Fashion-MNIST classifier instead of Inception-v3.
//
// Feature layer. `classifierFeatures` returns, per image, the globally average-pooled output of the
// classifier's last conv block ('block2', post-GELU, [w3, 7, 7] → [w3]): 64 numbers with the shipped
// weights (`models/fmnist-classifier`). This is the FID choice — Inception's pool3 is likewise the average-
// pooled last block. The shipped classifier's head reads the same map flattened (64·7·7 = 3136 values);
// that is the literal penultimate layer, but 3136 dimensions exceed the usual n = 1000 samples (the
// covariance would be singular, dominated by estimation noise) and an eigendecomposition of a 3136×3136
// matrix costs minutes in JavaScript, so the pooled 64-d vector is the default. `layer: 'block1'` pools the
// earlier block instead (w2 = 32 dimensions).
//
// Statistics. `featureStats` gives the mean and the unbiased (n − 1) covariance, in float64.
//
// Distance. FD(a, b) = |μa − μb|² + tr Σa + tr Σb − 2 tr((Σa^½ Σb Σa^½)^½), in float64. Both square
// roots are of symmetric positive semi-definite matrices and are taken through a symmetric
// eigendecomposition written here (Householder tridiagonalisation + implicit QL with shifts, the
// EISPACK tred2/tql2 algorithm): Σa^½ = V diag(√λ) Vᵀ, and tr((Σa^½ Σb Σa^½)^½) = Σ √μᵢ over the
// eigenvalues μ of the (symmetrised) product. This symmetric form equals the tr √(Σa Σb) of the usual
// scipy `sqrtm` formulation (Σa Σb and Σa^½ Σb Σa^½ are similar) without complex arithmetic. Eigenvalues
// of a PSD matrix that come out slightly negative (round-off, or rank deficiency when n ≤ F) are
// clamped to 0 before the square root, and a final result below 0 (round-off for near-identical
// statistics, |FD| ~ 1e-12 · tr Σ) is returned as 0.
//
// Real-data floor. Two finite samples of the same distribution do not score 0: `realDataFloor` measures
// the FD between two disjoint random subsets of n real images each — what a perfect generator scores at
// that n — so a report prints it next to a model's number (FD grows as n shrinks; compare at equal n).
//
// Scale. These features are small (post-GELU, RMS ≈ 0.3), so the numbers are too: with the shipped
// classifier the test split's total variance tr Σ is 0.178, the floor at n = 1000 is 0.0025 ± 0.0003
// (10 draws; test vs 1000 train images 0.0026 ± 0.0002), σ = 0.5 pixel noise scores ≈ 0.18. Print FD with
// 3–4 significant digits (e.g. `toPrecision(3)`), not a fixed 3 decimals.

import { Tensor } from '../tensor/tensor.js';
import { Rng } from '../tensor/rng.js';
import type { FmnistClassifier, ClassifierLayer } from './classifier.js';
import type { ImageDataset } from '../io/datasets.js';

/** Mean and covariance of a set of feature vectors (float64). */
export interface FeatureStats {
  /** [F] */
  mean: Float64Array;
  /** [F, F] row-major, unbiased (divides by n − 1) */
  cov: Float64Array;
}

export interface FeatureOptions {
  /** images per classifier forward pass (default 250) */
  batchSize?: number;
  /** which conv block to average-pool (default 'block2', the last one) */
  layer?: ClassifierLayer;
}

/**
 * Classifier features of images [N, 1, 28, 28] (or [N, 1, 32, 32], centre-cropped) in [-1, 1]: the
 * globally average-pooled output of `layer` ('block2' by default → F = w3 = 64 with the shipped weights),
 * as a row-major Float64Array [N, F]. Batched, without autograd; deterministic.
 */
export function classifierFeatures(model: FmnistClassifier, images: Tensor, opts: FeatureOptions = {}): Float64Array {
  if (images.ndim !== 4 || images.shape[1] !== 1) throw new Error(`classifierFeatures: expected images [N, 1, H, W], got [${images.shape.join(', ')}]`);
  const bs = opts.batchSize ?? 250;
  if (!Number.isInteger(bs) || bs < 1) throw new Error(`classifierFeatures: batchSize must be a positive integer, got ${bs}`);
  const [n, , h, w] = images.shape as [number, number, number, number];
  const per = h * w;
  const src = images.f;
  const dim = featureDim(model, opts.layer);
  const out = new Float64Array(n * dim);
  for (let start = 0; start < n; start += bs) {
    const b = Math.min(bs, n - start);
    const batch = new Tensor(src.slice(start * per, (start + b) * per), [b, 1, h, w]);
    const fmap = model.features(batch, opts.layer ?? 'block2'); // [b, C, S, S]
    const [, c, fh, fw] = fmap.shape as [number, number, number, number];
    if (c !== dim) throw new Error(`classifierFeatures: feature map has ${c} channels, expected ${dim}`);
    const hw = fh * fw;
    const f = fmap.f;
    for (let i = 0; i < b; i++) {
      for (let ch = 0; ch < c; ch++) {
        let s = 0;
        const off = (i * c + ch) * hw;
        for (let k = 0; k < hw; k++) s += f[off + k];
        out[(start + i) * dim + ch] = s / hw;
      }
    }
  }
  return out;
}

/** Number of feature dimensions `classifierFeatures` yields for this model and layer. */
export function featureDim(model: FmnistClassifier, layer: ClassifierLayer = 'block2'): number {
  return layer === 'block1' ? model.widths[1] : model.widths[2];
}

/** Classifier features of dataset samples (all of them, or `indices`), batched: Float64Array [n, F]
 * and the labels [n]. The dataset's images must be 1×28×28 or 1×32×32. */
export function datasetFeatures(model: FmnistClassifier, ds: ImageDataset, opts: FeatureOptions & { indices?: ArrayLike<number> } = {}): { features: Float64Array; labels: Int32Array; dim: number } {
  const idx = opts.indices ?? Int32Array.from({ length: ds.size }, (_, i) => i);
  const n = idx.length;
  const per = ds.channels * ds.height * ds.width;
  const dim = featureDim(model, opts.layer);
  const features = new Float64Array(n * dim);
  const labels = new Int32Array(n);
  const chunk = 1000; // bounds the float32 image buffer held at once
  for (let start = 0; start < n; start += chunk) {
    const b = Math.min(chunk, n - start);
    const data = new Float32Array(b * per);
    for (let k = 0; k < b; k++) {
      const s = ds.get(idx[start + k]);
      data.set(s.image, k * per);
      labels[start + k] = s.label;
    }
    features.set(classifierFeatures(model, new Tensor(data, [b, ds.channels, ds.height, ds.width]), opts), start * dim);
  }
  return { features, labels, dim };
}

/** Rows `rows` of a row-major [N, F] matrix as a new [rows.length, F] matrix. */
export function selectRows(features: Float64Array, dim: number, rows: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows.length * dim);
  const total = features.length / dim;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (!Number.isInteger(r) || r < 0 || r >= total) throw new RangeError(`selectRows: row ${r} out of range [0, ${total})`);
    out.set(features.subarray(r * dim, (r + 1) * dim), i * dim);
  }
  return out;
}

/** Mean [F] and unbiased covariance [F, F] of n feature vectors (row-major [n, F]), in float64. */
export function featureStats(features: ArrayLike<number>, n: number, f: number): FeatureStats {
  if (!Number.isInteger(n) || !Number.isInteger(f) || f < 1) throw new Error(`featureStats: n and f must be integers (f ≥ 1), got n = ${n}, f = ${f}`);
  if (n < 2) throw new Error(`featureStats: need at least 2 samples for a covariance, got ${n}`);
  if (features.length !== n * f) throw new Error(`featureStats: ${features.length} values for ${n} × ${f} features`);
  const mean = new Float64Array(f);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < f; j++) {
      const v = features[i * f + j];
      if (!Number.isFinite(v)) throw new Error(`featureStats: feature [${i}, ${j}] is ${v}`);
      mean[j] += v;
    }
  }
  for (let j = 0; j < f; j++) mean[j] /= n;
  const cov = new Float64Array(f * f);
  const c = new Float64Array(f);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < f; j++) c[j] = features[i * f + j] - mean[j];
    for (let a = 0; a < f; a++) {
      const ca = c[a];
      const row = a * f;
      for (let b = a; b < f; b++) cov[row + b] += ca * c[b];
    }
  }
  for (let a = 0; a < f; a++) {
    for (let b = a; b < f; b++) {
      const v = cov[a * f + b] / (n - 1);
      cov[a * f + b] = v;
      cov[b * f + a] = v;
    }
  }
  return { mean, cov };
}

/**
 * Fréchet distance between Gaussians N(μa, Σa) and N(μb, Σb):
 * |μa − μb|² + tr Σa + tr Σb − 2 tr((Σa^½ Σb Σa^½)^½), in float64 (see the file header for the method
 * and the clamping of round-off). The covariances must be symmetric positive semi-definite.
 */
export function frechetDistance(a: FeatureStats, b: FeatureStats): number {
  const f = a.mean.length;
  if (b.mean.length !== f) throw new Error(`frechetDistance: dimensions differ (${f} vs ${b.mean.length})`);
  if (a.cov.length !== f * f || b.cov.length !== f * f) throw new Error(`frechetDistance: covariances must be ${f}×${f}`);
  for (const [name, arr] of [['μa', a.mean], ['μb', b.mean], ['Σa', a.cov], ['Σb', b.cov]] as const) {
    for (let i = 0; i < arr.length; i++) if (!Number.isFinite(arr[i])) throw new Error(`frechetDistance: ${name}[${i}] is ${arr[i]}`);
  }
  let dmu = 0;
  for (let i = 0; i < f; i++) dmu += (a.mean[i] - b.mean[i]) ** 2;
  let trA = 0;
  let trB = 0;
  for (let i = 0; i < f; i++) {
    trA += a.cov[i * f + i];
    trB += b.cov[i * f + i];
  }
  const sa = sqrtPsd(a.cov, f);
  const m = matmulSym(matmul(sa, b.cov, f), sa, f);
  const { values } = symmetricEigen(m, f);
  let trSqrt = 0;
  for (const v of values) trSqrt += Math.sqrt(Math.max(v, 0));
  return Math.max(0, dmu + trA + trB - 2 * trSqrt);
}

/** Fréchet distance between the statistics of two feature matrices ([na, F] and [nb, F]). */
export function frechetDistanceOf(a: Float64Array, b: Float64Array, dim: number): number {
  return frechetDistance(featureStats(a, a.length / dim, dim), featureStats(b, b.length / dim, dim));
}

/**
 * The real-data floor at sample size n: the Fréchet distance between two disjoint random subsets of n rows
 * each of `features` (real images' features, row-major [N, F] with N ≥ 2n), drawn with Rng(seed). What a
 * perfect generator scores against n real images. With `repeats` > 1 the mean over that many draws
 * (seeds seed, seed + 1, …).
 */
export function realDataFloor(features: Float64Array, dim: number, n: number, seed = 0, repeats = 1): number {
  if (!Number.isInteger(dim) || dim < 1 || features.length % dim !== 0) throw new Error(`realDataFloor: ${features.length} values are not rows of ${dim} features`);
  const total = features.length / dim;
  if (!Number.isInteger(n) || n < 2) throw new Error(`realDataFloor: n must be an integer ≥ 2, got ${n}`);
  if (2 * n > total) throw new Error(`realDataFloor: two disjoint subsets of ${n} need ${2 * n} rows, got ${total}`);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`realDataFloor: repeats must be a positive integer, got ${repeats}`);
  let sum = 0;
  for (let r = 0; r < repeats; r++) {
    const perm = Int32Array.from({ length: total }, (_, i) => i);
    new Rng(seed + r).shuffle(perm);
    const a = selectRows(features, dim, perm.subarray(0, n));
    const b = selectRows(features, dim, perm.subarray(n, 2 * n));
    sum += frechetDistanceOf(a, b, dim);
  }
  return sum / repeats;
}

// ---------------------------------------------------------------------------------------------
// dense float64 linear algebra (row-major n×n)

function matmul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      if (aik === 0) continue;
      const br = k * n;
      const or = i * n;
      for (let j = 0; j < n; j++) out[or + j] += aik * b[br + j];
    }
  }
  return out;
}

/** a·b, then symmetrised ((M + Mᵀ)/2) — for products that are symmetric in exact arithmetic. */
function matmulSym(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const m = matmul(a, b, n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (m[i * n + j] + m[j * n + i]);
      m[i * n + j] = v;
      m[j * n + i] = v;
    }
  }
  return m;
}

/** The PSD square root V diag(√max(λ, 0)) Vᵀ of a symmetric matrix. */
export function sqrtPsd(a: Float64Array, n: number): Float64Array {
  const { values, vectors } = symmetricEigen(a, n);
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const s = Math.sqrt(Math.max(values[k], 0));
    if (s === 0) continue;
    for (let i = 0; i < n; i++) {
      const vik = vectors[i * n + k] * s;
      if (vik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += vik * vectors[j * n + k];
    }
  }
  return out;
}

/**
 * Eigendecomposition of a symmetric n×n matrix (row-major; only its symmetric part is meaningful):
 * A = V diag(values) Vᵀ with `values` ascending and `vectors` [n, n] row-major holding the eigenvectors
 * as columns (orthonormal). Householder reduction to tridiagonal form, then the implicit QL algorithm with
 * Wilkinson-style shifts (EISPACK tred2 / tql2), in float64. The input is not modified.
 */
export function symmetricEigen(a: ArrayLike<number>, n: number): { values: Float64Array; vectors: Float64Array } {
  if (!Number.isInteger(n) || n < 1 || a.length !== n * n) throw new Error(`symmetricEigen: ${a.length} values for a ${n}×${n} matrix`);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const v = a[i * n + j];
      if (!Number.isFinite(v)) throw new Error(`symmetricEigen: entry [${i}, ${j}] is ${v}`);
      V[i * n + j] = v;
    }
  }
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  tred2(V, d, e, n);
  tql2(V, d, e, n);
  for (let i = 0; i < n; i++) if (!Number.isFinite(d[i])) throw new Error(`symmetricEigen: eigenvalue ${i} came out ${d[i]} (the input's scale overflows float64?)`);
  // Sort ascending (selection sort, moving the eigenvector columns with the values).
  for (let i = 0; i < n - 1; i++) {
    let k = i;
    for (let j = i + 1; j < n; j++) if (d[j] < d[k]) k = j;
    if (k !== i) {
      const t = d[i];
      d[i] = d[k];
      d[k] = t;
      for (let r = 0; r < n; r++) {
        const u = V[r * n + i];
        V[r * n + i] = V[r * n + k];
        V[r * n + k] = u;
      }
    }
  }
  return { values: d, vectors: V };
}

/** Householder tridiagonalisation: on return V holds the orthogonal transform, d the diagonal and
 * e[1..n-1] the sub-diagonal (e[0] = 0). */
function tred2(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        V[j * n + i] = f;
        g = e[j] + V[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j] * d[k];
          e[k] += V[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) V[k * n + j] -= f * e[k] + g * d[k];
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  // Accumulate the transformations.
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i];
    V[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1] * V[k * n + j];
        for (let k = 0; k <= i; k++) V[k * n + j] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j];
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/** Implicit QL on the tridiagonal (d, e), accumulating the rotations into V; d becomes the eigenvalues. */
function tql2(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 100) throw new Error('symmetricEigen: QL iteration did not converge');
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          for (let k = 0; k < n; k++) {
            h = V[k * n + i + 1];
            V[k * n + i + 1] = s * V[k * n + i] + c * h;
            V[k * n + i] = c * V[k * n + i] - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}
