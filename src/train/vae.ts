// Stage-0 VAE training (spec §10.9): a small diffusers AutoencoderKL from scratch with an L1 or L2
// reconstruction loss of a posterior sample plus β·KL, on the same optimiser, checkpoint and
// resume machinery as the tokenizer. The run exports `vae/` in the diffusers layout with
// scaling_factor = 1 / std of the latent means, ready to be a tokenizer's frozen VAE.
//
// Loss per micro-batch: mean over pixels of |x − x̂| (or (x − x̂)²) + kl_weight · KL / (C·H·W), KL the
// per-image sum over latent elements averaged over the batch — the LDM weighting (sum-over-pixels
// reconstruction + β·KL) divided by the pixel count, so kl_weight takes LDM's values (≈1e-6).

import { BatchLoader, type ImageDataset } from '../io/datasets.js';
import { AutoencoderKL, DiagonalGaussian, FlexTokVAE, parseAutoencoderKLConfig } from '../flextok/vae.js';
import { abs, add, mean, mul, square, sub } from '../tensor/ops.js';
import { AdamW, clipGradNorm, EMA, warmupCosineLr } from '../tensor/optim.js';
import { mixSeed, Rng } from '../tensor/rng.js';
import { BufferPool } from '../tensor/pool.js';
import { noGrad, Tensor, withBufferPool } from '../tensor/tensor.js';
import * as path from 'node:path';
import type { VaeTrainConfig } from './config.js';
import { FMNIST_SCENES, openDataset, sampleBatch } from './data.js';
import { exportDiffusersVae } from './export.js';
import { JsonlLog, resumeRun, runLoop, runPaths, sampleFile, saveCheckpoint, setupOptimization, startRunDir, STREAM_INIT, TrainProgress, withEmaWeights, writeSampleGrid } from './run.js';


export interface VaeStepStats {
  loss: number;
  recon: number;
  kl: number;
  gradNorm: number;
  lr: number;
  images: number;
}

export class VaeTrainer {
  readonly vae: AutoencoderKL;
  readonly named: [string, Tensor][];
  readonly params: Tensor[];
  readonly paramNames: string[];
  readonly optimizer: AdamW;
  readonly ema: EMA | null;
  /** posterior-sample noise */
  readonly rng: Rng;
  readonly loader: BatchLoader;
  step = 0;

  constructor(readonly cfg: VaeTrainConfig, readonly dataset: ImageDataset) {
    if (dataset.height !== cfg.data.resolution || dataset.width !== cfg.data.resolution) {
      throw new Error(`dataset ${dataset.name} is ${dataset.height}×${dataset.width}, the config trains at ${cfg.data.resolution}×${cfg.data.resolution}`);
    }
    const m = cfg.model;
    const n = m.block_out_channels.length;
    const config = parseAutoencoderKLConfig({
      _class_name: 'AutoencoderKL', act_fn: 'silu', block_out_channels: m.block_out_channels,
      down_block_types: new Array(n).fill('DownEncoderBlock2D'), up_block_types: new Array(n).fill('UpDecoderBlock2D'),
      in_channels: dataset.channels, out_channels: dataset.channels, latent_channels: m.latent_channels,
      layers_per_block: m.layers_per_block, norm_num_groups: m.norm_num_groups, scaling_factor: 1.0,
      mid_block_add_attention: m.mid_block_add_attention, sample_size: cfg.data.resolution,
    }, 'VAE training config');
    this.vae = AutoencoderKL.random(config, new Rng(mixSeed(cfg.seed, STREAM_INIT)));
    this.named = this.vae.namedParameters();
    // Decay conv and linear kernels only (not biases or GroupNorm affine).
    const opt = setupOptimization(this.named, (_, t) => t.ndim >= 2, cfg.optim, cfg.seed, dataset, cfg.data.flip);
    ({ params: this.params, paramNames: this.paramNames, optimizer: this.optimizer, ema: this.ema, rng: this.rng, loader: this.loader } = opt);
  }

  get parameterCount(): number {
    return this.params.reduce((s, p) => s + p.size, 0);
  }

  /** Forward and backward of one micro-batch. */
  microStep(images: Tensor, scale = 1): { loss: number; recon: number; kl: number } {
    const posterior = new DiagonalGaussian(this.vae.encodeMoments(images));
    const z = posterior.sample(Tensor.randn(posterior.mean.shape, this.rng));
    const out = this.vae.decode(z);
    const diff = sub(out, images);
    const recon = mean(this.cfg.loss.recon === 'l1' ? abs(diff) : square(diff));
    const [, c, h, w] = images.shape;
    const kl = mean(posterior.kl());
    const loss = add(recon, mul(kl, this.cfg.loss.kl_weight / (c * h * w)));
    const value = loss.item();
    if (!Number.isFinite(value)) throw new Error(`training diverged at step ${this.step + 1}: loss is ${value}`);
    (scale === 1 ? loss : mul(loss, scale)).backward();
    return { loss: value, recon: recon.item(), kl: kl.item() };
  }

  /** Tensor storage reused from step to step (null: every step allocates afresh; results are bitwise the same). */
  bufferPool: BufferPool | null = new BufferPool();

  trainStep(): VaeStepStats {
    return withBufferPool(this.bufferPool, () => this.unpooledTrainStep());
  }

