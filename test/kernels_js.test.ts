// Tests of the pure TypeScript kernels against naive float64 formulas and finite-difference gradients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsKernels as K } from '../src/tensor/kernels_js/index.js';
import { roundToBf16 } from '../src/tensor/kernels_js/gemm.js';
import { erf, erfc } from '../src/tensor/kernels_js/erf.js';
import type { AttentionArgs, Conv2dGeom, FArr, GemmArgs, UnaryOp } from '../src/tensor/kernels.js';
import { mulberry32 } from './helpers/random.js';

const rng = mulberry32(12345);
function randn64(n: number, lo = -1, hi = 1): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng();
  return a;
}
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e) || !Number.isFinite(e)) { assert.ok(Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e)), `${what}[${i}]: ${a} vs ${e}`); continue; }
    const err = Math.abs(a - e);
    assert.ok(err <= tol * (1 + Math.abs(e)), `${what}[${i}]: got ${a}, expected ${e} (err ${err})`);
  }
}
/** Central-difference gradient of f with respect to every element of x (x is restored). */
function numericGrad(x: Float64Array, f: () => number, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const old = x[i];
    x[i] = old + h; const fp = f();
    x[i] = old - h; const fm = f();
    x[i] = old;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}
function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

// ---------------------------------------------------------------- gemm

function naiveGemm(g: GemmArgs): Float64Array {
  const c = Float64Array.from(g.c);
  for (let bi = 0; bi < g.batch; bi++) {
    const ao = g.aOffset + bi * g.strideA, bo = g.bOffset + bi * g.strideB, co = g.cOffset + bi * g.strideC;
    for (let i = 0; i < g.m; i++) {
      for (let j = 0; j < g.n; j++) {
        let s = 0;
        for (let p = 0; p < g.k; p++) {
          const av = g.transA ? g.a[ao + p * g.lda + i] : g.a[ao + i * g.lda + p];
          const bv = g.transB ? g.b[bo + j * g.ldb + p] : g.b[bo + p * g.ldb + j];
          s += av * bv;
        }
        const old = g.beta === 0 ? 0 : g.beta * g.c[co + i * g.ldc + j];
        c[co + i * g.ldc + j] = g.alpha * s + old;
      }
    }
  }
  return c;
}

function gemmCase(make: (n: number) => FArr, transA: boolean, transB: boolean, m: number, n: number, k: number, beta: number, broadcastB: boolean): { args: GemmArgs; expected: Float64Array } {
  const batch = 3;
  const lda = (transA ? m : k) + 2, ldb = (transB ? k : n) + 1, ldc = n + 3;
  const aRows = transA ? k : m, bRows = transB ? n : k;
  const strideA = aRows * lda + 1, strideB = broadcastB ? 0 : bRows * ldb + 2, strideC = m * ldc + 1;
  const aOffset = 3, bOffset = 2, cOffset = 5;
  const a = make(aOffset + batch * strideA + 4), b = make(bOffset + batch * Math.max(strideB, bRows * ldb) + 4), c = make(cOffset + batch * strideC + 4);
  a.set(randn64(a.length)); b.set(randn64(b.length)); c.set(randn64(c.length));
  if (beta === 0) {
    // Old C contents must be ignored, even NaN — but only inside the matrices; padding stays finite.
    for (let bi = 0; bi < batch; bi++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) c[cOffset + bi * strideC + i * ldc + j] = NaN;
  }
  const args: GemmArgs = { transA, transB, m, n, k, alpha: 1.5, beta, a, aOffset, lda, strideA, b, bOffset, ldb, strideB, c, cOffset, ldc, strideC, batch };
  return { args, expected: naiveGemm(args) };
}

test('gemm: all transposes, alpha/beta, offsets, leading dims, batch strides and broadcast (f64 and f32)', () => {
  for (const make of [(n: number) => new Float64Array(n), (n: number) => new Float32Array(n)]) {
    const tol = make(1) instanceof Float64Array ? 1e-13 : 1e-5;
    for (const transA of [false, true]) for (const transB of [false, true]) {
      for (const [m, n, k] of [[5, 7, 9], [1, 1, 1], [3, 4, 1], [6, 2, 13], [2, 9, 4]]) {
        for (const beta of [0, 0.5]) for (const broadcastB of [false, true]) {
          const { args, expected } = gemmCase(make, transA, transB, m, n, k, beta, broadcastB);
          K.gemm(args);
          assertClose(args.c, expected, tol, `gemm tA=${transA} tB=${transB} ${m}x${n}x${k} beta=${beta}`);
        }
      }
    }
  }
});

