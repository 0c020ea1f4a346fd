// Benchmarks of the FlexTok networks at the released d12 shape (width 768, 12 layers, 64-d heads,
// 256 patch tokens + 256 registers) with random weights: encoder forward on one image and one
// decoder step on a batch of 2 (the conditional and unconditional passes CFG runs together).
// FLOPs are counted analytically (2 per multiply-add) over the work actually done: GEMMs of every
// projection and MLP, and attention only over the allowed (unmasked) query-key pairs.

import { initDecoder, initEncoder } from '../src/train/init.js';
import type { DecoderConfig, EncoderConfig } from '../src/flextok/tokenizer_config.js';
import { mlpHiddenDim } from '../src/flextok/tokenizer_config.js';
import { noGrad, Rng, setBackend, Tensor } from '../src/tensor/index.js';
import { parseTokenizerConfig, readJsonFile } from '../src/train/config.js';
import { openDataset } from '../src/train/data.js';
import { loadTeacher } from '../src/train/repa.js';
import { TokenizerTrainer } from '../src/train/tokenizer.js';
import { timeIt, withPeak, withThreads, type BenchEntry, type BenchRow } from './harness.js';

export const D12 = {
  dim: 768,
  depth: 12,
  head_dim: 64,
  mlp_ratio: 4,
  gated_mlp: true,
  qkv_bias: false,
  proj_bias: false,
  mlp_bias: false,
  qk_norm: true,
  channels_in: 16,
  patch_sizes: [2, 2] as [number, number],
  max_sizes: [16, 16] as [number, number],
  n_registers: 256,
};

export function d12EncoderConfig(): EncoderConfig {
  return { ...D12, dim_out: 6, mask_mode: 'causal_last' };
}

export function d12DecoderConfig(): DecoderConfig {
  return {
    ...D12,
    dim_in: 6,
    frequency_embedding_size: 256,
    max_timestep: 1000,
    null_cond: 'learned',
    replace_with_single_token: false,
    adaLN_expansion: 2,
    head_adaLN: true,
    mask_mode: 'full',
  };
}

/** FLOPs of one transformer block's projections + SwiGLU on n tokens, plus attention over `pairs` allowed (q, k) pairs. */
function blockFlops(dim: number, hidden: number, n: number, pairs: number): number {
  const proj = 4 * 2 * n * dim * dim; // wq, wk, wv, proj
  const mlp = 3 * 2 * n * dim * hidden; // fc1, fc3, fc2
  const attn = 2 * 2 * pairs * dim; // q·k and p·v over all heads
  return proj + mlp + attn;
}

/** Encoder forward FLOPs for one image of `patches` patch tokens (default: the full posemb grid) with R registers under the causal_last mask.
 * The last block computes keys and values for every token but queries, output projection and MLP for the registers only. */
export function encoderFlops(cfg: EncoderConfig, patches = cfg.max_sizes[0] * cfg.max_sizes[1]): number {
  const np = patches;
  const r = cfg.n_registers;
  const n = np + r;
  const d = cfg.dim;
  const regPairs = r * np + (r * (r + 1)) / 2;
  const pairs = np * np + regPairs;
  const hidden = mlpHiddenDim(cfg);
  const patchIn = cfg.patch_sizes[0] * cfg.patch_sizes[1] * cfg.channels_in;
  const lastBlock = 2 * 2 * n * d * d + blockFlops(d, hidden, r, regPairs) - 2 * 2 * r * d * d; // wk, wv on n rows; the rest on r
  return (cfg.depth - 1) * blockFlops(d, hidden, n, pairs) + lastBlock + 2 * np * patchIn * d + 2 * r * d * cfg.dim_out;
}

/** Decoder step FLOPs for `batch` images of `patches` patch tokens each (full attention within each image). */
export function decoderStepFlops(cfg: DecoderConfig, batch: number, patches = cfg.max_sizes[0] * cfg.max_sizes[1]): number {
  const np = patches;
  const n = np + cfg.n_registers;
  const hidden = mlpHiddenDim(cfg);
  const patchIn = cfg.patch_sizes[0] * cfg.patch_sizes[1] * cfg.channels_in;
  const perImage =
    cfg.depth * (blockFlops(cfg.dim, hidden, n, n * n) + 2 * cfg.dim * cfg.adaLN_expansion * 6 * cfg.dim) +
    2 * np * patchIn * cfg.dim * 2 + // patch embedding and output head
    2 * cfg.n_registers * cfg.dim_in * cfg.dim;
  return batch * perImage;
}

