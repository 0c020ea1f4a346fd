// Tests of the elementwise, reduction, shape and indexing ops (src/tensor/ops.ts): forward against
// naive float64 formulas and float32 against float64, gradients against central differences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng, Tensor } from '../src/tensor/index.js';
import { assertClose, checkOp, gradcheck, rand64, randAwayFromZero } from './helpers/gradcheck.js';

const rng = new Rng(20240601);

/** Contiguous strides of a shape. */
function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Iterate over every multi-index of a shape in row-major order. */
function forEachIndex(shape: readonly number[], fn: (idx: number[], flat: number) => void): void {
  const n = shape.reduce((a, b) => a * b, 1);
  const idx = new Array<number>(shape.length).fill(0);
  for (let f = 0; f < n; f++) {
    fn(idx, f);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

/** Naive numpy-style broadcast of a binary function. */
function broadcastRef(sa: readonly number[], sb: readonly number[], f: (x: number, y: number) => number) {
  const nd = Math.max(sa.length, sb.length);
  const pa = [...new Array(nd - sa.length).fill(1), ...sa];
  const pb = [...new Array(nd - sb.length).fill(1), ...sb];
  const out = pa.map((d, i) => Math.max(d, pb[i]));
  const ta = strides(pa), tb = strides(pb);
  return (a: Float64Array, b: Float64Array): Float64Array => {
    const r = new Float64Array(out.reduce((x, y) => x * y, 1));
    forEachIndex(out, (idx, flat) => {
      let ia = 0, ib = 0;
      for (let d = 0; d < nd; d++) {
        if (pa[d] !== 1) ia += idx[d] * ta[d];
        if (pb[d] !== 1) ib += idx[d] * tb[d];
      }
      r[flat] = f(a[ia], b[ib]);
    });
    return r;
  };
}

// ---------------------------------------------------------------------------------------------
// binary ops

const binaryCases: { name: string; op: (a: Tensor, b: Tensor) => Tensor; f: (x: number, y: number) => number; positiveA?: boolean; awayB?: boolean }[] = [
  { name: 'add', op: T.add, f: (x, y) => x + y },
  { name: 'sub', op: T.sub, f: (x, y) => x - y },
  { name: 'mul', op: T.mul, f: (x, y) => x * y },
  { name: 'div', op: T.div, f: (x, y) => x / y, awayB: true },
  { name: 'pow', op: T.pow, f: (x, y) => Math.pow(x, y), positiveA: true },
  { name: 'maximum', op: T.maximum, f: (x, y) => Math.max(x, y) },
  { name: 'minimum', op: T.minimum, f: (x, y) => Math.min(x, y) },
];

const broadcastPairs: [number[], number[]][] = [
  [[2, 3], [2, 3]],
  [[2, 3, 4], [4]],
  [[2, 1, 4], [3, 1]],
  [[1, 3], [2, 1]],
  [[2, 3], []],
];

for (const bc of binaryCases) {
  test(`${bc.name}: broadcasting forward and gradients`, () => {
    for (const [sa, sb] of broadcastPairs) {
      // pow: positive bases (and exponents, as operands are also swapped below)
      const a = bc.positiveA ? rand64(sa, rng, 0.5, 2) : rand64(sa, rng, -1, 1);
      let b = bc.awayB ? randAwayFromZero(sb, rng, 0.5, 2) : bc.positiveA ? rand64(sb, rng, 0.5, 2) : rand64(sb, rng, -1, 1);
      if (bc.name === 'maximum' || bc.name === 'minimum') {
        // keep |a − b| > h so the finite differences do not straddle the kink; a ≠ b (no ties)
        b = rand64(sb, rng, -1, 1);
        for (let i = 0; i < b.size; i++) b.f[i] = Math.round(b.f[i] * 8) / 8 + 1 / 16;
      }
      for (const [x, y] of [[a, b], [b, a]] as [Tensor, Tensor][]) {
        checkOp({ label: `${bc.name} [${x.shape}] ∘ [${y.shape}]`, inputs: [x, y], fn: bc.op, ref: broadcastRef(x.shape, y.shape, bc.f) });
      }
    }
  });
}

test('binary ops accept scalar numbers on either side', () => {
  const x = rand64([2, 3], rng, 0.5, 2);
  checkOp({ label: 'add(x, 2.5)', inputs: [x], fn: (t) => T.add(t, 2.5), ref: (d) => d.map((v) => v + 2.5) });
  checkOp({ label: 'sub(1, x)', inputs: [x], fn: (t) => T.sub(1, t), ref: (d) => d.map((v) => 1 - v) });
  checkOp({ label: 'mul(x, -3)', inputs: [x], fn: (t) => T.mul(t, -3), ref: (d) => d.map((v) => v * -3) });
  checkOp({ label: 'div(2, x)', inputs: [x], fn: (t) => T.div(2, t), ref: (d) => d.map((v) => 2 / v) });
  checkOp({ label: 'pow(x, 3)', inputs: [x], fn: (t) => T.pow(t, 3), ref: (d) => d.map((v) => v ** 3) });
  checkOp({ label: 'pow(x, 0.5)', inputs: [x], fn: (t) => T.pow(t, 0.5), ref: (d) => d.map((v) => Math.sqrt(v)) });
  checkOp({ label: 'pow(2, x)', inputs: [x], fn: (t) => T.pow(2, t), ref: (d) => d.map((v) => 2 ** v) });
  checkOp({ label: 'maximum(x, 1)', inputs: [T.add(x, 0.003)], fn: (t) => T.maximum(t, 1), ref: (d) => d.map((v) => Math.max(v, 1)) });
  checkOp({ label: 'minimum(1, x)', inputs: [T.add(x, 0.003)], fn: (t) => T.minimum(1, t), ref: (d) => d.map((v) => Math.min(v, 1)) });
  assert.throws(() => T.add(1 as never, 2 as never), /at least one operand/);
  assert.throws(() => T.add(Tensor.zeros([2], 'float32'), Tensor.zeros([2], 'float64')), /dtype mismatch/);
  assert.throws(() => T.add(Tensor.zeros([2, 3]), Tensor.zeros([4])), /cannot be broadcast/);
});

test('maximum/minimum: gradient goes to the selected side (x on ties)', () => {
  const x = Tensor.from([1, 5, 3], [3], 'float64').requireGrad();
  const y = Tensor.from([2, 4, 3], [3], 'float64').requireGrad();
  T.sum(T.maximum(x, y)).backward();
  assert.deepEqual(x.grad!.toArray(), [0, 1, 1]);
  assert.deepEqual(y.grad!.toArray(), [1, 0, 0]);
  x.grad = y.grad = null;
  T.sum(T.minimum(x, y)).backward();
  assert.deepEqual(x.grad!.toArray(), [1, 0, 1]);
  assert.deepEqual(y.grad!.toArray(), [0, 1, 0]);
});

// ---------------------------------------------------------------------------------------------
// unary ops

const unaryCases: { name: string; op: (x: Tensor) => Tensor; f: (x: number) => number; lo: number; hi: number; away?: boolean }[] = [
  { name: 'neg', op: T.neg, f: (x) => -x, lo: -2, hi: 2 },
  { name: 'abs', op: T.abs, f: Math.abs, lo: -2, hi: 2, away: true },
  { name: 'exp', op: T.exp, f: Math.exp, lo: -3, hi: 3 },
  { name: 'log', op: T.log, f: Math.log, lo: 0.1, hi: 5 },
  { name: 'sqrt', op: T.sqrt, f: Math.sqrt, lo: 0.1, hi: 5 },
  { name: 'rsqrt', op: T.rsqrt, f: (x) => 1 / Math.sqrt(x), lo: 0.1, hi: 5 },
  { name: 'tanh', op: T.tanh, f: Math.tanh, lo: -3, hi: 3 },
  { name: 'atanh', op: T.atanh, f: Math.atanh, lo: -0.9, hi: 0.9 },
  { name: 'sigmoid', op: T.sigmoid, f: (x) => 1 / (1 + Math.exp(-x)), lo: -6, hi: 6 },
  { name: 'silu', op: T.silu, f: (x) => x / (1 + Math.exp(-x)), lo: -6, hi: 6 },
  { name: 'relu', op: T.relu, f: (x) => Math.max(x, 0), lo: -2, hi: 2, away: true },
  { name: 'sin', op: T.sin, f: Math.sin, lo: -4, hi: 4 },
  { name: 'cos', op: T.cos, f: Math.cos, lo: -4, hi: 4 },
  { name: 'square', op: T.square, f: (x) => x * x, lo: -2, hi: 2 },
  { name: 'reciprocal', op: T.reciprocal, f: (x) => 1 / x, lo: -2, hi: 2, away: true },
  {
    name: 'gelu(tanh)', op: (x) => T.gelu(x, 'tanh'), lo: -5, hi: 5,
    f: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  },
  // exact gelu via Φ(x) = erfc(−x/√2)/2; erfc computed by its continued fraction (independent of the engine)
  { name: 'gelu(erf)', op: (x) => T.gelu(x), f: (x) => x * normalCdf(x), lo: -5, hi: 5 },
];

/** Standard normal CDF from a Lentz continued fraction for the upper tail and a series for |x| < 3. */
function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  let erfcz: number;
  if (z < 3) {
    // erf(z) = 2/√π Σ (−1)^n z^{2n+1} / (n!(2n+1))
    let term = z, s = z;
    for (let n = 1; n < 200; n++) {
      term *= (-z * z) / n;
      s += term / (2 * n + 1);
      if (Math.abs(term) < 1e-18) break;
    }
    erfcz = 1 - (2 / Math.sqrt(Math.PI)) * s;
  } else {
    // erfc(z) = e^{−z²}/√π · 1/(z + 1/2/(z + 1/(z + 3/2/(z + …))))
    let f = z;
    for (let n = 60; n >= 1; n--) f = z + n / 2 / f;
    erfcz = Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
  }
  return x >= 0 ? 1 - erfcz / 2 : erfcz / 2;
}

for (const uc of unaryCases) {
  test(`${uc.name}: forward and gradient`, () => {
    const x = uc.away ? randAwayFromZero([3, 7], rng, 0.05, uc.hi) : rand64([3, 7], rng, uc.lo, uc.hi);
    // the series for erf loses ~1e-14 to cancellation near |z| = 3: a slightly looser reference tolerance
    checkOp({ label: uc.name, inputs: [x], fn: uc.op, ref: (d) => d.map(uc.f), refRtol: uc.name === 'gelu(erf)' ? 1e-11 : 1e-12 });
  });
}

test('unary ops: special values', () => {
  const v = Tensor.from([0, -0, Infinity, -Infinity], [4], 'float32');
  assert.deepEqual(T.relu(v).toArray(), [0, 0, Infinity, 0]);
  assert.deepEqual(T.exp(v).toArray(), [1, 1, Infinity, 0]);
  assert.deepEqual(T.sigmoid(v).toArray(), [0.5, 0.5, 1, 0]);
  assert.deepEqual(T.tanh(v).toArray(), [0, -0, 1, -1]);
  assert.ok(Number.isNaN(T.log(Tensor.from([-1], [1], 'float32')).item()));
  // sigmoid must not overflow for large |x|
  const big = T.sigmoid(Tensor.from([-200, 200], [2], 'float32')).toArray();
  assert.deepEqual(big, [0, 1]);
  assert.throws(() => T.exp(Tensor.from([1], [1], 'int32')), /int32/);
});

test('gelu(erf) keeps relative accuracy in the negative tail', () => {
  const xs = [-6, -8, -10];
  const y64 = T.gelu(Tensor.from(xs, [3], 'float64')).toArray();
  const y32 = T.gelu(Tensor.from(xs, [3], 'float32')).toArray();
  const expected = xs.map((x) => x * normalCdf(x));
  assertClose(y64, expected, { rtol: 1e-10, atol: 0 }, 'gelu f64 tail');
  assertClose(y32, expected, { rtol: 1e-5, atol: 0 }, 'gelu f32 tail');
});

test('roundSTE: round half to even forward, identity gradient', () => {
  const vals = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.51, 3.7, -3.2, 1e6 + 0.5];
  const expected = [-2, -2, -0, 0, 2, 2, 0, -1, 4, -3, 1e6];
  for (const dt of ['float32', 'float64'] as const) {
    const x = Tensor.from(vals, [vals.length], dt).requireGrad();
    const y = T.roundSTE(x);
    assert.equal(y.dtype, dt);
    assert.deepEqual(y.toArray().map((v) => v + 0), expected.map((v) => v + 0));
    const w = Tensor.from(vals.map((_, i) => i - 3), [vals.length], dt);
    y.backward(w);
    assert.deepEqual(x.grad!.toArray(), w.toArray());
  }
  assert.equal(T.roundHalfEven(0.5), 0);
  assert.equal(T.roundHalfEven(-4.5), -4);
  assert.equal(T.roundHalfEven(7.5), 8);
});