test('gemm: k = 0 and alpha = 0 give beta * C', () => {
  const c = new Float64Array([1, 2, 3, 4]);
  K.gemm({ transA: false, transB: false, m: 2, n: 2, k: 0, alpha: 1, beta: 2, a: new Float64Array(0), aOffset: 0, lda: 0, strideA: 0, b: new Float64Array(0), bOffset: 0, ldb: 2, strideB: 0, c, cOffset: 0, ldc: 2, strideC: 0, batch: 1 });
  assertClose(c, [2, 4, 6, 8], 0, 'k=0');
  const c2 = new Float64Array([NaN, NaN]);
  K.gemm({ transA: false, transB: false, m: 1, n: 2, k: 1, alpha: 0, beta: 0, a: new Float64Array([Infinity]), aOffset: 0, lda: 1, strideA: 0, b: new Float64Array([1, 2]), bOffset: 0, ldb: 2, strideB: 0, c: c2, cOffset: 0, ldc: 2, strideC: 0, batch: 1 });
  assertClose(c2, [0, 0], 0, 'alpha=0');
});

test('gemmBf16: rounds to bfloat16 (nearest even) and then multiplies', () => {
  assert.equal(roundToBf16(1), 1);
  assert.equal(roundToBf16(1 + 2 ** -8), 1); // tie → even
  assert.equal(roundToBf16(1 + 3 * 2 ** -8), 1 + 2 ** -6); // tie → even (up)
  assert.equal(roundToBf16(1 + 2 ** -8 + 2 ** -12), 1 + 2 ** -7); // above the tie
  assert.equal(roundToBf16(-3.0009765625), -3);
  assert.ok(Number.isNaN(roundToBf16(NaN)));
  assert.equal(roundToBf16(Infinity), Infinity);
  for (const transA of [false, true]) for (const transB of [false, true]) {
    const { args } = gemmCase((n) => new Float32Array(n), transA, transB, 5, 6, 7, 0.5, false);
    const rounded: GemmArgs = { ...args, a: Float32Array.from(args.a, roundToBf16), b: Float32Array.from(args.b, roundToBf16) };
    const expected = naiveGemm(rounded);
    const aBefore = Float32Array.from(args.a);
    K.gemmBf16(args);
    assertClose(args.c, expected, 1e-5, 'gemmBf16');
    assertClose(args.a, aBefore, 0, 'gemmBf16 leaves A untouched');
  }
});

// ---------------------------------------------------------------- unary

test('erf and erfc match reference values to ~1e-15 relative', () => {
  const ref: [number, number][] = [[0.1, 0.1124629160182848922], [0.5, 0.5204998778130465377], [1, 0.8427007929497148693], [2, 0.9953222650189527342], [2.5, 0.9995930479825550411], [-1.5, -0.9661051464753107271]];
  for (const [x, v] of ref) assert.ok(Math.abs(erf(x) - v) <= 2e-15 * Math.abs(v), `erf(${x})`);
  const refc: [number, number][] = [[1, 0.1572992070502851307], [2, 0.004677734981047265838], [3, 2.209049699858544137e-5], [5, 1.5374597944280348502e-12], [-1, 1.8427007929497148693]];
  for (const [x, v] of refc) assert.ok(Math.abs(erfc(x) - v) <= 2e-15 * Math.abs(v), `erfc(${x})`);
});

