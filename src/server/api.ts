// The JSON/PNG API of `flextok serve` — health, the model list, tokenize (an image → token ids, optionally the
// adaptive k of a PSNR target), detokenize (token ids → PNG) and generate (classes or a prompt → tokens and PNGs) —
// with every parameter checked before the request waits for the job queue in which the computations run.
import type * as http from 'node:http';
import type { GenerationCondition, GenerationSettings, Generator } from '../ar/generator.js';
import { encodePrompts } from '../ar/text.js';
import { smallestKForPsnr } from '../eval/adaptive.js';
import { clampToDisplayRange } from '../eval/metrics.js';
import { decoderDefaults } from '../flextok/decoder_defaults.js';
import { FlexTokInputError, type FlexTok } from '../flextok/model.js';
import { composeGrid, encodePngRgb, tensorToRgb } from '../io/image.js';
import { describeBackend } from '../tensor/backend.js';
import { slice } from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import { HttpError, mediaType, readBody, sendBytes, sendJson, type BodyLimits } from './http.js';
import { listExamples } from './examples.js';
import { checkUpload, uploadToTensor, type UploadFolder } from './image_input.js';
import type { ModelInfo, ModelRegistry } from './models.js';
import { Params, shown, tokenList } from './params.js';
import type { JobQueue } from './queue.js';

export const DEFAULT_TOKENIZER = 'fmnist-default';
export const DEFAULT_GENERATOR = 'fmnist-ar';

/** Sizes, counts and timeouts the server enforces. */
export interface ServerLimits {
  /** largest uploaded image, bytes (413 past it) */
  maxImageBytes: number;
  /** largest JSON body, bytes (413 past it) */
  maxJsonBytes: number;
  /** most pixels of an uploaded image, read from its header before decoding (413 past it) */
  maxImagePixels: number;
  /** most jobs waiting for the queue (503 + Retry-After past it) */
  maxQueue: number;
  /** 408 when a request body stalls this long */
  bodyIdleTimeoutMs: number;
  /** 408 when a request body takes longer than this in all */
  bodyTimeoutMs: number;
  /** the request line and headers must arrive within this */
  headersTimeoutMs: number;
  /** most images per generate request */
  maxSamples: number;
  /** most decoder Euler steps per request */
  maxSteps: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxImageBytes: 4 << 20,
  maxJsonBytes: 64 << 10,
  maxImagePixels: 4096 * 4096,
  maxQueue: 16,
  bodyIdleTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  headersTimeoutMs: 15_000,
  maxSamples: 16,
  maxSteps: 100,
};

/** What the handlers share. */
export interface ApiContext {
  registry: ModelRegistry;
  queue: JobQueue;
  uploads: UploadFolder;
  limits: ServerLimits;
  /** the example images' folder (GET /api/examples) */
  examplesDir: string;
}

/** One API request: its query string and whether its client has gone away. */
export interface ApiRequest {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  query: string;
  cancelled: () => boolean;
}

export interface ApiRoute {
  methods: readonly string[];
  summary: string;
  handle: (ctx: ApiContext, r: ApiRequest) => Promise<void>;
}

/** The API routes by path. */
export const API_ROUTES: Readonly<Record<string, ApiRoute>> = {
  '/api': { methods: ['GET', 'HEAD'], summary: 'this list of routes and the limits', handle: index },
  '/api/health': { methods: ['GET', 'HEAD'], summary: '{ok, backend, queue, rss_bytes}', handle: health },
  '/api/models': { methods: ['GET', 'HEAD'], summary: 'the models: name, kind, size, token count, files', handle: models },
  '/api/examples': { methods: ['GET', 'HEAD'], summary: 'the example images the page offers: {examples: [{label, url}]}', handle: exampleList },
  '/api/tokenize': { methods: ['POST'], summary: 'body: an image; ?model&pad&k&target_psnr → {tokens, …}', handle: tokenize },
  '/api/detokenize': { methods: ['POST'], summary: 'JSON {model, tokens, k, steps, guidance, seed} → image/png', handle: detokenize },
  '/api/generate': { methods: ['POST'], summary: 'JSON {model, class|prompt, n, tokens, cfg, seed, steps} → {tokens, images} (?format=png: a grid)', handle: generate },
};

