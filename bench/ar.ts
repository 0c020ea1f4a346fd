// Benchmarks of the stage-2 generator (FlexAR) at the shipped generator's shape (configs/ar-fmnist.json:
// d256 × 6, 64-d heads, FSQ-digit head) and at the same trunk with the official flat 64,000-way head (the
// shape of ../shared/anchor/ar_anchor.py): class-conditional sampling of 32 tokens for 10 samples with CFG
// (batch 20) with and without the KV cache, and one training step (forward, backward, clipping, AdamW)
// on 64 sequences. Rates are tokens/s (10 · 32 / time) and sequences/s, as the anchor prints them.

import { FlexAR } from '../src/ar/model.js';
import type { ArModelConfig } from '../src/ar/config.js';
import { generate } from '../src/ar/sampling.js';
import { AdamW, clipGradNorm } from '../src/tensor/optim.js';
import { Rng, setBackend } from '../src/tensor/index.js';
import { BufferPool } from '../src/tensor/pool.js';
import { withBufferPool } from '../src/tensor/tensor.js';
import { timeIt, withThreads, type BenchEntry, type BenchRow } from './harness.js';

function shape(head: 'flat' | 'digits'): ArModelConfig {
  return {
    vocab_size: 64000, fsq_levels: [8, 8, 8, 5, 5, 5], num_tokens: 32, num_classes: 10, dim: 256, depth: 6, head_dim: 64,
    mlp_ratio: 4, qk_norm: true, head, norm_eps: 1e-6, digit_hidden: 256, text: null, dropout: 0,
  };
}

export const arEntry: BenchEntry = {
  name: 'ar generator',
  needsNative: true,
  run(ctx) {
    setBackend('native');
    const rows: BenchRow[] = [];
    const threads = ctx.allThreads;
    for (const head of ['digits', 'flat'] as const) {
      const model = FlexAR.init(shape(head), new Rng(0));
      const label = `AR d256x6 ${head} head (${(model.numParameters() / 1e6).toFixed(1)}M)`;
      const classes = Array.from({ length: 10 }, (_, i) => i);
      const sampleOpts = { classes, cfgScale: 1.5, seed: 0 };
      for (const kvCache of [true, false]) {
        const r = withThreads(threads, () => timeIt(() => generate(model, { ...sampleOpts, kvCache }), { minSeconds: ctx.quick ? 1 : 3, minReps: 2, warmup: 1 }));
        rows.push({
          name: `${label} sample 10x32 + CFG, ${kvCache ? 'KV cache' : 'recompute'}`, threads, ms: r.best, medianMs: r.median,
          note: `${((10 * 32) / (r.median / 1000)).toFixed(0)} tokens/s (median)`, extra: { tokensPerSec: (10 * 32) / (r.median / 1000) },
        });
      }
      const rng = new Rng(1);
      const tokens = Int32Array.from({ length: 64 * 32 }, () => Math.floor(rng.uniform() * 64000));
      const labels = Int32Array.from({ length: 64 }, (_, i) => i % 10);
      const params = model.parameters();
      const opt = new AdamW([{ params, weightDecay: 0.05 }], { lr: 1e-4, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.05 });
      const pool = new BufferPool();
      const step = () => withBufferPool(pool, () => {
        const loss = model.loss(tokens, labels);
        loss.backward();
        clipGradNorm(params, 1);
        opt.step();
        opt.zeroGrad();
        return null;
      });
      const r = withThreads(threads, () => timeIt(step, { minSeconds: ctx.quick ? 1 : 4, minReps: 2, warmup: 1 }));
      rows.push({
        name: `${label} train step, 64 sequences`, threads, ms: r.best, medianMs: r.median,
        note: `${(64 / (r.median / 1000)).toFixed(1)} sequences/s (median)`, extra: { sequencesPerSec: 64 / (r.median / 1000) },
      });
    }
    return rows;
  },
};
