// Neural-network ops with hand-written backward passes on fused kernels: matmul / linear,
// softmax and losses, layer/RMS/group norms, fused scaled-dot-product attention, conv2d,
// nearest upsampling.

import { kernels } from './backend.js';
import type { Conv2dGeom, FArr, GemmArgs } from './kernels.js';
import { broadcastShapes, expandTo, normDim, permute, reshape, sumToShape } from './ops.js';
import { allocData, allocUninit, record, sizeOf, Tensor } from './tensor.js';

/** A zero-filled tensor of x's dtype. */
function newLike(x: Tensor, shape: readonly number[]): Tensor {
  return new Tensor(allocData(x.dtype, sizeOf(shape)), shape);
}

/** A tensor of x's dtype with unspecified contents (pool storage is not zeroed): only for outputs that
 * a kernel overwrites (GEMM with beta = 0, norms, attention, segment FMA, ...) or a loop fills completely. */
function newOut(x: Tensor, shape: readonly number[]): Tensor {
  return new Tensor(allocUninit(x.dtype, sizeOf(shape)), shape);
}

function floatPair(a: Tensor, b: Tensor, op: string): void {
  if (a.dtype === 'int32' || b.dtype === 'int32') throw new Error(`${op}: expected float tensors`);
  if (a.dtype !== b.dtype) throw new Error(`${op}: dtype mismatch ${a.dtype} vs ${b.dtype}`);
}

/** Plain row-major GEMM call: C[batch] = op(A) op(B) (+ C if accumulate). */
export function gemm(
  a: FArr, b: FArr, c: FArr,
  m: number, n: number, k: number,
  opts: { transA?: boolean; transB?: boolean; batch?: number; strideA?: number; strideB?: number; strideC?: number; accumulate?: boolean; alpha?: number; bf16?: boolean } = {},
): void {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const args: GemmArgs = {
    transA, transB, m, n, k,
    alpha: opts.alpha ?? 1,
    beta: opts.accumulate ? 1 : 0,
    a, aOffset: 0, lda: transA ? m : k, strideA: opts.strideA ?? m * k,
    b, bOffset: 0, ldb: transB ? k : n, strideB: opts.strideB ?? k * n,
    c, cOffset: 0, ldc: n, strideC: opts.strideC ?? m * n,
    batch: opts.batch ?? 1,
  };
  if (opts.bf16 && a instanceof Float32Array) kernels().gemmBf16(args);
  else kernels().gemm(args);
}

