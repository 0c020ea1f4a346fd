// Golden parity of the tokenizer core (encoder, FSQ, noise module, decoder, detokenize) on the
// tiny / small / pipeline sets, plus FSQ, decoder-argument and autograd unit tests.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { mseLoss } from '../src/tensor/nn.js';
import { noGrad, Tensor } from '../src/tensor/tensor.js';
import { FlowDecoder, sampleKeepK } from '../src/flextok/decoder.js';
import { RegisterEncoder } from '../src/flextok/encoder.js';
import { adaptiveProjectedGuidance, erfinv, MomentumBuffer, noiseLatents, sampleTimesteps } from '../src/flextok/flow.js';
import { FSQ } from '../src/flextok/fsq.js';
import { formatParityResults, readTensorFile } from '../src/flextok/parity_util.js';
import { decoderConfigFromGolden, encoderConfigFromGolden, tokenizerParity } from '../src/flextok/parity_tokenizer.js';
import { sampleMask, SequenceLayout } from '../src/flextok/transformer.js';
import { WeightMap } from '../src/flextok/weights.js';
import { Rng } from '../src/tensor/rng.js';
import { goldenPath, goldenSkip, requireGolden } from './helpers/golden.js';

/** The files of one golden tokenizer set (relative to the golden folder). */
const setFiles = (name: string) => ['config.json', 'weights.safetensors', 'io.safetensors'].map((f) => `${name}/${f}`);
const TINY_FILES = setFiles('tiny');

describe('tokenizer golden parity', () => {
  for (const name of ['tiny', 'small', 'pipeline']) {
    const dir = goldenPath(name);
    test(name, { skip: goldenSkip(...setFiles(name)) }, () => {
      requireGolden(...setFiles(name));
      const results = tokenizerParity(dir);
      const failed = results.filter((r) => !r.pass);
      assert.ok(results.length > 100, `only ${results.length} tensors compared`);
      for (const stage of ['enc.', 'fsq.', 'noise.', 'dec.', 'detok.', 'posemb.']) {
        assert.ok(results.some((r) => r.name.startsWith(stage)), `no ${stage}* tensor compared`);
      }
      assert.equal(failed.length, 0, formatParityResults(failed));
    });
  }
});

