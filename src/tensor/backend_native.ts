// Loads the C++ SIMD kernels (native/build/Release/flextok_native.node) and adapts them to the `Kernels`
// interface: float32 calls go to the addon (TypedArrays are passed as-is, no copies), float64 calls to the JS kernels.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
} from './kernels.js';
import { jsKernels } from './kernels_js/index.js';

/** The raw functions the addon exports (see native/src/addon.cc for argument layouts). */
export interface NativeAddon {
  /** params: [transA, transB, m, n, k, alpha, beta, aOffset, lda, strideA, bOffset, ldb, strideB, cOffset, ldc, strideC, batch] */
  gemm(a: Float32Array, b: Float32Array, c: Float32Array, params: Float64Array): void;
  gemmBf16(a: Float32Array, b: Float32Array, c: Float32Array, params: Float64Array): void;
  /** params: [batch, heads, lq, lk, headDim, scale, maskBatchStride, causal] */
  attentionForward(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array,
    mask: Uint8Array | null, params: Float64Array): void;
  attentionBackward(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array,
    dOut: Float32Array, dq: Float32Array, dk: Float32Array, dv: Float32Array, mask: Uint8Array | null, params: Float64Array): void;
  unary(op: number, x: Float32Array, y: Float32Array, n: number): void;
  unaryBackward(op: number, x: Float32Array, y: Float32Array, dy: Float32Array, dx: Float32Array, n: number, accumulate: boolean): void;
  /** dims: [ndim, shape..., aStrides..., bStrides...] */
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, dims: Float64Array): void;
  sum(x: Float32Array, out: Float32Array, outer: number, red: number, inner: number): void;
  max(x: Float32Array, out: Float32Array, argmax: Int32Array, outer: number, red: number, inner: number): void;
  softmaxForward(x: Float32Array, y: Float32Array, rows: number, dim: number): void;
  softmaxBackward(y: Float32Array, dy: Float32Array, dx: Float32Array, rows: number, dim: number): void;
  logSoftmaxForward(x: Float32Array, y: Float32Array, rows: number, dim: number): void;
  logSoftmaxBackward(y: Float32Array, dy: Float32Array, dx: Float32Array, rows: number, dim: number): void;
  segmentFmaForward(x: Float32Array, a: Float32Array, c: Float32Array, seg: Int32Array, out: Float32Array, rows: number,
    dim: number, segments: number, cPerRow: boolean): void;
  segmentFmaBackward(x: Float32Array, a: Float32Array, seg: Int32Array, dy: Float32Array, dx: Float32Array | null,
    da: Float32Array | null, dc: Float32Array | null, rows: number, dim: number, segments: number): void;
  layerNormForward(x: Float32Array, w: Float32Array | null, b: Float32Array | null, y: Float32Array, mean: Float32Array,
    rstd: Float32Array, rows: number, dim: number, eps: number): void;
  layerNormBackward(x: Float32Array, w: Float32Array | null, mean: Float32Array, rstd: Float32Array, dy: Float32Array,
    dx: Float32Array, dw: Float32Array | null, db: Float32Array | null, rows: number, dim: number): void;
  rmsNormForward(x: Float32Array, w: Float32Array | null, y: Float32Array, rstd: Float32Array, rows: number, dim: number, eps: number): void;
  rmsNormBackward(x: Float32Array, w: Float32Array | null, rstd: Float32Array, dy: Float32Array, dx: Float32Array,
    dw: Float32Array | null, rows: number, dim: number): void;
  groupNormForward(x: Float32Array, w: Float32Array | null, b: Float32Array | null, y: Float32Array, mean: Float32Array,
    rstd: Float32Array, n: number, channels: number, spatial: number, groups: number, eps: number): void;
  groupNormBackward(x: Float32Array, w: Float32Array | null, mean: Float32Array, rstd: Float32Array, dy: Float32Array,
    dx: Float32Array, dw: Float32Array | null, db: Float32Array | null, n: number, channels: number, spatial: number, groups: number): void;
  /** geom: [channels, height, width, kh, kw, strideH, strideW, padTop, padLeft, outH, outW] */
  im2col(x: Float32Array, xOffset: number, cols: Float32Array, geom: Float64Array): void;
  col2im(cols: Float32Array, dx: Float32Array, dxOffset: number, geom: Float64Array): void;
  /** dims: [ndim, shape..., perm...]; any 4-byte element arrays */
  permute(x: Float32Array | Int32Array, y: Float32Array | Int32Array, dims: Float64Array): void;
  /** params: [lr, beta1, beta2, eps, weightDecay, biasCorrection1, biasCorrection2] */
  adamw(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, params: Float64Array): void;
  setThreads(n: number): number;
  getThreads(): number;
  availableCores(): number;
  isa(): { active: string; cpu: string; bf16: boolean; cpuBf16: boolean };
  /** Lowers the instruction set the kernels use (for tests); never above what the CPU has. */
  setIsa(name: 'avx512' | 'avx2' | 'scalar', allowBf16?: boolean): { active: string; cpu: string; bf16: boolean; cpuBf16: boolean };
  /** GFLOP/s of register-resident FMA chains on `threads` threads (0 = all) for about `seconds`. */
  fmaPeak(seconds: number, threads: number, bf16?: boolean): number;
}

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'flextok_native.node');

