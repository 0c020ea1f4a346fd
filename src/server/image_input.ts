// Uploaded images for `flextok serve`: the bytes are checked (a PNG, JPEG, WebP or GIF signature, a pixel count
// limit read from the header before decoding) and turned into the model's input with exactly the preprocessing of
// `flextok tokenize` (loadImage, and padToCanvas for `pad`), through a private temporary file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import type { FlexTok } from '../flextok/model.js';
import { ImageError, loadImage, padToCanvas } from '../io/image.js';
import type { Tensor } from '../tensor/tensor.js';
import { HttpError } from './http.js';

/** The upload formats, by their leading bytes. */
export function sniffImageFormat(bytes: Buffer): 'png' | 'jpeg' | 'webp' | 'gif' | null {
  if (bytes.length >= 8 && bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 12 && bytes.toString('latin1', 0, 4) === 'RIFF' && bytes.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  if (bytes.length >= 6 && /^GIF8[79]a$/.test(bytes.toString('latin1', 0, 6))) return 'gif';
  return null;
}

/** A private folder for uploads, made on first use and removed by `dispose()`. */
export class UploadFolder {
  private dir: string | null = null;
  private counter = 0;

  /** Writes `bytes` to a fresh private file, runs `use` on its path, and removes the file. */
  async withFile<T>(bytes: Buffer, use: (file: string) => Promise<T>): Promise<T> {
    if (this.dir === null) this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-serve-'));
    const file = path.join(this.dir, `upload-${process.pid}-${++this.counter}`);
    await fs.promises.writeFile(file, bytes, { mode: 0o600 });
    try {
      return await use(file);
    } finally {
      await fs.promises.rm(file, { force: true });
    }
  }

  dispose(): void {
    if (this.dir !== null) fs.rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }
}

export interface ImageInputOptions {
  /** centre the image unscaled on the model's canvas (background −1), as `flextok tokenize --pad` */
  pad: boolean;
  /** the most pixels (width × height) accepted */
  maxPixels: number;
}

/** Checks an uploaded image before decoding it: its signature and its size from the header. */
export async function checkUpload(bytes: Buffer, maxPixels: number): Promise<void> {
  if (bytes.length === 0) throw new HttpError(400, 'the request body is empty: send the image file itself as the body (Content-Type image/png, image/jpeg or image/webp)');
  if (sniffImageFormat(bytes) === null) {
    throw new HttpError(400, 'not an image: the body is not a PNG, JPEG, WebP or GIF file (send the raw file bytes, not a form or base64 text)');
  }
  let width = 0;
  let height = 0;
  try {
    const meta = await sharp(bytes).metadata();
    width = meta.width ?? 0;
    height = meta.height ?? 0;
  } catch (err) {
    throw new HttpError(400, `not an image: the file cannot be read (${firstLine(err)}); send an intact PNG, JPEG or WebP file`);
  }
  if (width * height > maxPixels) {
    throw new HttpError(413, `the image is ${width}×${height} pixels, more than the ${maxPixels} pixels this server decodes; scale it down first`);
  }
}

/** The uploaded image as the model's input [1, C, H, W] in [-1, 1] (the preprocessing of `flextok tokenize`). */
export async function uploadToTensor(bytes: Buffer, model: FlexTok, folder: UploadFolder, opts: ImageInputOptions): Promise<Tensor> {
  await checkUpload(bytes, opts.maxPixels);
  const [h, w] = model.imageSize;
  const channels = model.imageChannels === 1 ? 1 : 3;
  return folder.withFile(bytes, async (file) => {
    try {
      return opts.pad
        ? padToCanvas(await loadImage(file, { resize: false, multipleOf: 1, channels }), h, w)
        : await loadImage(file, { size: Math.min(h, w), resize: true, multipleOf: model.pixelsPerPatch, channels });
    } catch (err) {
      if (err instanceof ImageError) {
        // The message starts with the temporary file's path: name the upload instead.
        const problem = err.message.startsWith(`${file}: `) ? err.message.slice(file.length + 2) : err.message;
        throw new HttpError(400, `the uploaded image: ${problem}`);
      }
      throw err;
    }
  });
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.trim();
}
