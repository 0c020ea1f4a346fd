// Tests of the stage-2 model (src/ar/model.ts, src/ar/config.ts): KV-cache inference equals full recomputation, the
// digits head is a normalised distribution whose loss is −log p(t), float64 gradients match finite differences, a tiny
// model learns a class-determined toy task, save/load round trips, and bad configs / inputs give clear errors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { digitsToToken, fsqBasis, mlpHidden, parseArModelConfig, tokenToDigits, type ArModelConfig } from '../src/ar/config.js';
import { FlexAR } from '../src/ar/model.js';
import { generate } from '../src/ar/sampling.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { roundToBfloat16InPlace, roundToFloat16InPlace } from '../src/tensor/half.js';
import { AdamW, noGrad, Rng, Tensor } from '../src/tensor/index.js';
import { logSoftmax } from '../src/tensor/nn.js';
import { assertClose, gradcheck } from './helpers/gradcheck.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-ar-model-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A tiny config: levels [3, 2, 4] (24 ids), 6 tokens, 3 classes. */
function tinyConfig(head: 'flat' | 'digits', over: Partial<ArModelConfig> = {}): ArModelConfig {
  return parseArModelConfig({ vocab_size: 24, fsq_levels: [3, 2, 4], num_tokens: 6, num_classes: 3, dim: 32, depth: 2, head_dim: 8, head, ...over }, 'test');
}

/** Row-major [B, P] prefix of [B, L] tokens. */
function prefix(tokens: Int32Array, b: number, l: number, p: number): Int32Array {
  const out = new Int32Array(b * p);
  for (let i = 0; i < b; i++) out.set(tokens.subarray(i * l, i * l + p), i * p);
  return out;
}

/** log p(t) of every id under the digits head for hidden states [B, D] → [B, V] (enumerating every digit prefix). */
function digitsHeadLogProbs(m: FlexAR, hidden: Tensor): Float64Array[] {
  const levels = m.config.fsq_levels;
  const b = hidden.shape[0];
  const out = Array.from({ length: b }, () => new Float64Array(m.config.vocab_size));
  const digits = new Int32Array(levels.length);
  for (let id = 0; id < m.config.vocab_size; id++) {
    tokenToDigits(id, levels, digits);
    const prev = new Int32Array(b * levels.length);
    for (let r = 0; r < b; r++) prev.set(digits, r * levels.length);
    for (let j = 0; j < levels.length; j++) {
      const lsm = noGrad(() => logSoftmax(m.digitLogits(hidden, prev, j)));
      for (let r = 0; r < b; r++) out[r][id] += lsm.f[r * levels[j] + digits[j]];
    }
  }
  return out;
}

test('config: FSQ digit arithmetic, SwiGLU width, defaults', () => {
  const levels = [8, 8, 8, 5, 5, 5];
  assert.deepEqual(fsqBasis(levels), [1, 8, 64, 512, 2560, 12800]);
  for (const id of [0, 1, 7, 8, 63999, 12345]) assert.equal(digitsToToken(tokenToDigits(id, levels), levels), id);
  assert.deepEqual(Array.from(tokenToDigits(8 * 3 + 5, levels)), [5, 3, 0, 0, 0, 0]);
  assert.equal(mlpHidden({ dim: 256, mlp_ratio: 4 }), 688);
  assert.equal(mlpHidden({ dim: 48, mlp_ratio: 4 }), 128);
  const c = parseArModelConfig({ vocab_size: 64000, fsq_levels: levels, num_tokens: 32, num_classes: 10, dim: 256, depth: 6 }, 'x');
  assert.equal(c.head, 'flat');
  assert.equal(c.head_dim, 64);
  assert.equal(c.qk_norm, true);
  assert.equal(c.digit_hidden, 256);
});

