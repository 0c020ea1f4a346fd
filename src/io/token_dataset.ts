// Token datasets: the FlexTok token ids (and class labels) of a whole image split, written once by
// `flextok tokenize-dataset` and read by the autoregressive trainer, which never re-runs the tokenizer.
//
// One safetensors file per split (`<dir>/train.safetensors`, `<dir>/test.safetensors`):
//   tokens  I32 [N, R]  token ids, coarse to fine, each in 0..codebook_size−1
//   labels  I32 [N]     class index into class_names
//   index   I32 [N]     index of the source image in its split
//   flipped U8  [N]     1 for a horizontally flipped copy (with augment 'flip': original, then its flip)
// with augment 'shift' / 'flip+shift' also (each image's rows: original, [flip,] translated original[, translated flip]):
//   shift   I32 [N, 2]  the (dy, dx) pixel translation of each row (0, 0 for untranslated rows)
// and, for captioned data (fmnist-scenes), the caption of every row as UTF-8:
//   caption_bytes   U8  [total bytes]   the captions one after another
//   caption_offsets I32 [N + 1]         row i's caption is caption_bytes[offsets[i] .. offsets[i+1])
// and string metadata: format 'flextok-token-dataset/1', tokenizer (as given), tokenizer_file (resolved),
// tokenizer_sha256 (of the tokenizer's weights file), codebook_size, num_tokens, data, split, augment,
// class_names (JSON list), created (ISO date), and informational keys (preprocess, image_size, seconds, …).
// The reader checks every one of these and names the file, the problem and the fix.
import { crypto, fs, path } from './node_builtins.js';
import { checkpointFile } from '../flextok/checkpoint.js';
import { resolveModelPath } from '../flextok/presets.js';
import { defaultCacheRoot } from './hub.js';
import { openSafetensors, SafetensorsError, writeSafetensors, type SafetensorsFile, type TensorData } from './safetensors.js';

export const TOKEN_DATASET_FORMAT = 'flextok-token-dataset/1';

/** How a corrupt or foreign file is fixed (appended to every reader error). */
const REMAKE_HINT = "re-create it with 'flextok tokenize-dataset --model <tokenizer> --data <source> --out <dir>'";

/** A token dataset file that cannot be used; the message names the file, the problem and the fix. */
export class TokenDatasetError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
    hint: string = REMAKE_HINT,
  ) {
    super(`${file}: ${problem}${hint ? `; ${hint}` : ''}`);
    this.name = 'TokenDatasetError';
  }
}

export type TokenAugment = 'none' | 'flip' | 'shift' | 'flip+shift';
const AUGMENTS: readonly TokenAugment[] = ['none', 'flip', 'shift', 'flip+shift'];
/** Largest |dy|, |dx| a 'shift' row may record. */
const SHIFT_LIMIT = 8;

/** What a token dataset records besides its arrays. */
export interface TokenDatasetInfo {
  /** The tokenizer as given on the command line (a path, preset name or hub id). */
  tokenizerPath: string;
  /** The tokenizer's weights file (absolute) when written. */
  tokenizerFile: string;
  /** sha256 (hex) of the tokenizer's weights file. */
  tokenizerSha256: string;
  /** Distinct token ids: every id is in 0..codebookSize−1. */
  codebookSize: number;
  /** Tokens per image R. */
  numTokens: number;
  /** The data source as given ('fashion-mnist' or a folder). */
  data: string;
  /** 'train', 'test' (the split the file holds). */
  split: string;
  augment: TokenAugment;
  classNames: string[];
  /** ISO 8601 date of writing. */
  created: string;
}

export interface TokenDataset extends TokenDatasetInfo {
  /** The file read. */
  file: string;
  /** Rows (sequences) N: images × 2 with augment 'flip'. */
  count: number;
  /** [count · numTokens] row-major ids. */
  tokens: Int32Array;
  /** [count] class indices into classNames. */
  labels: Int32Array;
  /** [count] index of the source image in its split. */
  index: Int32Array;
  /** [count] 1 for a flipped copy, else 0. */
  flipped: Uint8Array;
  /** [count · 2] (dy, dx) translation of each row with augment 'shift' / 'flip+shift', else null */
  shifts: Int32Array | null;
  /** [count] the caption of each row (captioned data such as fmnist-scenes), else null */
  captions: string[] | null;
  /** Every metadata string of the file (including informational keys such as preprocess and seconds). */
  metadata: Record<string, string>;
}

