// `flextok tokenize`: images → token ids in a tokens.json file.
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { smallestKForPsnr } from '../eval/adaptive.js';
import { IMAGE_OPTIONS, loadImages, loadModel, MODEL_OPTIONS, samplerArgs, SAMPLER_OPTIONS } from './model_options.js';
import { ProgressBar } from './progress.js';
import { writeTokensFile } from './tokens_file.js';

export const tokenizeSpec: CommandSpec = {
  name: 'tokenize',
  summary: 'Turn images into FlexTok token sequences (coarse to fine) and write them to a JSON file.',
  usage: 'flextok tokenize <images...> --model <path|name> --out tokens.json [options]',
  positionals: [{ name: 'images...', help: 'image files (PNG, JPEG, WebP, GIF, TIFF, AVIF, …)' }],
  options: [
    ...MODEL_OPTIONS,
    { name: 'out', short: 'o', kind: 'string', value: 'FILE', help: 'output tokens file (JSON: format, model, codebook_size, num_tokens, images[{file, size, tokens}])' },
    { name: 'k', kind: 'string', value: 'N', help: 'keep only the first N tokens of each image', defaultText: 'all (256 for the released models)' },
    {
      name: 'posterior',
      kind: 'string',
      value: 'MODE',
      help: "VAE latents: 'sample' (posterior sample, seeded by --seed), 'mean' (deterministic) or 'checkpoint' (the checkpoint's sample_posterior setting)",
      defaultText: 'checkpoint',
    },
    { name: 'seed', kind: 'string', value: 'N', help: 'seed of the posterior sample (and, with --target-psnr, of the decoder noise)', defaultText: '0' },
    {
      name: 'target-psnr',
      kind: 'string',
      value: 'DB',
      help: 'adaptive length: keep per image the fewest tokens (of k = 1, 2, 4, …, R) whose reconstruction reaches DB dB PSNR; writes k and its PSNR per image',
    },
    ...SAMPLER_OPTIONS.filter((o) => o.name !== 'seed').map((o) => ({ ...o, help: `with --target-psnr: ${o.help}` })),
    ...IMAGE_OPTIONS,
  ],
  notes: [
    'Images are converted to RGB, resized (shorter side) and centre-cropped to the model size, and scaled to [-1, 1].',
    '--target-psnr decodes each image\'s prefixes of 1, 2, 4, …, R tokens (same decoder settings and seed) and keeps the smallest k whose clamped reconstruction reaches the target (R when none does); the web page\'s "auto k" uses the same rule.',
  ],
};

export async function runTokenize(args: ParsedArgs, log: (line: string) => void): Promise<void> {
  if (args.positionals.length === 0) throw new UsageError('no input images', args.command);
  const out = args.requireStr('out');
  const mode = args.str('posterior') ?? 'checkpoint';
  if (mode !== 'sample' && mode !== 'mean' && mode !== 'checkpoint') throw new UsageError(`--posterior must be sample, mean or checkpoint, got '${mode}'`, args.command);
  const seed = args.num('seed', 0, { integer: true, min: 0 });
  const { model, label } = loadModel(args, log);
  const k = args.num('k', model.numTokens, { integer: true, min: 1 });
  if (k > model.numTokens) throw new UsageError(`--k ${k} is more than the model's ${model.numTokens} tokens`, args.command);
  const images = await loadImages(args.positionals, model, args);
  const started = Date.now();
  const target = args.has('target-psnr') ? args.num('target-psnr', 0) : null;
  if (target !== null && args.has('k')) throw new UsageError('--k and --target-psnr contradict each other (the target chooses k per image)', args.command);
  const sampler = samplerArgs(args);
  const ids = model.tokenize(images, { samplePosterior: mode === 'checkpoint' ? undefined : mode === 'sample', seed });
  log(`tokenized ${images.length} image${images.length > 1 ? 's' : ''} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const adaptive: { k: number; psnr: number }[] = [];
  if (target !== null) {
    const bar = new ProgressBar(`adaptive k (≥ ${target} dB)`, images.length);
    const lines: string[] = [];
    images.forEach((img, i) => {
      const a = smallestKForPsnr(model, img, ids[i]!, target, { steps: sampler.steps, guidance: sampler.guidance, apg: sampler.apg, seed: sampler.seed, noiseScale: sampler.noiseScale });
      adaptive.push({ k: a.k, psnr: a.psnr });
      bar.update(i + 1);
      lines.push(`${args.positionals[i]}: k = ${a.k} (${a.psnr.toFixed(2)} dB${a.reached ? '' : `; no k reaches ${target} dB`}; tried ${a.candidates.map((c) => `${c.k}: ${c.psnr.toFixed(1)}`).join(', ')})`);
    });
    bar.done();
    for (const line of lines) log(line);
  }
  writeTokensFile(out, {
    format: 'flextok-tokens/1',
    model: label,
    codebook_size: model.codebookSize,
    num_tokens: model.numTokens,
    images: args.positionals.map((file, i) => ({
      file,
      size: [images[i]!.shape[2]!, images[i]!.shape[3]!],
      tokens: ids[i]!.slice(0, adaptive[i]?.k ?? k),
      ...(adaptive[i] ? { k: adaptive[i]!.k, psnr: Number(adaptive[i]!.psnr.toFixed(3)) } : {}),
    })),
  });
  log(target !== null ? `wrote ${out} (adaptive: ${adaptive.map((a) => a.k).join(', ')} tokens)` : `wrote ${out} (${k} tokens per image)`);
}
