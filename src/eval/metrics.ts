// Image reconstruction metrics — MSE, PSNR and SSIM — for images given in the model's [-1, 1] range.
//
// Conventions (what the numbers in our READMEs mean):
// - `mse` is the plain mean of squared differences of the values as given (on the [-1, 1] scale).
// - `psnr` is reported on the [0, 1] scale: images in [-1, 1] are mapped by (x + 1) / 2, so with the
//   default dataRange = 2 (the width of [-1, 1]) PSNR = 10·log10(dataRange² / MSE) = 10·log10(1 / MSE₀₁).
//   Identical images give +Infinity. For a batch it is the mean of the per-image PSNRs.
// - `ssim` is Wang et al. (2004) SSIM with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03,
//   L = 1 on the [0, 1] scale; the local statistics are taken over 'valid' windows only (no padding:
//   a 28×28 image gives an 18×18 SSIM map, 32×32 gives 22×22), as in the reference MATLAB code and
//   pytorch-msssim, and equal to scikit-image's result, which crops the same border. The map is
//   averaged per channel, channels are averaged, and a batch is the mean over images. Images smaller
//   than 11 pixels use the largest odd window that fits (same σ).

import { Tensor } from '../tensor/tensor.js';

/** A float tensor ([C, H, W] or [B, C, H, W]) or flat values. */
export type ImageLike = Tensor | Float32Array | Float64Array;

function valuesOf(x: ImageLike): Float32Array | Float64Array {
  return x instanceof Tensor ? x.f : x;
}

function checkSameSize(a: ImageLike, b: ImageLike, what: string): void {
  const na = valuesOf(a).length;
  const nb = valuesOf(b).length;
  if (na !== nb) throw new Error(`${what}: the images have different sizes (${na} vs ${nb} values)`);
  if (a instanceof Tensor && b instanceof Tensor && a.shape.join() !== b.shape.join()) {
    throw new Error(`${what}: shapes differ: [${a.shape.join(', ')}] vs [${b.shape.join(', ')}]`);
  }
  if (na === 0) throw new Error(`${what}: empty images`);
}

/** x clamped to the displayable [-1, 1] (NaN → 0): how reconstructions are scored and shown. */
export function clampToDisplayRange(x: Tensor): Tensor {
  const out = new Float32Array(x.size);
  const s = x.f;
  for (let i = 0; i < out.length; i++) out[i] = Number.isNaN(s[i]) ? 0 : Math.min(1, Math.max(-1, s[i]));
  return new Tensor(out, x.shape);
}

/** Mean squared difference of all values (as given, no rescaling). */
export function mse(a: ImageLike, b: ImageLike): number {
  checkSameSize(a, b, 'mse');
  const x = valuesOf(a);
  const y = valuesOf(b);
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - y[i];
    s += d * d;
  }
  return s / x.length;
}

/** [B, per-image size] of a batch tensor ([B, C, H, W]); anything else is one image. */
function batchOf(a: ImageLike): { batch: number; per: number } {
  const n = valuesOf(a).length;
  if (a instanceof Tensor && a.ndim === 4) return { batch: a.shape[0], per: n / Math.max(1, a.shape[0]) };
  return { batch: 1, per: n };
}

/** PSNR in dB of each image of a batch (see the module comment for the scale). */
export function psnrPerImage(a: ImageLike, b: ImageLike, dataRange = 2): number[] {
  checkSameSize(a, b, 'psnr');
  if (!(dataRange > 0)) throw new Error(`psnr: dataRange must be positive, got ${dataRange}`);
  const x = valuesOf(a);
  const y = valuesOf(b);
  const { batch, per } = batchOf(a);
  const out: number[] = [];
  for (let i = 0; i < batch; i++) {
    let s = 0;
    for (let k = i * per; k < (i + 1) * per; k++) {
      const d = x[k] - y[k];
      s += d * d;
    }
    const m = s / per;
    out.push(m === 0 ? Infinity : 10 * Math.log10((dataRange * dataRange) / m));
  }
  return out;
}

/** PSNR in dB; with the default dataRange 2 for [-1, 1] images this is PSNR on the [0, 1] scale.
 * A [B, C, H, W] batch gives the mean of the per-image values. */
export function psnr(a: ImageLike, b: ImageLike, dataRange = 2): number {
  const v = psnrPerImage(a, b, dataRange);
  return v.reduce((s, x) => s + x, 0) / v.length;
}

