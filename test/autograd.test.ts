// Tests of the autograd tape (src/tensor/tensor.ts): accumulation, shared inputs, noGrad, detach,
// customOp, error messages, and that the gradient checker itself catches a wrong gradient.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { customOp, isGradEnabled, noGrad, Rng, Tensor } from '../src/tensor/index.js';
import { gradcheck, rand64 } from './helpers/gradcheck.js';

const rng = new Rng(99);

test('gradients accumulate across two backward calls until cleared', () => {
  const x = Tensor.from([1, 2, 3], [3], 'float64').requireGrad();
  T.sum(T.mul(x, 2)).backward();
  assert.deepEqual(x.grad!.toArray(), [2, 2, 2]);
  T.sum(T.square(x)).backward();
  assert.deepEqual(x.grad!.toArray(), [4, 6, 8]);
  T.zeroGrad([x]);
  assert.equal(x.grad, null);
  T.sum(x).backward();
  assert.deepEqual(x.grad!.toArray(), [1, 1, 1]);
});

test('a tensor used twice (and a diamond graph) sums its gradient contributions', () => {
  const x = Tensor.from([1.5, -2], [2], 'float64').requireGrad();
  T.sum(T.mul(x, x)).backward();
  assert.deepEqual(x.grad!.toArray(), [3, -4]);
  // diamond: y = exp(x); z = y * sin(y) + y → dz/dx = y (sin y + y cos y + 1)
  const a = Tensor.from([0.3, -0.7], [2], 'float64').requireGrad();
  const y = T.exp(a);
  T.sum(T.add(T.mul(y, T.sin(y)), y)).backward();
  const expected = a.toArray().map((v) => {
    const e = Math.exp(v);
    return e * (Math.sin(e) + e * Math.cos(e) + 1);
  });
  a.grad!.toArray().forEach((g, i) => assert.ok(Math.abs(g - expected[i]) < 1e-14, `${g} vs ${expected[i]}`));
  // the same tensor twice in one op's input list (concat) and through broadcasting
  const b = Tensor.from([1, 2], [2], 'float64').requireGrad();
  T.sum(T.mul(T.concat([b, b, b], 0), Tensor.from([1, 1, 2, 2, 3, 3], [6], 'float64'))).backward();
  assert.deepEqual(b.grad!.toArray(), [6, 6]);
  gradcheck((t) => T.add(T.mul(t, T.exp(t)), T.sum(t, 0, true)), [rand64([3, 2], rng)], { label: 'shared inputs' });
});

test('slice gradients accumulate in place without corrupting a gradient shared by two inputs', () => {
  // t = p + q hands the same gradient buffer to p and q; p then accumulates more. q must not see it.
  const x = Tensor.from([1, 2, 3], [3], 'float64').requireGrad();
  const y = Tensor.from([4, 5, 6], [3], 'float64').requireGrad();
  const p = T.mul(x, 1);
  const q = T.mul(y, 1);
  const t = T.add(p, q);
  const loss = T.add(T.add(T.sum(T.mul(q, 0)), T.sum(T.mul(p, 3))), T.add(T.sum(T.slice(t, 0, 0, 2)), T.sum(T.slice(t, 0, 1, 3))));
  loss.backward();
  assert.deepEqual(Array.from(x.grad!.data), [4, 5, 4]);
  assert.deepEqual(Array.from(y.grad!.data), [1, 2, 1]);
  // many per-item slices of one tensor (the training loop's pattern) sum to the full gradient
  const z = Tensor.from([1, 2, 3, 4, 5, 6], [3, 2], 'float64').requireGrad();
  const parts = [0, 1, 2].map((i) => T.mul(T.slice(z, 0, i, i + 1), i + 1));
  T.sum(T.concat(parts, 0)).backward();
  assert.deepEqual(Array.from(z.grad!.data), [1, 1, 2, 2, 3, 3]);
});

