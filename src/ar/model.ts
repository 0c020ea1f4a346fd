// The stage-2 model (FlexAR): a GPT-style causal Transformer that predicts FlexTok token ids one after another,
// conditioned on a class or a text prompt, with training loss, KV-cache inference and safetensors save/load.
//
// A forward pass, top to bottom (spec §1, the official FlexAR design):
//   input   [SOS + class, t_1, …, t_{L−1}]           (class −1 = null class: adds the zero vector; a text model
//                                                        has no class: SOS alone)
//   c       text only: prompt embeddings [B, Lt, D_t] (own word encoder below, or precomputed, e.g. T5)
//           → MLP: Linear(D_t→D_t) · GELU-tanh · Linear(D_t→D), no biases        [B, Lt, D]
//   x       = input embeddings + learned positions     [B, L, D]
//   blocks  x += Attn(RMSNorm x)  (causal, QK-norm)    pre-norm, no biases
//           x += CrossAttn(RMSNorm x, c)               text only; padding masked; the empty prompt (no tokens)
//                                                      adds nothing: the null condition
//           x += SwiGLU(RMSNorm x)
//   h       = RMSNorm x                                [B, L, D]   (the "hidden state")
//   head    'flat':   logits = h Wᵀ                    [B, L, V]
//           'digits': the six FSQ digits of the next token, one after another (DigitHead below)
//   loss    cross-entropy against t_1 … t_L, mean nats per token.
//   training with config.dropout p > 0 (and a random stream): inverted dropout on x after the positions and on the
//   output of every residual branch of the blocks before it is added (nanoGPT's embedding and residual dropout; not
//   in the text encoder); never at inference.
//
// Norms: RMSNorm with a learned gain everywhere (blocks, final, QK-norm, digit head), eps from the config: the
// usual choice of LLaMA-style decoders; the official code's norm type is not visible in its inference release.
// Attention scale 1/√head_dim (QK-norm gains let the model sharpen attention itself).
//
// Token embedding. 'flat': one table [V, D]. 'digits': the sum of one small table per FSQ digit, Σ_j E_j[d_j]
// (Σ L_j rows in all, 39 for [8,8,8,5,5,5]): a 64,000-row table sees each id only ~30 times in Fashion-MNIST,
// while the digit tables share what the codes have in common.
//
// Digits head (an exact factorisation of p(t), so Σ_t p(t) = 1): digit j of the next token is predicted from
//   x_j = h + Σ_{i<j} P_i[d_i]        P_i [L_i, D]: embedding of an already drawn digit i (teacher-forced in training)
//   logits_j = W_out_j · SiLU(W_in_j · RMSNorm_j(x_j))           W_in_j [H_d, D], W_out_j [L_j, H_d]
// A per-digit MLP rather than a linear map, so that p(d_j | d_<j) can depend on combinations of earlier digits
// (a linear map of h + Σ P_i[d_i] would make each earlier digit's effect on the logits additive).
// Loss = Σ_j CE_j = −log p(t) per token, in nats: directly comparable with the flat head's loss.

import { fs, path } from '../io/node_builtins.js';
import { decodeSafetensors, readSafetensors, toFloat32, writeSafetensors, type TensorData } from '../io/safetensors.js';
import { float32ToBfloat16, float32ToFloat16 } from '../tensor/half.js';
import { namedTensors, parameters } from '../tensor/module.js';
import { attention, crossEntropy, linear, rmsNorm } from '../tensor/nn.js';
import { add, concat, dropout, embedding, gelu, mul, reshape, silu, slice } from '../tensor/ops.js';
import { BufferPool, unpooled } from '../tensor/pool.js';
import { Rng } from '../tensor/rng.js';
import { noGrad, Tensor, withInferencePool } from '../tensor/tensor.js';
import { fsqBasis, mlpHidden, numHeads, parseArModelConfig, type ArModelConfig, type ArTextConfig } from './config.js';
import { conditionBatch, isTextBatch, type ArCondition, type TextBatch } from './text.js';

type FloatDType = 'float32' | 'float64';

/** Training-time dropout of a residual branch or embedding (identity at inference). */
type Drop = (x: Tensor) => Tensor;
const noDrop: Drop = (x) => x;

/** The metadata key under which a saved model stores its config (JSON). */
export const AR_CONFIG_KEY = 'flextok_ar_config';
/** The metadata key naming the file format. */
export const AR_FORMAT_KEY = 'format';
export const AR_FORMAT = 'flextok-ar';

/** How weights are stored in a saved file (the engine computes in float32 whatever the file holds). */
export type ArWeightDtype = 'F32' | 'F16' | 'BF16';

function param(shape: number[], dtype: FloatDType, fill = 0): Tensor {
  return Tensor.full(shape, fill, dtype).requireGrad();
}

// ---------------------------------------------------------------------------------------------
// blocks

/** The weights of one attention layer: q, k, v and output projections without biases, optional QK-norm (RMSNorm
 * with a gain [hd] shared by the heads). */
class AttentionWeights {
  wq: Tensor; // [D, D]
  wk: Tensor; // [D, D]
  wv: Tensor; // [D, D]
  qNorm: Tensor | null; // [hd]
  kNorm: Tensor | null; // [hd]
  proj: Tensor; // [D, D]
  readonly _heads: number;
  readonly _headDim: number;
  readonly _eps: number;