test('clamp: forward and gradient (0 outside [lo, hi])', () => {
  const x = randAwayFromZero([4, 5], rng, 0.01, 2);
  // keep inputs away from the clamp bounds so finite differences do not straddle them
  for (let i = 0; i < x.size; i++) if (Math.abs(Math.abs(x.f[i]) - 0.8) < 0.01) x.f[i] += 0.05;
  checkOp({ label: 'clamp', inputs: [x], fn: (t) => T.clamp(t, -0.8, 0.8), ref: (d) => d.map((v) => Math.min(0.8, Math.max(-0.8, v))) });
  const t = Tensor.from([-2, 0.3, 2], [3], 'float64').requireGrad();
  T.sum(T.clamp(t, -1, 1)).backward();
  assert.deepEqual(t.grad!.toArray(), [0, 1, 0]);
});

// ---------------------------------------------------------------------------------------------
// reductions

/** Naive reduction over dims of a tensor with `shape`, returning the kept-dims result. */
function reduceRef(shape: readonly number[], dims: number[], f: (vals: number[]) => number) {
  return (x: Float64Array): Float64Array => {
    const outShape = shape.map((d, i) => (dims.includes(i) ? 1 : d));
    const groups = new Map<number, number[]>();
    const os = strides(outShape);
    forEachIndex(shape, (idx, flat) => {
      let o = 0;
      for (let d = 0; d < shape.length; d++) if (!dims.includes(d)) o += idx[d] * os[d];
      if (!groups.has(o)) groups.set(o, []);
      groups.get(o)!.push(x[flat]);
    });
    const n = outShape.reduce((a, b) => a * b, 1);
    const r = new Float64Array(n);
    for (let i = 0; i < n; i++) r[i] = f(groups.get(i)!);
    return r;
  };
}

