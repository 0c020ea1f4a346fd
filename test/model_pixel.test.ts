// Pixel-space checkpoints (no VAE; written by the trainer's exportTokenizer) load through FlexTok.load and
// give exactly what the same modules give in memory (FlexTok.fromModules, as the trainer samples) for the same noise.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CheckpointConfigError, IDENTITY_VAE_TARGET, readCheckpointConfig } from '../src/flextok/checkpoint.js';
import type { FlowDecoder } from '../src/flextok/decoder.js';
import type { RegisterEncoder } from '../src/flextok/encoder.js';
import { IdentityLatentCodec } from '../src/flextok/latent_codec.js';
import { FlexTok, FlexTokInputError, reconstructionNoise } from '../src/flextok/model.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { namedTensors } from '../src/tensor/module.js';
import { Rng } from '../src/tensor/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import { decoderConfigOf, encoderConfigOf, parseTokenizerConfig, readJsonFile, type TokenizerTrainConfig } from '../src/train/config.js';
import { exportedFlexTokConfig, exportTokenizer, PIXEL_SPACE_VAE_TARGET } from '../src/train/export.js';
import { initDecoder, initEncoder } from '../src/train/init.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

/** A tiny 1-channel 16×16 tokenizer (4×4 patches, 8 tokens) with every weight random (no zero heads). */
function tinyPixelModel(): { cfg: TokenizerTrainConfig; encoder: RegisterEncoder; decoder: FlowDecoder } {
  const cfg = parseTokenizerConfig(readJsonFile(path.join(ROOT, 'configs/test-tiny.json')), 'configs/test-tiny.json');
  const rng = new Rng(3);
  const encoder = initEncoder(encoderConfigOf(cfg.model, 1, 16), rng);
  const decoder = initDecoder(decoderConfigOf(cfg.model, 1, 16), rng);
  for (const [name, t] of [...namedTensors(encoder, 'enc'), ...namedTensors(decoder, 'dec')]) {
    if (name.endsWith('enc_posemb_module.posembs') || name.endsWith('dec_patches_posemb_module.posembs')) continue; // fixed sin-cos tables
    const d = t.f;
    for (let i = 0; i < d.length; i++) d[i] += 0.2 * rng.normal();
  }
  return { cfg, encoder, decoder };
}

function sameValues(a: Tensor, b: Tensor, what: string): void {
  assert.deepEqual([...a.shape], [...b.shape], `${what}: shape`);
  assert.deepEqual(Array.from(a.f), Array.from(b.f), what);
}

