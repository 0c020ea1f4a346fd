// Loads the WebAssembly build of the C++ kernels (native/wasm/flextok_kernels.wasm, `npm run build:wasm`) in Node:
// reads the file and hands its bytes to kernels_wasm/ (which has no Node dependencies and also serves browsers).
// FLEXTOK_WASM_THREADS=n (n > 1) loads the multi-threaded build (flextok_kernels_mt.wasm, `npm run build:wasm --
// --threads`) instead, with n - 1 helper threads (worker_threads) on a shared memory.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

import { createWasmKernels, type WasmKernels } from './kernels_wasm/kernels.js';
import { instantiateKernelsSync, type KernelExports } from './kernels_wasm/module.js';
import { helpersRunning, instantiateThreadedSync, type ThreadExports, type WorkerData } from './kernels_wasm/threads.js';

/** Threads asked for with FLEXTOK_WASM_THREADS (1 = the single-threaded build). */
function requestedThreads(): number {
  const n = Number(process.env.FLEXTOK_WASM_THREADS ?? 1);
  return Number.isInteger(n) && n > 1 ? Math.min(n, 64) : 1;
}

/** Where the module should be: <repo>/native/wasm/... seen from src/tensor/ (tsx) or dist/src/tensor/ (compiled);
 * FLEXTOK_WASM_MODULE names another file. */
function wasmCandidates(threaded: boolean): string[] {
  if (process.env.FLEXTOK_WASM_MODULE) return [path.resolve(process.env.FLEXTOK_WASM_MODULE)];
  const rel = path.join('native', 'wasm', threaded ? 'flextok_kernels_mt.wasm' : 'flextok_kernels.wasm');
  const here = path.dirname(fileURLToPath(import.meta.url));
  return [path.resolve(here, '..', '..', rel), path.resolve(here, '..', '..', '..', rel)];
}

/** Starts one helper thread: a worker_threads worker (without the parent's loaders) running `source` on `data`. */
function spawnWorker(source: string, data: WorkerData): void {
  const w = new Worker(`const { workerData } = require('node:worker_threads');\n(${source})(workerData);`, {
    eval: true, workerData: data, execArgv: [],
  });
  w.unref(); // helpers never keep the process alive
  w.on('error', (e) => process.stderr.write(`flextok: a wasm kernel helper thread failed: ${e.message}\n`));
}

interface Loaded {
  exports: KernelExports;
  threaded: ThreadExports | null;
  kernels: WasmKernels;
  file: string;
}

let state: Loaded | null | undefined;
let loadError: string | null = null;

function load(): Loaded | null {
  if (state !== undefined) return state;
  state = null;
  const threads = requestedThreads();
  const files = wasmCandidates(threads > 1);
  const file = files.find((f) => existsSync(f));
  if (file === undefined) {
    loadError = `${files[0]} is missing; run \`npm run build:wasm${threads > 1 ? ' -- --threads' : ''}\` (needs clang, lld and wasi-libc)`;
    return null;
  }
  try {
    const threaded = threads > 1 ? instantiateThreadedSync(readFileSync(file), threads, spawnWorker) : null;
    const exports = threaded ?? instantiateKernelsSync(readFileSync(file));
    // FLEXTOK_ISA=scalar selects the generic back end, as on the native addon
    if (process.env.FLEXTOK_ISA === 'scalar') exports.ft_set_isa(1);
    state = { exports, threaded, kernels: createWasmKernels(exports), file };
  } catch (e) {
    loadError = `${file} does not load: ${(e as Error).message}`;
  }
  return state;
}

/** The wasm `Kernels`, or null (never throws) when the module is missing or does not load. */
export function loadWasmKernels(): WasmKernels | null {
  return load()?.kernels ?? null;
}

/** Why the wasm kernels are unavailable, or null when they load. */
export function wasmUnavailableReason(): string | null {
  return load() ? null : loadError;
}

export interface WasmInfo {
  /** 'wasm-simd128', or 'scalar' for the generic back end */
  isa: string;
  threads: number;
  file: string;
}

function isaName(code: number): string {
  return code === 4 ? 'wasm-simd128' : 'scalar';
}

/** ISA and thread count of the loaded module (null when it does not load). */
export function wasmInfo(): WasmInfo | null {
  const l = load();
  return l ? { isa: isaName(l.exports.ft_isa()), threads: l.exports.ft_threads(), file: l.file } : null;
}

/** Blocks until every helper thread of the threaded build serves jobs (they start asynchronously), at most
 * timeoutMs; returns the helpers running (0 for the single-threaded build). */
export function waitForWasmHelpers(timeoutMs = 10_000): number {
  const l = load();
  if (!l?.threaded) return 0;
  const want = requestedThreads() - 1, sleeper = new Int32Array(new SharedArrayBuffer(4));
  const t0 = Date.now();
  while (helpersRunning(l.threaded) < want && Date.now() - t0 < timeoutMs) Atomics.wait(sleeper, 0, 0, 5);
  return helpersRunning(l.threaded);
}

/** Tasks the helper threads have run so far (0 for the single-threaded build). */
export function wasmHelperTasks(): number {
  return load()?.threaded?.ft_helper_tasks() ?? 0;
}

/** Threads the wasm kernels may use (1 .. FLEXTOK_WASM_THREADS); returns the count now in effect. */
export function setWasmThreads(n: number): number {
  const l = load();
  if (!l) throw new Error(`wasm kernels unavailable: ${loadError}`);
  return l.exports.ft_set_threads(Math.max(1, Math.floor(n)));
}

/** Switches between the SIMD128 and the generic back end of the module (for tests); returns the active one. */
export function setWasmIsa(isa: 'wasm-simd128' | 'scalar'): string {
  const l = load();
  if (!l) throw new Error(`wasm kernels unavailable: ${loadError}`);
  return isaName(l.exports.ft_set_isa(isa === 'scalar' ? 1 : 0));
}
