// Command-line handlers of `flextok train-tokenizer` and `flextok train-vae` (also runnable directly:
// `node --import tsx src/train/cli.ts train-tokenizer --config … --out …`).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError, type CommandSpec, type ParsedArgs } from '../cli/args.js';
import { parseArTrainConfig, parseTokenizerConfig, parseVaeConfig, readJsonFile, type ArTrainConfig, type TokenizerTrainConfig, type TrainConfig, type VaeTrainConfig } from './config.js';
import { runArTraining } from './ar.js';
import { runPaths, writeTextAtomic } from './run.js';
import { runTokenizerTraining } from './tokenizer.js';
import { runVaeTraining } from './vae.js';

const commonOptions: CommandSpec['options'] = [
  { name: 'config', kind: 'string', value: 'FILE', help: 'JSON training config (see configs/); required for a new run. With --resume it must match the run\'s own config.json if given' },
  { name: 'data', kind: 'string', value: 'SOURCE', help: "training data: 'fashion-mnist' (the Debian dataset-fashion-mnist files), 'fmnist-scenes' (64×64 scenes of 1–4 Fashion-MNIST items, data.resolution 64), an image folder (class sub-folders), or 'synthetic[:N]'; overrides data.source" },
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
      'init null or {from (a trained model.safetensors or run folder), modules ["encoder"] / ["decoder"] / both, freeze_encoder, grow_decoder};',
      'optim {batch_size, grad_accum, lr, min_lr, warmup_steps, weight_decay, betas, eps, grad_clip, ema_decay, total_steps};',
      'run {log_every, sample_every, checkpoint_every, sample_images, sample_steps, sample_guidance, export_dtype F32|F16}.'].join('\n'),
    'The run folder gets model.safetensors in the official FlexTok layout (EMA weights, Hydra config in the metadata).',
    'init with freeze_encoder trains a new decoder (any size) for the tokens of an existing model: its token ids stay exactly the same.',
    ['init.grow_decoder loads a decoder into a deeper one: the blocks past its depth start as AdaLN-zero blocks (the identity), so',
      'training starts from exactly the loaded model (configs/scenes-tokenizer-grown.json). A generator trained on the old tokens is',
      'then pointed at the new tokenizer with scripts/retarget-generator.ts, which checks that both tokenize bit for bit alike.'].join('\n'),
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

/** The image trainers' --data override. */
const setDataSource = (c: TokenizerTrainConfig | VaeTrainConfig, args: ParsedArgs): void => {
  const data = args.str('data');
  if (data !== undefined) c.data.source = data;
};

