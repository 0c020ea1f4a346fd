// Image datasets for training and evaluation: Fashion-MNIST from its IDX files, folders of image
// files (class sub-folders → labels), pad/resize views, and a deterministic, resumable batch loader.
//
// Every dataset yields samples as [C, H, W] float32 in [-1, 1] (pixel/255 · 2 − 1) with an integer
// label; the pixels are kept as 8-bit bytes and converted on `get`, so 60 000 images take 47 MB.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { Tensor } from '../tensor/tensor.js';
import { mixSeed, Rng } from '../tensor/rng.js';

export interface Sample {
  /** [C, H, W] in [-1, 1] */
  image: Float32Array;
  label: number;
}

export interface ImageDataset {
  readonly name: string;
  readonly size: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly numClasses: number;
  readonly classNames: string[];
  get(i: number): Sample;
}

/** Where Debian's `dataset-fashion-mnist` package installs the files; env FLEXTOK_FASHION_MNIST overrides it. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_CLASSES: string[] = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];

// ---------------------------------------------------------------------------------------------
// in-memory datasets of 8-bit pixels

/** A dataset held as bytes: pixels [N, C, H, W] uint8, labels [N]. */
export class ByteImageDataset implements ImageDataset {
  readonly size: number;
  readonly numClasses: number;

  constructor(
    readonly name: string,
    readonly pixels: Uint8Array,
    readonly labels: Int32Array,
    readonly channels: number,
    readonly height: number,
    readonly width: number,
    readonly classNames: string[],
  ) {
    this.size = labels.length;
    this.numClasses = classNames.length;
    const per = channels * height * width;
    if (pixels.length !== this.size * per) {
      throw new Error(`${name}: ${pixels.length} pixel bytes for ${this.size} images of ${channels}×${height}×${width}`);
    }
  }

  get(i: number): Sample {
    checkIndex(this, i);
    const per = this.channels * this.height * this.width;
    const image = new Float32Array(per);
    const src = this.pixels.subarray(i * per, (i + 1) * per);
    for (let k = 0; k < per; k++) image[k] = src[k] * (2 / 255) - 1;
    return { image, label: this.labels[i] };
  }
}

function checkIndex(ds: ImageDataset, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= ds.size) throw new RangeError(`${ds.name}: index ${i} out of range [0, ${ds.size})`);
}

// ---------------------------------------------------------------------------------------------
// IDX files (the MNIST format): big-endian magic 0x0000 <type> <ndims>, ndims uint32 sizes, data

