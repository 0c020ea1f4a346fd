// The image VAE of FlexTok: diffusers' AutoencoderKL (encoder, diagonal-Gaussian posterior,
// decoder) parsed from a diffusers config.json, loaded by official key names, and ml-flextok's
// StableDiffusionVAE wrapper semantics (scaling factor, mode/sample, KL) on top.
//
// Module fields carry the diffusers state_dict names (`down_blocks`, `conv_shortcut`, …) so that
// `namedTensors(vae)` lists exactly the keys of a diffusers checkpoint (for saving and training).

import { fs, path } from '../io/node_builtins.js';

import { add, clamp, div, exp, mul, reshape, silu, slice, square, sub, sum, transpose } from '../tensor/ops.js';
import { attention, conv2d, groupNorm, linear, upsampleNearest2x } from '../tensor/nn.js';
import { namedTensors } from '../tensor/module.js';
import { Rng } from '../tensor/rng.js';
import { Tensor } from '../tensor/tensor.js';
import { readTensorFile } from './parity_util.js';
import { type Trace, WeightMap } from './weights.js';

// ---------------------------------------------------------------------------------------------
// configuration

/** The AutoencoderKL hyper-parameters we support (diffusers config.json, camelCased). */
export interface AutoencoderKLConfig {
  inChannels: number;
  outChannels: number;
  /** C: channels of the latent (the encoder emits 2C moments). */
  latentChannels: number;
  /** c_0 … c_{n−1}, one per down/up block. */
  blockOutChannels: number[];
  layersPerBlock: number;
  normNumGroups: number;
  scalingFactor: number;
  /** Diffusers' shift_factor; FlexTok's wrapper never applies it (kept for information). */
  shiftFactor: number | null;
  midBlockAddAttention: boolean;
  useQuantConv: boolean;
  usePostQuantConv: boolean;
  /** Informational (tiling tile size in diffusers); not used. */
  sampleSize: number | null;
}

/** GroupNorm epsilon of every norm in the diffusers VAE. */
export const VAE_GROUP_NORM_EPS = 1e-6;

export class VAEConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VAEConfigError';
  }
}

/** Parse and validate a diffusers AutoencoderKL config.json object; `source` names it in errors.
 * Unknown keys are ignored (as diffusers does); unsupported values are rejected with the reason. */
export function parseAutoencoderKLConfig(json: unknown, source = 'AutoencoderKL config'): AutoencoderKLConfig {
  const fail = (msg: string): never => {
    throw new VAEConfigError(`${source}: ${msg}`);
  };
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('expected a JSON object');
  const obj = json as Record<string, unknown>;
  const present = (key: string): boolean => obj[key] !== undefined && obj[key] !== null;
  const int = (key: string, dflt?: number, min = 1): number => {
    if (!present(key)) {
      if (dflt === undefined) fail(`"${key}" is missing`);
      return dflt!;
    }
    const v = obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(`"${key}" must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const bool = (key: string, dflt: boolean): boolean => {
    if (!present(key)) return dflt;
    const v = obj[key];
    if (typeof v !== 'boolean') fail(`"${key}" must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  };

  if (present('_class_name') && obj._class_name !== 'AutoencoderKL') {
    fail(`_class_name is ${JSON.stringify(obj._class_name)}; only AutoencoderKL is supported`);
  }
  const actFn = present('act_fn') ? obj.act_fn : 'silu';
  if (actFn !== 'silu') fail(`act_fn ${JSON.stringify(actFn)} is not supported (only "silu")`);

  const inChannels = int('in_channels', 3);
  const outChannels = int('out_channels', 3);
  const latentChannels = int('latent_channels', 4);
  const layersPerBlock = int('layers_per_block', 1);
  const normNumGroups = int('norm_num_groups', 32);

  const rawBlocks = present('block_out_channels') ? obj.block_out_channels : [64];
  if (!Array.isArray(rawBlocks) || rawBlocks.length === 0 || rawBlocks.some((c) => typeof c !== 'number' || !Number.isInteger(c) || c < 1)) {
    fail(`"block_out_channels" must be a non-empty list of positive integers, got ${JSON.stringify(rawBlocks)}`);
  }
  const blockOutChannels = [...(rawBlocks as number[])];
  for (const c of blockOutChannels) {
    if (c % normNumGroups !== 0) fail(`block_out_channels entry ${c} is not divisible by norm_num_groups ${normNumGroups}`);
  }
  const n = blockOutChannels.length;

  const blockTypes = (key: string, supported: string): void => {
    const v = present(key) ? obj[key] : Array(n).fill(supported);
    if (!Array.isArray(v)) fail(`"${key}" must be a list, got ${JSON.stringify(v)}`);
    const list = v as unknown[];
    if (list.length !== n) fail(`"${key}" has ${list.length} entries but block_out_channels has ${n}`);
    list.forEach((t, i) => {
      if (t !== supported) fail(`${key}[${i}] is ${JSON.stringify(t)}; only "${supported}" is supported`);
    });
  };
  blockTypes('down_block_types', 'DownEncoderBlock2D');
  blockTypes('up_block_types', 'UpDecoderBlock2D');

  let scalingFactor = 0.18215;
  if (present('scaling_factor')) {
    const v = obj.scaling_factor;
    if (typeof v !== 'number' || !Number.isFinite(v) || v === 0) fail(`"scaling_factor" must be a non-zero number, got ${JSON.stringify(v)}`);
    scalingFactor = v as number;
  }
  let shiftFactor: number | null = null;
  if (present('shift_factor')) {
    const v = obj.shift_factor;
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`"shift_factor" must be a number or null, got ${JSON.stringify(v)}`);
    shiftFactor = v as number;
  }
  const sampleSize = present('sample_size') && typeof obj.sample_size === 'number' ? (obj.sample_size as number) : null;

  return {
    inChannels,
    outChannels,
    latentChannels,
    blockOutChannels,
    layersPerBlock,
    normNumGroups,
    scalingFactor,
    shiftFactor,
    midBlockAddAttention: bool('mid_block_add_attention', true),
    useQuantConv: bool('use_quant_conv', true),
    usePostQuantConv: bool('use_post_quant_conv', true),
    sampleSize,
  };
}