/** Where the addon should be: <repo>/native/... seen from src/tensor/ (tsx) or dist/src/tensor/ (compiled). */
function addonCandidates(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // FLEXTOK_NATIVE_ADDON names the one file to load (another build; tests use it to simulate a missing one)
  if (process.env.FLEXTOK_NATIVE_ADDON) return [path.resolve(process.env.FLEXTOK_NATIVE_ADDON)];
  const out: string[] = [];
  out.push(path.resolve(here, '..', '..', ADDON_RELATIVE));
  out.push(path.resolve(here, '..', '..', '..', ADDON_RELATIVE));
  return out;
}

let addonState: NativeAddon | null | undefined;
let addonError: string | null = null;

/** The loaded addon, or null when it is not built (or fails to load). Loaded once. */
export function nativeAddon(): NativeAddon | null {
  if (addonState !== undefined) return addonState;
  addonState = null;
  const require = createRequire(import.meta.url);
  for (const file of addonCandidates()) {
    if (!existsSync(file)) continue;
    try {
      addonState = require(file) as NativeAddon;
      addonError = null;
      break;
    } catch (e) {
      addonError = `${file}: ${(e as Error).message}`;
    }
  }
  return addonState;
}

/** Why the addon did not load (null when it loaded or was simply absent). */
export function nativeLoadError(): string | null {
  nativeAddon();
  return addonError;
}

/** Thread count of the native pool (FLEXTOK_THREADS sets the initial value). */
export const nativeThreads = {
  get(): number {
    return nativeAddon()?.getThreads() ?? 1;
  },
  /** Resizes the pool; 0 = all available cores. Returns the new count. */
  set(n: number): number {
    const a = nativeAddon();
    return a ? a.setThreads(Math.max(0, Math.floor(n))) : 1;
  },
};

const UNARY_INDEX: Record<UnaryOp, number> = {
  neg: 0, abs: 1, exp: 2, log: 3, sqrt: 4, rsqrt: 5, tanh: 6, atanh: 7, sigmoid: 8,
  silu: 9, gelu_tanh: 10, gelu_erf: 11, relu: 12, sin: 13, cos: 14, square: 15, recip: 16,
};
const BINARY_INDEX: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3, pow: 4, max: 5, min: 6 };

const isF32 = (x: FArr | null | undefined): x is Float32Array => x instanceof Float32Array;
const allF32 = (...xs: (FArr | null | undefined)[]): boolean => xs.every((x) => x == null || x instanceof Float32Array);

