// `flextok eval-generation`: scores a class-conditional generator on Fashion-MNIST at every token count k
// (class accuracy, Fréchet distance with its real-data floor, diversity, and the tokenizer's reconstructions
// at the same k), or a text-conditional one on Fashion-MNIST scenes (exact match and per-cell accuracy by the
// prompt's item count n), and writes a table, a JSON report and a chart.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Generator, type GenerationSettings } from '../ar/generator.js';
import { decoderGuidanceText } from '../ar/settings.js';
import { FmnistClassifier } from '../eval/classifier.js';
import { writeLineChart } from '../eval/chart.js';
import { evaluateGeneration, generationTable, type GenerationReport, type LabelledImages } from '../eval/generation.js';
import { Rng } from '../tensor/rng.js';
import { Tensor } from '../tensor/tensor.js';
import { openDataset, sampleBatchWithLabels } from '../train/data.js';
import type { ImageDataset } from '../io/datasets.js';
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { DEFAULT_GENERATOR, optNum } from './generate.js';
import { apgOption, NOISE_SCALE_OPTION } from './model_options.js';
import { ProgressBar } from './progress.js';
import { evaluateSceneGeneration, sceneTable, type SceneEvalReport, type ScenePrompt } from '../eval/scenes.js';
import { loadFashionScenes, sceneLayout } from '../io/scenes.js';

const CLASSIFIERS = [
  { name: 'classifier', file: 'models/fmnist-classifier/classifier.safetensors' },
  { name: 'robust', file: 'models/fmnist-classifier-robust/classifier.safetensors' },
];

export const evalGenerationSpec: CommandSpec = {
  name: 'eval-generation',
  summary: 'Score a generator per token count k: class-conditional — class accuracy, Fréchet distance (with the real-data floor), diversity; text-conditional (scenes) — exact match and per-cell accuracy by prompt complexity; both next to the tokenizer\'s own reconstructions.',
  usage: 'flextok eval-generation [--model DIR] [--per-class N | --per-n N] [--ks 1,2,4,…] [sampling options] --out-dir DIR',
  positionals: [],
  options: [
    { name: 'model', kind: 'string', value: 'DIR', help: 'generator folder or its model.safetensors', defaultText: DEFAULT_GENERATOR },
    { name: 'tokenizer', kind: 'string', value: 'MODEL', help: 'the tokenizer the generator was trained on', defaultText: 'the one recorded in the generator' },
    { name: 'per-class', kind: 'string', value: 'N', help: 'generated samples per class', defaultText: '100' },
    { name: 'per-n', kind: 'string', value: 'N', help: 'text-conditional (scenes): prompts per item count n = 1..4, the captions of the first test scenes with that n (one sample each)', defaultText: '100' },
    { name: 'first-scene', kind: 'string', value: 'I', help: 'text-conditional: take the prompts from test scene I on (choose settings on other prompts than the ones you report)', defaultText: '0' },
    { name: 'ks', kind: 'string', value: 'LIST', help: 'token counts to score, comma-separated', defaultText: '1, 2, 4, …, R' },
    { name: 'recon', kind: 'string', value: 'N', help: 'test images (scenes) the tokenizer reconstructs at each k (the first N; 0 = none for scenes)', defaultText: 'as many as generated samples (scenes: 1000)' },
    { name: 'cfg', kind: 'string', value: 'S', help: 'guidance scale on the logits', defaultText: 'stored with the generator' },
    { name: 'cfg-schedule', kind: 'string', value: 'NAME', help: 'constant, linear or power-cosine', defaultText: 'stored' },
    { name: 'temperature', kind: 'string', value: 'T', help: 'sampling temperature', defaultText: 'stored' },
    { name: 'top-k', kind: 'string', value: 'K', help: 'top-k filter (0 = off)', defaultText: 'stored' },
    { name: 'top-p', kind: 'string', value: 'P', help: 'top-p filter (1 = off)', defaultText: 'stored' },
    { name: 'steps', kind: 'string', value: 'N', help: "Euler steps of the tokenizer's decoder", defaultText: 'stored' },
    { name: 'guidance', kind: 'string', value: 'G', help: "guidance of the tokenizer's decoder", defaultText: 'stored' },
    { name: 'apg', kind: 'boolean', help: 'with --guidance ≠ 1: adaptive projected guidance in the decoder', defaultText: 'stored' },
    { name: 'no-apg', kind: 'boolean', help: 'with --guidance ≠ 1: plain classifier-free guidance in the decoder' },
    { ...NOISE_SCALE_OPTION, defaultText: 'stored' },
    { name: 'seed', kind: 'string', value: 'N', help: 'seed of the generation (batch b uses seed + b) and of the floor subset', defaultText: '1000 (not the seeds the samples of a model card were chosen on)' },
    { name: 'reuse-recon', kind: 'string', value: 'FILE', help: "take the reconstruction columns from an earlier report.json (same tokenizer, --recon, seed and decoder settings: they do not depend on the generator)" },
    { name: 'out-dir', kind: 'string', value: 'DIR', help: 'writes report.md, report.json and chart.png there (required)' },
  ],
  notes: [
    'Reference for the Fréchet distance: all 10,000 Fashion-MNIST test images; features: the project classifier\'s pooled last conv block (64-d).',
    'The floor is the same distance for as many real train images as generated samples (what a perfect generator scores at that n).',
  ],
};