/** Matrix product with numpy-style batch broadcasting: a [..., m, k] @ b [..., k, n] → [..., m, n].
 * 1-D operands are not promoted; use reshape. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  floatPair(a, b, 'matmul');
  if (a.ndim < 2 || b.ndim < 2) throw new Error(`matmul needs ≥2-d tensors, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  const m = a.shape[a.ndim - 2];
  const k = a.shape[a.ndim - 1];
  const k2 = b.shape[b.ndim - 2];
  const n = b.shape[b.ndim - 1];
  if (k !== k2) throw new Error(`matmul: inner dimensions differ: [${a.shape.join(', ')}] @ [${b.shape.join(', ')}]`);
  const batchShape = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = sizeOf(batchShape);
  const aFull = [...batchShape, m, k];
  const bFull = [...batchShape, k, n];
  // Rows of a 2-D b can be folded into one big GEMM.
  if (b.ndim === 2) {
    const rows = a.size / k;
    const out = newOut(a, [...a.shape.slice(0, -1), n]);
    gemm(a.f, b.f, out.f, rows, n, k);
    return record(out, 'matmul', [a, b], (g) => {
      let ga: Tensor | null = null;
      let gb: Tensor | null = null;
      if (a.requiresGrad) {
        ga = newOut(a, a.shape);
        gemm(g.f, b.f, ga.f, rows, k, n, { transB: true });
      }
      if (b.requiresGrad) {
        gb = newOut(b, b.shape);
        gemm(a.f, g.f, gb.f, k, n, rows, { transA: true });
      }
      return [ga, gb];
    });
  }
  const aB = sizeOf(a.shape.slice(0, -2)) === batch && a.ndim - 2 === batchShape.length ? a : a.ndim === 2 ? a : expandTo(a, aFull);
  const bB = sizeOf(b.shape.slice(0, -2)) === batch && b.ndim - 2 === batchShape.length ? b : expandTo(b, bFull);
  const strideA = aB.ndim === 2 ? 0 : m * k;
  const out = newOut(a, [...batchShape, m, n]);
  gemm(aB.f, bB.f, out.f, m, n, k, { batch, strideA, strideB: k * n });
  return record(out, 'matmul', [a, b], (g) => {
    let ga: Tensor | null = null;
    let gb: Tensor | null = null;
    if (a.requiresGrad) {
      const full = newOut(a, aFull);
      gemm(g.f, bB.f, full.f, m, k, n, { transB: true, batch, strideA: m * n, strideB: k * n, strideC: m * k });
      ga = sumToShape(full, a.shape);
    }
    if (b.requiresGrad) {
      const full = newOut(b, bFull);
      gemm(aB.f, g.f, full.f, k, n, m, { transA: true, batch, strideA, strideB: m * n, strideC: k * n });
      gb = sumToShape(full, b.shape);
    }
    return [ga, gb];
  });
}

/** PyTorch nn.Linear: x [..., in] @ weight[out, in]ᵀ + bias[out] → [..., out]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: { bf16?: boolean } = {}): Tensor {
  floatPair(x, weight, 'linear');
  if (weight.ndim !== 2) throw new Error(`linear: weight must be [out, in], got [${weight.shape.join(', ')}]`);
  const [nOut, nIn] = weight.shape;
  if (x.shape[x.ndim - 1] !== nIn) throw new Error(`linear: input has ${x.shape[x.ndim - 1]} features but weight expects ${nIn} ([${weight.shape.join(', ')}])`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== nOut)) throw new Error(`linear: bias must be [${nOut}], got [${bias.shape.join(', ')}]`);
  const rows = x.size / nIn;
  const out = newOut(x, [...x.shape.slice(0, -1), nOut]);
  if (bias) {
    const o = out.f;
    const bd = bias.f;
    for (let r = 0; r < rows; r++) o.set(bd, r * nOut);
  }
  gemm(x.f, weight.f, out.f, rows, nOut, nIn, { transB: true, accumulate: !!bias, bf16: opts.bf16 });
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record(out, 'linear', inputs, (g) => {
    const grads: (Tensor | null)[] = [null, null, null];
    if (x.requiresGrad) {
      const gx = newOut(x, x.shape);
      gemm(g.f, weight.f, gx.f, rows, nIn, nOut);
      grads[0] = gx;
    }
    if (weight.requiresGrad) {
      const gw = newOut(weight, weight.shape);
      gemm(g.f, x.f, gw.f, nOut, nIn, rows, { transA: true });
      grads[1] = gw;
    }
    if (bias && bias.requiresGrad) {
      const gb = newOut(bias, bias.shape);
      kernels().sum(g.f, gb.f, 1, rows, nOut);
      grads[2] = gb;
    }
    return bias ? grads : grads.slice(0, 2);
  });
}

// ---------------------------------------------------------------------------------------------
// softmax and losses

function lastDimView(x: Tensor, dim: number): { moved: Tensor; perm: number[] | null } {
  const d = normDim(dim, x.ndim);
  if (d === x.ndim - 1) return { moved: x, perm: null };
  const perm = Array.from({ length: x.ndim }, (_, i) => i);
  perm.splice(d, 1);
  perm.push(d);
  return { moved: permute(x, perm), perm };
}

function restoreDim(y: Tensor, perm: number[] | null): Tensor {
  if (!perm) return y;
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return permute(y, inv);
}

export function softmax(x: Tensor, dim = -1): Tensor {
  const { moved, perm } = lastDimView(x, dim);
  const cols = moved.shape[moved.ndim - 1];
  const rows = moved.size / cols;
  const y = newOut(moved, moved.shape);
  kernels().softmaxForward(moved.f, y.f, rows, cols);
  record(y, 'softmax', [moved], (g) => {
    const dx = newOut(moved, moved.shape);
    kernels().softmaxBackward(y.f, g.f, dx.f, rows, cols);
    return [dx];
  });
  return restoreDim(y, perm);
}

export function logSoftmax(x: Tensor, dim = -1): Tensor {
  const { moved, perm } = lastDimView(x, dim);
  const cols = moved.shape[moved.ndim - 1];
  const rows = moved.size / cols;
  const y = newOut(moved, moved.shape);
  kernels().logSoftmaxForward(moved.f, y.f, rows, cols);
  record(y, 'logSoftmax', [moved], (g) => {
    const dx = newOut(moved, moved.shape);
    kernels().logSoftmaxBackward(y.f, g.f, dx.f, rows, cols);
    return [dx];
  });
  return restoreDim(y, perm);
}

/** Mean cross-entropy of logits [N, C] against int32 targets [N]; targets equal to ignoreIndex are
 * skipped (the mean is over the rest); labelSmoothing ε mixes the one-hot target with uniform ε/C. */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: { ignoreIndex?: number; labelSmoothing?: number } = {}): Tensor {
  if (logits.ndim !== 2) throw new Error(`crossEntropy: logits must be [N, C], got [${logits.shape.join(', ')}]`);
  const [n, c] = logits.shape;
  const t = targets.i;
  if (t.length !== n) throw new Error(`crossEntropy: ${t.length} targets for ${n} rows`);
  const ignore = opts.ignoreIndex ?? -100;
  const eps = opts.labelSmoothing ?? 0;
  let count = 0;
  for (let i = 0; i < n; i++) {
    if (t[i] === ignore) continue;
    if (t[i] < 0 || t[i] >= c) throw new Error(`crossEntropy: target ${t[i]} out of range [0, ${c})`);
    count++;
  }
  const lsm = newOut(logits, logits.shape);
  kernels().logSoftmaxForward(logits.f, lsm.f, n, c);
  let loss = 0;
  const ld = lsm.f;
  for (let i = 0; i < n; i++) {
    if (t[i] === ignore) continue;
    let rowSum = 0;
    if (eps > 0) for (let j = 0; j < c; j++) rowSum += ld[i * c + j];
    loss -= (1 - eps) * ld[i * c + t[i]] + (eps / c) * rowSum;
  }
  const out = newLike(logits, []);
  out.f[0] = count > 0 ? loss / count : 0;
  return record(out, 'crossEntropy', [logits], (g) => {
    if (count === 0) return [newLike(logits, logits.shape)];
    const dx = newOut(logits, logits.shape); // every value is written below
    const s = g.data[0] / count;
    const dd = dx.f;
    // dlogits = s · (softmax − ε/C − (1 − ε)·onehot): the exp and the scaling run on the kernels (N·C values: the
    // whole cost for a large vocabulary), the one-hot and the ignored rows are fixed up per row.
    const k = kernels();
    const scalar = (v: number) => (dd instanceof Float64Array ? Float64Array.of(v) : Float32Array.of(v));
    k.unary('exp', ld, dd, n * c);
    k.binary({ op: 'mul', a: dd, b: scalar(s), out: dd, shape: [n * c], aStrides: [1], bStrides: [0] });
    if (eps > 0) k.binary({ op: 'sub', a: dd, b: scalar(s * (eps / c)), out: dd, shape: [n * c], aStrides: [1], bStrides: [0] });
    for (let i = 0; i < n; i++) {
      if (t[i] === ignore) dd.fill(0, i * c, (i + 1) * c);
      else dd[i * c + t[i]] -= s * (1 - eps);
    }
    return [dx];
  });
}