function makeKernels(n: NativeAddon): Kernels {
  // Parameter blocks reused across calls (calls are synchronous).
  const gemmParams = new Float64Array(17);
  const attnParams = new Float64Array(8);
  const geomParams = new Float64Array(11);
  const adamParams = new Float64Array(7);
  let dimsParams = new Float64Array(1 + 3 * 8);

  function dims(len: number): Float64Array {
    if (dimsParams.length < len) dimsParams = new Float64Array(len);
    return dimsParams;
  }

  function fillGemm(g: GemmArgs): Float64Array {
    const p = gemmParams;
    p[0] = g.transA ? 1 : 0;
    p[1] = g.transB ? 1 : 0;
    p[2] = g.m;
    p[3] = g.n;
    p[4] = g.k;
    p[5] = g.alpha;
    p[6] = g.beta;
    p[7] = g.aOffset;
    p[8] = g.lda;
    p[9] = g.strideA;
    p[10] = g.bOffset;
    p[11] = g.ldb;
    p[12] = g.strideB;
    p[13] = g.cOffset;
    p[14] = g.ldc;
    p[15] = g.strideC;
    p[16] = g.batch;
    return p;
  }

  function fillAttention(a: AttentionArgs): Float64Array {
    const p = attnParams;
    p[0] = a.batch;
    p[1] = a.heads;
    p[2] = a.lq;
    p[3] = a.lk;
    p[4] = a.headDim;
    p[5] = a.scale;
    p[6] = a.maskBatchStride;
    p[7] = a.causal ? 1 : 0;
    return p;
  }

  function fillGeom(g: Conv2dGeom): Float64Array {
    const p = geomParams;
    p[0] = g.channels;
    p[1] = g.height;
    p[2] = g.width;
    p[3] = g.kh;
    p[4] = g.kw;
    p[5] = g.strideH;
    p[6] = g.strideW;
    p[7] = g.padTop;
    p[8] = g.padLeft;
    p[9] = g.outH;
    p[10] = g.outW;
    return p;
  }

  return {
    name: 'native',

    gemm(args: GemmArgs): void {
      if (!allF32(args.a, args.b, args.c)) return jsKernels.gemm(args);
      n.gemm(args.a as Float32Array, args.b as Float32Array, args.c as Float32Array, fillGemm(args));
    },

    gemmBf16(args: GemmArgs): void {
      if (!allF32(args.a, args.b, args.c)) return jsKernels.gemmBf16(args);
      n.gemmBf16(args.a as Float32Array, args.b as Float32Array, args.c as Float32Array, fillGemm(args));
    },

    attentionForward(a: AttentionArgs): void {
      if (!allF32(a.q, a.k, a.v, a.out, a.lse)) return jsKernels.attentionForward(a);
      n.attentionForward(a.q as Float32Array, a.k as Float32Array, a.v as Float32Array, a.out as Float32Array,
        a.lse as Float32Array, a.mask, fillAttention(a));
    },

    attentionBackward(a: AttentionBackwardArgs): void {
      if (!allF32(a.q, a.k, a.v, a.out, a.lse, a.dOut, a.dq, a.dk, a.dv)) return jsKernels.attentionBackward(a);
      n.attentionBackward(a.q as Float32Array, a.k as Float32Array, a.v as Float32Array, a.out as Float32Array,
        a.lse as Float32Array, a.dOut as Float32Array, a.dq as Float32Array, a.dk as Float32Array, a.dv as Float32Array,
        a.mask, fillAttention(a));
    },

    unary(op: UnaryOp, x: FArr, y: FArr, count: number): void {
      if (!isF32(x) || !isF32(y)) return jsKernels.unary(op, x, y, count);
      n.unary(UNARY_INDEX[op], x, y, count);
    },

    unaryBackward(op: UnaryOp, x: FArr, y: FArr, dy: FArr, dx: FArr, count: number, accumulate: boolean): void {
      if (!allF32(x, y, dy, dx)) return jsKernels.unaryBackward(op, x, y, dy, dx, count, accumulate);
      n.unaryBackward(UNARY_INDEX[op], x as Float32Array, y as Float32Array, dy as Float32Array, dx as Float32Array,
        count, accumulate);
    },

    binary(args: BroadcastArgs): void {
      if (!allF32(args.a, args.b, args.out)) return jsKernels.binary(args);
      const nd = args.shape.length;
      const d = dims(1 + 3 * nd);
      d[0] = nd;
      for (let i = 0; i < nd; i++) {
        d[1 + i] = args.shape[i];
        d[1 + nd + i] = args.aStrides[i];
        d[1 + 2 * nd + i] = args.bStrides[i];
      }
      n.binary(BINARY_INDEX[args.op], args.a as Float32Array, args.b as Float32Array, args.out as Float32Array, d);
    },

    sum(x: FArr, out: FArr, outer: number, red: number, inner: number): void {
      if (!isF32(x) || !isF32(out)) return jsKernels.sum(x, out, outer, red, inner);
      n.sum(x, out, outer, red, inner);
    },

    max(x: FArr, out: FArr, argmax: Int32Array, outer: number, red: number, inner: number): void {
      if (!isF32(x) || !isF32(out)) return jsKernels.max(x, out, argmax, outer, red, inner);
      n.max(x, out, argmax, outer, red, inner);
    },

    softmaxForward(x: FArr, y: FArr, rows: number, dim: number): void {
      if (!isF32(x) || !isF32(y)) return jsKernels.softmaxForward(x, y, rows, dim);
      n.softmaxForward(x, y, rows, dim);
    },

    softmaxBackward(y: FArr, dy: FArr, dx: FArr, rows: number, dim: number): void {
      if (!allF32(y, dy, dx)) return jsKernels.softmaxBackward(y, dy, dx, rows, dim);
      n.softmaxBackward(y as Float32Array, dy as Float32Array, dx as Float32Array, rows, dim);
    },

    logSoftmaxForward(x: FArr, y: FArr, rows: number, dim: number): void {
      if (!isF32(x) || !isF32(y)) return jsKernels.logSoftmaxForward(x, y, rows, dim);
      n.logSoftmaxForward(x, y, rows, dim);
    },

    logSoftmaxBackward(y: FArr, dy: FArr, dx: FArr, rows: number, dim: number): void {
      if (!allF32(y, dy, dx)) return jsKernels.logSoftmaxBackward(y, dy, dx, rows, dim);
      n.logSoftmaxBackward(y as Float32Array, dy as Float32Array, dx as Float32Array, rows, dim);
    },

    segmentFmaForward(x, a, c, seg, out, rows, dim, segments, cPerRow): void {
      if (!allF32(x, a, c, out)) return jsKernels.segmentFmaForward(x, a, c, seg, out, rows, dim, segments, cPerRow);
      n.segmentFmaForward(x as Float32Array, a as Float32Array, c as Float32Array, seg, out as Float32Array, rows, dim, segments, cPerRow);
    },

    segmentFmaBackward(x, a, seg, dy, dx, da, dc, rows, dim, segments): void {
      if (!allF32(x, a, dy, dx, da, dc)) return jsKernels.segmentFmaBackward(x, a, seg, dy, dx, da, dc, rows, dim, segments);
      n.segmentFmaBackward(x as Float32Array, a as Float32Array, seg, dy as Float32Array, dx as Float32Array | null,
        da as Float32Array | null, dc as Float32Array | null, rows, dim, segments);
    },

    layerNormForward(x, w, b, y, mean, rstd, rows, dim, eps): void {
      if (!allF32(x, w, b, y, mean, rstd)) return jsKernels.layerNormForward(x, w, b, y, mean, rstd, rows, dim, eps);
      n.layerNormForward(x as Float32Array, w as Float32Array | null, b as Float32Array | null, y as Float32Array,
        mean as Float32Array, rstd as Float32Array, rows, dim, eps);
    },

    layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, dim): void {
      if (!allF32(x, w, mean, rstd, dy, dx, dw, db)) {
        return jsKernels.layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, dim);
      }
      n.layerNormBackward(x as Float32Array, w as Float32Array | null, mean as Float32Array, rstd as Float32Array,
        dy as Float32Array, dx as Float32Array, dw as Float32Array | null, db as Float32Array | null, rows, dim);
    },

    rmsNormForward(x, w, y, rstd, rows, dim, eps): void {
      if (!allF32(x, w, y, rstd)) return jsKernels.rmsNormForward(x, w, y, rstd, rows, dim, eps);
      n.rmsNormForward(x as Float32Array, w as Float32Array | null, y as Float32Array, rstd as Float32Array, rows, dim, eps);
    },

    rmsNormBackward(x, w, rstd, dy, dx, dw, rows, dim): void {
      if (!allF32(x, w, rstd, dy, dx, dw)) return jsKernels.rmsNormBackward(x, w, rstd, dy, dx, dw, rows, dim);
      n.rmsNormBackward(x as Float32Array, w as Float32Array | null, rstd as Float32Array, dy as Float32Array,
        dx as Float32Array, dw as Float32Array | null, rows, dim);
    },

    groupNormForward(x, w, b, y, mean, rstd, count, channels, spatial, groups, eps): void {
      if (!allF32(x, w, b, y, mean, rstd)) {
        return jsKernels.groupNormForward(x, w, b, y, mean, rstd, count, channels, spatial, groups, eps);
      }
      n.groupNormForward(x as Float32Array, w as Float32Array | null, b as Float32Array | null, y as Float32Array,
        mean as Float32Array, rstd as Float32Array, count, channels, spatial, groups, eps);
    },

    groupNormBackward(x, w, mean, rstd, dy, dx, dw, db, count, channels, spatial, groups): void {
      if (!allF32(x, w, mean, rstd, dy, dx, dw, db)) {
        return jsKernels.groupNormBackward(x, w, mean, rstd, dy, dx, dw, db, count, channels, spatial, groups);
      }
      n.groupNormBackward(x as Float32Array, w as Float32Array | null, mean as Float32Array, rstd as Float32Array,
        dy as Float32Array, dx as Float32Array, dw as Float32Array | null, db as Float32Array | null,
        count, channels, spatial, groups);
    },

    im2col(x: FArr, xOffset: number, cols: FArr, g: Conv2dGeom): void {
      if (!isF32(x) || !isF32(cols)) return jsKernels.im2col(x, xOffset, cols, g);
      n.im2col(x, xOffset, cols, fillGeom(g));
    },

    col2im(cols: FArr, dx: FArr, dxOffset: number, g: Conv2dGeom): void {
      if (!isF32(cols) || !isF32(dx)) return jsKernels.col2im(cols, dx, dxOffset, g);
      n.col2im(cols, dx, dxOffset, fillGeom(g));
    },

    permute(x: FArr | Int32Array, y: FArr | Int32Array, shape: number[], perm: number[]): void {
      const ok = (a: FArr | Int32Array): boolean => a instanceof Float32Array || a instanceof Int32Array;
      if (!ok(x) || !ok(y)) return jsKernels.permute(x, y, shape, perm);
      const nd = shape.length;
      const d = dims(1 + 2 * nd);
      d[0] = nd;
      for (let i = 0; i < nd; i++) {
        d[1 + i] = shape[i];
        d[1 + nd + i] = perm[i];
      }
      n.permute(x as Float32Array | Int32Array, y as Float32Array | Int32Array, d);
    },

    adamw(a: AdamWArgs): void {
      const p = adamParams;
      p[0] = a.lr;
      p[1] = a.beta1;
      p[2] = a.beta2;
      p[3] = a.eps;
      p[4] = a.weightDecay;
      p[5] = a.biasCorrection1;
      p[6] = a.biasCorrection2;
      n.adamw(a.param, a.grad, a.m, a.v, p);
    },
  };
}

let kernelsState: Kernels | null | undefined;

/** The native `Kernels`, or null (never throws) when the addon is not built or cannot load. */
export function loadNativeKernels(): Kernels | null {
  if (kernelsState !== undefined) return kernelsState;
  const addon = nativeAddon();
  kernelsState = addon ? makeKernels(addon) : null;
  return kernelsState;
}
