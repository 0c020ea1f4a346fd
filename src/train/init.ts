// Fresh FlexTok encoder/decoder for training from scratch, initialised as the official code does
// (spec §10.8): Linear weights Xavier-uniform and biases 0; AdaLN modulations zero (AdaLN-zero);
// the heads (enc_to_latents, dec_to_patches) zero (the encoder head optionally Xavier, see config encoder_head_init); registers, mask token, null condition and the
// learned register posemb truncated-normal σ = 0.02; fixed 2D sin-cos tables (not trained).

import { FlowDecoder } from '../flextok/decoder.js';
import { RegisterEncoder } from '../flextok/encoder.js';
import { buildSincos2dTable } from '../flextok/posemb.js';
import type { DecoderConfig, EncoderConfig, TransformerConfig } from '../flextok/tokenizer_config.js';
import { mlpHiddenDim } from '../flextok/tokenizer_config.js';
import { AdaLNBlock, PlainBlock, SelfAttention, SwiGLU, type LinearParams } from '../flextok/transformer.js';
import { Rng } from '../tensor/rng.js';
import { Tensor } from '../tensor/tensor.js';

/** Xavier-uniform [out, in] (bound √(6 / (in + out))), trainable. */
export function xavierUniform(rng: Rng, out: number, inp: number): Tensor {
  const bound = Math.sqrt(6 / (inp + out));
  return Tensor.rand([out, inp], rng, 'float32', -bound, bound).requireGrad();
}

/** Normal(0, std) truncated to ±2σ (redrawn), trainable. */
export function truncNormal(rng: Rng, shape: number[], std = 0.02): Tensor {
  const t = Tensor.zeros(shape);
  const d = t.f;
  for (let i = 0; i < d.length; i++) {
    let v = rng.normal();
    while (v < -2 || v > 2) v = rng.normal();
    d[i] = v * std;
  }
  return t.requireGrad();
}

export function linearInit(rng: Rng, out: number, inp: number, opts: { bias: boolean; zero?: boolean }): LinearParams {
  return {
    weight: opts.zero ? Tensor.zeros([out, inp]).requireGrad() : xavierUniform(rng, out, inp),
    bias: opts.bias ? Tensor.zeros([out]).requireGrad() : null,
  };
}

function attentionInit(rng: Rng, cfg: TransformerConfig): SelfAttention {
  const d = cfg.dim;
  return new SelfAttention({
    wq: linearInit(rng, d, d, { bias: cfg.qkv_bias }),
    wk: linearInit(rng, d, d, { bias: cfg.qkv_bias }),
    wv: linearInit(rng, d, d, { bias: cfg.qkv_bias }),
    proj: linearInit(rng, d, d, { bias: cfg.proj_bias }),
  }, cfg);
}

function mlpInit(rng: Rng, cfg: TransformerConfig): SwiGLU {
  const d = cfg.dim;
  const h = mlpHiddenDim(cfg);
  return new SwiGLU(
    linearInit(rng, h, d, { bias: cfg.mlp_bias }),
    linearInit(rng, d, h, { bias: cfg.mlp_bias }),
    linearInit(rng, h, d, { bias: cfg.mlp_bias }),
  );
}

/** A randomly initialised encoder (every parameter trainable except the sin-cos table). */
export function initEncoder(cfg: EncoderConfig, rng: Rng, headInit: 'zero' | 'xavier' = 'zero'): RegisterEncoder {
  const d = cfg.dim;
  const [p0, p1] = cfg.patch_sizes;
  const blocks: PlainBlock[] = [];
  for (let j = 0; j < cfg.depth; j++) blocks.push(new PlainBlock(attentionInit(rng, cfg), mlpInit(rng, cfg)));
  return new RegisterEncoder(cfg, {
    patchProj: linearInit(rng, d, p0 * p1 * cfg.channels_in, { bias: true }),
    posembs: buildSincos2dTable(d, cfg.max_sizes[0], cfg.max_sizes[1]),
    registers: truncNormal(rng, [cfg.n_registers, d]),
    blocks,
    toLatents: linearInit(rng, cfg.dim_out, d, { bias: true, zero: headInit === 'zero' }),
  });
}

/** A randomly initialised decoder (AdaLN-zero, zero head). */
export function initDecoder(cfg: DecoderConfig, rng: Rng): FlowDecoder {
  const d = cfg.dim;
  const c = cfg.channels_in;
  const [p0, p1] = cfg.patch_sizes;
  const blocks: AdaLNBlock[] = [];
  for (let j = 0; j < cfg.depth; j++) {
    blocks.push(new AdaLNBlock(attentionInit(rng, cfg), mlpInit(rng, cfg), linearInit(rng, cfg.adaLN_expansion * 6 * d, d, { bias: true, zero: true }), cfg.adaLN_expansion));
  }
  return new FlowDecoder(cfg, {
    fromLatents: linearInit(rng, d, cfg.dim_in, { bias: true }),
    registerPosembs: truncNormal(rng, [1, 1, d, cfg.n_registers]),
    maskToken: truncNormal(rng, [d]),
    nullcond: cfg.null_cond === 'learned' ? truncNormal(rng, [d]) : null,
    patchProj: linearInit(rng, d, p0 * p1 * c, { bias: true }),
    posembs: buildSincos2dTable(d, cfg.max_sizes[0], cfg.max_sizes[1]),
    timeMlp0: linearInit(rng, d, cfg.frequency_embedding_size, { bias: true }),
    timeMlp2: linearInit(rng, d, d, { bias: true }),
    blocks,
    headProj: linearInit(rng, p0 * p1 * c, d, { bias: true, zero: true }),
    headModulation: cfg.head_adaLN ? linearInit(rng, 2 * d, d, { bias: true, zero: true }) : null,
  });
}

/** Whether AdamW should decay this parameter: only matrix weights of Linear layers (no biases,
 * norms, position embeddings, registers, mask/null tokens). */
export function decays(name: string, t: Tensor): boolean {
  return t.ndim === 2 && name.endsWith('.weight');
}
