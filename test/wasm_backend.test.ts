// Tests of the WebAssembly backend (src/tensor/backend_wasm.ts → native/wasm/flextok_kernels[_relaxed].wasm):
// every kernel against the JS reference kernels on random float32 inputs of odd sizes, on both back ends of the
// module (its SIMD one — relaxed SIMD where Node runs it, else SIMD128 — and the generic one), plus float64
// delegation, argument checks and memory growth; the choice between the relaxed-SIMD and SIMD128 builds; and the
// multi-threaded build (flextok_kernels_mt[_relaxed].wasm) in a child process when it is built.
// Skips when the module is not built (npm run build:wasm), unless FLEXTOK_BACKEND=wasm asks for it.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

import { backendInfo, backendName, setBackend } from '../src/tensor/backend.js';
import { loadWasmKernels, setWasmIsa, wasmInfo, wasmUnavailableReason } from '../src/tensor/backend_wasm.js';
import type { WasmKernels } from '../src/tensor/kernels_wasm/kernels.js';
import { instantiateKernelsSync, WasmTrap } from '../src/tensor/kernels_wasm/module.js';
import type { AttentionArgs, BinaryOp, Conv2dGeom, FArr, GemmArgs, UnaryOp } from '../src/tensor/kernels.js';
import { jsKernels as J } from '../src/tensor/kernels_js/index.js';
import { mulberry32, uniformArrays } from './helpers/random.js';

const repoRoot = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const missing = wasmUnavailableReason();
const required = process.env.FLEXTOK_BACKEND === 'wasm';
const skip = missing !== null && !required ? `wasm kernels not built (${missing})` : false;
const W = loadWasmKernels() as WasmKernels;

test('the wasm kernels load', { skip }, () => {
  assert.equal(missing, null, `${missing}`);
  const info = wasmInfo();
  assert.ok(info && ['wasm-relaxed-simd', 'wasm-simd128', 'scalar'].includes(info.isa), info?.isa);
});

/** Runs fn on the module's SIMD back end, then on the generic one; restores the SIMD one (or FLEXTOK_ISA=scalar). */
function onEachIsa(fn: (isa: string) => void): void {
  const initial = wasmInfo()?.isa === 'scalar' ? 'scalar' : 'simd';
  try {
    for (const isa of ['simd', 'scalar'] as const) {
      const active = setWasmIsa(isa);
      assert.equal(active, isa === 'scalar' ? 'scalar' : wasmInfo()!.simd);
      fn(active);
    }
  } finally {
    setWasmIsa(initial);
  }
}

// ---- helpers -------------------------------------------------------------------------------

const rand = mulberry32(20261206);
const randf = uniformArrays(rand);
const copy = (x: Float32Array): Float32Array => Float32Array.from(x);

