// Position and time embeddings: the fixed 2D sin-cos patch table (built exactly as the official
// float32 code does, cropped top-left), the learned 1D register table, and the sinusoidal
// timestep features fed to the decoder's time MLP.

import { permute, reshape, slice } from '../tensor/ops.js';
import { Tensor } from '../tensor/tensor.js';

const f32 = Math.fround;

/** The official 2D sin-cos table [1, D, h, w] ("build_2d_sincos_posemb"), float32 arithmetic.
 * Position n = a·h + b of a (w, h) meshgrid gets [sin(a·ω), cos(a·ω), sin(b·ω), cos(b·ω)],
 * ω_q = 1 / temperature^(q / (D/4)); the list is then read row-major as (h, w). For square tables
 * this is [sin(row), cos(row), sin(col), cos(col)]. */
export function buildSincos2dTable(dim: number, h: number, w: number, temperature = 10000): Tensor {
  if (dim % 4 !== 0) throw new Error(`2D sin-cos posemb: dim ${dim} must be divisible by 4`);
  const q = dim / 4;
  const omega = new Float32Array(q);
  for (let k = 0; k < q; k++) omega[k] = f32(1 / f32(Math.pow(temperature, f32(k / q))));
  const out = new Float32Array(dim * h * w);
  const hw = h * w;
  for (let n = 0; n < hw; n++) {
    const a = Math.floor(n / h); // grid_w value (meshgrid 'ij' over (w, h))
    const b = n % h; // grid_h value
    // n is then re-read as (row, col) = (n / w, n % w) of the [D, h, w] table.
    for (let k = 0; k < q; k++) {
      const pa = f32(a * omega[k]);
      const pb = f32(b * omega[k]);
      out[k * hw + n] = Math.sin(pa);
      out[(q + k) * hw + n] = Math.cos(pa);
      out[(2 * q + k) * hw + n] = Math.sin(pb);
      out[(3 * q + k) * hw + n] = Math.cos(pb);
    }
  }
  return new Tensor(out, [1, dim, h, w]);
}

/** A posemb table [1, D, Hmax, Wmax] as channels-last rows [Hmax·Wmax, D] (row-major positions). */
export function tableToRows(table: Tensor): Tensor {
  if (table.ndim !== 4 || table.shape[0] !== 1) throw new Error(`posemb table must be [1, D, H, W], got [${table.shape.join(', ')}]`);
  const [, d, h, w] = table.shape;
  return reshape(permute(reshape(table, [d, h * w]), [1, 0]), [h * w, d]);
}

/** Top-left crop of channels-last table rows [Hmax·Wmax, D] to a gh×gw grid → [gh·gw, D]. */
export function cropGridRows(rows: Tensor, maxSizes: readonly [number, number], gh: number, gw: number): Tensor {
  const [hm, wm] = maxSizes;
  if (gh > hm || gw > wm) {
    throw new Error(`a ${gh}×${gw} patch grid exceeds the ${hm}×${wm} position-embedding table (image too large for this model)`);
  }
  if (gh === hm && gw === wm) return rows;
  const d = rows.shape[1];
  if (gw === wm) return slice(rows, 0, 0, gh * wm);
  // Rows of the grid are contiguous runs of gw positions.
  return reshape(slice(reshape(slice(rows, 0, 0, gh * wm), [gh, wm, d]), 1, 0, gw), [gh * gw, d]);
}

/** Learned 1D register table: official `posembs` [1, 1, D, L] → rows [n, D] for the first n slots
 * (differentiable in the table). */
export function registerPosembRows(posembs: Tensor, n: number): Tensor {
  if (posembs.ndim !== 4 || posembs.shape[0] !== 1 || posembs.shape[1] !== 1) {
    throw new Error(`register posemb must be [1, 1, D, L], got [${posembs.shape.join(', ')}]`);
  }
  const d = posembs.shape[2];
  const l = posembs.shape[3];
  if (n > l) throw new Error(`${n} registers exceed the register position table of ${l}`);
  const rows = permute(reshape(posembs, [d, l]), [1, 0]); // [L, D]
  return n === l ? rows : slice(rows, 0, 0, n);
}

/** Sinusoidal timestep features [B, F] ("TimestepEmbedder.timestep_embedding"), float32 as official:
 * f_k = (1000 / maxTimestep)·exp(−ln(maxPeriod)·k / half), e = [cos(t·f), sin(t·f)] (+ a zero column if F is odd). */
export function timestepFeatures(t: readonly number[], freqSize: number, maxTimestep: number, maxPeriod = 256): Tensor {
  const half = Math.floor(freqSize / 2);
  const scale = f32(1000 / maxTimestep);
  const logPeriod = f32(-Math.log(maxPeriod));
  const freqs = new Float32Array(half);
  for (let k = 0; k < half; k++) freqs[k] = f32(scale * f32(Math.exp(f32(f32(logPeriod * k) / half))));
  const out = new Float32Array(t.length * freqSize);
  for (let b = 0; b < t.length; b++) {
    const tb = f32(t[b]);
    if (!(tb <= maxTimestep)) throw new RangeError(`timestep ${t[b]} exceeds max_timestep ${maxTimestep}`);
    for (let k = 0; k < half; k++) {
      const arg = f32(tb * freqs[k]);
      out[b * freqSize + k] = Math.cos(arg);
      out[b * freqSize + half + k] = Math.sin(arg);
    }
  }
  return new Tensor(out, [t.length, freqSize]);
}
