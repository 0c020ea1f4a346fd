// Safe loading of official FlexTok checkpoints: the Hydra config in the safetensors metadata is parsed as
// Python literals (never evaluated), every `_target_` is mapped through an explicit allow-list to typed
// configs, the data-dict wiring the inference path relies on is checked, and tensors are read as float32.
//
// The official loader hands the metadata to `hydra.utils.instantiate`, which imports and calls whatever
// `_target_` names. Here a target outside ALLOWED_TARGETS is refused before anything else is done, and
// each allowed target has a builder that accepts only its official constructor arguments.
import { fs, path } from '../io/node_builtins.js';
import { decodeSafetensors, openSafetensors, toFloat32, type TensorData } from '../io/safetensors.js';
import { parsePyLiteral, PyLiteralError, type PyKey, type PyValue } from '../io/pyliteral.js';
import { Tensor } from '../tensor/tensor.js';
import type { DecoderConfig, EncoderConfig, MaskMode, TransformerConfig } from './tokenizer_config.js';

/** Every `_target_` a FlexTok config may name (the official classes of spec §9.3), and nothing else. */
export const ALLOWED_TARGETS: readonly string[] = [
  'flextok.flextok_wrapper.FlexTok',
  'flextok.flextok_wrapper.FlexTokFromHub',
  'flextok.vae_wrapper.StableDiffusionVAE',
  // Not an official class: the "VAE" of pixel-space models exported by this package's trainer (no
  // parameters; the latents are the images). See src/train/export.ts.
  'flextok_ts.identity_vae.IdentityVAE',
  'flextok.flow_matching.pipelines.MinRFPipeline',
  'flextok.flow_matching.noise_modules.MinRFNoiseModule',
  'flextok.flow_matching.cfg_utils.MomentumBuffer',
  'flextok.model.utils.wrappers.SequentialModuleDictWrapper',
  'flextok.model.utils.posembs.PositionalEmbedding',
  'flextok.model.utils.posembs.PositionalEmbeddingAdder',
  'flextok.model.utils.dict_ops.PerSampleOp',
  'flextok.model.utils.dict_ops.channels_first_to_last',
  'flextok.model.utils.dict_ops.channels_last_to_first',
  'flextok.model.utils.dict_ops.DictKeyFilter',
  'flextok.model.utils.dict_ops.PerSampleReducer',
  'flextok.model.trunks.transformers.FlexTransformer',
  'flextok.model.trunks.transformers.FlexTransformerDecoder',
  'flextok.model.preprocessors.token_dropout.MaskedNestedDropout',
  'flextok.model.preprocessors.time_embedding.TimestepEmbedder',
  'flextok.model.preprocessors.registers.Registers1D',
  'flextok.model.preprocessors.patching.PatchEmbedder',
  'flextok.model.preprocessors.nullcond.ZeroNullCond',
  'flextok.model.preprocessors.nullcond.LearnedNullCond',
  'flextok.model.preprocessors.mask_tokens.MaskTokenModule',
  'flextok.model.preprocessors.linear.LinearLayer',
  'flextok.model.preprocessors.flex_seq_packing.BlockWiseSequencePacker',
  'flextok.model.postprocessors.seq_unpacking.SequenceUnpacker',
  'flextok.model.postprocessors.heads.LinearHead',
  'flextok.model.postprocessors.heads.ToPatchesLinearHead',
  'flextok.model.postprocessors.heads.MLPHead',
  'flextok.model.layers.norm.Fp32LayerNorm',
  'flextok.regularizers.quantize_fsq.FSQ',
  // Activation layers a trunk config may name explicitly (partial, no arguments).
  'torch.nn.SiLU',
  'torch.nn.modules.activation.SiLU',
];

const T = {
  flexTok: 'flextok.flextok_wrapper.FlexTok',
  flexTokFromHub: 'flextok.flextok_wrapper.FlexTokFromHub',
  vae: 'flextok.vae_wrapper.StableDiffusionVAE',
  identityVae: 'flextok_ts.identity_vae.IdentityVAE',
  pipeline: 'flextok.flow_matching.pipelines.MinRFPipeline',
  noiseModule: 'flextok.flow_matching.noise_modules.MinRFNoiseModule',
  sequential: 'flextok.model.utils.wrappers.SequentialModuleDictWrapper',
  posembAdder: 'flextok.model.utils.posembs.PositionalEmbeddingAdder',
  perSampleOp: 'flextok.model.utils.dict_ops.PerSampleOp',
  toLast: 'flextok.model.utils.dict_ops.channels_first_to_last',
  toFirst: 'flextok.model.utils.dict_ops.channels_last_to_first',
  transformer: 'flextok.model.trunks.transformers.FlexTransformer',
  nestedDropout: 'flextok.model.preprocessors.token_dropout.MaskedNestedDropout',
  timeEmbedder: 'flextok.model.preprocessors.time_embedding.TimestepEmbedder',
  registers: 'flextok.model.preprocessors.registers.Registers1D',
  patchEmbedder: 'flextok.model.preprocessors.patching.PatchEmbedder',
  zeroNullCond: 'flextok.model.preprocessors.nullcond.ZeroNullCond',
  learnedNullCond: 'flextok.model.preprocessors.nullcond.LearnedNullCond',
  linearLayer: 'flextok.model.preprocessors.linear.LinearLayer',
  packer: 'flextok.model.preprocessors.flex_seq_packing.BlockWiseSequencePacker',
  unpacker: 'flextok.model.postprocessors.seq_unpacking.SequenceUnpacker',
  linearHead: 'flextok.model.postprocessors.heads.LinearHead',
  toPatchesHead: 'flextok.model.postprocessors.heads.ToPatchesLinearHead',
  mlpHead: 'flextok.model.postprocessors.heads.MLPHead',
  layerNorm: 'flextok.model.layers.norm.Fp32LayerNorm',
  fsq: 'flextok.regularizers.quantize_fsq.FSQ',
} as const;

const SILU_TARGETS = ['torch.nn.SiLU', 'torch.nn.modules.activation.SiLU'];

/** The data-dict key the sampler sets for the unconditional pass (hard-wired in the official MinRFPipeline). */
export const SAMPLER_DROP_FLAG_KEY = 'eval_dropout_mask';

/** A config that names a class outside the allow-list, or that this implementation cannot build faithfully. */
export class CheckpointConfigError extends Error {
  constructor(
    readonly source: string,
    readonly configPath: string,
    problem: string,
  ) {
    super(`${source}: config ${configPath || '(top level)'}: ${problem}`);
    this.name = 'CheckpointConfigError';
  }
}

/** The `_target_` of the identity "VAE" of pixel-space checkpoints (written by src/train/export.ts). */
export const IDENTITY_VAE_TARGET = T.identityVae;

/**
 * The image ↔ latent stage: `kind` 'stable-diffusion' is the official StableDiffusionVAE wrapper (the
 * architecture comes from the VAE repository's config.json); 'identity' is a pixel-space model whose latents
 * are the images themselves (latentChannels = image channels, no hub repository, scaling factor 1, nothing
 * to sample).
 */
