// Tests of token datasets: `flextok tokenize-dataset` end to end through the real CLI entry with the shipped
// tokenizer (ids equal model.tokenize and `flextok tokenize` of the same prepared images, flipped rows, labels,
// index, metadata), its usage errors, and the reader's checks on corrupt or foreign files.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, loadFashionMnist, resizeOrPad } from '../src/io/datasets.js';
import { writeSafetensors, type TensorData } from '../src/io/safetensors.js';
import {
  checkTokenizerMatch, readTokenDataset, sha256OfFile, TOKEN_DATASET_FORMAT, TokenDatasetError, tokenizerWeightsFile, tokenStats,
  writeTokenDataset, type TokenDatasetContent,
} from '../src/io/token_dataset.js';
import { FlexTok } from '../src/flextok/model.js';
import { Tensor } from '../src/tensor/tensor.js';
import { commandHelp, parseCommand, UsageError } from '../src/cli/args.js';
import { imageShift, MAX_SHIFT, runTokenizeDataset, tokenizeDatasetSpec } from '../src/cli/tokenize_dataset.js';
import { REPO_ROOT } from './helpers/golden.js';
import { withMirroredClasses } from '../src/train/ar.js';
import { parseArTrainConfig } from '../src/train/config.js';

const MODEL_REL = 'models/fmnist-default';
const MODEL_FILE = path.join(REPO_ROOT, MODEL_REL, 'model.safetensors');
const haveFmnist = fs.existsSync(path.join(process.env.FLEXTOK_FASHION_MNIST ?? FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'));
const LIMIT = 24;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function flextok(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { cwd: REPO_ROOT, env: { ...process.env, FLEXTOK_DEBUG: '' }, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

function assertCleanError(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^flextok: error: /m);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-tokds-'));
}

/** The first LIMIT images of a split prepared as the tokenizer was trained (28 → 32 by padding), as [1, 1, 32, 32] each. */
function preparedImages(split: 'train' | 'test'): { images: Tensor[]; labels: number[] } {
  const ds = resizeOrPad(loadFashionMnist(split, { limit: LIMIT }), 32, 'pad');
  const images: Tensor[] = [];
  const labels: number[] = [];
  for (let i = 0; i < ds.size; i++) {
    const s = ds.get(i);
    images.push(new Tensor(s.image, [1, 1, 32, 32]));
    labels.push(s.label);
  }
  return { images, labels };
}

function mirror(img: Tensor): Tensor {
  const [, , h, w] = img.shape as [number, number, number, number];
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = img.f[y * w + (w - 1 - x)]!;
  return new Tensor(out, [1, 1, h, w]);
}

function row(tokens: Int32Array, i: number, r: number): number[] {
  return Array.from(tokens.subarray(i * r, (i + 1) * r));
}

describe('flextok tokenize-dataset (shipped tokenizer, Fashion-MNIST slice)', { skip: !haveFmnist && 'Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)' }, () => {
  let dir: string;
  let plainRun: Run;
  let flipRun: Run;
  let shiftRun: Run;
  let model: FlexTok;
  const expected: Record<string, { ids: number[][]; flippedIds: number[][]; labels: number[]; images: Tensor[] }> = {};

  before(async () => {
    dir = tmpDir();
    // Different batch sizes on purpose: the ids must not depend on them.
    [plainRun, flipRun, shiftRun] = await Promise.all([
      flextok(['tokenize-dataset', '--model', MODEL_REL, '--data', 'fashion-mnist', '--limit', String(LIMIT), '--out', path.join(dir, 'plain')]),
      flextok(['tokenize-dataset', '--model', MODEL_REL, '--data', 'fashion-mnist', '--limit', String(LIMIT), '--augment', 'flip', '--batch', '7', '--out', path.join(dir, 'flip')]),
      flextok(['tokenize-dataset', '--model', MODEL_REL, '--data', 'fashion-mnist', '--split', 'test', '--limit', String(LIMIT), '--augment', 'flip+shift', '--batch', '10', '--out', path.join(dir, 'shift')]),
    ]);
    model = FlexTok.load(MODEL_FILE);
    for (const split of ['train', 'test'] as const) {
      const { images, labels } = preparedImages(split);
      expected[split] = { ids: model.tokenize(images), flippedIds: model.tokenize(images.map(mirror)), labels, images };
    }
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('both splits: ids equal model.tokenize of the padded images; labels, index, flipped', () => {
    assert.equal(plainRun.code, 0, plainRun.stderr);
    for (const split of ['train', 'test'] as const) {
      const ds = readTokenDataset(path.join(dir, 'plain', `${split}.safetensors`));
      const e = expected[split]!;
      assert.equal(ds.count, LIMIT);
      assert.equal(ds.numTokens, 32);
      for (let i = 0; i < LIMIT; i++) assert.deepEqual(row(ds.tokens, i, 32), e.ids[i], `${split} row ${i}`);
      assert.deepEqual(Array.from(ds.labels), e.labels);
      assert.deepEqual(Array.from(ds.index), Array.from({ length: LIMIT }, (_, i) => i));
      assert.deepEqual(Array.from(ds.flipped), new Array(LIMIT).fill(0));
      assert.equal(ds.augment, 'none');
    }
    assert.match(plainRun.stderr, /tokenize-dataset train 24\/24 in [\d.]+ s \([\d,]+ images\/s\)/);
  });

  test('--augment flip: each image then its mirror; mirrored rows equal tokenizing the mirrored images', () => {
    assert.equal(flipRun.code, 0, flipRun.stderr);
    for (const split of ['train', 'test'] as const) {
      const ds = readTokenDataset(path.join(dir, 'flip', `${split}.safetensors`));
      const e = expected[split]!;
      assert.equal(ds.count, 2 * LIMIT);
      assert.equal(ds.augment, 'flip');
      for (let i = 0; i < LIMIT; i++) {
        assert.deepEqual(row(ds.tokens, 2 * i, 32), e.ids[i], `${split} row ${2 * i}`);
        assert.deepEqual(row(ds.tokens, 2 * i + 1, 32), e.flippedIds[i], `${split} row ${2 * i + 1} (mirror of image ${i})`);
        assert.deepEqual([ds.labels[2 * i], ds.labels[2 * i + 1]], [e.labels[i], e.labels[i]]);
        assert.deepEqual([ds.index[2 * i], ds.index[2 * i + 1]], [i, i]);
        assert.deepEqual([ds.flipped[2 * i], ds.flipped[2 * i + 1]], [0, 1]);
      }
      // A mirror is a different image: most of its rows differ from the original's.
      let differ = 0;
      for (let i = 0; i < LIMIT; i++) if (row(ds.tokens, 2 * i, 32).join() !== row(ds.tokens, 2 * i + 1, 32).join()) differ++;
      assert.ok(differ > LIMIT / 2, `only ${differ} of ${LIMIT} mirrors tokenize differently`);
    }
  });

  test('--augment flip+shift: image, mirror, translated image, translated mirror; each row equals tokenizing that image', () => {
    assert.equal(shiftRun.code, 0, shiftRun.stderr);
    const ds = readTokenDataset(path.join(dir, 'shift', 'test.safetensors'));
    const e = expected.test!;
    assert.equal(ds.count, 4 * LIMIT);
    assert.equal(ds.augment, 'flip+shift');
    const translated = (img: Tensor, dy: number, dx: number): Tensor => {
      const out = new Float32Array(32 * 32).fill(-1);
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) if (y - dy >= 0 && y - dy < 32 && x - dx >= 0 && x - dx < 32) out[y * 32 + x] = img.f[(y - dy) * 32 + x - dx]!;
      return new Tensor(out, [1, 1, 32, 32]);
    };
    for (let i = 0; i < LIMIT; i++) {
      const [dy, dx] = imageShift(i);
      assert.ok(Math.max(Math.abs(dy), Math.abs(dx)) <= MAX_SHIFT && (dy !== 0 || dx !== 0));
      assert.deepEqual(row(ds.tokens, 4 * i, 32), e.ids[i]);
      assert.deepEqual(row(ds.tokens, 4 * i + 1, 32), e.flippedIds[i]);
      const [t, tm] = model.tokenize([translated(e.images[i]!, dy, dx), translated(mirror(e.images[i]!), dy, dx)]);
      assert.deepEqual(row(ds.tokens, 4 * i + 2, 32), t, `translated image ${i} by (${dy}, ${dx})`);
      assert.deepEqual(row(ds.tokens, 4 * i + 3, 32), tm);
      assert.deepEqual(Array.from(ds.flipped.subarray(4 * i, 4 * i + 4)), [0, 1, 0, 1]);
      assert.deepEqual(Array.from(ds.shifts!.subarray(8 * i, 8 * i + 8)), [0, 0, 0, 0, dy, dx, dy, dx]);
    }
    // every translation but (0, 0) is used, each about equally often
    const seen = new Map<string, number>();
    for (let i = 0; i < 2400; i++) seen.set(imageShift(i).join(), (seen.get(imageShift(i).join()) ?? 0) + 1);
    assert.equal(seen.size, 24);
    assert.ok(!seen.has('0,0') && [...seen.values()].every((c) => c > 50 && c < 150));
  });

  test('metadata: format, tokenizer path and sha256 of its weights, sizes, source, split, classes, date', () => {
    const sha = createHash('sha256').update(fs.readFileSync(MODEL_FILE)).digest('hex');
    for (const [sub, augment] of [['plain', 'none'], ['flip', 'flip']] as const) {
      for (const split of ['train', 'test']) {
        const ds = readTokenDataset(path.join(dir, sub, `${split}.safetensors`));
        assert.equal(ds.metadata.format, TOKEN_DATASET_FORMAT);
        assert.equal(ds.tokenizerPath, MODEL_REL);
        assert.equal(ds.tokenizerFile, MODEL_FILE);
        assert.equal(ds.tokenizerSha256, sha);
        assert.equal(ds.codebookSize, 64000);
        assert.equal(ds.numTokens, 32);
        assert.equal(ds.data, 'fashion-mnist');
        assert.equal(ds.split, split);
        assert.equal(ds.augment, augment);
        assert.deepEqual(ds.classNames, FASHION_MNIST_CLASSES);
        assert.equal(ds.metadata.image_size, '32x32');
        assert.match(ds.metadata.preprocess!, /28×28 padded to 32×32/);
        const age = Date.now() - Date.parse(ds.created);
        assert.ok(new Date(ds.created).toISOString() === ds.created && age >= 0 && age < 10 * 60_000, `created ${ds.created}`);
        checkTokenizerMatch(ds, MODEL_FILE); // the matching tokenizer passes
      }
    }
    const readme = fs.readFileSync(path.join(dir, 'flip', 'README.txt'), 'utf8');
    assert.match(readme, /train\.safetensors: 48 sequences of 32 tokens from 24 train images \(augment flip\)/);
    assert.match(readme, /test\.safetensors: 48 sequences/);
    assert.match(readme, new RegExp(`sha256 ${sha}`));
    const st = tokenStats(readTokenDataset(path.join(dir, 'plain', 'test.safetensors')));
    assert.match(readme.replace(/,/g, ''), /distinct ids: \d+ of 64000/);
    assert.ok(st.distinct > 24 && st.perPositionMax <= 24);
  });

  test('the ids are those `flextok tokenize` gives for the same prepared image', async () => {
    const pngDir = path.join(dir, 'png');
    fs.mkdirSync(pngDir);
    const n = 6;
    const files: string[] = [];
    for (let i = 0; i < n; i++) {
      const img = expected.test!.images[i]!;
      const bytes = Buffer.from(Array.from(img.f, (v) => Math.round((v + 1) * 127.5)));
      const file = path.join(pngDir, `${i}.png`);
      await sharp(bytes, { raw: { width: 32, height: 32, channels: 1 } }).png().toFile(file);
      files.push(file);
    }
    const out = path.join(dir, 'tokens.json');
    const r = await flextok(['tokenize', ...files, '--model', MODEL_REL, '--no-resize', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(fs.readFileSync(out, 'utf8')) as { images: Array<{ tokens: number[] }> };
    const ds = readTokenDataset(path.join(dir, 'plain', 'test.safetensors'));
    for (let i = 0; i < n; i++) assert.deepEqual(json.images[i]!.tokens, row(ds.tokens, i, 32), `image ${i}`);
  });

  test('tokenizerWeightsFile resolves a model folder to its weights file', () => {
    assert.equal(tokenizerWeightsFile(path.join(REPO_ROOT, MODEL_REL)), MODEL_FILE);
    assert.equal(sha256OfFile(MODEL_FILE), readTokenDataset(path.join(dir, 'plain', 'train.safetensors')).tokenizerSha256);
  });
});

describe('flextok tokenize-dataset usage errors', () => {
  test('through the CLI: a clean one-line error and a pointer to --help', async () => {
    const base = ['tokenize-dataset', '--model', MODEL_REL];
    const [noOut, unknown] = await Promise.all([
      flextok([...base, '--data', 'fashion-mnist']),
      flextok([...base, '--data', 'mnist-fashion', '--out', '/tmp/x']),
    ]);
    assertCleanError(noOut, /--out is required/);
    assertCleanError(unknown, /--data 'mnist-fashion': unknown data source \(use 'fashion-mnist', 'fmnist-scenes' or an image folder; no such folder\)/);
    for (const r of [noOut, unknown]) assert.match(r.stderr, /Run 'flextok tokenize-dataset --help' for usage/);
  });

  test('each bad option is a UsageError naming it (checked before the tokenizer is loaded)', async () => {
    const base = ['--model', MODEL_REL];
    const cases: Array<[string[], RegExp]> = [
      [[...base, '--out', '/tmp/x'], /--data is required: 'fashion-mnist', 'fmnist-scenes' or an image folder/],
      [[...base, '--data', 'package.json', '--out', '/tmp/x'], /--data 'package\.json': unknown data source .*that is a file, not a folder/],
      [[...base, '--data', 'fashion-mnist', '--limit', '0', '--out', '/tmp/x'], /--limit must be an integer ≥ 1, got '0'/],
      [[...base, '--data', 'fashion-mnist', '--limit', 'ten', '--out', '/tmp/x'], /--limit must be an integer ≥ 1, got 'ten'/],
      [[...base, '--data', 'fashion-mnist', '--augment', 'rotate', '--out', '/tmp/x'], /--augment must be none, flip, shift or flip\+shift, got 'rotate'/],
      [[...base, '--data', 'fashion-mnist', '--split', 'val', '--out', '/tmp/x'], /--split must be train, test or all, got 'val'/],
      [[...base, '--data', 'fashion-mnist', '--batch', '2.5', '--out', '/tmp/x'], /--batch must be an integer ≥ 1, got '2\.5'/],
      [[...base, '--data', 'fashion-mnist', '--resize-mode', 'crop', '--out', '/tmp/x'], /--resize-mode must be pad or resize, got 'crop'/],
      [[...base, '--data', 'fashion-mnist', '--out', 'package.json'], /--out package\.json is a file; it must be a folder/],
    ];
    const cwd = process.cwd();
    process.chdir(REPO_ROOT);
    try {
      for (const [argv, pattern] of cases) {
        await assert.rejects(runTokenizeDataset(parseCommand(tokenizeDatasetSpec, argv), () => {}), (err: unknown) => {
          assert.ok(err instanceof UsageError, `${argv.join(' ')}: ${String(err)}`);
          assert.match(err.message, pattern);
          return true;
        });
      }
    } finally {
      process.chdir(cwd);
    }
  });

  test('--help explains every option', () => {
    const text = commandHelp(tokenizeDatasetSpec);
    for (const o of ['--model', '--data', '--split', '--augment', '--limit', '--batch', '--resize-mode', '--out']) assert.match(text, new RegExp(`${o} [A-Z|]+ +\\S`), o);
    assert.match(text, new RegExp(TOKEN_DATASET_FORMAT));
  });
});

describe('token dataset reader', () => {
  let dir: string;
  before(() => {
    dir = tmpDir();
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const SHA = 'ab'.repeat(32);
  const content = (): TokenDatasetContent => ({
    tokens: Int32Array.from([0, 1, 2, 3, 10, 11, 12, 13, 99, 98, 97, 96]),
    labels: Int32Array.from([0, 2, 1]),
    index: Int32Array.from([0, 0, 1]),
    flipped: Uint8Array.from([0, 1, 0]),
    tokenizerPath: 'models/x',
    tokenizerFile: '/abs/models/x/model.safetensors',
    tokenizerSha256: SHA,
    codebookSize: 100,
    numTokens: 4,
    data: 'fashion-mnist',
    split: 'train',
    augment: 'flip',
    classNames: ['a', 'b', 'c'],
    created: '2026-01-02T03:04:05.000Z',
  });
  const metadata = (over: Record<string, string> = {}): Record<string, string> => ({
    format: TOKEN_DATASET_FORMAT, tokenizer: 'models/x', tokenizer_file: '/abs/models/x/model.safetensors', tokenizer_sha256: SHA,
    codebook_size: '100', num_tokens: '4', data: 'fashion-mnist', split: 'train', augment: 'flip', class_names: '["a","b","c"]',
    created: '2026-01-02T03:04:05.000Z', ...over,
  });
  const tensors = (over: Record<string, TensorData> = {}): Record<string, TensorData> => {
    const c = content();
    return {
      tokens: { dtype: 'I32', shape: [3, 4], data: c.tokens },
      labels: { dtype: 'I32', shape: [3], data: c.labels },
      index: { dtype: 'I32', shape: [3], data: c.index },
      flipped: { dtype: 'U8', shape: [3], data: c.flipped },
      ...over,
    };
  };
  /** Writes a raw safetensors file and returns the reader's error. */
  const errorOf = (name: string, t: Record<string, TensorData>, m: Record<string, string>): TokenDatasetError => {
    const file = path.join(dir, name);
    writeSafetensors(file, t, m);
    return readError(file);
  };
  const readError = (file: string): TokenDatasetError => {
    try {
      readTokenDataset(file);
    } catch (err) {
      assert.ok(err instanceof TokenDatasetError, `expected a TokenDatasetError, got ${String(err)}`);
      assert.ok(err.message.startsWith(`${file}: `), `names the file: ${err.message}`);
      assert.doesNotMatch(err.message, /\n/, 'one line');
      assert.match(err.message, /tokenize-dataset/, 'says how to fix it');
      return err;
    }
    assert.fail(`${file} was accepted`);
  };

  test('write → read round trip (and the raw layout the reader tests build is that of the writer)', () => {
    const file = path.join(dir, 'ok.safetensors');
    writeTokenDataset(file, { ...content(), extra: { preprocess: 'none' } });
    const ds = readTokenDataset(file);
    assert.equal(ds.count, 3);
    assert.deepEqual(Array.from(ds.tokens), Array.from(content().tokens));
    assert.deepEqual(Array.from(ds.labels), [0, 2, 1]);
    assert.deepEqual(Array.from(ds.index), [0, 0, 1]);
    assert.deepEqual(Array.from(ds.flipped), [0, 1, 0]);
    assert.deepEqual(ds.classNames, ['a', 'b', 'c']);
    assert.equal(ds.tokenizerSha256, SHA);
    assert.equal(ds.metadata.preprocess, 'none');
    const raw = path.join(dir, 'raw.safetensors');
    writeSafetensors(raw, tensors(), metadata());
    assert.deepEqual(readTokenDataset(raw).tokens, ds.tokens);
    const st = tokenStats(ds);
    assert.equal(st.distinct, 12);
    assert.deepEqual(st.perPosition, [3, 3, 3, 3]);
    assert.deepEqual(st.perClass, [1, 1, 1]);
  });

  test('mirrored rows of chosen classes only (train-ar tokens.mirrored_classes): the other rows kept, in order', () => {
    const file = path.join(dir, 'mirror.safetensors');
    writeTokenDataset(file, { ...content(), captions: ['x', 'y', 'z'] });
    const ds = readTokenDataset(file);
    const lines: string[] = [];
    const none = withMirroredClasses(ds, [], (l) => lines.push(l)); // row 1 is the mirror of a class-2 image
    assert.equal(none.count, 2);
    assert.deepEqual(Array.from(none.tokens), [0, 1, 2, 3, 99, 98, 97, 96]);
    assert.deepEqual(Array.from(none.labels), [0, 1]);
    assert.deepEqual(Array.from(none.index), [0, 1]);
    assert.deepEqual(Array.from(none.flipped), [0, 0]);
    assert.deepEqual(none.captions, ['x', 'z']);
    assert.match(lines[0]!, /mirrored rows only of none: 2 of 3 sequences/);
    assert.equal(withMirroredClasses(ds, [2], () => {}).count, 3, 'class 2 keeps its mirror');
    assert.equal(withMirroredClasses(ds, [0, 1], () => {}).count, 2);
    assert.equal(withMirroredClasses(ds, null, () => {}), ds, 'null: every row');
    assert.throws(() => withMirroredClasses(ds, [3], () => {}), /mirrored_classes: class 3 is not one of .*'s 3 classes \(0\.\.2\)/);
    assert.throws(() => parseArTrainConfig({ tokens: { mirrored_classes: [1, 'coat'] } }), /tokens\.mirrored_classes: expected a list of class indices/);
    assert.deepEqual(parseArTrainConfig({ tokens: { mirrored_classes: [0, 4] } }).tokens.mirrored_classes, [0, 4]);
    assert.equal(parseArTrainConfig({}).tokens.mirrored_classes, null);
  });

  test('captions (scene datasets): round trip, absent for plain data, corrupt offsets and bytes named', () => {
    const file = path.join(dir, 'captions.safetensors');
    const captions = ['a bag in the top left', '', 'ein Schuh – ünïcode'];
    writeTokenDataset(file, { ...content(), captions });
    assert.deepEqual(readTokenDataset(file).captions, captions);
    const plain = path.join(dir, 'no-captions.safetensors');
    writeTokenDataset(plain, content());
    assert.equal(readTokenDataset(plain).captions, null);
    assert.throws(() => writeTokenDataset(file, { ...content(), captions: ['x'] }), /1 captions for 3 rows/);
    const bytes = Uint8Array.from(Buffer.from('abcdef'));
    const cap = (offsets: number[], b: Uint8Array = bytes): Record<string, TensorData> => ({
      caption_bytes: { dtype: 'U8', shape: [b.length], data: b },
      caption_offsets: { dtype: 'I32', shape: [offsets.length], data: Int32Array.from(offsets) },
    });
    const good = path.join(dir, 'cap-good.safetensors');
    writeSafetensors(good, tensors(cap([0, 2, 3, 6])), metadata());
    assert.deepEqual(readTokenDataset(good).captions, ['ab', 'c', 'def']);
    assert.match(errorOf('cap1.safetensors', tensors(cap([0, 4, 3, 6])), metadata()).message, /caption_offsets \[4, 3\) of row 1/);
    assert.match(errorOf('cap2.safetensors', tensors(cap([0, 2, 3, 5])), metadata()).message, /caption_offsets \[3, 5\) of row 2/);
    assert.match(errorOf('cap3.safetensors', tensors(cap([0, 2, 3])), metadata()).message, /expected I32 \[4\] \(rows \+ 1\)/);
    assert.match(errorOf('cap4.safetensors', tensors(cap([0, 1, 2, 3], Uint8Array.from([0x61, 0xff, 0x62]))), metadata()).message, /caption of row 1 is not valid UTF-8/);
    assert.match(errorOf('cap5.safetensors', tensors({ caption_bytes: cap([0])['caption_bytes']! }), metadata()).message, /caption_bytes but no caption_offsets/);
  });

  test('shift augmentation: the shift tensor is required with it, refused without it, and range-checked', () => {
    const file = path.join(dir, 'shift.safetensors');
    const shifts = Int32Array.from([0, 0, 1, -2, 0, 0]);
    writeTokenDataset(file, { ...content(), augment: 'flip+shift', shifts });
    assert.deepEqual(Array.from(readTokenDataset(file).shifts!), Array.from(shifts));
    const plain = path.join(dir, 'no-shift.safetensors');
    writeTokenDataset(plain, content());
    assert.equal(readTokenDataset(plain).shifts, null);
    assert.throws(() => writeTokenDataset(file, { ...content(), augment: 'flip+shift' }), /needs per-row shifts/);
    assert.match(errorOf('noshift.safetensors', tensors(), metadata({ augment: 'flip+shift' })).message, /tensor 'shift' is missing/);
    const shiftT = (d: number[]): Record<string, TensorData> => ({ shift: { dtype: 'I32', shape: [3, 2], data: Int32Array.from(d) } });
    assert.match(errorOf('extra.safetensors', tensors(shiftT([0, 0, 0, 0, 0, 0])), metadata()).message, /has a 'shift' tensor but metadata augment is 'flip'/);
    assert.match(errorOf('far.safetensors', tensors(shiftT([0, 0, 0, 99, 0, 0])), metadata({ augment: 'flip+shift' })).message, /shift 99 at row 1 is outside ±8 px/);
    assert.match(errorOf('aug.safetensors', tensors(), metadata({ augment: 'rotate' })).message, /metadata 'augment' is 'rotate', expected 'none', 'flip', 'shift', 'flip\+shift'/);
  });

  test('wrong or missing format string', () => {
    assert.match(errorOf('fmt.safetensors', tensors(), metadata({ format: 'flextok-tokens/1' })).message, /format is 'flextok-tokens\/1', expected 'flextok-token-dataset\/1'/);
    assert.match(errorOf('fmt2.safetensors', tensors(), metadata({ format: 'flextok-token-dataset/2' })).message, /expected 'flextok-token-dataset\/1'; it was written by another flextok version/);
    const { format: _unused, ...noFormat } = metadata();
    assert.match(errorOf('nofmt.safetensors', tensors(), noFormat).message, /not a token dataset: its metadata has no 'format'/);
  });

  test('truncated file', () => {
    const file = path.join(dir, 'trunc.safetensors');
    writeTokenDataset(file, content());
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 5));
    assert.match(readError(file).message, /not a readable token dataset \(.*past the end of the data section.*truncated/);
    fs.writeFileSync(file, bytes.subarray(0, 20));
    assert.match(readError(file).message, /not a readable token dataset \(header length \d+ is past the end of the file/);
    fs.writeFileSync(file, '');
    assert.match(readError(file).message, /not a readable token dataset \(file is only 0 bytes/);
    assert.match(readError(path.join(dir, 'missing.safetensors')).message, /not a readable token dataset \(cannot open file/);
  });

  test('token id out of range', () => {
    const t = content().tokens;
    t[7] = 100;
    assert.match(errorOf('id.safetensors', tensors({ tokens: { dtype: 'I32', shape: [3, 4], data: t } }), metadata()).message,
      /the file is corrupt; token id 100 at row 1, position 3 is outside 0\.\.99 \(codebook_size 100\)/);
    const neg = content().tokens;
    neg[0] = -1;
    assert.match(errorOf('neg.safetensors', tensors({ tokens: { dtype: 'I32', shape: [3, 4], data: neg } }), metadata()).message, /token id -1 at row 0, position 0/);
  });

  test('shape mismatch', () => {
    assert.match(errorOf('shape1.safetensors', tensors({ labels: { dtype: 'I32', shape: [2], data: Int32Array.from([0, 1]) } }), metadata()).message,
      /tensor 'labels' has shape \[2\] but tokens has 3 rows \(expected \[3\]\)/);
    assert.match(errorOf('shape2.safetensors', tensors({ tokens: { dtype: 'I32', shape: [4, 3], data: content().tokens } }), metadata()).message,
      /tensor 'tokens' has 3 tokens per row but metadata num_tokens is 4/);
    assert.match(errorOf('shape3.safetensors', tensors({ tokens: { dtype: 'I32', shape: [12], data: content().tokens } }), metadata()).message,
      /tensor 'tokens' has shape \[12\], expected \[N, 4\]/);
  });

  test('other problems: dtype, missing tensor, labels, flipped, metadata values', () => {
    assert.match(errorOf('dtype.safetensors', tensors({ flipped: { dtype: 'I32', shape: [3], data: Int32Array.from([0, 1, 0]) } }), metadata()).message,
      /tensor 'flipped' has dtype I32, expected U8/);
    const { index: _unused, ...noIndex } = tensors();
    assert.match(errorOf('noindex.safetensors', noIndex, metadata()).message, /tensor 'index' is missing/);
    assert.match(errorOf('label.safetensors', tensors({ labels: { dtype: 'I32', shape: [3], data: Int32Array.from([0, 3, 1]) } }), metadata()).message,
      /label 3 at row 1 is outside 0\.\.2 \(3 class_names\)/);
    assert.match(errorOf('flip.safetensors', tensors(), metadata({ augment: 'none' })).message, /row 1 is marked flipped but metadata augment is 'none'/);
    assert.match(errorOf('cb.safetensors', tensors(), metadata({ codebook_size: '1e5' })).message, /metadata 'codebook_size' is '1e5', not a positive integer/);
    assert.match(errorOf('cls.safetensors', tensors(), metadata({ class_names: '[a, b]' })).message, /metadata 'class_names' is not JSON/);
    assert.match(errorOf('sha.safetensors', tensors(), metadata({ tokenizer_sha256: 'abc' })).message, /metadata 'tokenizer_sha256' is 'abc', not 64 lowercase hex digits/);
    const { split: _s, ...noSplit } = metadata();
    assert.match(errorOf('nosplit.safetensors', tensors(), noSplit).message, /metadata 'split' is missing/);
  });

  test('the writer refuses what the reader would refuse; a tokenizer mismatch is named', () => {
    const bad = content();
    bad.tokens[5] = 100;
    assert.throws(() => writeTokenDataset(path.join(dir, 'w.safetensors'), bad), /token id 100 at row 1, position 1 is outside 0\.\.99/);
    assert.equal(fs.existsSync(path.join(dir, 'w.safetensors')), false);
    const file = path.join(dir, 'match.safetensors');
    writeTokenDataset(file, content());
    const other = path.join(dir, 'other.bin');
    fs.writeFileSync(other, 'not the tokenizer');
    assert.equal(sha256OfFile(other), createHash('sha256').update('not the tokenizer').digest('hex'));
    assert.throws(() => checkTokenizerMatch(readTokenDataset(file), other), /made with another tokenizer \(models\/x, weights sha256 abababababab…\) than .*other\.bin/);
  });
});
