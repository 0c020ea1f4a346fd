// Tests of the flextok command line, run as subprocesses (`node --import tsx src/cli/main.ts …`) from the
// repository root with the golden e2e checkpoint (paths relative to the repository).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { smallestKForPsnr } from '../src/eval/adaptive.js';
import { FlexTok } from '../src/flextok/model.js';
import { loadImage, padToCanvas } from '../src/io/image.js';
import { Rng } from '../src/tensor/rng.js';
import { decoderConfigOf, encoderConfigOf, parseTokenizerConfig, readJsonFile } from '../src/train/config.js';
import { exportTokenizer } from '../src/train/export.js';
import { initDecoder, initEncoder } from '../src/train/init.js';
import { GOLDEN_REL, goldenSkip, REPO_ROOT as ROOT, requireGolden } from './helpers/golden.js';

// Paths relative to the repository root, where the CLI runs.
const MODEL_REL = `${GOLDEN_REL}/e2e/model.safetensors`;
const NEED = ['e2e/model.safetensors', 'e2e/model_bf16.safetensors', 'e2e/io.safetensors', 'e2e/config.json', 'e2e/hub'];
const skip = goldenSkip(...NEED);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function flextok(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { cwd: ROOT, env: { ...process.env, FLEXTOK_DEBUG: '', ...env }, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function assertCleanError(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^flextok: error: [^\n]+\n(Run .*\n)?$/m);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

describe('flextok CLI', () => {
  let dir: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-cli-'));
    const w = 44;
    const h = 36;
    const rgb = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.set([x * 5, y * 7, ((x >> 2) + (y >> 2)) % 2 ? 230 : 20], (y * w + x) * 3);
    await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path.join(dir, 'tiny.png'));
    fs.writeFileSync(path.join(dir, 'broken.png'), 'not a png');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('--help explains the tool and every command', async () => {
    const top = await flextok(['--help']);
    assert.equal(top.code, 0);
    for (const c of ['tokenize', 'detokenize', 'reconstruct', 'parity', 'pull', 'demo']) assert.match(top.stdout, new RegExp(`\\n  ${c} `));
    const detok = await flextok(['detokenize', '--help']);
    assert.equal(detok.code, 0);
    for (const o of ['--model', '--out', '--k', '--steps', '--guidance', '--apg', '--no-apg', '--seed', '--hub-dir']) assert.ok(detok.stdout.includes(o), o);
    assert.match(detok.stdout, /--steps N\s+Euler denoising steps \(default: 20\)/);
    assert.match(detok.stdout, /\(default: 7\.5\)/);
  });

  it('tokenize → detokenize → reconstruct with the e2e checkpoint', { skip }, async () => {
    requireGolden(...NEED);
    const tokens = path.join(dir, 'tokens.json');
    const tok = await flextok(['tokenize', path.join(dir, 'tiny.png'), '--model', MODEL_REL, '--out', tokens]);
    assert.equal(tok.code, 0, tok.stderr);
    const json = JSON.parse(fs.readFileSync(tokens, 'utf8'));
    assert.equal(json.format, 'flextok-tokens/1');
    assert.equal(json.codebook_size, 1000);
    assert.equal(json.images.length, 1);
    assert.deepEqual(json.images[0].size, [32, 32]);
    assert.equal(json.images[0].tokens.length, 8);

    const out = path.join(dir, 'out.png');
    const detok = await flextok(['detokenize', tokens, '--model', MODEL_REL, '--k', '3', '--steps', '3', '--seed', '1', '--out', out]);
    assert.equal(detok.code, 0, detok.stderr);
    assert.match(detok.stderr, /denoising 3\/3/);
    const meta = await sharp(out).metadata();
    assert.deepEqual([meta.width, meta.height], [32, 32]);

    const grid = path.join(dir, 'grid.png');
    const rec = await flextok(['reconstruct', path.join(dir, 'tiny.png'), '--model', MODEL_REL, '--k', '1,2,4,8', '--steps', '2', '--out', grid]);
    assert.equal(rec.code, 0, rec.stderr);
    const g = await sharp(grid).metadata();
    // original + 4 values of k, 32 px each with 2 px gaps, plus labels at font scale 1 (6 px per glyph − 1, 9 px
    // high, 3 px from what they label): the row label 'tiny' (23 px) on the left, the column labels on top
    // ('original', 47 px + 4, widens its column to 51 px)
    assert.deepEqual([g.width, g.height], [23 + 3 + 2 + (51 + 2) + 4 * (32 + 2), 9 + 3 + 2 + 32 + 2]);

    assertCleanError(await flextok(['detokenize', tokens, '--model', MODEL_REL, '--k', '9', '--out', out]), /k = 9 .*from 1 to 8/);
  });

  it('usage errors and bad inputs exit 1 with one clear line (shipped model, no golden files)', async () => {
    const emptyCache = { FLEXTOK_CACHE: path.join(dir, 'empty-cache') };
    assertCleanError(await flextok(['tokenize', path.join(dir, 'tiny.png'), '--model', 'no/such-model', '--out', path.join(dir, 't.json')], emptyCache), /not downloaded.*flextok pull no\/such-model/);
    assertCleanError(await flextok(['tokenize', path.join(dir, 'tiny.png'), '--out', path.join(dir, 't.json')]), /--model is required/);
    assertCleanError(await flextok(['detokenize', '--bogus']), /unknown option '--bogus'/);
    assertCleanError(await flextok(['frobnicate']), /unknown command 'frobnicate'/);
    // The shipped pixel-space model (FSQ 8·8·8·5·5·5 = 64000 ids) for errors that need a model.
    const shipped = 'models/fmnist-default';
    assertCleanError(await flextok(['tokenize', path.join(dir, 'broken.png'), '--model', shipped, '--out', path.join(dir, 't.json')]), /broken\.png: not an image/);
    fs.writeFileSync(path.join(dir, 'ids-64000.json'), '[[1, 2, 64000]]');
    assertCleanError(await flextok(['detokenize', path.join(dir, 'ids-64000.json'), '--model', shipped, '--out', path.join(dir, 'x.png')]), /token id 64000 .*valid ids are 0 to 63999/);
  });

  it('tokenize --pad --target-psnr: per image the smallest k of 1, 2, 4, …, 32 reaching the target, written with its PSNR; detokenize reads it', async () => {
    const shipped = 'models/fmnist-default';
    const images = ['0-t-shirt', '2-pullover', '6-shirt', '8-bag'].map((n) => `assets/fashion-mnist/${n}.png`);
    const out = path.join(dir, 'adaptive.json');
    const r = await flextok(['tokenize', ...images, '--model', shipped, '--pad', '--target-psnr', '18', '--steps', '4', '--guidance', '1', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const file = JSON.parse(fs.readFileSync(out, 'utf8')) as { images: { k: number; psnr: number; tokens: number[] }[] };
    // the same rule computed here
    const model = FlexTok.load(`${shipped}/model.safetensors`);
    for (const [i, img] of file.images.entries()) {
      const image = padToCanvas(await loadImage(images[i]!, { resize: false, multipleOf: 1, channels: 1 }), 32, 32);
      const ids = model.tokenize([image])[0]!;
      const a = smallestKForPsnr(model, image, ids, 18, { steps: 4, guidance: 1, apg: false, seed: 0 });
      assert.equal(img.k, a.k, images[i]);
      assert.deepEqual(img.tokens, ids.slice(0, a.k));
      assert.ok(Math.abs(img.psnr - a.psnr) < 1e-3);
      const firstReaching = a.candidates.find((c) => c.psnr >= 18);
      assert.equal(a.k, firstReaching ? firstReaching.k : 32);
    }
    assert.ok(new Set(file.images.map((im) => im.k)).size > 1, `the lengths adapt to the image: ${file.images.map((im) => im.k)}`);
    const d = await flextok(['detokenize', out, '--model', shipped, '--steps', '2', '--guidance', '1', '--out', path.join(dir, 'adaptive.png')]);
    assert.equal(d.code, 0, d.stderr);
    assertCleanError(await flextok(['tokenize', images[0]!, '--model', shipped, '--target-psnr', '18', '--k', '4', '--out', out]), /--k and --target-psnr contradict/);
    assertCleanError(await flextok(['tokenize', images[0]!, '--model', shipped, '--target-psnr', 'lots', '--out', out]), /--target-psnr/);
  });

  it('bad inputs with the e2e checkpoint exit 1 with one clear line', { skip }, async () => {
    requireGolden(...NEED);
    assertCleanError(await flextok(['tokenize', path.join(dir, 'broken.png'), '--model', MODEL_REL, '--out', path.join(dir, 't.json')]), /broken\.png: not an image/);
    fs.writeFileSync(path.join(dir, 'ids.json'), '[[1, 2, 5000]]');
    assertCleanError(await flextok(['detokenize', path.join(dir, 'ids.json'), '--model', MODEL_REL, '--out', path.join(dir, 'x.png')]), /token id 5000 .*valid ids are 0 to 999/);
  });

  it('parity on the golden directory exits 0', { skip }, async () => {
    requireGolden();
    const r = await flextok(['parity', GOLDEN_REL, '--quiet']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /== e2e \(flextok-golden-e2e\/1\) PASS/);
    assert.match(r.stdout, /stage bf16\.detok\.full\.apg\s+ok/);
    assert.match(r.stdout, /parity: all \d+ cases passed/);
  });

  it('parity fails (exit 1) on a broken copy of a case', { skip }, async () => {
    requireGolden(...NEED);
    const copy = path.join(dir, 'golden-copy', 'e2e');
    fs.mkdirSync(copy, { recursive: true });
    for (const f of ['config.json', 'io.safetensors', 'model.safetensors']) fs.copyFileSync(path.join(ROOT, GOLDEN_REL, 'e2e', f), path.join(copy, f));
    fs.cpSync(path.join(ROOT, GOLDEN_REL, 'e2e', 'hub'), path.join(copy, 'hub'), { recursive: true });
    // Without model_bf16.safetensors the bf16 stage cannot run.
    const r = await flextok(['parity', path.dirname(copy), '--quiet']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /FAIL.*bf16\.checkpoint\.file.*model_bf16\.safetensors not found/);
    assert.match(r.stdout, /stage fp32\.tokenize\s+ok/);
  });

  it('pull downloads from a hub endpoint into the cache', async () => {
    const body = Buffer.from('{"_class_name": "AutoencoderKL"}\n');
    const server = http.createServer((req, res) => {
      if (req.url?.startsWith('/api/models/org/vae/revision/main')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ sha: 'b'.repeat(40), siblings: [{ rfilename: 'config.json' }] }));
      } else if (req.url === '/org/vae/resolve/main/config.json') {
        res.writeHead(200, { etag: `"${createHash('sha256').update(body).digest('hex')}"`, 'content-length': body.length });
        res.end(body);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const cache = path.join(dir, 'cache');
      const r = await flextok(['pull', 'org/vae', '--cache', cache], { HF_ENDPOINT: endpoint });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(fs.readFileSync(path.join(cache, 'org', 'vae', 'config.json')), body);
      assertCleanError(await flextok(['pull', 'org/missing', '--cache', cache, '--endpoint', endpoint]), /HTTP 404/);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('demo reconstructs the shipped images with a given pixel-space model: grid PNG and PSNR table', async () => {
    // A tiny untrained 1-channel 32×32 tokenizer (4×4 patches, 8 tokens) in the trainer's export layout.
    const cfg = parseTokenizerConfig(readJsonFile(path.join(ROOT, 'configs/test-tiny.json')), 'configs/test-tiny.json');
    const rng = new Rng(1);
    const model = path.join(dir, 'pixel-model.safetensors');
    exportTokenizer(model, {
      encoder: initEncoder(encoderConfigOf(cfg.model, 1, 32), rng),
      decoder: initDecoder(decoderConfigOf(cfg.model, 1, 32), rng),
      fsqLevels: cfg.model.fsq_levels,
      flow: cfg.flow,
      cfgDropout: cfg.flow.cfg_dropout,
      vae: { kind: 'identity', channels: 1 },
      dtype: 'F16',
    });
    const out = path.join(dir, 'demo.png');
    const r = await flextok(['demo', '--model', model, '--out', out, '--steps', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /decoding 8\/8/);
    assert.match(r.stdout, /pixel space, 1 channel, 32×32 px, 8 tokens/);
    assert.match(r.stdout, /\| +k \| +MSE \| PSNR \(dB\) \|/);
    for (const k of [1, 2, 4, 8]) assert.match(r.stdout, new RegExp(`\\| +${k} \\| \\d+\\.\\d{5} \\| +-?\\d+\\.\\d{2} \\|`), `row k=${k}`);
    assert.ok(r.stdout.includes(`wrote ${out}`), r.stdout);
    assert.match(r.stdout, /generation skipped: the shipped generator was trained on the shipped tokenizer/);
    // 10 rows × (original + 4 values of k), 32×32 cells shown ×4 with 4-pixel gaps.
    const meta = await sharp(out).metadata();
    // labelled: a row-label column ('9-ankle-boot', 12 glyphs × 12 px − 2 at font scale 2, then 6 px) and a header row (18 + 6 px)
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 4 + 142 + 6 + 5 * (128 + 4), 18 + 6 + 4 + 10 * (128 + 4)]);

    const missing = await flextok(['demo', '--model', path.join(dir, 'nope.safetensors'), '--out', out]);
    assertCleanError(missing, /nope\.safetensors: no such file/);
  });

  it('scripts/eval-tokenizer.ts scores the shipped model on a slice of the Fashion-MNIST test split', async () => {
    const json = path.join(dir, 'eval.json');
    const r = await new Promise<Run>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', 'scripts/eval-tokenizer.ts', '--model', 'models/fmnist-default', '--n', '3', '--skip', '1000', '--k', '1,32', '--steps', '2', '--json', json],
        { cwd: ROOT }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }));
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /images 1000–1002 of fashion-mnist/);
    for (const k of [1, 32]) assert.match(r.stdout, new RegExp(`\\| ${k} \\| \\d+\\.\\d{5} \\|`), `row k=${k}`);
    const report = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.equal(report.skip, 1000);
    assert.equal(report.images, 3);
    assert.deepEqual(report.rows.map((row: { k: number }) => row.k), [1, 32]);
    // Both shipped classifiers score by default, one agreement column each.
    assert.deepEqual(report.classifiers, ['fmnist-classifier', 'fmnist-classifier-robust']);
    for (const row of report.rows) assert.equal(row.classAgreement.length, 2);
    assert.match(r.stdout, /class agreement \(fmnist-classifier\) \| class agreement \(fmnist-classifier-robust\)/);
  });

  it('demo runs on the shipped default model with no model flag (the README main job)', async () => {
    const out = path.join(dir, 'demo-default.png');
    const r = await flextok(['demo', '--out', out, '--steps', '2']);
    assert.equal(r.code, 0, r.stderr);
    const rows = new Map<number, { mse: number; psnr: number }>();
    for (const k of [1, 2, 4, 8, 16, 32]) {
      const m = new RegExp(`\\| +${k} \\| (\\d+\\.\\d{5}) \\| +(\\d+\\.\\d{2}) \\|`).exec(r.stdout);
      assert.ok(m, `row k=${k}\n${r.stdout}`);
      rows.set(k, { mse: Number(m[1]), psnr: Number(m[2]) });
    }
    // The shipped model really reconstructs (an untrained one gives 4.9 dB at every k, see the test above):
    // with 2 Euler steps, seed 0, the step-15,000 model gives 16.97 dB at k = 1 and 24.21 dB at k = 32.
    assert.ok(rows.get(1)!.psnr >= 14, `PSNR at k = 1: ${rows.get(1)!.psnr}`);
    assert.ok(rows.get(32)!.psnr >= 20, `PSNR at k = 32: ${rows.get(32)!.psnr}`);
    assert.ok(rows.get(32)!.mse < rows.get(4)!.mse && rows.get(4)!.mse < rows.get(1)!.mse, 'MSE falls with k');
    assert.ok(r.stdout.includes(`wrote ${out}`), r.stdout);
    const meta = await sharp(out).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 4 + 142 + 6 + 7 * (128 + 4), 18 + 6 + 4 + 10 * (128 + 4)]);
    // then the shipped generator: one sample per class, a preview at every k before the grid is written
    assert.match(r.stdout, /loaded the generator models\/fmnist-ar\/model\.safetensors/);
    const previews = [1, 2, 4, 8, 16, 32].map((k) => r.stdout.indexOf(`  k = ${String(k).padStart(2)}: decoded after`));
    assert.ok(previews.every((i, j) => i > 0 && (j === 0 || i > previews[j - 1])), r.stdout);
    const generated = out.replace(/\.png$/, '-generated.png');
    assert.ok(r.stdout.includes(`wrote ${generated}`), r.stdout);
    // rows labelled with the class names ('T-shirt/top': 11 glyphs × 12 px − 2), columns k = 1 … 32
    const gmeta = await sharp(generated).metadata();
    assert.deepEqual([gmeta.width, gmeta.height], [4 + 130 + 6 + 6 * (128 + 4), 18 + 6 + 4 + 10 * (128 + 4)]);
    // then the shipped text-conditional generator: one scene per prompt (n = 1 … 4 items), previews at k = 1 … 64
    assert.match(r.stdout, /loaded the text-conditional generator models\/scenes-ar\/model\.safetensors/);
    assert.ok(r.stdout.includes('  4: a t-shirt in the bottom left, a sandal in the top left'), r.stdout);
    assert.ok(r.stdout.lastIndexOf('  k = 64: decoded after') > r.stdout.indexOf('text-conditional generator'), r.stdout);
    const scenes = out.replace(/\.png$/, '-scenes.png');
    assert.ok(r.stdout.includes(`wrote ${scenes}`), r.stdout);
    // rows 'prompt 1' … 'prompt 4' (8 glyphs × 12 px − 2), columns k = 1 … 64, 64×64 scenes shown ×2
    const smeta = await sharp(scenes).metadata();
    assert.deepEqual([smeta.width, smeta.height], [4 + 94 + 6 + 7 * (128 + 4), 18 + 6 + 4 + 4 * (128 + 4)]);
  });
});
