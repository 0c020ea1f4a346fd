// The browser build's entry (bundled by scripts/build-web.mjs into web/flextok.js): the tokenizer, the generator,
// adaptive k, metrics and tensors, models loaded from bytes (fetch them), and the wasm kernels from their bytes.
// Nothing reachable from here may import a Node built-in (the build fails if it does).
import { setKernels } from '../tensor/backend_core.js';
import { createWasmKernels } from '../tensor/kernels_wasm/kernels.js';
import { instantiateKernels } from '../tensor/kernels_wasm/module.js';

export { kernelModuleFile, relaxedSimdSupported } from '../tensor/kernels_wasm/module.js';

export { FlexTok, FlexTokInputError, powerOfTwoKs, type DetokenizeOptions, type FlexTokBytesOptions, type TokenizeOptions } from '../flextok/model.js';
export { FlexAR } from '../ar/model.js';
export { Generator, previewLengths, sha256Hex, type GenerationSettings, type Preview } from '../ar/generator.js';
export { smallestKForPsnr, type AdaptiveK, type AdaptiveKOptions } from '../eval/adaptive.js';
export { psnrPerImage } from '../eval/metrics.js';
export { Tensor } from '../tensor/tensor.js';
export { kernels, setKernels } from '../tensor/backend_core.js';
export { rgbaToTensor, tensorToRgba, type RgbaImage, type RgbaToTensorOptions } from './image.js';

/** Instantiates the single-threaded wasm kernels from their bytes and makes them the kernels every op runs on
 * (otherwise the pure TypeScript kernels run, several times slower). Fetch
 * `kernelModuleFile({ threaded: false, relaxed: relaxedSimdSupported() })`: web/flextok_kernels_relaxed.wasm
 * (fused multiply-add) where the browser runs relaxed SIMD, else web/flextok_kernels.wasm. */
export async function useWasmKernels(wasmBytes: ArrayBuffer | Uint8Array): Promise<void> {
  const bytes = wasmBytes instanceof Uint8Array ? new Uint8Array(wasmBytes) : wasmBytes; // an ArrayBuffer-backed copy
  setKernels(createWasmKernels(await instantiateKernels(bytes)));
}
