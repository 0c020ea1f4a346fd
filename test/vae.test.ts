// Tests of the VAE (diffusers AutoencoderKL + FlexTok wrapper): golden parity of every recorded
// tensor of vae-tiny / vae-small, loading paths (folder, prefix, legacy names), clear errors, autograd.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

import { compareTensor, formatParityResults, readTensorFile } from '../src/flextok/parity_util.js';
import {
  AutoencoderKL,
  DiagonalGaussian,
  FlexTokVAE,
  parseAutoencoderKLConfig,
  type AutoencoderKLConfig,
} from '../src/flextok/vae.js';
import { loadGoldenVAECase, vaeParityCases, VAE_GOLDEN_INPUTS } from '../src/flextok/vae_parity.js';
import { WeightLoadError, WeightMap } from '../src/flextok/weights.js';
import { mseLoss, noGrad, Rng, sum, add, Tensor } from '../src/tensor/index.js';
import { goldenPath, goldenSkip, requireGolden } from './helpers/golden.js';

const TINY = goldenPath('vae-tiny');
const SMALL = goldenPath('vae-small');
const CASE_FILES = ['config.json', 'weights.safetensors', 'io.safetensors'];
const TINY_FILES = CASE_FILES.map((f) => `vae-tiny/${f}`);
const SMALL_FILES = CASE_FILES.map((f) => `vae-small/${f}`);
/** node:test options of a test that needs these golden files (skipped with the reason when missing, failed in CI). */
const needs = (files: string[]) => ({ skip: goldenSkip(...files) });

function hubConfig(dir: string): unknown {
  return (JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { hub_config: unknown }).hub_config;
}

for (const [dir, files] of [[TINY, TINY_FILES], [SMALL, SMALL_FILES]] as const) {
  test(`golden parity: every tensor of ${path.basename(dir)} within 1e-4`, needs(files), () => {
    requireGolden(...files);
    const results = vaeParityCases(dir);
    const io = readTensorFile(path.join(dir, 'io.safetensors'));
    const expected = [...io.keys()].filter((k) => !VAE_GOLDEN_INPUTS.includes(k));
    assert.deepEqual(results.map((r) => r.name), expected);
    const failed = results.filter((r) => !r.pass);
    assert.equal(failed.length, 0, formatParityResults(results));
  });
}

