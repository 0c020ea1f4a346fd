// `flextok demo`: the offline showcase — the shipped Fashion-MNIST tokenizer reconstructs the ten shipped test
// images from their first k = 1, 2, 4, …, R tokens, writes the coarse-to-fine grid and prints MSE / PSNR per k;
// then the shipped generator draws one sample per class, decoded at k = 1, 2, 4, …, R as its tokens appear, and the
// shipped text-conditional generator draws one scene per caption of 1 to 4 items the same way.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { clampToDisplayRange, mse, psnrPerImage } from '../eval/metrics.js';
import { Generator, type GenerationCondition, type GenerationSettings, type Preview } from '../ar/generator.js';
import { FlexTok, powerOfTwoKs } from '../flextok/model.js';
import { concat, slice } from '../tensor/ops.js';
import { loadImage, padToCanvas, saveGrid } from '../io/image.js';
import { packageRoot } from '../io/package_root.js';
import { Tensor } from '../tensor/tensor.js';
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { ProgressBar } from './progress.js';

/** The shipped default model and test images, relative to the package root. */
export const DEFAULT_DEMO_MODEL = 'models/fmnist-default/model.safetensors';
export const DEMO_IMAGE_DIR = 'assets/fashion-mnist';
/** The shipped class-conditional generator for the default tokenizer. */
export const DEFAULT_DEMO_GENERATOR = 'models/fmnist-ar';
/** The shipped text-conditional generator (Fashion-MNIST scenes) and the captions the demo gives it, n = 1 … 4 items. */
export const DEMO_SCENES_GENERATOR = 'models/scenes-ar';
export const DEMO_PROMPTS = [
  'a bag in the top left',
  'a sneaker in the top right and a dress in the bottom left',
  'a coat in the top left, an ankle boot in the bottom right and a trouser in the top right',
  'a t-shirt in the bottom left, a sandal in the top left, a pullover in the bottom right and a shirt in the top right',
];
/** Grid cells are shown this many times larger (nearest neighbour), so 32×32 images are visible. */
const CELL_SCALE = 4;

export const demoSpec: CommandSpec = {
  name: 'demo',
  summary: 'Reconstruct the shipped Fashion-MNIST images from 1, 2, 4, … tokens with the shipped model (grid + PSNR table), then generate one image per class and one scene per text prompt, coarse to fine.',
  usage: 'flextok demo [--model FILE] [--out FILE] [--steps N] [--guidance S] [--apg] [--seed N]',
  positionals: [],
  options: [
    { name: 'model', short: 'm', kind: 'string', value: 'FILE', help: 'tokenizer checkpoint (model.safetensors or its folder)', defaultText: `the shipped ${DEFAULT_DEMO_MODEL}` },
    { name: 'out', short: 'o', kind: 'string', value: 'FILE', help: 'output grid: one row per image, the original then one column per k', defaultText: 'flextok-demo.png' },
    { name: 'steps', kind: 'string', value: 'N', help: 'Euler denoising steps', defaultText: '25' },
    { name: 'guidance', kind: 'string', value: 'S', help: 'guidance scale (1 = no guidance)', defaultText: '1' },
    { name: 'apg', kind: 'boolean', help: 'adaptive projected guidance instead of plain classifier-free guidance (with --guidance ≠ 1)' },
    { name: 'seed', kind: 'string', value: 'N', help: 'seed of the initial noise (and of the generated tokens)', defaultText: '0' },
    { name: 'generator', kind: 'string', value: 'DIR', help: 'class-conditional generator for the second part', defaultText: `the shipped ${DEFAULT_DEMO_GENERATOR}` },
    { name: 'no-generate', kind: 'boolean', help: 'skip the generation parts (classes and text prompts)' },
  ],
  notes: [
    `The images are the ${DEMO_IMAGE_DIR}/*.png files (one 28×28 Fashion-MNIST test image per class), centred on the model's canvas with background −1 (black) as in training.`,
    "Every column of a row starts from the same initial noise, so the columns differ only in k. MSE is on the [-1, 1] scale, PSNR on the [0, 1] scale (reconstructions clamped to [-1, 1]).",
    `Next to --out it writes <name>-generated.png (${DEFAULT_DEMO_GENERATOR}: one sample per class at every k) and <name>-scenes.png (${DEMO_SCENES_GENERATOR}: one scene per text prompt of 1 to 4 items at every k); --steps also sets their decoder steps.`,
  ],
};


/** The first `channels` planes of an RGB [1, 3, H, W] image (grey images have R = G = B). */
function takeChannels(rgb: Tensor, channels: number): Tensor {
  if (channels === 3) return rgb;
  if (channels !== 1) throw new UsageError(`the model takes ${channels}-channel images; the demo images are greyscale or RGB`, 'demo');
  const [, , h, w] = rgb.shape as [number, number, number, number];
  return new Tensor(Float32Array.from(rgb.f.subarray(0, h * w)), [1, 1, h, w]);
}