/** |actual − expected| ≤ atol + rtol·|expected| elementwise; NaN must meet NaN, ±Infinity itself. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e)) {
      assert.ok(Number.isNaN(a), `${label}[${i}]: expected NaN, got ${a}`);
    } else if (!Number.isFinite(e)) {
      assert.equal(a, e, `${label}[${i}]`);
    } else {
      assert.ok(Math.abs(a - e) <= atol + rtol * Math.abs(e), `${label}[${i}]: got ${a}, expected ${e}`);
    }
  }
}

const maxAbs = (x: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i])) m = Math.max(m, Math.abs(x[i]));
  return m;
};

// ---- GEMM ----------------------------------------------------------------------------------

interface GemmCase { m: number; n: number; k: number; transA: boolean; transB: boolean; batch: number; alpha: number; beta: number;
  strideA0?: boolean; strideB0?: boolean }

function gemmArgs(c: GemmCase): { args: GemmArgs; cArr: Float32Array } {
  const { m, n, k, transA, transB, batch } = c;
  const lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 1, ldc = n + 2;
  const aRows = transA ? k : m, bRows = transB ? n : k;
  const strideA = c.strideA0 ? 0 : aRows * lda + 5, strideB = c.strideB0 ? 0 : bRows * ldb + 7, strideC = m * ldc + 1;
  const aOffset = 4, bOffset = 2, cOffset = 3;
  const a = randf(aOffset + (batch - 1) * strideA + aRows * lda + 2);
  const b = randf(bOffset + (batch - 1) * strideB + bRows * ldb + 1);
  const cArr = randf(cOffset + (batch - 1) * strideC + m * ldc + 3);
  const args: GemmArgs = { transA, transB, m, n, k, alpha: c.alpha, beta: c.beta, a, aOffset, lda, strideA, b, bOffset, ldb, strideB,
    c: cArr, cOffset, ldc, strideC, batch };
  return { args, cArr };
}

function checkGemm(c: GemmCase, bf16: boolean, label: string): void {
  const { args, cArr } = gemmArgs(c);
  const cw = copy(cArr), cj = copy(cArr);
  if (c.beta === 0) {
    // beta = 0 ignores the old contents of the written elements (the gaps between them must stay as they were)
    for (let bi = 0; bi < c.batch; bi++) {
      for (let i = 0; i < c.m; i++) {
        const row = args.cOffset + bi * args.strideC + i * args.ldc;
        cw.fill(NaN, row, row + c.n);
      }
    }
  }
  (bf16 ? W.gemmBf16 : W.gemm)({ ...args, c: cw });
  (bf16 ? J.gemmBf16 : J.gemm)({ ...args, c: cj });
  const tol = 2e-6 * Math.max(4, c.k) * (Math.abs(c.alpha) + 1);
  assertClose(cw, cj, 1e-5, tol, label);
}

const gemmShapes: Array<[number, number, number]> = [
  [1, 1, 1], [3, 5, 7], [4, 16, 8], [5, 17, 9], [6, 33, 31], [7, 1, 13], [13, 29, 3], [33, 65, 17], [64, 48, 130], [130, 70, 65], [2, 300, 257],
];

test('gemm and gemmBf16: all transposes, odd shapes, alpha/beta vs the JS kernels', { skip }, () => {
  onEachIsa((isa) => {
    for (const [m, n, k] of gemmShapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const beta = (m + n) % 3 === 0 ? 0 : (m + n) % 3 === 1 ? 1 : -0.5;
          const c: GemmCase = { m, n, k, transA, transB, batch: 1, alpha: (m + k) % 2 ? 1 : 0.75, beta };
          checkGemm(c, false, `${isa} gemm ${JSON.stringify(c)}`);
          if ((m * 7 + n) % 3 === 0) checkGemm(c, true, `${isa} gemmBf16 ${JSON.stringify(c)}`);
        }
      }
    }
  });
});

test('gemm: batches, strides, broadcast (stride 0) operands, offsets, k = 0, alpha = 0, gaps of C kept', { skip }, () => {
  onEachIsa((isa) => {
    const cases: GemmCase[] = [
      { m: 5, n: 7, k: 9, transA: false, transB: false, batch: 3, alpha: 1, beta: 0 },
      { m: 9, n: 5, k: 33, transA: true, transB: false, batch: 4, alpha: 0.5, beta: 1, strideB0: true },
      { m: 17, n: 19, k: 6, transA: false, transB: true, batch: 2, alpha: 1, beta: 0.25, strideA0: true },
      { m: 3, n: 130, k: 40, transA: true, transB: true, batch: 5, alpha: -1, beta: 0 },
      { m: 6, n: 11, k: 0, transA: false, transB: false, batch: 2, alpha: 1, beta: 0.5 },
      { m: 6, n: 11, k: 0, transA: false, transB: false, batch: 2, alpha: 1, beta: 0 },
      { m: 8, n: 8, k: 8, transA: false, transB: false, batch: 2, alpha: 0, beta: 2 },
    ];
    for (const c of cases) {
      checkGemm(c, false, `${isa} gemm ${JSON.stringify(c)}`);
      checkGemm(c, true, `${isa} gemmBf16 ${JSON.stringify(c)}`);
    }
  });
});

// ---- attention -----------------------------------------------------------------------------

interface AttnCase { batch: number; heads: number; lq: number; lk: number; d: number; mask: 'none' | 'causal' | 'shared' | 'perBatch' | 'emptyRow' }

function checkAttention(c: AttnCase, label: string): void {
  const { batch: B, heads: H, lq, lk, d: D } = c;
  const q = randf(B * lq * H * D), k = randf(B * lk * H * D), v = randf(B * lk * H * D), dOut = randf(B * lq * H * D);
  let mask: Uint8Array | null = null, stride = 0;
  if (c.mask === 'shared' || c.mask === 'emptyRow') {
    mask = new Uint8Array(lq * lk);
    for (let i = 0; i < mask.length; i++) mask[i] = rand() < 0.6 ? 1 : 0;
    if (c.mask === 'emptyRow') mask.fill(0, 2 * lk, 3 * lk); // query row 2 sees no key
  } else if (c.mask === 'perBatch') {
    stride = lq * lk;
    mask = new Uint8Array(B * stride);
    for (let b = 0; b < B; b++) for (let i = 0; i < lq; i++) for (let j = 0; j < lk; j++) mask[b * stride + i * lk + j] = j <= i + b ? 1 : 0;
  }
  const scale = 1 / Math.sqrt(Math.max(1, D));
  const run = (K: { attentionForward(a: AttentionArgs): void; attentionBackward(a: AttentionArgs & { dOut: FArr; dq: FArr; dk: FArr; dv: FArr }): void }) => {
    const out = new Float32Array(q.length).fill(NaN), lse = new Float32Array(B * H * lq).fill(NaN);
    const args: AttentionArgs = { q, k, v, out, lse, batch: B, heads: H, lq, lk, headDim: D, scale, mask, maskBatchStride: stride, causal: c.mask === 'causal' };
    K.attentionForward(args);
    const dq = new Float32Array(q.length).fill(NaN), dk = new Float32Array(k.length).fill(NaN), dv = new Float32Array(v.length).fill(NaN);
    K.attentionBackward({ ...args, dOut, dq, dk, dv });
    return { out, lse, dq, dk, dv };
  };
  const w = run(W), j = run(J);
  assertClose(w.out, j.out, 1e-5, 2e-6, `${label} out`);
  assertClose(w.lse, j.lse, 1e-5, 2e-6, `${label} lse`);
  for (const key of ['dq', 'dk', 'dv'] as const) assertClose(w[key], j[key], 1e-4, 1e-5 * Math.max(1, maxAbs(j[key])), `${label} ${key}`);
}

test('attention forward/backward vs the JS kernels (no mask, causal, shared, per-batch, empty rows)', { skip }, () => {
  const cases: AttnCase[] = [
    { batch: 1, heads: 1, lq: 1, lk: 1, d: 1, mask: 'none' },
    { batch: 2, heads: 3, lq: 17, lk: 17, d: 16, mask: 'causal' },
    { batch: 1, heads: 2, lq: 65, lk: 130, d: 64, mask: 'none' },
    { batch: 2, heads: 2, lq: 33, lk: 21, d: 7, mask: 'shared' },
    { batch: 3, heads: 2, lq: 40, lk: 45, d: 32, mask: 'perBatch' },
    { batch: 1, heads: 2, lq: 9, lk: 70, d: 65, mask: 'emptyRow' },
    { batch: 1, heads: 2, lq: 5, lk: 0, d: 8, mask: 'none' },
  ];
  onEachIsa((isa) => {
    for (const c of cases) checkAttention(c, `${isa} ${JSON.stringify(c)}`);
  });
});

// ---- elementwise ---------------------------------------------------------------------------

const unaryRange: Record<UnaryOp, [number, number]> = {
  neg: [-3, 3], abs: [-3, 3], exp: [-80, 80], log: [1e-3, 100], sqrt: [1e-3, 100], rsqrt: [1e-3, 100], tanh: [-12, 12],
  atanh: [-0.99, 0.99], sigmoid: [-30, 30], silu: [-30, 30], gelu_tanh: [-12, 12], gelu_erf: [-12, 12], relu: [-3, 3],
  sin: [-10, 10], cos: [-10, 10], square: [-3, 3], recip: [0.05, 20],
};

test('unary forward/backward (every op, accumulate or not) vs the JS kernels', { skip }, () => {
  onEachIsa((isa) => {
    for (const op of Object.keys(unaryRange) as UnaryOp[]) {
      const [lo, hi] = unaryRange[op];
      for (const n of [1, 3, 17, 1001]) {
        const x = randf(n, lo, hi);
        const yw = new Float32Array(n), yj = new Float32Array(n);
        W.unary(op, x, yw, n);
        J.unary(op, x, yj, n);
        // tolerance: a few float32 ulps plus the op's conditioning |x f'(x)|·eps (f' from the JS backward), plus
        // 1e-15·|x| for the JS gelu_tanh tail (0.5x(1 + tanh u) cancels for x ≪ 0; the C++ kernels use x·σ(2u))
        const df = new Float32Array(n);
        J.unaryBackward(op, x, yj, new Float32Array(n).fill(1), df, n, false);
        for (let i = 0; i < n; i++) {
          const tol = 2e-6 * Math.abs(yj[i]) + 1.2e-7 * Math.abs(x[i] * df[i]) + 1e-15 * Math.abs(x[i]) + 1e-37;
          assert.ok(Math.abs(yw[i] - yj[i]) <= tol, `${isa} ${op} n=${n} [${i}] x=${x[i]}: got ${yw[i]}, expected ${yj[i]}`);
        }
        const dy = randf(n);
        // the derivatives of silu and the gelus are sums of terms of size ~1 that cancel where f' ≈ 0
        const cancel = op === 'silu' || op === 'gelu_tanh' || op === 'gelu_erf' ? 2.4e-7 : 0;
        for (const acc of [false, true]) {
          const dxw = randf(n), dxj = copy(dxw);
          W.unaryBackward(op, x, yj, dy, dxw, n, acc);
          J.unaryBackward(op, x, yj, dy, dxj, n, acc);
          for (let i = 0; i < n; i++) {
            const tol = 4e-6 * (Math.abs(dxj[i]) + Math.abs(df[i] * dy[i])) + cancel * Math.abs(dy[i]) * (1 + Math.abs(x[i])) + 1e-30;
            assert.ok(Math.abs(dxw[i] - dxj[i]) <= tol, `${isa} ${op}' n=${n} acc=${acc} [${i}] x=${x[i]}: got ${dxw[i]}, expected ${dxj[i]}`);
          }
        }
      }
      // in place (x aliases y)
      const x = randf(37, lo, hi), xw = copy(x), yj = new Float32Array(37), yw = new Float32Array(37);
      W.unary(op, x, yw, 37);
      W.unary(op, xw, xw, 37);
      J.unary(op, x, yj, 37);
      assert.deepEqual(xw, yw, `${isa} ${op} in place = out of place`);
    }
  });
});

function checkBinary(op: BinaryOp, shape: number[], aStrides: number[], bStrides: number[], label: string): void {
  let aLen = 1, bLen = 1, total = 1;
  shape.forEach((s, i) => {
    total *= s;
    aLen += (s - 1) * aStrides[i];
    bLen += (s - 1) * bStrides[i];
  });
  const a = randf(aLen, op === 'pow' ? 0.1 : -2, 2), b = randf(bLen, op === 'div' ? 0.5 : -2, 2);
  if ((op === 'max' || op === 'min') && aLen > 2) a[1] = NaN;
  const ow = new Float32Array(total), oj = new Float32Array(total);
  W.binary({ op, a, b, out: ow, shape, aStrides, bStrides });
  J.binary({ op, a, b, out: oj, shape, aStrides, bStrides });
  assertClose(ow, oj, 2e-6, 1e-30, label);
}

test('binary ops with broadcasting (same shape, row/column/scalar, general strides, NaN in max/min)', { skip }, () => {
  onEachIsa((isa) => {
    for (const op of ['add', 'sub', 'mul', 'div', 'pow', 'max', 'min'] as BinaryOp[]) {
      checkBinary(op, [5, 33], [33, 1], [33, 1], `${isa} ${op} same`);
      checkBinary(op, [6, 35], [35, 1], [0, 1], `${isa} ${op} row`);
      checkBinary(op, [6, 35], [35, 1], [1, 0], `${isa} ${op} column`);
      checkBinary(op, [7, 19], [0, 0], [19, 1], `${isa} ${op} scalar a`);
      checkBinary(op, [3, 4, 17], [1, 3, 12], [17, 0, 1], `${isa} ${op} general`);
      checkBinary(op, [2, 1, 3, 1], [3, 3, 1, 1], [0, 0, 1, 0], `${isa} ${op} size-1 dims`);
    }
  });
});

test('segmentFma forward/backward (per-segment and per-row c, optional gradients) vs the JS kernels', { skip }, () => {
  onEachIsa((isa) => {
    for (const [rows, dim, segments] of [[1, 1, 1], [7, 13, 3], [33, 65, 5], [130, 17, 2]]) {
      const seg = new Int32Array(rows);
      for (let r = 0; r < rows; r++) seg[r] = Math.floor(rand() * segments);
      const x = randf(rows * dim), a = randf(segments * dim), dy = randf(rows * dim);
      for (const cPerRow of [false, true]) {
        const c = randf((cPerRow ? rows : segments) * dim);
        const ow = new Float32Array(rows * dim), oj = new Float32Array(rows * dim);
        W.segmentFmaForward(x, a, c, seg, ow, rows, dim, segments, cPerRow);
        J.segmentFmaForward(x, a, c, seg, oj, rows, dim, segments, cPerRow);
        assertClose(ow, oj, 1e-6, 1e-7, `${isa} segmentFma ${rows}x${dim} cPerRow=${cPerRow}`);
      }
      for (const which of [[true, true, true], [true, false, false], [false, true, false], [false, false, true]]) {
        const mk = (on: boolean, n: number): Float32Array | null => (on ? new Float32Array(n).fill(NaN) : null);
        const gw = which.map((on, i) => mk(on, i === 0 ? rows * dim : segments * dim));
        const gj = which.map((on, i) => mk(on, i === 0 ? rows * dim : segments * dim));
        W.segmentFmaBackward(x, a, seg, dy, gw[0], gw[1], gw[2], rows, dim, segments);
        J.segmentFmaBackward(x, a, seg, dy, gj[0], gj[1], gj[2], rows, dim, segments);
        gw.forEach((g, i) => { if (g) assertClose(g, gj[i]!, 1e-5, 1e-5, `${isa} segmentFma' ${rows}x${dim} grad ${i}`); });
      }
    }
  });
});

// ---- reductions and the softmax family -----------------------------------------------------

test('sum and max over [outer, red, inner] (ties, NaN) vs the JS kernels', { skip }, () => {
  onEachIsa((isa) => {
    for (const [outer, red, inner] of [[1, 1, 1], [3, 17, 1], [2, 130, 5], [4, 7, 33], [1, 1001, 1], [6, 1, 2]]) {
      const x = randf(outer * red * inner);
      if (red > 2) {
        x[inner] = x[0];
        x[2 * inner + 1 < x.length ? 2 * inner + 1 : 0] = NaN;
      }
      const on = outer * inner;
      const sw = new Float32Array(on), sj = new Float32Array(on);
      W.sum(x, sw, outer, red, inner);
      J.sum(x, sj, outer, red, inner);
      assertClose(sw, sj, 1e-6, 1e-6, `${isa} sum ${outer},${red},${inner}`);
      const mw = new Float32Array(on), mj = new Float32Array(on), aw = new Int32Array(on), aj = new Int32Array(on);
      W.max(x, mw, aw, outer, red, inner);
      J.max(x, mj, aj, outer, red, inner);
      assertClose(mw, mj, 0, 0, `${isa} max ${outer},${red},${inner}`);
      assert.deepEqual(aw, aj, `${isa} argmax ${outer},${red},${inner}`);
    }
  });
});

test('softmax / log-softmax forward and backward (with -inf entries) vs the JS kernels', { skip }, () => {
  onEachIsa((isa) => {
    for (const [rows, dim] of [[1, 1], [3, 17], [5, 130], [2, 1001]]) {
      const x = randf(rows * dim, -20, 20);
      for (let r = 0; r < rows; r++) if (dim > 3) x[r * dim + 2] = -Infinity;
      const dy = randf(rows * dim);
      for (const log of [false, true]) {
        const yw = new Float32Array(rows * dim), yj = new Float32Array(rows * dim);
        (log ? W.logSoftmaxForward : W.softmaxForward)(x, yw, rows, dim);
        (log ? J.logSoftmaxForward : J.softmaxForward)(x, yj, rows, dim);
        assertClose(yw, yj, 1e-5, 2e-6, `${isa} ${log ? 'log' : ''}softmax ${rows}x${dim}`);
        const dw = new Float32Array(rows * dim), dj = new Float32Array(rows * dim);
        (log ? W.logSoftmaxBackward : W.softmaxBackward)(yj, dy, dw, rows, dim);
        (log ? J.logSoftmaxBackward : J.softmaxBackward)(yj, dy, dj, rows, dim);
        assertClose(dw, dj, 1e-5, 1e-6, `${isa} ${log ? 'log' : ''}softmax' ${rows}x${dim}`);
      }
    }
  });
});

// ---- norms ---------------------------------------------------------------------------------

test('layerNorm and rmsNorm forward/backward (with and without affine parameters) vs the JS kernels', { skip }, () => {
  onEachIsa((isa) => {
    for (const [rows, dim] of [[1, 1], [3, 17], [7, 130], [2, 1001]]) {
      const x = randf(rows * dim, -3, 5), dy = randf(rows * dim);
      for (const affine of [false, true]) {
        const w = affine ? randf(dim, 0.5, 1.5) : null, b = affine ? randf(dim) : null;
        const o = () => ({ y: new Float32Array(rows * dim), mean: new Float32Array(rows), rstd: new Float32Array(rows) });
        const fw = o(), fj = o();
        W.layerNormForward(x, w, b, fw.y, fw.mean, fw.rstd, rows, dim, 1e-5);
        J.layerNormForward(x, w, b, fj.y, fj.mean, fj.rstd, rows, dim, 1e-5);
        assertClose(fw.y, fj.y, 1e-5, 1e-5, `${isa} layerNorm y ${rows}x${dim}`);
        assertClose(fw.mean, fj.mean, 1e-6, 1e-6, `${isa} layerNorm mean`);
        assertClose(fw.rstd, fj.rstd, 1e-5, 1e-6, `${isa} layerNorm rstd`);
        const g = () => ({ dx: new Float32Array(rows * dim), dw: affine ? new Float32Array(dim) : null, db: affine ? new Float32Array(dim) : null });
        const bw = g(), bj = g();
        W.layerNormBackward(x, w, fj.mean, fj.rstd, dy, bw.dx, bw.dw, bw.db, rows, dim);
        J.layerNormBackward(x, w, fj.mean, fj.rstd, dy, bj.dx, bj.dw, bj.db, rows, dim);
        assertClose(bw.dx, bj.dx, 1e-4, 1e-5, `${isa} layerNorm dx ${rows}x${dim}`);
        if (affine) {
          assertClose(bw.dw!, bj.dw!, 1e-4, 1e-5, `${isa} layerNorm dw`);
          assertClose(bw.db!, bj.db!, 1e-4, 1e-5, `${isa} layerNorm db`);
        }
        const rw = { y: new Float32Array(rows * dim), rstd: new Float32Array(rows) }, rj = { y: new Float32Array(rows * dim), rstd: new Float32Array(rows) };
        W.rmsNormForward(x, w, rw.y, rw.rstd, rows, dim, 1e-6);
        J.rmsNormForward(x, w, rj.y, rj.rstd, rows, dim, 1e-6);
        assertClose(rw.y, rj.y, 1e-5, 1e-6, `${isa} rmsNorm y`);
        assertClose(rw.rstd, rj.rstd, 1e-5, 1e-7, `${isa} rmsNorm rstd`);
        const dxw = new Float32Array(rows * dim), dxj = new Float32Array(rows * dim);
        const dww = affine ? new Float32Array(dim) : null, dwj = affine ? new Float32Array(dim) : null;
        W.rmsNormBackward(x, w, rj.rstd, dy, dxw, dww, rows, dim);
        J.rmsNormBackward(x, w, rj.rstd, dy, dxj, dwj, rows, dim);
        assertClose(dxw, dxj, 1e-4, 1e-5, `${isa} rmsNorm dx`);
        if (affine) assertClose(dww!, dwj!, 1e-4, 1e-5, `${isa} rmsNorm dw`);
      }
    }
  });
});

test('groupNorm forward/backward vs the JS kernels', { skip }, () => {
  onEachIsa((isa) => {
    for (const [n, channels, spatial, groups] of [[1, 1, 1, 1], [2, 6, 17, 3], [3, 8, 33, 4], [1, 32, 65, 8]]) {
      const total = n * channels * spatial, stats = n * groups;
      const x = randf(total, -2, 3), dy = randf(total);
      for (const affine of [false, true]) {
        const w = affine ? randf(channels, 0.5, 1.5) : null, b = affine ? randf(channels) : null;
        const fw = { y: new Float32Array(total), mean: new Float32Array(stats), rstd: new Float32Array(stats) };
        const fj = { y: new Float32Array(total), mean: new Float32Array(stats), rstd: new Float32Array(stats) };
        W.groupNormForward(x, w, b, fw.y, fw.mean, fw.rstd, n, channels, spatial, groups, 1e-5);
        J.groupNormForward(x, w, b, fj.y, fj.mean, fj.rstd, n, channels, spatial, groups, 1e-5);
        assertClose(fw.y, fj.y, 1e-5, 1e-5, `${isa} groupNorm y`);
        assertClose(fw.mean, fj.mean, 1e-6, 1e-6, `${isa} groupNorm mean`);
        assertClose(fw.rstd, fj.rstd, 1e-5, 1e-6, `${isa} groupNorm rstd`);
        const dxw = new Float32Array(total), dxj = new Float32Array(total);
        const dww = affine ? new Float32Array(channels) : null, dwj = affine ? new Float32Array(channels) : null;
        const dbw = affine ? new Float32Array(channels) : null, dbj = affine ? new Float32Array(channels) : null;
        W.groupNormBackward(x, w, fj.mean, fj.rstd, dy, dxw, dww, dbw, n, channels, spatial, groups);
        J.groupNormBackward(x, w, fj.mean, fj.rstd, dy, dxj, dwj, dbj, n, channels, spatial, groups);
        assertClose(dxw, dxj, 1e-4, 1e-5, `${isa} groupNorm dx ${n},${channels},${spatial},${groups}`);
        if (affine) {
          assertClose(dww!, dwj!, 1e-4, 1e-5, `${isa} groupNorm dw`);
          assertClose(dbw!, dbj!, 1e-4, 1e-5, `${isa} groupNorm db`);
        }
      }
    }
  });
});

// ---- layout and optimizer ------------------------------------------------------------------

test('im2col and col2im (padding, stride, offsets) vs the JS kernels', { skip }, () => {
  onEachIsa((isa) => {
    const geoms: Array<Omit<Conv2dGeom, 'outH' | 'outW'> & { padBottom: number; padRight: number }> = [
      { channels: 1, height: 1, width: 1, kh: 1, kw: 1, strideH: 1, strideW: 1, padTop: 0, padLeft: 0, padBottom: 0, padRight: 0 },
      { channels: 3, height: 7, width: 9, kh: 3, kw: 3, strideH: 1, strideW: 1, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1 },
      { channels: 2, height: 11, width: 13, kh: 4, kw: 3, strideH: 2, strideW: 3, padTop: 2, padLeft: 0, padBottom: 1, padRight: 2 },
      { channels: 5, height: 16, width: 17, kh: 2, kw: 2, strideH: 2, strideW: 2, padTop: 0, padLeft: 0, padBottom: 0, padRight: 0 },
    ];
    for (const gg of geoms) {
      const g: Conv2dGeom = { ...gg, outH: Math.floor((gg.height + gg.padTop + gg.padBottom - gg.kh) / gg.strideH) + 1,
        outW: Math.floor((gg.width + gg.padLeft + gg.padRight - gg.kw) / gg.strideW) + 1 };
      const xn = g.channels * g.height * g.width, cn = g.channels * g.kh * g.kw * g.outH * g.outW, off = 5;
      const x = randf(off + xn + 3);
      const cw = new Float32Array(cn), cj = new Float32Array(cn);
      W.im2col(x, off, cw, g);
      J.im2col(x, off, cj, g);
      assertClose(cw, cj, 0, 0, `${isa} im2col ${JSON.stringify(g)}`);
      const cols = randf(cn), dxw = randf(off + xn + 3), dxj = copy(dxw);
      W.col2im(cols, dxw, off, g);
      J.col2im(cols, dxj, off, g);
      assertClose(dxw, dxj, 1e-6, 1e-6, `${isa} col2im ${JSON.stringify(g)}`);
    }
  });
});

test('permute: float32 and int32 (bits moved as they are), several ranks', { skip }, () => {
  const cases: Array<[number[], number[]]> = [
    [[7], [0]], [[3, 5], [1, 0]], [[2, 3, 4], [2, 0, 1]], [[2, 1, 3, 5], [0, 2, 1, 3]], [[4, 3, 2, 5], [3, 1, 0, 2]], [[33, 17], [1, 0]],
  ];
  for (const [shape, perm] of cases) {
    const total = shape.reduce((a, b) => a * b, 1);
    const x = randf(total);
    x[0] = NaN;
    const yw = new Float32Array(total), yj = new Float32Array(total);
    W.permute(x, yw, shape, perm);
    J.permute(x, yj, shape, perm);
    assert.deepEqual(new Uint32Array(yw.buffer), new Uint32Array(yj.buffer), `permute f32 ${shape} ${perm}`);
    const xi = Int32Array.from({ length: total }, (_, i) => i * 7919 - 100000);
    const iw = new Int32Array(total), ij = new Int32Array(total);
    W.permute(xi, iw, shape, perm);
    J.permute(xi, ij, shape, perm);
    assert.deepEqual(iw, ij, `permute i32 ${shape} ${perm}`);
  }
});

test('adamw step vs the JS kernel', { skip }, () => {
  onEachIsa((isa) => {
    for (const n of [1, 7, 1001]) {
      const param = randf(n), grad = randf(n), m = randf(n, -0.1, 0.1), v = randf(n, 0, 0.1);
      const pw = copy(param), mw = copy(m), vw = copy(v), pj = copy(param), mj = copy(m), vj = copy(v);
      const hp = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.05, biasCorrection1: 1 - 0.9 ** 3, biasCorrection2: 1 - 0.95 ** 3 };
      W.adamw({ param: pw, grad, m: mw, v: vw, ...hp });
      J.adamw({ param: pj, grad, m: mj, v: vj, ...hp });
      assertClose(pw, pj, 1e-6, 1e-7, `${isa} adamw param n=${n}`);
      assertClose(mw, mj, 1e-6, 1e-8, `${isa} adamw m`);
      assertClose(vw, vj, 1e-6, 1e-9, `${isa} adamw v`);
    }
  });
});

// ---- plumbing ------------------------------------------------------------------------------

test('float64 calls go to the JS kernels (identical results)', { skip }, () => {
  const a = Float64Array.from(randf(6 * 5)), b = Float64Array.from(randf(5 * 7));
  const cw = new Float64Array(6 * 7), cj = new Float64Array(6 * 7);
  const g = { transA: false, transB: false, m: 6, n: 7, k: 5, alpha: 1, beta: 0, a, aOffset: 0, lda: 5, strideA: 0, b, bOffset: 0, ldb: 7,
    strideB: 0, cOffset: 0, ldc: 7, strideC: 0, batch: 1 };
  W.gemm({ ...g, c: cw });
  J.gemm({ ...g, c: cj });
  assert.deepEqual(cw, cj);
  const x = Float64Array.from(randf(33)), yw = new Float64Array(33), yj = new Float64Array(33);
  W.unary('gelu_erf', x, yw, 33);
  J.unary('gelu_erf', x, yj, 33);
  assert.deepEqual(yw, yj);
});

test('bad arguments throw RangeError instead of reading past an array', { skip }, () => {
  const { args } = gemmArgs({ m: 4, n: 5, k: 6, transA: false, transB: false, batch: 1, alpha: 1, beta: 0 });
  assert.throws(() => W.gemm({ ...args, m: 400 }), RangeError);
  assert.throws(() => W.gemm({ ...args, lda: 2 }), RangeError);
  assert.throws(() => W.unary('exp', new Float32Array(3), new Float32Array(2), 3), RangeError);
  assert.throws(() => W.sum(new Float32Array(5), new Float32Array(2), 2, 3, 1), RangeError);
  const seg = Int32Array.from([0, 3]);
  assert.throws(() => W.segmentFmaForward(new Float32Array(4), new Float32Array(4), new Float32Array(4), seg, new Float32Array(4), 2, 2, 2, false), RangeError);
  assert.throws(() => W.groupNormForward(new Float32Array(6), null, null, new Float32Array(6), new Float32Array(2), new Float32Array(2), 1, 3, 2, 2, 1e-5), RangeError);
  assert.throws(() => W.permute(new Float32Array(6), new Float32Array(6), [2, 3], [0, 0]), RangeError);
  // the module still works after the rejected calls
  const x = randf(9), yw = new Float32Array(9), yj = new Float32Array(9);
  W.unary('tanh', x, yw, 9);
  J.unary('tanh', x, yj, 9);
  assertClose(yw, yj, 4e-6, 0, 'tanh after errors');
});

const stFile = path.join(repoRoot, 'native', 'wasm', 'flextok_kernels.wasm');
const trapSkip = skip || (!existsSync(stFile) && 'flextok_kernels.wasm not built');
test('a trap in a kernel throws WasmTrap and leaves the module usable (stack pointer restored)', { skip: trapSkip }, () => {
  // a private instance of the single-threaded module (whichever build the backend loaded)
  const ex = instantiateKernelsSync(readFileSync(stFile));
  const sp = (ex as unknown as { __stack_pointer: WebAssembly.Global }).__stack_pointer;
  const top = Number(sp.value);
  // x points past the end of the memory: an out-of-bounds load
  assert.throws(() => ex.ft_unary(2, 0xffff_ff00 | 0, 0, 1000), WasmTrap);
  assert.equal(Number(sp.value), top);
  const p = ex.ft_alloc(64) >>> 0;
  const f32 = new Float32Array(ex.memory.buffer, p, 16);
  f32.set([0, 1, 2]);
  ex.ft_unary(2, p, p + 32, 3); // exp
  assert.deepEqual(Array.from(f32.subarray(8, 11)).map((v) => Math.round(v * 1e4) / 1e4), [1, 2.7183, 7.3891]);
});

test('large calls grow the wasm memory; later small calls still see fresh views', { skip }, () => {
  const n = 12_000_000; // 48 MB per operand: more than the arena and the initial memory hold
  const x = randf(n, -5, 5), y = new Float32Array(n);
  W.unary('sigmoid', x, y, n);
  for (const i of [0, 1, n >> 1, n - 1]) assert.ok(Math.abs(y[i] - 1 / (1 + Math.exp(-x[i]))) < 1e-6, `sigmoid[${i}]`);
  checkGemm({ m: 9, n: 7, k: 5, transA: false, transB: true, batch: 2, alpha: 1, beta: 0.5 }, false, 'gemm after growth');
});

test('FLEXTOK_BACKEND=wasm selects the wasm backend; backendInfo reports it', { skip }, () => {
  const saved = backendName();
  try {
    setBackend('wasm');
    assert.equal(backendName(), 'wasm');
    const info = backendInfo();
    assert.equal(info.name, 'wasm');
    assert.ok(['wasm-relaxed-simd', 'wasm-simd128', 'scalar'].includes(info.isa!), `${info.isa}`);
    assert.ok(info.threads >= 1);
  } finally {
    setBackend(saved);
  }
});

test('FLEXTOK_GEMM_KC reaches the wasm GEMM (its blocking regroups the k sums: other bits; the default KC: the same bits)', { skip }, () => {
  const code = `
    import { loadWasmKernels } from './src/tensor/backend_wasm.ts';
    const w = loadWasmKernels();
    const m = 24, n = 40, k = 1000;
    const fill = (len, seed) => Float32Array.from({ length: len }, (_, i) => (((i * 2654435761 + seed) >>> 0) % 1000) / 1000 - 0.5);
    const c = new Float32Array(m * n);
    w.gemm({ transA: false, transB: false, m, n, k, alpha: 1, beta: 0, a: fill(m * k, 1), aOffset: 0, lda: k, strideA: 0,
      b: fill(k * n, 2), bOffset: 0, ldb: n, strideB: 0, c, cOffset: 0, ldc: n, strideC: 0, batch: 1 });
    console.log(Buffer.from(c.buffer).toString('base64'));`;
  const bits = (kc: string | undefined): string => {
    const env: NodeJS.ProcessEnv = { ...process.env, FLEXTOK_BACKEND: 'wasm', FLEXTOK_WASM_THREADS: '', FLEXTOK_WASM_MODULE: '' };
    delete env.FLEXTOK_GEMM_KC;
    if (kc) env.FLEXTOK_GEMM_KC = kc;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000, env });
    assert.equal(r.status, 0, `child failed: ${r.stderr}`);
    return r.stdout.trim();
  };
  const dflt = bits(undefined);
  assert.notEqual(bits('64'), dflt, 'KC 64 sums k in other groups than the default');
  assert.equal(bits('512'), dflt, 'the default KC (512: 32 KiB L1 / 16 columns · 4 bytes) gives the same bits');
});

// ---- the multi-threaded build ----------------------------------------------------------------

const mtFile = path.join(repoRoot, 'native', 'wasm', 'flextok_kernels_mt.wasm');
const mtSkip = !existsSync(mtFile) ? 'threaded wasm kernels not built (npm run build:wasm -- --threads)' : false;

test('threaded build (FLEXTOK_WASM_THREADS=3): helpers run tasks, results match the JS kernels', { skip: mtSkip }, () => {
  // in a child process: the thread count is read when the module loads
  const code = `
    import { loadWasmKernels, waitForWasmHelpers, wasmHelperTasks, wasmInfo } from './src/tensor/backend_wasm.js';
    import { jsKernels as J } from './src/tensor/kernels_js/index.js';
    const W = loadWasmKernels();
    const helpers = waitForWasmHelpers(20000);
    let seed = 7;
    const rnd = (n) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5);
    const err = {};
    const cmp = (name, a, b) => { let e = 0; for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i]))); err[name] = e; };
    // a GEMM split over threads, and a batch of GEMMs (one task per matrix)
    for (const [m, n, k, batch] of [[301, 257, 190, 1], [40, 33, 65, 12]]) {
      const a = rnd(batch * m * k), b = rnd(batch * k * n);
      const g = (c) => ({ transA: false, transB: true, m, n, k, alpha: 1, beta: 0, a, aOffset: 0, lda: k, strideA: m * k,
        b, bOffset: 0, ldb: k, strideB: k * n, c, cOffset: 0, ldc: n, strideC: m * n, batch });
      const cw = new Float32Array(batch * m * n), cj = new Float32Array(batch * m * n);
      W.gemm(g(cw)); J.gemm(g(cj)); cmp('gemm' + batch, cw, cj);
    }
    // attention (tasks: batch × heads × query tiles forward, batch × heads backward)
    const B = 2, H = 4, L = 70, D = 32, q = rnd(B * L * H * D), k = rnd(B * L * H * D), v = rnd(B * L * H * D), dOut = rnd(B * L * H * D);
    const att = (K) => {
      const out = new Float32Array(q.length), lse = new Float32Array(B * H * L), dq = new Float32Array(q.length), dk = new Float32Array(q.length), dv = new Float32Array(q.length);
      const args = { q, k, v, out, lse, batch: B, heads: H, lq: L, lk: L, headDim: D, scale: 0.2, mask: null, maskBatchStride: 0, causal: true };
      K.attentionForward(args); K.attentionBackward({ ...args, dOut, dq, dk, dv });
      return [out, lse, dq, dk, dv];
    };
    const aw = att(W), aj = att(J);
    ['out', 'lse', 'dq', 'dk', 'dv'].forEach((nm, i) => cmp('attention ' + nm, aw[i], aj[i]));
    // row kernels split into chunks (layerNorm backward sums parameter gradients across tasks)
    const rows = 600, dim = 257, x = rnd(rows * dim), dy = rnd(rows * dim), w = rnd(dim);
    const ln = (K) => {
      const y = new Float32Array(rows * dim), mean = new Float32Array(rows), rstd = new Float32Array(rows);
      const dx = new Float32Array(rows * dim), dw = new Float32Array(dim), db = new Float32Array(dim);
      K.layerNormForward(x, w, null, y, mean, rstd, rows, dim, 1e-5); K.layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, dim);
      return [y, dx, dw, db];
    };
    const lw = ln(W), lj = ln(J);
    ['y', 'dx', 'dw', 'db'].forEach((nm, i) => cmp('layerNorm ' + nm, lw[i], lj[i]));
    const sw = new Float32Array(rows * dim), sj = new Float32Array(rows * dim);
    W.softmaxForward(x, sw, rows, dim); J.softmaxForward(x, sj, rows, dim); cmp('softmax', sw, sj);
    console.log(JSON.stringify({ helpers, tasks: wasmHelperTasks(), info: wasmInfo(), err }));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot, encoding: 'utf8', timeout: 120_000, env: { ...process.env, FLEXTOK_WASM_THREADS: '3', FLEXTOK_WASM_MODULE: '' },
  });
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  interface ChildReport { helpers: number; tasks: number; info: { threads: number; file: string }; err: Record<string, number> }
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as ChildReport;
  const worst = Math.max(...Object.values(out.err));
  console.log(`threaded wasm: ${out.helpers} helpers ran ${out.tasks} tasks; worst relative error vs JS ${worst.toExponential(2)}`);
  assert.equal(out.helpers, 2, 'both helpers started');
  assert.equal(out.info.threads, 3);
  assert.match(out.info.file, /flextok_kernels_mt(_relaxed)?\.wasm$/);
  assert.ok(out.tasks > 0, 'the helpers ran tasks');
  for (const [name, e] of Object.entries(out.err)) assert.ok(e < 2e-4, `${name}: max relative error ${e}`);
});

// ---- relaxed SIMD or SIMD128 ----------------------------------------------------------------

const relaxedFile = path.join(repoRoot, 'native', 'wasm', 'flextok_kernels_relaxed.wasm');
const relaxedSkip = skip || (!existsSync(relaxedFile) && 'relaxed-SIMD wasm kernels not built (npm run build:wasm -- --relaxed)');

/** What a child process with these FLEXTOK_WASM_* settings loads, and its GEMM's worst error against the JS kernels. */
function loadIn(env: Record<string, string>): { info: { isa: string; simd: string; file: string } | null; reason: string | null; err: number } {
  const code = `
    import { loadWasmKernels, wasmInfo, wasmUnavailableReason } from './src/tensor/backend_wasm.js';
    import { jsKernels as J } from './src/tensor/kernels_js/index.js';
    const W = loadWasmKernels();
    let err = -1;
    if (W) {
      const m = 67, n = 45, k = 300;
      const fill = (len, seed) => Float32Array.from({ length: len }, (_, i) => (((i * 2654435761 + seed) >>> 0) % 1000) / 1000 - 0.5);
      const g = (c) => ({ transA: false, transB: false, m, n, k, alpha: 1, beta: 0, a: fill(m * k, 1), aOffset: 0, lda: k, strideA: 0,
        b: fill(k * n, 2), bOffset: 0, ldb: n, strideB: 0, c, cOffset: 0, ldc: n, strideC: 0, batch: 1 });
      const cw = new Float32Array(m * n), cj = new Float32Array(m * n);
      W.gemm(g(cw)); J.gemm(g(cj));
      err = 0; for (let i = 0; i < cw.length; i++) err = Math.max(err, Math.abs(cw[i] - cj[i]) / (1 + Math.abs(cj[i])));
    }
    console.log(JSON.stringify({ info: wasmInfo(), reason: wasmUnavailableReason(), err }));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot, encoding: 'utf8', timeout: 60_000,
    env: { ...process.env, FLEXTOK_BACKEND: 'wasm', FLEXTOK_WASM_THREADS: '', FLEXTOK_WASM_MODULE: '', FLEXTOK_WASM_SIMD: '', ...env },
  });
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
}

test('the relaxed-SIMD build loads by default (Node 20: after turning on V8\'s flag); FLEXTOK_WASM_SIMD=simd128 loads the SIMD128 one; both compute the same GEMM', { skip: relaxedSkip }, () => {
  const auto = loadIn({});
  assert.equal(auto.reason, null);
  assert.equal(auto.info?.simd, 'wasm-relaxed-simd');
  assert.match(auto.info!.file, /flextok_kernels_relaxed\.wasm$/);
  const base = loadIn({ FLEXTOK_WASM_SIMD: 'simd128' });
  assert.equal(base.info?.simd, 'wasm-simd128');
  assert.match(base.info!.file, /flextok_kernels\.wasm$/);
  const forced = loadIn({ FLEXTOK_WASM_SIMD: 'relaxed', FLEXTOK_ISA: 'scalar' });
  assert.equal(forced.info?.isa, 'scalar');
  assert.equal(forced.info?.simd, 'wasm-relaxed-simd');
  for (const r of [auto, base, forced]) assert.ok(r.err >= 0 && r.err < 1e-5, `GEMM error ${r.err}`);
});

test('FLEXTOK_WASM_SIMD with an unknown value: the wasm kernels do not load and the reason names the choices', { skip: relaxedSkip }, () => {
  const r = loadIn({ FLEXTOK_WASM_SIMD: 'avx' });
  assert.equal(r.info, null);
  assert.match(r.reason ?? '', /FLEXTOK_WASM_SIMD=avx is not a choice: use relaxed .*simd128 or auto/);
});

test('the relaxed-SIMD module fails to validate without relaxed SIMD: the SIMD128 fallback is needed', { skip: relaxedSkip }, () => {
  // a fresh Node 20 process has no relaxed SIMD until the backend turns the flag on (Node 22+ has it by default)
  const code = `
    import { readFileSync } from 'node:fs';
    import { relaxedSimdSupported } from './src/tensor/kernels_wasm/module.js';
    console.log(JSON.stringify({ probe: relaxedSimdSupported(), module: WebAssembly.validate(readFileSync(${JSON.stringify(relaxedFile)})),
      base: WebAssembly.validate(readFileSync(${JSON.stringify(stFile)})) }));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { probe: boolean; module: boolean; base: boolean };
  assert.equal(out.base, true);
  assert.equal(out.module, out.probe, 'the probe predicts whether the relaxed module validates');
});