/** Spatial downsampling factor of the encoder: 2^(n−1). */
export function vaeDownsamplingFactor(config: AutoencoderKLConfig): number {
  return 2 ** (config.blockOutChannels.length - 1);
}

// ---------------------------------------------------------------------------------------------
// weight sources

/** How a freshly created parameter is initialised (used only by `RandomVAEWeights`). */
export type ParamInit = { kind: 'ones' } | { kind: 'zeros' } | { kind: 'uniform'; bound: number };

/** Where module constructors get their parameters: a `WeightMap` (checkpoint) or random init. */
export interface WeightSource {
  has(name: string): boolean;
  take(name: string, shape?: readonly number[], init?: ParamInit): Tensor;
}

/** PyTorch-default initialisation (conv/linear U(±1/√fan_in) for weight and bias, GroupNorm 1/0),
 * for training a VAE from scratch. Every tensor is a trainable leaf. */
export class RandomVAEWeights implements WeightSource {
  constructor(private readonly rng: Rng) {}
  has(): boolean {
    return false;
  }
  take(_name: string, shape: readonly number[] = [1], init: ParamInit = { kind: 'zeros' }): Tensor {
    let t: Tensor;
    if (init.kind === 'ones') t = Tensor.ones(shape);
    else if (init.kind === 'zeros') t = Tensor.zeros(shape);
    else t = Tensor.rand(shape, this.rng, 'float32', -init.bound, init.bound);
    return t.requireGrad(true);
  }
}

const joinName = (prefix: string, name: string): string => prefix + name;

// ---------------------------------------------------------------------------------------------
// layers

/** Conv2d with bias: weight [out, in, k, k] (OIHW), bias [out]. */
export class Conv2dLayer {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(ws: WeightSource, prefix: string, outChannels: number, inChannels: number, kernel: number) {
    const bound = 1 / Math.sqrt(inChannels * kernel * kernel);
    this.weight = ws.take(joinName(prefix, 'weight'), [outChannels, inChannels, kernel, kernel], { kind: 'uniform', bound });
    this.bias = ws.take(joinName(prefix, 'bias'), [outChannels], { kind: 'uniform', bound });
  }
  /** x [N, in, H, W] → [N, out, H', W']; padding as in nn.conv2d. */
  forward(x: Tensor, opts: { stride?: number; padding?: number | [number, number, number, number] } = {}): Tensor {
    return conv2d(x, this.weight, this.bias, opts);
  }
}

/** Linear with bias: weight [out, in], bias [out]. Accepts legacy names and 1×1-conv shaped
 * weights [out, in, 1, 1] (older diffusers attention checkpoints). */
