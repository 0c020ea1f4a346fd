// Tests of the native C++ kernels (src/tensor/backend_native.ts → native/): every kernel against a naive
// float64 loop written here, on odd sizes that hit edge tiles, on every instruction set the CPU has.
// A missing or unloadable addon FAILS the first test (the rest skip); only an explicit TypeScript-only run
// (FLEXTOK_BACKEND=js) skips them all.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { jsOnlyRequested, nativeUnavailableReason } from '../src/tensor/backend.js';
import { loadNativeKernels, nativeAddon, nativeThreads } from '../src/tensor/backend_native.js';
import type { AttentionArgs, BinaryOp, Conv2dGeom, GemmArgs, Kernels, UnaryOp } from '../src/tensor/kernels.js';
import { jsKernels } from '../src/tensor/kernels_js/index.js';
import { mulberry32, uniformArrays } from './helpers/random.js';

const K = loadNativeKernels() as Kernels;
const addon = nativeAddon();
const missing = nativeUnavailableReason();
const skip = missing === null ? false : jsOnlyRequested() ? 'FLEXTOK_BACKEND=js (TypeScript-only run) and no native addon' : 'native addon unavailable';

test('the native addon is built and loads', { skip: missing !== null && jsOnlyRequested() ? skip : false }, () => {
  assert.equal(missing, null, `${missing}. Tests of the native kernels need it; only FLEXTOK_BACKEND=js skips them.`);
});

/** Instruction sets to run each kernel on (the CPU's best and everything below it). */
function isas(): Array<'avx512' | 'avx2' | 'scalar'> {
  const cpu = addon!.isa().cpu;
  if (cpu === 'avx512') return ['avx512', 'avx2', 'scalar'];
  if (cpu === 'avx2') return ['avx2', 'scalar'];
  return ['scalar'];
}
function onEachIsa(fn: (isa: string) => void): void {
  try {
    for (const isa of isas()) {
      addon!.setIsa(isa);
      fn(isa);
    }
  } finally {
    addon!.setIsa('avx512', true);
  }
}

// ---- helpers -------------------------------------------------------------------------------

const rand = mulberry32(12345);
const randn = uniformArrays(rand);

/** Asserts |actual - expected| <= atol + rtol |expected| elementwise (NaN must match NaN). */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number, label: string): void {
  assert.ok(actual.length >= expected.length, `${label}: length`);
  let worst = 0, worstI = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e)) {
      assert.ok(Number.isNaN(a), `${label}[${i}]: expected NaN, got ${a}`);
      continue;
    }
    if (!Number.isFinite(e)) {
      assert.equal(a, e, `${label}[${i}]`);
      continue;
    }
    const err = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(err <= worst)) { worst = Number.isNaN(err) ? Infinity : err; worstI = i; }
  }
  assert.ok(worstI < 0, `${label}: element ${worstI}: got ${actual[worstI]}, expected ${expected[worstI]}`);
}

const maxAbs = (x: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i])) m = Math.max(m, Math.abs(x[i]));
  return m;
};

/** bfloat16 rounding (round to nearest even) of every element, as float. */
function bf16All(x: Float32Array): Float32Array {
  const out = Float32Array.from(x);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < u.length; i++) {
    const bits = u[i];
    if ((bits & 0x7fffffff) > 0x7f800000) continue;
    u[i] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
  }
  return out;
}

// ---- GEMM ----------------------------------------------------------------------------------

interface GemmCase { m: number; n: number; k: number; transA: boolean; transB: boolean; batch: number;
  strideA0?: boolean; strideB0?: boolean; alpha: number; beta: number }

/** Runs one gemm case on the native kernels and checks it against float64 (optionally on bf16-rounded inputs). */
function checkGemm(c: GemmCase, bf: boolean, label: string): void {
  const { m, n, k, transA, transB, batch, alpha, beta } = c;
  const lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 1, ldc = n + 2;
  const aRows = transA ? k : m, bRows = transB ? n : k;
  const strideA = c.strideA0 ? 0 : aRows * lda + 5, strideB = c.strideB0 ? 0 : bRows * ldb + 7, strideC = m * ldc + 1;
  const aOffset = 4, bOffset = 2, cOffset = 3;
  const a = randn(aOffset + (batch - 1) * strideA + aRows * lda);
  const b = randn(bOffset + (batch - 1) * strideB + bRows * ldb);
  const cArr = randn(cOffset + (batch - 1) * strideC + m * ldc);
  if (beta === 0) cArr.fill(NaN); // beta = 0 must ignore old contents
  const c0 = Float64Array.from(cArr);
  const expected: number[] = [], bound: number[] = [];
  const ar = bf ? bf16All(a) : a, br = bf ? bf16All(b) : b;
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0, sa = 0;
        for (let p = 0; p < k; p++) {
          const av = ar[aOffset + bi * strideA + (transA ? p * lda + i : i * lda + p)];
          const bv = br[bOffset + bi * strideB + (transB ? j * ldb + p : p * ldb + j)];
          s += av * bv;
          sa += Math.abs(av * bv);
        }
        const ci = cOffset + bi * strideC + i * ldc + j;
        const old = beta === 0 ? 0 : beta * c0[ci];
        expected.push(alpha * s + old);
        bound.push(Math.abs(alpha) * sa + Math.abs(old));
      }
    }
  }
  const args: GemmArgs = { transA, transB, m, n, k, alpha, beta, a, aOffset, lda, strideA, b, bOffset, ldb, strideB,
    c: cArr, cOffset, ldc, strideC, batch };
  (bf ? K.gemmBf16 : K.gemm)(args);
  let e = 0;
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++, e++) {
        const got = cArr[cOffset + bi * strideC + i * ldc + j];
        const tol = 2e-6 * Math.sqrt(k + 1) * bound[e] + 1e-30;
        if (!(Math.abs(got - expected[e]) <= tol)) assert.fail(`${label} b${bi} (${i},${j}): got ${got}, expected ${expected[e]} (tol ${tol})`);
      }
    }
  }
  // padding between rows of C must be untouched
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < m; i++) {
      for (let j = n; j < ldc && i * ldc + j < m * ldc; j++) {
        const ci = cOffset + bi * strideC + i * ldc + j;
        if (!(Object.is(cArr[ci], c0[ci]) || (Number.isNaN(cArr[ci]) && Number.isNaN(c0[ci])))) assert.fail(`${label}: wrote padding`);
      }
    }
  }
}

