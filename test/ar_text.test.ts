// Tests of text conditioning in the stage-2 model (src/ar/text.ts, src/ar/model.ts): cross-attention masking (a
// padded prompt gives the same logits as the unpadded one), KV cache with cross-attention equals full
// recomputation, the empty prompt is the null condition, float64 gradients through the text encoder and projector,
// precomputed embeddings, and clear errors for unknown words and mismatched conditions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArModelConfig, type ArModelConfig } from '../src/ar/config.js';
import { FlexAR } from '../src/ar/model.js';
import { buildVocab, concatTextBatches, embeddedPrompts, encodePrompts, nullPrompts, promptWords, type TextBatch } from '../src/ar/text.js';
import { generate } from '../src/ar/sampling.js';
import { AdamW, Rng, Tensor } from '../src/tensor/index.js';
import { assertClose, gradcheck } from './helpers/gradcheck.js';

const CAPTIONS = [
  'a bag in the top left',
  'a coat in the top right and a dress in the bottom left',
  'an ankle boot in the bottom right, a sandal in the top left and a shirt in the top right',
];
const VOCAB = buildVocab(CAPTIONS);

function textConfig(head: 'flat' | 'digits', over: Partial<ArModelConfig> = {}): ArModelConfig {
  return parseArModelConfig({
    vocab_size: 24, fsq_levels: [3, 2, 4], num_tokens: 6, num_classes: 0, dim: 32, depth: 2, head_dim: 8, head,
    text: { vocab: VOCAB, dim: 16, max_len: 24, depth: 1, head_dim: 8 }, ...over,
  }, 'test');
}

/** Row i of hidden states [B, P, D] as [P·D]. */
function row(h: Tensor, i: number): Float32Array {
  const per = h.size / h.shape[0];
  return Float32Array.from(h.f.subarray(i * per, (i + 1) * per));
}

test('prompt words and vocabulary', () => {
  assert.deepEqual(promptWords('An ankle boot in the top left, a Bag'), ['an', 'ankle', 'boot', 'in', 'the', 'top', 'left', ',', 'a', 'bag']);
  assert.deepEqual(promptWords(''), []);
  assert.ok(VOCAB.includes(',') && VOCAB.includes('ankle') && VOCAB.includes('and'));
  assert.deepEqual([...VOCAB].sort(), VOCAB);
});

