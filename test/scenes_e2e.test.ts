// The text-conditional pipeline on Fashion-MNIST scenes end to end through the CLI, at toy size: train a tiny
// scenes tokenizer, tokenize scenes with their captions (and mirrored copies with mirrored captions), train a tiny
// text-conditional generator on them, generate from a prompt, and score it with eval-generation's scene metrics.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { FASHION_MNIST_DIR } from '../src/io/datasets.js';
import { loadFashionScenes, mirrorItems, parseSceneCaption, sceneCaption } from '../src/io/scenes.js';
import { readTokenDataset } from '../src/io/token_dataset.js';
import { root } from './helpers/tokens.js';

const haveFmnist = fs.existsSync(path.join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'));

function flextok(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: root, env: { ...process.env, FLEXTOK_DEBUG: '' }, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

describe('Fashion-MNIST scenes, text-conditional, end to end (toy sizes)', { skip: !haveFmnist && 'Fashion-MNIST not installed', timeout: 300_000 }, () => {
  let dir = '';
  let tokenizeLog = '';
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-scenes-e2e-'));
    const t = await flextok(['train-tokenizer', '--config', 'configs/scenes-test-tiny.json', '--out', path.join(dir, 'tok')]);
    assert.equal(t.code, 0, t.stderr);
    const d = await flextok(['tokenize-dataset', '--model', path.join(dir, 'tok'), '--data', 'fmnist-scenes', '--scenes', '65000', '--limit', '40', '--augment', 'flip', '--out', path.join(dir, 'tokens')]);
    assert.equal(d.code, 0, d.stderr);
    tokenizeLog = d.stdout + d.stderr;
    const a = await flextok(['train-ar', '--config', 'configs/ar-text-test-tiny.json', '--tokens', path.join(dir, 'tokens'), '--tokenizer', path.join(dir, 'tok'), '--out', path.join(dir, 'ar')]);
    assert.equal(a.code, 0, a.stderr);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('tokenize-dataset stores each scene\'s caption, and the mirrored caption with each mirrored copy', () => {
    const scenes = loadFashionScenes('train', { count: 40 });
    const ds = readTokenDataset(path.join(dir, 'tokens', 'train.safetensors'));
    assert.equal(ds.count, 80);
    for (let i = 0; i < 40; i++) {
      assert.equal(ds.captions![2 * i], scenes.caption(i));
      assert.equal(ds.captions![2 * i + 1], sceneCaption(mirrorItems(scenes.items(i))));
      assert.deepEqual(parseSceneCaption(ds.captions![2 * i + 1]!).map((it) => it.cls), scenes.items(i).map((it) => it.cls));
    }
    assert.deepEqual(ds.classNames, ['1 item', '2 items', '3 items', '4 items']);
    assert.equal(readTokenDataset(path.join(dir, 'tokens', 'test.safetensors')).captions!.length, 80);
    // --scenes sets how many train scenes are drawn (the test split stays 10,000)
    assert.match(tokenizeLog, /train: 40 of 65,000 images of fmnist-scenes-train/);
    assert.match(tokenizeLog, /test: 40 of 10,000 images of fmnist-scenes-test/);
  });

  it('generate --prompt writes a 64×64 scene; eval-generation reports exact match by n and k with a chart', async () => {
    const g = await flextok(['generate', '--model', path.join(dir, 'ar'), '--prompt', scenesPrompt(), '--steps', '1', '--out-dir', path.join(dir, 'gen')]);
    assert.equal(g.code, 0, g.stderr);
    const meta = await sharp(path.join(dir, 'gen', '0_0.png')).metadata();
    assert.deepEqual([meta.width, meta.height], [64, 64]);
    const e = await flextok(['eval-generation', '--model', path.join(dir, 'ar'), '--per-n', '2', '--recon', '8', '--ks', '1,8', '--steps', '1', '--out-dir', path.join(dir, 'eval')]);
    assert.equal(e.code, 0, e.stderr);
    const rep = JSON.parse(fs.readFileSync(path.join(dir, 'eval', 'report.json'), 'utf8')) as { samples: number; promptsByN: number[]; rows: { k: number; generated: { exactByN: number[]; cell: number }; reconstructed: { cell: number } }[] };
    assert.equal(rep.samples, 8);
    assert.deepEqual(rep.promptsByN, [2, 2, 2, 2]);
    assert.deepEqual(rep.rows.map((r) => r.k), [1, 8]);
    assert.ok(rep.rows.every((r) => r.generated.exactByN.length === 4 && r.generated.cell >= 0 && r.generated.cell <= 1 && r.reconstructed.cell >= 0));
    assert.match(fs.readFileSync(path.join(dir, 'eval', 'report.md'), 'utf8'), /\| n = 4 \|.*\|/);
    assert.ok(fs.existsSync(path.join(dir, 'eval', 'chart.png')));
  });

  it('scripts/eval-tokenizer.ts --data fmnist-scenes scores reconstructions with the scene metric (and the originals, its ceiling), with the classifier --classifier names', async () => {
    const json = path.join(dir, 'tok-eval.json');
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', 'scripts/eval-tokenizer.ts', '--model', path.join(dir, 'tok'), '--data', 'fmnist-scenes', '--n', '6', '--k', '1,8', '--steps', '1', '--batch', '4', '--json', json,
        '--classifier', 'models/fmnist-classifier-robust/classifier.safetensors'],
        { cwd: root }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }));
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\| k \| exact match \| per-cell accuracy \|/);
    assert.match(r.stdout, /classified by fmnist-classifier-robust\)/, 'the metric uses the classifier --classifier names');
    const rep = JSON.parse(fs.readFileSync(json, 'utf8')) as { images: number; scenes: { original: { exact: number; cell: number }; rows: { k: number; exact: number; cell: number }[] } };
    assert.equal(rep.images, 6);
    assert.deepEqual(rep.scenes.rows.map((x) => x.k), [1, 8]);
    // every score is a multiple of 1/6 (exact) or 1/24 (cells), summed over batches of 4 and 2 scenes
    for (const x of [...rep.scenes.rows, rep.scenes.original]) {
      assert.ok(Math.abs(x.exact * 6 - Math.round(x.exact * 6)) < 1e-9 && Math.abs(x.cell * 24 - Math.round(x.cell * 24)) < 1e-9, JSON.stringify(x));
    }
    assert.ok(rep.scenes.original.cell >= 0.75, `the classifier reads the original scenes (${rep.scenes.original.cell})`);
  });
});

/** A prompt every toy vocabulary knows: the first train scene's caption. */
function scenesPrompt(): string {
  return loadFashionScenes('train', { count: 1 }).caption(0);
}
