// The web page of `flextok serve` (bundled into web/app.js; markup in web/index.html): pick or upload an image, see
// its tokens, drag k = 1..R and watch the reconstruction sharpen (with PSNR), let "auto k" find the fewest tokens
// for a PSNR target, and generate images with a live coarse-to-fine preview. The computations run in the browser
// (the engine worker, wasm kernels with threads when the page is cross-origin isolated) or, when that is
// impossible or the URL says ?backend=server, on the server through its API.
import { psnrPerImage } from '../eval/metrics.js';
import { decoderDefaults } from '../flextok/decoder_defaults.js';
import type { ExampleImage } from '../server/examples.js';
import type { ModelInfo } from '../server/models.js';
import { rgbaToTensor } from './image.js';
import type {
  AutoKResult, DecodeResult, DecoderSettings, EngineMessage, EngineRequest, GenerateResult, GeneratorInfo, InitResult, Pixels, TokenizerInfo,
} from './protocol.js';

// ------------------------------------------------------------------------------------------------
// what the server says about its models and examples (GET /api/models, GET /api/examples)

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status} ${await errorText(res)}`);
  return (await res.json()) as T;
}

async function errorText(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { error?: string };
    return body.error ?? '';
  } catch {
    return '';
  }
}

function weightsUrl(m: ModelInfo): string {
  return `/models/${encodeURIComponent(m.name)}/${m.weights.split('/').map(encodeURIComponent).join('/')}`;
}

// ------------------------------------------------------------------------------------------------
// engines: the same operations in the browser (worker) or on the server (API)

interface GenerateRequest {
  classes?: number[];
  prompts?: string[];
  tokens: number;
  cfg: number;
  seed: number;
}

interface Engine {
  /** what the page shows as its back end */
  readonly label: string;
  readonly kind: 'wasm-threads' | 'wasm-single' | 'server';
  loadTokenizer(m: ModelInfo, onProgress: (loaded: number, total: number, fromCache: boolean) => void): Promise<TokenizerInfo>;
  tokenize(tokenizer: string, image: Pixels): Promise<number[]>;
  decode(tokenizer: string, tokens: number[], k: number, settings: DecoderSettings, compare: boolean): Promise<DecodeResult>;
  autoK(tokenizer: string, tokens: number[], target: number, settings: DecoderSettings): Promise<AutoKResult>;
  loadGenerator(m: ModelInfo, tokenizer: ModelInfo, onProgress: (loaded: number, total: number, fromCache: boolean) => void): Promise<GeneratorInfo>;
  generate(generator: string, req: GenerateRequest, onPreview: (k: number, images: Pixels[]) => void): Promise<GenerateResult>;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  onProgress?: (loaded: number, total: number, fromCache: boolean) => void;
  onPreview?: (k: number, images: Pixels[]) => void;
}

/** The engine worker (web/engine.js): the wasm kernels in this browser. */
class WorkerEngine implements Engine {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  label = '';
  kind: Engine['kind'] = 'wasm-single';

  private constructor(private readonly worker: Worker) {
    worker.onmessage = (e: MessageEvent<EngineMessage>) => this.receive(e.data);
    worker.onerror = (e) => {
      const err = new Error(`the engine worker failed: ${e.message || 'it could not start'}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }

  static async start(threads: number): Promise<WorkerEngine> {
    const engine = new WorkerEngine(new Worker('engine.js'));
    const info = (await engine.call({ type: 'init', threads })) as InitResult;
    engine.kind = info.backend;
    const simd = info.simd === 'relaxed' ? 'relaxed SIMD' : 'SIMD128';
    engine.label = info.backend === 'wasm-threads' ? `WASM threads (${info.threads}, ${simd})` : `WASM single thread (${simd})`;
    return engine;
  }

  private receive(msg: EngineMessage): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'ok') {
      this.pending.delete(msg.id);
      p.resolve(msg.result);
    } else if (msg.type === 'error') {
      this.pending.delete(msg.id);
      p.reject(new Error(msg.message));
    } else if (msg.type === 'progress') {
      p.onProgress?.(msg.loaded, msg.total, msg.fromCache);
    } else if (msg.type === 'preview') {
      p.onPreview?.(msg.k, msg.images);
    }
  }

  private call(req: EngineRequest, extra: Omit<Pending, 'resolve' | 'reject'> = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...extra });
      this.worker.postMessage({ id, req });
    });
  }

  async loadTokenizer(m: ModelInfo, onProgress: Pending['onProgress']): Promise<TokenizerInfo> {
    return (await this.call({ type: 'loadTokenizer', name: m.name, url: weightsUrl(m), bytes: m.bytes }, { onProgress })) as TokenizerInfo;
  }

  async tokenize(tokenizer: string, image: Pixels): Promise<number[]> {
    return (await this.call({ type: 'tokenize', tokenizer, image })) as number[];
  }

  async decode(tokenizer: string, tokens: number[], k: number, settings: DecoderSettings, compare: boolean): Promise<DecodeResult> {
    return (await this.call({ type: 'decode', tokenizer, tokens, k, settings, compare })) as DecodeResult;
  }

  async autoK(tokenizer: string, tokens: number[], target: number, settings: DecoderSettings): Promise<AutoKResult> {
    return (await this.call({ type: 'autoK', tokenizer, tokens, target, settings })) as AutoKResult;
  }

  async loadGenerator(m: ModelInfo, tok: ModelInfo, onProgress: Pending['onProgress']): Promise<GeneratorInfo> {
    return (await this.call({
      type: 'loadGenerator', name: m.name, url: weightsUrl(m), bytes: m.bytes, tokenizer: tok.name, tokenizerUrl: weightsUrl(tok), tokenizerBytes: tok.bytes,
    }, { onProgress })) as GeneratorInfo;
  }

  async generate(generator: string, req: GenerateRequest, onPreview: (k: number, images: Pixels[]) => void): Promise<GenerateResult> {
    return (await this.call({ type: 'generate', generator, ...req }, { onPreview })) as GenerateResult;
  }
}

