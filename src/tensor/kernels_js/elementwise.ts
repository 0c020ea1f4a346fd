// Elementwise kernels: unary functions with exact derivatives, and strided-broadcast binary ops.
import type { BroadcastArgs, FArr, UnaryOp } from '../kernels.js';
import { erf, erfc } from './erf.js';

const SQRT_2_OVER_PI = 0.7978845608028654; // √(2/π)
const GELU_TANH_C = 0.044715;
const INV_SQRT_2 = 0.7071067811865476; // 1/√2
const INV_SQRT_2PI = 0.3989422804014327; // 1/√(2π)

/** Numerically stable logistic function. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** gelu with the exact (erf) form; uses erfc for negative x so the tail keeps relative accuracy. */
export function geluErf(x: number): number {
  if (x >= 0) return 0.5 * x * (1 + erf(x * INV_SQRT_2));
  return 0.5 * x * erfc(-x * INV_SQRT_2);
}

/** Φ(x), the standard normal CDF, accurate for negative x. */
function normalCdf(x: number): number {
  return x >= 0 ? 0.5 * (1 + erf(x * INV_SQRT_2)) : 0.5 * erfc(-x * INV_SQRT_2);
}

/** y = f(x) elementwise over n elements (x may alias y). */
export function unary(op: UnaryOp, x: FArr, y: FArr, n: number): void {
  switch (op) {
    case 'neg': for (let i = 0; i < n; i++) y[i] = -x[i]; return;
    case 'abs': for (let i = 0; i < n; i++) y[i] = Math.abs(x[i]); return;
    case 'exp': for (let i = 0; i < n; i++) y[i] = Math.exp(x[i]); return;
    case 'log': for (let i = 0; i < n; i++) y[i] = Math.log(x[i]); return;
    case 'sqrt': for (let i = 0; i < n; i++) y[i] = Math.sqrt(x[i]); return;
    case 'rsqrt': for (let i = 0; i < n; i++) y[i] = 1 / Math.sqrt(x[i]); return;
    case 'tanh': for (let i = 0; i < n; i++) y[i] = Math.tanh(x[i]); return;
    case 'atanh': for (let i = 0; i < n; i++) y[i] = Math.atanh(x[i]); return;
    case 'sigmoid': for (let i = 0; i < n; i++) y[i] = sigmoid(x[i]); return;
    case 'silu': for (let i = 0; i < n; i++) { const v = x[i]; y[i] = v * sigmoid(v); } return;
    case 'gelu_tanh':
      for (let i = 0; i < n; i++) {
        const v = x[i];
        y[i] = 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_TANH_C * v * v * v)));
      }
      return;
    case 'gelu_erf': for (let i = 0; i < n; i++) y[i] = geluErf(x[i]); return;
    case 'relu': for (let i = 0; i < n; i++) { const v = x[i]; y[i] = v > 0 ? v : 0; } return;
    case 'sin': for (let i = 0; i < n; i++) y[i] = Math.sin(x[i]); return;
    case 'cos': for (let i = 0; i < n; i++) y[i] = Math.cos(x[i]); return;
    case 'square': for (let i = 0; i < n; i++) { const v = x[i]; y[i] = v * v; } return;
    case 'recip': for (let i = 0; i < n; i++) y[i] = 1 / x[i]; return;
    default: throw new Error(`unary: unknown op ${op as string}`);
  }
}

/** f'(x) for one element; y = f(x) is used by exp, sqrt, tanh and sigmoid. */
function unaryDerivative(op: UnaryOp, xv: number, yv: number): number {
  switch (op) {
    case 'neg': return -1;
    case 'abs': return xv > 0 ? 1 : xv < 0 ? -1 : 0;
    case 'exp': return yv;
    case 'log': return 1 / xv;
    case 'sqrt': return 0.5 / yv;
    case 'rsqrt': { const r = 1 / Math.sqrt(xv); return -0.5 * r * r * r; }
    case 'tanh': return 1 - yv * yv;
    case 'atanh': return 1 / (1 - xv * xv);
    case 'sigmoid': return yv * (1 - yv);
    case 'silu': { const s = sigmoid(xv); return s * (1 + xv * (1 - s)); }
    case 'gelu_tanh': {
      const x2 = xv * xv;
      const t = Math.tanh(SQRT_2_OVER_PI * (xv + GELU_TANH_C * x2 * xv));
      return 0.5 * (1 + t) + 0.5 * xv * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_C * x2);
    }
    case 'gelu_erf': return normalCdf(xv) + xv * INV_SQRT_2PI * Math.exp(-0.5 * xv * xv);
    case 'relu': return xv > 0 ? 1 : 0;
    case 'sin': return Math.cos(xv);
    case 'cos': return -Math.sin(xv);
    case 'square': return 2 * xv;
    case 'recip': return -1 / (xv * xv);
    default: throw new Error(`unaryBackward: unknown op ${op as string}`);
  }
}

