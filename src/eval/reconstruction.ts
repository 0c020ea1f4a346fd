// Reconstruction quality of a trained tokenizer as a function of the token count k: for each k,
// images → tokens → first k tokens → decoded images, scored by MSE, PSNR, SSIM (src/eval/metrics.ts,
// reconstructions clamped to the displayable [-1, 1]) and, with a classifier, by class agreement
// (the classifier's prediction on the reconstruction equals the image's true label).

import type { Tensor } from '../tensor/tensor.js';
import { slice } from '../tensor/ops.js';
import { powerOfTwoKs, type FlexTok, type ReconstructOptions } from '../flextok/model.js';
import { clampToDisplayRange, mse, psnrPerImage, ssimPerImage } from './metrics.js';

/** Anything that predicts a class per image [B, C, H, W] (FmnistClassifier). */
export interface ImageClassifier {
  predict(images: Tensor): Int32Array;
}

export interface ReconstructionEvalOptions extends Omit<ReconstructOptions, 'firstIndex' | 'onStep'> {
  /** token counts (default 1, 2, 4, …, R) */
  ks?: number[];
  /** images per decoding batch (default 64) */
  batchSize?: number;
  classifier?: ImageClassifier | null;
  /** called after each batch with (images done, total) */
  onProgress?: (done: number, total: number) => void;
}

export interface ReconstructionRow {
  k: number;
  mse: number;
  psnr: number;
  ssim: number;
  /** fraction of reconstructions the classifier assigns the true label (null without a classifier) */
  classAgreement: number | null;
}

export interface ReconstructionReport {
  images: number;
  steps: number;
  guidance: number;
  apg: boolean;
  seed: number;
  /** classifier accuracy on the original images (reference for classAgreement) */
  originalAccuracy: number | null;
  rows: ReconstructionRow[];
}

/** Score reconstructions of images [N, C, H, W] (labels [N]) at every k. */
export function evaluateReconstruction(model: FlexTok, images: Tensor, labels: Int32Array, opts: ReconstructionEvalOptions = {}): ReconstructionReport {
  const n = images.shape[0];
  const ks = opts.ks ?? powerOfTwoKs(model.numTokens);
  for (const k of ks) if (!Number.isInteger(k) || k < 1 || k > model.numTokens) throw new RangeError(`k = ${k} must be an integer in [1, ${model.numTokens}]`);
  const bs = opts.batchSize ?? 64;
  const sums = ks.map(() => ({ se: 0, values: 0, psnr: 0, ssim: 0, agree: 0 }));
  let originalCorrect = 0;
  for (let start = 0; start < n; start += bs) {
    const end = Math.min(n, start + bs);
    const batch = slice(images, 0, start, end);
    // Noise per image index, so results do not depend on the batch size.
    const recon = model.reconstruct(batch, ks, { steps: opts.steps, guidance: opts.guidance, apg: opts.apg, seed: opts.seed, firstIndex: start });
    if (opts.classifier) {
      const pred = opts.classifier.predict(batch);
      for (let i = 0; i < pred.length; i++) if (pred[i] === labels[start + i]) originalCorrect++;
    }
    recon.forEach((r, j) => {
      const rc = clampToDisplayRange(r);
      const s = sums[j];
      s.se += mse(rc, batch) * rc.size;
      s.values += rc.size;
      s.psnr += psnrPerImage(rc, batch).reduce((a, b) => a + b, 0);
      s.ssim += ssimPerImage(rc, batch).reduce((a, b) => a + b, 0);
      if (opts.classifier) {
        const pred = opts.classifier.predict(rc);
        for (let i = 0; i < pred.length; i++) if (pred[i] === labels[start + i]) s.agree++;
      }
    });
    opts.onProgress?.(end, n);
  }
  return {
    images: n,
    steps: opts.steps ?? 25,
    guidance: opts.guidance ?? 1,
    apg: opts.apg ?? false,
    seed: opts.seed ?? 0,
    originalAccuracy: opts.classifier ? originalCorrect / n : null,
    rows: ks.map((k, j) => ({
      k,
      mse: sums[j].se / sums[j].values,
      psnr: sums[j].psnr / n,
      ssim: sums[j].ssim / n,
      classAgreement: opts.classifier ? sums[j].agree / n : null,
    })),
  };
}

/** The report as a markdown table (one row per k). */
export function reconstructionTable(r: ReconstructionReport): string {
  const withClass = r.rows.some((row) => row.classAgreement !== null);
  const head = ['k', 'MSE', 'PSNR (dB)', 'SSIM', ...(withClass ? ['class agreement'] : [])];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map((h) => (h === 'k' ? '---:' : '---:')).join(' | ')} |`];
  for (const row of r.rows) {
    const cells = [String(row.k), row.mse.toFixed(5), row.psnr.toFixed(2), row.ssim.toFixed(4)];
    if (withClass) cells.push(row.classAgreement === null ? '—' : `${(100 * row.classAgreement).toFixed(1)}%`);
    lines.push(`| ${cells.join(' | ')} |`);
  }
  const notes = [`${r.images} images, ${r.steps} Euler steps, guidance ${r.guidance}${r.guidance !== 1 ? (r.apg ? ' (APG)' : ' (CFG)') : ''}, seed ${r.seed}`];
  if (r.originalAccuracy !== null) notes.push(`classifier accuracy on the originals: ${(100 * r.originalAccuracy).toFixed(1)}%`);
  return `${lines.join('\n')}\n\n${notes.join('; ')}.`;
}
