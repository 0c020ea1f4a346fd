// Bounded load test of `flextok serve`: it starts the server (`flextok serve --port 0`) as a child process, runs N
// concurrent clients for D seconds on /api/health, /api/tokenize and /api/detokenize (few decoder steps), and reports
// requests/s, latency p50/p90/p99, the server's peak RSS, the 503s of the queue limit (back-pressure: the client then
// waits as long as Retry-After says) and the failed well-formed requests, exiting 1 unless there are none and the
// server survived and stopped cleanly.
//
//   node --import tsx scripts/load-test.ts [--clients 16] [--duration 20] [--steps 2] [--max-queue N] [--json]
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

type Kind = 'health' | 'tokenize' | 'detokenize';
const KINDS: readonly Kind[] = ['health', 'tokenize', 'detokenize'];

interface Sample {
  kind: Kind;
  status: number;
  ms: number;
}

interface Options {
  clients: number;
  durationS: number;
  steps: number;
  maxQueue: number | null;
  json: boolean;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      clients: { type: 'string', default: '16' },
      duration: { type: 'string', default: '20' },
      steps: { type: 'string', default: '2' },
      'max-queue': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const int = (name: string, raw: string, min: number): number => {
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer ≥ ${min}, got '${raw}'`);
    return v;
  };
  return {
    clients: int('clients', values.clients!, 1),
    durationS: int('duration', values.duration!, 1),
    steps: int('steps', values.steps!, 1),
    maxQueue: values['max-queue'] === undefined ? null : int('max-queue', values['max-queue'], 0),
    json: values.json === true,
  };
}

/** Starts `flextok serve --port 0`; resolves to the child and its URL once it prints its startup line. */
function startServer(maxQueue: number | null): Promise<{ child: ChildProcess; url: string }> {
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--port', '0', ...(maxQueue === null ? [] : ['--max-queue', String(maxQueue)])];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the server did not start within 120 s:\n${stderr}`)), 120_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]! });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before listening:\n${stderr}`));
    });
  });
}

function request(agent: http.Agent, url: string, method: string, body: Buffer | null, type: string | null): Promise<{ status: number; body: Buffer; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: body ? { 'Content-Type': type!, 'Content-Length': String(body.length) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), retryAfter: res.headers['retry-after'] }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function latencyStats(samples: Sample[]): { count: number; p50: number; p90: number; p99: number } {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  return { count: ms.length, p50: percentile(ms, 50), p90: percentile(ms, 90), p99: percentile(ms, 99) };
}

async function main(): Promise<number> {
  const opt = options();
  const images = fs.readdirSync(path.join(root, 'assets/fashion-mnist')).filter((f) => f.endsWith('.png')).sort()
    .map((f) => fs.readFileSync(path.join(root, 'assets/fashion-mnist', f)));
  const { child, url } = await startServer(opt.maxQueue);
  const exit: { code: number | null; signal: string | null } = { code: null, signal: null };
  const exited = new Promise<void>((resolve) => child.once('exit', (code, signal) => {
    exit.code = code;
    exit.signal = signal;
    resolve();
  }));
  // Idle sockets are dropped well before the server's keep-alive timeout (5 s), so that no request is sent on a socket
  // the server is closing at that moment (the usual keep-alive race, which browsers hide by retrying).
  const agent = new http.Agent({ keepAlive: true, maxSockets: opt.clients, timeout: 3000 });

  // Warm-up (loads the model) and the token sequences the detokenize requests send.
  const warm = await request(agent, `${url}api/tokenize?pad=1`, 'POST', images[0]!, 'image/png');
  if (warm.status !== 200) throw new Error(`warm-up tokenize failed: ${warm.status} ${warm.body.toString()}`);
  const tokens = (JSON.parse(warm.body.toString()) as { tokens: number[] }).tokens;

  const samples: Sample[] = [];
  const errors: string[] = [];
  let networkErrors = 0;
  const started = Date.now();
  const deadline = started + opt.durationS * 1000;
  const client = async (c: number): Promise<void> => {
    for (let i = 0; Date.now() < deadline; i++) {
      const kind = KINDS[(c + i) % KINDS.length]!;
      const t0 = performance.now();
      try {
        const r = kind === 'health'
          ? await request(agent, `${url}api/health`, 'GET', null, null)
          : kind === 'tokenize'
            ? await request(agent, `${url}api/tokenize?pad=1`, 'POST', images[(c + i) % images.length]!, 'image/png')
            : await request(agent, `${url}api/detokenize`, 'POST', Buffer.from(JSON.stringify({ tokens: tokens.slice(0, 1 + ((c + i) % tokens.length)), steps: opt.steps, seed: i })), 'application/json');
        samples.push({ kind, status: r.status, ms: performance.now() - t0 });
        if (r.status !== 200 && r.status !== 503 && errors.length < 10) errors.push(`${kind}: ${r.status} ${r.body.toString().slice(0, 200)}`);
        // A polite client waits as long as Retry-After says (within the test's time).
        if (r.status === 503) await new Promise((res) => setTimeout(res, Math.min(Number(r.retryAfter ?? 1) * 1000, Math.max(0, deadline - Date.now()))));
      } catch (err) {
        networkErrors++;
        if (errors.length < 10) errors.push(`${kind}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: opt.clients }, (_, c) => client(c)));
  const elapsedS = (Date.now() - started) / 1000;

  const health = await request(agent, `${url}api/health`, 'GET', null, null).catch(() => null);
  const alive = health !== null && health.status === 200 && exit.code === null && exit.signal === null;
  const serverHealth = health && health.status === 200 ? (JSON.parse(health.body.toString()) as { max_rss_bytes: number; backend: string }) : null;
  agent.destroy();
  child.kill('SIGINT');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000).unref())]);
  if (exit.code === null && exit.signal === null) child.kill('SIGKILL');

  const ok = samples.filter((s) => s.status === 200);
  const backPressure = samples.filter((s) => s.status === 503).length;
  const failed = samples.filter((s) => s.status !== 200 && s.status !== 503).length + networkErrors;
  const report = {
    clients: opt.clients,
    duration_s: Number(elapsedS.toFixed(2)),
    decoder_steps: opt.steps,
    backend: serverHealth?.backend ?? null,
    requests: samples.length + networkErrors,
    ok: ok.length,
    requests_per_s: Number((samples.length / elapsedS).toFixed(1)),
    latency_ms: Object.fromEntries([
      ['all', latencyStats(ok)],
      ...KINDS.map((k) => [k, latencyStats(ok.filter((s) => s.kind === k))]),
    ].map(([k, v]) => [k, typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([a, b]) => [a, Math.round(b * 10) / 10])) : v])),
    back_pressure_503: backPressure,
    failed_well_formed: failed,
    peak_rss_mb: serverHealth ? Math.round(serverHealth.max_rss_bytes / (1 << 20)) : null,
    server_alive_after: alive,
    server_exit: exit.signal ?? exit.code,
    errors,
  };
  if (opt.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    const line = (k: string, v: { count: number; p50: number; p90: number; p99: number }): string =>
      `  ${k.padEnd(11)} ${String(v.count).padStart(6)} ok   p50 ${v.p50.toFixed(1).padStart(7)} ms   p90 ${v.p90.toFixed(1).padStart(7)} ms   p99 ${v.p99.toFixed(1).padStart(7)} ms`;
    const lat = report.latency_ms as Record<string, { count: number; p50: number; p90: number; p99: number }>;
    console.log(`flextok serve load test: ${opt.clients} clients for ${report.duration_s} s, decoder steps ${opt.steps}, backend ${report.backend}`);
    console.log(`  ${report.requests} requests, ${report.requests_per_s} requests/s; peak server RSS ${report.peak_rss_mb} MB`);
    for (const k of ['all', ...KINDS]) console.log(line(k, lat[k]!));
    console.log(`  503 back-pressure: ${backPressure}; failed well-formed requests: ${failed}; server alive after: ${alive}; exit: ${report.server_exit}`);
    for (const e of errors) console.log(`  error: ${e}`);
  }
  return failed === 0 && alive && exit.code === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`load-test: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
