// The FlexTok trunk: multi-head attention with QK-norm, the SwiGLU MLP, plain pre-norm and
// AdaLN-zero blocks, and the packing of several samples (each a list of sub-sequences) into one
// token matrix with a precomputed per-sample attention mask.
//
// Tokens of all samples live in one [N, D] matrix (sample-major, sub-sequences in order), so each
// projection is one GEMM for the whole batch. Attention runs as [B, L, H, hd] with B = #samples
// when every sample has the same layout (mask shared, no cross-sample work), else as one packed
// sequence (B = 1) with a block-diagonal mask.

import { addGatedSegments, attention, layerNorm, linear, modulateSegments } from '../tensor/nn.js';
import { add, indexSelect, mul, reshape, silu, slice } from '../tensor/ops.js';
import { Tensor } from '../tensor/tensor.js';
import { attentionScale, mlpHiddenDim, numHeads, type MaskMode, type TransformerConfig } from './tokenizer_config.js';
import type { Trace, WeightMap } from './weights.js';

const LN_EPS = 1e-5;

// ---------------------------------------------------------------------------------------------
// sequence packing

/** Allowed[q][k] within one sample whose sub-sequences have the given lengths, row-major [L·L]. */
export function sampleMask(subLengths: readonly number[], mode: MaskMode): Uint8Array {
  const len = subLengths.reduce((a, b) => a + b, 0);
  const m = new Uint8Array(len * len);
  if (mode === 'full') return m.fill(1);
  if (mode === 'causal') {
    for (let q = 0; q < len; q++) m.fill(1, q * len, q * len + q + 1);
    return m;
  }
  // causal_last: every token sees the prefix (all sub-sequences but the last); the last
  // sub-sequence is causal among itself.
  const prefix = len - subLengths[subLengths.length - 1];
  for (let q = 0; q < len; q++) {
    m.fill(1, q * len, q * len + prefix);
    if (q >= prefix) m.fill(1, q * len + prefix, q * len + q + 1);
  }
  return m;
}

/** How samples are laid out in the packed token matrix, with their attention mask. */
export class SequenceLayout {
  /** sub-sequence lengths per sample */
  readonly samples: readonly (readonly number[])[];
  /** total tokens N */
  readonly length: number;
  /** first token of each sample */
  readonly sampleStart: readonly number[];
  /** true: attention runs batched [B, L] with one shared per-sample mask; false: packed [1, N] */
  readonly batched: boolean;
  /** attention batch and length (B·L = N) */
  readonly attnBatch: number;
  readonly attnLength: number;
  /** mask for the attention call ([L·L] shared or [N·N] packed); null = everything allowed */
  readonly attnMask: Uint8Array | null;
  private readonly segmentCache = new Map<number, Tensor>();

  constructor(samples: readonly (readonly number[])[], readonly mode: MaskMode) {
    if (samples.length === 0) throw new Error('SequenceLayout: no samples');
    this.samples = samples.map((s) => Object.freeze([...s]));
    const starts: number[] = [];
    let n = 0;
    for (const s of this.samples) {
      starts.push(n);
      n += s.reduce((a, b) => a + b, 0);
    }
    this.length = n;
    this.sampleStart = starts;
    const first = this.samples[0];
    this.batched = this.samples.every((s) => s.length === first.length && s.every((l, i) => l === first[i]));
    if (this.batched) {
      this.attnBatch = this.samples.length;
      this.attnLength = n / this.samples.length;
      this.attnMask = mode === 'full' ? null : sampleMask(first, mode);
    } else {
      this.attnBatch = 1;
      this.attnLength = n;
      this.attnMask = this.packedMask();
    }
  }

  /** Block-diagonal mask [N·N] of the whole packed sequence (no attention across samples). */
  packedMask(): Uint8Array {
    const n = this.length;
    const m = new Uint8Array(n * n);
    this.samples.forEach((subs, i) => {
      const s = this.sampleMask(subs);
      const len = Math.sqrt(s.length);
      const o = this.sampleStart[i];
      for (let q = 0; q < len; q++) m.set(s.subarray(q * len, (q + 1) * len), (o + q) * n + o);
    });
    return m;
  }