describe('FSQ', () => {
  for (const levels of [[8, 8, 8, 5, 5, 5], [8, 5, 5, 5]]) {
    test(`exhaustive ids → codes → ids for [${levels}]`, () => {
      const fsq = new FSQ(levels);
      const size = levels.reduce((a, b) => a * b, 1);
      assert.equal(fsq.codebookSize, size);
      const ids = Int32Array.from({ length: size }, (_, i) => i);
      const codes = fsq.idsToCodes(ids);
      assert.deepEqual(codes.shape, [size, levels.length]);
      assert.deepEqual(fsq.codesToIds(codes), ids);
      // Codes are fixed points of quantisation of their own bounded values.
      const digits = new Tensor(codes.f.map((v, i) => v * fsq.halfWidth[i % levels.length]), codes.shape);
      assert.deepEqual(fsq.quantizeBounded(digits).f, codes.f);
    });
  }

  test('basis: dimension 0 least significant; id 0 is all −1', () => {
    const fsq = new FSQ([8, 8, 8, 5, 5, 5]);
    assert.deepEqual(fsq.basis, [1, 8, 64, 512, 2560, 12800]);
    assert.deepEqual(Array.from(fsq.idsToCodes([0]).f), [-1, -1, -1, -1, -1, -1]);
    assert.deepEqual(Array.from(fsq.idsToCodes([1]).f), [-0.75, -1, -1, -1, -1, -1]);
    assert.deepEqual(Array.from(fsq.idsToCodes([63999]).f), [0.75, 0.75, 0.75, 1, 1, 1]);
  });

  test('round half to even on ties', () => {
    const fsq = new FSQ([8, 5]);
    const ties = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -3.5];
    const expect = [0, 2, 2, -0, -2, -2, 4, -4];
    for (let i = 0; i < ties.length; i++) {
      const q = fsq.quantizeBounded(Tensor.from([ties[i], ties[i]], [1, 2])).f;
      assert.equal(q[0], expect[i] / 4, `L=8 tie ${ties[i]}`);
      assert.equal(q[1], expect[i] / 2, `L=5 tie ${ties[i]}`);
    }
    // End to end through bound(): find inputs whose bounded value is exactly a tie.
    let found = 0;
    for (const target of [0.5, 1.5, -0.5, -1.5]) {
      const l5 = new FSQ([5]);
      let z = Math.fround(Math.atanh(target / 2.002));
      for (let step = 0; step < 400; step++) {
        const zt = Tensor.from([z], [1, 1]);
        const b = l5.bound(zt).f[0];
        if (b === target) {
          found++;
          const { codes } = l5.quantize(zt);
          const even = 2 * Math.round(target / 2);
          assert.equal(codes.f[0], even / 2, `quantize(${z}) with bound exactly ${target}`);
          break;
        }
        // walk one float32 ulp towards the target
        const buf = new Float32Array([z]);
        const bits = new Int32Array(buf.buffer);
        bits[0] += (b < target) === (z >= 0) ? 1 : -1;
        z = buf[0];
      }
    }
    assert.ok(found >= 1, 'no exact tie found through bound()');
  });

  test('odd levels', () => {
    const fsq = new FSQ([7, 3]);
    assert.deepEqual(fsq.halfWidth, [3, 1]);
    const ids = Int32Array.from({ length: 21 }, (_, i) => i);
    assert.deepEqual(fsq.codesToIds(fsq.idsToCodes(ids)), ids);
    const { codes, ids: q } = fsq.quantize(Tensor.from([20, -20, 0, 0], [2, 2]));
    assert.deepEqual(Array.from(codes.f), [1, -1, 0, 0]);
    assert.deepEqual(Array.from(q), [6 + 0 * 7, 3 + 1 * 7]);
  });

  test('token ids out of range throw a clear error', () => {
    const fsq = new FSQ([8, 8, 8, 5, 5, 5]);
    assert.throws(() => fsq.idsToCodes([64000]), /token id 64000 at position 0 is outside \[0, 64000\)/);
    assert.throws(() => fsq.idsToCodes([5, -1]), /token id -1 at position 1/);
    assert.throws(() => fsq.idsToCodes([1.5]), /token id 1.5/);
    assert.throws(() => fsq.paddedCodes(new Int32Array(300), 256), /300 tokens do not fit in 256 slots/);
    assert.throws(() => fsq.quantize(Tensor.zeros([2, 5])), /expected \[\.\.\., 6\]/);
  });

  test('straight-through gradient: exactly the derivative of bound(z) / floor(L/2), rounding passed through', () => {
    // codes = round(tanh(z + shift)·half_l − offset) / floor(L/2) with round's gradient taken as 1, so
    // d codes / d z = half_l·(1 − tanh²(z + shift)) / floor(L/2), times the upstream gradient, elementwise.
    const levels = [8, 5, 7, 6];
    const fsq = new FSQ(levels);
    const d = levels.length;
    const f32 = Math.fround;
    const eps = f32(1e-3);
    const halfL = levels.map((l) => f32(f32(f32(l - 1) * f32(1 + eps)) / 2));
    const shift = levels.map((l, i) => (l % 2 === 0 ? f32(Math.atanh(f32(0.5 / halfL[i]!))) : 0));
    const rng = new Rng(5);
    const z = Tensor.rand([2, 8, d], rng, 'float32', -2.5, 2.5).requireGrad();
    const upstream = Tensor.rand([2, 8, d], rng, 'float32', -1, 1);
    const { codes } = fsq.quantize(z);
    codes.backward(upstream);
    assert.ok(z.grad, 'no gradient reached z');
    const expected = Array.from(z.f, (zi, i) => {
      const j = i % d;
      const th = Math.tanh(zi + shift[j]!);
      return upstream.f[i]! * halfL[j]! * (1 - th * th) / Math.floor(levels[j]! / 2);
    });
    // The engine computes in float32 (tanh rounded to float32): agreement to 1e-5 relative per element
    // (a gradient scaled by 2, or cut at the rounding, is off by 100% or more).
    z.grad.f.forEach((g, i) => assert.ok(Math.abs(g - expected[i]!) <= 1e-5 * Math.abs(expected[i]!) + 1e-7, `d codes / d z[${i}]: got ${g}, expected ${expected[i]}`));
    z.requireGrad(false);
  });
});