const gemmShapes: Array<[number, number, number]> = [
  [1, 1, 1], [3, 17, 5], [17, 65, 130], [65, 3, 1], [15, 33, 257], [130, 31, 17], [29, 70, 520], [6, 300, 70], [2, 37, 513],
];

test('gemm: all transposes, edge tiles, alpha/beta, on every ISA', { skip }, () => {
  onEachIsa((isa) => {
    for (const [m, n, k] of gemmShapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const beta = (m + n) % 3 === 0 ? 0 : 0.5;
          checkGemm({ m, n, k, transA, transB, batch: 1, alpha: 1.5, beta }, false, `${isa} ${m}x${n}x${k} tA=${transA} tB=${transB}`);
        }
      }
    }
  });
});

test('gemm: batches with strides, broadcast (stride 0) operands, offsets, k = 0', { skip }, () => {
  onEachIsa((isa) => {
    checkGemm({ m: 7, n: 19, k: 33, transA: false, transB: true, batch: 3, alpha: 1, beta: 0 }, false, `${isa} batch`);
    checkGemm({ m: 20, n: 40, k: 9, transA: true, transB: false, batch: 4, strideB0: true, alpha: -2, beta: 1 }, false, `${isa} bcastB`);
    checkGemm({ m: 33, n: 5, k: 64, transA: false, transB: false, batch: 5, strideA0: true, alpha: 0.5, beta: 0.25 }, false, `${isa} bcastA`);
    checkGemm({ m: 4, n: 6, k: 0, transA: false, transB: false, batch: 2, alpha: 1, beta: 0.5 }, false, `${isa} k=0`);
    checkGemm({ m: 4, n: 6, k: 0, transA: false, transB: false, batch: 1, alpha: 1, beta: 0 }, false, `${isa} k=0 beta=0`);
  });
});

test('gemm: large enough to run multithreaded (split M, split N, split batch)', { skip }, () => {
  const saved = nativeThreads.get();
  try {
    for (const t of [3, 2]) {
      nativeThreads.set(t);
      assert.equal(nativeThreads.get(), t);
      checkGemm({ m: 300, n: 70, k: 200, transA: false, transB: false, batch: 1, alpha: 1, beta: 0 }, false, `t${t} splitM`);
      checkGemm({ m: 40, n: 333, k: 150, transA: true, transB: true, batch: 1, alpha: 1, beta: 1 }, false, `t${t} splitN`);
      checkGemm({ m: 45, n: 50, k: 60, transA: false, transB: true, batch: 7, alpha: 1, beta: 0 }, false, `t${t} batch`);
      checkGemm({ m: 5, n: 1000, k: 300, transA: true, transB: true, batch: 1, alpha: 1, beta: 0 }, false, `t${t} tiny M, B^T`);
      checkGemm({ m: 3, n: 900, k: 200, transA: false, transB: false, batch: 1, alpha: 0.5, beta: 2 }, false, `t${t} tiny M`);
      checkGemm({ m: 20, n: 1600, k: 30, transA: false, transB: false, batch: 1, alpha: 1, beta: 0.5 }, false, `t${t} wide (several NC blocks)`);
      checkGemm({ m: 50, n: 100, k: 800, transA: true, transB: false, batch: 2, alpha: 2, beta: 1 }, false, `t${t} deep (several KC blocks)`);
      checkGemm({ m: 61, n: 75, k: 1100, transA: false, transB: true, batch: 1, alpha: 1, beta: 0.5 }, true, `t${t} bf16 deep`);
      checkGemm({ m: 200, n: 1700, k: 70, transA: true, transB: false, batch: 1, alpha: 1, beta: 0 }, true, `t${t} bf16 many panels`);
      checkGemm({ m: 250, n: 1650, k: 420, transA: false, transB: false, batch: 1, alpha: 1, beta: 0.5 }, false, `t${t} many panels, NC and KC blocks`);
    }
  } finally {
    nativeThreads.set(saved);
  }
});

test('gemmBf16: equals float64 GEMM of bf16-rounded inputs (native dpbf16 and emulated)', { skip }, () => {
  onEachIsa((isa) => {
    for (const [m, n, k] of [[3, 17, 5], [17, 65, 131], [130, 31, 17], [29, 70, 1030]] as Array<[number, number, number]>) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          checkGemm({ m, n, k, transA, transB, batch: 2, alpha: 0.75, beta: 0.5 }, true, `bf16 ${isa} ${m}x${n}x${k} ${transA} ${transB}`);
        }
      }
    }
  });
});

test('float64 calls go to the JS kernels', { skip }, () => {
  const a = Float64Array.from([1, 2, 3, 4]), b = Float64Array.from([5, 6, 7, 8]);
  const c1 = new Float64Array(4), c2 = new Float64Array(4);
  const args = (c: Float64Array): GemmArgs => ({ transA: false, transB: false, m: 2, n: 2, k: 2, alpha: 1, beta: 0, a, aOffset: 0,
    lda: 2, strideA: 0, b, bOffset: 0, ldb: 2, strideB: 0, c, cOffset: 0, ldc: 2, strideC: 0, batch: 1 });
  K.gemm(args(c1));
  jsKernels.gemm(args(c2));
  assert.deepEqual(Array.from(c1), Array.from(c2));
  const y = new Float64Array(3);
  K.unary('exp', Float64Array.from([0, 1, 2]), y, 3);
  assert.deepEqual(Array.from(y), [1, Math.exp(1), Math.exp(2)]);
});

test('bad arguments throw instead of crashing', { skip }, () => {
  const a = new Float32Array(4), b = new Float32Array(4), c = new Float32Array(3);
  assert.throws(() => K.gemm({ transA: false, transB: false, m: 2, n: 2, k: 2, alpha: 1, beta: 0, a, aOffset: 0, lda: 2,
    strideA: 0, b, bOffset: 0, ldb: 2, strideB: 0, c, cOffset: 0, ldc: 2, strideC: 0, batch: 1 }), RangeError);
  assert.throws(() => K.unary('exp', new Float32Array(2), new Float32Array(1), 2), RangeError);
  assert.throws(() => K.softmaxForward(new Float32Array(5), new Float32Array(6), 2, 3), RangeError);
});

