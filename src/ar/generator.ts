// A trained generator ready to use: the FlexAR model, the tokenizer it was trained on (verified by the
// sha256 of its weights), its stored sampling settings and class names; it turns class labels (or text prompts,
// for a text-conditional model) into token ids and images, and hands out coarse-to-fine previews (prefixes 1, 2,
// 4, … decoded as soon as they exist).

import { fs, path } from '../io/node_builtins.js';
import { FlexTok } from '../flextok/model.js';
import { sha256OfFile, tokenizerWeightsFile } from '../io/token_dataset.js';
import { Tensor } from '../tensor/tensor.js';
import { FlexAR } from './model.js';
import { generate } from './sampling.js';
import { encodePrompts } from './text.js';
import { parseArSampling, type ArSamplingConfig } from './settings.js';

/** Metadata keys of an exported generator (besides the model config FlexAR.save stores itself). */
export const AR_META = {
  tokenizer: 'flextok_ar_tokenizer',
  tokenizerSha256: 'flextok_ar_tokenizer_sha256',
  sampling: 'flextok_ar_sampling',
  classNames: 'flextok_ar_class_names',
  trainedSteps: 'flextok_ar_steps',
} as const;

/** What one generation call may override (everything else comes from the generator's stored settings). */
export interface GenerationSettings extends ArSamplingConfig {
  /** tokens generated per sample, 1..R */
  num_tokens: number;
  seed: number;
  /** take the most probable token instead of drawing */
  argmax: boolean;
}

/** One coarse-to-fine preview: the first k generated tokens of every sample, decoded. */
export interface Preview {
  k: number;
  /** [N, C, H, W] in [-1, 1] (not clamped) */
  images: Tensor;
  /** the k-token prefixes */
  tokens: Int32Array[];
}

/** What to generate, one sample per entry: class ids (class-conditional model) or prompts (text-conditional). */
export type GenerationCondition = number[] | string[];

/** The hex sha256 of `bytes` with Web Crypto (globalThis.crypto.subtle: browsers, and Node ≥ 19). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (subtle === undefined) throw new Error('sha256: Web Crypto (crypto.subtle) is unavailable here (a browser needs a secure context: https or localhost)');
  // digest wants an ArrayBuffer-backed view; copy one held by a SharedArrayBuffer
  const view = bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
  const digest = new Uint8Array(await subtle.digest('SHA-256', view));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The prefix lengths previews are decoded at: 1, 2, 4, … below n, and n itself. */
export function previewLengths(n: number): number[] {
  const out: number[] = [];
  for (let k = 1; k < n; k *= 2) out.push(k);
  out.push(n);
  return out;
}

export class Generator {
  /** the class names stored with the model (index = class id) */
  readonly classNames: string[];
  readonly defaults: ArSamplingConfig;

  constructor(readonly model: FlexAR, readonly tokenizer: FlexTok, readonly source: string) {
    const m = model.metadata;
    this.defaults = parseArSampling(m[AR_META.sampling] ? JSON.parse(m[AR_META.sampling]) : undefined, `${source}: stored sampling settings`);
    const names = m[AR_META.classNames] ? (JSON.parse(m[AR_META.classNames]) as unknown) : null;
    this.classNames = Array.isArray(names) && names.length === model.config.num_classes && names.every((n) => typeof n === 'string')
      ? (names as string[])
      : Array.from({ length: model.config.num_classes }, (_, i) => `class ${i}`);
    if (tokenizer.numTokens !== model.config.num_tokens || tokenizer.codebookSize !== model.config.vocab_size) {
      throw new Error(`${source}: the generator predicts ${model.config.num_tokens} tokens of ${model.config.vocab_size} ids, ` +
        `the tokenizer ${tokenizer.source} has ${tokenizer.numTokens} tokens of ${tokenizer.codebookSize} ids`);
    }
  }

