// The Tensor type and reverse-mode autograd: dense row-major float32/float64/int32 arrays with a
// shape, and a tape of GradNodes that `backward()` walks in reverse topological order.

import { Rng } from './rng.js';

export type DType = 'float32' | 'float64' | 'int32';
export type FloatData = Float32Array | Float64Array;
export type Data = Float32Array | Float64Array | Int32Array;

/** How a tensor was computed: its inputs and the function mapping d(loss)/d(output) to d(loss)/d(inputs). */
export interface GradNode {
  name: string;
  inputs: Tensor[];
  /** Returns one gradient per input (null where the input needs none). Runs with grad recording off. */
  backward: (gradOutput: Tensor) => (Tensor | PartialGrad | null)[];
}

/** A gradient that is zero outside a region of its input (slices, per-item views): instead of a
 * full zero-filled tensor, backward adds just the region into the input's gradient buffer. */
export class PartialGrad {
  constructor(readonly addTo: (dst: FloatData) => void) {}
}

let gradDepth = 0; // > 0 inside noGrad()

/** Run fn without recording operations for autograd. */
export function noGrad<T>(fn: () => T): T {
  gradDepth++;
  try {
    return fn();
  } finally {
    gradDepth--;
  }
}

export function isGradEnabled(): boolean {
  return gradDepth === 0;
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function allocData(dtype: DType, n: number): Data {
  if (dtype === 'float32') return new Float32Array(n);
  if (dtype === 'float64') return new Float64Array(n);
  return new Int32Array(n);
}

export function dtypeOf(data: Data): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  return 'int32';
}