/** [1, C, H, W] → an RGB [1, 3, sH, sW] grid cell: grey replicated, clamped later by the PNG writer, nearest ×s. */
function gridCell(img: Tensor, scale: number): Tensor {
  const [, c, h, w] = img.shape as [number, number, number, number];
  const sh = h * scale;
  const sw = w * scale;
  const out = new Float32Array(3 * sh * sw);
  const src = img.f;
  for (let ch = 0; ch < 3; ch++) {
    const from = c === 1 ? 0 : ch;
    for (let y = 0; y < sh; y++) {
      const row = (from * h + Math.floor(y / scale)) * w;
      for (let x = 0; x < sw; x++) out[(ch * sh + y) * sw + x] = src[row + Math.floor(x / scale)]!;
    }
  }
  return new Tensor(out, [1, 3, sh, sw]);
}

/** A path relative to the working directory when it lies below it, else absolute. */
function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : path.resolve(file);
}

/** The model file to use: --model, or the shipped default (with a clear error when it is missing). */
function demoModelFile(args: ParsedArgs, root: string): string {
  const given = args.str('model');
  if (given !== undefined) {
    const file = path.resolve(given);
    if (!fs.existsSync(file)) throw new UsageError(`--model ${given}: no such file or folder`, 'demo');
    return file;
  }
  const file = path.join(root, DEFAULT_DEMO_MODEL);
  if (!fs.existsSync(file)) {
    throw new Error(
      `the demo model ${file} is missing; it ships with the repository (restore it with 'git checkout models/' in ${root}), ` +
        `or pass --model <model.safetensors> (e.g. one written by 'flextok train-tokenizer')`,
    );
  }
  return file;
}