  /** The packed mask as an int32 tensor [N, N] (for tracing). */
  packedMaskTensor(): Tensor {
    return new Tensor(Int32Array.from(this.packedMask()), [this.length, this.length]);
  }

  /** Row index per token into a [B·E, ...] per-(sample, sub-sequence) table: sub-sequence s of
   * sample b uses row b·E + min(s, E−1). */
  segmentIndex(expansion: number): Tensor {
    let t = this.segmentCache.get(expansion);
    if (!t) {
      const idx = new Int32Array(this.length);
      let p = 0;
      this.samples.forEach((subs, b) => {
        subs.forEach((len, s) => {
          idx.fill(b * expansion + Math.min(s, expansion - 1), p, p + len);
          p += len;
        });
      });
      t = new Tensor(idx, [this.length]);
      this.segmentCache.set(expansion, t);
    }
    return t;
  }

  /** The rows of every sample's last sub-sequence (the registers) as attention queries against all
   * tokens: their indices into the packed [N, D] matrix, and the matching rows of the attention mask. */
  lastSubsequenceQueries(): QueryRows {
    const rows: number[] = [];
    this.samples.forEach((subs, i) => {
      const len = subs.reduce((a, b) => a + b, 0);
      for (let q = len - subs[subs.length - 1]; q < len; q++) rows.push(this.sampleStart[i] + q);
    });
    const index = new Tensor(Int32Array.from(rows), [rows.length]);
    const perBatch = rows.length / this.attnBatch; // batched: the same positions in each sample
    let mask: Uint8Array | null = null;
    if (this.attnMask !== null) {
      const lk = this.attnLength;
      const src = this.attnMask;
      mask = new Uint8Array(perBatch * lk);
      for (let r = 0; r < perBatch; r++) {
        const q = this.batched ? rows[r] - this.sampleStart[0] : rows[r];
        mask.set(src.subarray(q * lk, (q + 1) * lk), r * lk);
      }
    }
    return { index, perBatch, mask };
  }

  private sampleMask(subs: readonly number[]): Uint8Array {
    return sampleMask(subs, this.mode);
  }
}

/** A subset of the tokens that ask attention queries (see SequenceLayout.lastSubsequenceQueries). */
export interface QueryRows {
  /** int32 [M]: rows of the packed [N, D] token matrix, sample-major */
  index: Tensor;
  /** queries per attention batch entry (M / attnBatch) */
  perBatch: number;
  /** the attention mask's rows for these queries ([perBatch·attnLength]); null = everything allowed */
  mask: Uint8Array | null;
}

// ---------------------------------------------------------------------------------------------
// parameters

/** nn.Linear parameters (official names `weight` [out, in], `bias` [out]). */
export interface LinearParams {
  weight: Tensor;
  bias: Tensor | null;
}

export function loadLinear(w: WeightMap, name: string, outDim: number, inDim: number, bias: boolean): LinearParams {
  return {
    weight: w.take(`${name}.weight`, [outDim, inDim]),
    bias: bias ? w.take(`${name}.bias`, [outDim]) : null,
  };
}

export function applyLinear(x: Tensor, p: LinearParams): Tensor {
  return linear(x, p.weight, p.bias);
}

// ---------------------------------------------------------------------------------------------
// layers

/** Multi-head self-attention ("FlexAttention"): bias-optional wq/wk/wv/proj, per-head LayerNorm
 * on q and k, scale 8/head_dim, heads as the outer factor of the feature index. */
export class SelfAttention {
  wq: LinearParams;
  wk: LinearParams;
  wv: LinearParams;
  proj: LinearParams;
  readonly _heads: number;
  readonly _headDim: number;
  readonly _qkNorm: boolean;
  readonly _scale: number;

  constructor(params: { wq: LinearParams; wk: LinearParams; wv: LinearParams; proj: LinearParams }, cfg: TransformerConfig) {
    this.wq = params.wq;
    this.wk = params.wk;
    this.wv = params.wv;
    this.proj = params.proj;
    this._heads = numHeads(cfg);
    this._headDim = cfg.head_dim;
    this._qkNorm = cfg.qk_norm;
    this._scale = attentionScale(cfg);
  }