export class LinearLayer {
  readonly weight: Tensor;
  readonly bias: Tensor;
  /** prefixes: the current name first, then legacy alternatives (e.g. `query.`). */
  constructor(ws: WeightSource, prefixes: readonly string[], outFeatures: number, inFeatures: number) {
    const prefix = prefixes.find((p) => ws.has(joinName(p, 'weight'))) ?? prefixes[0];
    const wName = joinName(prefix, 'weight');
    const bound = 1 / Math.sqrt(inFeatures);
    let weight: Tensor;
    if (ws.has(wName) && ws.take(wName).ndim === 4) {
      const w4 = ws.take(wName, [outFeatures, inFeatures, 1, 1]);
      weight = new Tensor(w4.data, [outFeatures, inFeatures]);
    } else {
      weight = ws.take(wName, [outFeatures, inFeatures], { kind: 'uniform', bound });
    }
    this.weight = weight;
    this.bias = ws.take(joinName(prefix, 'bias'), [outFeatures], { kind: 'uniform', bound });
  }
  /** x [..., in] → [..., out] */
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** Affine GroupNorm with eps 1e-6 over x [N, C, ...]. */
export class GroupNormLayer {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(ws: WeightSource, prefix: string, channels: number, readonly groups: number, readonly eps = VAE_GROUP_NORM_EPS) {
    this.weight = ws.take(joinName(prefix, 'weight'), [channels], { kind: 'ones' });
    this.bias = ws.take(joinName(prefix, 'bias'), [channels], { kind: 'zeros' });
  }
  forward(x: Tensor): Tensor {
    return groupNorm(x, this.groups, this.weight, this.bias, this.eps);
  }
}

/** diffusers ResnetBlock2D without time embedding: s + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))),
 * s = conv_shortcut(x) (1×1) when the width changes, else x. [N, in, H, W] → [N, out, H, W]. */
export class ResnetBlock2D {
  readonly norm1: GroupNormLayer;
  readonly conv1: Conv2dLayer;
  readonly norm2: GroupNormLayer;
  readonly conv2: Conv2dLayer;
  readonly conv_shortcut: Conv2dLayer | null;
  constructor(ws: WeightSource, prefix: string, inChannels: number, outChannels: number, groups: number) {
    this.norm1 = new GroupNormLayer(ws, prefix + 'norm1.', inChannels, groups);
    this.conv1 = new Conv2dLayer(ws, prefix + 'conv1.', outChannels, inChannels, 3);
    this.norm2 = new GroupNormLayer(ws, prefix + 'norm2.', outChannels, groups);
    this.conv2 = new Conv2dLayer(ws, prefix + 'conv2.', outChannels, outChannels, 3);
    this.conv_shortcut = inChannels !== outChannels ? new Conv2dLayer(ws, prefix + 'conv_shortcut.', outChannels, inChannels, 1) : null;
  }
  forward(x: Tensor): Tensor {
    let h = this.conv1.forward(silu(this.norm1.forward(x)), { padding: 1 });
    h = this.conv2.forward(silu(this.norm2.forward(h)), { padding: 1 });
    const shortcut = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
    return add(shortcut, h);
  }
}

/** diffusers Downsample2D(use_conv, padding 0): zero-pad right/bottom by one, 3×3 conv stride 2.
 * [N, C, H, W] → [N, C, H/2, W/2] (even H, W). */
export class Downsample2D {
  readonly conv: Conv2dLayer;
  constructor(ws: WeightSource, prefix: string, channels: number) {
    this.conv = new Conv2dLayer(ws, prefix + 'conv.', channels, channels, 3);
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(x, { stride: 2, padding: [0, 1, 0, 1] });
  }
}

/** diffusers Upsample2D(use_conv): nearest ×2, then 3×3 conv. [N, C, H, W] → [N, C, 2H, 2W]. */
export class Upsample2D {
  readonly conv: Conv2dLayer;
  constructor(ws: WeightSource, prefix: string, channels: number) {
    this.conv = new Conv2dLayer(ws, prefix + 'conv.', channels, channels, 3);
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(upsampleNearest2x(x), { padding: 1 });
  }
}

/** The mid block's single-head spatial self-attention with residual (diffusers Attention with
 * group_norm, AttnProcessor2_0): tokens = GN(x) as [N, H·W, C], softmax(q kᵀ/√C) v, to_out.0, + x. */
export class MidBlockAttention {
  readonly group_norm: GroupNormLayer;
  readonly to_q: LinearLayer;
  readonly to_k: LinearLayer;
  readonly to_v: LinearLayer;
  readonly to_out: [LinearLayer];
  constructor(ws: WeightSource, prefix: string, private readonly channels: number, groups: number) {
    const c = channels;
    this.group_norm = new GroupNormLayer(ws, prefix + 'group_norm.', c, groups);
    this.to_q = new LinearLayer(ws, [prefix + 'to_q.', prefix + 'query.'], c, c);
    this.to_k = new LinearLayer(ws, [prefix + 'to_k.', prefix + 'key.'], c, c);
    this.to_v = new LinearLayer(ws, [prefix + 'to_v.', prefix + 'value.'], c, c);
    this.to_out = [new LinearLayer(ws, [prefix + 'to_out.0.', prefix + 'proj_attn.'], c, c)];
  }
  /** x [N, C, H, W] → [N, C, H, W]; traces `<name>.group_norm` [N, C, H·W] and `<name>.q/.k/.v/.to_out` [N, H·W, C]. */
  forward(x: Tensor, trace?: Trace, name = 'attn'): Tensor {
    const [n, c, h, w] = x.shape;
    const len = h * w;
    const normed = reshape(this.group_norm.forward(x), [n, c, len]);
    trace?.(`${name}.group_norm`, normed);
    const tokens = transpose(normed, 1, 2); // [N, HW, C]
    const q = this.to_q.forward(tokens);
    const k = this.to_k.forward(tokens);
    const v = this.to_v.forward(tokens);
    trace?.(`${name}.q`, q);
    trace?.(`${name}.k`, k);
    trace?.(`${name}.v`, v);
    const heads = (t: Tensor): Tensor => reshape(t, [n, len, 1, c]);
    const attended = reshape(attention(heads(q), heads(k), heads(v), { scale: 1 / Math.sqrt(this.channels) }), [n, len, c]);
    const projected = this.to_out[0].forward(attended);
    trace?.(`${name}.to_out`, projected);
    const back = reshape(transpose(projected, 1, 2), [n, c, h, w]);
    return add(back, x);
  }
}

/** diffusers UNetMidBlock2D (no time embedding): resnet → attention (optional) → resnet, width c. */
export class MidBlock2D {
  readonly resnets: [ResnetBlock2D, ResnetBlock2D];
  readonly attentions: MidBlockAttention[];
  constructor(ws: WeightSource, prefix: string, channels: number, groups: number, withAttention: boolean) {
    this.resnets = [
      new ResnetBlock2D(ws, prefix + 'resnets.0.', channels, channels, groups),
      new ResnetBlock2D(ws, prefix + 'resnets.1.', channels, channels, groups),
    ];
    this.attentions = withAttention ? [new MidBlockAttention(ws, prefix + 'attentions.0.', channels, groups)] : [];
  }
  /** Traces `<name>.resnet0`, `<name>.attn.*`, `<name>.attn`, `<name>.out`. */
  forward(x: Tensor, trace?: Trace, name = 'mid'): Tensor {
    let h = this.resnets[0].forward(x);
    trace?.(`${name}.resnet0`, h);
    if (this.attentions.length > 0) {
      h = this.attentions[0].forward(h, trace, `${name}.attn`);
      trace?.(`${name}.attn`, h);
    }
    h = this.resnets[1].forward(h);
    trace?.(`${name}.out`, h);
    return h;
  }
}

/** diffusers DownEncoderBlock2D: `layers` resnets (first in → out), then Downsample2D unless last. */
export class DownEncoderBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly downsamplers: Downsample2D[];
  constructor(ws: WeightSource, prefix: string, inChannels: number, outChannels: number, layers: number, groups: number, addDownsample: boolean) {
    this.resnets = Array.from({ length: layers }, (_, j) =>
      new ResnetBlock2D(ws, `${prefix}resnets.${j}.`, j === 0 ? inChannels : outChannels, outChannels, groups));
    this.downsamplers = addDownsample ? [new Downsample2D(ws, prefix + 'downsamplers.0.', outChannels)] : [];
  }
  /** Traces `<name>.resnet{j}` and `<name>.out`. */
  forward(x: Tensor, trace?: Trace, name = 'down'): Tensor {
    let h = x;
    this.resnets.forEach((r, j) => {
      h = r.forward(h);
      trace?.(`${name}.resnet${j}`, h);
    });
    for (const d of this.downsamplers) h = d.forward(h);
    trace?.(`${name}.out`, h);
    return h;
  }
}