test('config: every bad field is an error naming it', () => {
  const ok = { vocab_size: 24, fsq_levels: [3, 2, 4], num_tokens: 6, num_classes: 3, dim: 32, depth: 2, head_dim: 8 };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...ok, vocab_size: undefined }, /'vocab_size' is missing/],
    [{ ...ok, vocab_size: 25 }, /'fsq_levels' \[3, 2, 4\] has product 24, which differs from vocab_size 25/],
    [{ ...ok, fsq_levels: [3, 1, 8] }, /'fsq_levels' must be a non-empty list of integers ≥ 2/],
    [{ ...ok, fsq_levels: 'x' }, /'fsq_levels'/],
    [{ ...ok, num_tokens: 0 }, /'num_tokens' must be a positive integer/],
    [{ ...ok, num_classes: 1.5 }, /'num_classes' must be a positive integer/],
    [{ ...ok, dim: -4 }, /'dim' must be a positive integer/],
    [{ ...ok, depth: undefined }, /'depth' is missing/],
    [{ ...ok, head_dim: 7 }, /'head_dim' \(7\) must divide dim \(32\)/],
    [{ ...ok, mlp_ratio: 0 }, /'mlp_ratio' must be a positive number/],
    [{ ...ok, qk_norm: 'yes' }, /'qk_norm' must be true or false/],
    [{ ...ok, head: 'bits' }, /'head' must be 'flat' or 'digits'/],
    [{ ...ok, norm_eps: NaN }, /'norm_eps' must be a positive number/],
    [{ ...ok, digit_hidden: 0 }, /'digit_hidden' must be a positive integer/],
    [{ ...ok, dropout: 1 }, /'dropout' must be a number in \[0, 1\)/],
    [{ ...ok, dimm: 3 }, /'dimm' is not known/],
  ];
  for (const [cfg, re] of bad) {
    const json = Object.fromEntries(Object.entries(cfg).filter(([, v]) => v !== undefined));
    assert.throws(() => parseArModelConfig(json, 'cfg.json'), (e: Error) => re.test(e.message) && e.message.startsWith('cfg.json: '), `${JSON.stringify(cfg)} → ${re}`);
  }
  assert.throws(() => parseArModelConfig([1], 'cfg.json'), /cfg.json: the AR model config must be a JSON object/);
});

for (const head of ['flat', 'digits'] as const) {
  test(`KV cache equals full recomputation at every prefix (${head} head, classes incl. −1)`, () => {
    const m = FlexAR.init(tinyConfig(head), new Rng(11));
    const classes = new Int32Array([0, 2, -1]);
    const b = 3;
    const r = m.config.num_tokens;
    const rng = new Rng(5);
    const tokens = Int32Array.from({ length: b * r }, () => rng.randint(0, 24));
    const cache = m.createCache(b);
    const levels = m.config.fsq_levels;
    for (let t = 0; t < r; t++) {
      const prev = t === 0 ? null : Int32Array.from({ length: b }, (_, i) => tokens[i * r + t - 1]);
      const h = m.step(cache, prev, classes); // [B, D]
      const full = m.forwardHidden(prefix(tokens, b, r, t), classes); // [B, t+1, D]
      const last = new Float32Array(b * m.config.dim);
      for (let i = 0; i < b; i++) last.set(full.f.subarray((i * (t + 1) + t) * m.config.dim, (i * (t + 1) + t + 1) * m.config.dim), i * m.config.dim);
      assertClose(h.f, last, { rtol: 1e-5 }, `hidden at position ${t}`);
      const hFull = new Tensor(last, [b, m.config.dim]);
      if (head === 'flat') {
        assertClose(m.flatLogits(h).f, m.flatLogits(hFull).f, { rtol: 1e-5 }, `logits at position ${t}`);
      } else {
        const digits = Int32Array.from({ length: b * levels.length }, (_, k) => rng.randint(0, levels[k % levels.length]));
        for (let j = 0; j < levels.length; j++) {
          assertClose(m.digitLogits(h, digits, j).f, m.digitLogits(hFull, digits, j).f, { rtol: 1e-5 }, `digit ${j} logits at position ${t}`);
        }
      }
    }
    assert.throws(() => m.step(cache, new Int32Array(b), classes), /the cache is full/);
    // classes matter: the same tokens under another class give other hidden states
    const other = m.forwardHidden(new Int32Array(0), new Int32Array([1, 1, 1]));
    const same = m.forwardHidden(new Int32Array(0), classes);
    assert.notDeepEqual(Array.from(other.f.subarray(0, 8)), Array.from(same.f.subarray(0, 8)));
    // the null class adds nothing: SOS alone
    const nul = m.forwardHidden(new Int32Array(0), new Int32Array([-1]));
    const sosOnly = FlexAR.init(tinyConfig(head), new Rng(11));
    sosOnly.classEmb!.f.fill(0);
    assertClose(nul.f, sosOnly.forwardHidden(new Int32Array(0), new Int32Array([2])).f, { rtol: 1e-6 }, 'null class = zero class embedding');
  });
}

