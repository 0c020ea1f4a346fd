// The backend choice: which `Kernels` implementation the tensor ops run on (the only global state).
// FLEXTOK_BACKEND=js forces the pure TypeScript kernels, =native requires the C++ addon,
// unset picks native when the addon is built and falls back to JS otherwise.

import type { Kernels } from './kernels.js';
import { jsKernels } from './kernels_js/index.js';
import { loadNativeKernels } from './backend_native.js';

export type BackendName = 'js' | 'native';

let current: Kernels | null = null;

function choose(name: string | undefined): Kernels {
  if (name === undefined || name === '' || name === 'auto') return loadNativeKernels() ?? jsKernels;
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
  throw new Error(`unknown backend "${name}": use FLEXTOK_BACKEND=js or FLEXTOK_BACKEND=native`);
}

/** The kernels the ops run on (selected on first use from FLEXTOK_BACKEND). */
export function kernels(): Kernels {
  if (current === null) current = choose(process.env.FLEXTOK_BACKEND);
  return current;
}

export function setBackend(name: BackendName): void {
  current = choose(name);
}

export function backendName(): BackendName {
  return kernels().name;
}
