// Stage-2 training: a FlexAR generator learns next-token prediction over the token ids of a whole image
// split (written once by `flextok tokenize-dataset`), class- or caption-conditioned with condition dropout, on the
// same optimiser, checkpoint, log and resume machinery as the tokenizer trainer. Every checkpoint also
// exports the EMA generator (`model.safetensors`), which records the tokenizer it was trained on (path and
// sha256 of its weights) and the sampling settings `flextok generate` uses by default.

import * as path from 'node:path';
import { FlexAR } from '../ar/model.js';
import type { ArModelConfig } from '../ar/config.js';
import { AR_META } from '../ar/generator.js';
import { generate } from '../ar/sampling.js';
import { buildVocab, encodePrompts, promptWords } from '../ar/text.js';
import { FlexTok, powerOfTwoKs } from '../flextok/model.js';
import type { ImageDataset } from '../io/datasets.js';
import { checkTokenizerMatch, readTokenDataset, selectTokenRows, sha256OfFile, tokenizerWeightsFile, type TokenDataset } from '../io/token_dataset.js';
import { mul } from '../tensor/ops.js';
import { clipGradNorm, type AdamW, type EMA, warmupCosineLr } from '../tensor/optim.js';
import { BufferPool } from '../tensor/pool.js';
import { mixSeed, Rng } from '../tensor/rng.js';
import { noGrad, Tensor, withBufferPool } from '../tensor/tensor.js';
import type { BatchLoader } from '../io/datasets.js';
import type { ArTrainConfig } from './config.js';
import {
  JsonlLog, resumeRun, runLoop, runPaths, sampleFile, saveCheckpoint, setupOptimization, startRunDir, STREAM_INIT,
  TrainProgress, withEmaWeights, writeSampleGrid,
} from './run.js';

/** Token rows seen through the ImageDataset interface (each row a [1, 1, R] "image" of float ids, exact below 2^24)
 * so that BatchLoader's seeded, resumable shuffling serves them as it serves images. The label is the row's class, or
 * with `rowIndex` the row's index (a text model looks its caption up). */
function tokenRowsDataset(ds: TokenDataset, rowIndex = false): ImageDataset {
  const r = ds.numTokens;
  return {
    name: ds.file,
    size: ds.count,
    channels: 1,
    height: 1,
    width: r,
    numClasses: ds.classNames.length,
    classNames: ds.classNames,
    get(i: number) {
      return { image: Float32Array.from(ds.tokens.subarray(i * r, (i + 1) * r)), label: rowIndex ? i : ds.labels[i] };
    },
  };
}

/** The generator's model config for a token dataset (codebook, FSQ levels, R and classes come from the data). */
export function arModelConfigFor(cfg: ArTrainConfig, ds: TokenDataset, fsqLevels: number[]): ArModelConfig {
  const m = cfg.model;
  let text: ArModelConfig['text'] = null;
  if (m.text) {
    if (!ds.captions) throw new Error(`${ds.file} has no captions, but model.text asks for a text-conditional model (make the tokens of a captioned source, e.g. --data fmnist-scenes)`);
    const longest = ds.captions.reduce((n, c) => Math.max(n, promptWords(c).length), 0);
    if (longest > m.text.max_len) throw new Error(`model.text.max_len is ${m.text.max_len} but a caption of ${ds.file} has ${longest} words`);
    text = { vocab: buildVocab(ds.captions), dim: m.text.dim, max_len: m.text.max_len, depth: m.text.depth, head_dim: m.text.head_dim };
  }
  return {
    vocab_size: ds.codebookSize, fsq_levels: fsqLevels, num_tokens: ds.numTokens, num_classes: text ? 0 : ds.classNames.length,
    dim: m.dim, depth: m.depth, head_dim: m.head_dim, mlp_ratio: m.mlp_ratio, qk_norm: m.qk_norm, head: m.head,
    norm_eps: 1e-6, digit_hidden: m.digit_hidden ?? m.dim, text, dropout: m.dropout,
  };
}

export interface ArStepStats {
  loss: number;
  gradNorm: number;
  lr: number;
  sequences: number;
}

export class ArTrainer {
  readonly model: FlexAR;
  readonly named: [string, Tensor][];
  readonly params: Tensor[];
  readonly paramNames: string[];
  readonly optimizer: AdamW;
  readonly ema: EMA | null;
  /** condition-dropout draws */
  readonly rng: Rng;
  readonly loader: BatchLoader;
  step = 0;
  /** Tensor storage reused from step to step (null: every step allocates afresh; results are bitwise the same). */
  bufferPool: BufferPool | null = new BufferPool();

