// Differentiable tensor operations: elementwise math with broadcasting, reductions, and shape /
// indexing ops. Each op computes its forward with the selected backend's kernels and records a
// backward function for autograd. Neural-network ops (matmul, norms, attention, conv) are in nn.ts.

import { kernels } from './backend.js';
import type { BinaryOp, FArr, UnaryOp } from './kernels.js';
import { allocData, allocUninit, customOp, PartialGrad, record, sizeOf, Tensor, type DType, type FloatData } from './tensor.js';

// ---------------------------------------------------------------------------------------------
// helpers

export function normDim(d: number, ndim: number): number {
  const a = d < 0 ? d + ndim : d;
  if (a < 0 || a >= ndim) throw new Error(`dimension ${d} out of range for a ${ndim}-d tensor`);
  return a;
}

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** A zero-filled float tensor of `shape` (like's dtype; float32 for int32). */
function floatOut(like: Tensor, shape: readonly number[]): Tensor {
  return new Tensor(allocData(like.dtype === 'int32' ? 'float32' : like.dtype, sizeOf(shape)), shape);
}

/** Like floatOut with unspecified contents (pool storage is not zeroed): for outputs written element by element. */
function floatOutUninit(like: Tensor, shape: readonly number[]): Tensor {
  return new Tensor(allocUninit(like.dtype === 'int32' ? 'float32' : like.dtype, sizeOf(shape)), shape);
}

function requireFloat(t: Tensor, op: string): void {
  if (t.dtype === 'int32') throw new Error(`${op}: expected a float tensor, got int32 (convert with .toDType('float32'))`);
}

function sameFloat(a: Tensor, b: Tensor, op: string): void {
  requireFloat(a, op);
  requireFloat(b, op);
  if (a.dtype !== b.dtype) throw new Error(`${op}: dtype mismatch ${a.dtype} vs ${b.dtype}`);
}

export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)];
    const db = i < n - b.length ? 1 : b[i - (n - b.length)];
    if (da !== db && da !== 1 && db !== 1) throw new Error(`shapes [${a.join(', ')}] and [${b.join(', ')}] cannot be broadcast together`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides to read a tensor of `shape` as if it had `outShape` (0 on broadcast dims). */
function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const cs = contiguousStrides(shape);
  const off = outShape.length - shape.length;
  return outShape.map((d, i) => (i < off || shape[i - off] === 1 ? 0 : cs[i - off]));
}

