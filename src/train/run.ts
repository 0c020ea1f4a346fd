// Shared machinery of training runs you can trust: the run folder (config copy, log.jsonl, sample
// grids, checkpoint, exported model), a progress line on stderr, and one-file checkpoints holding
// everything a bitwise-exact resume needs (weights, AdamW m/v and step, EMA weights, RNG states,
// data-loader position, step), written atomically (temp file + fsync + rename).
//
// TEST-ONLY fault injection (read by test/train_resume.test.ts; never set these in a real run):
//   FLEXTOK_TEST_KILL_AFTER_CHECKPOINT=N   the process SIGKILLs itself right after step N's checkpoint is
//                                          durably written (renamed into place, folder synced)
//   FLEXTOK_TEST_KILL_DURING_CHECKPOINT=N  the process SIGKILLs itself halfway through writing step N's
//                                          checkpoint: part of the temp file written, no rename

import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { encodeSafetensors, readSafetensors, toFloat32, type TensorData } from '../io/safetensors.js';
import { BatchLoader, type ImageDataset, type LoaderState } from '../io/datasets.js';
import { saveGrid } from '../io/image.js';
import { concat } from '../tensor/ops.js';
import { AdamW, EMA } from '../tensor/optim.js';
import { mixSeed, Rng, type RngState } from '../tensor/rng.js';
import type { OptimConfig } from './config.js';
import { Tensor } from '../tensor/tensor.js';

export const CHECKPOINT_FORMAT = 'flextok-train-checkpoint/1';

export interface RunPaths {
  dir: string;
  /** copy of the training config (the source of truth on --resume) */
  config: string;
  checkpoint: string;
  log: string;
  samples: string;
  /** exported model in the official layout */
  model: string;
}

export function runPaths(dir: string): RunPaths {
  return {
    dir,
    config: path.join(dir, 'config.json'),
    checkpoint: path.join(dir, 'checkpoint.safetensors'),
    log: path.join(dir, 'log.jsonl'),
    samples: path.join(dir, 'samples'),
    model: path.join(dir, 'model.safetensors'),
  };
}

/** Fresh run: create the folder and write config.json; refuse to overwrite a run that has a checkpoint. */
export function startRunDir(paths: RunPaths, configJson: unknown): void {
  if (fs.existsSync(paths.checkpoint)) {
    throw new Error(`${paths.dir} already holds a training run (checkpoint.safetensors); pass --resume to continue it, or choose another --out`);
  }
  fs.mkdirSync(paths.samples, { recursive: true });
  writeTextAtomic(paths.config, `${JSON.stringify(configJson, null, 2)}\n`);
  fs.rmSync(paths.log, { force: true });
}

export function writeTextAtomic(file: string, text: string): void {
  writeFileAtomic(file, [Buffer.from(text, 'utf8')]);
}

/** Writes `bytes` atomically (io/atomic.ts); `midWrite` runs when half of them are in the temp file (the
 * test-only kill point). */
function writeBytesAtomic(file: string, bytes: Uint8Array, midWrite?: () => void): void {
  const half = bytes.length >> 1;
  writeFileAtomic(file, (function* halves() {
    yield bytes.subarray(0, half);
    midWrite?.();
    yield bytes.subarray(half);
  })());
}

/** Removes temp files (`*.tmp-<pid>`) that a killed process left in `dir` mid-write (on --resume). */
export function removeStaleTempFiles(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const name of fs.readdirSync(dir)) {
    const m = /\.tmp-(\d+)$/.exec(name);
    if (m && Number(m[1]) !== process.pid) fs.rmSync(path.join(dir, name), { force: true });
  }
}

