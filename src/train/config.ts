// JSON training configs (tokenizer, VAE and generator): typed sections with defaults, strict validation that
// names the offending key (unknown keys are errors, so typos never silently fall back to defaults),
// and the derived EncoderConfig / DecoderConfig of the FlexTok modules.

import { parseArSampling, type ArSamplingConfig } from '../ar/settings.js';
import * as fs from 'node:fs';
import type { KeepKSampling } from '../flextok/decoder.js';
import type { DecoderConfig, EncoderConfig, NullCondType } from '../flextok/tokenizer_config.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Where training images come from and how they are brought to the training resolution. */
export interface DataConfig {
  /** 'fashion-mnist', 'fmnist-scenes' (64×64 scenes, src/io/scenes.ts), 'synthetic' (procedural shapes, for tests) or an image folder path */
  source: string;
  /** square training resolution in pixels (e.g. 32: Fashion-MNIST 28 → 32) */
  resolution: number;
  /** how images of another size reach `resolution` */
  resize_mode: 'pad' | 'resize';
  /** image channels for folders (Fashion-MNIST and synthetic are 1) */
  channels: 1 | 3;
  /** use only the first N training images (null = all) */
  limit: number | null;
  /** random horizontal flips */
  flip: boolean;
}

export interface OptimConfig {
  /** images per micro-batch */
  batch_size: number;
  /** micro-batches per optimizer step (effective batch = batch_size · grad_accum) */
  grad_accum: number;
  lr: number;
  /** cosine decay ends here at total_steps */
  min_lr: number;
  warmup_steps: number;
  /** AdamW decoupled weight decay on matrix weights only (none on biases, norms, embeddings, registers, tokens) */
  weight_decay: number;
  betas: [number, number];
  eps: number;
  /** clip the global gradient norm to this (0 = no clipping) */
  grad_clip: number;
  /** EMA of the weights (0 = none); samples and the export use the EMA weights */
  ema_decay: number;
  total_steps: number;
}

export interface RunConfig {
  /** optimizer steps between log.jsonl lines */
  log_every: number;
  /** steps between sample grids (0 = only at the end) */
  sample_every: number;
  /** steps between checkpoints (0 = only at the end) */
  checkpoint_every: number;
  /** images in a sample grid */
  sample_images: number;
  /** Euler steps for sample reconstructions */
  sample_steps: number;
  /** guidance scale for samples (1 = none) */
  sample_guidance: number;
  /** storage dtype of the exported model.safetensors */
  export_dtype: 'F32' | 'F16';
}

export interface TrunkSettings {
  dim: number;
  depth: number;
  head_dim: number;
  mlp_ratio: number;
}

export interface TokenizerModelConfig {
  /** square patch side on the latent (pixels for a pixel-space model) */
  patch_size: number;
  /** registers R = maximum tokens per image */
  n_registers: number;
  fsq_levels: number[];
  encoder: TrunkSettings;
  decoder: TrunkSettings;
  null_cond: NullCondType;
  frequency_embedding_size: number;
  /** TimestepEmbedder max_timestep (1.0: t ∈ [0, 1] scaled by 1000) */
  max_timestep: number;
  qk_norm: boolean;
  /** init of the encoder head (enc_to_latents): 'zero' as the official code (spec §10.8), or 'xavier'. Not
   * official: with a zero head every pre-quantisation value starts inside FSQ's centre bin, so every image
   * gets the same tokens until the straight-through gradient has pushed the head out of it (hundreds of
   * steps at our batch sizes); a Xavier head gives distinct tokens from step 0 */
  encoder_head_init: 'zero' | 'xavier';
}

export interface FlowConfig {
  /** the official noise module's σ sampler: logit-normal (ln), optionally stratified; or uniform with SD3 mode scale.
   * `shift` (not official; 1 = off) then maps σ → shift·σ / (1 + (shift − 1)·σ), the SD3 resolution shift towards
   * high noise, which small pixel-space images need for the decoder to rely on the tokens */
  timestep_sampler: { ln: boolean; stratified: boolean; mode_scale: number; shift: number };
  /** keep-k sampling of nested dropout ('uniform', 'pow2', 'uniform_pow2'; spec §10.2) */
  nested_dropout: KeepKSampling;
  /** optional second phase (not official): once `step` optimizer steps are done, keep-k is drawn with `mode`
   * instead, e.g. 'uniform_pow2' late in training to weight the long prefixes more once the short ones are
   * learned. Both modes take one random draw per image, so the random stream is the same either way */
  nested_dropout_switch: { step: number; mode: KeepKSampling } | null;
  /** probability that an image's whole register sequence is replaced by the null condition (CFG) */
  cfg_dropout: number;
}