  constructor(readonly cfg: ArTrainConfig, readonly train: TokenDataset, modelConfig: ArModelConfig) {
    this.model = FlexAR.init(modelConfig, new Rng(mixSeed(cfg.seed, STREAM_INIT)));
    this.named = this.model.namedParameters();
    // Decoupled weight decay on the matrices of the linear layers only (not embeddings, positions, SOS or norm gains).
    const isEmbedding = (name: string) => /(^|\.)(sos|classEmb|posEmb|tokEmb|digitEmb|prev|wordEmb)(\.|$)/.test(name);
    const opt = setupOptimization(this.named, (n, t) => t.ndim >= 2 && !isEmbedding(n), cfg.optim, cfg.seed, tokenRowsDataset(train, modelConfig.text !== null), false);
    ({ params: this.params, paramNames: this.paramNames, optimizer: this.optimizer, ema: this.ema, rng: this.rng, loader: this.loader } = opt);
  }

  get parameterCount(): number {
    return this.params.reduce((s, p) => s + p.size, 0);
  }

  trainStep(): ArStepStats {
    return withBufferPool(this.bufferPool, () => this.unpooledTrainStep());
  }

  private unpooledTrainStep(): ArStepStats {
    const o = this.cfg.optim;
    let loss = 0;
    let sequences = 0;
    for (let a = 0; a < o.grad_accum; a++) {
      const batch = this.loader.next();
      const b = batch.labels.length;
      const tokens = Int32Array.from(batch.images.f);
      const text = this.model.config.text;
      let l: Tensor;
      if (text) {
        // labels are row indices here; a dropped caption becomes the empty prompt
        const prompts = Array.from(batch.labels, (row) => (this.rng.uniform() < this.cfg.class_dropout ? '' : this.train.captions![row]));
        l = this.model.loss(tokens, encodePrompts(prompts, text), { dropoutRng: this.rng });
      } else {
        const classes = Int32Array.from(batch.labels);
        for (let i = 0; i < b; i++) if (this.rng.uniform() < this.cfg.class_dropout) classes[i] = -1;
        l = this.model.loss(tokens, classes, { dropoutRng: this.rng });
      }
      const value = l.item();
      if (!Number.isFinite(value)) throw new Error(`training diverged at step ${this.step + 1}: loss is ${value}`);
      (o.grad_accum === 1 ? l : mul(l, 1 / o.grad_accum)).backward();
      loss += value / o.grad_accum;
      sequences += b;
    }
    const lr = warmupCosineLr(this.step, { baseLr: o.lr, warmupSteps: o.warmup_steps, totalSteps: o.total_steps, minLr: o.min_lr });
    this.optimizer.lr = lr;
    const gradNorm = clipGradNorm(this.params, o.grad_clip > 0 ? o.grad_clip : Infinity);
    this.optimizer.step();
    this.ema?.update();
    this.optimizer.zeroGrad();
    this.step++;
    return { loss, gradNorm, lr, sequences };
  }

  /** Run fn with the EMA weights in place of the live ones (see run.ts withEmaWeights). */
  withEmaWeights<T>(fn: () => T): T {
    return withEmaWeights(this.ema, this.params, fn);
  }
}

/** Mean next-token cross-entropy (nats per token) of the first n sequences of `ds`, with their true classes (or
 * captions, for a text model). */
export function validationLoss(model: FlexAR, ds: TokenDataset, n: number, batch = 256): number {
  const r = ds.numTokens;
  const count = Math.min(n, ds.count);
  let total = 0;
  noGrad(() => {
    for (let s = 0; s < count; s += batch) {
      const e = Math.min(count, s + batch);
      const cond = model.config.text ? encodePrompts(ds.captions!.slice(s, e), model.config.text) : ds.labels.slice(s, e);
      const l = model.loss(ds.tokens.slice(s * r, e * r), cond);
      total += l.item() * (e - s);
    }
  });
  return total / count;
}

/** The FSQ levels of a tokenizer (FlexTok.load reads them from its config). */
function tokenizerLevels(tok: FlexTok): number[] {
  return [...tok.fsq.levels];
}

/** The training rows: every unmirrored row, and the mirrored ones (flipped = 1) only of `classes` (null = all). */
export function withMirroredClasses(ds: TokenDataset, classes: number[] | null, log: (line: string) => void): TokenDataset {
  if (classes === null) return ds;
  const bad = classes.find((c) => c >= ds.classNames.length);
  if (bad !== undefined) throw new Error(`tokens.mirrored_classes: class ${bad} is not one of ${ds.file}'s ${ds.classNames.length} classes (0..${ds.classNames.length - 1})`);
  const keep = new Set(classes);
  const out = selectTokenRows(ds, (i) => !ds.flipped[i] || keep.has(ds.labels[i]));
  const names = classes.map((c) => ds.classNames[c]).join(', ') || 'none';
  log(`tokens.mirrored_classes: mirrored rows only of ${names}: ${out.count} of ${ds.count} sequences`);
  return out;
}

