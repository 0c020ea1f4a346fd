// Sampling FlexTok token sequences from a FlexAR model: the official temperature / top-k / top-p filter, classifier-free
// guidance on logits with constant, linear or power-cosine scale schedules, and the batched, seeded generation loop
// over the KV cache.
//
// Filter semantics (VAR / LlamaGen / the official `sample_with_top_k_top_p`, checked against its golden output):
//   z = logits / temperature (float32)
//   top-k (k > 0): drop every z below the k-th largest (ties with it are kept, so more than k may survive)
//   top-p (p < 1): sort z ascending, softmax, running sum (float32); drop every token whose running sum is ≤ 1 − p,
//                  except the largest; i.e. keep the smallest set of top tokens whose mass reaches p
//   probs = softmax over the survivors (zeros elsewhere), computed as torch does in float32.
// Ties in top-p: the official sorts with torch's unstable sort, so which of two equal logits straddling the cut
// survives is unspecified there; here the order is (z, index): the lower index is dropped first, and of tied
// largest tokens the last index is the one always kept. topK = 0 and topP = 1 switch a filter off (the official
// code spells "off" top_p = 0; here 0 is refused).
//
// CFG: the batch is doubled, rows 0..B−1 with the requested classes and rows B..2B−1 with the null class −1;
// l = l_u + s_t · (l_c − l_u) on the logits, and the drawn token is appended to both halves. Schedules of s_t over the
// positions t = 0 … R−1 of the model (R = num_tokens, whatever numTokens is asked for, so that a k-token generation is
// exactly the first k tokens of an R-token one with the same seed):
//   constant      s_t = s
//   linear        s_t = 1 + (s − 1) · t / (R − 1)             (1 at the first token, s at the last)
//   power-cosine  s_t = 1 + (s − 1) · (1 − cos(π (t/R)^power)) / 2     (RAR's schedule)
// The unconditional half is skipped when s_t = 1 at every position (s = 1: l = l_c, where the official computes
// l_u + 1 · (l_c − l_u), equal up to float32 rounding).
//
// Digits head: each token's FSQ digits are drawn one after another (digit 0 first); CFG, temperature, top-k and top-p
// act on each digit's distribution separately (top-k keeps k values of one digit, not k tokens), argmax takes the best
// digit in turn (greedy per digit, not the most probable token).
//
// Random draws: one uniform per (position, [digit,] sample), in that order, from the project's Rng seeded by `seed`;
// argmax draws nothing.

import { kernels } from '../tensor/backend.js';
import { Rng } from '../tensor/rng.js';
import { Tensor, withBufferPool } from '../tensor/tensor.js';
import { BufferPool } from '../tensor/pool.js';
import type { FlexAR } from './model.js';
import { concatTextBatches, conditionBatch, nullPrompts, type ArCondition, type TextBatch } from './text.js';

export interface FilterOptions {
  /** > 0 (default 1) */
  temperature?: number;
  /** keep the k largest logits (0 = off, the default) */
  topK?: number;
  /** nucleus mass in (0, 1] (1 = off, the default) */
  topP?: number;
}

export type CfgSchedule = 'constant' | 'linear' | 'power-cosine';

export interface GuidanceOptions {
  /** the guidance scale s ≥ 0 (1 = no guidance, 0 = unconditional) */
  cfgScale: number;
  schedule?: CfgSchedule;
  /** power-cosine exponent (> 0, default 1) */
  power?: number;
}