  constructor(cfg: ArModelConfig, dtype: FloatDType) {
    const d = cfg.dim;
    this.wq = param([d, d], dtype);
    this.wk = param([d, d], dtype);
    this.wv = param([d, d], dtype);
    this.qNorm = cfg.qk_norm ? param([cfg.head_dim], dtype, 1) : null;
    this.kNorm = cfg.qk_norm ? param([cfg.head_dim], dtype, 1) : null;
    this.proj = param([d, d], dtype);
    this._heads = numHeads(cfg);
    this._headDim = cfg.head_dim;
    this._eps = cfg.norm_eps;
  }

  /** Attention output o [B, L, H, hd] → [B, L, D]. */
  output(o: Tensor): Tensor {
    const [b, l] = o.shape;
    return linear(reshape(o, [b, l, this._heads * this._headDim]), this.proj);
  }
}

/** Causal self-attention (bidirectional under a mask, for the text encoder). */
export class ArAttention extends AttentionWeights {
  /** x [B, L, D] → q, k, v [B, L, H, hd] (q and k normalised per head). */
  qkv(x: Tensor): { q: Tensor; k: Tensor; v: Tensor } {
    const [b, l] = x.shape;
    const shape4 = [b, l, this._heads, this._headDim];
    let q = reshape(linear(x, this.wq), shape4);
    let k = reshape(linear(x, this.wk), shape4);
    const v = reshape(linear(x, this.wv), shape4);
    if (this.qNorm && this.kNorm) {
      q = rmsNorm(q, this.qNorm, this._eps);
      k = rmsNorm(k, this.kNorm, this._eps);
    }
    return { q, k, v };
  }

  /** Training / full recomputation: x [B, L, D] → [B, L, D], causal; or bidirectional under `mask` [B, L, L]
   * (the text encoder). */
  forward(x: Tensor, mask?: Uint8Array): Tensor {
    const { q, k, v } = this.qkv(x);
    return this.output(attention(q, k, v, mask ? { mask } : { causal: true }));
  }
}

/** Cross-attention from the token stream to the prompt states. */
export class ArCrossAttention extends AttentionWeights {
  /** Prompt states c [B, Lt, D] → keys and values [B, Lt, H, hd] (computed once per prompt when sampling). */
  keysValues(c: Tensor): { k: Tensor; v: Tensor } {
    const [b, lt] = c.shape;
    const shape4 = [b, lt, this._heads, this._headDim];
    let k = reshape(linear(c, this.wk), shape4);
    const v = reshape(linear(c, this.wv), shape4);
    if (this.kNorm) k = rmsNorm(k, this.kNorm, this._eps);
    return { k, v };
  }

  /** x [B, L, D] attends to k, v [B, Lt, H, hd] under mask [B, L, Lt] → [B, L, D]. */
  forward(x: Tensor, k: Tensor, v: Tensor, mask: Uint8Array): Tensor {
    const [b, l] = x.shape;
    let q = reshape(linear(x, this.wq), [b, l, this._heads, this._headDim]);
    if (this.qNorm) q = rmsNorm(q, this.qNorm, this._eps);
    return this.output(attention(q, k, v, { mask }));
  }
}

/** What the blocks cross-attend to: per layer the prompt keys and values [B, Lt, H, hd], and the mask [B, L, Lt]. */
export interface CrossContext {
  keys: Tensor[];
  values: Tensor[];
  mask: Uint8Array;
}

/** SwiGLU MLP without biases: fc2(silu(fc1 x) ⊙ fc3 x). */
export class ArSwiGLU {
  fc1: Tensor; // [Hm, D]
  fc3: Tensor; // [Hm, D]
  fc2: Tensor; // [D, Hm]

  constructor(cfg: ArModelConfig, dtype: FloatDType) {
    const h = mlpHidden(cfg);
    this.fc1 = param([h, cfg.dim], dtype);
    this.fc3 = param([h, cfg.dim], dtype);
    this.fc2 = param([cfg.dim, h], dtype);
  }

  forward(x: Tensor): Tensor {
    return linear(mul(silu(linear(x, this.fc1)), linear(x, this.fc3)), this.fc2);
  }
}

/** Pre-norm block: x += Attn(RMSNorm x); [text: x += CrossAttn(RMSNorm x, c);] x += MLP(RMSNorm x). */
export class ArBlock {
  norm1: Tensor; // [D]
  attn: ArAttention;
  normCross: Tensor | null; // [D] (text)
  cross: ArCrossAttention | null; // (text)
  norm2: Tensor; // [D]
  mlp: ArSwiGLU;
  readonly _eps: number;

  constructor(cfg: ArModelConfig, dtype: FloatDType, withCross = false) {
    this.norm1 = param([cfg.dim], dtype, 1);
    this.attn = new ArAttention(cfg, dtype);
    this.normCross = withCross ? param([cfg.dim], dtype, 1) : null;
    this.cross = withCross ? new ArCrossAttention(cfg, dtype) : null;
    this.norm2 = param([cfg.dim], dtype, 1);
    this.mlp = new ArSwiGLU(cfg, dtype);
    this._eps = cfg.norm_eps;
  }

