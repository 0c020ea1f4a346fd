// Generation quality of a class-conditional generator as a function of the token count k: n samples per
// class are generated once (R tokens each) and their prefixes of length k decoded; each k is scored by the
// class accuracy of the project's classifiers (prediction = the class asked for), the Fréchet distance of
// the classifier's features against a real reference split, and a per-class diversity ratio. Next to them:
// the same Fréchet distance for real images (the floor at the same n) and for the tokenizer's own
// reconstructions of real images at the same k (what the generator's tokens can at best decode to).

import type { Generator, GenerationSettings } from '../ar/generator.js';
import { powerOfTwoKs } from '../flextok/model.js';
import { concat, slice } from '../tensor/ops.js';
import { noGrad, type Tensor } from '../tensor/tensor.js';
import type { FmnistClassifier } from './classifier.js';
import { classDiversity } from './diversity.js';
import { classifierFeatures, featureStats, frechetDistance, type FeatureStats } from './frechet.js';
import { clampToDisplayRange } from './metrics.js';
import type { NamedClassifier } from './reconstruction.js';

/** Real images with labels: [N, 1, H, W] in [-1, 1]. */
export interface LabelledImages {
  images: Tensor;
  labels: Int32Array;
}

export interface GenerationEvalOptions {
  /** samples per class */
  perClass: number;
  /** token counts (default 1, 2, 4, …, R) */
  ks?: number[];
  /** sampling settings (num_tokens is ignored: every sample gets R tokens and its prefixes are decoded) */
  settings: GenerationSettings;
  /** classifiers for class accuracy (the first one also gives the features for the Fréchet distance and diversity) */
  classifiers: NamedClassifier[];
  featureModel: FmnistClassifier;
  /** the Fréchet reference set (e.g. the whole test split) */
  reference: LabelledImages;
  /** real images disjoint from the reference (e.g. train images), n of them scored as the floor */
  floorImages: LabelledImages;
  /** real images the tokenizer reconstructs at each k (e.g. the first n test images) */
  reconImages: LabelledImages;
  /** sequences generated per batch (default 100) */
  batchSize?: number;
  /** the reconstruction scores by k from an earlier evaluation with the same tokenizer, images and decoder settings
   * (they do not depend on the generator): those k are not reconstructed again */
  knownRecon?: Map<number, { fdRecon: number; reconAccuracy: number }>;
  onProgress?: (what: string, done: number, total: number) => void;
}

export interface GenerationRow {
  k: number;
  /** per classifier: fraction of generated images classified as the class they were generated for */
  accuracy: number[];
  /** Fréchet distance of the generated images' features to the reference */
  fd: number;
  /** the same for the tokenizer's reconstructions of reconImages at this k */
  fdRecon: number;
  /** class accuracy (first classifier) of those reconstructions */
  reconAccuracy: number;
  /** mean over classes of (mean pairwise feature distance of generated) / (of real reference images) */
  diversity: number;
}

export interface GenerationReport {
  samples: number;
  perClass: number;
  settings: GenerationSettings;
  classifiers: string[];
  /** Fréchet distance of n real (floor) images to the reference: what a perfect generator scores at this n */
  fdFloor: number;
  /** per classifier: accuracy on the floor images (the best a generator can expect) */
  floorAccuracy: number[];
  referenceSize: number;
  rows: GenerationRow[];
  seconds: number;
}

function statsOf(features: Float64Array, dim: number): FeatureStats {
  return featureStats(features, features.length / dim, dim);
}

function accuracyOf(c: NamedClassifier, images: Tensor, labels: ArrayLike<number>): number {
  const pred = c.model.predict(images);
  let ok = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === labels[i]) ok++;
  return ok / pred.length;
}

