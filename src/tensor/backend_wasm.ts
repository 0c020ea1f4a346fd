// Loads the WebAssembly build of the C++ kernels (native/wasm/flextok_kernels.wasm, `npm run build:wasm`) in Node:
// reads the file and hands its bytes to kernels_wasm/ (which has no Node dependencies and also serves browsers).
// FLEXTOK_WASM_THREADS=n (n > 1) loads the multi-threaded build (flextok_kernels_mt.wasm, `npm run build:wasm --
// --threads`) instead, with n - 1 helper threads (worker_threads) on a shared memory. Of each, the relaxed-SIMD
// build (*_relaxed.wasm: fused multiply-add) loads where V8 runs relaxed SIMD — Node 22 and later, and Node 20
// once this module turns on its V8 flag — else the SIMD128 one; FLEXTOK_WASM_SIMD=simd128 | relaxed chooses.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { Worker } from 'node:worker_threads';

import { createWasmKernels, type WasmKernels } from './kernels_wasm/kernels.js';
import { instantiateKernelsSync, kernelModuleFile, relaxedSimdSupported, type KernelExports } from './kernels_wasm/module.js';
import { helpersRunning, instantiateThreadedSync, type ThreadExports, type WorkerData } from './kernels_wasm/threads.js';

/** Threads asked for with FLEXTOK_WASM_THREADS (1 = the single-threaded build). */
function requestedThreads(): number {
  const n = Number(process.env.FLEXTOK_WASM_THREADS ?? 1);
  return Number.isInteger(n) && n > 1 ? Math.min(n, 64) : 1;
}

/** Whether V8 runs relaxed SIMD, turning on Node 20's flag for it first when it does not yet (the flag must be
 * set before the module compiles; it is process-wide, so the helper threads see it too). */
function enableRelaxedSimd(): boolean {
  if (relaxedSimdSupported()) return true;
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  return relaxedSimdSupported();
}

/** Which SIMD build FLEXTOK_WASM_SIMD asks for: 'auto' (relaxed where it runs), 'relaxed' or 'simd128'. */
function requestedSimd(): 'auto' | 'relaxed' | 'simd128' {
  const v = process.env.FLEXTOK_WASM_SIMD ?? '';
  if (v === '' || v === 'auto') return 'auto';
  if (v === 'relaxed' || v === 'simd128') return v;
  throw new Error(`FLEXTOK_WASM_SIMD=${v} is not a choice: use relaxed (fused multiply-add), simd128 or auto (the default)`);
}

/** Where the module should be: <repo>/native/wasm/... seen from src/tensor/ (tsx) or dist/src/tensor/ (compiled),
 * the relaxed-SIMD build first when it may load; FLEXTOK_WASM_MODULE names another file. */
function wasmCandidates(threaded: boolean): string[] {
  if (process.env.FLEXTOK_WASM_MODULE) {
    if (requestedSimd() !== 'simd128') enableRelaxedSimd(); // the named file may be a relaxed build
    return [path.resolve(process.env.FLEXTOK_WASM_MODULE)];
  }
  const simd = requestedSimd();
  const relaxedRuns = simd !== 'simd128' && enableRelaxedSimd();
  if (simd === 'relaxed' && !relaxedRuns) throw new Error(`FLEXTOK_WASM_SIMD=relaxed: this Node (${process.version}) does not run WebAssembly relaxed SIMD`);
  const builds = simd === 'relaxed' ? [true] : relaxedRuns ? [true, false] : [false];
  const here = path.dirname(fileURLToPath(import.meta.url));
  return builds.flatMap((relaxed) => {
    const rel = path.join('native', 'wasm', kernelModuleFile({ threaded, relaxed }));
    return [path.resolve(here, '..', '..', rel), path.resolve(here, '..', '..', '..', rel)];
  });
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
  let files: string[];
  try {
    files = wasmCandidates(threads > 1);
  } catch (e) {
    loadError = (e as Error).message;
    return null;
  }
  const file = files.find((f) => existsSync(f));
  if (file === undefined) {
    // name the last candidate (the SIMD128 build unless relaxed was asked for), which every engine runs
    const last = files[Math.max(0, files.length - 2)]!;
    const flags = [threads > 1 ? '--threads' : '', last.endsWith('_relaxed.wasm') ? '--relaxed' : ''].filter(Boolean).join(' ');
    loadError = `${last} is missing; run \`npm run build:wasm${flags ? ` -- ${flags}` : ''}\` (needs clang-16, lld-16 and wasi-libc)`;
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
  /** 'wasm-relaxed-simd' or 'wasm-simd128' (the module's SIMD back end), or 'scalar' for the generic one */
  isa: string;
  /** the module's SIMD back end, whichever is active: 'wasm-relaxed-simd' or 'wasm-simd128' */
  simd: string;
  threads: number;
  file: string;
}

function isaName(ex: KernelExports, code: number): string {
  return code !== 4 ? 'scalar' : ex.ft_relaxed_simd() ? 'wasm-relaxed-simd' : 'wasm-simd128';
}

/** ISA and thread count of the loaded module (null when it does not load). */
export function wasmInfo(): WasmInfo | null {
  const l = load();
  if (!l) return null;
  return { isa: isaName(l.exports, l.exports.ft_isa()), simd: isaName(l.exports, 4), threads: l.exports.ft_threads(), file: l.file };
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

/** Switches between the SIMD back end of the module ('simd': relaxed SIMD or SIMD128, whichever build loaded) and
 * the generic one (for tests); returns the active one's name (as WasmInfo.isa). */
export function setWasmIsa(isa: 'simd' | 'scalar'): string {
  const l = load();
  if (!l) throw new Error(`wasm kernels unavailable: ${loadError}`);
  return isaName(l.exports, l.exports.ft_set_isa(isa === 'scalar' ? 1 : 0));
}