const unaryRefs: Record<UnaryOp, { f: (x: number) => number; lo: number; hi: number }> = {
  neg: { f: (x) => -x, lo: -3, hi: 3 },
  abs: { f: Math.abs, lo: -3, hi: 3 },
  exp: { f: Math.exp, lo: -3, hi: 3 },
  log: { f: Math.log, lo: 0.1, hi: 4 },
  sqrt: { f: Math.sqrt, lo: 0.1, hi: 4 },
  rsqrt: { f: (x) => 1 / Math.sqrt(x), lo: 0.1, hi: 4 },
  tanh: { f: Math.tanh, lo: -3, hi: 3 },
  atanh: { f: (x) => 0.5 * Math.log((1 + x) / (1 - x)), lo: -0.9, hi: 0.9 },
  sigmoid: { f: (x) => 1 / (1 + Math.exp(-x)), lo: -8, hi: 8 },
  silu: { f: (x) => x / (1 + Math.exp(-x)), lo: -8, hi: 8 },
  gelu_tanh: { f: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))), lo: -5, hi: 5 },
  gelu_erf: { f: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)), lo: -5, hi: 5 },
  relu: { f: (x) => Math.max(x, 0), lo: -3, hi: 3 },
  sin: { f: Math.sin, lo: -4, hi: 4 },
  cos: { f: Math.cos, lo: -4, hi: 4 },
  square: { f: (x) => x * x, lo: -3, hi: 3 },
  recip: { f: (x) => 1 / x, lo: 0.2, hi: 4 },
};

test('unary forward matches formulas; unaryBackward matches finite differences and accumulates', () => {
  for (const op of Object.keys(unaryRefs) as UnaryOp[]) {
    const { f, lo, hi } = unaryRefs[op];
    const n = 41;
    const x = randn64(n, lo, hi);
    if (op === 'abs' || op === 'relu') for (let i = 0; i < n; i++) if (Math.abs(x[i]) < 1e-3) x[i] = 0.5; // keep away from the kink
    const y = new Float64Array(n);
    K.unary(op, x, y, n);
    assertClose(y, Array.from(x, f), 1e-14, `unary ${op}`);
    // aliasing x == y
    const xa = Float64Array.from(x);
    K.unary(op, xa, xa, n);
    assertClose(xa, y, 0, `unary ${op} in place`);
    // float32 path
    const x32 = Float32Array.from(x), y32 = new Float32Array(n);
    K.unary(op, x32, y32, n);
    assertClose(y32, Array.from(x32, f), 1e-6, `unary ${op} f32`);
    const dy = randn64(n);
    const dx = new Float64Array(n);
    K.unaryBackward(op, x, y, dy, dx, n, false);
    const h = 1e-6;
    const expected = Array.from(x, (v, i) => ((f(v + h) - f(v - h)) / (2 * h)) * dy[i]);
    assertClose(dx, expected, 1e-7, `unaryBackward ${op}`);
    const dxAcc = Float64Array.from(dy);
    K.unaryBackward(op, x, y, dy, dxAcc, n, true);
    assertClose(dxAcc, Array.from(dx, (v, i) => v + dy[i]), 1e-14, `unaryBackward ${op} accumulate`);
  }
});

test('gelu_erf keeps relative accuracy in the far negative tail', () => {
  const y = new Float64Array(1);
  K.unary('gelu_erf', new Float64Array([-8]), y, 1);
  // 0.5 * -8 * erfc(8/√2) = -4 * 1.2441921148543639e-15
  assert.ok(Math.abs(y[0] / (-4 * 1.2441921148543639e-15) - 1) < 1e-12, `${y[0]}`);
});

// ---------------------------------------------------------------- binary

function contiguousStrides(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) { s[d] = acc; acc *= shape[d]; }
  return s;
}
const binaryRefs = {
  add: (a: number, b: number) => a + b,
  sub: (a: number, b: number) => a - b,
  mul: (a: number, b: number) => a * b,
  div: (a: number, b: number) => a / b,
  pow: (a: number, b: number) => Math.pow(a, b),
  max: (a: number, b: number) => Math.max(a, b),
  min: (a: number, b: number) => Math.min(a, b),
};

