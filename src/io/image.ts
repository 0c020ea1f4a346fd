// Image files ↔ tensors (via sharp): loading with the model's preprocessing, saving to PNG/JPEG/WebP, and image grids
// (optionally labelled: row labels, column labels and a title in the bitmap font of font.ts).
//
// Preprocessing (`loadImage`), the same as the FlexTok demo up to the resampling filter:
//   1. decode the file (any format sharp reads: PNG, JPEG, WebP, GIF, TIFF, AVIF, HEIF, SVG), apply the EXIF
//      orientation, composite transparency onto white, convert to 8-bit sRGB (grey → RGB);
//   2. resize so the SHORTER side equals `size` (Lanczos-3, sharp's default), then centre-crop `size × size`;
//      with `resize: false` the image keeps its size and is only centre-cropped down to a multiple of
//      `multipleOf` (the model's pixels per token-grid cell);
//   3. x/255 → [0, 1] → (x − 0.5)/0.5 → [-1, 1], layout [1, 3, H, W] float32.
// Saving maps [-1, 1] → [0, 255] (values outside are clamped) and rounds to the nearest integer.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import * as path from 'node:path';
import sharp from 'sharp';
import { Tensor } from '../tensor/tensor.js';
import { CAP_H, drawText, GLYPH_H, textSize } from './font.js';
import { padToCanvas, pixelsToTensor, tensorToPixels } from './pixels.js';

export { padToCanvas };

/** A file that cannot be read as an image, or an image the model cannot take; the message names the file. */
export class ImageError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'ImageError';
  }
}

export interface LoadImageOptions {
  /** Target side length in pixels (shorter side resized to it, then centre crop). Default 256. */
  size?: number;
  /** false: keep the original size (only crop to a multiple of `multipleOf`). Default true. */
  resize?: boolean;
  /** The image sides must be multiples of this (VAE downsampling × patch size). Default 16. */
  multipleOf?: number;
  /** 3 (RGB, default) or 1 (greyscale, for single-channel models such as the Fashion-MNIST one). */
  channels?: 1 | 3;
}

function describeError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0]!.trim();
}

/** Decodes an image file to 8-bit sRGB pixels (HWC, 3 channels), auto-oriented, alpha flattened onto white. */
async function decodeRgb(file: string, prepare?: (img: sharp.Sharp) => sharp.Sharp): Promise<{ data: Buffer; width: number; height: number }> {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ImageError(file, code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, not an image' : `cannot read the file (${describeError(err)})`);
  }
  if (bytes.length === 0) throw new ImageError(file, 'the file is empty, not an image');
  try {
    // failOn 'warning': a truncated or corrupt file is an error instead of a partly grey image.
    let img = sharp(bytes, { failOn: 'warning', limitInputPixels: 1 << 28 }).rotate().flatten({ background: '#ffffff' }).toColourspace('srgb');
    if (prepare) img = prepare(img);
    const { data, info } = await img.removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels === 3) return { data, width: info.width, height: info.height };
    // Single-channel output (some grey inputs): replicate to RGB.
    const rgb = Buffer.alloc(info.width * info.height * 3);
    for (let i = 0; i < info.width * info.height; i++) rgb.fill(data[i * info.channels]!, i * 3, i * 3 + 3);
    return { data: rgb, width: info.width, height: info.height };
  } catch (err) {
    if (err instanceof ImageError) throw err;
    const msg = describeError(err);
    const kind = /unsupported image format|Input buffer contains unsupported/i.test(msg)
      ? 'not an image (or a format this build cannot read)'
      : /premature|truncat|end of|corrupt|invalid|read error|not enough|incomplete/i.test(msg)
        ? 'the image is truncated or corrupt'
        : 'cannot decode the image';
    throw new ImageError(file, `${kind} (${msg})`);
  }
}

/** [1, C, H, W] float32 in [-1, 1] from interleaved 8-bit RGB. */
function rgbToTensor(data: Buffer, width: number, height: number, channels: 1 | 3 = 3): Tensor {
  return pixelsToTensor(data, width, height, 3, channels);
}

/** Loads an image file as a [1, C, H, W] tensor in [-1, 1] (C = opts.channels, default 3) with the preprocessing described above. */
export async function loadImage(file: string, opts: LoadImageOptions = {}): Promise<Tensor> {
  const size = opts.size ?? 256;
  const multipleOf = opts.multipleOf ?? 16;
  if (!Number.isInteger(size) || size < 1) throw new ImageError(file, `invalid target size ${size}`);
  if (opts.resize !== false) {
    if (size % multipleOf !== 0) throw new ImageError(file, `target size ${size} is not a multiple of ${multipleOf}`);
    const { data, width, height } = await decodeRgb(file, (img) =>
      img.resize({ width: size, height: size, fit: 'cover', position: 'centre', kernel: 'lanczos3' }),
    );
    return rgbToTensor(data, width, height, opts.channels);
  }
  const { data, width, height } = await decodeRgb(file);
  const w = width - (width % multipleOf);
  const h = height - (height % multipleOf);
  if (w < multipleOf || h < multipleOf) {
    throw new ImageError(file, `the image is ${width}×${height} pixels, smaller than one ${multipleOf}×${multipleOf} patch of the model (use a larger image, or let it be resized)`);
  }
  if (w === width && h === height) return rgbToTensor(data, width, height, opts.channels);
  const x0 = Math.floor((width - w) / 2);
  const y0 = Math.floor((height - h) / 2);
  const crop = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) data.copy(crop, y * w * 3, ((y0 + y) * width + x0) * 3, ((y0 + y) * width + x0 + w) * 3);
  return rgbToTensor(crop, w, h, opts.channels);
}