/** The config of a new or resumed run with the command-line overrides applied (`setData`: the data options). */
function resolveConfig<C extends TrainConfig>(args: ParsedArgs, parse: Parse<C>, setData: (c: C, args: ParsedArgs) => void): { config: C; outDir: string; resume: boolean } {
  const outDir = args.requireStr('out');
  const resume = args.flag('resume');
  const steps = args.has('steps') ? args.num('steps', 0, { integer: true, min: 1 }) : undefined;
  const seed = args.has('seed') ? args.num('seed', 0, { integer: true, min: 0 }) : undefined;
  const override = (c: C, withSteps: boolean): C => {
    const copy = JSON.parse(JSON.stringify(c)) as C;
    setData(copy, args);
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
  if (changed(stored, resumed)) throw new UsageError('--resume: the data options and --seed must match the run being resumed (only --steps may change)', args.command);
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
  const { config, outDir, resume } = resolveConfig(args, parseTokenizerConfig, setDataSource);
  await runTokenizerTraining({ config, outDir, resume });
}

/** `flextok train-vae …` (registered in src/cli/main.ts). */
export async function runTrainVae(args: ParsedArgs): Promise<void> {
  if (args.positionals.length) throw new UsageError(`unexpected argument '${args.positionals[0]}'`, args.command);
  const { config, outDir, resume } = resolveConfig(args, parseVaeConfig, setDataSource);
  await runVaeTraining({ config, outDir, resume });
}

export const trainArSpec: CommandSpec = {
  name: 'train-ar',
  summary: 'Train a class- or text-conditional autoregressive generator (FlexAR) over the token ids of a tokenize-dataset folder.',
  usage: 'flextok train-ar --config FILE --tokens DIR --out DIR [--tokenizer MODEL] [--steps N] [--seed N] [--resume]',
  positionals: [],
  options: [
    { name: 'config', kind: 'string', value: 'FILE', help: 'JSON training config (see configs/ar-fmnist.json); required for a new run' },
    { name: 'tokens', kind: 'string', value: 'DIR', help: 'a `flextok tokenize-dataset` output folder: trains on DIR/train.safetensors, scores DIR/test.safetensors if it exists (overrides tokens.train / tokens.val)' },
    { name: 'tokenizer', kind: 'string', value: 'MODEL', help: 'the tokenizer the tokens came from (overrides the config\'s tokenizer; default models/fmnist-default); its weights must have the sha256 recorded in the token files' },
    { name: 'out', kind: 'string', value: 'DIR', help: 'run folder: config.json, log.jsonl, samples/step_NNNNNN.png, checkpoint.safetensors, model.safetensors (required)' },
    { name: 'resume', kind: 'boolean', help: 'continue the run in --out from its checkpoint; the result is bitwise identical to an uninterrupted run' },
    { name: 'steps', kind: 'string', value: 'N', help: 'total optimizer steps (overrides optim.total_steps; with --resume it may extend the run)' },
    { name: 'seed', kind: 'string', value: 'N', help: 'seed of every random draw (overrides seed; not allowed to change on --resume)' },
  ],
  notes: [
    ['Config sections: seed; tokens {train, val}; tokenizer; model {dim, depth, head_dim, mlp_ratio, head flat|digits, qk_norm, digit_hidden, text null or {dim, depth, head_dim, max_len}: condition on the token files\' captions (e.g. fmnist-scenes) with a word encoder trained jointly};',
      'class_dropout; optim (as train-tokenizer; batch_size counts sequences); run {log_every, sample_every, checkpoint_every, val_every,',
      'val_sequences, samples_per_class, export_dtype F32|F16|BF16}; sampling {cfg_scale, cfg_schedule constant|linear|power-cosine, cfg_power,',
      'temperature, top_k, top_p, decoder_steps, decoder_guidance, decoder_apg}: stored with the exported model as `flextok generate`\'s defaults.'].join('\n'),
    ['Loss: next-token cross-entropy in nats per token (the digits head sums its six digit cross-entropies: the same quantity).',
      'log.jsonl also gets val_loss lines (EMA weights); sample grids show one generated sample per class (rows) decoded at k = 1, 2, 4, …, R.'].join('\n'),
    'model.safetensors (EMA weights) records the tokenizer (path and sha256 of its weights); `flextok generate` refuses another tokenizer.',
    ...runNotes,
  ],
};

/** train-ar's data options: --tokens DIR and --tokenizer MODEL. */
const setTokens = (c: ArTrainConfig, args: ParsedArgs): void => {
  const dir = args.str('tokens');
  if (dir !== undefined) {
    const train = path.join(dir, 'train.safetensors');
    if (!fs.existsSync(train)) throw new UsageError(`--tokens: ${train} does not exist (write it with \`flextok tokenize-dataset --out ${dir}\`)`, args.command);
    const val = path.join(dir, 'test.safetensors');
    c.tokens = { ...c.tokens, train, val: fs.existsSync(val) ? val : null };
  }
  const tokenizer = args.str('tokenizer');
  if (tokenizer !== undefined) c.tokenizer = tokenizer;
};

/** `flextok train-ar …` (registered in src/cli/main.ts). */
export async function runTrainAr(args: ParsedArgs): Promise<void> {
  if (args.positionals.length) throw new UsageError(`unexpected argument '${args.positionals[0]}'`, args.command);
  const { config, outDir, resume } = resolveConfig(args, parseArTrainConfig, setTokens);
  if (!config.tokens.train) throw new UsageError('no training tokens: pass --tokens DIR (a `flextok tokenize-dataset` folder) or set tokens.train in the config', args.command);
  await runArTraining({ config, outDir, resume });
}
