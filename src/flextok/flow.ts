// Rectified flow for the FlexTok decoder: the training noise module ("MinRFNoiseModule":
// x_t = (1−t)·x0 + t·ε, target ε − x0, with the official timestep samplers) and the Euler sampler
// ("MinRFPipeline": t = i/T for i = T…1, x ← x − v/T) with classifier-free guidance or APG.

import { add, mul, sub } from '../tensor/ops.js';
import { noGrad, Tensor } from '../tensor/tensor.js';
import type { FlowDecoder } from './decoder.js';
import type { SamplerConfig } from './tokenizer_config.js';
import type { Trace } from './weights.js';

const f32 = Math.fround;

// ---------------------------------------------------------------------------------------------
// noise module (training)

/** Timestep sampler of the official noise module: logit-normal (`ln`, optionally stratified over
 * the batch) or uniform with optional SD3 mode scale. */
export interface TimestepSampler {
  ln: boolean;
  stratified?: boolean;
  mode_scale?: number;
}

export interface UniformNormalSource {
  uniform(): number;
  normal(): number;
}

/** Inverse error function (float64; Giles' approximation refined by two Newton steps). */
export function erfinv(y: number): number {
  if (y <= -1) return -Infinity;
  if (y >= 1) return Infinity;
  let w = -Math.log((1 - y) * (1 + y));
  let x: number;
  if (w < 5) {
    w -= 2.5;
    let p = 2.81022636e-8;
    p = 3.43273939e-7 + p * w;
    p = -3.5233877e-6 + p * w;
    p = -4.39150654e-6 + p * w;
    p = 0.00021858087 + p * w;
    p = -0.00125372503 + p * w;
    p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;
    p = 1.50140941 + p * w;
    x = p * y;
  } else {
    w = Math.sqrt(w) - 3;
    let p = -0.000200214257;
    p = 0.000100950558 + p * w;
    p = 0.00134934322 + p * w;
    p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;
    p = -0.0076224613 + p * w;
    p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;
    p = 2.83297682 + p * w;
    x = p * y;
  }
  // Newton refinement on erf(x) = y.
  for (let i = 0; i < 2; i++) {
    const err = erfApprox(x) - y;
    x -= err / ((2 / Math.sqrt(Math.PI)) * Math.exp(-x * x));
  }
  return x;
}