// ---- attention -----------------------------------------------------------------------------

type MaskKind = 'none' | 'causal' | 'block' | 'registers' | 'perBatch' | 'emptyRow';

interface AttnCase { batch: number; heads: number; lq: number; lk: number; d: number; mask: MaskKind }

function buildMask(c: AttnCase): { mask: Uint8Array | null; stride: number; causal: boolean } {
  const { batch, lq, lk } = c;
  if (c.mask === 'none') return { mask: null, stride: 0, causal: false };
  if (c.mask === 'causal') return { mask: null, stride: 0, causal: true };
  if (c.mask === 'block') {
    // block-diagonal: blocks of 20 queries x 20 keys (scaled to lk)
    const m = new Uint8Array(lq * lk);
    for (let i = 0; i < lq; i++) for (let j = 0; j < lk; j++) m[i * lk + j] = Math.floor(i / 20) === Math.floor((j * lq) / lk / 20) ? 1 : 0;
    return { mask: m, stride: 0, causal: false };
  }
  if (c.mask === 'registers') {
    // first P tokens are patches (attend to patches); the rest are registers (patches + causal among registers)
    const P = Math.floor(lk / 2);
    const m = new Uint8Array(lq * lk);
    for (let i = 0; i < lq; i++) for (let j = 0; j < lk; j++) m[i * lk + j] = j < P || (i >= P && j <= i) ? 1 : 0;
    return { mask: m, stride: 0, causal: false };
  }
  if (c.mask === 'perBatch') {
    // each batch entry has its own key length (padding mask), combined with causal
    const m = new Uint8Array(batch * lq * lk);
    for (let b = 0; b < batch; b++) {
      const valid = Math.max(1, lk - 7 * (b + 1));
      for (let i = 0; i < lq; i++) for (let j = 0; j < lk; j++) m[b * lq * lk + i * lk + j] = j < valid ? 1 : 0;
    }
    return { mask: m, stride: lq * lk, causal: true };
  }
  // random mask with some rows fully masked
  const m = new Uint8Array(lq * lk);
  for (let i = 0; i < lq; i++) for (let j = 0; j < lk; j++) m[i * lk + j] = i % 5 === 2 ? 0 : rand() < 0.4 ? 1 : 0;
  return { mask: m, stride: 0, causal: false };
}

/** Float64 attention forward + backward reference. */
function attentionRef(c: AttnCase, q: Float32Array, k: Float32Array, v: Float32Array, dOut: Float32Array, scale: number,
  mask: Uint8Array | null, stride: number, causal: boolean) {
  const { batch: B, heads: H, lq, lk, d: D } = c;
  const out = new Float64Array(B * lq * H * D), lse = new Float64Array(B * H * lq);
  const dq = new Float64Array(B * lq * H * D), dk = new Float64Array(B * lk * H * D), dv = new Float64Array(B * lk * H * D);
  const qi = (b: number, i: number, h: number): number => ((b * lq + i) * H + h) * D;
  const ki = (b: number, j: number, h: number): number => ((b * lk + j) * H + h) * D;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < lq; i++) {
    const s = new Float64Array(lk), ok = new Uint8Array(lk);
    let mx = -Infinity;
    for (let j = 0; j < lk; j++) {
      ok[j] = (!causal || j <= i) && (!mask || mask[b * stride + i * lk + j] !== 0) ? 1 : 0;
      if (!ok[j]) continue;
      let dot = 0;
      for (let e = 0; e < D; e++) dot += q[qi(b, i, h) + e] * k[ki(b, j, h) + e];
      s[j] = dot * scale;
      mx = Math.max(mx, s[j]);
    }
    if (mx === -Infinity) { lse[(b * H + h) * lq + i] = -Infinity; continue; }
    let sum = 0;
    for (let j = 0; j < lk; j++) if (ok[j]) sum += Math.exp(s[j] - mx);
    const l = mx + Math.log(sum);
    lse[(b * H + h) * lq + i] = l;
    const p = new Float64Array(lk);
    for (let j = 0; j < lk; j++) if (ok[j]) p[j] = Math.exp(s[j] - l);
    for (let e = 0; e < D; e++) {
      let acc = 0;
      for (let j = 0; j < lk; j++) if (ok[j]) acc += p[j] * v[ki(b, j, h) + e];
      out[qi(b, i, h) + e] = acc;
    }
    let Di = 0;
    for (let e = 0; e < D; e++) Di += dOut[qi(b, i, h) + e] * out[qi(b, i, h) + e];
    for (let j = 0; j < lk; j++) {
      if (!ok[j]) continue;
      let dp = 0;
      for (let e = 0; e < D; e++) dp += dOut[qi(b, i, h) + e] * v[ki(b, j, h) + e];
      const ds = p[j] * (dp - Di) * scale;
      for (let e = 0; e < D; e++) {
        dv[ki(b, j, h) + e] += p[j] * dOut[qi(b, i, h) + e];
        dq[qi(b, i, h) + e] += ds * k[ki(b, j, h) + e];
        dk[ki(b, j, h) + e] += ds * q[qi(b, i, h) + e];
      }
    }
  }
  return { out, lse, dq, dk, dv };
}

