// REPA (representation alignment, spec §10.7): a 3-layer SiLU MLP projects the decoder's hidden
// patch tokens after one block to the width of a frozen teacher's feature map; the loss is the
// negative mean cosine similarity to the teacher's features of the clean image, resampled to the
// decoder's patch grid. The teacher is pluggable; Fashion-MNIST uses our small CNN classifier.

import * as fs from 'node:fs';
import { linear } from '../tensor/nn.js';
import { add, div, mean, mul, neg, silu, sqrt, square, sum } from '../tensor/ops.js';
import { Rng } from '../tensor/rng.js';
import { noGrad, Tensor } from '../tensor/tensor.js';
import { linearInit } from './init.js';
import type { LinearParams } from '../flextok/transformer.js';

/** A frozen feature extractor: images [B, C, H, W] in [-1, 1] → features [B, Ct, h, w] (no autograd). */
export interface RepaTeacher {
  features(images: Tensor): Tensor;
}

/** Linear(D→H) · SiLU · Linear(H→H) · SiLU · Linear(H→Ct), Xavier init, biases 0. */
export class RepaProjector {
  fc1: LinearParams;
  fc2: LinearParams;
  fc3: LinearParams;

  constructor(rng: Rng, dimIn: number, hidden: number, dimOut: number) {
    this.fc1 = linearInit(rng, hidden, dimIn, { bias: true });
    this.fc2 = linearInit(rng, hidden, hidden, { bias: true });
    this.fc3 = linearInit(rng, dimOut, hidden, { bias: true });
  }

  /** x [N, D] → [N, Ct]. */
  forward(x: Tensor): Tensor {
    const h1 = silu(linear(x, this.fc1.weight, this.fc1.bias));
    const h2 = silu(linear(h1, this.fc2.weight, this.fc2.bias));
    return linear(h2, this.fc3.weight, this.fc3.bias);
  }
}

/** PyTorch adaptive_avg_pool2d bins: output cell i averages input [floor(i·n/m), ceil((i+1)·n/m)). */
function adaptiveBins(inSize: number, outSize: number): [number, number][] {
  return Array.from({ length: outSize }, (_, i) => [Math.floor((i * inSize) / outSize), Math.ceil(((i + 1) * inSize) / outSize)] as [number, number]);
}

/** Bilinear source taps with half-pixel centres (align_corners = False), edges clamped. */
function bilinearTaps(inSize: number, outSize: number): [number, number, number][] {
  return Array.from({ length: outSize }, (_, o) => {
    const x = Math.max(0, ((o + 0.5) * inSize) / outSize - 0.5);
    const i0 = Math.min(inSize - 1, Math.floor(x));
    return [i0, Math.min(inSize - 1, i0 + 1), x - i0] as [number, number, number];
  });
}

/** Teacher features [B, Ct, h, w] resampled to a gh×gw grid, as rows [B·gh·gw, Ct] in the decoder's
 * patch order (row-major). 'avgpool' = adaptive average pooling, 'bilinear' = bilinear interpolation. */
export function featuresToPatchRows(feats: Tensor, gh: number, gw: number, mode: 'avgpool' | 'bilinear'): Tensor {
  if (feats.ndim !== 4) throw new Error(`REPA teacher features must be [B, C, h, w], got [${feats.shape.join(', ')}]`);
  const [b, c, h, w] = feats.shape;
  const src = feats.f;
  const out = new Float32Array(b * gh * gw * c);
  const binsY = adaptiveBins(h, gh);
  const binsX = adaptiveBins(w, gw);
  const tapsY = bilinearTaps(h, gh);
  const tapsX = bilinearTaps(w, gw);
  for (let n = 0; n < b; n++) {
    for (let i = 0; i < gh; i++) {
      for (let j = 0; j < gw; j++) {
        const row = ((n * gh + i) * gw + j) * c;
        for (let ch = 0; ch < c; ch++) {
          const plane = (n * c + ch) * h * w;
          let v: number;
          if (mode === 'avgpool') {
            const [y0, y1] = binsY[i];
            const [x0, x1] = binsX[j];
            let s = 0;
            for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) s += src[plane + y * w + x];
            v = s / ((y1 - y0) * (x1 - x0));
          } else {
            const [ya, yb, fy] = tapsY[i];
            const [xa, xb, fx] = tapsX[j];
            const top = src[plane + ya * w + xa] + (src[plane + ya * w + xb] - src[plane + ya * w + xa]) * fx;
            const bot = src[plane + yb * w + xa] + (src[plane + yb * w + xb] - src[plane + yb * w + xa]) * fx;
            v = top + (bot - top) * fy;
          }
          out[row + ch] = v;
        }
      }
    }
  }
  return new Tensor(out, [b * gh * gw, c]);
}

