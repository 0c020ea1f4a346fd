// Reconstruction quality of a trained tokenizer as a function of the token count k: for each k,
// images → tokens → first k tokens → decoded images, scored by MSE, PSNR, SSIM (src/eval/metrics.ts,
// reconstructions clamped to the displayable [-1, 1]) and, with classifiers, by class agreement
// (a classifier's prediction on the reconstruction equals the image's true label), one column per classifier.

import type { Tensor } from '../tensor/tensor.js';
import { slice } from '../tensor/ops.js';
import { powerOfTwoKs, type FlexTok, type ReconstructOptions } from '../flextok/model.js';
import { clampToDisplayRange, mse, psnrPerImage, ssimPerImage } from './metrics.js';

/** Anything that predicts a class per image [B, C, H, W] (FmnistClassifier). */
export interface ImageClassifier {
  predict(images: Tensor): Int32Array;
}

export interface NamedClassifier {
  name: string;
  model: ImageClassifier;
}

export interface ReconstructionEvalOptions extends Omit<ReconstructOptions, 'firstIndex' | 'onStep'> {
  /** token counts (default 1, 2, 4, …, R) */
  ks?: number[];
  /** images per decoding batch (default 64) */
  batchSize?: number;
  /** classifiers for class agreement, each under a short name (none: no agreement columns) */
  classifiers?: NamedClassifier[];
  /** called after each batch with (images done, total) */
  onProgress?: (done: number, total: number) => void;
  /** sees every batch's reconstructions at each k (clamped to [-1, 1]; images start … start + B − 1), for scores of
   * the caller's own (e.g. the scene metrics of scripts/eval-tokenizer.ts) */
  onReconstruction?: (k: number, recon: Tensor, start: number) => void;
}

export interface ReconstructionRow {
  k: number;
  mse: number;
  psnr: number;
  ssim: number;
  /** per classifier (report.classifiers order): fraction of reconstructions assigned the true label */
  classAgreement: number[];
}

export interface ReconstructionReport {
  images: number;
  steps: number;
  guidance: number;
  apg: boolean;
  seed: number;
  /** scale of the decoder's initial noise */
  noiseScale: number;
  /** names of the classifiers behind classAgreement and originalAccuracy */
  classifiers: string[];
  /** per classifier: accuracy on the original images (the reference for classAgreement) */
  originalAccuracy: number[];
  rows: ReconstructionRow[];
}

/** Score reconstructions of images [N, C, H, W] (labels [N]) at every k. */
export function evaluateReconstruction(model: FlexTok, images: Tensor, labels: Int32Array, opts: ReconstructionEvalOptions = {}): ReconstructionReport {
  const n = images.shape[0];
  const ks = opts.ks ?? powerOfTwoKs(model.numTokens);
  for (const k of ks) if (!Number.isInteger(k) || k < 1 || k > model.numTokens) throw new RangeError(`k = ${k} must be an integer in [1, ${model.numTokens}]`);
  const bs = opts.batchSize ?? 64;
  const classifiers = opts.classifiers ?? [];
  const sums = ks.map(() => ({ se: 0, values: 0, psnr: 0, ssim: 0, agree: classifiers.map(() => 0) }));
  const originalCorrect = classifiers.map(() => 0);
  const correct = (c: ImageClassifier, x: Tensor, start: number): number => {
    const pred = c.predict(x);
    let ok = 0;
    for (let i = 0; i < pred.length; i++) if (pred[i] === labels[start + i]) ok++;
    return ok;
  };
  for (let start = 0; start < n; start += bs) {
    const end = Math.min(n, start + bs);
    const batch = slice(images, 0, start, end);
    // Noise per image index, so results do not depend on the batch size.
    const recon = model.reconstruct(batch, ks, { steps: opts.steps, guidance: opts.guidance, apg: opts.apg, seed: opts.seed, noiseScale: opts.noiseScale, firstIndex: start });
    classifiers.forEach((c, j) => (originalCorrect[j] += correct(c.model, batch, start)));
    recon.forEach((r, j) => {
      const rc = clampToDisplayRange(r);
      opts.onReconstruction?.(ks[j]!, rc, start);
      const s = sums[j];
      s.se += mse(rc, batch) * rc.size;
      s.values += rc.size;
      s.psnr += psnrPerImage(rc, batch).reduce((a, b) => a + b, 0);
      s.ssim += ssimPerImage(rc, batch).reduce((a, b) => a + b, 0);
      classifiers.forEach((c, i) => (s.agree[i] += correct(c.model, rc, start)));
    });
    opts.onProgress?.(end, n);
  }
  return {
    images: n,
    steps: opts.steps ?? 25,
    guidance: opts.guidance ?? 1,
    apg: opts.apg ?? false,
    seed: opts.seed ?? 0,
    noiseScale: opts.noiseScale ?? 1,
    classifiers: classifiers.map((c) => c.name),
    originalAccuracy: originalCorrect.map((c) => c / n),
    rows: ks.map((k, j) => ({
      k,
      mse: sums[j].se / sums[j].values,
      psnr: sums[j].psnr / n,
      ssim: sums[j].ssim / n,
      classAgreement: sums[j].agree.map((a) => a / n),
    })),
  };
}

/** The report as a markdown table (one row per k). */
export function reconstructionTable(r: ReconstructionReport): string {
  const agreementHeads = r.classifiers.length === 1 ? ['class agreement'] : r.classifiers.map((name) => `class agreement (${name})`);
  const head = ['k', 'MSE', 'PSNR (dB)', 'SSIM', ...agreementHeads];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map((h) => (h === 'k' ? '---:' : '---:')).join(' | ')} |`];
  for (const row of r.rows) {
    const cells = [String(row.k), row.mse.toFixed(5), row.psnr.toFixed(2), row.ssim.toFixed(4)];
    for (const a of row.classAgreement) cells.push(`${(100 * a).toFixed(1)}%`);
    lines.push(`| ${cells.join(' | ')} |`);
  }
  const notes = [`${r.images} images, ${r.steps} Euler steps, guidance ${r.guidance}${r.guidance !== 1 ? (r.apg ? ' (APG)' : ' (CFG)') : ''}, seed ${r.seed}${r.noiseScale !== 1 ? `, noise scale ${r.noiseScale}` : ''}`];
  r.classifiers.forEach((name, i) => notes.push(`${r.classifiers.length === 1 ? 'classifier' : name} accuracy on the originals: ${(100 * r.originalAccuracy[i]).toFixed(1)}%`));
  return `${lines.join('\n')}\n\n${notes.join('; ')}.`;
}