async function index(ctx: ApiContext, r: ApiRequest): Promise<void> {
  Params.fromQuery(r.query).finish();
  sendJson(r.res, 200, {
    routes: Object.entries(API_ROUTES).map(([p, route]) => ({ methods: route.methods, path: p, summary: route.summary })),
    files: { '/': 'the web page (web/)', '/models/<name>/<file>': 'model files (.safetensors, .json, .md, .png)' },
    limits: ctx.limits,
  });
}

async function health(ctx: ApiContext, r: ApiRequest): Promise<void> {
  Params.fromQuery(r.query).finish();
  sendJson(r.res, 200, {
    ok: true,
    backend: describeBackend(),
    queue: ctx.queue.stats(),
    rss_bytes: process.memoryUsage.rss(),
    max_rss_bytes: process.resourceUsage().maxRSS * 1024,
    uptime_s: Math.round(process.uptime()),
  });
}

async function models(ctx: ApiContext, r: ApiRequest): Promise<void> {
  Params.fromQuery(r.query).finish();
  sendJson(r.res, 200, { models: ctx.registry.list() });
}

async function exampleList(ctx: ApiContext, r: ApiRequest): Promise<void> {
  Params.fromQuery(r.query).finish();
  sendJson(r.res, 200, { examples: listExamples(ctx.examplesDir) });
}

function bodyLimits(ctx: ApiContext, maxBytes: number, what: string): BodyLimits {
  return { maxBytes, what, idleTimeoutMs: ctx.limits.bodyIdleTimeoutMs, totalTimeoutMs: ctx.limits.bodyTimeoutMs };
}

/** The decoder settings of a request; defaults: the model card's (pixel space: 25 steps, no guidance) or the CLI's (VAE: 20 steps, guidance 7.5). */
function decoderParams(p: Params, info: ModelInfo, limits: ServerLimits): { steps: number; guidance: number; apg: boolean; seed: number; noiseScale: number } {
  const d = decoderDefaults(info.space === 'pixel' ? 'pixel' : 'vae');
  const steps = p.number('steps', d.steps, { integer: true, min: 1, max: limits.maxSteps });
  const guidance = p.number('guidance', d.guidance, { min: 0, max: 50 });
  const apg = p.boolean('apg', guidance !== 1);
  const seed = p.number('seed', 0, { integer: true, min: 0, max: 2 ** 32 - 1 });
  const noiseScale = p.number('noise_scale', 1, { min: 0, max: 10 });
  return { steps, guidance, apg, seed, noiseScale };
}

/** Runs a computation in the queue; the model's own input errors become 400s. */
async function inQueue<T>(ctx: ApiContext, r: ApiRequest, job: () => T | Promise<T>): Promise<T> {
  return ctx.queue.run(async () => {
    try {
      return await job();
    } catch (err) {
      if (err instanceof FlexTokInputError) throw new HttpError(400, err.message);
      throw err;
    }
  }, r.cancelled);
}

async function tokenize(ctx: ApiContext, r: ApiRequest): Promise<void> {
  const type = mediaType(r.req);
  if (!type.startsWith('image/')) {
    throw new HttpError(415, `Content-Type must be image/png, image/jpeg or image/webp (the image file itself as the body), got '${type || 'none'}'`);
  }
  const q = Params.fromQuery(r.query);
  const name = q.string('model', DEFAULT_TOKENIZER);
  const info = ctx.registry.info(name, 'tokenizer');
  const r0 = info.num_tokens!;
  const pad = q.boolean('pad', false);
  const k = q.number('k', undefined, { integer: true, min: 1, max: r0 });
  const target = q.number('target_psnr', undefined, { min: 0, max: 100 });
  const dec = decoderParams(q, info, ctx.limits);
  q.finish();
  if (k !== undefined && target !== undefined) throw new HttpError(400, 'k and target_psnr contradict each other (the target chooses k); give one of them');
  ctx.queue.checkCapacity();
  const bytes = await readBody(r.req, bodyLimits(ctx, ctx.limits.maxImageBytes, 'an image'));
  await checkUpload(bytes, ctx.limits.maxImagePixels);
  const result = await inQueue(ctx, r, async () => {
    const model = ctx.registry.tokenizer(name);
    const image = await uploadToTensor(bytes, model, ctx.uploads, { pad, maxPixels: ctx.limits.maxImagePixels });
    const ids = model.tokenize([image], { seed: dec.seed })[0]!; // the seed of a VAE posterior sample, as `tokenize --seed`
    const base = { model: name, num_tokens: model.numTokens, codebook_size: model.codebookSize, image_size: [image.shape[2]!, image.shape[3]!] };
    if (target === undefined) return { ...base, tokens: ids.slice(0, k ?? ids.length), ...(k !== undefined ? { k } : {}) };
    const a = smallestKForPsnr(model, image, ids, target, dec);
    return { ...base, tokens: ids.slice(0, a.k), k: a.k, psnr: Number(a.psnr.toFixed(3)), reached: a.reached, candidates: a.candidates.map((c) => ({ k: c.k, psnr: Number(c.psnr.toFixed(3)) })) };
  });
  sendJson(r.res, 200, result);
}

