// FlexTok tokenizer training (spec §10): images → latents (frozen VAE or pixels) → encoder → FSQ
// (straight-through) → nested dropout (keep the first k registers) and null-condition dropout →
// rectified-flow decoder on x_t = (1−t)·x0 + t·ε → MSE to the velocity ε − x0, plus optional REPA.
// AdamW (decay on matrix weights only), warmup + cosine LR, gradient clipping and accumulation, EMA;
// every random draw comes from checkpointed, seeded Rng objects, so a resumed run is bitwise
// identical to an uninterrupted one.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { sampleKeepK, type FlowDecoder, type KeepKSampling } from '../flextok/decoder.js';
import type { RegisterEncoder } from '../flextok/encoder.js';
import { noiseLatents, sampleTimesteps } from '../flextok/flow.js';
import { FSQ } from '../flextok/fsq.js';
import { IdentityLatentCodec, VaeLatentCodec, type LatentCodec } from '../flextok/latent_codec.js';
import { checkpointFile } from '../flextok/checkpoint.js';
import { FlexTok, powerOfTwoKs } from '../flextok/model.js';
import { FlexTokVAE } from '../flextok/vae.js';
import type { SequenceLayout } from '../flextok/transformer.js';
import { BatchLoader, type ImageDataset } from '../io/datasets.js';
import { mseLoss } from '../tensor/nn.js';
import { add, concat, mul, slice } from '../tensor/ops.js';
import { namedTensors } from '../tensor/module.js';
import { AdamW, clipGradNorm, EMA, warmupCosineLr } from '../tensor/optim.js';
import { mixSeed, Rng } from '../tensor/rng.js';
import { BufferPool } from '../tensor/pool.js';
import { noGrad, Tensor, withBufferPool } from '../tensor/tensor.js';
import { decoderConfigOf, encoderConfigOf, type TokenizerTrainConfig } from './config.js';
import { FMNIST_SCENES, openDataset, sampleBatch } from './data.js';
import { exportedFlexTokConfig, exportTokenizer, type ExportVae } from './export.js';
import { decays, initDecoder, initEncoder } from './init.js';
import { featuresToPatchRows, loadTeacher, negativeCosineLoss, RepaProjector, type RepaTeacher } from './repa.js';
import { JsonlLog, resumeRun, runLoop, runPaths, sampleFile, saveCheckpoint, setupOptimization, startRunDir, STREAM_INIT, TrainProgress, withEmaWeights, writeSampleGrid } from './run.js';

/** σ → shift·σ / (1 + (shift − 1)·σ) in float32 (identity for shift 1): more weight on high noise for shift > 1. */
export function shiftTimesteps(sigmas: number[], shift: number): number[] {
  if (shift === 1) return sigmas;
  return sigmas.map((s) => Math.fround((shift * s) / (1 + (shift - 1) * s)));
}

/** What one micro-batch contributed. */
export interface MicroStats {
  loss: number;
  rf: number;
  repa: number | null;
  /** nested-dropout keep counts drawn for each image */
  keepK: number[];
  /** CFG null-condition flags drawn for each image */
  uncond: boolean[];
  /** timesteps σ drawn for each image */
  sigmas: number[];
}

export interface StepStats {
  loss: number;
  rf: number;
  repa: number | null;
  gradNorm: number;
  lr: number;
  images: number;
  meanK: number;
  uncondFraction: number;
}

export interface TokenizerTrainerDeps {
  dataset: ImageDataset;
  /** the frozen VAE and the hub id its export goes under; null trains in pixel space */
  vae: { vae: FlexTokVAE; hubPath: string } | null;
  teacher: RepaTeacher | null;
}

/** The rows of a batch [B, ...] as [1, ...] tensors. */
function splitBatch(x: Tensor): Tensor[] {
  return Array.from({ length: x.shape[0] }, (_, i) => slice(x, 0, i, i + 1));
}