/** Sum g (of a broadcast shape) down to `shape`. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const off = g.shape.length - shape.length;
  const dims: number[] = [];
  for (let i = 0; i < g.shape.length; i++) {
    if (i < off || (shape[i - off] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  return reshape(sum(g, dims, true), shape);
}

// ---------------------------------------------------------------------------------------------
// elementwise binary ops with broadcasting

function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(a.shape, b.shape);
  const out = floatOutUninit(a, shape);
  kernels().binary({
    op,
    a: a.f,
    b: b.f,
    out: out.f,
    shape,
    aStrides: broadcastStrides(a.shape, shape),
    bStrides: broadcastStrides(b.shape, shape),
  });
  return out;
}

type Operand = Tensor | number;

function asTensor(x: Operand, like: Tensor): Tensor {
  return typeof x === 'number' ? Tensor.scalar(x, like.dtype === 'int32' ? 'float32' : like.dtype) : x;
}

function operands(a: Operand, b: Operand, op: string): [Tensor, Tensor] {
  if (typeof a === 'number' && typeof b === 'number') throw new Error(`${op}: at least one operand must be a tensor`);
  const ta = typeof a === 'number' ? asTensor(a, b as Tensor) : a;
  const tb = typeof b === 'number' ? asTensor(b, ta) : b;
  sameFloat(ta, tb, op);
  return [ta, tb];
}

export function add(a: Operand, b: Operand): Tensor {
  const [x, y] = operands(a, b, 'add');
  const out = binaryRaw('add', x, y);
  return record(out, 'add', [x, y], (g) => [
    x.requiresGrad ? sumToShape(g, x.shape) : null,
    y.requiresGrad ? sumToShape(g, y.shape) : null,
  ]);
}

export function sub(a: Operand, b: Operand): Tensor {
  const [x, y] = operands(a, b, 'sub');
  const out = binaryRaw('sub', x, y);
  return record(out, 'sub', [x, y], (g) => [
    x.requiresGrad ? sumToShape(g, x.shape) : null,
    y.requiresGrad ? sumToShape(neg(g), y.shape) : null,
  ]);
}

export function mul(a: Operand, b: Operand): Tensor {
  const [x, y] = operands(a, b, 'mul');
  const out = binaryRaw('mul', x, y);
  return record(out, 'mul', [x, y], (g) => [
    x.requiresGrad ? sumToShape(binaryRaw('mul', g, y), x.shape) : null,
    y.requiresGrad ? sumToShape(binaryRaw('mul', g, x), y.shape) : null,
  ]);
}

export function div(a: Operand, b: Operand): Tensor {
  const [x, y] = operands(a, b, 'div');
  const out = binaryRaw('div', x, y);
  return record(out, 'div', [x, y], (g) => {
    const gx = binaryRaw('div', g, y);
    return [
      x.requiresGrad ? sumToShape(gx, x.shape) : null,
      // d(x/y)/dy = -x/y² = -out/y
      y.requiresGrad ? sumToShape(neg(binaryRaw('mul', gx, out)), y.shape) : null,
    ];
  });
}

/** x ** p elementwise (p a tensor or a number). Gradient w.r.t. the base and (for tensor p, x > 0) the exponent. */
export function pow(a: Operand, b: Operand): Tensor {
  const [x, y] = operands(a, b, 'pow');
  const out = binaryRaw('pow', x, y);
  return record(out, 'pow', [x, y], (g) => {
    let gx: Tensor | null = null;
    let gy: Tensor | null = null;
    if (x.requiresGrad) {
      // p * x^(p-1)
      const pm1 = binaryRaw('sub', y, Tensor.scalar(1, y.dtype));
      gx = sumToShape(binaryRaw('mul', g, binaryRaw('mul', y, binaryRaw('pow', x, pm1))), x.shape);
    }
    if (y.requiresGrad) {
      gy = sumToShape(binaryRaw('mul', g, binaryRaw('mul', out, unaryRaw('log', x))), y.shape);
    }
    return [gx, gy];
  });
}

export function maximum(a: Operand, b: Operand): Tensor {
  const [x, y] = operands(a, b, 'maximum');
  const out = binaryRaw('max', x, y);
  return record(out, 'maximum', [x, y], (g) => selectGrad(g, x, y, out));
}

export function minimum(a: Operand, b: Operand): Tensor {
  const [x, y] = operands(a, b, 'minimum');
  const out = binaryRaw('min', x, y);
  return record(out, 'minimum', [x, y], (g) => selectGrad(g, x, y, out));
}

/** Gradient of max/min: flows to x where out == x, else to y. */
function selectGrad(g: Tensor, x: Tensor, y: Tensor, out: Tensor): (Tensor | null)[] {
  const shape = out.shape;
  const xs = broadcastStrides(x.shape, shape);
  const n = out.size;
  const gx = floatOut(out, shape);
  const gy = floatOut(out, shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let xo = 0;
    for (let d = 0; d < shape.length; d++) xo += idx[d] * xs[d];
    if (out.data[i] === x.data[xo]) gx.f[i] = g.data[i];
    else gy.f[i] = g.data[i];
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return [x.requiresGrad ? sumToShape(gx, x.shape) : null, y.requiresGrad ? sumToShape(gy, y.shape) : null];
}

// ---------------------------------------------------------------------------------------------
// elementwise unary ops

function unaryRaw(op: UnaryOp, x: Tensor): Tensor {
  const out = floatOutUninit(x, x.shape);
  kernels().unary(op, x.f, out.f, x.size);
  return out;
}

function unary(op: UnaryOp, x: Tensor): Tensor {
  requireFloat(x, op);
  const out = unaryRaw(op, x);
  return record(out, op, [x], (g) => {
    const dx = floatOutUninit(x, x.shape);
    kernels().unaryBackward(op, x.f, out.f, g.f, dx.f, x.size, false);
    return [dx];
  });
}

export const neg = (x: Tensor): Tensor => unary('neg', x);
export const abs = (x: Tensor): Tensor => unary('abs', x);
export const exp = (x: Tensor): Tensor => unary('exp', x);
export const log = (x: Tensor): Tensor => unary('log', x);
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x);
export const rsqrt = (x: Tensor): Tensor => unary('rsqrt', x);
export const tanh = (x: Tensor): Tensor => unary('tanh', x);
export const atanh = (x: Tensor): Tensor => unary('atanh', x);
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
export const silu = (x: Tensor): Tensor => unary('silu', x);
export const relu = (x: Tensor): Tensor => unary('relu', x);
export const sin = (x: Tensor): Tensor => unary('sin', x);
export const cos = (x: Tensor): Tensor => unary('cos', x);
export const square = (x: Tensor): Tensor => unary('square', x);
export const reciprocal = (x: Tensor): Tensor => unary('recip', x);
/** GELU; approximate 'tanh' (GPT-2 style) or 'none' (exact, with erf). */
export const gelu = (x: Tensor, approximate: 'tanh' | 'none' = 'none'): Tensor => unary(approximate === 'tanh' ? 'gelu_tanh' : 'gelu_erf', x);