export interface VaeSettings {
  kind: 'stable-diffusion' | 'identity';
  /** Hub repository id of the VAE (`EPFL-VILAB/flextok_vae_c16`), or null: the base config of spec §9.2. */
  hfHubPath: string | null;
  latentChannels: number;
  /** null: take the VAE config's scaling_factor. */
  scalingFactor: number | null;
  /** Tokenize from a posterior sample (true) or the mean (false). */
  samplePosterior: boolean;
  dtypeOverride: string | null;
}

export interface NoiseModuleSettings {
  ln: boolean;
  stratisfied: boolean;
  modeScale: number;
}

export interface PipelineSettings {
  /** Channels of the sampled noise (= the VAE latent channels). */
  outChannels: number;
}

/** A FlexTok model as its checkpoint config describes it. */
export interface FlexTokConfig {
  vae: VaeSettings;
  encoder: EncoderConfig;
  decoder: DecoderConfig;
  fsqLevels: number[];
  noiseModule: NoiseModuleSettings;
  pipeline: PipelineSettings;
  /** Weight-name prefixes of modules only used in training (e.g. a REPA projector); their tensors are ignored. */
  trainingOnlyPrefixes: string[];
  /** Every `_target_` of the config with its path, in document order. */
  targets: Array<{ target: string; path: string }>;
}

// ---------------------------------------------------------------------------------------------
// metadata → Python values

type PyMap = Map<PyKey, PyValue>;

function isMap(v: PyValue | undefined): v is PyMap {
  return v instanceof Map;
}

/** Top-level keys of a FlexTok config, in the official order. */
const TOP_LEVEL_KEYS = ['_target_', 'vae', 'encoder', 'decoder', 'regularizer', 'flow_matching_noise_module', 'pipeline'];

/**
 * Parses the safetensors `__metadata__` entries (Python `str()` of each config value) into one config
 * mapping, as the official `parse_metadata` does with `ast.literal_eval`, but without evaluating anything: a
 * value that is not a literal stays the raw string (the top-level `_target_`).
 */
export function parseMetadataConfig(metadata: Record<string, string>, source: string): PyMap {
  const config: PyMap = new Map();
  for (const [key, text] of Object.entries(metadata)) {
    if (key === 'format') continue; // safetensors' own optional 'format' entry ('pt')
    let value: PyValue;
    try {
      value = parsePyLiteral(text, { dictsAsMaps: true });
    } catch (err) {
      if (!(err instanceof PyLiteralError)) throw err;
      if (typeof text !== 'string' || !/^[A-Za-z_][A-Za-z0-9_.]*$/.test(text.trim())) {
        throw new CheckpointConfigError(source, key, `metadata value is not a Python literal: ${err.message}`);
      }
      value = text.trim();
    }
    config.set(key, value);
  }
  return config;
}

function jsonToPy(value: unknown): PyValue {
  if (value === null || typeof value === 'boolean' || typeof value === 'number' || typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(jsonToPy);
  const m: PyMap = new Map();
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) m.set(k, jsonToPy(v));
  return m;
}

/** A hub `config.json` holding the same config (possibly wrapped under a top-level `config` key). */
export function parseJsonConfig(text: string, source: string): PyMap {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CheckpointConfigError(source, '', `not valid JSON (${(err as Error).message})`);
  }
  const inner = json !== null && typeof json === 'object' && !('_target_' in json) && 'config' in json ? (json as { config: unknown }).config : json;
  const value = jsonToPy(inner);
  if (!isMap(value)) throw new CheckpointConfigError(source, '', 'expected a JSON object');
  return value;
}

function keyName(k: PyKey): string {
  return typeof k === 'string' ? k : JSON.stringify(k);
}

/**
 * Walks the whole config and refuses any `_target_` outside ALLOWED_TARGETS (and Hydra's `_args_` /
 * `_recursive_` / `_convert_` directives), naming the target and where it is. Returns every target found.
 */
export function checkTargets(config: PyValue, source: string): Array<{ target: string; path: string }> {
  const found: Array<{ target: string; path: string }> = [];
  const walk = (v: PyValue, at: string): void => {
    if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${at}[${i}]`));
      return;
    }
    if (!isMap(v)) return;
    if (v.has('_target_')) {
      const target = v.get('_target_');
      if (typeof target !== 'string') throw new CheckpointConfigError(source, at, `_target_ is not a string (${JSON.stringify(String(target))})`);
      if (!ALLOWED_TARGETS.includes(target)) {
        throw new CheckpointConfigError(
          source,
          at || '_target_',
          `_target_ '${target}' is not on the allow-list of FlexTok classes; refusing to load this checkpoint ` +
            `(nothing was imported or evaluated)`,
        );
      }
      found.push({ target, path: at || '_target_' });
    }
    for (const [k, x] of v) {
      const name = keyName(k);
      if (typeof k === 'string' && /^_.*_$/.test(k) && k !== '_target_' && k !== '_partial_') {
        throw new CheckpointConfigError(source, at ? `${at}.${name}` : name, `the Hydra directive '${k}' is not supported`);
      }
      walk(x, at ? `${at}.${name}` : name);
    }
  };
  walk(config, '');
  return found;
}

// ---------------------------------------------------------------------------------------------
// typed access to one config node

/** One config mapping with its path; reads typed arguments and reports unknown ones. */
class ConfigNode {
  private readonly used = new Set<string>(['_target_', '_partial_']);

  constructor(
    readonly map: PyMap,
    readonly path: string,
    readonly source: string,
  ) {}

  fail(problem: string, key?: string): never {
    throw new CheckpointConfigError(this.source, key ? `${this.path}.${key}` : this.path, problem);
  }

  get target(): string | null {
    const t = this.map.get('_target_');
    return typeof t === 'string' ? t : null;
  }

  get partial(): boolean {
    return this.map.get('_partial_') === true;
  }

  has(key: string): boolean {
    const v = this.map.get(key);
    return v !== undefined && v !== null;
  }

  private value(key: string): PyValue | undefined {
    this.used.add(key);
    return this.map.get(key);
  }

  /** Marks arguments that do not change inference (training options) as read. */
  ignore(...keys: string[]): void {
    for (const k of keys) this.used.add(k);
  }

  str(key: string, dflt?: string): string {
    const v = this.value(key);
    if (v === undefined && dflt !== undefined) return dflt;
    if (typeof v !== 'string') this.fail(`expected a string, got ${describe(v)}`, key);
    return v;
  }

  optStr(key: string, dflt: string | null = null): string | null {
    const v = this.value(key);
    if (v === undefined) return dflt;
    if (v === null) return null;
    if (typeof v !== 'string') this.fail(`expected a string or None, got ${describe(v)}`, key);
    return v;
  }

  num(key: string, dflt?: number): number {
    const v = this.value(key);
    if (v === undefined && dflt !== undefined) return dflt;
    if (typeof v === 'bigint') return Number(v);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(`expected a number, got ${describe(v)}`, key);
    return v;
  }

  optNum(key: string): number | null {
    const v = this.value(key);
    if (v === undefined || v === null) return null;
    this.used.delete(key);
    return this.num(key);
  }

  int(key: string, dflt?: number): number {
    const n = this.num(key, dflt);
    if (!Number.isInteger(n)) this.fail(`expected an integer, got ${n}`, key);
    return n;
  }

  optInt(key: string): number | null {
    const n = this.optNum(key);
    if (n !== null && !Number.isInteger(n)) this.fail(`expected an integer, got ${n}`, key);
    return n;
  }

  bool(key: string, dflt?: boolean): boolean {
    const v = this.value(key);
    if (v === undefined && dflt !== undefined) return dflt;
    if (typeof v !== 'boolean') this.fail(`expected True or False, got ${describe(v)}`, key);
    return v;
  }

  intList(key: string, dflt?: number[]): number[] {
    const v = this.value(key);
    if (v === undefined && dflt !== undefined) return dflt;
    if (!Array.isArray(v) || !v.every((x) => (typeof x === 'number' && Number.isInteger(x)) || typeof x === 'bigint')) {
      this.fail(`expected a list of integers, got ${describe(v)}`, key);
    }
    return v.map((x) => Number(x));
  }

  strList(key: string): string[] {
    const v = this.value(key);
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) this.fail(`expected a list of strings, got ${describe(v)}`, key);
    return v as string[];
  }

  child(key: string): ConfigNode {
    const v = this.value(key);
    if (!isMap(v)) this.fail(`expected a config mapping, got ${describe(v)}`, key);
    return new ConfigNode(v, this.path ? `${this.path}.${key}` : key, this.source);
  }

  optChild(key: string): ConfigNode | null {
    const v = this.map.get(key);
    if (v === undefined || v === null) {
      this.used.add(key);
      return null;
    }
    return this.child(key);
  }

  expectTarget(...targets: string[]): string {
    const t = this.target;
    if (t === null || !targets.includes(t)) {
      this.fail(`expected ${targets.length === 1 ? `'${targets[0]}'` : `one of ${targets.map((x) => `'${x}'`).join(', ')}`}, got ${t === null ? 'no _target_' : `'${t}'`}`);
    }
    return t;
  }

  /** Requires `key` (when present) to have the value the implementation supports. */
  require<V extends PyValue>(key: string, supported: V, dflt: V, why: string): void {
    const v = this.value(key);
    const actual = v === undefined ? dflt : v;
    if (actual !== supported) this.fail(`${describe(actual)} is not supported (${why}; expected ${describe(supported)})`, key);
  }

  /** Every argument must be one this builder knows (as the official constructor would insist). */
  done(): void {
    const unknown = [...this.map.keys()].map(keyName).filter((k) => !this.used.has(k));
    if (unknown.length) {
      this.fail(`unexpected argument${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')} for ${this.target ?? 'this entry'}`);
    }
  }
}

