// Per-class diversity of generated images, measured against real images of the same class.
//
// Definition. For a set of images of one class, diversity D = the mean Euclidean (L2) distance between
// the classifier features (`classifierFeatures`, the pooled 64-d 'block2' vector) of all unordered pairs
// of distinct images: D = 2 / (n(n − 1)) · Σ_{i<j} ‖φ(xᵢ) − φ(xⱼ)‖₂. This is an unbiased estimate of
// E‖φ(X) − φ(X′)‖ for independent X, X′ of that class, so it does not drift with n (unlike a mean distance
// to the nearest neighbour). A class's ratio is D(generated) / D(real): 1.0 means the generator's samples
// vary as much as real images of that class do, near 0 means mode collapse (identical samples give 0);
// above 1 means more spread than real data (often off-manifold samples — read it next to the Fréchet
// distance and class accuracy). The summary is the mean of the per-class ratios over classes that have at
// least 2 generated and 2 real images.

import { Rng } from '../tensor/rng.js';

/** Mean pairwise L2 distance between the rows `rows` (default: all) of a row-major [N, dim] matrix;
 * needs at least 2 rows. */
export function meanPairwiseDistance(features: ArrayLike<number>, dim: number, rows?: ArrayLike<number>): number {
  if (!Number.isInteger(dim) || dim < 1 || features.length % dim !== 0) throw new Error(`meanPairwiseDistance: ${features.length} values are not rows of ${dim} features`);
  const idx = rows ?? Int32Array.from({ length: features.length / dim }, (_, i) => i);
  const n = idx.length;
  if (n < 2) throw new Error(`meanPairwiseDistance: need at least 2 rows, got ${n}`);
  let sum = 0;
  for (let a = 0; a < n; a++) {
    const oa = idx[a] * dim;
    for (let b = a + 1; b < n; b++) {
      const ob = idx[b] * dim;
      let s = 0;
      for (let k = 0; k < dim; k++) {
        const d = features[oa + k] - features[ob + k];
        s += d * d;
      }
      sum += Math.sqrt(s);
    }
  }
  return sum / ((n * (n - 1)) / 2);
}

/** Features of a labelled image set: row-major [N, dim] and N labels. */
export interface LabelledFeatures {
  features: ArrayLike<number>;
  labels: ArrayLike<number>;
}

export interface ClassDiversity {
  cls: number;
  /** mean pairwise feature distance among generated images of this class (NaN if fewer than 2) */
  generated: number;
  /** the same among real images of this class (NaN if fewer than 2) */
  real: number;
  /** generated / real (1.0 ≈ real diversity) */
  ratio: number;
  nGenerated: number;
  nReal: number;
}

export interface DiversityReport {
  perClass: ClassDiversity[];
  /** mean of the finite per-class ratios (NaN if none) */
  meanRatio: number;
}

/**
 * Per-class diversity of generated images next to real ones (definition in the file header). Classes are
 * 0..numClasses−1 (default: 1 + the largest label seen). `maxPerClass` caps the images used per class and
 * set (a seeded random subset, Rng(seed)), bounding the O(n²) pair count for large real splits.
 */
export function classDiversity(generated: LabelledFeatures, real: LabelledFeatures, dim: number, opts: { numClasses?: number; maxPerClass?: number; seed?: number } = {}): DiversityReport {
  for (const [name, set] of [['generated', generated], ['real', real]] as const) {
    if (set.features.length !== set.labels.length * dim) throw new Error(`classDiversity: ${name} has ${set.features.length} feature values for ${set.labels.length} labels × ${dim}`);
  }
  let maxLabel = -1;
  for (const set of [generated, real]) for (let i = 0; i < set.labels.length; i++) maxLabel = Math.max(maxLabel, set.labels[i]);
  const numClasses = opts.numClasses ?? maxLabel + 1;
  const rng = new Rng(opts.seed ?? 0);
  const rowsOf = (set: LabelledFeatures, c: number): Int32Array => {
    const rows: number[] = [];
    for (let i = 0; i < set.labels.length; i++) if (set.labels[i] === c) rows.push(i);
    const arr = Int32Array.from(rows);
    if (opts.maxPerClass !== undefined && arr.length > opts.maxPerClass) {
      rng.shuffle(arr);
      return arr.slice(0, opts.maxPerClass);
    }
    return arr;
  };
  const perClass: ClassDiversity[] = [];
  for (let c = 0; c < numClasses; c++) {
    const g = rowsOf(generated, c);
    const r = rowsOf(real, c);
    const dg = g.length >= 2 ? meanPairwiseDistance(generated.features, dim, g) : NaN;
    const dr = r.length >= 2 ? meanPairwiseDistance(real.features, dim, r) : NaN;
    perClass.push({ cls: c, generated: dg, real: dr, ratio: dg / dr, nGenerated: g.length, nReal: r.length });
  }
  const finite = perClass.map((p) => p.ratio).filter((v) => Number.isFinite(v));
  return { perClass, meanRatio: finite.length ? finite.reduce((s, v) => s + v, 0) / finite.length : NaN };
}
