// A small CNN classifier for Fashion-MNIST, written with our engine: used to score generated images
// (accuracy of reconstructions) and, through `features`, as the frozen REPA teacher for tokenizer training.
//
// Architecture (widths w = [w1, w2, w3], default [16, 32, 64]; every conv 3×3 without bias, followed by
// GroupNorm(8 groups, affine) and GELU):
//   input [B, 1, 28, 28] in [-1, 1]   (32×32 inputs, i.e. Fashion-MNIST padded by 2, are centre-cropped to 28)
//   stem   conv 1→w1,  stride 1   → [B, w1, 28, 28]
//   down1  conv w1→w2, stride 2   → [B, w2, 14, 14]
//   block1 conv w2→w2, stride 1   → [B, w2, 14, 14]   = features(x, 'block1')
//   down2  conv w2→w3, stride 2   → [B, w3,  7,  7]
//   block2 conv w3→w3, stride 1   → [B, w3,  7,  7]   = features(x, 'block2')  (the default REPA target)
//   head   'flatten' (default): flatten [w3·7·7] → linear → logits [B, 10]
//          'gap': global average pool [w3] → linear → logits [B, 10]
// Weights are stored as safetensors F16 with the widths and head in the metadata (`arch`).

import { Tensor, noGrad } from '../tensor/tensor.js';
import { conv2d, groupNorm, linear } from '../tensor/nn.js';
import { gelu, mean, slice, max, reshape } from '../tensor/ops.js';
import { Rng } from '../tensor/rng.js';
import { namedTensors } from '../tensor/module.js';
import { readSafetensors, writeSafetensors, toFloat32, type TensorData } from '../io/safetensors.js';
import { float32ToFloat16 } from '../tensor/half.js';
import type { ImageDataset } from '../io/datasets.js';

export const CLASSIFIER_INPUT_SIZE = 28;
const GN_GROUPS = 8;

/** Intermediate feature maps `features` can return. */
export type ClassifierLayer = 'block1' | 'block2';

/** How the final 7×7 map becomes logits: flattened (keeps position) or globally average-pooled. */
export type ClassifierHead = 'flatten' | 'gap';

export interface ClassifierArch {
  /** [w1, w2, w3] channel widths, multiples of 8 */
  widths: [number, number, number];
  head: ClassifierHead;
}

interface ConvNorm {
  /** [out, in, 3, 3] */
  weight: Tensor;
  /** GroupNorm affine [out] */
  normWeight: Tensor;
  normBias: Tensor;
}

interface ClassifierParams {
  stem: ConvNorm;
  down1: ConvNorm;
  block1: ConvNorm;
  down2: ConvNorm;
  block2: ConvNorm;
  head: { weight: Tensor; bias: Tensor };
}

function convNorm(cin: number, cout: number, rng: Rng): ConvNorm {
  const std = Math.sqrt(2 / (cin * 9)); // He init for GELU/ReLU-like activations
  return {
    weight: Tensor.randn([cout, cin, 3, 3], rng, 'float32', std),
    normWeight: Tensor.ones([cout]),
    normBias: Tensor.zeros([cout]),
  };
}

function applyConvNorm(x: Tensor, p: ConvNorm, stride: number): Tensor {
  return gelu(groupNorm(conv2d(x, p.weight, null, { stride, padding: 1 }), GN_GROUPS, p.normWeight, p.normBias));
}

/** Centre-crops [B, 1, H, W] (H, W ≥ 28) to 28×28; 28×28 passes through. */
function toInputSize(images: Tensor): Tensor {
  if (images.ndim !== 4 || images.shape[1] !== 1) throw new Error(`classifier: expected images [B, 1, H, W], got [${images.shape.join(', ')}]`);
  const [, , h, w] = images.shape;
  const s = CLASSIFIER_INPUT_SIZE;
  if (h === s && w === s) return images;
  if (h < s || w < s) throw new Error(`classifier: images are ${h}×${w}, smaller than ${s}×${s}`);
  const y0 = Math.floor((h - s) / 2);
  const x0 = Math.floor((w - s) / 2);
  return slice(slice(images, 2, y0, y0 + s), 3, x0, x0 + s);
}

export class FmnistClassifier {
  private constructor(
    readonly params: ClassifierParams,
    readonly arch: ClassifierArch,
  ) {}

  /** [w1, w2, w3] */
  get widths(): [number, number, number] {
    return this.arch.widths;
  }

