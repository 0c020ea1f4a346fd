// `flextok reconstruct`: image → tokens → images from the first k tokens for several k, as one grid
// (original first, then one column per k; one row per image).
import * as path from 'node:path';
import { saveGrid } from '../io/image.js';
import { Rng } from '../tensor/rng.js';
import { Tensor } from '../tensor/tensor.js';
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { denoiseProgress, IMAGE_OPTIONS, loadImages, loadModel, MODEL_OPTIONS, SAMPLER_OPTIONS, samplerArgs } from './model_options.js';

export const reconstructSpec: CommandSpec = {
  name: 'reconstruct',
  summary: 'Tokenize images and decode them from the first k tokens for each k: a coarse-to-fine grid (rows labelled by file name, columns by k).',
  usage: 'flextok reconstruct <images...> --model <path|name> --k 1,2,4,…,256 --out grid.png [options]',
  positionals: [{ name: 'images...', help: 'image files; one grid row each' }],
  options: [
    ...MODEL_OPTIONS,
    { name: 'out', short: 'o', kind: 'string', value: 'FILE', help: 'output grid image: the (preprocessed) original first, then one column per k' },
    { name: 'k', kind: 'string', value: 'LIST', help: 'comma-separated token counts', defaultText: 'powers of two up to the model\'s token count: 1,2,4,…,256' },
    ...SAMPLER_OPTIONS,
    ...IMAGE_OPTIONS,
  ],
  notes: ['Every column starts from the same initial noise (--seed), so the columns differ only in k. Tokenization uses the posterior mean.'],
};

export async function runReconstruct(args: ParsedArgs, log: (line: string) => void): Promise<void> {
  if (args.positionals.length === 0) throw new UsageError('no input image', args.command);
  const out = args.requireStr('out');
  const sampler = samplerArgs(args);
  const { model } = loadModel(args, log);
  const r = model.numTokens;
  const ks = args.intList('k') ?? Array.from({ length: Math.floor(Math.log2(r)) + 1 }, (_, i) => 2 ** i);
  for (const k of ks) if (k < 1 || k > r) throw new UsageError(`--k ${k}: k must be from 1 to ${r} (the model's token count)`, args.command);
  const images = await loadImages(args.positionals, model, args);
  const ids = model.tokenize(images, { samplePosterior: false });
  const c = model.config.vae.latentChannels;
  const f = model.vaeDownsampling;
  // The same initial noise for every k of an image.
  const rng = new Rng(sampler.seed);
  const noisePerImage = images.map((img) => Tensor.randn([1, c, img.shape[2]! / f, img.shape[3]! / f], rng));
  const tokens: number[][] = [];
  const keep: number[] = [];
  const noise: Tensor[] = [];
  images.forEach((_, i) => {
    for (const k of ks) {
      tokens.push(ids[i]!);
      keep.push(k);
      noise.push(noisePerImage[i]!);
    }
  });
  const progress = denoiseProgress(`denoising ${tokens.length} sequences`, sampler.steps);
  let decoded;
  try {
    decoded = model.decodeImages(tokens, { k: keep, steps: sampler.steps, guidance: sampler.guidance, apg: sampler.apg, noise, noiseScale: sampler.noiseScale, onStep: progress.onStep });
  } catch (err) {
    progress.abort();
    throw err;
  }
  progress.done();
  const rows = images.map((img, i) => [img, ...decoded.slice(i * ks.length, (i + 1) * ks.length)]);
  const rowLabels = args.positionals.map((f) => path.basename(f).replace(/\.[^.]+$/, ''));
  await saveGrid(rows, out, { rowLabels, colLabels: ['original', ...ks.map((k) => `k=${k}`)] });
  log(`wrote ${out}: ${rows.length} row${rows.length > 1 ? 's' : ''} × (original + k = ${ks.join(', ')})`);
}
