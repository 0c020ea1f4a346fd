// Tests of `flextok serve` (src/server/): the server in-process on 127.0.0.1 with the shipped models — tokenize gives
// FlexTok.tokenize's tokens, detokenize and generate give PNGs — every bad request's 4xx JSON error (and the server
// still answering afterwards), path traversal and symlinks, the body timeout, the queue's 503, a generic 500 for an
// unexpected error; then the CLI's startup line and clean Ctrl-C, and a short run of scripts/load-test.ts.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { smallestKForPsnr } from '../src/eval/adaptive.js';
import { clampToDisplayRange } from '../src/eval/metrics.js';
import { FlexTok } from '../src/flextok/model.js';
import { loadImage, padToCanvas, tensorToRgb } from '../src/io/image.js';
import { HttpError } from '../src/server/http.js';
import { JobCancelled, JobQueue } from '../src/server/queue.js';
import { createFlextokServer, type FlextokServer } from '../src/server/server.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const IMAGES = path.join(ROOT, 'assets/fashion-mnist');

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request with the path sent exactly as given (no URL normalisation, so '..' reaches the server). */
function request(base: string, rawPath: string, opts: { method?: string; body?: Buffer | string; type?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const body = typeof opts.body === 'string' ? Buffer.from(opts.body) : opts.body;
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.type) headers['Content-Type'] = opts.type;
    const req = http.request({ host: hostname, port, path: rawPath, method: opts.method ?? (body ? 'POST' : 'GET'), headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function json<T = Record<string, unknown>>(r: Reply): T {
  return JSON.parse(r.body.toString('utf8')) as T;
}

function assertIsolationHeaders(r: Reply): void {
  assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin');
  assert.equal(r.headers['cross-origin-embedder-policy'], 'require-corp');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
}

/** A JSON error with `status` whose message matches `pattern`, with the isolation headers and no stack trace. */
function assertError(r: Reply, status: number, pattern: RegExp): void {
  const text = r.body.toString('utf8');
  assert.equal(r.status, status, text);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  const body = JSON.parse(text) as { error?: unknown };
  assert.equal(typeof body.error, 'string', text);
  assert.match(body.error as string, pattern);
  assert.doesNotMatch(text, /\n\s+at |\.ts:\d+/, 'no stack trace');
  assertIsolationHeaders(r);
}

async function pngSize(bytes: Buffer): Promise<[number, number]> {
  const meta = await sharp(bytes).metadata();
  assert.equal(meta.format, 'png');
  return [meta.width!, meta.height!];
}

describe('flextok serve (in-process, shipped models)', { timeout: 300_000 }, () => {
  let app: FlextokServer;
  let base = '';
  const logs: string[] = [];
  let model: FlexTok;

  before(async () => {
    app = createFlextokServer({ root: ROOT, log: (line) => logs.push(line) });
    base = (await app.listen(0, '127.0.0.1')).url;
    model = FlexTok.load(path.join(ROOT, 'models/fmnist-default'));
  });
  after(() => app.close());

  it('serves the page, the API index, health, the model list and model files, all with the isolation headers', async () => {
    const page = await request(base, '/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.body.toString(), /\/api/);
    assertIsolationHeaders(page);

    const index = await request(base, '/api');
    assert.equal(index.status, 200);
    assert.ok(json<{ routes: { path: string }[] }>(index).routes.some((r) => r.path === '/api/generate'));

    const health = await request(base, '/api/health');
    assert.equal(health.status, 200);
    assertIsolationHeaders(health);
    const h = json<{ ok: boolean; backend: string }>(health);
    assert.equal(h.ok, true);
    assert.ok(h.backend.length > 0);

    const list = json<{ models: { name: string; kind: string; num_tokens?: number; bytes: number; files: string[] }[] }>(await request(base, '/api/models')).models;
    const tok = list.find((m) => m.name === 'fmnist-default');
    const gen = list.find((m) => m.name === 'fmnist-ar');
    assert.equal(tok?.kind, 'tokenizer');
    assert.equal(tok?.num_tokens, 32);
    assert.equal(gen?.kind, 'generator');
    assert.ok(gen!.bytes > 1e6);
    assert.ok(tok!.files.includes('model.safetensors'));

    const weights = await request(base, '/models/fmnist-default/model.safetensors');
    assert.equal(weights.status, 200);
    assert.equal(weights.headers['content-type'], 'application/octet-stream');
    assert.ok(weights.body.equals(fs.readFileSync(path.join(ROOT, 'models/fmnist-default/model.safetensors'))));
    assert.match(String(weights.headers['cache-control']), /max-age/);
    assertIsolationHeaders(weights);
    const etag = String(weights.headers.etag);
    const again = await request(base, '/models/fmnist-default/model.safetensors', { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    const card = await request(base, '/models/fmnist-ar/README.md', { method: 'HEAD' });
    assert.equal(card.status, 200);
    assert.match(String(card.headers['content-type']), /^text\/markdown/);
  });

  it('lists and serves the example images (GET /api/examples, /examples/<file>.png) and nothing else from their folder', async () => {
    const { examples } = json<{ examples: { label: string; url: string }[] }>(await request(base, '/api/examples'));
    assert.equal(examples.length, 10);
    assert.deepEqual([examples[0], examples[9]], [{ label: 't-shirt', url: '/examples/0-t-shirt.png' }, { label: 'ankle boot', url: '/examples/9-ankle-boot.png' }]);
    const png = await request(base, examples[7]!.url);
    assert.equal(png.status, 200);
    assert.equal(png.headers['content-type'], 'image/png');
    assert.ok(png.body.equals(fs.readFileSync(path.join(ROOT, 'assets/fashion-mnist/7-sneaker.png'))));
    assertIsolationHeaders(png);
    assert.equal((await request(base, '/examples/LICENSE')).status, 404);
    assert.equal((await request(base, '/examples/%2e%2e/package.json')).status, 400);
    assert.equal((await request(base, '/examples/missing.png')).status, 404);
    assert.equal((await request(base, '/api/examples', { method: 'POST', body: '{}', type: 'application/json' })).status, 405);
  });

  it('--no-isolation (isolation: false) leaves out COOP/COEP and keeps the other headers', async () => {
    const plain = createFlextokServer({ root: ROOT, isolation: false, log: () => {} });
    try {
      const url = (await plain.listen(0, '127.0.0.1')).url;
      for (const r of [await request(url, '/'), await request(url, '/api/nothing')]) {
        assert.equal(r.headers['cross-origin-opener-policy'], undefined);
        assert.equal(r.headers['cross-origin-embedder-policy'], undefined);
        assert.equal(r.headers['x-content-type-options'], 'nosniff');
      }
    } finally {
      await plain.close();
    }
  });

  it('tokenize returns the tokens of FlexTok.tokenize on the same (padded or resized) image; k and target_psnr', async () => {
    const file = path.join(IMAGES, '7-sneaker.png');
    const padded = padToCanvas(await loadImage(file, { resize: false, multipleOf: 1, channels: 1 }), 32, 32);
    const expected = model.tokenize([padded])[0]!;
    const r = await request(base, '/api/tokenize?model=fmnist-default&pad=1', { body: fs.readFileSync(file), type: 'image/png' });
    assert.equal(r.status, 200, r.body.toString());
    assertIsolationHeaders(r);
    const body = json<{ model: string; num_tokens: number; codebook_size: number; tokens: number[] }>(r);
    assert.equal(body.model, 'fmnist-default');
    assert.equal(body.num_tokens, 32);
    assert.equal(body.codebook_size, 64000);
    assert.deepEqual(body.tokens, expected);

    const other = path.join(IMAGES, '0-t-shirt.png');
    const resized = await loadImage(other, { size: 32, resize: true, multipleOf: model.pixelsPerPatch, channels: 1 });
    const r2 = await request(base, '/api/tokenize?k=4', { body: fs.readFileSync(other), type: 'image/png' });
    assert.equal(r2.status, 200, r2.body.toString());
    assert.deepEqual(json<{ tokens: number[]; k: number }>(r2), { ...json(r2), tokens: model.tokenize([resized])[0]!.slice(0, 4), k: 4 });

    const r3 = await request(base, '/api/tokenize?pad=1&target_psnr=18&steps=2', { body: fs.readFileSync(file), type: 'image/png' });
    assert.equal(r3.status, 200, r3.body.toString());
    const a = smallestKForPsnr(model, padded, expected, 18, { steps: 2, guidance: 1, apg: false, seed: 0 });
    const got = json<{ tokens: number[]; k: number; psnr: number }>(r3);
    assert.equal(got.k, a.k);
    assert.ok(Math.abs(got.psnr - a.psnr) < 1e-3, `${got.psnr} vs ${a.psnr}`);
    assert.deepEqual(got.tokens, expected.slice(0, a.k));
  });

  it('detokenize returns the decoded image as a 32×32 PNG (round trip from tokenize)', async () => {
    const file = path.join(IMAGES, '8-bag.png');
    const tok = json<{ tokens: number[] }>(await request(base, '/api/tokenize?pad=1', { body: fs.readFileSync(file), type: 'image/png' }));
    const r = await request(base, '/api/detokenize', { body: JSON.stringify({ model: 'fmnist-default', tokens: tok.tokens, k: 8, steps: 2, seed: 3 }), type: 'application/json' });
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['content-type'], 'image/png');
    assertIsolationHeaders(r);
    assert.deepEqual(await pngSize(r.body), [32, 32]);
    const expected = tensorToRgb(clampToDisplayRange(model.decodeImages([tok.tokens], { k: 8, steps: 2, guidance: 1, apg: false, seed: 3 })[0]!));
    const { data } = await sharp(r.body).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.ok(data.equals(expected.data), 'the PNG holds the decoded pixels');
    // noise_scale reaches the decoder
    const r2 = await request(base, '/api/detokenize', { body: JSON.stringify({ model: 'fmnist-default', tokens: tok.tokens, k: 8, steps: 2, seed: 3, noise_scale: 0.5 }), type: 'application/json' });
    assert.equal(r2.status, 200, r2.body.toString());
    const expected2 = tensorToRgb(clampToDisplayRange(model.decodeImages([tok.tokens], { k: 8, steps: 2, guidance: 1, apg: false, seed: 3, noiseScale: 0.5 })[0]!));
    const got2 = await sharp(r2.body).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.ok(got2.data.equals(expected2.data) && !got2.data.equals(data), 'the PNG holds the pixels decoded at noise scale 0.5');
  });

  it('generate returns n token sequences and n PNGs (JSON), or one grid PNG', async () => {
    const r = await request(base, '/api/generate', { body: JSON.stringify({ model: 'fmnist-ar', class: 'sneaker', n: 3, tokens: 4, steps: 2, seed: 1 }), type: 'application/json' });
    assert.equal(r.status, 200, r.body.toString());
    const body = json<{ tokens: number[][]; images: string[]; labels: string[] }>(r);
    assert.equal(body.tokens.length, 3);
    assert.ok(body.tokens.every((t) => t.length === 4 && t.every((id) => Number.isInteger(id) && id >= 0 && id < 64000)));
    assert.equal(body.images.length, 3);
    for (const img of body.images) assert.deepEqual(await pngSize(Buffer.from(img, 'base64')), [32, 32]);
    assert.deepEqual(body.labels, ['Sneaker', 'Sneaker', 'Sneaker']);

    const grid = await request(base, '/api/generate?format=png', { body: JSON.stringify({ class: 2, n: 2, tokens: 2, steps: 1 }), type: 'application/json' });
    assert.equal(grid.status, 200, grid.body.toString());
    assert.equal(grid.headers['content-type'], 'image/png');
    assert.deepEqual(await pngSize(grid.body), [2 + 2 * (32 + 2), 2 + 32 + 2]);
  });

  it('generates from a text prompt with the shipped scenes-ar, and names a word it does not know', async () => {
    const prompt = 'a bag in the top left and a sneaker in the bottom right';
    const r = await request(base, '/api/generate', { body: JSON.stringify({ model: 'scenes-ar', prompt, n: 2, tokens: 4, steps: 2, seed: 1 }), type: 'application/json' });
    assert.equal(r.status, 200, r.body.toString());
    const body = json<{ tokens: number[][]; images: string[]; labels: string[] }>(r);
    assert.ok(body.tokens.length === 2 && body.tokens.every((t) => t.length === 4 && t.every((id) => Number.isInteger(id) && id >= 0 && id < 64000)));
    for (const img of body.images) assert.deepEqual(await pngSize(Buffer.from(img, 'base64')), [64, 64]);
    assert.deepEqual(body.labels, [prompt, prompt]);
    const post = (b: string) => request(base, '/api/generate', { body: b, type: 'application/json' });
    assertError(await post('{"model": "scenes-ar", "prompt": "a hat in the top left"}'), 400, /the word "hat" is not in the model's vocabulary/);
    assertError(await post('{"model": "scenes-ar", "class": "bag"}'), 400, /text-conditional: give 'prompt'/);
    assertError(await post('{"model": "scenes-ar", "prompt": "a bag in the top left", "tokens": 65}'), 400, /'tokens' must be an integer from 1 to 64/);
  });

  it('refuses every bad request with its 4xx and a JSON message, and keeps serving', async () => {
    const png = fs.readFileSync(path.join(IMAGES, '1-trouser.png'));
    const post = (p: string, body: Buffer | string, type: string) => request(base, p, { body, type });
    // body size: declared too large, and too large while streaming (chunked, no Content-Length)
    assertError(await post('/api/tokenize', Buffer.alloc(5 << 20), 'image/png'), 413, /too large.*4 MiB/);
    const chunked = await new Promise<Reply>((resolve, reject) => {
      const { hostname, port } = new URL(base);
      const req = http.request({ host: hostname, port, path: '/api/detokenize', method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write(Buffer.alloc(10_000, 0x20));
      req.end();
    });
    assertError(chunked, 413, /too large.*64 KiB/);
    // JSON bodies
    assertError(await post('/api/detokenize', '{"tokens": [1, 2,', 'application/json'), 400, /malformed JSON body: .+; send a JSON object/);
    assertError(await post('/api/detokenize', '[1, 2]', 'application/json'), 400, /must be an object/);
    assertError(await post('/api/detokenize', '', 'application/json'), 400, /body is empty/);
    // content types
    assertError(await post('/api/tokenize', png, 'text/plain'), 415, /Content-Type must be image\/png/);
    assertError(await post('/api/detokenize', '{"tokens": [1]}', 'text/plain'), 415, /Content-Type must be application\/json/);
    // uploads that are not images
    assertError(await post('/api/tokenize', 'hello, not an image', 'image/png'), 400, /not an image/);
    assertError(await post('/api/tokenize', Buffer.concat([png.subarray(0, 60)]), 'image/png'), 400, /not an image|truncated|corrupt|cannot/);
    // parameters
    assertError(await post('/api/tokenize?k=33', png, 'image/png'), 400, /'k' must be an integer from 1 to 32, got '33'/);
    assertError(await post('/api/tokenize?k=0', png, 'image/png'), 400, /'k' must be an integer from 1 to 32/);
    assertError(await post('/api/tokenize?k=NaN', png, 'image/png'), 400, /'k' must be an integer/);
    assertError(await post('/api/tokenize?k=2&target_psnr=20', png, 'image/png'), 400, /contradict/);
    assertError(await post('/api/tokenize?pad=maybe', png, 'image/png'), 400, /'pad' must be 1 or 0/);
    assertError(await post('/api/tokenize?colour=1', png, 'image/png'), 400, /unknown query parameter 'colour'/);
    assertError(await post('/api/detokenize', '{"tokens": [1, 2], "k": 3}', 'application/json'), 400, /'k' must be an integer from 1 to 2/);
    assertError(await post('/api/detokenize', '{"tokens": [1, 64000]}', 'application/json'), 400, /tokens\[1\] = 64000 .*0 to 63999/);
    assertError(await post('/api/detokenize', `{"tokens": [${new Array(33).fill(1).join(',')}]}`, 'application/json'), 400, /33 tokens; this model takes 1 to 32/);
    assertError(await post('/api/detokenize', '{"tokens": [1], "steps": 1e9}', 'application/json'), 400, /'steps' must be an integer from 1 to 100/);
    assertError(await post('/api/detokenize', '{"tokens": [1], "noise_scale": -1}', 'application/json'), 400, /'noise_scale' must be .*0 to 10/);
    assertError(await post('/api/detokenize', '{"tokens": [1], "guidance": "lots"}', 'application/json'), 400, /'guidance' must be a number/);
    assertError(await post('/api/detokenize', '{"tokens": [1], "step": 2}', 'application/json'), 400, /unknown field 'step'/);
    // models and classes
    assertError(await post('/api/tokenize?model=no-such-model', png, 'image/png'), 404, /unknown model 'no-such-model'.*fmnist-default/);
    assertError(await post('/api/detokenize', '{"model": "../etc", "tokens": [1]}', 'application/json'), 400, /not a model name/);
    assertError(await post('/api/detokenize', '{"model": "fmnist-ar", "tokens": [1]}', 'application/json'), 400, /is a generator, not a tokenizer/);
    assertError(await post('/api/generate', '{"class": "unicorn"}', 'application/json'), 400, /unknown class 'unicorn'.*Sneaker/);
    assertError(await post('/api/generate', '{"class": 10}', 'application/json'), 400, /unknown class '10'.*0\.\.9/);
    assertError(await post('/api/generate', '{"class": "bag", "n": 17}', 'application/json'), 400, /'n' must be an integer from 1 to 16/);
    assertError(await post('/api/generate', '{"class": "bag", "tokens": 33}', 'application/json'), 400, /'tokens' must be an integer from 1 to 32/);
    assertError(await post('/api/generate', '{"prompt": "a bag"}', 'application/json'), 400, /class-conditional/);
    assertError(await post('/api/generate?format=gif', '{}', 'application/json'), 400, /'format' must be one of json, png/);
    // paths and methods
    assertError(await request(base, '/models/../package.json'), 400, /'\.\.' segment: path traversal/);
    assertError(await request(base, '/models/%2e%2e/package.json'), 400, /'\.\.' segment \(encoded as '%2e%2e'\)/);
    assertError(await request(base, '/%2E%2E/%2e%2E/etc/passwd'), 400, /path traversal/);
    assertError(await request(base, '/models/fmnist-default/..%2f..%2fpackage.json'), 400, /encoded slash/);
    assertError(await request(base, '/models/fmnist-default/model.safetensors%00.json'), 400, /NUL/);
    assertError(await request(base, '/models/fmnist-default/%zz'), 400, /malformed percent-encoding/);
    assertError(await request(base, '/.git/config'), 404, /hidden files/);
    assertError(await request(base, '/models/fmnist-default/nothing.json'), 404, /no such model file/);
    assertError(await request(base, '/no-such-page.html'), 404, /no such page/);
    assertError(await request(base, '/api/nothing'), 404, /no API route.*\/api\/tokenize/);
    const wrong = await request(base, '/api/tokenize', { method: 'GET' });
    assertError(wrong, 405, /GET is not allowed on \/api\/tokenize; use POST/);
    assert.equal(wrong.headers.allow, 'POST');
    const del = await request(base, '/models/fmnist-default/README.md', { method: 'DELETE' });
    assertError(del, 405, /use GET or HEAD/);
    assert.equal(del.headers.allow, 'GET, HEAD');

    const health = await request(base, '/api/health');
    assert.equal(health.status, 200);
    assert.equal(json<{ ok: boolean }>(health).ok, true);
    const tok = await request(base, '/api/tokenize?pad=1', { body: png, type: 'image/png' });
    assert.equal(tok.status, 200, 'a good request still works after the bad ones');
  });
});

describe('flextok serve: roots, timeouts, the queue and unexpected errors', { timeout: 120_000 }, () => {
  let dir = '';
  let app: FlextokServer;
  let base = '';
  const logs: string[] = [];

  before(async () => {
    // A root with a page, a link inside it, a link to a file outside it, and a model folder that is a link outside.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-serve-'));
    const root = path.join(dir, 'root');
    fs.mkdirSync(path.join(root, 'web'), { recursive: true });
    fs.mkdirSync(path.join(root, 'models'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'outside'));
    fs.writeFileSync(path.join(dir, 'outside', 'secret.json'), '{"secret": true}');
    fs.writeFileSync(path.join(root, 'web', 'index.html'), '<!doctype html><p>test page</p>');
    fs.writeFileSync(path.join(root, 'web', 'app.js'), 'console.log(1);');
    fs.symlinkSync(path.join(root, 'web', 'app.js'), path.join(root, 'web', 'inner.js'));
    fs.symlinkSync(path.join(dir, 'outside', 'secret.json'), path.join(root, 'web', 'escape.json'));
    fs.symlinkSync(path.join(dir, 'outside'), path.join(root, 'models', 'evil'));
    fs.symlinkSync(path.join(ROOT, 'models', 'fmnist-default'), path.join(root, 'models', 'linked'));
    app = createFlextokServer({ root, log: (line) => logs.push(line), limits: { bodyIdleTimeoutMs: 200, bodyTimeoutMs: 2000 } });
    base = (await app.listen(0, '127.0.0.1')).url;
  });
  after(async () => {
    await app.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves files inside the roots (links inside included) and refuses links that leave them', async () => {
    const js = await request(base, '/app.js');
    assert.equal(js.status, 200);
    assert.match(String(js.headers['content-type']), /^text\/javascript/);
    assert.equal((await request(base, '/inner.js')).status, 200);
    assertError(await request(base, '/escape.json'), 403, /link to a place outside/);
    assertError(await request(base, '/models/evil/secret.json'), 403, /link to a place outside/);
    assertError(await request(base, '/models/linked/README.md'), 403, /link to a place outside/);
    const models = json<{ models: unknown[] }>(await request(base, '/api/models'));
    assert.deepEqual(models.models, [], 'folders linked from outside models/ are not offered');
    assertError(await request(base, '/api/tokenize', { body: 'x', type: 'image/png' }), 404, /unknown model 'fmnist-default'.*no tokenizers/);
  });

  /** Sends `raw` on a fresh connection; resolves to everything the server sends until it closes the connection. */
  function rawExchange(raw: string): Promise<string> {
    const { port } = new URL(base);
    return new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1');
      let got = '';
      socket.on('data', (d) => {
        got += d.toString();
      });
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
      socket.write(raw);
    });
  }

  it('answers a stalled body with 408 and invalid HTTP with 400 (JSON), closing those connections', async () => {
    const text = await rawExchange('POST /api/detokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"tok');
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /cross-origin-embedder-policy: require-corp/i);
    assert.match(text, /\{"error":"the request body stalled: no data for 0\.2 s after 5 bytes; send the whole body without pausing"\}/);
    const garbage = await rawExchange('HELLO THERE\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400 /);
    assert.match(garbage, /cross-origin-opener-policy: same-origin/i);
    assert.match(garbage, /\{"error":"the request is not valid HTTP\/1\.1; check the request line and headers"\}/);
    assert.equal((await request(base, '/api/health')).status, 200);
  });

  it('an unexpected error is a 500 with a generic message, logged, and the server keeps serving', async () => {
    const registry = app.registry as unknown as { info: (name: string) => unknown };
    const original = registry.info;
    registry.info = () => {
      throw new Error('boom: secret internal detail');
    };
    try {
      const r = await request(base, '/api/detokenize', { body: '{"tokens": [1]}', type: 'application/json' });
      assertError(r, 500, /^internal error: .*log/);
      assert.doesNotMatch(r.body.toString(), /boom|secret/);
    } finally {
      registry.info = original;
    }
    assert.ok(logs.some((l) => /unexpected error: Error: boom: secret internal detail\n\s+at /.test(l)), 'the stack goes to the log');
    assert.equal((await request(base, '/api/health')).status, 200);
  });

  it('the job queue runs jobs one at a time in order, skips cancelled ones and refuses past its limit with 503 + Retry-After', async () => {
    const q = new JobQueue(1);
    const order: number[] = [];
    const a = q.run(() => order.push(1));
    const b = q.run(async () => {
      await new Promise((r) => setTimeout(r, 5));
      order.push(2);
    });
    const refused = q.run(() => order.push(3));
    await assert.rejects(refused, (err: unknown) => err instanceof HttpError && err.status === 503 && /busy: 1 job is waiting \(limit 1\)/.test(err.message) && Number(err.headers['Retry-After']) >= 1);
    await Promise.all([a, b]);
    const skipped = q.run(() => order.push(4), () => true);
    await assert.rejects(skipped, JobCancelled);
    await q.run(() => order.push(5));
    assert.deepEqual(order, [1, 2, 5]);
    assert.equal(q.stats().rejected, 1);
  });
});

describe('flextok serve: the command line and the load test', { timeout: 240_000 }, () => {
  it('--help explains the options and the routes; the server prints its startup line and stops on SIGINT', async () => {
    const help = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--help'], { cwd: ROOT }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    });
    for (const s of ['--port N', '--host ADDR', '--max-queue', '/api/tokenize', '/api/detokenize', '/api/generate', '/api/health', '/api/models', '/models/<name>/<file>', 'require-corp']) {
      assert.ok(help.includes(s), s);
    }

    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.once('exit', (code) => reject(new Error(`serve exited (${code}) before listening: ${err}`)));
    });
    const m = /^flextok serve: listening on (http:\/\/127\.0\.0\.1:(\d+)\/) \(backend .+\)$/.exec(line);
    assert.ok(m, line);
    assert.ok(Number(m[2]) > 0);
    const health = await request(m[1]!, '/api/health');
    assert.equal(health.status, 200);
    child.kill('SIGINT');
    assert.equal(await exited, 0, err);
    assert.match(err, /SIGINT: closing/);
  });

  it('scripts/load-test.ts (4 clients, 3 s): no failed well-formed request, no crash, a clean stop', async () => {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', 'scripts/load-test.ts', '--clients', '4', '--duration', '3', '--json'], { cwd: ROOT, maxBuffer: 1 << 20 },
        (e, out, errText) => (e ? reject(new Error(`${e.message}\n${out}\n${errText}`)) : resolve(out)));
    });
    const report = JSON.parse(stdout.trim().split('\n').pop()!) as { ok: number; failed_well_formed: number; server_alive_after: boolean; server_exit: number; latency_ms: Record<string, { count: number }>; errors: string[] };
    assert.equal(report.failed_well_formed, 0, report.errors.join('\n'));
    assert.equal(report.server_alive_after, true);
    assert.equal(report.server_exit, 0);
    for (const k of ['health', 'tokenize', 'detokenize']) assert.ok(report.latency_ms[k]!.count > 0, k);
  });
});