/** erf to ~1e-15 (series for small |x|, continued fraction via erfc otherwise). */
function erfApprox(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series: erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
    let term = x;
    let sum = x;
    const x2 = x * x;
    for (let n = 1; n < 100; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // Lentz continued fraction for erfc.
  const x2 = ax * ax;
  let f = ax;
  let c = ax;
  let dd = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    dd = ax + an * dd;
    dd = dd === 0 ? 1e-300 : 1 / dd;
    c = ax + an / c;
    const delta = c * dd;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-x2) / (f * Math.sqrt(Math.PI));
  return x >= 0 ? 1 - erfc : erfc - 1;
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

/** Draw one σ ∈ (0, 1) per image as the official noise module does. */
export function sampleTimesteps(sampler: TimestepSampler, batch: number, rng: UniformNormalSource): number[] {
  const out: number[] = [];
  for (let i = 0; i < batch; i++) {
    let s: number;
    if (sampler.ln) {
      if (sampler.stratified) {
        const u = i / batch + rng.uniform() / batch;
        s = sigmoid(erfinv(2 * u - 1) * Math.SQRT2);
      } else {
        s = sigmoid(rng.normal());
      }
    } else {
      s = rng.uniform();
      const m = sampler.mode_scale ?? 0;
      if (m !== 0) s = 1 - s - m * (Math.cos((Math.PI * s) / 2) ** 2 - 1 + s);
    }
    out.push(f32(s));
  }
  return out;
}

export interface NoiseOptions {
  /** the timestep σ (else drawn with `sampler` from `rng`) */
  sigma?: number;
  sampler?: TimestepSampler;
  /** ε, same shape as x0 (else drawn from `rng`) */
  noise?: Tensor;
  rng?: UniformNormalSource;
}

/** Noise one clean latent: x_t = σ·ε + (1 − σ)·x0 (float32 as official), target v = ε − x0, t = σ. */
export function noiseLatents(x0: Tensor, opts: NoiseOptions): { xt: Tensor; target: Tensor; t: number; noise: Tensor } {
  let sigma = opts.sigma;
  if (sigma === undefined) {
    if (!opts.sampler || !opts.rng) throw new Error('noiseLatents: give sigma, or a sampler and an rng');
    sigma = sampleTimesteps(opts.sampler, 1, opts.rng)[0];
  }
  let noise = opts.noise;
  if (noise === undefined) {
    if (!opts.rng) throw new Error('noiseLatents: give noise, or an rng to draw it');
    const rng = opts.rng;
    const data = new Float32Array(x0.size);
    for (let i = 0; i < data.length; i++) data[i] = rng.normal();
    noise = new Tensor(data, x0.shape);
  }
  if (noise.size !== x0.size) throw new Error(`noiseLatents: noise [${noise.shape.join(', ')}] does not match x0 [${x0.shape.join(', ')}]`);
  const s = f32(sigma);
  const xt = add(mul(noise, s), mul(x0, f32(1 - s)));
  return { xt, target: sub(noise, x0), t: s, noise };
}

// ---------------------------------------------------------------------------------------------
// guidance (float32 elementwise as official; APG projection in float64)

/** CFG: v_u + s·(v_c − v_u). */
export function classifierFreeGuidance(vCond: Float32Array, vUncond: Float32Array, scale: number): Float32Array {
  const s = f32(scale);
  const out = new Float32Array(vCond.length);
  for (let i = 0; i < out.length; i++) out[i] = vUncond[i] + f32(s * f32(vCond[i] - vUncond[i]));
  return out;
}

/** APG momentum buffer of one image (fresh per decode call). */
export class MomentumBuffer {
  runningAverage: Float32Array | null = null;
  constructor(readonly momentum: number) {}

  update(value: Float32Array): Float32Array {
    const out = new Float32Array(value.length);
    const prev = this.runningAverage;
    const m = f32(this.momentum);
    for (let i = 0; i < out.length; i++) out[i] = prev ? value[i] + f32(m * prev[i]) : value[i];
    this.runningAverage = out;
    return out;
  }
}

/** APG ("normalized_guidance"): Δ = momentum(v_c − v_u), clipped to L2 norm ≤ r, split (float64)
 * into parts parallel / orthogonal to v_c; result v_c + (s − 1)·(Δ⊥ + η·Δ∥). */
export function adaptiveProjectedGuidance(
  vCond: Float32Array, vUncond: Float32Array, scale: number, buffer: MomentumBuffer | null,
  opts: { eta?: number; normThreshold?: number } = {},
): Float32Array {
  const eta = opts.eta ?? 0;
  const r = opts.normThreshold ?? 2.5;
  const n = vCond.length;
  let diff: Float32Array = new Float32Array(n);
  for (let i = 0; i < n; i++) diff[i] = vCond[i] - vUncond[i];
  if (buffer) diff = buffer.update(diff);
  if (r > 0) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += diff[i] * diff[i];
    const norm = f32(Math.sqrt(ss));
    const factor = Math.min(1, f32(r / norm));
    // A new array: the momentum buffer keeps the unclipped running value.
    if (factor !== 1) diff = diff.map((v) => v * factor);
  }
  let vv = 0;
  for (let i = 0; i < n; i++) vv += vCond[i] * vCond[i];
  const denom = Math.max(Math.sqrt(vv), 1e-12);
  let dot = 0;
  for (let i = 0; i < n; i++) dot += diff[i] * (vCond[i] / denom);
  const out = new Float32Array(n);
  const sm1 = f32(scale - 1);
  const e = f32(eta);
  for (let i = 0; i < n; i++) {
    const par = dot * (vCond[i] / denom);
    const parallel = f32(par);
    const orthogonal = f32(diff[i] - par);
    const update = f32(orthogonal + f32(e * parallel));
    out[i] = vCond[i] + f32(sm1 * update);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Euler sampler

export interface DetokenizeOptions extends SamplerConfig {
  /** x at t = 1, one [1, C, H, W] per sequence */
  initNoise: Tensor[];
  /** called after each Euler step with the 1-based step number and T */
  onStep?: (step: number, total: number) => void;
  /** receives detok.step{s}.t, detok.step{s}.x.{b}, .v_cond.{b}, .v_uncond.{b} and detok.out
   * (s = 0 is t = 1; the decoder's own intermediates are not traced) */
  trace?: Trace;
}

/** Integrate the flow from the initial noise to latents x0 for each code sequence ([1, R, d] codes
 * with keep count k). CFG's conditional and unconditional passes run as one batch. */
export function detokenizeLatents(decoder: FlowDecoder, codes: Tensor[], keepK: number[], opts: DetokenizeOptions): Tensor[] {
  return noGrad(() => {
    const n = codes.length;
    const steps = opts.steps;
    if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`detokenize: steps must be a positive integer, got ${steps}`);
    if (opts.initNoise.length !== n) throw new Error(`detokenize: ${opts.initNoise.length} initial noises for ${n} sequences`);
    const gs = opts.guidanceScale;
    const doGuidance = typeof gs === 'function' || gs !== 1;
    const trace = opts.trace;
    const condRegs = decoder.registerTokens(codes, keepK);
    const uncondRegs = doGuidance ? decoder.registerTokens(codes, keepK, { uncond: true }) : [];
    const registers = [...condRegs, ...uncondRegs];
    const buffers = opts.apg ? codes.map(() => new MomentumBuffer(opts.momentum ?? -0.5)) : null;
    const dt = f32(1 / steps);
    let xs = opts.initNoise.map((x) => new Tensor(Float32Array.from(x.f), x.shape));
    for (let i = steps, s = 0; i >= 1; i--, s++) {
      const t = f32(i / steps);
      if (trace) {
        trace(`detok.step${s}.t`, Tensor.full([n], t));
        xs.forEach((x, b) => trace(`detok.step${s}.x.${b}`, x));
      }
      const inputs = doGuidance ? [...xs, ...xs] : xs;
      const v = decoder.forwardWithRegisters(inputs, new Array<number>(inputs.length).fill(t), registers);
      xs = xs.map((x, b) => {
        const vc = v[b].f as Float32Array;
        if (trace) trace(`detok.step${s}.v_cond.${b}`, v[b]);
        let guided = vc;
        if (doGuidance) {
          const vu = v[n + b].f as Float32Array;
          if (trace) trace(`detok.step${s}.v_uncond.${b}`, v[n + b]);
          const scale = typeof gs === 'function' ? gs(i / steps) : gs;
          guided = opts.apg
            ? adaptiveProjectedGuidance(vc, vu, scale, buffers![b], { eta: opts.eta, normThreshold: opts.normThreshold })
            : classifierFreeGuidance(vc, vu, scale);
        }
        const xd = x.f;
        const next = new Float32Array(xd.length);
        for (let j = 0; j < next.length; j++) next[j] = xd[j] - f32(dt * guided[j]);
        return new Tensor(next, x.shape);
      });
      opts.onStep?.(s + 1, steps);
    }
    if (trace && xs.every((x) => x.shape.every((d, j) => d === xs[0].shape[j]))) {
      const [, c, h, w] = xs[0].shape;
      const all = new Float32Array(n * c * h * w);
      xs.forEach((x, b) => all.set(x.f, b * c * h * w));
      trace('detok.out', new Tensor(all, [n, c, h, w]));
    }
    return xs;
  });
}
