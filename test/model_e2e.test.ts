// End-to-end tests of the FlexTok model API on the golden e2e checkpoint: official parity (fp32 and bf16),
// input validation (k, token ids, image sizes) and batches of mixed sizes.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { FlexTok, FlexTokInputError } from '../src/flextok/model.js';
import { e2eParity, E2E_FLOAT_TOL } from '../src/flextok/parity.js';
import { readTensorFile } from '../src/flextok/parity_util.js';
import { slice } from '../src/tensor/ops.js';
import { Rng } from '../src/tensor/rng.js';
import { Tensor } from '../src/tensor/tensor.js';
import { goldenPath, goldenSkip, requireGolden } from './helpers/golden.js';

const E2E = goldenPath('e2e');
const NEED = ['e2e/model.safetensors', 'e2e/model_bf16.safetensors', 'e2e/io.safetensors', 'e2e/config.json', 'e2e/hub'];

describe('FlexTok end to end (golden e2e)', { skip: goldenSkip(...NEED) }, () => {
  let model: FlexTok;
  let images: Tensor;

  before(() => {
    requireGolden(...NEED);
    model = FlexTok.load(path.join(E2E, 'model.safetensors'));
    images = readTensorFile(path.join(E2E, 'io.safetensors')).get('in.images')!;
  });

  it('reproduces every golden tensor: token ids exactly, floats within 1e-4', () => {
    const results = e2eParity(E2E);
    const failures = results.filter((r) => !r.pass).map((r) => `${r.name}: err ${r.rel} ${r.note ?? ''}`);
    assert.deepEqual(failures, []);
    const ids = results.filter((r) => /token_ids/.test(r.name));
    assert.ok(ids.length >= 20);
    for (const r of ids) assert.equal(r.maxAbs, 0, r.name);
    for (const r of results) if (r.tol > 0) assert.ok(r.rel <= E2E_FLOAT_TOL, r.name);
    assert.ok(results.some((r) => r.name.startsWith('bf16.detok.full.apg.images')));
  });

  it('exposes the model geometry', () => {
    assert.equal(model.numTokens, 8);
    assert.equal(model.codebookSize, 1000);
    assert.equal(model.vaeDownsampling, 4);
    assert.equal(model.pixelsPerPatch, 8);
    assert.deepEqual(model.imageSize, [32, 32]);
    assert.equal(model.vae.scalingFactor, 0.4);
  });

  it('tokenizes independently of the batch and accepts mixed image sizes', () => {
    const a = slice(images, 0, 0, 1);
    const b = slice(images, 0, 1, 2);
    const small = slice(slice(b, 2, 0, 16), 3, 8, 32); // [1, 3, 16, 24]
    const batch = model.tokenize([a, small, b], { samplePosterior: false });
    assert.deepEqual(batch.map((ids) => ids.length), [8, 8, 8]);
    assert.deepEqual(model.tokenize(a, { samplePosterior: false }), [batch[0]]);
    assert.deepEqual(model.tokenize(images, { samplePosterior: false }), [batch[0], batch[2]]);
    // Seeded posterior sampling is reproducible and per image.
    assert.deepEqual(model.tokenize([a, b], { seed: 3 })[1], model.tokenize([b], { seed: 3 })[0]);
    for (const id of batch.flat()) assert.ok(Number.isInteger(id) && id >= 0 && id < 1000);
  });

  it('detokenizes any k in 1..R, mixed token counts and image sizes', () => {
    const ids = model.tokenize(images, { samplePosterior: false });
    const out = model.decodeImages([ids[0]!, ids[1]!.slice(0, 3)], {
      k: [5, 2],
      steps: 2,
      imageSize: [
        [32, 32],
        [16, 24],
      ],
    });
    assert.deepEqual(out[0]!.shape, [1, 3, 32, 32]);
    assert.deepEqual(out[1]!.shape, [1, 3, 16, 24]);
    const batch = model.detokenize(ids, { k: 1, steps: 2, guidance: 1 });
    assert.deepEqual(batch.shape, [2, 3, 32, 32]);
    // The same seed and tokens give the same image, alone or in a batch.
    const alone = model.detokenize([ids[1]!], { k: 1, steps: 2, guidance: 1 });
    assert.deepEqual(Array.from(alone.data), Array.from(slice(batch, 0, 1, 2).data));
    // noiseScale s decodes from s × the initial noise, given or drawn from the seed.
    const noise = [Tensor.randn([1, 4, 8, 8], new Rng(7))];
    const half = noise.map((x) => new Tensor(x.f.map((v) => v * 0.5), x.shape));
    const scaled = model.detokenize([ids[0]!], { k: 3, steps: 2, noise, noiseScale: 0.5 });
    assert.deepEqual(Array.from(scaled.data), Array.from(model.detokenize([ids[0]!], { k: 3, steps: 2, noise: half }).data));
    assert.notDeepEqual(Array.from(scaled.data), Array.from(model.detokenize([ids[0]!], { k: 3, steps: 2, noise }).data));
    const rec = model.autoencode(images, { k: 4, steps: 2 });
    assert.deepEqual(rec.shape, [2, 3, 32, 32]);
    for (const v of rec.data) assert.ok(Number.isFinite(v));
  });

  it('gives clear errors for bad k, token ids and sizes', () => {
    const ids = model.tokenize(images, { samplePosterior: false });
    const err = (re: RegExp) => (e: Error) => e instanceof FlexTokInputError && re.test(e.message);
    assert.throws(() => model.detokenize(ids, { k: 0, steps: 1 }), err(/k = 0 .*k must be an integer from 1 to 8/));
    assert.throws(() => model.detokenize(ids, { k: 9, steps: 1 }), err(/k = 9 .*from 1 to 8/));
    assert.throws(() => model.detokenize([ids[0]!.slice(0, 2)], { k: 3, steps: 1 }), err(/k = 3 for sequence 0, but it has only 2 tokens/));
    assert.throws(() => model.detokenize([[1, 2, 1000]], { steps: 1 }), err(/token id 1000 \(sequence 0, position 2\) is outside the codebook: valid ids are 0 to 999/));
    assert.throws(() => model.detokenize([[-1]], { steps: 1 }), err(/token id -1 .*valid ids are 0 to 999/));
    assert.throws(() => model.detokenize([[0.5]], { steps: 1 }), err(/token id 0\.5/));
    assert.throws(() => model.detokenize([new Array(9).fill(0)], { steps: 1 }), err(/has 9 tokens; this model takes at most 8/));
    assert.throws(() => model.detokenize([[]], { steps: 1 }), err(/token sequence 0 is empty/));
    assert.throws(() => model.detokenize(ids, { steps: 0 }), err(/steps must be a positive integer/));
    assert.throws(() => model.detokenize(ids, { steps: 1, noiseScale: -1 }), err(/noise scale must be a number ≥ 0, got -1/));
    assert.throws(() => model.detokenize(ids, { steps: 1, noiseScale: NaN }), err(/noise scale must be a number ≥ 0, got NaN/));
    assert.throws(() => model.tokenize(Tensor.zeros([1, 3, 30, 32])), err(/30×32 pixels; the sides must be positive multiples of 8×8/));
    assert.throws(() => model.tokenize(Tensor.zeros([1, 3, 64, 64])), err(/larger than this model's 32×32/));
    assert.throws(() => model.tokenize(Tensor.zeros([1, 4, 32, 32])), err(/expected an RGB image/));
    assert.throws(() => model.detokenize(ids, { steps: 1, imageSize: 12 }), err(/output size of sequence 0: 12×12/));
    assert.throws(() => model.detokenize(ids, { steps: 1, noise: [Tensor.randn([1, 4, 8, 8], new Rng(0))] }), err(/1 initial noise tensors for 2 token sequences/));
  });
});