/** The server's API: for browsers without WebAssembly or workers, and for ?backend=server. No streaming previews. */
class ServerEngine implements Engine {
  readonly label = 'server';
  readonly kind = 'server' as const;
  private current: Pixels | null = null;
  private channels = new Map<string, number>();

  async loadTokenizer(m: ModelInfo): Promise<TokenizerInfo> {
    const channels = m.channels ?? 3;
    this.channels.set(m.name, channels);
    return { numTokens: m.num_tokens ?? 1, imageSize: m.image_size ?? [256, 256], channels };
  }

  async tokenize(tokenizer: string, image: Pixels): Promise<number[]> {
    this.current = image;
    const res = await fetch(`/api/tokenize?model=${encodeURIComponent(tokenizer)}`, { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: await pngOf(image) });
    if (!res.ok) throw new Error(`the server refused to tokenize: ${await errorText(res)}`);
    return ((await res.json()) as { tokens: number[] }).tokens;
  }

  private async detokenize(tokenizer: string, tokens: number[], k: number, s: DecoderSettings): Promise<Pixels> {
    const res = await fetch('/api/detokenize', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: tokenizer, tokens, k, steps: s.steps, guidance: s.guidance, apg: s.apg, seed: s.seed }),
    });
    if (!res.ok) throw new Error(`the server refused to decode: ${await errorText(res)}`);
    return pixelsOfBlob(await res.blob());
  }

  async decode(tokenizer: string, tokens: number[], k: number, settings: DecoderSettings, compare: boolean): Promise<DecodeResult> {
    const image = await this.detokenize(tokenizer, tokens, k, settings);
    return { image, psnr: compare && this.current ? psnrOfPixels(image, this.current, this.channels.get(tokenizer) ?? 3) : null };
  }

  async autoK(tokenizer: string, tokens: number[], target: number, s: DecoderSettings): Promise<AutoKResult> {
    if (!this.current) throw new Error('tokenize an image first');
    const q = new URLSearchParams({ model: tokenizer, target_psnr: String(target), steps: String(s.steps), guidance: String(s.guidance), apg: s.apg ? '1' : '0', seed: String(s.seed) });
    const res = await fetch(`/api/tokenize?${q}`, { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: await pngOf(this.current) });
    if (!res.ok) throw new Error(`the server refused auto k: ${await errorText(res)}`);
    const a = (await res.json()) as Omit<AutoKResult, 'image'>;
    return { ...a, image: await this.detokenize(tokenizer, tokens, a.k, s) };
  }

  async loadGenerator(m: ModelInfo): Promise<GeneratorInfo> {
    return { numTokens: m.num_tokens ?? 1, classNames: m.classes ?? [], text: m.conditioning === 'text', cfg: NaN };
  }

  async generate(generator: string, req: GenerateRequest): Promise<GenerateResult> {
    const n = req.prompts?.length ?? req.classes?.length ?? 1;
    const body: Record<string, unknown> = { model: generator, n, tokens: req.tokens, seed: req.seed };
    if (Number.isFinite(req.cfg)) body.cfg = req.cfg;
    if (req.prompts) body.prompt = req.prompts[0];
    else body.class = req.classes![0];
    const res = await fetch('/api/generate', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`the server refused to generate: ${await errorText(res)}`);
    const out = (await res.json()) as { tokens: number[][]; images: string[] };
    const images = await Promise.all(out.images.map(async (b64) => pixelsOfBlob(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/png' }))));
    return { tokens: out.tokens, images };
  }
}

// ------------------------------------------------------------------------------------------------
// pixels, canvases and PSNR

function canvasOf(p: Pixels): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = p.width;
  c.height = p.height;
  c.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(p.data), p.width, p.height), 0, 0);
  return c;
}

