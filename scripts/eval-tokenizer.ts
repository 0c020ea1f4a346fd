// Evaluate a trained tokenizer on the first N Fashion-MNIST test images (or test scenes, or an image folder): for
// k = 1, 2, 4, …, R reconstruct and report MSE, PSNR, SSIM and classifier class agreement as a
// markdown table (stdout) and JSON (--json). On scenes (--data fmnist-scenes) the class agreement is the scene
// metric instead (src/eval/scenes.ts): each cell read as empty or classified, exact match and per-cell accuracy.
//
//   node --import tsx scripts/eval-tokenizer.ts --model runs/fmnist/model.safetensors --n 500 --json eval.json

import * as fs from 'node:fs';
import * as path from 'node:path';
import { commandHelp, parseCommand, UsageError, type CommandSpec } from '../src/cli/args.js';
import { reconstructionTable, evaluateReconstruction, type NamedClassifier } from '../src/eval/reconstruction.js';
import { FlexTok } from '../src/flextok/model.js';
import { openDataset, sampleBatchWithLabels } from '../src/train/data.js';

/** The shipped classifiers: the one the acceptance bar names (also the REPA teacher), then the one trained with
 * shift and noise augmentation (less moved by pixel error that keeps the class). */
const DEFAULT_CLASSIFIERS = ['models/fmnist-classifier/classifier.safetensors', 'models/fmnist-classifier-robust/classifier.safetensors'];

const spec: CommandSpec = {
  name: 'eval-tokenizer',
  summary: 'Reconstruction quality of a trained tokenizer per token count k (MSE, PSNR, SSIM, class agreement).',
  usage: 'node --import tsx scripts/eval-tokenizer.ts --model FILE|RUN_DIR [options]',
  positionals: [],
  options: [
    { name: 'model', kind: 'string', value: 'PATH', help: 'model.safetensors written by train-tokenizer, or its run folder' },
    { name: 'data', kind: 'string', value: 'SOURCE', help: "'fashion-mnist' (test split), 'fmnist-scenes' (test scenes) or an image folder", defaultText: 'fashion-mnist' },
    { name: 'n', kind: 'string', value: 'N', help: 'number of images (the first N)', defaultText: '256' },
    { name: 'skip', kind: 'string', value: 'N', help: 'start after the first N images (e.g. --skip 1000 to tune decoding settings on images outside the first 1,000)', defaultText: '0' },
    { name: 'k', kind: 'string', value: 'LIST', help: 'token counts, comma-separated', defaultText: '1,2,4,…,R' },
    { name: 'steps', kind: 'string', value: 'T', help: 'Euler steps', defaultText: '25' },
    { name: 'guidance', kind: 'string', value: 'S', help: 'guidance scale (1 = none)', defaultText: '1' },
    { name: 'apg', kind: 'boolean', help: 'adaptive projected guidance instead of plain CFG' },
    { name: 'seed', kind: 'string', value: 'N', help: 'seed of the decoding noise', defaultText: '0' },
    { name: 'noise-scale', kind: 'string', value: 'S', help: "scale of the decoder's initial noise (below 1: likelier images, less variety)", defaultText: '1' },
    { name: 'batch', kind: 'string', value: 'N', help: 'images per batch', defaultText: '64' },
    { name: 'classifier', kind: 'string', value: 'FILES', help: "FmnistClassifier weights for class agreement, comma-separated, one column each ('none' to skip)", defaultText: `those of ${DEFAULT_CLASSIFIERS.join(', ')} that exist` },
    { name: 'json', kind: 'string', value: 'FILE', help: 'also write the report as JSON' },
  ],
  notes: ['Images are padded/resized to the model resolution as in training (Fashion-MNIST 28 → 32 by padding).'],
};