/** Round half to even (as torch.round); the gradient passes straight through (identity). */
export function roundSTE(x: Tensor): Tensor {
  requireFloat(x, 'roundSTE');
  return customOp('roundSTE', [x], () => {
    const out = floatOutUninit(x, x.shape);
    const xd = x.f;
    const od = out.f;
    for (let i = 0; i < xd.length; i++) od[i] = roundHalfEven(xd[i]);
    return out;
  }, (g) => [g]);
}

export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  // Math.round rounds .5 up; fix exact ties to the even neighbour.
  if (r - v === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/** clamp(x, lo, hi); the gradient is 1 inside [lo, hi] and 0 outside. */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  requireFloat(x, 'clamp');
  const out = floatOutUninit(x, x.shape);
  const xd = x.f;
  const od = out.f;
  for (let i = 0; i < xd.length; i++) od[i] = xd[i] < lo ? lo : xd[i] > hi ? hi : xd[i];
  return record(out, 'clamp', [x], (g) => {
    const dx = floatOutUninit(x, x.shape);
    for (let i = 0; i < xd.length; i++) dx.f[i] = xd[i] >= lo && xd[i] <= hi ? g.data[i] : 0;
    return [dx];
  });
}

// ---------------------------------------------------------------------------------------------
// reductions

function reduceDims(ndim: number, dims?: number | number[]): number[] {
  if (dims === undefined) return Array.from({ length: ndim }, (_, i) => i);
  const arr = typeof dims === 'number' ? [dims] : dims;
  return [...new Set(arr.map((d) => normDim(d, ndim)))].sort((a, b) => a - b);
}

function keptShape(shape: readonly number[], dims: number[], keepdim: boolean): number[] {
  const out: number[] = [];
  for (let i = 0; i < shape.length; i++) {
    if (dims.includes(i)) {
      if (keepdim) out.push(1);
    } else out.push(shape[i]);
  }
  return out;
}

/** Sum over one dim, keeping it as size 1. */
function sumOneDim(x: Tensor, d: number): Tensor {
  const shape = x.shape;
  const outer = sizeOf(shape.slice(0, d));
  const red = shape[d];
  const inner = sizeOf(shape.slice(d + 1));
  const outShape = [...shape];
  outShape[d] = 1;
  const out = floatOutUninit(x, outShape);
  kernels().sum(x.f, out.f, outer, red, inner);
  return out;
}

/** Sum over dims (all by default). */
export function sum(x: Tensor, dims?: number | number[], keepdim = false): Tensor {
  requireFloat(x, 'sum');
  const ds = reduceDims(x.ndim, dims);
  let cur = x;
  for (const d of ds) if (cur.shape[d] !== 1 || cur === x) cur = sumOneDim(cur, d);
  if (cur === x) cur = x.clone();
  const outShape = keptShape(x.shape, ds, keepdim);
  const out = new Tensor(cur.data, outShape);
  return record(out, 'sum', [x], (g) => [expandTo(reshape(g, keptShape(x.shape, ds, true)), x.shape)]);
}

export function mean(x: Tensor, dims?: number | number[], keepdim = false): Tensor {
  const ds = reduceDims(x.ndim, dims);
  let n = 1;
  for (const d of ds) n *= x.shape[d];
  return mul(sum(x, ds, keepdim), 1 / n);
}