export interface ArRunOptions {
  config: ArTrainConfig;
  outDir: string;
  resume: boolean;
  log?: (line: string) => void;
}

/** Train (or resume) a generator in `outDir`; exports `model.safetensors` (EMA weights) at every checkpoint. */
export async function runArTraining(opts: ArRunOptions): Promise<ArTrainer> {
  const cfg = opts.config;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (!cfg.tokens.train) throw new Error('no training tokens: give --tokens DIR (a tokenize-dataset folder) or tokens.train in the config');
  const train = withMirroredClasses(readTokenDataset(cfg.tokens.train), cfg.tokens.mirrored_classes, log);
  const val = cfg.tokens.val ? readTokenDataset(cfg.tokens.val) : null;
  const weightsFile = tokenizerWeightsFile(cfg.tokenizer);
  const tokenizerSha = sha256OfFile(weightsFile);
  checkTokenizerMatch(train, weightsFile, tokenizerSha);
  if (val) {
    checkTokenizerMatch(val, weightsFile, tokenizerSha);
    if (val.numTokens !== train.numTokens || val.codebookSize !== train.codebookSize) throw new Error(`${val.file} and ${train.file} have different token counts or codebooks`);
    if (cfg.model.text && !val.captions) throw new Error(`${val.file} has no captions; a text-conditional model validates on captioned tokens`);
  }
  const tokenizer = FlexTok.load(cfg.tokenizer);
  const modelConfig = arModelConfigFor(cfg, train, tokenizerLevels(tokenizer));
  const paths = runPaths(opts.outDir);
  if (!opts.resume) startRunDir(paths, cfg);
  const trainer = new ArTrainer(cfg, train, modelConfig);
  const rngs = { train: trainer.rng };
  let elapsedBefore = 0;
  let seen = 0;
  if (opts.resume) {
    const r = resumeRun(paths, { named: trainer.named, optimizer: trainer.optimizer, optimNames: trainer.paramNames, ema: trainer.ema, emaNames: trainer.paramNames, rngs, loader: trainer.loader }, log);
    trainer.step = r.step;
    elapsedBefore = r.elapsedSeconds;
    seen = r.imagesSeen;
  }
  const o = cfg.optim;
  const total = o.total_steps;
  const perStep = o.batch_size * o.grad_accum;
  const textInfo = modelConfig.text ? `, text encoder d${modelConfig.text.dim} × ${modelConfig.text.depth} over ${modelConfig.text.vocab!.length} words` : '';
  log(`train-ar: ${(trainer.parameterCount / 1e6).toFixed(2)}M parameters (${modelConfig.head} head, d${modelConfig.dim} × ${modelConfig.depth}${textInfo}), ` +
    `${train.count} sequences of ${train.numTokens} tokens (${train.file}), ${perStep} sequences/step, ${total} steps`);
  const progress = new TrainProgress('train-ar', total);
  const exportFile = path.join(paths.dir, 'model.safetensors');
  const jsonl = new JsonlLog(paths.log, opts.resume ? trainer.step : null);
  const ks = powerOfTwoKs(train.numTokens);
  const score = (step: number) => {
    if (!val) return;
    const loss = trainer.withEmaWeights(() => validationLoss(trainer.model, val, cfg.run.val_sequences));
    jsonl.append({ step, val_loss: loss, val_sequences: Math.min(cfg.run.val_sequences, val.count) });
    progress.message(`step ${step}: validation loss ${loss.toFixed(4)} nats/token (EMA weights, ${Math.min(cfg.run.val_sequences, val.count)} sequences of ${val.file})`);
  };
  await runLoop({
    label: 'train-ar',
    totalSteps: total,
    imagesPerStep: perStep,
    logEvery: cfg.run.log_every,
    sampleEvery: cfg.run.sample_every,
    checkpointEvery: cfg.run.checkpoint_every,
    log: jsonl,
    progress,
    startStep: trainer.step,
    elapsedBefore,
    imagesSeenBefore: seen,
    trainStep: () => {
      const s = trainer.trainStep();
      if (cfg.run.val_every > 0 && trainer.step % cfg.run.val_every === 0 && trainer.step < total) score(trainer.step);
      return { images: s.sequences, lr: s.lr, gradNorm: s.gradNorm, scalars: { loss: s.loss } };
    },
    describe: (a) => `loss ${a.loss.toFixed(4)} nats/token`,
    checkpoint: (step, counters) => {
      saveCheckpoint(paths.checkpoint, {
        step, named: trainer.named, optimizer: trainer.optimizer, optimNames: trainer.paramNames,
        ema: trainer.ema, emaNames: trainer.paramNames, rngs, loader: trainer.loader,
        meta: { kind: 'ar', config: cfg, ...counters },
      });
      if (step === total) score(step);
      trainer.withEmaWeights(() => trainer.model.save(exportFile, {
        [AR_META.tokenizer]: cfg.tokenizer,
        [AR_META.tokenizerSha256]: tokenizerSha,
        [AR_META.sampling]: JSON.stringify(cfg.sampling),
        [AR_META.classNames]: JSON.stringify(train.classNames),
        [AR_META.trainedSteps]: String(step),
      }, { dtype: cfg.run.export_dtype }));
      progress.message(`checkpoint saved at step ${step} (${paths.checkpoint}; ${exportFile})`);
    },
    samples: async (step) => {
      const file = sampleFile(paths, step);
      const prompts = modelConfig.text ? sampleCaptions(val ?? train, SAMPLE_PROMPTS) : null;
      const rows = trainer.withEmaWeights(() => sampleRows(trainer.model, tokenizer, cfg, ks, prompts));
      const perClass = cfg.run.samples_per_class;
      const rowLabels = rows.map((_, i) => {
        if (prompts) return `${i}: ${prompts[Math.floor(i / perClass)]!.length > 60 ? `${prompts[Math.floor(i / perClass)]!.slice(0, 57)}...` : prompts[Math.floor(i / perClass)]}`;
        const name = train.classNames[Math.floor(i / perClass)] ?? String(Math.floor(i / perClass));
        return perClass > 1 ? `${name} #${i % perClass}` : name;
      });
      await writeSampleGrid(file, rows, { rows: rowLabels, cols: ks.map((k) => `k=${k}`), title: `step ${step}` });
      progress.message(`samples at step ${step}: ${file} (one row per ${prompts ? 'prompt' : 'class'} and sample; columns k = ${ks.join(', ')})`);
      if (prompts) prompts.forEach((p, i) => progress.message(`  prompt ${i}: ${p}`));
    },
  });
  return trainer;
}

