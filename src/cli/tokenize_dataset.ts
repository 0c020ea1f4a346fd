// `flextok tokenize-dataset`: the token ids (and labels) of a whole image split, computed once with a
// tokenizer and written as a token dataset (src/io/token_dataset.ts) for the autoregressive trainer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import type { ImageDataset } from '../io/datasets.js';
import {
  readTokenDataset, sha256OfFile, TOKEN_DATASET_FORMAT, tokenStats, writeTokenDataset, type TokenAugment, type TokenDataset,
} from '../io/token_dataset.js';
import type { FlexTok } from '../flextok/model.js';
import { FMNIST_SCENES, openDataset } from '../train/data.js';
import { mirrorItems, sceneCaption, type SceneDataset } from '../io/scenes.js';
import { Tensor } from '../tensor/tensor.js';
import { mixSeed, Rng } from '../tensor/rng.js';
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { loadModel, MODEL_OPTIONS } from './model_options.js';
import { ProgressBar } from './progress.js';

const DEFAULT_BATCH = 64;

export const tokenizeDatasetSpec: CommandSpec = {
  name: 'tokenize-dataset',
  summary: 'Tokenize a whole image dataset once (token ids + labels per split) for training an autoregressive model.',
  usage: 'flextok tokenize-dataset --model <tokenizer> --data fashion-mnist|fmnist-scenes|<folder> --out <dir> [--split train|test|all] [--augment flip|shift|flip+shift] [--limit N] [--scenes N] [--batch N]',
  positionals: [],
  options: [
    ...MODEL_OPTIONS,
    {
      name: 'data',
      short: 'd',
      kind: 'string',
      value: 'SOURCE',
      help: "'fashion-mnist' (the IDX files in $FLEXTOK_FASHION_MNIST or /usr/share/datasets/fashion-mnist), 'fmnist-scenes' (64×64 scenes of 1–4 Fashion-MNIST items with captions: 60,000 train / 10,000 test; the captions are stored with the ids; a mirrored scene's caption names the mirrored cells) or an image folder (each sub-folder is a class, as in train-tokenizer)",
    },
    {
      name: 'split',
      kind: 'string',
      value: 'NAME',
      help: "Fashion-MNIST and its scenes: 'train' (60,000 images), 'test' (10,000) or 'all' (both, one file each); an image folder has no splits: --split names the file it is written as ('train' or 'test')",
      defaultText: "'all' for Fashion-MNIST and its scenes, 'train' for a folder",
    },
    {
      name: 'augment',
      kind: 'string',
      value: 'MODE',
      help: "'none'; 'flip': each image appears twice, the original then its horizontal mirror (flipped = 1); 'shift': the original, then a copy translated by a fixed pseudo-random (dy, dx) in [-2, 2]² (recorded in 'shift'); 'flip+shift': the original, its mirror, and both translated",
      defaultText: 'none',
    },
    { name: 'limit', kind: 'string', value: 'N', help: 'tokenize only the first N images of each split', defaultText: 'all' },
    {
      name: 'scenes',
      kind: 'string',
      value: 'N',
      help: "fmnist-scenes only: how many train scenes to draw (each a fresh combination of train-split images, deterministic from its index; the first 60,000 are the ones train-tokenizer uses); the test split stays 10,000",
      defaultText: '60000',
    },
    { name: 'batch', kind: 'string', value: 'N', help: 'images per tokenizer call (the ids do not depend on it)', defaultText: String(DEFAULT_BATCH) },
    {
      name: 'resize-mode',
      kind: 'string',
      value: 'MODE',
      help: "how images reach the tokenizer's size: 'pad' (centre on a black canvas; a folder's images are first fitted inside it) or 'resize' (Fashion-MNIST: bilinear; a folder: shorter side, centre crop)",
      defaultText: "data.resize_mode of the train-config.json (or config.json) next to the tokenizer, as in its training; else 'pad' for Fashion-MNIST, 'resize' for a folder",
    },
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', help: 'output folder: <DIR>/<split>.safetensors per split, and README.txt describing every token dataset in it' },
  ],
  notes: [
    `Each <split>.safetensors (format ${TOKEN_DATASET_FORMAT}) holds tokens I32 [N, R] (ids coarse to fine), labels I32 [N], index I32 [N] (the source image's index in its split) and flipped U8 [N] ` +
      '(fmnist-scenes also: each row\'s caption, caption_bytes U8 + caption_offsets I32 [N + 1]), ' +
      'with the tokenizer (path, resolved file and sha256 of its weights), codebook size, token count, data source, split, augmentation, class names and date in its metadata. ' +
      'Training reads these files and checks the sha256 against its tokenizer; the tokenizer never runs again.',
    'Images are prepared as the tokenizer was trained (Fashion-MNIST 28×28 centred on 32×32 for models/fmnist-default) and tokenized deterministically: the ids are those of model.tokenize on the prepared image.',
  ],
};

