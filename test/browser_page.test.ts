// The web page in a real browser: `flextok serve` on 127.0.0.1 (a free port) and Debian's chromium, headless,
// driven through playwright-core (executablePath; nothing downloads a browser). Covers: the page on a
// cross-origin isolated server (WASM threads), picking an example, its tokens, the k slider changing the canvas,
// the browser's reconstruction against the server's, a generation whose preview appears before the final image;
// auto k against `flextok tokenize --target-psnr` on every shipped image; the page without COOP/COEP (one thread);
// offline after one visit; a phone-sized screen and bad uploads; the README's embedding example; ?backend=server. Screenshots go to $FLEXTOK_TEST_OUT (default
// <tmp>/flextok-browser-test). Chromium missing FAILS this test when CI is set (.ci/run installs it); elsewhere
// it skips with the apt package to install.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const inCI = Boolean(process.env.CI);
const OUT = process.env.FLEXTOK_TEST_OUT ?? path.join(os.tmpdir(), 'flextok-browser-test');
/** Generous: chromium's wasm on a shared 2-core machine decodes a 32-token image in about a second. */
const SLOW = 240_000;

function findChromium(): string | null {
  for (const p of [process.env.FLEXTOK_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) {
    if (p && fs.existsSync(p)) return p;
  }
  return null;
}

interface Served {
  url: string;
  child: ChildProcess;
  log: () => string;
}

/** `flextok serve --port 0 [extra]`: resolves once it prints the address it listens on. */
function serve(extra: string[] = []): Promise<Served> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--port', '0', ...extra], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) resolve({ url: m[1]!, child, log: () => err });
    });
    child.once('exit', (code) => reject(new Error(`flextok serve exited (${code}) before listening: ${err}`)));
  });
}

async function stop(s: Served | undefined): Promise<void> {
  if (!s || s.child.exitCode !== null) return;
  const exited = new Promise((resolve) => s.child.once('exit', resolve));
  s.child.kill('SIGINT');
  await exited;
}

/** Opens the page and waits until the tokenizer (`what` 'tokenizer') or everything (`what` 'all') has loaded. */
async function openPage(context: BrowserContext, url: string, what: 'tokenizer' | 'all', errors: string[]): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().includes('favicon')) errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  await waitReady(page, what);
  return page;
}

async function waitReady(page: Page, what: 'tokenizer' | 'all'): Promise<void> {
  await page.waitForFunction((w) => {
    const r = document.body.dataset.ready;
    return r === 'failed' || r === 'all' || (w === 'tokenizer' && r === 'tokenizer');
  }, what, { timeout: SLOW });
  const ready = await page.evaluate(() => document.body.dataset.ready);
  assert.notEqual(ready, 'failed', `the page failed to start: ${await page.textContent('#status')}`);
}

/** Clicks an example and waits until its tokens are decoded at the slider's k. */
async function pickExample(page: Page, label: string): Promise<void> {
  await page.click(`.example[data-label="${label}"]`);
  await page.waitForFunction(() => document.querySelector<HTMLElement>('#recon')!.dataset.k !== undefined || document.querySelector<HTMLElement>('#status')!.dataset.kind === 'error', null, { timeout: SLOW });
  await assertNoPageError(page);
}

async function setK(page: Page, k: number): Promise<void> {
  await page.fill('#k', String(k));
  await page.dispatchEvent('#k', 'input');
  await page.waitForFunction((kk) => document.querySelector<HTMLElement>('#recon')!.dataset.k === String(kk) || document.querySelector<HTMLElement>('#status')!.dataset.kind === 'error', k, { timeout: SLOW });
  await assertNoPageError(page);
}

async function assertNoPageError(page: Page): Promise<void> {
  const kind = await page.evaluate(() => document.querySelector<HTMLElement>('#status')!.dataset.kind);
  if (kind === 'error') assert.fail(`the page reports an error: ${await page.textContent('#status')}`);
}

/** The RGBA bytes of a canvas, as a plain array. */
function canvasPixels(page: Page, selector: string): Promise<number[]> {
  return page.$eval(selector, (c) => {
    const cv = c as HTMLCanvasElement;
    return Array.from(cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data);
  });
}

const chromiumPath = findChromium();
const why = 'chromium is not installed (apt-get install chromium; .ci/run installs it)';

