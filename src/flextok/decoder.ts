// The FlexTok rectified-flow decoder ("FlowDecoder"): FSQ codes → Linear + learned register
// posemb, slots ≥ k replaced by the nested-dropout mask token (or every slot by the null condition
// for CFG's unconditional branch); noised latents → patches + sin-cos table; AdaLN-zero trunk
// conditioned on the timestep embedding (separate modulation for patches and registers); head
// LN + AdaLN + Linear on the patches, unpatchified to the velocity ε − x0.

import { add, concat, expandTo, mul, reshape, silu, slice } from '../tensor/ops.js';
import { modulateSegments } from '../tensor/nn.js';
import { BufferPool } from '../tensor/pool.js';
import { Tensor, withInferencePool } from '../tensor/tensor.js';
import { asGrid, patchGrid, patchify, unpatchify, unpatchifyChannelsLast } from './encoder.js';
import { buildSincos2dTable, cropGridRows, registerPosembRows, tableToRows, timestepFeatures } from './posemb.js';
import type { DecoderConfig } from './tokenizer_config.js';
import { AdaLNBlock, applyLinear, chunkRows, loadLinear, plainLayerNorm, SequenceLayout, type LinearParams } from './transformer.js';
import type { Trace, WeightMap } from './weights.js';

/** Training hook (REPA): receives the packed hidden states [N, D] (still on the autograd tape)
 * right after block `afterBlock` (0-based), with the layout locating each sample's patch tokens. */
export interface HiddenTap {
  afterBlock: number;
  onHidden: (hidden: Tensor, layout: SequenceLayout) => void;
}

export interface DecoderForwardOptions {
  /** CFG unconditional branch: every register slot becomes the null condition (per sample or all). */
  uncond?: boolean | boolean[];
}

/** Nested-dropout keep counts for training ("MaskedNestedDropout.sample_keep_k"). */
export type KeepKSampling = 'uniform' | 'pow2' | 'uniform_pow2';

/** Draw a keep count k ∈ [1, n] as the official training modes do; `randint(lo, hi)` is uniform on [lo, hi). */
export function sampleKeepK(mode: KeepKSampling, n: number, randint: (lo: number, hi: number) => number): number {
  if (mode === 'uniform') return randint(1, n + 1);
  const isPow2 = (v: number) => v > 0 && (v & (v - 1)) === 0;
  if (mode === 'pow2') {
    if (!isPow2(n)) throw new Error(`pow2 keep-k sampling needs a power-of-two register count, got ${n}`);
    const pows: number[] = [];
    for (let p = 1; p <= n; p *= 2) pows.push(p);
    return pows[randint(0, pows.length)];
  }
  const k = randint(1, n + 1);
  return isPow2(k) ? k : 1 << (32 - Math.clz32(k));
}

export class FlowDecoder {
  // Fields mirror the official module_dict (namedTensors(decoder, 'decoder.module_dict') gives the
  // state_dict keys).
  dec_from_latents: { proj: LinearParams };
  dec_registers_posemb_module: { posembs: Tensor };
  dec_nested_dropout: { dropout_mask_token: Tensor };
  dec_latent_dropout: { nullcond: Tensor | null };
  dec_noise_patch_emb: { patch_proj: LinearParams };
  dec_patches_posemb_module: { posembs: Tensor };
  dec_time_embedder: { mlp: { '0': LinearParams; '2': LinearParams } };
  dec_transformer: { blocks: AdaLNBlock[] };
  dec_to_patches: { proj: LinearParams; adaLN_modulation: { '1': LinearParams } | null };
  readonly _cfg: DecoderConfig;
  readonly _posembRows: Tensor;
  /** activation storage reused across inference calls (Euler steps; see withInferencePool) */
  _inferencePool = new BufferPool();