test('only leaves keep .grad; inputs that do not require grad get none', () => {
  const w = Tensor.from([2], [1], 'float64').requireGrad();
  const c = Tensor.from([5], [1], 'float64');
  const h = T.mul(w, c);
  assert.equal(h.requiresGrad, true);
  assert.equal(h.node!.name, 'mul');
  T.sum(T.square(h)).backward();
  assert.deepEqual(w.grad!.toArray(), [100]);
  assert.equal(c.grad, null);
  assert.equal(h.grad, null);
  // ops on tensors that do not require grad record nothing
  const plain = T.mul(c, c);
  assert.equal(plain.requiresGrad, false);
  assert.equal(plain.node, null);
});

test('noGrad: nothing is recorded inside, recording resumes after (also after a throw)', () => {
  const x = Tensor.from([1, 2], [2], 'float32').requireGrad();
  assert.equal(isGradEnabled(), true);
  const y = noGrad(() => {
    assert.equal(isGradEnabled(), false);
    const inner = noGrad(() => T.exp(x)); // nesting
    assert.equal(isGradEnabled(), false);
    return T.mul(inner, x);
  });
  assert.equal(y.requiresGrad, false);
  assert.equal(y.node, null);
  assert.equal(isGradEnabled(), true);
  assert.throws(() => noGrad(() => { throw new Error('boom'); }), /boom/);
  assert.equal(isGradEnabled(), true);
  assert.equal(T.exp(x).requiresGrad, true);
  assert.throws(() => T.sum(y).backward(), /does not require grad/);
});

test('detach shares data and stops the gradient', () => {
  const x = Tensor.from([1, 2, 3], [3], 'float64').requireGrad();
  const d = T.mul(x, 3).detach();
  assert.equal(d.requiresGrad, false);
  assert.equal(d.node, null);
  const xd = x.detach();
  assert.equal(xd.data, x.data, 'detach shares the buffer');
  // gradient flows through the non-detached path only: d/dx [x * detach(x)] = detach(x)
  T.sum(T.mul(x, xd)).backward();
  assert.deepEqual(x.grad!.toArray(), [1, 2, 3]);
  const c = x.clone();
  assert.notEqual(c.data, x.data);
  assert.equal(c.requiresGrad, false);
});

test('customOp: forward unrecorded, hand-written backward, null gradients for some inputs', () => {
  const a = Tensor.from([1, 2, 3], [3], 'float64').requireGrad();
  const b = Tensor.from([4, 5, 6], [3], 'float64').requireGrad();
  let forwardRecorded: boolean | null = null;
  let seen: number[] = [];
  // f(a, b) = a² b with the gradient deliberately sent to a only
  const out = customOp('a2b', [a, b], () => {
    const r = T.mul(T.square(a), b);
    forwardRecorded = r.requiresGrad;
    return r;
  }, (g) => {
    seen = g.toArray();
    assert.equal(isGradEnabled(), false, 'backward runs with recording off');
    return [T.mul(g, T.mul(T.mul(a, b), 2)), null];
  });
  assert.equal(forwardRecorded, false);
  assert.equal(out.requiresGrad, true);
  assert.equal(out.node!.name, 'a2b');
  assert.deepEqual(out.toArray(), [4, 20, 54]);
  out.backward(Tensor.from([1, 10, 100], [3], 'float64'));
  assert.deepEqual(seen, [1, 10, 100]);
  assert.deepEqual(a.grad!.toArray(), [8, 200, 3600]);
  assert.equal(b.grad, null);
  // no input requires grad → nothing recorded
  const c = customOp('id', [Tensor.from([1], [1], 'float64')], () => Tensor.from([1], [1], 'float64'), (g) => [g]);
  assert.equal(c.requiresGrad, false);
  // a correct customOp passes gradcheck
  gradcheck((t) => customOp('cube', [t], () => T.mul(T.square(t), t), (g) => [T.mul(g, T.mul(T.square(t), 3))]), [rand64([4], rng)], { label: 'cube' });
});

