// Tests of the neural-network ops (src/tensor/nn.ts): matmul, linear, softmax and losses, norms,
// attention with every mask kind, conv2d, upsampling, MSE; naive float64 references, float32 vs
// float64, and gradients against central differences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng, Tensor } from '../src/tensor/index.js';
import { assertClose, checkOp, rand64 } from './helpers/gradcheck.js';

const rng = new Rng(31337);

// ---------------------------------------------------------------------------------------------
// matmul / linear

/** Naive batched matmul with numpy broadcasting of the batch dims. */
function matmulRef(sa: number[], sb: number[]) {
  const m = sa[sa.length - 2], k = sa[sa.length - 1], n = sb[sb.length - 1];
  const ba = sa.slice(0, -2), bb = sb.slice(0, -2);
  const nd = Math.max(ba.length, bb.length);
  const pa = [...new Array(nd - ba.length).fill(1), ...ba];
  const pb = [...new Array(nd - bb.length).fill(1), ...bb];
  const batch = pa.map((d, i) => Math.max(d, pb[i]));
  const nb = batch.reduce((x, y) => x * y, 1);
  return (a: Float64Array, b: Float64Array): Float64Array => {
    const out = new Float64Array(nb * m * n);
    const idx = new Array<number>(nd).fill(0);
    for (let bi = 0; bi < nb; bi++) {
      let ia = 0, ib = 0;
      for (let d = 0; d < nd; d++) {
        ia = ia * pa[d] + (pa[d] === 1 ? 0 : idx[d]);
        ib = ib * pb[d] + (pb[d] === 1 ? 0 : idx[d]);
      }
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += a[ia * m * k + i * k + p] * b[ib * k * n + p * n + j];
          out[bi * m * n + i * n + j] = s;
        }
      }
      for (let d = nd - 1; d >= 0; d--) {
        if (++idx[d] < batch[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  };
}

test('matmul: 2-D, batched, broadcast batch, 2-D b with batched a', () => {
  const cases: [number[], number[]][] = [
    [[3, 4], [4, 5]],
    [[2, 3, 4], [2, 4, 5]],
    [[2, 1, 3, 4], [3, 4, 2]],
    [[3, 4], [2, 4, 5]],
    [[2, 3, 4], [1, 4, 5]],
    [[2, 2, 3, 4], [4, 5]],
    [[1, 7], [7, 1]],
  ];
  for (const [sa, sb] of cases) {
    const a = rand64(sa, rng), b = rand64(sb, rng);
    checkOp({ label: `matmul [${sa}] @ [${sb}]`, inputs: [a, b], fn: T.matmul, ref: matmulRef(sa, sb) });
  }
  assert.throws(() => T.matmul(rand64([2, 3], rng), rand64([4, 2], rng)), /inner dimensions/);
  assert.throws(() => T.matmul(rand64([3], rng), rand64([3, 2], rng)), /≥2-d/);
});

test('linear with and without bias, 2-D and 3-D input', () => {
  const w = rand64([5, 4], rng), bias = rand64([5], rng);
  const ref = (withBias: boolean) => (x: Float64Array, wd: Float64Array, bd?: Float64Array): Float64Array => {
    const rows = x.length / 4;
    const out = new Float64Array(rows * 5);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < 5; o++) {
        let s = withBias ? bd![o] : 0;
        for (let i = 0; i < 4; i++) s += x[r * 4 + i] * wd[o * 4 + i];
        out[r * 5 + o] = s;
      }
    }
    return out;
  };
  for (const shape of [[3, 4], [2, 3, 4]]) {
    const x = rand64(shape, rng);
    checkOp({ label: `linear [${shape}] + bias`, inputs: [x, w, bias], fn: (xx, ww, bb) => T.linear(xx, ww, bb), ref: ref(true) });
    checkOp({ label: `linear [${shape}] no bias`, inputs: [x, w], fn: (xx, ww) => T.linear(xx, ww), ref: ref(false) });
  }
  assert.deepEqual(T.linear(rand64([2, 3, 4], rng), w).shape, [2, 3, 5]);
  assert.throws(() => T.linear(rand64([2, 3], rng), w), /features/);
});

/** Round a float32 value to bfloat16 (nearest, ties to even), independently of the engine. */
function bf16(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer);
  u[0] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) & 0xffff0000;
  return f[0];
}

