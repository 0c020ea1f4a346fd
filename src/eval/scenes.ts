// Scene metrics for text-conditional generation on Fashion-MNIST scenes (src/io/scenes.ts): a generated 64×64 scene
// is split into its four 32×32 cells; a cell is empty when its mean brightness is below a threshold (from its pixels),
// otherwise its 28×28 centre is classified by the project's classifier. Per prompt: exact match (every cell right —
// its class, or empty) and per-cell accuracy; reported by the prompt's complexity n (items named) and by the token
// count k, next to the same scores for the tokenizer's reconstructions of real test scenes.

import type { Generator, GenerationSettings } from '../ar/generator.js';
import { decoderGuidanceText } from '../ar/settings.js';
import { powerOfTwoKs } from '../flextok/model.js';
import { EMPTY_CELL, SCENE_CELL, SCENE_ITEM_OFFSET, SCENE_SIZE } from '../io/scenes.js';
import { Tensor } from '../tensor/tensor.js';
import type { FmnistClassifier } from './classifier.js';
import { clampToDisplayRange } from './metrics.js';

/** A cell is empty when its mean brightness ((x + 1) / 2 over 32×32 px) is below this: half the darkest Fashion-MNIST
 * test image's (0.024; the 1 % quantile is 0.049), so a real item is never called empty and faint noise is. */
export const EMPTY_CELL_BRIGHTNESS = 0.012;

const ITEM = SCENE_CELL - 2 * SCENE_ITEM_OFFSET; // 28

/** The layout each scene shows: [N·4] class (0–9) or EMPTY_CELL per cell (0 top left … 3 bottom right). */
export function readSceneLayouts(images: Tensor, classifier: FmnistClassifier, emptyBelow = EMPTY_CELL_BRIGHTNESS): Int32Array {
  const [n, c, h, w] = images.shape;
  if (images.ndim !== 4 || c !== 1 || h !== SCENE_SIZE || w !== SCENE_SIZE) throw new Error(`readSceneLayouts: expected scenes [N, 1, ${SCENE_SIZE}, ${SCENE_SIZE}], got [${images.shape.join(', ')}]`);
  const src = images.f;
  const out = new Int32Array(n * 4).fill(EMPTY_CELL);
  const crops: number[] = []; // flat index i·4 + cell of each non-empty cell
  const data: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    for (let cell = 0; cell < 4; cell++) {
      const y0 = (cell >> 1) * SCENE_CELL;
      const x0 = (cell & 1) * SCENE_CELL;
      let sum = 0;
      for (let y = 0; y < SCENE_CELL; y++) {
        for (let x = 0; x < SCENE_CELL; x++) sum += (Math.min(1, Math.max(-1, src[i * h * w + (y0 + y) * w + x0 + x]!)) + 1) / 2;
      }
      if (sum / (SCENE_CELL * SCENE_CELL) < emptyBelow) continue;
      const crop = new Float32Array(ITEM * ITEM);
      for (let y = 0; y < ITEM; y++) {
        const from = i * h * w + (y0 + SCENE_ITEM_OFFSET + y) * w + x0 + SCENE_ITEM_OFFSET;
        crop.set(src.subarray(from, from + ITEM), y * ITEM);
      }
      crops.push(i * 4 + cell);
      data.push(crop);
    }
  }
  const bs = 500;
  for (let s = 0; s < crops.length; s += bs) {
    const e = Math.min(crops.length, s + bs);
    const batch = new Float32Array((e - s) * ITEM * ITEM);
    for (let j = s; j < e; j++) batch.set(data[j]!, (j - s) * ITEM * ITEM);
    const pred = classifier.predict(new Tensor(batch, [e - s, 1, ITEM, ITEM]));
    for (let j = s; j < e; j++) out[crops[j]!] = pred[j - s]!;
  }
  return out;
}

/** Per scene: exact match (all four cells right) and the fraction of its cells that are right. */
export function scoreLayouts(pred: Int32Array, truth: Int32Array): { exact: boolean[]; cellAccuracy: number[] } {
  if (pred.length !== truth.length || pred.length % 4 !== 0) throw new Error(`scoreLayouts: ${pred.length} predicted and ${truth.length} true cells`);
  const exact: boolean[] = [];
  const cellAccuracy: number[] = [];
  for (let i = 0; i < pred.length / 4; i++) {
    let right = 0;
    for (let c = 0; c < 4; c++) if (pred[i * 4 + c] === truth[i * 4 + c]) right++;
    exact.push(right === 4);
    cellAccuracy.push(right / 4);
  }
  return { exact, cellAccuracy };
}

