// The kernels the tensor ops run on (the only global state), without any Node dependency: the browser bundle
// uses this module in place of backend.ts, which adds the Node-only choice of native / wasm / JS kernels.
import type { Kernels } from './kernels.js';
import { jsKernels } from './kernels_js/index.js';

export type BackendName = Kernels['name'];

let current: Kernels | null = null;
/** Picks the kernels on first use: the pure TypeScript ones unless backend.ts (Node) installs its chooser. */
let chooseDefault: () => Kernels = () => jsKernels;

/** The kernels the ops run on (chosen on first use when none was set). */
export function kernels(): Kernels {
  if (current === null) current = chooseDefault();
  return current;
}

/** Makes `k` the kernels every following op runs on (e.g. the wasm kernels instantiated from their bytes). */
export function setKernels(k: Kernels): void {
  current = k;
}

/** Installs how the kernels are chosen on first use (backend.ts: from FLEXTOK_BACKEND); keeps a choice already made. */
export function setDefaultKernels(choose: () => Kernels): void {
  chooseDefault = choose;
}
