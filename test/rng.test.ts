// Tests of the seeded random number generator (src/tensor/rng.ts): determinism, state round trip,
// and rough distribution checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, Tensor } from '../src/tensor/index.js';

function draws(r: Rng, n: number): number[] {
  return Array.from({ length: n }, () => r.uniform());
}

test('determinism from a seed; different seeds differ', () => {
  assert.deepEqual(draws(new Rng(42), 10), draws(new Rng(42), 10));
  assert.notDeepEqual(draws(new Rng(42), 10), draws(new Rng(43), 10));
  assert.notDeepEqual(draws(new Rng(0), 10), draws(new Rng(2 ** 32), 10), 'seeds above 2^32 are mixed in');
  const a = new Rng(7), b = new Rng(7);
  for (let i = 0; i < 100; i++) assert.equal(a.nextU32(), b.nextU32());
  const u = new Rng(1).nextU32();
  assert.ok(Number.isInteger(u) && u >= 0 && u < 2 ** 32);
});

test('getState/setState resumes the exact stream (including a cached normal)', () => {
  const r = new Rng(123);
  r.normal(); // leaves a spare normal cached
  const st = r.getState();
  const cont = [r.normal(), r.normal(), r.uniform(), r.randint(0, 100)];
  const s = new Rng(999);
  s.setState(st);
  assert.deepEqual([s.normal(), s.normal(), s.uniform(), s.randint(0, 100)], cont);
  // the state object is a snapshot
  const st2 = r.getState();
  r.uniform();
  const t = new Rng(0);
  t.setState(st2);
  const r2 = new Rng(0);
  r2.setState(st2);
  assert.equal(t.uniform(), r2.uniform());
  // JSON round trip (checkpoints)
  const j = new Rng(0);
  j.setState(JSON.parse(JSON.stringify(st)));
  const k = new Rng(0);
  k.setState(st);
  assert.deepEqual(draws(j, 5), draws(k, 5));
});

test('uniform and normal moments', () => {
  const r = new Rng(2024);
  const n = 40000;
  let s = 0, s2 = 0, mn = 1, mx = 0;
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    s += u;
    s2 += u * u;
    mn = Math.min(mn, u);
    mx = Math.max(mx, u);
  }
  assert.ok(mn >= 0 && mx < 1);
  // mean 1/2 (σ/√n ≈ 0.0014), variance 1/12
  assert.ok(Math.abs(s / n - 0.5) < 0.01, `uniform mean ${s / n}`);
  assert.ok(Math.abs(s2 / n - (s / n) ** 2 - 1 / 12) < 0.005);
  let m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  for (let i = 0; i < n; i++) {
    const z = r.normal();
    m1 += z / n;
    m2 += (z * z) / n;
    m3 += (z * z * z) / n;
    m4 += (z * z * z * z) / n;
  }
  assert.ok(Math.abs(m1) < 0.025, `normal mean ${m1}`);
  assert.ok(Math.abs(m2 - 1) < 0.04, `normal variance ${m2}`);
  assert.ok(Math.abs(m3) < 0.1, `normal skew ${m3}`);
  assert.ok(Math.abs(m4 - 3) < 0.25, `normal kurtosis ${m4}`);
  // tensor fills with mean/std and bounds
  const t = Tensor.randn([20000], new Rng(5), 'float64', 2);
  let tm = 0, tv = 0;
  for (const v of t.data) tm += v / t.size;
  for (const v of t.data) tv += (v - tm) ** 2 / t.size;
  assert.ok(Math.abs(tm) < 0.05 && Math.abs(Math.sqrt(tv) - 2) < 0.05, `randn std ${Math.sqrt(tv)}`);
  const f = new Float32Array(1000);
  new Rng(6).fillNormal(f, 10, 0.5);
  assert.ok(Math.abs(f.reduce((a, b) => a + b, 0) / f.length - 10) < 0.1);
  const ur = Tensor.rand([1000], new Rng(8), 'float32', -3, -1);
  assert.ok(ur.toArray().every((v) => v >= -3 && v <= -1));
});

test('randint: range and roughly uniform counts', () => {
  const r = new Rng(11);
  const counts = new Array(7).fill(0);
  const n = 14000;
  for (let i = 0; i < n; i++) {
    const v = r.randint(-3, 4);
    assert.ok(Number.isInteger(v) && v >= -3 && v < 4);
    counts[v + 3]++;
  }
  for (const c of counts) assert.ok(Math.abs(c - n / 7) < 5 * Math.sqrt(n / 7), `count ${c}`);
  assert.throws(() => r.randint(3, 3), /empty range/);
  const t = Tensor.randint([100], 5, 9, new Rng(1));
  assert.equal(t.dtype, 'int32');
  assert.ok(t.toArray().every((v) => v >= 5 && v < 9));
});

test('multinomial frequencies follow the weights; zero weights are never drawn', () => {
  const r = new Rng(17);
  const w = [1, 0, 3, 6];
  const counts = [0, 0, 0, 0];
  const n = 20000;
  for (let i = 0; i < n; i++) counts[r.multinomial(w)]++;
  assert.equal(counts[1], 0);
  w.forEach((wi, i) => {
    const p = wi / 10;
    const sd = Math.sqrt(n * p * (1 - p));
    assert.ok(Math.abs(counts[i] - n * p) <= 5 * sd + 1, `index ${i}: ${counts[i]} vs ${n * p}`);
  });
  assert.equal(r.multinomial(new Float32Array([0, 0, 2])), 2);
  assert.throws(() => r.multinomial([0, 0]), /not all zero/);
});

test('bernoulli frequency and shuffle is a permutation', () => {
  const r = new Rng(23);
  let k = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) if (r.bernoulli(0.25)) k++;
  assert.ok(Math.abs(k / n - 0.25) < 0.02, `bernoulli ${k / n}`);
  assert.equal(r.bernoulli(0), false);
  assert.equal(r.bernoulli(1), true);
  const arr = Array.from({ length: 20 }, (_, i) => i);
  r.shuffle(arr);
  assert.deepEqual([...arr].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
  assert.notDeepEqual(arr, Array.from({ length: 20 }, (_, i) => i));
  // fork: independent, deterministic
  const f1 = new Rng(5).fork(), f2 = new Rng(5).fork();
  assert.deepEqual(draws(f1, 4), draws(f2, 4));
});
