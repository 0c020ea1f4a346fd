// Options shared by the model commands (model location, sampler settings, image preprocessing) and the
// helpers that turn them into a loaded FlexTok, sampler options and a denoising progress bar.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { defaultCacheRoot } from '../io/hub.js';
import { loadImage, padToCanvas } from '../io/image.js';
import { FlexTok } from '../flextok/model.js';
import { findTokenizerPreset, presetMismatches, resolveModelPath, TOKENIZER_PRESETS } from '../flextok/presets.js';
import type { Tensor } from '../tensor/tensor.js';
import { UsageError, type OptionSpec, type ParsedArgs } from './args.js';
import { ProgressBar } from './progress.js';

export const MODEL_OPTIONS: OptionSpec[] = [
  {
    name: 'model',
    short: 'm',
    kind: 'string',
    value: 'PATH|NAME',
    help: `checkpoint file or folder (model.safetensors), a released model (${TOKENIZER_PRESETS.map((p) => p.name).join(', ')}) or a hub id, looked up in the cache`,
  },
  {
    name: 'hub-dir',
    kind: 'string',
    value: 'DIR',
    help: "folder with VAE repositories as DIR/<owner>/<name>/ (also searched: hub/ next to the checkpoint, then the cache)",
  },
  { name: 'cache', kind: 'string', value: 'DIR', help: 'hub cache root', defaultText: '$FLEXTOK_CACHE or ~/.cache/flextok/hub' },
];

/** --noise-scale: the decoder's initial noise times S (DetokenizeOptions.noiseScale). */
export const NOISE_SCALE_OPTION: OptionSpec = {
  name: 'noise-scale', kind: 'string', value: 'S',
  help: "scale of the decoder's initial noise: below 1 the sampler draws the likeliest image for the tokens more often, with less variety (a flow's sampling temperature; not in the official code)",
  defaultText: '1',
};

export const SAMPLER_OPTIONS: OptionSpec[] = [
  { name: 'steps', kind: 'string', value: 'N', help: 'Euler denoising steps', defaultText: '20' },
  { name: 'guidance', kind: 'string', value: 'S', help: 'guidance scale (1 = no guidance)', defaultText: '7.5' },
  { name: 'apg', kind: 'boolean', help: 'adaptive projected guidance (APG) instead of plain classifier-free guidance', defaultText: 'on' },
  { name: 'no-apg', kind: 'boolean', help: 'plain classifier-free guidance' },
  { name: 'seed', kind: 'string', value: 'N', help: 'seed of the initial noise', defaultText: '0' },
  NOISE_SCALE_OPTION,
];

export const IMAGE_OPTIONS: OptionSpec[] = [
  { name: 'size', kind: 'string', value: 'PX', help: "resize the shorter side to PX (Lanczos-3) and centre-crop PX×PX", defaultText: "the model's native size, 256 for the released models" },
  { name: 'no-resize', kind: 'boolean', help: "keep the image size (only centre-crop to a multiple of the model's patch in pixels)" },
  { name: 'pad', kind: 'boolean', help: "centre each image unscaled on the model's canvas with background −1 (black; larger sides are centre-cropped), as Fashion-MNIST's 28×28 images were in training" },
];

export interface SamplerArgs {
  steps: number;
  guidance: number;
  apg: boolean;
  seed: number;
  noiseScale: number;
}

/** --apg / --no-apg: adaptive projected or plain classifier-free guidance, or undefined when neither is given. */
export function apgOption(args: ParsedArgs): boolean | undefined {
  if (args.flag('apg') && args.flag('no-apg')) throw new UsageError('--apg and --no-apg contradict each other', args.command);
  return args.flag('apg') ? true : args.flag('no-apg') ? false : undefined;
}

export function samplerArgs(args: ParsedArgs): SamplerArgs {
  return {
    steps: args.num('steps', 20, { integer: true, min: 1 }),
    guidance: args.num('guidance', 7.5),
    apg: apgOption(args) ?? true,
    seed: args.num('seed', 0, { integer: true, min: 0 }),
    noiseScale: args.num('noise-scale', 1, { min: 0 }),
  };
}

/** Loads the model named by --model (with --hub-dir / --cache); `log` gets one line about it. */
export function loadModel(args: ParsedArgs, log: (line: string) => void): { model: FlexTok; label: string } {
  const label = args.requireStr('model');
  const cacheRoot = args.str('cache') ? path.resolve(args.str('cache')!) : defaultCacheRoot();
  const file = resolveModelPath(label, cacheRoot);
  const started = Date.now();
  const hubDir = args.str('hub-dir');
  const model = FlexTok.load(file, { hubDir: hubDir ? path.resolve(hubDir) : undefined, cacheRoot });
  const preset = fs.existsSync(label) ? null : findTokenizerPreset(label);
  if (preset) for (const m of presetMismatches(preset, model.config)) log(`warning: ${preset.repo}: ${m}`);
  const { encoder, decoder } = model.config;
  log(
    `loaded ${model.source} in ${((Date.now() - started) / 1000).toFixed(1)} s: encoder d${encoder.depth}×${encoder.dim}, ` +
      `decoder d${decoder.depth}×${decoder.dim}, ${model.numTokens} tokens of ${model.codebookSize} ids, ${model.imageSize.join('×')} px`,
  );
  return { model, label };
}

/** Loads images with the model's preprocessing (see src/io/image.ts) and the --size / --no-resize options. */
export async function loadImages(files: string[], model: FlexTok, args: ParsedArgs): Promise<Tensor[]> {
  const [h, w] = model.imageSize;
  const size = args.num('size', Math.min(h, w), { integer: true, min: 1 });
  const resize = !args.flag('no-resize');
  if (!resize && args.has('size')) throw new UsageError('--size and --no-resize contradict each other', args.command);
  const pad = args.flag('pad');
  if (pad && (args.has('size') || args.flag('no-resize'))) throw new UsageError('--pad keeps the image unscaled on the model\'s canvas; it does not combine with --size or --no-resize', args.command);
  const channels = model.imageChannels === 1 ? 1 : 3;
  const images: Tensor[] = [];
  for (const file of files) {
    images.push(pad
      ? padToCanvas(await loadImage(file, { resize: false, multipleOf: 1, channels }), h, w)
      : await loadImage(file, { size, resize, multipleOf: model.pixelsPerPatch, channels }));
  }
  return images;
}

/** A progress bar for `total` denoising steps on stderr; returns the onStep callback and a finisher. */
export function denoiseProgress(label: string, total: number): { onStep: (step: number, total: number) => void; done: () => void; abort: () => void } {
  const bar = new ProgressBar(label, total);
  return {
    onStep: (step, steps) => bar.update(step, steps),
    done: () => bar.done(),
    abort: () => bar.abort(),
  };
}

/** `out.png` for one output, `out_0.png`, `out_1.png`, … for several. */
export function numberedOutputs(out: string, n: number): string[] {
  if (n === 1) return [out];
  const ext = path.extname(out);
  const stem = out.slice(0, out.length - ext.length);
  return Array.from({ length: n }, (_, i) => `${stem}_${i}${ext || '.png'}`);
}
