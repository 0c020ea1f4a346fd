// The kernel interface: every compute-heavy primitive the tensor ops are built on.
// Two backends implement it: `kernels_js/` (pure TypeScript; float32 and float64; the reference)
// and `backend_native.ts` (C++ SIMD in native/, float32; float64 calls fall back to the JS kernels).
//
// Conventions for every kernel:
// - All arrays are dense row-major (C order). Offsets/strides are in elements.
// - Output arrays are written, never reallocated; "accumulate" flags say whether to add into them.
// - A kernel never allocates a JS object per element; it loops.
// - Inputs and outputs of one call are all the same float type (all Float32Array or all Float64Array).

export type FArr = Float32Array | Float64Array;

/** C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], for b in 0..batch-1.
 * op(A) is m×k: A is stored m×k (lda ≥ k) or, if transA, k×m (lda ≥ m). op(B) is k×n likewise.
 * With beta = 0, C is overwritten (old contents, even NaN, are ignored). strideX = 0 broadcasts X. */
export interface GemmArgs {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  alpha: number;
  beta: number;
  a: FArr;
  aOffset: number;
  lda: number;
  strideA: number;
  b: FArr;
  bOffset: number;
  ldb: number;
  strideB: number;
  c: FArr;
  cOffset: number;
  ldc: number;
  strideC: number;
  batch: number;
}

/** Fused scaled-dot-product attention, token-major layout (what a Linear projection produces):
 * q: [B, Lq, H, D], k and v: [B, Lk, H, D], out: [B, Lq, H, D]; element (b, l, h, d) at ((b*L + l)*H + h)*D + d.
 * score(i, j) = scale * q_i·k_j, allowed iff (mask == null || mask[b*maskBatchStride + i*Lk + j] != 0)
 * and (!causal || j <= i). Row softmax over allowed keys; a row with no allowed key outputs 0
 * (PyTorch ≥ 2.5 semantics) and stores lse = -Infinity.
 * lse: [B, H, Lq] = log Σ_j exp(score) over allowed j, saved for the backward pass.
 * Implementations must not materialise more than a tile of scores per thread. */
export interface AttentionArgs {
  q: FArr;
  k: FArr;
  v: FArr;
  out: FArr;
  lse: FArr;
  batch: number;
  heads: number;
  lq: number;
  lk: number;
  headDim: number;
  scale: number;
  mask: Uint8Array | null;
  /** elements between the masks of consecutive batch entries; 0 = one [Lq, Lk] mask shared by the batch */
  maskBatchStride: number;
  causal: boolean;
}

/** Backward of attention. Reads q, k, v, out, lse, dOut; overwrites dq, dk, dv (same layouts as q, k, v). */
export interface AttentionBackwardArgs extends AttentionArgs {
  dOut: FArr;
  dq: FArr;
  dk: FArr;
  dv: FArr;
}

export type UnaryOp =
  | 'neg' | 'abs' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'tanh' | 'atanh' | 'sigmoid'
  | 'silu' | 'gelu_tanh' | 'gelu_erf' | 'relu' | 'sin' | 'cos' | 'square' | 'recip';

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'max' | 'min';

/** Strided broadcast description for a binary op: out has `shape` (contiguous);
 * a and b are read at offsets Σ idx[d] * aStrides[d] (stride 0 = broadcast dimension). */
export interface BroadcastArgs {
  op: BinaryOp;
  a: FArr;
  b: FArr;
  out: FArr;
  shape: number[];
  aStrides: number[];
  bStrides: number[];
}

export interface AdamWArgs {
  param: Float32Array;
  grad: Float32Array;
  m: Float32Array;
  v: Float32Array;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1 - beta1^t and 1 - beta2^t for the current step t (t starts at 1) */
  biasCorrection1: number;
  biasCorrection2: number;
}

export interface Conv2dGeom {
  channels: number;
  height: number;
  width: number;
  kh: number;
  kw: number;
  strideH: number;
  strideW: number;
  padTop: number;
  padLeft: number;
  outH: number;
  outW: number;
}

export interface Kernels {
  readonly name: 'js' | 'native' | 'wasm';

  gemm(args: GemmArgs): void;
  /** Same contract as gemm for float32 inputs, computed with A and B rounded to bfloat16
   * (accumulation in float32). Backends without a bf16 unit emulate it. */
  gemmBf16(args: GemmArgs): void;

  attentionForward(args: AttentionArgs): void;
  attentionBackward(args: AttentionBackwardArgs): void;