function checkAttention(c: AttnCase, label: string): void {
  const { batch: B, heads: H, lq, lk, d: D } = c;
  const q = randn(B * lq * H * D, -2, 2), k = randn(B * lk * H * D, -2, 2), v = randn(B * lk * H * D), dOut = randn(B * lq * H * D);
  const scale = 1 / Math.sqrt(Math.max(D, 1));
  const { mask, stride, causal } = buildMask(c);
  const ref = attentionRef(c, q, k, v, dOut, scale, mask, stride, causal);
  const out = new Float32Array(q.length).fill(NaN), lse = new Float32Array(B * H * lq).fill(NaN);
  const args: AttentionArgs = { q, k, v, out, lse, batch: B, heads: H, lq, lk, headDim: D, scale, mask, maskBatchStride: stride, causal };
  K.attentionForward(args);
  assertClose(out, ref.out, 1e-5, 2e-6, `${label} out`);
  assertClose(lse, ref.lse, 1e-5, 2e-6, `${label} lse`);
  const dq = new Float32Array(q.length).fill(NaN), dk = new Float32Array(k.length).fill(NaN), dv = new Float32Array(v.length).fill(NaN);
  K.attentionBackward({ ...args, dOut, dq, dk, dv });
  assertClose(dq, ref.dq, 1e-4, 1e-5 * Math.max(1, maxAbs(ref.dq)), `${label} dq`);
  assertClose(dk, ref.dk, 1e-4, 1e-5 * Math.max(1, maxAbs(ref.dk)), `${label} dk`);
  assertClose(dv, ref.dv, 1e-4, 1e-5 * Math.max(1, maxAbs(ref.dv)), `${label} dv`);
}

const attnCases: AttnCase[] = [
  { batch: 1, heads: 1, lq: 1, lk: 1, d: 1, mask: 'none' },
  { batch: 2, heads: 3, lq: 17, lk: 17, d: 16, mask: 'causal' },
  { batch: 1, heads: 2, lq: 65, lk: 130, d: 64, mask: 'none' },
  { batch: 1, heads: 2, lq: 130, lk: 130, d: 24, mask: 'causal' },
  { batch: 2, heads: 2, lq: 70, lk: 70, d: 8, mask: 'block' },
  { batch: 1, heads: 3, lq: 66, lk: 66, d: 17, mask: 'registers' },
  { batch: 3, heads: 2, lq: 40, lk: 45, d: 32, mask: 'perBatch' },
  { batch: 1, heads: 2, lq: 33, lk: 140, d: 65, mask: 'emptyRow' },
];

test('attention forward/backward vs float64 (masks: none, causal, block, registers, per-batch, empty rows)', { skip }, () => {
  onEachIsa((isa) => {
    if (isa === 'avx2') return; // same scalar attention path as 'scalar'
    for (const c of attnCases) checkAttention(c, `${isa} ${JSON.stringify(c)}`);
  });
});

// ---- unary ---------------------------------------------------------------------------------

function erf64(x: number): number {
  if (x < 0) return -erf64(-x);
  if (x > 3) return 1 - erfc64(x);
  let term = x, sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    const t = term / (2 * n + 1);
    sum += t;
    if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
function erfc64(x: number): number {
  if (x < 3) return 1 - erf64(x);
  let t = 0;
  for (let n = 80; n >= 1; n--) t = n / 2 / (x + t);
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / (x + t);
}
const sig = (x: number): number => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
const C0 = Math.sqrt(2 / Math.PI), GC = 0.044715;
const geluErf64 = (x: number): number => 0.5 * x * erfc64(-x / Math.SQRT2);

const unaryRef: Record<UnaryOp, { f: (x: number) => number; df: (x: number) => number; lo: number; hi: number }> = {
  neg: { f: (x) => -x, df: () => -1, lo: -3, hi: 3 },
  abs: { f: Math.abs, df: (x) => Math.sign(x), lo: -3, hi: 3 },
  exp: { f: Math.exp, df: Math.exp, lo: -80, hi: 80 },
  log: { f: Math.log, df: (x) => 1 / x, lo: 1e-3, hi: 100 },
  sqrt: { f: Math.sqrt, df: (x) => 0.5 / Math.sqrt(x), lo: 1e-3, hi: 100 },
  rsqrt: { f: (x) => 1 / Math.sqrt(x), df: (x) => -0.5 * x ** -1.5, lo: 1e-3, hi: 100 },
  tanh: { f: Math.tanh, df: (x) => 1 - Math.tanh(x) ** 2, lo: -12, hi: 12 },
  atanh: { f: Math.atanh, df: (x) => 1 / (1 - x * x), lo: -0.99, hi: 0.99 },
  sigmoid: { f: sig, df: (x) => sig(x) * (1 - sig(x)), lo: -30, hi: 30 },
  silu: { f: (x) => x * sig(x), df: (x) => sig(x) * (1 + x * (1 - sig(x))), lo: -30, hi: 30 },
  gelu_tanh: {
    f: (x) => x * sig(2 * C0 * (x + GC * x ** 3)),
    df: (x) => {
      const s = sig(2 * C0 * (x + GC * x ** 3));
      return s + 2 * x * s * (1 - s) * C0 * (1 + 3 * GC * x * x);
    },
    lo: -12, hi: 12,
  },
  gelu_erf: { f: geluErf64, df: (x) => 0.5 * erfc64(-x / Math.SQRT2) + x * Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI), lo: -12, hi: 12 },
  relu: { f: (x) => (x > 0 ? x : 0), df: (x) => (x > 0 ? 1 : 0), lo: -3, hi: 3 },
  sin: { f: Math.sin, df: Math.cos, lo: -10, hi: 10 },
  cos: { f: Math.cos, df: (x) => -Math.sin(x), lo: -10, hi: 10 },
  square: { f: (x) => x * x, df: (x) => 2 * x, lo: -3, hi: 3 },
  recip: { f: (x) => 1 / x, df: (x) => -1 / (x * x), lo: 0.05, hi: 20 },
};

test('unary forward/backward: every op vs float64 (incl. an accurate erf for gelu_erf)', { skip }, () => {
  onEachIsa((isa) => {
    for (const op of Object.keys(unaryRef) as UnaryOp[]) {
      const r = unaryRef[op];
      for (const n of [1, 17, 1000, 40000]) {
        const x = randn(n, r.lo, r.hi);
        if (n > 1) x[0] = 0.5 * (r.lo + r.hi); // a point in the middle (0 for symmetric ranges)
        const y = new Float32Array(n);
        K.unary(op, x, y, n);
        // tolerance: 1e-6 relative plus the op's own conditioning (|x f'(x)| times float32 eps)
        for (let i = 0; i < n; i++) {
          const e = r.f(x[i]);
          const tol = 1e-6 * Math.abs(e) + 1.2e-7 * Math.abs(x[i] * r.df(x[i])) + 1e-37;
          if (!(Math.abs(y[i] - e) <= tol)) assert.fail(`${isa} ${op} n=${n} [${i}] x=${x[i]}: got ${y[i]}, expected ${e}`);
        }
        const dy = randn(n);
        const dx = new Float32Array(n).fill(0.25);
        K.unaryBackward(op, x, y, dy, dx, n, true);
        const edx = Array.from(x, (xv, i) => 0.25 + r.df(xv) * dy[i]);
        const scaleDx = Array.from(x, (xv, i) => Math.abs(r.df(xv) * dy[i]));
        for (let i = 0; i < n; i++) {
          const tol = 3e-6 * (Math.abs(edx[i]) + scaleDx[i]) + 1e-30;
          if (!(Math.abs(dx[i] - edx[i]) <= tol)) assert.fail(`${isa} ${op}' n=${n} [${i}] x=${x[i]}: got ${dx[i]}, expected ${edx[i]}`);
        }
      }
    }
  });
});