  constructor(cfg: DecoderConfig, parts: {
    fromLatents: LinearParams; registerPosembs: Tensor; maskToken: Tensor; nullcond: Tensor | null;
    patchProj: LinearParams; posembs: Tensor; timeMlp0: LinearParams; timeMlp2: LinearParams;
    blocks: AdaLNBlock[]; headProj: LinearParams; headModulation: LinearParams | null;
  }) {
    this._cfg = cfg;
    this.dec_from_latents = { proj: parts.fromLatents };
    this.dec_registers_posemb_module = { posembs: parts.registerPosembs };
    this.dec_nested_dropout = { dropout_mask_token: parts.maskToken };
    this.dec_latent_dropout = { nullcond: parts.nullcond };
    this.dec_noise_patch_emb = { patch_proj: parts.patchProj };
    this.dec_patches_posemb_module = { posembs: parts.posembs };
    this.dec_time_embedder = { mlp: { '0': parts.timeMlp0, '2': parts.timeMlp2 } };
    this.dec_transformer = { blocks: parts.blocks };
    this.dec_to_patches = { proj: parts.headProj, adaLN_modulation: parts.headModulation ? { '1': parts.headModulation } : null };
    this._posembRows = tableToRows(parts.posembs);
  }

  static load(cfg: DecoderConfig, w: WeightMap, prefix = 'decoder.module_dict.'): FlowDecoder {
    const d = cfg.dim;
    const c = cfg.channels_in;
    const [p0, p1] = cfg.patch_sizes;
    const [hm, wm] = cfg.max_sizes;
    if (cfg.null_cond === 'zero' && cfg.replace_with_single_token) {
      throw new Error('replace_with_single_token needs a learned null condition (LearnedNullCond)');
    }
    const blocks: AdaLNBlock[] = [];
    for (let j = 0; j < cfg.depth; j++) blocks.push(AdaLNBlock.load(cfg, cfg.adaLN_expansion, w, `${prefix}dec_transformer.blocks.${j}.`));
    return new FlowDecoder(cfg, {
      fromLatents: loadLinear(w, `${prefix}dec_from_latents.proj`, d, cfg.dim_in, true),
      registerPosembs: w.take(`${prefix}dec_registers_posemb_module.posembs`, [1, 1, d, cfg.n_registers]),
      maskToken: w.take(`${prefix}dec_nested_dropout.dropout_mask_token`, [d]),
      nullcond: cfg.null_cond === 'learned' ? w.take(`${prefix}dec_latent_dropout.nullcond`, [d]) : null,
      patchProj: loadLinear(w, `${prefix}dec_noise_patch_emb.patch_proj`, d, p0 * p1 * c, true),
      posembs: w.maybe(`${prefix}dec_patches_posemb_module.posembs`, [1, d, hm, wm]) ?? buildSincos2dTable(d, hm, wm),
      timeMlp0: loadLinear(w, `${prefix}dec_time_embedder.mlp.0`, d, cfg.frequency_embedding_size, true),
      timeMlp2: loadLinear(w, `${prefix}dec_time_embedder.mlp.2`, d, d, true),
      blocks,
      headProj: loadLinear(w, `${prefix}dec_to_patches.proj`, p0 * p1 * c, d, true),
      headModulation: cfg.head_adaLN ? loadLinear(w, `${prefix}dec_to_patches.adaLN_modulation.1`, 2 * d, d, true) : null,
    });
  }

  get config(): DecoderConfig {
    return this._cfg;
  }

  /** Velocity for each sample: noised [1, C, H, W], timesteps t ∈ (0, 1] (or up to max_timestep),
   * codes [1, R, dim_in], keepK (null = keep every register; else 1 ≤ k ≤ R). */
  forward(noised: Tensor[], timesteps: number[], codes: Tensor[], keepK: (number | null)[], opts: DecoderForwardOptions = {}, trace?: Trace): Tensor[] {
    const registers = this.registerTokens(codes, keepK, opts, trace);
    return this.forwardWithRegisters(noised, timesteps, registers, trace);
  }

