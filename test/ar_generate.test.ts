// Stage 2 end to end through the command line: a tiny generator trained by `flextok train-ar` on a synthetic
// token folder (recorded as made by the shipped tokenizer), then `flextok generate` (grid, per-sample PNGs with
// a tokens file that `flextok detokenize` reads, progressive previews written while generating, seeds), every
// bad input's error, the Generator API's previews and prefixes, and `flextok eval-generation`'s report and chart.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { Generator, previewLengths } from '../src/ar/generator.js';
import { parseArSampling } from '../src/ar/settings.js';
import { root, SHIPPED_TOKENIZER, writeSyntheticTokens } from './helpers/tokens.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function flextok(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: root, env: { ...process.env, FLEXTOK_DEBUG: '' }, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

function assertCleanError(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

describe('stage 2 through the CLI (tiny generator)', { timeout: 180_000 }, () => {
  let dir = '';
  let model = '';
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-ar-cli-'));
    writeSyntheticTokens(path.join(dir, 'tokens'));
    const r = await flextok(['train-ar', '--config', 'configs/ar-test-tiny.json', '--tokens', path.join(dir, 'tokens'), '--out', path.join(dir, 'run')]);
    assert.equal(r.code, 0, r.stderr);
    model = path.join(dir, 'run');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes one PNG per sample at the native size and a tokens file that detokenize reads', async () => {
    const out = path.join(dir, 'samples');
    const r = await flextok(['generate', '--model', model, '--class', 'sneaker,0', '--n', '2', '--tokens', '4', '--steps', '2', '--out-dir', out]);
    assert.equal(r.code, 0, r.stderr);
    const pngs = fs.readdirSync(out).filter((f) => f.endsWith('.png')).sort();
    assert.deepEqual(pngs, ['0_0.png', '0_1.png', '7_0.png', '7_1.png']);
    const meta = await sharp(path.join(out, '7_1.png')).metadata();
    assert.deepEqual([meta.width, meta.height], [32, 32]);
    const tokens = JSON.parse(fs.readFileSync(path.join(out, 'tokens.json'), 'utf8')) as { images: { file: string; tokens: number[] }[]; num_tokens: number };
    assert.equal(tokens.images.length, 4);
    assert.ok(tokens.images.every((img) => img.tokens.length === 4 && img.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < 64000)));
    const d = await flextok(['detokenize', path.join(out, 'tokens.json'), '--model', 'models/fmnist-default', '--steps', '2', '--out', path.join(dir, 'detok.png')]);
    assert.equal(d.code, 0, d.stderr);
    assert.ok(fs.existsSync(path.join(dir, 'detok_3.png')));
  });

  it('--progressive writes every preview while generating, then the grid and the strips', async () => {
    const grid = path.join(dir, 'prog', 'grid.png');
    const r = await flextok(['generate', '--model', model, '--class', 'all', '--steps', '1', '--out', grid, '--progressive']);
    assert.equal(r.code, 0, r.stderr);
    const ks = previewLengths(32);
    for (const k of ks) assert.ok(fs.existsSync(path.join(dir, 'prog', `grid_k${k}.png`)), `grid_k${k}.png`);
    const order = ks.map((k) => r.stderr.indexOf(`preview k = ${k} `));
    assert.ok(order.every((i) => i >= 0), r.stderr);
    assert.deepEqual([...order].sort((a, b) => a - b), order, 'previews reported in order of k');
    assert.ok(order[order.length - 1] < r.stderr.indexOf('generated 10 samples'), 'previews are written before generation ends');
    const strips = await sharp(path.join(dir, 'prog', 'grid_strips.png')).metadata();
    assert.ok(strips.width! > strips.height! / 10 * ks.length * 0.9, 'strips have one column per k');
  });

  it('the same seed gives the same tokens, another seed others', async () => {
    const run = async (seed: string, name: string) => {
      const out = path.join(dir, name);
      const r = await flextok(['generate', '--model', model, '--class', '3', '--n', '3', '--steps', '1', '--seed', seed, '--out-dir', out]);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(fs.readFileSync(path.join(out, 'tokens.json'), 'utf8')) as { images: { tokens: number[] }[] }).images.map((i) => i.tokens);
    };
    const a = await run('5', 's5a');
    assert.deepEqual(await run('5', 's5b'), a);
    assert.notDeepEqual(await run('6', 's6'), a);
  });

  it('bad inputs give one clear line each', async () => {
    const base = ['generate', '--model', model, '--out', path.join(dir, 'bad.png')];
    assertCleanError(await flextok([...base, '--class', 'hat']), /unknown class 'hat'.*Ankle boot/);
    assertCleanError(await flextok([...base, '--class', '12']), /unknown class '12'.*0\.\.9/);
    assertCleanError(await flextok([...base, '--tokens', '0']), /--tokens|1\.\.32|≥ 1/);
    assertCleanError(await flextok([...base, '--tokens', '33']), /1\.\.32/);
    assertCleanError(await flextok([...base, '--cfg', 'nan']), /--cfg/);
    assertCleanError(await flextok([...base, '--top-p', '0']), /top_p/);
    assertCleanError(await flextok([...base, '--apg', '--no-apg']), /--apg and --no-apg contradict/);
    assertCleanError(await flextok(['generate', '--model', model]), /--out/);
    assertCleanError(await flextok(['generate', '--model', path.join(dir, 'nope'), '--out', path.join(dir, 'x.png')]), /no such generator/);
    // a tokenizer other than the one the generator was trained on (the golden tiny e2e model or a changed copy)
    const other = path.join(dir, 'other-tokenizer');
    fs.mkdirSync(other);
    const bytes = fs.readFileSync(path.join(SHIPPED_TOKENIZER, 'model.safetensors'));
    bytes[bytes.length - 1] ^= 1; // one weight bit: same shapes, different sha256
    fs.writeFileSync(path.join(other, 'model.safetensors'), bytes);
    fs.copyFileSync(path.join(SHIPPED_TOKENIZER, 'train-config.json'), path.join(other, 'train-config.json'));
    assertCleanError(await flextok([...base, '--tokenizer', other]), /was trained on the tokenizer .*not on/);
  });

  it('Generator API: previews at k = 1, 2, 4, …, R before the result, prefixes of one generation', () => {
    const gen = Generator.load(model);
    const s = gen.settings({ seed: 3, decoder_steps: 1 });
    const seen: number[] = [];
    const { tokens, images } = gen.generateImages([1, 8], s, (p) => {
      seen.push(p.k);
      assert.equal(p.tokens[0].length, p.k);
      assert.deepEqual(p.images.shape, [2, 1, 32, 32]);
    });
    assert.deepEqual(seen, previewLengths(32));
    assert.equal(tokens[0].length, 32);
    assert.deepEqual(images.shape, [2, 1, 32, 32]);
    const short = gen.generateTokens([1, 8], gen.settings({ seed: 3, num_tokens: 5 }));
    assert.deepEqual(Array.from(short[1]), Array.from(tokens[1].subarray(0, 5)), 'a 5-token generation is the prefix of the 32-token one');
    assert.equal(gen.classIndex('Ankle boot'), 9);
    assert.equal(gen.classIndex('t-shirt'), 0);
    assert.throws(() => gen.settings({ num_tokens: 40 }), /1\.\.32/);
  });

  it('decoder_apg chooses the decoder guidance: plain CFG or APG, as the tokenizer decodes with it', () => {
    const gen = Generator.load(model);
    const tokens = gen.generateTokens([2], gen.settings({ seed: 5, num_tokens: 4 }));
    const decodeWith = (apg: boolean) => gen.decode(tokens, 4, gen.settings({ seed: 5, decoder_steps: 2, decoder_guidance: 3, decoder_apg: apg })).f;
    const plain = gen.tokenizer.detokenize(tokens.map((t) => Array.from(t)), { k: 4, steps: 2, guidance: 3, apg: false, seed: 5 }).f;
    const apg = gen.tokenizer.detokenize(tokens.map((t) => Array.from(t)), { k: 4, steps: 2, guidance: 3, apg: true, seed: 5 }).f;
    assert.deepEqual(decodeWith(false), plain);
    assert.deepEqual(decodeWith(true), apg);
    assert.notDeepEqual(plain, apg);
    assert.throws(() => parseArSampling({ decoder_apg: 'yes' }), /decoder_apg: expected true or false/);
    assert.equal(parseArSampling({}).decoder_apg, true, 'stored settings without the key keep APG, as before the key existed');
  });

  it('decoder_noise_scale scales the decoder\'s initial noise, as the tokenizer decodes with it', () => {
    const gen = Generator.load(model);
    const tokens = gen.generateTokens([2], gen.settings({ seed: 5, num_tokens: 4 }));
    const ids = tokens.map((t) => Array.from(t));
    const scaled = gen.decode(tokens, 4, gen.settings({ seed: 5, decoder_steps: 2, decoder_noise_scale: 0.5 })).f;
    assert.deepEqual(scaled, gen.tokenizer.detokenize(ids, { k: 4, steps: 2, guidance: 1, seed: 5, noiseScale: 0.5 }).f);
    assert.notDeepEqual(scaled, gen.decode(tokens, 4, gen.settings({ seed: 5, decoder_steps: 2 })).f);
    assert.equal(parseArSampling({}).decoder_noise_scale, 1, 'stored settings without the key keep the official sampler');
    assert.throws(() => parseArSampling({ decoder_noise_scale: -0.5 }), /decoder_noise_scale: expected a number ≥ 0/);
  });

  it('eval-generation writes the table, the JSON report and the chart', async () => {
    const out = path.join(dir, 'eval');
    const r = await flextok(['eval-generation', '--model', model, '--per-class', '2', '--ks', '1,32', '--recon', '20', '--steps', '1', '--out-dir', out]);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as { rows: { k: number; fd: number; accuracy: number[] }[]; fdFloor: number; samples: number };
    assert.equal(rep.samples, 20);
    assert.deepEqual(rep.rows.map((row) => row.k), [1, 32]);
    assert.ok(rep.rows.every((row) => Number.isFinite(row.fd) && row.fd >= 0 && row.accuracy.every((a) => a >= 0 && a <= 1)));
    assert.ok(rep.fdFloor >= 0);
    assert.match(fs.readFileSync(path.join(out, 'report.md'), 'utf8'), /\| 32 \|/);
    const chart = await sharp(path.join(out, 'chart.png')).metadata();
    assert.ok(chart.width! >= 900 && chart.height! >= 400);
    // the reconstruction columns can be taken from that report (they do not depend on the generator)
    const again = path.join(dir, 'eval2');
    const r2 = await flextok(['eval-generation', '--model', model, '--per-class', '2', '--ks', '1,32', '--recon', '20', '--steps', '1', '--seed', '1000',
      '--reuse-recon', path.join(out, 'report.json'), '--out-dir', again]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.doesNotMatch(r2.stderr, /reconstruct k = /, 'no reconstruction was decoded');
    const rep2 = JSON.parse(fs.readFileSync(path.join(again, 'report.json'), 'utf8')) as { rows: { fdRecon: number; fd: number }[] };
    assert.deepEqual(rep2.rows.map((row) => row.fdRecon), (rep.rows as unknown as { fdRecon: number }[]).map((row) => row.fdRecon));
    assertCleanError(await flextok(['eval-generation', '--model', model, '--per-class', '2', '--ks', '1', '--recon', '20', '--steps', '2',
      '--reuse-recon', path.join(out, 'report.json'), '--out-dir', again]), /--reuse-recon .*differ/);
  });
});