test('linear with bf16 operands: forward equals float64 math on bf16-rounded inputs; gradients are full precision', () => {
  const x = Tensor.rand([6, 16], rng, 'float32', -1, 1).requireGrad();
  const w = Tensor.rand([5, 16], rng, 'float32', -1, 1).requireGrad();
  const b = Tensor.rand([5], rng, 'float32', -1, 1);
  const y = T.linear(x, w, b, { bf16: true });
  const expected = new Float64Array(30);
  for (let r = 0; r < 6; r++) for (let o = 0; o < 5; o++) {
    let s = b.data[o];
    for (let i = 0; i < 16; i++) s += bf16(x.data[r * 16 + i]) * bf16(w.data[o * 16 + i]);
    expected[r * 5 + o] = s;
  }
  assertClose(y.data, expected, { rtol: 1e-5 }, 'bf16 linear');
  y.backward(Tensor.ones(y.shape));
  const full = [x, w].map((t) => t.detach().requireGrad());
  T.linear(full[0], full[1], b).backward(Tensor.ones(y.shape));
  assert.deepEqual(x.grad!.toArray(), full[0].grad!.toArray());
  assert.deepEqual(w.grad!.toArray(), full[1].grad!.toArray());
});

// ---------------------------------------------------------------------------------------------
// softmax and losses

/** Softmax (or log-softmax) along `dim` of a tensor with `shape`, naive float64. */
function softmaxRef(shape: number[], dim: number, log: boolean) {
  const outer = shape.slice(0, dim).reduce((a, b) => a * b, 1);
  const red = shape[dim];
  const inner = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
  return (x: Float64Array): Float64Array => {
    const out = new Float64Array(x.length);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        let mx = -Infinity;
        for (let r = 0; r < red; r++) mx = Math.max(mx, x[(o * red + r) * inner + i]);
        let s = 0;
        for (let r = 0; r < red; r++) s += Math.exp(x[(o * red + r) * inner + i] - mx);
        for (let r = 0; r < red; r++) {
          const at = (o * red + r) * inner + i;
          out[at] = log ? x[at] - mx - Math.log(s) : Math.exp(x[at] - mx) / s;
        }
      }
    }
    return out;
  };
}

test('softmax and logSoftmax over the last and a middle dim', () => {
  const shape = [2, 3, 5];
  const x = rand64(shape, rng, -3, 3);
  for (const dim of [-1, 1, 0]) {
    const d = dim < 0 ? dim + 3 : dim;
    checkOp({ label: `softmax dim ${dim}`, inputs: [x], fn: (t) => T.softmax(t, dim), ref: softmaxRef(shape, d, false) });
    checkOp({ label: `logSoftmax dim ${dim}`, inputs: [x], fn: (t) => T.logSoftmax(t, dim), ref: softmaxRef(shape, d, true) });
  }
  // large logits do not overflow
  const big = T.softmax(Tensor.from([1000, 1000, -1000], [1, 3], 'float32')).toArray();
  assertClose(big, [0.5, 0.5, 0], { rtol: 1e-6 }, 'softmax of large logits');
});

test('crossEntropy: plain, ignoreIndex, labelSmoothing', () => {
  const n = 5, c = 4;
  const logits = rand64([n, c], rng, -2, 2);
  const targets = Tensor.from([3, 0, 1, 3, 2], [n], 'int32');
  const withIgnore = Tensor.from([3, -100, 1, -100, 2], [n], 'int32');
  const ref = (t: Int32Array, ignore: number, eps: number) => (x: Float64Array) => {
    const lsm = softmaxRef([n, c], 1, true)(x);
    let loss = 0, count = 0;
    for (let i = 0; i < n; i++) {
      if (t[i] === ignore) continue;
      count++;
      for (let j = 0; j < c; j++) loss -= ((j === t[i] ? 1 - eps : 0) + eps / c) * lsm[i * c + j];
    }
    return [loss / count];
  };
  checkOp({ label: 'crossEntropy', inputs: [logits], fn: (x) => T.crossEntropy(x, targets), ref: ref(targets.i, -100, 0) });
  checkOp({ label: 'crossEntropy ignoreIndex -100', inputs: [logits], fn: (x) => T.crossEntropy(x, withIgnore), ref: ref(withIgnore.i, -100, 0) });
  const ign7 = Tensor.from([7, 0, 7, 3, 2], [n], 'int32');
  checkOp({ label: 'crossEntropy ignoreIndex 7', inputs: [logits], fn: (x) => T.crossEntropy(x, ign7, { ignoreIndex: 7 }), ref: ref(ign7.i, 7, 0) });
  checkOp({ label: 'crossEntropy labelSmoothing 0.1', inputs: [logits], fn: (x) => T.crossEntropy(x, targets, { labelSmoothing: 0.1 }), ref: ref(targets.i, -100, 0.1) });
  checkOp({
    label: 'crossEntropy ignore + smoothing', inputs: [logits], fn: (x) => T.crossEntropy(x, withIgnore, { labelSmoothing: 0.2 }),
    ref: ref(withIgnore.i, -100, 0.2),
  });
  // all ignored: loss 0 and zero gradient
  const all = Tensor.full([n], -100, 'int32');
  const l = logits.clone().requireGrad();
  const loss = T.crossEntropy(l, all);
  assert.equal(loss.item(), 0);
  loss.backward();
  assert.ok(l.grad!.toArray().every((v) => v === 0));
  assert.throws(() => T.crossEntropy(logits, Tensor.from([0, 1, 2, 3, 4], [n], 'int32')), /out of range/);
});

