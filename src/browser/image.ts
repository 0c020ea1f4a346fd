// Pixels between a canvas and the model without Node APIs: RGBA bytes (ImageData) ↔ [1, C, H, W] tensors in
// [-1, 1], with io/pixels.ts's conversions (the ones io/image.ts uses for files, so a canvas and a file of the same
// pixels give the same tensor).
import { padToCanvas, pixelsToTensor, tensorToPixels } from '../io/pixels.js';
import type { Tensor } from '../tensor/tensor.js';

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
  if (data.length !== width * height * 4) throw new Error(`rgbaToTensor: ${data.length} bytes is not ${width}×${height} RGBA`);
  const [outH, outW] = opts.padTo ?? [height, width];
  if (height > outH || width > outW) throw new Error(`rgbaToTensor: a ${width}×${height} image does not fit a ${outW}×${outH} canvas`);
  return padToCanvas(pixelsToTensor(data, width, height, 4, opts.channels ?? 3), outH, outW);
}

/** RGBA bytes (opaque) of one image tensor ([1, C, H, W] or [C, H, W], C = 3 or 1), [-1, 1] → [0, 255] clamped;
 * `new ImageData(rgba.data, rgba.width, rgba.height)` puts it on a canvas. */
export function tensorToRgba(image: Tensor): { data: Uint8ClampedArray; width: number; height: number } {
  return tensorToPixels(image, 4, (n) => new Uint8ClampedArray(n));
}
