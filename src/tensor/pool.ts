// A pool of tensor storage for training steps: the Float32/Float64/Int32 arrays that the tensors of one
// step allocate (activations, gradients, kernel scratch) are handed back at the end of the step and
// reused by the next one, so a step spends its time in kernels instead of allocating (and zeroing)
// fresh pages and collecting them again. A FlexTok training step allocates ~1.7 GB of such arrays.
//
// Safety rules (a buffer is never handed out while a live tensor still uses it):
// - Only allocations made inside a pool scope come from the pool: `withBufferPool(pool, fn)` in
//   tensor.ts opens one for the duration of fn (the trainers wrap one optimizer step in it). Tensors
//   created outside any scope (parameters, optimizer and EMA state, datasets, anything built at
//   construction time) never touch the pool.
// - When fn returns, every buffer allocated in the scope goes back to the pool EXCEPT the storage of
//   what fn returned (tensors that are off the autograd graph, typed arrays) and the `.grad` of the
//   leaves that received a gradient in the scope and still hold it (gradient accumulation across
//   scopes). So fn must not stash a tensor it creates anywhere else (a field, a cache, an outer
//   variable): that is the one contract the scope relies on. `unpooled(fn)` runs code that builds
//   long-lived tensors (lazy caches) inside a scope without pooling.
// - If fn throws, nothing goes back to the pool (the buffers are left to the garbage collector).
// - Inside backward(), buffers allocated by the backward pass itself (gradients of intermediate
//   tensors, temporaries of the node backward functions) go back as soon as the pass has consumed the
//   last gradient that uses them (see the autograd driver in tensor.ts).
// - A buffer from the pool is zero-filled unless the caller asked for uninitialised storage
//   (`allocUninit`, used only where a kernel overwrites every element).
// Checks: `poison` fills buffers with NaN when they come back (so reading stale contents, or relying
// on zeros from an uninitialised allocation, shows up as NaN); `detectLeaks` never reuses a buffer
// and keeps a weak reference to each returned one, so a test can garbage-collect and verify that no
// returned buffer is still reachable from anything.

export type PooledDType = 'float32' | 'float64' | 'int32';
export type PooledArray = Float32Array | Float64Array | Int32Array;

/** Arrays below this many elements are not pooled (small typed arrays live on the JS heap and are cheap). */
export const POOL_MIN_ELEMENTS = 64;

export interface BufferPoolOptions {
  /** Fill every buffer that comes back with NaN (int32: -2^31) before it can be reused. */
  poison?: boolean;
  /** Never reuse buffers; keep weak references to the returned ones (see reachableReturned). Implies poison. */
  detectLeaks?: boolean;
  /** Drop free buffers of a size that no scope asked for during this many scopes (default 2). */
  maxIdleScopes?: number;
}

export interface BufferPoolStats {
  /** allocations served from free buffers */
  hits: number;
  /** allocations that created a new array */
  misses: number;
  /** buffers handed back (at scope ends and early, by backward) */
  returned: number;
  /** of those, handed back by backward() before the scope ended */
  returnedEarly: number;
  /** bytes in free buffers now */
  freeBytes: number;
  /** scopes closed */
  scopes: number;
}

function dtypeCode(d: PooledDType): number {
  return d === 'float32' ? 0 : d === 'float64' ? 1 : 2;
}

function newArray(dtype: PooledDType, n: number): PooledArray {
  if (dtype === 'float32') return new Float32Array(n);
  if (dtype === 'float64') return new Float64Array(n);
  return new Int32Array(n);
}

/** Free arrays by exact (dtype, length): the tensors of a training step have the same sizes step after step. */
export class BufferPool {
  readonly poison: boolean;
  readonly detectLeaks: boolean;
  readonly maxIdleScopes: number;
  private readonly free = new Map<number, PooledArray[]>();
  /** scope count at the last allocation of each size */
  private readonly lastAsked = new Map<number, number>();
  private readonly returnedRefs: WeakRef<PooledArray>[] = [];
  private freeBytes = 0;
  private counts = { hits: 0, misses: 0, returned: 0, returnedEarly: 0, scopes: 0 };

  constructor(opts: BufferPoolOptions = {}) {
    this.detectLeaks = opts.detectLeaks ?? false;
    this.poison = (opts.poison ?? false) || this.detectLeaks;
    this.maxIdleScopes = opts.maxIdleScopes ?? 2;
  }

  /** An array of n elements: a free one (zero-filled when `zero`) or a new one. */
  take(dtype: PooledDType, n: number, zero: boolean): PooledArray {
    const key = n * 4 + dtypeCode(dtype);
    this.lastAsked.set(key, this.counts.scopes);
    const list = this.free.get(key);
    if (list !== undefined && list.length > 0) {
      const buf = list.pop()!;
      this.freeBytes -= buf.byteLength;
      this.counts.hits++;
      if (zero) buf.fill(0);
      return buf;
    }
    this.counts.misses++;
    return newArray(dtype, n);
  }

