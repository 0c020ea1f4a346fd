// Command-line handlers of `flextok train-tokenizer` and `flextok train-vae` (also runnable directly:
// `node --import tsx src/train/cli.ts train-tokenizer --config … --out …`).

import * as fs from 'node:fs';
import { UsageError, type CommandSpec, type ParsedArgs } from '../cli/args.js';
import { parseTokenizerConfig, parseVaeConfig, readJsonFile, type TokenizerTrainConfig, type VaeTrainConfig } from './config.js';
import { runPaths, writeTextAtomic } from './run.js';
import { runTokenizerTraining } from './tokenizer.js';
import { runVaeTraining } from './vae.js';

const commonOptions: CommandSpec['options'] = [
  { name: 'config', kind: 'string', value: 'FILE', help: 'JSON training config (see configs/); required for a new run. With --resume it must match the run\'s own config.json if given' },
  { name: 'data', kind: 'string', value: 'SOURCE', help: "training data: 'fashion-mnist' (the Debian dataset-fashion-mnist files), an image folder (class sub-folders), or 'synthetic[:N]'; overrides data.source" },
  { name: 'out', kind: 'string', value: 'DIR', help: 'run folder: config.json, log.jsonl, samples/step_NNNNNN.png, checkpoint.safetensors, exported model (required)' },
  { name: 'resume', kind: 'boolean', help: "continue the run in --out from its checkpoint; the result is bitwise identical to an uninterrupted run" },
  { name: 'steps', kind: 'string', value: 'N', help: 'total optimizer steps (overrides optim.total_steps; with --resume it may extend the run, which changes the cosine schedule)' },
  { name: 'seed', kind: 'string', value: 'N', help: 'seed of every random draw (overrides seed; not allowed to change on --resume)' },
];

const runNotes = [
  ['Progress goes to stderr (one updating line on a terminal, a line per log interval otherwise); log.jsonl gets one JSON line per',
    'log interval (step, loss parts, lr, grad norm, images/s, elapsed). Checkpoints are written atomically every run.checkpoint_every',
    'steps and at the end; kill the process at any time and continue with --resume.'].join('\n'),
  'Backends: FLEXTOK_BACKEND=native|js selects the kernels (native when built). Bitwise-exact resume needs the same backend and machine.',
];

export const trainTokenizerSpec: CommandSpec = {
  name: 'train-tokenizer',
  summary: 'Train a FlexTok tokenizer (encoder + FSQ + rectified-flow decoder) from scratch, with nested dropout, CFG dropout and optional REPA.',
  usage: 'flextok train-tokenizer --config FILE --out DIR [--data SOURCE] [--steps N] [--seed N] [--resume]',
  positionals: [],
  options: commonOptions,
  notes: [
    ['Config sections: seed; data {source, resolution, resize_mode pad|resize, channels, limit, flip}; vae ("none" = pixel space, or a',
      'train-vae run folder); model {patch_size, n_registers, fsq_levels, encoder/decoder {dim, depth, head_dim, mlp_ratio}, null_cond,',
      'frequency_embedding_size, max_timestep, qk_norm, encoder_head_init zero|xavier}; flow {timestep_sampler {ln, stratified, mode_scale, shift}, nested_dropout',
      'uniform|pow2|uniform_pow2, nested_dropout_switch null or {step, mode}, cfg_dropout}; repa null or {layer, weight, projector_hidden, teacher, teacher_weights, resample};',
      'init null or {from (a trained model.safetensors or run folder), modules ["encoder"] / ["decoder"] / both, freeze_encoder};',
      'optim {batch_size, grad_accum, lr, min_lr, warmup_steps, weight_decay, betas, eps, grad_clip, ema_decay, total_steps};',
      'run {log_every, sample_every, checkpoint_every, sample_images, sample_steps, sample_guidance, export_dtype F32|F16}.'].join('\n'),
    'The run folder gets model.safetensors in the official FlexTok layout (EMA weights, Hydra config in the metadata).',
    'init with freeze_encoder trains a new decoder (any size) for the tokens of an existing model: its token ids stay exactly the same.',
    ...runNotes,
  ],
};