/** Interleaved 8-bit RGB of one image tensor ([1, C, H, W] or [C, H, W], C = 3 or 1 for grey), [-1, 1] → [0, 255], clamped. */
export function tensorToRgb(image: Tensor): { data: Buffer; width: number; height: number } {
  return tensorToPixels(image, 3, (n) => Buffer.alloc(n));
}

async function writeRgb(file: string, data: Buffer, width: number, height: number): Promise<void> {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const ext = path.extname(file).toLowerCase();
  let img = sharp(data, { raw: { width, height, channels: 3 } });
  if (ext === '.jpg' || ext === '.jpeg') img = img.jpeg({ quality: 95 });
  else if (ext === '.webp') img = img.webp({ lossless: true });
  else if (ext === '.png' || ext === '') img = img.png();
  else throw new ImageError(file, `cannot write '${ext}' images; use .png, .jpg or .webp`);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await img.toFile(tmp);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err instanceof ImageError ? err : new ImageError(file, `cannot write the image (${describeError(err)})`);
  }
}

/** Saves one image tensor ([1, 3, H, W] or [3, H, W] in [-1, 1]) as PNG (or JPEG / WebP by extension). */
export async function saveImage(image: Tensor, file: string): Promise<void> {
  const { data, width, height } = tensorToRgb(image);
  await writeRgb(file, data, width, height);
}

export interface GridOptions {
  /** Pixels between cells and around the border. Default 2. */
  gap?: number;
  /** Gap colour as 8-bit RGB. Default white. */
  background?: [number, number, number];
  /** Text left of each row (right-aligned in a column as wide as the longest label, vertically centred on the row);
   * fewer labels than rows leave the rest unlabelled, '' leaves one row unlabelled. */
  rowLabels?: string[];
  /** Text above each column, centred on it (a column is widened if its label is wider than its images). */
  colLabels?: string[];
  /** Text above everything, centred on the whole picture. */
  title?: string;
  /** Size in pixels of one font pixel (a whole number ≥ 1). Default 1 when the cells are at most 64 pixels high, else 2. */
  labelScale?: number;
  /** Label colour as 8-bit RGB. Default dark grey (light grey on a dark background). */
  labelColor?: [number, number, number];
}

/** The default label colour: dark grey on light backgrounds, light grey on dark ones. */
function defaultLabelColor(bg: readonly [number, number, number]): [number, number, number] {
  return 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2] >= 128 ? [51, 51, 51] : [204, 204, 204];
}

/** The RGB pixels of a grid of images: `rows[r][c]` is the image of row r, column c (null leaves a cell empty).
 * Cells are as large as the largest image of their column / row; smaller images are centred. Labels (row labels in a
 * column on the left, column labels and a title above) are drawn with the bitmap font of font.ts; without any label
 * the picture is just the cells with their gaps. */