/** The resize mode the tokenizer was trained with, from the train config next to its weights file. */
function trainedResizeMode(weightsFile: string): { mode: 'pad' | 'resize'; from: string } | null {
  const dir = path.dirname(weightsFile);
  for (const name of ['train-config.json', 'config.json']) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) continue;
    try {
      const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { data?: { resize_mode?: unknown } };
      const mode = json.data?.resize_mode;
      if (mode === 'pad' || mode === 'resize') return { mode, from: file };
    } catch {
      // not a training config (e.g. a hub repository's config.json)
    }
  }
  return null;
}

interface Plan {
  source: string;
  isFolder: boolean;
  splits: Array<'train' | 'test'>;
  augment: TokenAugment;
  limit: number | null;
  /** fmnist-scenes: train scenes to draw (null = the dataset's default) */
  scenes: number | null;
  batch: number;
  out: string;
}

/** Checks the command line (before anything is loaded). */
function plan(args: ParsedArgs): Plan {
  const out = args.requireStr('out');
  const source = args.str('data');
  if (source === undefined || source === '') throw new UsageError(`--data is required: 'fashion-mnist', '${FMNIST_SCENES}' or an image folder`, args.command);
  const isFolder = source !== 'fashion-mnist' && source !== FMNIST_SCENES;
  if (isFolder) {
    let stat: fs.Stats | null = null;
    try {
      stat = fs.statSync(source);
    } catch {
      // reported below
    }
    if (stat === null || !stat.isDirectory()) {
      throw new UsageError(`--data '${source}': unknown data source (use 'fashion-mnist', '${FMNIST_SCENES}' or an image folder; ${stat === null ? 'no such folder' : 'that is a file, not a folder'})`, args.command);
    }
  }
  const split = args.str('split') ?? (isFolder ? 'train' : 'all');
  if (split !== 'train' && split !== 'test' && split !== 'all') throw new UsageError(`--split must be train, test or all, got '${split}'`, args.command);
  const splits: Array<'train' | 'test'> = split === 'all' ? (isFolder ? ['train'] : ['train', 'test']) : [split];
  const augment = args.str('augment') ?? 'none';
  if (augment !== 'none' && augment !== 'flip' && augment !== 'shift' && augment !== 'flip+shift') {
    throw new UsageError(`--augment must be none, flip, shift or flip+shift, got '${augment}'`, args.command);
  }
  if (augment.includes('shift') && source === FMNIST_SCENES) throw new UsageError("--augment shift would move scene items across their cells; use 'flip' for fmnist-scenes", args.command);
  const mode = args.str('resize-mode');
  if (mode !== undefined && mode !== 'pad' && mode !== 'resize') throw new UsageError(`--resize-mode must be pad or resize, got '${mode}'`, args.command);
  const limit = args.has('limit') ? args.num('limit', 0, { integer: true, min: 1 }) : null;
  const scenes = args.has('scenes') ? args.num('scenes', 0, { integer: true, min: 1 }) : null;
  if (scenes !== null && source !== FMNIST_SCENES) throw new UsageError(`--scenes is for --data ${FMNIST_SCENES} (it sets how many train scenes are drawn)`, args.command);
  const batch = args.num('batch', DEFAULT_BATCH, { integer: true, min: 1 });
  if (fs.existsSync(out) && !fs.statSync(out).isDirectory()) throw new UsageError(`--out ${out} is a file; it must be a folder (it receives <split>.safetensors)`, args.command);
  return { source, isFolder, splits, augment, limit, scenes, batch, out };
}

export interface TokenizeSplitResult {
  tokens: Int32Array;
  labels: Int32Array;
  index: Int32Array;
  flipped: Uint8Array;
  /** with augment 'shift': [N, 2] the (dy, dx) translation of each row (0, 0 for untranslated rows) */
  shifts?: Int32Array;
  /** per row, for a scene dataset (a mirrored row's caption names the mirrored cells) */
  captions?: string[];
  images: number;
  seconds: number;
}

