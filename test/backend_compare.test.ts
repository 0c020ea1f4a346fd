// Native vs pure TypeScript kernels at model level: one encoder forward, one decoder forward and every
// parameter's gradient after one training step's loss.backward(), on a small randomly initialised FlexTok
// (configs/test-tiny.json widened to odd sizes: dim 48 = 3 heads of 16, 36 patches + 8 registers per image,
// 2 encoder and 2 decoder blocks), same weights and inputs on both backends (setBackend switches them).
//
// Error measures per tensor, with the JS result as reference: max |native − js| / RMS(js) and
// RMS(native − js) / RMS(js). Measured (avx2, 2 threads; the scalar ISA on 1 thread is alike): encoder
// 1.6e-6 / 6e-7, decoder 1.0e-6 / 2.2e-7, gradients up to 1.6e-5 / 1.5e-6 (attention weights of the first
// encoder block, the longest backward chain). Tolerances 1e-4 / 1e-5 leave ~6× headroom, yet small kernel
// bugs fail them: a JS layerNorm eps doubled gives 1.2e-3 RMS on the gradients, a JS attention scale off by
// 1e-4 gives 1.1e-4 RMS on the encoder output, a native softmax denominator off by 1e-4 gives 1.2e-4 RMS on
// the encoder output and 4.5e-4 on the gradients. CMP_DEBUG=1 prints every tensor's errors.
//
// Needs the native addon: when it is missing the first test FAILS (the rest skip); only an explicit
// TypeScript-only run (FLEXTOK_BACKEND=js) skips the file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';

import { backendInfo, backendName, jsOnlyRequested, nativeUnavailableReason, setBackend, type BackendName } from '../src/tensor/backend.js';
import { reshape, slice } from '../src/tensor/ops.js';
import { Rng } from '../src/tensor/rng.js';
import { noGrad, Tensor } from '../src/tensor/tensor.js';
import { noiseLatents } from '../src/flextok/flow.js';
import { parseTokenizerConfig, readJsonFile } from '../src/train/config.js';
import { syntheticShapes } from '../src/train/data.js';
import { TokenizerTrainer } from '../src/train/tokenizer.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const MAX_TOL = 1e-4;
const RMS_TOL = 1e-5;

const missing = nativeUnavailableReason();
const skip = missing === null ? false : jsOnlyRequested() ? 'FLEXTOK_BACKEND=js (TypeScript-only run) and no native addon' : 'native addon unavailable';

test('the native addon is built and loads (needed to compare the backends)', { skip: missing !== null && jsOnlyRequested() ? skip : false }, () => {
  assert.equal(missing, null, `${missing}. This comparison needs it; only FLEXTOK_BACKEND=js skips it.`);
});

const RES = 24;
const BATCH = 8;

/** The tiny config, widened to sizes that are not multiples of the SIMD widths; half the images unconditional. */
function trainer(): TokenizerTrainer {
  const c = readJsonFile(path.join(ROOT, 'configs/test-tiny.json')) as Record<string, any>;
  c.data.resolution = RES;
  c.model.encoder = { dim: 48, depth: 2, head_dim: 16, mlp_ratio: 2.0 };
  c.model.decoder = { dim: 48, depth: 2, head_dim: 16, mlp_ratio: 2.0 };
  c.flow.cfg_dropout = 0.5;
  const t = new TokenizerTrainer(parseTokenizerConfig(c, 'backend comparison config'), { dataset: syntheticShapes(16, RES), vae: null, teacher: null });
  // Every weight random (the init's zero heads and AdaLN-zero modulations would hide most of the model).
  const rng = new Rng(11);
  for (const p of t.params) {
    const d = p.f;
    const scale = p.ndim === 2 ? 0.5 / Math.sqrt(p.shape[1]) : 0.2;
    for (let i = 0; i < d.length; i++) d[i] += scale * rng.normal();
  }
  return t;
}

/** max |a − ref| / RMS(ref) and RMS(a − ref) / RMS(ref). */
function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): { max: number; rms: number } {
  assert.equal(a.length, ref.length);
  let maxDiff = 0;
  let sqDiff = 0;
  let sq = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(a[i] - ref[i]);
    if (!(d <= maxDiff)) maxDiff = d; // NaN propagates
    sqDiff += d * d;
    sq += ref[i] * ref[i];
  }
  const rms = Math.sqrt(sq / ref.length);
  assert.ok(rms > 0, 'the reference tensor is all zeros: the comparison would prove nothing');
  return { max: maxDiff / rms, rms: Math.sqrt(sqDiff / ref.length) / rms };
}