/** Variance over dims (biased by default, unbiased = Bessel's correction). */
export function variance(x: Tensor, dims?: number | number[], opts: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
  const ds = reduceDims(x.ndim, dims);
  let n = 1;
  for (const d of ds) n *= x.shape[d];
  const mu = mean(x, ds, true);
  const dev = sub(x, mu);
  const ss = sum(mul(dev, dev), ds, opts.keepdim ?? false);
  return mul(ss, 1 / (opts.unbiased ? n - 1 : n));
}

/** Max over one dim: values (gradient flows to the first maximal element) and int32 indices. */
export function max(x: Tensor, dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
  requireFloat(x, 'max');
  const d = normDim(dim, x.ndim);
  const outer = sizeOf(x.shape.slice(0, d));
  const red = x.shape[d];
  const inner = sizeOf(x.shape.slice(d + 1));
  if (red === 0) throw new Error('max over an empty dimension');
  const outShape = keptShape(x.shape, [d], keepdim);
  const values = floatOutUninit(x, outShape);
  const arg = new Int32Array(outer * inner);
  kernels().max(x.f, values.f, arg, outer, red, inner);
  const indices = new Tensor(arg, outShape);
  record(values, 'max', [x], (g) => {
    const dx = floatOut(x, x.shape);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) dx.f[(o * red + arg[o * inner + i]) * inner + i] = g.data[o * inner + i];
    }
    return [dx];
  });
  return { values, indices };
}

/** Max over all elements (a scalar; gradient to the first maximal element). */
export function maxAll(x: Tensor): Tensor {
  return max(reshape(x, [x.size]), 0).values;
}

// ---------------------------------------------------------------------------------------------
// shape ops

/** Same data, new shape (a view: no copy). One dimension may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const neg1 = s.indexOf(-1);
  if (neg1 >= 0) {
    const rest = sizeOf(s.filter((_, i) => i !== neg1));
    if (rest === 0 || x.size % rest !== 0) throw new Error(`cannot reshape [${x.shape.join(', ')}] to [${shape.join(', ')}]`);
    s[neg1] = x.size / rest;
  }
  if (sizeOf(s) !== x.size) throw new Error(`cannot reshape [${x.shape.join(', ')}] (${x.size} elements) to [${shape.join(', ')}]`);
  const out = new Tensor(x.data, s);
  return record(out, 'reshape', [x], (g) => [new Tensor(g.data, x.shape)]);
}

export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  const s = normDim(startDim, x.ndim);
  const e = normDim(endDim, x.ndim);
  return reshape(x, [...x.shape.slice(0, s), sizeOf(x.shape.slice(s, e + 1)), ...x.shape.slice(e + 1)]);
}

export function unsqueeze(x: Tensor, dim: number): Tensor {
  const d = dim < 0 ? dim + x.ndim + 1 : dim;
  return reshape(x, [...x.shape.slice(0, d), 1, ...x.shape.slice(d)]);
}

export function squeeze(x: Tensor, dim: number): Tensor {
  const d = normDim(dim, x.ndim);
  if (x.shape[d] !== 1) throw new Error(`squeeze: dimension ${dim} has size ${x.shape[d]}, not 1`);
  return reshape(x, [...x.shape.slice(0, d), ...x.shape.slice(d + 1)]);
}

/** Reorder dimensions (copies into a contiguous tensor). */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== x.ndim || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new Error(`permute: [${perm.join(', ')}] is not a permutation of ${x.ndim} dimensions`);
  }
  const outShape = perm.map((p) => x.shape[p]);
  if (perm.every((p, i) => p === i)) return reshape(x, outShape);
  const out = new Tensor(allocUninit(x.dtype, x.size), outShape);
  kernels().permute(x.data as FArr, out.data as FArr, [...x.shape], [...perm]);
  return record(out, 'permute', [x], (g) => {
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [permute(g, inv)];
  });
}

export function transpose(x: Tensor, d0: number, d1: number): Tensor {
  const a = normDim(d0, x.ndim);
  const b = normDim(d1, x.ndim);
  const perm = Array.from({ length: x.ndim }, (_, i) => i);
  perm[a] = b;
  perm[b] = a;
  return permute(x, perm);
}