/** Largest shift (px) of augment 'shift': each image gets one translation (dy, dx) ∈ [−2, 2]² \ {(0, 0)}, which
 * keeps a 28×28 Fashion-MNIST image inside its 32×32 canvas (2 px of margin). */
export const MAX_SHIFT = 2;

/** The translation of image `index` under augment 'shift' (deterministic; the same for the image and its mirror). */
export function imageShift(index: number): [number, number] {
  const rng = new Rng(mixSeed(0x5817, index));
  const side = 2 * MAX_SHIFT + 1;
  const pick = rng.randint(0, side * side - 1); // every (dy, dx) but (0, 0)
  const cell = pick >= (side * side - 1) / 2 ? pick + 1 : pick;
  return [Math.floor(cell / side) - MAX_SHIFT, (cell % side) - MAX_SHIFT];
}

/** [C, H, W] planes → the same translated by (dy, dx) px, uncovered pixels −1 (the background). */
function translate(src: Float32Array, c: number, h: number, w: number, dy: number, dx: number): Float32Array {
  const out = new Float32Array(src.length).fill(-1);
  for (let ch = 0; ch < c; ch++) {
    for (let y = Math.max(0, dy); y < Math.min(h, h + dy); y++) {
      for (let x = Math.max(0, dx); x < Math.min(w, w + dx); x++) out[(ch * h + y) * w + x] = src[(ch * h + y - dy) * w + x - dx]!;
    }
  }
  return out;
}

/** [C, H, W] planes mirrored left ↔ right. */
function mirror(src: Float32Array, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[(ch * h + y) * w + x] = src[(ch * h + y) * w + (w - 1 - x)]!;
  return out;
}

/**
 * Tokenizes the first `count` images of `ds` (prepared at the model's size) in batches of `batch`. Each image gives
 * its rows in the order: the image; with `flip` its horizontal mirror; with `shift` the image translated by
 * imageShift(i), then (with `flip`) the translated mirror. `onProgress` gets the rows done so far.
 */
export function tokenizeImages(
  model: FlexTok,
  ds: ImageDataset,
  opts: { count?: number; batch?: number; flip?: boolean; shift?: boolean; onProgress?: (rows: number, total: number) => void },
): TokenizeSplitResult {
  const n = Math.min(opts.count ?? ds.size, ds.size);
  const batch = opts.batch ?? DEFAULT_BATCH;
  const variants: Array<{ flip: boolean; shift: boolean }> = [{ flip: false, shift: false }];
  if (opts.flip) variants.push({ flip: true, shift: false });
  if (opts.shift) variants.push(...variants.map((v) => ({ flip: v.flip, shift: true })));
  const per = variants.length;
  const r = model.numTokens;
  const { channels: dc, height: h, width: w } = ds;
  const c = model.imageChannels;
  if (dc !== c && !(dc === 1 && c === 3)) throw new Error(`${ds.name} has ${dc}-channel images; the tokenizer takes ${c}-channel ones`);
  const plane = h * w;
  const rows = n * per;
  const tokens = new Int32Array(rows * r);
  const labels = new Int32Array(rows);
  const index = new Int32Array(rows);
  const flipped = new Uint8Array(rows);
  const shifts = opts.shift ? new Int32Array(rows * 2) : undefined;
  const scenes = isSceneDataset(ds) ? ds : null;
  if (scenes && opts.shift) throw new Error(`${ds.name}: augment 'shift' would move scene items across their cells; use 'flip' for scenes`);
  const captions: string[] | undefined = scenes ? new Array<string>(rows) : undefined;
  const started = Date.now();
  for (let s = 0; s < n; s += batch) {
    const e = Math.min(n, s + batch);
    const b = (e - s) * per;
    const data = new Float32Array(b * c * plane);
    for (let i = s; i < e; i++) {
      const sample = ds.get(i);
      let img = sample.image.subarray(0, dc * plane);
      if (dc !== c) { // grey → RGB
        const rgb = new Float32Array(c * plane);
        for (let ch = 0; ch < c; ch++) rgb.set(img, ch * plane);
        img = rgb;
      }
      const [dy, dx] = opts.shift ? imageShift(i) : [0, 0];
      variants.forEach((v, k) => {
        const row = i * per + k;
        let x = v.flip ? mirror(img, c, h, w) : img;
        if (v.shift) x = translate(x, c, h, w, dy, dx);
        data.set(x, ((i - s) * per + k) * c * plane);
        labels[row] = sample.label;
        index[row] = i;
        flipped[row] = v.flip ? 1 : 0;
        if (shifts && v.shift) shifts.set([dy, dx], row * 2);
        if (scenes) captions![row] = sceneCaption(v.flip ? mirrorItems(scenes.items(i)) : scenes.items(i));
      });
    }
    const ids = model.tokenize(new Tensor(data, [b, c, h, w]));
    for (let k = 0; k < b; k++) tokens.set(ids[k]!, (s * per + k) * r);
    opts.onProgress?.(e * per, rows);
  }
  return { tokens, labels, index, flipped, shifts, captions, images: n, seconds: (Date.now() - started) / 1000 };
}