  /** Freshly initialised weights (trainable: requiresGrad set). */
  static random(rng: Rng, widths: [number, number, number] = [16, 32, 64], head: ClassifierHead = 'flatten'): FmnistClassifier {
    if (widths.length !== 3 || widths.some((w) => !Number.isInteger(w) || w <= 0 || w % GN_GROUPS !== 0)) {
      throw new Error(`classifier widths must be 3 positive multiples of ${GN_GROUPS}, got [${widths.join(', ')}]`);
    }
    if (head !== 'flatten' && head !== 'gap') throw new Error(`classifier head must be 'flatten' or 'gap', got ${String(head)}`);
    const [w1, w2, w3] = widths;
    const headIn = head === 'flatten' ? w3 * 7 * 7 : w3;
    const params: ClassifierParams = {
      stem: convNorm(1, w1, rng),
      down1: convNorm(w1, w2, rng),
      block1: convNorm(w2, w2, rng),
      down2: convNorm(w2, w3, rng),
      block2: convNorm(w3, w3, rng),
      head: { weight: Tensor.randn([10, headIn], rng, 'float32', 0.01), bias: Tensor.zeros([10]) },
    };
    const model = new FmnistClassifier(params, { widths: [w1, w2, w3], head });
    for (const p of model.parameters()) p.requireGrad();
    return model;
  }

  /** Loads weights written by `save` (frozen: requiresGrad off). */
  static load(file: string): FmnistClassifier {
    const { metadata, tensors } = readSafetensors(file);
    let arch: ClassifierArch;
    try {
      arch = JSON.parse(metadata.arch ?? '') as ClassifierArch;
      if (!Array.isArray(arch.widths) || arch.widths.length !== 3) throw new Error('bad widths');
    } catch {
      throw new Error(`${file}: not a FmnistClassifier checkpoint (metadata "arch" with widths is missing or invalid)`);
    }
    const model = FmnistClassifier.random(new Rng(0), arch.widths, arch.head ?? 'gap');
    for (const [name, t] of model.namedParameters()) {
      const stored = tensors.get(name);
      if (!stored) throw new Error(`${file}: tensor ${name} is missing`);
      if (stored.shape.join() !== t.shape.join()) throw new Error(`${file}: tensor ${name} has shape [${stored.shape.join(', ')}], expected [${t.shape.join(', ')}]`);
      t.f.set(toFloat32(stored));
      t.requireGrad(false);
    }
    return model;
  }

  /** Writes the weights as safetensors F16 (≈ 2 bytes per parameter) with the architecture in the metadata. */
  save(file: string, extraMetadata: Record<string, string> = {}): void {
    const out = new Map<string, TensorData>();
    for (const [name, t] of this.namedParameters()) out.set(name, { dtype: 'F16', shape: [...t.shape], data: float32ToFloat16(t.f as Float32Array) });
    writeSafetensors(file, out, { ...extraMetadata, format: 'flextok-fmnist-classifier', arch: JSON.stringify(this.arch) });
  }