/** The rows of `ds` for which keep(row) holds, in order (e.g. dropping the mirrored copies of some classes). */
export function selectTokenRows(ds: TokenDataset, keep: (row: number) => boolean): TokenDataset {
  const rows: number[] = [];
  for (let i = 0; i < ds.count; i++) if (keep(i)) rows.push(i);
  const r = ds.numTokens;
  const tokens = new Int32Array(rows.length * r);
  const labels = new Int32Array(rows.length);
  const index = new Int32Array(rows.length);
  const flipped = new Uint8Array(rows.length);
  const shifts = ds.shifts ? new Int32Array(rows.length * 2) : null;
  rows.forEach((i, j) => {
    tokens.set(ds.tokens.subarray(i * r, (i + 1) * r), j * r);
    labels[j] = ds.labels[i];
    index[j] = ds.index[i];
    flipped[j] = ds.flipped[i];
    shifts?.set(ds.shifts!.subarray(i * 2, i * 2 + 2), j * 2);
  });
  const captions = ds.captions ? rows.map((i) => ds.captions![i]) : null;
  return { ...ds, count: rows.length, tokens, labels, index, flipped, shifts, captions };
}

/** What writeTokenDataset takes: the arrays, the recorded fields and optional extra metadata strings. */
export interface TokenDatasetContent extends TokenDatasetInfo {
  tokens: Int32Array;
  labels: Int32Array;
  index: Int32Array;
  flipped: Uint8Array;
  /** [count · 2] per-row translations, required with augment 'shift' / 'flip+shift' */
  shifts?: Int32Array;
  /** one caption per row, for captioned data */
  captions?: string[];
  /** Informational metadata (strings) stored next to the required keys; may not override them. */
  extra?: Record<string, string>;
}

const REQUIRED_KEYS = [
  'format', 'tokenizer', 'tokenizer_file', 'tokenizer_sha256', 'codebook_size', 'num_tokens', 'data', 'split', 'augment', 'class_names', 'created',
] as const;

/** Writes a token dataset atomically (temp file + rename); the content is validated as the reader would. */
export function writeTokenDataset(file: string, content: TokenDatasetContent): void {
  const count = content.labels.length;
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(content.extra ?? {})) {
    if ((REQUIRED_KEYS as readonly string[]).includes(k)) throw new Error(`writeTokenDataset: extra metadata may not set the recorded key '${k}'`);
    metadata[k] = v;
  }
  Object.assign(metadata, {
    format: TOKEN_DATASET_FORMAT,
    tokenizer: content.tokenizerPath,
    tokenizer_file: content.tokenizerFile,
    tokenizer_sha256: content.tokenizerSha256,
    codebook_size: String(content.codebookSize),
    num_tokens: String(content.numTokens),
    data: content.data,
    split: content.split,
    augment: content.augment,
    class_names: JSON.stringify(content.classNames),
    created: content.created,
  });
  // The writer holds itself to the reader's rules: a file it writes always reads back.
  const info = parseInfo(file, metadata);
  checkArrays(file, info, {
    tokens: { dtype: 'I32', shape: [count, content.numTokens], data: content.tokens },
    labels: { dtype: 'I32', shape: [count], data: content.labels },
    index: { dtype: 'I32', shape: [count], data: content.index },
    flipped: { dtype: 'U8', shape: [count], data: content.flipped },
  }, '');
  const captions = content.captions === undefined ? {} : encodeCaptions(file, content.captions, count);
  const hasShift = content.augment.includes('shift');
  if (hasShift !== (content.shifts !== undefined)) throw new Error(`writeTokenDataset ${file}: augment '${content.augment}' ${hasShift ? 'needs' : 'takes no'} per-row shifts`);
  const shift: Record<string, TensorData> = content.shifts === undefined ? {} : { shift: { dtype: 'I32', shape: [count, 2], data: content.shifts } };
  if (content.shifts) checkShifts(file, content.shifts, count, '');
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeSafetensors(
    file,
    {
      tokens: { dtype: 'I32', shape: [count, content.numTokens], data: content.tokens },
      labels: { dtype: 'I32', shape: [count], data: content.labels },
      index: { dtype: 'I32', shape: [count], data: content.index },
      flipped: { dtype: 'U8', shape: [count], data: content.flipped },
      ...shift,
      ...captions,
    },
    metadata,
  );
}