function describe(v: PyValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `a list of ${v.length}`;
  return 'a mapping';
}

// ---------------------------------------------------------------------------------------------
// builders

/** A PerSampleOp applying channels_first_to_last / channels_last_to_first; returns its read and write keys. */
function perSampleOp(node: ConfigNode, opTarget: string): { read: string; write: string } {
  node.expectTarget(T.perSampleOp);
  const read = node.str('read_key');
  const write = node.str('write_key');
  const op = node.child('per_sample_op');
  op.expectTarget(opTarget);
  if (!op.partial) op.fail(`expected '_partial_': True (a function applied to each sample)`);
  op.done();
  node.done();
  return { read, write };
}

interface PatchEmbedderArgs {
  read: string;
  write: string;
  patchSizes: [number, number];
  channelsIn: number;
  dim: number;
}

function patchEmbedder(node: ConfigNode): PatchEmbedderArgs {
  node.expectTarget(T.patchEmbedder);
  const read = node.str('input_tensor_list_read_key');
  const write = node.str('patches_list_write_key');
  node.str('n_patches_write_key');
  const sizes = node.intList('patch_sizes');
  if (sizes.length !== 2 || sizes.some((p) => p < 1)) node.fail(`expected two positive patch sizes, got [${sizes.join(', ')}]`, 'patch_sizes');
  const channelsIn = node.int('channels_in');
  if (!node.has('dim')) node.fail('dim is required (None keeps raw patches, which FlexTok does not use)', 'dim');
  const dim = node.int('dim');
  node.require('flatten_patches', false, true, 'the position embedding needs the 2D patch grid');
  node.ignore('weight_init_style');
  node.done();
  return { read, write, patchSizes: [sizes[0]!, sizes[1]!], channelsIn, dim };
}

function posembAdder(node: ConfigNode, type: 'sincos' | 'learnable_sum'): { read: string; write: string; dim: number; maxSizes: number[] } {
  node.expectTarget(T.posembAdder);
  const read = node.str('read_key');
  const write = node.str('write_key');
  const dim = node.int('dim');
  const maxSizes = node.intList('max_sizes');
  node.require('posemb_type', type, 'sincos', `this module must use a ${type} position embedding`);
  node.require('posemb_scaling', 'absolute', 'absolute', 'only the absolute (top-left crop) scaling is implemented');
  node.require('posemb_write_key', null, null, 'writing the posemb separately is not used by FlexTok inference');
  node.done();
  return { read, write, dim, maxSizes };
}

interface PackerArgs {
  inputs: string[];
  packed: string;
  mask: string;
  inner: string;
  outer: string;
  maskMode: MaskMode;
  embPackingFn: string | null;
  perSubseqEmbs: boolean;
}

function packer(node: ConfigNode): PackerArgs {
  node.expectTarget(T.packer);
  const inputs = node.strList('input_list_read_keys');
  const packed = node.str('packed_seq_write_key');
  const mask = node.str('block_mask_write_key');
  const inner = node.str('inner_packed_shapes_write_key');
  const outer = node.str('outer_packed_shapes_write_key');
  const mode = node.str('mask_mode', 'full');
  if (mode !== 'full' && mode !== 'causal' && mode !== 'causal_last') node.fail(`mask_mode '${mode}' is not supported (full, causal, causal_last)`, 'mask_mode');
  const embPackingFn = node.optStr('emb_packing_fn_write_key');
  const perSubseqEmbs = node.bool('per_subseq_embs', false);
  // Padding and mask materialisation never change real outputs (spec §12.22).
  node.ignore('max_seq_len', 'pad_to_multiple', 'compile_block_mask', 'return_materialized_mask');
  node.done();
  return { inputs, packed, mask, inner, outer, maskMode: mode, embPackingFn, perSubseqEmbs };
}

function unpacker(node: ConfigNode): { packed: string; outputs: string[]; inner: string; outer: string } {
  node.expectTarget(T.unpacker);
  const packed = node.str('packed_seq_read_key');
  const outputs = node.strList('inner_seq_write_keys');
  const inner = node.str('inner_packed_shapes_read_key');
  const outer = node.str('outer_packed_shapes_read_key');
  node.done();
  return { packed, outputs, inner, outer };
}