export interface RepaConfig {
  /** tap the decoder hidden states after this block (0-based) */
  layer: number;
  /** loss weight λ of −cos */
  weight: number;
  /** width of the 3-layer SiLU MLP projector */
  projector_hidden: number;
  /** 'fmnist-classifier' (src/eval/classifier.ts) */
  teacher: string;
  /** teacher weights file */
  teacher_weights: string;
  /** how teacher feature maps are brought to the patch grid */
  resample: 'avgpool' | 'bilinear';
}

/** Start from a trained tokenizer instead of random weights (not official). */
export interface InitConfig {
  /** a trained tokenizer: model.safetensors in the official layout, or the run folder holding one */
  from: string;
  /** which of its modules to load; their shapes must match this config's */
  modules: Array<'encoder' | 'decoder'>;
  /** keep the loaded encoder fixed (no gradient, optimizer state or EMA): the tokens stay exactly those of
   * `from`, so e.g. a larger decoder can be trained for them without invalidating anything built on the tokens */
  freeze_encoder: boolean;
  /** the config's decoder may be deeper than the loaded one: its blocks past the source's depth start as
   * fresh AdaLN-zero blocks, which are the identity, so at step 0 the model computes exactly the source's
   * decoder and training only adds to it (decoder growth; needs 'decoder' in modules) */
  grow_decoder: boolean;
}

export interface TokenizerTrainConfig {
  kind: 'tokenizer';
  seed: number;
  data: DataConfig;
  /** 'none' = pixel space (latent = image), else the path of a trained VAE run (or a diffusers VAE folder) */
  vae: string;
  model: TokenizerModelConfig;
  flow: FlowConfig;
  repa: RepaConfig | null;
  /** optional: weights to start from (see InitConfig); null = random init */
  init: InitConfig | null;
  optim: OptimConfig;
  run: RunConfig;
}

export interface VaeModelConfig {
  block_out_channels: number[];
  layers_per_block: number;
  latent_channels: number;
  norm_num_groups: number;
  mid_block_add_attention: boolean;
}

export interface VaeTrainConfig {
  kind: 'vae';
  seed: number;
  data: DataConfig;
  model: VaeModelConfig;
  loss: { recon: 'l1' | 'l2'; kl_weight: number };
  optim: OptimConfig;
  run: RunConfig;
}

/** The stage-2 model's trunk and head (the codebook, FSQ levels, token count and classes come from the token dataset). */
export interface ArTrainModelConfig {
  dim: number;
  depth: number;
  head_dim: number;
  mlp_ratio: number;
  head: 'flat' | 'digits';
  qk_norm: boolean;
  /** digits head: hidden width of each per-digit MLP (null = dim) */
  digit_hidden: number | null;
  /** text conditioning on the token dataset's captions with the model's own word encoder (its vocabulary is
   * built from the training captions); null = class-conditional */
  text: { dim: number; depth: number; head_dim: number; max_len: number } | null;
  /** dropout on the embeddings and every residual branch in training (0 = none) */
  dropout: number;
}

export interface ArRunConfig {
  log_every: number;
  sample_every: number;
  checkpoint_every: number;
  /** steps between validation losses (0 = only at checkpoints) */
  val_every: number;
  /** sequences of the validation split scored each time (its first N, in order) */
  val_sequences: number;
  /** generated samples per class in a sample grid (each decoded at k = 1, 2, 4, …, R) */
  samples_per_class: number;
  export_dtype: 'F32' | 'F16' | 'BF16';
}

export interface ArTrainConfig {
  kind: 'ar';
  seed: number;
  /** token datasets written by `flextok tokenize-dataset` (train split; validation split or null) */
  tokens: {
    train: string;
    val: string | null;
    /** train only on the mirrored rows (tokenize-dataset --augment flip) of these class indices; null = of every
     * class. Fashion-MNIST's shoes all face one way and its bags mostly do: their mirrors are not in the data. */
    mirrored_classes: number[] | null;
  };
  /** the tokenizer the tokens came from (checked by sha256; decodes the sample grids) */
  tokenizer: string;
  model: ArTrainModelConfig;
  /** probability that a sequence's condition is replaced by the null one (class −1 / the empty prompt; for CFG) */
  class_dropout: number;
  optim: OptimConfig;
  run: ArRunConfig;
  sampling: ArSamplingConfig;
}