test('the gradient checker rejects a wrong gradient', () => {
  const wrong = (t: Tensor) => customOp('badCube', [t], () => T.mul(T.square(t), t), (g) => [T.mul(g, T.mul(T.square(t), 2.999))]);
  assert.throws(() => gradcheck(wrong, [rand64([4], rng, 0.5, 1)], { label: 'badCube' }), /finite difference/);
});

test('errors: backward on a non-scalar without a gradient, on a tensor not requiring grad, bad seeds', () => {
  const x = Tensor.from([1, 2], [2], 'float32').requireGrad();
  const y = T.mul(x, 2);
  assert.throws(() => y.backward(), /needs a scalar/);
  assert.throws(() => Tensor.from([1, 2], [2]).backward(), /does not require grad/);
  assert.throws(() => T.sum(Tensor.from([1, 2], [2])).backward(), /does not require grad/);
  assert.throws(() => y.backward(Tensor.ones([3])), /does not match/);
  // a seed of another float dtype is converted
  y.backward(Tensor.from([1, 1], [2], 'float64'));
  assert.equal(x.grad!.dtype, 'float32');
  assert.deepEqual(x.grad!.toArray(), [2, 2]);
  assert.throws(() => Tensor.from([1], [1], 'int32').requireGrad(), /int32/);
  assert.throws(() => new Tensor(new Float32Array(3), [2, 2]), /needs 4/);
  assert.throws(() => new Tensor(new Float32Array(0), [0, -1]), /invalid shape/);
});

test('backward through a long chain does not overflow the stack', () => {
  const x = Tensor.from([1], [1], 'float64').requireGrad();
  let y = x;
  for (let i = 0; i < 20000; i++) y = T.add(y, 1e-3);
  T.sum(y).backward();
  assert.deepEqual(x.grad!.toArray(), [1]);
});

test('backward with float32 leaves: gradient dtype and shape follow the leaf', () => {
  const w = T.reshape(Tensor.from([1, 2, 3, 4, 5, 6], [6]), [2, 3]);
  w.requireGrad();
  const loss = T.mean(T.square(T.matmul(w, Tensor.ones([3, 1]))));
  loss.backward();
  assert.equal(w.grad!.dtype, 'float32');
  assert.deepEqual(w.grad!.shape, [2, 3]);
  // d/dw mean((w·1)²) = (w·1) for each column (mean over 2 rows: 2·s/2)
  assert.deepEqual(w.grad!.toArray(), [6, 6, 6, 15, 15, 15]);
});

test('dtype casts are differentiable: the gradient is cast back to the input dtype', () => {
  // float64 → float32 → float64 inside a function: central differences (h large enough for the float32 rounding).
  gradcheck((t) => T.toFloat(T.mul(T.exp(T.toFloat(t, 'float32')), T.toFloat(t, 'float32')), 'float64'), [rand64([2, 3], rng)], {
    h: 1e-3, rtol: 1e-3, label: 'exp(x)·x through float32',
  });
  // float32 leaf through a float64 computation: d/dx Σ w·x² = 2·w·x, rounded once to float32.
  const x = Tensor.from([0.5, -1.25, 2, 3.1], [4], 'float32').requireGrad();
  const w = Tensor.from([1.5, -2, 0.25, 1 / 3], [4], 'float64');
  T.sum(T.mul(T.square(x.toDType('float64')), w)).backward();
  assert.equal(x.grad!.dtype, 'float32');
  assert.deepEqual(x.grad!.toArray(), x.toArray().map((v, i) => Math.fround(2 * w.data[i]! * v)));
  // float64 leaf through float32: the float32 gradient comes back as float64 values, exactly.
  const y = Tensor.from([0.1, -0.7], [2], 'float64').requireGrad();
  const w32 = Tensor.from([0.3, -1.9], [2], 'float32');
  T.sum(T.mul(T.toFloat(y, 'float32'), w32)).backward();
  assert.equal(y.grad!.dtype, 'float64');
  assert.deepEqual(y.grad!.toArray(), w32.toArray());
  // One leaf used directly and through a cast: both contributions arrive (1 + 3 per element).
  const z = Tensor.from([2, -5, 7], [3], 'float64').requireGrad();
  T.add(T.sum(z), T.toFloat(T.sum(T.mul(T.toFloat(z, 'float32'), 3)), 'float64')).backward();
  assert.deepEqual(z.grad!.toArray(), [4, 4, 4]);
  // A cast records nothing under noGrad or for tensors that need no gradient; the same dtype is the tensor itself.
  assert.equal(noGrad(() => x.toDType('float64')).requiresGrad, false);
  assert.equal(w.toDType('float32').requiresGrad, false);
  assert.equal(x.toDType('float32'), x);
  // int32 has no gradient: refused with a clear message while recording, fine after detach() or in noGrad().
  assert.throws(() => x.toDType('int32'), /toDType\('int32'\): the tensor requires grad and an integer cast has no gradient; call \.detach\(\) first/);
  assert.deepEqual(x.detach().toDType('int32').toArray(), [0, -1, 2, 3]);
  assert.deepEqual(noGrad(() => x.toDType('int32')).toArray(), [0, -1, 2, 3]);
});

