// Tests of the stage-2 sampler (src/ar/sampling.ts): the temperature / top-k / top-p filter against the official
// code's golden output and hand-checked cases, the CFG combination and schedules, seeded and prefix-consistent
// generation with both heads, draws that follow the filtered distribution, and every bad-input error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { parseArModelConfig, tokenToDigits } from '../src/ar/config.js';
import { FlexAR } from '../src/ar/model.js';
import { applyCfg, argmaxIndex, cfgScaleAt, filterLogits, generate, type GenerateOptions } from '../src/ar/sampling.js';
import { readSafetensors, toFloat32 } from '../src/io/safetensors.js';
import { Rng } from '../src/tensor/index.js';
import { goldenPath, goldenSkip, requireGolden } from './helpers/golden.js';

const NEED = ['ar-sampling/io.safetensors', 'ar-sampling/config.json'];

function tinyModel(head: 'flat' | 'digits', seed = 1): FlexAR {
  const cfg = parseArModelConfig({ vocab_size: 24, fsq_levels: [3, 2, 4], num_tokens: 6, num_classes: 3, dim: 32, depth: 2, head_dim: 8, head }, 'test');
  const m = FlexAR.init(cfg, new Rng(seed));
  // larger weights than the 0.02 init: distributions far from uniform, so that CFG and filters change the draws
  const rng = new Rng(seed + 100);
  for (const [, t] of m.namedParameters()) if (t.ndim === 2) rng.fillNormal(t.f, 0, 0.3);
  return m;
}

/** Probabilities from logits as exact fractions of the given weights: logits = ln w. */
const logitsOf = (w: number[]) => Float32Array.from(w, Math.log);

function assertProbs(actual: Float32Array, expected: number[], what: string): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.equal(actual[i] === 0, expected[i] === 0, `${what}: support at ${i} (got ${actual[i]}, expected ${expected[i]})`);
    assert.ok(Math.abs(actual[i] - expected[i]) <= 1e-6, `${what}[${i}]: got ${actual[i]}, expected ${expected[i]}`);
  }
}

test('filter: golden parity with the official sample_with_top_k_top_p (7 cases) and the CFG combination', { skip: goldenSkip(...NEED) }, () => {
  requireGolden(...NEED);
  const cfg = JSON.parse(fs.readFileSync(goldenPath('ar-sampling', 'config.json'), 'utf8'));
  const { tensors } = readSafetensors(goldenPath('ar-sampling', 'io.safetensors'));
  const logits = toFloat32(tensors.get('logits')!);
  const [b, l, v] = cfg.shape as number[];
  assert.equal(logits[5], logits[6], 'the golden row 0 has a tie');
  cfg.cases.forEach((c: { temperature: number; top_k: number; top_p: number }, ci: number) => {
    const expected = toFloat32(tensors.get(`case${ci}.probs`)!);
    // the official spells "no top-p" top_p = 0; here it is topP = 1
    const opts = { temperature: c.temperature, topK: c.top_k, topP: c.top_p === 0 ? 1 : c.top_p };
    for (let r = 0; r < b * l; r++) {
      const got = filterLogits(logits.subarray(r * v, (r + 1) * v), opts);
      for (let i = 0; i < v; i++) {
        const e = expected[r * v + i];
        assert.equal(got[i] === 0, e === 0, `case ${ci} ${JSON.stringify(c)} row ${r}: support differs at ${i} (got ${got[i]}, official ${e})`);
        // float32 rounding: a few ulps (torch's own exp/sum order differs from ours)
        assert.ok(Math.abs(got[i] - e) <= 4e-7 * e, `case ${ci} row ${r} [${i}]: got ${got[i]}, official ${e}`);
      }
    }
  });
  const cond = toFloat32(tensors.get('cfg.cond')!);
  const uncond = toFloat32(tensors.get('cfg.uncond')!);
  for (const s of cfg.cfg_scales as number[]) {
    const both = new Float32Array(2 * cond.length);
    both.set(cond);
    both.set(uncond, cond.length);
    applyCfg(both, b, v, s);
    const expected = toFloat32(tensors.get(`cfg.s${s.toFixed(1)}`)!);
    assert.deepEqual(both.subarray(0, cond.length), expected, `CFG s = ${s}: bitwise equal to the official float32 result`);
  }
});