describe('the web page in headless chromium', { skip: !chromiumPath && !inCI ? `${why}: not CI, so skipped` : false }, () => {
  let browser: Browser;
  let isolated: Served;

  before(async () => {
    if (!chromiumPath) throw new Error(why);
    fs.mkdirSync(OUT, { recursive: true });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
    isolated = await serve();
  });

  after(async () => {
    await browser?.close();
    await stop(isolated);
  });

  it('tokenize, slide k, compare with the server, generate with a live preview (cross-origin isolated: WASM threads)', { timeout: 2 * SLOW }, async (t) => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 1000 } });
    const errors: string[] = [];
    const page = await openPage(context, isolated.url, 'all', errors);
    // Debian's chromium runs relaxed SIMD (Chrome 114+), so the page loads the fused-multiply-add kernels
    assert.match(await page.textContent('#backend') ?? '', /^WASM threads \(\d+, relaxed SIMD\)$/);
    assert.equal(await page.evaluate(() => crossOriginIsolated), true);

    await pickExample(page, 'sneaker');
    const tokens = JSON.parse((await page.getAttribute('#tokens', 'data-tokens'))!) as number[];
    assert.equal(tokens.length, 32);
    assert.ok(tokens.every((id) => Number.isInteger(id) && id >= 0 && id < 64000), 'token ids in the codebook');
    assert.equal(await page.$$eval('#tokens li.used', (l) => l.length), 32);
    const at32 = await canvasPixels(page, '#recon');
    const psnr32 = Number(await page.getAttribute('#psnr', 'data-psnr'));

    await setK(page, 1);
    const at1 = await canvasPixels(page, '#recon');
    const changed = at1.filter((v, i) => Math.abs(v - at32[i]!) > 8).length;
    assert.ok(changed > 100, `the reconstruction changes with k (${changed} channel values differ by more than 8)`);
    assert.equal(await page.$$eval('#tokens li.used', (l) => l.length), 1);
    assert.ok(Number(await page.getAttribute('#psnr', 'data-psnr')) < psnr32, 'PSNR at k = 1 is below PSNR at k = 32');

    // the browser's reconstruction against the server's (same tokens, k and decoder settings), pixel by pixel
    await setK(page, 8);
    const cmp = await page.evaluate(async (ids) => {
      const res = await fetch('/api/detokenize', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tokens: ids, k: 8, steps: 25, guidance: 1, apg: false, seed: 0 }) });
      const bitmap = await createImageBitmap(await res.blob());
      const c = document.createElement('canvas');
      c.width = bitmap.width;
      c.height = bitmap.height;
      const ctx = c.getContext('2d')!;
      ctx.drawImage(bitmap, 0, 0);
      const server = ctx.getImageData(0, 0, c.width, c.height).data;
      const cv = document.querySelector<HTMLCanvasElement>('#recon')!;
      const mine = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
      let max = 0, sum = 0;
      for (let i = 0; i < mine.length; i++) {
        const d = Math.abs(mine[i]! - server[i]!);
        max = Math.max(max, d);
        sum += d;
      }
      return { sameSize: mine.length === server.length, max, mean: sum / mine.length };
    }, tokens);
    t.diagnostic(`browser vs server reconstruction (k = 8): max |Δ| ${cmp.max}/255, mean ${cmp.mean.toFixed(3)}; decode took ${await page.getAttribute('#recon', 'data-ms')} ms`);
    assert.ok(cmp.sameSize);
    assert.ok(cmp.max <= 3 && cmp.mean <= 0.5, `browser and server reconstructions differ: max ${cmp.max}, mean ${cmp.mean}`);

    // generation: 8 tokens, previews of the first 1, 2 and 4 must appear (drawn, not black) before the final image
    await page.evaluate(() => {
      const seen: { kind: string; k: number; lit: number }[] = [];
      (window as unknown as { genEvents: typeof seen }).genEvents = seen;
      new MutationObserver((records) => {
        for (const r of records) {
          for (const n of r.addedNodes) {
            const li = n as HTMLElement;
            const cv = document.querySelector<HTMLCanvasElement>('#gen-output canvas')!;
            const d = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
            let lit = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i]! > 40) lit++;
            seen.push({ kind: li.dataset.kind!, k: Number(li.dataset.k), lit });
          }
        }
      }).observe(document.querySelector('#gen-log')!, { childList: true });
    });
    await page.fill('#gen-n', '1');
    await page.fill('#gen-tokens', '8');
    await page.selectOption('#gen-class', { label: 'Sneaker' });
    await page.click('#generate');
    await page.waitForFunction(() => document.querySelector<HTMLElement>('#gen-output')!.dataset.kind === 'final' || document.querySelector<HTMLElement>('#status')!.dataset.kind === 'error', null, { timeout: SLOW });
    await assertNoPageError(page);
    const events = await page.evaluate(() => (window as unknown as { genEvents: { kind: string; k: number; lit: number }[] }).genEvents);
    t.diagnostic(`generation events: ${events.map((e) => `${e.kind} k=${e.k} (${e.lit} lit px)`).join(', ')}; ${await page.getAttribute('#gen-output', 'data-ms')} ms in all`);
    assert.deepEqual(events.map((e) => `${e.kind}:${e.k}`), ['preview:1', 'preview:2', 'preview:4', 'final:8']);
    assert.ok(events[0]!.lit > 20, 'the first preview is drawn before the final image');
    assert.ok(events[3]!.lit > 20, 'the final image is drawn');

    const shot = path.join(OUT, 'page-desktop.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    assert.deepEqual(errors, []);
    await context.close();
  });

  it("auto k equals `flextok tokenize --target-psnr 20` on every shipped image", { timeout: 4 * SLOW }, async (t) => {
    const dir = path.join(ROOT, 'assets', 'fashion-mnist');
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.png')).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-autok-'));
    execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'tokenize', ...files.map((f) => path.join(dir, f)), '--model', 'models/fmnist-default',
      '--pad', '--target-psnr', '20', '--steps', '25', '--guidance', '1', '--no-apg', '--seed', '0', '--out', path.join(tmp, 'tokens.json')], { cwd: ROOT, stdio: 'pipe' });
    const cli = (JSON.parse(fs.readFileSync(path.join(tmp, 'tokens.json'), 'utf8')) as { images: { file: string; k: number; psnr: number; tokens: number[] }[] }).images;
    fs.rmSync(tmp, { recursive: true, force: true });

    const context = await browser.newContext();
    const errors: string[] = [];
    const page = await openPage(context, isolated.url, 'tokenizer', errors);
    const labels = await page.$$eval('.example', (bs) => bs.map((b) => (b as HTMLElement).dataset.label!));
    assert.equal(labels.length, files.length);
    await page.fill('#target', '20');
    const rows: string[] = [];
    for (const [i, label] of labels.entries()) {
      await pickExample(page, label);
      await page.click('#auto');
      await page.waitForFunction(() => document.querySelector<HTMLElement>('#auto-result')!.dataset.k !== undefined || document.querySelector<HTMLElement>('#status')!.dataset.kind === 'error', null, { timeout: SLOW });
      await assertNoPageError(page);
      const k = Number(await page.getAttribute('#auto-result', 'data-k'));
      const psnr = Number(await page.getAttribute('#auto-result', 'data-psnr'));
      const tokens = JSON.parse((await page.getAttribute('#tokens', 'data-tokens'))!) as number[];
      rows.push(`${files[i]}: page k ${k} (${psnr.toFixed(3)} dB, ${await page.getAttribute('#auto-result', 'data-ms')} ms), CLI k ${cli[i]!.k} (${cli[i]!.psnr.toFixed(3)} dB)`);
      assert.deepEqual(tokens.slice(0, cli[i]!.k), cli[i]!.tokens, `${files[i]}: the page's tokens equal the CLI's`);
      assert.equal(k, cli[i]!.k, `${files[i]}: auto k ${k} vs --target-psnr ${cli[i]!.k}`);
      assert.ok(Math.abs(psnr - cli[i]!.psnr) < 0.05, `${files[i]}: PSNR ${psnr} vs ${cli[i]!.psnr}`);
    }
    t.diagnostic(rows.join(' | '));
    assert.ok(new Set(cli.map((c) => c.k)).size > 1, 'the target separates the images (not every k is the same)');
    assert.deepEqual(errors, []);
    await context.close();
  });

  it('offline after one visit: the page, the kernels and the models come from the browser cache', { timeout: 2 * SLOW }, async () => {
    const context = await browser.newContext();
    const errors: string[] = [];
    const page = await openPage(context, isolated.url, 'all', errors);
    await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
    });
    await context.setOffline(true);
    await page.reload();
    await waitReady(page, 'all');
    assert.match(await page.textContent('#progress-label') ?? '', /from the browser cache/);
    await pickExample(page, 'bag');
    assert.equal(await page.getAttribute('#recon', 'data-k'), '32');
    await context.setOffline(false);
    await context.close();
  });

  it('without COOP/COEP (--no-isolation) the page falls back to one thread', { timeout: SLOW }, async (t) => {
    const plain = await serve(['--no-isolation']);
    try {
      const context = await browser.newContext();
      const errors: string[] = [];
      const page = await openPage(context, plain.url, 'tokenizer', errors);
      assert.equal(await page.evaluate(() => crossOriginIsolated), false);
      assert.equal(await page.textContent('#backend'), 'WASM single thread (relaxed SIMD)');
      await pickExample(page, 'trouser');
      await setK(page, 2);
      t.diagnostic(`single thread: ${await page.textContent('#psnr')} at k = 2, decoded in ${await page.getAttribute('#recon', 'data-ms')} ms`);
      await page.screenshot({ path: path.join(OUT, 'page-single-thread.png') });
      assert.deepEqual(errors, []);
      await context.close();
    } finally {
      await stop(plain);
    }
  });

  it('on a phone-sized screen nothing scrolls sideways', { timeout: SLOW }, async (t) => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const errors: string[] = [];
    const page = await openPage(context, isolated.url, 'tokenizer', errors);
    // an upload that is not an image: a message naming the problem, and the page keeps working
    await page.setInputFiles('#upload', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') });
    await page.waitForFunction(() => document.querySelector<HTMLElement>('#status')!.dataset.kind === 'error', null, { timeout: SLOW });
    assert.match(await page.textContent('#status') ?? '', /notes\.txt is not an image this browser can read/);
    // a real upload larger than the canvas (a 90×60 grey ramp): shrunk, centred, tokenized and decoded
    const { default: sharp } = await import('sharp');
    const ramp = Buffer.from(Array.from({ length: 90 * 60 }, (_, i) => (i % 90) * 2 + 40));
    const png = await sharp(ramp, { raw: { width: 90, height: 60, channels: 1 } }).png().toBuffer();
    await page.setInputFiles('#upload', { name: 'ramp.png', mimeType: 'image/png', buffer: png });
    await page.waitForFunction(() => document.querySelector<HTMLElement>('#recon')!.dataset.k !== undefined || document.querySelector<HTMLElement>('#status')!.dataset.kind === 'error', null, { timeout: SLOW });
    await assertNoPageError(page);
    assert.equal(await page.textContent('#original-label'), 'ramp.png');
    await pickExample(page, 'dress');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`);
    const shot = path.join(OUT, 'page-phone.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    assert.deepEqual(errors, []);
    await context.close();
  });

  it("the README's embedding example (web/embed.html) tokenizes like the server", { timeout: SLOW }, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${isolated.url}embed.html`);
    await page.waitForFunction(() => {
      const o = document.querySelector<HTMLElement>('#out')!;
      return o.dataset.tokens !== undefined || o.dataset.error !== undefined;
    }, null, { timeout: SLOW });
    const tokens = await page.getAttribute('#out', 'data-tokens');
    assert.ok(tokens, `the example failed: ${await page.textContent('#out')}`);
    const server = await page.evaluate(async () => {
      const png = await (await fetch('/examples/7-sneaker.png')).blob();
      const res = await fetch('/api/tokenize?pad=1', { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: png });
      return ((await res.json()) as { tokens: number[] }).tokens;
    });
    assert.deepEqual(JSON.parse(tokens) as number[], server);
    assert.deepEqual(errors, []);
    await context.close();
  });

  it('?backend=server: the server computes, and says so', { timeout: SLOW }, async () => {
    const context = await browser.newContext();
    const errors: string[] = [];
    const page = await openPage(context, `${isolated.url}?backend=server`, 'tokenizer', errors);
    assert.equal(await page.textContent('#backend'), 'server');
    await pickExample(page, 'coat');
    await setK(page, 4);
    assert.ok(Number(await page.getAttribute('#psnr', 'data-psnr')) > 10);
    assert.deepEqual(errors, []);
    await context.close();
  });
});