test('gelu_erf tail and erf accuracy (relative error ~1e-7 where float allows)', { skip }, () => {
  const xs = Float32Array.from([-9, -7.5, -6, -5, -4, -3, -2, -1.5, -1, -0.5, -1e-3, -1e-6, 0, 1e-6, 1e-3, 0.5, 1, 2, 3, 5, 8]);
  const y = new Float32Array(xs.length);
  K.unary('gelu_erf', xs, y, xs.length);
  for (let i = 0; i < xs.length; i++) {
    const e = geluErf64(xs[i]);
    assert.ok(Math.abs(y[i] - e) <= 1e-6 * Math.abs(e) + 1e-40, `gelu_erf(${xs[i]}) = ${y[i]}, expected ${e}`);
  }
});

// ---- binary --------------------------------------------------------------------------------

function binRef(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case 'add': return Math.fround(a + b);
    case 'sub': return Math.fround(a - b);
    case 'mul': return Math.fround(a * b);
    case 'div': return Math.fround(a / b);
    case 'pow': return Math.pow(a, b);
    case 'max': return Math.max(a, b);
    case 'min': return Math.min(a, b);
  }
}

function checkBinary(op: BinaryOp, shape: number[], aStrides: number[], bStrides: number[], label: string): void {
  const extent = (st: number[]): number => 1 + shape.reduce((s, d, i) => s + (d - 1) * st[i], 0);
  const lo = op === 'pow' ? 0.1 : -2;
  const a = randn(extent(aStrides), lo, 2), b = randn(extent(bStrides), op === 'pow' ? -2 : -2, 2);
  if (op === 'max' || op === 'min') { a[0] = NaN; if (b.length > 3) b[3] = NaN; }
  const total = shape.reduce((s, d) => s * d, 1);
  const out = new Float32Array(total);
  K.binary({ op, a, b, out, shape, aStrides, bStrides });
  const expected = new Float64Array(total);
  const idx = new Array<number>(shape.length).fill(0);
  for (let o = 0; o < total; o++) {
    let ia = 0, ib = 0;
    for (let d = 0; d < shape.length; d++) { ia += idx[d] * aStrides[d]; ib += idx[d] * bStrides[d]; }
    expected[o] = binRef(op, a[ia], b[ib]);
    for (let d = shape.length - 1; d >= 0; d--) { if (++idx[d] < shape[d]) break; idx[d] = 0; }
  }
  assertClose(out, expected, op === 'pow' ? 1e-6 : 0, 0, label);
}

test('binary ops with broadcasting: same shape, row/column/scalar broadcast, general strides, NaN in max/min', { skip }, () => {
  onEachIsa((isa) => {
    for (const op of ['add', 'sub', 'mul', 'div', 'pow', 'max', 'min'] as BinaryOp[]) {
      checkBinary(op, [5, 33], [33, 1], [33, 1], `${isa} ${op} same`);
      checkBinary(op, [1000], [1], [1], `${isa} ${op} flat`);
      checkBinary(op, [6, 35], [35, 1], [0, 1], `${isa} ${op} row bcast`);
      checkBinary(op, [6, 35], [35, 1], [1, 0], `${isa} ${op} col bcast`);
      checkBinary(op, [7, 19], [19, 1], [0, 0], `${isa} ${op} scalar b`);
      checkBinary(op, [7, 19], [0, 0], [19, 1], `${isa} ${op} scalar a`);
      checkBinary(op, [3, 4, 17], [1, 3, 12], [17, 0, 1], `${isa} ${op} general`);
      checkBinary(op, [2, 1, 3, 1], [3, 3, 1, 1], [0, 0, 1, 0], `${isa} ${op} size-1 dims`);
      checkBinary(op, [300, 200], [200, 1], [0, 1], `${isa} ${op} large`);
      checkBinary(op, [70001], [1], [1], `${isa} ${op} long flat`);
      checkBinary(op, [2, 40000], [40000, 1], [0, 1], `${isa} ${op} long rows`);
    }
  });
});

// ---- reductions ----------------------------------------------------------------------------

test('sum and max over [outer, red, inner] (argmax = first max, NaN wins)', { skip }, () => {
  onEachIsa((isa) => {
    for (const [outer, red, inner] of [[1, 1, 1], [3, 17, 1], [2, 130, 5], [4, 7, 33], [1, 1000, 1], [2, 3, 40000], [400, 300, 1]]) {
      const x = randn(outer * red * inner);
      const out = new Float32Array(outer * inner), am = new Int32Array(outer * inner);
      K.sum(x, out, outer, red, inner);
      const es = new Float64Array(outer * inner), bound = new Float64Array(outer * inner);
      for (let o = 0; o < outer; o++) for (let r = 0; r < red; r++) for (let i = 0; i < inner; i++) {
        es[o * inner + i] += x[(o * red + r) * inner + i];
        bound[o * inner + i] += Math.abs(x[(o * red + r) * inner + i]);
      }
      for (let i = 0; i < es.length; i++) assert.ok(Math.abs(out[i] - es[i]) <= 1e-7 * bound[i] + 6e-8 * Math.abs(es[i]), `${isa} sum ${outer},${red},${inner} [${i}]`);
      // ties and NaN
      if (red > 2) { x[inner] = x[0]; x[2 * inner + 1 < x.length ? 2 * inner + 1 : 0] = NaN; }
      K.max(x, out, am, outer, red, inner);
      for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) {
        let best = x[o * red * inner + i], br = 0;
        if (!Number.isNaN(best)) {
          for (let r = 1; r < red; r++) {
            const v = x[(o * red + r) * inner + i];
            if (v > best) { best = v; br = r; } else if (Number.isNaN(v)) { best = v; br = r; break; }
          }
        }
        assert.ok(Object.is(out[o * inner + i], best) || (Number.isNaN(best) && Number.isNaN(out[o * inner + i])), `${isa} max value`);
        assert.equal(am[o * inner + i], br, `${isa} argmax ${outer},${red},${inner} (${o},${i})`);
      }
    }
  });
});