const sumOf = (v: number[]) => v.reduce((a, b) => a + b, 0);
const meanOf = (v: number[]) => sumOf(v) / v.length;
const varOf = (v: number[], unbiased: boolean) => {
  const m = meanOf(v);
  return sumOf(v.map((x) => (x - m) ** 2)) / (v.length - (unbiased ? 1 : 0));
};

test('sum / mean / variance over dims, with and without keepdim', () => {
  const shape = [2, 3, 4];
  const x = rand64(shape, rng, -1, 1);
  const dimSets: (number[] | undefined)[] = [undefined, [0], [1], [2], [-1], [0, 2], [1, 2]];
  for (const dims of dimSets) {
    const nd = dims ? dims.map((d) => (d < 0 ? d + 3 : d)) : [0, 1, 2];
    for (const keepdim of [false, true]) {
      const expShape = keepdim ? shape.map((s, i) => (nd.includes(i) ? 1 : s)) : shape.filter((_, i) => !nd.includes(i));
      const label = `dims ${dims ? dims.join(',') : 'all'} keepdim=${keepdim}`;
      const s = T.sum(x, dims, keepdim);
      assert.deepEqual(s.shape, expShape, `sum ${label}: shape`);
      assert.deepEqual(T.mean(x, dims, keepdim).shape, expShape);
      assert.deepEqual(T.variance(x, dims, { keepdim }).shape, expShape);
      checkOp({ label: `sum ${label}`, inputs: [x], fn: (t) => T.sum(t, dims, keepdim), ref: reduceRef(shape, nd, sumOf) });
      checkOp({ label: `mean ${label}`, inputs: [x], fn: (t) => T.mean(t, dims, keepdim), ref: reduceRef(shape, nd, meanOf) });
      for (const unbiased of [false, true]) {
        checkOp({
          label: `variance ${label} unbiased=${unbiased}`, inputs: [x], fn: (t) => T.variance(t, dims, { keepdim, unbiased }),
          ref: reduceRef(shape, nd, (v) => varOf(v, unbiased)),
        });
      }
    }
  }
  // reducing a size-1 dimension and a 0-d tensor
  const y = rand64([3, 1], rng);
  checkOp({ label: 'sum over a size-1 dim', inputs: [y], fn: (t) => T.sum(t, 1), ref: (d) => d });
  const s = T.sum(Tensor.scalar(4, 'float64'));
  assert.equal(s.item(), 4);
});