function checkShape(shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid shape [${shape.join(', ')}]: dimensions must be non-negative integers`);
  }
}

export class Tensor {
  readonly data: Data;
  readonly shape: readonly number[];
  readonly dtype: DType;
  requiresGrad: boolean;
  grad: Tensor | null = null;
  /** Set when this tensor was produced by a recorded op; null for leaves. */
  node: GradNode | null = null;

  constructor(data: Data, shape: readonly number[], requiresGrad = false) {
    checkShape(shape);
    if (data.length !== sizeOf(shape)) {
      throw new Error(`tensor data has ${data.length} elements but shape [${shape.join(', ')}] needs ${sizeOf(shape)}`);
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtypeOf(data);
    if (requiresGrad && this.dtype === 'int32') throw new Error('int32 tensors cannot require gradients');
    this.requiresGrad = requiresGrad;
  }

  get size(): number {
    return this.data.length;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get isFloat(): boolean {
    return this.dtype !== 'int32';
  }

  /** The data as a float array (throws for int32 tensors). */
  get f(): FloatData {
    if (this.data instanceof Int32Array) throw new Error('expected a float tensor, got int32');
    return this.data;
  }

  /** The data as an int32 array (throws for float tensors). */
  get i(): Int32Array {
    if (!(this.data instanceof Int32Array)) throw new Error(`expected an int32 tensor, got ${this.dtype}`);
    return this.data;
  }

  /** Size of dimension d (negative counts from the end). */
  dim(d: number): number {
    const a = d < 0 ? d + this.shape.length : d;
    if (a < 0 || a >= this.shape.length) throw new Error(`dimension ${d} out of range for shape [${this.shape.join(', ')}]`);
    return this.shape[a];
  }

  item(): number {
    if (this.size !== 1) throw new Error(`item() needs a tensor with one element, got shape [${this.shape.join(', ')}]`);
    return this.data[0];
  }

  toArray(): number[] {
    return Array.from(this.data);
  }

  /** A tensor sharing this one's data, cut from the graph. */
  detach(): Tensor {
    return new Tensor(this.data, this.shape, false);
  }

  /** A deep copy (not recorded). */
  clone(): Tensor {
    return new Tensor(this.data.slice(), this.shape, false);
  }

  /** Mark as a trainable leaf. */
  requireGrad(flag = true): this {
    if (flag && this.dtype === 'int32') throw new Error('int32 tensors cannot require gradients');
    this.requiresGrad = flag;
    return this;
  }

  /**
   * A copy converted to `dtype` (this tensor itself when it already has it). Float ↔ float casts are
   * differentiable: the gradient is cast back to this tensor's dtype. A cast to int32 truncates and has no
   * gradient, so it refuses a tensor that requires one while gradients are recorded (detach() it first).
   */
  toDType(dtype: DType): Tensor {
    if (dtype === this.dtype) return this;
    const out = allocData(dtype, this.size);
    if (dtype === 'int32') {
      if (this.requiresGrad && gradDepth === 0) {
        throw new Error(`toDType('int32'): the tensor requires grad and an integer cast has no gradient; call .detach() first (or cast inside noGrad())`);
      }
      for (let i = 0; i < out.length; i++) out[i] = Math.trunc(this.data[i]);
      return new Tensor(out, this.shape);
    }
    out.set(this.data);
    const from = this.dtype;
    return record(new Tensor(out, this.shape), `toDType(${dtype})`, [this], (g) => [g.toDType(from)]);
  }

  /** Reverse-mode autograd from this tensor; gradient defaults to ones (a scalar loss). */
  backward(gradOutput?: Tensor): void {
    backward(this, gradOutput);
  }

  toString(): string {
    const n = Math.min(this.size, 8);
    const head = Array.from(this.data.subarray(0, n)).map((v) => +v.toPrecision(5));
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], [${head.join(', ')}${this.size > n ? ', …' : ''}])`;
  }

  // ---- constructors ----

  static zeros(shape: readonly number[], dtype: DType = 'float32'): Tensor {
    return new Tensor(allocData(dtype, sizeOf(shape)), shape);
  }

  static ones(shape: readonly number[], dtype: DType = 'float32'): Tensor {
    return Tensor.full(shape, 1, dtype);
  }

  static full(shape: readonly number[], value: number, dtype: DType = 'float32'): Tensor {
    const d = allocData(dtype, sizeOf(shape));
    d.fill(value);
    return new Tensor(d, shape);
  }

  static scalar(value: number, dtype: DType = 'float32'): Tensor {
    return Tensor.full([], value, dtype);
  }

  /** From a flat array of numbers and a shape (defaults to 1-D). */
  static from(values: ArrayLike<number>, shape?: readonly number[], dtype: DType = 'float32'): Tensor {
    const d = allocData(dtype, values.length);
    for (let i = 0; i < values.length; i++) d[i] = values[i];
    return new Tensor(d, shape ?? [values.length]);
  }

  static arange(n: number, dtype: DType = 'int32'): Tensor {
    const d = allocData(dtype, n);
    for (let i = 0; i < n; i++) d[i] = i;
    return new Tensor(d, [n]);
  }

  static randn(shape: readonly number[], rng: Rng, dtype: 'float32' | 'float64' = 'float32', std = 1): Tensor {
    const d = allocData(dtype, sizeOf(shape)) as FloatData;
    rng.fillNormal(d, 0, std);
    return new Tensor(d, shape);
  }

  static rand(shape: readonly number[], rng: Rng, dtype: 'float32' | 'float64' = 'float32', low = 0, high = 1): Tensor {
    const d = allocData(dtype, sizeOf(shape)) as FloatData;
    rng.fillUniform(d, low, high);
    return new Tensor(d, shape);
  }

  static randint(shape: readonly number[], low: number, high: number, rng: Rng): Tensor {
    const d = new Int32Array(sizeOf(shape));
    for (let i = 0; i < d.length; i++) d[i] = rng.randint(low, high);
    return new Tensor(d, shape);
  }
}

/** Attach a GradNode to `out` if recording is on and some input requires a gradient. */
export function record(out: Tensor, name: string, inputs: Tensor[], backwardFn: GradNode['backward']): Tensor {
  if (gradDepth > 0) return out;
  let needs = false;
  for (const t of inputs) if (t.requiresGrad) needs = true;
  if (!needs) return out;
  out.requiresGrad = true;
  out.node = { name, inputs, backward: backwardFn };
  return out;
}