describe('packing masks', () => {
  test('causal_last: patches see patches only, registers see patches and earlier registers', () => {
    const m = sampleMask([2, 3], 'causal_last');
    const rows = Array.from({ length: 5 }, (_, q) => Array.from(m.subarray(q * 5, q * 5 + 5)).join(''));
    assert.deepEqual(rows, ['11000', '11000', '11100', '11110', '11111']);
  });

  test('mixed sizes pack block-diagonally; equal sizes batch', () => {
    const packed = new SequenceLayout([[2, 1], [1, 1]], 'full');
    assert.equal(packed.batched, false);
    assert.equal(packed.attnLength, 5);
    const rows = Array.from({ length: 5 }, (_, q) => Array.from(packed.attnMask!.subarray(q * 5, q * 5 + 5)).join(''));
    assert.deepEqual(rows, ['11100', '11100', '11100', '00011', '00011']);
    assert.deepEqual(Array.from(packed.segmentIndex(2).i), [0, 0, 1, 2, 3]);
    const batched = new SequenceLayout([[2, 1], [2, 1]], 'full');
    assert.equal(batched.batched, true);
    assert.equal(batched.attnMask, null);
    assert.equal(batched.attnBatch, 2);
  });
});

function loadTiny(): { encoder: RegisterEncoder; decoder: FlowDecoder; io: Map<string, Tensor> } {
  requireGolden(...TINY_FILES);
  const dir = goldenPath('tiny');
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const wm = new WeightMap(readTensorFile(join(dir, 'weights.safetensors')), 'tiny');
  const encoder = RegisterEncoder.load(encoderConfigFromGolden(cfg), wm);
  const decoder = FlowDecoder.load(decoderConfigFromGolden(cfg, wm), wm);
  wm.finish();
  return { encoder, decoder, io: readTensorFile(join(dir, 'io.safetensors')) };
}

describe('decoder arguments', { skip: goldenSkip(...TINY_FILES) }, () => {
  test('k = 0 and k > R are rejected', () => {
    const { decoder, io } = loadTiny();
    const x = io.get('noise.out.noised.0')!;
    const codes = io.get('fsq.quants.0')!; // [1, 8, 4]
    noGrad(() => {
      assert.throws(() => decoder.forward([x], [0.5], [codes], [0]), /keep count k = 0 for sequence 0 must be an integer in \[1, 8\]/);
      assert.throws(() => decoder.forward([x], [0.5], [codes], [9]), /keep count k = 9/);
      assert.throws(() => decoder.forward([x], [0.5], [codes], [1, 2]), /2 keep counts for 1 code sequences/);
      // k = R equals keeping everything.
      const a = decoder.forward([x], [0.5], [codes], [8])[0];
      const b = decoder.forward([x], [0.5], [codes], [null])[0];
      assert.deepEqual(a.f, b.f);
    });
  });

  test('the unconditional output does not depend on k or the codes', () => {
    const { decoder, io } = loadTiny();
    const x = io.get('noise.out.noised.0')!;
    const codes = io.get('fsq.quants.0')!;
    noGrad(() => {
      const a = decoder.forward([x], [0.3], [codes], [1], { uncond: true })[0];
      const b = decoder.forward([x], [0.3], [Tensor.zeros(codes.shape)], [null], { uncond: true })[0];
      assert.deepEqual(a.f, b.f);
    });
  });
});

describe('encoder last block on the registers only', { skip: goldenSkip(...TINY_FILES) }, () => {
  test('equals the full pass (traced, every row) for equal sizes (batched) and mixed sizes (packed)', () => {
    const { encoder } = loadTiny();
    const cfg = encoder.config;
    const [p0, p1] = cfg.patch_sizes;
    const [hm, wm] = cfg.max_sizes;
    const rng = new Rng(3);
    const full = [hm * p0, wm * p1];
    const small = [Math.max(1, hm - 1) * p0, wm * p1];
    for (const sizes of [[full, full], [full, small, full]]) {
      const latents = sizes.map(([h, w]) => Tensor.randn([1, cfg.channels_in, h, w], rng));
      const trimmed = noGrad(() => encoder.forward(latents));
      const reference = noGrad(() => encoder.forward(latents, () => {}));
      trimmed.forEach((t, i) => {
        const r = reference[i];
        assert.deepEqual(t.shape, r.shape);
        let worst = 0;
        let scale = 0;
        for (let j = 0; j < t.f.length; j++) {
          worst = Math.max(worst, Math.abs(t.f[j] - r.f[j]));
          scale = Math.max(scale, Math.abs(r.f[j]));
        }
        assert.ok(worst <= 1e-5 * scale, `sample ${i} of ${sizes.length}: max |trimmed − full| ${worst} vs max |full| ${scale}`);
      });
    }
  });
});