test('mseLoss', () => {
  const p = rand64([3, 4], rng), t = rand64([3, 4], rng);
  checkOp({
    label: 'mseLoss', inputs: [p, t], fn: T.mseLoss,
    ref: (a, b) => [Array.from(a).reduce((s, v, i) => s + (v - b[i]) ** 2, 0) / a.length],
  });
});

// ---------------------------------------------------------------------------------------------
// norms

function layerNormRef(dim: number, eps: number, affine: boolean, rmsOnly = false) {
  return (x: Float64Array, w?: Float64Array, b?: Float64Array): Float64Array => {
    const out = new Float64Array(x.length);
    for (let r = 0; r < x.length / dim; r++) {
      const row = x.subarray(r * dim, (r + 1) * dim);
      const mu = rmsOnly ? 0 : row.reduce((a, v) => a + v, 0) / dim;
      const v = row.reduce((a, val) => a + (val - mu) ** 2, 0) / dim;
      for (let i = 0; i < dim; i++) {
        let y = (row[i] - mu) / Math.sqrt(v + eps);
        if (affine && w) y *= w[i];
        if (affine && b) y += b[i];
        out[r * dim + i] = y;
      }
    }
    return out;
  };
}

test('layerNorm with and without affine', () => {
  const x = rand64([2, 3, 8], rng, -2, 2);
  const w = rand64([8], rng, 0.5, 1.5), b = rand64([8], rng);
  checkOp({ label: 'layerNorm', inputs: [x], fn: (t) => T.layerNorm(t), ref: layerNormRef(8, 1e-5, false) });
  checkOp({ label: 'layerNorm eps 1e-6', inputs: [x], fn: (t) => T.layerNorm(t, null, null, 1e-6), ref: layerNormRef(8, 1e-6, false) });
  checkOp({ label: 'layerNorm affine', inputs: [x, w, b], fn: (t, ww, bb) => T.layerNorm(t, ww, bb), ref: layerNormRef(8, 1e-5, true) });
  checkOp({ label: 'layerNorm weight only', inputs: [x, w], fn: (t, ww) => T.layerNorm(t, ww), ref: layerNormRef(8, 1e-5, true) });
});

test('modulateSegments and addGatedSegments (AdaLN): naive reference, float32 vs float64, gradients; bad indices', () => {
  // 7 rows of width 5 in 3 segments; scale/shift/gate have one row per segment.
  const segIdx = [0, 0, 2, 1, 2, 2, 0];
  const seg = Tensor.from(segIdx, [7], 'int32');
  const x = rand64([7, 5], rng, -2, 2), y = rand64([7, 5], rng, -2, 2);
  const a = rand64([3, 5], rng, -1.5, 1.5), c = rand64([3, 5], rng, -1, 1);
  const ref = (perRowC: boolean) => (xx: Float64Array, aa: Float64Array, cc: Float64Array) =>
    Float64Array.from(xx, (v, i) => {
      const r = Math.floor(i / 5), j = i % 5;
      return v * aa[segIdx[r] * 5 + j] + cc[(perRowC ? r : segIdx[r]) * 5 + j];
    });
  checkOp({ label: 'modulateSegments', inputs: [x, a, c], fn: (t, s, b) => T.modulateSegments(t, s, b, seg), ref: ref(false) });
  checkOp({
    label: 'addGatedSegments', inputs: [y, a, x],
    fn: (t, g, res) => T.addGatedSegments(res, g, t, seg),
    ref: ref(true),
  });
  // equals the unfused composition the official code computes (indexSelect + mul + add)
  const fused = T.modulateSegments(x, a, c, seg);
  const unfused = T.add(T.mul(x, T.indexSelect(a, 0, seg)), T.indexSelect(c, 0, seg));
  assert.deepEqual(Array.from(fused.data), Array.from(unfused.data));
  assert.throws(() => T.modulateSegments(x, a, c, Tensor.from([0, 0, 3, 1, 2, 2, 0], [7], 'int32')), /segment index 3 at row 2 is outside \[0, 3\)/);
  assert.throws(() => T.modulateSegments(x, a, c, Tensor.from([0, 1], [2], 'int32')), /2 segment indices for 7 rows/);
  assert.throws(() => T.addGatedSegments(c, a, x, seg), /offset has shape \[3, 5\], expected 7 rows of 5/);
});