/** Mean exact match and per-cell accuracy of scenes grouped by item count n (1–4), and overall. */
export interface SceneScores {
  /** index n − 1 */
  exactByN: number[];
  cellByN: number[];
  exact: number;
  cell: number;
}

function groupScores(s: { exact: boolean[]; cellAccuracy: number[] }, counts: readonly number[]): SceneScores {
  const exactByN = [0, 0, 0, 0];
  const cellByN = [0, 0, 0, 0];
  const num = [0, 0, 0, 0];
  counts.forEach((n, i) => {
    exactByN[n - 1] += s.exact[i] ? 1 : 0;
    cellByN[n - 1] += s.cellAccuracy[i]!;
    num[n - 1]++;
  });
  const mean = (a: number[]) => a.map((v, j) => (num[j] ? v / num[j] : NaN));
  const total = counts.length;
  return {
    exactByN: mean(exactByN),
    cellByN: mean(cellByN),
    exact: s.exact.filter(Boolean).length / total,
    cell: s.cellAccuracy.reduce((a, b) => a + b, 0) / total,
  };
}

/** Real scenes (for reconstructions) or prompts (for generation) with their true layouts. */
export interface ScenePrompt {
  caption: string;
  /** [4] class or EMPTY_CELL */
  layout: Int32Array;
}

export interface SceneEvalOptions {
  /** the prompts to generate from (one sample each), e.g. captions of test scenes, 100 per n */
  prompts: ScenePrompt[];
  ks?: number[];
  settings: GenerationSettings;
  classifier: FmnistClassifier;
  /** real scenes the tokenizer reconstructs at each k, with their layouts [N·4] */
  recon: { images: Tensor; layouts: Int32Array } | null;
  batchSize?: number;
  onProgress?: (what: string, done: number, total: number) => void;
}

export interface SceneEvalRow {
  k: number;
  generated: SceneScores;
  reconstructed: SceneScores | null;
}

export interface SceneEvalReport {
  samples: number;
  /** prompts per item count n = 1..4 */
  promptsByN: number[];
  reconScenes: number;
  settings: GenerationSettings;
  rows: SceneEvalRow[];
  seconds: number;
}

function itemCount(layout: Int32Array): number {
  let n = 0;
  for (const c of layout) if (c !== EMPTY_CELL) n++;
  return n;
}

function concatLayouts(layouts: Int32Array[]): Int32Array {
  const out = new Int32Array(layouts.length * 4);
  layouts.forEach((l, i) => out.set(l, i * 4));
  return out;
}

/** Generate one sample per prompt (R tokens), decode its k-prefixes and score them; reconstructions likewise. */
export function evaluateSceneGeneration(gen: Generator, opts: SceneEvalOptions): SceneEvalReport {
  const started = Date.now();
  const r = gen.model.config.num_tokens;
  const ks = opts.ks ?? powerOfTwoKs(r);
  for (const k of ks) if (!Number.isInteger(k) || k < 1 || k > r) throw new RangeError(`k = ${k} must be an integer in [1, ${r}]`);
  if (!gen.isText) throw new Error(`${gen.source} is not a text-conditional generator`);
  const bs = opts.batchSize ?? 50;
  const n = opts.prompts.length;
  const truth = concatLayouts(opts.prompts.map((p) => p.layout));
  const counts = opts.prompts.map((p) => itemCount(p.layout));
  const s: GenerationSettings = { ...opts.settings, num_tokens: r };
  const tokens: Int32Array[] = [];
  for (let start = 0, b = 0; start < n; start += bs, b++) {
    tokens.push(...gen.generateTokens(opts.prompts.slice(start, start + bs).map((p) => p.caption), { ...s, seed: s.seed + b }));
    opts.onProgress?.('generate', Math.min(n, start + bs), n);
  }
  const recon = opts.recon;
  const m = recon ? recon.images.shape[0] : 0;
  const reconIds: Int32Array[] = [];
  for (let start = 0; start < m; start += bs) {
    const e = Math.min(m, start + bs);
    const per = SCENE_SIZE * SCENE_SIZE;
    const batch = new Tensor((recon!.images.f as Float32Array).slice(start * per, e * per), [e - start, 1, SCENE_SIZE, SCENE_SIZE]);
    reconIds.push(...gen.tokenizer.tokenize(batch).map((t) => Int32Array.from(t)));
    opts.onProgress?.('tokenize real scenes', e, m);
  }
  const reconCounts = recon ? Array.from({ length: m }, (_, i) => itemCount(recon.layouts.subarray(i * 4, i * 4 + 4))) : [];
  const decodeAll = (ids: Int32Array[], k: number, what: string): Int32Array => {
    const layouts: Int32Array[] = [];
    for (let start = 0; start < ids.length; start += bs) {
      const images = clampToDisplayRange(gen.decode(ids.slice(start, start + bs), k, s));
      layouts.push(readSceneLayouts(images, opts.classifier));
      opts.onProgress?.(what, Math.min(ids.length, start + bs), ids.length);
    }
    const out = new Int32Array(ids.length * 4);
    let at = 0;
    for (const l of layouts) {
      out.set(l, at);
      at += l.length;
    }
    return out;
  };
  const rows = ks.map((k) => {
    const generated = groupScores(scoreLayouts(decodeAll(tokens, k, `decode k = ${k}`), truth), counts);
    const reconstructed = recon ? groupScores(scoreLayouts(decodeAll(reconIds, k, `reconstruct k = ${k}`), recon.layouts), reconCounts) : null;
    return { k, generated, reconstructed };
  });
  const promptsByN = [1, 2, 3, 4].map((c) => counts.filter((x) => x === c).length);
  return { samples: n, promptsByN, reconScenes: m, settings: s, rows, seconds: (Date.now() - started) / 1000 };
}

