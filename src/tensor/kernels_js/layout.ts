// Data-movement kernels: axis permutation, and im2col / col2im for convolutions.
import type { Conv2dGeom, FArr } from '../kernels.js';

type AnyArr = FArr | Int32Array;

/** y = x permuted: y's dim i is x's dim perm[i]; y is written contiguously. */
export function permute(x: AnyArr, y: AnyArr, shape: number[], perm: number[]): void {
  const nd = shape.length;
  let total = 1;
  for (const d of shape) total *= d;
  if (total === 0) return;
  // Contiguous strides of x, then y's dims with the x stride each walks.
  const xStrides = new Array<number>(nd);
  let s = 1;
  for (let d = nd - 1; d >= 0; d--) { xStrides[d] = s; s *= shape[d]; }
  // Merge neighbouring y dims that are also neighbours in x, and drop size-1 dims.
  const ys: number[] = [], ws: number[] = [];
  for (let i = 0; i < nd; i++) {
    const size = shape[perm[i]], stride = xStrides[perm[i]];
    if (size === 1) continue;
    const last = ys.length - 1;
    if (last >= 0 && ws[last] === stride * size) { ys[last] *= size; ws[last] = stride; }
    else { ys.push(size); ws.push(stride); }
  }
  const m = ys.length;
  if (m <= 1) { for (let i = 0; i < total; i++) y[i] = x[i]; return; }
  const inner = ys[m - 1], innerStride = ws[m - 1];
  if (m === 2) {
    // 2-D transpose-like walk, blocked so that both x and y stay in cache.
    const outerN = ys[0], outerStride = ws[0];
    const block = 32;
    for (let o0 = 0; o0 < outerN; o0 += block) {
      const o1 = Math.min(outerN, o0 + block);
      for (let i0 = 0; i0 < inner; i0 += block) {
        const i1 = Math.min(inner, i0 + block);
        for (let o = o0; o < o1; o++) {
          const yRow = o * inner;
          let xi = o * outerStride + i0 * innerStride;
          for (let i = i0; i < i1; i++, xi += innerStride) y[yRow + i] = x[xi];
        }
      }
    }
    return;
  }
  const idx = new Array<number>(m - 1).fill(0);
  let xOff = 0;
  for (let o = 0; o < total; o += inner) {
    let xi = xOff;
    for (let i = 0; i < inner; i++, xi += innerStride) y[o + i] = x[xi];
    for (let d = m - 2; d >= 0; d--) {
      idx[d]++;
      xOff += ws[d];
      if (idx[d] < ys[d]) break;
      xOff -= ws[d] * ys[d];
      idx[d] = 0;
    }
  }
}

/** One image: x [C, H, W] at xOffset → cols [C*kh*kw, outH*outW], zero outside the image. */
export function im2col(x: FArr, xOffset: number, cols: FArr, g: Conv2dGeom): void {
  const { channels, height, width, kh, kw, strideH, strideW, padTop, padLeft, outH, outW } = g;
  const colLen = outH * outW;
  for (let c = 0; c < channels; c++) {
    const plane = xOffset + c * height * width;
    for (let ki = 0; ki < kh; ki++) {
      for (let kj = 0; kj < kw; kj++) {
        const row = ((c * kh + ki) * kw + kj) * colLen;
        for (let oh = 0; oh < outH; oh++) {
          const ih = oh * strideH - padTop + ki;
          const dst = row + oh * outW;
          if (ih < 0 || ih >= height) {
            for (let ow = 0; ow < outW; ow++) cols[dst + ow] = 0;
            continue;
          }
          const src = plane + ih * width;
          for (let ow = 0; ow < outW; ow++) {
            const iw = ow * strideW - padLeft + kj;
            cols[dst + ow] = iw >= 0 && iw < width ? x[src + iw] : 0;
          }
        }
      }
    }
  }
}

/** Adjoint of im2col: dx [C, H, W] at dxOffset += scatter of cols (padding positions dropped). */
export function col2im(cols: FArr, dx: FArr, dxOffset: number, g: Conv2dGeom): void {
  const { channels, height, width, kh, kw, strideH, strideW, padTop, padLeft, outH, outW } = g;
  const colLen = outH * outW;
  for (let c = 0; c < channels; c++) {
    const plane = dxOffset + c * height * width;
    for (let ki = 0; ki < kh; ki++) {
      for (let kj = 0; kj < kw; kj++) {
        const row = ((c * kh + ki) * kw + kj) * colLen;
        for (let oh = 0; oh < outH; oh++) {
          const ih = oh * strideH - padTop + ki;
          if (ih < 0 || ih >= height) continue;
          const src = row + oh * outW;
          const dst = plane + ih * width;
          for (let ow = 0; ow < outW; ow++) {
            const iw = ow * strideW - padLeft + kj;
            if (iw >= 0 && iw < width) dx[dst + iw] += cols[src + ow];
          }
        }
      }
    }
  }
}
