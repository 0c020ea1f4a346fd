// Tokenizer training: the loss goes down, nested dropout draws and masks as the official code does,
// REPA contributes a finite loss and gradients, configs are validated, and the exported
// model.safetensors has the official layout and reproduces the in-memory model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sampleKeepK } from '../src/flextok/decoder.js';
import { readSafetensors, toFloat32 } from '../src/io/safetensors.js';
import { parsePyLiteral } from '../src/io/pyliteral.js';
import { Rng } from '../src/tensor/rng.js';
import { noGrad, Tensor } from '../src/tensor/tensor.js';
import { ConfigError, parseTokenizerConfig, readJsonFile, type TokenizerTrainConfig } from '../src/train/config.js';
import { sampleBatch, syntheticShapes } from '../src/train/data.js';
import { exportTokenizer, officialConfig, officialStateDict } from '../src/train/export.js';
import { FlexTok } from '../src/flextok/model.js';
import { initDecoder, initEncoder } from '../src/train/init.js';
import { pyFloatRepr, toPyStr } from '../src/train/pyliteral_write.js';
import type { RepaTeacher } from '../src/train/repa.js';
import { TokenizerTrainer, runTokenizerTraining } from '../src/train/tokenizer.js';
import { AR_META, Generator } from '../src/ar/generator.js';
import { parseArModelConfig } from '../src/ar/config.js';
import { FlexAR } from '../src/ar/model.js';
import { retargetGenerator } from '../src/ar/retarget.js';
import { readCheckpoint, tokenizationDifference } from '../src/flextok/checkpoint.js';
import { sha256OfFile } from '../src/io/token_dataset.js';
import { goldenPath, goldenSkip, requireGolden } from './helpers/golden.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const tinyJson = readJsonFile(path.join(root, 'configs/test-tiny.json')) as Record<string, unknown>;

function tinyConfig(patch: (c: Record<string, any>) => void = () => {}): TokenizerTrainConfig {
  const c = JSON.parse(JSON.stringify(tinyJson)) as Record<string, any>;
  patch(c);
  return parseTokenizerConfig(c, 'test config');
}

/** A fixed toy teacher: 4×4 average pooling of the image through a fixed random 1→8 channel map. */
const toyTeacher: RepaTeacher = {
  features(images: Tensor): Tensor {
    const [b, , h, w] = images.shape;
    const g = 4;
    const proj = Tensor.randn([8], new Rng(99)).f;
    const out = new Float32Array(b * 8 * g * g);
    for (let n = 0; n < b; n++) {
      for (let i = 0; i < g; i++) {
        for (let j = 0; j < g; j++) {
          let s = 0;
          const ch = h / g;
          const cw = w / g;
          for (let y = i * ch; y < (i + 1) * ch; y++) for (let x = j * cw; x < (j + 1) * cw; x++) s += images.f[n * h * w + y * w + x];
          const m = s / (ch * cw);
          for (let c = 0; c < 8; c++) out[((n * 8 + c) * g + i) * g + j] = Math.tanh(proj[c] * m + 0.1 * c);
        }
      }
    }
    return new Tensor(out, [b, 8, g, g]);
  },
};

test('keep-k sampling follows the official modes (spec §10.2)', () => {
  const rng = new Rng(1);
  const draw = (mode: 'uniform' | 'pow2' | 'uniform_pow2', n: number) => Array.from({ length: 20000 }, () => sampleKeepK(mode, n, (lo, hi) => rng.randint(lo, hi)));
  const freq = (xs: number[], v: number) => xs.filter((x) => x === v).length / xs.length;

  const uni = draw('uniform', 32);
  assert.ok(uni.every((k) => Number.isInteger(k) && k >= 1 && k <= 32));
  assert.ok(Math.abs(uni.reduce((a, b) => a + b, 0) / uni.length - 16.5) < 0.3);
  const pow2 = draw('pow2', 32);
  for (const k of [1, 2, 4, 8, 16, 32]) assert.ok(Math.abs(freq(pow2, k) - 1 / 6) < 0.015, `pow2 P(k=${k})`);
  assert.ok(pow2.every((k) => [1, 2, 4, 8, 16, 32].includes(k)));
  const up = draw('uniform_pow2', 32);
  const expected: Record<number, number> = { 1: 1 / 32, 2: 1 / 32, 4: 2 / 32, 8: 4 / 32, 16: 8 / 32, 32: 16 / 32 };
  for (const [k, p] of Object.entries(expected)) assert.ok(Math.abs(freq(up, Number(k)) - p) < 0.015, `uniform_pow2 P(k=${k}) = ${freq(up, Number(k))}, expected ${p}`);
});