  /** x [B, L, D] → [B, L, D]: causal over L, or under `selfMask` [B, L, L]; `cross` = this block's prompt keys,
   * values and mask (text models). */
  forward(x: Tensor, cross: { k: Tensor; v: Tensor; mask: Uint8Array } | null = null, selfMask?: Uint8Array, drop: Drop = noDrop): Tensor {
    let h = add(x, drop(this.attn.forward(rmsNorm(x, this.norm1, this._eps), selfMask)));
    h = this.crossResidual(h, cross, drop);
    return add(h, drop(this.mlp.forward(rmsNorm(h, this.norm2, this._eps))));
  }

  private crossResidual(h: Tensor, cross: { k: Tensor; v: Tensor; mask: Uint8Array } | null, drop: Drop = noDrop): Tensor {
    if (!this.cross) return h;
    if (!cross) throw new Error('ArBlock: a text-conditional block needs the prompt context');
    return add(h, drop(this.cross.forward(rmsNorm(h, this.normCross!, this._eps), cross.k, cross.v, cross.mask)));
  }

  /** One new position per row with the KV cache: x [B, 1, D] → [B, 1, D]. Writes this position's k and v into
   * keys/values [B, R, H, hd] at `pos` and attends to positions 0..pos (mask [R]); text: `cross` as in forward
   * with mask [B, 1, Lt]. */
  step(x: Tensor, keys: Tensor, values: Tensor, pos: number, mask: Uint8Array, cross: { k: Tensor; v: Tensor; mask: Uint8Array } | null = null): Tensor {
    const { q, k, v } = this.attn.qkv(rmsNorm(x, this.norm1, this._eps)); // [B, 1, H, hd]
    writePosition(keys, k, pos);
    writePosition(values, v, pos);
    let h = add(x, this.attn.output(attention(q, keys, values, { mask })));
    h = this.crossResidual(h, cross);
    return add(h, this.mlp.forward(rmsNorm(h, this.norm2, this._eps)));
  }
}

// ---------------------------------------------------------------------------------------------
// text conditioning

/** The model's own prompt encoder: word + learned position embeddings, bidirectional pre-norm blocks over the
 * prompt's tokens (padding masked), final RMSNorm: ids [B, Lt] → [B, Lt, D_t]. */
export class TextEncoder {
  wordEmb: Tensor; // [|vocab|, D_t]
  posEmb: Tensor; // [max_len, D_t]
  blocks: ArBlock[];
  norm: Tensor; // [D_t]
  readonly _eps: number;

  constructor(cfg: ArModelConfig, text: ArTextConfig, dtype: FloatDType) {
    const dt = text.dim;
    this.wordEmb = param([text.vocab!.length, dt], dtype);
    this.posEmb = param([text.max_len, dt], dtype);
    const blockCfg: ArModelConfig = { ...cfg, dim: dt, head_dim: text.head_dim, text: null };
    this.blocks = Array.from({ length: text.depth }, () => new ArBlock(blockCfg, dtype));
    this.norm = param([dt], dtype, 1);
    this._eps = cfg.norm_eps;
  }

  forward(ids: Int32Array, mask: Uint8Array, b: number, lt: number): Tensor {
    let x = add(embedding(this.wordEmb, new Tensor(ids, [b, lt])), slice(this.posEmb, 0, 0, lt)); // [B, Lt, D_t]
    if (this.blocks.length > 0) {
      const selfMask = new Uint8Array(b * lt * lt); // every query of row i may attend to row i's prompt tokens
      for (let i = 0; i < b; i++) for (let q = 0; q < lt; q++) selfMask.set(mask.subarray(i * lt, (i + 1) * lt), (i * lt + q) * lt);
      for (const block of this.blocks) x = block.forward(x, null, selfMask);
    }
    return rmsNorm(x, this.norm, this._eps);
  }
}

/** Prompt embeddings to the model width: Linear(D_t→D_t) · GELU-tanh · Linear(D_t→D), no biases (spec §1). */
export class TextProjector {
  fc1: Tensor; // [D_t, D_t]
  fc2: Tensor; // [D, D_t]

  constructor(cfg: ArModelConfig, text: ArTextConfig, dtype: FloatDType) {
    this.fc1 = param([text.dim, text.dim], dtype);
    this.fc2 = param([cfg.dim, text.dim], dtype);
  }

  forward(e: Tensor): Tensor {
    return linear(gelu(linear(e, this.fc1), 'tanh'), this.fc2);
  }
}

/** cache [B, R, H, hd] at position pos ← src [B, 1, H, hd]. */
function writePosition(cache: Tensor, src: Tensor, pos: number): void {
  const [b, r] = cache.shape;
  const row = src.size / b; // H · hd
  for (let i = 0; i < b; i++) cache.f.set(src.f.subarray(i * row, (i + 1) * row), (i * r + pos) * row);
}

// ---------------------------------------------------------------------------------------------
// digits head

/** Predicts the FSQ digits of the next token one after another (see the module comment). */
export class DigitHead {
  prev: Tensor[]; // prev[i] [L_i, D] for i < n − 1: embedding of an already drawn digit i
  norm: Tensor[]; // norm[j] [D]
  fcIn: Tensor[]; // fcIn[j] [H_d, D]
  fcOut: Tensor[]; // fcOut[j] [L_j, H_d]
  readonly _levels: readonly number[];
  readonly _eps: number;