  namedParameters(): [string, Tensor][] {
    return namedTensors(this.params);
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  get parameterCount(): number {
    return this.parameters().reduce((s, t) => s + t.size, 0);
  }

  /** Runs the trunk, returning the requested stage's output (and the final map). */
  private trunk(images: Tensor, stop?: ClassifierLayer): Tensor {
    const p = this.params;
    let x = toInputSize(images);
    x = applyConvNorm(x, p.stem, 1);
    x = applyConvNorm(x, p.down1, 2);
    x = applyConvNorm(x, p.block1, 1);
    if (stop === 'block1') return x;
    x = applyConvNorm(x, p.down2, 2);
    return applyConvNorm(x, p.block2, 1);
  }

  /** Class scores [B, 10] for images [B, 1, 28, 28] (or [B, 1, 32, 32]) in [-1, 1]; recorded for autograd
   * when the weights require gradients. */
  logits(images: Tensor): Tensor {
    const fmap = this.trunk(images);
    const pooled = this.arch.head === 'gap' ? mean(fmap, [2, 3]) : reshape(fmap, [fmap.shape[0], fmap.size / fmap.shape[0]]);
    return linear(pooled, this.params.head.weight, this.params.head.bias);
  }

  /** Predicted class per image [B] (no autograd). */
  predict(images: Tensor): Int32Array {
    return noGrad(() => {
      const { indices } = max(this.logits(images), 1);
      return Int32Array.from(indices.data);
    });
  }

  /**
   * The REPA teacher: an intermediate feature map (no autograd). 'block2' (default) is [B, w3, 7, 7]
   * (64×7×7 with the default widths), the last map before pooling; 'block1' is [B, w2, 14, 14].
   * Both are post-GELU activations of a GroupNorm'ed conv (shipped weights on Fashion-MNIST 'block2':
   * mean ≈ 0.03, RMS ≈ 0.3); normalise per channel or project them before a cosine-similarity loss.
   */
  features(images: Tensor, layer: ClassifierLayer = 'block2'): Tensor {
    return noGrad(() => this.trunk(images, layer));
  }
}

/** Top-1 accuracy of the classifier on the first `limit` samples of ds (1×28×28 or 1×32×32). */
export function evaluateAccuracy(model: FmnistClassifier, ds: ImageDataset, opts: { batchSize?: number; limit?: number } = {}): number {
  const n = Math.min(ds.size, opts.limit ?? ds.size);
  const bs = opts.batchSize ?? 250;
  const per = ds.channels * ds.height * ds.width;
  let correct = 0;
  for (let start = 0; start < n; start += bs) {
    const b = Math.min(bs, n - start);
    const data = new Float32Array(b * per);
    const labels = new Int32Array(b);
    for (let k = 0; k < b; k++) {
      const s = ds.get(start + k);
      data.set(s.image, k * per);
      labels[k] = s.label;
    }
    const pred = model.predict(new Tensor(data, [b, ds.channels, ds.height, ds.width]));
    for (let k = 0; k < b; k++) if (pred[k] === labels[k]) correct++;
  }
  return correct / n;
}

/** Settings of augmentImages. */
export interface AugmentOptions {
  pShift: number;
  maxShift: number;
  pNoise: number;
  maxNoise: number;
}

export const DEFAULT_AUGMENT: AugmentOptions = { pShift: 0.5, maxShift: 2, pNoise: 0.5, maxNoise: 0.3 };

/** Class-preserving perturbations for training a classifier that judges reconstructions: each image is,
 * with probability `pShift`, translated by up to ±`maxShift` pixels per axis (uncovered pixels become the
 * background, −1) and, with probability `pNoise`, given i.i.d. Gaussian noise of a standard deviation drawn
 * from U(0, `maxNoise`), clamped to [−1, 1]. Images [B, C, H, W] in [−1, 1]; every draw comes from `rng`. */
export function augmentImages(images: Tensor, rng: Rng, opts: AugmentOptions = DEFAULT_AUGMENT): Tensor {
  if (images.ndim !== 4) throw new Error(`augmentImages: expected [B, C, H, W], got [${images.shape.join(', ')}]`);
  const [b, c, h, w] = images.shape as [number, number, number, number];
  const per = c * h * w;
  const out = new Float32Array(images.size);
  for (let i = 0; i < b; i++) {
    const shift = rng.uniform() < opts.pShift;
    const dy = shift ? rng.randint(-opts.maxShift, opts.maxShift + 1) : 0;
    const dx = shift ? rng.randint(-opts.maxShift, opts.maxShift + 1) : 0;
    const image = out.subarray(i * per, (i + 1) * per);
    shiftInto(images.f.subarray(i * per, (i + 1) * per) as Float32Array, image, c, h, w, dy, dx);
    if (rng.uniform() < opts.pNoise) addClampedNoise(image, rng.uniform() * opts.maxNoise, rng);
  }
  return new Tensor(out, images.shape);
}

/** Accuracy on images [N, 1, H, W] with labels, clean and under class-preserving perturbations (i.i.d.
 * Gaussian noise of each σ, clamped; the four 1-pixel shifts): how much of a drop in "class agreement"
 * pixel error alone causes. Noise is drawn from Rng(seed). */
export function robustnessReport(model: FmnistClassifier, images: Tensor, labels: Int32Array, opts: { sigmas?: number[]; seed?: number } = {}): { perturbation: string; mse: number; accuracy: number }[] {
  const [b, c, h, w] = images.shape as [number, number, number, number];
  const per = c * h * w;
  const src = images.f as Float32Array;
  const score = (x: Float32Array): { mse: number; accuracy: number } => {
    const p = model.predict(new Tensor(x, images.shape));
    let ok = 0;
    for (let i = 0; i < p.length; i++) if (p[i] === labels[i]) ok++;
    let se = 0;
    for (let i = 0; i < x.length; i++) se += (x[i] - src[i]) ** 2;
    return { mse: se / x.length, accuracy: ok / b };
  };
  const rows = [{ perturbation: 'none', ...score(src) }];
  for (const sigma of opts.sigmas ?? [0.1, 0.25]) {
    const x = Float32Array.from(src);
    addClampedNoise(x, sigma, new Rng(opts.seed ?? 0));
    rows.push({ perturbation: `noise σ = ${sigma}`, ...score(x) });
  }
  const offsets: Array<[number, number]> = [[-1, 0], [1, 0], [0, -1], [0, 1]];
  const shifted = offsets.map(([dy, dx]) => {
    const x = new Float32Array(src.length);
    for (let i = 0; i < b; i++) shiftInto(src.subarray(i * per, (i + 1) * per), x.subarray(i * per, (i + 1) * per), c, h, w, dy, dx);
    return score(x);
  });
  rows.push({
    perturbation: '1-pixel shift (mean of 4)',
    mse: shifted.reduce((s, r) => s + r.mse, 0) / offsets.length,
    accuracy: shifted.reduce((s, r) => s + r.accuracy, 0) / offsets.length,
  });
  return rows;
}

/** dst [C, H, W] = src translated by (dy, dx) pixels; uncovered pixels are background (−1). */
function shiftInto(src: Float32Array, dst: Float32Array, c: number, h: number, w: number, dy: number, dx: number): void {
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const sy = y - dy;
        const sx = x - dx;
        dst[ch * h * w + y * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? src[ch * h * w + sy * w + sx] : -1;
      }
    }
  }
}

/** x += N(0, σ²) elementwise, clamped to [−1, 1] (in place). */
function addClampedNoise(x: Float32Array, sigma: number, rng: Rng): void {
  for (let i = 0; i < x.length; i++) x[i] = Math.max(-1, Math.min(1, x[i] + sigma * rng.normal()));
}
