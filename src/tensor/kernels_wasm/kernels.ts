// The `Kernels` interface on the WebAssembly build of the C++ kernels: float32 operands are copied into the
// module's memory (only the element ranges a call reads), the export runs, outputs are copied back.
// Every entry runs in wasm for float32 (int32 for permute); float64 or mixed-type calls delegate to the JS
// kernels, as on the native backend.
import type {
  AdamWArgs,
  AttentionArgs,
  AttentionBackwardArgs,
  BinaryOp,
  BroadcastArgs,
  Conv2dGeom,
  FArr,
  GemmArgs,
  Kernels,
  UnaryOp,
} from '../kernels.js';
import { jsKernels } from '../kernels_js/index.js';
import { Arena, regionBytes } from './arena.js';
import type { KernelExports } from './module.js';

/** The kernels of the wasm backend (kernels.ts's `Kernels` with the backend's own name). */
export type WasmKernels = Omit<Kernels, 'name'> & { readonly name: 'wasm' };

const UNARY_INDEX: Record<UnaryOp, number> = {
  neg: 0, abs: 1, exp: 2, log: 3, sqrt: 4, rsqrt: 5, tanh: 6, atanh: 7, sigmoid: 8,
  silu: 9, gelu_tanh: 10, gelu_erf: 11, relu: 12, sin: 13, cos: 14, square: 15, recip: 16,
};
const BINARY_INDEX: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3, pow: 4, max: 5, min: 6 };
/** ndim limit of the C shims (native/wasm/exports.cc) */
const MAX_DIMS = 64;

const allF32 = (...xs: (FArr | null | undefined)[]): boolean => xs.every((x) => x == null || x instanceof Float32Array);

/** A non-negative integer count or stride; the C side takes int32. */
function count(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0x7fff_ffff) throw new RangeError(`${what}: bad integer ${v}`);
  return v;
}

function needLen(have: number, need: number, what: string): void {
  if (need > have) throw new RangeError(`${what}: array too short (${have} < ${need})`);
}

/** End (exclusive) of a batch of rows×cols matrices at off with leading dimension ld and batch stride. */
function matrixEnd(len: number, off: number, rows: number, cols: number, ld: number, stride: number, batch: number, what: string): number {
  count(off, `${what} offset`);
  count(ld, `${what} leading dimension`);
  count(stride, `${what} batch stride`);
  if (ld < Math.max(1, cols)) throw new RangeError(`${what}: leading dimension too small`);
  const end = off + (batch - 1) * stride + (rows - 1) * ld + cols;
  if (end > len) throw new RangeError(`${what}: matrix exceeds the array`);
  return end;
}