// ---- softmax family ------------------------------------------------------------------------

test('softmax / log-softmax forward and backward vs float64 (incl. -inf entries)', { skip }, () => {
  onEachIsa((isa) => {
    for (const [rows, dim] of [[1, 1], [3, 17], [5, 130], [2, 1000], [64, 768]]) {
      const x = randn(rows * dim, -20, 20);
      for (let r = 0; r < rows; r++) if (dim > 3) x[r * dim + 2] = -Infinity;
      const y = new Float32Array(rows * dim), ly = new Float32Array(rows * dim);
      K.softmaxForward(x, y, rows, dim);
      K.logSoftmaxForward(x, ly, rows, dim);
      const ey = new Float64Array(rows * dim), ely = new Float64Array(rows * dim);
      for (let r = 0; r < rows; r++) {
        let m = -Infinity;
        for (let j = 0; j < dim; j++) m = Math.max(m, x[r * dim + j]);
        let s = 0;
        for (let j = 0; j < dim; j++) s += Math.exp(x[r * dim + j] - m);
        for (let j = 0; j < dim; j++) {
          ey[r * dim + j] = Math.exp(x[r * dim + j] - m) / s;
          ely[r * dim + j] = x[r * dim + j] - m - Math.log(s);
        }
      }
      assertClose(y, ey, 2e-6, 1e-37, `${isa} softmax ${rows}x${dim}`);
      assertClose(ly, ely, 1e-6, 2e-6, `${isa} logsoftmax ${rows}x${dim}`);
      const dy = randn(rows * dim);
      const dx = new Float32Array(rows * dim), ldx = new Float32Array(rows * dim);
      K.softmaxBackward(y, dy, dx, rows, dim);
      K.logSoftmaxBackward(ly, dy, ldx, rows, dim);
      const edx = new Float64Array(rows * dim), eldx = new Float64Array(rows * dim);
      for (let r = 0; r < rows; r++) {
        let dot = 0, s = 0;
        for (let j = 0; j < dim; j++) { dot += dy[r * dim + j] * y[r * dim + j]; s += dy[r * dim + j]; }
        for (let j = 0; j < dim; j++) {
          edx[r * dim + j] = y[r * dim + j] * (dy[r * dim + j] - dot);
          eldx[r * dim + j] = dy[r * dim + j] - Math.exp(ly[r * dim + j]) * s;
        }
      }
      assertClose(dx, edx, 1e-5, 1e-7, `${isa} softmax' ${rows}x${dim}`);
      assertClose(ldx, eldx, 1e-5, 1e-6, `${isa} logsoftmax' ${rows}x${dim}`);
    }
  });
});

// ---- norms ---------------------------------------------------------------------------------

function normRef(x: Float32Array, rows: number, dim: number, eps: number, rms: boolean) {
  const mean = new Float64Array(rows), rstd = new Float64Array(rows), xh = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    if (!rms) { for (let j = 0; j < dim; j++) m += x[r * dim + j]; m /= dim; }
    let v = 0;
    for (let j = 0; j < dim; j++) v += (x[r * dim + j] - m) ** 2;
    const rs = 1 / Math.sqrt(v / dim + eps);
    mean[r] = m;
    rstd[r] = rs;
    for (let j = 0; j < dim; j++) xh[r * dim + j] = (x[r * dim + j] - m) * rs;
  }
  return { mean, rstd, xh };
}

test('layerNorm and rmsNorm forward/backward vs float64 (with and without affine params)', { skip }, () => {
  onEachIsa((isa) => {
    for (const [rows, dim] of [[1, 1], [3, 17], [5, 130], [64, 768]]) {
      for (const affine of [true, false]) {
        for (const rms of [false, true]) {
          const x = randn(rows * dim, -3, 5);
          const w = affine ? randn(dim) : null, b = affine && !rms ? randn(dim) : null;
          const eps = 1e-5;
          const y = new Float32Array(rows * dim), mean = new Float32Array(rows), rstd = new Float32Array(rows);
          if (rms) K.rmsNormForward(x, w, y, rstd, rows, dim, eps);
          else K.layerNormForward(x, w, b, y, mean, rstd, rows, dim, eps);
          const ref = normRef(x, rows, dim, eps, rms);
          const ey = Array.from(ref.xh, (v, i) => v * (w ? w[i % dim] : 1) + (b ? b[i % dim] : 0));
          const label = `${isa} ${rms ? 'rms' : 'layer'}Norm ${rows}x${dim} affine=${affine}`;
          assertClose(y, ey, 2e-6, 2e-6, label);
          assertClose(rstd, ref.rstd, 1e-6, 0, `${label} rstd`);
          if (!rms) assertClose(mean, ref.mean, 1e-6, 1e-7, `${label} mean`);
          const dy = randn(rows * dim);
          const dx = new Float32Array(rows * dim);
          const dw = w ? new Float32Array(dim).fill(123) : null, db = b ? new Float32Array(dim).fill(-7) : null;
          if (rms) K.rmsNormBackward(x, w, rstd, dy, dx, dw, rows, dim);
          else K.layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, dim);
          const edx = new Float64Array(rows * dim), edw = new Float64Array(dim), edb = new Float64Array(dim);
          for (let r = 0; r < rows; r++) {
            let sg = 0, sgx = 0;
            for (let j = 0; j < dim; j++) {
              const g = dy[r * dim + j] * (w ? w[j] : 1);
              sg += g;
              sgx += g * ref.xh[r * dim + j];
              edw[j] += dy[r * dim + j] * ref.xh[r * dim + j];
              edb[j] += dy[r * dim + j];
            }
            for (let j = 0; j < dim; j++) {
              const g = dy[r * dim + j] * (w ? w[j] : 1);
              edx[r * dim + j] = ref.rstd[r] * (g - (rms ? 0 : sg / dim) - ref.xh[r * dim + j] * sgx / dim);
            }
          }
          assertClose(dx, edx, 1e-5, 1e-5 * Math.max(1, maxAbs(edx)), `${label} dx`);
          if (dw) assertClose(dw, edw, 1e-5, 1e-5, `${label} dw`);
          if (db) assertClose(db, edb, 1e-5, 1e-5, `${label} db`);
        }
      }
    }
  });
});