/** Captions → the caption_bytes / caption_offsets tensors. */
function encodeCaptions(file: string, captions: readonly string[], count: number): Record<string, TensorData> {
  if (captions.length !== count) throw new Error(`writeTokenDataset ${file}: ${captions.length} captions for ${count} rows`);
  const encoded = captions.map((c, i) => {
    if (typeof c !== 'string') throw new Error(`writeTokenDataset ${file}: caption ${i} is not a string`);
    return Buffer.from(c, 'utf8');
  });
  const offsets = new Int32Array(count + 1);
  encoded.forEach((b, i) => (offsets[i + 1] = offsets[i]! + b.length));
  const bytes = new Uint8Array(offsets[count]!);
  encoded.forEach((b, i) => bytes.set(b, offsets[i]!));
  return {
    caption_bytes: { dtype: 'U8', shape: [bytes.length], data: bytes },
    caption_offsets: { dtype: 'I32', shape: [count + 1], data: offsets },
  };
}

/** The caption tensors (both or neither) → one string per row; corrupt offsets or bytes are a TokenDatasetError. */
function decodeCaptions(file: string, st: SafetensorsFile, count: number): string[] | null {
  const hasBytes = st.has('caption_bytes');
  if (!hasBytes && !st.has('caption_offsets')) return null;
  if (!hasBytes || !st.has('caption_offsets')) throw new TokenDatasetError(file, `it has ${hasBytes ? 'caption_bytes but no caption_offsets' : 'caption_offsets but no caption_bytes'}`);
  const b = st.info('caption_bytes');
  const o = st.info('caption_offsets');
  if (b.dtype !== 'U8' || b.shape.length !== 1) throw new TokenDatasetError(file, `tensor 'caption_bytes' is ${b.dtype} [${b.shape.join(', ')}], expected U8 [total bytes]`);
  if (o.dtype !== 'I32' || o.shape.length !== 1 || o.shape[0] !== count + 1) {
    throw new TokenDatasetError(file, `tensor 'caption_offsets' is ${o.dtype} [${o.shape.join(', ')}], expected I32 [${count + 1}] (rows + 1)`);
  }
  const bytes = st.read('caption_bytes').data as Uint8Array;
  const offsets = st.read('caption_offsets').data as Int32Array;
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const a = offsets[i]!;
    const e = offsets[i + 1]!;
    if (!(a >= 0 && e >= a && e <= bytes.length) || (i === 0 && a !== 0) || (i === count - 1 && e !== bytes.length)) {
      throw new TokenDatasetError(file, `the file is corrupt; caption_offsets [${a}, ${e}) of row ${i} do not lie in order inside the ${bytes.length} caption bytes`);
    }
    try {
      out.push(decoder.decode(bytes.subarray(a, e)));
    } catch {
      throw new TokenDatasetError(file, `the file is corrupt; the caption of row ${i} is not valid UTF-8`);
    }
  }
  return out;
}

/**
 * Reads and validates a token dataset: the format string, every recorded key, the four tensors' dtypes and
 * shapes (consistent with each other and with num_tokens), ids in 0..codebook_size−1, labels in 0..classes−1,
 * flipped 0/1 (all 0 without augmentation), index ≥ 0. Any problem is a TokenDatasetError naming the file.
 */
