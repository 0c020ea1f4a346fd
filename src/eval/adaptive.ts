// Adaptive token count: the fewest tokens that reconstruct an image to a quality target. The rule (shared by
// `flextok tokenize --target-psnr` and the web page's "auto k", so that both give the same k):
//   candidates k = 1, 2, 4, …, R (powers of two, and R itself), each prefix decoded with the same decoder settings and
//   seed; the reconstruction is clamped to [-1, 1] and compared with the image by PSNR (data range 2);
//   k = the smallest candidate whose PSNR ≥ target, or R (reached = false) when none does.

import type { FlexTok } from '../flextok/model.js';
import { powerOfTwoKs } from '../flextok/model.js';
import type { Tensor } from '../tensor/tensor.js';
import { clampToDisplayRange, psnrPerImage } from './metrics.js';

export interface AdaptiveKOptions {
  /** decoder Euler steps, guidance, APG, seed and noise scale (the FlexTok.detokenize defaults when absent) */
  steps?: number;
  guidance?: number;
  apg?: boolean;
  seed?: number;
  noiseScale?: number;
}

export interface AdaptiveK {
  /** the chosen token count */
  k: number;
  /** PSNR (dB) of the reconstruction at k */
  psnr: number;
  /** whether that PSNR reaches the target (false: no candidate did, k = R) */
  reached: boolean;
  /** every candidate's PSNR, in order of k */
  candidates: { k: number; psnr: number }[];
}

/** The adaptive k of one image [1, C, H, W] in [-1, 1] at the model's size, given its R tokens (see the module comment). */
export function smallestKForPsnr(model: FlexTok, image: Tensor, tokens: readonly number[], targetPsnr: number, opts: AdaptiveKOptions = {}): AdaptiveK {
  if (!Number.isFinite(targetPsnr)) throw new Error(`the PSNR target must be a finite number of dB, got ${targetPsnr}`);
  if (image.ndim !== 4 || image.shape[0] !== 1) throw new Error(`smallestKForPsnr: expected one image [1, C, H, W], got [${image.shape.join(', ')}]`);
  const ks = powerOfTwoKs(Math.min(tokens.length, model.numTokens));
  const [, , h, w] = image.shape;
  // one batch; each sequence's decoder noise comes from the seed alone, so the batch does not change any image
  const recon = model.decodeImages(ks.map((k) => tokens.slice(0, k)), { ...opts, imageSize: [h!, w!] });
  const candidates = ks.map((k, i) => ({ k, psnr: psnrPerImage(clampToDisplayRange(recon[i]!), image)[0]! }));
  const hit = candidates.find((c) => c.psnr >= targetPsnr);
  const chosen = hit ?? candidates[candidates.length - 1]!;
  return { k: chosen.k, psnr: chosen.psnr, reached: hit !== undefined, candidates };
}