// ---------------------------------------------------------------------------------------------
// norms

/** LayerNorm over the last dim; weight/bias optional (FlexTok uses neither). */
export function layerNorm(x: Tensor, weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  const dim = x.shape[x.ndim - 1];
  const rows = x.size / dim;
  if (weight && weight.size !== dim) throw new Error(`layerNorm: weight has ${weight.size} elements, expected ${dim}`);
  if (bias && bias.size !== dim) throw new Error(`layerNorm: bias has ${bias.size} elements, expected ${dim}`);
  const y = newOut(x, x.shape);
  const mean = newOut(x, [rows]);
  const rstd = newOut(x, [rows]);
  kernels().layerNormForward(x.f, weight?.f ?? null, bias?.f ?? null, y.f, mean.f, rstd.f, rows, dim, eps);
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  return record(y, 'layerNorm', inputs, (g) => {
    const dx = newOut(x, x.shape);
    const dw = weight ? newOut(weight, weight.shape) : null;
    const db = bias ? newOut(bias, bias.shape) : null;
    kernels().layerNormBackward(x.f, weight?.f ?? null, mean.f, rstd.f, g.f, dx.f, dw?.f ?? null, db?.f ?? null, rows, dim);
    return [dx, ...(dw ? [dw] : []), ...(db ? [db] : [])];
  });
}