/** Add src into dst elementwise (same size). */
function addInto(dst: FloatData, src: FloatData): void {
  for (let i = 0; i < dst.length; i++) dst[i] += src[i];
}

function backward(root: Tensor, gradOutput?: Tensor): void {
  if (!root.requiresGrad) throw new Error('backward(): the tensor does not require grad (no parameter with requiresGrad contributed to it)');
  let seed: Tensor;
  if (gradOutput) {
    if (gradOutput.size !== root.size) throw new Error(`backward(): gradient shape [${gradOutput.shape}] does not match [${root.shape}]`);
    if (gradOutput.dtype === 'int32') throw new Error('backward(): the gradient must be a float tensor');
    // Kernels need one float type per call: bring the seed to the root's dtype and shape.
    seed = new Tensor(gradOutput.toDType(root.dtype).data, root.shape);
  } else {
    if (root.size !== 1) throw new Error(`backward() without a gradient needs a scalar, got shape [${root.shape.join(', ')}]`);
    seed = Tensor.full(root.shape, 1, root.dtype);
  }

  // Topological order over tensors reachable through nodes (iterative DFS).
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const [t, idx] = top;
    const inputs = t.node ? t.node.inputs : [];
    if (idx < inputs.length) {
      top[1]++;
      const inp = inputs[idx];
      if (inp.requiresGrad && !visited.has(inp)) {
        visited.add(inp);
        stack.push([inp, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }

  // Gradient buffers: `owned` ones were allocated here and may be accumulated into in place; the
  // others came from a node's backward and may be shared, so they are copied on first accumulation.
  const grads = new Map<Tensor, Tensor>();
  const owned = new Set<Tensor>();
  grads.set(root, seed);
  gradDepth++;
  try {
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      if (!t.node) {
        // Leaf: accumulate into .grad.
        if (t.grad === null) t.grad = owned.has(g) ? new Tensor(g.data, t.shape) : new Tensor(g.data.slice(), t.shape);
        else addInto(t.grad.f, g.f);
        continue;
      }
      owned.delete(g); // the node's backward may hand g itself on to its inputs
      const inGrads = t.node.backward(g);
      const inputs = t.node.inputs;
      for (let j = 0; j < inputs.length; j++) {
        const inp = inputs[j];
        const gi = inGrads[j];
        if (!gi || !inp.requiresGrad) continue;
        if (gi instanceof PartialGrad) {
          let dst = grads.get(inp);
          if (dst === undefined) dst = new Tensor(allocData(inp.dtype, inp.size), inp.shape);
          else if (!owned.has(dst)) dst = new Tensor(dst.data.slice(), inp.shape);
          gi.addTo(dst.f);
          owned.add(dst);
          grads.set(inp, dst);
          continue;
        }
        if (gi.size !== inp.size) {
          throw new Error(`internal autograd error in ${t.node.name}: gradient for input ${j} has shape [${gi.shape}] but input has [${inp.shape}]`);
        }
        const prev = grads.get(inp);
        if (prev === undefined) grads.set(inp, gi);
        else if (owned.has(prev)) addInto(prev.f, gi.f);
        else {
          // Never mutate a gradient another node may still hold: copy on first accumulation.
          const sum = new Tensor(prev.data.slice(), inp.shape);
          addInto(sum.f, gi.f);
          owned.add(sum);
          grads.set(inp, sum);
        }
      }
    }
  } finally {
    gradDepth--;
  }
}

/** Define an op with a hand-written gradient: forward runs unrecorded, backward maps the output
 * gradient to input gradients (use for straight-through estimators and fused kernels). */
export function customOp(name: string, inputs: Tensor[], forward: () => Tensor, backwardFn: GradNode['backward']): Tensor {
  const out = noGrad(forward);
  return record(out, name, inputs, backwardFn);
}