export type TrainConfig = TokenizerTrainConfig | VaeTrainConfig | ArTrainConfig;

// ---------------------------------------------------------------------------------------------
// defaults

const DATA_DEFAULTS: DataConfig = { source: 'fashion-mnist', resolution: 32, resize_mode: 'pad', channels: 1, limit: null, flip: false };

const OPTIM_DEFAULTS: OptimConfig = {
  batch_size: 32, grad_accum: 1, lr: 3e-4, min_lr: 3e-5, warmup_steps: 200, weight_decay: 0.05,
  betas: [0.9, 0.99], eps: 1e-8, grad_clip: 1.0, ema_decay: 0.999, total_steps: 10000,
};

const RUN_DEFAULTS: RunConfig = {
  log_every: 10, sample_every: 500, checkpoint_every: 500, sample_images: 8, sample_steps: 25, sample_guidance: 1.0, export_dtype: 'F32',
};

const TRUNK_DEFAULTS: TrunkSettings = { dim: 128, depth: 4, head_dim: 32, mlp_ratio: 4.0 };

const MODEL_DEFAULTS: TokenizerModelConfig = {
  patch_size: 4, n_registers: 32, fsq_levels: [8, 8, 8, 5, 5, 5],
  encoder: TRUNK_DEFAULTS, decoder: TRUNK_DEFAULTS,
  null_cond: 'learned', frequency_embedding_size: 256, max_timestep: 1.0, qk_norm: true, encoder_head_init: 'zero',
};

const FLOW_DEFAULTS: FlowConfig = { timestep_sampler: { ln: true, stratified: false, mode_scale: 0, shift: 1 }, nested_dropout: 'pow2', nested_dropout_switch: null, cfg_dropout: 0.1 };

const REPA_DEFAULTS: RepaConfig = {
  layer: 1, weight: 0.5, projector_hidden: 256, teacher: 'fmnist-classifier',
  teacher_weights: 'models/fmnist-classifier/classifier.safetensors', resample: 'avgpool',
};

const VAE_MODEL_DEFAULTS: VaeModelConfig = { block_out_channels: [32, 64], layers_per_block: 1, latent_channels: 4, norm_num_groups: 16, mid_block_add_attention: true };

// ---------------------------------------------------------------------------------------------
// validation

type Json = unknown;

/** Reads one object section: every key must be known; values are checked by the getters. */
class Section {
  private readonly seen = new Set<string>();
  constructor(readonly obj: Record<string, Json>, readonly path: string) {}