async function main(argv: string[]): Promise<number> {
  const args = parseCommand(spec, argv);
  if (args.flag('help')) {
    process.stdout.write(`${commandHelp(spec)}\n`);
    return 0;
  }
  let file = args.requireStr('model');
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'model.safetensors');
  const model = FlexTok.load(file);
  const [resolution] = model.imageSize;
  const source = args.str('data') ?? 'fashion-mnist';
  const n = args.num('n', 256, { integer: true, min: 1 });
  const channels = model.imageChannels;
  const ds = await openDataset({ source, resolution, resize_mode: 'pad', channels: channels === 3 ? 3 : 1, limit: null, flip: false }, 'test');
  const skip = args.num('skip', 0, { integer: true, min: 0 });
  if (skip + n > ds.size) throw new UsageError(`--skip ${skip} --n ${n}: ${ds.name} has only ${ds.size} images`, spec.name);
  const { images, labels } = sampleBatchWithLabels(ds, n, skip);

  const scenes = source === 'fmnist-scenes';
  const classifiers: NamedClassifier[] = [];
  const clsArg = args.str('classifier');
  // scenes: the scene metric with the first classifier (per cell), instead of class agreement on whole images
  const sceneScores = scenes ? await sceneMetric(clsArg === undefined ? DEFAULT_CLASSIFIERS[0]! : clsArg.split(',')[0]!, skip, n) : null;
  if (clsArg !== 'none' && images.shape[1] === 1 && !scenes) {
    const files = clsArg === undefined ? DEFAULT_CLASSIFIERS.filter((f) => fs.existsSync(f)) : clsArg.split(',').filter((f) => f.length > 0);
    const { FmnistClassifier } = await import('../src/eval/classifier.js');
    for (const f of files) {
      if (!fs.existsSync(f)) throw new UsageError(`--classifier: ${f} not found`, spec.name);
      classifiers.push({ name: path.basename(path.dirname(path.resolve(f))), model: FmnistClassifier.load(f) });
    }
  } else if (clsArg !== undefined && clsArg !== 'none' && images.shape[1] !== 1) {
    throw new UsageError(`--classifier ${clsArg}: the classifiers take 1-channel images; this model makes ${channels}-channel ones`, spec.name);
  }

  const started = Date.now();
  const report = evaluateReconstruction(model, images, labels, {
    ks: args.intList('k'),
    steps: args.num('steps', 25, { integer: true, min: 1 }),
    guidance: args.num('guidance', 1),
    apg: args.flag('apg'),
    seed: args.num('seed', 0, { integer: true, min: 0 }),
    noiseScale: args.num('noise-scale', 1, { min: 0 }),
    batchSize: args.num('batch', 64, { integer: true, min: 1 }),
    classifiers,
    onReconstruction: sceneScores?.add,
    onProgress: (done, total) => process.stderr.write(`\reval-tokenizer: ${done}/${total} images (${((Date.now() - started) / 1000).toFixed(0)} s)`),
  });
  process.stderr.write('\n');
  const which = skip ? `images ${skip}–${skip + n - 1} of ${ds.name}` : ds.name;
  const sceneRows = sceneScores?.rows();
  process.stdout.write(`${file} on ${which}\n\n${reconstructionTable(report)}\n`);
  if (sceneRows) {
    process.stdout.write(`\nScene metric (cells read as empty or classified by ${sceneScores!.classifier}):\n\n| k | exact match | per-cell accuracy |\n|---:|---:|---:|\n`);
    for (const r of sceneRows) process.stdout.write(`| ${r.k} | ${(100 * r.exact).toFixed(1)}% | ${(100 * r.cell).toFixed(1)}% |\n`);
    process.stdout.write(`\nOn the originals: exact match ${(100 * sceneScores!.original.exact).toFixed(1)}%, per-cell accuracy ${(100 * sceneScores!.original.cell).toFixed(1)}%.\n`);
  }
  const jsonFile = args.str('json');
  if (jsonFile) fs.writeFileSync(jsonFile, `${JSON.stringify({ model: file, data: ds.name, skip, ...report, ...(sceneRows ? { scenes: { original: sceneScores!.original, rows: sceneRows } } : {}) }, null, 2)}\n`);
  return 0;
}

/** The scene metric of reconstructions, accumulated per k over batches: the true layouts of test scenes
 * skip … skip + n − 1, the classifier, and the originals' own score (the metric's ceiling). */
async function sceneMetric(classifierFile: string, skip: number, n: number) {
  const { loadFashionScenes, sceneLayout } = await import('../src/io/scenes.js');
  const { readSceneLayouts, scoreLayouts } = await import('../src/eval/scenes.js');
  const { FmnistClassifier } = await import('../src/eval/classifier.js');
  const { Tensor } = await import('../src/tensor/tensor.js');
  if (!fs.existsSync(classifierFile)) throw new UsageError(`--classifier: ${classifierFile} not found`, spec.name);
  const classifier = FmnistClassifier.load(classifierFile);
  const test = loadFashionScenes('test');
  const truth = new Int32Array(n * 4);
  const per = test.height * test.width;
  const originals = new Float32Array(n * per);
  for (let i = 0; i < n; i++) {
    truth.set(sceneLayout(test.items(skip + i)), i * 4);
    originals.set(test.get(skip + i).image, i * per);
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const score = (images: InstanceType<typeof Tensor>, start: number) => {
    const count = images.shape[0]!;
    return scoreLayouts(readSceneLayouts(images, classifier), truth.subarray(start * 4, (start + count) * 4));
  };
  const o = score(new Tensor(originals, [n, 1, test.height, test.width]), 0);
  const sums = new Map<number, { exact: number; cell: number }>();
  return {
    classifier: path.basename(path.dirname(path.resolve(classifierFile))),
    original: { exact: mean(o.exact.map(Number)), cell: mean(o.cellAccuracy) },
    add: (k: number, recon: InstanceType<typeof Tensor>, start: number): void => {
      const s = score(recon, start);
      const acc = sums.get(k) ?? { exact: 0, cell: 0 };
      acc.exact += s.exact.filter(Boolean).length;
      acc.cell += s.cellAccuracy.reduce((a, b) => a + b, 0);
      sums.set(k, acc);
    },
    rows: () => [...sums.entries()].map(([k, v]) => ({ k, exact: v.exact / n, cell: v.cell / n })),
  };
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`eval-tokenizer: error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