  constructor(cfg: ArModelConfig, dtype: FloatDType) {
    const levels = cfg.fsq_levels;
    this.prev = levels.slice(0, -1).map((l) => param([l, cfg.dim], dtype));
    this.norm = levels.map(() => param([cfg.dim], dtype, 1));
    this.fcIn = levels.map(() => param([cfg.digit_hidden, cfg.dim], dtype));
    this.fcOut = levels.map((l) => param([l, cfg.digit_hidden], dtype));
    this._levels = levels;
    this._eps = cfg.norm_eps;
  }

  /** logits_j [N, L_j] from x_j [N, D] = h + Σ_{i<j} prev_i[d_i]. */
  logitsFrom(xj: Tensor, j: number): Tensor {
    return linear(silu(linear(rmsNorm(xj, this.norm[j], this._eps), this.fcIn[j])), this.fcOut[j]);
  }

  /** x_{j+1} = x_j + prev_j[digits_j]: xj [N, D], digitIds int32 [N]. */
  addDigit(xj: Tensor, j: number, digitIds: Tensor): Tensor {
    return add(xj, embedding(this.prev[j], digitIds));
  }
}

// ---------------------------------------------------------------------------------------------
// KV cache

/** Preallocated keys and values of every layer for one batch of sequences, filled one position per step. */
export class ArCache {
  /** next position to compute (0: the SOS slot) */
  position = 0;

  constructor(
    readonly batch: number,
    /** per layer [B, R, H, hd] */
    readonly keys: Tensor[],
    readonly values: Tensor[],
    /** per position t: the attention mask [R] allowing keys 0..t */
    readonly masks: Uint8Array[],
  ) {}

  /** text models: per layer the prompt's cross-attention keys and values, and the mask [B, 1, Lt] (set at step 0) */
  cross: { keys: Tensor[]; values: Tensor[]; mask: Uint8Array } | null = null;

  /** Start over (the buffers are reused; stale entries are masked out). */
  reset(): void {
    this.position = 0;
    this.cross = null;
  }
}

// ---------------------------------------------------------------------------------------------
// the model

export interface ArLossOptions {
  /** digits head: filled with the mean cross-entropy of each digit (their sum is the loss) */
  digitLosses?: Float64Array;
  /** training: the random stream of config.dropout's masks (without it, or with dropout 0, nothing is dropped) */
  dropoutRng?: { fillU32(out: Uint32Array): void };
}

export class FlexAR {
  readonly config: ArModelConfig;
  sos: Tensor; // [D]
  classEmb: Tensor | null; // [C, D] (class-conditional)
  posEmb: Tensor; // [R, D]
  tokEmb: Tensor | null; // 'flat': [V, D]
  digitEmb: Tensor[]; // 'digits': [L_j, D] per digit (empty for 'flat')
  blocks: ArBlock[];
  norm: Tensor; // [D]
  head: Tensor | null; // 'flat': [V, D]
  digitHead: DigitHead | null; // 'digits'
  textEncoder: TextEncoder | null; // text with own vocabulary
  textProj: TextProjector | null; // text
  /** the metadata of the file this model was loaded from ({} for a new model) */
  metadata: Record<string, string> = {};
  readonly _basis: readonly number[];
  /** activation storage reused across inference steps (see withInferencePool) */
  readonly _pool = new BufferPool();

  /** A model with every weight zero and every norm gain one (use FlexAR.init or FlexAR.load). */
  constructor(config: ArModelConfig, dtype: FloatDType = 'float32') {
    const cfg = parseArModelConfig(config, 'FlexAR');
    this.config = cfg;
    const d = cfg.dim;
    this.sos = param([d], dtype);
    this.classEmb = cfg.num_classes > 0 ? param([cfg.num_classes, d], dtype) : null;
    this.posEmb = param([cfg.num_tokens, d], dtype);
    const flat = cfg.head === 'flat';
    this.tokEmb = flat ? param([cfg.vocab_size, d], dtype) : null;
    this.digitEmb = flat ? [] : cfg.fsq_levels.map((l) => param([l, d], dtype));
    this.blocks = Array.from({ length: cfg.depth }, () => new ArBlock(cfg, dtype, cfg.text !== null));
    this.norm = param([d], dtype, 1);
    this.head = flat ? param([cfg.vocab_size, d], dtype) : null;
    this.digitHead = flat ? null : new DigitHead(cfg, dtype);
    this.textEncoder = cfg.text?.vocab ? new TextEncoder(cfg, cfg.text, dtype) : null;
    this.textProj = cfg.text ? new TextProjector(cfg, cfg.text, dtype) : null;
    this._basis = fsqBasis(cfg.fsq_levels);
  }

