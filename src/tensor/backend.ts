// The backend choice: which `Kernels` implementation the tensor ops run on (the only global state).
// FLEXTOK_BACKEND=js forces the pure TypeScript kernels, =native requires the C++ addon, =wasm requires the
// WebAssembly build of the same C++ kernels (native/wasm/flextok_kernels.wasm, committed); unset picks native when
// the addon loads, else the wasm kernels, else JS, saying so once on stderr (`npm test` allows no such fallback:
// scripts/run-tests.mjs runs its native pass with FLEXTOK_BACKEND=native).

// The state itself (the kernels in use) lives in backend_core.ts, which has no Node dependencies; this module
// adds the Node-only choice (env variables, the native addon, the wasm file) and is swapped for backend_core.ts
// in the browser bundle (scripts/build-web.mjs).

import type { Kernels } from './kernels.js';
import { jsKernels } from './kernels_js/index.js';
import { kernels as currentKernels, setDefaultKernels, setKernels, type BackendName } from './backend_core.js';
import { loadNativeKernels, nativeAddon, nativeLoadError } from './backend_native.js';
import { loadWasmKernels, wasmInfo, wasmUnavailableReason } from './backend_wasm.js';

export { setKernels, type BackendName };

/** Said once, on stderr, when the automatic choice falls back from the native kernels: to which, why, and the fix. */
function warnFallback(to: 'wasm' | 'js'): void {
  if (process.env.FLEXTOK_QUIET_BACKEND === '1') return;
  const what = to === 'wasm'
    ? 'the WebAssembly kernels, several times slower than the native ones'
    : `the pure TypeScript kernels, 10–20× slower than the native ones (and the WebAssembly kernels do not load either: ${wasmUnavailableReason()})`;
  process.stderr.write(
    `flextok: running on ${what}: ${nativeUnavailableReason()}.\n` +
      '  Fix: install g++, make and the Node headers, then `npm rebuild flextok` (in this repository: `npm run build:native`).\n' +
      `  Set FLEXTOK_BACKEND=${to} to choose these kernels on purpose (and silence this).\n`,
  );
}

/** Whether the kernels in use were the automatic choice's fallback (for describeBackend). */
let fellBack = false;

function choose(name: string | undefined): Kernels {
  if (name === undefined || name === '' || name === 'auto') {
    const native = loadNativeKernels();
    if (native) return native;
    fellBack = true;
    const wasm = loadWasmKernels();
    warnFallback(wasm ? 'wasm' : 'js');
    return wasm ?? jsKernels;
  }
  if (name === 'js') return jsKernels;
  if (name === 'native') {
    const k = loadNativeKernels();
    if (!k) {
      throw new Error(
        'FLEXTOK_BACKEND=native but the native addon is not built (native/build/Release/flextok_native.node). ' +
          'Run `npm run build:native` (needs g++ and Node headers), or use FLEXTOK_BACKEND=js.',
      );
    }
    return k;
  }
  if (name === 'wasm') {
    const k = loadWasmKernels();
    if (!k) throw new Error(`FLEXTOK_BACKEND=wasm but the wasm kernels are unavailable: ${wasmUnavailableReason()}`);
    return k;
  }
  throw new Error(`unknown backend "${name}": use FLEXTOK_BACKEND=js, native or wasm`);
}

setDefaultKernels(() => choose(process.env.FLEXTOK_BACKEND));

/** The kernels the ops run on (selected on first use from FLEXTOK_BACKEND). */
export function kernels(): Kernels {
  return currentKernels();
}

export function setBackend(name: BackendName): void {
  setKernels(choose(name));
}

export function backendName(): BackendName {
  return kernels().name;
}

/** Why the native addon cannot be used (not built, or built but failing to load), or null when it loads. */
export function nativeUnavailableReason(): string | null {
  if (loadNativeKernels() !== null) return null;
  const err = nativeLoadError();
  return err !== null
    ? `the native addon is built but does not load (${err}); rebuild it with \`npm run build:native\``
    : `the native addon is not built (${process.env.FLEXTOK_NATIVE_ADDON ?? 'native/build/Release/flextok_native.node'} is missing); ` +
        'run `npm run build:native` (needs g++, make and Node headers)';
}

/** True when the environment explicitly asks for the pure TypeScript kernels only (FLEXTOK_BACKEND=js):
 * the one case where tests of the native addon may skip instead of failing when it is missing. */
export function jsOnlyRequested(): boolean {
  return process.env.FLEXTOK_BACKEND === 'js';
}

export interface BackendInfo {
  name: BackendName;
  /** instruction set the native or wasm kernels run with (FLEXTOK_ISA caps it); null on the JS backend */
  isa: string | null;
  /** best instruction set of this CPU (wasm: the module's, 'wasm-relaxed-simd' or 'wasm-simd128'); null on the JS backend */
  cpuIsa: string | null;
  /** native thread-pool size (FLEXTOK_THREADS sets it); the JS kernels run on 1 thread, the wasm ones on 1 unless
   * FLEXTOK_WASM_THREADS loads their threaded build */
  threads: number;
}

/** One line for `flextok --version` and logs: "native (ISA avx2, CPU avx2, 2 threads)" or "js (…why)". */
export function describeBackend(): string {
  const info = backendInfo();
  if (info.name === 'native') return `native C++ kernels (ISA ${info.isa}, CPU ${info.cpuIsa}, ${info.threads} threads)`;
  if (info.name === 'wasm') {
    const how = fellBack ? nativeUnavailableReason() : 'FLEXTOK_BACKEND=wasm';
    return `WebAssembly C++ kernels (ISA ${info.isa}, ${info.threads} thread${info.threads === 1 ? '' : 's'}; ${how})`;
  }
  const why = nativeUnavailableReason();
  return `pure TypeScript kernels (1 thread)${why ? `: ${why}` : ' (FLEXTOK_BACKEND=js)'}`;
}

/** The backend in use, with the native ISA and thread count (for test headers and logs). */
export function backendInfo(): BackendInfo {
  const name = backendName();
  if (name === 'wasm') {
    const w = wasmInfo();
    return { name, isa: w?.isa ?? null, cpuIsa: w?.simd ?? null, threads: w?.threads ?? 1 };
  }
  const addon = name === 'native' ? nativeAddon() : null;
  const isa = addon?.isa() ?? null;
  return { name, isa: isa?.active ?? null, cpuIsa: isa?.cpu ?? null, threads: addon ? addon.getThreads() : 1 };
}