// ---------------------------------------------------------------------------------------------
// segment FMA: per-row affine maps whose coefficients are picked per row from a few segment rows
// (AdaLN-zero: every token of a sample, or of one part of a sample, shares one modulation row)

function segmentFma(x: Tensor, a: Tensor, c: Tensor, seg: Tensor, cPerRow: boolean, op: string): Tensor {
  floatPair(x, a, op);
  floatPair(x, c, op);
  if (seg.dtype !== 'int32') throw new Error(`${op}: segment index must be int32`);
  const dim = x.shape[x.ndim - 1];
  const rows = x.size / dim;
  const segments = a.size / dim;
  if (a.shape[a.ndim - 1] !== dim || !Number.isInteger(segments)) throw new Error(`${op}: coefficient rows [${a.shape.join(', ')}] do not match width ${dim}`);
  if (seg.size !== rows) throw new Error(`${op}: ${seg.size} segment indices for ${rows} rows`);
  const cRows = cPerRow ? rows : segments;
  if (c.size !== cRows * dim) throw new Error(`${op}: offset has shape [${c.shape.join(', ')}], expected ${cRows} rows of ${dim}`);
  const idx = seg.i;
  for (let r = 0; r < rows; r++) {
    if (idx[r] < 0 || idx[r] >= segments) throw new Error(`${op}: segment index ${idx[r]} at row ${r} is outside [0, ${segments})`);
  }
  const out = newOut(x, x.shape);
  kernels().segmentFmaForward(x.f, a.f, c.f, idx, out.f, rows, dim, segments, cPerRow);
  return record(out, op, [x, a, c], (g) => {
    const dx = x.requiresGrad ? newOut(x, x.shape) : null;
    const da = a.requiresGrad ? newOut(a, a.shape) : null;
    const dc = c.requiresGrad && !cPerRow ? newOut(c, c.shape) : null;
    kernels().segmentFmaBackward(x.f, a.f, idx, g.f, dx?.f ?? null, da?.f ?? null, dc?.f ?? null, rows, dim, segments);
    return [dx, da, cPerRow ? (c.requiresGrad ? g : null) : dc];
  });
}

/** AdaLN modulation: x [..., D] ⊙ scale[seg] + shift[seg], with scale and shift [S, D] and seg int32 (one index per row of x). */
export function modulateSegments(x: Tensor, scale: Tensor, shift: Tensor, seg: Tensor): Tensor {
  return segmentFma(x, scale, shift, seg, false, 'modulateSegments');
}

/** Gated residual: residual + gate[seg] ⊙ y, with residual and y [..., D], gate [S, D], seg int32 (one index per row). */
export function addGatedSegments(residual: Tensor, gate: Tensor, y: Tensor, seg: Tensor): Tensor {
  return segmentFma(y, gate, residual, seg, true, 'addGatedSegments');
}