  /** GPT-2 / nanoGPT initialisation: every matrix, embedding and the SOS vector N(0, 0.02²), the residual
   * projections (attn.proj, cross.proj, mlp.fc2) N(0, (0.02/√(2·depth))²), norm gains 1. Draws in parameter
   * order, the text encoder and projector last. */
  static init(config: ArModelConfig, rng: Rng, opts: { dtype?: FloatDType } = {}): FlexAR {
    const m = new FlexAR(config, opts.dtype ?? 'float32');
    const std = 0.02;
    const residualStd = std / Math.sqrt(2 * m.config.depth);
    const normal = (t: Tensor, s: number) => rng.fillNormal(t.f, 0, s);
    normal(m.sos, std);
    if (m.classEmb) normal(m.classEmb, std);
    normal(m.posEmb, std);
    if (m.tokEmb) normal(m.tokEmb, std);
    for (const e of m.digitEmb) normal(e, std);
    const initBlock = (b: ArBlock, resStd: number) => {
      normal(b.attn.wq, std);
      normal(b.attn.wk, std);
      normal(b.attn.wv, std);
      normal(b.attn.proj, resStd);
      if (b.cross) {
        normal(b.cross.wq, std);
        normal(b.cross.wk, std);
        normal(b.cross.wv, std);
        normal(b.cross.proj, resStd);
      }
      normal(b.mlp.fc1, std);
      normal(b.mlp.fc3, std);
      normal(b.mlp.fc2, resStd);
    };
    for (const b of m.blocks) initBlock(b, residualStd);
    if (m.head) normal(m.head, std);
    if (m.digitHead) {
      for (const t of [...m.digitHead.prev, ...m.digitHead.fcIn, ...m.digitHead.fcOut]) normal(t, std);
    }
    if (m.textEncoder) {
      normal(m.textEncoder.wordEmb, std);
      normal(m.textEncoder.posEmb, std);
      const encResStd = std / Math.sqrt(2 * Math.max(1, m.textEncoder.blocks.length));
      for (const b of m.textEncoder.blocks) initBlock(b, encResStd);
    }
    if (m.textProj) {
      normal(m.textProj.fc1, std);
      normal(m.textProj.fc2, std);
    }
    return m;
  }

  get dtype(): FloatDType {
    return this.sos.dtype as FloatDType;
  }

  /** Every weight with its name (the names used in saved files), in a fixed order. */
  namedParameters(): [string, Tensor][] {
    return namedTensors(this);
  }

  parameters(): Tensor[] {
    return parameters(this);
  }

  numParameters(): number {
    return this.namedParameters().reduce((n, [, t]) => n + t.size, 0);
  }

  // ---- input checks ----

  /** Classes or prompts, whichever this model reads, for `batch` rows. */
  private checkCondition(cond: ArCondition, batch: number, where: string): void {
    const text = this.config.text;
    if (!isTextBatch(cond)) {
      if (text) throw new Error(`${where}: this model is text-conditional; give prompts (encodePrompts / embeddedPrompts), not class ids`);
      this.checkClasses(cond, batch, where);
      return;
    }
    if (!text) throw new Error(`${where}: this model is class-conditional; give class ids, not prompts`);
    if (cond.batch !== batch) throw new Error(`${where}: ${cond.batch} prompts for a batch of ${batch}`);
    const lt = cond.length;
    if (!Number.isInteger(lt) || lt < 1 || lt > text.max_len) throw new Error(`${where}: prompts padded to ${lt} tokens; the model reads 1..${text.max_len}`);
    if (cond.mask.length !== batch * lt) throw new Error(`${where}: prompt mask has ${cond.mask.length} entries for [${batch}, ${lt}]`);
    if (text.vocab) {
      if (!cond.ids || cond.ids.length !== batch * lt) throw new Error(`${where}: this model encodes prompts itself: give word ids [${batch}, ${lt}] (encodePrompts)`);
      const v = text.vocab.length;
      for (let i = 0; i < cond.ids.length; i++) {
        if (!(cond.ids[i] >= 0 && cond.ids[i] < v)) throw new Error(`${where}: word id ${cond.ids[i]} at index ${i} is outside 0..${v - 1}`);
      }
    } else {
      const e = cond.embeddings;
      if (!e || e.ndim !== 3 || e.shape[0] !== batch || e.shape[1] !== lt || e.shape[2] !== text.dim) {
        throw new Error(`${where}: this model reads precomputed prompt embeddings [${batch}, ${lt}, ${text.dim}] (embeddedPrompts), got ${e ? `[${e.shape.join(', ')}]` : 'word ids'}`);
      }
    }
  }

  private checkClasses(classes: Int32Array, batch: number, where: string): void {
    if (classes.length !== batch) throw new Error(`${where}: ${classes.length} class ids for a batch of ${batch}`);
    const c = this.config.num_classes;
    for (let i = 0; i < classes.length; i++) {
      const k = classes[i];
      if (!Number.isInteger(k) || k < -1 || k >= c) throw new Error(`${where}: class id ${k} at row ${i} is outside −1..${c - 1} (−1 = null class)`);
    }
  }

  private checkTokens(tokens: Int32Array, where: string): void {
    const v = this.config.vocab_size;
    for (let i = 0; i < tokens.length; i++) {
      if (tokens[i] < 0 || tokens[i] >= v) throw new Error(`${where}: token id ${tokens[i]} at index ${i} is outside 0..${v - 1}`);
    }
  }

  // ---- embeddings ----

  /** SOS + class embedding (class −1: + 0): classes [B] → [B, D]; a text model: SOS for every row. */
  private sosEmbedding(cond: ArCondition): Tensor {
    if (isTextBatch(cond)) return add(Tensor.zeros([cond.batch, this.config.dim], this.dtype), this.sos);
    const classes = cond;
    const b = classes.length;
    const ids = new Int32Array(b);
    const keep = new Float64Array(b);
    for (let i = 0; i < b; i++) {
      ids[i] = Math.max(classes[i], 0);
      keep[i] = classes[i] >= 0 ? 1 : 0;
    }
    const cls = mul(embedding(this.classEmb!, new Tensor(ids, [b])), Tensor.from(keep, [b, 1], this.dtype)); // [B, D]
    return add(cls, this.sos);
  }