  /** Hand back an array nothing uses any more (it may be handed out again by the next take). */
  give(buf: PooledArray, early = false): void {
    this.counts.returned++;
    if (early) this.counts.returnedEarly++;
    if (this.poison) buf.fill(buf instanceof Int32Array ? -2147483648 : NaN);
    if (this.detectLeaks) {
      this.returnedRefs.push(new WeakRef(buf));
      return;
    }
    const key = buf.length * 4 + dtypeCode(buf instanceof Float32Array ? 'float32' : buf instanceof Float64Array ? 'float64' : 'int32');
    let list = this.free.get(key);
    if (list === undefined) this.free.set(key, (list = []));
    list.push(buf);
    this.freeBytes += buf.byteLength;
  }

  /** Called when a scope closes: drops the free buffers of sizes no recent scope asked for. */
  scopeClosed(): void {
    this.counts.scopes++;
    for (const [key, list] of this.free) {
      if (this.counts.scopes - (this.lastAsked.get(key) ?? 0) > this.maxIdleScopes) {
        for (const b of list) this.freeBytes -= b.byteLength;
        this.free.delete(key);
        this.lastAsked.delete(key);
      }
    }
  }

  /** Drop every free buffer. */
  clear(): void {
    this.free.clear();
    this.lastAsked.clear();
    this.freeBytes = 0;
  }

  stats(): BufferPoolStats {
    return { ...this.counts, freeBytes: this.freeBytes };
  }

  /** detectLeaks only: how many handed-back buffers are still reachable (call after a full garbage collection). */
  reachableReturned(): number {
    if (!this.detectLeaks) throw new Error('reachableReturned() needs a BufferPool created with { detectLeaks: true }');
    let n = 0;
    for (const r of this.returnedRefs) if (r.deref() !== undefined) n++;
    return n;
  }
}

/** The buffers one open scope has handed out and not yet returned. */
export class PoolScope {
  /** handed out in this scope, by their ArrayBuffer (views of a buffer share it) */
  readonly live = new Map<ArrayBufferLike, PooledArray>();
  /** leaves whose .grad was set in this scope (their gradient storage outlives it) */
  readonly gradLeaves = new Set<{ grad: { data: PooledArray } | null }>();
  /** set by backward() while its pass runs: every allocation's ArrayBuffer is added to `fresh` and `log` */
  track: { fresh: Set<ArrayBufferLike>; log: ArrayBufferLike[] } | null = null;
  /** > 0 inside unpooled() */
  suspended = 0;

  constructor(readonly pool: BufferPool, readonly parent: PoolScope | null) {}

  alloc(dtype: PooledDType, n: number, zero: boolean): PooledArray {
    const buf = this.pool.take(dtype, n, zero);
    this.live.set(buf.buffer, buf);
    if (this.track !== null) {
      this.track.fresh.add(buf.buffer);
      this.track.log.push(buf.buffer);
    }
    return buf;
  }

  /** Hand back one buffer of this scope before the scope ends (backward() does, for its own temporaries). */
  releaseEarly(buffer: ArrayBufferLike): void {
    const buf = this.live.get(buffer);
    if (buf === undefined) return;
    this.live.delete(buffer);
    this.pool.give(buf, true);
  }
}

// The active scope: the one slot of mutable module state here. It is set only by openPoolScope and
// always restored (in a `finally`, by withBufferPool in tensor.ts) to the scope that was active
// before, so it is non-null exactly while some withBufferPool call is on the stack.
let active: PoolScope | null = null;

/** The scope allocations come from now, or null (not inside withBufferPool, or inside unpooled). */
export function activePoolScope(): PoolScope | null {
  return active !== null && active.suspended === 0 ? active : null;
}

export function openPoolScope(pool: BufferPool): PoolScope {
  active = new PoolScope(pool, active);
  return active;
}

/**
 * Ends `scope` (which must be the innermost one) and makes its parent active again. `keep`: the
 * ArrayBuffers that outlive the scope (they move to the parent scope, or leave pooling altogether);
 * every other buffer of the scope goes back to the pool. keep = null (fn threw): nothing goes back.
 */
export function closePoolScope(scope: PoolScope, keep: Set<ArrayBufferLike> | null): void {
  if (active !== scope) throw new Error('closePoolScope: scopes must close innermost first');
  active = scope.parent;
  if (keep !== null) {
    for (const [buffer, buf] of scope.live) {
      if (keep.has(buffer)) scope.parent?.live.set(buffer, buf);
      else scope.pool.give(buf);
    }
  }
  scope.live.clear();
  scope.gradLeaves.clear();
  scope.pool.scopeClosed();
}

/** Run fn with the active pool scope (if any) suspended: what it allocates is ordinary, unpooled
 * storage (for long-lived tensors built inside a scope, e.g. lazily filled caches). */
export function unpooled<T>(fn: () => T): T {
  const s = active;
  if (s === null) return fn();
  s.suspended++;
  try {
    return fn();
  } finally {
    s.suspended--;
  }
}
