// `flextok parity`: compare this implementation with golden reference outputs of the official code.
import { formatCaseReport, runParity } from '../flextok/parity.js';
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';

export const paritySpec: CommandSpec = {
  name: 'parity',
  summary: 'Compare with golden outputs of the official code (every tensor, every stage); exit status 1 on any failure.',
  usage: 'flextok parity <dir> [--quiet]',
  positionals: [{ name: 'dir', help: 'a golden directory (subfolders with config.json, io.safetensors, …) or one case folder' }],
  options: [{ name: 'quiet', short: 'q', kind: 'boolean', help: 'list only failing tensors (stage summaries are always shown)' }],
  notes: [
    'Runs every golden case under <dir> (or <dir> itself when it is a case folder) and prints, per tensor, max |ours − ref| and err = max|ours − ref| / max(1, max|ref|) against its tolerance, then the worst error of each stage.',
    'Schemas: flextok-golden/1 (tokenizer core), flextok-golden-vae/1 (VAE), flextok-golden-e2e/1 (official checkpoint format: model.safetensors, model_bf16.safetensors, hub/).',
  ],
};

export async function runParityCommand(args: ParsedArgs, print: (text: string) => void): Promise<number> {
  if (args.positionals.length !== 1) throw new UsageError('expected one golden directory', args.command);
  const report = runParity(args.positionals[0]!, (c) => print(formatCaseReport(c, { onlyFailures: args.flag('quiet') })));
  const failed = report.cases.filter((c) => !c.pass);
  print(
    failed.length === 0
      ? `parity: all ${report.cases.length} case${report.cases.length > 1 ? 's' : ''} passed`
      : `parity: ${failed.length} of ${report.cases.length} cases FAILED (${failed.map((c) => c.name).join(', ')})`,
  );
  return failed.length === 0 ? 0 : 1;
}