test('rmsNorm with and without weight', () => {
  const x = rand64([4, 6], rng, -2, 2);
  const w = rand64([6], rng, 0.5, 1.5);
  checkOp({ label: 'rmsNorm', inputs: [x], fn: (t) => T.rmsNorm(t), ref: layerNormRef(6, 1e-5, false, true) });
  checkOp({ label: 'rmsNorm weight', inputs: [x, w], fn: (t, ww) => T.rmsNorm(t, ww), ref: layerNormRef(6, 1e-5, true, true) });
});

test('groupNorm with and without affine, 4-D and 3-D input', () => {
  const ref = (shape: number[], groups: number, affine: boolean) => (x: Float64Array, w?: Float64Array, b?: Float64Array): Float64Array => {
    const [n, c] = shape;
    const sp = x.length / (n * c);
    const cpg = c / groups;
    const out = new Float64Array(x.length);
    for (let i = 0; i < n; i++) {
      for (let g = 0; g < groups; g++) {
        const start = (i * c + g * cpg) * sp;
        const vals = x.subarray(start, start + cpg * sp);
        const mu = vals.reduce((a, v) => a + v, 0) / vals.length;
        const v = vals.reduce((a, val) => a + (val - mu) ** 2, 0) / vals.length;
        for (let j = 0; j < vals.length; j++) {
          const ch = g * cpg + Math.floor(j / sp);
          let y = (vals[j] - mu) / Math.sqrt(v + 1e-5);
          if (affine) y = y * w![ch] + b![ch];
          out[start + j] = y;
        }
      }
    }
    return out;
  };
  const shape = [2, 6, 3, 2];
  const x = rand64(shape, rng, -2, 2);
  const w = rand64([6], rng, 0.5, 1.5), b = rand64([6], rng);
  checkOp({ label: 'groupNorm 3 groups', inputs: [x], fn: (t) => T.groupNorm(t, 3), ref: ref(shape, 3, false) });
  checkOp({ label: 'groupNorm 2 groups affine', inputs: [x, w, b], fn: (t, ww, bb) => T.groupNorm(t, 2, ww, bb), ref: ref(shape, 2, true) });
  checkOp({ label: 'groupNorm 6 groups affine', inputs: [x, w, b], fn: (t, ww, bb) => T.groupNorm(t, 6, ww, bb), ref: ref(shape, 6, true) });
  const x3 = rand64([2, 4, 5], rng, -2, 2);
  checkOp({ label: 'groupNorm 3-D', inputs: [x3], fn: (t) => T.groupNorm(t, 2), ref: ref([2, 4, 5], 2, false) });
  assert.throws(() => T.groupNorm(x, 4), /divisible/);
});

// ---------------------------------------------------------------------------------------------
// attention

/** Naive attention on [B, L, H, D] tensors; allowed(b, i, j) says whether query i may see key j. */
function attentionRef(shape: [number, number, number, number], lk: number, allowed: (b: number, i: number, j: number) => boolean, scale?: number) {
  const [bsz, lq, h, d] = shape;
  const sc = scale ?? 1 / Math.sqrt(d);
  return (q: Float64Array, k: Float64Array, v: Float64Array): Float64Array => {
    const out = new Float64Array(q.length);
    for (let b = 0; b < bsz; b++) {
      for (let hh = 0; hh < h; hh++) {
        for (let i = 0; i < lq; i++) {
          const s: number[] = [];
          const js: number[] = [];
          for (let j = 0; j < lk; j++) {
            if (!allowed(b, i, j)) continue;
            let dot = 0;
            for (let e = 0; e < d; e++) dot += q[((b * lq + i) * h + hh) * d + e] * k[((b * lk + j) * h + hh) * d + e];
            s.push(dot * sc);
            js.push(j);
          }
          if (js.length === 0) continue; // fully masked row → 0
          const mx = Math.max(...s);
          const p = s.map((x) => Math.exp(x - mx));
          const z = p.reduce((a, x) => a + x, 0);
          for (let e = 0; e < d; e++) {
            let acc = 0;
            js.forEach((j, t) => (acc += (p[t] / z) * v[((b * lk + j) * h + hh) * d + e]));
            out[((b * lq + i) * h + hh) * d + e] = acc;
          }
        }
      }
    }
    return out;
  };
}

