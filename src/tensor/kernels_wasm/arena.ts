// The staging area of the wasm backend: one growable block of the module's memory that holds the operands of
// one kernel call (copied in before, outputs copied out after), and typed views of that memory.
import type { KernelExports } from './module.js';

/** Bytes a region of `count` elements of `size` bytes takes in the arena (64-byte aligned, like the kernels' scratch). */
export function regionBytes(count: number, size: number): number {
  return Math.ceil((count * size) / 64) * 64;
}

export class Arena {
  private base = 0;
  private capacity = 0;
  private top = 0;
  private buffer: ArrayBufferLike | null = null;
  f32 = new Float32Array(0);
  i32 = new Int32Array(0);
  u8 = new Uint8Array(0);

  constructor(private readonly ex: KernelExports) {
    this.refresh();
  }

  /** Re-creates the views when the memory has grown (a grown non-shared memory detaches the old buffer). */
  refresh(): void {
    const buf = this.ex.memory.buffer;
    if (buf === this.buffer) return;
    this.buffer = buf;
    this.f32 = new Float32Array(buf);
    this.i32 = new Int32Array(buf);
    this.u8 = new Uint8Array(buf);
  }

  /** Starts a call whose regions take `bytes` bytes in all (sum of regionBytes); grows the block if needed. */
  reset(bytes: number): void {
    if (bytes > this.capacity) {
      const want = Math.max(bytes, Math.ceil(this.capacity * 1.5), 1 << 20);
      if (this.base !== 0) this.ex.ft_free(this.base);
      this.base = 0;
      this.capacity = 0;
      const size = Math.min(regionBytes(want, 1), 0xffff_ffc0);
      const ptr = bytes <= size ? this.ex.ft_alloc(size) >>> 0 : 0; // addresses above 2 GiB come back as negative i32
      if (ptr === 0) {
        throw new RangeError(`wasm backend: cannot allocate ${bytes} bytes of wasm memory for one kernel call (4 GiB at most)`);
      }
      this.base = ptr;
      this.capacity = size;
    }
    this.top = this.base;
    this.refresh();
  }

  /** The next region of `count` elements of `size` bytes (its byte address). */
  take(count: number, size: number): number {
    const p = this.top;
    this.top += regionBytes(count, size);
    return p;
  }

  /** Copies src[lo, hi) into a new region; returns its byte address. */
  putF32(src: Float32Array, lo: number, hi: number): number {
    const p = this.take(hi - lo, 4);
    this.f32.set(lo === 0 && hi === src.length ? src : src.subarray(lo, hi), p >>> 2);
    return p;
  }

  putI32(src: Int32Array, lo: number, hi: number): number {
    const p = this.take(hi - lo, 4);
    this.i32.set(lo === 0 && hi === src.length ? src : src.subarray(lo, hi), p >>> 2);
    return p;
  }

  putU8(src: Uint8Array, lo: number, hi: number): number {
    const p = this.take(hi - lo, 1);
    this.u8.set(lo === 0 && hi === src.length ? src : src.subarray(lo, hi), p);
    return p;
  }

  /** Copies a region at byte address p back into dst[lo, hi). */
  getF32(p: number, dst: Float32Array, lo: number, hi: number): void {
    dst.set(this.f32.subarray(p >>> 2, (p >>> 2) + (hi - lo)), lo);
  }

  getI32(p: number, dst: Int32Array, lo: number, hi: number): void {
    dst.set(this.i32.subarray(p >>> 2, (p >>> 2) + (hi - lo)), lo);
  }
}