export class TokenizerTrainer {
  readonly encoder: RegisterEncoder;
  readonly decoder: FlowDecoder;
  readonly fsq: FSQ;
  readonly projector: RepaProjector | null;
  /** images ↔ latents: the frozen VAE (posterior mean) or the identity */
  readonly codec: LatentCodec;
  /** how the export describes the VAE */
  readonly exportVae: ExportVae;
  /** the trained modules as a FlexTok model (weights shared, not copied): sample grids, evaluation */
  readonly model: FlexTok;
  /** every model tensor by checkpoint name (trainable and fixed) */
  readonly named: [string, Tensor][];
  /** trainable parameters, in optimizer order, with their names */
  readonly params: Tensor[];
  readonly paramNames: string[];
  readonly optimizer: AdamW;
  readonly ema: EMA | null;
  /** keep-k, null-condition, timestep and noise draws */
  readonly rng: Rng;
  readonly loader: BatchLoader;
  /** optimizer steps done */
  step = 0;
  readonly latentSize: number;
  readonly latentChannels: number;

  constructor(readonly cfg: TokenizerTrainConfig, readonly deps: TokenizerTrainerDeps) {
    const ds = deps.dataset;
    if (ds.height !== cfg.data.resolution || ds.width !== cfg.data.resolution) {
      throw new Error(`dataset ${ds.name} is ${ds.height}×${ds.width}, the config trains at ${cfg.data.resolution}×${cfg.data.resolution}`);
    }
    this.codec = deps.vae ? new VaeLatentCodec(deps.vae.vae) : new IdentityLatentCodec(ds.channels);
    this.exportVae = deps.vae ? { kind: 'vae', vae: deps.vae.vae, hubPath: deps.vae.hubPath, samplePosterior: false } : { kind: 'identity', channels: ds.channels };
    const f = this.codec.downsamplingFactor;
    if (cfg.data.resolution % f !== 0) throw new Error(`resolution ${cfg.data.resolution} is not a multiple of the VAE downsampling ${f}`);
    this.latentSize = cfg.data.resolution / f;
    this.latentChannels = this.codec.latentChannels;
    const initRng = new Rng(mixSeed(cfg.seed, STREAM_INIT));
    const encCfg = encoderConfigOf(cfg.model, this.latentChannels, this.latentSize);
    const decCfg = decoderConfigOf(cfg.model, this.latentChannels, this.latentSize);
    this.encoder = initEncoder(encCfg, initRng, cfg.model.encoder_head_init);
    this.decoder = initDecoder(decCfg, initRng);
    this.fsq = new FSQ(cfg.model.fsq_levels);
    const modelConfig = exportedFlexTokConfig(encCfg, decCfg, cfg.model.fsq_levels, cfg.flow, cfg.flow.cfg_dropout, this.exportVae);
    this.model = FlexTok.fromModules(modelConfig, this.codec, this.encoder, this.decoder, 'the model being trained');
    if (cfg.repa) {
      if (!deps.teacher) throw new Error('the config enables REPA but no teacher was given');
      const probe = deps.teacher.features(sampleBatch(ds, 1));
      this.projector = new RepaProjector(initRng, decCfg.dim, cfg.repa.projector_hidden, probe.shape[1]);
    } else this.projector = null;

    this.named = [
      ...namedTensors(this.encoder, 'encoder.module_dict'),
      ...namedTensors(this.decoder, 'decoder.module_dict'),
      ...(this.projector ? namedTensors(this.projector, 'repa_projector') : []),
    ];
    // A frozen encoder is left out of the optimizer and the EMA (its weights come from init.from or the checkpoint).
    if (cfg.init?.freeze_encoder) for (const [name, t] of this.named) if (name.startsWith('encoder.')) t.requireGrad(false);
    const opt = setupOptimization(this.named.filter(([, t]) => t.requiresGrad), decays, cfg.optim, cfg.seed, ds, cfg.data.flip);
    ({ params: this.params, paramNames: this.paramNames, optimizer: this.optimizer, ema: this.ema, rng: this.rng, loader: this.loader } = opt);
  }

