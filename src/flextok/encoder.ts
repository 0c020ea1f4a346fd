// The FlexTok encoder ("RegisterEncoder"): patchify VAE latents, add the sin-cos table, append the
// learned registers, run the plain transformer under the causal_last mask, and read the registers
// out through LayerNorm + Linear as pre-quantisation FSQ latents.

import { add, concat, permute, reshape, slice } from '../tensor/ops.js';
import { BufferPool } from '../tensor/pool.js';
import { Tensor, withInferencePool } from '../tensor/tensor.js';
import { buildSincos2dTable, cropGridRows, tableToRows } from './posemb.js';
import type { EncoderConfig } from './tokenizer_config.js';
import { applyLinear, loadLinear, PlainBlock, plainLayerNorm, SequenceLayout, type LinearParams } from './transformer.js';
import type { Trace, WeightMap } from './weights.js';

/** Patch grid of a latent [1, C, H, W] for patch sizes [p0, p1]. */
export function patchGrid(latent: Tensor, patch: readonly [number, number], channels: number): [number, number] {
  if (latent.ndim !== 4 || latent.shape[0] !== 1 || latent.shape[1] !== channels) {
    throw new Error(`expected a latent [1, ${channels}, H, W], got [${latent.shape.join(', ')}]`);
  }
  const [, , h, w] = latent.shape;
  if (h % patch[0] !== 0 || w % patch[1] !== 0) {
    throw new Error(`latent size ${h}×${w} is not a multiple of the patch size ${patch[0]}×${patch[1]}`);
  }
  return [h / patch[0], w / patch[1]];
}

/** Channels-last patchify: latent [1, C, H, W] → patch rows [gh·gw, p0·p1·C], feature (i0·p1 + i1)·C + c. */
export function patchify(latent: Tensor, patch: readonly [number, number]): Tensor {
  const [, c, h, w] = latent.shape;
  const [p0, p1] = patch;
  const gh = h / p0;
  const gw = w / p1;
  // [C, gh, p0, gw, p1] → [gh, gw, p0, p1, C]
  const t = permute(reshape(latent, [c, gh, p0, gw, p1]), [1, 3, 2, 4, 0]);
  return reshape(t, [gh * gw, p0 * p1 * c]);
}

/** Inverse of patchify: rows [gh·gw, p0·p1·C] → latent [1, C, gh·p0, gw·p1]. */
export function unpatchify(rows: Tensor, patch: readonly [number, number], gh: number, gw: number, channels: number): Tensor {
  const [p0, p1] = patch;
  const t = permute(reshape(rows, [gh, gw, p0, p1, channels]), [4, 0, 2, 1, 3]);
  return reshape(t, [1, channels, gh * p0, gw * p1]);
}

/** Unpatchified rows as a channels-last latent [1, H, W, C] (for tracing). */
export function unpatchifyChannelsLast(rows: Tensor, patch: readonly [number, number], gh: number, gw: number, channels: number): Tensor {
  const [p0, p1] = patch;
  const t = permute(reshape(rows, [gh, gw, p0, p1, channels]), [0, 2, 1, 3, 4]);
  return reshape(t, [1, gh * p0, gw * p1, channels]);
}

/** Shape a [gh·gw, D] row block as a channels-last grid [1, gh, gw, D] (for tracing). */
export function asGrid(rows: Tensor, gh: number, gw: number): Tensor {
  return reshape(rows, [1, gh, gw, rows.shape[1]]);
}

export class RegisterEncoder {
  // Fields mirror the official module_dict, so namedTensors(encoder, 'encoder.module_dict') gives
  // the state_dict keys.
  enc_patch_emb: { patch_proj: LinearParams };
  enc_posemb_module: { posembs: Tensor };
  enc_register_module: { registers: Tensor };
  enc_transformer: { blocks: PlainBlock[] };
  enc_to_latents: { proj: LinearParams };
  readonly _cfg: EncoderConfig;
  /** sin-cos table as channels-last rows [Hmax·Wmax, D] */
  readonly _posembRows: Tensor;
  /** activation storage reused across inference calls (see withInferencePool) */
  _inferencePool = new BufferPool();

  constructor(
    cfg: EncoderConfig,
    parts: { patchProj: LinearParams; posembs: Tensor; registers: Tensor; blocks: PlainBlock[]; toLatents: LinearParams },
  ) {
    this._cfg = cfg;
    this.enc_patch_emb = { patch_proj: parts.patchProj };
    this.enc_posemb_module = { posembs: parts.posembs };
    this.enc_register_module = { registers: parts.registers };
    this.enc_transformer = { blocks: parts.blocks };
    this.enc_to_latents = { proj: parts.toLatents };
    this._posembRows = tableToRows(parts.posembs);
  }

