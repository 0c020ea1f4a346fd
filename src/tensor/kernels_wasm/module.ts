// Instantiates the WebAssembly build of the flextok kernels (native/wasm/flextok_kernels.wasm) from its bytes,
// with stub WASI imports and no Node APIs, so the same code can run in a browser; types its exports.

/** Pointers are byte offsets into the module's memory; counts are 32-bit (see native/wasm/exports.cc). */
export interface KernelExports {
  readonly memory: WebAssembly.Memory;
  _initialize(): void;
  ft_alloc(bytes: number): number;
  ft_free(ptr: number): void;
  ft_isa(): number;
  ft_set_isa(scalar: number): number;
  /** 1 for the relaxed-SIMD build (*_relaxed.wasm), 0 for the SIMD128 one */
  ft_relaxed_simd(): number;
  ft_threads(): number;
  ft_set_threads(n: number): number;
  ft_gemm(bf16: number, transA: number, transB: number, m: number, n: number, k: number, alpha: number, beta: number,
    a: number, lda: number, strideA: number, b: number, ldb: number, strideB: number, c: number, ldc: number,
    strideC: number, batch: number): void;
  ft_attention_forward(q: number, k: number, v: number, out: number, lse: number, mask: number, maskBatchStride: number,
    batch: number, heads: number, lq: number, lk: number, headDim: number, scale: number, causal: number): void;
  ft_attention_backward(q: number, k: number, v: number, out: number, lse: number, mask: number, maskBatchStride: number,
    batch: number, heads: number, lq: number, lk: number, headDim: number, scale: number, causal: number,
    dOut: number, dq: number, dk: number, dv: number): void;
  ft_unary(op: number, x: number, y: number, n: number): void;
  ft_unary_backward(op: number, x: number, y: number, dy: number, dx: number, n: number, accumulate: number): void;
  /** dims: 3·ndim int32 (shape, a strides, b strides) */
  ft_binary(op: number, a: number, b: number, out: number, ndim: number, dims: number): void;
  ft_sum(x: number, out: number, outer: number, red: number, inner: number): void;
  ft_max(x: number, out: number, argmax: number, outer: number, red: number, inner: number): void;
  ft_softmax_forward(x: number, y: number, rows: number, dim: number): void;
  ft_softmax_backward(y: number, dy: number, dx: number, rows: number, dim: number): void;
  ft_log_softmax_forward(x: number, y: number, rows: number, dim: number): void;
  ft_log_softmax_backward(y: number, dy: number, dx: number, rows: number, dim: number): void;
  ft_segment_fma_forward(x: number, a: number, c: number, seg: number, out: number, rows: number, dim: number, cPerRow: number): void;
  ft_segment_fma_backward(x: number, a: number, seg: number, dy: number, dx: number, da: number, dc: number, rows: number,
    dim: number, segments: number): void;
  ft_layer_norm_forward(x: number, w: number, b: number, y: number, mean: number, rstd: number, rows: number, dim: number, eps: number): void;
  ft_layer_norm_backward(x: number, w: number, mean: number, rstd: number, dy: number, dx: number, dw: number, db: number,
    rows: number, dim: number): void;
  ft_rms_norm_forward(x: number, w: number, y: number, rstd: number, rows: number, dim: number, eps: number): void;
  ft_rms_norm_backward(x: number, w: number, rstd: number, dy: number, dx: number, dw: number, rows: number, dim: number): void;
  ft_group_norm_forward(x: number, w: number, b: number, y: number, mean: number, rstd: number, n: number, channels: number,
    spatial: number, groups: number, eps: number): void;
  ft_group_norm_backward(x: number, w: number, mean: number, rstd: number, dy: number, dx: number, dw: number, db: number,
    n: number, channels: number, spatial: number, groups: number): void;
  /** geom: 11 int32 [channels, height, width, kh, kw, strideH, strideW, padTop, padLeft, outH, outW] */
  ft_im2col(x: number, cols: number, geom: number): void;
  ft_col2im(cols: number, dx: number, geom: number): void;
  /** dims: 2·ndim int32 (shape, perm) */
  ft_permute(x: number, y: number, ndim: number, dims: number): void;
  ft_adamw(param: number, grad: number, m: number, v: number, n: number, lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, biasCorrection1: number, biasCorrection2: number): void;
}