test('digits head: p(t) over all ids sums to 1 and the loss is −mean log p(t)', () => {
  const m = FlexAR.init(tinyConfig('digits'), new Rng(3));
  // make the head's digit interactions non-trivial
  const rng = new Rng(9);
  for (const t of [...m.digitHead!.prev, ...m.digitHead!.fcIn, ...m.digitHead!.fcOut]) rng.fillNormal(t.f, 0, 0.5);
  const classes = new Int32Array([1, -1]);
  const b = 2;
  const l = 4;
  const tokens = Int32Array.from({ length: b * l }, () => rng.randint(0, 24));
  const hidden = m.forwardHidden(prefix(tokens, b, l, l - 1), classes); // [B, L, D]
  let nll = 0;
  for (let pos = 0; pos < l; pos++) {
    const h = new Tensor(new Float32Array(b * m.config.dim), [b, m.config.dim]);
    for (let i = 0; i < b; i++) h.f.set(hidden.f.subarray((i * l + pos) * m.config.dim, (i * l + pos + 1) * m.config.dim), i * m.config.dim);
    const lp = digitsHeadLogProbs(m, h);
    for (let i = 0; i < b; i++) {
      const total = lp[i].reduce((s, v) => s + Math.exp(v), 0);
      assert.ok(Math.abs(total - 1) < 1e-5, `Σ_t p(t) = ${total} at position ${pos}, row ${i}`);
      nll -= lp[i][tokens[i * l + pos]];
    }
  }
  const digitLosses = new Float64Array(3);
  const loss = m.loss(tokens, classes, { digitLosses }).item();
  assert.ok(Math.abs(loss - nll / (b * l)) < 1e-5, `loss ${loss} vs −mean log p ${nll / (b * l)}`);
  assert.ok(Math.abs(digitLosses.reduce((s, v) => s + v, 0) - loss) < 1e-5, 'the digit losses sum to the loss');
});

test('flat head: the loss is −mean log softmax of the logits at the targets', () => {
  const m = FlexAR.init(tinyConfig('flat'), new Rng(4));
  const tokens = new Int32Array([3, 17, 0, 23, 5, 5]);
  const classes = new Int32Array([2, -1]);
  const hidden = m.forwardHidden(prefix(tokens, 2, 3, 2), classes); // [2, 3, D]
  const lsm = noGrad(() => logSoftmax(m.flatLogits(new Tensor(hidden.f, [6, m.config.dim]))));
  let nll = 0;
  for (let i = 0; i < 6; i++) nll -= lsm.f[i * 24 + tokens[i]];
  assert.ok(Math.abs(m.loss(tokens, classes).item() - nll / 6) < 1e-5);
  // untrained: about ln V
  const fresh = FlexAR.init(tinyConfig('flat'), new Rng(4));
  assert.ok(Math.abs(fresh.loss(tokens, classes).item() - Math.log(24)) < 0.1);
});