export function rmsNorm(x: Tensor, weight: Tensor | null = null, eps = 1e-5): Tensor {
  const dim = x.shape[x.ndim - 1];
  const rows = x.size / dim;
  if (weight && weight.size !== dim) throw new Error(`rmsNorm: weight has ${weight.size} elements, expected ${dim}`);
  const y = newOut(x, x.shape);
  const rstd = newOut(x, [rows]);
  kernels().rmsNormForward(x.f, weight?.f ?? null, y.f, rstd.f, rows, dim, eps);
  const inputs = weight ? [x, weight] : [x];
  return record(y, 'rmsNorm', inputs, (g) => {
    const dx = newOut(x, x.shape);
    const dw = weight ? newOut(weight, weight.shape) : null;
    kernels().rmsNormBackward(x.f, weight?.f ?? null, rstd.f, g.f, dx.f, dw?.f ?? null, rows, dim);
    return dw ? [dx, dw] : [dx];
  });
}

/** GroupNorm on x [N, C, ...spatial] with affine weight/bias [C] (optional). */
export function groupNorm(x: Tensor, groups: number, weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  if (x.ndim < 2) throw new Error(`groupNorm: expected [N, C, ...], got [${x.shape.join(', ')}]`);
  const [n, c] = x.shape;
  if (c % groups !== 0) throw new Error(`groupNorm: ${c} channels are not divisible into ${groups} groups`);
  const spatial = x.size / (n * c);
  const y = newOut(x, x.shape);
  const mean = newOut(x, [n * groups]);
  const rstd = newOut(x, [n * groups]);
  kernels().groupNormForward(x.f, weight?.f ?? null, bias?.f ?? null, y.f, mean.f, rstd.f, n, c, spatial, groups, eps);
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  return record(y, 'groupNorm', inputs, (g) => {
    const dx = newOut(x, x.shape);
    const dw = weight ? newOut(weight, weight.shape) : null;
    const db = bias ? newOut(bias, bias.shape) : null;
    kernels().groupNormBackward(x.f, weight?.f ?? null, mean.f, rstd.f, g.f, dx.f, dw?.f ?? null, db?.f ?? null, n, c, spatial, groups);
    return [dx, ...(dw ? [dw] : []), ...(db ? [db] : [])];
  });
}

// ---------------------------------------------------------------------------------------------
// attention

export interface AttentionOptions {
  /** boolean mask (nonzero = may attend): [Lq, Lk] shared, or [B, Lq, Lk] */
  mask?: Uint8Array | null;
  causal?: boolean;
  /** default 1/sqrt(headDim) */
  scale?: number;
}

/** Fused scaled-dot-product attention on token-major tensors: q [B, Lq, H, D], k, v [B, Lk, H, D]
 * → [B, Lq, H, D]. Rows with no allowed key give 0. */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  floatPair(q, k, 'attention');
  floatPair(q, v, 'attention');
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4) throw new Error('attention: q, k, v must be [B, L, H, D]');
  const [batch, lq, heads, headDim] = q.shape;
  const lk = k.shape[1];
  if (k.shape[0] !== batch || k.shape[2] !== heads || k.shape[3] !== headDim || v.shape.some((d, i) => d !== k.shape[i])) {
    throw new Error(`attention: shapes q [${q.shape.join(', ')}], k [${k.shape.join(', ')}], v [${v.shape.join(', ')}] do not match`);
  }
  const mask = opts.mask ?? null;
  let maskBatchStride = 0;
  if (mask) {
    if (mask.length === lq * lk) maskBatchStride = 0;
    else if (mask.length === batch * lq * lk) maskBatchStride = lq * lk;
    else throw new Error(`attention: mask has ${mask.length} entries; expected ${lq}×${lk} or ${batch}×${lq}×${lk}`);
  }
  const out = newOut(q, q.shape);
  const lse = newOut(q, [batch, heads, lq]);
  const args = {
    q: q.f, k: k.f, v: v.f, out: out.f, lse: lse.f,
    batch, heads, lq, lk, headDim,
    scale: opts.scale ?? 1 / Math.sqrt(headDim),
    mask, maskBatchStride, causal: opts.causal ?? false,
  };
  kernels().attentionForward(args);
  return record(out, 'attention', [q, k, v], (g) => {
    const dq = newOut(q, q.shape);
    const dk = newOut(k, k.shape);
    const dv = newOut(v, v.shape);
    kernels().attentionBackward({ ...args, dOut: g.f, dq: dq.f, dk: dk.f, dv: dv.f });
    return [dq, dk, dv];
  });
}