  static load(cfg: TransformerConfig, w: WeightMap, prefix: string): SelfAttention {
    const d = cfg.dim;
    return new SelfAttention({
      wq: loadLinear(w, `${prefix}wq`, d, d, cfg.qkv_bias),
      wk: loadLinear(w, `${prefix}wk`, d, d, cfg.qkv_bias),
      wv: loadLinear(w, `${prefix}wv`, d, d, cfg.qkv_bias),
      proj: loadLinear(w, `${prefix}proj`, d, d, cfg.proj_bias),
    }, cfg);
  }

  /** x [N, D] → [N, D]. */
  forward(x: Tensor, layout: SequenceLayout): Tensor {
    const shape4 = [layout.attnBatch, layout.attnLength, this._heads, this._headDim];
    let q = reshape(applyLinear(x, this.wq), shape4);
    let k = reshape(applyLinear(x, this.wk), shape4);
    const v = reshape(applyLinear(x, this.wv), shape4);
    if (this._qkNorm) {
      q = layerNorm(q, null, null, LN_EPS);
      k = layerNorm(k, null, null, LN_EPS);
    }
    const o = attention(q, k, v, { mask: layout.attnMask, scale: this._scale });
    return applyLinear(reshape(o, [layout.length, this._heads * this._headDim]), this.proj);
  }

  /** Attention output for the query rows only: x [N, D] (keys and values from every token) → [M, D]. */
  forwardQueries(x: Tensor, layout: SequenceLayout, queries: QueryRows): Tensor {
    const m = queries.index.shape[0];
    const shapeKV = [layout.attnBatch, layout.attnLength, this._heads, this._headDim];
    let q = reshape(applyLinear(indexSelect(x, 0, queries.index), this.wq), [layout.attnBatch, queries.perBatch, this._heads, this._headDim]);
    let k = reshape(applyLinear(x, this.wk), shapeKV);
    const v = reshape(applyLinear(x, this.wv), shapeKV);
    if (this._qkNorm) {
      q = layerNorm(q, null, null, LN_EPS);
      k = layerNorm(k, null, null, LN_EPS);
    }
    const o = attention(q, k, v, { mask: queries.mask, scale: this._scale });
    return applyLinear(reshape(o, [m, this._heads * this._headDim]), this.proj);
  }
}

/** Gated MLP ("GatedMlp", SwiGLU): fc2(silu(fc1 x) ⊙ fc3 x). */
export class SwiGLU {
  constructor(public fc1: LinearParams, public fc2: LinearParams, public fc3: LinearParams) {}

  static load(cfg: TransformerConfig, w: WeightMap, prefix: string): SwiGLU {
    if (!cfg.gated_mlp) throw new Error('only the gated (SwiGLU) MLP of the FlexTok trunk is supported (gated_mlp = false in the config)');
    const d = cfg.dim;
    const h = mlpHiddenDim(cfg);
    return new SwiGLU(
      loadLinear(w, `${prefix}fc1`, h, d, cfg.mlp_bias),
      loadLinear(w, `${prefix}fc2`, d, h, cfg.mlp_bias),
      loadLinear(w, `${prefix}fc3`, h, d, cfg.mlp_bias),
    );
  }

  forward(x: Tensor): Tensor {
    return applyLinear(mul(silu(applyLinear(x, this.fc1)), applyLinear(x, this.fc3)), this.fc2);
  }
}

/** Pre-norm block ("FlexBlock"): x += Attn(LN x); x += MLP(LN x). */
export class PlainBlock {
  constructor(public attn: SelfAttention, public mlp: SwiGLU) {}

  static load(cfg: TransformerConfig, w: WeightMap, prefix: string): PlainBlock {
    return new PlainBlock(SelfAttention.load(cfg, w, `${prefix}attn.`), SwiGLU.load(cfg, w, `${prefix}mlp.`));
  }