/** dx (+)= f'(x) * dy over n elements. */
export function unaryBackward(op: UnaryOp, x: FArr, y: FArr, dy: FArr, dx: FArr, n: number, accumulate: boolean): void {
  // The cheap, common cases get their own loops; the rest go through unaryDerivative.
  if (op === 'neg') {
    if (accumulate) for (let i = 0; i < n; i++) dx[i] -= dy[i];
    else for (let i = 0; i < n; i++) dx[i] = -dy[i];
    return;
  }
  if (op === 'exp') {
    if (accumulate) for (let i = 0; i < n; i++) dx[i] += y[i] * dy[i];
    else for (let i = 0; i < n; i++) dx[i] = y[i] * dy[i];
    return;
  }
  if (op === 'relu') {
    if (accumulate) for (let i = 0; i < n; i++) { if (x[i] > 0) dx[i] += dy[i]; }
    else for (let i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : 0;
    return;
  }
  if (accumulate) for (let i = 0; i < n; i++) dx[i] += unaryDerivative(op, x[i], y[i]) * dy[i];
  else for (let i = 0; i < n; i++) dx[i] = unaryDerivative(op, x[i], y[i]) * dy[i];
}

/** out[i] = a[i] op b[i] over one strided row of `len` elements. */
function binaryRow(op: BroadcastArgs['op'], a: FArr, aOff: number, aStep: number, b: FArr, bOff: number, bStep: number, out: FArr, oOff: number, len: number): void {
  let ia = aOff, ib = bOff;
  const end = oOff + len;
  switch (op) {
    case 'add': for (let o = oOff; o < end; o++, ia += aStep, ib += bStep) out[o] = a[ia] + b[ib]; return;
    case 'sub': for (let o = oOff; o < end; o++, ia += aStep, ib += bStep) out[o] = a[ia] - b[ib]; return;
    case 'mul': for (let o = oOff; o < end; o++, ia += aStep, ib += bStep) out[o] = a[ia] * b[ib]; return;
    case 'div': for (let o = oOff; o < end; o++, ia += aStep, ib += bStep) out[o] = a[ia] / b[ib]; return;
    case 'pow': for (let o = oOff; o < end; o++, ia += aStep, ib += bStep) out[o] = Math.pow(a[ia], b[ib]); return;
    case 'max': for (let o = oOff; o < end; o++, ia += aStep, ib += bStep) out[o] = Math.max(a[ia], b[ib]); return;
    case 'min': for (let o = oOff; o < end; o++, ia += aStep, ib += bStep) out[o] = Math.min(a[ia], b[ib]); return;
    default: throw new Error(`binary: unknown op ${op as string}`);
  }
}

/** Drops size-1 dims and merges neighbours that are contiguous for out, a and b alike. */
function coalesce(shape: number[], aStrides: number[], bStrides: number[]): { shape: number[]; as: number[]; bs: number[] } {
  const s: number[] = [], as: number[] = [], bs: number[] = [];
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = s.length - 1;
    if (last >= 0 && as[last] === aStrides[d] * shape[d] && bs[last] === bStrides[d] * shape[d]) {
      s[last] *= shape[d];
      as[last] = aStrides[d];
      bs[last] = bStrides[d];
    } else {
      s.push(shape[d]);
      as.push(aStrides[d]);
      bs.push(bStrides[d]);
    }
  }
  return { shape: s, as, bs };
}

/** out = a op b with strided broadcasting; out is contiguous with `shape`. */
export function binary(args: BroadcastArgs): void {
  const { op, a, b, out } = args;
  let total = 1;
  for (const d of args.shape) total *= d;
  if (total === 0) return;
  const { shape, as, bs } = coalesce(args.shape, args.aStrides, args.bStrides);
  const nd = shape.length;
  if (nd === 0) { binaryRow(op, a, 0, 0, b, 0, 0, out, 0, 1); return; }
  const inner = shape[nd - 1];
  const aStep = as[nd - 1], bStep = bs[nd - 1];
  if (nd === 1) { binaryRow(op, a, 0, aStep, b, 0, bStep, out, 0, inner); return; }
  // Odometer over the outer dims.
  const idx = new Array<number>(nd - 1).fill(0);
  let aOff = 0, bOff = 0;
  for (let o = 0; o < total; o += inner) {
    binaryRow(op, a, aOff, aStep, b, bOff, bStep, out, o, inner);
    for (let d = nd - 2; d >= 0; d--) {
      idx[d]++;
      aOff += as[d];
      bOff += bs[d];
      if (idx[d] < shape[d]) break;
      aOff -= as[d] * shape[d];
      bOff -= bs[d] * shape[d];
      idx[d] = 0;
    }
  }
}

/** out[r] = x[r] ⊙ a[seg[r]] + (cPerRow ? c[r] : c[seg[r]]) over rows of `dim`. */
export function segmentFmaForward(x: FArr, a: FArr, c: FArr, seg: Int32Array, out: FArr, rows: number, dim: number, _segments: number, cPerRow: boolean): void {
  for (let r = 0; r < rows; r++) {
    const xo = r * dim;
    const ao = seg[r] * dim;
    const co = (cPerRow ? r : seg[r]) * dim;
    for (let j = 0; j < dim; j++) out[xo + j] = x[xo + j] * a[ao + j] + c[co + j];
  }
}

/** dx = dy ⊙ a[seg]; da[s] = Σ_{seg[r]=s} dy[r] ⊙ x[r]; dc[s] = Σ_{seg[r]=s} dy[r] (each optional, overwritten). */
export function segmentFmaBackward(x: FArr, a: FArr, seg: Int32Array, dy: FArr, dx: FArr | null, da: FArr | null, dc: FArr | null, rows: number, dim: number, segments: number): void {
  const accA = da ? new Float64Array(segments * dim) : null;
  const accC = dc ? new Float64Array(segments * dim) : null;
  for (let r = 0; r < rows; r++) {
    const ro = r * dim;
    const so = seg[r] * dim;
    for (let j = 0; j < dim; j++) {
      const g = dy[ro + j];
      if (dx) dx[ro + j] = g * a[so + j];
      if (accA) accA[so + j] += g * x[ro + j];
      if (accC) accC[so + j] += g;
    }
  }
  if (da && accA) for (let i = 0; i < accA.length; i++) da[i] = accA[i];
  if (dc && accC) for (let i = 0; i < accC.length; i++) dc[i] = accC[i];
}