function maskFrom(lq: number, lk: number, allowed: (i: number, j: number) => boolean, batch = 1): Uint8Array {
  const m = new Uint8Array(batch * lq * lk);
  for (let b = 0; b < batch; b++) for (let i = 0; i < lq; i++) for (let j = 0; j < lk; j++) m[(b * lq + i) * lk + j] = allowed(i, j) ? 1 : 0;
  return m;
}

test('attention: no mask, causal, cross-attention with Lq ≠ Lk, custom scale', () => {
  const [B, L, H, D] = [2, 5, 2, 4];
  const q = rand64([B, L, H, D], rng), k = rand64([B, L, H, D], rng), v = rand64([B, L, H, D], rng);
  checkOp({ label: 'attention (no mask)', inputs: [q, k, v], fn: (a, b, c) => T.attention(a, b, c), ref: attentionRef([B, L, H, D], L, () => true) });
  checkOp({ label: 'attention (causal)', inputs: [q, k, v], fn: (a, b, c) => T.attention(a, b, c, { causal: true }), ref: attentionRef([B, L, H, D], L, (_, i, j) => j <= i) });
  const k7 = rand64([B, 7, H, D], rng), v7 = rand64([B, 7, H, D], rng);
  checkOp({ label: 'attention (Lk = 7, scale 0.3)', inputs: [q, k7, v7], fn: (a, b, c) => T.attention(a, b, c, { scale: 0.3 }), ref: attentionRef([B, L, H, D], 7, () => true, 0.3) });
  assert.throws(() => T.attention(q, k, rand64([B, L, H, 3], rng)), /do not match/);
  assert.throws(() => T.attention(q, k, v, { mask: new Uint8Array(3) }), /mask/);
});

test('attention: block-diagonal packing of two sequences and per-batch masks', () => {
  const [B, L, H, D] = [1, 7, 2, 3];
  const seg = [0, 0, 0, 1, 1, 1, 1]; // sequence lengths 3 and 4 packed into one row
  const q = rand64([B, L, H, D], rng), k = rand64([B, L, H, D], rng), v = rand64([B, L, H, D], rng);
  const mask = maskFrom(L, L, (i, j) => seg[i] === seg[j]);
  checkOp({ label: 'attention (block diagonal)', inputs: [q, k, v], fn: (a, b, c) => T.attention(a, b, c, { mask }), ref: attentionRef([B, L, H, D], L, (_, i, j) => seg[i] === seg[j]) });
  checkOp({
    label: 'attention (block diagonal + causal)', inputs: [q, k, v], fn: (a, b, c) => T.attention(a, b, c, { mask, causal: true }),
    ref: attentionRef([B, L, H, D], L, (_, i, j) => seg[i] === seg[j] && j <= i),
  });
  // packing = running the two sequences separately
  const outPacked = T.attention(q, k, v, { mask });
  for (const [s, e] of [[0, 3], [3, 7]]) {
    const part = (t: Tensor) => T.slice(t, 1, s, e);
    const alone = T.attention(part(q), part(k), part(v));
    assertClose(part(outPacked).data, alone.data, { rtol: 1e-12 }, `packed segment ${s}:${e}`);
  }
  // a [B, Lq, Lk] mask: different per batch entry
  const B2 = 2;
  const q2 = rand64([B2, 4, 1, 3], rng), k2 = rand64([B2, 4, 1, 3], rng), v2 = rand64([B2, 4, 1, 3], rng);
  const per = new Uint8Array(B2 * 16);
  const allow = (b: number, i: number, j: number) => (b === 0 ? j <= 1 || i === j : (i + j) % 2 === 0);
  for (let b = 0; b < B2; b++) for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) per[(b * 4 + i) * 4 + j] = allow(b, i, j) ? 1 : 0;
  checkOp({ label: 'attention (per-batch mask)', inputs: [q2, k2, v2], fn: (a, b, c) => T.attention(a, b, c, { mask: per }), ref: attentionRef([B2, 4, 1, 3], 4, allow) });
});

