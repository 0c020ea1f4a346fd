// `flextok generate`: class labels or text prompts → images with a trained generator (stage 2) and its tokenizer,
// as a grid, as one PNG per sample with a tokens file, and optionally with coarse-to-fine previews written as they
// appear.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Generator, type GenerationSettings, type Preview } from '../ar/generator.js';
import { saveGrid, saveGridSync, saveImage } from '../io/image.js';
import { slice } from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { apgOption, NOISE_SCALE_OPTION } from './model_options.js';
import { TOKENS_FORMAT, writeTokensFile } from './tokens_file.js';

export const DEFAULT_GENERATOR = 'models/fmnist-ar';

export const generateSpec: CommandSpec = {
  name: 'generate',
  summary: 'Generate images of given classes (or text prompts) with a trained autoregressive generator over FlexTok tokens (any number of tokens).',
  usage: 'flextok generate [--model DIR] --class NAME|INDEX|all | --prompt TEXT | --prompts FILE [--n N] [--tokens K] [--cfg S] [options] --out grid.png | --out-dir DIR',
  positionals: [],
  options: [
    { name: 'model', kind: 'string', value: 'DIR', help: 'generator folder or its model.safetensors', defaultText: DEFAULT_GENERATOR },
    { name: 'tokenizer', kind: 'string', value: 'MODEL', help: 'the tokenizer the generator was trained on (checked by sha256)', defaultText: 'the one recorded in the generator' },
    { name: 'class', kind: 'string', value: 'C', help: "class name (e.g. sneaker, 'ankle boot'), index, a comma-separated list of them, or 'all'", defaultText: 'all' },
    { name: 'prompt', kind: 'string', value: 'TEXT', help: 'text-conditional generators: the prompt, e.g. "a bag in the top left and a coat in the bottom right" (every word must be in the model\'s vocabulary)' },
    { name: 'prompts', kind: 'string', value: 'FILE', help: 'text-conditional generators: a file of prompts, one per line (blank lines are skipped; files are named by line index)' },
    { name: 'n', kind: 'string', value: 'N', help: 'samples per class or prompt', defaultText: '1' },
    { name: 'tokens', kind: 'string', value: 'K', help: 'tokens to generate per sample, 1..R (fewer tokens: coarser images)', defaultText: 'R (all)' },
    { name: 'cfg', kind: 'string', value: 'S', help: 'classifier-free guidance scale on the logits (1 = none)', defaultText: "the generator's stored setting" },
    { name: 'cfg-schedule', kind: 'string', value: 'NAME', help: "constant, linear (1 → S over the tokens) or power-cosine (RAR)", defaultText: 'stored' },
    { name: 'cfg-power', kind: 'string', value: 'P', help: 'exponent of the power-cosine schedule', defaultText: 'stored' },
    { name: 'temperature', kind: 'string', value: 'T', help: 'sampling temperature (> 0)', defaultText: 'stored' },
    { name: 'top-k', kind: 'string', value: 'K', help: 'keep the K most likely tokens (0 = off; per FSQ digit for a digits-head generator)', defaultText: 'stored' },
    { name: 'top-p', kind: 'string', value: 'P', help: 'nucleus sampling mass in (0, 1] (1 = off)', defaultText: 'stored' },
    { name: 'argmax', kind: 'boolean', help: 'take the most likely token at every step instead of drawing' },
    { name: 'seed', kind: 'string', value: 'N', help: 'seed of the token draws and of the decoder noise (same seed, same images)', defaultText: '0' },
    { name: 'steps', kind: 'string', value: 'N', help: "Euler steps of the tokenizer's decoder", defaultText: 'stored' },
    { name: 'guidance', kind: 'string', value: 'G', help: "guidance of the tokenizer's decoder (1 = none)", defaultText: 'stored' },
    { name: 'apg', kind: 'boolean', help: "with --guidance ≠ 1: adaptive projected guidance in the decoder", defaultText: 'stored' },
    { name: 'no-apg', kind: 'boolean', help: 'with --guidance ≠ 1: plain classifier-free guidance in the decoder' },
    { ...NOISE_SCALE_OPTION, defaultText: 'stored' },
    { name: 'out', short: 'o', kind: 'string', value: 'FILE', help: 'grid PNG: one row per class or prompt, one column per sample' },
    { name: 'out-dir', kind: 'string', value: 'DIR', help: 'one PNG per sample, <class index>_<sample index>.png (prompts: <line index>_<sample index>.png) at the tokenizer\'s native size, plus tokens.json (for flextok detokenize)' },
    { name: 'progressive', kind: 'boolean', help: 'also decode the prefixes 1, 2, 4, … while generating and write each preview as soon as it is ready, plus a strip of all previews per sample' },
  ],
  notes: [
    'Defaults for guidance, filters and the decoder are the settings stored with the generator when it was trained (see its model card).',
    "With --progressive and --out grid.png: grid_k<K>.png per preview and grid_strips.png (one row per sample, one column per k). With --out-dir: <c>_<s>_k<K>.png and <c>_<s>_strip.png.",
  ],
};