/** A norm_layer / act_layer argument: absent, or the one partial class the implementation uses. */
function checkLayerArg(node: ConfigNode, key: 'norm_layer' | 'act_layer'): void {
  if (!node.map.has(key)) return;
  const layer = node.optChild(key);
  if (layer === null) {
    if (key === 'norm_layer') node.fail('norm_layer None (no norm) is not supported', key);
    return;
  }
  if (key === 'act_layer') {
    layer.expectTarget(...SILU_TARGETS);
    layer.ignore('inplace');
  } else {
    layer.expectTarget(T.layerNorm);
    layer.require('elementwise_affine', false, true, 'FlexTok LayerNorms have no affine parameters');
    layer.require('bias', false, true, 'FlexTok LayerNorms have no affine parameters');
    const eps = layer.num('eps', 1e-5);
    if (eps !== 1e-5) layer.fail(`eps ${eps} is not supported (1e-5)`, 'eps');
  }
  if (!layer.partial) layer.fail(`expected '_partial_': True`);
  layer.done();
}

interface TransformerArgs {
  input: string;
  output: string;
  blockMask: string | null;
  adaLNEmb: string | null;
  adaLNPackingFn: string | null;
  adaLNExpansion: number;
  dim: number;
  depth: number;
  head_dim: number;
  mlp_ratio: number;
  qkv_bias: boolean;
  proj_bias: boolean;
  mlp_bias: boolean;
  gated_mlp: boolean;
  qk_norm: boolean;
}

/** The trunk hyper-parameters shared by the encoder and decoder configs. */
function trunkConfig(tr: TransformerArgs): TransformerConfig {
  const { dim, depth, head_dim, mlp_ratio, gated_mlp, qkv_bias, proj_bias, mlp_bias, qk_norm } = tr;
  return { dim, depth, head_dim, mlp_ratio, gated_mlp, qkv_bias, proj_bias, mlp_bias, qk_norm };
}

function transformer(node: ConfigNode): TransformerArgs {
  node.expectTarget(T.transformer);
  const args: TransformerArgs = {
    input: node.str('input_seq_read_key'),
    output: node.str('output_seq_write_key'),
    blockMask: node.optStr('block_mask_read_key'),
    adaLNEmb: node.optStr('adaLN_emb_read_key'),
    adaLNPackingFn: node.optStr('adaLN_packing_fn_read_key'),
    adaLNExpansion: node.int('adaLN_expansion', 1),
    dim: node.int('dim', 768),
    depth: node.int('depth', 12),
    head_dim: node.int('head_dim', 64),
    mlp_ratio: node.num('mlp_ratio', 4.0),
    qkv_bias: node.bool('qkv_bias', false),
    proj_bias: node.bool('proj_bias', false),
    mlp_bias: node.bool('mlp_bias', false),
    gated_mlp: node.bool('gated_mlp', true),
    qk_norm: node.bool('qk_norm', true),
  };
  if (!args.gated_mlp) node.fail('gated_mlp False is not supported (only the SwiGLU MLP of the released models)', 'gated_mlp');
  if (args.dim % args.head_dim !== 0) node.fail(`dim ${args.dim} is not a multiple of head_dim ${args.head_dim}`, 'dim');
  if (args.adaLNExpansion !== 1 && args.adaLNExpansion !== 2) node.fail(`adaLN_expansion ${args.adaLNExpansion} is not supported (1 or 2)`, 'adaLN_expansion');
  checkLayerArg(node, 'act_layer');
  checkLayerArg(node, 'norm_layer');
  node.require('score_mod_read_key', null, null, 'attention score modifications are not implemented');
  node.require('rope_forward_read_key', null, null, 'RoPE is not implemented');
  // Training-only: dropout, stochastic depth, activation checkpointing, init, REPA feature taps.
  node.ignore('drop', 'drop_path_rate', 'use_act_checkpoint', 'weight_init_style', 'zero_init_query_proj', 'intermediate_layer_write_key', 'intermediate_layers');
  node.done();
  return args;
}

function linearHeadCommon(node: ConfigNode): { read: string; write: string; dim: number; adaLNEmb: string | null } {
  const read = node.str('read_key');
  const write = node.str('write_key');
  const dim = node.int('dim');
  node.require('use_mup_readout', false, false, 'the μP readout rescales outputs and is not implemented');
  checkLayerArg(node, 'norm_layer');
  const adaLNEmb = node.optStr('adaLN_emb_read_key');
  node.require('adaLN_bias', true, true, 'the head adaLN is loaded with a bias');
  node.require('proj_bias', true, true, 'the head projection is loaded with a bias');
  node.optStr('adaLN_packing_fn_read_key');
  node.ignore('weight_init_style', 'dtype_override');
  return { read, write, dim, adaLNEmb };
}

/** The encoder module_dict, in execution order. */
const ENCODER_MODULES = [
  'enc_channels_to_last',
  'enc_patch_emb',
  'enc_posemb_module',
  'enc_register_module',
  'enc_seq_packer',
  'enc_transformer',
  'enc_unpacker',
  'enc_to_latents',
] as const;

/** The decoder module_dict entries used at inference, in execution order. */
const DECODER_MODULES = [
  'dec_from_latents',
  'dec_registers_posemb_module',
  'dec_nested_dropout',
  'dec_latent_dropout',
  'dec_noise_channels_to_last',
  'dec_noise_patch_emb',
  'dec_patches_posemb_module',
  'dec_seq_packer',
  'dec_time_embedder',
  'dec_transformer',
  'dec_unpacker',
  'dec_to_patches',
  'dec_channels_to_first',
] as const;

/** The module_dict of a SequentialModuleDictWrapper as named nodes, in order. */
function moduleDict(node: ConfigNode): Map<string, ConfigNode> {
  node.expectTarget(T.sequential);
  const dict: ConfigNode = node.child('module_dict');
  node.done();
  const out = new Map<string, ConfigNode>();
  for (const [k, v] of dict.map) {
    const name = keyName(k);
    if (!isMap(v)) dict.fail(`expected a module config, got ${describe(v)}`, name);
    out.set(name, new ConfigNode(v, `${dict.path}.${name}`, node.source));
  }
  return out;
}

function requireModules(modules: Map<string, ConfigNode>, names: readonly string[], where: ConfigNode, optional: (name: string, n: ConfigNode) => boolean): void {
  const missing = names.filter((n) => !modules.has(n));
  if (missing.length) where.fail(`missing module${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')} (FlexTok needs ${names.join(', ')})`);
  const order = [...modules.keys()].filter((n) => names.includes(n));
  if (order.some((n, i) => n !== names[i])) where.fail(`modules run in the order ${order.join(', ')}; expected ${names.join(', ')}`);
  for (const [name, n] of modules) {
    if (!names.includes(name) && !optional(name, n)) where.fail(`module '${name}' (${n.target ?? 'no _target_'}) is not supported at inference`);
  }
}