test('max over a dim: values, indices, gradient to the first maximum', () => {
  const shape = [3, 4, 5];
  const x = rand64(shape, rng, -1, 1);
  for (const dim of [0, 1, 2, -1]) {
    for (const keepdim of [false, true]) {
      const d = dim < 0 ? dim + 3 : dim;
      checkOp({ label: `max dim ${dim} keepdim=${keepdim}`, inputs: [x], fn: (t) => T.max(t, dim, keepdim).values, ref: reduceRef(shape, [d], (v) => Math.max(...v)) });
      const { values, indices } = T.max(x, dim, keepdim);
      assert.equal(indices.dtype, 'int32');
      assert.deepEqual(indices.shape, values.shape);
      const argRef = reduceRef(shape, [d], (v) => v.indexOf(Math.max(...v)))(x.f as Float64Array);
      assert.deepEqual(indices.toArray(), Array.from(argRef));
    }
  }
  // ties: the gradient goes to the first maximal element only
  const t = Tensor.from([1, 3, 3, 2, 0, 0], [2, 3], 'float64').requireGrad();
  const { values, indices } = T.max(t, 1);
  assert.deepEqual(values.toArray(), [3, 2]);
  assert.deepEqual(indices.toArray(), [1, 0]);
  values.backward(Tensor.from([10, 20], [2], 'float64'));
  assert.deepEqual(t.grad!.toArray(), [0, 10, 0, 20, 0, 0]);
  assert.equal(T.maxAll(Tensor.from([1, 7, 2, 7], [2, 2], 'float64')).item(), 7);
});