test('training draws keep counts and null conditions, and the decoder ignores masked tokens', () => {
  const cfg = tinyConfig((c) => (c.flow.cfg_dropout = 0.5));
  const ds = syntheticShapes(32, 16);
  const trainer = new TokenizerTrainer(cfg, { dataset: ds, vae: null, teacher: null });
  const stats = trainer.microStep(sampleBatch(ds, 16));
  assert.equal(stats.keepK.length, 16);
  assert.ok(stats.keepK.every((k) => [1, 2, 4, 8].includes(k)), `pow2 keep counts, got ${stats.keepK}`);
  assert.ok(stats.uncond.some(Boolean) && stats.uncond.some((u) => !u), 'with p = 0.5 some images are unconditional and some not');
  assert.ok(stats.sigmas.every((s) => s > 0 && s < 1));

  // Tokens at positions ≥ k never reach the decoder output.
  noGrad(() => {
    const dec = trainer.decoder;
    const x = Tensor.randn([1, 1, 16, 16], new Rng(3));
    const codes = trainer.fsq.idsToCodes(Int32Array.from([5, 17, 99, 250, 3, 3, 3, 3]));
    const other = trainer.fsq.idsToCodes(Int32Array.from([5, 17, 99, 250, 400, 401, 402, 403]));
    const shape = [1, 8, 4];
    const v1 = dec.forward([x], [0.5], [new Tensor(codes.f, shape)], [4])[0];
    const v2 = dec.forward([x], [0.5], [new Tensor(other.f, shape)], [4])[0];
    assert.deepEqual(Array.from(v1.f), Array.from(v2.f));
  });
});

test('nested_dropout_switch changes the keep-k mode at its step and leaves the random stream alone', () => {
  const cfg = tinyConfig((c) => (c.flow.nested_dropout_switch = { step: 3, mode: 'uniform' }));
  assert.deepEqual(cfg.flow.nested_dropout_switch, { step: 3, mode: 'uniform' });
  const ds = syntheticShapes(32, 16);
  const trainer = new TokenizerTrainer(cfg, { dataset: ds, vae: null, teacher: null });
  assert.equal(trainer.keepKMode(), 'pow2');
  trainer.step = 3;
  assert.equal(trainer.keepKMode(), 'uniform');
  const keepK = trainer.microStep(sampleBatch(ds, 64)).keepK;
  assert.ok(keepK.some((k) => ![1, 2, 4, 8].includes(k)), `uniform keep counts after the switch, got ${keepK}`);
  // One draw per image in every mode: the stream after the keep-k draws does not depend on the mode.
  const after = (mode: 'uniform' | 'pow2' | 'uniform_pow2') => {
    const rng = new Rng(5);
    for (let i = 0; i < 10; i++) sampleKeepK(mode, 8, (lo, hi) => rng.randint(lo, hi));
    return rng.uniform();
  };
  assert.equal(after('pow2'), after('uniform'));
  assert.equal(after('pow2'), after('uniform_pow2'));
  assert.throws(() => tinyConfig((c) => (c.flow.nested_dropout_switch = { step: -1, mode: 'uniform' })), /flow.nested_dropout_switch.step/);
  assert.throws(() => tinyConfig((c) => (c.flow.nested_dropout_switch = { step: 1, mode: 'linear' })), /flow.nested_dropout_switch.mode/);
  assert.throws(() => tinyConfig((c) => (c.flow.nested_dropout_switch = { mode: 'uniform' })), /flow.nested_dropout_switch.step: required/);
});