const IDX_UBYTE = 0x08;

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Parses IDX bytes (already gunzipped) holding unsigned bytes; `label` names the file in errors. */
export function parseIdx(bytes: Uint8Array, label: string): IdxArray {
  if (bytes.length < 4) throw new Error(`${label}: only ${bytes.length} bytes, not an IDX file (too short for the 4-byte magic)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  const type = (magic >>> 8) & 0xff;
  const ndims = magic & 0xff;
  if (magic >>> 16 !== 0 || type !== IDX_UBYTE || ndims < 1 || ndims > 4) {
    throw new Error(`${label}: bad IDX magic 0x${magic.toString(16).padStart(8, '0')} (expected 0x000008NN: unsigned bytes with 1–4 dimensions); the file is not an uncorrupted IDX image/label file`);
  }
  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < headerBytes) throw new Error(`${label}: truncated IDX header (${bytes.length} bytes, need ${headerBytes})`);
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) dims.push(view.getUint32(4 + 4 * d, false));
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length - headerBytes !== count) {
    throw new Error(`${label}: IDX header says [${dims.join(', ')}] = ${count} bytes of data but the file has ${bytes.length - headerBytes}`);
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

/** IDX bytes for unsigned-byte data of the given dims. */
export function encodeIdx(data: Uint8Array, dims: number[]): Buffer {
  const count = dims.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new Error(`encodeIdx: ${data.length} bytes for dims [${dims.join(', ')}]`);
  const out = Buffer.alloc(4 + 4 * dims.length + count);
  out.writeUInt32BE((IDX_UBYTE << 8) | dims.length, 0);
  dims.forEach((d, i) => out.writeUInt32BE(d, 4 + 4 * i));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** Writes a gzipped IDX file (used by tests to make small synthetic datasets). */
export function writeIdxGz(file: string, data: Uint8Array, dims: number[]): void {
  fs.writeFileSync(file, zlib.gzipSync(encodeIdx(data, dims)));
}

/** Reads `<base>.gz` (or the uncompressed `<base>`) as IDX. */
function readIdxFile(dir: string, base: string): IdxArray {
  const gz = path.join(dir, `${base}.gz`);
  const plain = path.join(dir, base);
  if (fs.existsSync(gz)) {
    let raw: Buffer;
    try {
      raw = zlib.gunzipSync(fs.readFileSync(gz));
    } catch (err) {
      throw new Error(`${gz}: cannot decompress (${(err as Error).message}); the file is corrupt — reinstall it (apt-get install --reinstall dataset-fashion-mnist)`);
    }
    return parseIdx(raw, gz);
  }
  if (fs.existsSync(plain)) return parseIdx(fs.readFileSync(plain), plain);
  throw new Error(
    `Fashion-MNIST not found: ${gz} does not exist. Install it with "apt-get install dataset-fashion-mnist", ` +
      `or point FLEXTOK_FASHION_MNIST (or opts.dir) at a folder holding ${base}.gz`,
  );
}

/** Fashion-MNIST (60 000 train / 10 000 test, 1×28×28, 10 classes) from its IDX files; `limit` keeps the first N. */
export function loadFashionMnist(split: 'train' | 'test', opts: { dir?: string; limit?: number } = {}): ByteImageDataset {
  if (split !== 'train' && split !== 'test') throw new Error(`loadFashionMnist: split must be 'train' or 'test', got ${String(split)}`);
  const dir = opts.dir ?? process.env.FLEXTOK_FASHION_MNIST ?? FASHION_MNIST_DIR;
  const prefix = split === 'train' ? 'train' : 't10k';
  const images = readIdxFile(dir, `${prefix}-images-idx3-ubyte`);
  const labels = readIdxFile(dir, `${prefix}-labels-idx1-ubyte`);
  const where = path.join(dir, prefix);
  if (images.dims.length !== 3) throw new Error(`${where}-images-idx3-ubyte: expected 3 dimensions [N, H, W], got [${images.dims.join(', ')}]`);
  if (labels.dims.length !== 1) throw new Error(`${where}-labels-idx1-ubyte: expected 1 dimension [N], got [${labels.dims.join(', ')}]`);
  const [n, h, w] = images.dims;
  if (labels.dims[0] !== n) throw new Error(`${where}-*: ${n} images but ${labels.dims[0]} labels`);
  const keep = opts.limit === undefined ? n : Math.max(0, Math.min(n, Math.floor(opts.limit)));
  const lab = new Int32Array(keep);
  for (let i = 0; i < keep; i++) {
    const v = labels.data[i];
    if (v >= FASHION_MNIST_CLASSES.length) throw new Error(`${where}-labels-idx1-ubyte: label ${v} at index ${i} is out of range [0, 10)`);
    lab[i] = v;
  }
  const pixels = images.data.slice(0, keep * h * w); // own copy: drop the full decompressed buffer
  return new ByteImageDataset(`fashion-mnist-${split}`, pixels, lab, 1, h, w, FASHION_MNIST_CLASSES.slice());
}

// ---------------------------------------------------------------------------------------------
// folders of image files

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif', '.heif', '.heic', '.svg', '.bmp']);

function isImageName(name: string): boolean {
  return !name.startsWith('.') && IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase());
}

/** Decodes one file to [C, size, size] bytes (CHW): auto-orient, alpha onto white, grey or sRGB, resized. */
async function decodeToBytes(file: string, size: number, channels: 1 | 3, fit: 'cover' | 'contain'): Promise<Uint8Array> {
  let img = sharp(file, { failOn: 'warning', limitInputPixels: 1 << 28 })
    .rotate()
    .flatten({ background: '#ffffff' })
    .resize({ width: size, height: size, fit, position: 'centre', background: { r: 0, g: 0, b: 0 } });
  img = channels === 1 ? img.grayscale() : img.toColourspace('srgb');
  const { data, info } = await img.removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size) throw new Error(`decoded to ${info.width}×${info.height}, expected ${size}×${size}`);
  const plane = size * size;
  const out = new Uint8Array(channels * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < channels; c++) out[c * plane + i] = data[i * info.channels + Math.min(c, info.channels - 1)];
  }
  return out;
}

/**
 * Loads every image file under `dir` into memory at size×size (`fit` 'cover' = resize the shorter side
 * and centre-crop, the default; 'contain' = fit inside and pad with black).
 * Labels: each sub-folder of `dir` holding images is one class (sorted by name; files directly in `dir`
 * are then ignored); a folder without such sub-folders is a single class named after it.
 * Files are picked by extension (png, jpg/jpeg, webp, gif, tif/tiff, avif, heif/heic, svg, bmp);
 * a file that cannot be decoded is named in a console.warn and skipped, and a count is printed at the end.
 */
export async function loadImageFolder(dir: string, opts: { size: number; channels: 1 | 3; fit?: 'cover' | 'contain' }): Promise<ImageDataset> {
  const { size, channels } = opts;
  const fit = opts.fit ?? 'cover';
  if (!Number.isInteger(size) || size < 1) throw new Error(`loadImageFolder: invalid size ${size}`);
  if (channels !== 1 && channels !== 3) throw new Error(`loadImageFolder: channels must be 1 or 3, got ${String(channels)}`);
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`loadImageFolder: cannot read ${dir} (${code === 'ENOENT' ? 'no such folder' : code === 'ENOTDIR' ? 'not a folder' : (err as Error).message})`);
  }
  const subdirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
  const classes: { name: string; files: string[] }[] = [];
  for (const sub of subdirs) {
    const files = fs.readdirSync(path.join(dir, sub), { withFileTypes: true })
      .filter((e) => e.isFile() && isImageName(e.name)).map((e) => path.join(dir, sub, e.name)).sort();
    if (files.length > 0) classes.push({ name: sub, files });
  }
  if (classes.length === 0) {
    const files = entries.filter((e) => e.isFile() && isImageName(e.name)).map((e) => path.join(dir, e.name)).sort();
    classes.push({ name: path.basename(path.resolve(dir)), files });
  }
  const jobs: { file: string; label: number }[] = [];
  classes.forEach((c, label) => c.files.forEach((file) => jobs.push({ file, label })));
  if (jobs.length === 0) throw new Error(`loadImageFolder: no image files in ${dir} (looked for ${[...IMAGE_EXTENSIONS].join(', ')})`);

  const per = channels * size * size;
  const decoded: (Uint8Array | null)[] = new Array(jobs.length).fill(null);
  const skipped: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const j = next++;
      try {
        decoded[j] = await decodeToBytes(jobs[j].file, size, channels, fit);
      } catch (err) {
        const msg = (err instanceof Error ? err.message : String(err)).split('\n')[0].trim();
        console.warn(`loadImageFolder: skipping ${jobs[j].file}: cannot decode (${msg})`);
        skipped.push(jobs[j].file);
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  const kept = jobs.map((_, j) => j).filter((j) => decoded[j] !== null);
  if (skipped.length > 0) console.warn(`loadImageFolder: skipped ${skipped.length} of ${jobs.length} files in ${dir} (unreadable or corrupt)`);
  if (kept.length === 0) throw new Error(`loadImageFolder: none of the ${jobs.length} image files in ${dir} could be decoded`);
  const pixels = new Uint8Array(kept.length * per);
  const labels = new Int32Array(kept.length);
  kept.forEach((j, k) => {
    pixels.set(decoded[j]!, k * per);
    labels[k] = jobs[j].label;
  });
  return new ByteImageDataset(`folder:${path.basename(path.resolve(dir))}`, pixels, labels, channels, size, size, classes.map((c) => c.name));
}

// ---------------------------------------------------------------------------------------------
// views

/**
 * A view of `ds` at size×size: 'pad' centres each image on a canvas filled with the background −1
 * (black), cropping the centre if the image is larger (e.g. 28 → 32 adds 2 pixels on each side);
 * 'resize' resamples bilinearly (half-pixel centres, as PyTorch's align_corners=False, no antialias).
 */
export function resizeOrPad(ds: ImageDataset, size: number, mode: 'pad' | 'resize'): ImageDataset {
  if (!Number.isInteger(size) || size < 1) throw new Error(`resizeOrPad: invalid size ${size}`);
  if (mode !== 'pad' && mode !== 'resize') throw new Error(`resizeOrPad: mode must be 'pad' or 'resize', got ${String(mode)}`);
  if (size === ds.height && size === ds.width) return ds;
  const { channels: c, height: h, width: w } = ds;
  const transform = mode === 'pad' ? (img: Float32Array) => padImage(img, c, h, w, size) : (img: Float32Array) => bilinearResize(img, c, h, w, size, size);
  return {
    name: `${ds.name}@${mode}${size}`,
    size: ds.size,
    channels: c,
    height: size,
    width: size,
    numClasses: ds.numClasses,
    classNames: ds.classNames,
    get(i: number): Sample {
      const s = ds.get(i);
      return { image: transform(s.image), label: s.label };
    },
  };
}

/** img [c, h, w] centred on a size×size canvas of −1 (larger images are centre-cropped). */
function padImage(img: Float32Array, c: number, h: number, w: number, size: number): Float32Array {
  const out = new Float32Array(c * size * size).fill(-1);
  const oy = Math.floor((size - h) / 2);
  const ox = Math.floor((size - w) / 2);
  for (let ch = 0; ch < c; ch++) {
    for (let y = Math.max(0, -oy); y < Math.min(h, size - oy); y++) {
      const x0 = Math.max(0, -ox);
      const x1 = Math.min(w, size - ox);
      const src = (ch * h + y) * w;
      out.set(img.subarray(src + x0, src + x1), (ch * size + y + oy) * size + x0 + ox);
    }
  }
  return out;
}

/** Bilinear resampling of img [c, h, w] → [c, outH, outW] with half-pixel centres (edges clamped). */
export function bilinearResize(img: Float32Array, c: number, h: number, w: number, outH: number, outW: number): Float32Array {
  const out = new Float32Array(c * outH * outW);
  const src = (o: number, inSize: number, outSize: number): [number, number, number] => {
    const x = Math.max(0, ((o + 0.5) * inSize) / outSize - 0.5);
    const i0 = Math.min(inSize - 1, Math.floor(x));
    const i1 = Math.min(inSize - 1, i0 + 1);
    return [i0, i1, x - i0];
  };
  const xs = Array.from({ length: outW }, (_, o) => src(o, w, outW));
  for (let y = 0; y < outH; y++) {
    const [y0, y1, fy] = src(y, h, outH);
    for (let ch = 0; ch < c; ch++) {
      const r0 = (ch * h + y0) * w;
      const r1 = (ch * h + y1) * w;
      const o = (ch * outH + y) * outW;
      for (let x = 0; x < outW; x++) {
        const [x0, x1, fx] = xs[x];
        const top = img[r0 + x0] + (img[r0 + x1] - img[r0 + x0]) * fx;
        const bot = img[r1 + x0] + (img[r1 + x1] - img[r1 + x0]) * fx;
        out[o + x] = top + (bot - top) * fy;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// batches

/** Where a BatchLoader is: the epoch and the position in that epoch's order of the next batch. */
export interface LoaderState {
  epoch: number;
  index: number;
  seed: number;
}

/**
 * Batches of a dataset, reproducible from (seed, epoch, index) alone: epoch e visits the samples in a
 * permutation drawn from Rng(mixSeed(seed, e)) (or in order with shuffle: false); with flip: true each
 * sample of the batch starting at `index` is mirrored left-right with probability ½, drawn from
 * Rng(mixSeed(seed, e, index, 1)). So `setState(getState())` in a new process reproduces exactly the
 * batches that would have followed. dropLast (default false) skips an epoch's final partial batch.
 */
export class BatchLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly flip: boolean;
  readonly dropLast: boolean;
  private seed: number;
  private epoch = 0;
  private index = 0;
  private order: Int32Array | null = null;
  private orderEpoch = -1;

  constructor(
    readonly dataset: ImageDataset,
    opts: { batchSize: number; seed: number; shuffle?: boolean; flip?: boolean; dropLast?: boolean },
  ) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`BatchLoader: batchSize must be a positive integer, got ${opts.batchSize}`);
    this.batchSize = opts.batchSize;
    this.seed = checkSeed(opts.seed);
    this.shuffle = opts.shuffle ?? true;
    this.flip = opts.flip ?? false;
    this.dropLast = opts.dropLast ?? false;
    if (dataset.size === 0) throw new Error(`BatchLoader: dataset ${dataset.name} is empty`);
    if (this.dropLast && dataset.size < this.batchSize) {
      throw new Error(`BatchLoader: dataset ${dataset.name} has ${dataset.size} samples, fewer than one batch of ${this.batchSize} (dropLast would yield nothing)`);
    }
  }

  /** Batches per epoch. */
  get batchesPerEpoch(): number {
    return this.dropLast ? Math.floor(this.dataset.size / this.batchSize) : Math.ceil(this.dataset.size / this.batchSize);
  }

  /** The sample order of an epoch (a permutation of 0..size-1). */
  epochOrder(epoch: number): Int32Array {
    if (this.order !== null && this.orderEpoch === epoch) return this.order;
    const order = new Int32Array(this.dataset.size);
    for (let i = 0; i < order.length; i++) order[i] = i;
    if (this.shuffle) new Rng(mixSeed(this.seed, epoch)).shuffle(order);
    this.order = order;
    this.orderEpoch = epoch;
    return order;
  }

  /** The next batch: images [B, C, H, W], labels [B], and the epoch it belongs to. */
  next(): { images: Tensor; labels: Int32Array; epoch: number } {
    const n = this.dataset.size;
    const remaining = n - this.index;
    if (remaining <= 0 || (this.dropLast && remaining < this.batchSize)) {
      this.epoch++;
      this.index = 0;
    }
    const epoch = this.epoch;
    const start = this.index;
    const b = Math.min(this.batchSize, n - start);
    const order = this.epochOrder(epoch);
    const { channels: c, height: h, width: w } = this.dataset;
    const per = c * h * w;
    const images = new Float32Array(b * per);
    const labels = new Int32Array(b);
    const flipRng = this.flip ? new Rng(mixSeed(this.seed, epoch, start, 1)) : null;
    for (let k = 0; k < b; k++) {
      const s = this.dataset.get(order[start + k]);
      if (s.image.length !== per) throw new Error(`${this.dataset.name}: sample ${order[start + k]} has ${s.image.length} values, expected ${per}`);
      labels[k] = s.label;
      if (flipRng !== null && flipRng.uniform() < 0.5) {
        for (let r = 0; r < c * h; r++) {
          for (let x = 0; x < w; x++) images[k * per + r * w + x] = s.image[r * w + (w - 1 - x)];
        }
      } else images.set(s.image, k * per);
    }
    this.index = start + b;
    return { images: new Tensor(images, [b, c, h, w]), labels, epoch };
  }

  getState(): LoaderState {
    return { epoch: this.epoch, index: this.index, seed: this.seed };
  }

  setState(s: LoaderState): void {
    if (!Number.isInteger(s.epoch) || s.epoch < 0) throw new Error(`BatchLoader.setState: invalid epoch ${s.epoch}`);
    if (!Number.isInteger(s.index) || s.index < 0 || s.index > this.dataset.size) {
      throw new Error(`BatchLoader.setState: index ${s.index} out of range [0, ${this.dataset.size}] (was the state saved for a different dataset?)`);
    }
    this.seed = checkSeed(s.seed);
    this.epoch = s.epoch;
    this.index = s.index;
    this.order = null;
    this.orderEpoch = -1;
  }
}

function checkSeed(seed: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`BatchLoader: seed must be a non-negative integer, got ${seed}`);
  return seed;
}