/** Materialise broadcasting: x (broadcastable to shape) copied to `shape`. */
export function expandTo(x: Tensor, shape: readonly number[]): Tensor {
  if (x.shape.length === shape.length && x.shape.every((d, i) => d === shape[i])) return x;
  const target = broadcastShapes(x.shape, shape);
  if (target.length !== shape.length || target.some((d, i) => d !== shape[i])) {
    throw new Error(`cannot expand [${x.shape.join(', ')}] to [${shape.join(', ')}]`);
  }
  requireFloat(x, 'expandTo');
  const zero = Tensor.scalar(0, x.dtype);
  const out = floatOutUninit(x, shape);
  kernels().binary({ op: 'add', a: x.f, b: zero.f, out: out.f, shape: [...shape], aStrides: broadcastStrides(x.shape, shape), bStrides: shape.map(() => 0) });
  return record(out, 'expand', [x], (g) => [sumToShape(g, x.shape)]);
}

/** x[..., start:end, ...] along dim (copy). */
export function slice(x: Tensor, dim: number, start: number, end: number): Tensor {
  const d = normDim(dim, x.ndim);
  const n = x.shape[d];
  const s = Math.max(0, Math.min(n, start < 0 ? start + n : start));
  const e = Math.max(s, Math.min(n, end < 0 ? end + n : end));
  const outer = sizeOf(x.shape.slice(0, d));
  const inner = sizeOf(x.shape.slice(d + 1));
  const outShape = [...x.shape];
  outShape[d] = e - s;
  const out = new Tensor(allocUninit(x.dtype, sizeOf(outShape)), outShape);
  const len = (e - s) * inner;
  for (let o = 0; o < outer; o++) out.data.set(x.data.subarray((o * n + s) * inner, (o * n + s) * inner + len), o * len);
  return record(out, 'slice', [x], (g) => [
    new PartialGrad((dst) => {
      const gf = g.f;
      for (let o = 0; o < outer; o++) {
        const src = o * len;
        const at = (o * n + s) * inner;
        for (let i = 0; i < len; i++) dst[at + i] += gf[src + i];
      }
    }),
  ]);
}

/** Concatenate along dim. */
export function concat(xs: Tensor[], dim: number): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors');
  const ref = xs[0];
  const d = normDim(dim, ref.ndim);
  for (const t of xs) {
    if (t.ndim !== ref.ndim || t.dtype !== ref.dtype || t.shape.some((s, i) => i !== d && s !== ref.shape[i])) {
      throw new Error(`concat: shapes [${t.shape.join(', ')}] and [${ref.shape.join(', ')}] differ outside dimension ${dim} (or dtypes differ)`);
    }
  }
  const outer = sizeOf(ref.shape.slice(0, d));
  const inner = sizeOf(ref.shape.slice(d + 1));
  const total = xs.reduce((a, t) => a + t.shape[d], 0);
  const outShape = [...ref.shape];
  outShape[d] = total;
  const out = new Tensor(allocUninit(ref.dtype, sizeOf(outShape)), outShape);
  let off = 0;
  for (const t of xs) {
    const len = t.shape[d] * inner;
    for (let o = 0; o < outer; o++) out.data.set(t.data.subarray(o * len, (o + 1) * len), (o * total + off) * inner);
    off += t.shape[d];
  }
  return record(out, 'concat', xs, (g) => {
    let start = 0;
    return xs.map((t) => {
      const gi = t.requiresGrad ? noRecordSlice(g, d, start, start + t.shape[d]) : null;
      start += t.shape[d];
      return gi;
    });
  });
}

function noRecordSlice(x: Tensor, d: number, s: number, e: number): Tensor {
  return slice(x, d, s, e); // backward runs with recording off
}

export function stack(xs: Tensor[], dim = 0): Tensor {
  if (xs.length === 0) throw new Error('stack: no tensors');
  const d = dim < 0 ? dim + xs[0].ndim + 1 : dim;
  return concat(xs.map((t) => unsqueeze(t, d)), d);
}