  /** The register branch (independent of x_t and t, so samplers compute it once): each [R, D]
   * (or [1, D] for a single-token null condition). */
  registerTokens(codes: Tensor[], keepK: (number | null)[], opts: DecoderForwardOptions = {}, trace?: Trace): Tensor[] {
    const cfg = this._cfg;
    const d = cfg.dim;
    const n = codes.length;
    if (keepK.length !== n) throw new Error(`decoder: ${keepK.length} keep counts for ${n} code sequences`);
    const uncond = Array.isArray(opts.uncond) ? opts.uncond : new Array<boolean>(n).fill(opts.uncond ?? false);
    if (uncond.length !== n) throw new Error(`decoder: ${uncond.length} unconditional flags for ${n} code sequences`);
    const lengths = codes.map((c, i) => {
      if (c.ndim !== 3 || c.shape[0] !== 1 || c.shape[2] !== cfg.dim_in) {
        throw new Error(`decoder: codes ${i} must be [1, R, ${cfg.dim_in}], got [${c.shape.join(', ')}]`);
      }
      const r = c.shape[1];
      if (r > cfg.n_registers) throw new Error(`decoder: codes ${i} has ${r} registers, more than the model's ${cfg.n_registers}`);
      const k = keepK[i];
      if (k !== null && (!Number.isInteger(k) || k < 1 || k > r)) {
        throw new RangeError(`decoder: keep count k = ${k} for sequence ${i} must be an integer in [1, ${r}]`);
      }
      return r;
    });
    const projected = applyLinear(concat(codes.map((c) => reshape(c, [c.shape[1], cfg.dim_in])), 0), this.dec_from_latents.proj);
    const maskToken = this.dec_nested_dropout.dropout_mask_token;
    const nullcond = this.dec_latent_dropout.nullcond;
    let offset = 0;
    return lengths.map((r, i) => {
      const fromLatents = slice(projected, 0, offset, offset + r);
      offset += r;
      const withPos = add(fromLatents, registerPosembRows(this.dec_registers_posemb_module.posembs, r));
      const k = keepK[i];
      // Nested dropout replaces slots ≥ k (never removes them).
      const dropped = k === null || k === r ? withPos : concat([slice(withPos, 0, 0, k), expandTo(reshape(maskToken, [1, d]), [r - k, d])], 0);
      if (trace) {
        trace(`dec.from_latents.${i}`, reshape(fromLatents, [1, r, d]));
        trace(`dec.registers_posemb.${i}`, reshape(withPos, [1, r, d]));
        trace(`dec.nested_dropout.${i}`, reshape(dropped, [1, r, d]));
      }
      if (!uncond[i]) return dropped;
      let nulled: Tensor;
      if (nullcond === null) nulled = Tensor.zeros([r, d]);
      else if (this._cfg.replace_with_single_token) nulled = reshape(nullcond, [1, d]);
      else nulled = expandTo(reshape(nullcond, [1, d]), [r, d]);
      if (trace) trace(`dec.null_cond.${i}`, reshape(nulled, [1, nulled.shape[0], d]));
      return nulled;
    });
  }

  /** Timestep embedding temb = MLP(sinusoid(t)) [B, D]. */
  timeEmbedding(timesteps: number[]): Tensor {
    const cfg = this._cfg;
    const feats = timestepFeatures(timesteps, cfg.frequency_embedding_size, cfg.max_timestep);
    const mlp = this.dec_time_embedder.mlp;
    return applyLinear(silu(applyLinear(feats, mlp['0'])), mlp['2']);
  }

  /** Decoder pass with precomputed register tokens (from registerTokens): velocity [1, C, H, W] per sample. */
  forwardWithRegisters(noised: Tensor[], timesteps: number[], registers: Tensor[], trace?: Trace, tap?: HiddenTap): Tensor[] {
    if (trace || tap) return this.decoderPass(noised, timesteps, registers, trace, tap);
    return withInferencePool(this._inferencePool, () => this.decoderPass(noised, timesteps, registers));
  }