test('binary: every op with contiguous, broadcast and transposed strides', () => {
  const cases: { shape: number[]; aShape: number[]; bShape: number[]; transposeA?: boolean }[] = [
    { shape: [3, 4, 5], aShape: [3, 4, 5], bShape: [3, 4, 5] },
    { shape: [3, 4, 5], aShape: [3, 1, 5], bShape: [1, 4, 5] },
    { shape: [3, 4, 5], aShape: [3, 4, 5], bShape: [1, 1, 1] },
    { shape: [2, 3, 1, 5], aShape: [2, 1, 1, 5], bShape: [1, 3, 1, 1] },
    { shape: [7], aShape: [1], bShape: [7] },
    { shape: [], aShape: [], bShape: [] },
    { shape: [4, 6], aShape: [6, 4], bShape: [4, 1], transposeA: true },
    { shape: [0, 3], aShape: [0, 3], bShape: [1, 3] },
  ];
  for (const [op, f] of Object.entries(binaryRefs) as [keyof typeof binaryRefs, (a: number, b: number) => number][]) {
    for (const cs of cases) {
      const nA = cs.aShape.reduce((p, v) => p * v, 1), nB = cs.bShape.reduce((p, v) => p * v, 1);
      const a = randn64(nA, 0.5, 2), b = randn64(nB, -2, 2);
      let aStrides = contiguousStrides(cs.aShape).map((s, d) => (cs.aShape[d] === 1 ? 0 : s));
      if (cs.transposeA) aStrides = [aStrides[1], aStrides[0]];
      const bStrides = contiguousStrides(cs.bShape).map((s, d) => (cs.bShape[d] === 1 ? 0 : s));
      const total = cs.shape.reduce((p, v) => p * v, 1);
      const out = new Float64Array(total);
      K.binary({ op, a, b, out, shape: cs.shape, aStrides, bStrides });
      const expected = new Float64Array(total);
      const cStr = contiguousStrides(cs.shape);
      for (let flat = 0; flat < total; flat++) {
        let ia = 0, ib = 0;
        for (let d = 0; d < cs.shape.length; d++) {
          const idx = Math.floor(flat / cStr[d]) % cs.shape[d];
          ia += idx * aStrides[d];
          ib += idx * bStrides[d];
        }
        expected[flat] = f(a[ia], b[ib]);
      }
      assertClose(out, expected, 0, `binary ${op} ${JSON.stringify(cs.shape)}`);
    }
  }
});

test('binary max/min propagate NaN', () => {
  const out = new Float32Array(2);
  K.binary({ op: 'max', a: new Float32Array([NaN, 1]), b: new Float32Array([1, NaN]), out, shape: [2], aStrides: [1], bStrides: [1] });
  assert.ok(Number.isNaN(out[0]) && Number.isNaN(out[1]));
});

// ---------------------------------------------------------------- reductions

test('sum and max over [outer, red, inner] views; argmax takes the first maximum', () => {
  for (const [outer, red, inner] of [[3, 5, 4], [2, 7, 1], [1, 1, 6], [4, 3, 2]]) {
    const x = randn64(outer * red * inner);
    x[inner] = x[0]; // a tie between r = 0 and r = 1 at (0, 0)
    const s = new Float64Array(outer * inner), m = new Float64Array(outer * inner), am = new Int32Array(outer * inner);
    K.sum(x, s, outer, red, inner);
    K.max(x, m, am, outer, red, inner);
    const es = new Float64Array(outer * inner), em = new Float64Array(outer * inner), eam = new Int32Array(outer * inner);
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) {
      let acc = 0, best = -Infinity, bestR = -1;
      for (let r = 0; r < red; r++) {
        const v = x[(o * red + r) * inner + i];
        acc += v;
        if (v > best) { best = v; bestR = r; }
      }
      es[o * inner + i] = acc; em[o * inner + i] = best; eam[o * inner + i] = bestR;
    }
    assertClose(s, es, 1e-14, 'sum');
    assertClose(m, em, 0, 'max');
    assert.deepEqual(Array.from(am), Array.from(eam), 'argmax');
  }
  const m = new Float32Array(1), am = new Int32Array(1);
  K.max(new Float32Array([1, 5, 5, 2]), m, am, 1, 4, 1);
  assert.equal(am[0], 1);
});

// ---------------------------------------------------------------- permute

test('permute: 2-D, 3-D and 4-D permutations, float and Int32', () => {
  const cases: [number[], number[]][] = [[[5, 7], [1, 0]], [[3, 4, 5], [2, 0, 1]], [[3, 4, 5], [0, 2, 1]], [[2, 3, 4, 5], [0, 2, 1, 3]], [[2, 3, 4, 5], [3, 1, 0, 2]], [[2, 1, 3], [1, 2, 0]], [[40, 37], [1, 0]], [[4, 5], [0, 1]]];
  for (const [shape, perm] of cases) {
    const n = shape.reduce((p, v) => p * v, 1);
    const x = new Int32Array(n);
    for (let i = 0; i < n; i++) x[i] = i * 3 + 1;
    const y = new Int32Array(n);
    K.permute(x, y, shape, perm);
    const xStr = contiguousStrides(shape);
    const yShape = perm.map((p) => shape[p]);
    const yStr = contiguousStrides(yShape);
    const expected = new Int32Array(n);
    for (let flat = 0; flat < n; flat++) {
      let xi = 0;
      for (let d = 0; d < yShape.length; d++) xi += (Math.floor(flat / yStr[d]) % yShape[d]) * xStr[perm[d]];
      expected[flat] = x[xi];
    }
    assert.deepEqual(Array.from(y), Array.from(expected), `permute ${shape} ${perm}`);
    const yf = new Float32Array(n);
    K.permute(Float32Array.from(x), yf, shape, perm);
    assert.deepEqual(Array.from(yf), Array.from(expected));
  }
});

