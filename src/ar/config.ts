// The hyper-parameters of the stage-2 autoregressive model (FlexAR) as plain typed data, their validating
// parser, and the FSQ digit arithmetic that maps a tokenizer id to its per-dimension digits and back.

/** How the next token is predicted. 'flat': one softmax over the whole codebook (the official FlexAR head).
 * 'digits': the token's FSQ digits one after another, p(t) = Π_j p(d_j | d_<j, h) (see model.ts). */
export type ArHead = 'flat' | 'digits';

export interface ArModelConfig {
  /** tokenizer codebook size V (= Π fsq_levels), e.g. 64000 */
  vocab_size: number;
  /** the tokenizer's FSQ levels, e.g. [8, 8, 8, 5, 5, 5]; id = Σ_j digit_j · basis_j, dimension 0 least significant */
  fsq_levels: number[];
  /** R: the most tokens per image (the learned position table has R rows), e.g. 32 */
  num_tokens: number;
  /** number of classes (≥ 1 for a class-conditional model, 0 for a text-conditional one); class −1 is the null
   * class (zero class embedding) */
  num_classes: number;
  /** width D */
  dim: number;
  /** number of blocks */
  depth: number;
  /** per-head width; heads = dim / head_dim */
  head_dim: number;
  /** SwiGLU hidden width = mlp_ratio · dim · 2/3 rounded up to a multiple of 8 (see mlpHidden) */
  mlp_ratio: number;
  /** RMSNorm (learned gain, shared by the heads) on each head's q and k */
  qk_norm: boolean;
  head: ArHead;
  /** epsilon of every RMSNorm */
  norm_eps: number;
  /** digits head: hidden width of each per-digit MLP (default dim) */
  digit_hidden: number;
  /** text conditioning (null: class-conditional); see ArTextConfig */
  text: ArTextConfig | null;
  /** training only: dropout probability on the input embeddings and on every residual branch's output (nanoGPT's
   * embedding and residual dropout; 0 = none). Inference never drops. */
  dropout: number;
}

/**
 * Text conditioning: per-token prompt embeddings [Lt, D_text] — from the model's own word-level Transformer encoder
 * (`vocab` given) or precomputed elsewhere, e.g. by T5 (`vocab` null) — pass an MLP to the width D and every block
 * cross-attends to them (padding masked; the empty prompt, no tokens at all, is the null condition).
 */
export interface ArTextConfig {
  /** the own encoder's words (ids 0..|vocab|−1); null = precomputed embeddings of width `dim` */
  vocab: string[] | null;
  /** D_text: width of the prompt embeddings (and of the own encoder) */
  dim: number;
  /** most prompt tokens Lt (the own encoder's position table has this many rows) */
  max_len: number;
  /** own encoder: number of bidirectional Transformer blocks (0: word + position embeddings only) */
  depth: number;
  /** own encoder: per-head width (divides dim) */
  head_dim: number;
}

const KEYS: readonly (keyof ArModelConfig)[] = [
  'vocab_size', 'fsq_levels', 'num_tokens', 'num_classes', 'dim', 'depth', 'head_dim', 'mlp_ratio', 'qk_norm', 'head', 'norm_eps', 'digit_hidden', 'text', 'dropout',
];
const TEXT_KEYS: readonly (keyof ArTextConfig)[] = ['vocab', 'dim', 'max_len', 'depth', 'head_dim'];

/** SwiGLU hidden width: mlp_ratio · dim · 2/3 (the LLaMA parameter-count match of a 4× GELU MLP), rounded UP to a
 * multiple of 8 (GEMM-friendly widths): d256 × 4 → 688. */
export function mlpHidden(cfg: Pick<ArModelConfig, 'dim' | 'mlp_ratio'>): number {
  return 8 * Math.ceil((cfg.mlp_ratio * cfg.dim * 2) / 3 / 8);
}

export function numHeads(cfg: Pick<ArModelConfig, 'dim' | 'head_dim'>): number {
  return cfg.dim / cfg.head_dim;
}

/** basis_j = Π_{i<j} L_i (dimension 0 least significant): [8,8,8,5,5,5] → [1, 8, 64, 512, 2560, 12800]. */
export function fsqBasis(levels: readonly number[]): number[] {
  const basis: number[] = [];
  let b = 1;
  for (const l of levels) {
    basis.push(b);
    b *= l;
  }
  return basis;
}

/** The FSQ digits of a token id: digit_j = ⌊id / basis_j⌋ mod L_j. */
export function tokenToDigits(id: number, levels: readonly number[], out: Int32Array = new Int32Array(levels.length)): Int32Array {
  let rest = id;
  for (let j = 0; j < levels.length; j++) {
    out[j] = rest % levels[j];
    rest = Math.floor(rest / levels[j]);
  }
  return out;
}

/** The token id of FSQ digits: Σ_j digit_j · basis_j. */
export function digitsToToken(digits: ArrayLike<number>, levels: readonly number[]): number {
  let id = 0;
  for (let j = levels.length - 1; j >= 0; j--) id = id * levels[j] + digits[j];
  return id;
}

function fail(where: string, field: string, problem: string): never {
  throw new Error(`${where}: AR model config field '${field}' ${problem}`);
}