test('module: namedTensors follows object paths; parameters lists trainable tensors; zeroGrad clears', () => {
  const w = Tensor.zeros([2, 2]).requireGrad();
  const frozen = Tensor.zeros([2]);
  const model = { blocks: [{ attn: { weight: w } }, { norm: frozen }], head: { bias: Tensor.zeros([3]).requireGrad() }, _cache: Tensor.zeros([1]).requireGrad() };
  assert.deepEqual(T.namedTensors(model).map(([n]) => n), ['blocks.0.attn.weight', 'blocks.1.norm', 'head.bias']);
  assert.deepEqual(T.namedTensors({ a: w }, 'enc').map(([n]) => n), ['enc.a']);
  const ps = T.parameters(model);
  assert.equal(ps.length, 2);
  assert.equal(ps[0], w);
  T.sum(T.mul(w, 2)).backward();
  assert.ok(w.grad);
  T.zeroGrad(ps);
  assert.equal(w.grad, null);
  // shared tensors and cycles are visited once
  const shared: { a: Tensor; b?: unknown; self?: unknown } = { a: w };
  shared.self = shared;
  assert.deepEqual(T.namedTensors({ x: shared, y: shared }).map(([n]) => n), ['x.a']);
  // a tensor tied in two places keeps both names but is one parameter
  const tied = { tok: w, head: { weight: w } };
  assert.deepEqual(T.namedTensors(tied).map(([n]) => n), ['tok', 'head.weight']);
  assert.deepEqual(T.parameters(tied), [w]);
});

test('Tensor basics: constructors, dtype conversion, accessors', () => {
  const t = Tensor.from([1.5, -2.5, 3], [3, 1], 'float64');
  assert.equal(t.dtype, 'float64');
  assert.deepEqual(t.shape, [3, 1]);
  assert.equal(t.ndim, 2);
  assert.equal(t.dim(-2), 3);
  assert.throws(() => t.dim(2), /out of range/);
  assert.deepEqual(t.toDType('int32').toArray(), [1, -2, 3]);
  assert.equal(t.toDType('float64'), t);
  assert.deepEqual(Tensor.arange(4).toArray(), [0, 1, 2, 3]);
  assert.equal(Tensor.arange(2).dtype, 'int32');
  assert.deepEqual(Tensor.full([2], 7, 'float32').toArray(), [7, 7]);
  assert.equal(Tensor.scalar(3).item(), 3);
  assert.deepEqual(Tensor.scalar(3).shape, []);
  assert.throws(() => t.item(), /one element/);
  assert.throws(() => Tensor.arange(2).f, /int32/);
  assert.throws(() => t.i, /int32/);
  assert.throws(() => { (t.shape as number[])[0] = 5; }, TypeError);
  assert.match(t.toString(), /Tensor\(float64, \[3, 1\]/);
});