/** A JSON request body (415 for another Content-Type, 413 past the limit, 400 when it does not parse). */
async function readJson(ctx: ApiContext, r: ApiRequest, example: string): Promise<unknown> {
  const type = mediaType(r.req);
  if (type !== 'application/json') throw new HttpError(415, `Content-Type must be application/json (a JSON object such as ${example}), got '${type || 'none'}'`);
  ctx.queue.checkCapacity();
  const body = await readBody(r.req, bodyLimits(ctx, ctx.limits.maxJsonBytes, 'a JSON body'));
  if (body.length === 0) throw new HttpError(400, `the request body is empty; send a JSON object such as ${example}`);
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (err) {
    throw new HttpError(400, `malformed JSON body: ${(err as Error).message}; send a JSON object such as ${example}`);
  }
}

/** PNG bytes of one image tensor [1, C, H, W], clamped to [-1, 1]. */
function pngOf(image: Tensor): Buffer {
  const { data, width, height } = tensorToRgb(clampToDisplayRange(image));
  return encodePngRgb(data, width, height);
}

async function detokenize(ctx: ApiContext, r: ApiRequest): Promise<void> {
  Params.fromQuery(r.query).finish();
  const p = Params.fromJson(await readJson(ctx, r, '{"model": "fmnist-default", "tokens": [5, 17, 42], "steps": 25}'));
  const name = p.string('model', DEFAULT_TOKENIZER);
  const info = ctx.registry.info(name, 'tokenizer');
  const tokens = tokenList(p.value('tokens'), 'tokens', info.num_tokens!, info.codebook_size!);
  const k = p.number('k', undefined, { integer: true, min: 1, max: tokens.length });
  const dec = decoderParams(p, info, ctx.limits);
  p.finish();
  const png = await inQueue(ctx, r, () => {
    const model: FlexTok = ctx.registry.tokenizer(name);
    return pngOf(model.decodeImages([tokens], { k, ...dec })[0]!);
  });
  sendBytes(r.res, 200, png, 'image/png', { 'Cache-Control': 'no-store', 'X-Flextok-K': String(k ?? tokens.length) });
}

/** The class or prompt of a generate request, checked against the model's conditioning. */
function conditionOf(p: Params, info: ModelInfo): { classSpec: string | null; prompt: string | null } {
  const rawClass = p.value('class');
  const prompt = p.string('prompt', undefined);
  if (info.conditioning === 'text') {
    if (rawClass !== undefined) throw new HttpError(400, `model '${info.name}' is text-conditional: give 'prompt', not 'class'`);
    if (prompt === undefined) throw new HttpError(400, `model '${info.name}' is text-conditional: give a 'prompt' such as "a bag in the top left"`);
    return { classSpec: null, prompt: prompt.trim() };
  }
  if (prompt !== undefined) throw new HttpError(400, `model '${info.name}' is class-conditional: give 'class' (a name or an index), not 'prompt'`);
  if (rawClass === undefined) return { classSpec: null, prompt: null };
  if (typeof rawClass === 'string' && rawClass.trim() !== '') return { classSpec: rawClass, prompt: null };
  if (typeof rawClass === 'number' && Number.isInteger(rawClass) && rawClass >= 0) return { classSpec: String(rawClass), prompt: null };
  throw new HttpError(400, `field 'class' must be a class name, an index 0..${(info.classes?.length ?? 1) - 1} or 'all', got ${shown(rawClass)}`);
}

