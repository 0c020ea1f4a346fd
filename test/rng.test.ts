// Tests of the seeded random number generator (src/tensor/rng.ts): reference vectors of xoshiro128** and
// of the seeding, determinism, state round trip, and rough distribution checks.
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

// Reference vectors from a C program with the published xoshiro128** 1.1 `next()` (Blackman & Vigna,
// prng.di.unimi.it/xoshiro128starstar.c), compiled with gcc:
//   result = rotl(s[1] * 5, 7) * 9;  t = s[1] << 9;
//   s[2] ^= s[0];  s[3] ^= s[1];  s[1] ^= s[2];  s[0] ^= s[3];  s[2] ^= t;  s[3] = rotl(s[3], 11);
// and, in the same program, the seeding of rng.ts ("splitmix32": z = (x += 0x9e3779b9);
// z = (z ^ z >> 16) * 0x85ebca6b; z = (z ^ z >> 13) * 0xc2b2ae35; return z ^ z >> 16), all uint32.
test('xoshiro128**: the published reference outputs from the same raw state', () => {
  const vectors: Array<[[number, number, number, number], number[]]> = [
    [[1, 2, 3, 4], [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804]],
    [
      [0x9e3779b9, 0x243f6a88, 0xb7e15162, 0xdeadbeef],
      [2463954730, 5524658, 74256371, 1905451993, 3123413897, 314453775, 1263677054, 1531511215, 693760292, 1307612896],
    ],
  ];
  for (const [state, expected] of vectors) {
    const r = new Rng(0);
    r.setState({ s: state, spare: null });
    assert.deepEqual(Array.from({ length: expected.length }, () => r.nextU32()), expected, `state [${state}]`);
  }
  // Outputs 1011–1014 from the second state (the reference skips 1000 after the first 10).
  const r = new Rng(0);
  r.setState({ s: vectors[1]![0], spare: null });
  for (let i = 0; i < 1010; i++) r.nextU32();
  assert.deepEqual([r.nextU32(), r.nextU32(), r.nextU32(), r.nextU32()], [988727111, 1956689635, 3766647044, 2107565450]);
  // uniform() takes 27 + 26 high bits of two consecutive outputs: (a >>> 5) · 2^26 + (b >>> 6), over 2^53.
  const u = new Rng(0);
  u.setState({ s: [1, 2, 3, 4], spare: null });
  assert.equal(u.uniform(), ((11520 >>> 5) * 2 ** 26 + (0 >>> 6)) / 2 ** 53);
  assert.equal(u.uniform(), ((5927040 >>> 5) * 2 ** 26 + (70819200 >>> 6)) / 2 ** 53);
});

test('seeding: the state is four splitmix32 outputs of the seed (high bits of seeds ≥ 2^32 mixed in)', () => {
  assert.deepEqual(new Rng(42).getState(), { s: [939911724, 3948730756, 321366731, 3317318717], spare: null });
  // seed 2^32 + 5: splitmix32 starts from 5 ^ (1 · 0x27d4eb2d)
  assert.deepEqual(new Rng(2 ** 32 + 5).getState().s, [3964779354, 2473879993, 1204781298, 2472156659]);
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

test('fillU32 draws the same stream as nextU32 and leaves the same state', () => {
  const a = new Rng(77);
  const b = new Rng(77);
  const bulk = new Uint32Array(1001);
  a.fillU32(bulk);
  assert.deepEqual(Array.from(bulk), Array.from({ length: 1001 }, () => b.nextU32()));
  assert.deepEqual(a.getState(), b.getState());
  assert.equal(a.nextU32(), b.nextU32());
});