export function composeGrid(rows: Array<Array<Tensor | null>>, opts: GridOptions = {}): { data: Buffer; width: number; height: number } {
  const gap = opts.gap ?? 2;
  const bg = opts.background ?? [255, 255, 255];
  const nCols = Math.max(0, ...rows.map((r) => r.length));
  if (rows.length === 0 || nCols === 0) throw new Error('saveGrid: no images');
  const colW = new Array<number>(nCols).fill(0);
  const rowH = new Array<number>(rows.length).fill(0);
  const cells = rows.map((row, r) =>
    row.map((img, c) => {
      if (img === null) return null;
      const rgb = tensorToRgb(img);
      colW[c] = Math.max(colW[c]!, rgb.width);
      rowH[r] = Math.max(rowH[r]!, rgb.height);
      return rgb;
    }),
  );

  // Labels: the space they take on the left (row labels) and on top (title, then column labels).
  const rowLabels = (opts.rowLabels ?? []).map((l) => l ?? '');
  const colLabels = (opts.colLabels ?? []).map((l) => l ?? '');
  const title = opts.title ?? '';
  if (rowLabels.length > rows.length) throw new Error(`saveGrid: ${rowLabels.length} row labels for ${rows.length} rows`);
  if (colLabels.length > nCols) throw new Error(`saveGrid: ${colLabels.length} column labels for ${nCols} columns`);
  const hasRowLabels = rowLabels.some((l) => l !== '');
  const hasColLabels = colLabels.some((l) => l !== '');
  let scale = 1;
  let left = 0;
  let titleH = 0;
  let headerH = 0;
  let labelW = 0;
  let titleW = 0;
  if (hasRowLabels || hasColLabels || title !== '') {
    scale = opts.labelScale ?? (Math.max(...rowH) <= 64 ? 1 : 2);
    if (!Number.isInteger(scale) || scale < 1) throw new Error(`saveGrid: labelScale must be a whole number ≥ 1, got ${scale}`);
    const textH = GLYPH_H * scale;
    const pad = Math.max(gap, 3 * scale); // between a label and what it labels
    if (hasRowLabels) {
      rowLabels.forEach((l, r) => {
        if (l !== '') rowH[r] = Math.max(rowH[r]!, textH);
      });
      labelW = Math.max(...rowLabels.map((l) => textSize(l, scale).w));
      left = labelW + pad;
    }
    if (hasColLabels) {
      // a label wider than its images widens the column, keeping neighbouring labels apart
      colLabels.forEach((l, c) => {
        if (l !== '') colW[c] = Math.max(colW[c]!, textSize(l, scale).w + 4 * scale);
      });
      headerH = textH + pad;
    }
    if (title !== '') {
      titleW = textSize(title, scale).w;
      titleH = textH + pad;
    }
  }
  const top = titleH + headerH;

  const width = Math.max(left + gap + colW.reduce((a, w) => a + w + gap, 0), titleW + 2 * gap);
  const height = top + gap + rowH.reduce((a, h) => a + h + gap, 0);
  const out = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) out.set(bg, i * 3);
  let y = top + gap;
  cells.forEach((row, r) => {
    let x = left + gap;
    row.forEach((cell, c) => {
      if (cell !== null) {
        const ox = x + Math.floor((colW[c]! - cell.width) / 2);
        const oy = y + Math.floor((rowH[r]! - cell.height) / 2);
        for (let yy = 0; yy < cell.height; yy++) {
          cell.data.copy(out, ((oy + yy) * width + ox) * 3, yy * cell.width * 3, (yy + 1) * cell.width * 3);
        }
      }
      x += colW[c]! + gap;
    });
    y += rowH[r]! + gap;
  });

  if (left + top > 0) {
    const ink = opts.labelColor ?? defaultLabelColor(bg);
    const textH = GLYPH_H * scale;
    if (title !== '') drawText(out, width, height, Math.floor((width - titleW) / 2), gap, title, ink, scale);
    let x = left + gap;
    colLabels.forEach((l, c) => {
      drawText(out, width, height, x + Math.floor((colW[c]! - textSize(l, scale).w) / 2), gap + titleH, l, ink, scale);
      x += colW[c]! + gap;
    });
    let yy = top + gap;
    rowH.forEach((h, r) => {
      const l = rowLabels[r] ?? '';
      // The capitals centred on the row; descenders may hang below unless that would leave the row.
      const dy = Math.max(0, Math.min(h - textH, Math.floor((h - CAP_H * scale) / 2)));
      drawText(out, width, height, gap + labelW - textSize(l, scale).w, yy + dy, l, ink, scale);
      yy += h + gap;
    });
  }
  return { data: out, width, height };
}

/** Saves a grid of images (see composeGrid) as PNG (or JPEG / WebP by extension). */
export async function saveGrid(rows: Array<Array<Tensor | null>>, file: string, opts: GridOptions = {}): Promise<void> {
  const { data, width, height } = composeGrid(rows, opts);
  await writeRgb(file, data, width, height);
}

// ---------------------------------------------------------------------------------------------
// synchronous PNG (for code that must write while a synchronous computation runs, e.g. previews)

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function pngChunk(type: string, body: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, 'ascii');
  out.set(body, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

/** 8-bit RGB pixels → PNG bytes (filter 0 on every row, zlib level 6). */
export function encodePngRgb(data: Buffer, width: number, height: number): Buffer {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) data.copy(raw, y * (width * 3 + 1) + 1, y * width * 3, (y + 1) * width * 3);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type RGB, deflate, no filter method, no interlace
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw, { level: 6 })), pngChunk('IEND', new Uint8Array(0))]);
}

/** Saves a grid of images (see composeGrid; the same options and pixels as saveGrid) as PNG before returning (atomically: temp file + rename). */
export function saveGridSync(rows: Array<Array<Tensor | null>>, file: string, opts: GridOptions = {}): void {
  if (path.extname(file).toLowerCase() !== '.png') throw new ImageError(file, 'synchronous writing supports PNG only; use a .png name');
  const { data, width, height } = composeGrid(rows, opts);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, encodePngRgb(data, width, height));
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new ImageError(file, `cannot write the image (${describeError(err)})`);
  }
}