test('attention: causal among registers (patches see their sample\'s patches; registers see patches and earlier registers)', () => {
  // two packed samples: sample 0 has 3 patches + 2 registers, sample 1 has 2 patches + 3 registers
  const layout: { sample: number; reg: number }[] = [];
  for (const [s, p, r] of [[0, 3, 2], [1, 2, 3]]) {
    for (let i = 0; i < p; i++) layout.push({ sample: s, reg: -1 });
    for (let i = 0; i < r; i++) layout.push({ sample: s, reg: i });
  }
  const L = layout.length;
  const allowed = (i: number, j: number): boolean => {
    const a = layout[i], b = layout[j];
    if (a.sample !== b.sample) return false;
    if (b.reg < 0) return true; // everyone sees the patches of their own sample
    return a.reg >= 0 && b.reg <= a.reg; // registers see registers with index ≤ own; patches see no registers
  };
  const mask = maskFrom(L, L, allowed);
  const [B, H, D] = [1, 2, 4];
  const q = rand64([B, L, H, D], rng), k = rand64([B, L, H, D], rng), v = rand64([B, L, H, D], rng);
  checkOp({ label: 'attention (causal among registers)', inputs: [q, k, v], fn: (a, b, c) => T.attention(a, b, c, { mask }), ref: attentionRef([B, L, H, D], L, (_, i, j) => allowed(i, j)) });
});

test('attention: a fully masked row gives zero output and zero gradients', () => {
  const [B, L, H, D] = [2, 4, 2, 3];
  const dead = 2; // query row 2 may attend to nothing (in both batch entries)
  const mask = maskFrom(L, L, (i, j) => i !== dead && j !== 1);
  const q = rand64([B, L, H, D], rng), k = rand64([B, L, H, D], rng), v = rand64([B, L, H, D], rng);
  checkOp({ label: 'attention (fully masked row)', inputs: [q, k, v], fn: (a, b, c) => T.attention(a, b, c, { mask }), ref: attentionRef([B, L, H, D], L, (_, i, j) => i !== dead && j !== 1) });
  for (const dt of ['float32', 'float64'] as const) {
    const [qq, kk, vv] = [q, k, v].map((t) => t.toDType(dt).requireGrad());
    const out = T.attention(qq, kk, vv, { mask });
    out.backward(Tensor.ones(out.shape, dt));
    const rowOf = (flat: number) => Math.floor(flat / (H * D)) % L;
    out.data.forEach((x, f) => {
      assert.ok(Number.isFinite(x));
      if (rowOf(f) === dead) assert.equal(x, 0, `${dt}: output of the masked row`);
    });
    qq.grad!.data.forEach((g, f) => {
      assert.ok(Number.isFinite(g), `${dt}: dq finite`);
      if (rowOf(f) === dead) assert.equal(g, 0, `${dt}: dq of the masked row`);
    });
    // key/value 1 is never attended to: zero gradients there
    kk.grad!.data.forEach((g, f) => rowOf(f) === 1 && assert.equal(g, 0, `${dt}: dk of the unused key`));
    vv.grad!.data.forEach((g, f) => rowOf(f) === 1 && assert.equal(g, 0, `${dt}: dv of the unused value`));
  }
  // every row masked (the whole mask zero)
  const none = new Uint8Array(L * L);
  const qq = q.clone().requireGrad();
  const out = T.attention(qq, k, v, { mask: none });
  assert.ok(out.toArray().every((x) => x === 0));
  out.backward(Tensor.ones(out.shape, 'float64'));
  assert.ok(qq.grad!.toArray().every((x) => x === 0));
});

// ---------------------------------------------------------------------------------------------
// convolution and upsampling

/** Direct convolution, NCHW / OIHW, zero padding [top, bottom, left, right]. */
function conv2dRef(xs: number[], ws: number[], stride: [number, number], pad: [number, number, number, number], withBias: boolean) {
  const [n, c, h, w] = xs;
  const [o, , kh, kw] = ws;
  const [pt, pb, pl, pr] = pad;
  const oh = Math.floor((h + pt + pb - kh) / stride[0]) + 1;
  const ow = Math.floor((w + pl + pr - kw) / stride[1]) + 1;
  return (x: Float64Array, wt: Float64Array, b?: Float64Array): Float64Array => {
    const out = new Float64Array(n * o * oh * ow);
    for (let i = 0; i < n; i++) for (let oc = 0; oc < o; oc++) for (let y = 0; y < oh; y++) for (let xx = 0; xx < ow; xx++) {
      let s = withBias ? b![oc] : 0;
      for (let ic = 0; ic < c; ic++) for (let ky = 0; ky < kh; ky++) for (let kx = 0; kx < kw; kx++) {
        const iy = y * stride[0] - pt + ky, ix = xx * stride[1] - pl + kx;
        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
        s += x[((i * c + ic) * h + iy) * w + ix] * wt[((oc * c + ic) * kh + ky) * kw + kx];
      }
      out[((i * o + oc) * oh + y) * ow + xx] = s;
    }
    return out;
  };
}

