// Prompts as the text-conditional AR model reads them: a word vocabulary built from captions, prompts → padded
// word ids with a mask (the model's own encoder), or precomputed per-token embeddings (e.g. T5) with a mask.
//
// A prompt is split into words at spaces and commas, a comma being a word of its own ("a bag in the top left, a
// coat …" → a · bag · in · the · top · left · , · a · coat …), lower-cased. The empty prompt has no tokens at all:
// it is the null condition (cross-attention over no keys adds nothing), which classifier-free guidance uses.

import { Tensor } from '../tensor/tensor.js';
import type { ArTextConfig } from './config.js';

/** A batch of B prompts, padded to a common length Lt: either word ids or embeddings, and the mask of real tokens. */
export interface TextBatch {
  readonly batch: number;
  /** Lt ≥ 1 (a batch of empty prompts has one masked column) */
  readonly length: number;
  /** own encoder: [B, Lt] word ids (0 at padding) */
  readonly ids: Int32Array | null;
  /** precomputed: [B, Lt, D_text] (zeros at padding) */
  readonly embeddings: Tensor | null;
  /** [B, Lt]: 1 = a prompt token, 0 = padding */
  readonly mask: Uint8Array;
}

/** What the model is conditioned on: classes [B] (−1 = null class) or prompts. */
export type ArCondition = Int32Array | TextBatch;

export function isTextBatch(c: ArCondition): c is TextBatch {
  return !(c instanceof Int32Array);
}

/** The rows of a condition. */
export function conditionBatch(c: ArCondition): number {
  return isTextBatch(c) ? c.batch : c.length;
}

/** The words of a prompt (see the module comment); '' → []. */
export function promptWords(prompt: string): string[] {
  if (typeof prompt !== 'string') throw new Error(`a prompt must be a string, got ${typeof prompt}`);
  return prompt.toLowerCase().match(/,|[^\s,]+/g) ?? [];
}

/** The sorted distinct words of the given captions (the own encoder's vocabulary). */
export function buildVocab(captions: Iterable<string>): string[] {
  const words = new Set<string>();
  for (const c of captions) for (const w of promptWords(c)) words.add(w);
  return [...words].sort();
}

/** Word ids of one prompt; a word outside the vocabulary or a prompt over maxLen words is an error naming it. */
export function promptIds(prompt: string, vocab: readonly string[], maxLen: number, index: Map<string, number> = vocabIndex(vocab)): Int32Array {
  const words = promptWords(prompt);
  if (words.length > maxLen) throw new Error(`prompt "${prompt}" has ${words.length} words; the model reads at most ${maxLen}`);
  return Int32Array.from(words, (w) => {
    const id = index.get(w);
    if (id === undefined) {
      const known = vocab.filter((v) => v !== ',');
      throw new Error(`prompt "${prompt}": the word "${w}" is not in the model's vocabulary (${vocab.length} words: ${known.join(', ')})`);
    }
    return id;
  });
}

function vocabIndex(vocab: readonly string[]): Map<string, number> {
  return new Map(vocab.map((w, i) => [w, i]));
}

/** Prompts → a TextBatch of word ids for a model with its own encoder (text.vocab). */
export function encodePrompts(prompts: readonly string[], text: ArTextConfig): TextBatch {
  const vocab = text.vocab;
  if (vocab === null) throw new Error('this model reads precomputed prompt embeddings (text.vocab is null): pass them with embeddedPrompts');
  if (prompts.length === 0) throw new Error('encodePrompts: no prompts');
  const index = vocabIndex(vocab);
  const rows = prompts.map((p) => promptIds(p, vocab, text.max_len, index));
  const length = Math.max(1, ...rows.map((r) => r.length));
  const ids = new Int32Array(prompts.length * length);
  const mask = new Uint8Array(prompts.length * length);
  rows.forEach((r, i) => {
    ids.set(r, i * length);
    mask.fill(1, i * length, i * length + r.length);
  });
  return { batch: prompts.length, length, ids, embeddings: null, mask };
}

