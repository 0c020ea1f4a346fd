// Normalisation layers (LayerNorm, RMSNorm, GroupNorm): forward with saved statistics, and backward.
import type { FArr } from '../kernels.js';

let scratchA = new Float64Array(256);
let scratchB = new Float64Array(256);
function accA(n: number): Float64Array {
  if (scratchA.length < n) scratchA = new Float64Array(Math.max(n, scratchA.length * 2));
  return scratchA;
}
function accB(n: number): Float64Array {
  if (scratchB.length < n) scratchB = new Float64Array(Math.max(n, scratchB.length * 2));
  return scratchB;
}

/** LayerNorm over the last dim: y = (x − mean) * rstd * w + b; mean, rstd: [rows] (biased variance). */
export function layerNormForward(x: FArr, w: FArr | null, b: FArr | null, y: FArr, mean: FArr, rstd: FArr, rows: number, dim: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[base + j];
    const mu = s / dim;
    let v = 0;
    for (let j = 0; j < dim; j++) { const d = x[base + j] - mu; v += d * d; }
    const rs = 1 / Math.sqrt(v / dim + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let j = 0; j < dim; j++) {
      let out = (x[base + j] - mu) * rs;
      if (w) out *= w[j];
      if (b) out += b[j];
      y[base + j] = out;
    }
  }
}

/** dx = rstd (g − mean(g) − x̂ mean(g x̂)) with g = dy ⊙ w; dw = Σ_rows dy x̂; db = Σ_rows dy. */
export function layerNormBackward(x: FArr, w: FArr | null, mean: FArr, rstd: FArr, dy: FArr, dx: FArr, dw: FArr | null, db: FArr | null, rows: number, dim: number): void {
  const dwAcc = accA(dim), dbAcc = accB(dim);
  for (let j = 0; j < dim; j++) { dwAcc[j] = 0; dbAcc[j] = 0; }
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    const mu = mean[r], rs = rstd[r];
    let sumG = 0, sumGX = 0;
    for (let j = 0; j < dim; j++) {
      const xh = (x[base + j] - mu) * rs;
      const d = dy[base + j];
      const g = w ? d * w[j] : d;
      sumG += g;
      sumGX += g * xh;
      dwAcc[j] += d * xh;
      dbAcc[j] += d;
    }
    const meanG = sumG / dim, meanGX = sumGX / dim;
    for (let j = 0; j < dim; j++) {
      const xh = (x[base + j] - mu) * rs;
      const g = w ? dy[base + j] * w[j] : dy[base + j];
      dx[base + j] = rs * (g - meanG - xh * meanGX);
    }
  }
  if (dw) for (let j = 0; j < dim; j++) dw[j] = dwAcc[j];
  if (db) for (let j = 0; j < dim; j++) db[j] = dbAcc[j];
}

/** RMSNorm: y = x * rstd * w, rstd = 1/sqrt(mean(x²) + eps). */
export function rmsNormForward(x: FArr, w: FArr | null, y: FArr, rstd: FArr, rows: number, dim: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    let ss = 0;
    for (let j = 0; j < dim; j++) { const v = x[base + j]; ss += v * v; }
    const rs = 1 / Math.sqrt(ss / dim + eps);
    rstd[r] = rs;
    if (w) for (let j = 0; j < dim; j++) y[base + j] = x[base + j] * rs * w[j];
    else for (let j = 0; j < dim; j++) y[base + j] = x[base + j] * rs;
  }
}

/** dx = rstd (g − x̂ mean(g x̂)) with g = dy ⊙ w, x̂ = x rstd; dw = Σ_rows dy x̂. */
export function rmsNormBackward(x: FArr, w: FArr | null, rstd: FArr, dy: FArr, dx: FArr, dw: FArr | null, rows: number, dim: number): void {
  const dwAcc = accA(dim);
  for (let j = 0; j < dim; j++) dwAcc[j] = 0;
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    const rs = rstd[r];
    let sumGX = 0;
    for (let j = 0; j < dim; j++) {
      const xh = x[base + j] * rs;
      const d = dy[base + j];
      const g = w ? d * w[j] : d;
      sumGX += g * xh;
      dwAcc[j] += d * xh;
    }
    const meanGX = sumGX / dim;
    for (let j = 0; j < dim; j++) {
      const xh = x[base + j] * rs;
      const g = w ? dy[base + j] * w[j] : dy[base + j];
      dx[base + j] = rs * (g - xh * meanGX);
    }
  }
  if (dw) for (let j = 0; j < dim; j++) dw[j] = dwAcc[j];
}