  /**
   * Copy the modules named in config `init.modules` from a trained tokenizer into the freshly initialised
   * weights (before the first step; a resumed run takes every weight from its checkpoint instead). Names and
   * shapes must match; loading the encoder also requires the same FSQ levels, so token ids mean the same.
   */
  initFrom(source: FlexTok, sourceName: string): void {
    const init = this.cfg.init;
    if (!init) throw new Error('initFrom: the config has no init section');
    if (this.step !== 0) throw new Error(`initFrom: the trainer is at step ${this.step}; weights are loaded before the first step`);
    if (init.modules.includes('encoder') && source.fsq.levels.join(',') !== this.cfg.model.fsq_levels.join(',')) {
      throw new Error(`init.from ${sourceName}: its FSQ levels [${source.fsq.levels.join(', ')}] differ from this config's [${this.cfg.model.fsq_levels.join(', ')}]`);
    }
    const own = new Map(this.named);
    for (const module of init.modules) {
      const prefix = `${module}.module_dict`;
      const theirs = namedTensors(module === 'encoder' ? source.encoder : source.decoder, prefix);
      let ours = this.named.filter(([name]) => name.startsWith(`${prefix}.`));
      if (module === 'decoder' && init.grow_decoder) {
        // Growth: blocks past the source's depth keep their AdaLN-zero init (identity), everything else loads.
        const theirDepth = source.decoder.dec_transformer.blocks.length;
        const ourDepth = this.decoder.dec_transformer.blocks.length;
        if (ourDepth < theirDepth) throw new Error(`init.from ${sourceName}: grow_decoder needs model.decoder.depth ≥ the source's ${theirDepth}, got ${ourDepth}`);
        const blockIndex = (name: string) => /\.dec_transformer\.blocks\.(\d+)\./.exec(name)?.[1];
        ours = ours.filter(([name]) => { const j = blockIndex(name); return j === undefined || Number(j) < theirDepth; });
      }
      if (theirs.length !== ours.length) {
        throw new Error(`init.from ${sourceName}: its ${module} has ${theirs.length} tensors, this config's ${ours.length} (the architectures differ${module === 'decoder' && !init.grow_decoder ? '; init.grow_decoder loads a shallower decoder into a deeper one' : ''})`);
      }
      for (const [name, t] of theirs) {
        const dst = own.get(name);
        if (!dst) throw new Error(`init.from ${sourceName}: ${name} has no counterpart in this config's ${module}`);
        if (dst.shape.join(',') !== t.shape.join(',')) {
          throw new Error(`init.from ${sourceName}: ${name} is [${t.shape.join(', ')}] there and [${dst.shape.join(', ')}] here; model.${module} must match the source's`);
        }
        (dst.f as Float32Array).set(t.f);
      }
    }
    // The averages start from the loaded weights, as they would from random ones.
    this.ema?.setState(this.params.map((p) => Float32Array.from(p.f)));
  }

  /** Trainable parameter count. */
  get parameterCount(): number {
    return this.params.reduce((s, p) => s + p.size, 0);
  }

  /** The nested-dropout keep-k sampling of the next step (config flow.nested_dropout, or its switch). */
  keepKMode(): KeepKSampling {
    const sw = this.cfg.flow.nested_dropout_switch;
    return sw && this.step >= sw.step ? sw.mode : this.cfg.flow.nested_dropout;
  }