describe('training paths (golden tiny weights)', { skip: goldenSkip(...TINY_FILES) }, () => {
  test('gradients flow from the flow loss through decoder, FSQ (STE) and encoder', () => {
    const { encoder, decoder, io } = loadTiny();
    const fsq = new FSQ([8, 5, 5, 5]);
    const patchW = encoder.enc_patch_emb.patch_proj.weight.requireGrad();
    const maskToken = decoder.dec_nested_dropout.dropout_mask_token.requireGrad();
    const x0 = io.get('input.latents.0')!;
    const [lat] = encoder.forward([x0]);
    const { codes } = fsq.quantize(lat);
    const { xt, target, t } = noiseLatents(x0, { sigma: 0.6, noise: io.get('noise.in.noise.0')! });
    assert.equal(t, Math.fround(0.6));
    const [v] = decoder.forward([xt], [t], [codes], [3]);
    const loss = mseLoss(v, target);
    loss.backward();
    for (const [name, p] of [['patch_proj', patchW], ['mask token', maskToken]] as const) {
      assert.ok(p.grad, `${name} has no gradient`);
      assert.ok(p.grad.f.every(Number.isFinite), `${name} gradient not finite`);
      assert.ok(p.grad.f.some((g) => g !== 0), `${name} gradient is zero`);
    }
    patchW.requireGrad(false);
    maskToken.requireGrad(false);
  });
});

// These need no golden file: they always run.
describe('flow training utilities', () => {
  test('timestep samplers and keep-k sampling', () => {
    const rng = new Rng(7);
    for (const sampler of [{ ln: true }, { ln: true, stratified: true }, { ln: false }, { ln: false, mode_scale: 1.29 }]) {
      const s = sampleTimesteps(sampler, 16, rng);
      assert.equal(s.length, 16);
      assert.ok(s.every((v) => v >= 0 && v <= 1), JSON.stringify(sampler));
    }
    // Stratified: one draw per quantile bin of the logit-normal.
    const strat = sampleTimesteps({ ln: true, stratified: true }, 4, rng);
    const logits = strat.map((s) => Math.log(s / (1 - s)) / Math.SQRT2);
    const bins = [-Infinity, erfinv(-0.5), 0, erfinv(0.5), Infinity];
    logits.forEach((l, i) => assert.ok(l >= bins[i] - 1e-6 && l <= bins[i + 1] + 1e-6, `bin ${i}`));
    assert.ok(Math.abs(erfinv(0.5) - 0.4769362762044699) < 1e-12);
    for (const mode of ['uniform', 'pow2', 'uniform_pow2'] as const) {
      for (let i = 0; i < 50; i++) {
        const k = sampleKeepK(mode, 256, (lo, hi) => rng.randint(lo, hi));
        assert.ok(k >= 1 && k <= 256);
        if (mode !== 'uniform') assert.equal(k & (k - 1), 0);
      }
    }
  });

  test('APG keeps the unclipped momentum', () => {
    const buf = new MomentumBuffer(-0.5);
    const vc = new Float32Array([1, 0, 0, 0]);
    const vu = new Float32Array([0, 10, 0, 0]);
    adaptiveProjectedGuidance(vc, vu, 3, buf);
    assert.deepEqual(Array.from(buf.runningAverage!), [1, -10, 0, 0]);
    const out = adaptiveProjectedGuidance(vc, vu, 3, buf);
    // momentum: [1, -10] - 0.5·[1, -10] = [0.5, -5], clipped to norm 2.5, orthogonal part only.
    assert.deepEqual(Array.from(buf.runningAverage!), [0.5, -5, 0, 0]);
    const n = Math.hypot(0.5, 5);
    assert.ok(Math.abs(out[1] - 2 * (-5 * 2.5) / n) < 1e-5);
    assert.equal(out[0], 1);
  });
});
