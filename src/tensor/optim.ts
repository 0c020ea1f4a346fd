// Optimizers and training utilities: AdamW (decoupled weight decay, parameter groups), SGD with
// momentum, gradient-norm clipping, warmup + cosine learning-rate schedule, EMA of weights; every
// piece of state can be exported and restored exactly.

import { kernels } from './backend.js';
import { Tensor } from './tensor.js';

export interface ParamGroup {
  params: Tensor[];
  /** multiplies the optimizer's learning rate for this group (default 1) */
  lrScale?: number;
  weightDecay?: number;
}

export interface OptimizerState {
  step: number;
  /** per parameter (in group order), per slot name, the float32 buffer */
  slots: Record<string, Float32Array>[];
}

function groupsOf(params: Tensor[] | ParamGroup[]): ParamGroup[] {
  if (params.length === 0) return [];
  return params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
}

function checkParam(p: Tensor): void {
  if (p.dtype !== 'float32') throw new Error(`optimizers update float32 parameters, got ${p.dtype}`);
}

export class AdamW {
  readonly groups: ParamGroup[];
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  stepCount = 0;
  private m: Float32Array[] = [];
  private v: Float32Array[] = [];

  constructor(params: Tensor[] | ParamGroup[], opts: { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number } = {}) {
    this.groups = groupsOf(params);
    this.lr = opts.lr ?? 1e-3;
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    for (const g of this.groups) {
      for (const p of g.params) {
        checkParam(p);
        this.m.push(new Float32Array(p.size));
        this.v.push(new Float32Array(p.size));
      }
    }
  }

  /** One update with the gradients in p.grad (parameters without a gradient are skipped). */
  step(): void {
    this.stepCount++;
    const bc1 = 1 - Math.pow(this.beta1, this.stepCount);
    const bc2 = 1 - Math.pow(this.beta2, this.stepCount);
    const K = kernels();
    let i = 0;
    for (const g of this.groups) {
      const lr = this.lr * (g.lrScale ?? 1);
      const wd = g.weightDecay ?? this.weightDecay;
      for (const p of g.params) {
        const idx = i++;
        if (!p.grad) continue;
        K.adamw({
          param: p.data as Float32Array, grad: p.grad.data as Float32Array, m: this.m[idx], v: this.v[idx],
          lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: wd,
          biasCorrection1: bc1, biasCorrection2: bc2,
        });
      }
    }
  }

  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) p.grad = null;
  }

  getState(): OptimizerState {
    return { step: this.stepCount, slots: this.m.map((m, i) => ({ m: m.slice(), v: this.v[i].slice() })) };
  }

  setState(st: OptimizerState): void {
    if (st.slots.length !== this.m.length) throw new Error(`optimizer state has ${st.slots.length} parameters, this optimizer has ${this.m.length}`);
    // Validate everything before changing anything, so a bad state leaves the optimizer intact.
    st.slots.forEach((s, i) => {
      if (s.m.length !== this.m[i].length || s.v.length !== this.v[i].length) throw new Error(`optimizer state for parameter ${i} has the wrong size`);
    });
    st.slots.forEach((s, i) => {
      this.m[i].set(s.m);
      this.v[i].set(s.v);
    });
    this.stepCount = st.step;
  }
}

export class SGD {
  readonly groups: ParamGroup[];
  lr: number;
  momentum: number;
  weightDecay: number;
  stepCount = 0;
  private buf: Float32Array[] = [];

  constructor(params: Tensor[] | ParamGroup[], opts: { lr?: number; momentum?: number; weightDecay?: number } = {}) {
    this.groups = groupsOf(params);
    this.lr = opts.lr ?? 1e-2;
    this.momentum = opts.momentum ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
    for (const g of this.groups) for (const p of g.params) {
      checkParam(p);
      this.buf.push(new Float32Array(p.size));
    }
  }