function wire(node: ConfigNode, key: string, actual: string | null, expected: string, what: string): void {
  if (actual !== expected) node.fail(`reads '${actual}' but ${what} is written to '${expected}'`, key);
}

interface EncoderBuild {
  config: EncoderConfig;
  latentsKey: string;
}

function buildEncoder(root: ConfigNode, vaeLatentsKey: string): EncoderBuild {
  const node = root.child('encoder');
  const m = moduleDict(node);
  requireModules(m, ENCODER_MODULES, node, () => false);
  const get = (name: (typeof ENCODER_MODULES)[number]) => m.get(name)!;

  const toLast = perSampleOp(get('enc_channels_to_last'), T.toLast);
  wire(get('enc_channels_to_last'), 'read_key', toLast.read, vaeLatentsKey, 'the VAE latent');
  const patch = patchEmbedder(get('enc_patch_emb'));
  wire(get('enc_patch_emb'), 'input_tensor_list_read_key', patch.read, toLast.write, 'the channels-last latent');
  const pos = posembAdder(get('enc_posemb_module'), 'sincos');
  wire(get('enc_posemb_module'), 'read_key', pos.read, patch.write, 'the patch embedding');
  if (pos.maxSizes.length !== 2) get('enc_posemb_module').fail(`expected a 2D table size, got [${pos.maxSizes.join(', ')}]`, 'max_sizes');

  const reg = get('enc_register_module');
  reg.expectTarget(T.registers);
  reg.str('input_tensor_list_read_key');
  reg.str('register_sizes_read_write_key');
  const registersKey = reg.str('registers_write_key');
  const regDim = reg.int('dim');
  const nMax = reg.int('n_max');
  reg.int('n_min');
  const nEval = reg.optInt('n_eval');
  if (nEval !== null && nEval !== nMax) reg.fail(`n_eval ${nEval} ≠ n_max ${nMax} is not supported (detokenize pads to n_max)`, 'n_eval');
  reg.require('ordering_mode', 'nested', 'nested', 'only nested register ordering is implemented');
  reg.require('extra_registers_write_key', null, null, 'extra registers are not implemented');
  reg.ignore('size_sampling_mode', 'extra_registers_dim');
  reg.done();

  const pk = packer(get('enc_seq_packer'));
  if (pk.inputs.length !== 2 || pk.inputs[0] !== pos.write || pk.inputs[1] !== registersKey) {
    get('enc_seq_packer').fail(`packs [${pk.inputs.join(', ')}]; expected [${pos.write}, ${registersKey}] (patches, then registers)`, 'input_list_read_keys');
  }
  const tr = transformer(get('enc_transformer'));
  wire(get('enc_transformer'), 'input_seq_read_key', tr.input, pk.packed, 'the packed sequence');
  wire(get('enc_transformer'), 'block_mask_read_key', tr.blockMask, pk.mask, 'the packer mask');
  if (tr.adaLNEmb !== null) get('enc_transformer').fail('the encoder trunk has no adaLN conditioning', 'adaLN_emb_read_key');
  const up = unpacker(get('enc_unpacker'));
  wire(get('enc_unpacker'), 'packed_seq_read_key', up.packed, tr.output, 'the trunk output');
  if (up.outputs.length !== 2) get('enc_unpacker').fail(`expected two outputs (patches, registers), got [${up.outputs.join(', ')}]`, 'inner_seq_write_keys');

  const headNode = get('enc_to_latents');
  headNode.expectTarget(T.linearHead);
  const head = linearHeadCommon(headNode);
  const dimOut = headNode.int('dim_out');
  headNode.done();
  wire(headNode, 'read_key', head.read, up.outputs[1]!, 'the unpacked registers');
  if (head.adaLNEmb !== null) headNode.fail('the encoder head has no adaLN conditioning', 'adaLN_emb_read_key');

  for (const [n, d] of [['enc_patch_emb', patch.dim], ['enc_posemb_module', pos.dim], ['enc_register_module', regDim], ['enc_to_latents', head.dim]] as const) {
    if (d !== tr.dim) m.get(n)!.fail(`dim ${d} differs from the trunk's dim ${tr.dim}`, 'dim');
  }
  const config: EncoderConfig = {
    ...trunkConfig(tr),
    channels_in: patch.channelsIn,
    patch_sizes: patch.patchSizes,
    max_sizes: [pos.maxSizes[0]!, pos.maxSizes[1]!],
    n_registers: nMax,
    dim_out: dimOut,
    mask_mode: pk.maskMode,
  };
  return { config, latentsKey: head.write };
}

interface DecoderBuild {
  config: DecoderConfig;
  trainingOnlyPrefixes: string[];
  noisedKey: string;
  timestepsKey: string;
  reconstKey: string;
}