export interface GenerateOptions extends FilterOptions {
  /** class-conditional models: one class per sample, each in 0..num_classes−1 (repeat a class for several samples
   * of it) */
  classes?: readonly number[] | Int32Array;
  /** text-conditional models instead: one prompt per sample (encodePrompts / embeddedPrompts); the unconditional
   * half of the CFG batch gets empty prompts */
  prompts?: TextBatch;
  /** tokens per sample, 1..R (default R) */
  numTokens?: number;
  /** CFG scale (default 1: no guidance) */
  cfgScale?: number;
  schedule?: CfgSchedule;
  power?: number;
  /** take the most probable token (digit) instead of drawing; filters are ignored */
  argmax?: boolean;
  /** default 0 */
  seed?: number;
  /** false: recompute the whole prefix at every position instead of using the KV cache, as the official inference
   * does (the same tokens up to float rounding; for speed comparisons) */
  kvCache?: boolean;
  /** called after every position with the tokens drawn so far: one view per sample of length position + 1 into the
   * arrays generate returns (they stay valid: later positions only append; do not modify them) */
  onToken?: (position: number, tokensSoFar: Int32Array[]) => void;
}

// ---------------------------------------------------------------------------------------------
// option checks

function checkFilter(opts: FilterOptions, where: string): { temperature: number; topK: number; topP: number } {
  const temperature = opts.temperature ?? 1;
  const topK = opts.topK ?? 0;
  const topP = opts.topP ?? 1;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) {
    throw new Error(`${where}: temperature must be a positive number, got ${temperature} (use argmax for greedy decoding)`);
  }
  if (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 0) throw new Error(`${where}: topK must be an integer ≥ 0 (0 = off), got ${topK}`);
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw new Error(`${where}: topP must be in (0, 1] (1 = off), got ${topP}`);
  return { temperature, topK, topP };
}

function checkGuidance(opts: GuidanceOptions, where: string): Required<GuidanceOptions> {
  const { cfgScale } = opts;
  const schedule = opts.schedule ?? 'constant';
  const power = opts.power ?? 1;
  if (typeof cfgScale !== 'number' || !Number.isFinite(cfgScale) || cfgScale < 0) throw new Error(`${where}: cfgScale must be a number ≥ 0, got ${cfgScale}`);
  if (schedule !== 'constant' && schedule !== 'linear' && schedule !== 'power-cosine') {
    throw new Error(`${where}: schedule must be 'constant', 'linear' or 'power-cosine', got ${JSON.stringify(schedule)}`);
  }
  if (typeof power !== 'number' || !Number.isFinite(power) || power <= 0) throw new Error(`${where}: power must be a positive number, got ${power}`);
  return { cfgScale, schedule, power };
}

// ---------------------------------------------------------------------------------------------
// filtering

/** The k-th largest value of a (1 ≤ k ≤ a.length; a is reordered). Quickselect, O(n) on average. */
function kthLargest(a: Float32Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    // median of three as pivot
    const mid = (lo + hi) >>> 1;
    const x = a[lo], y = a[mid], z = a[hi];
    const pivot = x > y ? (y > z ? y : x > z ? z : x) : x > z ? x : y > z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}

/** Softmax of one row into out as torch computes it in float32: the shift z − max is rounded to float32 before the
 * exponential (that rounding, not the exponential, dominates the difference to an exact softmax: up to ~2e-6
 * relative); the exponentials and the sum are the engine's kernel (exact zeros for −Infinity). */
function softmaxRow(z: Float32Array, out: Float32Array): void {
  let m = -Infinity;
  for (let i = 0; i < z.length; i++) if (z[i] > m) m = z[i];
  for (let i = 0; i < z.length; i++) out[i] = z[i] - m; // rounded to float32 on store
  kernels().softmaxForward(out, out, 1, z.length);
}

const BUCKET_SHIFT = 17; // a float32 value's top 15 bits (exponent and 6 mantissa bits): order-preserving bins of non-negative values

/**
 * Top-p on one row, in place: z (finite or −Infinity) gets −Infinity where the official filter drops a token.
 * Instead of sorting the whole row, the probabilities are binned by their float32 exponent and top mantissa bits
 * (bins are ordered like the values, and so like z): bins whose running mass stays below the cut are dropped
 * whole, bins that start above it are kept whole, and only the bins in between are sorted and summed token by token.
 */