export function readTokenDataset(file: string): TokenDataset {
  let st: SafetensorsFile;
  try {
    st = openSafetensors(file);
  } catch (err) {
    throw wrapSafetensorsError(file, err);
  }
  try {
    const metadata = { ...st.metadata };
    if (!('format' in metadata)) {
      throw new TokenDatasetError(file, `not a token dataset: its metadata has no 'format' (expected '${TOKEN_DATASET_FORMAT}'; is it a model checkpoint?)`);
    }
    const info = parseInfo(file, metadata);
    const want: Record<string, 'I32' | 'U8'> = { tokens: 'I32', labels: 'I32', index: 'I32', flipped: 'U8' };
    const tensors: Record<string, TensorData> = {};
    for (const [name, dtype] of Object.entries(want)) {
      if (!st.has(name)) throw new TokenDatasetError(file, `tensor '${name}' is missing (a token dataset holds ${Object.keys(want).join(', ')})`);
      const t = st.info(name);
      if (t.dtype !== dtype) throw new TokenDatasetError(file, `tensor '${name}' has dtype ${t.dtype}, expected ${dtype}`);
    }
    checkShapes(file, info, Object.fromEntries(Object.keys(want).map((n) => [n, st.info(n).shape])));
    for (const name of Object.keys(want)) {
      try {
        tensors[name] = st.read(name);
      } catch (err) {
        throw wrapSafetensorsError(file, err);
      }
    }
    const count = checkArrays(file, info, tensors, 'the file is corrupt; ');
    return {
      ...info,
      file,
      count,
      tokens: tensors.tokens!.data as Int32Array,
      labels: tensors.labels!.data as Int32Array,
      index: tensors.index!.data as Int32Array,
      flipped: tensors.flipped!.data as Uint8Array,
      shifts: readShifts(file, st, info, count),
      captions: decodeCaptions(file, st, count),
      metadata,
    };
  } finally {
    st.close();
  }
}

/** The 'shift' tensor: present exactly with augment 'shift' / 'flip+shift', I32 [N, 2], values within ±SHIFT_LIMIT. */
function readShifts(file: string, st: SafetensorsFile, info: TokenDatasetInfo, count: number): Int32Array | null {
  const want = info.augment.includes('shift');
  if (!st.has('shift')) {
    if (want) throw new TokenDatasetError(file, `tensor 'shift' is missing (metadata augment is '${info.augment}')`);
    return null;
  }
  if (!want) throw new TokenDatasetError(file, `it has a 'shift' tensor but metadata augment is '${info.augment}'`);
  const t = st.info('shift');
  if (t.dtype !== 'I32' || t.shape.length !== 2 || t.shape[0] !== count || t.shape[1] !== 2) {
    throw new TokenDatasetError(file, `tensor 'shift' is ${t.dtype} [${t.shape.join(', ')}], expected I32 [${count}, 2]`);
  }
  const data = st.read('shift').data as Int32Array;
  checkShifts(file, data, count, 'the file is corrupt; ');
  return data;
}

function checkShifts(file: string, shifts: Int32Array, count: number, corrupt: string): void {
  if (shifts.length !== count * 2) throw new TokenDatasetError(file, `${corrupt}${shifts.length} shift values for ${count} rows (expected ${count} × 2)`);
  for (let i = 0; i < shifts.length; i++) {
    if (!(Math.abs(shifts[i]!) <= SHIFT_LIMIT)) throw new TokenDatasetError(file, `${corrupt}shift ${shifts[i]} at row ${i >> 1} is outside ±${SHIFT_LIMIT} px`);
  }
}