// ---------------------------------------------------------------------------------------------
// shape ops

/** Naive permutation of data with `shape` by `perm`. */
function permuteRef(shape: readonly number[], perm: number[]) {
  return (x: Float64Array): Float64Array => {
    const outShape = perm.map((p) => shape[p]);
    const xs = strides(shape);
    const r = new Float64Array(x.length);
    forEachIndex(outShape, (idx, flat) => {
      let o = 0;
      for (let i = 0; i < perm.length; i++) o += idx[i] * xs[perm[i]];
      r[flat] = x[o];
    });
    return r;
  };
}

test('reshape / flatten / unsqueeze / squeeze', () => {
  const x = rand64([2, 3, 4], rng);
  const id = (d: Float64Array) => d;
  const cases: [string, (t: Tensor) => Tensor, number[]][] = [
    ['reshape [6,4]', (t) => T.reshape(t, [6, 4]), [6, 4]],
    ['reshape [-1,3,2]', (t) => T.reshape(t, [-1, 3, 2]), [4, 3, 2]],
    ['flatten', (t) => T.flatten(t), [24]],
    ['flatten 1..2', (t) => T.flatten(t, 1), [2, 12]],
    ['flatten 0..1', (t) => T.flatten(t, 0, 1), [6, 4]],
    ['unsqueeze 0', (t) => T.unsqueeze(t, 0), [1, 2, 3, 4]],
    ['unsqueeze -1', (t) => T.unsqueeze(t, -1), [2, 3, 4, 1]],
    ['unsqueeze 2', (t) => T.unsqueeze(t, 2), [2, 3, 1, 4]],
    ['squeeze', (t) => T.squeeze(T.unsqueeze(t, 1), 1), [2, 3, 4]],
  ];
  for (const [label, fn, shape] of cases) {
    assert.deepEqual(fn(x).shape, shape, `${label}: shape`);
    checkOp({ label, inputs: [x], fn, ref: id });
  }
  assert.throws(() => T.reshape(x, [5, -1]), /cannot reshape/);
  assert.throws(() => T.reshape(x, [25]), /cannot reshape/);
  assert.throws(() => T.squeeze(x, 0), /not 1/);
});

test('permute / transpose', () => {
  const shape = [2, 3, 4, 2];
  const x = rand64(shape, rng);
  for (const perm of [[0, 1, 2, 3], [3, 2, 1, 0], [0, 2, 1, 3], [1, 3, 0, 2], [2, 0, 3, 1]]) {
    checkOp({ label: `permute [${perm}]`, inputs: [x], fn: (t) => T.permute(t, perm), ref: permuteRef(shape, perm) });
  }
  checkOp({ label: 'transpose 1,-1', inputs: [x], fn: (t) => T.transpose(t, 1, -1), ref: permuteRef(shape, [0, 3, 2, 1]) });
  assert.throws(() => T.permute(x, [0, 1, 1, 2]), /not a permutation/);
  const ints = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3], 'int32');
  const ti = T.transpose(ints, 0, 1);
  assert.equal(ti.dtype, 'int32');
  assert.deepEqual(ti.toArray(), [1, 4, 2, 5, 3, 6]);
});