/** Replace the model's weight at a dotted path by t. */
function setWeight(m: FlexAR, name: string, t: Tensor): void {
  const parts = name.split('.');
  let obj: Record<string, unknown> = m as unknown as Record<string, unknown>;
  for (const p of parts.slice(0, -1)) obj = obj[p] as Record<string, unknown>;
  obj[parts[parts.length - 1]] = t;
}

for (const head of ['flat', 'digits'] as const) {
  test(`float64 gradients of the loss match finite differences (${head} head)`, () => {
    const cfg = parseArModelConfig({ vocab_size: 6, fsq_levels: [2, 3], num_tokens: 3, num_classes: 2, dim: 4, depth: 1, head_dim: 2, mlp_ratio: 2, head, digit_hidden: 4 }, 'gradcheck');
    const m = FlexAR.init(cfg, new Rng(21), { dtype: 'float64' });
    const rng = new Rng(22);
    for (const [, t] of m.namedParameters()) rng.fillNormal(t.f, 0, 0.5); // larger weights: every path matters
    const named = m.namedParameters();
    const tokens = new Int32Array([1, 5, 2, 0, 3, 4, 5, 5, 1]);
    const classes = new Int32Array([1, -1, 0]);
    const fn = (...ws: Tensor[]): Tensor => {
      named.forEach(([name], i) => setWeight(m, name, ws[i]));
      return m.loss(tokens, classes);
    };
    const { grads } = gradcheck(fn, named.map(([, t]) => t.clone()), { rtol: 1e-5, label: `${head} loss` });
    // the null class row gets no gradient from row 1; class 0 and 1 rows do
    const classGrad = grads[named.findIndex(([n]) => n === 'classEmb')];
    assert.ok(classGrad.some((v) => v !== 0));
  });
}

test('dropout: only with a random stream (training); masks from the stream; gradients through the masks match finite differences', () => {
  const base = { vocab_size: 6, fsq_levels: [2, 3], num_tokens: 3, num_classes: 2, dim: 4, depth: 1, head_dim: 2, mlp_ratio: 2, head: 'digits', digit_hidden: 4 };
  const m = FlexAR.init(parseArModelConfig({ ...base, dropout: 0.3 }, 'drop'), new Rng(21), { dtype: 'float64' });
  const plain = FlexAR.init(parseArModelConfig(base, 'plain'), new Rng(21), { dtype: 'float64' });
  const tokens = new Int32Array([1, 5, 2, 0, 3, 4, 5, 5, 1]);
  const classes = new Int32Array([1, -1, 0]);
  const noDrop = m.loss(tokens, classes).item();
  assert.equal(noDrop, plain.loss(tokens, classes).item(), 'no random stream: nothing dropped');
  assert.equal(noDrop, plain.loss(tokens, classes, { dropoutRng: new Rng(5) }).item(), 'dropout 0: nothing dropped');
  const dropped = m.loss(tokens, classes, { dropoutRng: new Rng(5) }).item();
  assert.notEqual(dropped, noDrop);
  assert.equal(m.loss(tokens, classes, { dropoutRng: new Rng(5) }).item(), dropped, 'same stream, same masks');
  assert.notEqual(m.loss(tokens, classes, { dropoutRng: new Rng(6) }).item(), dropped);
  const named = m.namedParameters();
  const fn = (...ws: Tensor[]): Tensor => {
    named.forEach(([name], i) => setWeight(m, name, ws[i]));
    return m.loss(tokens, classes, { dropoutRng: new Rng(5) });
  };
  gradcheck(fn, named.map(([, t]) => t.clone()), { rtol: 1e-5, label: 'loss with dropout' });
});