  private unpooledTrainStep(): VaeStepStats {
    const o = this.cfg.optim;
    let loss = 0;
    let recon = 0;
    let kl = 0;
    let images = 0;
    for (let a = 0; a < o.grad_accum; a++) {
      const batch = this.loader.next();
      const s = this.microStep(batch.images, 1 / o.grad_accum);
      loss += s.loss / o.grad_accum;
      recon += s.recon / o.grad_accum;
      kl += s.kl / o.grad_accum;
      images += batch.images.shape[0];
    }
    const lr = warmupCosineLr(this.step, { baseLr: o.lr, warmupSteps: o.warmup_steps, totalSteps: o.total_steps, minLr: o.min_lr });
    this.optimizer.lr = lr;
    const gradNorm = clipGradNorm(this.params, o.grad_clip > 0 ? o.grad_clip : Infinity);
    this.optimizer.step();
    this.ema?.update();
    this.optimizer.zeroGrad();
    this.step++;
    return { loss, recon, kl, gradNorm, lr, images };
  }

  /** Run fn with the EMA weights in place of the live ones (see run.ts withEmaWeights). */
  withEmaWeights<T>(fn: () => T): T {
    return withEmaWeights(this.ema, this.params, fn);
  }

  /** Posterior-mean reconstructions (no autograd). */
  reconstruct(images: Tensor): Tensor {
    return noGrad(() => this.vae.decode(new DiagonalGaussian(this.vae.encodeMoments(images)).mode()));
  }

  /** 1 / std of the posterior means over `images` (the diffusers scaling_factor convention). */
  scalingFactor(images: Tensor): number {
    const m = noGrad(() => new DiagonalGaussian(this.vae.encodeMoments(images)).mode()).f;
    let s = 0;
    let ss = 0;
    for (let i = 0; i < m.length; i++) {
      s += m[i];
      ss += m[i] * m[i];
    }
    const mu = s / m.length;
    const std = Math.sqrt(Math.max(ss / m.length - mu * mu, 1e-12));
    return Math.fround(1 / std);
  }
}

export interface VaeRunOptions {
  config: VaeTrainConfig;
  outDir: string;
  resume: boolean;
  log?: (line: string) => void;
}

/** Train (or resume) a VAE in `outDir`; exports `vae/` at every checkpoint and at the end. */
export async function runVaeTraining(opts: VaeRunOptions): Promise<VaeTrainer> {
  const cfg = opts.config;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const paths = runPaths(opts.outDir);
  if (!opts.resume) startRunDir(paths, cfg);
  const dataset = await openDataset(cfg.data, 'train');
  const trainer = new VaeTrainer(cfg, dataset);
  const sampleSet = cfg.data.source === 'fashion-mnist' || cfg.data.source === FMNIST_SCENES ? await openDataset(cfg.data, 'test') : dataset;
  const sampleImages = sampleBatch(sampleSet, Math.min(cfg.run.sample_images, sampleSet.size));
  const scaleImages = sampleBatch(dataset, Math.min(256, dataset.size));
  const rngs = { train: trainer.rng };
  let elapsedBefore = 0;
  let imagesSeen = 0;
  if (opts.resume) {
    const r = resumeRun(paths, { named: trainer.named, optimizer: trainer.optimizer, optimNames: trainer.paramNames, ema: trainer.ema, emaNames: trainer.paramNames, rngs, loader: trainer.loader }, log, [path.join(paths.dir, 'vae')]);
    trainer.step = r.step;
    elapsedBefore = r.elapsedSeconds;
    imagesSeen = r.imagesSeen;
  }
  const total = cfg.optim.total_steps;
  const perStep = cfg.optim.batch_size * cfg.optim.grad_accum;
  const f = 2 ** (cfg.model.block_out_channels.length - 1);
  log(`vae: ${(trainer.parameterCount / 1e6).toFixed(2)}M parameters, ${dataset.channels}×${cfg.data.resolution}² → ${cfg.model.latent_channels}×${cfg.data.resolution / f}² latents, ` +
    `data ${dataset.name} (${dataset.size} images), ${perStep} images/step, ${total} steps`);
  const progress = new TrainProgress('train-vae', total);
  const vaeDir = path.join(paths.dir, 'vae');
  await runLoop({
    label: 'train-vae',
    totalSteps: total,
    imagesPerStep: perStep,
    logEvery: cfg.run.log_every,
    sampleEvery: cfg.run.sample_every,
    checkpointEvery: cfg.run.checkpoint_every,
    log: new JsonlLog(paths.log, opts.resume ? trainer.step : null),
    progress,
    startStep: trainer.step,
    elapsedBefore,
    imagesSeenBefore: imagesSeen,
    trainStep: () => {
      const s = trainer.trainStep();
      return { images: s.images, lr: s.lr, gradNorm: s.gradNorm, scalars: { loss: s.loss, recon: s.recon, kl: s.kl } };
    },
    describe: (a) => `loss ${a.loss.toFixed(4)} (recon ${a.recon.toFixed(4)}, kl ${a.kl.toFixed(1)})`,
    checkpoint: (step, counters) => {
      saveCheckpoint(paths.checkpoint, {
        step, named: trainer.named, optimizer: trainer.optimizer, optimNames: trainer.paramNames,
        ema: trainer.ema, emaNames: trainer.paramNames, rngs, loader: trainer.loader,
        meta: { kind: 'vae', config: cfg, ...counters },
      });
      trainer.withEmaWeights(() => {
        const sf = trainer.scalingFactor(scaleImages);
        exportDiffusersVae(vaeDir, new FlexTokVAE(trainer.vae, { scalingFactor: sf }), cfg.run.export_dtype);
      });
      progress.message(`checkpoint saved at step ${step} (${paths.checkpoint}; vae/)`);
    },
    samples: async (step) => {
      const recon = trainer.withEmaWeights(() => trainer.reconstruct(sampleImages));
      const file = sampleFile(paths, step);
      await writeSampleGrid(file, [sampleImages, recon], { rows: ['original', 'reconstruction'], title: `step ${step}` });
      progress.message(`samples at step ${step}: ${file} (rows: originals, reconstructions)`);
    },
  });
  return trainer;
}