/** One progress bar per phase ("generate", "decode k = 4", …): a new bar whenever the phase's name changes. */
function phaseProgress(): { update: (what: string, done: number, total: number) => void; done: () => void } {
  let bar: ProgressBar | null = null;
  let label = '';
  return {
    update(what, done, total) {
      if (what !== label) {
        bar?.done();
        bar = new ProgressBar(what, total);
        label = what;
      }
      bar!.update(done, total);
    },
    done: () => bar?.done(),
  };
}

function subset(ds: ImageDataset, indices: number[]): LabelledImages {
  const per = ds.channels * ds.height * ds.width;
  const data = new Float32Array(indices.length * per);
  const labels = new Int32Array(indices.length);
  indices.forEach((idx, i) => {
    const s = ds.get(idx);
    data.set(s.image, i * per);
    labels[i] = s.label;
  });
  return { images: new Tensor(data, [indices.length, ds.channels, ds.height, ds.width]), labels };
}

export async function runEvalGeneration(args: ParsedArgs, log: (line: string) => void): Promise<void> {
  if (args.positionals.length) throw new UsageError(`unexpected argument '${args.positionals[0]}'`, args.command);
  const outDir = args.requireStr('out-dir');
  const gen = Generator.load(args.str('model') ?? DEFAULT_GENERATOR, { tokenizer: args.str('tokenizer') });
  if (gen.isText && args.has('per-class')) throw new UsageError('--per-class is for class-conditional generators; a text-conditional one takes --per-n', args.command);
  if (!gen.isText && (args.has('per-n') || args.has('first-scene'))) throw new UsageError('--per-n and --first-scene are for text-conditional (scenes) generators', args.command);
  const perClass = args.num('per-class', 100, { integer: true, min: 1 });
  const r = gen.model.config.num_tokens;
  let ks: number[] | undefined;
  if (args.has('ks')) {
    ks = args.str('ks')!.split(',').map((x) => Number(x.trim()));
    const bad = ks.find((k) => !Number.isInteger(k) || k < 1 || k > r);
    if (bad !== undefined) throw new UsageError(`--ks: ${bad} is not an integer in 1..${r}`, args.command);
  }
  const over: Partial<GenerationSettings> = {
    cfg_scale: optNum(args, 'cfg', { min: 0 }), temperature: optNum(args, 'temperature'), top_k: optNum(args, 'top-k', { integer: true, min: 0 }),
    top_p: optNum(args, 'top-p'), decoder_steps: optNum(args, 'steps', { integer: true, min: 1 }), decoder_guidance: optNum(args, 'guidance', { min: 0 }),
    decoder_apg: apgOption(args), decoder_noise_scale: optNum(args, 'noise-scale', { min: 0 }), seed: args.num('seed', 1000, { integer: true, min: 0 }),
  };
  const schedule = args.str('cfg-schedule');
  if (schedule !== undefined) over.cfg_schedule = schedule as GenerationSettings['cfg_schedule'];
  let settings: GenerationSettings;
  try {
    settings = gen.settings(over);
  } catch (e) {
    throw new UsageError((e as Error).message, args.command);
  }
  if (gen.isText) {
    await evalScenes(args, gen, settings, ks, outDir, log);
    return;
  }
  const n = perClass * gen.model.config.num_classes;
  const recon = args.num('recon', n, { integer: true, min: 1 });
  const [size] = gen.tokenizer.imageSize;
  const data = { source: 'fashion-mnist', resolution: size, resize_mode: 'pad' as const, channels: 1 as const, limit: null, flip: false };
  const test = await openDataset(data, 'test');
  const train = await openDataset(data, 'train');
  const reference = sampleBatchWithLabels(test, test.size);
  const order = Int32Array.from({ length: train.size }, (_, i) => i);
  new Rng(settings.seed).shuffle(order);
  const floorImages = subset(train, Array.from(order.subarray(0, n)));
  const reconImages = sampleBatchWithLabels(test, Math.min(recon, test.size));
  const classifiers = CLASSIFIERS.filter((c) => fs.existsSync(c.file)).map((c) => ({ name: c.name, model: FmnistClassifier.load(c.file) }));
  if (classifiers.length === 0) throw new Error(`no classifier found (${CLASSIFIERS.map((c) => c.file).join(', ')}); run from the repository root`);
  log(`eval-generation: ${gen.source}, ${n} samples (${perClass} per class) at k = ${(ks ?? []).join(', ') || `1, 2, 4, …, ${r}`}; ` +
    `cfg ${settings.cfg_scale} (${settings.cfg_schedule}), temperature ${settings.temperature}, top-k ${settings.top_k}, top-p ${settings.top_p}, ` +
    `decoder ${settings.decoder_steps} steps, ${decoderGuidanceText(settings)}; reference ${test.size} test images, floor ${n} train images, ${reconImages.labels.length} reconstructions`);
  let knownRecon: Map<number, { fdRecon: number; reconAccuracy: number }> | undefined;
  const reuse = args.str('reuse-recon');
  if (reuse !== undefined) {
    let prev: { settings?: Partial<GenerationSettings>; reconImages?: number; rows?: { k: number; fdRecon: number; reconAccuracy: number }[] };
    try {
      prev = JSON.parse(fs.readFileSync(reuse, 'utf8'));
    } catch (e) {
      throw new UsageError(`--reuse-recon ${reuse}: cannot read the report (${(e as Error).message})`, args.command);
    }
    const ps = prev.settings ?? {};
    if (ps.decoder_steps !== settings.decoder_steps || ps.decoder_guidance !== settings.decoder_guidance || (settings.decoder_guidance !== 1 && (ps.decoder_apg ?? true) !== settings.decoder_apg) || (ps.decoder_noise_scale ?? 1) !== settings.decoder_noise_scale || ps.seed !== settings.seed
      || (prev.reconImages !== undefined && prev.reconImages !== reconImages.labels.length) || !Array.isArray(prev.rows)) {
      throw new UsageError(`--reuse-recon ${reuse}: its decoder steps, guidance, APG, noise scale, seed or reconstruction count differ from this run's; reconstruct again instead`, args.command);
    }
    knownRecon = new Map(prev.rows.map((r) => [r.k, { fdRecon: r.fdRecon, reconAccuracy: r.reconAccuracy }]));
  }
  const progress = phaseProgress();
  const report = evaluateGeneration(gen, {
    perClass, ks, settings, classifiers, featureModel: classifiers[0].model, reference, floorImages, reconImages, knownRecon,
    onProgress: progress.update,
  });
  progress.done();
  fs.mkdirSync(outDir, { recursive: true });
  const table = generationTable(report);
  fs.writeFileSync(path.join(outDir, 'report.md'), `${table}\n`);
  fs.writeFileSync(path.join(outDir, 'report.json'), `${JSON.stringify({ model: gen.source, reconImages: reconImages.labels.length, reconFrom: reuse ?? null, ...report }, null, 2)}\n`);
  await writeLineChart(path.join(outDir, 'chart.png'), generationChart(report, gen.source));
  process.stdout.write(`${table}\n`);
  log(`wrote ${path.join(outDir, 'report.md')}, report.json and chart.png`);
}