// ---------------------------------------------------------------- softmax

test('softmax and log-softmax forward match formulas; backwards match finite differences', () => {
  const rows = 3, dim = 7;
  const x = randn64(rows * dim, -3, 3);
  x[3] = 900; // large values must not overflow
  const y = new Float64Array(rows * dim), ly = new Float64Array(rows * dim);
  K.softmaxForward(x, y, rows, dim);
  K.logSoftmaxForward(x, ly, rows, dim);
  const ey = new Float64Array(rows * dim), ely = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    const row = Array.from(x.subarray(r * dim, (r + 1) * dim));
    const m = Math.max(...row);
    const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
    row.forEach((v, j) => { ey[r * dim + j] = Math.exp(v - m) / z; ely[r * dim + j] = v - m - Math.log(z); });
  }
  assertClose(y, ey, 1e-14, 'softmax');
  assertClose(ly, ely, 1e-14, 'logSoftmax');
  x[3] = 0.3;
  const c = randn64(rows * dim);
  const tmp = new Float64Array(rows * dim);
  for (const [fwd, bwd, name] of [[K.softmaxForward, K.softmaxBackward, 'softmax'], [K.logSoftmaxForward, K.logSoftmaxBackward, 'logSoftmax']] as const) {
    const loss = () => { fwd(x, tmp, rows, dim); return dot(tmp, c); };
    const num = numericGrad(x, loss);
    const yy = new Float64Array(rows * dim), dx = new Float64Array(rows * dim);
    fwd(x, yy, rows, dim);
    bwd(yy, c, dx, rows, dim);
    assertClose(dx, num, 1e-7, `${name} backward`);
  }
});

// ---------------------------------------------------------------- norms

test('layerNorm and rmsNorm: forward formulas and backward by finite differences (with and without affine)', () => {
  const rows = 3, dim = 9, eps = 1e-5;
  const x = randn64(rows * dim, -2, 2), w = randn64(dim, 0.5, 1.5), b = randn64(dim);
  const c = randn64(rows * dim);
  for (const affine of [true, false]) {
    const ww = affine ? w : null, bb = affine ? b : null;
    const y = new Float64Array(rows * dim), mean = new Float64Array(rows), rstd = new Float64Array(rows);
    K.layerNormForward(x, ww, bb, y, mean, rstd, rows, dim, eps);
    const ey = new Float64Array(rows * dim);
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * dim, (r + 1) * dim);
      const mu = row.reduce((s, v) => s + v, 0) / dim;
      const va = row.reduce((s, v) => s + (v - mu) ** 2, 0) / dim;
      for (let j = 0; j < dim; j++) ey[r * dim + j] = ((row[j] - mu) / Math.sqrt(va + eps)) * (affine ? w[j] : 1) + (affine ? b[j] : 0);
    }
    assertClose(y, ey, 1e-13, 'layerNorm forward');
    const tmp = new Float64Array(rows * dim), tm = new Float64Array(rows), tr = new Float64Array(rows);
    const lnLoss = () => { K.layerNormForward(x, ww, bb, tmp, tm, tr, rows, dim, eps); return dot(tmp, c); };
    const dx = new Float64Array(rows * dim), dw = new Float64Array(dim), db = new Float64Array(dim);
    K.layerNormBackward(x, ww, mean, rstd, c, dx, affine ? dw : null, affine ? db : null, rows, dim);
    assertClose(dx, numericGrad(x, lnLoss), 1e-7, 'layerNorm dx');
    if (affine) {
      assertClose(dw, numericGrad(w, lnLoss), 1e-7, 'layerNorm dw');
      assertClose(db, numericGrad(b, lnLoss), 1e-7, 'layerNorm db');
    }

    const rstd2 = new Float64Array(rows);
    K.rmsNormForward(x, ww, y, rstd2, rows, dim, eps);
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * dim, (r + 1) * dim);
      const ms = row.reduce((s, v) => s + v * v, 0) / dim;
      for (let j = 0; j < dim; j++) ey[r * dim + j] = (row[j] / Math.sqrt(ms + eps)) * (affine ? w[j] : 1);
    }
    assertClose(y, ey, 1e-13, 'rmsNorm forward');
    const rmsLoss = () => { K.rmsNormForward(x, ww, tmp, tr, rows, dim, eps); return dot(tmp, c); };
    K.rmsNormBackward(x, ww, rstd2, c, dx, affine ? dw : null, rows, dim);
    assertClose(dx, numericGrad(x, rmsLoss), 1e-7, 'rmsNorm dx');
    if (affine) assertClose(dw, numericGrad(w, rmsLoss), 1e-7, 'rmsNorm dw');
  }
});

