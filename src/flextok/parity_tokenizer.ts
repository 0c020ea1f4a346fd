// Golden parity of the tokenizer core: builds the encoder, FSQ and decoder of a golden folder
// (tiny / small / pipeline format: config.json + weights.safetensors + io.safetensors) and compares
// every recorded tensor of every stage (encoder, FSQ, noise module, decoder cases, detokenize).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { reshape } from '../tensor/ops.js';
import { noGrad, Tensor } from '../tensor/tensor.js';
import { FlowDecoder } from './decoder.js';
import { RegisterEncoder } from './encoder.js';
import { detokenizeLatents, noiseLatents } from './flow.js';
import { FSQ } from './fsq.js';
import { compareTensor, missingResult, readTensorFile, type ParityResult } from './parity_util.js';
import { buildSincos2dTable } from './posemb.js';
import type { DecoderConfig, EncoderConfig, MaskMode } from './tokenizer_config.js';
import { WeightMap, type Trace } from './weights.js';

/** Parsed config.json (schema flextok-golden/1), read field by field. */
type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const ENCODER_PREFIX = 'encoder.module_dict.';
const DECODER_PREFIX = 'decoder.module_dict.';

/** io.safetensors entries that are inputs (or harness-derived), not outputs to compare. */
function isInputName(name: string): boolean {
  return (
    name.startsWith('input.') ||
    name.startsWith('noise.in.') ||
    name === 'noise.out.sigmas' ||
    name.startsWith('dec.in.') ||
    name === 'fsq.probe.z' ||
    name === 'fsq.probe.ids' ||
    name.startsWith('fsq.margin.') ||
    name.startsWith('detok.in.token_ids.') ||
    name.startsWith('detok.in.init_noise.')
  );
}

/** Golden tolerance by tensor name: exact for FSQ codes / ids and masks, 1e-3 for detokenize, else 1e-4. */
export function goldenTolerance(name: string): number {
  if (name.startsWith('fsq.') || name.endsWith('attn_mask') || name.startsWith('detok.in.quants_padded')) return 0;
  if (name.startsWith('detok.')) return 1e-3;
  return 1e-4;
}

function maskMode(mode: string): MaskMode {
  if (mode === 'full' || mode === 'causal' || mode === 'causal_last') return mode;
  throw new Error(`unsupported attention mask mode '${mode}'`);
}

function trunkFields(t: Json) {
  return {
    dim: t.dim as number,
    depth: t.depth as number,
    head_dim: t.head_dim as number,
    mlp_ratio: t.mlp_ratio as number,
    gated_mlp: String(t.mlp_type).startsWith('gated'),
    qkv_bias: !!t.qkv_bias,
    proj_bias: !!t.proj_bias,
    mlp_bias: !!t.mlp_bias,
    qk_norm: !!t.qk_norm?.enabled,
    attn_scale: t.attn_scale as number,
  };
}

/** EncoderConfig from a golden config.json (schema flextok-golden/1). */
export function encoderConfigFromGolden(cfg: Json): EncoderConfig {
  const e = cfg.encoder;
  return {
    ...trunkFields(e),
    channels_in: cfg.latent.channels,
    patch_sizes: [e.patch_size[0], e.patch_size[1]],
    max_sizes: [e.posemb.max_grid[0], e.posemb.max_grid[1]],
    n_registers: e.n_registers,
    dim_out: e.head.out_dim,
    mask_mode: maskMode(e.attention_mask.mode),
  };
}

/** DecoderConfig from a golden config.json; optional parts (null-cond type, head adaLN) are
 * cross-checked against the weights. */
export function decoderConfigFromGolden(cfg: Json, w?: WeightMap, prefix = DECODER_PREFIX): DecoderConfig {
  const d = cfg.decoder;
  const learned = String(d.null_condition.type).startsWith('learned');
  const headAdaLN = w ? w.has(`${prefix}dec_to_patches.adaLN_modulation.1.weight`) : true;
  const expansion = d.adaLN.expansion;
  if (expansion !== 1 && expansion !== 2) throw new Error(`unsupported adaLN expansion ${expansion}`);
  return {
    ...trunkFields(d),
    channels_in: cfg.latent.channels,
    patch_sizes: [d.patch_size[0], d.patch_size[1]],
    max_sizes: [d.posemb.max_grid[0], d.posemb.max_grid[1]],
    n_registers: d.register_posemb.max_len,
    dim_in: d.latent_proj.in_dim,
    frequency_embedding_size: d.time_embedding.frequency_embedding_size,
    max_timestep: d.time_embedding.max_timestep,
    null_cond: learned ? 'learned' : 'zero',
    replace_with_single_token: !!d.null_condition.replace_with_single_token,
    adaLN_expansion: expansion,
    head_adaLN: headAdaLN,
    mask_mode: maskMode(d.attention_mask.mode),
  };
}

function idsTensor(ids: Int32Array, shape: number[]): Tensor {
  return new Tensor(ids, shape);
}

/** Run every stage of the golden folder `dir` and compare each recorded tensor (plus the sin-cos
 * tables recomputed against the stored ones). Reference tensors we did not produce are failures. */
