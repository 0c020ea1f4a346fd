// Tests of safe checkpoint loading: metadata parsing, the `_target_` allow-list, wiring checks, strict
// weight names/shapes and BF16 / F16 checkpoints, on copies of the golden e2e checkpoint.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import {
  ALLOWED_TARGETS,
  CheckpointConfigError,
  parseMetadataConfig,
  readCheckpoint,
  readCheckpointConfig,
} from '../src/flextok/checkpoint.js';
import { FlexTok } from '../src/flextok/model.js';
import { findTokenizerPreset, findVaePreset, presetMismatches, resolveModelPath, TOKENIZER_PRESETS, VAE_PRESETS } from '../src/flextok/presets.js';
import { WeightLoadError } from '../src/flextok/weights.js';
import { readTensorFile } from '../src/flextok/parity_util.js';
import { readSafetensors, SafetensorsFile, writeSafetensors, type TensorData } from '../src/io/safetensors.js';
import { float32ToFloat16 } from '../src/tensor/half.js';
import { goldenPath, goldenSkip, missingGolden, requireGolden } from './helpers/golden.js';

const E2E = goldenPath('e2e');
const NEED = ['e2e/model.safetensors', 'e2e/model_bf16.safetensors', 'e2e/config.json', 'e2e/io.safetensors', 'e2e/hub'];
const skip = goldenSkip(...NEED);

/* eslint-disable @typescript-eslint/no-explicit-any */
const golden: any = missingGolden('e2e/config.json').length === 0 ? JSON.parse(fs.readFileSync(path.join(E2E, 'config.json'), 'utf8')) : {};