function pngOf(p: Pixels): Promise<Blob> {
  return new Promise((resolve, reject) => canvasOf(p).toBlob((b) => (b ? resolve(b) : reject(new Error('cannot encode the image as PNG'))), 'image/png'));
}

async function pixelsOfBlob(blob: Blob): Promise<Pixels> {
  const bitmap = await createImageBitmap(blob);
  const c = document.createElement('canvas');
  c.width = bitmap.width;
  c.height = bitmap.height;
  const ctx = c.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(bitmap, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height);
  return { data: d.data, width: d.width, height: d.height };
}

/** PSNR (dB, data range 2 on [-1, 1]) of two RGBA images as the model sees them (grey by luma for 1 channel). */
function psnrOfPixels(a: Pixels, b: Pixels, channels: number): number {
  const opts = { channels: channels === 1 ? 1 : 3 } as const;
  return psnrPerImage(rgbaToTensor(a, opts), rgbaToTensor(b, opts))[0]!;
}

function show(canvas: HTMLCanvasElement, p: Pixels): void {
  canvas.width = p.width;
  canvas.height = p.height;
  canvas.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(p.data), p.width, p.height), 0, 0);
}

/**
 * An image on the model's canvas [h, w], black background: one that fits is centred unscaled (as `flextok tokenize
 * --pad`, the Fashion-MNIST 28×28 images on 32×32); a larger one is shrunk, keeping its aspect, to 7/8 of the canvas
 * (the share of the canvas Fashion-MNIST's items had in training) and centred.
 */