function topPInPlace(z: Float32Array, topP: number): void {
  const n = z.length;
  const p = new Float32Array(n);
  softmaxRow(z, p);
  const cut = Math.fround(1 - topP); // the official compares a float32 running sum with 1 − top_p
  const bits = new Uint32Array(p.buffer);
  let maxBin = 0;
  for (let i = 0; i < n; i++) maxBin = Math.max(maxBin, bits[i] >>> BUCKET_SHIFT);
  const mass = new Float64Array(maxBin + 1);
  for (let i = 0; i < n; i++) mass[bits[i] >>> BUCKET_SHIFT] += p[i];
  // A running sum (accumulated in double, as torch does, then rounded to float32) is dropped iff it rounds to ≤ cut.
  // Margins: 1e-12 for our different summation order, two ulps of the cut for the rounding.
  const slack = 2 * 2 ** (Math.floor(Math.log2(Math.max(cut, 2 ** -126))) - 23) + 1e-12;
  // first: the lowest bin not dropped whole (never the top bin: it holds the largest token, always kept)
  let below = 0; // mass of the bins under `first`
  let first = 0;
  while (first < maxBin && below + mass[first] <= cut - 1e-12) below += mass[first++];
  // last: the highest bin whose running sum may still start at or below the cut
  let last = first;
  let start = below + mass[first];
  while (last < maxBin && start <= cut + slack) start += mass[++last];
  for (let i = 0; i < n; i++) if (bits[i] >>> BUCKET_SHIFT < first) z[i] = -Infinity;
  // the undecided bins, ascending by (z, index) as the official stable sort orders them
  const idx: number[] = [];
  for (let i = 0; i < n; i++) {
    const b = bits[i] >>> BUCKET_SHIFT;
    if (b >= first && b <= last) idx.push(i);
  }
  idx.sort((a, b) => z[a] - z[b] || a - b);
  const keepLast = last === maxBin ? 1 : 0; // the row's largest token (largest z, then index) is never dropped
  let cum = below;
  for (let r = 0; r < idx.length - keepLast; r++) {
    cum += p[idx[r]];
    if (Math.fround(cum) > cut) break;
    z[idx[r]] = -Infinity;
  }
}

/**
 * The distribution the official sampler draws from: temperature, then top-k, then top-p, renormalised. logits [V]
 * (finite) → probs [V] written to `out` (zeros where a token was filtered out).
 */