export const trainVaeSpec: CommandSpec = {
  name: 'train-vae',
  summary: 'Train a small AutoencoderKL (diffusers layout) with an L1 or L2 reconstruction loss plus β·KL.',
  usage: 'flextok train-vae --config FILE --out DIR [--data SOURCE] [--steps N] [--seed N] [--resume]',
  positionals: [],
  options: commonOptions,
  notes: [
    ['Config sections: seed; data (as train-tokenizer); model {block_out_channels, layers_per_block, latent_channels, norm_num_groups,',
      'mid_block_add_attention}; loss {recon l1|l2, kl_weight}; optim; run (as train-tokenizer).'].join('\n'),
    ['The run folder gets vae/config.json + vae/diffusion_pytorch_model.safetensors (scaling_factor = 1/std of the latents), usable as',
      'the "vae" of a tokenizer config.'].join('\n'),
    ...runNotes,
  ],
};

type Parse<C> = (json: unknown, source: string) => C;

/** The config of a new or resumed run with the command-line overrides applied. */
function resolveConfig<C extends TokenizerTrainConfig | VaeTrainConfig>(args: ParsedArgs, parse: Parse<C>): { config: C; outDir: string; resume: boolean } {
  const outDir = args.requireStr('out');
  const resume = args.flag('resume');
  const steps = args.has('steps') ? args.num('steps', 0, { integer: true, min: 1 }) : undefined;
  const seed = args.has('seed') ? args.num('seed', 0, { integer: true, min: 0 }) : undefined;
  const data = args.str('data');
  const override = (c: C, withSteps: boolean): C => {
    const copy = JSON.parse(JSON.stringify(c)) as C;
    if (data !== undefined) copy.data.source = data;
    if (seed !== undefined) copy.seed = seed;
    if (withSteps && steps !== undefined) copy.optim.total_steps = steps;
    return parse(copy, 'config with command-line overrides');
  };
  if (!resume) {
    const file = args.str('config');
    if (!file) throw new UsageError('--config is required for a new run (or pass --resume to continue the run in --out)', args.command);
    return { config: override(parse(readJsonFile(file), file), true), outDir, resume };
  }
  const paths = runPaths(outDir);
  if (!fs.existsSync(paths.config)) throw new UsageError(`--resume: ${paths.config} does not exist (is --out the folder of a run?)`, args.command);
  const stored = parse(readJsonFile(paths.config), paths.config);
  const resumed = override(stored, true);
  const changed = (a: C, b: C): boolean => {
    const strip = (c: C) => JSON.stringify({ ...c, optim: { ...c.optim, total_steps: 0 } });
    return strip(a) !== strip(b);
  };
  if (changed(stored, resumed)) throw new UsageError('--resume: --data and --seed must match the run being resumed (only --steps may change)', args.command);
  const file = args.str('config');
  if (file !== undefined && changed(stored, override(parse(readJsonFile(file), file), false))) {
    throw new UsageError(`--resume: ${file} differs from the run's own ${paths.config}; resume without --config, or start a new run`, args.command);
  }
  if (resumed.optim.total_steps !== stored.optim.total_steps) writeTextAtomic(paths.config, `${JSON.stringify(resumed, null, 2)}\n`);
  return { config: resumed, outDir, resume };
}

/** `flextok train-tokenizer …` (registered in src/cli/main.ts, which handles --help and errors). */
export async function runTrainTokenizer(args: ParsedArgs): Promise<void> {
  if (args.positionals.length) throw new UsageError(`unexpected argument '${args.positionals[0]}'`, args.command);
  const { config, outDir, resume } = resolveConfig(args, parseTokenizerConfig);
  await runTokenizerTraining({ config, outDir, resume });
}

/** `flextok train-vae …` (registered in src/cli/main.ts). */
export async function runTrainVae(args: ParsedArgs): Promise<void> {
  if (args.positionals.length) throw new UsageError(`unexpected argument '${args.positionals[0]}'`, args.command);
  const { config, outDir, resume } = resolveConfig(args, parseVaeConfig);
  await runVaeTraining({ config, outDir, resume });
}