for (const head of ['flat', 'digits'] as const) {
  test(`a tiny model learns a class-determined sequence to near-zero loss, then generates it (${head} head)`, () => {
    const cfg = tinyConfig(head, { num_classes: 4, dim: 32, depth: 2 });
    const m = FlexAR.init(cfg, new Rng(7));
    const rng = new Rng(8);
    const seqs = Array.from({ length: 4 }, () => Int32Array.from({ length: 6 }, () => rng.randint(0, 24)));
    const classes = new Int32Array([0, 1, 2, 3, 0, 1, 2, 3]);
    const tokens = new Int32Array(8 * 6);
    classes.forEach((c, i) => tokens.set(seqs[c], i * 6));
    const opt = new AdamW(m.parameters(), { lr: 1e-2, weightDecay: 0 });
    let loss = Infinity;
    const start = m.loss(tokens, classes).item();
    for (let step = 0; step < 150 && loss > 0.01; step++) {
      for (const p of m.parameters()) p.grad = null;
      const l = m.loss(tokens, classes);
      l.backward();
      opt.step();
      loss = l.item();
    }
    assert.ok(start > 2.5, `starts near ln 24 (${start})`);
    assert.ok(loss < 0.03, `loss after training: ${loss}`);
    const out = generate(m, { classes: [0, 1, 2, 3], argmax: true });
    out.forEach((o, c) => assert.deepEqual(Array.from(o), Array.from(seqs[c]), `class ${c}`));
  });
}

test('save / load: F32 exact with config and metadata, F16 and BF16 rounded once, loss unchanged', () => {
  for (const head of ['flat', 'digits'] as const) {
    const m = FlexAR.init(tinyConfig(head), new Rng(31));
    const tokens = new Int32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const classes = new Int32Array([0, -1]);
    const file = path.join(dir, `m-${head}.safetensors`);
    m.save(file, { tokenizer: 'models/x', tokenizer_sha256: 'abc' });
    const back = FlexAR.load(file);
    assert.deepEqual(back.config, m.config);
    assert.equal(back.metadata.tokenizer, 'models/x');
    assert.equal(back.metadata.tokenizer_sha256, 'abc');
    const a = m.namedParameters();
    const bb = back.namedParameters();
    assert.deepEqual(bb.map(([n]) => n), a.map(([n]) => n));
    a.forEach(([n, t], i) => assert.deepEqual(bb[i][1].f, t.f, n));
    assert.equal(back.loss(tokens, classes).item(), m.loss(tokens, classes).item());
    for (const [dtype, round] of [['F16', roundToFloat16InPlace], ['BF16', roundToBfloat16InPlace]] as const) {
      const f = path.join(dir, `m-${head}-${dtype}.safetensors`);
      m.save(f, {}, { dtype });
      assert.ok(readSafetensors(f).tensors.get('posEmb')!.dtype === dtype);
      const h = FlexAR.load(f);
      a.forEach(([n, t], i) => assert.deepEqual(h.namedParameters()[i][1].f, round(Float32Array.from(t.f)), `${dtype} ${n}`));
      assert.ok(fs.statSync(f).size < fs.statSync(file).size * 0.6);
    }
  }
});

