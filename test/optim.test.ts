// Tests of the optimizers and training utilities (src/tensor/optim.ts) against hand-computed
// float64 formulas, and of exact state save/restore.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { AdamW, clipGradNorm, EMA, Rng, SGD, Tensor, warmupCosineLr } from '../src/tensor/index.js';
import { assertClose } from './helpers/gradcheck.js';

function param(values: number[]): Tensor {
  return Tensor.from(values, [values.length], 'float32').requireGrad();
}
function setGrad(p: Tensor, values: number[]): void {
  p.grad = Tensor.from(values, p.shape, 'float32');
}

/** Reference AdamW in float64 (PyTorch semantics), returning the parameters after `grads.length` steps. */
function adamwRef(p0: number[], grads: number[][], o: { lr: number; b1: number; b2: number; eps: number; wd: number }): number[] {
  const p = p0.map((v) => Math.fround(v));
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, t) => {
    const step = t + 1;
    for (let i = 0; i < p.length; i++) {
      p[i] *= 1 - o.lr * o.wd;
      m[i] = o.b1 * m[i] + (1 - o.b1) * g[i];
      v[i] = o.b2 * v[i] + (1 - o.b2) * g[i] * g[i];
      const mhat = m[i] / (1 - o.b1 ** step);
      const vhat = v[i] / (1 - o.b2 ** step);
      p[i] -= (o.lr * mhat) / (Math.sqrt(vhat) + o.eps);
    }
  });
  return p;
}

test('AdamW: steps match the float64 formula (decoupled weight decay, bias correction)', () => {
  const p0 = [0.5, -1.25, 2, 0.01];
  const grads = [[0.1, -0.2, 0.3, 0], [0.05, 0.4, -0.3, 1e-3], [-0.2, 0.1, 0.02, 2]];
  const o = { lr: 0.01, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1 };
  const p = param(p0);
  const opt = new AdamW([p], { lr: o.lr, betas: [o.b1, o.b2], eps: o.eps, weightDecay: o.wd });
  for (let s = 0; s < grads.length; s++) {
    setGrad(p, grads[s]);
    opt.step();
    assertClose(p.toArray(), adamwRef(p0, grads.slice(0, s + 1), o), { rtol: 1e-6, atol: 1e-7 }, `AdamW step ${s + 1}`);
  }
  assert.equal(opt.stepCount, 3);
  // defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01
  const q = param(p0);
  const d = new AdamW([q]);
  setGrad(q, grads[0]);
  d.step();
  assertClose(q.toArray(), adamwRef(p0, [grads[0]], { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01 }), { rtol: 1e-6, atol: 1e-8 }, 'AdamW defaults');
});

test('AdamW: parameter groups with lrScale and weightDecay; parameters without grad are skipped', () => {
  const p0 = [1, -2], q0 = [0.5, 3], r0 = [7];
  const g = [0.3, -0.1], h = [0.2, 0.2];
  const p = param(p0), q = param(q0), r = param(r0);
  const opt = new AdamW([{ params: [p], lrScale: 0.5 }, { params: [q, r], weightDecay: 0 }], { lr: 0.1, weightDecay: 0.2, betas: [0.9, 0.99], eps: 1e-8 });
  setGrad(p, g);
  setGrad(q, h);
  opt.step();
  assertClose(p.toArray(), adamwRef(p0, [g], { lr: 0.05, b1: 0.9, b2: 0.99, eps: 1e-8, wd: 0.2 }), { rtol: 1e-6, atol: 1e-7 }, 'group 0');
  assertClose(q.toArray(), adamwRef(q0, [h], { lr: 0.1, b1: 0.9, b2: 0.99, eps: 1e-8, wd: 0 }), { rtol: 1e-6, atol: 1e-7 }, 'group 1');
  assert.deepEqual(r.toArray(), [7], 'no grad → untouched (no weight decay either)');
  opt.zeroGrad();
  assert.equal(p.grad, null);
  assert.throws(() => new AdamW([Tensor.zeros([2], 'float64').requireGrad()]), /float32/);
});

test('SGD with momentum (and weight decay) matches the formula', () => {
  const p0 = [1, -0.5, 2];
  const grads = [[0.2, 0.1, -0.3], [0.1, -0.4, 0.05], [-0.3, 0.2, 0.2]];
  const lr = 0.1, mu = 0.9, wd = 0.01;
  const p = param(p0);
  const opt = new SGD([p], { lr, momentum: mu, weightDecay: wd });
  const ref = p0.map(Math.fround);
  const buf = [0, 0, 0];
  grads.forEach((g, s) => {
    setGrad(p, g);
    opt.step();
    for (let i = 0; i < 3; i++) {
      const gi = g[i] + wd * ref[i];
      buf[i] = s === 0 ? gi : mu * buf[i] + gi;
      ref[i] -= lr * buf[i];
    }
    assertClose(p.toArray(), ref, { rtol: 1e-6, atol: 1e-7 }, `SGD step ${s + 1}`);
  });
  // plain SGD
  const q = param([1, 2]);
  const plain = new SGD([q], { lr: 0.5 });
  setGrad(q, [0.2, -0.4]);
  plain.step();
  assertClose(q.toArray(), [0.9, 2.2], { rtol: 1e-7, atol: 0 }, 'plain SGD');
});