test('the flow-matching loss decreases over a few dozen steps on a small subset', () => {
  const cfg = tinyConfig((c) => {
    c.optim.total_steps = 40;
    c.optim.grad_accum = 1;
    c.optim.warmup_steps = 4;
    c.optim.lr = 2e-3;
    c.flow.cfg_dropout = 0;
  });
  const ds = syntheticShapes(32, 16);
  const trainer = new TokenizerTrainer(cfg, { dataset: ds, vae: null, teacher: null });
  const evalImages = sampleBatch(ds, 16);
  const before = trainer.evaluateLoss(evalImages, 5);
  for (let i = 0; i < 40; i++) trainer.trainStep();
  const after = trainer.evaluateLoss(evalImages, 5);
  assert.ok(after < 0.8 * before, `loss ${before.toFixed(4)} → ${after.toFixed(4)}`);
});

test('REPA adds a finite cosine term and trains the projector and the decoder up to the tapped block', () => {
  const cfg = tinyConfig((c) => (c.repa = { layer: 0, weight: 0.5, projector_hidden: 16, resample: 'avgpool' }));
  const ds = syntheticShapes(16, 16);
  const trainer = new TokenizerTrainer(cfg, { dataset: ds, vae: null, teacher: toyTeacher });
  const s = trainer.microStep(sampleBatch(ds, 8));
  assert.ok(s.repa !== null && Number.isFinite(s.repa) && s.repa >= -1 && s.repa <= 1, `repa ${s.repa}`);
  assert.ok(Math.abs(s.loss - (s.rf + 0.5 * s.repa!)) < 1e-5);
  const gradOf = (name: string) => trainer.named.find(([n]) => n === name)![1].grad;
  const g1 = gradOf('repa_projector.fc1.weight');
  assert.ok(g1 && g1.f.some((v) => v !== 0), 'projector gets gradients');
  // Bilinear resampling also works (teacher grid 4×4 to the 4×4 patch grid and beyond).
  const cfg2 = tinyConfig((c) => (c.repa = { layer: 1, weight: 1, projector_hidden: 8, resample: 'bilinear' }));
  const t2 = new TokenizerTrainer(cfg2, { dataset: ds, vae: null, teacher: toyTeacher });
  const s2 = t2.trainStep();
  assert.ok(s2.repa !== null && Number.isFinite(s2.repa));
});