/** A checked generate request. */
interface GenerationRequest {
  name: string;
  n: number;
  condition: { classSpec: string | null; prompt: string | null };
  over: Partial<GenerationSettings>;
}

function generationRequest(p: Params, ctx: ApiContext): { request: GenerationRequest; info: ModelInfo } {
  const name = p.string('model', DEFAULT_GENERATOR);
  const info = ctx.registry.info(name, 'generator');
  const n = p.number('n', 1, { integer: true, min: 1, max: ctx.limits.maxSamples });
  const condition = conditionOf(p, info);
  const over: Partial<GenerationSettings> = {
    num_tokens: p.number('tokens', undefined, { integer: true, min: 1, max: info.num_tokens! }),
    cfg_scale: p.number('cfg', undefined, { min: 0, max: 100 }),
    temperature: p.number('temperature', undefined, { min: 1e-6, max: 100 }),
    top_k: p.number('top_k', undefined, { integer: true, min: 0, max: info.codebook_size! }),
    top_p: p.number('top_p', undefined, { min: 1e-6, max: 1 }),
    seed: p.number('seed', undefined, { integer: true, min: 0, max: 2 ** 32 - 1 }),
    decoder_steps: p.number('steps', undefined, { integer: true, min: 1, max: ctx.limits.maxSteps }),
    decoder_guidance: p.number('guidance', undefined, { min: 0, max: 50 }),
    decoder_apg: p.boolean('apg', undefined),
    decoder_noise_scale: p.number('noise_scale', undefined, { min: 0, max: 10 }),
  };
  p.finish();
  return { request: { name, n, condition, over }, info };
}

/** The generator's conditions (one per sample), their labels and the settings; a class, prompt or setting it refuses is a 400. */
function generationInputs(gen: Generator, g: GenerationRequest): { conditions: GenerationCondition; labels: string[]; settings: GenerationSettings } {
  try {
    const { classSpec, prompt } = g.condition;
    if (prompt !== null) {
      encodePrompts([prompt], gen.model.config.text!); // names a word the model does not know
      const prompts = new Array<string>(g.n).fill(prompt);
      return { conditions: prompts, labels: prompts, settings: gen.settings(g.over) };
    }
    const all = classSpec === null || classSpec.trim().toLowerCase() === 'all';
    const c = all ? -1 : gen.classIndex(classSpec);
    const classes = Array.from({ length: g.n }, (_, i) => (all ? i % gen.classNames.length : c));
    return { conditions: classes, labels: classes.map((ci) => gen.classNames[ci]!), settings: gen.settings(g.over) };
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
}

async function generate(ctx: ApiContext, r: ApiRequest): Promise<void> {
  const q = Params.fromQuery(r.query);
  const format = q.choice('format', ['json', 'png'] as const, 'json');
  q.finish();
  const { request: g, info } = generationRequest(Params.fromJson(await readJson(ctx, r, '{"model": "fmnist-ar", "class": "sneaker", "n": 4}')), ctx);
  const result = await inQueue(ctx, r, () => {
    const gen = ctx.registry.generator(g.name);
    const inputs = generationInputs(gen, g);
    const out = gen.generateImages(inputs.conditions, inputs.settings);
    const images = Array.from({ length: g.n }, (_, i) => (g.n === 1 ? out.images : slice(out.images, 0, i, i + 1)));
    return { ...inputs, imageSize: gen.tokenizer.imageSize, tokens: out.tokens.map((t) => Array.from(t)), images };
  });
  if (format === 'png') {
    const perRow = Math.min(8, g.n);
    const rows = Array.from({ length: Math.ceil(g.n / perRow) }, (_, row) => result.images.slice(row * perRow, (row + 1) * perRow).map(clampToDisplayRange));
    const grid = composeGrid(rows, { gap: 2 });
    sendBytes(r.res, 200, encodePngRgb(grid.data, grid.width, grid.height), 'image/png', { 'Cache-Control': 'no-store' });
    return;
  }
  sendJson(r.res, 200, {
    model: g.name,
    tokenizer: info.tokenizer ?? null,
    conditioning: info.conditioning,
    ...(info.conditioning === 'class' ? { classes: result.conditions } : {}),
    labels: result.labels,
    settings: result.settings,
    image_size: result.imageSize,
    tokens: result.tokens,
    images: result.images.map((img) => pngOf(img).toString('base64')),
  });
}