  /** The training loss of one micro-batch with every random draw taken from `rng` (recorded for
   * autograd unless called under noGrad). */
  forwardLoss(images: Tensor, rng: Rng): { total: Tensor; rf: Tensor; repa: Tensor | null; keepK: number[]; uncond: boolean[]; sigmas: number[] } {
    const cfg = this.cfg;
    const b = images.shape[0];
    const r = cfg.model.n_registers;
    const x0 = noGrad(() => this.codec.encode(images, { samplePosterior: false })); // [B, C, h, w]
    const x0List = splitBatch(x0);

    // Encoder → FSQ (straight-through), all images at once.
    const z = concat(this.encoder.forward(x0List), 0); // [B, R, d]
    const codesAll = this.fsq.quantizeBounded(this.fsq.bound(z));
    const codes = Array.from({ length: b }, (_, i) => slice(codesAll, 0, i, i + 1));

    // Training-time randomness, in a fixed order: keep-k, null condition, σ, ε.
    const keepKMode = this.keepKMode();
    const keepK = codes.map(() => sampleKeepK(keepKMode, r, (lo, hi) => rng.randint(lo, hi)));
    const uncond = codes.map(() => cfg.flow.cfg_dropout > 0 && rng.bernoulli(cfg.flow.cfg_dropout));
    const sigmas = shiftTimesteps(sampleTimesteps(cfg.flow.timestep_sampler, b, rng), cfg.flow.timestep_sampler.shift);
    const noised = x0List.map((x, i) => noiseLatents(x, { sigma: sigmas[i], noise: Tensor.randn(x.shape, rng) }));

    // Decoder, with the hidden states after block repa.layer tapped for REPA.
    let hidden: { x: Tensor; layout: SequenceLayout } | null = null;
    const tap = this.projector ? { afterBlock: cfg.repa!.layer, onHidden: (x: Tensor, layout: SequenceLayout) => (hidden = { x, layout }) } : undefined;
    const registers = this.decoder.registerTokens(codes, keepK, { uncond });
    const v = this.decoder.forwardWithRegisters(noised.map((n) => n.xt), sigmas, registers, undefined, tap);
    // Every image has the same size, so the mean of per-image MSEs is the MSE over the batch.
    const rf = mseLoss(concat(v, 0), concat(noised.map((n) => n.target), 0));

    let total = rf;
    let repa: Tensor | null = null;
    if (this.projector && hidden) {
      const h = hidden as { x: Tensor; layout: SequenceLayout };
      const g = this.latentSize / cfg.model.patch_size;
      const patches = concat(h.layout.sampleStart.map((s) => slice(h.x, 0, s, s + g * g)), 0); // [B·P, D]
      const target = noGrad(() => featuresToPatchRows(this.deps.teacher!.features(images), g, g, cfg.repa!.resample));
      repa = negativeCosineLoss(this.projector.forward(patches), target);
      total = add(rf, mul(repa, cfg.repa!.weight));
    }
    return { total, rf, repa, keepK, uncond, sigmas };
  }

  /** Forward and backward of one micro-batch (loss scaled by `scale` before backward). */
  microStep(images: Tensor, scale = 1): MicroStats {
    const f = this.forwardLoss(images, this.rng);
    const loss = f.total.item();
    if (!Number.isFinite(loss)) throw new Error(`training diverged at step ${this.step + 1}: loss is ${loss} (lower the learning rate or enable grad_clip)`);
    (scale === 1 ? f.total : mul(f.total, scale)).backward();
    return { loss, rf: f.rf.item(), repa: f.repa?.item() ?? null, keepK: f.keepK, uncond: f.uncond, sigmas: f.sigmas };
  }

  /** The flow-matching loss on fixed images with draws from Rng(seed) (no autograd, no state change):
   * a deterministic yardstick for comparing weights. */
  evaluateLoss(images: Tensor, seed = 0): number {
    return noGrad(() => this.forwardLoss(images, new Rng(seed)).rf.item());
  }

  /** Tensor storage reused from step to step (null: every step allocates afresh; results are bitwise the same). */
  bufferPool: BufferPool | null = new BufferPool();