test('fromFolder reads a diffusers folder (config.json + diffusion_pytorch_model.safetensors)', needs(TINY_FILES), () => {
  requireGolden(...TINY_FILES);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-vae-'));
  try {
    fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(hubConfig(TINY)));
    fs.copyFileSync(path.join(TINY, 'weights.safetensors'), path.join(tmp, 'diffusion_pytorch_model.safetensors'));
    const vae = FlexTokVAE.fromFolder(tmp);
    assert.equal(vae.scalingFactor, 0.18215);
    const io = readTensorFile(path.join(TINY, 'io.safetensors'));
    const image = noGrad(() => vae.decode(io.get('vae.decode2.in.latents')!));
    const r = compareTensor('decode2', image, io.get('vae.decode2.out.image')!);
    assert.ok(r.pass, JSON.stringify(r));
    // Scaling-factor override (the wrapper's own argument wins over the config's).
    const override = FlexTokVAE.fromFolder(tmp, { scalingFactor: 0.5 });
    assert.equal(override.scalingFactor, 0.5);
    fs.rmSync(path.join(tmp, 'diffusion_pytorch_model.safetensors'));
    assert.throws(() => FlexTokVAE.fromFolder(tmp), /diffusion_pytorch_model\.safetensors not found/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('mode path: latents = mean·sf, KL uses sf·mean; sample path needs noise or rng', needs(TINY_FILES), () => {
  requireGolden(...TINY_FILES);
  const c = loadGoldenVAECase(TINY);
  const image = c.io.get('vae.in.image')!;
  noGrad(() => {
    const wrapped = new FlexTokVAE(c.vae.vae, { scalingFactor: 2 });
    const posterior = wrapped.posterior(image);
    const enc = wrapped.latentsFrom(posterior, { samplePosterior: false });
    const mean = posterior.mean.f;
    enc.latents.f.forEach((v, i) => assert.equal(v, Math.fround(mean[i] * 2)));
    const expectedKl = posterior.kl(enc.latents);
    assert.deepEqual(enc.kl.toArray(), expectedKl.toArray());
    assert.throws(() => wrapped.latentsFrom(posterior, { samplePosterior: true }), /noise.*rng/);
    const sampled = wrapped.latentsFrom(posterior, { samplePosterior: true, rng: new Rng(3) });
    assert.deepEqual(sampled.latents.shape, posterior.mean.shape);
  });
});

test('DiagonalGaussian clamps logvar to [-30, 20]', () => {
  const moments = Tensor.from([0, 1, -45, 45], [1, 2, 1, 2]);
  const g = new DiagonalGaussian(moments);
  assert.deepEqual(g.logvar.toArray(), [-30, 20]);
  assert.deepEqual(g.mean.toArray(), [0, 1]);
  assert.throws(() => new DiagonalGaussian(Tensor.zeros([1, 3, 1, 1])), /even channel count/);
});

test('weights under a prefix and with legacy attention names load to the same model', needs(TINY_FILES), () => {
  requireGolden(...TINY_FILES);
  const weights = readTensorFile(path.join(TINY, 'weights.safetensors'));
  const config = parseAutoencoderKLConfig(hubConfig(TINY));
  const io = readTensorFile(path.join(TINY, 'io.safetensors'));
  const latents = io.get('vae.decode2.in.latents')!;
  const reference = io.get('vae.decode2.out.image')!;

  const prefixed = new Map([...weights].map(([k, v]) => [`vae.vae.${k}`, v]));
  prefixed.set('encoder.extra', Tensor.zeros([1])); // other checkpoint keys are the caller's business
  const wm = new WeightMap(prefixed, 'checkpoint');
  const vae = new FlexTokVAE(new AutoencoderKL(config, wm, 'vae.vae.'));
  assert.deepEqual(wm.unused(), ['encoder.extra']);
  assert.ok(compareTensor('prefixed', noGrad(() => vae.decode(latents)), reference).pass);

  const legacyNames: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
  const legacy = new Map<string, Tensor>();
  for (const [k, v] of weights) {
    const m = /^(.*attentions\.0\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(k);
    if (!m) legacy.set(k, v);
    else legacy.set(`${m[1]}${legacyNames[m[2]]}.${m[3]}`, m[3] === 'weight' ? new Tensor(v.data, [...v.shape, 1, 1]) : v);
  }
  const lm = new WeightMap(legacy, 'legacy');
  const legacyVae = new FlexTokVAE(new AutoencoderKL(config, lm));
  lm.finish();
  assert.ok(compareTensor('legacy', noGrad(() => legacyVae.decode(latents)), reference).pass);
});

test('a missing and a mis-shaped key are reported by name', needs(TINY_FILES), () => {
  requireGolden(...TINY_FILES);
  const weights = readTensorFile(path.join(TINY, 'weights.safetensors'));
  const config = parseAutoencoderKLConfig(hubConfig(TINY));
  weights.delete('decoder.up_blocks.1.resnets.0.conv_shortcut.weight');
  weights.set('encoder.mid_block.attentions.0.to_q.weight', Tensor.zeros([32, 16]));
  const wm = new WeightMap(weights, 'broken.safetensors');
  new AutoencoderKL(config, wm);
  assert.throws(
    () => wm.finish(),
    (e: unknown) => {
      assert.ok(e instanceof WeightLoadError);
      assert.deepEqual(e.missing, ['decoder.up_blocks.1.resnets.0.conv_shortcut.weight [16, 32, 1, 1]']);
      assert.equal(e.misshaped.length, 1);
      assert.match(e.misshaped[0], /^encoder\.mid_block\.attentions\.0\.to_q\.weight: checkpoint has \[32, 16\], model expects \[32, 32\]/);
      assert.match(e.message, /conv_shortcut\.weight/);
      return true;
    },
  );
});

test('images must be [N, 3, H, W] with H, W positive multiples of the downsampling factor', needs(SMALL_FILES), () => {
  requireGolden(...SMALL_FILES);
  const cfg = parseAutoencoderKLConfig(hubConfig(SMALL)); // factor 8
  const vae = new FlexTokVAE(AutoencoderKL.random(cfg, new Rng(1)));
  assert.equal(vae.vae.downsamplingFactor, 8);
  const encode = (shape: number[]) => () => noGrad(() => vae.encode(Tensor.zeros(shape), { samplePosterior: false }));
  assert.throws(encode([1, 3, 60, 64]), /60×64 is not supported.*multiples of the VAE's downsampling factor 8/);
  assert.throws(encode([1, 3, 4, 4]), /4×4 is not supported.*factor 8/);
  assert.throws(encode([1, 4, 64, 64]), /expected images \[N, 3, H, W\]/);
  assert.throws(encode([3, 64, 64]), /expected images/);
  assert.throws(() => vae.decode(Tensor.zeros([1, 4, 8, 8])), /expected latents \[N, 16, h, w\]/);
});

test('config parsing rejects unsupported values clearly', needs(TINY_FILES), () => {
  requireGolden(...TINY_FILES);
  const base = hubConfig(TINY) as Record<string, unknown>;
  const bad = (patch: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => parseAutoencoderKLConfig({ ...base, ...patch }, 'cfg.json'), re);
  bad({ down_block_types: ['DownEncoderBlock2D', 'AttnDownEncoderBlock2D'] }, /cfg\.json: down_block_types\[1\] is "AttnDownEncoderBlock2D"; only "DownEncoderBlock2D"/);
  bad({ up_block_types: ['UpDecoderBlock2D'] }, /"up_block_types" has 1 entries but block_out_channels has 2/);
  bad({ act_fn: 'gelu' }, /act_fn "gelu" is not supported/);
  bad({ norm_num_groups: 5 }, /16 is not divisible by norm_num_groups 5/);
  bad({ _class_name: 'AutoencoderTiny' }, /only AutoencoderKL/);
  bad({ layers_per_block: 0 }, /"layers_per_block" must be an integer ≥ 1/);
  bad({ scaling_factor: 'x' }, /scaling_factor/);
  const parsed = parseAutoencoderKLConfig(base);
  assert.equal(parsed.midBlockAddAttention, true);
  assert.equal(parsed.useQuantConv, true);
  assert.deepEqual(parsed.blockOutChannels, [16, 32]);
});

test('parameter names are the diffusers keys; encode/decode/KL backpropagate', needs(TINY_FILES), () => {
  requireGolden(...TINY_FILES);
  const config: AutoencoderKLConfig = parseAutoencoderKLConfig(hubConfig(TINY));
  const weights = readTensorFile(path.join(TINY, 'weights.safetensors'));
  const vae = new FlexTokVAE(AutoencoderKL.random(config, new Rng(7)));
  const named = vae.vae.namedParameters();
  assert.deepEqual(named.map(([k]) => k).sort(), [...weights.keys()].sort());
  for (const [k, t] of named) assert.deepEqual(t.shape, weights.get(k)!.shape, k);

  const rng = new Rng(11);
  const image = Tensor.rand([1, 3, 8, 8], rng, 'float32', -1, 1);
  const enc = vae.encode(image, { samplePosterior: true, rng });
  const recon = vae.decode(enc.latents);
  const loss = add(mseLoss(recon, image), sum(enc.kl));
  loss.backward();
  for (const [k, t] of named) {
    assert.ok(t.grad, `${k} has no gradient`);
    assert.ok(t.grad.toArray().every(Number.isFinite), `${k} gradient not finite`);
  }
});