/** Constant padding: pads = [[before, after] per dimension] (length = ndim). */
export function pad(x: Tensor, pads: readonly (readonly [number, number])[], value = 0): Tensor {
  if (pads.length !== x.ndim) throw new Error(`pad: need ${x.ndim} [before, after] pairs, got ${pads.length}`);
  const outShape = x.shape.map((s, i) => s + pads[i][0] + pads[i][1]);
  const out = new Tensor(allocUninit(x.dtype, sizeOf(outShape)), outShape);
  out.data.fill(value);
  const os = contiguousStrides(outShape);
  const base = pads.reduce((acc, p, i) => acc + p[0] * os[i], 0);
  const inner = x.shape[x.ndim - 1] ?? 1;
  const rows = x.ndim === 0 ? 1 : x.size / Math.max(inner, 1);
  const rowOffsets = (fn: (r: number, o: number) => void) => {
    const idx = new Array<number>(Math.max(x.ndim - 1, 0)).fill(0);
    for (let r = 0; r < rows; r++) {
      let o = base;
      for (let k = 0; k < idx.length; k++) o += idx[k] * os[k];
      fn(r, o);
      for (let k = idx.length - 1; k >= 0; k--) {
        if (++idx[k] < x.shape[k]) break;
        idx[k] = 0;
      }
    }
  };
  if (x.size > 0) rowOffsets((r, o) => out.data.set(x.data.subarray(r * inner, (r + 1) * inner), o));
  return record(out, 'pad', [x], (g) => {
    const dx = floatOut(x, x.shape);
    if (x.size > 0) rowOffsets((r, o) => dx.f.set(g.f.subarray(o, o + inner), r * inner));
    return [dx];
  });
}

// ---------------------------------------------------------------------------------------------
// indexing

function checkIndices(idx: Int32Array, n: number, op: string): void {
  for (let i = 0; i < idx.length; i++) {
    if (idx[i] < 0 || idx[i] >= n) throw new Error(`${op}: index ${idx[i]} out of range [0, ${n})`);
  }
}

/** out = x.index_select(dim, indices): picks whole slices along dim. */
export function indexSelect(x: Tensor, dim: number, indices: Tensor): Tensor {
  const d = normDim(dim, x.ndim);
  const idx = indices.i;
  const n = x.shape[d];
  checkIndices(idx, n, 'indexSelect');
  const outer = sizeOf(x.shape.slice(0, d));
  const inner = sizeOf(x.shape.slice(d + 1));
  const outShape = [...x.shape];
  outShape[d] = idx.length;
  const out = new Tensor(allocUninit(x.dtype, sizeOf(outShape)), outShape);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < idx.length; j++) {
      const src = (o * n + idx[j]) * inner;
      out.data.set(x.data.subarray(src, src + inner), (o * idx.length + j) * inner);
    }
  }
  return record(out, 'indexSelect', [x], (g) => {
    const dx = floatOut(x, x.shape);
    const gd = g.f;
    const dd = dx.f;
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < idx.length; j++) {
        const dst = (o * n + idx[j]) * inner;
        const src = (o * idx.length + j) * inner;
        for (let i = 0; i < inner; i++) dd[dst + i] += gd[src + i];
      }
    }
    return [dx];
  });
}

