// `flextok pull`: download a model repository from the hub into the local cache.
import * as path from 'node:path';
import { defaultCacheRoot, defaultEndpoint, pullRepo } from '../io/hub.js';
import { describePresets, findTokenizerPreset, findVaePreset } from '../flextok/presets.js';
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { ProgressBar } from './progress.js';

export const pullSpec: CommandSpec = {
  name: 'pull',
  summary: 'Download a model repository (every file) into the local cache; interrupted downloads resume, checksums are verified.',
  usage: 'flextok pull <repo-id|name> [--revision main] [--cache DIR] [--endpoint URL]',
  positionals: [{ name: 'repo-id', help: "a hub repository (e.g. EPFL-VILAB/flextok_d18_d28_dfn) or a released model's short name (d18_d28_dfn, vae_c16)" }],
  options: [
    { name: 'revision', kind: 'string', value: 'REV', help: 'branch, tag or commit', defaultText: 'main' },
    { name: 'cache', kind: 'string', value: 'DIR', help: 'cache root; files go to DIR/<repo-id>/', defaultText: '$FLEXTOK_CACHE or ~/.cache/flextok/hub' },
    { name: 'endpoint', kind: 'string', value: 'URL', help: 'hub endpoint', defaultText: '$HF_ENDPOINT or https://huggingface.co' },
    { name: 'force', kind: 'boolean', help: 'download files again even if they are in the cache' },
  ],
  notes: [`Released models:\n${describePresets()}`, 'A tokenizer also needs its VAE: pull EPFL-VILAB/flextok_vae_c16 too.'],
};

export async function runPull(args: ParsedArgs, log: (line: string) => void): Promise<void> {
  if (args.positionals.length !== 1) throw new UsageError('expected one repository id', args.command);
  const name = args.positionals[0]!;
  const repo = findTokenizerPreset(name)?.repo ?? findVaePreset(name)?.repo ?? name;
  const cacheRoot = args.str('cache') ? path.resolve(args.str('cache')!) : defaultCacheRoot();
  const endpoint = args.str('endpoint') ?? defaultEndpoint();
  let bar: ProgressBar | null = null;
  let barFile = '';
  const result = await pullRepo(repo, {
    revision: args.str('revision') ?? 'main',
    cacheRoot,
    endpoint,
    force: args.flag('force'),
    log,
    onProgress: (p) => {
      if (bar === null || barFile !== p.file) {
        bar = new ProgressBar(p.file, p.total, { unit: 'bytes' });
        barFile = p.file;
      }
      bar.update(p.received, p.total);
      if (p.done) {
        bar.done();
        bar = null;
      }
    },
  });
  log(`${repo}: ${result.downloaded.length} downloaded, ${result.skipped.length} already cached → ${result.dir}`);
  const preset = findTokenizerPreset(name);
  if (preset) log(`this tokenizer also needs its VAE: flextok pull ${preset.vaeRepo}`);
}