test('filter: hand-checked temperature, top-k with ties, top-p boundary and ties', () => {
  // temperature: probabilities ∝ w^(1/T)
  assertProbs(filterLogits(logitsOf([1, 2, 3, 4])), [0.1, 0.2, 0.3, 0.4], 'T = 1');
  assertProbs(filterLogits(logitsOf([1, 2, 3, 4]), { temperature: 0.5 }), [1 / 30, 4 / 30, 9 / 30, 16 / 30], 'T = 0.5');
  assertProbs(filterLogits(logitsOf([1, 4]), { temperature: 2 }), [1 / 3, 2 / 3], 'T = 2');
  // top-k keeps everything tied with the k-th largest
  const tie = Float32Array.from([1, 3, 3, 2]);
  const e = Math.E;
  assertProbs(filterLogits(tie, { topK: 1 }), [0, 0.5, 0.5, 0], 'top-1 with a tie at the top');
  assertProbs(filterLogits(tie, { topK: 2 }), [0, 0.5, 0.5, 0], 'top-2');
  assertProbs(filterLogits(tie, { topK: 3 }), [0, e / (2 * e + 1), e / (2 * e + 1), 1 / (2 * e + 1)], 'top-3');
  assertProbs(filterLogits(tie, { topK: 4 }), Array.from(filterLogits(tie)), 'top-k = V is no filter');
  assertProbs(filterLogits(tie, { topK: 40 }), Array.from(filterLogits(tie)), 'top-k > V is no filter');
  // top-p: probabilities 1/8, 1/8, 1/4, 1/2; keep the smallest top set whose mass reaches p
  const q = logitsOf([1, 1, 2, 4]);
  assertProbs(filterLogits(q, { topP: 0.49 }), [0, 0, 0, 1], 'top-p 0.49: the top token alone reaches it');
  assertProbs(filterLogits(q, { topP: 0.51 }), [0, 0, 1 / 3, 2 / 3], 'top-p 0.51 needs the second');
  assertProbs(filterLogits(q, { topP: 0.74 }), [0, 0, 1 / 3, 2 / 3], 'top-p 0.74: the top two reach it');
  assertProbs(filterLogits(q, { topP: 0.76 }), [0, 1 / 7, 2 / 7, 4 / 7], 'top-p 0.76: one of two tied tokens is needed, the lower index goes first');
  assertProbs(filterLogits(q, { topP: 0.9 }), [0.125, 0.125, 0.25, 0.5], 'top-p 0.9 needs all four');
  assertProbs(filterLogits(q, { topP: 1e-9 }), [0, 0, 0, 1], 'the largest token always survives');
  assertProbs(filterLogits(Float32Array.from([2, 2]), { topP: 1e-9 }), [0, 1], 'of tied largest tokens the last index survives');
  // top-k then top-p
  assertProbs(filterLogits(logitsOf([4, 1, 2, 1]), { topK: 2, topP: 0.6 }), [1, 0, 0, 0], 'top-2 then top-p 0.6 of (2/3, 1/3)');
  assertProbs(filterLogits(logitsOf([4, 1, 2, 1]), { topK: 2, topP: 0.7 }), [2 / 3, 0, 1 / 3, 0], 'top-2 then top-p 0.7');
  // argmax
  assert.equal(argmaxIndex([0, 3, 3, 1]), 1);
});

test('filter: top-p over a large vocabulary equals a full sort and running sum', () => {
  const rng = new Rng(77);
  const v = 20000;
  for (const [scale, topP, topK] of [[1, 0.9, 0], [4, 0.5, 0], [0.05, 0.95, 0], [3, 0.99, 500], [8, 0.3, 0], [1e-4, 0.2, 0]] as const) {
    const logits = Float32Array.from({ length: v }, () => scale * rng.normal());
    const opts = { topP, topK };
    const got = filterLogits(logits, opts);
    // reference: the official algorithm literally (full ascending sort, running sum in double rounded to float32)
    const z = filterLogits(logits, { topK }); // after top-k, as probabilities
    const order = Array.from({ length: v }, (_, i) => i).sort((a, b) => logits[a] - logits[b] || a - b);
    const keep = new Uint8Array(v).fill(1);
    let cum = 0;
    for (let r = 0; r < v - 1; r++) {
      cum += z[order[r]];
      if (Math.fround(cum) <= Math.fround(1 - topP)) keep[order[r]] = 0;
    }
    let kept = 0;
    for (let i = 0; i < v; i++) {
      const k = keep[i] && z[i] > 0;
      assert.equal(got[i] > 0, !!k, `scale ${scale}, topP ${topP}, topK ${topK}: support differs at ${i}`);
      if (k) kept++;
    }
    assert.ok(kept >= 1);
  }
});