/** Score a generator at every k (see the module comment). */
export function evaluateGeneration(gen: Generator, opts: GenerationEvalOptions): GenerationReport {
  const started = Date.now();
  const r = gen.model.config.num_tokens;
  const ks = opts.ks ?? powerOfTwoKs(r);
  for (const k of ks) if (!Number.isInteger(k) || k < 1 || k > r) throw new RangeError(`k = ${k} must be an integer in [1, ${r}]`);
  if (!Number.isInteger(opts.perClass) || opts.perClass < 1) throw new RangeError(`perClass must be a positive integer, got ${opts.perClass}`);
  if (opts.classifiers.length === 0) throw new Error('evaluateGeneration: give at least one classifier');
  const numClasses = gen.model.config.num_classes;
  const n = numClasses * opts.perClass;
  const bs = opts.batchSize ?? 100;
  const features = (x: Tensor) => classifierFeatures(opts.featureModel, x);
  const dim = opts.featureModel.widths[2];

  // reference and floor
  const reference = statsOf(features(opts.reference.images), dim);
  const floorFeat = features(opts.floorImages.images);
  const fdFloor = frechetDistance(statsOf(floorFeat, dim), reference);
  const floorAccuracy = opts.classifiers.map((c) => accuracyOf(c, opts.floorImages.images, opts.floorImages.labels));

  // generate: class-major order, n sequences of R tokens, batch b seeded with seed + b (independent of the k's)
  const classes = Array.from({ length: n }, (_, i) => Math.floor(i / opts.perClass));
  const tokens: Int32Array[] = [];
  const s: GenerationSettings = { ...opts.settings, num_tokens: r };
  for (let start = 0, b = 0; start < n; start += bs, b++) {
    tokens.push(...gen.generateTokens(classes.slice(start, start + bs), { ...s, seed: s.seed + b }));
    opts.onProgress?.('generate', Math.min(n, start + bs), n);
  }

  // the real images the tokenizer reconstructs, tokenized once (unless every k's scores are known)
  const m = opts.reconImages.images.shape[0];
  const reconIds: Int32Array[] = [];
  for (let start = 0; start < m && !ks.every((k) => opts.knownRecon?.has(k)); start += bs) {
    const batch = slice(opts.reconImages.images, 0, start, Math.min(m, start + bs));
    reconIds.push(...gen.tokenizer.tokenize(batch).map((t) => Int32Array.from(t)));
  }

  const rows: GenerationRow[] = ks.map((k) => {
    // decode the k-prefixes in batches
    const decoded: Tensor[] = [];
    for (let start = 0; start < n; start += bs) {
      decoded.push(clampToDisplayRange(gen.decode(tokens.slice(start, start + bs), k, s)));
      opts.onProgress?.(`decode k = ${k}`, Math.min(n, start + bs), n);
    }
    const images = decoded.length === 1 ? decoded[0] : noGrad(() => concat(decoded, 0));
    const accuracy = opts.classifiers.map((c) => accuracyOf(c, images, classes));
    const genFeat = features(images);
    const fd = frechetDistance(statsOf(genFeat, dim), reference);
    const div = classDiversity({ features: genFeat, labels: classes }, { features: floorFeat, labels: opts.floorImages.labels }, dim, { numClasses });
    // the tokenizer's reconstructions of real images at the same k
    const known = opts.knownRecon?.get(k);
    if (known) return { k, accuracy, fd, fdRecon: known.fdRecon, reconAccuracy: known.reconAccuracy, diversity: div.meanRatio };
    const recon: Tensor[] = [];
    for (let start = 0; start < m; start += bs) {
      recon.push(clampToDisplayRange(gen.decode(reconIds.slice(start, start + bs), k, s)));
      opts.onProgress?.(`reconstruct k = ${k}`, Math.min(m, start + bs), m);
    }
    const reconImages = recon.length === 1 ? recon[0] : noGrad(() => concat(recon, 0));
    const fdRecon = frechetDistance(statsOf(features(reconImages), dim), reference);
    const reconAccuracy = accuracyOf(opts.classifiers[0], reconImages, opts.reconImages.labels);
    return { k, accuracy, fd, fdRecon, reconAccuracy, diversity: div.meanRatio };
  });
  return {
    samples: n, perClass: opts.perClass, settings: s, classifiers: opts.classifiers.map((c) => c.name), fdFloor, floorAccuracy,
    referenceSize: opts.reference.images.shape[0], rows, seconds: (Date.now() - started) / 1000,
  };
}

/** The report as a markdown table (one row per k). */
export function generationTable(rep: GenerationReport): string {
  const accHeads = rep.classifiers.map((c) => `class accuracy (${c})`);
  const head = ['k', ...accHeads, 'FD', 'FD of reconstructions', 'reconstruction accuracy', 'diversity (gen / real)'];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---:').join(' | ')} |`];
  for (const row of rep.rows) {
    lines.push(`| ${[
      String(row.k), ...row.accuracy.map((a) => `${(100 * a).toFixed(1)} %`), row.fd.toPrecision(3), row.fdRecon.toPrecision(3),
      `${(100 * row.reconAccuracy).toFixed(1)} %`, row.diversity.toFixed(3),
    ].join(' | ')} |`);
  }
  lines.push('');
  lines.push(`${rep.samples} generated samples (${rep.perClass} per class); Fréchet distances on the classifier's pooled features against ` +
    `${rep.referenceSize} real reference images; real-data floor at the same n: FD ${rep.fdFloor.toPrecision(3)}, class accuracy ` +
    `${rep.floorAccuracy.map((a) => `${(100 * a).toFixed(1)} %`).join(' / ')}. ${rep.seconds.toFixed(0)} s.`);
  return lines.join('\n');
}