function buildDecoder(root: ConfigNode, quantsKey: string, fsqDim: number): DecoderBuild {
  const node = root.child('decoder');
  const m = moduleDict(node);
  const trainingOnly: string[] = [];
  requireModules(m, DECODER_MODULES, node, (name, n) => {
    // REPA (training only): an unpacker of intermediate features and an MLP projector.
    if (n.target === T.unpacker || n.target === T.mlpHead) {
      trainingOnly.push(`decoder.module_dict.${name}.`);
      n.ignore(...[...n.map.keys()].map(keyName));
      return true;
    }
    return false;
  });
  const get = (name: (typeof DECODER_MODULES)[number]) => m.get(name)!;

  const fromNode = get('dec_from_latents');
  fromNode.expectTarget(T.linearLayer);
  const fromRead = fromNode.str('read_key');
  const registersKey = fromNode.str('write_key');
  const dimIn = fromNode.int('dim_in');
  const fromDim = fromNode.int('dim');
  fromNode.require('proj_bias', true, true, 'the projection is loaded with a bias');
  fromNode.ignore('weight_init_style', 'dtype_override');
  fromNode.done();
  wire(fromNode, 'read_key', fromRead, quantsKey, 'the FSQ codes');
  if (dimIn !== fsqDim) fromNode.fail(`dim_in ${dimIn} differs from the FSQ code width ${fsqDim}`, 'dim_in');

  const regPos = posembAdder(get('dec_registers_posemb_module'), 'learnable_sum');
  wire(get('dec_registers_posemb_module'), 'read_key', regPos.read, registersKey, 'the register projection');
  if (regPos.write !== registersKey) get('dec_registers_posemb_module').fail(`writes '${regPos.write}', expected '${registersKey}'`, 'write_key');
  if (regPos.maxSizes.length !== 1) get('dec_registers_posemb_module').fail(`expected a 1D size [R], got [${regPos.maxSizes.join(', ')}]`, 'max_sizes');

  const nd = get('dec_nested_dropout');
  nd.expectTarget(T.nestedDropout);
  wire(nd, 'read_write_key', nd.str('read_write_key'), registersKey, 'the registers');
  const ndDim = nd.int('dim');
  const keepKKey = nd.optStr('eval_keep_k_read_key', 'eval_keep_k');
  if (keepKKey === null) nd.fail('eval_keep_k_read_key None: the decoder could not be told how many tokens to keep', 'eval_keep_k_read_key');
  nd.ignore('train_keep_k_write_key', 'size_sampling_mode');
  nd.done();

  const nc = get('dec_latent_dropout');
  const ncTarget = nc.expectTarget(T.learnedNullCond, T.zeroNullCond);
  wire(nc, 'read_write_key', nc.str('read_write_key'), registersKey, 'the registers');
  // Spec §12.32: the sampler sets exactly this key for the unconditional pass.
  const dropFlag = nc.optStr('eval_drop_flag_read_key', SAMPLER_DROP_FLAG_KEY);
  if (dropFlag !== SAMPLER_DROP_FLAG_KEY) {
    nc.fail(`reads '${dropFlag}', but the sampler marks the unconditional pass with '${SAMPLER_DROP_FLAG_KEY}' (guidance would silently do nothing)`, 'eval_drop_flag_read_key');
  }
  let replaceWithSingleToken = false;
  if (ncTarget === T.learnedNullCond) {
    const ncDim = nc.int('dim');
    if (ncDim !== fromDim) nc.fail(`dim ${ncDim} differs from the decoder dim ${fromDim}`, 'dim');
    replaceWithSingleToken = nc.bool('replace_with_single_token', false);
  }
  nc.ignore('dropout_prob');
  nc.done();

  const toLast = perSampleOp(get('dec_noise_channels_to_last'), T.toLast);
  const patch = patchEmbedder(get('dec_noise_patch_emb'));
  wire(get('dec_noise_patch_emb'), 'input_tensor_list_read_key', patch.read, toLast.write, 'the channels-last noised latent');
  const pos = posembAdder(get('dec_patches_posemb_module'), 'sincos');
  wire(get('dec_patches_posemb_module'), 'read_key', pos.read, patch.write, 'the patch embedding');
  if (pos.maxSizes.length !== 2) get('dec_patches_posemb_module').fail(`expected a 2D table size, got [${pos.maxSizes.join(', ')}]`, 'max_sizes');

  const pk = packer(get('dec_seq_packer'));
  if (pk.inputs.length !== 2 || pk.inputs[0] !== pos.write || pk.inputs[1] !== registersKey) {
    get('dec_seq_packer').fail(`packs [${pk.inputs.join(', ')}]; expected [${pos.write}, ${registersKey}] (patches, then registers)`, 'input_list_read_keys');
  }

  const te = get('dec_time_embedder');
  te.expectTarget(T.timeEmbedder);
  const timestepsKey = te.str('timesteps_read_key');
  const tembKey = te.str('time_embedding_write_key');
  const teDim = te.int('dim');
  const freq = te.int('frequency_embedding_size', 256);
  const maxTimestep = te.num('max_timestep', 1000.0);
  te.require('temb_as_tokens', false, false, 'the time embedding conditions the blocks through adaLN');
  te.ignore('weight_init_style');
  te.done();

  const tr = transformer(get('dec_transformer'));
  const trNode = get('dec_transformer');
  wire(trNode, 'input_seq_read_key', tr.input, pk.packed, 'the packed sequence');
  wire(trNode, 'block_mask_read_key', tr.blockMask, pk.mask, 'the packer mask');
  wire(trNode, 'adaLN_emb_read_key', tr.adaLNEmb, tembKey, 'the time embedding');
  if (tr.adaLNExpansion === 2) {
    if (!pk.perSubseqEmbs) get('dec_seq_packer').fail('adaLN_expansion 2 needs per_subseq_embs True', 'per_subseq_embs');
    wire(trNode, 'adaLN_packing_fn_read_key', tr.adaLNPackingFn, pk.embPackingFn ?? '(none)', 'the packer embedding function');
  }

  const up = unpacker(get('dec_unpacker'));
  wire(get('dec_unpacker'), 'packed_seq_read_key', up.packed, tr.output, 'the trunk output');
  if (up.outputs.length !== 2) get('dec_unpacker').fail(`expected two outputs (patches, registers), got [${up.outputs.join(', ')}]`, 'inner_seq_write_keys');

  const headNode = get('dec_to_patches');
  headNode.expectTarget(T.toPatchesHead);
  const head = linearHeadCommon(headNode);
  const channelsOut = headNode.int('channels_out');
  const headPatch = headNode.intList('patch_sizes');
  headNode.done();
  wire(headNode, 'read_key', head.read, up.outputs[0]!, 'the unpacked patches');
  if (head.adaLNEmb !== null) wire(headNode, 'adaLN_emb_read_key', head.adaLNEmb, tembKey, 'the time embedding');
  if (channelsOut !== patch.channelsIn) headNode.fail(`channels_out ${channelsOut} differs from the input channels ${patch.channelsIn}`, 'channels_out');
  if (headPatch.length !== 2 || headPatch[0] !== patch.patchSizes[0] || headPatch[1] !== patch.patchSizes[1]) {
    headNode.fail(`patch_sizes [${headPatch.join(', ')}] differ from the patch embedding's [${patch.patchSizes.join(', ')}]`, 'patch_sizes');
  }

  const toFirst = perSampleOp(get('dec_channels_to_first'), T.toFirst);
  wire(get('dec_channels_to_first'), 'read_key', toFirst.read, head.write, 'the head output');

  for (const [n, d] of [
    ['dec_from_latents', fromDim],
    ['dec_registers_posemb_module', regPos.dim],
    ['dec_nested_dropout', ndDim],
    ['dec_noise_patch_emb', patch.dim],
    ['dec_patches_posemb_module', pos.dim],
    ['dec_time_embedder', teDim],
    ['dec_to_patches', head.dim],
  ] as const) {
    if (d !== tr.dim) m.get(n)!.fail(`dim ${d} differs from the trunk's dim ${tr.dim}`, 'dim');
  }

  const config: DecoderConfig = {
    ...trunkConfig(tr),
    channels_in: patch.channelsIn,
    patch_sizes: patch.patchSizes,
    max_sizes: [pos.maxSizes[0]!, pos.maxSizes[1]!],
    n_registers: regPos.maxSizes[0]!,
    dim_in: dimIn,
    frequency_embedding_size: freq,
    max_timestep: maxTimestep,
    null_cond: ncTarget === T.learnedNullCond ? 'learned' : 'zero',
    replace_with_single_token: replaceWithSingleToken,
    adaLN_expansion: tr.adaLNExpansion as 1 | 2,
    head_adaLN: head.adaLNEmb !== null,
    mask_mode: pk.maskMode,
  };
  return { config, trainingOnlyPrefixes: trainingOnly, noisedKey: toLast.read, timestepsKey, reconstKey: toFirst.write };
}

/**
 * Builds the typed model config from a parsed checkpoint config (see parseMetadataConfig). Every target
 * is checked against the allow-list first; then each part is built and the data-dict wiring verified.
 */