test('expandTo', () => {
  for (const [from, to] of [[[3, 1], [2, 3, 4]], [[4], [3, 4]], [[], [2, 2]], [[1, 2, 1], [3, 2, 5]]] as [number[], number[]][]) {
    const x = rand64(from, rng);
    checkOp({ label: `expand [${from}] → [${to}]`, inputs: [x], fn: (t) => T.expandTo(t, to), ref: (d) => broadcastRef(from, to, (a) => a)(d, new Float64Array(to.reduce((a, b) => a * b, 1))) });
  }
  assert.throws(() => T.expandTo(rand64([3], rng), [4]), /broadcast|expand/);
});

test('slice', () => {
  const shape = [3, 5, 2];
  const x = rand64(shape, rng);
  const ref = (dim: number, s: number, e: number) => (d: Float64Array) => {
    const out: number[] = [];
    forEachIndex(shape, (idx, flat) => {
      if (idx[dim] >= s && idx[dim] < e) out.push(d[flat]);
    });
    return out;
  };
  checkOp({ label: 'slice dim1 1:4', inputs: [x], fn: (t) => T.slice(t, 1, 1, 4), ref: ref(1, 1, 4) });
  checkOp({ label: 'slice dim0 2:3', inputs: [x], fn: (t) => T.slice(t, 0, 2, 3), ref: ref(0, 2, 3) });
  checkOp({ label: 'slice dim-1 0:1', inputs: [x], fn: (t) => T.slice(t, -1, 0, 1), ref: ref(2, 0, 1) });
  checkOp({ label: 'slice dim1 -2:end', inputs: [x], fn: (t) => T.slice(t, 1, -2, 5), ref: ref(1, 3, 5) });
  assert.deepEqual(T.slice(x, 1, 3, 100).shape, [3, 2, 2]);
  assert.deepEqual(T.slice(x, 1, 4, 2).shape, [3, 0, 2]);
});

test('concat and stack', () => {
  const a = rand64([2, 3], rng), b = rand64([2, 1], rng), c = rand64([2, 2], rng);
  checkOp({
    label: 'concat dim 1', inputs: [a, b, c], fn: (x, y, z) => T.concat([x, y, z], 1),
    ref: (x, y, z) => [x[0], x[1], x[2], y[0], z[0], z[1], x[3], x[4], x[5], y[1], z[2], z[3]],
  });
  const d = rand64([1, 3], rng);
  checkOp({ label: 'concat dim 0', inputs: [a, d], fn: (x, y) => T.concat([x, y], 0), ref: (x, y) => [...x, ...y] });
  const e = rand64([2, 3], rng);
  checkOp({ label: 'stack dim 0', inputs: [a, e], fn: (x, y) => T.stack([x, y], 0), ref: (x, y) => [...x, ...y] });
  checkOp({
    label: 'stack dim -1', inputs: [a, e], fn: (x, y) => T.stack([x, y], -1),
    ref: (x, y) => Array.from(x).flatMap((v, i) => [v, y[i]]),
  });
  assert.deepEqual(T.stack([a, e], 1).shape, [2, 2, 3]);
  assert.throws(() => T.concat([a, rand64([3, 3], rng)], 1), /differ/);
  // gradient reaches only the inputs that require it
  const p = a.clone().requireGrad();
  T.sum(T.concat([p, b], 1)).backward();
  assert.deepEqual(p.grad!.toArray(), [1, 1, 1, 1, 1, 1]);
  assert.equal(b.grad, null);
});

test('pad', () => {
  const shape = [2, 3, 2];
  const x = rand64(shape, rng);
  const pads: [number, number][] = [[0, 1], [2, 1], [1, 0]];
  const ref = (value: number) => (d: Float64Array) => {
    const outShape = shape.map((s, i) => s + pads[i][0] + pads[i][1]);
    const os = strides(outShape);
    const r = new Float64Array(outShape.reduce((a, b) => a * b, 1)).fill(value);
    forEachIndex(shape, (idx, flat) => {
      let o = 0;
      for (let k = 0; k < 3; k++) o += (idx[k] + pads[k][0]) * os[k];
      r[o] = d[flat];
    });
    return r;
  };
  checkOp({ label: 'pad zeros', inputs: [x], fn: (t) => T.pad(t, pads), ref: ref(0) });
  checkOp({ label: 'pad value', inputs: [x], fn: (t) => T.pad(t, pads, -1.5), ref: ref(-1.5) });
  checkOp({ label: 'pad 1-d', inputs: [rand64([3], rng)], fn: (t) => T.pad(t, [[2, 0]]), ref: (d) => [0, 0, ...d] });
});

