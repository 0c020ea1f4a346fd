// The Tensor type and reverse-mode autograd: dense row-major float32/float64/int32 arrays with a
// shape, and a tape of GradNodes that `backward()` walks in reverse topological order.

import { kernels } from './backend.js';
import { activePoolScope, closePoolScope, openPoolScope, POOL_MIN_ELEMENTS, type BufferPool, type PoolScope } from './pool.js';
import { Rng } from './rng.js';

export type DType = 'float32' | 'float64' | 'int32';
export type FloatData = Float32Array | Float64Array;
export type Data = Float32Array | Float64Array | Int32Array;

/** How a tensor was computed: its inputs and the function mapping d(loss)/d(output) to d(loss)/d(inputs). */
export interface GradNode {
  name: string;
  inputs: Tensor[];
  /** Returns one gradient per input (null where the input needs none). Runs with grad recording off.
   * It must not keep the tensors it creates anywhere but in its return value: inside a buffer-pool
   * scope, backward() recycles the temporaries it allocated as soon as it has used the result. */
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

/** Zero-filled storage for n elements (from the buffer pool inside a withBufferPool scope). */
export function allocData(dtype: DType, n: number): Data {
  if (n >= POOL_MIN_ELEMENTS) {
    const scope = activePoolScope();
    if (scope !== null) return scope.alloc(dtype, n, true);
  }
  if (dtype === 'float32') return new Float32Array(n);
  if (dtype === 'float64') return new Float64Array(n);
  return new Int32Array(n);
}

/** Storage for n elements whose contents are unspecified (stale data from the buffer pool inside a
 * withBufferPool scope, zeros outside): only for outputs that the caller overwrites element by element. */
export function allocUninit(dtype: DType, n: number): Data {
  if (n >= POOL_MIN_ELEMENTS) {
    const scope = activePoolScope();
    if (scope !== null) return scope.alloc(dtype, n, false);
  }
  return allocData(dtype, n);
}

/** A copy of data in fresh (pool-aware) storage. */
function copyData(data: Data): Data {
  const out = allocUninit(dtypeOf(data), data.length);
  out.set(data);
  return out;
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
    return new Tensor(copyData(this.data), this.shape, false);
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
    const out = allocUninit(dtype, this.size);
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
    const d = allocUninit(dtype, sizeOf(shape));
    d.fill(value);
    return new Tensor(d, shape);
  }

  static scalar(value: number, dtype: DType = 'float32'): Tensor {
    return Tensor.full([], value, dtype);
  }

  /** From a flat array of numbers and a shape (defaults to 1-D). */
  static from(values: ArrayLike<number>, shape?: readonly number[], dtype: DType = 'float32'): Tensor {
    const d = allocUninit(dtype, values.length);
    for (let i = 0; i < values.length; i++) d[i] = values[i];
    return new Tensor(d, shape ?? [values.length]);
  }

  static arange(n: number, dtype: DType = 'int32'): Tensor {
    const d = allocUninit(dtype, n);
    for (let i = 0; i < n; i++) d[i] = i;
    return new Tensor(d, [n]);
  }

  static randn(shape: readonly number[], rng: Rng, dtype: 'float32' | 'float64' = 'float32', std = 1): Tensor {
    const d = allocUninit(dtype, sizeOf(shape)) as FloatData;
    rng.fillNormal(d, 0, std);
    return new Tensor(d, shape);
  }