/** The test-only kill points (see the top of this file). */
function testKillPoint(when: 'AFTER' | 'DURING', step: number): void {
  if (process.env[`FLEXTOK_TEST_KILL_${when}_CHECKPOINT`] === String(step)) process.kill(process.pid, 'SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// log.jsonl

/** One JSON object per line; on resume, lines after the checkpoint's step are dropped (they would be
 * written again by the resumed run). */
export class JsonlLog {
  constructor(readonly file: string, resumeStep: number | null) {
    if (resumeStep !== null && fs.existsSync(file)) {
      const kept = fs.readFileSync(file, 'utf8').split('\n').filter((line) => {
        if (!line.trim()) return false;
        try {
          const step = (JSON.parse(line) as { step?: number }).step;
          return typeof step === 'number' && step <= resumeStep;
        } catch {
          return false; // a line cut short by a kill
        }
      });
      writeTextAtomic(file, kept.map((l) => `${l}\n`).join(''));
    }
  }

  append(entry: Record<string, unknown>): void {
    fs.appendFileSync(this.file, `${JSON.stringify(entry)}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// progress on stderr

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

/** A single redrawn line on a terminal; a plain line per report otherwise (logs stay readable). */
export class TrainProgress {
  private readonly tty: boolean;
  private lastDraw = 0;

  constructor(private readonly label: string, private readonly total: number, private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = stream.isTTY === true && process.env.TERM !== 'dumb';
  }

  /** Redraw (TTY, at most 5×/s) or, when `report` is set, print a plain line. */
  update(step: number, text: string, opts: { imagesPerSec: number; imagesPerStep: number; report: boolean }): void {
    const eta = opts.imagesPerSec > 0 ? ((this.total - step) * opts.imagesPerStep) / opts.imagesPerSec : NaN;
    const line = `${this.label} step ${step}/${this.total} ${text} ${opts.imagesPerSec.toFixed(1)} img/s ETA ${formatDuration(eta)}`;
    if (this.tty) {
      const now = Date.now();
      if (now - this.lastDraw < 200 && step < this.total) return;
      this.lastDraw = now;
      this.stream.write(`\r\x1b[2K${line}`);
    } else if (opts.report) {
      this.stream.write(`${line}\n`);
    }
  }

  /** A message on its own line (keeps the TTY bar intact). */
  message(text: string): void {
    this.stream.write(this.tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
  }

  done(text: string): void {
    this.message(`${this.label} ${text}`);
  }
}

// ---------------------------------------------------------------------------------------------
// checkpoints

/** Everything a checkpoint saves and a resume restores. */
export interface CheckpointParts {
  step: number;
  /** model tensors (trainable and fixed) by name */
  named: [string, Tensor][];
  optimizer: AdamW;
  /** one name per optimizer parameter, in the optimizer's (group) order */
  optimNames: string[];
  ema: EMA | null;
  /** one name per EMA shadow, in order */
  emaNames: string[];
  rngs: Record<string, Rng>;
  loader: { getState(): LoaderState; setState(s: LoaderState): void };
  /** extra JSON (config, counters) */
  meta: Record<string, unknown>;
}

interface CheckpointHeader {
  format: string;
  step: number;
  optimizerStep: number;
  rngs: Record<string, RngState>;
  loader: LoaderState;
  meta: Record<string, unknown>;
}

const f32 = (t: Float32Array, shape: readonly number[]): TensorData => ({ dtype: 'F32', shape: [...shape], data: t });

/** Write the checkpoint atomically (a kill at any moment leaves the previous one intact). */
export function saveCheckpoint(file: string, parts: CheckpointParts): void {
  const tensors = new Map<string, TensorData>();
  // No copy needed for float32 weights: encodeSafetensors below copies every tensor into the file's bytes.
  for (const [name, t] of parts.named) tensors.set(`model/${name}`, f32(t.f instanceof Float32Array ? t.f : Float32Array.from(t.f), t.shape));
  const shapes = new Map(parts.named.map(([n, t]) => [n, t.shape]));
  const opt = parts.optimizer.getState();
  if (opt.slots.length !== parts.optimNames.length) throw new Error(`saveCheckpoint: ${opt.slots.length} optimizer slots for ${parts.optimNames.length} names`);
  opt.slots.forEach((slot, i) => {
    const name = parts.optimNames[i];
    const shape = shapes.get(name) ?? [slot.m.length];
    tensors.set(`optim.m/${name}`, f32(slot.m, shape));
    tensors.set(`optim.v/${name}`, f32(slot.v, shape));
  });
  if (parts.ema) {
    parts.ema.getState().forEach((s, i) => {
      const name = parts.emaNames[i];
      tensors.set(`ema/${name}`, f32(s, shapes.get(name) ?? [s.length]));
    });
  }
  const rngs: Record<string, RngState> = {};
  for (const [k, r] of Object.entries(parts.rngs)) rngs[k] = r.getState();
  const header: CheckpointHeader = { format: CHECKPOINT_FORMAT, step: parts.step, optimizerStep: parts.optimizer.stepCount, rngs, loader: parts.loader.getState(), meta: parts.meta };
  const bytes = encodeSafetensors(tensors, { flextok_train: JSON.stringify(header) });
  writeBytesAtomic(file, bytes, () => testKillPoint('DURING', parts.step));
  testKillPoint('AFTER', parts.step);
}

/** The header of a checkpoint (step, meta) without restoring anything. */
export function readCheckpointHeader(file: string): CheckpointHeader {
  const { metadata } = readSafetensors(file);
  return parseHeader(metadata, file);
}

function parseHeader(metadata: Record<string, string>, file: string): CheckpointHeader {
  const raw = metadata.flextok_train;
  if (!raw) throw new Error(`${file}: not a flextok training checkpoint (no 'flextok_train' metadata)`);
  const h = JSON.parse(raw) as CheckpointHeader;
  if (h.format !== CHECKPOINT_FORMAT) throw new Error(`${file}: checkpoint format '${h.format}' is not '${CHECKPOINT_FORMAT}'`);
  return h;
}

/** Restore every part from a checkpoint; all tensors are checked before anything is changed. */
export function loadCheckpoint(file: string, parts: Omit<CheckpointParts, 'step' | 'meta'>): { step: number; meta: Record<string, unknown> } {
  const { metadata, tensors } = readSafetensors(file);
  const h = parseHeader(metadata, file);
  const get = (key: string, size: number): Float32Array => {
    const t = tensors.get(key);
    if (!t) throw new Error(`${file}: tensor '${key}' is missing (the checkpoint belongs to a different model config)`);
    const v = toFloat32(t);
    if (v.length !== size) throw new Error(`${file}: tensor '${key}' has ${v.length} values, the model expects ${size}`);
    return v;
  };
  const sizes = new Map(parts.named.map(([n, t]) => [n, t.size]));
  const model = parts.named.map(([name, t]) => get(`model/${name}`, t.size));
  const slots = parts.optimNames.map((name) => ({ m: get(`optim.m/${name}`, sizes.get(name)!), v: get(`optim.v/${name}`, sizes.get(name)!) }));
  const ema = parts.ema ? parts.emaNames.map((name) => get(`ema/${name}`, sizes.get(name)!)) : null;
  for (const k of Object.keys(parts.rngs)) if (!h.rngs[k]) throw new Error(`${file}: RNG state '${k}' is missing`);

  parts.named.forEach(([, t], i) => (t.f as Float32Array).set(model[i]));
  parts.optimizer.setState({ step: h.optimizerStep, slots });
  if (parts.ema && ema) parts.ema.setState(ema);
  for (const [k, r] of Object.entries(parts.rngs)) r.setState(h.rngs[k]);
  parts.loader.setState(h.loader);
  return { step: h.step, meta: h.meta };
}

// ---------------------------------------------------------------------------------------------
// sample grids

/** One [1, 3, H, W] image (grey images are repeated to RGB) of a batch [B, C, H, W]. */
function rgbOf(batch: Tensor, i: number): Tensor {
  const [, c, h, w] = batch.shape;
  const plane = h * w;
  const src = batch.f.subarray(i * c * plane, (i + 1) * c * plane);
  const out = new Float32Array(3 * plane);
  for (let ch = 0; ch < 3; ch++) out.set(src.subarray(Math.min(ch, c - 1) * plane, (Math.min(ch, c - 1) + 1) * plane), ch * plane);
  return new Tensor(out, [1, 3, h, w]);
}

/** PNG grid: one row per batch (e.g. originals, then reconstructions at each k), one column per image; `labels`
 * (optional) are drawn left of the rows, above the columns and above everything (see GridOptions). */
export async function writeSampleGrid(file: string, rows: Tensor[], labels: { rows?: string[]; cols?: string[]; title?: string } = {}): Promise<void> {
  const grid = rows.map((batch) => Array.from({ length: batch.shape[0] }, (_, i) => rgbOf(batch, i)));
  await saveGrid(grid, file, { rowLabels: labels.rows, colLabels: labels.cols, title: labels.title });
}

/** Concatenate [1, C, H, W] tensors into a batch. */
export function batchOf(list: Tensor[]): Tensor {
  return list.length === 1 ? list[0] : concat(list, 0);
}

/** `samples/step_000500.png` style names. */
export function sampleFile(paths: RunPaths, step: number): string {
  return path.join(paths.samples, `step_${String(step).padStart(6, '0')}.png`);
}

// ---------------------------------------------------------------------------------------------
// the step loop shared by the trainers

/** What a trainer reports per optimizer step. */
export interface LoopStepStats {
  images: number;
  lr: number;
  gradNorm: number;
  /** values averaged over the log interval (e.g. loss, rf, repa) */
  scalars: Record<string, number>;
}

export interface LoopOptions {
  label: string;
  totalSteps: number;
  imagesPerStep: number;
  logEvery: number;
  sampleEvery: number;
  checkpointEvery: number;
  log: JsonlLog;
  progress: TrainProgress;
  /** steps done so far (after a resume) */
  startStep: number;
  /** wall time and images of earlier sessions (from the checkpoint) */
  elapsedBefore: number;
  imagesSeenBefore: number;
  trainStep: () => LoopStepStats;
  /** short text for the progress line from the interval's averaged scalars */
  describe: (avg: Record<string, number>) => string;
  /** save checkpoint (and export) at `step` with these counters */
  checkpoint: (step: number, counters: { elapsedSeconds: number; imagesSeen: number }) => void;
  samples: (step: number) => Promise<void>;
}

/** Steps until totalSteps: log.jsonl and progress every logEvery steps, samples and checkpoints on
 * their schedules, a final checkpoint and sample grid at the end. */
export async function runLoop(o: LoopOptions): Promise<void> {
  const started = Date.now();
  let step = o.startStep;
  let imagesSeen = o.imagesSeenBefore;
  let intervalStart = Date.now();
  let sums: Record<string, number> = {};
  let n = 0;
  let intervalImages = 0;
  let gradNormSum = 0;
  const counters = () => ({ elapsedSeconds: o.elapsedBefore + (Date.now() - started) / 1000, imagesSeen });
  while (step < o.totalSteps) {
    const s = o.trainStep();
    step++;
    imagesSeen += s.images;
    intervalImages += s.images;
    gradNormSum += s.gradNorm;
    n++;
    for (const [k, v] of Object.entries(s.scalars)) sums[k] = (sums[k] ?? 0) + v;
    const now = Date.now();
    const imagesPerSec = intervalImages / Math.max(1e-3, (now - intervalStart) / 1000);
    const report = step % o.logEvery === 0 || step === o.totalSteps;
    const avg: Record<string, number> = {};
    for (const [k, v] of Object.entries(sums)) avg[k] = v / n;
    if (report) {
      o.log.append({ step, ...avg, lr: s.lr, grad_norm: gradNormSum / n, images_per_sec: imagesPerSec, images_seen: imagesSeen, elapsed_s: counters().elapsedSeconds });
    }
    o.progress.update(step, o.describe(avg), { imagesPerSec, imagesPerStep: o.imagesPerStep, report });
    if (o.sampleEvery > 0 && step % o.sampleEvery === 0 && step < o.totalSteps) await o.samples(step);
    if (o.checkpointEvery > 0 && step % o.checkpointEvery === 0 && step < o.totalSteps) o.checkpoint(step, counters());
    if (report) {
      // The next interval's images/s counts training only (not this checkpoint or sample grid).
      sums = {};
      n = 0;
      intervalImages = 0;
      gradNormSum = 0;
      intervalStart = Date.now();
    }
  }
  o.checkpoint(step, counters());
  await o.samples(step);
  o.progress.done(`finished: step ${step}/${o.totalSteps}, ${((Date.now() - started) / 1000).toFixed(1)} s this session`);
}

// ---------------------------------------------------------------------------------------------
// optimisation state shared by the tokenizer and VAE trainers

/** Run fn with the EMA weights swapped into `params` (restored afterwards, also when fn throws); without
 * an EMA, fn runs on the live weights. Samples and exports use this. */
export function withEmaWeights<T>(ema: EMA | null, params: Tensor[], fn: () => T): T {
  if (!ema) return fn();
  const saved = params.map((p) => Float32Array.from(p.f));
  ema.copyTo(params);
  try {
    return fn();
  } finally {
    params.forEach((p, i) => (p.f as Float32Array).set(saved[i]));
  }
}

/** Where a resumed run stands: the step, and the wall time and images of its earlier sessions. */
export interface ResumePoint {
  step: number;
  elapsedSeconds: number;
  imagesSeen: number;
}

/** --resume: restore every part from the run's checkpoint (after removing temp files a killed write left in
 * the run folder and `extraDirs`), say so on `log`, and return where the run stands. */
export function resumeRun(paths: RunPaths, parts: Omit<CheckpointParts, 'step' | 'meta'>, log: (line: string) => void, extraDirs: string[] = []): ResumePoint {
  if (!fs.existsSync(paths.checkpoint)) throw new Error(`--resume: ${paths.checkpoint} does not exist (nothing to resume)`);
  removeStaleTempFiles(paths.dir); // left by a process killed mid-write
  for (const d of extraDirs) removeStaleTempFiles(d);
  const r = loadCheckpoint(paths.checkpoint, parts);
  log(`resumed ${paths.dir} at step ${r.step}`);
  return { step: r.step, elapsedSeconds: Number(r.meta.elapsedSeconds ?? 0), imagesSeen: Number(r.meta.imagesSeen ?? 0) };
}

/** Independent random streams of a run, each seeded from the config seed (each checkpointed). */
export const STREAM_INIT = 1;
export const STREAM_TRAIN = 2;
export const STREAM_DATA = 3;

export interface Optimization {
  /** trainable parameters in optimizer order (decayed first), with their checkpoint names */
  params: Tensor[];
  paramNames: string[];
  optimizer: AdamW;
  ema: EMA | null;
  /** the training stream (keep-k, null-condition, timestep, noise and posterior draws) */
  rng: Rng;
  loader: BatchLoader;
}

/** AdamW with two groups (weight decay on `decays` parameters only), EMA, the training RNG and the
 * shuffled data loader, all seeded from `seed`. */
export function setupOptimization(
  trainable: [string, Tensor][], decays: (name: string, t: Tensor) => boolean, o: OptimConfig,
  seed: number, dataset: ImageDataset, flip: boolean,
): Optimization {
  const decay = trainable.filter(([n, t]) => decays(n, t));
  const noDecay = trainable.filter(([n, t]) => !decays(n, t));
  const ordered = [...decay, ...noDecay];
  const params = ordered.map(([, t]) => t);
  const optimizer = new AdamW([
    { params: decay.map(([, t]) => t), weightDecay: o.weight_decay },
    { params: noDecay.map(([, t]) => t), weightDecay: 0 },
  ], { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay });
  return {
    params,
    paramNames: ordered.map(([n]) => n),
    optimizer,
    ema: o.ema_decay > 0 ? new EMA(params, o.ema_decay) : null,
    rng: new Rng(mixSeed(seed, STREAM_TRAIN)),
    loader: new BatchLoader(dataset, { batchSize: o.batch_size, seed: mixSeed(seed, STREAM_DATA), shuffle: true, flip, dropLast: dataset.size >= o.batch_size }),
  };
}
