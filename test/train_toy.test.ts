// End-to-end training check: a tiny 2-layer pre-norm transformer (embeddings, causal fused
// attention, SwiGLU MLP, layerNorm, linear head) learns to reverse a short sequence with AdamW.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { AdamW, clipGradNorm, parameters, Rng, Tensor } from '../src/tensor/index.js';

const VOCAB = 8; // symbols 0..7
const SEP = VOCAB; // separator token
const N = 6; // sequence length to reverse
const L = 2 * N + 1; // x (N) + SEP + reversed x (N)
const D = 32;
const HEADS = 2;
const FF = 64;

interface Block {
  ln1w: Tensor; ln1b: Tensor; wqkv: Tensor; bqkv: Tensor; wo: Tensor;
  ln2w: Tensor; ln2b: Tensor; w1: Tensor; w3: Tensor; w2: Tensor;
}
interface Model { tok: Tensor; pos: Tensor; blocks: Block[]; lnfw: Tensor; lnfb: Tensor; head: Tensor }

function initModel(rng: Rng): Model {
  const w = (shape: number[], std: number) => Tensor.randn(shape, rng, 'float32', std).requireGrad();
  const ones = (n: number) => Tensor.ones([n]).requireGrad();
  const zeros = (n: number) => Tensor.zeros([n]).requireGrad();
  const blocks: Block[] = [];
  for (let i = 0; i < 2; i++) {
    blocks.push({
      ln1w: ones(D), ln1b: zeros(D),
      wqkv: w([3 * D, D], 1 / Math.sqrt(D)), bqkv: zeros(3 * D),
      wo: w([D, D], 0.5 / Math.sqrt(D)),
      ln2w: ones(D), ln2b: zeros(D),
      w1: w([FF, D], 1 / Math.sqrt(D)), w3: w([FF, D], 1 / Math.sqrt(D)),
      w2: w([D, FF], 0.5 / Math.sqrt(FF)),
    });
  }
  return { tok: w([VOCAB + 1, D], 0.5), pos: w([L, D], 0.5), blocks, lnfw: ones(D), lnfb: zeros(D), head: w([VOCAB, D], 1 / Math.sqrt(D)) };
}

/** Logits [B·L, VOCAB] for token ids [B, L]. */
function forward(m: Model, ids: Tensor): Tensor {
  const b = ids.shape[0];
  let h = T.add(T.embedding(m.tok, ids), m.pos); // [B, L, D]
  for (const blk of m.blocks) {
    const qkv = T.linear(T.layerNorm(h, blk.ln1w, blk.ln1b), blk.wqkv, blk.bqkv); // [B, L, 3D]
    const heads = (i: number) => T.reshape(T.slice(qkv, 2, i * D, (i + 1) * D), [b, L, HEADS, D / HEADS]);
    const att = T.attention(heads(0), heads(1), heads(2), { causal: true });
    h = T.add(h, T.linear(T.reshape(att, [b, L, D]), blk.wo));
    const x = T.layerNorm(h, blk.ln2w, blk.ln2b);
    h = T.add(h, T.linear(T.mul(T.silu(T.linear(x, blk.w1)), T.linear(x, blk.w3)), blk.w2));
  }
  return T.linear(T.reshape(T.layerNorm(h, m.lnfw, m.lnfb), [b * L, D]), m.head);
}

/** A batch of sequences x · SEP · reverse(x); targets are next tokens on the reversed half only. */
function batch(rng: Rng, b: number): { ids: Tensor; targets: Tensor } {
  const ids = new Int32Array(b * L);
  const targets = new Int32Array(b * L).fill(-100);
  for (let s = 0; s < b; s++) {
    const x = Array.from({ length: N }, () => rng.randint(0, VOCAB));
    const seq = [...x, SEP, ...[...x].reverse()];
    ids.set(seq, s * L);
    // position p predicts token p + 1; only the answer tokens count
    for (let p = N; p < L - 1; p++) targets[s * L + p] = seq[p + 1];
  }
  return { ids: new Tensor(ids, [b, L]), targets: new Tensor(targets, [b * L]) };
}

test(`toy transformer learns to reverse a sequence with AdamW (cross-entropy < 0.05) on backend ${T.backendName()}`, () => {
  const rng = new Rng(Number(process.env.FLEXTOK_TOY_SEED ?? 1234));
  const model = initModel(rng);
  const params = parameters(model);
  assert.equal(params.length, 2 + 2 * 10 + 3);
  const opt = new AdamW(params, { lr: 1e-2, betas: [0.9, 0.98], weightDecay: 0.01 });
  const steps = 300;
  const t0 = Date.now();
  let loss = Infinity;
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    opt.lr = T.warmupCosineLr(step, { baseLr: 1e-2, warmupSteps: 20, totalSteps: steps, minLr: 1e-3 });
    const { ids, targets } = batch(rng, 32);
    opt.zeroGrad();
    const l = T.crossEntropy(forward(model, ids), targets);
    l.backward();
    clipGradNorm(params, 1);
    opt.step();
    loss = l.item();
    losses.push(loss);
    // stop once the recent training losses are all well below the target
    if (losses.length >= 10 && losses.slice(-10).every((v) => v < 0.01)) break;
  }
  assert.ok(Number.isFinite(loss));
  if (process.env.FLEXTOK_TOY_VERBOSE) console.log(`${losses.length} steps in ${Date.now() - t0} ms; last loss ${loss}`);
  // evaluate on fresh sequences: loss and exact-match accuracy of greedy predictions
  const { ids, targets } = batch(new Rng(99), 64);
  const logits = T.noGrad(() => forward(model, ids));
  const evalLoss = T.crossEntropy(logits, targets).item();
  const pred = T.max(logits, 1).indices.i;
  let wrong = 0;
  targets.i.forEach((t, i) => t >= 0 && pred[i] !== t && wrong++);
  assert.ok(evalLoss < 0.05, `held-out loss ${evalLoss} (last training losses ${losses.slice(-5).map((v) => v.toFixed(4))}, ${losses.length} steps)`);
  assert.ok(wrong <= 3, `${wrong} wrong answer tokens out of ${64 * N}`);
});
