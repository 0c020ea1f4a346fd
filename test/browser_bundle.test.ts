// The browser bundle (scripts/build-web.mjs): it builds, imports no Node module, and run in a bare vm context
// (only what a browser has: WebAssembly, TextDecoder/TextEncoder, crypto.subtle, console, URL) it loads the wasm
// kernels and the fmnist models from their bytes and tokenizes / decodes as the library does in Node.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { Generator } from '../src/ar/generator.js';
import { FlexTok } from '../src/flextok/model.js';
import { loadImage, padToCanvas } from '../src/io/image.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const TOKENIZER = path.join(ROOT, 'models', 'fmnist-default', 'model.safetensors');
const GENERATOR = path.join(ROOT, 'models', 'fmnist-ar', 'model.safetensors');
const IMAGE = path.join(ROOT, 'assets', 'fashion-mnist', '7-sneaker.png');

/** The bundle's exports as the test uses them (values from the vm context's realm). */
interface BrowserTensor {
  readonly shape: number[];
  readonly f: Float32Array;
}
interface BrowserFlexTok {
  readonly imageSize: [number, number];
  readonly imageChannels: number;
  readonly source: string;
  tokenize(images: BrowserTensor): number[][];
  detokenize(tokens: number[][], opts: { k: number; steps: number; seed: number }): BrowserTensor;
}
interface BrowserLib {
  useWasmKernels(bytes: Uint8Array): Promise<void>;
  kernels(): { name: string };
  Tensor: new (data: Float32Array, shape: number[]) => BrowserTensor;
  FlexTok: { fromBytes(bytes: Uint8Array, opts?: { label?: string }): BrowserFlexTok };
  Generator: { fromBytes(ar: Uint8Array, tokenizer: BrowserFlexTok, weights: Uint8Array | string, label?: string): Promise<{ classNames: string[] }> };
  rgbaToTensor(image: { data: Uint8Array; width: number; height: number }, opts: { channels: 1 | 3; padTo: [number, number] }): BrowserTensor;
  tensorToRgba(image: BrowserTensor): { data: Uint8ClampedArray; width: number; height: number };
}

let dir = '';
let bundle = '';

/** Runs the ES-module bundle in a fresh vm context holding only browser globals; returns its exports. */
function runInBareContext(code: string): { lib: BrowserLib; context: vm.Context } {
  // vm runs scripts, not modules: the bundle's one trailing `export{a as B,…}` becomes an assignment
  const m = /export\s*\{([^}]*)\}\s*;?\s*$/.exec(code);
  assert.ok(m, 'the bundle ends with one export statement');
  const fields = m[1]!.split(',').map((s) => {
    const [local, exported] = s.trim().split(/\s+as\s+/);
    return `${JSON.stringify(exported ?? local)}: ${local}`;
  });
  const script = `${code.slice(0, m.index)}\nglobalThis.__flextok = { ${fields.join(', ')} };`;
  const context = vm.createContext({
    console, TextDecoder, TextEncoder, URL, crypto: { subtle: globalThis.crypto.subtle },
  });
  vm.runInContext(script, context, { filename: 'flextok.js' });
  return { lib: (context as { __flextok: BrowserLib }).__flextok, context };
}

