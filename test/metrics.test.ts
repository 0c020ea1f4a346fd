// Tests of src/eval/metrics.ts: MSE/PSNR known values and SSIM against closed forms and a direct
// (non-separable) reference implementation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, Tensor } from '../src/tensor/index.js';
import { mse, psnr, psnrPerImage, ssim, ssimPerImage } from '../src/eval/metrics.js';

function randomImages(shape: number[], seed: number): Tensor {
  return Tensor.rand(shape, new Rng(seed), 'float32', -1, 1);
}

function addConstant(x: Tensor, c: number): Tensor {
  return new Tensor(x.f.map((v) => v + c), x.shape);
}

test('mse and psnr: identical → 0 / +Infinity; constant offset → known PSNR on the [0, 1] scale', () => {
  const a = randomImages([2, 3, 8, 8], 1);
  assert.equal(mse(a, a), 0);
  assert.equal(psnr(a, a), Infinity);
  const b = addConstant(a, 0.2); // 0.1 on the [0, 1] scale → MSE₀₁ = 0.01 → 20 dB
  assert.ok(Math.abs(mse(a, b) - 0.04) < 1e-6);
  assert.ok(Math.abs(psnr(a, b) - 20) < 1e-4);
  assert.ok(Math.abs(psnr(a, addConstant(a, 0.02)) - 40) < 1e-3);
  // Per-image values, and the batch mean of them.
  const c = new Tensor(b.f.slice(), b.shape);
  for (let k = 0; k < 192; k++) c.f[k] = a.f[k]; // first image identical
  assert.deepEqual(psnrPerImage(a, c).map((v) => (Number.isFinite(v) ? +v.toFixed(3) : v)), [Infinity, 20]);
  // Data already on [0, 1]: dataRange 1.
  assert.ok(Math.abs(psnr(Float32Array.from([0, 0.5]), Float32Array.from([0.1, 0.6]), 1) - 20) < 1e-4);
  assert.throws(() => mse(a, randomImages([2, 3, 8, 7], 1)), /different sizes/);
});

test('ssim: identical images → 1, symmetric, lower with noise', () => {
  const a = randomImages([2, 3, 28, 28], 2);
  assert.ok(Math.abs(ssim(a, a) - 1) < 1e-9);
  const noise = randomImages([2, 3, 28, 28], 3);
  const b = new Tensor(a.f.map((v, i) => v + 0.2 * noise.f[i]), a.shape);
  const s = ssim(a, b);
  assert.ok(s < 0.99 && s > 0.5, `ssim ${s}`);
  assert.ok(Math.abs(ssim(b, a) - s) < 1e-12);
  assert.ok(ssim(a, noise) < 0.1);
});

test('ssim of two constant images matches the closed form of the luminance term', () => {
  // Constants p, q on [-1, 1] → μ = (p+1)/2, (q+1)/2; σ = 0, so SSIM = (2μxμy + C1) / (μx² + μy² + C1).
  const p = 0.5;
  const q = -0.3;
  const x = Tensor.full([1, 1, 32, 32], p);
  const y = Tensor.full([1, 1, 32, 32], q);
  const mx = (p + 1) / 2;
  const my = (q + 1) / 2;
  const C1 = 1e-4;
  const expected = (2 * mx * my + C1) / (mx * mx + my * my + C1);
  assert.ok(Math.abs(ssim(x, y) - expected) < 1e-6, `${ssim(x, y)} vs ${expected}`);
});

/** Direct SSIM: a 2-D Gaussian window at every valid position, float64, on [0, 1]. */
function referenceSsim(a: Float32Array, b: Float32Array, h: number, w: number): number {
  const k = 11;
  const win: number[] = [];
  let tot = 0;
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
    const v = Math.exp(-((i - 5) ** 2 + (j - 5) ** 2) / (2 * 1.5 * 1.5));
    win.push(v);
    tot += v;
  }
  const C1 = 0.01 ** 2;
  const C2 = 0.03 ** 2;
  let sum = 0;
  let count = 0;
  for (let y0 = 0; y0 + k <= h; y0++) {
    for (let x0 = 0; x0 + k <= w; x0++) {
      let mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
      for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
        const g = win[i * k + j] / tot;
        const u = (a[(y0 + i) * w + x0 + j] + 1) / 2;
        const v = (b[(y0 + i) * w + x0 + j] + 1) / 2;
        mx += g * u; my += g * v; sxx += g * u * u; syy += g * v * v; sxy += g * u * v;
      }
      const vx = sxx - mx * mx, vy = syy - my * my, cov = sxy - mx * my;
      sum += ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
      count++;
    }
  }
  return sum / count;
}

test('ssim equals a direct 2-D-window reference on 28×28 (valid windows), per channel averaged', () => {
  const a = randomImages([1, 2, 28, 28], 4);
  const noise = randomImages([1, 2, 28, 28], 5);
  const b = new Tensor(a.f.map((v, i) => Math.max(-1, Math.min(1, 0.8 * v + 0.3 * noise.f[i]))), a.shape);
  const plane = 28 * 28;
  const ref0 = referenceSsim(a.f.subarray(0, plane) as Float32Array, b.f.subarray(0, plane) as Float32Array, 28, 28);
  const ref1 = referenceSsim(a.f.subarray(plane) as Float32Array, b.f.subarray(plane) as Float32Array, 28, 28);
  const got = ssimPerImage(a, b);
  assert.equal(got.length, 1);
  assert.ok(Math.abs(got[0] - (ref0 + ref1) / 2) < 1e-9, `${got[0]} vs ${(ref0 + ref1) / 2}`);
  // Images smaller than the window still work (window shrinks to fit).
  const small = randomImages([1, 1, 6, 6], 6);
  assert.ok(Math.abs(ssim(small, small) - 1) < 1e-9);
});