/** Accuracy, Fréchet distance and diversity against k, with the reconstructions and the real-data floor. */
export function generationChart(rep: GenerationReport, source: string): Parameters<typeof writeLineChart>[1] {
  const xs = rep.rows.map((r) => r.k);
  const flat = (v: number) => xs.map(() => v);
  return {
    title: `Generation vs token count k (${path.basename(path.dirname(source))}, ${rep.samples} samples, cfg ${rep.settings.cfg_scale})`,
    xLabel: 'tokens k',
    xScale: 'log2',
    width: 1500,
    height: 520,
    panels: [
      {
        title: 'class accuracy', yLabel: 'accuracy (%)', yMin: 0, yMax: 100,
        series: [
          ...rep.classifiers.map((c, i) => ({ name: `generated (${c})`, xs, ys: rep.rows.map((r) => 100 * r.accuracy[i]) })),
          { name: 'reconstructions', xs, ys: rep.rows.map((r) => 100 * r.reconAccuracy) },
          { name: 'real images', xs, ys: flat(100 * rep.floorAccuracy[0]), dashed: true },
        ],
      },
      {
        title: 'Frechet distance (classifier features)', yLabel: 'FD (lower is better)', yMin: 0,
        series: [
          { name: 'generated', xs, ys: rep.rows.map((r) => r.fd) },
          { name: 'reconstructions', xs, ys: rep.rows.map((r) => r.fdRecon) },
          { name: 'real floor', xs, ys: flat(rep.fdFloor), dashed: true },
        ],
      },
      {
        title: 'diversity', yLabel: 'generated / real', yMin: 0,
        series: [
          { name: 'generated', xs, ys: rep.rows.map((r) => r.diversity) },
          { name: 'real', xs, ys: flat(1), dashed: true },
        ],
      },
    ],
  };
}