export interface ModelBench {
  name: string;
  flops: number;
  /** runs the measured work once */
  run: () => void;
}

/** The two d12 benchmarks; building them allocates the random weights (~170 MB each). */
export function flextokD12Benches(seed = 0): ModelBench[] {
  const rng = new Rng(seed);
  const encCfg = d12EncoderConfig();
  const decCfg = d12DecoderConfig();
  const encoder = initEncoder(encCfg, rng);
  const decoder = initDecoder(decCfg, rng);
  const latent = Tensor.randn([1, 16, 32, 32], rng);
  const codes = Tensor.rand([1, 256, 6], rng, 'float32', -1, 1);
  const registers = noGrad(() => [
    ...decoder.registerTokens([codes], [256]),
    ...decoder.registerTokens([codes], [256], { uncond: true }),
  ]);
  const noised = [latent, latent];
  return [
    {
      name: 'FlexTok d12 encoder forward (1 image, 256 patches + 256 registers)',
      flops: encoderFlops(encCfg),
      run: () => noGrad(() => encoder.forward([latent])),
    },
    {
      name: 'FlexTok d12 decoder step (batch 2: cond + uncond)',
      flops: decoderStepFlops(decCfg, 2),
      run: () => noGrad(() => decoder.forwardWithRegisters(noised, [0.5, 0.5], registers)),
    },
  ];
}

/** Bench entry: d12 encoder forward and decoder step, on 1 and all threads. */
export const flextokD12Entry: BenchEntry = {
  name: 'flextok d12',
  needsNative: true,
  dependsOn: ['fma peak'],
  run(ctx) {
    setBackend('native');
    const rows: BenchRow[] = [];
    for (const b of flextokD12Benches()) {
      for (const t of ctx.threadCounts) {
        const r = withThreads(t, () => timeIt(b.run, { minSeconds: ctx.quick ? 1 : 3, minReps: 2, warmup: 1 }));
        rows.push(withPeak(ctx, { name: b.name, threads: t, ms: r.best, medianMs: r.median, gflops: b.flops / r.best / 1e6 }));
      }
    }
    return rows;
  },
};

/** Bench entry: one optimizer step (forward, backward, AdamW, EMA) of the default Fashion-MNIST tokenizer
 * config (configs/fmnist-default.json, REPA included) on synthetic 32×32 images; FLOPs counted as
 * 3 × (encoder + decoder forward) per image, i.e. without the REPA teacher and projector. */
export const trainStepEntry: BenchEntry = {
  name: 'train step',
  needsNative: true,
  dependsOn: ['fma peak'],
  async run(ctx) {
    setBackend('native');
    const file = new URL('../configs/fmnist-default.json', import.meta.url).pathname;
    const cfg = parseTokenizerConfig(readJsonFile(file), file);
    cfg.data.source = 'synthetic:512';
    const dataset = await openDataset(cfg.data, 'train');
    const teacher = cfg.repa ? await loadTeacher(cfg.repa.teacher, new URL(`../${cfg.repa.teacher_weights}`, import.meta.url).pathname) : null;
    const trainer = new TokenizerTrainer(cfg, { dataset, vae: null, teacher });
    const grid = (cfg.data.resolution / cfg.model.patch_size) ** 2;
    const batch = cfg.optim.batch_size * cfg.optim.grad_accum;
    const flops = 3 * batch * (encoderFlops(trainer.encoder._cfg, grid) + decoderStepFlops(trainer.decoder._cfg, 1, grid));
    const rows: BenchRow[] = [];
    for (const t of ctx.threadCounts) {
      const r = withThreads(t, () => timeIt(() => trainer.trainStep(), { minSeconds: ctx.quick ? 2 : 6, minReps: 2, warmup: 1 }));
      rows.push(withPeak(ctx, {
        name: `train step fmnist-default (batch ${batch}, REPA ${cfg.repa ? 'on' : 'off'})`, threads: t, ms: r.best, medianMs: r.median,
        gflops: flops / r.best / 1e6, note: `${(batch / (r.best / 1000)).toFixed(1)} images/s`,
      }));
    }
    return rows;
  },
};