  static rand(shape: readonly number[], rng: Rng, dtype: 'float32' | 'float64' = 'float32', low = 0, high = 1): Tensor {
    const d = allocUninit(dtype, sizeOf(shape)) as FloatData;
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

/** a + b elementwise in new storage, shaped `shape` (the backend's add kernel rounds exactly as addInto). */
function addNew(a: Tensor, b: Tensor, shape: readonly number[]): Tensor {
  const out = allocUninit(a.dtype, a.size) as FloatData;
  if (a.size > 0) kernels().binary({ op: 'add', a: a.f, b: b.f, out, shape: [a.size], aStrides: [1], bStrides: [1] });
  return new Tensor(out, shape);
}

/**
 * Inside a pool scope, the buffers one backward pass allocates (`fresh`: gradients of intermediate
 * tensors, temporaries of node backward functions) are referenced only by the pass's pending gradients,
 * which this counts per buffer. A fresh buffer goes back to the pool once no pending gradient uses it
 * and the node that produced or consumed it is done; one adopted as a leaf's .grad leaves `fresh`.
 */
class PassBuffers {
  readonly fresh = new Set<ArrayBufferLike>();
  /** every buffer allocated since the last flush (the scope appends) */
  readonly log: ArrayBufferLike[] = [];
  private readonly refs = new Map<ArrayBufferLike, number>();
  /** buffers to check at the next flush */
  private readonly candidates: ArrayBufferLike[] = [];

  constructor(readonly scope: PoolScope) {}

  ref(t: Tensor): void {
    const b = t.data.buffer;
    if (this.fresh.has(b)) this.refs.set(b, (this.refs.get(b) ?? 0) + 1);
  }

  /** A pending gradient was consumed or replaced: its buffer may be free at the next flush. */
  unref(t: Tensor): void {
    const b = t.data.buffer;
    const n = this.refs.get(b);
    if (n !== undefined) {
      if (n <= 1) this.refs.delete(b);
      else this.refs.set(b, n - 1);
    }
    this.candidates.push(b);
  }

  pin(t: Tensor): void {
    this.fresh.delete(t.data.buffer);
  }

  /** Return every candidate (and every buffer allocated since the last flush) that nothing pending uses. */
  flush(): void {
    for (const list of [this.candidates, this.log]) {
      for (const b of list) {
        if (this.fresh.has(b) && !this.refs.has(b)) {
          this.fresh.delete(b);
          this.scope.releaseEarly(b);
        }
      }
      list.length = 0;
    }
  }
}

function backward(root: Tensor, gradOutput?: Tensor): void {
  if (!root.requiresGrad) throw new Error('backward(): the tensor does not require grad (no parameter with requiresGrad contributed to it)');
  const scope = activePoolScope();
  if (scope === null) return backwardPass(root, gradOutput, null);
  // A backward() nested in another pass's node backward runs untracked (its buffers wait for the scope's end).
  const outer = scope.track;
  const pass = outer === null ? new PassBuffers(scope) : null;
  scope.track = pass;
  try {
    backwardPass(root, gradOutput, pass);
  } finally {
    scope.track = outer;
  }
}

function backwardPass(root: Tensor, gradOutput: Tensor | undefined, pass: PassBuffers | null): void {
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
  // others came from a node's backward and may be shared, so they are never written: the first
  // accumulation goes to new storage.
  const grads = new Map<Tensor, Tensor>();
  const owned = new Set<Tensor>();
  const setGrad = (t: Tensor, g: Tensor): void => {
    grads.set(t, g);
    pass?.ref(g);
  };
  setGrad(root, seed);
  gradDepth++;
  try {
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      pass?.unref(g);
      if (!t.node) {
        // Leaf: accumulate into .grad.
        if (t.grad === null) {
          t.grad = owned.has(g) ? new Tensor(g.data, t.shape) : new Tensor(copyData(g.data), t.shape);
          if (pass !== null) {
            pass.pin(t.grad);
            pass.scope.gradLeaves.add(t);
          }
        } else addInto(t.grad.f, g.f);
        pass?.flush();
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
          else if (!owned.has(dst)) {
            pass?.unref(dst);
            dst = new Tensor(copyData(dst.data), inp.shape);
          } else pass?.unref(dst);
          gi.addTo(dst.f);
          owned.add(dst);
          setGrad(inp, dst);
          continue;
        }
        if (gi.size !== inp.size) {
          throw new Error(`internal autograd error in ${t.node.name}: gradient for input ${j} has shape [${gi.shape}] but input has [${inp.shape}]`);
        }
        const prev = grads.get(inp);
        if (prev === undefined) setGrad(inp, gi);
        else if (owned.has(prev) && pass === null) addInto(prev.f, gi.f);
        else {
          // Never mutate a gradient another node may still hold: the sum goes to new storage (inside a
          // pool scope an owned one too, so that the old buffer can be recycled).
          pass?.unref(prev);
          const sum = addNew(prev, gi, inp.shape);
          owned.add(sum);
          setGrad(inp, sum);
        }
      }
      // Only now (every input's gradient is placed, and PartialGrads have read g) may buffers go back.
      pass?.flush();
    }
  } finally {
    gradDepth--;
  }
}