/** A number option, or undefined when absent; NaN, infinities and non-numbers are usage errors. */
export function optNum(args: ParsedArgs, name: string, opts: { integer?: boolean; min?: number } = {}): number | undefined {
  if (!args.has(name)) return undefined;
  return args.num(name, 0, opts);
}

export async function runGenerate(args: ParsedArgs, log: (line: string) => void): Promise<void> {
  if (args.positionals.length) throw new UsageError(`unexpected argument '${args.positionals[0]}'`, args.command);
  const out = args.str('out');
  const outDir = args.str('out-dir');
  if (!out && !outDir) throw new UsageError('give --out grid.png and/or --out-dir DIR', args.command);
  const n = args.num('n', 1, { integer: true, min: 1 });
  const over: Partial<GenerationSettings> = {
    num_tokens: optNum(args, 'tokens', { integer: true, min: 1 }),
    cfg_scale: optNum(args, 'cfg', { min: 0 }),
    cfg_power: optNum(args, 'cfg-power'),
    temperature: optNum(args, 'temperature'),
    top_k: optNum(args, 'top-k', { integer: true, min: 0 }),
    top_p: optNum(args, 'top-p'),
    seed: optNum(args, 'seed', { integer: true, min: 0 }),
    decoder_steps: optNum(args, 'steps', { integer: true, min: 1 }),
    decoder_guidance: optNum(args, 'guidance', { min: 0 }),
    decoder_apg: apgOption(args),
    decoder_noise_scale: optNum(args, 'noise-scale', { min: 0 }),
    argmax: args.flag('argmax') || undefined,
  };
  const schedule = args.str('cfg-schedule');
  if (schedule !== undefined) over.cfg_schedule = schedule as GenerationSettings['cfg_schedule'];

  const started = Date.now();
  const gen = Generator.load(args.str('model') ?? DEFAULT_GENERATOR, { tokenizer: args.str('tokenizer') });
  let settings: GenerationSettings;
  try {
    settings = gen.settings(over);
  } catch (e) {
    throw new UsageError((e as Error).message, args.command);
  }
  const rowsOf = conditionRows(args, gen);
  const cfgM = gen.model.config;
  const what = `${rowsOf.labels.length} ${rowsOf.prompts ? 'prompt' : 'class'}${rowsOf.labels.length > 1 ? (rowsOf.prompts ? 's' : 'es') : ''}`;
  log(`loaded ${gen.source} in ${((Date.now() - started) / 1000).toFixed(1)} s: FlexAR d${cfgM.dim}×${cfgM.depth} (${cfgM.head} head${cfgM.text ? ', text-conditional' : ''}), ` +
    `tokenizer ${gen.tokenizer.source}; ${what} × ${n} sample${n > 1 ? 's' : ''}, ` +
    `${settings.num_tokens} tokens, cfg ${settings.cfg_scale} (${settings.cfg_schedule}), temperature ${settings.temperature}, ` +
    `top-k ${settings.top_k}, top-p ${settings.top_p}${settings.argmax ? ', argmax' : ''}, seed ${settings.seed}`);

  const rowCount = rowsOf.labels.length;
  const cond = rowsOf.prompts ? rowsOf.prompts.flatMap((p) => new Array<string>(n).fill(p)) : rowsOf.classIds!.flatMap((c) => new Array<number>(n).fill(c));
  const names = cond.map((_, i) => `${rowsOf.fileIds[Math.floor(i / n)]}_${i % n}`);
  const rowNames = rowsOf.labels;
  const progressive = args.flag('progressive');
  const previews: Preview[] = [];
  const t0 = Date.now();
  const onPreview = progressive ? (p: Preview) => {
    previews.push(p);
    log(`preview k = ${p.k} after ${((Date.now() - t0) / 1000).toFixed(1)} s: ${writePreview(p, out, outDir, names, rowNames, n)}`);
  } : undefined;
  let result: { tokens: Int32Array[]; images: Tensor };
  try {
    result = gen.generateImages(cond, settings, onPreview);
  } catch (e) {
    if (/not in the model's vocabulary|words; the model reads/.test((e as Error).message)) throw new UsageError((e as Error).message, args.command);
    throw e;
  }
  const { tokens, images } = result;
  log(`generated ${cond.length} sample${cond.length > 1 ? 's' : ''} of ${settings.num_tokens} tokens and decoded them in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const rows = Array.from({ length: rowCount }, (_, r) => Array.from({ length: n }, (_, s) => one(images, r * n + s)));
  if (out) {
    await saveGrid(rows, out, { rowLabels: rowNames, colLabels: Array.from({ length: n }, (_, s) => `sample ${s}`) });
    log(`wrote ${out} (rows: ${rowsOf.prompts ? rowsOf.prompts.map((p) => `"${p}"`).join(', ') : rowNames.join(', ')}; ${n} sample${n > 1 ? 's' : ''} per row)`);
  }
  if (outDir) {
    fs.mkdirSync(outDir, { recursive: true });
    for (let i = 0; i < cond.length; i++) await saveImage(one(images, i), path.join(outDir, `${names[i]}.png`));
    const tokFile = path.join(outDir, 'tokens.json');
    writeTokensFile(tokFile, {
      format: TOKENS_FORMAT, model: gen.tokenizer.source, codebook_size: gen.tokenizer.codebookSize, num_tokens: gen.tokenizer.numTokens,
      images: tokens.map((t, i) => ({ file: `${names[i]}.png`, size: [...gen.tokenizer.imageSize] as [number, number], tokens: Array.from(t) })),
    });
    log(`wrote ${cond.length} PNG${cond.length > 1 ? 's' : ''} (${gen.tokenizer.imageSize.join('×')} px) and ${tokFile} to ${outDir}`);
  }
  if (progressive && previews.length) {
    const strips = cond.map((_, i) => previews.map((p) => one(p.images, i)));
    if (out) {
      const file = withSuffix(out, '_strips');
      await saveGrid(strips, file, { rowLabels: cond.map((_, i) => `${rowNames[Math.floor(i / n)]} #${i % n}`), colLabels: previews.map((p) => `k=${p.k}`) });
      log(`wrote ${file} (one row per sample, columns k = ${previews.map((p) => p.k).join(', ')})`);
    }
    if (outDir) {
      for (let i = 0; i < cond.length; i++) await saveGrid([strips[i]], path.join(outDir, `${names[i]}_strip.png`));
      log(`wrote ${cond.length} strip${cond.length > 1 ? 's' : ''} <c>_<s>_strip.png (k = ${previews.map((p) => p.k).join(', ')}) to ${outDir}`);
    }
  }
}