  forward(x: Tensor, layout: SequenceLayout): Tensor {
    const h = add(x, this.attn.forward(layerNorm(x, null, null, LN_EPS), layout));
    return add(h, this.mlp.forward(layerNorm(h, null, null, LN_EPS)));
  }

  /** The block's output for the query rows only (x [N, D] → [M, D]): what a last block computes when
   * only some tokens are read afterwards (the encoder's registers), with the same numbers as forward. */
  forwardQueries(x: Tensor, layout: SequenceLayout, queries: QueryRows): Tensor {
    const h = add(indexSelect(x, 0, queries.index), this.attn.forwardQueries(layerNorm(x, null, null, LN_EPS), layout, queries));
    return add(h, this.mlp.forward(layerNorm(h, null, null, LN_EPS)));
  }
}

/** Split modulation rows [R, k·D] into k chunks [R, D]. */
export function chunkRows(m: Tensor, k: number): Tensor[] {
  const [r, kd] = m.shape;
  const d = kd / k;
  const m3 = reshape(m, [r, k, d]);
  return Array.from({ length: k }, (_, c) => reshape(slice(m3, 1, c, c + 1), [r, d]));
}

/** AdaLN-zero block ("FlexBlockAdaLN"): modulation m = Linear(SiLU(c)) of width E·6·D per sample,
 * piece e for sub-sequence e (the last piece for any further ones); chunks in the official order
 * gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp;
 * x += gate_msa ⊙ Attn(LN(x)(1+scale_msa)+shift_msa); x += gate_mlp ⊙ MLP(LN(x)(1+scale_mlp)+shift_mlp). */
export class AdaLNBlock {
  attn: SelfAttention;
  mlp: SwiGLU;
  adaLN_modulation: { '1': LinearParams };
  readonly _expansion: number;

  constructor(attn: SelfAttention, mlp: SwiGLU, modulation: LinearParams, expansion: number) {
    this.attn = attn;
    this.mlp = mlp;
    this.adaLN_modulation = { '1': modulation };
    this._expansion = expansion;
  }

  static load(cfg: TransformerConfig, expansion: number, w: WeightMap, prefix: string): AdaLNBlock {
    const d = cfg.dim;
    return new AdaLNBlock(
      SelfAttention.load(cfg, w, `${prefix}attn.`),
      SwiGLU.load(cfg, w, `${prefix}mlp.`),
      loadLinear(w, `${prefix}adaLN_modulation.1`, expansion * 6 * d, d, true),
      expansion,
    );
  }

  /** m = Linear(SiLU(c)): siluCond [B, D] → [B, E·6·D]. */
  modulation(siluCond: Tensor): Tensor {
    return applyLinear(siluCond, this.adaLN_modulation['1']);
  }

  /** x [N, D]; siluCond = SiLU(conditioning) [B, D], one row per sample. Each token takes its
   * modulation row by the layout's segment index (fused: no per-token copies of the modulation). */
  forward(x: Tensor, layout: SequenceLayout, siluCond: Tensor, trace?: Trace, name?: string): Tensor {
    const m = this.modulation(siluCond);
    if (trace && name) trace(`${name}.adaln`, m);
    const e = this._expansion;
    const rows = reshape(m, [m.shape[0] * e, m.shape[1] / e]); // [B·E, 6D]
    const [gateMsa, gateMlp, shiftMsa, scaleMsa, shiftMlp, scaleMlp] = chunkRows(rows, 6);
    const seg = layout.segmentIndex(e);
    const h1 = modulateSegments(layerNorm(x, null, null, LN_EPS), add(scaleMsa, 1), shiftMsa, seg);
    const x1 = addGatedSegments(x, gateMsa, this.attn.forward(h1, layout), seg);
    const h2 = modulateSegments(layerNorm(x1, null, null, LN_EPS), add(scaleMlp, 1), shiftMlp, seg);
    return addGatedSegments(x1, gateMlp, this.mlp.forward(h2), seg);
  }
}

/** Parameter-free LayerNorm (eps 1e-5) as used by the heads. */
export function plainLayerNorm(x: Tensor): Tensor {
  return layerNorm(x, null, null, LN_EPS);
}