  /** One optimizer step over grad_accum micro-batches from the loader. */
  trainStep(): StepStats {
    return withBufferPool(this.bufferPool, () => this.unpooledTrainStep());
  }

  private unpooledTrainStep(): StepStats {
    const o = this.cfg.optim;
    let loss = 0;
    let rf = 0;
    let repa = 0;
    let images = 0;
    let kSum = 0;
    let uncondCount = 0;
    for (let a = 0; a < o.grad_accum; a++) {
      const batch = this.loader.next();
      const s = this.microStep(batch.images, 1 / o.grad_accum);
      loss += s.loss / o.grad_accum;
      rf += s.rf / o.grad_accum;
      if (s.repa !== null) repa += s.repa / o.grad_accum;
      images += batch.images.shape[0];
      kSum += s.keepK.reduce((x, y) => x + y, 0);
      uncondCount += s.uncond.filter(Boolean).length;
    }
    const lr = warmupCosineLr(this.step, { baseLr: o.lr, warmupSteps: o.warmup_steps, totalSteps: o.total_steps, minLr: o.min_lr });
    this.optimizer.lr = lr;
    const gradNorm = clipGradNorm(this.params, o.grad_clip > 0 ? o.grad_clip : Infinity);
    this.optimizer.step();
    this.ema?.update();
    this.optimizer.zeroGrad();
    this.step++;
    return { loss, rf, repa: this.projector ? repa : null, gradNorm, lr, images, meanK: kSum / images, uncondFraction: uncondCount / images };
  }

  /** Run fn with the EMA weights swapped in (the training weights are restored bit for bit after). */
  /** Run fn with the EMA weights in place of the live ones (see run.ts withEmaWeights). */
  withEmaWeights<T>(fn: () => T): T {
    return withEmaWeights(this.ema, this.params, fn);
  }
}

// ---------------------------------------------------------------------------------------------
// the training run

export interface TokenizerRunOptions {
  config: TokenizerTrainConfig;
  outDir: string;
  resume: boolean;
  /** log lines (stderr by default) */
  log?: (line: string) => void;
  /** a REPA teacher to use instead of the one named in the config (tests) */
  teacher?: RepaTeacher;
}

/** The VAE folder of a `vae` config entry: a VAE training run (its `vae/` export) or a diffusers folder. */
export function resolveVaeDir(p: string): string {
  const sub = path.join(p, 'vae');
  if (fs.existsSync(path.join(sub, 'config.json'))) return sub;
  if (fs.existsSync(path.join(p, 'config.json')) && fs.existsSync(path.join(p, 'diffusion_pytorch_model.safetensors'))) return p;
  throw new Error(`vae '${p}': neither ${sub}/ nor ${p}/ holds a diffusers VAE (config.json + diffusion_pytorch_model.safetensors); train one with 'flextok train-vae'`);
}