test('groupNorm: forward formula and backward by finite differences', () => {
  const n = 2, channels = 6, spatial = 5, groups = 3, eps = 1e-5;
  const size = n * channels * spatial;
  const x = randn64(size, -2, 2), w = randn64(channels, 0.5, 1.5), b = randn64(channels);
  const c = randn64(size);
  for (const affine of [true, false]) {
    const ww = affine ? w : null, bb = affine ? b : null;
    const y = new Float64Array(size), mean = new Float64Array(n * groups), rstd = new Float64Array(n * groups);
    K.groupNormForward(x, ww, bb, y, mean, rstd, n, channels, spatial, groups, eps);
    const ey = new Float64Array(size);
    const cpg = channels / groups;
    for (let s = 0; s < n; s++) for (let g = 0; g < groups; g++) {
      const vals: number[] = [];
      for (let ch = g * cpg; ch < (g + 1) * cpg; ch++) for (let p = 0; p < spatial; p++) vals.push(x[(s * channels + ch) * spatial + p]);
      const mu = vals.reduce((a, v) => a + v, 0) / vals.length;
      const va = vals.reduce((a, v) => a + (v - mu) ** 2, 0) / vals.length;
      for (let ch = g * cpg; ch < (g + 1) * cpg; ch++) for (let p = 0; p < spatial; p++) {
        const i = (s * channels + ch) * spatial + p;
        ey[i] = ((x[i] - mu) / Math.sqrt(va + eps)) * (affine ? w[ch] : 1) + (affine ? b[ch] : 0);
      }
    }
    assertClose(y, ey, 1e-13, 'groupNorm forward');
    const tmp = new Float64Array(size), tm = new Float64Array(n * groups), tr = new Float64Array(n * groups);
    const loss = () => { K.groupNormForward(x, ww, bb, tmp, tm, tr, n, channels, spatial, groups, eps); return dot(tmp, c); };
    const dx = new Float64Array(size), dw = new Float64Array(channels), db = new Float64Array(channels);
    K.groupNormBackward(x, ww, mean, rstd, c, dx, affine ? dw : null, affine ? db : null, n, channels, spatial, groups);
    assertClose(dx, numericGrad(x, loss), 1e-7, 'groupNorm dx');
    if (affine) {
      assertClose(dw, numericGrad(w, loss), 1e-7, 'groupNorm dw');
      assertClose(db, numericGrad(b, loss), 1e-7, 'groupNorm db');
    }
  }
});

// ---------------------------------------------------------------- im2col / col2im

