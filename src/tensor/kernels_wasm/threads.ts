// The multi-threaded wasm kernels (native/wasm/flextok_kernels_mt.wasm, `npm run build:wasm -- --threads`):
// the module is instantiated on a shared memory by the calling thread and by every helper worker; the C++
// parallel_for (native/wasm/runtime.cc) hands tasks to the helpers through atomics in that memory, and the
// caller joins in and waits with memory.atomic.wait32 (allowed on Node's main thread). No Node APIs here:
// the platform supplies `spawn`, which starts a worker running WORKER_SOURCE's function on WorkerData.
import { importsFor, typedExports, type KernelExports } from './module.js';

/** Initial pages of the imported memory (must match WASM_MT_INITIAL_PAGES in scripts/build-wasm.mjs). */
const INITIAL_PAGES = 64;
/** Pages a wasm32 memory can have (4 GiB). */
const MAX_PAGES = 65536;
/** Stack of each helper (the module's own stack, 1 MiB, serves the calling thread). */
const WORKER_STACK_BYTES = 1 << 20;

export interface ThreadExports extends KernelExports {
  ft_worker_loop(index: number): void;
  ft_stop_workers(): void;
  ft_workers(): number;
  ft_helper_tasks(): number;
  ft_threads_init(): void;
  __wasm_init_tls(block: number): void;
  readonly __tls_size: WebAssembly.Global;
  readonly __tls_align: WebAssembly.Global;
  readonly __tls_base: WebAssembly.Global;
  readonly __stack_pointer: WebAssembly.Global;
}

/** What a helper needs to join: the compiled module, the shared memory, its index, its stack and TLS block. */
export interface WorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  index: number;
  stackTop: number;
  tlsBase: number;
}

/** A function expression (JavaScript source, self-contained) that a helper runs on its WorkerData: it
 * instantiates the module on the shared memory, installs its own stack and TLS block, and serves jobs until
 * ft_stop_workers. The WASI stubs repeat module.ts's (an empty environment; exit throws). */
export const WORKER_SOURCE = `(data) => {
  const stubs = {
    environ_sizes_get(countPtr, sizePtr) {
      const v = new DataView(data.memory.buffer);
      v.setUint32(countPtr, 0, true);
      v.setUint32(sizePtr, 0, true);
      return 0;
    },
    environ_get() { return 0; },
    proc_exit(code) { throw new Error('flextok wasm kernels: a helper exited with code ' + code); },
    fd_write() { return 8; },
    fd_seek() { return 8; },
    fd_close() { return 0; },
  };
  const wasi = {};
  for (const imp of WebAssembly.Module.imports(data.module)) if (imp.kind === 'function') wasi[imp.name] = stubs[imp.name];
  const instance = new WebAssembly.Instance(data.module, { env: { memory: data.memory }, wasi_snapshot_preview1: wasi });
  const ex = instance.exports;
  ex.__stack_pointer.value = data.stackTop;
  ex.__wasm_init_tls(data.tlsBase);
  ex.ft_worker_loop(data.index);
}`;

function checkThreadExports(ex: KernelExports): ThreadExports {
  const rec = ex as unknown as Record<string, unknown>;
  for (const name of ['ft_worker_loop', 'ft_stop_workers', 'ft_workers', 'ft_helper_tasks', 'ft_threads_init', '__wasm_init_tls']) {
    if (typeof rec[name] !== 'function') throw new Error(`flextok wasm kernels: the threaded module lacks ${name}`);
  }
  for (const name of ['__tls_size', '__tls_align', '__tls_base', '__stack_pointer']) {
    if (!(rec[name] instanceof WebAssembly.Global)) throw new Error(`flextok wasm kernels: the threaded module lacks the global ${name}`);
  }
  return ex as ThreadExports;
}

/** A TLS block for one thread (the module's thread_local variables), initialised. */
function tlsBlock(ex: ThreadExports): number {
  const size = Math.max(16, Number(ex.__tls_size.value));
  if (Number(ex.__tls_align.value) > 64) throw new Error('flextok wasm kernels: TLS alignment above 64');
  const p = ex.ft_alloc(size) >>> 0;
  if (p === 0) throw new RangeError('flextok wasm kernels: out of memory for a TLS block');
  return p;
}

/** Instantiates the threaded module on a new shared memory and starts `threads - 1` helpers through `spawn`.
 * The helpers join asynchronously: until they do, kernels run on fewer threads (see helpersRunning). */
export function instantiateThreadedSync(bytes: BufferSource, threads: number, spawn: (source: string, data: WorkerData) => void): ThreadExports {
  const module = new WebAssembly.Module(bytes);
  const memory = new WebAssembly.Memory({ initial: INITIAL_PAGES, maximum: MAX_PAGES, shared: true });
  const instance = new WebAssembly.Instance(module, importsFor(module, () => memory, memory));
  const ex = checkThreadExports(typedExports(instance, memory));
  ex._initialize();
  // the calling thread's TLS block (wasm-ld leaves __tls_base at 0 until __wasm_init_tls runs)
  if (Number(ex.__tls_base.value) === 0) ex.__wasm_init_tls(tlsBlock(ex));
  ex.ft_threads_init();
  const n = Math.max(1, Math.min(64, Math.floor(threads)));
  for (let index = 1; index < n; index++) {
    const stack = ex.ft_alloc(WORKER_STACK_BYTES) >>> 0;
    if (stack === 0) throw new RangeError('flextok wasm kernels: out of memory for a helper stack');
    spawn(WORKER_SOURCE, { module, memory, index, stackTop: stack + WORKER_STACK_BYTES, tlsBase: tlsBlock(ex) });
  }
  ex.ft_set_threads(n);
  return ex;
}

/** Helpers currently serving jobs. */
export function helpersRunning(ex: ThreadExports): number {
  return ex.ft_workers();
}