test('a training run with REPA logs the REPA term', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-repa-'));
  try {
    const cfg = tinyConfig((c) => {
      c.repa = { layer: 0, weight: 0.5, projector_hidden: 16 };
      c.optim.total_steps = 4;
      c.run.checkpoint_every = 0;
    });
    await runTokenizerTraining({ config: cfg, outDir: dir, resume: false, teacher: toyTeacher, log: () => {} });
    const lines = fs.readFileSync(path.join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    assert.equal(lines.length, 2);
    for (const l of lines) {
      assert.ok(Number.isFinite(l.repa) && Number.isFinite(l.rf) && Number.isFinite(l.lr) && l.images_per_sec > 0);
    }
    assert.ok(fs.existsSync(path.join(dir, 'samples', 'step_000004.png')));
    // The exported model has no REPA projector (training only).
    const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
    assert.ok(![...tensors.keys()].some((k) => k.includes('repa')));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('init: a new decoder trained for a frozen, loaded encoder keeps its tokens exactly', async () => {
  const dirA = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-initA-'));
  const dirB = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-initB-'));
  try {
    const cfgA = tinyConfig((c) => {
      c.optim.total_steps = 4;
      c.run.checkpoint_every = 0;
    });
    await runTokenizerTraining({ config: cfgA, outDir: dirA, resume: false, log: () => {} });
    const cfgB = tinyConfig((c) => {
      c.init = { from: dirA, modules: ['encoder'], freeze_encoder: true };
      c.model.decoder = { dim: 48, depth: 1, head_dim: 16, mlp_ratio: 2.0 };
      c.optim.total_steps = 4;
      c.run.checkpoint_every = 2;
    });
    const logs: string[] = [];
    const trainer = await runTokenizerTraining({ config: cfgB, outDir: dirB, resume: false, log: (l) => logs.push(l) });
    assert.ok(logs.some((l) => l.includes('init: encoder from') && l.includes('(encoder frozen)')), logs.join('\n'));
    assert.ok(trainer.paramNames.length > 0 && trainer.paramNames.every((n) => !n.startsWith('encoder.')));
    const a = readSafetensors(path.join(dirA, 'model.safetensors')).tensors;
    const b = readSafetensors(path.join(dirB, 'model.safetensors')).tensors;
    let encoderTensors = 0;
    for (const [name, t] of a) {
      if (!name.startsWith('encoder.')) continue;
      encoderTensors++;
      assert.deepEqual(toFloat32(b.get(name)!), toFloat32(t), name);
    }
    assert.ok(encoderTensors > 5);
    const wq = 'decoder.module_dict.dec_transformer.blocks.0.attn.wq.weight';
    assert.deepEqual([a.get(wq)!.shape, b.get(wq)!.shape], [[32, 32], [48, 48]]);
    const images = sampleBatch(syntheticShapes(64, 16), 6);
    assert.deepEqual(FlexTok.load(path.join(dirB, 'model.safetensors')).tokenize(images), FlexTok.load(path.join(dirA, 'model.safetensors')).tokenize(images));
    // The checkpoint (decoder-only optimizer state) loads into a trainer built from the same config: resume works.
    const { loadCheckpoint } = await import('../src/train/run.js');
    const again = new TokenizerTrainer(cfgB, { dataset: syntheticShapes(64, 16), vae: null, teacher: null });
    const r = loadCheckpoint(path.join(dirB, 'checkpoint.safetensors'), { named: again.named, optimizer: again.optimizer, optimNames: again.paramNames, ema: again.ema, emaNames: again.paramNames, rngs: { train: again.rng }, loader: again.loader });
    assert.equal(r.step, 4);
    // Mismatches are errors that name the problem.
    const source = FlexTok.load(path.join(dirA, 'model.safetensors'));
    const wider = new TokenizerTrainer(tinyConfig((c) => {
      c.init = { from: dirA, modules: ['encoder', 'decoder'] };
      c.model.decoder.dim = 48;
    }), { dataset: syntheticShapes(64, 16), vae: null, teacher: null });
    assert.throws(() => wider.initFrom(source, 'A'), /init.from A: decoder.module_dict.* is \[.*\] there and \[.*\] here; model.decoder must match/);
    const otherFsq = new TokenizerTrainer(tinyConfig((c) => {
      c.init = { from: dirA };
      c.model.fsq_levels = [8, 8, 5, 5];
    }), { dataset: syntheticShapes(64, 16), vae: null, teacher: null });
    assert.throws(() => otherFsq.initFrom(source, 'A'), /FSQ levels \[8, 5, 5, 5\] differ from this config's \[8, 8, 5, 5\]/);
    await assert.rejects(
      runTokenizerTraining({ config: tinyConfig((c) => (c.init = { from: path.join(dirA, 'missing') })), outDir: path.join(dirB, 'x'), resume: false, log: () => {} }),
      /init.from: .*missing does not exist/,
    );
  } finally {
    fs.rmSync(dirA, { recursive: true, force: true });
    fs.rmSync(dirB, { recursive: true, force: true });
  }
});

test('init.grow_decoder: a deeper decoder loaded from a shallower one computes exactly the same at step 0, then trains', async () => {
  const dirA = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-growA-'));
  const dirB = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-growB-'));
  try {
    const cfgA = tinyConfig((c) => {
      c.optim.total_steps = 4;
      c.run.checkpoint_every = 0;
    });
    await runTokenizerTraining({ config: cfgA, outDir: dirA, resume: false, log: () => {} });
    const source = FlexTok.load(path.join(dirA, 'model.safetensors'));
    const depthA = cfgA.model.decoder.depth;
    const cfgB = tinyConfig((c) => {
      c.init = { from: dirA, modules: ['encoder', 'decoder'], freeze_encoder: true, grow_decoder: true };
      c.model.decoder.depth = depthA + 2;
      c.optim.total_steps = 3;
      c.run.checkpoint_every = 0;
    });
    const grown = new TokenizerTrainer(cfgB, { dataset: syntheticShapes(64, 16), vae: null, teacher: null });
    grown.initFrom(source, 'A');
    assert.equal(grown.decoder.dec_transformer.blocks.length, depthA + 2);
    const images = sampleBatch(syntheticShapes(64, 16), 3);
    const opts = { steps: 3, guidance: 2, seed: 5 };
    const before = source.reconstruct(images, [1, 4], opts);
    const after = grown.model.reconstruct(images, [1, 4], opts);
    for (let i = 0; i < before.length; i++) assert.deepEqual(after[i].f, before[i].f, `k index ${i}`);
    // Training moves the new blocks (their AdaLN gates leave zero) while the tokens stay the source's.
    const logs: string[] = [];
    const trained = await runTokenizerTraining({ config: cfgB, outDir: dirB, resume: false, log: (l) => logs.push(l) });
    assert.ok(logs.some((l) => l.includes(`decoder grown to ${depthA + 2} blocks`)), logs.join('\n'));
    const gate = trained.named.find(([n]) => n === `decoder.module_dict.dec_transformer.blocks.${depthA + 1}.adaLN_modulation.1.weight`)![1];
    assert.ok(Array.from(gate.f).some((v) => v !== 0));
    assert.deepEqual(FlexTok.load(path.join(dirB, 'model.safetensors')).tokenize(images), source.tokenize(images));
    // So a generator trained on A's tokens may be pointed at B: the check passes, the weights are copied byte for byte.
    assert.equal(tokenizationDifference(readCheckpoint(dirA), readCheckpoint(dirB)), null);
    const arFile = path.join(dirB, 'ar.safetensors');
    FlexAR.init(parseArModelConfig({ vocab_size: 1000, fsq_levels: [8, 5, 5, 5], num_tokens: 8, num_classes: 10, dim: 32, depth: 1, head_dim: 16, head: 'digits' }, 'test'), new Rng(3))
      .save(arFile, { [AR_META.tokenizer]: dirA, [AR_META.tokenizerSha256]: sha256OfFile(path.join(dirA, 'model.safetensors')) });
    const moved = path.join(dirB, 'ar-moved.safetensors');
    retargetGenerator(arFile, dirA, dirB, moved);
    const [before2, after2] = [readSafetensors(arFile), readSafetensors(moved)];
    assert.equal(after2.metadata[AR_META.tokenizer], dirB);
    assert.equal(after2.metadata[AR_META.tokenizerSha256], sha256OfFile(path.join(dirB, 'model.safetensors')));
    for (const [name, t] of before2.tensors) assert.deepEqual(after2.tensors.get(name)!.data, t.data, name);
    assert.equal(Generator.load(moved).tokenizer.source, path.resolve(dirB, 'model.safetensors'));
    assert.throws(() => Generator.load(arFile, { tokenizer: dirB }), /was trained on the tokenizer/);
    assert.throws(() => retargetGenerator(moved, dirA, dirB, path.join(dirB, 'x.safetensors')), /records the tokenizer .* give the tokenizer it was trained on as the old one/);
    // A tokenizer whose encoder was trained (not frozen) tokenizes differently, and is refused by name.
    const dirC = path.join(dirB, 'c');
    await runTokenizerTraining({ config: tinyConfig((c) => { c.init = { from: dirA, modules: ['encoder'] }; c.optim.total_steps = 2; c.run.checkpoint_every = 0; }), outDir: dirC, resume: false, log: () => {} });
    assert.match(tokenizationDifference(readCheckpoint(dirA), readCheckpoint(dirC)) ?? '', /^encoder\.module_dict\..* differs at element/);
    assert.throws(() => retargetGenerator(arFile, dirA, dirC, path.join(dirB, 'y.safetensors')), /does not tokenize as .*train a generator on its tokens instead/);
    // Without the flag the depth mismatch is an error that names the way out; a shallower target is refused.
    const plain = new TokenizerTrainer(tinyConfig((c) => {
      c.init = { from: dirA, modules: ['decoder'] };
      c.model.decoder.depth = depthA + 2;
    }), { dataset: syntheticShapes(64, 16), vae: null, teacher: null });
    assert.throws(() => plain.initFrom(source, 'A'), /the architectures differ; init.grow_decoder loads a shallower decoder into a deeper one/);
    if (depthA > 1) {
      const shallower = new TokenizerTrainer(tinyConfig((c) => {
        c.init = { from: dirA, modules: ['decoder'], grow_decoder: true };
        c.model.decoder.depth = depthA - 1;
      }), { dataset: syntheticShapes(64, 16), vae: null, teacher: null });
      assert.throws(() => shallower.initFrom(source, 'A'), /grow_decoder needs model.decoder.depth ≥ the source's/);
    }
  } finally {
    fs.rmSync(dirA, { recursive: true, force: true });
    fs.rmSync(dirB, { recursive: true, force: true });
  }
});

test('configs are validated: unknown keys and impossible values are errors naming the key', () => {
  assert.throws(() => tinyConfig((c) => (c.optim.learning_rate = 1)), (e: Error) => e instanceof ConfigError && /optim: unknown key "learning_rate"/.test(e.message));
  assert.throws(() => tinyConfig((c) => (c.repa = { layer: 5 })), /repa.layer 5/);
  assert.throws(() => tinyConfig((c) => (c.flow.nested_dropout = 'linear')), /flow.nested_dropout/);
  assert.throws(() => tinyConfig((c) => (c.model.encoder.dim = 30)), /dim 30 is not a multiple of head_dim 16/);
  assert.throws(() => tinyConfig((c) => (c.init = { modules: ['encoder'] })), /init.from: required/);
  assert.throws(() => tinyConfig((c) => (c.init = { from: 'x', modules: ['vae'] })), /init.modules: expected a list of distinct "encoder" \/ "decoder"/);
  assert.throws(() => tinyConfig((c) => (c.init = { from: 'x', modules: ['decoder'], freeze_encoder: true })), /init.freeze_encoder is true but modules \["decoder"\] does not load the encoder/);
  assert.deepEqual(tinyConfig((c) => (c.init = { from: 'x' })).init, { from: 'x', modules: ['encoder'], freeze_encoder: false, grow_decoder: false });
  assert.throws(() => tinyConfig((c) => (c.init = { from: 'x', modules: ['encoder'], grow_decoder: true })), /init.grow_decoder is true but modules \["encoder"\] does not load the decoder/);
  for (const f of fs.readdirSync(path.join(root, 'configs')).filter((n) => n.endsWith('.json'))) {
    const json = readJsonFile(path.join(root, 'configs', f)) as { kind?: string };
    if ((json.kind ?? 'tokenizer') === 'tokenizer') parseTokenizerConfig(json, f);
  }
});

test('Python literals are written as Python prints them', () => {
  assert.equal(pyFloatRepr(1e-5), '1e-05');
  assert.equal(pyFloatRepr(0.0001), '0.0001');
  assert.equal(pyFloatRepr(4), '4.0');
  assert.equal(pyFloatRepr(1e16), '1e+16');
  assert.equal(pyFloatRepr(123456789012345680), '1.2345678901234568e+17');
  assert.equal(pyFloatRepr(0.1), '0.1');
  assert.equal(pyFloatRepr(-2.5e-7), '-2.5e-07');
  assert.equal(pyFloatRepr(1234.5), '1234.5');
  assert.equal(toPyStr({ a: "it's", b: [1, true, null], c: 'x\\y\n' }), `{'a': "it's", 'b': [1, True, None], 'c': 'x\\\\y\\n'}`);
  assert.equal(toPyStr('flextok.flextok_wrapper.FlexTok'), 'flextok.flextok_wrapper.FlexTok');
});

test('the export config and state_dict match the official layout of the golden checkpoint', { skip: goldenSkip('e2e/model.safetensors') }, () => {
  requireGolden('e2e/model.safetensors');
  const golden = readSafetensors(goldenPath('e2e', 'model.safetensors'));
  const enc = {
    dim: 64, depth: 2, head_dim: 32, mlp_ratio: 4, gated_mlp: true, qkv_bias: false, proj_bias: false, mlp_bias: false, qk_norm: true,
    channels_in: 4, patch_sizes: [2, 2] as [number, number], max_sizes: [4, 4] as [number, number], n_registers: 8, dim_out: 4, mask_mode: 'causal_last' as const,
  };
  const dec = {
    ...enc, mask_mode: 'full' as const, dim_in: 4, frequency_embedding_size: 64, max_timestep: 1,
    null_cond: 'learned' as const, replace_with_single_token: false, adaLN_expansion: 2 as const, head_adaLN: true,
  };
  const flow = { timestep_sampler: { ln: true, stratified: false, mode_scale: 0, shift: 1 }, nested_dropout: 'uniform' as const, nested_dropout_switch: null, cfg_dropout: 0 };
  const config = officialConfig(enc, dec, [8, 5, 5, 5], flow, 0, { kind: 'identity', channels: 4 });
  assert.deepEqual(Object.keys(config), ['_target_', 'vae', 'encoder', 'decoder', 'regularizer', 'flow_matching_noise_module', 'pipeline']);
  for (const key of Object.keys(config)) {
    if (key === 'vae') continue; // ours is the identity (pixel space), the golden one a real VAE
    assert.equal(toPyStr(config[key]!), golden.metadata[key], `metadata '${key}' differs from the official string`);
  }
  assert.doesNotThrow(() => parsePyLiteral(toPyStr(config.vae!)));
  const sd = officialStateDict(initEncoder(enc, new Rng(0)), initDecoder(dec, new Rng(0)), { kind: 'identity', channels: 4 });
  const goldenKeys = [...golden.tensors.keys()].filter((k) => !k.startsWith('vae.'));
  assert.deepEqual(sd.map(([n]) => n), goldenKeys);
  for (const [n, t] of sd) assert.deepEqual([...t.shape], golden.tensors.get(n)!.shape, n);
});

test('the exported model.safetensors loads back and reproduces the in-memory model', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-export-'));
  try {
    const cfg = tinyConfig();
    const ds = syntheticShapes(32, 16);
    const trainer = new TokenizerTrainer(cfg, { dataset: ds, vae: null, teacher: null });
    for (let i = 0; i < 3; i++) trainer.trainStep();
    const file = path.join(dir, 'model.safetensors');
    const images = sampleBatch(ds, 4);
    const expected = trainer.withEmaWeights(() => {
      exportTokenizer(file, { encoder: trainer.encoder, decoder: trainer.decoder, fsqLevels: cfg.model.fsq_levels, flow: cfg.flow, cfgDropout: cfg.flow.cfg_dropout, vae: { kind: 'identity', channels: 1 }, dtype: 'F32' });
      return { ids: trainer.model.tokenize(images), recon: trainer.model.reconstruct(images, [2, 8], { steps: 3, seed: 4 }) };
    });
    const loaded = FlexTok.load(file);
    assert.equal(loaded.config.encoder.n_registers, 8);
    assert.equal(loaded.codec.kind, 'identity');
    assert.deepEqual(loaded.tokenize(images), expected.ids);
    const recon = loaded.reconstruct(images, [2, 8], { steps: 3, seed: 4 });
    recon.forEach((r, i) => assert.deepEqual(Array.from(r.f), Array.from(expected.recon[i].f)));
    // Metadata values are Python literals the official loader can read.
    const { metadata } = readSafetensors(file);
    for (const [k, v] of Object.entries(metadata)) if (k !== '_target_') assert.doesNotThrow(() => parsePyLiteral(v), k);

    // F16 storage halves the size and stays close.
    const f16 = path.join(dir, 'model_f16.safetensors');
    exportTokenizer(f16, { encoder: trainer.encoder, decoder: trainer.decoder, fsqLevels: cfg.model.fsq_levels, flow: cfg.flow, cfgDropout: cfg.flow.cfg_dropout, vae: { kind: 'identity', channels: 1 }, dtype: 'F16' });
    assert.ok(fs.statSync(f16).size < 0.6 * fs.statSync(file).size);
    assert.equal(FlexTok.load(f16).tokenize(images).length, 4);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('reconstruction evaluation reports MSE, PSNR, SSIM and class agreement per k', async () => {
  const { evaluateReconstruction, reconstructionTable } = await import('../src/eval/reconstruction.js');
  const cfg = tinyConfig();
  const ds = syntheticShapes(12, 16);
  const trainer = new TokenizerTrainer(cfg, { dataset: ds, vae: null, teacher: null });
  const images = sampleBatch(ds, 6);
  const labels = Int32Array.from({ length: 6 }, (_, i) => ds.get(i).label);
  const alwaysZero = { predict: (x: Tensor) => new Int32Array(x.shape[0]) };
  const alwaysLabel = { predict: (x: Tensor) => labels.slice(0, x.shape[0]) }; // right on the first batch only
  const classifiers = [{ name: 'zero', model: alwaysZero }, { name: 'first-batch', model: alwaysLabel }];
  const report = evaluateReconstruction(trainer.model, images, labels, { ks: [1, 8], steps: 2, batchSize: 4, classifiers });
  assert.deepEqual(report.rows.map((r) => r.k), [1, 8]);
  const zeros = labels.filter((l) => l === 0).length / 6;
  for (const r of report.rows) {
    assert.ok(r.mse > 0 && Number.isFinite(r.psnr) && r.ssim <= 1);
    assert.deepEqual(r.classAgreement, [zeros, (4 + labels.slice(0, 2).filter((l, i) => l === labels[4 + i]).length) / 6]);
  }
  assert.deepEqual(report.classifiers, ['zero', 'first-batch']);
  assert.deepEqual(report.originalAccuracy, report.rows[0].classAgreement);
  // Batching does not change the numbers (noise is seeded per image position).
  const again = evaluateReconstruction(trainer.model, images, labels, { ks: [1, 8], steps: 2, batchSize: 6, classifiers: [classifiers[0]] });
  assert.ok(Math.abs(again.rows[1].mse - report.rows[1].mse) < 1e-12);
  assert.match(reconstructionTable(again), /\| k \| MSE \| PSNR \(dB\) \| SSIM \| class agreement \|/);
  assert.match(reconstructionTable(report), /\| SSIM \| class agreement \(zero\) \| class agreement \(first-batch\) \|/);
  assert.doesNotMatch(reconstructionTable(evaluateReconstruction(trainer.model, images, labels, { ks: [1], steps: 1 })), /agreement/);
});

test('the timestep shift moves σ towards high noise and is the identity for shift 1', async () => {
  const { shiftTimesteps } = await import('../src/train/tokenizer.js');
  assert.deepEqual(shiftTimesteps([0.1, 0.5], 1), [0.1, 0.5]);
  const [a, b, c] = shiftTimesteps([0, 0.5, 1], 3);
  assert.equal(a, 0);
  assert.ok(Math.abs(b - 0.75) < 1e-7);
  assert.equal(c, 1);
});

test('encoder_head_init: a zero head gives every image the same tokens at step 0; a Xavier head distinct ones', () => {
  const ds = syntheticShapes(16, 16);
  const images = sampleBatch(ds, 8);
  const tokensAtInit = (init: 'zero' | 'xavier') => {
    const cfg = tinyConfig((c) => (c.model.encoder_head_init = init));
    return new TokenizerTrainer(cfg, { dataset: ds, vae: null, teacher: null }).model.tokenize(images);
  };
  const zero = tokensAtInit('zero');
  assert.ok(zero.every((seq) => JSON.stringify(seq) === JSON.stringify(zero[0])), 'zero head: identical tokens');
  const xavier = tokensAtInit('xavier');
  assert.ok(new Set(xavier.map((seq) => JSON.stringify(seq))).size === 8, 'xavier head: 8 distinct token sequences');
  assert.ok(new Set(xavier.flat()).size > 16, 'xavier head: many distinct ids');
  assert.throws(() => tinyConfig((c) => (c.model.encoder_head_init = 'ones')), /encoder_head_init/);
});