  /** Token embeddings: ids int32 [...] → [..., D]; 'digits': Σ_j E_j[digit_j(id)]. */
  private tokenEmbedding(ids: Tensor): Tensor {
    if (this.tokEmb) return embedding(this.tokEmb, ids);
    const levels = this.config.fsq_levels;
    let x: Tensor | null = null;
    for (let j = 0; j < levels.length; j++) {
      const dj = this.digitsOf(ids.i, j);
      const e = embedding(this.digitEmb[j], new Tensor(dj, ids.shape));
      x = x === null ? e : add(x, e);
    }
    return x!;
  }

  /** Digit j of every id: ⌊id / basis_j⌋ mod L_j. */
  private digitsOf(ids: Int32Array, j: number): Int32Array {
    const out = new Int32Array(ids.length);
    const b = this._basis[j];
    const l = this.config.fsq_levels[j];
    for (let i = 0; i < ids.length; i++) out[i] = Math.floor(ids[i] / b) % l;
    return out;
  }

  // ---- prompts ----

  /** Prompt states c [B, Lt, D] (own encoder or precomputed embeddings, then the projector MLP). */
  private promptStates(text: TextBatch): Tensor {
    const e = this.textEncoder
      ? this.textEncoder.forward(text.ids!, text.mask, text.batch, text.length)
      : this.dtype === 'float64' ? new Tensor(Float64Array.from(text.embeddings!.f), text.embeddings!.shape) : text.embeddings!;
    return this.textProj!.forward(e);
  }

  /** The cross-attention mask [B, L, Lt]: every query position of row b may attend to row b's prompt tokens. */
  private static crossMask(text: TextBatch, queries: number): Uint8Array {
    const lt = text.length;
    const mask = new Uint8Array(text.batch * queries * lt);
    for (let i = 0; i < text.batch; i++) {
      const row = text.mask.subarray(i * lt, (i + 1) * lt);
      for (let q = 0; q < queries; q++) mask.set(row, (i * queries + q) * lt);
    }
    return mask;
  }

  // ---- full forward ----

  /** Hidden states after the final norm, h [B, P+1, D], for the input [SOS + class, t_1 … t_P]: row b reads
   * tokens[b·stride … b·stride + P). Records autograd unless called under noGrad. */
  private hiddenStates(tokens: Int32Array, stride: number, p: number, cond: ArCondition, drop: Drop = noDrop): Tensor {
    const b = conditionBatch(cond);
    const d = this.config.dim;
    let x = reshape(this.sosEmbedding(cond), [b, 1, d]); // [B, 1, D]
    if (p > 0) {
      const ids = new Int32Array(b * p);
      for (let i = 0; i < b; i++) ids.set(tokens.subarray(i * stride, i * stride + p), i * p);
      x = concat([x, this.tokenEmbedding(new Tensor(ids, [b, p]))], 1); // [B, P+1, D]
    }
    x = drop(add(x, slice(this.posEmb, 0, 0, p + 1))); // + positions [P+1, D]
    const text = isTextBatch(cond) ? cond : null;
    const c = text ? this.promptStates(text) : null; // [B, Lt, D]
    const mask = text ? FlexAR.crossMask(text, p + 1) : null;
    for (const block of this.blocks) x = block.forward(x, c ? { ...block.cross!.keysValues(c), mask: mask! } : null, undefined, drop);
    return rmsNorm(x, this.norm, this.config.norm_eps);
  }

  /** Full recomputation (no cache), under noGrad: tokensPrefix [B·P] (P = 0 … R−1 tokens per row), condition:
   * classes [B] (−1 = null) or prompts → hidden states after the final norm [B, P+1, D]; row P predicts token P+1. */
  forwardHidden(tokensPrefix: Int32Array, cond: ArCondition): Tensor {
    const b = conditionBatch(cond);
    if (b === 0) throw new Error('forwardHidden: empty batch');
    const p = tokensPrefix.length / b;
    if (!Number.isInteger(p) || p < 0 || p >= this.config.num_tokens) {
      throw new Error(`forwardHidden: ${tokensPrefix.length} tokens for ${b} rows: need 0..${this.config.num_tokens - 1} tokens per row`);
    }
    this.checkCondition(cond, b, 'forwardHidden');
    this.checkTokens(tokensPrefix, 'forwardHidden');
    return noGrad(() => this.hiddenStates(tokensPrefix, p, p, cond));
  }

