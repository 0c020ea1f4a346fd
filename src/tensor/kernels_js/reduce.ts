// Reductions over the middle axis of [outer, red, inner] views, and row softmax / log-softmax with backwards.
import type { FArr } from '../kernels.js';

let accScratch = new Float64Array(256);
function scratch(n: number): Float64Array {
  if (accScratch.length < n) accScratch = new Float64Array(Math.max(n, accScratch.length * 2));
  return accScratch;
}

/** x viewed as [outer, red, inner]: out[o, i] = Σ_r x[o, r, i] (float64 accumulation). */
export function sum(x: FArr, out: FArr, outer: number, red: number, inner: number): void {
  if (inner === 1) {
    for (let o = 0; o < outer; o++) {
      const base = o * red;
      let s0 = 0, s1 = 0;
      let r = 0;
      for (; r + 2 <= red; r += 2) { s0 += x[base + r]; s1 += x[base + r + 1]; }
      if (r < red) s0 += x[base + r];
      out[o] = s0 + s1;
    }
    return;
  }
  const acc = scratch(inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) acc[i] = 0;
    let base = o * red * inner;
    for (let r = 0; r < red; r++, base += inner) {
      for (let i = 0; i < inner; i++) acc[i] += x[base + i];
    }
    const oBase = o * inner;
    for (let i = 0; i < inner; i++) out[oBase + i] = acc[i];
  }
}

/** out[o, i] = max_r x[o, r, i]; argmax = first r attaining it (a NaN wins and propagates). */
export function max(x: FArr, out: FArr, argmax: Int32Array, outer: number, red: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    const base = o * red * inner;
    for (let i = 0; i < inner; i++) {
      let best = x[base + i];
      let bestR = 0;
      if (best === best) {
        for (let r = 1; r < red; r++) {
          const v = x[base + r * inner + i];
          if (v > best) { best = v; bestR = r; }
          else if (v !== v) { best = v; bestR = r; break; }
        }
      }
      out[o * inner + i] = best;
      argmax[o * inner + i] = bestR;
    }
  }
}

/** Row softmax: x, y [rows, dim] (y may alias x). */
export function softmaxForward(x: FArr, y: FArr, rows: number, dim: number): void {
  const e = scratch(dim);
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    let m = -Infinity;
    for (let j = 0; j < dim; j++) { const v = x[base + j]; if (v > m) m = v; }
    let s = 0;
    for (let j = 0; j < dim; j++) { const v = Math.exp(x[base + j] - m); e[j] = v; s += v; }
    const inv = 1 / s;
    for (let j = 0; j < dim; j++) y[base + j] = e[j] * inv;
  }
}

/** dx = y ⊙ (dy − Σ dy⊙y), per row. */
export function softmaxBackward(y: FArr, dy: FArr, dx: FArr, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    let dot = 0;
    for (let j = 0; j < dim; j++) dot += dy[base + j] * y[base + j];
    for (let j = 0; j < dim; j++) dx[base + j] = y[base + j] * (dy[base + j] - dot);
  }
}

/** y = x − max − log Σ exp(x − max), per row (y may alias x). */
export function logSoftmaxForward(x: FArr, y: FArr, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    let m = -Infinity;
    for (let j = 0; j < dim; j++) { const v = x[base + j]; if (v > m) m = v; }
    let s = 0;
    for (let j = 0; j < dim; j++) s += Math.exp(x[base + j] - m);
    const shift = m + Math.log(s);
    for (let j = 0; j < dim; j++) y[base + j] = x[base + j] - shift;
  }
}

/** dx = dy − exp(y) Σ dy, per row. */
export function logSoftmaxBackward(y: FArr, dy: FArr, dx: FArr, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    let s = 0;
    for (let j = 0; j < dim; j++) s += dy[base + j];
    for (let j = 0; j < dim; j++) dx[base + j] = dy[base + j] - Math.exp(y[base + j]) * s;
  }
}