/** diffusers UpDecoderBlock2D: `layers + 1` resnets (first in → out), then Upsample2D unless last. */
export class UpDecoderBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly upsamplers: Upsample2D[];
  constructor(ws: WeightSource, prefix: string, inChannels: number, outChannels: number, resnetCount: number, groups: number, addUpsample: boolean) {
    this.resnets = Array.from({ length: resnetCount }, (_, j) =>
      new ResnetBlock2D(ws, `${prefix}resnets.${j}.`, j === 0 ? inChannels : outChannels, outChannels, groups));
    this.upsamplers = addUpsample ? [new Upsample2D(ws, prefix + 'upsamplers.0.', outChannels)] : [];
  }
  /** Traces `<name>.resnet{j}` and `<name>.out`. */
  forward(x: Tensor, trace?: Trace, name = 'up'): Tensor {
    let h = x;
    this.resnets.forEach((r, j) => {
      h = r.forward(h);
      trace?.(`${name}.resnet${j}`, h);
    });
    for (const u of this.upsamplers) h = u.forward(h);
    trace?.(`${name}.out`, h);
    return h;
  }
}

/** diffusers Encoder (double_z): images [N, in, H, W] → [N, 2C, H/f, W/f] (before quant_conv). */
export class VAEEncoder {
  readonly conv_in: Conv2dLayer;
  readonly down_blocks: DownEncoderBlock2D[];
  readonly mid_block: MidBlock2D;
  readonly conv_norm_out: GroupNormLayer;
  readonly conv_out: Conv2dLayer;
  constructor(ws: WeightSource, prefix: string, cfg: AutoencoderKLConfig) {
    const ch = cfg.blockOutChannels;
    const g = cfg.normNumGroups;
    const last = ch[ch.length - 1];
    this.conv_in = new Conv2dLayer(ws, prefix + 'conv_in.', ch[0], cfg.inChannels, 3);
    this.down_blocks = ch.map((out, i) =>
      new DownEncoderBlock2D(ws, `${prefix}down_blocks.${i}.`, i === 0 ? ch[0] : ch[i - 1], out, cfg.layersPerBlock, g, i !== ch.length - 1));
    this.mid_block = new MidBlock2D(ws, prefix + 'mid_block.', last, g, cfg.midBlockAddAttention);
    this.conv_norm_out = new GroupNormLayer(ws, prefix + 'conv_norm_out.', last, g);
    this.conv_out = new Conv2dLayer(ws, prefix + 'conv_out.', 2 * cfg.latentChannels, last, 3);
  }
  /** Traces under `<name>.`: conv_in, down{i}.resnet{j}, down{i}.out, mid.*, norm_act, conv_out. */
  forward(images: Tensor, trace?: Trace, name = 'vae.enc'): Tensor {
    let h = this.conv_in.forward(images, { padding: 1 });
    trace?.(`${name}.conv_in`, h);
    this.down_blocks.forEach((b, i) => {
      h = b.forward(h, trace, `${name}.down${i}`);
    });
    h = this.mid_block.forward(h, trace, `${name}.mid`);
    h = silu(this.conv_norm_out.forward(h));
    trace?.(`${name}.norm_act`, h);
    h = this.conv_out.forward(h, { padding: 1 });
    trace?.(`${name}.conv_out`, h);
    return h;
  }
}