function wrapSafetensorsError(file: string, err: unknown): Error {
  if (err instanceof SafetensorsError) {
    const problem = err.message.startsWith(`${file}: `) ? err.message.slice(file.length + 2) : err.message;
    return new TokenDatasetError(file, `not a readable token dataset (${problem})`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

function parsePositiveInt(file: string, key: string, raw: string): number {
  const v = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(v) || v < 1) throw new TokenDatasetError(file, `metadata '${key}' is '${raw}', not a positive integer`);
  return v;
}

/** The recorded fields from the metadata, each checked. */
function parseInfo(file: string, m: Record<string, string>): TokenDatasetInfo {
  if (m.format !== TOKEN_DATASET_FORMAT) {
    throw new TokenDatasetError(
      file,
      `format is '${m.format}', expected '${TOKEN_DATASET_FORMAT}'`,
      m.format?.startsWith('flextok-token-dataset/') ? 'it was written by another flextok version; re-create it with this one (flextok tokenize-dataset)' : REMAKE_HINT,
    );
  }
  for (const key of REQUIRED_KEYS) {
    if (typeof m[key] !== 'string') throw new TokenDatasetError(file, `metadata '${key}' is missing`);
  }
  const codebookSize = parsePositiveInt(file, 'codebook_size', m.codebook_size!);
  const numTokens = parsePositiveInt(file, 'num_tokens', m.num_tokens!);
  if (!/^[0-9a-f]{64}$/.test(m.tokenizer_sha256!)) throw new TokenDatasetError(file, `metadata 'tokenizer_sha256' is '${m.tokenizer_sha256}', not 64 lowercase hex digits`);
  const augment = m.augment! as TokenAugment;
  if (!AUGMENTS.includes(augment)) throw new TokenDatasetError(file, `metadata 'augment' is '${augment}', expected ${AUGMENTS.map((a) => `'${a}'`).join(', ')}`);
  let classNames: unknown;
  try {
    classNames = JSON.parse(m.class_names!);
  } catch {
    throw new TokenDatasetError(file, `metadata 'class_names' is not JSON (got ${JSON.stringify(m.class_names!.slice(0, 60))})`);
  }
  if (!Array.isArray(classNames) || classNames.length === 0 || !classNames.every((c) => typeof c === 'string')) {
    throw new TokenDatasetError(file, `metadata 'class_names' must be a non-empty JSON list of strings`);
  }
  if (m.split === '') throw new TokenDatasetError(file, `metadata 'split' is empty`);
  return {
    tokenizerPath: m.tokenizer!,
    tokenizerFile: m.tokenizer_file!,
    tokenizerSha256: m.tokenizer_sha256!,
    codebookSize,
    numTokens,
    data: m.data!,
    split: m.split!,
    augment,
    classNames: classNames as string[],
    created: m.created!,
  };
}

/** Shapes of the four tensors: tokens [N, R] with R = num_tokens, the others [N]; returns N. */
function checkShapes(file: string, info: TokenDatasetInfo, shapes: Record<string, readonly number[]>): number {
  const tokens = shapes.tokens!;
  if (tokens.length !== 2) throw new TokenDatasetError(file, `tensor 'tokens' has shape [${tokens.join(', ')}], expected [N, ${info.numTokens}]`);
  const [n, r] = tokens as [number, number];
  if (r !== info.numTokens) throw new TokenDatasetError(file, `tensor 'tokens' has ${r} tokens per row but metadata num_tokens is ${info.numTokens}`);
  if (n === 0) throw new TokenDatasetError(file, 'the dataset has no rows (tokens is [0, R])');
  for (const name of ['labels', 'index', 'flipped']) {
    const s = shapes[name]!;
    if (s.length !== 1 || s[0] !== n) throw new TokenDatasetError(file, `tensor '${name}' has shape [${s.join(', ')}] but tokens has ${n} rows (expected [${n}])`);
  }
  return n;
}

/** Values: ids in range, labels in range, flipped 0/1, index ≥ 0; returns N. */
function checkArrays(file: string, info: TokenDatasetInfo, t: Record<string, TensorData>, corrupt: string): number {
  const n = checkShapes(file, info, Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.shape])));
  const tokens = t.tokens!.data as Int32Array;
  const labels = t.labels!.data as Int32Array;
  const index = t.index!.data as Int32Array;
  const flipped = t.flipped!.data as Uint8Array;
  const r = info.numTokens;
  if (tokens.length !== n * r || labels.length !== n || index.length !== n || flipped.length !== n) {
    throw new TokenDatasetError(file, `array lengths (${tokens.length}, ${labels.length}, ${index.length}, ${flipped.length}) do not match ${n} rows of ${r} tokens`);
  }
  const v = info.codebookSize;
  for (let i = 0; i < tokens.length; i++) {
    const id = tokens[i]!;
    if (!(id >= 0 && id < v)) {
      throw new TokenDatasetError(file, `${corrupt}token id ${id} at row ${Math.floor(i / r)}, position ${i % r} is outside 0..${v - 1} (codebook_size ${v})`);
    }
  }
  const c = info.classNames.length;
  for (let i = 0; i < n; i++) {
    if (!(labels[i]! >= 0 && labels[i]! < c)) throw new TokenDatasetError(file, `${corrupt}label ${labels[i]} at row ${i} is outside 0..${c - 1} (${c} class_names)`);
    if (index[i]! < 0) throw new TokenDatasetError(file, `${corrupt}index ${index[i]} at row ${i} is negative`);
    const f = flipped[i]!;
    if (f > 1) throw new TokenDatasetError(file, `${corrupt}flipped is ${f} at row ${i}, expected 0 or 1`);
    if (f === 1 && !info.augment.includes('flip')) throw new TokenDatasetError(file, `${corrupt}row ${i} is marked flipped but metadata augment is '${info.augment}'`);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// tokenizer identity

/** sha256 (lowercase hex) of a file, read in 4 MiB pieces (never held whole in memory). */
export function sha256OfFile(file: string): string {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    for (;;) {
      const got = fs.readSync(fd, buf, 0, buf.length, null);
      if (got <= 0) break;
      hash.update(buf.subarray(0, got));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * The weights file (absolute path) of a tokenizer given as `--model` is: a `model.safetensors` path, a folder
 * holding one, a preset name or a hub id in the cache (as the CLI resolves them).
 */
export function tokenizerWeightsFile(modelPathOrDir: string, cacheRoot: string = defaultCacheRoot()): string {
  return path.resolve(checkpointFile(resolveModelPath(modelPathOrDir, cacheRoot)));
}

/**
 * Throws unless `ds` was made with the tokenizer whose weights file is `weightsFile` (compared by sha256;
 * `sha256` may be given when the caller has it already). Use before training or sampling on a token dataset.
 */
export function checkTokenizerMatch(ds: Pick<TokenDataset, 'file' | 'tokenizerSha256' | 'tokenizerPath'>, weightsFile: string, sha256?: string): void {
  const actual = sha256 ?? sha256OfFile(weightsFile);
  if (actual !== ds.tokenizerSha256) {
    throw new TokenDatasetError(
      ds.file,
      `made with another tokenizer (${ds.tokenizerPath}, weights sha256 ${ds.tokenizerSha256.slice(0, 12)}…) than ${weightsFile} (sha256 ${actual.slice(0, 12)}…)`,
      `use the tokenizer the dataset was made with, or re-create the dataset with 'flextok tokenize-dataset --model ${weightsFile} …'`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// statistics

export interface TokenStats {
  rows: number;
  /** Distinct ids over all rows and positions. */
  distinct: number;
  /** Distinct ids at each position 0..R−1. */
  perPosition: number[];
  perPositionMin: number;
  perPositionMedian: number;
  perPositionMax: number;
  /** Rows per class. */
  perClass: number[];
}

/** Id usage of a token dataset (or of arrays shaped like one). */
export function tokenStats(ds: Pick<TokenDataset, 'tokens' | 'labels' | 'numTokens' | 'codebookSize' | 'classNames'>): TokenStats {
  const r = ds.numTokens;
  const v = ds.codebookSize;
  const rows = ds.labels.length;
  const all = new Uint8Array(v);
  const perPos = Array.from({ length: r }, () => new Uint8Array(v));
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < r; j++) {
      const id = ds.tokens[i * r + j]!;
      all[id] = 1;
      perPos[j]![id] = 1;
    }
  }
  const sum = (a: Uint8Array): number => a.reduce((s, x) => s + x, 0);
  const perPosition = perPos.map(sum);
  const sorted = perPosition.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  const perClass = new Array<number>(ds.classNames.length).fill(0);
  for (let i = 0; i < rows; i++) perClass[ds.labels[i]!]!++;
  return { rows, distinct: sum(all), perPosition, perPositionMin: sorted[0]!, perPositionMedian: median, perPositionMax: sorted[sorted.length - 1]!, perClass };
}