test('segmentFma forward/backward vs float64 (per-segment and per-row offsets, threaded sizes)', { skip }, () => {
  onEachIsa((isa) => {
    for (const [rows, dim, segments] of [[1, 1, 1], [7, 17, 3], [1024, 768, 4], [300, 130, 2]]) {
      for (const cPerRow of [false, true]) {
        const seg = Int32Array.from({ length: rows }, (_, r) => (r * 7 + (r >> 3)) % segments);
        const x = randn(rows * dim), a = randn(segments * dim), c = randn((cPerRow ? rows : segments) * dim);
        const out = new Float32Array(rows * dim);
        K.segmentFmaForward(x, a, c, seg, out, rows, dim, segments, cPerRow);
        const label = `${isa} segmentFma ${rows}x${dim} S=${segments} cPerRow=${cPerRow}`;
        const eo = new Float64Array(rows * dim), edx = new Float64Array(rows * dim);
        const eda = new Float64Array(segments * dim), edc = new Float64Array(segments * dim);
        const dy = randn(rows * dim);
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < dim; j++) {
            const i = r * dim + j, s = seg[r] * dim + j;
            eo[i] = x[i] * a[s] + c[(cPerRow ? r * dim : seg[r] * dim) + j];
            edx[i] = dy[i] * a[s];
            eda[s] += dy[i] * x[i];
            edc[s] += dy[i];
          }
        }
        assertClose(out, eo, 1e-6, 1e-6, label);
        const dx = new Float32Array(rows * dim), da = new Float32Array(segments * dim).fill(9), dc = new Float32Array(segments * dim).fill(9);
        K.segmentFmaBackward(x, a, seg, dy, dx, da, dc, rows, dim, segments);
        assertClose(dx, edx, 1e-6, 1e-6, `${label} dx`);
        assertClose(da, eda, 1e-5, 1e-5 * Math.max(1, maxAbs(eda)), `${label} da`);
        assertClose(dc, edc, 1e-5, 1e-5 * Math.max(1, maxAbs(edc)), `${label} dc`);
        K.segmentFmaBackward(x, a, seg, dy, null, null, dc, rows, dim, segments); // optional outputs
        assertClose(dc, edc, 1e-5, 1e-5 * Math.max(1, maxAbs(edc)), `${label} dc only`);
      }
    }
  });
  const x = new Float32Array(4), a = new Float32Array(2), out = new Float32Array(4);
  assert.throws(() => K.segmentFmaForward(x, a, a, Int32Array.from([0, 0, 1, 2]), out, 4, 1, 2, false), /seg index out of range/);
});

test('groupNorm forward/backward vs float64', { skip }, () => {
  onEachIsa((isa) => {
    for (const [n, channels, spatial, groups] of [[1, 1, 1, 1], [2, 6, 17, 3], [3, 8, 33, 2], [2, 32, 256, 8]]) {
      for (const affine of [true, false]) {
        const x = randn(n * channels * spatial, -2, 3);
        const w = affine ? randn(channels) : null, b = affine ? randn(channels) : null;
        const y = new Float32Array(x.length), mean = new Float32Array(n * groups), rstd = new Float32Array(n * groups);
        K.groupNormForward(x, w, b, y, mean, rstd, n, channels, spatial, groups, 1e-6);
        const cpg = channels / groups, gs = cpg * spatial;
        const ref = normRef(x, n * groups, gs, 1e-6, false);
        const ey = Array.from(ref.xh, (v, i) => {
          const ch = Math.floor(i / spatial) % channels;
          return v * (w ? w[ch] : 1) + (b ? b[ch] : 0);
        });
        const label = `${isa} groupNorm ${n},${channels},${spatial},${groups} affine=${affine}`;
        assertClose(y, ey, 2e-6, 2e-6, label);
        assertClose(mean, ref.mean, 1e-6, 1e-7, `${label} mean`);
        assertClose(rstd, ref.rstd, 1e-6, 0, `${label} rstd`);
        const dy = randn(x.length);
        const dx = new Float32Array(x.length), dw = w ? new Float32Array(channels).fill(9) : null, db = b ? new Float32Array(channels).fill(9) : null;
        K.groupNormBackward(x, w, mean, rstd, dy, dx, dw, db, n, channels, spatial, groups);
        const edx = new Float64Array(x.length), edw = new Float64Array(channels), edb = new Float64Array(channels);
        for (let t = 0; t < n * groups; t++) {
          let sg = 0, sgx = 0;
          for (let j = 0; j < gs; j++) {
            const i = t * gs + j, ch = Math.floor(i / spatial) % channels;
            const g = dy[i] * (w ? w[ch] : 1);
            sg += g;
            sgx += g * ref.xh[i];
            edw[ch] += dy[i] * ref.xh[i];
            edb[ch] += dy[i];
          }
          for (let j = 0; j < gs; j++) {
            const i = t * gs + j, ch = Math.floor(i / spatial) % channels;
            edx[i] = ref.rstd[t] * (dy[i] * (w ? w[ch] : 1) - sg / gs - ref.xh[i] * sgx / gs);
          }
        }
        assertClose(dx, edx, 1e-5, 1e-5 * Math.max(1, maxAbs(edx)), `${label} dx`);
        if (dw) assertClose(dw, edw, 1e-5, 1e-5, `${label} dw`);
        if (db) assertClose(db, edb, 1e-5, 1e-5, `${label} db`);
      }
    }
  });
});

// ---- layout --------------------------------------------------------------------------------