/**
 * Run fn (synchronous) with tensor storage drawn from `pool` (null: just run fn): a training step wrapped
 * in this reuses the buffers of the previous step instead of allocating. When fn returns, everything
 * allocated inside goes back to the pool except the storage of what fn returned (tensors off the autograd
 * graph, typed arrays; found in arrays and plain objects too) and the .grad of leaves that got a gradient
 * inside and still hold it. fn must not keep tensors it creates in any other place (see pool.ts); a
 * returned tensor still on the autograd graph is an error, since its graph reads recycled buffers.
 */
export function withBufferPool<T>(pool: BufferPool | null, fn: () => T): T {
  if (pool === null) return fn();
  const scope = openPoolScope(pool);
  let keep: Set<ArrayBufferLike> | null = null;
  try {
    const result = fn();
    keep = keptBuffers(result, scope);
    return result;
  } finally {
    closePoolScope(scope, keep);
  }
}

/**
 * Inference counterpart of withBufferPool: runs fn with storage from `pool` only when no gradient is being
 * recorded (inside noGrad), else plainly. A model wraps one forward pass in this (encoder call, decoder
 * Euler step), so repeated inference reuses the previous pass's activations instead of allocating fresh,
 * zero-filled pages (~20% of a d12 encoder forward on 2 threads). The same contract holds: fn returns its
 * results and keeps no tensor it creates anywhere else; callers that trace intermediates call fn directly.
 */
export function withInferencePool<T>(pool: BufferPool, fn: () => T): T {
  return isGradEnabled() ? fn() : withBufferPool(pool, fn);
}

/** The storage that outlives a scope: the buffers of fn's result and of the leaves' gradients. */
function keptBuffers(result: unknown, scope: PoolScope): Set<ArrayBufferLike> {
  const keep = new Set<ArrayBufferLike>();
  for (const leaf of scope.gradLeaves) if (leaf.grad !== null) keep.add(leaf.grad.data.buffer);
  const seen = new Set<object>();
  const walk = (v: unknown, depth: number): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (v instanceof Tensor) {
      if (v.node !== null) {
        throw new Error(`withBufferPool: the function returned a tensor that is still on the autograd graph (made by ${v.node.name}); ` +
          'its backward would read buffers recycled when the scope ends: detach() it, or run backward() inside the scope');
      }
      keep.add(v.data.buffer);
      if (v.grad !== null) keep.add(v.grad.data.buffer);
      return;
    }
    if (ArrayBuffer.isView(v)) {
      keep.add(v.buffer);
      return;
    }
    if (typeof (v as { then?: unknown }).then === 'function') {
      throw new Error('withBufferPool: the function must be synchronous (it returned a promise)');
    }
    if (depth > 8) return;
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1);
      return;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) for (const x of Object.values(v)) walk(x, depth + 1);
    else if (v instanceof Map) for (const [k, x] of v) (walk(k, depth + 1), walk(x, depth + 1));
    else if (v instanceof Set) for (const x of v) walk(x, depth + 1);
  };
  walk(result, 0);
  return keep;
}

/** Define an op with a hand-written gradient: forward runs unrecorded, backward maps the output
 * gradient to input gradients (use for straight-through estimators and fused kernels). */
export function customOp(name: string, inputs: Tensor[], forward: () => Tensor, backwardFn: GradNode['backward']): Tensor {
  const out = noGrad(forward);
  return record(out, name, inputs, backwardFn);
}