function positiveInt(o: Record<string, unknown>, key: string, where: string): number {
  const v = o[key];
  if (v === undefined) fail(where, key, 'is missing');
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) fail(where, key, `must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Validate a parsed JSON object as an ArModelConfig. Required: vocab_size, fsq_levels, num_tokens, num_classes,
 * dim, depth. Defaults: head_dim 64, mlp_ratio 4, qk_norm true, head 'flat', norm_eps 1e-5, digit_hidden = dim,
 * dropout 0, text null (text: vocab null, depth 0, head_dim min(64, dim)).
 * Unknown fields are an error (a typo would otherwise be ignored silently); `where` names the source in errors.
 */
export function parseArModelConfig(json: unknown, where: string): ArModelConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${where}: the AR model config must be a JSON object`);
  const o = json as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(KEYS as readonly string[]).includes(k)) fail(where, k, `is not known (known fields: ${KEYS.join(', ')})`);
  }
  const vocab_size = positiveInt(o, 'vocab_size', where);
  const levels = o.fsq_levels;
  if (levels === undefined) fail(where, 'fsq_levels', 'is missing');
  if (!Array.isArray(levels) || levels.length === 0 || !levels.every((l) => typeof l === 'number' && Number.isInteger(l) && l >= 2)) {
    fail(where, 'fsq_levels', `must be a non-empty list of integers ≥ 2, got ${JSON.stringify(levels)}`);
  }
  const product = (levels as number[]).reduce((a, b) => a * b, 1);
  if (product !== vocab_size) fail(where, 'fsq_levels', `[${levels.join(', ')}] has product ${product}, which differs from vocab_size ${vocab_size}`);
  const num_tokens = positiveInt(o, 'num_tokens', where);
  const text = o.text === undefined || o.text === null ? null : parseTextConfig(o.text, where);
  const num_classes = text ? nonNegativeInt(o, 'num_classes', where) : positiveInt(o, 'num_classes', where);
  const dim = positiveInt(o, 'dim', where);
  const depth = positiveInt(o, 'depth', where);
  const head_dim = o.head_dim === undefined ? 64 : positiveInt(o, 'head_dim', where);
  if (dim % head_dim !== 0) fail(where, 'head_dim', `(${head_dim}) must divide dim (${dim})`);
  const mlp_ratio = o.mlp_ratio === undefined ? 4 : o.mlp_ratio;
  if (typeof mlp_ratio !== 'number' || !Number.isFinite(mlp_ratio) || mlp_ratio <= 0) fail(where, 'mlp_ratio', `must be a positive number, got ${JSON.stringify(mlp_ratio)}`);
  const qk_norm = o.qk_norm === undefined ? true : o.qk_norm;
  if (typeof qk_norm !== 'boolean') fail(where, 'qk_norm', `must be true or false, got ${JSON.stringify(qk_norm)}`);
  const head = o.head === undefined ? 'flat' : o.head;
  if (head !== 'flat' && head !== 'digits') fail(where, 'head', `must be 'flat' or 'digits', got ${JSON.stringify(head)}`);
  const norm_eps = o.norm_eps === undefined ? 1e-5 : o.norm_eps;
  if (typeof norm_eps !== 'number' || !Number.isFinite(norm_eps) || norm_eps <= 0) fail(where, 'norm_eps', `must be a positive number, got ${JSON.stringify(norm_eps)}`);
  const digit_hidden = o.digit_hidden === undefined ? dim : positiveInt(o, 'digit_hidden', where);
  const dropout = o.dropout === undefined ? 0 : o.dropout;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) fail(where, 'dropout', `must be a number in [0, 1), got ${JSON.stringify(dropout)}`);
  return { vocab_size, fsq_levels: [...(levels as number[])], num_tokens, num_classes, dim, depth, head_dim, mlp_ratio, qk_norm, head, norm_eps, digit_hidden, text, dropout };
}

function nonNegativeInt(o: Record<string, unknown>, key: string, where: string): number {
  const v = o[key];
  if (v === undefined) fail(where, key, 'is missing');
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) fail(where, key, `must be an integer ≥ 0, got ${JSON.stringify(v)}`);
  return v;
}

function parseTextConfig(json: unknown, where: string): ArTextConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(where, 'text', 'must be an object or null');
  const o = json as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(TEXT_KEYS as readonly string[]).includes(k)) fail(where, `text.${k}`, `is not known (known fields: ${TEXT_KEYS.join(', ')})`);
  }
  const vocab = o.vocab === undefined ? null : o.vocab;
  if (vocab !== null) {
    if (!Array.isArray(vocab) || vocab.length === 0 || !vocab.every((w) => typeof w === 'string' && w !== '' && !/\s/.test(w))) {
      fail(where, 'text.vocab', 'must be null or a non-empty list of words (strings without spaces)');
    }
    if (new Set(vocab).size !== vocab.length) fail(where, 'text.vocab', 'lists a word twice');
  }
  const dim = positiveInt(o, 'dim', `${where} (text)`);
  const max_len = positiveInt(o, 'max_len', `${where} (text)`);
  const depth = o.depth === undefined ? 0 : nonNegativeInt(o, 'depth', `${where} (text)`);
  const head_dim = o.head_dim === undefined ? Math.min(64, dim) : positiveInt(o, 'head_dim', `${where} (text)`);
  if (dim % head_dim !== 0) fail(where, 'text.head_dim', `(${head_dim}) must divide text.dim (${dim})`);
  if (vocab === null && depth !== 0) fail(where, 'text.depth', 'must be 0 with precomputed embeddings (vocab null): there is no own encoder');
  return { vocab: vocab === null ? null : [...(vocab as string[])], dim, max_len, depth, head_dim };
}
