// 8-bit interleaved pixels ↔ image tensors, with no Node APIs (shared by io/image.ts, which adds files through sharp,
// and the browser build's canvas conversions in browser/image.ts): RGB or RGBA bytes → [1, C, H, W] in [-1, 1]
// (x/255 → (x − 0.5)/0.5; greyscale by ITU-R 601 luma, as PIL's "L" mode, exact for grey images), back with
// clamping and rounding, and centring on a larger canvas of −1.
import { Tensor } from '../tensor/tensor.js';

/** [1, C, H, W] float32 in [-1, 1] from interleaved 8-bit pixels of `stride` bytes (3: RGB, 4: RGBA, alpha ignored). */
export function pixelsToTensor(data: ArrayLike<number>, width: number, height: number, stride: 3 | 4, channels: 1 | 3 = 3): Tensor {
  const plane = width * height;
  if (data.length !== plane * stride) throw new Error(`${data.length} bytes are not ${width}×${height} pixels of ${stride} bytes`);
  if (channels === 1) {
    const grey = new Float32Array(plane);
    for (let i = 0; i < plane; i++) {
      const y = 0.299 * data[i * stride]! + 0.587 * data[i * stride + 1]! + 0.114 * data[i * stride + 2]!;
      grey[i] = (Math.round(y) / 255 - 0.5) / 0.5;
    }
    return new Tensor(grey, [1, 1, height, width]);
  }
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) out[c * plane + i] = (data[i * stride + c]! / 255 - 0.5) / 0.5;
  }
  return new Tensor(out, [1, 3, height, width]);
}

/** Interleaved 8-bit pixels (`stride` 3: RGB; 4: RGBA, opaque) of one image tensor ([1, C, H, W] or [C, H, W],
 * C = 3 or 1 for grey) written into `out`: [-1, 1] → [0, 255], clamped, NaN → 127.5 → 128. */
export function tensorToPixels<T extends Uint8Array | Uint8ClampedArray>(image: Tensor, stride: 3 | 4, alloc: (bytes: number) => T): { data: T; width: number; height: number } {
  const shape = image.shape.length === 4 ? image.shape : [1, ...image.shape];
  if (shape.length !== 4 || shape[0] !== 1 || (shape[1] !== 3 && shape[1] !== 1)) {
    throw new Error(`expected one RGB or greyscale image tensor [1, 3|1, H, W] or [3|1, H, W], got [${image.shape.join(', ')}]`);
  }
  const grey = shape[1] === 1, height = shape[2]!, width = shape[3]!, plane = width * height, src = image.f;
  const data = alloc(plane * stride);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = src[(grey ? 0 : c) * plane + i]!;
      const x = Number.isNaN(v) ? 0 : Math.min(1, Math.max(-1, v));
      data[i * stride + c] = Math.round((x + 1) * 127.5);
    }
    if (stride === 4) data[i * 4 + 3] = 255;
  }
  return { data, width, height };
}

/** img [1, C, h, w] centred on an [height, width] canvas of −1 (larger sides are centre-cropped). */
export function padToCanvas(img: Tensor, height: number, width: number): Tensor {
  const [, c, h, w] = img.shape as [number, number, number, number];
  if (h === height && w === width) return img;
  const out = new Float32Array(c * height * width).fill(-1);
  const oy = Math.floor((height - h) / 2);
  const ox = Math.floor((width - w) / 2);
  const src = img.f;
  for (let ch = 0; ch < c; ch++) {
    for (let y = Math.max(0, -oy); y < Math.min(h, height - oy); y++) {
      for (let x = Math.max(0, -ox); x < Math.min(w, width - ox); x++) out[(ch * height + y + oy) * width + x + ox] = src[(ch * h + y) * w + x]!;
    }
  }
  return new Tensor(out, [1, c, height, width]);
}
