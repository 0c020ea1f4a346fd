// Fused scaled-dot-product attention (token-major [B, L, H, D]) forward and backward, one query row at a time.
import type { AttentionArgs, AttentionBackwardArgs } from '../kernels.js';

/** Float64 scratch buffers, grown on demand and reused across calls. */
const pool: Float64Array[] = [];
function buf(slot: number, n: number): Float64Array {
  let b = pool[slot];
  if (!b || b.length < n) { b = new Float64Array(Math.max(n, 64)); pool[slot] = b; }
  return b;
}

/** Copies head h of batch b of a [B, L, H, D] tensor into dst [L, D]. */
function gatherHead(src: ArrayLike<number>, dst: Float64Array, b: number, h: number, len: number, heads: number, headDim: number): void {
  for (let l = 0; l < len; l++) {
    const s = ((b * len + l) * heads + h) * headDim;
    const d = l * headDim;
    for (let e = 0; e < headDim; e++) dst[d + e] = src[s + e];
  }
}

/** Fills allowed[0..lk) with 1/0 for query row i; returns the number of allowed keys. */
function allowedKeys(args: AttentionArgs, b: number, i: number, allowed: Uint8Array): number {
  const { lk, mask, causal } = args;
  const jEnd = causal ? Math.min(lk, i + 1) : lk;
  let count = 0;
  if (mask) {
    const mBase = b * args.maskBatchStride + i * lk;
    for (let j = 0; j < jEnd; j++) { const a = mask[mBase + j] !== 0 ? 1 : 0; allowed[j] = a; count += a; }
  } else {
    for (let j = 0; j < jEnd; j++) allowed[j] = 1;
    count = jEnd;
  }
  for (let j = jEnd; j < lk; j++) allowed[j] = 0;
  return count;
}

let allowedScratch = new Uint8Array(64);
function allowedBuf(n: number): Uint8Array {
  if (allowedScratch.length < n) allowedScratch = new Uint8Array(Math.max(n, allowedScratch.length * 2));
  return allowedScratch;
}

/** out = softmax(scale q kᵀ over allowed keys) v; lse [B, H, Lq]; fully masked rows give 0 and -Infinity. */
export function attentionForward(args: AttentionArgs): void {
  const { q, v, k, out, lse, batch, heads, lq, lk, headDim: D, scale } = args;
  const kh = buf(0, lk * D), vh = buf(1, lk * D);
  const qRow = buf(2, D), acc = buf(3, D), scores = buf(4, lk);
  const allowed = allowedBuf(lk);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      gatherHead(k, kh, b, h, lk, heads, D);
      gatherHead(v, vh, b, h, lk, heads, D);
      for (let i = 0; i < lq; i++) {
        const qOff = ((b * lq + i) * heads + h) * D;
        const lseOff = (b * heads + h) * lq + i;
        const count = allowedKeys(args, b, i, allowed);
        if (count === 0) {
          for (let e = 0; e < D; e++) out[qOff + e] = 0;
          lse[lseOff] = -Infinity;
          continue;
        }
        for (let e = 0; e < D; e++) qRow[e] = q[qOff + e];
        let m = -Infinity;
        for (let j = 0; j < lk; j++) {
          if (!allowed[j]) continue;
          const kOff = j * D;
          let s = 0;
          for (let e = 0; e < D; e++) s += qRow[e] * kh[kOff + e];
          s *= scale;
          scores[j] = s;
          if (s > m) m = s;
        }
        for (let e = 0; e < D; e++) acc[e] = 0;
        let total = 0;
        for (let j = 0; j < lk; j++) {
          if (!allowed[j]) continue;
          const p = Math.exp(scores[j] - m);
          total += p;
          const vOff = j * D;
          for (let e = 0; e < D; e++) acc[e] += p * vh[vOff + e];
        }
        const inv = 1 / total;
        for (let e = 0; e < D; e++) out[qOff + e] = acc[e] * inv;
        lse[lseOff] = m + Math.log(total);
      }
    }
  }
}

/** Backward: p recomputed from lse; dv += p dO, dp = dO·v, ds = p (dp − Σ dO⊙O), dq += scale ds k, dk += scale ds q. */
export function attentionBackward(args: AttentionBackwardArgs): void {
  const { q, k, v, out, lse, dOut, dq, dk, dv, batch, heads, lq, lk, headDim: D, scale } = args;
  const kh = buf(0, lk * D), vh = buf(1, lk * D);
  const qRow = buf(2, D), dqRow = buf(3, D), doRow = buf(4, D);
  const dkh = buf(5, lk * D), dvh = buf(6, lk * D);
  const allowed = allowedBuf(lk);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      gatherHead(k, kh, b, h, lk, heads, D);
      gatherHead(v, vh, b, h, lk, heads, D);
      for (let t = 0; t < lk * D; t++) { dkh[t] = 0; dvh[t] = 0; }
      for (let i = 0; i < lq; i++) {
        const qOff = ((b * lq + i) * heads + h) * D;
        const rowLse = lse[(b * heads + h) * lq + i];
        const count = rowLse === -Infinity ? 0 : allowedKeys(args, b, i, allowed);
        if (count === 0) {
          for (let e = 0; e < D; e++) dq[qOff + e] = 0;
          continue;
        }
        let di = 0;
        for (let e = 0; e < D; e++) {
          qRow[e] = q[qOff + e];
          doRow[e] = dOut[qOff + e];
          dqRow[e] = 0;
          di += doRow[e] * out[qOff + e];
        }
        for (let j = 0; j < lk; j++) {
          if (!allowed[j]) continue;
          const off = j * D;
          let s = 0, dp = 0;
          for (let e = 0; e < D; e++) { s += qRow[e] * kh[off + e]; dp += doRow[e] * vh[off + e]; }
          const p = Math.exp(s * scale - rowLse);
          const dsScaled = scale * p * (dp - di);
          for (let e = 0; e < D; e++) {
            dvh[off + e] += p * doRow[e];
            dqRow[e] += dsScaled * kh[off + e];
            dkh[off + e] += dsScaled * qRow[e];
          }
        }
        for (let e = 0; e < D; e++) dq[qOff + e] = dqRow[e];
      }
      for (let j = 0; j < lk; j++) {
        const dst = ((b * lk + j) * heads + h) * D;
        const src = j * D;
        for (let e = 0; e < D; e++) { dk[dst + e] = dkh[src + e]; dv[dst + e] = dvh[src + e]; }
      }
    }
  }
}