test('conv2d: stride 1 and 2, symmetric and asymmetric padding, 1×1, with and without bias', () => {
  const cases: { x: number[]; w: number[]; stride: number | [number, number]; padding: number | [number, number, number, number]; bias: boolean }[] = [
    { x: [2, 3, 5, 5], w: [4, 3, 3, 3], stride: 1, padding: 1, bias: true },
    { x: [1, 2, 6, 5], w: [3, 2, 3, 3], stride: 2, padding: 1, bias: false },
    { x: [1, 2, 6, 6], w: [2, 2, 3, 3], stride: 2, padding: [0, 1, 0, 1], bias: true },
    { x: [2, 2, 4, 5], w: [3, 2, 2, 3], stride: [1, 2], padding: [1, 0, 2, 1], bias: true },
    { x: [2, 4, 3, 3], w: [5, 4, 1, 1], stride: 1, padding: 0, bias: true },
    { x: [1, 3, 3, 4], w: [2, 3, 1, 1], stride: 1, padding: 0, bias: false },
    { x: [1, 2, 5, 5], w: [2, 2, 1, 1], stride: 2, padding: 0, bias: true },
  ];
  for (const cs of cases) {
    const stride: [number, number] = typeof cs.stride === 'number' ? [cs.stride, cs.stride] : cs.stride;
    const pad: [number, number, number, number] = typeof cs.padding === 'number' ? [cs.padding, cs.padding, cs.padding, cs.padding] : cs.padding;
    const x = rand64(cs.x, rng), w = rand64(cs.w, rng), b = rand64([cs.w[0]], rng);
    const label = `conv2d x[${cs.x}] w[${cs.w}] stride ${stride} pad ${pad} bias=${cs.bias}`;
    const opts = { stride: cs.stride, padding: cs.padding };
    if (cs.bias) checkOp({ label, inputs: [x, w, b], fn: (xx, ww, bb) => T.conv2d(xx, ww, bb, opts), ref: conv2dRef(cs.x, cs.w, stride, pad, true) });
    else checkOp({ label, inputs: [x, w], fn: (xx, ww) => T.conv2d(xx, ww, null, opts), ref: conv2dRef(cs.x, cs.w, stride, pad, false) });
  }
  assert.deepEqual(T.conv2d(rand64([1, 2, 6, 6], rng), rand64([2, 2, 3, 3], rng), null, { stride: 2, padding: [0, 1, 0, 1] }).shape, [1, 2, 3, 3]);
  assert.throws(() => T.conv2d(rand64([1, 2, 4, 4], rng), rand64([2, 3, 3, 3], rng)), /channels/);
});

test('conv2d in several bands of output rows (small colsBudget) equals the direct convolution', () => {
  const cases: { x: number[]; w: number[]; stride: [number, number]; pad: [number, number, number, number] }[] = [
    { x: [2, 2, 7, 5], w: [3, 2, 3, 3], stride: [1, 1], pad: [1, 1, 1, 1] },
    { x: [1, 2, 8, 6], w: [2, 2, 3, 3], stride: [2, 2], pad: [0, 1, 0, 1] },
    { x: [1, 3, 6, 5], w: [2, 3, 3, 2], stride: [2, 1], pad: [2, 1, 1, 0] },
    // bottom padding as tall as the kernel: the last band reads only padding
    { x: [1, 2, 4, 4], w: [2, 2, 3, 3], stride: [1, 1], pad: [0, 3, 1, 1] },
  ];
  for (const cs of cases) {
    const [, c, , w] = cs.x;
    const [, , kh, kw] = cs.w;
    const outW = Math.floor((w + cs.pad[2] + cs.pad[3] - kw) / cs.stride[1]) + 1;
    const ckk = c * kh * kw;
    const x = rand64(cs.x, rng), wt = rand64(cs.w, rng), b = rand64([cs.w[0]], rng);
    for (const bandRows of [1, 2, 3]) {
      const opts = { stride: cs.stride, padding: cs.pad, colsBudget: bandRows * ckk * outW };
      checkOp({
        label: `conv2d x[${cs.x}] w[${cs.w}] stride ${cs.stride} pad ${cs.pad} in bands of ${bandRows} rows`,
        inputs: [x, wt, b], fn: (xx, ww, bb) => T.conv2d(xx, ww, bb, opts), ref: conv2dRef(cs.x, cs.w, cs.stride, cs.pad, true),
      });
    }
  }
});