/** Root-mean-square of a − b over the root-mean-square of b. */
function relRms(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

describe('checkpoint loading', { skip }, () => {
  let tmp: string;
  let original: { metadata: Record<string, string>; tensors: Map<string, TensorData> };

  before(() => {
    requireGolden(...NEED);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-ckpt-'));
    original = readSafetensors(path.join(E2E, 'model.safetensors'));
  });
  after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

  /** Writes a checkpoint with edited metadata / tensors into its own folder (with the VAE hub next to it). */
  function writeVariant(name: string, edit: { metadata?: (m: Record<string, string>) => void; tensors?: (t: Map<string, TensorData>) => void }): string {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir, { recursive: true });
    const metadata = { ...original.metadata };
    const tensors = new Map(original.tensors);
    edit.metadata?.(metadata);
    edit.tensors?.(tensors);
    const file = path.join(dir, 'model.safetensors');
    writeSafetensors(file, tensors, metadata);
    return file;
  }

  it('parses the metadata as Python literals into the harness config', () => {
    const parsed = parseMetadataConfig(original.metadata, 'model.safetensors');
    const toJson = (v: unknown): unknown =>
      v instanceof Map ? Object.fromEntries([...v].map(([k, x]) => [String(k), toJson(x)])) : Array.isArray(v) ? v.map(toJson) : v;
    assert.deepEqual(toJson(parsed), golden.checkpoint.config);
  });

  it('builds typed configs from the metadata', () => {
    const cfg = readCheckpointConfig(path.join(E2E, 'model.safetensors'));
    assert.equal(cfg.vae.hfHubPath, 'refharness/flextok-e2e-vae-f4c4');
    assert.equal(cfg.vae.scalingFactor, null);
    assert.equal(cfg.vae.samplePosterior, true);
    assert.deepEqual(cfg.fsqLevels, golden.model.fsq.levels);
    assert.equal(cfg.encoder.dim, golden.model.encoder.dim);
    assert.equal(cfg.encoder.depth, golden.model.encoder.depth);
    assert.equal(cfg.encoder.head_dim, golden.model.encoder.head_dim);
    assert.equal(cfg.encoder.n_registers, golden.model.encoder.n_registers);
    assert.equal(cfg.encoder.mask_mode, 'causal_last');
    assert.equal(cfg.decoder.mask_mode, 'full');
    assert.equal(cfg.decoder.null_cond, 'learned');
    assert.equal(cfg.decoder.adaLN_expansion, 2);
    assert.equal(cfg.decoder.head_adaLN, true);
    assert.equal(cfg.decoder.max_timestep, 1);
    assert.equal(cfg.decoder.frequency_embedding_size, 64);
    const targets = [...new Set(cfg.targets.map((t) => t.target))].sort();
    assert.deepEqual(targets, [...golden.checkpoint.targets].sort());
    for (const t of golden.checkpoint.targets) assert.ok(ALLOWED_TARGETS.includes(t), t);
  });

  it('refuses a nested _target_ outside the allow-list before reading any tensor', () => {
    const file = writeVariant('evil-nested', {
      metadata: (m) => {
        m.encoder = m.encoder!.replace("'flextok.model.trunks.transformers.FlexTransformer'", "'os.system'");
      },
    });
    // Every tensor read goes through SafetensorsFile.read: count the calls.
    const read = mock.method(SafetensorsFile.prototype, 'read');
    try {
      assert.throws(
        () => readCheckpoint(file),
        (err: Error) => {
          assert.ok(err instanceof CheckpointConfigError, err.message);
          assert.match(err.message, /'os\.system'/);
          assert.match(err.message, /encoder\.module_dict\.enc_transformer/);
          assert.match(err.message, /not on the allow-list/);
          return true;
        },
      );
      assert.equal(read.mock.callCount(), 0, 'tensors were read before the config was refused');
      // The counter does see reads: the same file with the allowed target reads every tensor.
      readCheckpoint(path.join(E2E, 'model.safetensors'));
      assert.equal(read.mock.callCount(), original.tensors.size);
    } finally {
      read.mock.restore();
    }
  });

  it('refuses a top-level _target_ outside the allow-list, and non-literal metadata', () => {
    const top = writeVariant('evil-top', { metadata: (m) => void (m._target_ = 'builtins.eval') });
    assert.throws(() => readCheckpoint(top), /_target_ 'builtins\.eval' is not on the allow-list/);
    const code = writeVariant('evil-code', { metadata: (m) => void (m.pipeline = "__import__('os').system('echo pwned')") });
    assert.throws(() => readCheckpoint(code), (err: Error) => err instanceof CheckpointConfigError && /pipeline: metadata value is not a Python literal/.test(err.message));
  });

  it('refuses Hydra directives such as _args_', () => {
    const file = writeVariant('hydra-args', {
      metadata: (m) => void (m.regularizer = m.regularizer!.replace("'levels':", "'_args_': ['x'], 'levels':")),
    });
    assert.throws(() => readCheckpoint(file), /regularizer\._args_: the Hydra directive '_args_' is not supported/);
  });

  it('checks that the null condition reads eval_dropout_mask (spec §12.32)', () => {
    const file = writeVariant('nullcond-key', {
      metadata: (m) => void (m.decoder = m.decoder!.replace("'eval_drop_flag_read_key': 'eval_dropout_mask'", "'eval_drop_flag_read_key': 'uncond_flag'")),
    });
    assert.throws(() => readCheckpoint(file), /dec_latent_dropout\.eval_drop_flag_read_key: reads 'uncond_flag'.*'eval_dropout_mask'/);
  });

  it('checks data-dict wiring and unknown arguments', () => {
    const wiring = writeVariant('wiring', {
      metadata: (m) => void (m.regularizer = m.regularizer!.replace("'latents_read_key': 'enc_registers'", "'latents_read_key': 'something_else'")),
    });
    assert.throws(() => readCheckpoint(wiring), /regularizer\.latents_read_key: reads 'something_else' but the encoder output is written to 'enc_registers'/);
    const unknown = writeVariant('unknown-arg', {
      metadata: (m) => void (m.regularizer = m.regularizer!.replace("'levels':", "'temperature': 2.0, 'levels':")),
    });
    assert.throws(() => readCheckpoint(unknown), /unexpected argument 'temperature'/);
  });

  it('lists every missing, unexpected and mis-shaped tensor', () => {
    const missing = 'encoder.module_dict.enc_to_latents.proj.bias';
    const missingVae = 'vae.vae.decoder.conv_out.bias';
    const reshaped = 'decoder.module_dict.dec_nested_dropout.dropout_mask_token';
    const file = writeVariant('bad-weights', {
      tensors: (t) => {
        t.delete(missing);
        t.delete(missingVae);
        t.set('encoder.module_dict.enc_extra.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) });
        const mask = t.get(reshaped)!;
        t.set(reshaped, { dtype: 'F32', shape: [1, mask.shape[0]!], data: mask.data });
      },
    });
    assert.throws(
      () => FlexTok.load(file, { hubDir: path.join(E2E, 'hub') }),
      (err: Error) => {
        assert.ok(err instanceof WeightLoadError, err.message);
        assert.ok(err.missing.some((k) => k.startsWith(missing)), err.message);
        assert.ok(err.missing.some((k) => k.startsWith(missingVae)), err.message);
        assert.deepEqual(err.unexpected, ['encoder.module_dict.enc_extra.weight']);
        assert.equal(err.misshaped.length, 1);
        assert.match(err.misshaped[0]!, /dropout_mask_token: checkpoint has \[1, 64\], model expects \[64\]/);
        for (const k of [missing, missingVae, 'enc_extra.weight', reshaped]) assert.ok(err.message.includes(k), k);
        return true;
      },
    );
  });

  it('loads BF16 checkpoints as float32 (exact bf16 → f32)', () => {
    const bf16 = readCheckpoint(path.join(E2E, 'model_bf16.safetensors'));
    const f32 = readCheckpoint(path.join(E2E, 'model.safetensors'));
    assert.deepEqual(bf16.dtypes, ['BF16']);
    assert.equal(bf16.tensors.size, f32.tensors.size);
    for (const [name, t] of bf16.tensors) {
      assert.equal(t.dtype, 'float32', name);
      const ref = f32.tensors.get(name)!;
      assert.deepEqual(t.shape, ref.shape, name);
      for (let i = 0; i < t.size; i++) {
        const v = t.data[i]!;
        // A bf16 value has zero low 16 bits and is within half an ulp (2^-8 relative) of the f32 value.
        assert.equal(new Uint32Array(new Float32Array([v]).buffer)[0]! & 0xffff, 0, name);
        assert.ok(Math.abs(v - ref.data[i]!) <= Math.abs(ref.data[i]!) * 2 ** -8 + 1e-30, name);
      }
    }
  });

  it('loads an F16 checkpoint: every weight is the F32 one rounded to half precision; the model matches F32', () => {
    const file = writeVariant('f16', {
      tensors: (t) => {
        for (const [name, td] of t) t.set(name, { dtype: 'F16', shape: td.shape, data: float32ToFloat16(td.data as Float32Array) });
      },
    });
    const f16 = readCheckpoint(file);
    assert.deepEqual(f16.dtypes, ['F16']);
    assert.deepEqual([...f16.tensors.keys()], [...original.tensors.keys()]);
    for (const [name, t] of f16.tensors) {
      const ref = original.tensors.get(name)!.data as Float32Array;
      assert.equal(t.dtype, 'float32', name);
      for (let i = 0; i < t.size; i++) {
        const v = t.data[i]!;
        const a = ref[i]!;
        // v is a half-precision number (11 significant bits, normal exponent ≥ −14, else a multiple of 2^−24)
        // within half an ulp of the f32 weight, where the ulp is that of v's binade (of the lower one at a
        // power of two approached from below).
        assert.ok(Math.abs(v) <= 65504, `${name}[${i}]: ${v} is outside the half range`);
        const e = v === 0 ? -14 : Math.max(-14, Math.floor(Math.log2(Math.abs(v))));
        const ulp = 2 ** (e - 10);
        assert.ok(Number.isInteger(v / ulp), `${name}[${i}]: ${v} is not a half-precision value`);
        const below = Math.abs(v) === 2 ** e && Math.abs(a) < Math.abs(v) && e > -14 ? ulp / 2 : ulp;
        assert.ok(Math.abs(v - a) <= below / 2, `${name}[${i}]: ${v} is not the half rounding of ${a}`);
      }
    }
    // A forward with the F16 model matches the F32 one to half-precision accuracy (measured: relative RMS
    // differences 0.6–1.3e-3 for latents, encoder outputs and decoded images; the bound leaves 3×).
    const hubDir = path.join(E2E, 'hub');
    const m16 = FlexTok.load(file, { hubDir });
    const m32 = FlexTok.load(path.join(E2E, 'model.safetensors'), { hubDir });
    assert.equal(m16.numTokens, 8);
    const images = readTensorFile(path.join(E2E, 'io.safetensors')).get('in.images')!;
    const e16 = m16.encode(images, { samplePosterior: false });
    const e32 = m32.encode(images, { samplePosterior: false });
    for (let b = 0; b < e32.encLatents.length; b++) {
      const latErr = relRms(e16.latents[b]!.data, e32.latents[b]!.data);
      const encErr = relRms(e16.encLatents[b]!.data, e32.encLatents[b]!.data);
      assert.ok(latErr < 4e-3, `VAE latents of image ${b}: relative RMS error ${latErr}`);
      assert.ok(encErr < 4e-3, `encoder outputs of image ${b}: relative RMS error ${encErr}`);
    }
    const d16 = m16.decode(e32.ids, { k: 4, steps: 2, seed: 1 });
    const d32 = m32.decode(e32.ids, { k: 4, steps: 2, seed: 1 });
    for (let b = 0; b < d32.images.length; b++) {
      const err = relRms(d16.images[b]!.data, d32.images[b]!.data);
      assert.ok(err < 4e-3, `decoded image ${b}: relative RMS error ${err}`);
    }
  });
});

describe('presets', () => {
  it('lists the released tokenizers and VAEs and resolves names to the cache', () => {
    assert.deepEqual(
      TOKENIZER_PRESETS.map((p) => p.repo),
      ['EPFL-VILAB/flextok_d12_d12_in1k', 'EPFL-VILAB/flextok_d18_d18_in1k', 'EPFL-VILAB/flextok_d18_d28_in1k', 'EPFL-VILAB/flextok_d18_d28_dfn'],
    );
    assert.deepEqual(VAE_PRESETS.map((p) => [p.repo, p.latentChannels]), [
      ['EPFL-VILAB/flextok_vae_c4', 4],
      ['EPFL-VILAB/flextok_vae_c8', 8],
      ['EPFL-VILAB/flextok_vae_c16', 16],
    ]);
    const p = findTokenizerPreset('d18_d28_dfn')!;
    assert.equal(findTokenizerPreset('EPFL-VILAB/flextok_d18_d28_dfn'), p);
    assert.deepEqual([p.encoderDim, p.decoderDim, p.registers], [1152, 1792, 256]);
    assert.equal(findVaePreset('vae_c16')?.repo, 'EPFL-VILAB/flextok_vae_c16');
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-presets-'));
    try {
      assert.throws(() => resolveModelPath('d18_d28_dfn', cache), /not downloaded .*flextok pull EPFL-VILAB\/flextok_d18_d28_dfn/);
      const dir = path.join(cache, 'EPFL-VILAB', 'flextok_d18_d28_dfn');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'model.safetensors'), '');
      assert.equal(resolveModelPath('d18_d28_dfn', cache), path.join(dir, 'model.safetensors'));
      assert.throws(() => resolveModelPath('nonsense', cache), /neither a file or folder nor a known model/);
      assert.throws(() => resolveModelPath('./missing.safetensors', cache), /no such file or folder/);
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });

  it('reports how a checkpoint differs from a preset', { skip: goldenSkip('e2e/model.safetensors') }, () => {
    requireGolden('e2e/model.safetensors');
    const p = findTokenizerPreset('d18_d28_dfn')!;
    const cfg = readCheckpointConfig(path.join(E2E, 'model.safetensors'));
    assert.ok(presetMismatches(p, cfg).some((m) => m.startsWith('encoder width is 64, expected 1152')));
  });
});