/** One prompt's precomputed embeddings: [L, D_text] row-major (L = 0 for the null prompt). */
export interface PromptEmbedding {
  data: Float32Array;
  length: number;
}

/** Precomputed prompt embeddings (e.g. from T5) → a TextBatch for a model with text.vocab null. */
export function embeddedPrompts(prompts: readonly PromptEmbedding[], text: ArTextConfig): TextBatch {
  if (prompts.length === 0) throw new Error('embeddedPrompts: no prompts');
  const dt = text.dim;
  prompts.forEach((p, i) => {
    if (!Number.isInteger(p.length) || p.length < 0 || p.length > text.max_len) throw new Error(`prompt embedding ${i}: ${p.length} tokens; the model reads 0..${text.max_len}`);
    if (p.data.length !== p.length * dt) throw new Error(`prompt embedding ${i}: ${p.data.length} values for [${p.length}, ${dt}] (the model's text.dim is ${dt})`);
    for (const v of p.data) if (!Number.isFinite(v)) throw new Error(`prompt embedding ${i} holds a non-finite value (${v})`);
  });
  const length = Math.max(1, ...prompts.map((p) => p.length));
  const data = new Float32Array(prompts.length * length * dt);
  const mask = new Uint8Array(prompts.length * length);
  prompts.forEach((p, i) => {
    data.set(p.data, i * length * dt);
    mask.fill(1, i * length, i * length + p.length);
  });
  return { batch: prompts.length, length, ids: null, embeddings: new Tensor(data, [prompts.length, length, dt]), mask };
}

/** B empty prompts (the null condition) in the form the model reads. */
export function nullPrompts(batch: number, text: ArTextConfig): TextBatch {
  return text.vocab === null
    ? embeddedPrompts(Array.from({ length: batch }, () => ({ data: new Float32Array(0), length: 0 })), text)
    : encodePrompts(new Array<string>(batch).fill(''), text);
}

/** Rows of a then rows of b, padded to the longer length (for the doubled CFG batch [cond | uncond]). */
export function concatTextBatches(a: TextBatch, b: TextBatch): TextBatch {
  if ((a.ids === null) !== (b.ids === null)) throw new Error('concatTextBatches: one batch holds word ids, the other embeddings');
  const length = Math.max(a.length, b.length);
  const batch = a.batch + b.batch;
  const mask = new Uint8Array(batch * length);
  const ids = a.ids ? new Int32Array(batch * length) : null;
  const dt = a.embeddings ? a.embeddings.shape[2] : 0;
  if (b.embeddings && b.embeddings.shape[2] !== dt) throw new Error(`concatTextBatches: embedding widths ${dt} and ${b.embeddings.shape[2]}`);
  const emb = a.embeddings ? new Float32Array(batch * length * dt) : null;
  let row = 0;
  for (const t of [a, b]) {
    for (let i = 0; i < t.batch; i++, row++) {
      mask.set(t.mask.subarray(i * t.length, (i + 1) * t.length), row * length);
      if (ids) ids.set(t.ids!.subarray(i * t.length, (i + 1) * t.length), row * length);
      if (emb) emb.set((t.embeddings!.f as Float32Array).subarray(i * t.length * dt, (i + 1) * t.length * dt), row * length * dt);
    }
  }
  return { batch, length, ids, embeddings: emb ? new Tensor(emb, [batch, length, dt]) : null, mask };
}

/** Rows [start, end) of a batch (same padding length). */
export function sliceTextBatch(t: TextBatch, start: number, end: number): TextBatch {
  const l = t.length;
  const dt = t.embeddings ? t.embeddings.shape[2] : 0;
  return {
    batch: end - start,
    length: l,
    ids: t.ids ? t.ids.slice(start * l, end * l) : null,
    embeddings: t.embeddings ? new Tensor((t.embeddings.f as Float32Array).slice(start * l * dt, end * l * dt), [end - start, l, dt]) : null,
    mask: t.mask.slice(start * l, end * l),
  };
}