test('upsampleNearest2x', () => {
  const shape = [2, 3, 2, 3];
  const x = rand64(shape, rng);
  checkOp({
    label: 'upsampleNearest2x', inputs: [x], fn: T.upsampleNearest2x,
    ref: (d) => {
      const [n, c, h, w] = shape;
      const out = new Float64Array(n * c * 4 * h * w);
      for (let p = 0; p < n * c; p++) for (let y = 0; y < 2 * h; y++) for (let xx = 0; xx < 2 * w; xx++) {
        out[(p * 2 * h + y) * 2 * w + xx] = d[(p * h + (y >> 1)) * w + (xx >> 1)];
      }
      return out;
    },
  });
});

// ---------------------------------------------------------------------------------------------
// larger shapes: float32 (native SIMD main loops, cache blocking, thread splits) vs float64

test('float32 vs float64 at sizes that reach SIMD main loops, GEMM blocking and threading', () => {
  const big = { finiteDiff: false } as const;
  // crosses the native GEMM's MC = 336 and KC = 384 blocks; the batched one folds rows into one GEMM
  checkOp({ ...big, label: 'matmul [340, 390] @ [390, 40]', inputs: [rand64([340, 390], rng), rand64([390, 40], rng)], fn: T.matmul });
  checkOp({ ...big, label: 'matmul [3, 40, 70] @ [3, 70, 50]', inputs: [rand64([3, 40, 70], rng), rand64([3, 70, 50], rng)], fn: T.matmul });
  checkOp({ ...big, label: 'linear [2, 60, 96] → 72', inputs: [rand64([2, 60, 96], rng), rand64([72, 96], rng), rand64([72], rng)], fn: (x, w, b) => T.linear(x, w, b) });
  const [B, Lq, Lk, H, D] = [2, 70, 90, 2, 64];
  const q = rand64([B, Lq, H, D], rng), k = rand64([B, Lk, H, D], rng), v = rand64([B, Lk, H, D], rng);
  checkOp({ ...big, label: 'attention 70×90 (no mask)', inputs: [q, k, v], fn: (a, b, c) => T.attention(a, b, c) });
  const k2 = rand64([B, Lq, H, D], rng), v2 = rand64([B, Lq, H, D], rng);
  checkOp({ ...big, label: 'attention 70×70 causal', inputs: [q, k2, v2], fn: (a, b, c) => T.attention(a, b, c, { causal: true }) });
  const mask = maskFrom(Lq, Lk, (i, j) => (i * 7 + j * 3) % 5 !== 0 && i !== 13);
  checkOp({ ...big, label: 'attention 70×90 masked', inputs: [q, k, v], fn: (a, b, c) => T.attention(a, b, c, { mask }) });
  const x = rand64([300, 131], rng, -2, 2);
  checkOp({ ...big, label: 'layerNorm [300, 131] affine', inputs: [x, rand64([131], rng), rand64([131], rng)], fn: (t, w, b) => T.layerNorm(t, w, b) });
  checkOp({ ...big, label: 'rmsNorm [300, 131]', inputs: [x, rand64([131], rng)], fn: (t, w) => T.rmsNorm(t, w) });
  checkOp({ ...big, label: 'softmax [300, 131]', inputs: [x], fn: (t) => T.softmax(t) });
  checkOp({ ...big, label: 'logSoftmax [300, 131]', inputs: [x], fn: (t) => T.logSoftmax(t) });
  checkOp({ ...big, label: 'crossEntropy [300, 131]', inputs: [x], fn: (t) => T.crossEntropy(t, Tensor.randint([300], 0, 131, new Rng(4)), { labelSmoothing: 0.1 }) });
  checkOp({ ...big, label: 'groupNorm [2, 32, 16, 16] / 8', inputs: [rand64([2, 32, 16, 16], rng), rand64([32], rng), rand64([32], rng)], fn: (t, w, b) => T.groupNorm(t, 8, w, b) });
  checkOp({ ...big, label: 'conv2d [2, 8, 20, 20] * [16, 8, 3, 3]', inputs: [rand64([2, 8, 20, 20], rng), rand64([16, 8, 3, 3], rng), rand64([16], rng)], fn: (a, w, b) => T.conv2d(a, w, b, { padding: 1 }) });
  checkOp({ ...big, label: 'conv2d stride 2 [1, 8, 21, 19]', inputs: [rand64([1, 8, 21, 19], rng), rand64([12, 8, 3, 3], rng)], fn: (a, w) => T.conv2d(a, w, null, { stride: 2, padding: [1, 0, 1, 0] }) });
});
