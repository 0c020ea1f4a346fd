// Tests of safe checkpoint loading: metadata parsing, the `_target_` allow-list, wiring checks, strict
// weight names/shapes and BF16 / F16 checkpoints, on copies of the golden e2e checkpoint.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
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
import { readSafetensors, writeSafetensors, type TensorData } from '../src/io/safetensors.js';
import { float32ToFloat16 } from '../src/tensor/half.js';

const E2E = fileURLToPath(new URL('../../shared/golden/e2e/', import.meta.url));
const haveGolden = fs.existsSync(path.join(E2E, 'model.safetensors'));
const skip = haveGolden ? false : `golden e2e folder not found at ${E2E}`;

/* eslint-disable @typescript-eslint/no-explicit-any */
const golden: any = haveGolden ? JSON.parse(fs.readFileSync(path.join(E2E, 'config.json'), 'utf8')) : {};

describe('checkpoint loading', { skip }, () => {
  let tmp: string;
  let original: { metadata: Record<string, string>; tensors: Map<string, TensorData> };

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-ckpt-'));
    original = readSafetensors(path.join(E2E, 'model.safetensors'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

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
      // No tensors at all: had the loader read weights first, it would fail with missing keys instead.
      tensors: (t) => t.clear(),
    });
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

  it('loads an F16 checkpoint', () => {
    const file = writeVariant('f16', {
      tensors: (t) => {
        for (const [name, td] of t) t.set(name, { dtype: 'F16', shape: td.shape, data: float32ToFloat16(td.data as Float32Array) });
      },
    });
    const model = FlexTok.load(file, { hubDir: path.join(E2E, 'hub') });
    assert.equal(model.numTokens, 8);
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
    if (!skip) {
      const cfg = readCheckpointConfig(path.join(E2E, 'model.safetensors'));
      assert.ok(presetMismatches(p, cfg).some((m) => m.startsWith('encoder width is 64, expected 1152')));
    }
  });
});