test('im2col matches direct indexing and col2im is its adjoint', () => {
  const geoms: Conv2dGeom[] = [
    { channels: 2, height: 5, width: 6, kh: 3, kw: 3, strideH: 1, strideW: 1, padTop: 1, padLeft: 1, outH: 5, outW: 6 },
    { channels: 3, height: 7, width: 5, kh: 3, kw: 2, strideH: 2, strideW: 2, padTop: 1, padLeft: 0, outH: 4, outW: 3 },
    { channels: 1, height: 8, width: 8, kh: 4, kw: 4, strideH: 4, strideW: 4, padTop: 0, padLeft: 0, outH: 2, outW: 2 },
  ];
  for (const g of geoms) {
    const xOffset = 3;
    const x = randn64(xOffset + g.channels * g.height * g.width);
    const rowsN = g.channels * g.kh * g.kw, colLen = g.outH * g.outW;
    const cols = new Float64Array(rowsN * colLen).fill(NaN);
    K.im2col(x, xOffset, cols, g);
    const expected = new Float64Array(rowsN * colLen);
    for (let ch = 0; ch < g.channels; ch++) for (let ki = 0; ki < g.kh; ki++) for (let kj = 0; kj < g.kw; kj++)
      for (let oh = 0; oh < g.outH; oh++) for (let ow = 0; ow < g.outW; ow++) {
        const ih = oh * g.strideH - g.padTop + ki, iw = ow * g.strideW - g.padLeft + kj;
        const inside = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width;
        expected[((ch * g.kh + ki) * g.kw + kj) * colLen + oh * g.outW + ow] = inside ? x[xOffset + (ch * g.height + ih) * g.width + iw] : 0;
      }
    assertClose(cols, expected, 0, 'im2col');
    // <im2col(x), c> == <x, col2im(c)>, and col2im accumulates.
    const c = randn64(rowsN * colLen);
    const dx = new Float64Array(x.length);
    dx[0] = 7;
    K.col2im(c, dx, xOffset, g);
    assert.equal(dx[0], 7);
    const lhs = dot(cols, c), rhs = dot(x.subarray(xOffset), dx.subarray(xOffset));
    assert.ok(Math.abs(lhs - rhs) < 1e-12, `adjoint ${lhs} vs ${rhs}`);
  }
});

// ---------------------------------------------------------------- attention

function naiveAttention(a: AttentionArgs): { out: Float64Array; lse: Float64Array } {
  const { batch: B, heads: H, lq, lk, headDim: D } = a;
  const out = new Float64Array(B * lq * H * D), lse = new Float64Array(B * H * lq);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < lq; i++) {
    const s: number[] = [];
    const ok: boolean[] = [];
    for (let j = 0; j < lk; j++) {
      let d = 0;
      for (let e = 0; e < D; e++) d += a.q[((b * lq + i) * H + h) * D + e] * a.k[((b * lk + j) * H + h) * D + e];
      s.push(d * a.scale);
      ok.push((a.mask === null || a.mask[b * a.maskBatchStride + i * lk + j] !== 0) && (!a.causal || j <= i));
    }
    const allowed = s.filter((_, j) => ok[j]);
    if (allowed.length === 0) { lse[(b * H + h) * lq + i] = -Infinity; continue; }
    const m = Math.max(...allowed);
    const z = allowed.reduce((t, v) => t + Math.exp(v - m), 0);
    lse[(b * H + h) * lq + i] = m + Math.log(z);
    for (let j = 0; j < lk; j++) {
      if (!ok[j]) continue;
      const p = Math.exp(s[j] - m) / z;
      for (let e = 0; e < D; e++) out[((b * lq + i) * H + h) * D + e] += p * a.v[((b * lk + j) * H + h) * D + e];
    }
  }
  return { out, lse };
}

interface MaskCase { name: string; lq: number; lk: number; mask: (b: number, i: number, j: number) => boolean; perBatch: boolean; causal: boolean }
const maskCases: MaskCase[] = [
  { name: 'none', lq: 5, lk: 7, mask: () => true, perBatch: false, causal: false },
  { name: 'causal', lq: 6, lk: 6, mask: () => true, perBatch: false, causal: true },
  { name: 'block-diagonal', lq: 7, lk: 7, mask: (_b, i, j) => Math.floor(i / 3) === Math.floor(j / 3), perBatch: false, causal: false },
  // 4 patch tokens attend to patches; 3 registers attend to all patches and causally among registers.
  { name: 'causal-among-registers', lq: 7, lk: 7, mask: (_b, i, j) => (i < 4 ? j < 4 : j < 4 || j <= i), perBatch: false, causal: false },
  { name: 'per-batch with a fully masked row', lq: 5, lk: 6, mask: (b, i, j) => !(b === 1 && i === 2) && (j + b) % 3 !== 0, perBatch: true, causal: false },
  { name: 'causal + mask with a fully masked row', lq: 5, lk: 5, mask: (_b, i, j) => i !== 3 && j !== 1, perBatch: false, causal: true },
];