// ---------------------------------------------------------------------------------------------
// convolution and upsampling (NCHW)

export interface Conv2dOptions {
  stride?: number | [number, number];
  /** symmetric padding, or [top, bottom, left, right] */
  padding?: number | [number, number, number, number];
  /** largest im2col buffer in elements (default CONV_COLS_BUDGET); smaller values split the
   * output rows into more bands (tests use it to exercise the banded path on small images) */
  colsBudget?: number;
}

/** 2-D convolution: x [N, C, H, W], weight [O, C, kh, kw] (OIHW), bias [O] → [N, O, outH, outW].
 * Computed as im2col + GEMM over bands of output rows, so the column buffer stays small
 * (≤ CONV_COLS_BUDGET floats) whatever the image size. */
export function conv2d(x: Tensor, weight: Tensor, bias: Tensor | null = null, opts: Conv2dOptions = {}): Tensor {
  floatPair(x, weight, 'conv2d');
  if (x.ndim !== 4 || weight.ndim !== 4) throw new Error(`conv2d: expected x [N, C, H, W] and weight [O, C, kh, kw], got [${x.shape.join(', ')}] and [${weight.shape.join(', ')}]`);
  const [n, c, h, w] = x.shape;
  const [o, cw, kh, kw] = weight.shape;
  if (c !== cw) throw new Error(`conv2d: input has ${c} channels but weight expects ${cw}`);
  if (bias && bias.size !== o) throw new Error(`conv2d: bias has ${bias.size} elements, expected ${o}`);
  const [sh, sw] = typeof opts.stride === 'number' || opts.stride === undefined ? [opts.stride ?? 1, opts.stride ?? 1] : opts.stride;
  const p = opts.padding ?? 0;
  const [pt, pb, pl, pr] = typeof p === 'number' ? [p, p, p, p] : p;
  const outH = Math.floor((h + pt + pb - kh) / sh) + 1;
  const outW = Math.floor((w + pl + pr - kw) / sw) + 1;
  if (outH <= 0 || outW <= 0) throw new Error(`conv2d: input ${h}×${w} is too small for a ${kh}×${kw} kernel`);
  const ckk = c * kh * kw;
  const hw = outH * outW;
  const chw = c * h * w;
  const is1x1 = kh === 1 && kw === 1 && sh === 1 && sw === 1 && pt === 0 && pl === 0 && pb === 0 && pr === 0;
  const K = kernels();
  const bandRows = Math.max(1, Math.min(outH, Math.floor((opts.colsBudget ?? CONV_COLS_BUDGET) / (ckk * outW))));
  const bands = planConvBands(outH, bandRows, sh, pt, kh, h);
  const maxInRows = Math.max(...bands.map((b) => b.inEnd - b.inStart));
  const cols = is1x1 ? null : allocData(x.dtype, ckk * bandRows * outW) as FArr;
  const band = is1x1 || bands.length === 1 ? null : allocData(x.dtype, c * maxInRows * w) as FArr;

  // With a single band the image is read in place (full geometry); otherwise each band's input
  // rows are first copied to `band` [c, inRows, w] so the channel stride matches its geometry.
  const bandGeom = (b: ConvBand): Conv2dGeom => band === null
    ? { channels: c, height: h, width: w, kh, kw, strideH: sh, strideW: sw, padTop: pt, padLeft: pl, outH, outW }
    : { channels: c, height: b.inEnd - b.inStart, width: w, kh, kw, strideH: sh, strideW: sw, padTop: b.padTop, padLeft: pl, outH: b.rows, outW };
  /** im2col of one band of output rows of image img → cols [ckk, rows*outW]. */
  const bandCols = (img: number, b: ConvBand): FArr => {
    const geom = bandGeom(b);
    if (band === null) {
      K.im2col(x.f, img * chw, cols!, geom);
    } else {
      const rowLen = (b.inEnd - b.inStart) * w;
      for (let ch = 0; ch < c; ch++) band.set(x.f.subarray(img * chw + (ch * h + b.inStart) * w, img * chw + (ch * h + b.inStart) * w + rowLen), ch * rowLen);
      K.im2col(band, 0, cols!, geom);
    }
    return cols!;
  };
  const gemmArgs = (a: FArr, bArr: FArr, cArr: FArr, m: number, nn: number, k: number, tA: boolean, tB: boolean, lda: number, ldb: number, ldc: number, aOff: number, bOff: number, cOff: number, beta: number) =>
    ({ transA: tA, transB: tB, m, n: nn, k, alpha: 1, beta, a, aOffset: aOff, lda, strideA: 0, b: bArr, bOffset: bOff, ldb, strideB: 0, c: cArr, cOffset: cOff, ldc, strideC: 0, batch: 1 });

  const out = newOut(x, [n, o, outH, outW]);
  for (let img = 0; img < n; img++) {
    const oBase = img * o * hw;
    if (bias) for (let oo = 0; oo < o; oo++) out.f.fill(bias.data[oo], oBase + oo * hw, oBase + (oo + 1) * hw);
    if (is1x1) {
      K.gemm(gemmArgs(weight.f, x.f, out.f, o, hw, c, false, false, c, hw, hw, 0, img * chw, oBase, bias ? 1 : 0));
      continue;
    }
    for (const b of bands) {
      const cl = bandCols(img, b);
      const ncols = b.rows * outW;
      // out[:, r0*outW : +ncols] (+)= W [o, ckk] @ cols [ckk, ncols]
      K.gemm(gemmArgs(weight.f, cl, out.f, o, ncols, ckk, false, false, ckk, ncols, hw, 0, 0, oBase + b.r0 * outW, bias ? 1 : 0));
    }
  }
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record(out, 'conv2d', inputs, (g) => {
    const gx = x.requiresGrad ? newLike(x, x.shape) : null;
    const gw = weight.requiresGrad ? newLike(weight, weight.shape) : null;
    const gb = bias && bias.requiresGrad ? newLike(bias, bias.shape) : null;
    const dcols = gx && !is1x1 ? allocData(x.dtype, ckk * bandRows * outW) as FArr : null;
    const dband = gx && band ? allocData(x.dtype, c * maxInRows * w) as FArr : null;
    let first = true;
    for (let img = 0; img < n; img++) {
      const gBase = img * o * hw;
      if (gb) {
        const tmp = allocData(x.dtype, o) as FArr;
        K.sum(g.f.subarray(gBase, gBase + o * hw), tmp, o, hw, 1);
        for (let oo = 0; oo < o; oo++) gb.f[oo] += tmp[oo];
      }
      if (is1x1) {
        // gW [o, c] += g [o, hw] @ x [c, hw]ᵀ ; gx [c, hw] = Wᵀ @ g
        if (gw) K.gemm(gemmArgs(g.f, x.f, gw.f, o, c, hw, false, true, hw, hw, c, gBase, img * chw, 0, first ? 0 : 1));
        if (gx) K.gemm(gemmArgs(weight.f, g.f, gx.f, c, hw, o, true, false, c, hw, hw, 0, gBase, img * chw, 0));
        first = false;
        continue;
      }
      for (const b of bands) {
        const ncols = b.rows * outW;
        const gOff = gBase + b.r0 * outW;
        if (gw) {
          const cl = bandCols(img, b);
          // gW [o, ckk] += g_band [o, ncols] @ cols [ckk, ncols]ᵀ
          K.gemm(gemmArgs(g.f, cl, gw.f, o, ckk, ncols, false, true, hw, ncols, ckk, gOff, 0, 0, first ? 0 : 1));
          first = false;
        }
        if (gx) {
          // dcols [ckk, ncols] = Wᵀ @ g_band
          K.gemm(gemmArgs(weight.f, g.f, dcols!, ckk, ncols, o, true, false, ckk, hw, ncols, 0, gOff, 0, 0));
          const geom = bandGeom(b);
          if (dband === null) K.col2im(dcols!, gx.f, img * chw, geom);
          else {
            const rowLen = (b.inEnd - b.inStart) * w;
            dband.fill(0, 0, c * rowLen);
            K.col2im(dcols!, dband, 0, geom);
            for (let ch = 0; ch < c; ch++) {
              const dst = img * chw + (ch * h + b.inStart) * w;
              for (let i = 0; i < rowLen; i++) gx.f[dst + i] += dband[ch * rowLen + i];
            }
          }
        }
      }
    }
    return bias ? [gx, gw, gb] : [gx, gw];
  });
}