export function buildFlexTokConfig(config: PyMap, source: string): FlexTokConfig {
  const targets = checkTargets(config, source);
  const root = new ConfigNode(config, '', source);
  const top = root.str('_target_');
  if (top !== T.flexTok && top !== T.flexTokFromHub) root.fail(`the top-level _target_ must be '${T.flexTok}', got '${top}'`, '_target_');
  for (const key of config.keys()) {
    if (!TOP_LEVEL_KEYS.includes(keyName(key))) root.fail(`unexpected top-level entry '${keyName(key)}' (expected ${TOP_LEVEL_KEYS.join(', ')})`);
  }

  // VAE wrapper (or the identity of a pixel-space model).
  const vaeNode = root.child('vae');
  const vaeTarget = vaeNode.expectTarget(T.vae, T.identityVae);
  vaeNode.str('images_read_key');
  const vaeLatentsRead = vaeNode.str('vae_latents_read_key');
  const vaeLatentsWrite = vaeNode.str('vae_latents_write_key');
  vaeNode.str('images_reconst_write_key');
  let vae: VaeSettings;
  if (vaeTarget === T.identityVae) {
    const channels = vaeNode.int('latent_channels');
    if (channels < 1) vaeNode.fail(`expected a positive number of channels, got ${channels}`, 'latent_channels');
    vae = { kind: 'identity', hfHubPath: null, latentChannels: channels, scalingFactor: 1, samplePosterior: false, dtypeOverride: null };
  } else {
    vaeNode.optStr('vae_kl_loss_write_key');
    vae = {
      kind: 'stable-diffusion',
      hfHubPath: vaeNode.optStr('hf_hub_path'),
      latentChannels: vaeNode.int('latent_channels', 16),
      scalingFactor: vaeNode.optNum('scaling_factor'),
      samplePosterior: vaeNode.bool('sample_posterior', true),
      dtypeOverride: vaeNode.optStr('dtype_override', 'fp32'),
    };
    if (vae.scalingFactor === 0) vae.scalingFactor = null; // the wrapper's `scaling_factor or config's`
    vaeNode.require('learnable_logvar', false, false, 'the learnable logvar is a training option (it adds a vae.logvar tensor)');
    vaeNode.ignore('logvar_init', 'compile_encode_fn', 'force_vae_encode', 'frozen');
  }
  vaeNode.done();

  // Regularizer (FSQ).
  const reg = root.child('regularizer');
  reg.expectTarget(T.fsq);
  const latentsRead = reg.str('latents_read_key');
  const quantsKey = reg.str('quants_write_key');
  reg.str('tokens_write_key');
  const levels = reg.intList('levels');
  if (levels.length === 0 || levels.some((l) => l < 2)) reg.fail(`invalid FSQ levels [${levels.join(', ')}]`, 'levels');
  reg.ignore('drop_quant_p', 'corrupt_tokens_p', 'min_corrupt_tokens_p', 'apply_corrupt_tokens_p', 'packed_call');
  reg.done();

  const enc = buildEncoder(root, vaeLatentsWrite);
  wire(reg, 'latents_read_key', latentsRead, enc.latentsKey, 'the encoder output');
  if (enc.config.dim_out !== levels.length) {
    root.fail(`the encoder head emits ${enc.config.dim_out} values per token but FSQ has ${levels.length} levels`, 'encoder.module_dict.enc_to_latents.dim_out');
  }
  if (enc.config.channels_in !== vae.latentChannels) {
    root.fail(`the encoder takes ${enc.config.channels_in} channels but the VAE has ${vae.latentChannels}`, 'encoder.module_dict.enc_patch_emb.channels_in');
  }
  const dec = buildDecoder(root, quantsKey, levels.length);
  if (dec.config.channels_in !== vae.latentChannels) {
    root.fail(`the decoder takes ${dec.config.channels_in} channels but the VAE has ${vae.latentChannels}`, 'decoder.module_dict.dec_noise_patch_emb.channels_in');
  }
  if (dec.config.n_registers !== enc.config.n_registers) {
    root.fail(`the decoder has ${dec.config.n_registers} register slots but the encoder emits ${enc.config.n_registers}`, 'decoder.module_dict.dec_registers_posemb_module.max_sizes');
  }

  // Noise module (training; only its wiring is checked).
  const nm = root.child('flow_matching_noise_module');
  nm.expectTarget(T.noiseModule);
  wire(nm, 'clean_images_read_key', nm.str('clean_images_read_key'), vaeLatentsWrite, 'the VAE latent');
  wire(nm, 'noised_images_write_key', nm.str('noised_images_write_key'), dec.noisedKey, 'the decoder noise input (what the decoder reads)');
  const noiseModule: NoiseModuleSettings = { ln: nm.bool('ln', true), stratisfied: nm.bool('stratisfied', false), modeScale: nm.num('mode_scale', 0) };
  nm.ignore('timesteps_write_key', 'sigmas_write_key', 'noise_write_key', 'noise_read_key');
  nm.done();

  // Sampler (a partial completed with model=decoder).
  const pl = root.child('pipeline');
  pl.expectTarget(T.pipeline);
  if (!pl.partial) pl.fail(`expected '_partial_': True (FlexTok completes the pipeline with model=decoder)`);
  pl.optStr('noise_read_key');
  pl.optStr('target_sizes_read_key');
  wire(pl, 'latents_read_key', pl.optStr('latents_read_key'), quantsKey, 'the FSQ codes');
  wire(pl, 'timesteps_read_key', pl.optStr('timesteps_read_key'), dec.timestepsKey, 'what the time embedder reads');
  wire(pl, 'noised_images_read_key', pl.optStr('noised_images_read_key'), dec.noisedKey, 'what the decoder reads');
  wire(pl, 'reconst_write_key', pl.optStr('reconst_write_key'), dec.reconstKey, 'the decoder output');
  const outChannels = pl.optInt('out_channels');
  if (outChannels !== vae.latentChannels) pl.fail(`out_channels ${outChannels} differs from the VAE latent channels ${vae.latentChannels}`, 'out_channels');
  pl.done();
  if (vaeLatentsRead !== dec.reconstKey) vaeNode.fail(`vae_latents_read_key '${vaeLatentsRead}' is not the decoder output '${dec.reconstKey}'`, 'vae_latents_read_key');

  return {
    vae,
    encoder: enc.config,
    decoder: dec.config,
    fsqLevels: levels,
    noiseModule,
    pipeline: { outChannels: outChannels! },
    trainingOnlyPrefixes: dec.trainingOnlyPrefixes,
    targets,
  };
}

// ---------------------------------------------------------------------------------------------
// checkpoint files

export interface LoadedCheckpoint {
  file: string;
  config: FlexTokConfig;
  /** The raw metadata strings. */
  metadata: Record<string, string>;
  /** Every tensor as float32, by name (BF16 / F16 / F64 converted). */
  tensors: Map<string, Tensor>;
  /** Storage dtypes found in the file. */
  dtypes: string[];
}