/** GroupNorm on x [n, channels, spatial]; statistics per (n, group) → mean, rstd [n, groups]; w, b: [channels]. */
export function groupNormForward(x: FArr, w: FArr | null, b: FArr | null, y: FArr, mean: FArr, rstd: FArr, n: number, channels: number, spatial: number, groups: number, eps: number): void {
  const cpg = channels / groups;
  const groupLen = cpg * spatial;
  for (let s = 0; s < n; s++) {
    for (let g = 0; g < groups; g++) {
      const base = (s * channels + g * cpg) * spatial; // the group's elements are contiguous
      let sum = 0;
      for (let e = 0; e < groupLen; e++) sum += x[base + e];
      const mu = sum / groupLen;
      let v = 0;
      for (let e = 0; e < groupLen; e++) { const d = x[base + e] - mu; v += d * d; }
      const rs = 1 / Math.sqrt(v / groupLen + eps);
      mean[s * groups + g] = mu;
      rstd[s * groups + g] = rs;
      for (let cl = 0; cl < cpg; cl++) {
        const c = g * cpg + cl;
        const scale = w ? w[c] * rs : rs;
        const shift = (b ? b[c] : 0) - mu * scale;
        const cb = base + cl * spatial;
        for (let p = 0; p < spatial; p++) y[cb + p] = x[cb + p] * scale + shift;
      }
    }
  }
}

/** GroupNorm backward: dx overwritten; dw[c] = Σ dy x̂, db[c] = Σ dy over n and spatial (overwritten). */
export function groupNormBackward(x: FArr, w: FArr | null, mean: FArr, rstd: FArr, dy: FArr, dx: FArr, dw: FArr | null, db: FArr | null, n: number, channels: number, spatial: number, groups: number): void {
  const cpg = channels / groups;
  const groupLen = cpg * spatial;
  const dwAcc = accA(channels), dbAcc = accB(channels);
  for (let c = 0; c < channels; c++) { dwAcc[c] = 0; dbAcc[c] = 0; }
  for (let s = 0; s < n; s++) {
    for (let g = 0; g < groups; g++) {
      const base = (s * channels + g * cpg) * spatial;
      const mu = mean[s * groups + g], rs = rstd[s * groups + g];
      let sumG = 0, sumGX = 0;
      for (let cl = 0; cl < cpg; cl++) {
        const c = g * cpg + cl;
        const wc = w ? w[c] : 1;
        const cb = base + cl * spatial;
        let sdy = 0, sdyx = 0;
        for (let p = 0; p < spatial; p++) {
          const xh = (x[cb + p] - mu) * rs;
          const d = dy[cb + p];
          sdy += d;
          sdyx += d * xh;
        }
        dwAcc[c] += sdyx;
        dbAcc[c] += sdy;
        sumG += wc * sdy;
        sumGX += wc * sdyx;
      }
      const meanG = sumG / groupLen, meanGX = sumGX / groupLen;
      for (let cl = 0; cl < cpg; cl++) {
        const c = g * cpg + cl;
        const wc = w ? w[c] : 1;
        const cb = base + cl * spatial;
        for (let p = 0; p < spatial; p++) {
          const xh = (x[cb + p] - mu) * rs;
          dx[cb + p] = rs * (wc * dy[cb + p] - meanG - xh * meanGX);
        }
      }
    }
  }
  if (dw) for (let c = 0; c < channels; c++) dw[c] = dwAcc[c];
  if (db) for (let c = 0; c < channels; c++) db[c] = dbAcc[c];
}
