// The web page's engine (bundled into web/engine.js, run as a dedicated Web Worker): it instantiates the wasm
// kernels — the threaded build on a shared memory with helper workers when the page is cross-origin isolated, else
// the single-threaded one; of each, the relaxed-SIMD build (fused multiply-add) where the browser runs it, else
// SIMD128 — loads models from their bytes, and answers the page's requests (protocol.ts) so that
// tokenizing, decoding and generating never block the page. The threaded kernels wait with Atomics.wait, which a
// worker may do and a page's main thread may not: another reason the engine lives here.
import { Generator } from '../ar/generator.js';
import { smallestKForPsnr } from '../eval/adaptive.js';
import { clampToDisplayRange, psnrPerImage } from '../eval/metrics.js';
import { FlexTok } from '../flextok/model.js';
import { setKernels } from '../tensor/backend_core.js';
import { createWasmKernels } from '../tensor/kernels_wasm/kernels.js';
import { instantiateKernels, kernelModuleFile, relaxedSimdSupported, type KernelExports } from '../tensor/kernels_wasm/module.js';
import { instantiateThreadedSync, type WorkerData } from '../tensor/kernels_wasm/threads.js';
import { slice } from '../tensor/ops.js';
import { noGrad, type Tensor } from '../tensor/tensor.js';
import { rgbaToTensor, tensorToRgba } from './image.js';
import { fetchModelBytes } from './model_cache.js';
import type { AutoKResult, DecodeResult, EngineMessage, EngineRequest, GenerateResult, GeneratorInfo, InitResult, Pixels, TokenizerInfo } from './protocol.js';

interface WorkerScope {
  postMessage(msg: EngineMessage): void;
  onmessage: ((e: MessageEvent<{ id: number; req: EngineRequest }>) => void) | null;
  location: { href: string };
}
const scope = globalThis as unknown as WorkerScope;

const tokenizers = new Map<string, { model: FlexTok; sha256: string | Uint8Array }>();
const generators = new Map<string, Generator>();
/** The image last tokenized ([1, C, H, W] in [-1, 1]): what decodes and auto k compare with. */
let current: Tensor | null = null;
let initialised: InitResult | null = null;

/** Starts a helper of the threaded kernels: a worker from a blob running the helper's source on its data. */
function spawnHelper(source: string, data: WorkerData): void {
  const code = `self.onmessage = (e) => { self.onmessage = null; (${source})(e.data); };`;
  const url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
  const w = new Worker(url);
  w.postMessage(data);
}

async function init(threads: number): Promise<InitResult> {
  if (initialised) return initialised;
  const base = new URL('./', scope.location.href);
  const fetchWasm = async (file: string): Promise<ArrayBuffer> => {
    const res = await fetch(new URL(file, base));
    if (!res.ok) throw new Error(`cannot load ${file}: HTTP ${res.status}`);
    return res.arrayBuffer();
  };
  let exports: KernelExports;
  let backend: InitResult['backend'] = 'wasm-single';
  let used = 1;
  const relaxed = relaxedSimdSupported();
  if (threads > 1 && typeof SharedArrayBuffer !== 'undefined') {
    exports = instantiateThreadedSync(await fetchWasm(kernelModuleFile({ threaded: true, relaxed })), threads, spawnHelper);
    backend = 'wasm-threads';
    used = threads;
  } else {
    exports = await instantiateKernels(await fetchWasm(kernelModuleFile({ threaded: false, relaxed })));
  }
  setKernels(createWasmKernels(exports));
  initialised = { backend, threads: used, simd: exports.ft_relaxed_simd() ? 'relaxed' : 'simd128' };
  return initialised;
}

function tokenizer(name: string): FlexTok {
  const t = tokenizers.get(name);
  if (!t) throw new Error(`the tokenizer ${name} is not loaded yet`);
  return t.model;
}

function pixelsOf(image: Tensor): Pixels {
  return tensorToRgba(clampToDisplayRange(image));
}

async function handle(id: number, req: EngineRequest): Promise<unknown> {
  switch (req.type) {
    case 'init':
      return init(req.threads);
    case 'loadTokenizer': {
      const bytes = await fetchModelBytes(req.url, req.bytes, (p) => scope.postMessage({ type: 'progress', id, name: req.name, ...p }));
      const model = FlexTok.fromBytes(bytes, { label: req.name });
      tokenizers.set(req.name, { model, sha256: bytes });
      return { numTokens: model.numTokens, imageSize: model.imageSize, channels: model.imageChannels } satisfies TokenizerInfo;
    }
    case 'tokenize': {
      const model = tokenizer(req.tokenizer);
      const image = rgbaToTensor(req.image, { channels: model.imageChannels === 1 ? 1 : 3 });
      const tokens = noGrad(() => model.tokenize(image))[0]!;
      current = image;
      return tokens;
    }
    case 'decode': {
      const model = tokenizer(req.tokenizer);
      const recon = noGrad(() => model.detokenize([req.tokens.slice(0, req.k)], req.settings));
      const psnr = req.compare && current ? psnrPerImage(clampToDisplayRange(recon), current)[0]! : null;
      return { image: pixelsOf(recon), psnr } satisfies DecodeResult;
    }
    case 'autoK': {
      if (!current) throw new Error('tokenize an image first');
      const model = tokenizer(req.tokenizer);
      const image = current;
      const a = noGrad(() => smallestKForPsnr(model, image, req.tokens, req.target, req.settings));
      const recon = noGrad(() => model.detokenize([req.tokens.slice(0, a.k)], req.settings));
      return { ...a, image: pixelsOf(recon) } satisfies AutoKResult;
    }
    case 'loadGenerator': {
      const bytes = await fetchModelBytes(req.url, req.bytes, (p) => scope.postMessage({ type: 'progress', id, name: req.name, ...p }));
      const tok = tokenizers.get(req.tokenizer);
      if (!tok) throw new Error(`load the tokenizer ${req.tokenizer} before the generator ${req.name}`);
      const gen = await Generator.fromBytes(bytes, tok.model, tok.sha256, req.name);
      generators.set(req.name, gen);
      return { numTokens: gen.model.config.num_tokens, classNames: gen.classNames, text: gen.isText, cfg: gen.defaults.cfg_scale } satisfies GeneratorInfo;
    }
    case 'generate': {
      const gen = generators.get(req.generator);
      if (!gen) throw new Error(`the generator ${req.generator} is not loaded yet`);
      const s = gen.settings({ num_tokens: req.tokens, cfg_scale: req.cfg, seed: req.seed });
      const cond = gen.isText ? (req.prompts ?? []) : (req.classes ?? []);
      const n = cond.length;
      const { tokens, images } = noGrad(() => gen.generateImages(cond, s, (p) => {
        if (p.k === s.num_tokens) return; // the last preview is the final result, answered below
        scope.postMessage({ type: 'preview', id, k: p.k, images: Array.from({ length: n }, (_, i) => pixelsOf(slice(p.images, 0, i, i + 1))) });
      }));
      return { tokens: tokens.map((t) => Array.from(t)), images: Array.from({ length: n }, (_, i) => pixelsOf(slice(images, 0, i, i + 1))) } satisfies GenerateResult;
    }
  }
}

scope.onmessage = (e) => {
  const { id, req } = e.data;
  handle(id, req).then(
    (result) => scope.postMessage({ type: 'ok', id, result }),
    (err: unknown) => scope.postMessage({ type: 'error', id, message: err instanceof Error ? err.message : String(err) }),
  );
};
