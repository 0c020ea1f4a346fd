// Shared test helpers for the engine: closeness assertions, finite-difference gradient checks in
// float64, and `checkOp`, which runs the standard battery for one op (float64 forward vs a naive
// reference, float32 forward vs float64, float64 autograd vs central differences, float32 gradient
// on the current backend vs the float64 analytic gradient).

import assert from 'node:assert/strict';
import { noGrad, Rng, Tensor, type DType } from '../../src/tensor/index.js';

/** Root mean square of the finite numbers of a list (0 when there are none). */
export function rms(a: ArrayLike<number>): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) continue;
    s += a[i] * a[i];
    n++;
  }
  return n ? Math.sqrt(s / n) : 0;
}

export interface CloseOpts {
  /** relative tolerance per element */
  rtol: number;
  /** absolute floor; default rtol · rms(expected), i.e. relative to the tensor's own magnitude, so
   * an element near zero produced by cancellation is judged against the scale of the whole tensor */
  atol?: number;
}

/** Assert |a − e| ≤ atol + rtol·|e| elementwise (NaN/±Inf must match exactly). */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, opts: CloseOpts, what = 'value'): void {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} elements, expected ${expected.length}`);
  const atol = opts.atol ?? opts.rtol * rms(expected) + 1e-300;
  let worst = -1;
  let worstRatio = 1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (!Number.isFinite(e)) {
      assert.ok(Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e)), `${what}[${i}]: got ${a}, expected ${e}`);
      continue;
    }
    const err = Math.abs(a - e);
    const ratio = err === 0 ? 0 : err / (atol + opts.rtol * Math.abs(e));
    if (!(ratio <= worstRatio)) {
      worstRatio = Number.isNaN(ratio) ? Infinity : ratio;
      worst = i;
    }
  }
  if (worst >= 0) {
    assert.fail(`${what}[${worst}]: got ${actual[worst]}, expected ${expected[worst]} (error ${worstRatio.toPrecision(3)}× the tolerance rtol=${opts.rtol}, atol=${atol.toPrecision(3)})`);
  }
}

/** Uniform random float64 tensor in [lo, hi). */
export function rand64(shape: readonly number[], rng: Rng, lo = -1, hi = 1): Tensor {
  return Tensor.rand(shape, rng, 'float64', lo, hi);
}

/** Uniform random values with |x| ∈ [minAbs, maxAbs) and a random sign (keeps away from kinks at 0). */
export function randAwayFromZero(shape: readonly number[], rng: Rng, minAbs = 0.1, maxAbs = 1): Tensor {
  const t = Tensor.zeros(shape, 'float64');
  for (let i = 0; i < t.size; i++) t.f[i] = (rng.uniform() < 0.5 ? -1 : 1) * (minAbs + (maxAbs - minAbs) * rng.uniform());
  return t;
}

/** A copy of t with its values rounded to float32 but stored as `dtype`. */
export function roundedTo(t: Tensor, dtype: DType): Tensor {
  const r = Tensor.from(Float32Array.from(t.data), t.shape, 'float32');
  return r.toDType(dtype);
}

function outputOf(fn: (...xs: Tensor[]) => Tensor, xs: Tensor[]): Tensor {
  const out = fn(...xs);
  assert.ok(out instanceof Tensor, 'op under test must return a Tensor');
  return out;
}

/** Σ out ⊙ w in float64. */
function dot(out: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] * w[i];
  return s;
}

export interface GradcheckOpts {
  /** finite-difference step (default 1e-6) */
  h?: number;
  /** relative tolerance (default 1e-6; atol defaults to rtol · rms of the analytic gradient) */
  rtol?: number;
  atol?: number;
  /** indices of the inputs to differentiate (default: all) */
  wrt?: number[];
  /** seed for the random output weights */
  seed?: number;
  label?: string;
}

/** Analytic gradients (via backward with the given output weights) of L = Σ fn(xs) ⊙ w. */
export function analyticGrads(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], wrt: number[], weights: ArrayLike<number>): Float64Array[] {
  const xs = inputs.map((x, i) => (wrt.includes(i) ? x.detach().requireGrad() : x.detach()));
  const out = outputOf(fn, xs);
  assert.equal(out.size, weights.length, 'output size changed between calls');
  const seed = Tensor.from(weights, out.shape, out.dtype);
  out.backward(seed);
  return wrt.map((i) => {
    const g = xs[i].grad;
    // An input that did not influence the output may legitimately have no gradient.
    return g ? Float64Array.from(g.data) : new Float64Array(xs[i].size);
  });
}

/** Compare autograd gradients of L = Σ fn(xs) ⊙ w (w fixed random) with central differences,
 * all in float64. Returns the analytic gradients and the weights used. */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOpts = {}): { grads: Float64Array[]; weights: Float64Array } {
  for (const x of inputs) assert.equal(x.dtype, 'float64', 'gradcheck needs float64 inputs');
  const h = opts.h ?? 1e-6;
  const wrt = opts.wrt ?? inputs.map((_, i) => i);
  const probe = noGrad(() => outputOf(fn, inputs.map((x) => x.detach())));
  const wrng = new Rng(opts.seed ?? 777);
  const weights = new Float64Array(probe.size);
  for (let i = 0; i < weights.length; i++) weights[i] = wrng.uniform() * 2 - 1;
  const grads = analyticGrads(fn, inputs, wrt, weights);
  const loss = (xs: Tensor[]): number => noGrad(() => dot(outputOf(fn, xs).data, weights));
  wrt.forEach((inputIdx, k) => {
    const xs = inputs.map((x) => x.clone());
    const d = xs[inputIdx].f;
    const fd = new Float64Array(d.length);
    for (let j = 0; j < d.length; j++) {
      const v = d[j];
      d[j] = v + h;
      const lp = loss(xs);
      d[j] = v - h;
      const lm = loss(xs);
      d[j] = v;
      fd[j] = (lp - lm) / (2 * h);
    }
    assertClose(grads[k], fd, { rtol: opts.rtol ?? 1e-6, atol: opts.atol ?? (opts.rtol ?? 1e-6) * Math.max(rms(fd), 1e-3) }, `${opts.label ?? 'gradcheck'}: d/d input ${inputIdx} (analytic vs finite difference)`);
  });
  return { grads, weights };
}

export interface OpCheck {
  label: string;
  /** float64 inputs (their values are rounded to float32 first so both precisions see the same numbers) */
  inputs: Tensor[];
  /** the op; receives inputs of one float dtype (capture int tensors and options in the closure) */
  fn: (...xs: Tensor[]) => Tensor;
  /** naive float64 reference of the forward, computed from the inputs' data */
  ref?: (...xs: Float64Array[]) => ArrayLike<number>;
  /** float64 op vs ref (default 1e-12) */
  refRtol?: number;
  /** float32 forward vs float64 forward (default 1e-5) */
  fwdRtol?: number;
  fwdAtol?: number;
  /** false: forward checks only */
  differentiable?: boolean;
  /** which inputs are differentiated (default all) */
  wrt?: number[];
  /** false: skip the float64 finite differences (large shapes); the float32 gradient is still
   * compared with the float64 analytic one */
  finiteDiff?: boolean;
  /** float64 finite-difference check */
  gradRtol?: number;
  h?: number;
  /** float32 gradient (current backend) vs float64 analytic gradient (default 1e-4) */
  grad32Rtol?: number;
}

/** The standard battery for one op; see the module comment. */
export function checkOp(c: OpCheck): void {
  const in64 = c.inputs.map((x) => roundedTo(x, 'float64'));
  const in32 = c.inputs.map((x) => roundedTo(x, 'float32'));
  const out64 = noGrad(() => outputOf(c.fn, in64));
  assert.equal(out64.dtype, 'float64', `${c.label}: float64 inputs must give a float64 output`);
  if (c.ref) {
    const expected = c.ref(...in64.map((x) => x.f as Float64Array));
    assertClose(out64.data, expected, { rtol: c.refRtol ?? 1e-12 }, `${c.label}: float64 forward vs naive reference`);
  }
  const out32 = noGrad(() => outputOf(c.fn, in32));
  assert.equal(out32.dtype, 'float32', `${c.label}: float32 inputs must give a float32 output`);
  assert.deepEqual(out32.shape, out64.shape, `${c.label}: output shapes differ between float32 and float64`);
  assertClose(out32.data, out64.data, { rtol: c.fwdRtol ?? 1e-5, atol: c.fwdAtol }, `${c.label}: float32 forward vs float64`);
  if (c.differentiable === false) return;
  const wrt = c.wrt ?? in64.map((_, i) => i);
  let grads: Float64Array[];
  let weights: Float64Array;
  if (c.finiteDiff === false) {
    const wrng = new Rng(777);
    weights = new Float64Array(out64.size);
    for (let i = 0; i < weights.length; i++) weights[i] = wrng.uniform() * 2 - 1;
    grads = analyticGrads(c.fn, in64, wrt, weights);
  } else {
    ({ grads, weights } = gradcheck(c.fn, in64, { h: c.h, rtol: c.gradRtol, wrt, label: c.label }));
  }
  if (wrt.length > 1 && c.finiteDiff !== false) {
    // the same gradients when only one input requires grad (exercises the ops' "input needs no gradient" branches)
    wrt.forEach((inputIdx, k) => {
      const [alone] = analyticGrads(c.fn, in64, [inputIdx], weights);
      assertClose(alone, grads[k], { rtol: 1e-12 }, `${c.label}: gradient of input ${inputIdx} when it alone requires grad`);
    });
  }
  const g32 = analyticGrads(c.fn, in32, wrt, weights);
  wrt.forEach((inputIdx, k) => {
    assertClose(g32[k], grads[k], { rtol: c.grad32Rtol ?? 1e-4 }, `${c.label}: float32 gradient of input ${inputIdx} vs float64`);
  });
}