/** fn on each backend (native first), the backend restored after. */
function onBoth<T>(fn: (b: BackendName) => T): { native: T; js: T } {
  const saved = backendName();
  try {
    setBackend('native');
    const native = fn('native');
    setBackend('js');
    const js = fn('js');
    return { native, js };
  } finally {
    setBackend(saved);
  }
}

function checkAll(what: string, pairs: Array<[string, ArrayLike<number>, ArrayLike<number>]>): void {
  const errs = pairs.map(([name, n, j]) => ({ name, ...relErr(n, j) }));
  const worst = (key: 'max' | 'rms') => errs.reduce((a, b) => (b[key] > a[key] || Number.isNaN(b[key]) ? b : a));
  const wm = worst('max');
  const wr = worst('rms');
  // The measured worst errors, for choosing the tolerances (shown in the test output).
  console.log(`# ${what} (${pairs.length} tensors, native ISA ${backendInfo().isa ?? '-'}): worst max|native − js|/RMS ${wm.max.toExponential(2)} (${wm.name}), ` +
    `worst RMS(native − js)/RMS ${wr.rms.toExponential(2)} (${wr.name})`);
  if (process.env.CMP_DEBUG) for (const e of errs) console.log(`#   ${e.max.toExponential(2)} ${e.rms.toExponential(2)} ${e.name}`);
  const bad = errs.filter((e) => !(e.max <= MAX_TOL && e.rms <= RMS_TOL));
  assert.deepEqual(bad.map((e) => `${e.name}: max ${e.max.toExponential(2)}, rms ${e.rms.toExponential(2)}`), [],
    `${what}: native and js differ by more than max ${MAX_TOL} / rms ${RMS_TOL} of the RMS`);
}

describe('native vs TypeScript backend on a small FlexTok', { skip }, () => {
  let t: TokenizerTrainer;
  let images: Tensor;
  let initial: BackendName;
  before(() => {
    initial = backendName();
    setBackend('native'); // backendInfo then reports the native ISA
    t = trainer();
    images = Tensor.rand([BATCH, 1, RES, RES], new Rng(5), 'float32', -1, 1);
  });
  after(() => setBackend(initial));

  test('encoder forward (pre-quantisation latents)', () => {
    const list = Array.from({ length: BATCH }, (_, i) => slice(images, 0, i, i + 1));
    const out = onBoth(() => noGrad(() => t.encoder.forward(list).map((z) => Float32Array.from(z.f))));
    checkAll('encoder', out.native.map((z, i) => [`z${i}`, z, out.js[i]]));
  });

  test('decoder forward (velocity; keep-k 1..8, conditional and unconditional)', () => {
    const rng = new Rng(9);
    const codes = Array.from({ length: BATCH }, () => reshape(t.fsq.idsToCodes(Array.from({ length: 8 }, () => rng.randint(0, t.fsq.codebookSize))), [1, 8, t.fsq.levels.length]));
    const keepK = [1, 2, 3, 4, 5, 6, 7, 8];
    const uncond = keepK.map((_, i) => i % 3 === 0);
    const sigmas = keepK.map((_, i) => 0.05 + 0.9 * (i / (BATCH - 1)));
    const noised = Array.from({ length: BATCH }, (_, i) => noiseLatents(slice(images, 0, i, i + 1), { sigma: sigmas[i], noise: Tensor.randn([1, 1, RES, RES], rng) }).xt);
    const out = onBoth(() => noGrad(() => t.decoder.forward(noised, sigmas, codes, keepK, { uncond }).map((v) => Float32Array.from(v.f))));
    checkAll('decoder', out.native.map((v, i) => [`v${i}`, v, out.js[i]]));
  });

  test('one training step: loss and every parameter gradient', () => {
    const out = onBoth(() => {
      for (const p of t.params) p.grad = null;
      const f = t.forwardLoss(images, new Rng(3)); // same keep-k, null-condition, σ and noise draws
      f.total.backward();
      const grads = t.params.map((p, i) => {
        assert.ok(p.grad, `${t.paramNames[i]} has no gradient`);
        return Float32Array.from(p.grad.f);
      });
      return { loss: f.total.item(), grads, keepK: f.keepK, uncond: f.uncond };
    });
    for (const p of t.params) p.grad = null;
    // The draws reach every parameter: some images keep fewer than all tokens (mask token), some are
    // unconditional (null condition), some conditional.
    assert.ok(out.js.keepK.some((k) => k < 8) && out.js.uncond.some(Boolean) && out.js.uncond.some((u) => !u), `draws: keep-k ${out.js.keepK}, uncond ${out.js.uncond}`);
    checkAll('training step', [
      ['loss', [out.native.loss], [out.js.loss]],
      ...t.paramNames.map((name, i): [string, Float32Array, Float32Array] => [`grad ${name}`, out.native.grads[i], out.js.grads[i]]),
    ]);
  });
});