  /**
   * Next-token cross-entropy, mean nats per token, with autograd: tokens [B·L] (L = 1 … R tokens per row, row-major),
   * condition: classes [B] (−1 = null class) or prompts (the empty prompt is the null one); condition dropout is the
   * caller's. Input [SOS + class, t_1 … t_{L−1}], targets t_1 … t_L.
   */
  loss(tokens: Int32Array, cond: ArCondition, opts: ArLossOptions = {}): Tensor {
    const b = conditionBatch(cond);
    if (b === 0) throw new Error('loss: empty batch');
    const l = tokens.length / b;
    if (!Number.isInteger(l) || l < 1 || l > this.config.num_tokens) {
      throw new Error(`loss: ${tokens.length} tokens for ${b} rows: need 1..${this.config.num_tokens} tokens per row`);
    }
    this.checkCondition(cond, b, 'loss');
    this.checkTokens(tokens, 'loss');
    const pDrop = this.config.dropout;
    const rng = opts.dropoutRng;
    const drop: Drop = rng && pDrop > 0 ? (x) => dropout(x, pDrop, rng) : noDrop;
    const h = reshape(this.hiddenStates(tokens, l, l - 1, cond, drop), [b * l, this.config.dim]); // [N, D]
    const targets = new Tensor(tokens, [b * l]);
    if (this.head) return crossEntropy(linear(h, this.head), targets);
    const dh = this.digitHead!;
    let total: Tensor | null = null;
    let x = h; // x_j [N, D]
    for (let j = 0; j < this.config.fsq_levels.length; j++) {
      const dj = new Tensor(this.digitsOf(tokens, j), [b * l]);
      const ce = crossEntropy(dh.logitsFrom(x, j), dj);
      if (opts.digitLosses) opts.digitLosses[j] = ce.item();
      total = total === null ? ce : add(total, ce);
      if (j < this.config.fsq_levels.length - 1) x = dh.addDigit(x, j, dj);
    }
    return total!;
  }

  // ---- cached inference ----

  /** A KV cache for `batch` sequences: keys and values [B, R, H, hd] per layer. */
  createCache(batch: number): ArCache {
    if (!Number.isInteger(batch) || batch < 1) throw new Error(`createCache: batch must be a positive integer, got ${batch}`);
    const { num_tokens: r, head_dim: hd, depth } = this.config;
    const shape = [batch, r, numHeads(this.config), hd];
    return unpooled(() => {
      const keys = Array.from({ length: depth }, () => Tensor.zeros(shape, this.dtype));
      const values = Array.from({ length: depth }, () => Tensor.zeros(shape, this.dtype));
      const masks = Array.from({ length: r }, (_, t) => {
        const m = new Uint8Array(r);
        m.fill(1, 0, t + 1);
        return m;
      });
      return new ArCache(batch, keys, values, masks);
    });
  }

  /**
   * Advance every row of the cache by one position (under noGrad) and return the hidden state after the final norm
   * [B, D], which predicts the next token. prevTokens: null at the first step (the SOS slot; the condition —
   * classes [B], −1 = null class, or prompts — is read only there), else the token each row drew last [B].
   */
  step(cache: ArCache, prevTokens: Int32Array | null, cond: ArCondition): Tensor {
    const b = cache.batch;
    const t = cache.position;
    if (t >= this.config.num_tokens) throw new Error(`step: the cache is full (${this.config.num_tokens} positions)`);
    if (t === 0) {
      if (prevTokens !== null) throw new Error('step: the first step (the SOS slot) takes prevTokens = null');
      this.checkCondition(cond, b, 'step');
      if (isTextBatch(cond)) {
        // the prompt's keys and values of every layer, once per generation (kept outside the step's buffer pool)
        cache.cross = noGrad(() => unpooled(() => {
          const c = this.promptStates(cond);
          const kv = this.blocks.map((block) => block.cross!.keysValues(c));
          return { keys: kv.map((e) => e.k), values: kv.map((e) => e.v), mask: FlexAR.crossMask(cond, 1) };
        }));
      }
    } else {
      if (prevTokens === null) throw new Error(`step: position ${t} needs the previous tokens`);
      if (prevTokens.length !== b) throw new Error(`step: ${prevTokens.length} previous tokens for a batch of ${b}`);
      this.checkTokens(prevTokens, 'step');
    }
    const d = this.config.dim;
    const hidden = noGrad(() => withInferencePool(this._pool, () => {
      const e = t === 0 ? this.sosEmbedding(cond) : this.tokenEmbedding(new Tensor(prevTokens!, [b])); // [B, D]
      let x = reshape(add(e, slice(this.posEmb, 0, t, t + 1)), [b, 1, d]); // [B, 1, D]
      const cross = cache.cross;
      for (let l = 0; l < this.blocks.length; l++) {
        const c = cross ? { k: cross.keys[l], v: cross.values[l], mask: cross.mask } : null;
        x = this.blocks[l].step(x, cache.keys[l], cache.values[l], t, cache.masks[t], c);
      }
      return reshape(rmsNorm(x, this.norm, this.config.norm_eps), [b, d]);
    }));
    cache.position = t + 1;
    return hidden;
  }

  /** 'flat' head: hidden [B, D] (or [..., D]) → logits [B, V], under noGrad. */
  flatLogits(hidden: Tensor): Tensor {
    if (!this.head) throw new Error(`flatLogits: this model has the '${this.config.head}' head (use digitLogits)`);
    const head = this.head;
    return noGrad(() => linear(hidden, head));
  }