// ---------------------------------------------------------------------------------------------
// indexing

test('indexSelect and embedding', () => {
  const x = rand64([4, 3, 2], rng);
  const idx = Tensor.from([2, 0, 2, 1], [4], 'int32');
  checkOp({
    label: 'indexSelect dim 1', inputs: [x], fn: (t) => T.indexSelect(t, 1, idx),
    ref: (d) => {
      const r: number[] = [];
      for (let a = 0; a < 4; a++) for (const j of idx.i) for (let c = 0; c < 2; c++) r.push(d[(a * 3 + j) * 2 + c]);
      return r;
    },
  });
  const w = rand64([5, 3], rng);
  const ids = Tensor.from([4, 0, 4, 2, 1, 4], [2, 3], 'int32');
  assert.deepEqual(T.embedding(w, ids).shape, [2, 3, 3]);
  checkOp({
    label: 'embedding (repeated ids accumulate)', inputs: [w], fn: (t) => T.embedding(t, ids),
    ref: (d) => Array.from(ids.i).flatMap((i) => [d[i * 3], d[i * 3 + 1], d[i * 3 + 2]]),
  });
  assert.throws(() => T.indexSelect(x, 0, Tensor.from([4], [1], 'int32')), /out of range/);
});

test('gather and scatterAdd', () => {
  const x = rand64([3, 4], rng);
  const index = Tensor.from([3, 0, 3, 1, 1, 2, 0, 0, 3], [3, 3], 'int32');
  checkOp({
    label: 'gather dim 1', inputs: [x], fn: (t) => T.gather(t, 1, index),
    ref: (d) => Array.from(index.i).map((j, f) => d[Math.floor(f / 3) * 4 + j]),
  });
  const index0 = Tensor.from([2, 0, 1, 2, 0, 0, 0, 1], [2, 4], 'int32');
  checkOp({
    label: 'gather dim 0', inputs: [x], fn: (t) => T.gather(t, 0, index0),
    ref: (d) => Array.from(index0.i).map((i, f) => d[i * 4 + (f % 4)]),
  });
  const src = rand64([3, 3], rng);
  checkOp({
    label: 'scatterAdd dim 1', inputs: [x, src], fn: (t, s) => T.scatterAdd(t, 1, index, s),
    ref: (d, s) => {
      const r = Float64Array.from(d);
      index.i.forEach((j, f) => (r[Math.floor(f / 3) * 4 + j] += s[f]));
      return r;
    },
  });
  const src0 = rand64([2, 4], rng);
  checkOp({
    label: 'scatterAdd dim 0', inputs: [x, src0], fn: (t, s) => T.scatterAdd(t, 0, index0, s),
    ref: (d, s) => {
      const r = Float64Array.from(d);
      index0.i.forEach((i, f) => (r[i * 4 + (f % 4)] += s[f]));
      return r;
    },
  });
});

test('where and maskedFill', () => {
  const cond = Tensor.from([1, 0, 0, 1, 1, 0], [2, 3], 'int32');
  const a = rand64([2, 3], rng), b = rand64([3], rng);
  checkOp({
    label: 'where (broadcast b)', inputs: [a, b], fn: (x, y) => T.where(cond, x, y),
    ref: (x, y) => Array.from(cond.i).map((c, f) => (c ? x[f] : y[f % 3])),
  });
  const condRow = Tensor.from([0, 1, 1], [1, 3], 'int32');
  checkOp({
    label: 'where (broadcast cond, scalar b)', inputs: [a], fn: (x) => T.where(condRow, x, 0.25),
    ref: (x) => Array.from(x).map((v, f) => (condRow.i[f % 3] ? v : 0.25)),
  });
  const mask = Tensor.from([1, 0, 1], [3], 'int32');
  checkOp({
    label: 'maskedFill', inputs: [a], fn: (x) => T.maskedFill(x, mask, -7),
    ref: (x) => Array.from(x).map((v, f) => (mask.i[f % 3] ? -7 : v)),
  });
});