function isSceneDataset(ds: ImageDataset): ds is SceneDataset {
  return typeof (ds as Partial<SceneDataset>).caption === 'function' && typeof (ds as Partial<SceneDataset>).items === 'function';
}

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}

/** A few lines about one token dataset file (counts, id usage, time taken). */
export function describeTokenDataset(ds: TokenDataset): string[] {
  const st = tokenStats(ds);
  const base = path.basename(ds.file);
  const seconds = Number(ds.metadata.seconds);
  const images = Number(ds.metadata.images ?? ds.count);
  const time = Number.isFinite(seconds) && seconds > 0 ? `, tokenized in ${seconds.toFixed(1)} s (${fmt(Math.round(st.rows / seconds))} images/s)` : '';
  const pos = (v: number) => st.perPosition.indexOf(v) + 1;
  return [
    `${base}: ${fmt(st.rows)} sequences of ${ds.numTokens} tokens from ${fmt(images)} ${ds.split} images (augment ${ds.augment})${time}, written ${ds.created}`,
    `  distinct ids: ${fmt(st.distinct)} of ${fmt(ds.codebookSize)} (${((100 * st.distinct) / ds.codebookSize).toFixed(1)} %); ` +
      `per position: min ${fmt(st.perPositionMin)} (token ${pos(st.perPositionMin)}), median ${fmt(st.perPositionMedian)}, max ${fmt(st.perPositionMax)} (token ${pos(st.perPositionMax)})`,
    `  distinct ids at tokens 1..${ds.numTokens}: ${st.perPosition.join(' ')}`,
    ...(ds.metadata.preprocess ? [`  images: ${ds.metadata.preprocess}`] : []),
    `  sequences per class: ${ds.classNames.map((name, i) => `${name} ${fmt(st.perClass[i]!)}`).join(', ')}`,
    ...(ds.captions ? [`  captions: ${fmt(ds.captions.length)}, e.g. "${ds.captions[0]}"`] : []),
  ];
}

/** README.txt for a folder of token datasets: the tokenizer, the data, and describeTokenDataset of each file. */
function readmeText(files: TokenDataset[]): string {
  const first = files[0]!;
  const lines = [
    `Token datasets written by 'flextok tokenize-dataset' (format ${TOKEN_DATASET_FORMAT}).`,
    '',
    `Tokenizer: ${first.tokenizerPath} (${first.tokenizerFile}, sha256 ${first.tokenizerSha256}): ${first.numTokens} tokens per image, ${fmt(first.codebookSize)} ids.`,
    `Data: ${first.data}; ${first.classNames.length} classes: ${first.classNames.join(', ')}.`,
    '',
  ];
  for (const f of files) {
    if (f.tokenizerSha256 !== first.tokenizerSha256) lines.push(`WARNING: ${path.basename(f.file)} was made with another tokenizer (${f.tokenizerPath}, sha256 ${f.tokenizerSha256})`);
    lines.push(...describeTokenDataset(f), '');
  }
  lines.push(
    `Each file: tokens I32 [N, R] (ids coarse to fine), labels I32 [N], index I32 [N] (source image in its split), flipped U8 [N]${first.captions ? ', captions (caption_bytes U8, caption_offsets I32 [N + 1])' : ''};`,
    'read it with readTokenDataset() from src/io/token_dataset.ts, which checks it.',
  );
  return `${lines.join('\n')}\n`;
}