/** diffusers Decoder: z [N, C, h, w] (after post_quant_conv) → images [N, out, h·f, w·f]. */
export class VAEDecoder {
  readonly conv_in: Conv2dLayer;
  readonly mid_block: MidBlock2D;
  readonly up_blocks: UpDecoderBlock2D[];
  readonly conv_norm_out: GroupNormLayer;
  readonly conv_out: Conv2dLayer;
  constructor(ws: WeightSource, prefix: string, cfg: AutoencoderKLConfig) {
    const rev = [...cfg.blockOutChannels].reverse();
    const g = cfg.normNumGroups;
    this.conv_in = new Conv2dLayer(ws, prefix + 'conv_in.', rev[0], cfg.latentChannels, 3);
    this.mid_block = new MidBlock2D(ws, prefix + 'mid_block.', rev[0], g, cfg.midBlockAddAttention);
    this.up_blocks = rev.map((out, i) =>
      new UpDecoderBlock2D(ws, `${prefix}up_blocks.${i}.`, i === 0 ? rev[0] : rev[i - 1], out, cfg.layersPerBlock + 1, g, i !== rev.length - 1));
    this.conv_norm_out = new GroupNormLayer(ws, prefix + 'conv_norm_out.', rev[rev.length - 1], g);
    this.conv_out = new Conv2dLayer(ws, prefix + 'conv_out.', cfg.outChannels, rev[rev.length - 1], 3);
  }
  /** Traces under `<name>.`: conv_in, mid.*, up{i}.resnet{j}, up{i}.out, norm_act. */
  forward(z: Tensor, trace?: Trace, name = 'vae.dec'): Tensor {
    let h = this.conv_in.forward(z, { padding: 1 });
    trace?.(`${name}.conv_in`, h);
    h = this.mid_block.forward(h, trace, `${name}.mid`);
    this.up_blocks.forEach((b, i) => {
      h = b.forward(h, trace, `${name}.up${i}`);
    });
    h = silu(this.conv_norm_out.forward(h));
    trace?.(`${name}.norm_act`, h);
    return this.conv_out.forward(h, { padding: 1 });
  }
}