test('dropout: statistics, scaling, zero gradient where dropped, identity when not training', () => {
  const n = 20000;
  const p = 0.3;
  const x = Tensor.ones([n], 'float32').requireGrad();
  const y = T.dropout(x, p, new Rng(5));
  let zeros = 0;
  for (const v of y.data) {
    if (v === 0) zeros++;
    else assert.ok(Math.abs(v - 1 / (1 - p)) < 1e-6, `kept value ${v} should be 1/(1-p)`);
  }
  const frac = zeros / n;
  // binomial standard deviation √(p(1−p)/n) ≈ 0.0032; allow 5σ
  assert.ok(Math.abs(frac - p) < 0.017, `dropped fraction ${frac}`);
  let mean = 0;
  for (const v of y.data) mean += v / n;
  assert.ok(Math.abs(mean - 1) < 0.03, `mean ${mean} should stay ≈ 1`);
  y.backward(Tensor.full([n], 2, 'float32'));
  for (let i = 0; i < n; i++) assert.equal(x.grad!.data[i], y.data[i] === 0 ? 0 : Math.fround(2 * Math.fround(1 / (1 - p))));
  // same seed → same mask; gradcheck with a fixed mask
  const z = rand64([4, 5], rng);
  gradcheck((t) => T.dropout(t, 0.5, new Rng(9)), [z], { label: 'dropout' });
  const a = T.dropout(z, 0.5, new Rng(9));
  const b = T.dropout(z, 0.5, new Rng(9));
  assert.deepEqual(a.toArray(), b.toArray());
  // not training or p = 0: identity (the same tensor)
  assert.equal(T.dropout(z, 0.5, new Rng(1), false), z);
  assert.equal(T.dropout(z, 0, new Rng(1)), z);
  assert.throws(() => T.dropout(z, 1, new Rng(1)), /probability/);
});

test('toFloat and zerosLike', () => {
  const i = Tensor.from([1, -2, 3], [3], 'int32');
  const f = T.toFloat(i, 'float64');
  assert.equal(f.dtype, 'float64');
  assert.deepEqual(f.toArray(), [1, -2, 3]);
  const z = T.zerosLike(f);
  assert.equal(z.dtype, 'float64');
  assert.deepEqual(z.toArray(), [0, 0, 0]);
});

test('float32 vs float64 elementwise ops and reductions on long arrays (SIMD main loops, threading)', () => {
  const big = { finiteDiff: false } as const;
  for (const uc of unaryCases) {
    const x = uc.away ? randAwayFromZero([40001], rng, 0.05, uc.hi) : rand64([40001], rng, uc.lo, uc.hi);
    checkOp({ ...big, label: `${uc.name} ×40001`, inputs: [x], fn: uc.op });
  }
  for (const bc of binaryCases) {
    const a = rand64([150, 203], rng, 0.5, 2);
    const b = rand64([203], rng, 0.5, 2);
    const c = rand64([150, 1], rng, 0.5, 2);
    checkOp({ ...big, label: `${bc.name} [150,203] ∘ [203]`, inputs: [a, b], fn: bc.op });
    checkOp({ ...big, label: `${bc.name} [150,1] ∘ [203]`, inputs: [c, b], fn: bc.op });
    checkOp({ ...big, label: `${bc.name} [150,203] ∘ [150,203]`, inputs: [a, T.add(a, 0.25)], fn: bc.op });
  }
  const x = rand64([64, 300, 3], rng);
  for (const dim of [0, 1, 2]) {
    checkOp({ ...big, label: `sum dim ${dim} [64,300,3]`, inputs: [x], fn: (t) => T.sum(t, dim) });
    checkOp({ ...big, label: `max dim ${dim} [64,300,3]`, inputs: [x], fn: (t) => T.max(t, dim).values });
  }
  checkOp({ ...big, label: 'permute [64,300,3] → [2,0,1]', inputs: [x], fn: (t) => T.permute(t, [2, 0, 1]) });
  checkOp({ ...big, label: 'permute [8,16,10,12] → [0,2,1,3]', inputs: [rand64([8, 16, 10, 12], rng)], fn: (t) => T.permute(t, [0, 2, 1, 3]) });
});
