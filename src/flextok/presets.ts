// The released FlexTok tokenizers and VAEs (hub repositories, files, expected sizes from spec §8–9) and the
// resolution of a `--model` argument (a path, a preset name or a hub id) to a local checkpoint.
import { fs, path } from '../io/node_builtins.js';
import { defaultCacheRoot, repoCacheDir } from '../io/hub.js';
import type { FlexTokConfig } from './checkpoint.js';

export interface TokenizerPreset {
  /** Short name, e.g. 'd18_d28_dfn'. */
  name: string;
  repo: string;
  files: string[];
  encoderDepth: number;
  encoderDim: number;
  decoderDepth: number;
  decoderDim: number;
  registers: number;
  fsqLevels: number[];
  /** Training data. */
  data: 'ImageNet-1k' | 'DFN';
  vaeRepo: string;
  imageSize: number;
}

export interface VaePreset {
  name: string;
  repo: string;
  files: string[];
  latentChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  downsampling: number;
}

const TOKENIZER_FILES = ['config.json', 'model.safetensors'];
const VAE_FILES = ['config.json', 'diffusion_pytorch_model.safetensors'];
const RELEASED_FSQ = [8, 8, 8, 5, 5, 5];

function tokenizer(name: string, enc: number, dec: number, data: TokenizerPreset['data']): TokenizerPreset {
  return {
    name,
    repo: `EPFL-VILAB/flextok_${name}`,
    files: TOKENIZER_FILES,
    encoderDepth: enc,
    encoderDim: 64 * enc,
    decoderDepth: dec,
    decoderDim: 64 * dec,
    registers: 256,
    fsqLevels: RELEASED_FSQ,
    data,
    vaeRepo: 'EPFL-VILAB/flextok_vae_c16',
    imageSize: 256,
  };
}

/** The four released tokenizers (widths 64 × depth, spec §9.1). */
export const TOKENIZER_PRESETS: readonly TokenizerPreset[] = [
  tokenizer('d12_d12_in1k', 12, 12, 'ImageNet-1k'),
  tokenizer('d18_d18_in1k', 18, 18, 'ImageNet-1k'),
  tokenizer('d18_d28_in1k', 18, 28, 'ImageNet-1k'),
  tokenizer('d18_d28_dfn', 18, 28, 'DFN'),
];

function vae(channels: number): VaePreset {
  return {
    name: `vae_c${channels}`,
    repo: `EPFL-VILAB/flextok_vae_c${channels}`,
    files: VAE_FILES,
    latentChannels: channels,
    blockOutChannels: [128, 256, 512, 512],
    layersPerBlock: 2,
    downsampling: 8,
  };
}

/** The three released VAEs (spec §9.2). */
export const VAE_PRESETS: readonly VaePreset[] = [vae(4), vae(8), vae(16)];

/** The preset a name refers to: 'd18_d28_dfn', 'flextok_d18_d28_dfn' or 'EPFL-VILAB/flextok_d18_d28_dfn'. */
export function findTokenizerPreset(name: string): TokenizerPreset | null {
  const bare = name.replace(/^EPFL-VILAB\//i, '').replace(/^flextok_/, '');
  return TOKENIZER_PRESETS.find((p) => p.name === bare) ?? null;
}

export function findVaePreset(name: string): VaePreset | null {
  const bare = name.replace(/^EPFL-VILAB\//i, '').replace(/^flextok_/, '');
  return VAE_PRESETS.find((p) => p.name === bare) ?? null;
}

/** One line per preset, for help texts. */
export function describePresets(): string {
  return TOKENIZER_PRESETS.map(
    (p) => `${p.name.padEnd(13)} ${p.repo}  (encoder d${p.encoderDepth}×${p.encoderDim}, decoder d${p.decoderDepth}×${p.decoderDim}, ${p.data}, VAE ${p.vaeRepo.split('_').pop()})`,
  ).join('\n');
}

/**
 * The local checkpoint a `--model` value names: an existing file or folder as is; a preset name or hub id
 * as `<cache>/<repo-id>/model.safetensors`. A preset or repo that is not in the cache is an error that
 * tells how to download it.
 */
export function resolveModelPath(model: string, cacheRoot = defaultCacheRoot()): string {
  if (fs.existsSync(model)) return model;
  if (model.endsWith('.safetensors') || model.startsWith('.') || path.isAbsolute(model) || model.split('/').length > 2) {
    throw new Error(`--model ${model}: no such file or folder`);
  }
  const preset = findTokenizerPreset(model);
  const repo = preset ? preset.repo : /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(model) && !model.includes('..') ? model : null;
  if (repo === null) {
    throw new Error(
      `--model '${model}' is neither a file or folder nor a known model; use a checkpoint path or one of: ${TOKENIZER_PRESETS.map((p) => p.name).join(', ')}`,
    );
  }
  const dir = repoCacheDir(repo, cacheRoot);
  const file = path.join(dir, 'model.safetensors');
  if (!fs.existsSync(file)) {
    const vaeHint = preset ? ` and 'flextok pull ${preset.vaeRepo}'` : '';
    throw new Error(`model '${model}' is not downloaded (no ${file}); run 'flextok pull ${repo}'${vaeHint} first`);
  }
  return file;
}

/**
 * Differences between a loaded config and what the spec expects of a released tokenizer (some widths are
 * inferred in the spec, so callers report these as warnings, not errors).
 */
export function presetMismatches(preset: TokenizerPreset, config: FlexTokConfig): string[] {
  const out: string[] = [];
  const expect = (what: string, actual: unknown, expected: unknown) => {
    if (JSON.stringify(actual) !== JSON.stringify(expected)) out.push(`${what} is ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  };
  expect('encoder depth', config.encoder.depth, preset.encoderDepth);
  expect('encoder width', config.encoder.dim, preset.encoderDim);
  expect('decoder depth', config.decoder.depth, preset.decoderDepth);
  expect('decoder width', config.decoder.dim, preset.decoderDim);
  expect('registers', config.encoder.n_registers, preset.registers);
  expect('FSQ levels', config.fsqLevels, preset.fsqLevels);
  if (config.vae.hfHubPath !== null) expect('VAE repository', config.vae.hfHubPath, preset.vaeRepo);
  return out;
}