// ---------------------------------------------------------------------------------------------
// AutoencoderKL

/** diffusers AutoencoderKL: encoder + quant_conv → moments; post_quant_conv + decoder → images. */
export class AutoencoderKL {
  readonly encoder: VAEEncoder;
  readonly decoder: VAEDecoder;
  readonly quant_conv: Conv2dLayer | null;
  readonly post_quant_conv: Conv2dLayer | null;

  /** Parameters come from `ws` under `prefix` + the diffusers key names ('' for a diffusers file,
   * 'vae.vae.' inside a FlexTok checkpoint). The caller checks a WeightMap with `finish()`. */
  constructor(readonly config: AutoencoderKLConfig, ws: WeightSource, prefix = '') {
    const C = config.latentChannels;
    this.encoder = new VAEEncoder(ws, prefix + 'encoder.', config);
    this.decoder = new VAEDecoder(ws, prefix + 'decoder.', config);
    this.quant_conv = config.useQuantConv ? new Conv2dLayer(ws, prefix + 'quant_conv.', 2 * C, 2 * C, 1) : null;
    this.post_quant_conv = config.usePostQuantConv ? new Conv2dLayer(ws, prefix + 'post_quant_conv.', C, C, 1) : null;
  }

  /** A randomly initialised VAE (PyTorch default init), every parameter trainable. */
  static random(config: AutoencoderKLConfig, rng: Rng): AutoencoderKL {
    return new AutoencoderKL(config, new RandomVAEWeights(rng));
  }

  /** Every parameter under its diffusers state_dict name. */
  namedParameters(): [string, Tensor][] {
    return namedTensors({ encoder: this.encoder, decoder: this.decoder, quant_conv: this.quant_conv, post_quant_conv: this.post_quant_conv });
  }

  get downsamplingFactor(): number {
    return vaeDownsamplingFactor(this.config);
  }

  /** Throws a clear error unless images is [N, in_channels, H, W] with H, W multiples of the
   * downsampling factor (and at least that large). */
  checkImages(images: Tensor): void {
    const f = this.downsamplingFactor;
    const cin = this.config.inChannels;
    if (images.ndim !== 4 || images.shape[1] !== cin) {
      throw new Error(`VAE encode: expected images [N, ${cin}, H, W], got [${images.shape.join(', ')}]`);
    }
    const [, , h, w] = images.shape;
    if (h < f || w < f || h % f !== 0 || w % f !== 0) {
      throw new Error(
        `VAE encode: image size ${h}×${w} is not supported: height and width must be positive multiples of the ` +
          `VAE's downsampling factor ${f} (${this.config.blockOutChannels.length} blocks); resize or pad the image, e.g. to ` +
          `${Math.max(f, Math.round(h / f) * f)}×${Math.max(f, Math.round(w / f) * f)}`,
      );
    }
  }

  /** images [N, in, H, W] (in [-1, 1]) → posterior moments [N, 2C, H/f, W/f].
   * Traces vae.enc.* and `vae.moments`. */
  encodeMoments(images: Tensor, trace?: Trace): Tensor {
    this.checkImages(images);
    const h = this.encoder.forward(images, trace, 'vae.enc');
    const moments = this.quant_conv ? this.quant_conv.forward(h) : h;
    trace?.('vae.moments', moments);
    return moments;
  }