export async function runTokenizeDataset(args: ParsedArgs, log: (line: string) => void): Promise<void> {
  const p = plan(args);
  const { model, label } = loadModel(args, log);
  const weightsFile = path.resolve(model.source);
  const [h, w] = model.imageSize;
  if (h !== w) throw new Error(`${weightsFile}: the tokenizer's native size is ${h}×${w}; tokenize-dataset prepares square images only`);
  const given = args.str('resize-mode') as 'pad' | 'resize' | undefined;
  const trained = trainedResizeMode(weightsFile);
  const mode = given ?? trained?.mode ?? (p.isFolder ? 'resize' : 'pad');
  const modeFrom = given !== undefined ? '--resize-mode' : trained ? path.basename(trained.from) : 'default';
  const hashStarted = Date.now();
  const sha256 = sha256OfFile(weightsFile);
  log(`tokenizer weights ${weightsFile}: sha256 ${sha256} (${((Date.now() - hashStarted) / 1000).toFixed(1)} s)`);
  fs.mkdirSync(p.out, { recursive: true });

  for (const split of p.splits) {
    const ds = await openDataset({ source: p.source, resolution: h, resize_mode: mode, channels: model.imageChannels === 3 ? 3 : 1, limit: split === 'train' ? p.scenes : null, flip: false }, split);
    const count = p.limit === null ? ds.size : Math.min(p.limit, ds.size);
    const how = p.isFolder
      ? mode === 'pad' ? 'fitted inside and padded' : 'shorter side resized and centre-cropped'
      : p.source === FMNIST_SCENES ? `scenes of 28×28 items in 32×32 cells, drawn` : `28×28 ${mode === 'pad' ? 'padded' : 'resized (bilinear)'}`;
    const preprocess = `${how} to ${h}×${w} (resize mode '${mode}', from ${modeFrom})`;
    const flip = p.augment.includes('flip');
    const shift = p.augment.includes('shift');
    const rowsTotal = count * (flip ? 2 : 1) * (shift ? 2 : 1);
    const extra = [flip ? 'their mirrors' : '', shift ? `translated copies (up to ${MAX_SHIFT} px)` : ''].filter(Boolean).join(' and ');
    log(`${split}: ${fmt(count)} of ${fmt(ds.size)} images of ${ds.name}${extra ? ` and ${extra}` : ''}, ${preprocess}`);
    const bar = new ProgressBar(`tokenize-dataset ${split}`, rowsTotal);
    let result: TokenizeSplitResult;
    try {
      result = tokenizeImages(model, ds, { count, batch: p.batch, flip, shift, onProgress: (done) => bar.update(done) });
    } catch (err) {
      bar.abort();
      throw err;
    }
    bar.done(`(${fmt(Math.round(rowsTotal / Math.max(result.seconds, 1e-3)))} images/s)`);
    const file = path.join(p.out, `${split}.safetensors`);
    writeTokenDataset(file, {
      tokens: result.tokens,
      labels: result.labels,
      index: result.index,
      flipped: result.flipped,
      shifts: result.shifts,
      captions: result.captions,
      tokenizerPath: label,
      tokenizerFile: weightsFile,
      tokenizerSha256: sha256,
      codebookSize: model.codebookSize,
      numTokens: model.numTokens,
      data: p.source,
      split,
      augment: p.augment,
      classNames: ds.classNames.slice(),
      created: new Date().toISOString(),
      extra: {
        preprocess,
        image_size: `${h}x${w}`,
        channels: String(model.imageChannels),
        images: String(count),
        split_size: String(ds.size),
        seconds: result.seconds.toFixed(3),
        batch: String(p.batch),
      },
    });
    log(`wrote ${file}`);
  }

  // README.txt describes every token dataset in the folder (also those of earlier runs).
  const present: TokenDataset[] = [];
  for (const name of ['train.safetensors', 'test.safetensors']) {
    const file = path.join(p.out, name);
    if (fs.existsSync(file)) present.push(readTokenDataset(file));
  }
  const text = readmeText(present);
  writeFileAtomic(path.join(p.out, 'README.txt'), [Buffer.from(text, 'utf8')]);
  for (const line of text.trimEnd().split('\n').slice(4)) log(line);
  log(`wrote ${path.join(p.out, 'README.txt')}`);
}