function placeOnCanvas(source: CanvasImageSource & { width: number; height: number }, size: [number, number]): Pixels {
  const [h, w] = size;
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  const ctx = c.getContext('2d', { willReadFrequently: true })!;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, w, h);
  let dw = source.width, dh = source.height;
  if (dw > w || dh > h) {
    const s = Math.min((w * 7) / 8 / dw, (h * 7) / 8 / dh);
    dw = Math.max(1, Math.round(dw * s));
    dh = Math.max(1, Math.round(dh * s));
    ctx.imageSmoothingQuality = 'high';
  }
  ctx.drawImage(source, Math.floor((w - dw) / 2), Math.floor((h - dh) / 2), dw, dh);
  const d = ctx.getImageData(0, 0, w, h);
  return { data: d.data, width: w, height: h };
}

// ------------------------------------------------------------------------------------------------
// the page

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page lacks #${id}`);
  return el as T;
};

function setStatus(text: string, kind: 'info' | 'error' = 'info'): void {
  const el = $('status');
  el.textContent = text;
  el.dataset.kind = kind;
}

function progressReporter(name: string): (loaded: number, total: number, fromCache: boolean) => void {
  const bar = $<HTMLProgressElement>('progress');
  const label = $('progress-label');
  return (loaded, total, fromCache) => {
    bar.max = total;
    bar.value = loaded;
    const mb = (b: number): string => (b / 1e6).toFixed(1);
    label.textContent = fromCache ? `${name}: ${mb(total)} MB from the browser cache`
      : loaded < total ? `${name}: downloading ${mb(loaded)} / ${mb(total)} MB` : `${name}: ${mb(total)} MB downloaded and cached for next time`;
  };
}

/** One decode at a time; while it runs, only the latest requested k waits (dragging the slider skips the rest). */
class LatestOnly<T> {
  private running = false;
  private next: (() => Promise<T>) | null = null;

  constructor(private readonly onDone: (v: T) => void, private readonly onError: (e: Error) => void) {}

  request(job: () => Promise<T>): void {
    this.next = job;
    if (!this.running) void this.pump();
  }

  private async pump(): Promise<void> {
    this.running = true;
    while (this.next) {
      const job = this.next;
      this.next = null;
      try {
        const v = await job();
        if (!this.next) this.onDone(v);
      } catch (e) {
        this.onError(e instanceof Error ? e : new Error(String(e)));
      }
    }
    this.running = false;
  }
}

interface PageState {
  engine: Engine;
  tokenizer: ModelInfo;
  tokInfo: TokenizerInfo;
  tokens: number[] | null;
  image: Pixels | null;
  settings: DecoderSettings;
  generator: { info: ModelInfo; gen: GeneratorInfo } | null;
}

async function chooseEngine(): Promise<{ engine: Engine; note: string }> {
  const wanted = new URLSearchParams(location.search).get('backend');
  if (wanted === 'server') return { engine: new ServerEngine(), note: 'the server computes (?backend=server)' };
  if (typeof WebAssembly === 'undefined' || typeof Worker === 'undefined') {
    return { engine: new ServerEngine(), note: 'this browser has no WebAssembly or Web Workers: the server computes' };
  }
  const isolated = globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer !== 'undefined';
  const threads = isolated && wanted !== 'single' ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
  try {
    const engine = await WorkerEngine.start(threads);
    const note = threads > 1 ? 'cross-origin isolated: the wasm kernels share one memory between threads'
      : isolated ? 'one thread (?backend=single)' : 'one thread: the page is not cross-origin isolated (no SharedArrayBuffer)';
    return { engine, note };
  } catch (e) {
    return { engine: new ServerEngine(), note: `the wasm kernels did not start (${(e as Error).message}): the server computes` };
  }
}

function renderTokens(tokens: number[], k: number): void {
  const list = $('tokens');
  list.replaceChildren(...tokens.map((t, i) => {
    const li = document.createElement('li');
    li.textContent = String(t);
    li.title = `token ${i + 1}: id ${t}`;
    if (i < k) li.className = 'used';
    return li;
  }));
  list.dataset.tokens = JSON.stringify(tokens);
}