/** The rows to generate: classes (--class) or prompts (--prompt / --prompts), their grid labels and file ids. */
function conditionRows(args: ParsedArgs, gen: Generator): { classIds: number[] | null; prompts: string[] | null; labels: string[]; fileIds: number[] } {
  const prompt = args.str('prompt');
  const promptsFile = args.str('prompts');
  const classSpec = args.str('class');
  if (prompt !== undefined && promptsFile !== undefined) throw new UsageError('give --prompt or --prompts, not both', args.command);
  if (gen.isText) {
    if (classSpec !== undefined) throw new UsageError(`${gen.source} is a text-conditional generator: give --prompt "…" or --prompts FILE instead of --class`, args.command);
    let prompts: string[];
    let fileIds: number[];
    if (promptsFile !== undefined) {
      let text: string;
      try {
        text = fs.readFileSync(promptsFile, 'utf8');
      } catch (e) {
        throw new UsageError(`--prompts ${promptsFile}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, args.command);
      }
      const lines = text.split(/\r?\n/);
      fileIds = lines.map((l, i) => (l.trim() === '' ? -1 : i)).filter((i) => i >= 0);
      prompts = fileIds.map((i) => lines[i]!.trim());
      if (prompts.length === 0) throw new UsageError(`--prompts ${promptsFile} holds no prompt (one per line)`, args.command);
    } else if (prompt !== undefined) {
      if (prompt.trim() === '') throw new UsageError('--prompt is empty (the empty prompt is the unconditional one; give a description)', args.command);
      prompts = [prompt.trim()];
      fileIds = [0];
    } else {
      throw new UsageError(`${gen.source} is a text-conditional generator: give --prompt "…" or --prompts FILE`, args.command);
    }
    return { classIds: null, prompts, labels: prompts.map((p) => (p.length > 60 ? `${p.slice(0, 57)}...` : p)), fileIds };
  }
  if (prompt !== undefined || promptsFile !== undefined) throw new UsageError(`${gen.source} is a class-conditional generator: give --class, not --prompt/--prompts`, args.command);
  let classIds: number[];
  try {
    const spec = classSpec ?? 'all';
    classIds = spec.trim().toLowerCase() === 'all' ? gen.classNames.map((_, i) => i) : spec.split(',').map((c) => gen.classIndex(c));
  } catch (e) {
    throw new UsageError((e as Error).message, args.command);
  }
  return { classIds, prompts: null, labels: classIds.map((c) => gen.classNames[c]!), fileIds: classIds };
}

function one(images: Tensor, i: number): Tensor {
  return images.shape[0] === 1 ? images : slice(images, 0, i, i + 1);
}

function withSuffix(file: string, suffix: string): string {
  const ext = path.extname(file);
  return `${file.slice(0, file.length - ext.length)}${suffix}${ext || '.png'}`;
}

/** Write one preview now (synchronously: generation is still running); returns what was written. */
function writePreview(p: Preview, out: string | undefined, outDir: string | undefined, names: string[], rowNames: string[], n: number): string {
  const written: string[] = [];
  if (out) {
    const file = withSuffix(out, `_k${p.k}`).replace(/\.[^./]+$/, '.png');
    const grid = Array.from({ length: rowNames.length }, (_, r) => Array.from({ length: n }, (_, s) => one(p.images, r * n + s)));
    saveGridSync(grid, file, { rowLabels: rowNames, colLabels: Array.from({ length: n }, (_, s) => `sample ${s}`), title: `first k = ${p.k} tokens` });
    written.push(file);
  }
  if (outDir) {
    for (let i = 0; i < names.length; i++) saveGridSync([[one(p.images, i)]], path.join(outDir, `${names[i]}_k${p.k}.png`), { gap: 0 });
    written.push(`${outDir}/<c>_<s>_k${p.k}.png`);
  }
  return written.join(', ');
}
