// `flextok serve`: the HTTP server (src/server/) on a port — the JSON/PNG API, the shipped model files and the web
// page — until Ctrl-C.
import * as path from 'node:path';
import { DEFAULT_LIMITS } from '../server/api.js';
import { packageRoot } from '../io/package_root.js';
import { createFlextokServer } from '../server/server.js';
import { describeBackend } from '../tensor/backend.js';
import { UsageError, type CommandSpec, type ParsedArgs } from './args.js';

const MIB = 1 << 20;

export const serveSpec: CommandSpec = {
  name: 'serve',
  summary: 'Serve the tokenizer and the generator over HTTP: a JSON/PNG API, the shipped model files and the web page (web/).',
  usage: 'flextok serve [--port N] [--host ADDR] [options]',
  positionals: [],
  options: [
    { name: 'port', short: 'p', kind: 'string', value: 'N', help: 'TCP port (0 picks a free one; the startup line names it)', defaultText: '8080' },
    { name: 'host', kind: 'string', value: 'ADDR', help: 'address to listen on (0.0.0.0: every interface — the API has no authentication)', defaultText: '127.0.0.1' },
    { name: 'root', kind: 'string', value: 'DIR', help: 'folder holding web/ (the page) and models/ (one folder per model)', defaultText: 'the flextok package' },
    { name: 'max-queue', kind: 'string', value: 'N', help: 'most computations waiting; past it requests get 503 with Retry-After', defaultText: String(DEFAULT_LIMITS.maxQueue) },
    { name: 'max-image-mb', kind: 'string', value: 'MB', help: 'largest uploaded image in MiB (413 past it)', defaultText: String(DEFAULT_LIMITS.maxImageBytes / MIB) },
    { name: 'log-requests', kind: 'boolean', help: 'log one line per request (method, path, status, milliseconds) to stderr' },
    { name: 'no-isolation', kind: 'boolean', help: 'leave out the COOP/COEP headers (the page then runs its wasm kernels on one thread; lets other origins embed the files)' },
  ],
  notes: [
    [
      'Routes (every response carries Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp,',
      'which make the page cross-origin isolated so its wasm kernels can use threads (not with --no-isolation), and',
      'X-Content-Type-Options: nosniff; every error is JSON {"error": "..."}):',
      '  GET  /                      the web page (web/index.html) and the other files of web/',
      '  GET  /examples/<file>.png   an example image the page offers (assets/fashion-mnist/); GET /api/examples lists them',
      '  GET  /models/<name>/<file>  a model file (.safetensors, .json, .md, .png) with ETag and Cache-Control',
      '  GET  /api                   the routes and limits (JSON)',
      '  GET  /api/health            {ok, backend, queue, rss_bytes, max_rss_bytes}',
      '  GET  /api/models            the models under models/: name, kind (tokenizer, generator, classifier), bytes, num_tokens, files',
      '  POST /api/tokenize          body: a PNG/JPEG/WebP image (Content-Type image/*); query: model (fmnist-default), pad=1',
      '                              (centre unscaled on the canvas, as tokenize --pad), k=N or target_psnr=DB (adaptive k), steps,',
      '                              guidance, seed (decoder settings for target_psnr) → {model, num_tokens, codebook_size, tokens, k?, psnr?}',
      '  POST /api/detokenize        JSON {model, tokens: [ids], k?, steps?, guidance?, apg?, seed?} → image/png (clamped to [-1, 1])',
      '  POST /api/generate          JSON {model (fmnist-ar), class?: name|index|"all", prompt?: text, n?: 1..16, tokens?: 1..R,',
      '                              cfg?, temperature?, top_k?, top_p?, seed?, steps?, guidance?} → {tokens: [[ids]], images: [base64 PNG]};',
      '                              ?format=png: one grid PNG. Without class (or "all") the samples cycle through the classes.',
    ].join('\n'),
    [
      `Limits: images ${DEFAULT_LIMITS.maxImageBytes / MIB} MiB and ${DEFAULT_LIMITS.maxImagePixels} pixels, JSON bodies ${DEFAULT_LIMITS.maxJsonBytes >> 10} KiB (413),`,
      `a body stalled ${DEFAULT_LIMITS.bodyIdleTimeoutMs / 1000} s or slower than ${DEFAULT_LIMITS.bodyTimeoutMs / 1000} s in all (408), n ≤ ${DEFAULT_LIMITS.maxSamples}, steps ≤ ${DEFAULT_LIMITS.maxSteps}.`,
      'Models load on first use and stay in memory; computations run one at a time in arrival order.',
      'Ctrl-C (SIGINT) or SIGTERM stops the server: running responses finish (up to 5 s), then every connection closes.',
    ].join('\n'),
  ],
};

/** Runs the server until SIGINT / SIGTERM; resolves to the exit status. */
export async function runServe(args: ParsedArgs, print: (line: string) => void, log: (line: string) => void): Promise<number> {
  if (args.positionals.length) throw new UsageError(`unexpected argument '${args.positionals[0]}'`, args.command);
  const port = args.num('port', 8080, { integer: true, min: 0 });
  if (port > 65535) throw new UsageError(`--port must be from 0 to 65535, got ${port}`, args.command);
  const host = args.str('host') ?? '127.0.0.1';
  if (host.trim() === '') throw new UsageError('--host is empty; give an address such as 127.0.0.1', args.command);
  const maxQueue = args.num('max-queue', DEFAULT_LIMITS.maxQueue, { integer: true, min: 0 });
  const maxImageBytes = Math.round(args.num('max-image-mb', DEFAULT_LIMITS.maxImageBytes / MIB, { min: 0.001 }) * MIB);
  const root = path.resolve(args.str('root') ?? packageRoot());

  const backend = describeBackend();
  const app = createFlextokServer({ root, limits: { maxQueue, maxImageBytes }, log, logRequests: args.flag('log-requests'), isolation: !args.flag('no-isolation') });
  const { url, host: bound } = await app.listen(port, host);
  print(`flextok serve: listening on ${url} (backend ${backend})`);
  if (!/^(127\.|::1$|::ffff:127\.)/.test(bound)) log(`flextok serve: warning: ${bound} is reachable from other machines and the API has no authentication`);

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      log(`flextok serve: ${signal}: closing`);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await app.close();
  log('flextok serve: closed');
  return 0;
}