  /** z [N, C, h, w] (unscaled latents) → images [N, out, h·f, w·f], not clamped.
   * Traces `vae.dec.z`, `vae.dec.post_quant_conv` and vae.dec.*. */
  decode(z: Tensor, trace?: Trace): Tensor {
    const C = this.config.latentChannels;
    if (z.ndim !== 4 || z.shape[1] !== C) {
      throw new Error(`VAE decode: expected latents [N, ${C}, h, w], got [${z.shape.join(', ')}]`);
    }
    if (z.shape[2] < 1 || z.shape[3] < 1) throw new Error(`VAE decode: empty latent grid [${z.shape.join(', ')}]`);
    trace?.('vae.dec.z', z);
    let h = z;
    if (this.post_quant_conv) {
      h = this.post_quant_conv.forward(z);
      trace?.('vae.dec.post_quant_conv', h);
    }
    return this.decoder.forward(h, trace, 'vae.dec');
  }
}

// ---------------------------------------------------------------------------------------------
// posterior

/** diffusers DiagonalGaussianDistribution over moments [N, 2C, ...]: mean = first C channels,
 * logvar = clamp(last C, −30, 20), std = exp(logvar/2), var = exp(logvar). */
export class DiagonalGaussian {
  readonly mean: Tensor;
  readonly logvar: Tensor;
  readonly std: Tensor;
  readonly var: Tensor;

  constructor(moments: Tensor) {
    if (moments.ndim < 2 || moments.shape[1] % 2 !== 0) {
      throw new Error(`DiagonalGaussian: moments must be [N, 2C, ...] with an even channel count, got [${moments.shape.join(', ')}]`);
    }
    const c = moments.shape[1] / 2;
    this.mean = slice(moments, 1, 0, c);
    this.logvar = clamp(slice(moments, 1, c, 2 * c), -30, 20);
    this.std = exp(mul(this.logvar, 0.5));
    this.var = exp(this.logvar);
  }

  mode(): Tensor {
    return this.mean;
  }

  /** mean + std · noise, noise shaped like the mean. */
  sample(noise: Tensor): Tensor {
    if (noise.shape.length !== this.mean.shape.length || noise.shape.some((d, i) => d !== this.mean.shape[i])) {
      throw new Error(`DiagonalGaussian.sample: noise [${noise.shape.join(', ')}] must have the mean's shape [${this.mean.shape.join(', ')}]`);
    }
    return add(this.mean, mul(this.std, noise));
  }

  /** A sample with standard-normal noise drawn from rng. */
  sampleWith(rng: Rng): Tensor {
    return this.sample(Tensor.randn(this.mean.shape, rng));
  }

  /** KL to N(0, I) per sample, [N]: 0.5 · Σ_{C,…}(m² + var − 1 − logvar) with m = mean unless given
   * (FlexTok's mode path passes sf · mean, see FlexTokVAE). */
  kl(m: Tensor = this.mean): Tensor {
    const terms = sub(sub(add(square(m), this.var), 1), this.logvar);
    const dims = Array.from({ length: terms.ndim - 1 }, (_, i) => i + 1);
    return mul(sum(terms, dims), 0.5);
  }
}

// ---------------------------------------------------------------------------------------------
// FlexTok wrapper

export interface VAEEncodeOptions {
  /** true: latents from a posterior sample; false: from the mean (mode). */
  samplePosterior: boolean;
  /** ε for the sample path, shaped like the latents [N, C, h, w]. */
  noise?: Tensor;
  /** Draws ε when no noise is given (sample path only). */
  rng?: Rng;
  trace?: Trace;
}

export interface VAEEncoding {
  /** Scaled latents z · scaling_factor, [N, C, h, w]. */
  latents: Tensor;
  /** Per-sample KL as the official wrapper returns it, [N]. */
  kl: Tensor;
  posterior: DiagonalGaussian;
}

/** ml-flextok's StableDiffusionVAE: encode = posterior mode/sample × scaling_factor (+ KL),
 * decode = AutoencoderKL.decode(latents / scaling_factor). No shift factor, no clamping. */
export class FlexTokVAE {
  readonly scalingFactor: number;