export function filterLogits(logits: Float32Array, opts: FilterOptions = {}, out: Float32Array = new Float32Array(logits.length)): Float32Array {
  const { temperature, topK, topP } = checkFilter(opts, 'filterLogits');
  const n = logits.length;
  if (n === 0) throw new Error('filterLogits: no logits');
  if (out.length !== n) throw new Error(`filterLogits: out has ${out.length} entries for ${n} logits`);
  const filtered = (topK > 0 && topK < n) || topP < 1;
  const z = filtered ? new Float32Array(n) : out; // without filters the scaled logits go straight to out
  const t32 = Math.fround(temperature);
  for (let i = 0; i < n; i++) {
    const v = logits[i];
    if (!Number.isFinite(v)) throw new Error(`filterLogits: logit ${i} is ${v}`);
    z[i] = v / t32; // torch divides by the temperature rounded to float32
  }
  if (topK > 0 && topK < n) {
    const thr = kthLargest(Float32Array.from(z), topK);
    for (let i = 0; i < n; i++) if (z[i] < thr) z[i] = -Infinity;
  }
  if (topP < 1) topPInPlace(z, topP);
  softmaxRow(z, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// guidance

/** The CFG scale at position t (0 … horizon−1) of a horizon of R positions (see the module comment). */
export function cfgScaleAt(t: number, horizon: number, opts: GuidanceOptions): number {
  const { cfgScale: s, schedule, power } = checkGuidance(opts, 'cfgScaleAt');
  if (!Number.isInteger(horizon) || horizon < 1) throw new Error(`cfgScaleAt: horizon must be a positive integer, got ${horizon}`);
  if (!Number.isInteger(t) || t < 0 || t >= horizon) throw new Error(`cfgScaleAt: position ${t} is outside 0..${horizon - 1}`);
  if (schedule === 'constant') return s;
  if (schedule === 'linear') return horizon === 1 ? s : 1 + ((s - 1) * t) / (horizon - 1);
  const ramp = (1 - Math.cos(Math.PI * Math.pow(t / horizon, power))) / 2;
  return (s - 1) * ramp + 1;
}

/** In place: rows 0..B−1 of logits [2B, V] ← l_u + s · (l_c − l_u), float32 as the official code computes it. */
export function applyCfg(logits: Float32Array, batch: number, vocab: number, scale: number): void {
  if (logits.length !== 2 * batch * vocab) throw new Error(`applyCfg: ${logits.length} logits for 2 × ${batch} rows of ${vocab}`);
  const s = Math.fround(scale);
  const half = batch * vocab;
  for (let i = 0; i < half; i++) {
    const c = logits[i];
    const u = logits[half + i];
    logits[i] = u + Math.fround(s * Math.fround(c - u));
  }
}

// ---------------------------------------------------------------------------------------------
// drawing

/** Index of the largest entry (the first on ties). */
export function argmaxIndex(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Draw rows 0..rows−1 of guided logits [rows, V] (the first rows of `logits`) into dst[b · stride + offset]. */
function drawRows(logits: Float32Array, rows: number, vocab: number, filter: Required<FilterOptions>, argmax: boolean, rng: Rng,
  probs: Float32Array, dst: Int32Array, stride: number, offset: number): void {
  for (let b = 0; b < rows; b++) {
    const row = logits.subarray(b * vocab, (b + 1) * vocab);
    dst[b * stride + offset] = argmax ? argmaxIndex(row) : rng.multinomial(filterLogits(row, filter, probs));
  }
}

// ---------------------------------------------------------------------------------------------
// generation

function float32(x: Float32Array | Float64Array): Float32Array {
  return x instanceof Float32Array ? x : Float32Array.from(x);
}

/** Without the cache: the hidden state of position t [rows, D] recomputed from the tokens 0..t−1 of every row
 * (history [rows, stride]). */
function lastHidden(model: FlexAR, history: Int32Array, stride: number, t: number, rowCond: ArCondition): Tensor {
  const rows = conditionBatch(rowCond);
  const d = model.config.dim;
  const prefix = new Int32Array(rows * t);
  for (let i = 0; i < rows; i++) prefix.set(history.subarray(i * stride, i * stride + t), i * t);
  const h = model.forwardHidden(prefix, rowCond); // [rows, t+1, D]
  const last = new Tensor(h.f instanceof Float64Array ? new Float64Array(rows * d) : new Float32Array(rows * d), [rows, d]);
  for (let i = 0; i < rows; i++) last.f.set(h.f.subarray((i * (t + 1) + t) * d, (i * (t + 1) + t + 1) * d), i * d);
  return last;
}

/**
 * Generate token sequences for a batch of classes with the KV cache: one Int32Array of numTokens ids per sample,
 * reproducible from the seed (see the module comment for guidance, filters and the order of random draws).
 */
export function generate(model: FlexAR, opts: GenerateOptions): Int32Array[] {
  const cfg = model.config;
  const r = cfg.num_tokens;
  const prompts = opts.prompts ?? null;
  if (cfg.text) {
    if (opts.classes !== undefined || prompts === null) throw new Error('generate: this model is text-conditional: give prompts, not classes');
  } else {
    if (prompts !== null) throw new Error('generate: this model is class-conditional: give classes, not prompts');
    if (!(Array.isArray(opts.classes) || opts.classes instanceof Int32Array) || opts.classes.length === 0) {
      throw new Error('generate: classes must be a non-empty list of class ids');
    }
    Array.from(opts.classes).forEach((c, i) => {
      if (!Number.isInteger(c) || c < 0 || c >= cfg.num_classes) throw new Error(`generate: class ${c} (sample ${i}) is outside 0..${cfg.num_classes - 1}`);
    });
  }
  const numTokens = opts.numTokens ?? r;
  if (!Number.isInteger(numTokens) || numTokens < 1 || numTokens > r) throw new Error(`generate: numTokens must be an integer in 1..${r}, got ${numTokens}`);
  const guidance = checkGuidance({ cfgScale: opts.cfgScale ?? 1, schedule: opts.schedule, power: opts.power }, 'generate');
  const filter = checkFilter(opts, 'generate');
  const argmax = opts.argmax ?? false;
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`generate: seed must be a non-negative integer, got ${seed}`);

  const b = prompts ? prompts.batch : opts.classes!.length;
  const scales = Array.from({ length: numTokens }, (_, t) => cfgScaleAt(t, r, guidance));
  const guided = scales.some((s) => s !== 1);
  const rows = guided ? 2 * b : b; // [cond | uncond]
  let rowCond: ArCondition;
  if (prompts) {
    rowCond = guided ? concatTextBatches(prompts, nullPrompts(b, cfg.text!)) : prompts;
  } else {
    const rowClasses = new Int32Array(rows).fill(-1);
    rowClasses.set(Array.from(opts.classes!));
    rowCond = rowClasses;
  }
  const rng = new Rng(seed);
  const useCache = opts.kvCache ?? true;
  const cache = useCache ? model.createCache(rows) : null;
  const history = useCache ? null : new Int32Array(rows * numTokens); // [rows, numTokens] tokens so far, without cache
  const out = Array.from({ length: b }, () => new Int32Array(numTokens));
  const prev = new Int32Array(rows); // the token each row drew last
  const pool = new BufferPool();
  const levels = cfg.fsq_levels;
  const digits = new Int32Array(rows * levels.length); // digits head: [rows, n] digits of the token being drawn
  let probs = new Float32Array(0);

  for (let t = 0; t < numTokens; t++) {
    withBufferPool(pool, () => {
      const hidden = cache ? model.step(cache, t === 0 ? null : prev, rowCond) : lastHidden(model, history!, numTokens, t, rowCond); // [rows, D]
      if (cfg.head === 'flat') {
        const logits = float32(model.flatLogits(hidden).f); // [rows, V]
        if (guided) applyCfg(logits, b, cfg.vocab_size, scales[t]);
        if (probs.length !== cfg.vocab_size) probs = new Float32Array(cfg.vocab_size);
        drawRows(logits, b, cfg.vocab_size, filter, argmax, rng, probs, prev, 1, 0);
      } else {
        for (let j = 0; j < levels.length; j++) {
          const logits = float32(model.digitLogits(hidden, digits, j).f); // [rows, L_j]
          if (guided) applyCfg(logits, b, levels[j], scales[t]);
          if (probs.length !== levels[j]) probs = new Float32Array(levels[j]);
          drawRows(logits, b, levels[j], filter, argmax, rng, probs, digits, levels.length, j);
          if (guided) digits.copyWithin(b * levels.length, 0, b * levels.length); // the unconditional half follows
        }
        for (let i = 0; i < b; i++) {
          let id = 0;
          for (let j = levels.length - 1; j >= 0; j--) id = id * levels[j] + digits[i * levels.length + j];
          prev[i] = id;
        }
      }
      return null;
    });
    if (guided) prev.copyWithin(b, 0, b);
    if (history) for (let i = 0; i < rows; i++) history[i * numTokens + t] = prev[i];
    for (let i = 0; i < b; i++) out[i][t] = prev[i];
    opts.onToken?.(t, out.map((o) => o.subarray(0, t + 1)));
  }
  return out;
}