/** The smallest k whose value reaches `fraction` of the row's best (NaN-free rows). */
export function smallestKReaching(ks: number[], values: number[], fraction = 0.95): number {
  const best = Math.max(...values);
  const i = values.findIndex((v) => v >= fraction * best);
  return ks[i]!;
}

const pct = (v: number) => (Number.isFinite(v) ? `${(100 * v).toFixed(1)} %` : '–');

/** Markdown: exact match by n (rows) and k (columns) with the smallest k reaching 95 % of each row's best; per-cell
 * accuracy likewise; the reconstructions' rows. */
export function sceneTable(rep: SceneEvalReport): string {
  const ks = rep.rows.map((r) => r.k);
  const head = ['', ...ks.map((k) => `k = ${k}`), 'smallest k ≥ 95 % of best'];
  const lines: string[] = [];
  const table = (title: string, pick: (s: SceneScores) => { byN: number[]; all: number }, src: 'generated' | 'reconstructed') => {
    lines.push(`**${title}**`, '', `| ${head.join(' | ')} |`, `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`);
    for (let n = 1; n <= 4; n++) {
      const vals = rep.rows.map((r) => pick(r[src]!).byN[n - 1]!);
      if (vals.every((v) => !Number.isFinite(v))) continue;
      lines.push(`| n = ${n} | ${vals.map(pct).join(' | ')} | ${smallestKReaching(ks, vals)} |`);
    }
    const all = rep.rows.map((r) => pick(r[src]!).all);
    lines.push(`| all | ${all.map(pct).join(' | ')} | ${smallestKReaching(ks, all)} |`, '');
  };
  table(`Generated: exact match (every cell right), ${rep.samples} prompts (${rep.promptsByN.join(' / ')} with n = 1 / 2 / 3 / 4 items), 1 sample each`, (s) => ({ byN: s.exactByN, all: s.exact }), 'generated');
  table('Generated: per-cell accuracy', (s) => ({ byN: s.cellByN, all: s.cell }), 'generated');
  if (rep.rows[0]?.reconstructed) {
    table(`Reconstructions of ${rep.reconScenes} real test scenes: exact match`, (s) => ({ byN: s.exactByN, all: s.exact }), 'reconstructed');
    table('Reconstructions: per-cell accuracy', (s) => ({ byN: s.cellByN, all: s.cell }), 'reconstructed');
  }
  const st = rep.settings;
  lines.push(`cfg ${st.cfg_scale} (${st.cfg_schedule}), temperature ${st.temperature}, top-k ${st.top_k}, top-p ${st.top_p}, decoder ${st.decoder_steps} steps, ` +
    `${decoderGuidanceText(st)}, seed ${st.seed}; a cell is empty below mean brightness ${EMPTY_CELL_BRIGHTNESS}, else its 28×28 centre is classified. ${rep.seconds.toFixed(0)} s.`);
  return lines.join('\n');
}
