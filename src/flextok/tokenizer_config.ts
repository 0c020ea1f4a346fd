// Plain typed hyper-parameters of the FlexTok encoder, decoder, FSQ and sampler; field names follow
// the official constructor arguments so a checkpoint loader can copy them from the Hydra metadata.

/** Hyper-parameters shared by the encoder and decoder trunks ("FlexTransformer"). */
export interface TransformerConfig {
  /** width D */
  dim: number;
  /** number of blocks */
  depth: number;
  /** per-head width (64 in the released models); num_heads = dim / head_dim */
  head_dim: number;
  /** MLP expansion; the gated MLP's hidden width is int(2 * int(dim * mlp_ratio) / 3) */
  mlp_ratio: number;
  /** only the gated SwiGLU MLP (the trunk default) is supported */
  gated_mlp: boolean;
  qkv_bias: boolean;
  proj_bias: boolean;
  mlp_bias: boolean;
  /** LayerNorm (no affine, eps 1e-5) on each head's q and k */
  qk_norm: boolean;
  /** attention scale; defaults to the μP scale 8 / head_dim */
  attn_scale?: number;
}

/** Mask inside one sample of a packed sequence. */
export type MaskMode = 'full' | 'causal' | 'causal_last';

export interface EncoderConfig extends TransformerConfig {
  /** VAE latent channels C */
  channels_in: number;
  /** [p0, p1] (2×2 in the released models) */
  patch_sizes: [number, number];
  /** sin-cos posemb table size in patches [Hmax, Wmax] (16×16 in the released models) */
  max_sizes: [number, number];
  /** number of registers (Registers1D n_max; 256 released) */
  n_registers: number;
  /** head output width = FSQ dimension (6 for [8,8,8,5,5,5]) */
  dim_out: number;
  /** encoder packer mask (the released models use 'causal_last') */
  mask_mode: MaskMode;
}

/** Null condition of the CFG unconditional branch ("ZeroNullCond" / "LearnedNullCond"). */
export type NullCondType = 'zero' | 'learned';

export interface DecoderConfig extends TransformerConfig {
  /** VAE latent channels C (input and output) */
  channels_in: number;
  patch_sizes: [number, number];
  /** sin-cos posemb table size in patches [Hmax, Wmax] */
  max_sizes: [number, number];
  /** register slots = length of the learned 1D register posemb (256 released) */
  n_registers: number;
  /** FSQ code width (dec_from_latents dim_in) */
  dim_in: number;
  /** TimestepEmbedder frequency_embedding_size F */
  frequency_embedding_size: number;
  /** TimestepEmbedder max_timestep (frequencies are scaled by 1000 / max_timestep) */
  max_timestep: number;
  null_cond: NullCondType;
  /** LearnedNullCond: the unconditional register sequence is a single nullcond token */
  replace_with_single_token: boolean;
  /** 2 = separate modulation for patches and registers, 1 = shared */
  adaLN_expansion: 1 | 2;
  /** whether dec_to_patches has an adaLN (shift, scale) modulation */
  head_adaLN: boolean;
  /** decoder packer mask (the released models use 'full') */
  mask_mode: MaskMode;
}

/** FSQ quantisation levels per code dimension, e.g. [8, 8, 8, 5, 5, 5]. */
export type FSQLevels = number[];

export interface SamplerConfig {
  /** Euler steps T */
  steps: number;
  /** CFG scale s (1 = no guidance), or a function of t */
  guidanceScale: number | ((t: number) => number);
  /** adaptive projected guidance (APG) instead of plain CFG */
  apg: boolean;
  /** APG momentum β (official: -0.5) */
  momentum?: number;
  /** APG norm threshold r (official: 2.5) */
  normThreshold?: number;
  /** APG weight of the parallel component η (official: 0) */
  eta?: number;
}

/** Gated-MLP hidden width: int(2 * int(dim * mlp_ratio) / 3). */
export function mlpHiddenDim(cfg: Pick<TransformerConfig, 'dim' | 'mlp_ratio'>): number {
  return Math.trunc((2 * Math.trunc(cfg.dim * cfg.mlp_ratio)) / 3);
}

export function numHeads(cfg: Pick<TransformerConfig, 'dim' | 'head_dim'>): number {
  if (cfg.dim % cfg.head_dim !== 0) throw new Error(`transformer dim ${cfg.dim} is not a multiple of head_dim ${cfg.head_dim}`);
  return cfg.dim / cfg.head_dim;
}

export function attentionScale(cfg: Pick<TransformerConfig, 'head_dim' | 'attn_scale'>): number {
  return cfg.attn_scale ?? 8 / cfg.head_dim;
}
