// The `flextok` command-line tool: tokenize, detokenize, reconstruct, parity, pull, demo, train-tokenizer, train-vae,
// tokenize-dataset, train-ar, generate, eval-generation.
import * as fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { commandHelp, parseCommand, UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { demoSpec, runDemo } from './demo.js';
import { evalGenerationSpec, runEvalGeneration } from './eval_generation.js';
import { generateSpec, runGenerate } from './generate.js';
import { detokenizeSpec, runDetokenize } from './detokenize.js';
import { paritySpec, runParityCommand } from './parity_cmd.js';
import { pullSpec, runPull } from './pull.js';
import { reconstructSpec, runReconstruct } from './reconstruct.js';
import { runTokenize, tokenizeSpec } from './tokenize.js';
import { runServe, serveSpec } from './serve.js';
import { runTokenizeDataset, tokenizeDatasetSpec } from './tokenize_dataset.js';
import { runTrainAr, runTrainTokenizer, runTrainVae, trainArSpec, trainTokenizerSpec, trainVaeSpec } from '../train/cli.js';
import { describeBackend } from '../tensor/backend.js';

interface Command {
  spec: CommandSpec;
  /** Runs the command; resolves to the exit status. */
  run(args: ParsedArgs): Promise<number>;
}

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};
const print = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

const COMMANDS: readonly Command[] = [
  { spec: tokenizeSpec, run: async (a) => (await runTokenize(a, log), 0) },
  { spec: detokenizeSpec, run: async (a) => (await runDetokenize(a, log), 0) },
  { spec: reconstructSpec, run: async (a) => (await runReconstruct(a, log), 0) },
  { spec: paritySpec, run: (a) => runParityCommand(a, print) },
  { spec: pullSpec, run: async (a) => (await runPull(a, log), 0) },
  { spec: demoSpec, run: async (a) => (await runDemo(a, print), 0) },
  { spec: generateSpec, run: async (a) => (await runGenerate(a, log), 0) },
  { spec: evalGenerationSpec, run: async (a) => (await runEvalGeneration(a, log), 0) },
  { spec: trainTokenizerSpec, run: async (a) => (await runTrainTokenizer(a), 0) },
  { spec: trainVaeSpec, run: async (a) => (await runTrainVae(a), 0) },
  { spec: trainArSpec, run: async (a) => (await runTrainAr(a), 0) },
  { spec: tokenizeDatasetSpec, run: async (a) => (await runTokenizeDataset(a, log), 0) },
  { spec: serveSpec, run: (a) => runServe(a, print, log) },
];

function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    if (pkg.version) return pkg.version;
  } catch {
    // dist/src/cli/main.js sits one level deeper than src/cli/main.ts.
  }
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function toolHelp(): string {
  const w = Math.max(...COMMANDS.map((c) => c.spec.name.length));
  return [
    'Usage: flextok <command> [options]',
    '',
    'FlexTok image tokenizer (1D, coarse-to-fine tokens) in TypeScript.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.spec.name.padEnd(w)}  ${c.spec.summary}`),
    '',
    'Options:',
    '  -h, --help     show help (also: flextok <command> --help)',
    '  -v, --version  show the version and the engine it runs on (back end, ISA, threads)',
    '',
    'Environment: FLEXTOK_CACHE (hub cache root), HF_ENDPOINT (hub endpoint), HF_TOKEN (hub token for gated repositories),',
    'FLEXTOK_DEBUG=1 (stack traces on errors), FLEXTOK_BACKEND=js (pure TypeScript kernels).',
  ].join('\n');
}

/** Runs the tool with `argv` (without node and script); resolves to the exit status. */
export async function main(argv: string[]): Promise<number> {
  // `flextok parity … | head` closes stdout early: stop quietly instead of crashing.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const topic = name === 'help' ? COMMANDS.find((c) => c.spec.name === rest[0]) : undefined;
    print(topic ? commandHelp(topic.spec) : toolHelp());
    return 0;
  }
  if (name === '-v' || name === '--version') {
    print(`flextok ${version()} (Node ${process.version}, ${process.platform}-${process.arch})`);
    print(`engine: ${describeBackend()}`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.spec.name === name);
  try {
    if (!command) throw new UsageError(`unknown command '${name}' (commands: ${COMMANDS.map((c) => c.spec.name).join(', ')})`, '');
    const args = parseCommand(command.spec, rest);
    if (args.flag('help')) {
      print(commandHelp(command.spec));
      return 0;
    }
    return await command.run(args);
  } catch (err) {
    reportError(err);
    return 1;
  }
}

function reportError(err: unknown): void {
  if (process.env.FLEXTOK_DEBUG === '1' && err instanceof Error && err.stack) {
    log(err.stack);
    return;
  }
  const message = err instanceof Error ? err.message : String(err);
  const lines = message.split('\n');
  const shown = lines.length > 25 ? [...lines.slice(0, 24), `  … (${lines.length - 24} more lines; FLEXTOK_DEBUG=1 for details)`] : lines;
  log(`flextok: error: ${shown.join('\n')}`);
  if (err instanceof UsageError) log(`Run 'flextok ${err.command ? `${err.command} ` : ''}--help' for usage.`);
}

// Run when executed directly (node --import tsx src/cli/main.ts …); bin/flextok.js calls main() itself.
const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(fs.realpathSync(entry)).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      reportError(err);
      process.exitCode = 1;
    },
  );
}