/** Largest im2col buffer (in elements) conv2d allocates: 4M floats = 16 MB in float32. */
const CONV_COLS_BUDGET = 1 << 22;

interface ConvBand {
  /** first output row and number of output rows */
  r0: number;
  rows: number;
  /** input rows [inStart, inEnd) the band reads, clipped to the image */
  inStart: number;
  inEnd: number;
  /** zero rows above inStart that the band's first output row needs */
  padTop: number;
}

function planConvBands(outH: number, bandRows: number, sh: number, pt: number, kh: number, h: number): ConvBand[] {
  const bands: ConvBand[] = [];
  for (let r0 = 0; r0 < outH; r0 += bandRows) {
    const rows = Math.min(bandRows, outH - r0);
    const first = r0 * sh - pt;
    const last = (r0 + rows - 1) * sh - pt + kh; // exclusive
    const inStart = Math.max(0, first);
    const inEnd = Math.max(inStart, Math.min(h, last));
    bands.push({ r0, rows, inStart, inEnd, padTop: inStart - first });
  }
  return bands;
}

/** Nearest-neighbour ×2 upsampling of x [N, C, H, W] → [N, C, 2H, 2W]. */
export function upsampleNearest2x(x: Tensor): Tensor {
  if (x.ndim !== 4) throw new Error(`upsampleNearest2x: expected [N, C, H, W], got [${x.shape.join(', ')}]`);
  const [n, c, h, w] = x.shape;
  const out = newOut(x, [n, c, 2 * h, 2 * w]);
  const xd = x.f;
  const od = out.f;
  const W2 = 2 * w;
  for (let p = 0; p < n * c; p++) {
    const xi = p * h * w;
    const oi = p * 4 * h * w;
    for (let y = 0; y < h; y++) {
      const row = oi + 2 * y * W2;
      for (let xx = 0; xx < w; xx++) {
        const v = xd[xi + y * w + xx];
        od[row + 2 * xx] = v;
        od[row + 2 * xx + 1] = v;
      }
      od.copyWithin(row + W2, row, row + W2);
    }
  }
  return record(out, 'upsampleNearest2x', [x], (g) => {
    const dx = newOut(x, x.shape);
    const gd = g.f;
    const dd = dx.f;
    for (let p = 0; p < n * c; p++) {
      const xi = p * h * w;
      const oi = p * 4 * h * w;
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < w; xx++) {
          const a = oi + 2 * y * W2 + 2 * xx;
          dd[xi + y * w + xx] = gd[a] + gd[a + 1] + gd[a + W2] + gd[a + W2 + 1];
        }
      }
    }
    return [dx];
  });
}

/** Mean squared error (mean over all elements). */
export function mseLoss(pred: Tensor, target: Tensor): Tensor {
  floatPair(pred, target, 'mseLoss');
  if (pred.size !== target.size) throw new Error(`mseLoss: sizes differ: [${pred.shape.join(', ')}] vs [${target.shape.join(', ')}]`);
  const pd = pred.f;
  const td = target.f;
  let s = 0;
  for (let i = 0; i < pd.length; i++) {
    const d = pd[i] - td[i];
    s += d * d;
  }
  const out = newLike(pred, []);
  out.f[0] = s / pd.length;
  return record(out, 'mseLoss', [pred, target], (g) => {
    const scale = (2 * g.data[0]) / pd.length;
    const gp = newOut(pred, pred.shape);
    for (let i = 0; i < pd.length; i++) gp.f[i] = scale * (pd[i] - td[i]);
    let gt: Tensor | null = null;
    if (target.requiresGrad) {
      gt = newOut(target, target.shape);
      for (let i = 0; i < pd.length; i++) gt.f[i] = -gp.f[i];
    }
    return [pred.requiresGrad ? gp : null, gt];
  });
}

export { reshape };