test('save / load errors name the file and the tensor', () => {
  const m = FlexAR.init(tinyConfig('digits'), new Rng(1));
  const file = path.join(dir, 'ok.safetensors');
  m.save(file);
  const { metadata, tensors } = readSafetensors(file);
  assert.throws(() => m.save(path.join(dir, 'x.safetensors'), { flextok_ar_config: '{}' }), /metadata key 'flextok_ar_config' is reserved/);

  const missing = path.join(dir, 'missing.safetensors');
  const t1 = new Map(tensors);
  t1.delete('blocks.1.mlp.fc2');
  writeSafetensors(missing, t1, metadata);
  assert.throws(() => FlexAR.load(missing), new RegExp(`${missing}: tensor 'blocks.1.mlp.fc2' \\[32, 88\\] is missing`));

  const shape = path.join(dir, 'shape.safetensors');
  const t2 = new Map(tensors);
  t2.set('posEmb', { dtype: 'F32', shape: [5, 32], data: new Float32Array(160) });
  writeSafetensors(shape, t2, metadata);
  assert.throws(() => FlexAR.load(shape), new RegExp(`${shape}: tensor 'posEmb' has shape \\[5, 32\\], the config needs \\[6, 32\\]`));

  const extra = path.join(dir, 'extra.safetensors');
  writeSafetensors(extra, new Map([...tensors, ['head', { dtype: 'F32', shape: [24, 32], data: new Float32Array(768) }]]), metadata);
  assert.throws(() => FlexAR.load(extra), new RegExp(`${extra}: tensor 'head' is not a weight of this AR model`));

  const intW = path.join(dir, 'int.safetensors');
  writeSafetensors(intW, new Map([...tensors, ['sos', { dtype: 'I32', shape: [32], data: new Int32Array(32) }]]), metadata);
  assert.throws(() => FlexAR.load(intW), /tensor 'sos' has dtype I32/);

  const noCfg = path.join(dir, 'nocfg.safetensors');
  writeSafetensors(noCfg, tensors, {});
  assert.throws(() => FlexAR.load(noCfg), new RegExp(`${noCfg}: not a flextok AR model`));

  const badJson = path.join(dir, 'badjson.safetensors');
  writeSafetensors(badJson, tensors, { ...metadata, flextok_ar_config: '{"dim":' });
  assert.throws(() => FlexAR.load(badJson), /is not valid JSON/);

  const badCfg = path.join(dir, 'badcfg.safetensors');
  writeSafetensors(badCfg, tensors, { ...metadata, flextok_ar_config: JSON.stringify({ ...m.config, head: 'bits' }) });
  assert.throws(() => FlexAR.load(badCfg), new RegExp(`${badCfg}: AR model config field 'head'`));
});

test('bad inputs to loss, forwardHidden, step and the heads are errors', () => {
  const m = FlexAR.init(tinyConfig('flat'), new Rng(1));
  const d = FlexAR.init(tinyConfig('digits'), new Rng(1));
  assert.throws(() => m.loss(new Int32Array(12), new Int32Array([0, 3])), /class id 3 at row 1 is outside −1..2/);
  assert.throws(() => m.loss(new Int32Array(12), new Int32Array([0, -2])), /class id -2/);
  assert.throws(() => m.loss(new Int32Array([0, 24]), new Int32Array([0])), /token id 24 at index 1 is outside 0..23/);
  assert.throws(() => m.loss(new Int32Array(13), new Int32Array([0, 1])), /13 tokens for 2 rows: need 1..6 tokens per row/);
  assert.throws(() => m.loss(new Int32Array(14), new Int32Array([0, 1])), /need 1..6 tokens per row/);
  assert.throws(() => m.forwardHidden(new Int32Array(12), new Int32Array([0, 1])), /need 0..5 tokens per row/);
  const cache = m.createCache(2);
  assert.throws(() => m.step(cache, new Int32Array(2), new Int32Array([0, 1])), /first step .* takes prevTokens = null/);
  assert.throws(() => m.step(cache, null, new Int32Array([0])), /1 class ids for a batch of 2/);
  m.step(cache, null, new Int32Array([0, 1]));
  assert.throws(() => m.step(cache, null, new Int32Array([0, 1])), /position 1 needs the previous tokens/);
  assert.throws(() => m.step(cache, new Int32Array([0, 99]), new Int32Array([0, 1])), /token id 99/);
  assert.throws(() => m.createCache(0), /positive integer/);
  const h = m.step(cache, new Int32Array([0, 1]), new Int32Array([0, 1]));
  assert.throws(() => m.digitLogits(h, new Int32Array(0), 0), /'flat' head \(use flatLogits\)/);
  assert.throws(() => d.flatLogits(h), /'digits' head \(use digitLogits\)/);
  assert.throws(() => d.digitLogits(h, new Int32Array(2), 3), /digit 3 is outside 0..2/);
  assert.throws(() => d.digitLogits(h, new Int32Array([0, 5]), 1), /digit 0 of row 1 is 5, outside 0..2/);
  assert.throws(() => d.digitLogits(h, new Int32Array(3), 2), /need \[2, 2\]/);
});