test('CFG schedules: constant, linear from 1 to s, power-cosine from 1 toward s', () => {
  const g = { cfgScale: 3 };
  assert.equal(cfgScaleAt(0, 32, g), 3);
  assert.equal(cfgScaleAt(31, 32, g), 3);
  const lin = { cfgScale: 3, schedule: 'linear' as const };
  assert.equal(cfgScaleAt(0, 32, lin), 1);
  assert.equal(cfgScaleAt(31, 32, lin), 3);
  assert.ok(Math.abs(cfgScaleAt(10, 21, lin) - 2) < 1e-12);
  assert.equal(cfgScaleAt(0, 1, lin), 3);
  const pc = { cfgScale: 3, schedule: 'power-cosine' as const, power: 1 };
  assert.equal(cfgScaleAt(0, 32, pc), 1);
  assert.ok(Math.abs(cfgScaleAt(16, 32, pc) - 2) < 1e-12, 'half-way at t = R/2 for power 1');
  const pc2 = { ...pc, power: 2 };
  assert.ok(Math.abs(cfgScaleAt(16, 32, pc2) - (1 + 2 * (1 - Math.cos(Math.PI / 4)) / 2)) < 1e-12);
  assert.ok(cfgScaleAt(31, 32, pc) < 3 && cfgScaleAt(31, 32, pc) > 2.9);
  for (let t = 1; t < 32; t++) assert.ok(cfgScaleAt(t, 32, pc2) > cfgScaleAt(t - 1, 32, pc2), 'increasing');
});

test('generate: seeded reproducibility, prefixes, onToken, argmax', () => {
  for (const head of ['flat', 'digits'] as const) {
    const m = tinyModel(head);
    const base: GenerateOptions = { classes: [0, 1, 2, 0, 1, 2, 0, 1], cfgScale: 2, seed: 5, temperature: 1.2 };
    const a = generate(m, base);
    const b = generate(m, base);
    assert.deepEqual(a, b, `${head}: same seed, same tokens`);
    assert.equal(a.length, 8);
    a.forEach((x) => assert.equal(x.length, 6));
    assert.notDeepEqual(generate(m, { ...base, seed: 6 }), a, `${head}: another seed, other tokens`);
    assert.notDeepEqual(generate(m, { ...base, cfgScale: 1 }), a, `${head}: the guidance changes the draws`);
    // a k-token generation is the prefix of the full one, for every schedule
    for (const schedule of ['constant', 'linear', 'power-cosine'] as const) {
      const full = generate(m, { ...base, schedule, power: 2 });
      for (const k of [1, 3]) {
        const part = generate(m, { ...base, schedule, power: 2, numTokens: k });
        part.forEach((p, i) => assert.deepEqual(p, full[i].subarray(0, k), `${head} ${schedule}: k = ${k} is a prefix`));
      }
    }
    // onToken: once per position, in order, with the tokens so far
    const calls: [number, number[][]][] = [];
    const out = generate(m, { ...base, numTokens: 5, onToken: (t, so) => calls.push([t, so.map((x) => Array.from(x))]) });
    assert.deepEqual(calls.map(([t]) => t), [0, 1, 2, 3, 4]);
    calls.forEach(([t, so]) => so.forEach((x, i) => assert.deepEqual(x, Array.from(out[i].subarray(0, t + 1)))));
    // without the KV cache: the same tokens
    assert.deepEqual(generate(m, { ...base, kvCache: false }), a, `${head}: recomputation without the cache draws the same tokens`);
    // argmax ignores the seed and the filters
    const g1 = generate(m, { ...base, argmax: true, seed: 1 });
    assert.deepEqual(generate(m, { ...base, argmax: true, seed: 2, topK: 1, temperature: 3 }), g1);
  }
});

test('generate: CFG runs the doubled batch and appends each token to both halves (greedy, both heads)', () => {
  for (const head of ['flat', 'digits'] as const) {
    const m = tinyModel(head, 3);
    const classes = [2, 0, 1];
    const s = 2.5;
    const b = classes.length;
    const levels = m.config.fsq_levels;
    // by hand: step on [cond | uncond], l = u + s (c − u), argmax (per digit for the digits head)
    const cache = m.createCache(2 * b);
    const rowClasses = new Int32Array([...classes, -1, -1, -1]);
    const expected = classes.map(() => [] as number[]);
    let prev: Int32Array | null = null;
    for (let t = 0; t < m.config.num_tokens; t++) {
      const h = m.step(cache, prev, rowClasses);
      const next = new Int32Array(2 * b);
      for (let i = 0; i < b; i++) {
        if (head === 'flat') {
          const l = m.flatLogits(h).f;
          const v = m.config.vocab_size;
          next[i] = argmaxIndex(Array.from({ length: v }, (_, k) => l[b * v + i * v + k] + s * (l[i * v + k] - l[b * v + i * v + k])));
        } else {
          const digits = new Int32Array(2 * b * levels.length);
          for (let j = 0; j < levels.length; j++) {
            const l = m.digitLogits(h, digits, j).f;
            const n = levels[j];
            const d = argmaxIndex(Array.from({ length: n }, (_, k) => l[b * n + i * n + k] + s * (l[i * n + k] - l[b * n + i * n + k])));
            digits[i * levels.length + j] = d;
            digits[(b + i) * levels.length + j] = d;
          }
          next[i] = digits.subarray(i * levels.length, (i + 1) * levels.length).reduceRight((id, d, j) => id * levels[j] + d, 0);
        }
        next[b + i] = next[i];
        expected[i].push(next[i]);
      }
      prev = next;
    }
    const got = generate(m, { classes, cfgScale: s, argmax: true });
    assert.deepEqual(got.map((x) => Array.from(x)), expected, head);
  }
});

