// Pixels between a canvas and the model without Node APIs: RGBA bytes (ImageData) ↔ [1, C, H, W] tensors in
// [-1, 1], with the same conversions as io/image.ts (ITU-R 601 luma for greyscale) and io/image.ts's padToCanvas.
import { Tensor } from '../tensor/tensor.js';

/** What a canvas gives and takes: ImageData, or anything shaped like it. */
export interface RgbaImage {
  readonly data: Uint8ClampedArray | Uint8Array;
  readonly width: number;
  readonly height: number;
}

export interface RgbaToTensorOptions {
  /** Channels of the tensor: 3 (RGB, default) or 1 (greyscale by ITU-R 601 luma, as PIL's "L" mode). */
  channels?: 1 | 3;
  /** Pad (centred, with -1 = black) to this canvas [height, width], as padToCanvas; the image must fit. */
  padTo?: [number, number];
}

/** A [1, C, H, W] tensor in [-1, 1] from RGBA bytes (alpha ignored), optionally padded to a larger canvas. */
export function rgbaToTensor(image: RgbaImage, opts: RgbaToTensorOptions = {}): Tensor {
  const { data, width, height } = image;
  const channels = opts.channels ?? 3;
  if (data.length !== width * height * 4) throw new Error(`rgbaToTensor: ${data.length} bytes is not ${width}×${height} RGBA`);
  const [outH, outW] = opts.padTo ?? [height, width];
  if (height > outH || width > outW) throw new Error(`rgbaToTensor: a ${width}×${height} image does not fit a ${outW}×${outH} canvas`);
  const oy = Math.floor((outH - height) / 2), ox = Math.floor((outW - width) / 2), plane = outH * outW;
  const out = new Float32Array(channels * plane).fill(-1);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4, o = (y + oy) * outW + x + ox;
      if (channels === 1) {
        const luma = 0.299 * data[i]! + 0.587 * data[i + 1]! + 0.114 * data[i + 2]!;
        out[o] = (Math.round(luma) / 255 - 0.5) / 0.5;
      } else {
        for (let c = 0; c < 3; c++) out[c * plane + o] = (data[i + c]! / 255 - 0.5) / 0.5;
      }
    }
  }
  return new Tensor(out, [1, channels, outH, outW]);
}

/** RGBA bytes (opaque) of one image tensor ([1, C, H, W] or [C, H, W], C = 3 or 1), [-1, 1] → [0, 255] clamped;
 * `new ImageData(rgba.data, rgba.width, rgba.height)` puts it on a canvas. */
export function tensorToRgba(image: Tensor): { data: Uint8ClampedArray; width: number; height: number } {
  const shape = image.shape.length === 4 ? image.shape : [1, ...image.shape];
  if (shape.length !== 4 || shape[0] !== 1 || (shape[1] !== 3 && shape[1] !== 1)) {
    throw new Error(`tensorToRgba: expected one image [1, 3|1, H, W] or [3|1, H, W], got [${image.shape.join(', ')}]`);
  }
  const grey = shape[1] === 1, height = shape[2]!, width = shape[3]!, plane = width * height, src = image.f;
  const data = new Uint8ClampedArray(plane * 4);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = src[(grey ? 0 : c) * plane + i]!;
      data[i * 4 + c] = Math.round((Number.isNaN(v) ? 0 : Math.min(1, Math.max(-1, v)) + 1) * 127.5);
    }
    data[i * 4 + 3] = 255;
  }
  return { data, width, height };
}