test('an unknown word, an over-long prompt and a wrong condition are errors that name the problem', () => {
  const cfg = textConfig('digits');
  assert.throws(() => encodePrompts(['a hat in the top left'], cfg.text!), /prompt "a hat in the top left": the word "hat" is not in the model's vocabulary \(\d+ words: .*bag/);
  const long = 'a bag in the top left, a bag in the top left, a bag in the top left, a bag in the top left and a bag in the top left';
  assert.throws(() => encodePrompts([long], cfg.text!), /has 34 words; the model reads at most 24/);
  const m = FlexAR.init(cfg, new Rng(1));
  assert.throws(() => m.forwardHidden(new Int32Array(0), new Int32Array([0])), /text-conditional; give prompts/);
  const classModel = FlexAR.init(parseArModelConfig({ vocab_size: 24, fsq_levels: [3, 2, 4], num_tokens: 6, num_classes: 3, dim: 32, depth: 1, head_dim: 8 }, 't'), new Rng(1));
  assert.throws(() => classModel.forwardHidden(new Int32Array(0), encodePrompts(['a bag in the top left'], cfg.text!)), /class-conditional; give class ids/);
  const bad: TextBatch = { ...encodePrompts(['a bag in the top left'], cfg.text!) };
  (bad.ids as Int32Array)[0] = 999;
  assert.throws(() => m.forwardHidden(new Int32Array(0), bad), /word id 999 at index 0 is outside 0\.\./);
  assert.throws(() => m.step(m.createCache(2), null, encodePrompts(['a bag in the top left'], cfg.text!)), /1 prompts for a batch of 2/);
  assert.throws(() => parseArModelConfig({ ...cfg, text: { ...cfg.text!, vocab: ['a', 'a'] } }, 'c'), /text.vocab' lists a word twice/);
  assert.throws(() => parseArModelConfig({ ...cfg, text: { ...cfg.text!, depth: 2, vocab: null } }, 'c'), /must be 0 with precomputed embeddings/);
  assert.throws(() => parseArModelConfig({ ...cfg, num_classes: 0, text: null }, 'c'), /num_classes' must be a positive integer/);
});

for (const head of ['flat', 'digits'] as const) {
  test(`cross-attention masks padding: a padded prompt gives the same hidden states and logits as alone (${head} head)`, () => {
    const m = FlexAR.init(textConfig(head), new Rng(3));
    const rng = new Rng(4);
    const tokens = Int32Array.from({ length: 3 * 5 }, () => rng.randint(0, 24));
    const batch = encodePrompts(CAPTIONS, m.config.text!); // rows 0 and 1 are padded to row 2's length
    assert.ok(batch.mask.includes(0));
    const together = m.forwardHidden(tokens, batch);
    for (let i = 0; i < 3; i++) {
      const alone = m.forwardHidden(tokens.slice(i * 5, (i + 1) * 5), encodePrompts([CAPTIONS[i]], m.config.text!));
      assertClose(row(together, i), row(alone, 0), { rtol: 1e-5 }, `prompt ${i}`);
    }
    // the padding's word ids do not matter either
    const noisy: TextBatch = { ...batch, ids: batch.ids!.map((id, k) => (batch.mask[k] ? id : (k * 7) % VOCAB.length)) };
    assertClose(m.forwardHidden(tokens, noisy).f, together.f, { rtol: 1e-6 }, 'padding ids');
    // and the loss of the padded batch is the mean of the rows' losses
    const full = Int32Array.from({ length: 3 * 6 }, () => rng.randint(0, 24));
    const mean = CAPTIONS.reduce((s, c, i) => s + m.loss(full.slice(i * 6, (i + 1) * 6), encodePrompts([c], m.config.text!)).item(), 0) / 3;
    assertClose([m.loss(full, batch).item()], [mean], { rtol: 1e-5 }, 'loss');
  });

  test(`KV cache with cross-attention equals full recomputation at every prefix (${head} head, incl. the empty prompt)`, () => {
    const m = FlexAR.init(textConfig(head), new Rng(5));
    const prompts = concatTextBatches(encodePrompts(CAPTIONS.slice(0, 2), m.config.text!), nullPrompts(1, m.config.text!));
    const b = 3;
    const r = m.config.num_tokens;
    const d = m.config.dim;
    const rng = new Rng(6);
    const tokens = Int32Array.from({ length: b * r }, () => rng.randint(0, 24));
    const cache = m.createCache(b);
    for (let t = 0; t < r; t++) {
      const prev = t === 0 ? null : Int32Array.from({ length: b }, (_, i) => tokens[i * r + t - 1]);
      const h = m.step(cache, prev, prompts);
      const pre = new Int32Array(b * t);
      for (let i = 0; i < b; i++) pre.set(tokens.subarray(i * r, i * r + t), i * t);
      const full = m.forwardHidden(pre, prompts);
      const last = new Float32Array(b * d);
      for (let i = 0; i < b; i++) last.set(full.f.subarray((i * (t + 1) + t) * d, (i * (t + 1) + t + 1) * d), i * d);
      assertClose(h.f, last, { rtol: 1e-5 }, `hidden at position ${t}`);
      if (head === 'flat') assertClose(m.flatLogits(h).f, m.flatLogits(new Tensor(last, [b, d])).f, { rtol: 1e-5 }, `logits at ${t}`);
    }
    // the prompt matters
    const h0 = m.forwardHidden(new Int32Array(0), encodePrompts([CAPTIONS[0]], m.config.text!));
    const h1 = m.forwardHidden(new Int32Array(0), encodePrompts([CAPTIONS[1]], m.config.text!));
    assert.ok(h0.f.some((v, i) => Math.abs(v - h1.f[i]) > 1e-4));
  });
}

test('the empty prompt is the null condition: cross-attention adds nothing', () => {
  const m = FlexAR.init(textConfig('digits'), new Rng(7));
  const rng = new Rng(8);
  const tokens = Int32Array.from({ length: 5 }, () => rng.randint(0, 24));
  const empty = m.forwardHidden(tokens, nullPrompts(1, m.config.text!));
  for (const block of m.blocks) block.cross!.proj.f.fill(0); // without any cross-attention output
  const none = m.forwardHidden(tokens, encodePrompts([CAPTIONS[2]], m.config.text!));
  assertClose(empty.f, none.f, { rtol: 1e-6 }, 'empty prompt = no cross-attention');
});

test('precomputed prompt embeddings (e.g. T5): padding masked, dims checked', () => {
  const cfg = textConfig('flat', { text: { vocab: null, dim: 12, max_len: 8, depth: 0, head_dim: 12 } });
  const m = FlexAR.init(cfg, new Rng(9));
  const rng = new Rng(10);
  const e = (l: number) => ({ data: Float32Array.from({ length: l * 12 }, () => rng.normal()), length: l });
  const a = e(3);
  const b = e(6);
  const batch = embeddedPrompts([a, b], cfg.text!);
  const tokens = Int32Array.from({ length: 2 * 4 }, () => rng.randint(0, 24));
  const alone = m.forwardHidden(tokens.slice(0, 4), embeddedPrompts([a], cfg.text!));
  // garbage in row 0's padding does not change its result
  const emb = batch.embeddings!.f as Float32Array;
  for (let k = 3 * 12; k < 6 * 12; k++) emb[k] = 1e3;
  assertClose(row(m.forwardHidden(tokens, batch), 0), row(alone, 0), { rtol: 1e-5 }, 'row 0');
  assert.throws(() => embeddedPrompts([{ data: new Float32Array(10), length: 1 }], cfg.text!), /10 values for \[1, 12\]/);
  assert.throws(() => embeddedPrompts([e(9)], cfg.text!), /9 tokens; the model reads 0\.\.8/);
  assert.throws(() => encodePrompts(['a bag'], cfg.text!), /reads precomputed prompt embeddings/);
});

test('float64 gradients of a text model loss match finite differences (encoder, projector, cross-attention)', () => {
  const cfg = parseArModelConfig({
    vocab_size: 6, fsq_levels: [2, 3], num_tokens: 3, num_classes: 0, dim: 4, depth: 1, head_dim: 2, mlp_ratio: 2, head: 'digits', digit_hidden: 4,
    text: { vocab: ['a', 'bag', 'coat'], dim: 4, max_len: 3, depth: 1, head_dim: 2 },
  }, 'gradcheck');
  const m = FlexAR.init(cfg, new Rng(21), { dtype: 'float64' });
  const rng = new Rng(22);
  for (const [, t] of m.namedParameters()) rng.fillNormal(t.f, 0, 0.5);
  const named = m.namedParameters();
  assert.ok(named.some(([n]) => n.startsWith('textEncoder.blocks.0.attn')) && named.some(([n]) => n === 'blocks.0.cross.wk'));
  const tokens = new Int32Array([1, 5, 2, 0, 3, 4, 5, 5, 1]);
  const prompts = encodePrompts(['a bag', 'coat', ''], cfg.text!);
  const fn = (...ws: Tensor[]): Tensor => {
    named.forEach(([name], i) => {
      const parts = name.split('.');
      let obj: Record<string, unknown> = m as unknown as Record<string, unknown>;
      for (const p of parts.slice(0, -1)) obj = obj[p] as Record<string, unknown>;
      obj[parts[parts.length - 1]] = ws[i];
    });
    return m.loss(tokens, prompts);
  };
  const { grads } = gradcheck(fn, named.map(([, t]) => t.clone()), { rtol: 1e-5, label: 'text loss' });
  const g = (n: string) => grads[named.findIndex(([name]) => name === n)];
  assert.ok(g('textEncoder.wordEmb').some((v) => v !== 0) && g('textProj.fc1').some((v) => v !== 0));
});

test('a tiny text model learns a prompt-determined sequence to near-zero loss, then generates it (with and without CFG)', () => {
  const m = FlexAR.init(textConfig('digits'), new Rng(12));
  const rng = new Rng(13);
  const seqs = CAPTIONS.map(() => Int32Array.from({ length: 6 }, () => rng.randint(0, 24)));
  const prompts = encodePrompts([...CAPTIONS, ...CAPTIONS, '', '', ''], m.config.text!); // the empty prompt: the marginal
  const tokens = new Int32Array(9 * 6);
  for (let i = 0; i < 9; i++) tokens.set(seqs[i % 3]!, i * 6);
  const opt = new AdamW(m.parameters(), { lr: 1e-2, weightDecay: 0 });
  let loss = Infinity;
  for (let step = 0; step < 200; step++) {
    for (const p of m.parameters()) p.grad = null;
    const l = m.loss(tokens, prompts);
    l.backward();
    opt.step();
    loss = l.item();
  }
  assert.ok(loss < 0.4, `loss after training: ${loss}`); // the empty prompt's rows keep ln 3 / 3
  for (const cfgScale of [1, 3]) {
    const out = generate(m, { prompts: encodePrompts(CAPTIONS, m.config.text!), argmax: true, cfgScale });
    out.forEach((o, i) => assert.deepEqual(Array.from(o), Array.from(seqs[i]!), `prompt ${i}, CFG ${cfgScale}`));
  }
  assert.throws(() => generate(m, { classes: [0] }), /text-conditional: give prompts/);
});
