// VAE training: a few steps lower the loss, the exported diffusers folder reproduces the model, and a
// malformed image in a training folder is skipped with a message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { FlexTokVAE } from '../src/flextok/vae.js';
import { noGrad } from '../src/tensor/tensor.js';
import { parseVaeConfig, readJsonFile, type VaeTrainConfig } from '../src/train/config.js';
import { openDataset, sampleBatch, syntheticShapes } from '../src/train/data.js';
import { runVaeTraining, VaeTrainer } from '../src/train/vae.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function tinyVaeConfig(patch: (c: Record<string, any>) => void = () => {}): VaeTrainConfig {
  const c = readJsonFile(path.join(root, 'configs/vae-test-tiny.json')) as Record<string, any>;
  patch(c);
  return parseVaeConfig(c, 'test config');
}

test('a few VAE steps lower the reconstruction loss', () => {
  const cfg = tinyVaeConfig((c) => (c.optim.total_steps = 15));
  const ds = syntheticShapes(32, 16);
  const trainer = new VaeTrainer(cfg, ds);
  const images = sampleBatch(ds, 8);
  const l1 = (x: ReturnType<typeof sampleBatch>) => {
    const r = trainer.reconstruct(x);
    let s = 0;
    for (let i = 0; i < r.size; i++) s += Math.abs(r.f[i] - x.f[i]);
    return s / r.size;
  };
  const before = l1(images);
  const losses: number[] = [];
  for (let i = 0; i < 15; i++) losses.push(trainer.trainStep().loss);
  const after = l1(images);
  assert.ok(after < 0.7 * before, `L1 ${before.toFixed(4)} → ${after.toFixed(4)}`);
  assert.ok(losses.every(Number.isFinite));
});

test('train-vae writes a diffusers VAE that loads back, and skips a malformed image with a message', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-vae-'));
  const warn = console.warn;
  const warnings: string[] = [];
  console.warn = (...args: unknown[]) => warnings.push(args.join(' '));
  try {
    const folder = path.join(dir, 'images');
    fs.mkdirSync(folder);
    const ds = syntheticShapes(6, 16);
    for (let i = 0; i < 6; i++) {
      const px = Buffer.from(ds.get(i).image.map((v) => Math.round((v + 1) * 127.5)));
      await sharp(px, { raw: { width: 16, height: 16, channels: 1 } }).png().toFile(path.join(folder, `img${i}.png`));
    }
    fs.writeFileSync(path.join(folder, 'broken.png'), 'this is not a PNG');
    const cfg = tinyVaeConfig((c) => {
      c.data.source = folder;
      c.data.channels = 1;
      c.optim.batch_size = 4;
      c.optim.total_steps = 3;
      c.run.checkpoint_every = 0;
    });
    const opened = await openDataset(cfg.data, 'train');
    assert.equal(opened.size, 6);
    assert.ok(warnings.some((w) => w.includes('broken.png')), `a warning names the broken file: ${warnings.join(' | ')}`);

    const out = path.join(dir, 'run');
    const trainer = await runVaeTraining({ config: cfg, outDir: out, resume: false, log: () => {} });
    const lines = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 1); // log_every 5 > 3 steps: only the final step
    const vae = FlexTokVAE.fromFolder(path.join(out, 'vae'));
    assert.ok(vae.scalingFactor > 0 && Number.isFinite(vae.scalingFactor));
    const images = sampleBatch(opened, 2);
    const mine = trainer.reconstruct(images);
    const theirs = noGrad(() => vae.vae.decode(vae.posterior(images).mode()));
    assert.deepEqual(Array.from(theirs.f), Array.from(mine.f));
  } finally {
    console.warn = warn;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