  /**
   * 'digits' head: the logits of digit j of the next token [B, L_j], under noGrad, given the hidden states [B, D]
   * and the digits 0..j−1 already drawn: prevDigits [B, j] (or [B, n] with only the first j columns read).
   */
  digitLogits(hidden: Tensor, prevDigits: Int32Array, j: number): Tensor {
    const dh = this.digitHead;
    if (!dh) throw new Error(`digitLogits: this model has the '${this.config.head}' head (use flatLogits)`);
    const levels = this.config.fsq_levels;
    if (!Number.isInteger(j) || j < 0 || j >= levels.length) throw new Error(`digitLogits: digit ${j} is outside 0..${levels.length - 1}`);
    const b = hidden.shape[0];
    if (hidden.ndim !== 2 || hidden.shape[1] !== this.config.dim) throw new Error(`digitLogits: hidden must be [B, ${this.config.dim}], got [${hidden.shape.join(', ')}]`);
    const stride = j === 0 ? 0 : prevDigits.length / b;
    if (j > 0 && (!Number.isInteger(stride) || stride < j)) {
      throw new Error(`digitLogits: prevDigits has ${prevDigits.length} entries; need [${b}, ${j}] (or [${b}, ${levels.length}])`);
    }
    return noGrad(() => {
      let x = hidden;
      for (let i = 0; i < j; i++) {
        const di = new Int32Array(b);
        for (let r = 0; r < b; r++) {
          const v = prevDigits[r * stride + i];
          if (!(v >= 0 && v < levels[i])) throw new Error(`digitLogits: digit ${i} of row ${r} is ${v}, outside 0..${levels[i] - 1}`);
          di[r] = v;
        }
        x = dh.addDigit(x, i, new Tensor(di, [b]));
      }
      return dh.logitsFrom(x, j);
    });
  }

  // ---- files ----

  /** Every weight as safetensors data in `dtype` (default F32), by name. */
  stateDict(dtype: ArWeightDtype = 'F32'): Map<string, TensorData> {
    const out = new Map<string, TensorData>();
    for (const [name, t] of this.namedParameters()) {
      const values = t.f instanceof Float32Array ? t.f : Float32Array.from(t.f);
      const shape = [...t.shape];
      if (dtype === 'F16') out.set(name, { dtype, shape, data: float32ToFloat16(values) });
      else if (dtype === 'BF16') out.set(name, { dtype, shape, data: float32ToBfloat16(values) });
      else out.set(name, { dtype, shape, data: Float32Array.from(values) });
    }
    return out;
  }

  /** Copy weights into this model: every name must be present with this model's shape, no extra names; `where`
   * (a file) is named in errors. */
  loadStateDict(tensors: Map<string, TensorData>, where: string): void {
    const expected = this.namedParameters();
    const names = new Set(expected.map(([n]) => n));
    for (const name of tensors.keys()) {
      if (!names.has(name)) throw new Error(`${where}: tensor '${name}' is not a weight of this AR model (config ${this.config.head} head, depth ${this.config.depth})`);
    }
    for (const [name, t] of expected) {
      const src = tensors.get(name);
      if (!src) throw new Error(`${where}: tensor '${name}' [${t.shape.join(', ')}] is missing`);
      if (src.shape.length !== t.shape.length || src.shape.some((s, i) => s !== t.shape[i])) {
        throw new Error(`${where}: tensor '${name}' has shape [${src.shape.join(', ')}], the config needs [${t.shape.join(', ')}]`);
      }
      if (src.dtype !== 'F32' && src.dtype !== 'F16' && src.dtype !== 'BF16' && src.dtype !== 'F64') {
        throw new Error(`${where}: tensor '${name}' has dtype ${src.dtype}; weights must be F32, F16, BF16 or F64`);
      }
      t.f.set(toFloat32(src));
    }
  }

  /**
   * Write the weights and config to a safetensors file (atomically): the config as JSON under the metadata key
   * `flextok_ar_config`, plus the caller's metadata (e.g. the tokenizer it was trained on, sampling defaults).
   * dtype F16 or BF16 halves the file (the shipped model must stay ≤ 20 MB).
   */
  save(file: string, metadata: Record<string, string> = {}, opts: { dtype?: ArWeightDtype } = {}): void {
    for (const key of [AR_CONFIG_KEY, AR_FORMAT_KEY]) {
      if (key in metadata) throw new Error(`save: metadata key '${key}' is reserved for the model's own config`);
    }
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    writeSafetensors(file, this.stateDict(opts.dtype ?? 'F32'), { ...metadata, [AR_FORMAT_KEY]: AR_FORMAT, [AR_CONFIG_KEY]: JSON.stringify(this.config) });
  }

  /** Read a model written by save (float32 in memory whatever the file's dtype); its metadata is kept in .metadata. */
  static load(file: string): FlexAR {
    const { metadata, tensors } = readSafetensors(file);
    return FlexAR.fromSafetensors(metadata, tensors, file);
  }

  /** A model from the bytes of a file written by save (no file system: works in a browser); `label` names it in messages. */
  static fromBytes(bytes: Uint8Array, label = '<memory>'): FlexAR {
    const { metadata, tensors } = decodeSafetensors(bytes, label);
    return FlexAR.fromSafetensors(metadata, tensors, label);
  }

  /** The model of a decoded safetensors file (shared by load and fromBytes). */
  private static fromSafetensors(metadata: Record<string, string>, tensors: Map<string, TensorData>, file: string): FlexAR {
    const text = metadata[AR_CONFIG_KEY];
    if (text === undefined) throw new Error(`${file}: not a flextok AR model (no '${AR_CONFIG_KEY}' in the safetensors metadata)`);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error(`${file}: the '${AR_CONFIG_KEY}' metadata is not valid JSON (${(e as Error).message})`);
    }
    const model = new FlexAR(parseArModelConfig(json, file));
    model.loadStateDict(tensors, file);
    model.metadata = { ...metadata };
    return model;
  }
}