async function main(): Promise<void> {
  const body = document.body;
  body.dataset.ready = 'loading';
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('sw.js').catch(() => {});
  const [{ models }, { examples }] = await Promise.all([getJson<{ models: ModelInfo[] }>('/api/models'), getJson<{ examples: ExampleImage[] }>('/api/examples')]);
  // the tokenizer: ?tokenizer=NAME, else fmnist-default, else the first one; the menu reloads the page with another
  const tokenizers = models.filter((m) => m.kind === 'tokenizer');
  const wanted = new URLSearchParams(location.search).get('tokenizer');
  const tokenizerInfo = tokenizers.find((m) => m.name === wanted) ?? tokenizers.find((m) => m.name === 'fmnist-default') ?? tokenizers[0];
  if (!tokenizerInfo) throw new Error('this server offers no tokenizer (add one under models/)');
  const menu = $<HTMLSelectElement>('tokenizer-select');
  menu.replaceChildren(...tokenizers.map((m) => new Option(`${m.name} (${m.num_tokens} tokens)`, m.name, false, m === tokenizerInfo)));
  menu.hidden = tokenizers.length < 2;
  menu.addEventListener('change', () => {
    const q = new URLSearchParams(location.search);
    q.set('tokenizer', menu.value);
    location.search = q.toString();
  });

  const { engine, note } = await chooseEngine();
  $('backend').textContent = engine.label;
  $('backend').title = note;
  $('backend-note').textContent = note;
  body.dataset.backend = engine.kind;

  setStatus(`loading the tokenizer ${tokenizerInfo.name}…`);
  const tokInfo = await engine.loadTokenizer(tokenizerInfo, progressReporter(tokenizerInfo.name));
  // the decoder settings the server uses for this model (pixel space: the model card's 25 steps, no guidance)
  const state: PageState = {
    engine, tokenizer: tokenizerInfo, tokInfo, tokens: null, image: null, generator: null,
    settings: { ...decoderDefaults(tokenizerInfo.space === 'pixel' ? 'pixel' : 'vae'), seed: 0 },
  };
  $('decoder-settings').textContent = `${state.settings.steps} Euler steps, guidance ${state.settings.guidance}${state.settings.apg ? ' (APG)' : ''}, seed ${state.settings.seed}`;
  $('tokenizer-name').textContent = `${tokenizerInfo.name} (${tokInfo.numTokens} tokens, ${tokInfo.imageSize[1]}×${tokInfo.imageSize[0]})`;

  const slider = $<HTMLInputElement>('k');
  slider.max = String(tokInfo.numTokens);
  slider.value = String(tokInfo.numTokens);
  const recon = $<HTMLCanvasElement>('recon');
  const decoder = new LatestOnly<{ k: number; r: DecodeResult; ms: number }>(({ k, r, ms }) => {
    show(recon, r.image);
    recon.dataset.k = String(k);
    $('psnr').textContent = r.psnr === null ? '' : `PSNR ${r.psnr.toFixed(2)} dB`;
    $('psnr').dataset.psnr = r.psnr === null ? '' : String(r.psnr);
    setStatus(`k = ${k}: decoded in ${Math.round(ms)} ms`);
    recon.dataset.ms = String(Math.round(ms));
    body.dataset.busy = '';
  }, (e) => setStatus(e.message, 'error'));
  const redecode = (): void => {
    if (!state.tokens) return;
    const k = Number(slider.value), tokens = state.tokens;
    $('k-value').textContent = `${k} of ${tokens.length}`;
    renderTokens(tokens, k);
    body.dataset.busy = 'decode';
    setStatus(`decoding the first ${k} token${k === 1 ? '' : 's'}…`);
    decoder.request(async () => {
      const t0 = performance.now();
      const r = await engine.decode(tokenizerInfo.name, tokens, k, state.settings, true);
      return { k, r, ms: performance.now() - t0 };
    });
  };
  slider.addEventListener('input', redecode);

  const useImage = async (source: CanvasImageSource & { width: number; height: number }, label: string): Promise<void> => {
    const image = placeOnCanvas(source, tokInfo.imageSize);
    show($<HTMLCanvasElement>('original'), image);
    $('original-label').textContent = label;
    $('auto-result').textContent = '';
    delete $('auto-result').dataset.k;
    delete $<HTMLCanvasElement>('recon').dataset.k;
    setStatus(`tokenizing ${label}…`);
    body.dataset.busy = 'tokenize';
    state.tokens = await engine.tokenize(tokenizerInfo.name, image);
    state.image = image;
    $('tokens').dataset.image = label;
    redecode();
  };

  // the example images and the upload
  const picker = $('examples');
  picker.replaceChildren(...examples.map((ex) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'example';
    b.dataset.label = ex.label;
    const img = document.createElement('img');
    img.src = ex.url;
    img.alt = ex.label;
    b.append(img, document.createTextNode(ex.label));
    b.addEventListener('click', async () => {
      // a click can come before the thumbnail has arrived: wait for it (decode() settles once it has loaded or failed)
      if (!img.complete || img.naturalWidth === 0) {
        setStatus(`loading the example ${ex.label}…`);
        try {
          await img.decode();
        } catch {
          setStatus(`the example ${ex.label} could not be loaded from ${ex.url}; reload the page`, 'error');
          return;
        }
      }
      useImage(img, ex.label).catch((e: Error) => setStatus(e.message, 'error'));
    });
    return b;
  }));
  $<HTMLInputElement>('upload').addEventListener('change', async (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (!file) return;
    if (file.size > 20 << 20) {
      setStatus(`${file.name} is ${(file.size / 1e6).toFixed(0)} MB; pick an image under 20 MB`, 'error');
      return;
    }
    let bitmap: ImageBitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      setStatus(`${file.name} is not an image this browser can read; pick a PNG, JPEG or WebP file`, 'error');
      return;
    }
    await useImage(bitmap, file.name).catch((err: Error) => setStatus(err.message, 'error'));
  });

  // auto k
  $('auto').addEventListener('click', async () => {
    const target = Number($<HTMLInputElement>('target').value);
    if (!state.tokens) {
      setStatus('pick an image first', 'error');
      return;
    }
    if (!Number.isFinite(target) || target <= 0 || target > 100) {
      setStatus('the PSNR target must be a number of dB between 0 and 100', 'error');
      return;
    }
    setStatus(`auto k: decoding k = 1, 2, 4, … until ${target} dB…`);
    body.dataset.busy = 'auto';
    try {
      const t0 = performance.now();
      const a = await engine.autoK(tokenizerInfo.name, state.tokens, target, state.settings);
      const out = $('auto-result');
      out.dataset.ms = String(Math.round(performance.now() - t0));
      out.dataset.k = String(a.k);
      out.dataset.psnr = String(a.psnr);
      out.textContent = `${a.reached ? 'k' : 'no k reaches the target; k'} = ${a.k} (${a.psnr.toFixed(2)} dB) — ` +
        a.candidates.map((c) => `${c.k}: ${c.psnr.toFixed(1)}`).join(', ');
      slider.value = String(a.k);
      redecode();
    } catch (e) {
      setStatus((e as Error).message, 'error');
    }
  });

  body.dataset.ready = 'tokenizer';
  setStatus('pick an example or upload an image');

  // the generator (the first one trained on this tokenizer)
  const genInfo = models.find((m) => m.kind === 'generator' && m.tokenizer !== undefined && [tokenizerInfo.name, `models/${tokenizerInfo.name}`].includes(m.tokenizer.replace(/\/$/, ''))) ?? null;
  if (genInfo) await setUpGenerator(state, genInfo);
  body.dataset.ready = 'all';
}