describe('pixel-space checkpoints', () => {
  let dir: string;
  let file: string;
  let inMemory: FlexTok;
  let model: FlexTok;
  const images = Tensor.rand([3, 1, 16, 16], new Rng(5), 'float32', -1, 1);

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-pixel-'));
    file = path.join(dir, 'model.safetensors');
    const { cfg, encoder, decoder } = tinyPixelModel();
    exportTokenizer(file, { encoder, decoder, fsqLevels: cfg.model.fsq_levels, flow: cfg.flow, cfgDropout: cfg.flow.cfg_dropout, vae: { kind: 'identity', channels: 1 }, dtype: 'F32' });
    const config = exportedFlexTokConfig(encoder.config, decoder.config, cfg.model.fsq_levels, cfg.flow, cfg.flow.cfg_dropout, { kind: 'identity', channels: 1 });
    inMemory = FlexTok.fromModules(config, new IdentityLatentCodec(1), encoder, decoder, 'in memory');
    model = FlexTok.load(file);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('the config names the identity: 1 channel, no hub repository', () => {
    assert.equal(IDENTITY_VAE_TARGET, PIXEL_SPACE_VAE_TARGET);
    const config = readCheckpointConfig(file);
    assert.equal(config.vae.kind, 'identity');
    assert.equal(config.vae.latentChannels, 1);
    assert.equal(config.vae.hfHubPath, null);
    assert.ok(config.targets.some((t) => t.target === PIXEL_SPACE_VAE_TARGET && t.path === 'vae'));
  });

  it('refuses unknown arguments of the identity entry', () => {
    const { metadata, tensors } = readSafetensors(file);
    const bad = path.join(dir, 'bad.safetensors');
    writeSafetensors(bad, tensors, { ...metadata, vae: metadata.vae!.replace("'latent_channels': 1", "'latent_channels': 1, 'hf_hub_path': 'x/y'") });
    assert.throws(() => readCheckpointConfig(bad), (err: unknown) => err instanceof CheckpointConfigError && /unexpected argument 'hf_hub_path'/.test(err.message));
  });

  it('loads with the identity codec and the model geometry', () => {
    assert.ok(model.codec instanceof IdentityLatentCodec);
    assert.equal(model.isPixelSpace, true);
    assert.equal(model.imageChannels, 1);
    assert.equal(model.vaeDownsampling, 1);
    assert.equal(model.numTokens, 8);
    assert.equal(model.codebookSize, 8 * 5 * 5 * 5);
    assert.deepEqual(model.imageSize, [16, 16]);
    assert.equal(model.pixelsPerPatch, 4);
    assert.throws(() => model.vae, FlexTokInputError);
  });

  it('tokenize / detokenize / autoencode shapes', () => {
    const ids = model.tokenize(images);
    assert.equal(ids.length, 3);
    for (const seq of ids) {
      assert.equal(seq.length, 8);
      assert.ok(seq.every((id) => Number.isInteger(id) && id >= 0 && id < model.codebookSize));
    }
    const singles = [0, 1, 2].map((i) => new Tensor(images.f.slice(i * 256, (i + 1) * 256), [1, 1, 16, 16]));
    assert.deepEqual(model.tokenize(singles), ids);
    assert.deepEqual(model.tokenize(new Tensor(singles[1]!.f, [1, 16, 16])), [ids[1]]);
    assert.deepEqual([...model.detokenize(ids, { k: 2, steps: 2 }).shape], [3, 1, 16, 16]);
    assert.deepEqual([...model.detokenize([ids[0]!.slice(0, 3)], { steps: 1, imageSize: 8 }).shape], [1, 1, 8, 8]);
    const list = model.decodeImages(ids, { k: [1, 4, 8], steps: 1, imageSize: [[16, 16], [8, 16], [16, 8]] });
    assert.deepEqual(list.map((t) => [...t.shape]), [[1, 1, 16, 16], [1, 1, 8, 16], [1, 1, 16, 8]]);
    assert.deepEqual([...model.autoencode(images, { k: 4, steps: 1 }).shape], [3, 1, 16, 16]);
  });

  it('rejects bad k, tokens and image channels', () => {
    const ids = model.tokenize(images);
    assert.throws(() => model.detokenize(ids, { k: 0, steps: 1 }), /k must be an integer from 1 to 8/);
    assert.throws(() => model.detokenize(ids, { k: 9, steps: 1 }), /k must be an integer from 1 to 8/);
    assert.throws(() => model.detokenize([ids[0]!.slice(0, 2)], { k: 3, steps: 1 }), /only 2 tokens/);
    assert.throws(() => model.detokenize([[model.codebookSize]], { steps: 1 }), /outside the codebook/);
    assert.throws(() => model.tokenize(Tensor.zeros([1, 3, 16, 16])), (err: unknown) => err instanceof FlexTokInputError && /greyscale image \[1, 1, H, W\]/.test(err.message));
    assert.throws(() => model.tokenize(Tensor.zeros([1, 1, 14, 16])), /multiples of 4×4/);
    assert.throws(() => model.tokenize(Tensor.zeros([1, 1, 32, 32])), /larger than this model's 16×16/);
  });

  it('agrees with the same modules in memory (ids and reconstructions); reconstruct draws image i\'s noise from (seed, i)', () => {
    const ids = model.tokenize(images);
    assert.deepEqual(inMemory.tokenize(images), ids);
    const ks = [1, 3, 8];
    for (const [guidance, apg] of [[1, false], [2.5, false], [2.5, true]] as const) {
      const opts = { steps: 3, seed: 4, guidance, apg };
      const expected = inMemory.reconstruct(images, ks, opts);
      const fromFile = model.reconstruct(images, ks, opts);
      const noise = [0, 1, 2].map((i) => reconstructionNoise([1, 1, 16, 16], 4, i));
      ks.forEach((k, j) => {
        const direct = model.detokenize(ids, { k, steps: 3, guidance, apg, noise });
        sameValues(fromFile[j]!, expected[j]!, `k=${k} guidance ${guidance}${apg ? ' APG' : ''}: loaded vs in memory`);
        sameValues(direct, fromFile[j]!, `k=${k} guidance ${guidance}${apg ? ' APG' : ''}: reconstruct vs detokenize`);
      });
    }
    // firstIndex shifts the noise: the last two images alone, as images 1 and 2 of the set
    const tail = new Tensor(images.f.slice(256), [2, 1, 16, 16]);
    const part = model.reconstruct(tail, [3], { steps: 3, seed: 4, firstIndex: 1 })[0]!;
    const whole = model.reconstruct(images, [3], { steps: 3, seed: 4 })[0]!;
    assert.deepEqual(Array.from(part.f), Array.from(whole.f.slice(256)));
  });
});