  /** y = f(x) elementwise over n elements (x may alias y). */
  unary(op: UnaryOp, x: FArr, y: FArr, n: number): void;
  /** dx (+)= f'(x) * dy. y = f(x) is passed too (sigmoid/tanh/exp/sqrt use it). accumulate: add into dx. */
  unaryBackward(op: UnaryOp, x: FArr, y: FArr, dy: FArr, dx: FArr, n: number, accumulate: boolean): void;
  binary(args: BroadcastArgs): void;

  /** x viewed as [outer, red, inner]: out[o, i] = Σ_r x[o, r, i]. */
  sum(x: FArr, out: FArr, outer: number, red: number, inner: number): void;
  /** out[o, i] = max_r x[o, r, i]; argmax[o, i] = first r attaining it. */
  max(x: FArr, out: FArr, argmax: Int32Array, outer: number, red: number, inner: number): void;

  /** Row softmax over the last dim: x, y: [rows, dim]. */
  softmaxForward(x: FArr, y: FArr, rows: number, dim: number): void;
  /** dx = y ⊙ (dy − Σ dy⊙y) */
  softmaxBackward(y: FArr, dy: FArr, dx: FArr, rows: number, dim: number): void;
  logSoftmaxForward(x: FArr, y: FArr, rows: number, dim: number): void;
  /** dx = dy − exp(y) Σ dy */
  logSoftmaxBackward(y: FArr, dy: FArr, dx: FArr, rows: number, dim: number): void;

  /** Segment FMA over rows of `dim`: out[r] = x[r] ⊙ a[seg[r]] + (cPerRow ? c[r] : c[seg[r]]); a has `segments` rows
   * (AdaLN modulation x·(1+scale)+shift, and gated residuals res + gate·y). seg values lie in [0, segments). */
  segmentFmaForward(x: FArr, a: FArr, c: FArr, seg: Int32Array, out: FArr, rows: number, dim: number, segments: number, cPerRow: boolean): void;
  /** Its gradients (each optional, overwritten): dx = dy ⊙ a[seg]; da[s] = Σ_{seg[r]=s} dy[r] ⊙ x[r]; dc[s] = Σ_{seg[r]=s} dy[r]. */
  segmentFmaBackward(x: FArr, a: FArr, seg: Int32Array, dy: FArr, dx: FArr | null, da: FArr | null, dc: FArr | null, rows: number, dim: number, segments: number): void;
  /** LayerNorm over the last dim: y = (x − mean) * rstd * w + b (w, b optional). mean, rstd: [rows]. */
  layerNormForward(x: FArr, w: FArr | null, b: FArr | null, y: FArr, mean: FArr, rstd: FArr, rows: number, dim: number, eps: number): void;
  /** Overwrites dx; dw and db (if given) are overwritten with the gradients summed over rows. */
  layerNormBackward(x: FArr, w: FArr | null, mean: FArr, rstd: FArr, dy: FArr, dx: FArr, dw: FArr | null, db: FArr | null, rows: number, dim: number): void;
  /** RMSNorm: y = x * rstd * w, rstd = 1/sqrt(mean(x²) + eps). */
  rmsNormForward(x: FArr, w: FArr | null, y: FArr, rstd: FArr, rows: number, dim: number, eps: number): void;
  rmsNormBackward(x: FArr, w: FArr | null, rstd: FArr, dy: FArr, dx: FArr, dw: FArr | null, rows: number, dim: number): void;
  /** GroupNorm on x: [n, channels, spatial]; groups divide channels; mean, rstd: [n, groups]; affine w, b: [channels] (optional). */
  groupNormForward(x: FArr, w: FArr | null, b: FArr | null, y: FArr, mean: FArr, rstd: FArr, n: number, channels: number, spatial: number, groups: number, eps: number): void;
  groupNormBackward(x: FArr, w: FArr | null, mean: FArr, rstd: FArr, dy: FArr, dx: FArr, dw: FArr | null, db: FArr | null, n: number, channels: number, spatial: number, groups: number): void;

  /** One image: x [C, H, W] at xOffset → cols [C*kh*kw, outH*outW] (zero padding). */
  im2col(x: FArr, xOffset: number, cols: FArr, g: Conv2dGeom): void;
  /** Adjoint of im2col: dx[C, H, W] at dxOffset += scatter of cols. */
  col2im(cols: FArr, dx: FArr, dxOffset: number, g: Conv2dGeom): void;

  /** y = x permuted: x has `shape`, y[idx permuted by perm] = x[idx]; y's shape is shape[perm[i]]. */
  permute(x: FArr | Int32Array, y: FArr | Int32Array, shape: number[], perm: number[]): void;

  /** Decoupled-weight-decay Adam step on float32 parameters, in place. */
  adamw(args: AdamWArgs): void;
}