/** Prompts of a sample grid: one caption of each item count 1..4 in turn, from the first rows of a captioned split. */
const SAMPLE_PROMPTS = 8;

function sampleCaptions(ds: TokenDataset, n: number): string[] {
  const caps = ds.captions!;
  const byCount = new Map<number, string[]>();
  for (let i = 0; i < caps.length && i < 10 * n; i++) {
    const items = caps[i]!.split(/, | and /).length;
    if (!byCount.has(items)) byCount.set(items, []);
    byCount.get(items)!.push(caps[i]!);
  }
  const counts = [...byCount.keys()].sort((a, b) => a - b);
  const out: string[] = [];
  for (let round = 0; out.length < n && round < n; round++) {
    for (const c of counts) if (out.length < n && byCount.get(c)![round] !== undefined) out.push(byCount.get(c)![round]!);
  }
  return out;
}

/** One generated sample per class or prompt (and per samples_per_class), each decoded at every k: rows of
 * [|ks|, C, H, W]. */
function sampleRows(model: FlexAR, tokenizer: FlexTok, cfg: ArTrainConfig, ks: number[], prompts: string[] | null): Tensor[] {
  const per = cfg.run.samples_per_class;
  const classes: number[] = [];
  const promptList: string[] = [];
  if (prompts) for (const p of prompts) for (let s = 0; s < per; s++) promptList.push(p);
  else for (let c = 0; c < model.config.num_classes; c++) for (let s = 0; s < per; s++) classes.push(c);
  const sp = cfg.sampling;
  const tokens = generate(model, {
    ...(prompts ? { prompts: encodePrompts(promptList, model.config.text!) } : { classes }), cfgScale: sp.cfg_scale, schedule: sp.cfg_schedule, power: sp.cfg_power,
    temperature: sp.temperature, topK: sp.top_k, topP: sp.top_p, seed: cfg.seed,
  });
  const seqs = tokens.map((t) => Array.from(t));
  const perK = ks.map((k) => tokenizer.detokenize(seqs, { k, steps: sp.decoder_steps, guidance: sp.decoder_guidance, apg: sp.decoder_apg, noiseScale: sp.decoder_noise_scale }));
  const [, c, h, w] = perK[0].shape;
  const plane = c * h * w;
  return seqs.map((_, i) => {
    const row = new Float32Array(ks.length * plane);
    perK.forEach((img, j) => row.set(img.f.subarray(i * plane, (i + 1) * plane), j * plane));
    return new Tensor(row, [ks.length, c, h, w]);
  });
}