/** Embedding lookup: weight [V, D], ids int32 of any shape → [...ids.shape, D]. */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be [vocab, dim], got [${weight.shape.join(', ')}]`);
  const flat = reshape(ids, [ids.size]);
  return reshape(indexSelect(weight, 0, flat), [...ids.shape, weight.shape[1]]);
}

/** out[..., i, ...] = x[..., index[..., i, ...], ...] along dim (torch.gather; index has x's rank). */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  const d = normDim(dim, x.ndim);
  if (index.ndim !== x.ndim) throw new Error(`gather: index rank ${index.ndim} ≠ input rank ${x.ndim}`);
  const idx = index.i;
  checkIndices(idx, x.shape[d], 'gather');
  const xs = contiguousStrides(x.shape);
  const shape = index.shape;
  const out = new Tensor(allocUninit(x.dtype, index.size), shape);
  const srcOff = new Int32Array(index.size);
  const pos = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < index.size; i++) {
    let o = 0;
    for (let k = 0; k < shape.length; k++) o += (k === d ? idx[i] : pos[k]) * xs[k];
    srcOff[i] = o;
    out.data[i] = x.data[o];
    for (let k = shape.length - 1; k >= 0; k--) {
      if (++pos[k] < shape[k]) break;
      pos[k] = 0;
    }
  }
  return record(out, 'gather', [x], (g) => {
    const dx = floatOut(x, x.shape);
    for (let i = 0; i < srcOff.length; i++) dx.f[srcOff[i]] += g.data[i];
    return [dx];
  });
}

/** x.scatter_add(dim, index, src): a copy of x with src added at index positions along dim. */
export function scatterAdd(x: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  const d = normDim(dim, x.ndim);
  if (index.ndim !== x.ndim || src.size !== index.size) throw new Error('scatterAdd: index must have x\'s rank and src index\'s size');
  sameFloat(x, src, 'scatterAdd');
  const idx = index.i;
  checkIndices(idx, x.shape[d], 'scatterAdd');
  const xs = contiguousStrides(x.shape);
  const shape = index.shape;
  const out = x.clone();
  const dstOff = new Int32Array(index.size);
  const pos = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < index.size; i++) {
    let o = 0;
    for (let k = 0; k < shape.length; k++) o += (k === d ? idx[i] : pos[k]) * xs[k];
    dstOff[i] = o;
    out.f[o] += src.data[i];
    for (let k = shape.length - 1; k >= 0; k--) {
      if (++pos[k] < shape[k]) break;
      pos[k] = 0;
    }
  }
  return record(out, 'scatterAdd', [x, src], (g) => {
    const gs = floatOutUninit(src, src.shape);
    for (let i = 0; i < dstOff.length; i++) gs.f[i] = g.data[dstOff[i]];
    return [g, reshape(gs, src.shape)];
  });
}

/** Elementwise choice: cond (int32/uint8-like nonzero = true, broadcastable) ? a : b. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const [x, y] = operands(a, b, 'where');
  const shape = broadcastShapes(broadcastShapes(cond.shape, x.shape), y.shape);
  const cs = broadcastStrides(cond.shape, shape);
  const xs = broadcastStrides(x.shape, shape);
  const ys = broadcastStrides(y.shape, shape);
  const n = sizeOf(shape);
  const out = floatOutUninit(x, shape);
  const take = new Uint8Array(n);
  const pos = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let co = 0, xo = 0, yo = 0;
    for (let k = 0; k < shape.length; k++) {
      co += pos[k] * cs[k];
      xo += pos[k] * xs[k];
      yo += pos[k] * ys[k];
    }
    const c = cond.data[co] !== 0;
    take[i] = c ? 1 : 0;
    out.f[i] = c ? x.data[xo] : y.data[yo];
    for (let k = shape.length - 1; k >= 0; k--) {
      if (++pos[k] < shape[k]) break;
      pos[k] = 0;
    }
  }
  return record(out, 'where', [x, y], (g) => {
    const gx = floatOut(out, shape);
    const gy = floatOut(out, shape);
    for (let i = 0; i < n; i++) {
      if (take[i]) gx.f[i] = g.data[i];
      else gy.f[i] = g.data[i];
    }
    return [x.requiresGrad ? sumToShape(gx, x.shape) : null, y.requiresGrad ? sumToShape(gy, y.shape) : null];
  });
}

/** x with `value` wherever mask (broadcastable, nonzero = fill) is set. */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  return where(mask, Tensor.scalar(value, x.dtype), x);
}

/** Inverted dropout: zero each element with probability p (one 32-bit draw of `rng` per element, in order), scale
 * the rest by 1/(1-p). Identity when !training. */
export function dropout(x: Tensor, p: number, rng: { fillU32(out: Uint32Array): void }, training = true): Tensor {
  if (!training || p === 0) return x;
  if (p < 0 || p >= 1) throw new Error(`dropout probability must be in [0, 1), got ${p}`);
  const m = floatOutUninit(x, x.shape);
  const s = 1 / (1 - p);
  // draw into the mask's own (pooled) storage when it is float32, so a training step allocates nothing here;
  // each element's draw is read before its mask value overwrites it
  const f = m.f;
  const draws = f instanceof Float32Array ? new Uint32Array(f.buffer, f.byteOffset, m.size) : new Uint32Array(m.size);
  rng.fillU32(draws);
  const threshold = p * 4294967296; // P(draw < threshold) = p
  for (let i = 0; i < m.size; i++) f[i] = draws[i] < threshold ? 0 : s;
  return mul(x, m);
}

/** Cast to a float dtype; differentiable (the gradient is cast back to x's dtype). An int32 x needs no gradient. */
export function toFloat(x: Tensor, dtype: 'float32' | 'float64' = 'float32'): Tensor {
  return x.toDType(dtype);
}

export function zerosLike(x: Tensor): Tensor {
  return Tensor.zeros(x.shape, x.dtype);
}

export type { DType, FloatData };