  static of(value: Json, path: string): Section {
    if (value === undefined || value === null) return new Section({}, path);
    if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${path}: expected an object, got ${JSON.stringify(value)}`);
    return new Section(value as Record<string, Json>, path);
  }

  private get(key: string): Json {
    this.seen.add(key);
    return this.obj[key];
  }

  private where(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  num(key: string, dflt: number, opts: { int?: boolean; min?: number; max?: number; exclusiveMin?: boolean } = {}): number {
    const v = this.get(key);
    if (v === undefined) return dflt;
    const ok = typeof v === 'number' && Number.isFinite(v) && (!opts.int || Number.isInteger(v))
      && (opts.min === undefined || (opts.exclusiveMin ? v > opts.min : v >= opts.min)) && (opts.max === undefined || v <= opts.max);
    if (!ok) {
      const range = `${opts.min !== undefined ? (opts.exclusiveMin ? ` > ${opts.min}` : ` ≥ ${opts.min}`) : ''}${opts.max !== undefined ? ` and ≤ ${opts.max}` : ''}`;
      throw new ConfigError(`${this.where(key)}: expected ${opts.int ? 'an integer' : 'a number'}${range}, got ${JSON.stringify(v)}`);
    }
    return v as number;
  }

  optInt(key: string, dflt: number | null, min = 1): number | null {
    const v = this.get(key);
    if (v === undefined) return dflt;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new ConfigError(`${this.where(key)}: expected null or an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.get(key);
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw new ConfigError(`${this.where(key)}: expected true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str(key: string, dflt: string): string {
    const v = this.get(key);
    if (v === undefined) return dflt;
    if (typeof v !== 'string' || v === '') throw new ConfigError(`${this.where(key)}: expected a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  }

  oneOf<T extends string | number>(key: string, dflt: T, allowed: readonly T[]): T {
    const v = this.get(key);
    if (v === undefined) return dflt;
    if (!allowed.includes(v as T)) throw new ConfigError(`${this.where(key)}: expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
  }

  intList(key: string, dflt: number[], min = 1): number[] {
    const v = this.get(key);
    if (v === undefined) return [...dflt];
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < min)) {
      throw new ConfigError(`${this.where(key)}: expected a non-empty list of integers ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return [...(v as number[])];
  }

  /** the dotted path of a key of this section (for sections parsed by their own function) */
  child(key: string): string {
    return this.where(key);
  }

  section(key: string): Section {
    return Section.of(this.get(key), this.where(key));
  }

  raw(key: string): Json {
    return this.get(key);
  }

  /** Throws on keys nobody asked for (typos). Keys starting with '_' or '#' are comments. */
  done(): void {
    const unknown = Object.keys(this.obj).filter((k) => !this.seen.has(k) && !k.startsWith('_') && !k.startsWith('#'));
    if (unknown.length) throw new ConfigError(`${this.path || 'config'}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
  }
}

function parseData(s: Section): DataConfig {
  const d: DataConfig = {
    source: s.str('source', DATA_DEFAULTS.source),
    resolution: s.num('resolution', DATA_DEFAULTS.resolution, { int: true, min: 4 }),
    resize_mode: s.oneOf('resize_mode', DATA_DEFAULTS.resize_mode, ['pad', 'resize'] as const),
    channels: s.oneOf('channels', DATA_DEFAULTS.channels, [1, 3] as const),
    limit: s.optInt('limit', DATA_DEFAULTS.limit),
    flip: s.bool('flip', DATA_DEFAULTS.flip),
  };
  s.done();
  return d;
}

function parseOptim(s: Section): OptimConfig {
  const betas = s.raw('betas');
  let b: [number, number] = [...OPTIM_DEFAULTS.betas];
  if (betas !== undefined) {
    if (!Array.isArray(betas) || betas.length !== 2 || betas.some((x) => typeof x !== 'number' || x < 0 || x >= 1)) {
      throw new ConfigError(`${s.path}.betas: expected [beta1, beta2] in [0, 1), got ${JSON.stringify(betas)}`);
    }
    b = [betas[0] as number, betas[1] as number];
  }
  const o: OptimConfig = {
    batch_size: s.num('batch_size', OPTIM_DEFAULTS.batch_size, { int: true, min: 1 }),
    grad_accum: s.num('grad_accum', OPTIM_DEFAULTS.grad_accum, { int: true, min: 1 }),
    lr: s.num('lr', OPTIM_DEFAULTS.lr, { min: 0, exclusiveMin: true }),
    min_lr: s.num('min_lr', OPTIM_DEFAULTS.min_lr, { min: 0 }),
    warmup_steps: s.num('warmup_steps', OPTIM_DEFAULTS.warmup_steps, { int: true, min: 0 }),
    weight_decay: s.num('weight_decay', OPTIM_DEFAULTS.weight_decay, { min: 0 }),
    betas: b,
    eps: s.num('eps', OPTIM_DEFAULTS.eps, { min: 0, exclusiveMin: true }),
    grad_clip: s.num('grad_clip', OPTIM_DEFAULTS.grad_clip, { min: 0 }),
    ema_decay: s.num('ema_decay', OPTIM_DEFAULTS.ema_decay, { min: 0, max: 0.999999 }),
    total_steps: s.num('total_steps', OPTIM_DEFAULTS.total_steps, { int: true, min: 1 }),
  };
  if (o.min_lr > o.lr) throw new ConfigError(`${s.path}.min_lr ${o.min_lr} is larger than lr ${o.lr}`);
  s.done();
  return o;
}

function parseRun(s: Section): RunConfig {
  const r: RunConfig = {
    log_every: s.num('log_every', RUN_DEFAULTS.log_every, { int: true, min: 1 }),
    sample_every: s.num('sample_every', RUN_DEFAULTS.sample_every, { int: true, min: 0 }),
    checkpoint_every: s.num('checkpoint_every', RUN_DEFAULTS.checkpoint_every, { int: true, min: 0 }),
    sample_images: s.num('sample_images', RUN_DEFAULTS.sample_images, { int: true, min: 1 }),
    sample_steps: s.num('sample_steps', RUN_DEFAULTS.sample_steps, { int: true, min: 1 }),
    sample_guidance: s.num('sample_guidance', RUN_DEFAULTS.sample_guidance),
    export_dtype: s.oneOf('export_dtype', RUN_DEFAULTS.export_dtype, ['F32', 'F16'] as const),
  };
  s.done();
  return r;
}

function parseTrunk(s: Section, dflt: TrunkSettings): TrunkSettings {
  const t: TrunkSettings = {
    dim: s.num('dim', dflt.dim, { int: true, min: 4 }),
    depth: s.num('depth', dflt.depth, { int: true, min: 1 }),
    head_dim: s.num('head_dim', dflt.head_dim, { int: true, min: 1 }),
    mlp_ratio: s.num('mlp_ratio', dflt.mlp_ratio, { min: 0, exclusiveMin: true }),
  };
  if (t.dim % t.head_dim !== 0) throw new ConfigError(`${s.path}.dim ${t.dim} is not a multiple of head_dim ${t.head_dim}`);
  if (t.dim % 4 !== 0) throw new ConfigError(`${s.path}.dim ${t.dim} must be divisible by 4 (2D sin-cos position table)`);
  s.done();
  return t;
}

function parseModel(s: Section): TokenizerModelConfig {
  const m: TokenizerModelConfig = {
    patch_size: s.num('patch_size', MODEL_DEFAULTS.patch_size, { int: true, min: 1 }),
    n_registers: s.num('n_registers', MODEL_DEFAULTS.n_registers, { int: true, min: 1 }),
    fsq_levels: s.intList('fsq_levels', MODEL_DEFAULTS.fsq_levels, 2),
    encoder: parseTrunk(s.section('encoder'), MODEL_DEFAULTS.encoder),
    decoder: parseTrunk(s.section('decoder'), MODEL_DEFAULTS.decoder),
    null_cond: s.oneOf('null_cond', MODEL_DEFAULTS.null_cond, ['learned', 'zero'] as const),
    frequency_embedding_size: s.num('frequency_embedding_size', MODEL_DEFAULTS.frequency_embedding_size, { int: true, min: 2 }),
    max_timestep: s.num('max_timestep', MODEL_DEFAULTS.max_timestep, { min: 0, exclusiveMin: true }),
    qk_norm: s.bool('qk_norm', MODEL_DEFAULTS.qk_norm),
    encoder_head_init: s.oneOf('encoder_head_init', MODEL_DEFAULTS.encoder_head_init, ['zero', 'xavier'] as const),
  };
  s.done();
  return m;
}

const KEEP_K_MODES = ['uniform', 'pow2', 'uniform_pow2'] as const;

function parseKeepKSwitch(value: Json, path: string): FlowConfig['nested_dropout_switch'] {
  if (value === null || value === undefined) return null;
  const s = Section.of(value, path);
  if (s.raw('step') === undefined) throw new ConfigError(`${path}.step: required (the optimizer step from which \`mode\` is used)`);
  const sw = { step: s.num('step', 0, { int: true, min: 0 }), mode: s.oneOf('mode', 'uniform_pow2', KEEP_K_MODES) };
  s.done();
  return sw;
}

function parseFlow(s: Section): FlowConfig {
  const ts = s.section('timestep_sampler');
  const sampler = {
    ln: ts.bool('ln', FLOW_DEFAULTS.timestep_sampler.ln),
    stratified: ts.bool('stratified', FLOW_DEFAULTS.timestep_sampler.stratified),
    mode_scale: ts.num('mode_scale', FLOW_DEFAULTS.timestep_sampler.mode_scale),
    shift: ts.num('shift', FLOW_DEFAULTS.timestep_sampler.shift, { min: 0, exclusiveMin: true }),
  };
  ts.done();
  const f: FlowConfig = {
    timestep_sampler: sampler,
    nested_dropout: s.oneOf('nested_dropout', FLOW_DEFAULTS.nested_dropout, KEEP_K_MODES),
    nested_dropout_switch: parseKeepKSwitch(s.raw('nested_dropout_switch'), s.child('nested_dropout_switch')),
    cfg_dropout: s.num('cfg_dropout', FLOW_DEFAULTS.cfg_dropout, { min: 0, max: 1 }),
  };
  s.done();
  return f;
}

function parseRepa(value: Json, path: string): RepaConfig | null {
  if (value === null || value === undefined) return null;
  const s = Section.of(value, path);
  const r: RepaConfig = {
    layer: s.num('layer', REPA_DEFAULTS.layer, { int: true, min: 0 }),
    weight: s.num('weight', REPA_DEFAULTS.weight, { min: 0 }),
    projector_hidden: s.num('projector_hidden', REPA_DEFAULTS.projector_hidden, { int: true, min: 1 }),
    teacher: s.str('teacher', REPA_DEFAULTS.teacher),
    teacher_weights: s.str('teacher_weights', REPA_DEFAULTS.teacher_weights),
    resample: s.oneOf('resample', REPA_DEFAULTS.resample, ['avgpool', 'bilinear'] as const),
  };
  s.done();
  return r;
}

const INIT_MODULES = ['encoder', 'decoder'] as const;

function parseInit(value: Json, path: string): InitConfig | null {
  if (value === null || value === undefined) return null;
  const s = Section.of(value, path);
  if (s.raw('from') === undefined) throw new ConfigError(`${path}.from: required (a trained model.safetensors or its run folder)`);
  const from = s.str('from', '');
  const modules = s.raw('modules') ?? ['encoder'];
  if (!Array.isArray(modules) || modules.length === 0 || modules.some((m) => !INIT_MODULES.includes(m)) || new Set(modules).size !== modules.length) {
    throw new ConfigError(`${path}.modules: expected a list of distinct ${INIT_MODULES.map((m) => JSON.stringify(m)).join(' / ')}, got ${JSON.stringify(modules)}`);
  }
  const init: InitConfig = { from, modules: modules as InitConfig['modules'], freeze_encoder: s.bool('freeze_encoder', false), grow_decoder: s.bool('grow_decoder', false) };
  s.done();
  if (init.grow_decoder && !init.modules.includes('decoder')) {
    throw new ConfigError(`${path}.grow_decoder is true but modules ${JSON.stringify(init.modules)} does not load the decoder (there is nothing to grow)`);
  }
  if (init.freeze_encoder && !init.modules.includes('encoder')) {
    throw new ConfigError(`${path}.freeze_encoder is true but modules ${JSON.stringify(init.modules)} does not load the encoder (a frozen random encoder cannot learn)`);
  }
  return init;
}

/** Validate a tokenizer training config (JSON object), filling defaults. */
export function parseTokenizerConfig(json: Json, source = 'config'): TokenizerTrainConfig {
  try {
    const s = Section.of(json, '');
    const kind = s.str('kind', 'tokenizer');
    if (kind !== 'tokenizer') throw new ConfigError(`kind is '${kind}'; this is the tokenizer trainer (use train-vae for 'vae')`);
    const cfg: TokenizerTrainConfig = {
      kind: 'tokenizer',
      seed: s.num('seed', 0, { int: true, min: 0 }),
      data: parseData(s.section('data')),
      vae: s.str('vae', 'none'),
      model: parseModel(s.section('model')),
      flow: parseFlow(s.section('flow')),
      repa: parseRepa(s.raw('repa'), 'repa'),
      init: parseInit(s.raw('init'), 'init'),
      optim: parseOptim(s.section('optim')),
      run: parseRun(s.section('run')),
    };
    s.done();
    if (cfg.repa && cfg.repa.layer >= cfg.model.decoder.depth) {
      throw new ConfigError(`repa.layer ${cfg.repa.layer} must be a decoder block index < decoder.depth ${cfg.model.decoder.depth}`);
    }
    return cfg;
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${source}: ${e.message}`);
    throw e;
  }
}

/** The sampling section, validated by the generator's own parser (its errors become ConfigErrors). */
function parseSamplingSection(json: Json): ArSamplingConfig {
  try {
    return parseArSampling(json, 'sampling');
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}

/** Validate a stage-2 (autoregressive generator) training config, filling defaults. */
export function parseArTrainConfig(json: Json, source = 'config'): ArTrainConfig {
  try {
    const s = Section.of(json, '');
    const kind = s.str('kind', 'ar');
    if (kind !== 'ar') throw new ConfigError(`kind is '${kind}'; this is the generator trainer (train-ar)`);
    const ts = s.section('tokens');
    const trainRaw = ts.raw('train');
    if (trainRaw !== undefined && trainRaw !== null && typeof trainRaw !== 'string') {
      throw new ConfigError(`tokens.train: expected a file path or null (then --tokens DIR gives it), got ${JSON.stringify(trainRaw)}`);
    }
    const trainTokens = (trainRaw as string | null | undefined) ?? '';
    const valRaw = ts.raw('val');
    if (valRaw !== undefined && valRaw !== null && (typeof valRaw !== 'string' || valRaw === '')) {
      throw new ConfigError(`tokens.val: expected a file path or null, got ${JSON.stringify(valRaw)}`);
    }
    const mirroredRaw = ts.raw('mirrored_classes');
    let mirrored: number[] | null = null;
    if (mirroredRaw !== undefined && mirroredRaw !== null) {
      if (!Array.isArray(mirroredRaw) || !mirroredRaw.every((c) => typeof c === 'number' && Number.isInteger(c) && c >= 0)) {
        throw new ConfigError(`tokens.mirrored_classes: expected a list of class indices (integers ≥ 0) or null, got ${JSON.stringify(mirroredRaw)}`);
      }
      mirrored = mirroredRaw as number[];
    }
    ts.done();
    const ms = s.section('model');
    const model: ArTrainModelConfig = {
      dim: ms.num('dim', 256, { int: true, min: 8 }),
      depth: ms.num('depth', 6, { int: true, min: 1 }),
      head_dim: ms.num('head_dim', 64, { int: true, min: 1 }),
      mlp_ratio: ms.num('mlp_ratio', 4, { min: 0, exclusiveMin: true }),
      head: ms.oneOf('head', 'digits', ['flat', 'digits'] as const),
      qk_norm: ms.bool('qk_norm', true),
      digit_hidden: ms.optInt('digit_hidden', null),
      text: null,
      dropout: ms.num('dropout', 0, { min: 0, max: 0.9 }),
    };
    const textRaw = ms.raw('text');
    if (textRaw !== undefined && textRaw !== null) {
      const t = ms.section('text');
      model.text = {
        dim: t.num('dim', 128, { int: true, min: 8 }),
        depth: t.num('depth', 2, { int: true, min: 0 }),
        head_dim: t.num('head_dim', 32, { int: true, min: 1 }),
        max_len: t.num('max_len', 40, { int: true, min: 1 }),
      };
      if (model.text.dim % model.text.head_dim !== 0) throw new ConfigError(`model.text.dim ${model.text.dim} is not a multiple of model.text.head_dim ${model.text.head_dim}`);
      t.done();
    }
    if (model.dim % model.head_dim !== 0) throw new ConfigError(`model.dim ${model.dim} is not a multiple of head_dim ${model.head_dim}`);
    ms.done();
    const rs = s.section('run');
    const run: ArRunConfig = {
      log_every: rs.num('log_every', 20, { int: true, min: 1 }),
      sample_every: rs.num('sample_every', 1000, { int: true, min: 0 }),
      checkpoint_every: rs.num('checkpoint_every', 500, { int: true, min: 0 }),
      val_every: rs.num('val_every', 500, { int: true, min: 0 }),
      val_sequences: rs.num('val_sequences', 2000, { int: true, min: 1 }),
      samples_per_class: rs.num('samples_per_class', 1, { int: true, min: 1 }),
      export_dtype: rs.oneOf('export_dtype', 'F16', ['F32', 'F16', 'BF16'] as const),
    };
    rs.done();
    const cfg: ArTrainConfig = {
      kind: 'ar',
      seed: s.num('seed', 0, { int: true, min: 0 }),
      tokens: { train: trainTokens, val: (valRaw as string | null | undefined) ?? null, mirrored_classes: mirrored },
      tokenizer: s.str('tokenizer', 'models/fmnist-default'),
      model,
      class_dropout: s.num('class_dropout', 0.1, { min: 0, max: 1 }),
      optim: parseOptim(s.section('optim')),
      run,
      sampling: parseSamplingSection(s.raw('sampling')),
    };
    s.done();
    return cfg;
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${source}: ${e.message}`);
    throw e;
  }
}

/** Validate a VAE training config (JSON object), filling defaults. */
export function parseVaeConfig(json: Json, source = 'config'): VaeTrainConfig {
  try {
    const s = Section.of(json, '');
    const kind = s.str('kind', 'vae');
    if (kind !== 'vae') throw new ConfigError(`kind is '${kind}'; this is the VAE trainer (use train-tokenizer for 'tokenizer')`);
    const ms = s.section('model');
    const model: VaeModelConfig = {
      block_out_channels: ms.intList('block_out_channels', VAE_MODEL_DEFAULTS.block_out_channels),
      layers_per_block: ms.num('layers_per_block', VAE_MODEL_DEFAULTS.layers_per_block, { int: true, min: 1 }),
      latent_channels: ms.num('latent_channels', VAE_MODEL_DEFAULTS.latent_channels, { int: true, min: 1 }),
      norm_num_groups: ms.num('norm_num_groups', VAE_MODEL_DEFAULTS.norm_num_groups, { int: true, min: 1 }),
      mid_block_add_attention: ms.bool('mid_block_add_attention', VAE_MODEL_DEFAULTS.mid_block_add_attention),
    };
    ms.done();
    for (const c of model.block_out_channels) {
      if (c % model.norm_num_groups !== 0) throw new ConfigError(`model.block_out_channels entry ${c} is not divisible by norm_num_groups ${model.norm_num_groups}`);
    }
    const ls = s.section('loss');
    const loss = { recon: ls.oneOf('recon', 'l1', ['l1', 'l2'] as const), kl_weight: ls.num('kl_weight', 1e-6, { min: 0 }) };
    ls.done();
    const cfg: VaeTrainConfig = {
      kind: 'vae',
      seed: s.num('seed', 0, { int: true, min: 0 }),
      data: parseData(s.section('data')),
      model,
      loss,
      optim: parseOptim(s.section('optim')),
      run: parseRun(s.section('run')),
    };
    s.done();
    const f = 2 ** (model.block_out_channels.length - 1);
    if (cfg.data.resolution % f !== 0) throw new ConfigError(`data.resolution ${cfg.data.resolution} is not a multiple of the VAE downsampling factor ${f}`);
    return cfg;
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${source}: ${e.message}`);
    throw e;
  }
}

export function readJsonFile(file: string): Json {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`${file}: cannot read the config (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

// ---------------------------------------------------------------------------------------------
// derived module configs

/** The encoder config for latents with `channels` channels on a `latentSize`² grid. */
export function encoderConfigOf(m: TokenizerModelConfig, channels: number, latentSize: number): EncoderConfig {
  const p = m.patch_size;
  if (latentSize % p !== 0) throw new ConfigError(`the latent grid ${latentSize}×${latentSize} is not a multiple of patch_size ${p}`);
  return {
    dim: m.encoder.dim, depth: m.encoder.depth, head_dim: m.encoder.head_dim, mlp_ratio: m.encoder.mlp_ratio,
    gated_mlp: true, qkv_bias: false, proj_bias: false, mlp_bias: false, qk_norm: m.qk_norm,
    channels_in: channels, patch_sizes: [p, p], max_sizes: [latentSize / p, latentSize / p],
    n_registers: m.n_registers, dim_out: m.fsq_levels.length, mask_mode: 'causal_last',
  };
}

export function decoderConfigOf(m: TokenizerModelConfig, channels: number, latentSize: number): DecoderConfig {
  const p = m.patch_size;
  if (latentSize % p !== 0) throw new ConfigError(`the latent grid ${latentSize}×${latentSize} is not a multiple of patch_size ${p}`);
  return {
    dim: m.decoder.dim, depth: m.decoder.depth, head_dim: m.decoder.head_dim, mlp_ratio: m.decoder.mlp_ratio,
    gated_mlp: true, qkv_bias: false, proj_bias: false, mlp_bias: false, qk_norm: m.qk_norm,
    channels_in: channels, patch_sizes: [p, p], max_sizes: [latentSize / p, latentSize / p],
    n_registers: m.n_registers, dim_in: m.fsq_levels.length,
    frequency_embedding_size: m.frequency_embedding_size, max_timestep: m.max_timestep,
    null_cond: m.null_cond, replace_with_single_token: false, adaLN_expansion: 2, head_adaLN: true, mask_mode: 'full',
  };
}