/** Train (or resume) a tokenizer in `outDir`; returns the trainer at the end. */
export async function runTokenizerTraining(opts: TokenizerRunOptions): Promise<TokenizerTrainer> {
  const cfg = opts.config;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const paths = runPaths(opts.outDir);
  if (!opts.resume) startRunDir(paths, cfg);

  const dataset = await openDataset(cfg.data, 'train');
  const vae = cfg.vae === 'none' ? null : { vae: FlexTokVAE.fromFolder(resolveVaeDir(cfg.vae)), hubPath: `local/${path.basename(path.resolve(cfg.vae))}` };
  const teacher = cfg.repa ? (opts.teacher ?? (await loadTeacher(cfg.repa.teacher, cfg.repa.teacher_weights))) : null;
  const trainer = new TokenizerTrainer(cfg, { dataset, vae, teacher });
  if (cfg.init && !opts.resume) {
    let file: string;
    try {
      file = checkpointFile(cfg.init.from);
    } catch (e) {
      throw new Error(`init.from: ${cfg.init.from} does not exist or is not a trained model (${(e as Error).message}; give a model.safetensors or its run folder)`);
    }
    trainer.initFrom(FlexTok.load(file), file);
    log(`init: ${cfg.init.modules.join(' and ')} from ${file}${cfg.init.freeze_encoder ? ' (encoder frozen)' : ''}${cfg.init.grow_decoder ? `; decoder grown to ${trainer.decoder.dec_transformer.blocks.length} blocks (the new ones start as the identity)` : ''}`);
  }
  const sampleSet = cfg.data.source === 'fashion-mnist' || cfg.data.source === FMNIST_SCENES ? await openDataset(cfg.data, 'test') : dataset;
  const sampleImages = sampleBatch(sampleSet, Math.min(cfg.run.sample_images, sampleSet.size));

  const rngs = { train: trainer.rng };
  let elapsedBefore = 0;
  let imagesSeen = 0;
  if (opts.resume) {
    const r = resumeRun(paths, { named: trainer.named, optimizer: trainer.optimizer, optimNames: trainer.paramNames, ema: trainer.ema, emaNames: trainer.paramNames, rngs, loader: trainer.loader }, log);
    trainer.step = r.step;
    elapsedBefore = r.elapsedSeconds;
    imagesSeen = r.imagesSeen;
  }
  const total = cfg.optim.total_steps;
  const perStep = cfg.optim.batch_size * cfg.optim.grad_accum;
  log(`tokenizer: ${(trainer.parameterCount / 1e6).toFixed(2)}M trainable parameters, ${trainer.latentChannels}×${trainer.latentSize}×${trainer.latentSize} latents, ` +
    `${cfg.model.n_registers} tokens, data ${dataset.name} (${dataset.size} images), ${perStep} images/step, ${total} steps`);
  const progress = new TrainProgress('train-tokenizer', total);
  await runLoop({
    label: 'train-tokenizer',
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
      const scalars: Record<string, number> = { loss: s.loss, rf: s.rf, mean_k: s.meanK, uncond_frac: s.uncondFraction };
      if (s.repa !== null) scalars.repa = s.repa;
      return { images: s.images, lr: s.lr, gradNorm: s.gradNorm, scalars };
    },
    describe: (a) => `loss ${a.loss.toFixed(4)}${a.repa !== undefined ? ` (rf ${a.rf.toFixed(4)}, repa ${a.repa.toFixed(3)})` : ''}`,
    checkpoint: (step, counters) => {
      saveCheckpoint(paths.checkpoint, {
        step, named: trainer.named, optimizer: trainer.optimizer, optimNames: trainer.paramNames,
        ema: trainer.ema, emaNames: trainer.paramNames, rngs, loader: trainer.loader,
        meta: { kind: 'tokenizer', config: cfg, ...counters },
      });
      trainer.withEmaWeights(() => exportTokenizer(paths.model, {
        encoder: trainer.encoder, decoder: trainer.decoder, fsqLevels: cfg.model.fsq_levels, flow: cfg.flow,
        cfgDropout: cfg.flow.cfg_dropout, vae: trainer.exportVae, dtype: cfg.run.export_dtype,
      }));
      progress.message(`checkpoint saved at step ${step} (${paths.checkpoint}; model.safetensors)`);
    },
    samples: async (step) => {
      const ks = powerOfTwoKs(cfg.model.n_registers);
      const recon = trainer.withEmaWeights(() => trainer.model.reconstruct(sampleImages, ks, { steps: cfg.run.sample_steps, guidance: cfg.run.sample_guidance, seed: 0 }));
      const file = sampleFile(paths, step);
      await writeSampleGrid(file, [sampleImages, ...recon], { rows: ['original', ...ks.map((k) => `k=${k}`)], title: `step ${step}` });
      progress.message(`samples at step ${step}: ${file} (rows: originals, then k = ${ks.join(', ')})`);
    },
  });
  return trainer;
}