describe('browser bundle (web/flextok.js)', () => {
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-web-test-'));
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build-web.mjs'), '--out', dir], { stdio: 'pipe' });
    bundle = fs.readFileSync(path.join(dir, 'flextok.js'), 'utf8');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('imports no Node module and no package', () => {
    assert.ok(!bundle.includes('node:'), 'no node: specifier');
    assert.ok(!/(?<![.\w])require\s*\(\s*["'`]/.test(bundle), 'no require() of a module');
    assert.ok(!/\bimport\s*[("'{*]/.test(bundle), 'no import statement or dynamic import');
    assert.ok(!bundle.includes('sharp'), 'no sharp');
    assert.deepEqual(fs.readFileSync(path.join(dir, 'flextok_kernels.wasm')), fs.readFileSync(path.join(ROOT, 'native', 'wasm', 'flextok_kernels.wasm')));
  });

  it('fails the build when a Node module is reachable from the entry', () => {
    const entry = path.join(dir, 'bad_entry.ts');
    fs.writeFileSync(entry, `export { loadImage } from ${JSON.stringify(path.join(ROOT, 'src', 'io', 'image.ts'))};\n`);
    try {
      const out = (() => {
        try {
          execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build-web.mjs'), '--out', dir, '--entry', entry], { stdio: 'pipe' });
          return null;
        } catch (e) {
          return String((e as { stderr: Buffer }).stderr);
        }
      })();
      assert.ok(out !== null, 'the build fails');
      assert.match(out, /would import '(node:\w+|sharp)': \S*bad_entry\.ts → src\/io\/image\.ts → /);
    } finally {
      fs.rmSync(entry, { force: true });
    }
  });

  it('tokenizes and decodes in a bare context on the wasm kernels as the library does in Node', async () => {
    const { lib, context } = runInBareContext(bundle);
    const InnerU8 = vm.runInContext('Uint8Array', context) as Uint8ArrayConstructor;
    const InnerF32 = vm.runInContext('Float32Array', context) as Float32ArrayConstructor;
    await lib.useWasmKernels(new InnerU8(fs.readFileSync(path.join(dir, 'flextok_kernels.wasm'))));
    assert.equal(lib.kernels().name, 'wasm');

    const tokBytes = new InnerU8(fs.readFileSync(TOKENIZER));
    const browserModel = lib.FlexTok.fromBytes(tokBytes, { label: 'fmnist-default' });
    const nodeModel = FlexTok.load(TOKENIZER);
    const [h, w] = nodeModel.imageSize;
    const channels = nodeModel.imageChannels as 1 | 3;
    const image = padToCanvas(await loadImage(IMAGE, { resize: false, multipleOf: 1, channels }), h, w);

    const nodeTokens = nodeModel.tokenize(image);
    const browserTokens = browserModel.tokenize(new lib.Tensor(new InnerF32(image.f), [...image.shape]));
    assert.deepEqual(Array.from(browserTokens[0]!), nodeTokens[0]);

    // the canvas path: RGBA pixels padded by rgbaToTensor equal loadImage + padToCanvas
    const sharp = (await import('sharp')).default;
    const raw = await sharp(IMAGE).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const fromRgba = lib.rgbaToTensor({ data: new Uint8Array(raw.data), width: raw.info.width, height: raw.info.height },
      { channels, padTo: [h, w] });
    assert.deepEqual(Array.from(fromRgba.shape), [...image.shape]);
    assert.deepEqual(Array.from(fromRgba.f), Array.from(image.f));

    const opts = { k: 4, steps: 3, seed: 0 };
    const nodeImage = nodeModel.detokenize(nodeTokens, opts);
    const browserImage = browserModel.detokenize(browserTokens, opts);
    assert.deepEqual(Array.from(browserImage.shape), [...nodeImage.shape]);
    let maxAbs = 0, scale = 0;
    for (let i = 0; i < nodeImage.f.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(browserImage.f[i]! - nodeImage.f[i]!));
      scale = Math.max(scale, Math.abs(nodeImage.f[i]!));
    }
    assert.ok(maxAbs <= 1e-4 * Math.max(1, scale), `decoded images differ by ${maxAbs} (scale ${scale})`);
    const rgba = lib.tensorToRgba(browserImage);
    assert.equal(rgba.data.length, rgba.width * rgba.height * 4);

    // the generator checks the tokenizer by the sha256 of its bytes (Web Crypto)
    const arBytes = new InnerU8(fs.readFileSync(GENERATOR));
    const gen = await lib.Generator.fromBytes(arBytes, browserModel, tokBytes, 'fmnist-ar');
    assert.deepEqual(Array.from(gen.classNames), Generator.load(GENERATOR).classNames);
    await assert.rejects(lib.Generator.fromBytes(arBytes, browserModel, '0'.repeat(64), 'fmnist-ar'), /trained on the tokenizer/);
  });
});