  /**
   * Load a generator (`model.safetensors` or its folder) with the tokenizer it names, or `opts.tokenizer`. The
   * tokenizer's weights must have the sha256 recorded at training time; another tokenizer is refused.
   */
  static load(modelPath: string, opts: { tokenizer?: string; cacheRoot?: string } = {}): Generator {
    const file = fs.existsSync(modelPath) && fs.statSync(modelPath).isDirectory() ? path.join(modelPath, 'model.safetensors') : modelPath;
    if (!fs.existsSync(file)) throw new Error(`${file}: no such generator file (give a generator folder or its model.safetensors)`);
    const model = FlexAR.load(file);
    const recordedPath = model.metadata[AR_META.tokenizer];
    const recordedSha = model.metadata[AR_META.tokenizerSha256];
    if (!recordedSha) throw new Error(`${file}: the generator does not record which tokenizer it was trained on (metadata '${AR_META.tokenizerSha256}')`);
    const tokenizerArg = opts.tokenizer ?? resolveRecordedTokenizer(recordedPath, file);
    const weights = tokenizerWeightsFile(tokenizerArg, opts.cacheRoot);
    const sha = sha256OfFile(weights);
    if (sha !== recordedSha) {
      throw new Error(`${file} was trained on the tokenizer ${recordedPath ?? '?'} (weights sha256 ${recordedSha.slice(0, 12)}…), ` +
        `not on ${weights} (sha256 ${sha.slice(0, 12)}…): its tokens would decode to garbage. Pass --tokenizer with the tokenizer it was trained on.`);
    }
    return new Generator(model, FlexTok.load(weights, { cacheRoot: opts.cacheRoot }), file);
  }

  /**
   * A generator from the bytes of its `model.safetensors` and a tokenizer already loaded (no file system: the
   * browser build's loader). `tokenizerWeights` is the tokenizer's `model.safetensors` bytes or the hex sha256
   * of them; it must match the sha256 recorded at training time (Web Crypto digests asynchronously).
   */
  static async fromBytes(arBytes: Uint8Array, tokenizer: FlexTok, tokenizerWeights: Uint8Array | string, label = '<memory>'): Promise<Generator> {
    const model = FlexAR.fromBytes(arBytes, label);
    const recordedSha = model.metadata[AR_META.tokenizerSha256];
    if (!recordedSha) throw new Error(`${label}: the generator does not record which tokenizer it was trained on (metadata '${AR_META.tokenizerSha256}')`);
    const sha = typeof tokenizerWeights === 'string' ? tokenizerWeights.toLowerCase() : await sha256Hex(tokenizerWeights);
    if (sha !== recordedSha) {
      throw new Error(`${label} was trained on the tokenizer ${model.metadata[AR_META.tokenizer] ?? '?'} (weights sha256 ${recordedSha.slice(0, 12)}…), ` +
        `not on ${tokenizer.source} (sha256 ${sha.slice(0, 12)}…): its tokens would decode to garbage.`);
    }
    return new Generator(model, tokenizer, label);
  }

  /** A class given as an index ("3") or a name (case-insensitive, e.g. "sneaker", "Ankle boot"). */
  classIndex(spec: string): number {
    const s = spec.trim();
    if (/^\d+$/.test(s)) {
      const i = Number(s);
      if (i < this.classNames.length) return i;
    } else {
      const norm = (x: string) => x.toLowerCase().replace(/[\s_-]+/g, ' ');
      const i = this.classNames.findIndex((n) => norm(n) === norm(s) || norm(n).split('/').includes(norm(s)));
      if (i >= 0) return i;
    }
    throw new Error(`unknown class '${spec}': use an index 0..${this.classNames.length - 1} or a name (${this.classNames.join(', ')}), or 'all'`);
  }