test('clipGradNorm: returns the global norm and rescales only when above the limit', () => {
  const a = param([0, 0, 0]), b = param([0, 0]), c = param([1]);
  setGrad(a, [3, 0, 0]);
  setGrad(b, [0, 4]);
  // c has no grad: ignored
  const n = clipGradNorm([a, b, c], 1);
  assert.ok(Math.abs(n - 5) < 1e-6);
  const after = Math.hypot(...a.grad!.toArray(), ...b.grad!.toArray());
  assert.ok(Math.abs(after - 1) < 1e-5, `clipped norm ${after}`);
  assertClose(a.grad!.toArray(), [0.6, 0, 0], { rtol: 1e-5, atol: 0 }, 'clipped direction');
  setGrad(a, [0.3, 0, 0]);
  setGrad(b, [0, 0.4]);
  assert.ok(Math.abs(clipGradNorm([a, b], 1) - 0.5) < 1e-6);
  assert.deepEqual(a.grad!.toArray(), [Math.fround(0.3), 0, 0], 'unclipped');
});

test('warmupCosineLr values', () => {
  const o = { baseLr: 1e-3, warmupSteps: 10, totalSteps: 110, minLr: 1e-5 };
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) <= 1e-15 + 1e-12 * Math.abs(b), `${a} vs ${b}`);
  close(warmupCosineLr(0, o), 1e-4);
  close(warmupCosineLr(4, o), 5e-4);
  close(warmupCosineLr(9, o), 1e-3);
  close(warmupCosineLr(10, o), 1e-3);
  close(warmupCosineLr(60, o), (1e-3 + 1e-5) / 2);
  close(warmupCosineLr(35, o), 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + Math.cos(Math.PI / 4)));
  close(warmupCosineLr(110, o), 1e-5);
  close(warmupCosineLr(500, o), 1e-5);
  // no warmup, default minLr 0
  close(warmupCosineLr(0, { baseLr: 2, warmupSteps: 0, totalSteps: 4 }), 2);
  close(warmupCosineLr(2, { baseLr: 2, warmupSteps: 0, totalSteps: 4 }), 1);
  close(warmupCosineLr(4, { baseLr: 2, warmupSteps: 0, totalSteps: 4 }), 0);
  // monotone non-increasing after warmup
  let prev = Infinity;
  for (let s = 10; s <= 110; s++) {
    const lr = warmupCosineLr(s, o);
    assert.ok(lr <= prev);
    prev = lr;
  }
});

test('EMA: shadow = decay·shadow + (1 − decay)·param; copyTo; state round trip', () => {
  const p = param([1, 2]);
  const ema = new EMA([p], 0.9);
  (p.data as Float32Array).set([3, 0]);
  ema.update();
  assertClose(Array.from(ema.shadow[0]), [1.2, 1.8], { rtol: 1e-6, atol: 0 }, 'EMA 1');
  (p.data as Float32Array).set([3, 0]);
  ema.update();
  assertClose(Array.from(ema.shadow[0]), [0.9 * 1.2 + 0.3, 0.9 * 1.8], { rtol: 1e-6, atol: 0 }, 'EMA 2');
  const st = ema.getState();
  ema.update();
  ema.setState(st);
  assertClose(Array.from(ema.shadow[0]), [0.9 * 1.2 + 0.3, 0.9 * 1.8], { rtol: 1e-6, atol: 0 }, 'EMA restored');
  const q = param([0, 0]);
  ema.copyTo([q]);
  assert.deepEqual(q.toArray(), Array.from(ema.shadow[0]));
  ema.copyTo();
  assert.deepEqual(p.toArray(), Array.from(ema.shadow[0]));
});

/** A tiny regression model and a deterministic gradient for step s. */
function makeModel(seed: number): { w: Tensor; b: Tensor } {
  const r = new Rng(seed);
  return { w: Tensor.randn([4, 3], r).requireGrad(), b: Tensor.randn([4], r).requireGrad() };
}
function trainStep(model: { w: Tensor; b: Tensor }, opt: AdamW | SGD, s: number): void {
  const r = new Rng(1000 + s);
  const x = Tensor.randn([5, 3], r);
  const y = Tensor.randn([5, 4], r);
  opt.zeroGrad();
  T.mseLoss(T.linear(x, model.w, model.b), y).backward();
  opt.step();
}

for (const kind of ['AdamW', 'SGD'] as const) {
  test(`${kind}: getState/setState round trip gives a bitwise identical continuation`, () => {
    const make = (m: { w: Tensor; b: Tensor }) =>
      kind === 'AdamW'
        ? new AdamW([{ params: [m.w] }, { params: [m.b], weightDecay: 0, lrScale: 2 }], { lr: 0.01, weightDecay: 0.05 })
        : new SGD([m.w, m.b], { lr: 0.05, momentum: 0.9 });
    const a = makeModel(3);
    const optA = make(a);
    for (let s = 0; s < 3; s++) trainStep(a, optA, s);
    const saved = { w: a.w.clone(), b: a.b.clone(), opt: optA.getState() };
    for (let s = 3; s < 6; s++) trainStep(a, optA, s);

    const b = makeModel(77); // different init, overwritten by the checkpoint
    (b.w.data as Float32Array).set(saved.w.data);
    (b.b.data as Float32Array).set(saved.b.data);
    const optB = make(b);
    optB.setState(saved.opt);
    for (let s = 3; s < 6; s++) trainStep(b, optB, s);
    assert.deepEqual(Array.from(b.w.data), Array.from(a.w.data));
    assert.deepEqual(Array.from(b.b.data), Array.from(a.b.data));
    assert.equal(optB.stepCount, optA.stepCount);
    // the saved state is a copy: further steps did not change it
    const again = makeModel(5);
    const optC = make(again);
    optC.setState(saved.opt);
    assert.deepEqual(optC.getState(), saved.opt);
    assert.throws(() => make({ w: param([1]), b: param([1]) }).setState(saved.opt), /state|size|match/);
  });
}