const FUNCTIONS: ReadonlyArray<Exclude<keyof KernelExports, 'memory'>> = [
  '_initialize', 'ft_alloc', 'ft_free', 'ft_isa', 'ft_set_isa', 'ft_relaxed_simd', 'ft_threads', 'ft_set_threads', 'ft_gemm',
  'ft_attention_forward', 'ft_attention_backward', 'ft_unary', 'ft_unary_backward', 'ft_binary', 'ft_sum', 'ft_max',
  'ft_softmax_forward', 'ft_softmax_backward', 'ft_log_softmax_forward', 'ft_log_softmax_backward',
  'ft_segment_fma_forward', 'ft_segment_fma_backward', 'ft_layer_norm_forward', 'ft_layer_norm_backward',
  'ft_rms_norm_forward', 'ft_rms_norm_backward', 'ft_group_norm_forward', 'ft_group_norm_backward', 'ft_im2col',
  'ft_col2im', 'ft_permute', 'ft_adamw',
];

/** The smallest module that uses f32x4.relaxed_madd (opcode 0xfd 0x105): `(func (param v128 v128 v128) (result
 * v128) local.get 0 local.get 1 local.get 2 f32x4.relaxed_madd)`. */
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type: (v128 v128 v128) -> v128
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x85, 0x02, 0x0b, // its body
]);

/** Whether this engine runs WebAssembly relaxed SIMD (Chrome 114+, Node 22+, Node 20 with
 * --experimental-wasm-relaxed-simd), so the *_relaxed.wasm kernels load. */