  static load(cfg: EncoderConfig, w: WeightMap, prefix = 'encoder.module_dict.'): RegisterEncoder {
    const d = cfg.dim;
    const [p0, p1] = cfg.patch_sizes;
    const [hm, wm] = cfg.max_sizes;
    const posembKey = `${prefix}enc_posemb_module.posembs`;
    const posembs = w.maybe(posembKey, [1, d, hm, wm]) ?? buildSincos2dTable(d, hm, wm);
    const blocks: PlainBlock[] = [];
    for (let j = 0; j < cfg.depth; j++) blocks.push(PlainBlock.load(cfg, w, `${prefix}enc_transformer.blocks.${j}.`));
    return new RegisterEncoder(cfg, {
      patchProj: loadLinear(w, `${prefix}enc_patch_emb.patch_proj`, d, p0 * p1 * cfg.channels_in, true),
      posembs,
      registers: w.take(`${prefix}enc_register_module.registers`, [cfg.n_registers, d]),
      blocks,
      toLatents: loadLinear(w, `${prefix}enc_to_latents.proj`, cfg.dim_out, d, true),
    });
  }

  get config(): EncoderConfig {
    return this._cfg;
  }

  /** latents: each [1, C, H, W] (sizes may differ) → pre-quantisation latents, each [1, R, dim_out]. */
  forward(latents: Tensor[], trace?: Trace): Tensor[] {
    return trace ? this.forwardPass(latents, trace) : withInferencePool(this._inferencePool, () => this.forwardPass(latents));
  }

  private forwardPass(latents: Tensor[], trace?: Trace): Tensor[] {
    const cfg = this._cfg;
    const r = cfg.n_registers;
    const registers = this.enc_register_module.registers;
    const grids = latents.map((x) => patchGrid(x, cfg.patch_sizes, cfg.channels_in));
    // One GEMM for the patches of every sample.
    const patchRows = concat(latents.map((x) => patchify(x, cfg.patch_sizes)), 0);
    const embedded = applyLinear(patchRows, this.enc_patch_emb.patch_proj); // [ΣP, D]
    const pieces: Tensor[] = [];
    const subLengths: number[][] = [];
    let offset = 0;
    grids.forEach(([gh, gw], i) => {
      const n = gh * gw;
      const emb = slice(embedded, 0, offset, offset + n);
      offset += n;
      const withPos = add(emb, cropGridRows(this._posembRows, cfg.max_sizes, gh, gw));
      if (trace) {
        trace(`enc.patch_emb.${i}`, asGrid(emb, gh, gw));
        trace(`enc.posemb_added.${i}`, asGrid(withPos, gh, gw));
        trace(`enc.registers.${i}`, reshape(registers, [1, r, cfg.dim]));
      }
      pieces.push(withPos, registers);
      subLengths.push([n, r]);
    });
    const layout = new SequenceLayout(subLengths, cfg.mask_mode);
    let x = concat(pieces, 0); // [N, D]
    if (trace) {
      trace('enc.packed_seq', reshape(x, [1, layout.length, cfg.dim]));
      trace('enc.attn_mask', layout.packedMaskTensor());
    }
    const blocks = this.enc_transformer.blocks;
    // Only the registers are read after the trunk, so the last block runs its queries, residual and MLP on
    // them alone (keys and values still come from every token); traced passes compute every row.
    const trimLast = !trace && blocks.length > 0;
    blocks.forEach((block, j) => {
      if (trimLast && j === blocks.length - 1) return;
      x = block.forward(x, layout);
      if (trace) trace(`enc.block${j}.out`, reshape(x, [1, layout.length, cfg.dim]));
    });
    // Registers of every sample through the head at once.
    const regRows = trimLast ? blocks[blocks.length - 1].forwardQueries(x, layout, layout.lastSubsequenceQueries()) : concat(grids.map(([gh, gw], i) => {
      const start = layout.sampleStart[i] + gh * gw;
      if (trace) {
        trace(`enc.trunk.patches.${i}`, asGrid(slice(x, 0, layout.sampleStart[i], start), gh, gw));
        trace(`enc.trunk.registers.${i}`, reshape(slice(x, 0, start, start + r), [1, r, cfg.dim]));
      }
      return slice(x, 0, start, start + r);
    }), 0);
    const out = applyLinear(plainLayerNorm(regRows), this.enc_to_latents.proj); // [B·R, dim_out]
    return grids.map((_, i) => {
      const lat = reshape(slice(out, 0, i * r, (i + 1) * r), [1, r, cfg.dim_out]);
      if (trace) trace(`enc.latents.${i}`, lat);
      return lat;
    });
  }
}
