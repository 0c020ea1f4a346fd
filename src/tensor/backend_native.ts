// TEMPORARY stub (lead): replaced by the native helper's real loader.
import type { Kernels } from './kernels.js';
export function loadNativeKernels(): Kernels | null {
  return null;
}