  /** The stored settings with the caller's overrides (R tokens, seed 0 unless given). */
  settings(over: Partial<GenerationSettings> = {}): GenerationSettings {
    const merged = parseArSampling({ ...this.defaults, ...pick(over, Object.keys(this.defaults) as (keyof ArSamplingConfig)[]) }, 'generation settings');
    const r = this.model.config.num_tokens;
    const n = over.num_tokens ?? r;
    if (!Number.isInteger(n) || n < 1 || n > r) throw new Error(`the number of tokens must be an integer in 1..${r}, got ${n}`);
    const seed = over.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
    return { ...merged, num_tokens: n, seed, argmax: over.argmax ?? false };
  }

  /** True for a text-conditional generator (it takes prompts, not classes). */
  get isText(): boolean {
    return this.model.config.text !== null;
  }

  /** Token ids for each class or prompt of `cond` (one sample per entry); onToken sees every position as it is drawn.
   * A prompt with a word the model does not know is an error naming the word. */
  generateTokens(cond: GenerationCondition, s: GenerationSettings, onToken?: (position: number, tokensSoFar: Int32Array[]) => void): Int32Array[] {
    if (cond.length === 0) throw new Error('nothing to generate: give at least one class or prompt');
    const text = this.model.config.text;
    const isPrompts = typeof cond[0] === 'string';
    if (text && !isPrompts) throw new Error(`${this.source} is a text-conditional generator: give prompts, not classes`);
    if (!text && isPrompts) throw new Error(`${this.source} is a class-conditional generator: give classes, not prompts`);
    const which = text ? { prompts: encodePrompts(cond as string[], text) } : { classes: cond as number[] };
    return generate(this.model, {
      ...which, numTokens: s.num_tokens, cfgScale: s.cfg_scale, schedule: s.cfg_schedule, power: s.cfg_power,
      temperature: s.temperature, topK: s.top_k, topP: s.top_p, argmax: s.argmax, seed: s.seed, onToken,
    });
  }

  /** Decode the first k tokens of each sequence with the tokenizer (the stored decoder settings; noise from the seed). */
  decode(tokens: Int32Array[], k: number, s: GenerationSettings): Tensor {
    return this.tokenizer.detokenize(tokens.map((t) => Array.from(t.subarray(0, k))), {
      steps: s.decoder_steps, guidance: s.decoder_guidance, apg: s.decoder_apg, noiseScale: s.decoder_noise_scale, seed: s.seed,
    });
  }

  /**
   * Generate and decode. With `onPreview`, the prefixes of length 1, 2, 4, … (and the full length) are decoded while
   * the later tokens are still being generated, and each preview is handed over as soon as it exists (the last one
   * is the final result).
   */
  generateImages(cond: GenerationCondition, s: GenerationSettings, onPreview?: (p: Preview) => void): { tokens: Int32Array[]; images: Tensor } {
    const ks = new Set(previewLengths(s.num_tokens));
    let last: Tensor | null = null;
    const tokens = this.generateTokens(cond, s, onPreview ? (pos, soFar) => {
      const k = pos + 1;
      if (!ks.has(k)) return;
      const prefixes = soFar.map((t) => Int32Array.from(t));
      last = this.decode(prefixes, k, s);
      onPreview({ k, images: last, tokens: prefixes });
    } : undefined);
    return { tokens, images: last ?? this.decode(tokens, s.num_tokens, s) };
  }
}

/** The recorded tokenizer path, resolved next to the generator file when it is relative and not found as given. */
function resolveRecordedTokenizer(recorded: string | undefined, file: string): string {
  if (!recorded) throw new Error(`${file}: the generator does not record its tokenizer path; pass --tokenizer`);
  if (fs.existsSync(recorded) || path.isAbsolute(recorded)) return recorded;
  // e.g. "models/fmnist-default" recorded by a run in the repository root: try the repository of the file
  let dir = path.dirname(path.resolve(file));
  for (let i = 0; i < 4; i++) {
    const candidate = path.join(dir, recorded);
    if (fs.existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  return recorded;
}

function pick<T extends object, K extends keyof T>(o: Partial<T>, keys: K[]): Partial<T> {
  const out: Partial<T> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
