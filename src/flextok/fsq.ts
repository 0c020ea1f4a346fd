// Finite scalar quantisation (FSQ): bounds each code dimension with tanh, rounds half-to-even to
// one of L levels (straight-through gradient), and maps codes to mixed-radix token ids and back.

import { add, div, mul, reshape, roundSTE, sub, tanh } from '../tensor/ops.js';
import { Tensor } from '../tensor/tensor.js';

const f32 = Math.fround;

export class FSQ {
  readonly levels: readonly number[];
  /** code width d */
  readonly dim: number;
  /** number of distinct ids ∏ L_d */
  readonly codebookSize: number;
  /** mixed-radix basis cumprod([1, L_0, …, L_{d-2}]): dimension 0 is the least significant digit */
  readonly basis: readonly number[];
  /** floor(L/2): codes are round(bound(z)) / halfWidth */
  readonly halfWidth: readonly number[];
  // Bound constants as float32, computed in the official order: half_l = (L-1)(1+eps)/2,
  // offset = 0.5 for even L, shift = atanh(offset / half_l).
  private readonly halfL: Tensor; // [d]
  private readonly offset: Tensor; // [d]
  private readonly shift: Tensor; // [d]
  private readonly halfWidthT: Tensor; // [d]

  constructor(levels: readonly number[]) {
    if (levels.length === 0) throw new Error('FSQ: levels must not be empty');
    for (const l of levels) {
      if (!Number.isInteger(l) || l < 2) throw new Error(`FSQ: every level must be an integer ≥ 2, got [${levels.join(', ')}]`);
    }
    this.levels = Object.freeze([...levels]);
    this.dim = levels.length;
    const basis: number[] = [];
    let acc = 1;
    for (const l of levels) {
      basis.push(acc);
      acc *= l;
    }
    if (acc > 2 ** 31 - 1) throw new Error(`FSQ: codebook size ${acc} does not fit in int32`);
    this.codebookSize = acc;
    this.basis = Object.freeze(basis);
    this.halfWidth = Object.freeze(levels.map((l) => Math.floor(l / 2)));
    const eps = f32(1e-3);
    const halfL = levels.map((l) => f32(f32(f32(l - 1) * f32(1 + eps)) / 2));
    const offset = levels.map((l) => (l % 2 === 0 ? 0.5 : 0));
    const shift = levels.map((l, i) => f32(Math.atanh(f32(offset[i] / halfL[i]))));
    this.halfL = Tensor.from(halfL);
    this.offset = Tensor.from(offset);
    this.shift = Tensor.from(shift);
    this.halfWidthT = Tensor.from(this.halfWidth);
  }

  /** tanh bound: tanh(z + shift)·half_l − offset, z [..., d] (differentiable). */
  bound(z: Tensor): Tensor {
    this.checkWidth(z, 'bound');
    return sub(mul(tanh(add(z, this.shift)), this.halfL), this.offset);
  }

  /** Quantise z [..., d]: codes (same shape, values in [-1, 1], straight-through gradient to z)
   * and their ids (one per code vector, row-major over the leading dims). */
  quantize(z: Tensor): { codes: Tensor; ids: Int32Array } {
    const codes = this.quantizeBounded(this.bound(z));
    return { codes, ids: this.codesToIds(codes) };
  }

  /** round(b) / floor(L/2) of bounded values b [..., d]: round half to even, straight-through gradient. */
  quantizeBounded(bounded: Tensor): Tensor {
    this.checkWidth(bounded, 'quantizeBounded');
    return div(roundSTE(bounded), this.halfWidthT);
  }

  /** Ids of quantised codes [..., d] (values must be exact FSQ codes). */
  codesToIds(codes: Tensor): Int32Array {
    this.checkWidth(codes, 'codesToIds');
    const d = this.dim;
    const n = codes.size / d;
    const c = codes.f;
    const ids = new Int32Array(n);
    for (let r = 0; r < n; r++) {
      let id = 0;
      for (let j = 0; j < d; j++) {
        const digit = c[r * d + j] * this.halfWidth[j] + this.halfWidth[j];
        const g = Math.round(digit);
        if (Math.abs(digit - g) > 1e-4 || g < 0 || g >= this.levels[j]) {
          throw new Error(`FSQ.codesToIds: row ${r} dimension ${j} holds ${c[r * d + j]}, which is not a code of a ${this.levels[j]}-level dimension`);
        }
        id += g * this.basis[j];
      }
      ids[r] = id;
    }
    return ids;
  }

  /** Codes [n, d] of ids (each in [0, codebookSize)). */
  idsToCodes(ids: Int32Array | readonly number[]): Tensor {
    const d = this.dim;
    const out = new Float32Array(ids.length * d);
    for (let r = 0; r < ids.length; r++) {
      const id = ids[r];
      if (!Number.isInteger(id) || id < 0 || id >= this.codebookSize) {
        throw new RangeError(`FSQ.idsToCodes: token id ${id} at position ${r} is outside [0, ${this.codebookSize}) for levels [${this.levels.join(', ')}]`);
      }
      for (let j = 0; j < d; j++) {
        const g = Math.floor(id / this.basis[j]) % this.levels[j];
        out[r * d + j] = (g - this.halfWidth[j]) / this.halfWidth[j];
      }
    }
    return new Tensor(out, [ids.length, d]);
  }

  /** Codes [1, n, d] of one token sequence right-padded with id `padId` to `length` slots. */
  paddedCodes(ids: Int32Array | readonly number[], length: number, padId = 0): Tensor {
    if (ids.length > length) throw new RangeError(`FSQ.paddedCodes: ${ids.length} tokens do not fit in ${length} slots`);
    const padded = new Int32Array(length).fill(padId);
    padded.set(ids);
    return reshape(this.idsToCodes(padded), [1, length, this.dim]);
  }

  private checkWidth(t: Tensor, op: string): void {
    if (t.ndim === 0 || t.shape[t.ndim - 1] !== this.dim) {
      throw new Error(`FSQ.${op}: expected [..., ${this.dim}], got [${t.shape.join(', ')}]`);
    }
  }
}