export function tokenizerParity(dir: string): ParityResult[] {
  const cfg: Json = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const io = readTensorFile(join(dir, 'io.safetensors'));
  const weights = readTensorFile(join(dir, 'weights.safetensors'));
  const wm = new WeightMap(weights, join(dir, 'weights.safetensors'));
  const encCfg = encoderConfigFromGolden(cfg);
  const decCfg = decoderConfigFromGolden(cfg, wm);
  const encoder = RegisterEncoder.load(encCfg, wm, ENCODER_PREFIX);
  const decoder = FlowDecoder.load(decCfg, wm, DECODER_PREFIX);
  wm.finish();
  const fsq = new FSQ(cfg.fsq.levels);

  const results: ParityResult[] = [];
  const compared = new Set<string>();
  const ref = (name: string): Tensor => {
    const t = io.get(name);
    if (!t) throw new Error(`${dir}: io.safetensors has no tensor '${name}'`);
    return t;
  };
  /** Compare with the io tensor of that name, if the golden recorded one. */
  const check = (name: string, mine: Tensor): void => {
    const r = io.get(name);
    if (!r || compared.has(name)) return;
    compared.add(name);
    results.push(compareTensor(name, mine, r, goldenTolerance(name)));
  };
  const renamed = (from: string, to: string): Trace => (name, t) => check(name.startsWith(from) ? to + name.slice(from.length) : name, t);

  // Sin-cos tables: recomputed vs stored.
  const tables: [string, string, number, [number, number]][] = [
    ['posemb.enc.sincos', `${ENCODER_PREFIX}enc_posemb_module.posembs`, encCfg.dim, encCfg.max_sizes],
    ['posemb.dec.sincos', `${DECODER_PREFIX}dec_patches_posemb_module.posembs`, decCfg.dim, decCfg.max_sizes],
  ];
  for (const [name, key, dim, [h, w]] of tables) {
    const stored = weights.get(key);
    if (stored) results.push(compareTensor(name, buildSincos2dTable(dim, h, w), stored, 1e-4));
  }

  noGrad(() => {
    const batch: number = cfg.latent.batch;
    const samples = [...Array(batch).keys()];
    const latents = samples.map((i) => ref(`input.latents.${i}`));

    // Encoder (all samples packed together).
    const encoded = encoder.forward(latents, check);

    // FSQ on the golden encoder outputs, plus the chained ids from ours.
    const r = encCfg.n_registers;
    for (const i of samples) {
      const { codes, ids } = fsq.quantize(ref(`enc.latents.${i}`));
      check(`fsq.quants.${i}`, codes);
      check(`fsq.tokens.${i}`, idsTensor(ids, [1, r]));
      check(`fsq.roundtrip.${i}`, reshape(fsq.idsToCodes(ref(`fsq.tokens.${i}`).i), [1, r, fsq.dim]));
      const chained = fsq.quantize(encoded[i]);
      results.push(compareTensor(`fsq.tokens.${i} (from our encoder)`, idsTensor(chained.ids, [1, r]), ref(`fsq.tokens.${i}`), 0));
    }
    const probe = fsq.quantize(ref('fsq.probe.z'));
    check('fsq.probe.quants', probe.codes);
    check('fsq.probe.tokens', idsTensor(probe.ids, [probe.ids.length]));
    check('fsq.probe.id_codes', fsq.idsToCodes(ref('fsq.probe.ids').i));

    // Noise module with the recorded sigmas and noise.
    const sigmas = ref('noise.out.sigmas').f;
    for (const i of samples) {
      const { xt } = noiseLatents(latents[i], { sigma: sigmas[i], noise: ref(`noise.in.noise.${i}`) });
      check(`noise.out.noised.${i}`, xt);
    }

    // Decoder cases on the golden codes, noised latents and timesteps.
    const noised = samples.map((i) => ref(`noise.out.noised.${i}`));
    const quants = samples.map((i) => ref(`fsq.quants.${i}`));
    const timesteps = Array.from(ref('dec.in.timesteps').f);
    const keepCases: Record<string, number[] | null> = cfg.cases.decoder.keep_k;
    for (const [name, keep] of Object.entries(keepCases)) {
      const keepK = keep ?? samples.map(() => null);
      decoder.forward(noised, timesteps, quants, keepK, {}, renamed('dec.', `dec.${name}.`));
    }
    decoder.forward(noised, timesteps, quants, samples.map(() => null), { uncond: true }, renamed('dec.', 'dec.uncond.'));

    // Detokenize: padded ids → codes → Euler sampling from the recorded initial noise.
    const det = cfg.cases.detokenize;
    const nSeq: number = det.token_lengths.length;
    const seqs = [...Array(nSeq).keys()];
    const tokenIds = seqs.map((b) => ref(`detok.in.token_ids.${b}`).i);
    const codes = seqs.map((b) => fsq.paddedCodes(tokenIds[b], r));
    seqs.forEach((b) => check(`detok.in.quants_padded.${b}`, codes[b]));
    const initNoise = seqs.map((b) => ref(`detok.in.init_noise.${b}`));
    for (const [name, g] of Object.entries(det.guidance as Record<string, Json>)) {
      detokenizeLatents(decoder, codes, tokenIds.map((ids) => ids.length), {
        steps: det.steps,
        guidanceScale: g.guidance_scale,
        apg: !!g.perform_norm_guidance,
        initNoise,
        trace: renamed('detok.', `detok.${name}.`),
      });
    }
  });

  for (const [name, t] of io) {
    if (!compared.has(name) && !isInputName(name)) results.push(missingResult(name, t.shape, goldenTolerance(name)));
  }
  return results;
}