export interface SsimOptions {
  /** the inputs' value range: 2 (default) means [-1, 1], any other value r means [0, r]; values are mapped to [0, 1] */
  dataRange?: number;
  /** window side (default 11, odd) and Gaussian σ (default 1.5) */
  windowSize?: number;
  sigma?: number;
}

/** Normalised 1-D Gaussian of odd length `size`. */
function gaussian1d(size: number, sigma: number): Float64Array {
  const g = new Float64Array(size);
  const c = (size - 1) / 2;
  let s = 0;
  for (let i = 0; i < size; i++) {
    g[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
    s += g[i];
  }
  for (let i = 0; i < size; i++) g[i] /= s;
  return g;
}

/** Separable 'valid' filtering of a [h, w] plane with g (rows then columns) → [h−k+1, w−k+1]. */
function filterValid(src: Float64Array, h: number, w: number, g: Float64Array): Float64Array {
  const k = g.length;
  const ow = w - k + 1;
  const oh = h - k + 1;
  const tmp = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += g[t] * src[y * w + x + t];
      tmp[y * ow + x] = s;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += g[t] * tmp[(y + t) * ow + x];
      out[y * ow + x] = s;
    }
  }
  return out;
}

/** Mean SSIM of two [h, w] planes already on the [0, 1] scale. */
function ssimPlane(x: Float64Array, y: Float64Array, h: number, w: number, g: Float64Array): number {
  const C1 = 0.01 ** 2;
  const C2 = 0.03 ** 2;
  const n = h * w;
  const xx = new Float64Array(n);
  const yy = new Float64Array(n);
  const xy = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    xx[i] = x[i] * x[i];
    yy[i] = y[i] * y[i];
    xy[i] = x[i] * y[i];
  }
  const mx = filterValid(x, h, w, g);
  const my = filterValid(y, h, w, g);
  const sxx = filterValid(xx, h, w, g);
  const syy = filterValid(yy, h, w, g);
  const sxy = filterValid(xy, h, w, g);
  let total = 0;
  for (let i = 0; i < mx.length; i++) {
    const vx = sxx[i] - mx[i] * mx[i];
    const vy = syy[i] - my[i] * my[i];
    const cov = sxy[i] - mx[i] * my[i];
    total += ((2 * mx[i] * my[i] + C1) * (2 * cov + C2)) / ((mx[i] * mx[i] + my[i] * my[i] + C1) * (vx + vy + C2));
  }
  return total / mx.length;
}

/** Per-image SSIM of a and b: [B, C, H, W] or [C, H, W] tensors of the same shape. */
export function ssimPerImage(a: Tensor, b: Tensor, opts: SsimOptions = {}): number[] {
  checkSameSize(a, b, 'ssim');
  if (a.ndim !== 3 && a.ndim !== 4) throw new Error(`ssim: expected [B, C, H, W] or [C, H, W], got [${a.shape.join(', ')}]`);
  const [batch, c, h, w] = a.ndim === 4 ? a.shape : [1, ...a.shape];
  const range = opts.dataRange ?? 2;
  if (!(range > 0)) throw new Error(`ssim: dataRange must be positive, got ${range}`);
  const sigma = opts.sigma ?? 1.5;
  let win = opts.windowSize ?? 11;
  if (win % 2 === 0 || win < 1) throw new Error(`ssim: windowSize must be odd and positive, got ${win}`);
  const fits = Math.min(h, w);
  if (win > fits) win = fits % 2 === 1 ? fits : fits - 1;
  const g = gaussian1d(win, sigma);
  // Map [lo, lo + range] → [0, 1] (the offset matters: the luminance term's C1 is absolute).
  const lo = range === 2 ? -1 : 0;
  const xa = valuesOf(a);
  const xb = valuesOf(b);
  const plane = h * w;
  const out: number[] = [];
  const px = new Float64Array(plane);
  const py = new Float64Array(plane);
  for (let i = 0; i < batch; i++) {
    let s = 0;
    for (let ch = 0; ch < c; ch++) {
      const base = (i * c + ch) * plane;
      for (let k = 0; k < plane; k++) {
        px[k] = (xa[base + k] - lo) / range;
        py[k] = (xb[base + k] - lo) / range;
      }
      s += ssimPlane(px, py, h, w, g);
    }
    out.push(s / c);
  }
  return out;
}

/** Mean SSIM over a batch (see the module comment). */
export function ssim(a: Tensor, b: Tensor, opts: SsimOptions = {}): number {
  const v = ssimPerImage(a, b, opts);
  return v.reduce((s, x) => s + x, 0) / v.length;
}
