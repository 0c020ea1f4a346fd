// `flextok detokenize`: a tokens.json file → images.
import { saveImage } from '../io/image.js';
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { denoiseProgress, loadModel, MODEL_OPTIONS, numberedOutputs, SAMPLER_OPTIONS, samplerArgs } from './model_options.js';
import { readTokensFile } from './tokens_file.js';

export const detokenizeSpec: CommandSpec = {
  name: 'detokenize',
  summary: 'Decode token sequences from a tokens file into images (rectified-flow decoder + VAE).',
  usage: 'flextok detokenize <tokens.json> --model <path|name> --out out.png [options]',
  positionals: [{ name: 'tokens.json', help: "a file written by 'flextok tokenize', or a JSON list of token id lists" }],
  options: [
    ...MODEL_OPTIONS,
    { name: 'out', short: 'o', kind: 'string', value: 'FILE', help: 'output image (PNG, or .jpg / .webp); several images are written as FILE_0.png, FILE_1.png, …' },
    { name: 'k', kind: 'string', value: 'N', help: 'decode from the first N tokens of each sequence', defaultText: 'all tokens in the file' },
    ...SAMPLER_OPTIONS,
    { name: 'size', kind: 'string', value: 'PX', help: 'output size PX×PX', defaultText: "the size recorded in the tokens file, else the model's native size" },
  ],
  notes: ['Values outside [-1, 1] are clamped when writing the image.'],
};

export async function runDetokenize(args: ParsedArgs, log: (line: string) => void): Promise<void> {
  if (args.positionals.length !== 1) throw new UsageError('expected exactly one tokens file', args.command);
  const out = args.requireStr('out');
  const sampler = samplerArgs(args);
  const { images: seqs, codebookSize } = readTokensFile(args.positionals[0]!);
  const { model } = loadModel(args, log);
  if (codebookSize !== null && codebookSize !== model.codebookSize) {
    throw new Error(`${args.positionals[0]}: the tokens use a codebook of ${codebookSize} ids but the model has ${model.codebookSize}; use the model that made them`);
  }
  const k = args.has('k') ? args.num('k', 1, { integer: true, min: 1 }) : undefined;
  const size = args.has('size') ? args.num('size', 0, { integer: true, min: 1 }) : null;
  const imageSize = seqs.map((s) => (size !== null ? ([size, size] as [number, number]) : (s.size ?? model.imageSize)));
  const progress = denoiseProgress('denoising', sampler.steps);
  let images;
  try {
    images = model.decodeImages(
      seqs.map((s) => s.tokens),
      { k, steps: sampler.steps, guidance: sampler.guidance, apg: sampler.apg, seed: sampler.seed, noiseScale: sampler.noiseScale, imageSize, onStep: progress.onStep },
    );
  } catch (err) {
    progress.abort();
    throw err;
  }
  progress.done();
  const files = numberedOutputs(out, images.length);
  for (let i = 0; i < images.length; i++) await saveImage(images[i]!, files[i]!);
  log(`wrote ${files.join(', ')}`);
}