/** Rows scaled to unit L2 norm (differentiable): x / sqrt(Σx² + eps). */
export function l2NormalizeRows(x: Tensor, eps = 1e-12): Tensor {
  return div(x, sqrt(add(sum(square(x), -1, true), eps)));
}

/** −mean cosine similarity between predicted rows [N, C] and fixed target rows [N, C]. */
export function negativeCosineLoss(pred: Tensor, target: Tensor): Tensor {
  const t = noGrad(() => l2NormalizeRows(target));
  return neg(mean(sum(mul(l2NormalizeRows(pred), t), -1)));
}

/** The REPA teacher named in a config: 'fmnist-classifier' loads src/eval/classifier.ts weights. */
export async function loadTeacher(name: string, weights: string): Promise<RepaTeacher> {
  if (name === 'fmnist-classifier' || name === 'fmnist-classifier-cells') {
    if (!fs.existsSync(weights)) {
      throw new Error(`REPA teacher weights ${weights} not found: train or fetch the Fashion-MNIST classifier first, or set "repa": null in the config`);
    }
    const { FmnistClassifier } = await import('../eval/classifier.js');
    const model = FmnistClassifier.load(weights);
    const features = (images: Tensor) => model.features(images);
    return name === 'fmnist-classifier' ? { features } : cellTeacher(features);
  }
  throw new Error(`unknown REPA teacher '${name}' (available: fmnist-classifier, fmnist-classifier-cells)`);
}

/**
 * For 2×2 scenes (src/io/scenes.ts): the teacher runs on each cell's 28×28 item crop [B·4, 1, 28, 28] and the four
 * feature maps [Ct, h, w] are tiled back into the scene's layout [B, Ct, 2h, 2w].
 */
export function cellTeacher(features: (images: Tensor) => Tensor): RepaTeacher {
  const cell = 32;
  const side = 28;
  const off = 2;
  return {
    features(images: Tensor): Tensor {
      const [b, c, h, w] = images.shape;
      if (images.ndim !== 4 || c !== 1 || h !== 2 * cell || w !== 2 * cell) {
        throw new Error(`REPA teacher 'fmnist-classifier-cells' takes 64×64 scenes [B, 1, 64, 64], got [${images.shape.join(', ')}]`);
      }
      const src = images.f;
      const crops = new Float32Array(b * 4 * side * side);
      for (let i = 0; i < b; i++) {
        for (let q = 0; q < 4; q++) {
          const y0 = (q >> 1) * cell + off;
          const x0 = (q & 1) * cell + off;
          for (let y = 0; y < side; y++) {
            const from = i * h * w + (y0 + y) * w + x0;
            crops.set(src.subarray(from, from + side), ((i * 4 + q) * side + y) * side);
          }
        }
      }
      const f = features(new Tensor(crops, [b * 4, 1, side, side])); // [B·4, Ct, fh, fw]
      const [, ct, fh, fw] = f.shape;
      const out = new Float32Array(b * ct * 4 * fh * fw);
      const fs_ = f.f;
      for (let i = 0; i < b; i++) {
        for (let q = 0; q < 4; q++) {
          for (let ch = 0; ch < ct; ch++) {
            for (let y = 0; y < fh; y++) {
              const from = (((i * 4 + q) * ct + ch) * fh + y) * fw;
              const to = ((i * ct + ch) * 2 * fh + (q >> 1) * fh + y) * 2 * fw + (q & 1) * fw;
              for (let x = 0; x < fw; x++) out[to + x] = fs_[from + x]!;
            }
          }
        }
      }
      return new Tensor(out, [b, ct, 2 * fh, 2 * fw]);
    },
  };
}