/** The checkpoint file of a path: the file itself, or `model.safetensors` in a folder. */
export function checkpointFile(pathOrDir: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(pathOrDir);
  } catch {
    throw new Error(`${pathOrDir}: no such file or folder`);
  }
  if (!st.isDirectory()) return pathOrDir;
  const file = path.join(pathOrDir, 'model.safetensors');
  if (!fs.existsSync(file)) throw new Error(`${pathOrDir}: the folder has no model.safetensors`);
  return file;
}

const NO_CONFIG = 'the file has no model config in its metadata and there is no config.json next to it';

/** The checkpoint's parts as they come out of a safetensors reader (a file read tensor by tensor, or bytes). */
interface CheckpointSource {
  metadata: Record<string, string>;
  names: readonly string[];
  read(name: string): TensorData;
}

/** Builds a checkpoint from its safetensors parts: the config (from the metadata, or `configJson` when the
 * metadata has none) checked against the allow-list before any tensor is read, then every tensor as float32.
 * Shared by readCheckpoint (files) and checkpointFromBytes (memory, no Node APIs). */
function assembleCheckpoint(label: string, src: CheckpointSource, configJson: () => { text: string; source: string } | null): LoadedCheckpoint {
  let parsed: PyMap;
  if (Object.keys(src.metadata).some((k) => k !== 'format')) {
    parsed = parseMetadataConfig(src.metadata, label);
  } else {
    const json = configJson();
    if (json === null) throw new CheckpointConfigError(label, '', NO_CONFIG);
    parsed = parseJsonConfig(json.text, json.source);
  }
  const config = buildFlexTokConfig(parsed, label);
  const tensors = new Map<string, Tensor>();
  const dtypes = new Set<string>();
  for (const name of src.names) {
    const td = src.read(name);
    dtypes.add(td.dtype);
    // Each reader returns a fresh buffer per tensor, so the float32 values (converted or not) are ours to keep.
    tensors.set(name, new Tensor(toFloat32(td), td.shape));
  }
  return { file: label, config, metadata: { ...src.metadata }, tensors, dtypes: [...dtypes] };
}

/**
 * Reads a FlexTok checkpoint: the header, then the config (from the metadata, or a `config.json` next to the
 * file when the metadata has none) checked against the allow-list before any tensor is read, then every
 * tensor converted to float32.
 */
export function readCheckpoint(pathOrDir: string): LoadedCheckpoint {
  const file = checkpointFile(pathOrDir);
  const st = openSafetensors(file);
  try {
    return assembleCheckpoint(file, { metadata: st.metadata, names: st.names(), read: (name) => st.read(name) }, () => {
      const jsonPath = path.join(path.dirname(file), 'config.json');
      return fs.existsSync(jsonPath) ? { text: fs.readFileSync(jsonPath, 'utf8'), source: jsonPath } : null;
    });
  } finally {
    st.close();
  }
}

/** A checkpoint from the bytes of its safetensors file (no file system: works in a browser); `label` names it
 * in messages, `configJson` is the text of its config.json when the metadata holds no config. */
export function checkpointFromBytes(bytes: Uint8Array, label = '<memory>', configJson?: string): LoadedCheckpoint {
  const { metadata, tensors } = decodeSafetensors(bytes, label);
  return assembleCheckpoint(label, {
    metadata,
    names: [...tensors.keys()],
    read: (name) => tensors.get(name)!,
  }, () => (configJson === undefined ? null : { text: configJson, source: `${label} (config.json)` }));
}

/** Reads only the config of a checkpoint (header and metadata; no tensor data). */
export function readCheckpointConfig(pathOrDir: string): FlexTokConfig {
  const file = checkpointFile(pathOrDir);
  const st = openSafetensors(file);
  try {
    if (Object.keys(st.metadata).some((k) => k !== 'format')) return buildFlexTokConfig(parseMetadataConfig(st.metadata, file), file);
    const jsonPath = path.join(path.dirname(file), 'config.json');
    if (!fs.existsSync(jsonPath)) throw new CheckpointConfigError(file, '', 'the file has no model config in its metadata and there is no config.json next to it');
    return buildFlexTokConfig(parseJsonConfig(fs.readFileSync(jsonPath, 'utf8'), jsonPath), jsonPath);
  } finally {
    st.close();
  }
}

/**
 * The local folder of a VAE hub repository (`config.json` + `diffusion_pytorch_model.safetensors`):
 * `<dir>/<repo-id>/` for the first of `searchDirs` that has it.
 */
export function resolveVaeFolder(hubPath: string, searchDirs: readonly string[]): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*(\/[A-Za-z0-9][A-Za-z0-9_.-]*)?$/.test(hubPath) || hubPath.includes('..')) {
    throw new Error(`the checkpoint's vae.hf_hub_path '${hubPath}' is not a hub repository id`);
  }
  for (const dir of searchDirs) {
    const candidate = path.join(dir, ...hubPath.split('/'));
    if (fs.existsSync(path.join(candidate, 'config.json'))) return candidate;
  }
  throw new Error(
    `the VAE repository '${hubPath}' named by the checkpoint (vae.hf_hub_path) is not available locally ` +
      `(looked in ${searchDirs.map((d) => path.join(d, hubPath)).join(', ')}); run 'flextok pull ${hubPath}' or pass --hub-dir`,
  );
}

/**
 * Why two tokenizer checkpoints could turn the same image into different token ids, or null when they cannot:
 * that needs the same VAE settings, encoder config and FSQ levels and bit-identical `vae.*` and `encoder.*`
 * weights; the decoders may differ. A generator trained on the tokens of one can then decode with the other.
 */
export function tokenizationDifference(a: LoadedCheckpoint, b: LoadedCheckpoint): string | null {
  const parts: Array<[string, unknown, unknown]> = [
    ['FSQ levels', a.config.fsqLevels, b.config.fsqLevels],
    ['encoder config', a.config.encoder, b.config.encoder],
    ['VAE settings', a.config.vae, b.config.vae],
  ];
  for (const [what, x, y] of parts) {
    if (JSON.stringify(x) !== JSON.stringify(y)) return `their ${what} differ (${JSON.stringify(x)} against ${JSON.stringify(y)})`;
  }
  const tokenizing = (name: string) => name.startsWith('encoder.') || name.startsWith('vae.');
  const names = new Set([...a.tensors.keys(), ...b.tensors.keys()].filter(tokenizing));
  for (const name of [...names].sort()) {
    const x = a.tensors.get(name);
    const y = b.tensors.get(name);
    if (!x || !y) return `${name} is only in ${x ? a.file : b.file}`;
    if (x.shape.join(',') !== y.shape.join(',')) return `${name} is [${x.shape.join(', ')}] in ${a.file} and [${y.shape.join(', ')}] in ${b.file}`;
    const fx = x.f;
    const fy = y.f;
    for (let i = 0; i < fx.length; i++) {
      if (!Object.is(fx[i], fy[i])) return `${name} differs at element ${i} (${fx[i]} against ${fy[i]})`;
    }
  }
  return null;
}