async function setUpGenerator(state: PageState, info: ModelInfo): Promise<void> {
  const { engine } = state;
  const body = document.body;
  $('gen-panel').hidden = false;
  setStatus(`loading the generator ${info.name}…`);
  const gen = await engine.loadGenerator(info, state.tokenizer, progressReporter(info.name));
  state.generator = { info, gen };
  $('gen-name').textContent = `${info.name} (${gen.text ? 'text prompts' : `${gen.classNames.length} classes`}, up to ${gen.numTokens} tokens)`;
  const classSel = $<HTMLSelectElement>('gen-class');
  const prompt = $<HTMLInputElement>('gen-prompt');
  $('gen-class-row').hidden = gen.text;
  $('gen-prompt-row').hidden = !gen.text;
  classSel.replaceChildren(...gen.classNames.map((name, i) => new Option(name, String(i))));
  const tokens = $<HTMLInputElement>('gen-tokens');
  tokens.max = String(gen.numTokens);
  tokens.value = String(gen.numTokens);
  const cfg = $<HTMLInputElement>('gen-cfg');
  if (Number.isFinite(gen.cfg)) cfg.value = String(gen.cfg);
  setStatus('pick an example or upload an image; or generate');

  const out = $('gen-output');
  const log = $('gen-log');
  $('generate').addEventListener('click', async () => {
    const n = Math.max(1, Math.min(4, Math.floor(Number($<HTMLInputElement>('gen-n').value)) || 1));
    const k = Math.max(1, Math.min(gen.numTokens, Math.floor(Number(tokens.value)) || gen.numTokens));
    const seed = Math.max(0, Math.floor(Number($<HTMLInputElement>('gen-seed').value)) || 0);
    const req: GenerateRequest = gen.text
      ? { prompts: new Array<string>(n).fill(prompt.value.trim()), tokens: k, cfg: Number(cfg.value), seed }
      : { classes: new Array<number>(n).fill(Number(classSel.value)), tokens: k, cfg: Number(cfg.value), seed };
    if (gen.text && prompt.value.trim() === '') {
      setStatus('write a prompt first', 'error');
      return;
    }
    if (!Number.isFinite(req.cfg) || req.cfg < 0) {
      setStatus('CFG must be a number ≥ 0 (1 = no guidance)', 'error');
      return;
    }
    const canvases = Array.from({ length: n }, () => document.createElement('canvas'));
    out.replaceChildren(...canvases);
    log.replaceChildren();
    const stage = $('gen-stage');
    const note = (kind: 'preview' | 'final', kk: number): void => {
      const li = document.createElement('li');
      li.dataset.kind = kind;
      li.dataset.k = String(kk);
      li.textContent = kind === 'preview' ? `preview: first ${kk} token${kk === 1 ? '' : 's'}` : `final: ${kk} tokens`;
      log.append(li);
      stage.textContent = kind === 'preview' ? `${kk} of ${k} tokens so far…` : `done: ${kk} tokens`;
      out.dataset.k = String(kk);
      out.dataset.kind = kind;
    };
    body.dataset.busy = 'generate';
    setStatus(engine.kind === 'server' ? 'generating on the server (no live preview in this mode)…' : 'generating: tokens stream in coarse to fine…');
    stage.textContent = 'generating…';
    const t0 = performance.now();
    try {
      const result = await engine.generate(info.name, req, (kk, images) => {
        images.forEach((p, i) => show(canvases[i]!, p));
        note('preview', kk);
      });
      result.images.forEach((p, i) => show(canvases[i]!, p));
      note('final', k);
      const ms = Math.round(performance.now() - t0);
      out.dataset.ms = String(ms);
      setStatus(`generated ${n} image${n === 1 ? '' : 's'} from ${k} tokens in ${(ms / 1000).toFixed(1)} s`);
    } catch (e) {
      setStatus((e as Error).message, 'error');
    } finally {
      body.dataset.busy = '';
    }
  });
}

main().catch((e: Error) => {
  setStatus(`the page could not start: ${e.message}`, 'error');
  document.body.dataset.ready = 'failed';
});