  /** scalingFactor: the wrapper's own `scaling_factor` argument; null/undefined = the config's. */
  constructor(readonly vae: AutoencoderKL, opts: { scalingFactor?: number | null } = {}) {
    const sf = opts.scalingFactor ?? vae.config.scalingFactor;
    if (!Number.isFinite(sf) || sf === 0) throw new Error(`FlexTokVAE: scaling factor must be a non-zero number, got ${sf}`);
    this.scalingFactor = sf;
  }

  /** Load a diffusers VAE folder (`config.json` + `diffusion_pytorch_model.safetensors`), strictly. */
  static fromFolder(dir: string, opts: { scalingFactor?: number | null } = {}): FlexTokVAE {
    const configPath = path.join(dir, 'config.json');
    const weightsPath = path.join(dir, 'diffusion_pytorch_model.safetensors');
    if (!fs.existsSync(configPath)) throw new Error(`VAE folder ${dir}: config.json not found`);
    if (!fs.existsSync(weightsPath)) {
      const other = ['diffusion_pytorch_model.bin', 'diffusion_pytorch_model.fp16.safetensors'].filter((f) => fs.existsSync(path.join(dir, f)));
      throw new Error(`VAE folder ${dir}: diffusion_pytorch_model.safetensors not found` + (other.length ? ` (found ${other.join(', ')}, which is not supported)` : ''));
    }
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    } catch (e) {
      throw new Error(`VAE folder ${dir}: config.json is not valid JSON: ${(e as Error).message}`);
    }
    const config = parseAutoencoderKLConfig(json, configPath);
    const weights = new WeightMap(readTensorFile(weightsPath), weightsPath);
    const vae = new AutoencoderKL(config, weights);
    weights.finish();
    return new FlexTokVAE(vae, opts);
  }

  /** images [N, 3, H, W] → posterior. Traces vae.enc.*, vae.moments, vae.posterior.{mean,logvar,std}. */
  posterior(images: Tensor, trace?: Trace): DiagonalGaussian {
    const posterior = new DiagonalGaussian(this.vae.encodeMoments(images, trace));
    trace?.('vae.posterior.mean', posterior.mean);
    trace?.('vae.posterior.logvar', posterior.logvar);
    trace?.('vae.posterior.std', posterior.std);
    return posterior;
  }

  /** Scaled latents and KL from a posterior, exactly as the wrapper does it: sample path
   * latents = (mean + std ε)·sf, KL with m = mean; mode path latents = mean·sf and KL with
   * m = sf·mean (the wrapper scales the mode in place before computing the KL).
   * Traces `vae.latents.{mode,sample}` and `vae.kl.{mode_path,sample_path}`. */
  latentsFrom(posterior: DiagonalGaussian, opts: VAEEncodeOptions): VAEEncoding {
    const sf = this.scalingFactor;
    let latents: Tensor;
    let kl: Tensor;
    if (opts.samplePosterior) {
      let noise = opts.noise;
      if (noise === undefined) {
        if (!opts.rng) throw new Error('FlexTokVAE.encode: samplePosterior needs `noise` or an `rng`');
        noise = Tensor.randn(posterior.mean.shape, opts.rng);
      }
      latents = mul(posterior.sample(noise), sf);
      kl = posterior.kl();
    } else {
      latents = mul(posterior.mode(), sf);
      kl = posterior.kl(latents);
    }
    const tag = opts.samplePosterior ? 'sample' : 'mode';
    opts.trace?.(`vae.latents.${tag}`, latents);
    opts.trace?.(`vae.kl.${tag}_path`, kl);
    return { latents, kl, posterior };
  }

  /** images [N, 3, H, W] in [-1, 1] → scaled latents [N, C, H/f, W/f] (+ KL and posterior). */
  encode(images: Tensor, opts: VAEEncodeOptions): VAEEncoding {
    return this.latentsFrom(this.posterior(images, opts.trace), opts);
  }

  /** Scaled latents [N, C, h, w] → images [N, 3, h·f, w·f] (unclamped). Traces vae.dec.*. */
  decode(latents: Tensor, trace?: Trace): Tensor {
    return this.vae.decode(div(latents, this.scalingFactor), trace);
  }

  /** encode then decode (the wrapper's forward); returns the reconstruction with the encoding. */
  autoencode(images: Tensor, opts: VAEEncodeOptions): VAEEncoding & { images: Tensor } {
    const enc = this.encode(images, opts);
    return { ...enc, images: this.decode(enc.latents, opts.trace) };
  }
}