test('im2col and col2im (padding, stride) vs naive loops', { skip }, () => {
  const geoms: Conv2dGeom[] = [
    { channels: 3, height: 7, width: 9, kh: 3, kw: 3, strideH: 1, strideW: 1, padTop: 1, padLeft: 1, outH: 7, outW: 9 },
    { channels: 2, height: 8, width: 5, kh: 4, kw: 2, strideH: 2, strideW: 2, padTop: 1, padLeft: 0, outH: 4, outW: 2 },
    { channels: 1, height: 1, width: 1, kh: 1, kw: 1, strideH: 1, strideW: 1, padTop: 0, padLeft: 0, outH: 1, outW: 1 },
    { channels: 2, height: 3, width: 2, kh: 2, kw: 2, strideH: 1, strideW: 1, padTop: 2, padLeft: 3, outH: 6, outW: 7 },
    { channels: 16, height: 32, width: 32, kh: 3, kw: 3, strideH: 1, strideW: 1, padTop: 1, padLeft: 1, outH: 32, outW: 32 },
  ];
  for (const g of geoms) {
    const off = 5;
    const x = randn(off + g.channels * g.height * g.width);
    const rows = g.channels * g.kh * g.kw, ncols = g.outH * g.outW;
    const cols = new Float32Array(rows * ncols).fill(NaN);
    K.im2col(x, off, cols, g);
    const ec = new Float32Array(rows * ncols);
    const dxE = randn(off + g.channels * g.height * g.width);
    const dx = Float32Array.from(dxE);
    const colsIn = randn(rows * ncols);
    const dxRef = Float64Array.from(dxE);
    for (let c = 0; c < g.channels; c++) for (let ki = 0; ki < g.kh; ki++) for (let kj = 0; kj < g.kw; kj++) {
      const row = (c * g.kh + ki) * g.kw + kj;
      for (let oh = 0; oh < g.outH; oh++) for (let ow = 0; ow < g.outW; ow++) {
        const ih = oh * g.strideH - g.padTop + ki, iw = ow * g.strideW - g.padLeft + kj;
        const inside = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width;
        const xi = off + (c * g.height + ih) * g.width + iw;
        ec[row * ncols + oh * g.outW + ow] = inside ? x[xi] : 0;
        if (inside) dxRef[xi] += colsIn[row * ncols + oh * g.outW + ow];
      }
    }
    assert.deepEqual(Array.from(cols), Array.from(ec), `im2col ${JSON.stringify(g)}`);
    K.col2im(colsIn, dx, off, g);
    assertClose(dx, dxRef, 1e-6, 1e-6, `col2im ${JSON.stringify(g)}`);
  }
});

test('permute: float32 and int32, several ranks and permutations', { skip }, () => {
  const cases: Array<[number[], number[]]> = [
    [[5], [0]], [[3, 4], [1, 0]], [[2, 3, 4], [2, 0, 1]], [[2, 3, 4, 5], [0, 2, 1, 3]], [[2, 1, 3, 5], [3, 1, 2, 0]],
    [[64, 48, 3], [1, 0, 2]], [[300, 257], [1, 0]],
  ];
  for (const [shape, perm] of cases) {
    const total = shape.reduce((s, d) => s * d, 1);
    const x = randn(total), xi = Int32Array.from({ length: total }, (_, i) => i * 7 - 3);
    const y = new Float32Array(total), yi = new Int32Array(total);
    K.permute(x, y, shape, perm);
    K.permute(xi, yi, shape, perm);
    const inStrides = shape.map((_, d) => shape.slice(d + 1).reduce((s, v) => s * v, 1));
    const outShape = perm.map((p) => shape[p]);
    const idx = new Array<number>(shape.length).fill(0);
    for (let o = 0; o < total; o++) {
      let src = 0;
      for (let d = 0; d < shape.length; d++) src += idx[d] * inStrides[perm[d]];
      if (y[o] !== x[src] || yi[o] !== xi[src]) assert.fail(`permute ${shape} ${perm} @${o}`);
      for (let d = shape.length - 1; d >= 0; d--) { if (++idx[d] < outShape[d]) break; idx[d] = 0; }
    }
  }
});

test('adamw step vs float64 formula', { skip }, () => {
  onEachIsa((isa) => {
    for (const n of [1, 17, 5000, 70000]) {
      const param = randn(n), grad = randn(n), m = randn(n, -0.1, 0.1), v = randn(n, 0, 0.1);
      const p0 = Float64Array.from(param), m0 = Float64Array.from(m), v0 = Float64Array.from(v);
      const a = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.05, biasCorrection1: 1 - 0.9 ** 3, biasCorrection2: 1 - 0.95 ** 3 };
      K.adamw({ param, grad, m, v, ...a });
      const ep = new Float64Array(n), em = new Float64Array(n), ev = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        em[i] = a.beta1 * m0[i] + (1 - a.beta1) * grad[i];
        ev[i] = a.beta2 * v0[i] + (1 - a.beta2) * grad[i] * grad[i];
        ep[i] = p0[i] * (1 - a.lr * a.weightDecay) - (a.lr / a.biasCorrection1) * em[i] / (Math.sqrt(ev[i] / a.biasCorrection2) + a.eps);
      }
      assertClose(m, em, 1e-6, 1e-9, `${isa} adamw m`);
      assertClose(v, ev, 1e-6, 1e-12, `${isa} adamw v`);
      assertClose(param, ep, 1e-6, 1e-8, `${isa} adamw param`);
    }
  });
});

test('thread pool: resize, getThreads, results independent of thread count', { skip }, () => {
  const saved = nativeThreads.get();
  try {
    const x = randn(200000, -5, 5);
    const ref = new Float32Array(x.length);
    nativeThreads.set(1);
    assert.equal(nativeThreads.get(), 1);
    K.unary('silu', x, ref, x.length);
    for (const t of [2, 4, 1, 3]) {
      nativeThreads.set(t);
      assert.equal(nativeThreads.get(), t);
      const y = new Float32Array(x.length);
      K.unary('silu', x, y, x.length);
      assert.deepEqual(y, ref);
    }
    assert.ok(nativeThreads.set(0) >= 1);
    assert.ok(addon!.fmaPeak(0.02, 1) > 0);
  } finally {
    nativeThreads.set(saved);
  }
});