export async function runDemo(args: ParsedArgs, print: (line: string) => void): Promise<void> {
  const steps = args.num('steps', 25, { integer: true, min: 1 });
  const guidance = args.num('guidance', 1);
  const apg = args.flag('apg');
  const seed = args.num('seed', 0, { integer: true, min: 0 });
  const out = path.resolve(args.str('out') ?? 'flextok-demo.png');
  const root = packageRoot();

  const modelFile = demoModelFile(args, root);
  const started = Date.now();
  const model = FlexTok.load(modelFile);
  const [height, width] = model.imageSize;
  const r = model.numTokens;
  print(
    `loaded ${displayPath(model.source)} in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
      `${model.isPixelSpace ? `pixel space, ${model.imageChannels} channel${model.imageChannels > 1 ? 's' : ''}` : 'with a VAE'}, ${height}×${width} px, ` +
      `${r} tokens of ${model.codebookSize} ids`,
  );

  const imageDir = path.join(root, DEMO_IMAGE_DIR);
  const files = fs.existsSync(imageDir) ? fs.readdirSync(imageDir).filter((f) => f.toLowerCase().endsWith('.png')).sort() : [];
  if (files.length === 0) throw new Error(`no demo images in ${imageDir} (they ship with the repository; restore them with 'git checkout assets/')`);
  const names = files.map((f) => path.basename(f, '.png'));
  const images: Tensor[] = [];
  for (const f of files) {
    const rgb = await loadImage(path.join(imageDir, f), { resize: false, multipleOf: 1 });
    images.push(padToCanvas(takeChannels(rgb, model.imageChannels), height, width));
  }

  const ks = powerOfTwoKs(r);
  const batch = concat(images, 0);
  const guide = guidance === 1 ? 'no guidance' : `guidance ${guidance} (${apg ? 'APG' : 'CFG'})`;
  print(`reconstructing ${images.length} images from their first k = ${ks.join(', ')} of ${r} tokens (${steps} Euler steps, ${guide}, seed ${seed})`);
  const bar = new ProgressBar(`decoding`, ks.length * steps);
  let recons: Tensor[];
  try {
    // Image i starts from the noise of (seed, i) alone, the same for every k (so the columns differ only in k).
    recons = model.reconstruct(batch, ks, { steps, guidance, apg, seed, onStep: (step, _total, j) => bar.update(j * steps + step) }).map(clampToDisplayRange);
  } catch (err) {
    bar.abort();
    throw err;
  }
  bar.done(`(${ks.length} values of k × ${images.length} images)`);

  const rows = images.map((img, i) => [gridCell(img, CELL_SCALE), ...recons.map((perK) => gridCell(slice(perK, 0, i, i + 1), CELL_SCALE))]);
  await saveGrid(rows, out, { gap: 4, rowLabels: names, colLabels: ['original', ...ks.map((k) => `k=${k}`)] });

  print('');
  print(`|    k |      MSE | PSNR (dB) |`);
  print(`| ---: | -------: | --------: |`);
  ks.forEach((k, j) => {
    const psnrs = psnrPerImage(recons[j]!, batch);
    const meanPsnr = psnrs.reduce((a, b) => a + b, 0) / psnrs.length;
    print(`| ${String(k).padStart(4)} | ${mse(recons[j]!, batch).toFixed(5)} | ${meanPsnr.toFixed(2).padStart(9)} |`);
  });
  print(`(mean over the ${images.length} images: ${names.join(', ')}; MSE on the [-1, 1] scale, PSNR on [0, 1])`);
  print('');
  print(`wrote ${out}: ${rows.length} rows (one per image) × (original + k = ${ks.join(', ')}), cells ×${CELL_SCALE}`);
  if (args.flag('no-generate')) return;
  await demoGeneration(args, root, modelFile, out, seed, print);
  await demoScenes(args, root, out, seed, print);
}

/** --steps, when given, also sets the decoder steps of the generated samples (else the generator's stored setting). */
function decoderStepsOverride(args: ParsedArgs): number | undefined {
  return args.has('steps') ? args.num('steps', 25, { integer: true, min: 1 }) : undefined;
}

/**
 * Generates one sample per condition, printing a line as each prefix k = 1, 2, 4, … is decoded, and writes the grid
 * (one row per condition, one column per k) next to `out` as `<name>-<suffix>.png`; returns that file and the ks.
 */
async function generatePreviewGrid(
  gen: Generator, conditions: GenerationCondition, settings: GenerationSettings,
  grid: { out: string; suffix: string; rowLabels: string[]; cellScale: number }, print: (line: string) => void,
): Promise<{ file: string; ks: number[] }> {
  const previews: Preview[] = [];
  const t0 = Date.now();
  gen.generateImages(conditions, settings, (p) => {
    previews.push(p);
    print(`  k = ${String(p.k).padStart(2)}: decoded after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  const rows = grid.rowLabels.map((_, i) => previews.map((p) => gridCell(clampToDisplayRange(slice(p.images, 0, i, i + 1)), grid.cellScale)));
  const file = grid.out.replace(/(\.[^./]+)?$/, (ext) => `-${grid.suffix}${ext || '.png'}`);
  const ks = previews.map((p) => p.k);
  await saveGrid(rows, file, { gap: 4, rowLabels: grid.rowLabels, colLabels: ks.map((k) => `k=${k}`) });
  return { file, ks };
}

/** The generation part: one sample per class from the shipped generator, each decoded at every k as its tokens appear. */
async function demoGeneration(args: ParsedArgs, root: string, tokenizerFile: string, out: string, seed: number, print: (line: string) => void): Promise<void> {
  const given = args.str('generator');
  if (given === undefined && args.str('model') !== undefined) {
    // the shipped generator's tokens belong to the shipped tokenizer only (Generator.load checks the sha256)
    print('');
    print(`(generation skipped: the shipped generator was trained on the shipped tokenizer, not on --model; pass --generator with one trained on it)`);
    return;
  }
  const dir = given !== undefined ? path.resolve(given) : path.join(root, DEFAULT_DEMO_GENERATOR);
  if (!fs.existsSync(dir)) {
    if (given !== undefined) throw new UsageError(`--generator ${given}: no such file or folder`, 'demo');
    print('');
    print(`(no generator at ${displayPath(dir)}: skipping generation; train one with 'flextok train-ar', see the README)`);
    return;
  }
  const started = Date.now();
  const gen = Generator.load(dir, { tokenizer: tokenizerFile });
  const settings = gen.settings({ seed, decoder_steps: decoderStepsOverride(args) });
  const classes = gen.classNames.map((_, i) => i);
  print('');
  print(`loaded the generator ${displayPath(gen.source)} in ${((Date.now() - started) / 1000).toFixed(1)} s: FlexAR d${gen.model.config.dim}×${gen.model.config.depth}, ` +
    `cfg ${settings.cfg_scale}, temperature ${settings.temperature}; generating one sample per class (${gen.classNames.join(', ')})`);
  const { file, ks } = await generatePreviewGrid(gen, classes, settings, { out, suffix: 'generated', rowLabels: gen.classNames, cellScale: CELL_SCALE }, print);
  print(`wrote ${file}: one generated sample per class (rows, in the order above) × k = ${ks.join(', ')} (columns)`);
}

/** The text part: one scene per caption of n = 1 … 4 items from the shipped scenes generator, decoded at every k. */
async function demoScenes(args: ParsedArgs, root: string, out: string, seed: number, print: (line: string) => void): Promise<void> {
  const dir = path.join(root, DEMO_SCENES_GENERATOR);
  print('');
  if (!fs.existsSync(dir)) {
    print(`(no text-conditional generator at ${displayPath(dir)}: skipping the scenes; see "Text-conditional generation" in the README)`);
    return;
  }
  const started = Date.now();
  const gen = Generator.load(dir); // with the tokenizer it records (models/scenes-tokenizer)
  const settings = gen.settings({ seed, decoder_steps: decoderStepsOverride(args) });
  print(`loaded the text-conditional generator ${displayPath(gen.source)} in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
    `cfg ${settings.cfg_scale}; one 64×64 scene per prompt:`);
  DEMO_PROMPTS.forEach((p, i) => print(`  ${i + 1}: ${p}`));
  // 64×64 scenes shown ×2: the same 128 px cells as the 32×32 images ×4
  const rowLabels = DEMO_PROMPTS.map((_, i) => `prompt ${i + 1}`);
  const { file, ks } = await generatePreviewGrid(gen, DEMO_PROMPTS, settings, { out, suffix: 'scenes', rowLabels, cellScale: 2 }, print);
  print(`wrote ${file}: one generated scene per prompt (rows, numbered as above) × k = ${ks.join(', ')} (columns)`);
}