  private decoderPass(noised: Tensor[], timesteps: number[], registers: Tensor[], trace?: Trace, tap?: HiddenTap): Tensor[] {
    const cfg = this._cfg;
    const d = cfg.dim;
    const c = cfg.channels_in;
    const n = noised.length;
    if (timesteps.length !== n || registers.length !== n) {
      throw new Error(`decoder: ${n} latents, ${timesteps.length} timesteps and ${registers.length} register sequences must match`);
    }
    const grids = noised.map((x) => patchGrid(x, cfg.patch_sizes, c));
    const patchEmb = applyLinear(concat(noised.map((x) => patchify(x, cfg.patch_sizes)), 0), this.dec_noise_patch_emb.patch_proj);
    const pieces: Tensor[] = [];
    const subLengths: number[][] = [];
    let offset = 0;
    grids.forEach(([gh, gw], i) => {
      const np = gh * gw;
      const emb = slice(patchEmb, 0, offset, offset + np);
      offset += np;
      const withPos = add(emb, cropGridRows(this._posembRows, cfg.max_sizes, gh, gw));
      if (trace) {
        trace(`dec.patch_emb.${i}`, asGrid(emb, gh, gw));
        trace(`dec.patches_posemb.${i}`, asGrid(withPos, gh, gw));
      }
      pieces.push(withPos, registers[i]);
      subLengths.push([np, registers[i].shape[0]]);
    });
    const layout = new SequenceLayout(subLengths, cfg.mask_mode);
    let x = concat(pieces, 0); // [N, D]
    const temb = this.timeEmbedding(timesteps); // [B, D]
    if (trace) {
      trace('dec.packed_seq', reshape(x, [1, layout.length, d]));
      trace('dec.attn_mask', layout.packedMaskTensor());
      trace('dec.temb', temb);
    }
    const siluTemb = silu(temb);
    this.dec_transformer.blocks.forEach((block, j) => {
      x = block.forward(x, layout, siluTemb, trace, `dec.block${j}`);
      if (trace) trace(`dec.block${j}.out`, reshape(x, [1, layout.length, d]));
      if (tap && tap.afterBlock === j) tap.onHidden(x, layout);
    });
    // Head on the patch tokens of every sample at once.
    const patchRows = concat(grids.map(([gh, gw], i) => {
      const start = layout.sampleStart[i];
      const rows = slice(x, 0, start, start + gh * gw);
      if (trace) trace(`dec.trunk.patches.${i}`, asGrid(rows, gh, gw));
      return rows;
    }), 0);
    let h = plainLayerNorm(patchRows);
    const headMod = this.dec_to_patches.adaLN_modulation;
    if (headMod) {
      const m = applyLinear(siluTemb, headMod['1']); // [B, 2D]: shift, scale
      if (trace) trace('dec.head.adaln', m);
      const [shift, scale] = chunkRows(m, 2);
      const sampleOfRow = new Int32Array(patchRows.shape[0]);
      let p = 0;
      grids.forEach(([gh, gw], i) => {
        sampleOfRow.fill(i, p, p + gh * gw);
        p += gh * gw;
      });
      const idx = new Tensor(sampleOfRow, [sampleOfRow.length]);
      h = modulateSegments(h, add(scale, 1), shift, idx);
    }
    const out = applyLinear(h, this.dec_to_patches.proj); // [ΣP, p0·p1·C]
    offset = 0;
    return grids.map(([gh, gw], i) => {
      const rows = slice(out, 0, offset, offset + gh * gw);
      offset += gh * gw;
      if (trace) trace(`dec.head.out.${i}`, unpatchifyChannelsLast(rows, cfg.patch_sizes, gh, gw, c));
      const v = unpatchify(rows, cfg.patch_sizes, gh, gw, c);
      if (trace) trace(`dec.flow.${i}`, v);
      return v;
    });
  }
}
