// The messages between the web page (src/browser/page.ts, the main thread) and its engine worker
// (src/browser/engine_worker.ts), which loads the models and runs every computation off the main thread.
// Each request carries an id; the worker answers it once (ok or error) and may send events for it before.

/** Decoder settings of the tokenizer (the CLI's defaults: 20 Euler steps, guidance 7.5 with APG, seed 0). */
export interface DecoderSettings {
  steps: number;
  guidance: number;
  apg: boolean;
  seed: number;
}

/** RGBA pixels of one image (an ImageData's fields), row-major. */
export interface Pixels {
  data: Uint8ClampedArray;
  width: number;
  height: number;
}

export type EngineRequest =
  /** Instantiate the wasm kernels: the threaded build when `threads` > 1 (cross-origin isolated pages only). */
  | { type: 'init'; threads: number }
  /** Load a tokenizer from its weights URL (fetched once, then from the Cache API). */
  | { type: 'loadTokenizer'; name: string; url: string; bytes: number }
  /** Tokenize one image (the model's size, RGBA); it becomes the image later decodes are compared with. */
  | { type: 'tokenize'; tokenizer: string; image: Pixels }
  /** Decode the first k tokens; PSNR against the last tokenized image when `compare`. */
  | { type: 'decode'; tokenizer: string; tokens: number[]; k: number; settings: DecoderSettings; compare: boolean }
  /** The smallest k whose reconstruction of the last tokenized image reaches `target` dB (eval/adaptive.ts's rule). */
  | { type: 'autoK'; tokenizer: string; tokens: number[]; target: number; settings: DecoderSettings }
  /** Load a generator and the tokenizer it was trained on (already loaded under `tokenizer`). */
  | { type: 'loadGenerator'; name: string; url: string; bytes: number; tokenizer: string; tokenizerUrl: string; tokenizerBytes: number }
  /** Generate one image per class (or prompt), with previews of the first 1, 2, 4, … tokens as they stream. */
  | { type: 'generate'; generator: string; classes?: number[]; prompts?: string[]; tokens: number; cfg: number; seed: number };

export interface TokenizerInfo {
  numTokens: number;
  imageSize: [number, number];
  channels: number;
}

export interface GeneratorInfo {
  numTokens: number;
  classNames: string[];
  text: boolean;
  cfg: number;
}

export interface DecodeResult {
  image: Pixels;
  psnr: number | null;
}

export interface AutoKResult {
  k: number;
  psnr: number;
  reached: boolean;
  candidates: { k: number; psnr: number }[];
  image: Pixels;
}

export interface GenerateResult {
  tokens: number[][];
  /** one image per sample */
  images: Pixels[];
}

/** What the worker posts. */
export type EngineMessage =
  | { type: 'ok'; id: number; result: unknown }
  | { type: 'error'; id: number; message: string }
  /** download progress of a model file (loaded of total bytes; fromCache when no download was needed) */
  | { type: 'progress'; id: number; name: string; loaded: number; total: number; fromCache: boolean }
  /** a generation preview: the first k tokens of every sample, decoded */
  | { type: 'preview'; id: number; k: number; images: Pixels[] };

/** What `init` answers: which kernels run, and on how many threads. */
export interface InitResult {
  backend: 'wasm-threads' | 'wasm-single';
  threads: number;
  /** the kernels' SIMD: relaxed SIMD (fused multiply-add) where the browser runs it, else SIMD128 */
  simd: 'relaxed' | 'simd128';
}