export function relaxedSimdSupported(): boolean {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

/** The file name of a kernels build: flextok_kernels[_mt][_relaxed].wasm (threaded: on a shared memory with
 * helper threads; relaxed: fused multiply-add through relaxed SIMD, ~1.25x the GEMM speed where it loads). */
export function kernelModuleFile(build: { threaded: boolean; relaxed: boolean }): string {
  return `flextok_kernels${build.threaded ? '_mt' : ''}${build.relaxed ? '_relaxed' : ''}.wasm`;
}

/** Raised by the stub of proc_exit (libc's abort/exit, e.g. operator new out of memory). */
export class WasmExit extends Error {
  constructor(readonly code: number) {
    super(`the wasm kernels exited with code ${code} (out of memory?)`);
  }
}

const WASI_ERRNO_SUCCESS = 0;
const WASI_ERRNO_BADF = 8;

/** The environment the kernels see: only the GEMM blocking overrides (FLEXTOK_GEMM_MC / _NC / _KC, read once when
 * the first GEMM runs), from the host's process environment where there is one (Node); empty in a browser. */
function kernelEnvironment(): Uint8Array[] {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
  const enc = new TextEncoder();
  return ['FLEXTOK_GEMM_MC', 'FLEXTOK_GEMM_NC', 'FLEXTOK_GEMM_KC']
    .filter((k) => env[k] !== undefined && /^[0-9]{1,6}$/.test(env[k]!))
    .map((k) => enc.encode(`${k}=${env[k]}\0`));
}

/** The WASI imports the module has (wasi-libc's getenv, abort and the stdio behind libc++abi's abort messages):
 * the environment of kernelEnvironment, no files (writes fail), and exit as an exception. */
function wasiStubs(memory: () => WebAssembly.Memory): WebAssembly.ModuleImports {
  const environment = kernelEnvironment();
  return {
    environ_sizes_get(countPtr: number, sizePtr: number): number {
      const view = new DataView(memory().buffer);
      view.setUint32(countPtr, environment.length, true);
      view.setUint32(sizePtr, environment.reduce((n, e) => n + e.length, 0), true);
      return WASI_ERRNO_SUCCESS;
    },
    environ_get(environPtr: number, bufPtr: number): number {
      const view = new DataView(memory().buffer);
      const bytes = new Uint8Array(memory().buffer);
      let at = bufPtr;
      environment.forEach((e, i) => {
        view.setUint32(environPtr + 4 * i, at, true);
        bytes.set(e, at);
        at += e.length;
      });
      return WASI_ERRNO_SUCCESS;
    },
    proc_exit(code: number): never {
      throw new WasmExit(code);
    },
    fd_write(): number {
      return WASI_ERRNO_BADF;
    },
    fd_seek(): number {
      return WASI_ERRNO_BADF;
    },
    fd_close(): number {
      return WASI_ERRNO_SUCCESS;
    },
  };
}

/** A trap inside a kernel (out-of-bounds access, or `unreachable`: out of wasm memory in the C++ scratch). */
export class WasmTrap extends Error {
  constructor(readonly kernel: string, cause: unknown) {
    super(`the wasm kernel ${kernel} trapped (${cause instanceof Error ? cause.message : String(cause)}); out of wasm memory (4 GiB)?`, { cause });
  }
}

/** Checks that an instance has every export of KernelExports and returns it typed; `imported` is the memory
 * of a module that imports it (the threaded build) instead of exporting it. Each function is wrapped so that
 * a trap throws WasmTrap and resets the stack pointer (a trap skips the epilogues that restore it). */
export function typedExports(instance: WebAssembly.Instance, imported?: WebAssembly.Memory): KernelExports {
  const ex = instance.exports;
  const memory = imported ?? ex.memory;
  if (!(memory instanceof WebAssembly.Memory)) throw new Error('flextok wasm kernels: the module exports no memory');
  const sp = ex.__stack_pointer instanceof WebAssembly.Global ? ex.__stack_pointer : null;
  const stackTop: unknown = sp?.value;
  const out: Record<string, unknown> = { ...ex, memory };
  for (const name of FUNCTIONS) {
    const f = ex[name];
    if (typeof f !== 'function') throw new Error(`flextok wasm kernels: the module lacks the export ${name} (rebuild it: npm run build:wasm)`);
    const fn = f as (...args: number[]) => number;
    out[name] = (...args: number[]): number => {
      try {
        return fn(...args);
      } catch (e) {
        if (e instanceof WasmExit || !(e instanceof WebAssembly.RuntimeError)) throw e;
        if (sp) sp.value = stackTop;
        throw new WasmTrap(name, e);
      }
    };
  }
  return out as unknown as KernelExports;
}

/** The imports object for `module`: WASI stubs for whatever WASI functions it imports, and env.memory when given. */
export function importsFor(module: WebAssembly.Module, memory: () => WebAssembly.Memory, imported?: WebAssembly.Memory): WebAssembly.Imports {
  const stubs = wasiStubs(memory);
  const wasi: WebAssembly.ModuleImports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind === 'memory' && imp.module === 'env' && imp.name === 'memory' && imported) continue;
    if (imp.kind !== 'function' || imp.module !== 'wasi_snapshot_preview1' || !(imp.name in stubs)) {
      throw new Error(`flextok wasm kernels: unexpected import ${imp.module}.${imp.name} (${imp.kind})`);
    }
    wasi[imp.name] = stubs[imp.name];
  }
  return imported ? { env: { memory: imported }, wasi_snapshot_preview1: wasi } : { wasi_snapshot_preview1: wasi };
}

/** The exported memory of `instance` once it exists (the stubs run only during calls into the module). */
function memoryOf(holder: { instance: WebAssembly.Instance | null }): () => WebAssembly.Memory {
  return () => {
    const mem = holder.instance?.exports.memory;
    if (!(mem instanceof WebAssembly.Memory)) throw new Error('flextok wasm kernels: no memory yet');
    return mem;
  };
}

/** Compiles and instantiates synchronously (Node; browsers allow this only for tiny modules off the main thread). */
export function instantiateKernelsSync(bytes: BufferSource): KernelExports {
  const module = new WebAssembly.Module(bytes);
  const holder: { instance: WebAssembly.Instance | null } = { instance: null };
  holder.instance = new WebAssembly.Instance(module, importsFor(module, memoryOf(holder)));
  const ex = typedExports(holder.instance);
  ex._initialize(); // static constructors (crt1-reactor)
  return ex;
}

/** The asynchronous form (for browsers' main thread). */
export async function instantiateKernels(bytes: BufferSource): Promise<KernelExports> {
  const module = await WebAssembly.compile(bytes);
  const holder: { instance: WebAssembly.Instance | null } = { instance: null };
  holder.instance = await WebAssembly.instantiate(module, importsFor(module, memoryOf(holder)));
  const ex = typedExports(holder.instance);
  ex._initialize();
  return ex;
}