  /** PyTorch semantics: g += wd·p; b = μ·b + g (b = g at the first step); p -= lr·b. */
  step(): void {
    this.stepCount++;
    let i = 0;
    for (const g of this.groups) {
      const lr = this.lr * (g.lrScale ?? 1);
      const wd = g.weightDecay ?? this.weightDecay;
      for (const p of g.params) {
        const b = this.buf[i++];
        if (!p.grad) continue;
        const pd = p.data as Float32Array;
        const gd = p.grad.data;
        for (let j = 0; j < pd.length; j++) {
          const gr = gd[j] + wd * pd[j];
          b[j] = this.momentum > 0 ? (this.stepCount === 1 ? gr : this.momentum * b[j] + gr) : gr;
          pd[j] -= lr * b[j];
        }
      }
    }
  }

  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) p.grad = null;
  }

  getState(): OptimizerState {
    return { step: this.stepCount, slots: this.buf.map((b) => ({ momentum: b.slice() })) };
  }

  setState(st: OptimizerState): void {
    if (st.slots.length !== this.buf.length) throw new Error(`SGD state has ${st.slots.length} parameters, this optimizer has ${this.buf.length}`);
    st.slots.forEach((s, i) => {
      if (s.momentum.length !== this.buf[i].length) throw new Error(`SGD state for parameter ${i} has the wrong size`);
    });
    st.slots.forEach((s, i) => this.buf[i].set(s.momentum));
    this.stepCount = st.step;
  }
}

/** Scale all gradients so that their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): number {
  let total = 0;
  const ps = [...params].filter((p) => p.grad);
  for (const p of ps) {
    const g = p.grad!.data;
    for (let i = 0; i < g.length; i++) total += g[i] * g[i];
  }
  const norm = Math.sqrt(total);
  if (norm > maxNorm && norm > 0) {
    const s = maxNorm / (norm + 1e-6);
    for (const p of ps) {
      const g = p.grad!.data;
      for (let i = 0; i < g.length; i++) g[i] *= s;
    }
  }
  return norm;
}

/** Learning rate at `step` (0-based): linear warmup from 0 over warmupSteps, then cosine decay to minLr at totalSteps. */
export function warmupCosineLr(step: number, opts: { baseLr: number; warmupSteps: number; totalSteps: number; minLr?: number }): number {
  const minLr = opts.minLr ?? 0;
  if (opts.warmupSteps > 0 && step < opts.warmupSteps) return (opts.baseLr * (step + 1)) / opts.warmupSteps;
  const span = Math.max(1, opts.totalSteps - opts.warmupSteps);
  const t = Math.min(1, Math.max(0, (step - opts.warmupSteps) / span));
  return minLr + 0.5 * (opts.baseLr - minLr) * (1 + Math.cos(Math.PI * t));
}

/** Exponential moving average of parameters: shadow = decay·shadow + (1 − decay)·param. */
export class EMA {
  readonly decay: number;
  readonly shadow: Float32Array[];
  private readonly params: Tensor[];

  constructor(params: Tensor[], decay = 0.999) {
    this.decay = decay;
    this.params = params;
    this.shadow = params.map((p) => Float32Array.from(p.data));
  }

  update(): void {
    const d = this.decay;
    this.params.forEach((p, i) => {
      const s = this.shadow[i];
      const pd = p.data;
      for (let j = 0; j < s.length; j++) s[j] = d * s[j] + (1 - d) * pd[j];
    });
  }

  /** Copy the averaged weights into the parameters. */
  copyTo(params: Tensor[] = this.params): void {
    params.forEach((p, i) => (p.data as Float32Array).set(this.shadow[i]));
  }

  getState(): Float32Array[] {
    return this.shadow.map((s) => s.slice());
  }

  setState(st: Float32Array[]): void {
    if (st.length !== this.shadow.length) throw new Error('EMA state does not match the parameters');
    st.forEach((s, i) => this.shadow[i].set(s));
  }
}