test('generate: draws follow the filtered distribution (both heads)', () => {
  for (const head of ['flat', 'digits'] as const) {
    const m = tinyModel(head, 4);
    const n = 4000;
    const out = generate(m, { classes: new Array(n).fill(1), numTokens: 1, temperature: 0.8, topK: head === 'flat' ? 5 : 0, seed: 9 });
    const counts = new Float64Array(24);
    for (const o of out) counts[o[0]]++;
    // expected first-token distribution
    const cache = m.createCache(1);
    const h = m.step(cache, null, new Int32Array([1]));
    let p: Float64Array;
    if (head === 'flat') {
      p = Float64Array.from(filterLogits(Float32Array.from(m.flatLogits(h).f), { temperature: 0.8, topK: 5 }));
    } else {
      p = new Float64Array(24);
      const levels = m.config.fsq_levels;
      for (let id = 0; id < 24; id++) {
        const d = tokenToDigits(id, levels);
        let prob = 1;
        for (let j = 0; j < levels.length; j++) prob *= filterLogits(Float32Array.from(m.digitLogits(h, d, j).f), { temperature: 0.8 })[d[j]];
        p[id] = prob;
      }
    }
    for (let id = 0; id < 24; id++) {
      const sd = Math.sqrt(n * p[id] * (1 - p[id]));
      if (p[id] === 0) assert.equal(counts[id], 0, `${head}: filtered-out token ${id} was drawn`);
      else assert.ok(Math.abs(counts[id] - n * p[id]) < 5 * sd + 1, `${head}: token ${id} drawn ${counts[id]} times, expected ${(n * p[id]).toFixed(1)}`);
    }
  }
});

test('every bad sampling input is a clear error', () => {
  const m = tinyModel('flat');
  const ok: GenerateOptions = { classes: [0, 1] };
  const bad: [Partial<GenerateOptions>, RegExp][] = [
    [{ classes: [0, 3] }, /class 3 \(sample 1\) is outside 0..2/],
    [{ classes: [-1] }, /class -1 \(sample 0\) is outside 0..2/],
    [{ classes: [0.5] }, /class 0.5/],
    [{ classes: [] }, /classes must be a non-empty list/],
    [{ numTokens: 0 }, /numTokens must be an integer in 1..6, got 0/],
    [{ numTokens: 7 }, /numTokens must be an integer in 1..6, got 7/],
    [{ numTokens: 2.5 }, /numTokens/],
    [{ cfgScale: NaN }, /cfgScale must be a number ≥ 0, got NaN/],
    [{ cfgScale: -1 }, /cfgScale must be a number ≥ 0, got -1/],
    [{ cfgScale: Infinity }, /cfgScale/],
    [{ schedule: 'cosine' as never }, /schedule must be 'constant', 'linear' or 'power-cosine'/],
    [{ power: 0 }, /power must be a positive number/],
    [{ temperature: NaN }, /temperature must be a positive number, got NaN/],
    [{ temperature: -1 }, /temperature must be a positive number, got -1/],
    [{ temperature: 0 }, /temperature must be a positive number, got 0 \(use argmax/],
    [{ topK: -1 }, /topK must be an integer ≥ 0 \(0 = off\), got -1/],
    [{ topK: 1.5 }, /topK must be an integer/],
    [{ topP: 0 }, /topP must be in \(0, 1\] \(1 = off\), got 0/],
    [{ topP: 1.5 }, /topP must be in \(0, 1\]/],
    [{ topP: NaN }, /topP must be in \(0, 1\]/],
    [{ seed: -1 }, /seed must be a non-negative integer/],
  ];
  for (const [o, re] of bad) assert.throws(() => generate(m, { ...ok, ...o }), re, JSON.stringify(o));
  assert.throws(() => filterLogits(Float32Array.from([0, NaN])), /logit 1 is NaN/);
  assert.throws(() => filterLogits(new Float32Array(0)), /no logits/);
  assert.throws(() => filterLogits(new Float32Array(3), { topP: 0 }), /topP must be in \(0, 1\]/);
  assert.throws(() => cfgScaleAt(6, 6, { cfgScale: 2 }), /position 6 is outside 0..5/);
  assert.throws(() => applyCfg(new Float32Array(5), 1, 3, 2), /5 logits for 2 × 1 rows of 3/);
});