function makeAttention(mc: MaskCase, make: (n: number) => FArr): AttentionArgs {
  const B = 2, H = 3, D = 4;
  const q = make(B * mc.lq * H * D), k = make(B * mc.lk * H * D), v = make(B * mc.lk * H * D);
  q.set(randn64(q.length, -1.5, 1.5)); k.set(randn64(k.length, -1.5, 1.5)); v.set(randn64(v.length));
  const maskB = mc.perBatch ? B : 1;
  const mask = new Uint8Array(maskB * mc.lq * mc.lk);
  for (let b = 0; b < maskB; b++) for (let i = 0; i < mc.lq; i++) for (let j = 0; j < mc.lk; j++) mask[(b * mc.lq + i) * mc.lk + j] = mc.mask(b, i, j) ? 1 : 0;
  const noMask = mc.name === 'none' || mc.name === 'causal';
  return {
    q, k, v, out: make(q.length).fill(NaN), lse: make(B * H * mc.lq).fill(NaN),
    batch: B, heads: H, lq: mc.lq, lk: mc.lk, headDim: D, scale: 1 / Math.sqrt(D),
    mask: noMask ? null : mask, maskBatchStride: mc.perBatch ? mc.lq * mc.lk : 0, causal: mc.causal,
  };
}

test('attentionForward matches a naive softmax for every mask kind (f64 and f32)', () => {
  for (const mc of maskCases) {
    for (const make of [(n: number) => new Float64Array(n), (n: number) => new Float32Array(n)]) {
      const a = makeAttention(mc, make);
      K.attentionForward(a);
      const { out, lse } = naiveAttention(a);
      const tol = a.q instanceof Float64Array ? 1e-13 : 1e-5;
      assertClose(a.out, out, tol, `attention out ${mc.name}`);
      assertClose(a.lse, lse, tol, `attention lse ${mc.name}`);
    }
  }
});

test('attentionBackward matches finite differences for every mask kind', () => {
  for (const mc of maskCases) {
    const a = makeAttention(mc, (n) => new Float64Array(n));
    K.attentionForward(a);
    const dOut = randn64(a.out.length);
    const dq = new Float64Array(a.q.length).fill(NaN), dk = new Float64Array(a.k.length).fill(NaN), dv = new Float64Array(a.v.length).fill(NaN);
    K.attentionBackward({ ...a, dOut, dq, dk, dv });
    const scratch: AttentionArgs = { ...a, out: new Float64Array(a.out.length), lse: new Float64Array(a.lse.length) };
    const loss = () => { K.attentionForward(scratch); return dot(scratch.out, dOut); };
    assertClose(dq, numericGrad(a.q as Float64Array, loss), 1e-7, `attention dq ${mc.name}`);
    assertClose(dk, numericGrad(a.k as Float64Array, loss), 1e-7, `attention dk ${mc.name}`);
    assertClose(dv, numericGrad(a.v as Float64Array, loss), 1e-7, `attention dv ${mc.name}`);
  }
});

// ---------------------------------------------------------------- adamw

test('adamw: one decoupled-weight-decay step matches the formula', () => {
  const n = 11;
  const param = Float32Array.from(randn64(n)), grad = Float32Array.from(randn64(n));
  const m = Float32Array.from(randn64(n, -0.1, 0.1)), v = Float32Array.from(randn64(n, 0, 0.1));
  const lr = 1e-2, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, wd = 0.05, t = 3;
  const bc1 = 1 - beta1 ** t, bc2 = 1 - beta2 ** t;
  const ep = new Float64Array(n), em = new Float64Array(n), ev = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    em[i] = beta1 * m[i] + (1 - beta1) * grad[i];
    ev[i] = beta2 * v[i] + (1 - beta2) * grad[i] ** 2;
    const p = param[i] - lr * wd * param[i];
    ep[i] = p - (lr * (em[i] / bc1)) / (Math.sqrt(ev[i] / bc2) + eps);
  }
  K.adamw({ param, grad, m, v, lr, beta1, beta2, eps, weightDecay: wd, biasCorrection1: bc1, biasCorrection2: bc2 });
  assertClose(param, ep, 1e-6, 'adamw param');
  assertClose(m, em, 1e-6, 'adamw m');
  assertClose(v, ev, 1e-6, 'adamw v');
});