/** Text-conditional generators on Fashion-MNIST scenes: prompts from the test scenes, per n; reconstructions. */
async function evalScenes(args: ParsedArgs, gen: Generator, settings: GenerationSettings, ks: number[] | undefined, outDir: string, log: (line: string) => void): Promise<void> {
  const perN = args.num('per-n', 100, { integer: true, min: 1 });
  const first = args.num('first-scene', 0, { integer: true, min: 0 });
  const recon = args.num('recon', 1000, { integer: true, min: 0 });
  const test = loadFashionScenes('test');
  const prompts: ScenePrompt[][] = [[], [], [], []];
  for (let i = first; i < test.size && prompts.some((p) => p.length < perN); i++) {
    const items = test.items(i);
    const bucket = prompts[items.length - 1]!;
    if (bucket.length < perN) bucket.push({ caption: test.caption(i), layout: sceneLayout(items) });
  }
  if (prompts.some((p) => p.length < perN)) throw new UsageError(`--first-scene ${first}: fewer than ${perN} test scenes of some item count remain after it`, args.command);
  const flat = prompts.flat();
  const r = gen.model.config.num_tokens;
  let reconSet: { images: Tensor; layouts: Int32Array } | null = null;
  if (recon > 0) {
    const count = Math.min(recon, test.size);
    const per = test.height * test.width;
    const data = new Float32Array(count * per);
    const layouts = new Int32Array(count * 4);
    for (let i = 0; i < count; i++) {
      data.set(test.get(i).image, i * per);
      layouts.set(sceneLayout(test.items(i)), i * 4);
    }
    reconSet = { images: new Tensor(data, [count, 1, test.height, test.width]), layouts };
  }
  const classifier = FmnistClassifier.load(CLASSIFIERS[0]!.file);
  log(`eval-generation: ${gen.source}, ${flat.length} prompts (${perN} per item count n = 1..4, test scenes from ${first}), 1 sample each, ` +
    `k = ${(ks ?? []).join(', ') || `1, 2, 4, …, ${r}`}; cfg ${settings.cfg_scale} (${settings.cfg_schedule}), temperature ${settings.temperature}, ` +
    `decoder ${settings.decoder_steps} steps, ${decoderGuidanceText(settings)}; ${reconSet ? reconSet.images.shape[0] : 0} reconstructions of test scenes`);
  const progress = phaseProgress();
  const report = evaluateSceneGeneration(gen, { prompts: flat, ks, settings, classifier, recon: reconSet, onProgress: progress.update });
  progress.done();
  fs.mkdirSync(outDir, { recursive: true });
  const table = sceneTable(report);
  fs.writeFileSync(path.join(outDir, 'report.md'), `${table}\n`);
  fs.writeFileSync(path.join(outDir, 'report.json'), `${JSON.stringify({ model: gen.source, firstScene: first, ...report }, null, 2)}\n`);
  await writeLineChart(path.join(outDir, 'chart.png'), sceneChart(report, gen.source));
  process.stdout.write(`${table}\n`);
  log(`wrote ${path.join(outDir, 'report.md')}, report.json and chart.png`);
}

/** Exact match against k, one line per item count n (and the reconstructions), and per-cell accuracy likewise. */
export function sceneChart(rep: SceneEvalReport, source: string): Parameters<typeof writeLineChart>[1] {
  const xs = rep.rows.map((r) => r.k);
  const perN = (pick: (row: SceneEvalReport['rows'][number]) => number[] | undefined, label: string, dashed = false) =>
    [1, 2, 3, 4].map((n) => ({ name: `${label} n = ${n}`, xs, ys: rep.rows.map((r) => 100 * (pick(r)?.[n - 1] ?? NaN)), dashed }));
  const hasRecon = rep.rows[0]?.reconstructed !== null;
  return {
    title: `Scenes: prompt complexity n vs token count k (${path.basename(path.dirname(source))}, ${rep.samples} prompts, cfg ${rep.settings.cfg_scale})`,
    xLabel: 'tokens k',
    xScale: 'log2',
    width: 1300,
    height: 540,
    panels: [
      {
        title: 'exact match (every cell right)', yLabel: 'exact match (%)', yMin: 0, yMax: 100,
        series: [
          ...perN((r) => r.generated.exactByN, 'generated'),
          ...(hasRecon ? [{ name: 'reconstructions (all)', xs, ys: rep.rows.map((r) => 100 * r.reconstructed!.exact), dashed: true }] : []),
        ],
      },
      {
        title: 'per-cell accuracy', yLabel: 'cells right (%)', yMin: 0, yMax: 100,
        series: [
          ...perN((r) => r.generated.cellByN, 'generated'),
          ...(hasRecon ? [{ name: 'reconstructions (all)', xs, ys: rep.rows.map((r) => 100 * r.reconstructed!.cell), dashed: true }] : []),
        ],
      },
    ],
  };
}