describe('text-conditional generation through the CLI (tiny generator on captioned tokens)', { timeout: 180_000 }, () => {
  let dir = '';
  let model = '';
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-ar-text-'));
    writeSyntheticTokens(path.join(dir, 'tokens'), 64, 16, 1, true);
    const r = await flextok(['train-ar', '--config', 'configs/ar-text-test-tiny.json', '--tokens', path.join(dir, 'tokens'), '--out', path.join(dir, 'run')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /text encoder d16 × 1 over \d+ words/);
    model = path.join(dir, 'run');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('--prompts FILE with --out-dir writes <line index>_<sample index>.png and tokens.json; --prompt with --out a grid', async () => {
    const file = path.join(dir, 'prompts.txt');
    fs.writeFileSync(file, 'a bag in the top left\n\nan ankle boot in the bottom right\n');
    const out = path.join(dir, 'text-samples');
    const r = await flextok(['generate', '--model', model, '--prompts', file, '--n', '2', '--tokens', '4', '--steps', '1', '--out-dir', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fs.readdirSync(out).sort(), ['0_0.png', '0_1.png', '2_0.png', '2_1.png', 'tokens.json']);
    const g = await flextok(['generate', '--model', model, '--prompt', 'a coat in the top right', '--steps', '1', '--out', path.join(dir, 'text.png')]);
    assert.equal(g.code, 0, g.stderr);
    assert.ok(fs.existsSync(path.join(dir, 'text.png')));
  });

  it('an unknown word, --class on a text model and --prompt on a class model are clear errors', async () => {
    assertCleanError(await flextok(['generate', '--model', model, '--prompt', 'a hat in the top left', '--steps', '1', '--out', path.join(dir, 'x.png')]),
      /the word "hat" is not in the model's vocabulary/);
    assertCleanError(await flextok(['generate', '--model', model, '--class', '1', '--steps', '1', '--out', path.join(dir, 'x.png')]), /text-conditional generator: give --prompt/);
    assertCleanError(await flextok(['generate', '--prompt', 'a bag in the top left', '--steps', '1', '--out', path.join(dir, 'x.png')]), /class-conditional generator: give --class/);
    const gen = Generator.load(model);
    assert.ok(gen.isText);
    assert.throws(() => gen.generateTokens([1], gen.settings()), /text-conditional generator: give prompts/);
  });
});