export function createWasmKernels(ex: KernelExports): WasmKernels {
  const arena = new Arena(ex);

  function gemmCall(g: GemmArgs, bf16: boolean): void {
    const m = count(g.m, 'm'), n = count(g.n, 'n'), k = count(g.k, 'k'), batch = count(g.batch, 'batch');
    if (m === 0 || n === 0 || batch === 0) return;
    const a = g.a as Float32Array, b = g.b as Float32Array, c = g.c as Float32Array;
    const cEnd = matrixEnd(c.length, g.cOffset, m, n, g.ldc, g.strideC, batch, 'c');
    const reads = k > 0 && g.alpha !== 0;
    let aEnd = g.aOffset, bEnd = g.bOffset;
    if (k > 0) {
      aEnd = matrixEnd(a.length, g.aOffset, g.transA ? k : m, g.transA ? m : k, g.lda, g.strideA, batch, 'a');
      bEnd = matrixEnd(b.length, g.bOffset, g.transB ? n : k, g.transB ? k : n, g.ldb, g.strideB, batch, 'b');
    }
    const aLen = reads ? aEnd - g.aOffset : 0, bLen = reads ? bEnd - g.bOffset : 0, cLen = cEnd - g.cOffset;
    arena.reset(regionBytes(aLen, 4) + regionBytes(bLen, 4) + regionBytes(cLen, 4));
    const pa = reads ? arena.putF32(a, g.aOffset, aEnd) : 0;
    const pb = reads ? arena.putF32(b, g.bOffset, bEnd) : 0;
    // C is read when beta != 0; it is also copied in when the written elements have gaps (ldc > n, batch
    // strides), so that copying the whole span back leaves the gaps as they were.
    const dense = (m === 1 || g.ldc === n) && (batch === 1 || g.strideC === 0 || g.strideC === m * n);
    const pc = g.beta !== 0 || !dense ? arena.putF32(c, g.cOffset, cEnd) : arena.take(cLen, 4);
    ex.ft_gemm(bf16 ? 1 : 0, g.transA ? 1 : 0, g.transB ? 1 : 0, m, n, k, g.alpha, g.beta, pa, g.lda, g.strideA, pb, g.ldb,
      g.strideB, pc, g.ldc, g.strideC, batch);
    arena.refresh();
    arena.getF32(pc, c, g.cOffset, cEnd);
  }

  /** Sizes of one attention call: q/out/dq/dOut elements, k/v elements, lse elements, mask bytes. */
  function attentionSizes(p: AttentionArgs): { qn: number; kn: number; ln: number; mn: number } {
    const batch = count(p.batch, 'batch'), heads = count(p.heads, 'heads'), lq = count(p.lq, 'lq'), lk = count(p.lk, 'lk');
    const d = count(p.headDim, 'headDim');
    count(p.maskBatchStride, 'maskBatchStride');
    const qn = batch * lq * heads * d, kn = batch * lk * heads * d, ln = batch * heads * lq;
    const mn = p.mask && batch > 0 ? (batch - 1) * p.maskBatchStride + lq * lk : 0;
    needLen(p.q.length, qn, 'q');
    needLen(p.out.length, qn, 'out');
    needLen(p.k.length, kn, 'k');
    needLen(p.v.length, kn, 'v');
    needLen(p.lse.length, ln, 'lse');
    if (p.mask) needLen(p.mask.length, mn, 'mask');
    return { qn, kn, ln, mn };
  }

  /** y, dy, dx rows×dim: the shared shape of the softmax-family backward kernels. */
  function rowsBackward(fn: (y: number, dy: number, dx: number, rows: number, dim: number) => void, y: Float32Array,
    dy: Float32Array, dx: Float32Array, rows: number, dim: number): void {
    const total = count(rows, 'rows') * count(dim, 'dim');
    needLen(y.length, total, 'y');
    needLen(dy.length, total, 'dy');
    needLen(dx.length, total, 'dx');
    if (total === 0) return;
    arena.reset(3 * regionBytes(total, 4));
    const py = arena.putF32(y, 0, total), pdy = arena.putF32(dy, 0, total), pdx = arena.take(total, 4);
    fn(py, pdy, pdx, rows, dim);
    arena.refresh();
    arena.getF32(pdx, dx, 0, total);
  }

  function rowsForward(fn: (x: number, y: number, rows: number, dim: number) => void, x: Float32Array, y: Float32Array,
    rows: number, dim: number): void {
    const total = count(rows, 'rows') * count(dim, 'dim');
    needLen(x.length, total, 'x');
    needLen(y.length, total, 'y');
    if (total === 0) return;
    arena.reset(2 * regionBytes(total, 4));
    const px = arena.putF32(x, 0, total), py = arena.take(total, 4);
    fn(px, py, rows, dim);
    arena.refresh();
    arena.getF32(py, y, 0, total);
  }

  /** An optional float32 input of n elements: its address, or 0 when absent. */
  function putOptional(x: Float32Array | null, n: number): number {
    return x ? arena.putF32(x, 0, n) : 0;
  }
  const optBytes = (x: FArr | null, n: number): number => (x ? regionBytes(n, 4) : 0);

  function convGeom(g: Conv2dGeom): number {
    const vals = [g.channels, g.height, g.width, g.kh, g.kw, g.strideH, g.strideW, g.padTop, g.padLeft, g.outH, g.outW];
    const names = ['channels', 'height', 'width', 'kh', 'kw', 'strideH', 'strideW', 'padTop', 'padLeft', 'outH', 'outW'];
    vals.forEach((v, i) => count(v, names[i]));
    if (g.strideH === 0 || g.strideW === 0) throw new RangeError('conv: stride must be positive');
    const p = arena.take(11, 4);
    arena.i32.set(vals, p >>> 2);
    return p;
  }

  function groupArgs(channels: number, groups: number): void {
    if (groups <= 0 || channels % groups !== 0) throw new RangeError('groupNorm: groups must divide channels');
  }

  function checkSegments(seg: Int32Array, rows: number, segments: number, what: string): void {
    needLen(seg.length, rows, 'seg');
    for (let r = 0; r < rows; r++) {
      if (seg[r] < 0 || seg[r] >= segments) throw new RangeError(`${what}: seg index out of range`);
    }
  }

  return {
    name: 'wasm',

    gemm(args: GemmArgs): void {
      if (!allF32(args.a, args.b, args.c)) return jsKernels.gemm(args);
      gemmCall(args, false);
    },

    gemmBf16(args: GemmArgs): void {
      if (!allF32(args.a, args.b, args.c)) return jsKernels.gemmBf16(args);
      gemmCall(args, true);
    },

    attentionForward(p: AttentionArgs): void {
      if (!allF32(p.q, p.k, p.v, p.out, p.lse)) return jsKernels.attentionForward(p);
      const { qn, kn, ln, mn } = attentionSizes(p);
      if (ln === 0 && qn === 0) return;
      arena.reset(2 * regionBytes(qn, 4) + 2 * regionBytes(kn, 4) + regionBytes(ln, 4) + regionBytes(mn, 1));
      const pq = arena.putF32(p.q as Float32Array, 0, qn), pk = arena.putF32(p.k as Float32Array, 0, kn);
      const pv = arena.putF32(p.v as Float32Array, 0, kn);
      const pm = p.mask ? arena.putU8(p.mask, 0, mn) : 0;
      const po = arena.take(qn, 4), pl = arena.take(ln, 4);
      ex.ft_attention_forward(pq, pk, pv, po, pl, pm, p.maskBatchStride, p.batch, p.heads, p.lq, p.lk, p.headDim, p.scale,
        p.causal ? 1 : 0);
      arena.refresh();
      arena.getF32(po, p.out as Float32Array, 0, qn);
      arena.getF32(pl, p.lse as Float32Array, 0, ln);
    },

    attentionBackward(p: AttentionBackwardArgs): void {
      if (!allF32(p.q, p.k, p.v, p.out, p.lse, p.dOut, p.dq, p.dk, p.dv)) return jsKernels.attentionBackward(p);
      const { qn, kn, ln, mn } = attentionSizes(p);
      needLen(p.dOut.length, qn, 'dOut');
      needLen(p.dq.length, qn, 'dq');
      needLen(p.dk.length, kn, 'dk');
      needLen(p.dv.length, kn, 'dv');
      if (qn === 0 && kn === 0) return;
      arena.reset(4 * regionBytes(qn, 4) + 4 * regionBytes(kn, 4) + regionBytes(ln, 4) + regionBytes(mn, 1));
      const pq = arena.putF32(p.q as Float32Array, 0, qn), pk = arena.putF32(p.k as Float32Array, 0, kn);
      const pv = arena.putF32(p.v as Float32Array, 0, kn), po = arena.putF32(p.out as Float32Array, 0, qn);
      const pl = arena.putF32(p.lse as Float32Array, 0, ln), pdo = arena.putF32(p.dOut as Float32Array, 0, qn);
      const pm = p.mask ? arena.putU8(p.mask, 0, mn) : 0;
      const pdq = arena.take(qn, 4), pdk = arena.take(kn, 4), pdv = arena.take(kn, 4);
      ex.ft_attention_backward(pq, pk, pv, po, pl, pm, p.maskBatchStride, p.batch, p.heads, p.lq, p.lk, p.headDim,
        p.scale, p.causal ? 1 : 0, pdo, pdq, pdk, pdv);
      arena.refresh();
      arena.getF32(pdq, p.dq as Float32Array, 0, qn);
      arena.getF32(pdk, p.dk as Float32Array, 0, kn);
      arena.getF32(pdv, p.dv as Float32Array, 0, kn);
    },

    unary(op: UnaryOp, x: FArr, y: FArr, n: number): void {
      if (!(x instanceof Float32Array) || !(y instanceof Float32Array)) return jsKernels.unary(op, x, y, n);
      count(n, 'n');
      needLen(x.length, n, 'x');
      needLen(y.length, n, 'y');
      if (n === 0) return;
      arena.reset(2 * regionBytes(n, 4));
      const px = arena.putF32(x, 0, n), py = arena.take(n, 4);
      ex.ft_unary(UNARY_INDEX[op], px, py, n);
      arena.refresh();
      arena.getF32(py, y, 0, n);
    },

    unaryBackward(op: UnaryOp, x: FArr, y: FArr, dy: FArr, dx: FArr, n: number, accumulate: boolean): void {
      if (!allF32(x, y, dy, dx)) return jsKernels.unaryBackward(op, x, y, dy, dx, n, accumulate);
      count(n, 'n');
      needLen(x.length, n, 'x');
      needLen(y.length, n, 'y');
      needLen(dy.length, n, 'dy');
      needLen(dx.length, n, 'dx');
      if (n === 0) return;
      arena.reset(4 * regionBytes(n, 4));
      const px = arena.putF32(x as Float32Array, 0, n), py = arena.putF32(y as Float32Array, 0, n);
      const pdy = arena.putF32(dy as Float32Array, 0, n);
      const pdx = accumulate ? arena.putF32(dx as Float32Array, 0, n) : arena.take(n, 4);
      ex.ft_unary_backward(UNARY_INDEX[op], px, py, pdy, pdx, n, accumulate ? 1 : 0);
      arena.refresh();
      arena.getF32(pdx, dx as Float32Array, 0, n);
    },

    binary(args: BroadcastArgs): void {
      if (!allF32(args.a, args.b, args.out)) return jsKernels.binary(args);
      const nd = args.shape.length;
      if (nd > MAX_DIMS) throw new RangeError(`binary: at most ${MAX_DIMS} dimensions`);
      let total = 1, aEnd = 1, bEnd = 1;
      for (let i = 0; i < nd; i++) {
        const s = count(args.shape[i], 'shape');
        total *= s;
        if (s > 0) {
          aEnd += (s - 1) * count(args.aStrides[i], 'aStrides');
          bEnd += (s - 1) * count(args.bStrides[i], 'bStrides');
        }
      }
      if (total === 0) return;
      needLen(args.out.length, total, 'out');
      needLen(args.a.length, aEnd, 'a');
      needLen(args.b.length, bEnd, 'b');
      arena.reset(regionBytes(aEnd, 4) + regionBytes(bEnd, 4) + regionBytes(total, 4) + regionBytes(3 * nd, 4));
      const pa = arena.putF32(args.a as Float32Array, 0, aEnd), pb = arena.putF32(args.b as Float32Array, 0, bEnd);
      const po = arena.take(total, 4), pd = arena.take(3 * nd, 4);
      const d = pd >>> 2;
      for (let i = 0; i < nd; i++) {
        arena.i32[d + i] = args.shape[i];
        arena.i32[d + nd + i] = args.aStrides[i];
        arena.i32[d + 2 * nd + i] = args.bStrides[i];
      }
      ex.ft_binary(BINARY_INDEX[args.op], pa, pb, po, nd, pd);
      arena.refresh();
      arena.getF32(po, args.out as Float32Array, 0, total);
    },

    sum(x: FArr, out: FArr, outer: number, red: number, inner: number): void {
      if (!(x instanceof Float32Array) || !(out instanceof Float32Array)) return jsKernels.sum(x, out, outer, red, inner);
      const xn = count(outer, 'outer') * count(red, 'red') * count(inner, 'inner'), on = outer * inner;
      needLen(x.length, xn, 'x');
      needLen(out.length, on, 'out');
      if (on === 0) return;
      arena.reset(regionBytes(xn, 4) + regionBytes(on, 4));
      const px = arena.putF32(x, 0, xn), po = arena.take(on, 4);
      ex.ft_sum(px, po, outer, red, inner);
      arena.refresh();
      arena.getF32(po, out, 0, on);
    },

    max(x: FArr, out: FArr, argmax: Int32Array, outer: number, red: number, inner: number): void {
      if (!(x instanceof Float32Array) || !(out instanceof Float32Array)) return jsKernels.max(x, out, argmax, outer, red, inner);
      const xn = count(outer, 'outer') * count(red, 'red') * count(inner, 'inner'), on = outer * inner;
      needLen(x.length, xn, 'x');
      needLen(out.length, on, 'out');
      needLen(argmax.length, on, 'argmax');
      if (on === 0) return;
      arena.reset(regionBytes(xn, 4) + 2 * regionBytes(on, 4));
      const px = arena.putF32(x, 0, xn), po = arena.take(on, 4), pi = arena.take(on, 4);
      ex.ft_max(px, po, pi, outer, red, inner);
      arena.refresh();
      arena.getF32(po, out, 0, on);
      arena.getI32(pi, argmax, 0, on);
    },

    softmaxForward(x: FArr, y: FArr, rows: number, dim: number): void {
      if (!(x instanceof Float32Array) || !(y instanceof Float32Array)) return jsKernels.softmaxForward(x, y, rows, dim);
      rowsForward(ex.ft_softmax_forward, x, y, rows, dim);
    },

    softmaxBackward(y: FArr, dy: FArr, dx: FArr, rows: number, dim: number): void {
      if (!allF32(y, dy, dx)) return jsKernels.softmaxBackward(y, dy, dx, rows, dim);
      rowsBackward(ex.ft_softmax_backward, y as Float32Array, dy as Float32Array, dx as Float32Array, rows, dim);
    },

    logSoftmaxForward(x: FArr, y: FArr, rows: number, dim: number): void {
      if (!(x instanceof Float32Array) || !(y instanceof Float32Array)) return jsKernels.logSoftmaxForward(x, y, rows, dim);
      rowsForward(ex.ft_log_softmax_forward, x, y, rows, dim);
    },

    logSoftmaxBackward(y: FArr, dy: FArr, dx: FArr, rows: number, dim: number): void {
      if (!allF32(y, dy, dx)) return jsKernels.logSoftmaxBackward(y, dy, dx, rows, dim);
      rowsBackward(ex.ft_log_softmax_backward, y as Float32Array, dy as Float32Array, dx as Float32Array, rows, dim);
    },

    segmentFmaForward(x, a, c, seg, out, rows, dim, segments, cPerRow): void {
      if (!allF32(x, a, c, out)) return jsKernels.segmentFmaForward(x, a, c, seg, out, rows, dim, segments, cPerRow);
      const total = count(rows, 'rows') * count(dim, 'dim'), an = count(segments, 'segments') * dim;
      const cn = (cPerRow ? rows : segments) * dim;
      needLen(x.length, total, 'x');
      needLen(out.length, total, 'out');
      needLen(a.length, an, 'a');
      needLen(c.length, cn, 'c');
      checkSegments(seg, rows, segments, 'segmentFmaForward');
      if (total === 0) return;
      arena.reset(2 * regionBytes(total, 4) + regionBytes(an, 4) + regionBytes(cn, 4) + regionBytes(rows, 4));
      const px = arena.putF32(x as Float32Array, 0, total), pa = arena.putF32(a as Float32Array, 0, an);
      const pc = arena.putF32(c as Float32Array, 0, cn), ps = arena.putI32(seg, 0, rows), po = arena.take(total, 4);
      ex.ft_segment_fma_forward(px, pa, pc, ps, po, rows, dim, cPerRow ? 1 : 0);
      arena.refresh();
      arena.getF32(po, out as Float32Array, 0, total);
    },

    segmentFmaBackward(x, a, seg, dy, dx, da, dc, rows, dim, segments): void {
      if (!allF32(x, a, dy, dx, da, dc)) return jsKernels.segmentFmaBackward(x, a, seg, dy, dx, da, dc, rows, dim, segments);
      const total = count(rows, 'rows') * count(dim, 'dim'), an = count(segments, 'segments') * dim;
      needLen(x.length, total, 'x');
      needLen(dy.length, total, 'dy');
      needLen(a.length, an, 'a');
      if (dx) needLen(dx.length, total, 'dx');
      if (da) needLen(da.length, an, 'da');
      if (dc) needLen(dc.length, an, 'dc');
      checkSegments(seg, rows, segments, 'segmentFmaBackward');
      if (!dx && !da && !dc) return;
      arena.reset(3 * regionBytes(total, 4) + 3 * regionBytes(an, 4) + regionBytes(rows, 4));
      const px = arena.putF32(x as Float32Array, 0, total), pa = arena.putF32(a as Float32Array, 0, an);
      const ps = arena.putI32(seg, 0, rows), pdy = arena.putF32(dy as Float32Array, 0, total);
      const pdx = dx ? arena.take(total, 4) : 0, pda = da ? arena.take(an, 4) : 0, pdc = dc ? arena.take(an, 4) : 0;
      ex.ft_segment_fma_backward(px, pa, ps, pdy, pdx, pda, pdc, rows, dim, segments);
      arena.refresh();
      if (dx) arena.getF32(pdx, dx as Float32Array, 0, total);
      if (da) arena.getF32(pda, da as Float32Array, 0, an);
      if (dc) arena.getF32(pdc, dc as Float32Array, 0, an);
    },

    layerNormForward(x, w, b, y, mean, rstd, rows, dim, eps): void {
      if (!allF32(x, w, b, y, mean, rstd)) return jsKernels.layerNormForward(x, w, b, y, mean, rstd, rows, dim, eps);
      const total = count(rows, 'rows') * count(dim, 'dim');
      needLen(x.length, total, 'x');
      needLen(y.length, total, 'y');
      if (w) needLen(w.length, dim, 'w');
      if (b) needLen(b.length, dim, 'b');
      needLen(mean.length, rows, 'mean');
      needLen(rstd.length, rows, 'rstd');
      if (rows === 0) return;
      arena.reset(2 * regionBytes(total, 4) + optBytes(w, dim) + optBytes(b, dim) + 2 * regionBytes(rows, 4));
      const px = arena.putF32(x as Float32Array, 0, total);
      const pw = putOptional(w as Float32Array | null, dim), pb = putOptional(b as Float32Array | null, dim);
      const py = arena.take(total, 4), pm = arena.take(rows, 4), pr = arena.take(rows, 4);
      ex.ft_layer_norm_forward(px, pw, pb, py, pm, pr, rows, dim, eps);
      arena.refresh();
      arena.getF32(py, y as Float32Array, 0, total);
      arena.getF32(pm, mean as Float32Array, 0, rows);
      arena.getF32(pr, rstd as Float32Array, 0, rows);
    },

    layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, dim): void {
      if (!allF32(x, w, mean, rstd, dy, dx, dw, db)) return jsKernels.layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, dim);
      const total = count(rows, 'rows') * count(dim, 'dim');
      needLen(x.length, total, 'x');
      needLen(dy.length, total, 'dy');
      needLen(dx.length, total, 'dx');
      needLen(mean.length, rows, 'mean');
      needLen(rstd.length, rows, 'rstd');
      if (w) needLen(w.length, dim, 'w');
      if (dw) needLen(dw.length, dim, 'dw');
      if (db) needLen(db.length, dim, 'db');
      arena.reset(3 * regionBytes(total, 4) + 2 * regionBytes(rows, 4) + optBytes(w, dim) + optBytes(dw, dim) + optBytes(db, dim));
      const px = arena.putF32(x as Float32Array, 0, total), pw = putOptional(w as Float32Array | null, dim);
      const pm = arena.putF32(mean as Float32Array, 0, rows), pr = arena.putF32(rstd as Float32Array, 0, rows);
      const pdy = arena.putF32(dy as Float32Array, 0, total), pdx = arena.take(total, 4);
      const pdw = dw ? arena.take(dim, 4) : 0, pdb = db ? arena.take(dim, 4) : 0;
      ex.ft_layer_norm_backward(px, pw, pm, pr, pdy, pdx, pdw, pdb, rows, dim);
      arena.refresh();
      arena.getF32(pdx, dx as Float32Array, 0, total);
      if (dw) arena.getF32(pdw, dw as Float32Array, 0, dim);
      if (db) arena.getF32(pdb, db as Float32Array, 0, dim);
    },

    rmsNormForward(x, w, y, rstd, rows, dim, eps): void {
      if (!allF32(x, w, y, rstd)) return jsKernels.rmsNormForward(x, w, y, rstd, rows, dim, eps);
      const total = count(rows, 'rows') * count(dim, 'dim');
      needLen(x.length, total, 'x');
      needLen(y.length, total, 'y');
      if (w) needLen(w.length, dim, 'w');
      needLen(rstd.length, rows, 'rstd');
      if (rows === 0) return;
      arena.reset(2 * regionBytes(total, 4) + optBytes(w, dim) + regionBytes(rows, 4));
      const px = arena.putF32(x as Float32Array, 0, total), pw = putOptional(w as Float32Array | null, dim);
      const py = arena.take(total, 4), pr = arena.take(rows, 4);
      ex.ft_rms_norm_forward(px, pw, py, pr, rows, dim, eps);
      arena.refresh();
      arena.getF32(py, y as Float32Array, 0, total);
      arena.getF32(pr, rstd as Float32Array, 0, rows);
    },

    rmsNormBackward(x, w, rstd, dy, dx, dw, rows, dim): void {
      if (!allF32(x, w, rstd, dy, dx, dw)) return jsKernels.rmsNormBackward(x, w, rstd, dy, dx, dw, rows, dim);
      const total = count(rows, 'rows') * count(dim, 'dim');
      needLen(x.length, total, 'x');
      needLen(dy.length, total, 'dy');
      needLen(dx.length, total, 'dx');
      needLen(rstd.length, rows, 'rstd');
      if (w) needLen(w.length, dim, 'w');
      if (dw) needLen(dw.length, dim, 'dw');
      arena.reset(3 * regionBytes(total, 4) + regionBytes(rows, 4) + optBytes(w, dim) + optBytes(dw, dim));
      const px = arena.putF32(x as Float32Array, 0, total), pw = putOptional(w as Float32Array | null, dim);
      const pr = arena.putF32(rstd as Float32Array, 0, rows), pdy = arena.putF32(dy as Float32Array, 0, total);
      const pdx = arena.take(total, 4), pdw = dw ? arena.take(dim, 4) : 0;
      ex.ft_rms_norm_backward(px, pw, pr, pdy, pdx, pdw, rows, dim);
      arena.refresh();
      arena.getF32(pdx, dx as Float32Array, 0, total);
      if (dw) arena.getF32(pdw, dw as Float32Array, 0, dim);
    },

    groupNormForward(x, w, b, y, mean, rstd, n, channels, spatial, groups, eps): void {
      if (!allF32(x, w, b, y, mean, rstd)) return jsKernels.groupNormForward(x, w, b, y, mean, rstd, n, channels, spatial, groups, eps);
      groupArgs(channels, groups);
      const total = count(n, 'n') * count(channels, 'channels') * count(spatial, 'spatial'), stats = n * count(groups, 'groups');
      needLen(x.length, total, 'x');
      needLen(y.length, total, 'y');
      if (w) needLen(w.length, channels, 'w');
      if (b) needLen(b.length, channels, 'b');
      needLen(mean.length, stats, 'mean');
      needLen(rstd.length, stats, 'rstd');
      if (stats === 0) return;
      arena.reset(2 * regionBytes(total, 4) + optBytes(w, channels) + optBytes(b, channels) + 2 * regionBytes(stats, 4));
      const px = arena.putF32(x as Float32Array, 0, total);
      const pw = putOptional(w as Float32Array | null, channels), pb = putOptional(b as Float32Array | null, channels);
      const py = arena.take(total, 4), pm = arena.take(stats, 4), pr = arena.take(stats, 4);
      ex.ft_group_norm_forward(px, pw, pb, py, pm, pr, n, channels, spatial, groups, eps);
      arena.refresh();
      arena.getF32(py, y as Float32Array, 0, total);
      arena.getF32(pm, mean as Float32Array, 0, stats);
      arena.getF32(pr, rstd as Float32Array, 0, stats);
    },

    groupNormBackward(x, w, mean, rstd, dy, dx, dw, db, n, channels, spatial, groups): void {
      if (!allF32(x, w, mean, rstd, dy, dx, dw, db)) {
        return jsKernels.groupNormBackward(x, w, mean, rstd, dy, dx, dw, db, n, channels, spatial, groups);
      }
      groupArgs(channels, groups);
      const total = count(n, 'n') * count(channels, 'channels') * count(spatial, 'spatial'), stats = n * count(groups, 'groups');
      needLen(x.length, total, 'x');
      needLen(dy.length, total, 'dy');
      needLen(dx.length, total, 'dx');
      if (w) needLen(w.length, channels, 'w');
      if (dw) needLen(dw.length, channels, 'dw');
      if (db) needLen(db.length, channels, 'db');
      needLen(mean.length, stats, 'mean');
      needLen(rstd.length, stats, 'rstd');
      arena.reset(3 * regionBytes(total, 4) + 2 * regionBytes(stats, 4) + optBytes(w, channels) + optBytes(dw, channels) +
        optBytes(db, channels));
      const px = arena.putF32(x as Float32Array, 0, total), pw = putOptional(w as Float32Array | null, channels);
      const pm = arena.putF32(mean as Float32Array, 0, stats), pr = arena.putF32(rstd as Float32Array, 0, stats);
      const pdy = arena.putF32(dy as Float32Array, 0, total), pdx = arena.take(total, 4);
      const pdw = dw ? arena.take(channels, 4) : 0, pdb = db ? arena.take(channels, 4) : 0;
      ex.ft_group_norm_backward(px, pw, pm, pr, pdy, pdx, pdw, pdb, n, channels, spatial, groups);
      arena.refresh();
      arena.getF32(pdx, dx as Float32Array, 0, total);
      if (dw) arena.getF32(pdw, dw as Float32Array, 0, channels);
      if (db) arena.getF32(pdb, db as Float32Array, 0, channels);
    },

    im2col(x: FArr, xOffset: number, cols: FArr, g: Conv2dGeom): void {
      if (!(x instanceof Float32Array) || !(cols instanceof Float32Array)) return jsKernels.im2col(x, xOffset, cols, g);
      const xn = g.channels * g.height * g.width, cn = g.channels * g.kh * g.kw * g.outH * g.outW;
      count(xOffset, 'xOffset');
      needLen(x.length, xOffset + xn, 'x');
      needLen(cols.length, cn, 'cols');
      if (cn === 0) return;
      arena.reset(regionBytes(xn, 4) + regionBytes(cn, 4) + regionBytes(11, 4));
      const pg = convGeom(g), px = arena.putF32(x, xOffset, xOffset + xn), pc = arena.take(cn, 4);
      ex.ft_im2col(px, pc, pg);
      arena.refresh();
      arena.getF32(pc, cols, 0, cn);
    },

    col2im(cols: FArr, dx: FArr, dxOffset: number, g: Conv2dGeom): void {
      if (!(cols instanceof Float32Array) || !(dx instanceof Float32Array)) return jsKernels.col2im(cols, dx, dxOffset, g);
      const xn = g.channels * g.height * g.width, cn = g.channels * g.kh * g.kw * g.outH * g.outW;
      count(dxOffset, 'dxOffset');
      needLen(dx.length, dxOffset + xn, 'dx');
      needLen(cols.length, cn, 'cols');
      if (xn === 0) return;
      arena.reset(regionBytes(xn, 4) + regionBytes(cn, 4) + regionBytes(11, 4));
      const pg = convGeom(g), pc = arena.putF32(cols, 0, cn), pdx = arena.putF32(dx, dxOffset, dxOffset + xn);
      ex.ft_col2im(pc, pdx, pg);
      arena.refresh();
      arena.getF32(pdx, dx, dxOffset, dxOffset + xn);
    },

    permute(x: FArr | Int32Array, y: FArr | Int32Array, shape: number[], perm: number[]): void {
      if (x instanceof Float64Array || y instanceof Float64Array) return jsKernels.permute(x, y, shape, perm);
      const nd = shape.length;
      if (nd > MAX_DIMS || perm.length !== nd) throw new RangeError('permute: bad dims');
      const seen = new Array<boolean>(nd).fill(false);
      let total = 1;
      for (let i = 0; i < nd; i++) {
        total *= count(shape[i], 'shape');
        const p = count(perm[i], 'perm');
        if (p >= nd || seen[p]) throw new RangeError('permute: bad perm');
        seen[p] = true;
      }
      if (total === 0) return;
      needLen(x.length, total, 'x');
      needLen(y.length, total, 'y');
      arena.reset(2 * regionBytes(total, 4) + regionBytes(2 * nd, 4));
      // 4-byte words are moved as they are: each array goes through the view of its own type (no conversion)
      const px = x instanceof Float32Array ? arena.putF32(x, 0, total) : arena.putI32(x, 0, total);
      const py = arena.take(total, 4), pd = arena.take(2 * nd, 4);
      arena.i32.set(shape, pd >>> 2);
      arena.i32.set(perm, (pd >>> 2) + nd);
      ex.ft_permute(px, py, nd, pd);
      arena.refresh();
      if (y instanceof Float32Array) arena.getF32(py, y, 0, total);
      else arena.getI32(py, y, 0, total);
    },

    adamw(a: AdamWArgs): void {
      const n = a.param.length;
      needLen(a.grad.length, n, 'grad');
      needLen(a.m.length, n, 'm');
      needLen(a.v.length, n, 'v');
      if (n === 0) return;
      arena.reset(4 * regionBytes(n, 4));
      const pp = arena.putF32(a.param, 0, n), pg = arena.putF32(a.grad, 0, n);
      const pm = arena.putF32(a.m, 0, n), pv = arena.putF32(a.v, 0, n);
      ex.ft_adamw(pp, pg, pm, pv, n, a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, a.biasCorrection1, a.biasCorrection2);
      arena.refresh();
      arena.getF32(pp, a.param, 0, n);
      arena.getF32(pm, a.m, 0, n);
      arena.getF32(pv, a.v, 0, n);
    },
  };
}
