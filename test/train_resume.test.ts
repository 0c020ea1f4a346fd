// Exact resume, for train-tokenizer, train-vae and train-ar. A run is killed with SIGKILL by the test-only hooks
// in src/train/run.ts (FLEXTOK_TEST_KILL_AFTER_CHECKPOINT / FLEXTOK_TEST_KILL_DURING_CHECKPOINT: the
// process kills itself at an exact point, no timers) and continued with --resume. The checks are built
// so that a --resume that ignored the checkpoint and retrained from step 0 would fail them (training is
// deterministic, so the end state alone cannot tell): the resumed process must say it resumed at the
// checkpoint's step, report only the remaining steps, keep the killed process's log lines byte for
// byte, and a checkpoint with one altered weight must change the end result. Its end state (weights,
// AdamW m/v, EMA, exported model) must be bitwise identical to an uninterrupted run. A kill in the
// middle of a checkpoint write must leave the previous checkpoint untouched and resumable.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { readCheckpointHeader } from '../src/train/run.js';
import { writeSyntheticTokens } from './helpers/tokens.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const cli = path.join(root, 'src/cli/main.ts');

interface Kind {
  command: 'train-tokenizer' | 'train-vae' | 'train-ar';
  /** names the suite when a command appears twice (default: the command) */
  label?: string;
  config: string;
  extra: string[];
  steps: number;
  /** the step the first run is killed after (a checkpoint and log step) */
  killAfter: number;
  /** the next checkpoint step, killed in the middle of its write */
  killDuring: number;
  /** the steps of the log.jsonl lines, in order */
  logSteps: number[];
  /** the steps with a progress line (default logSteps) */
  progressSteps?: number[];
  /** files of the exported model, compared tensor by tensor (.safetensors) or byte by byte */
  exports: string[];
}

// test-tiny: checkpoint and log every 2 steps; vae-test-tiny: log every 5, checkpoint every 10.
// ar-test-tiny: log every 2, checkpoint every 4, a validation line every 5 steps and at the end (before the step's
// training line at a log step, after it at the end); trained on a synthetic token folder made here.
const arTokens = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-ar-tokens-'));
writeSyntheticTokens(arTokens);
const arTextTokens = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-ar-text-tokens-'));
writeSyntheticTokens(arTextTokens, 64, 16, 1, true);
process.on('exit', () => {
  fs.rmSync(arTokens, { recursive: true, force: true });
  fs.rmSync(arTextTokens, { recursive: true, force: true });
});

const KINDS: Kind[] = [
  {
    command: 'train-tokenizer', config: 'configs/test-tiny.json', extra: ['--data', 'synthetic:64'], steps: 16, killAfter: 4, killDuring: 6,
    logSteps: [2, 4, 6, 8, 10, 12, 14, 16], exports: ['model.safetensors'],
  },
  {
    command: 'train-vae', config: 'configs/vae-test-tiny.json', extra: [], steps: 24, killAfter: 10, killDuring: 20,
    logSteps: [5, 10, 15, 20, 24], exports: ['vae/diffusion_pytorch_model.safetensors', 'vae/config.json'],
  },
  {
    command: 'train-ar', config: 'configs/ar-test-tiny.json', extra: ['--tokens', arTokens], steps: 12, killAfter: 4, killDuring: 8,
    logSteps: [2, 4, 5, 6, 8, 10, 10, 12, 12], progressSteps: [2, 4, 6, 8, 10, 12], exports: ['model.safetensors'],
  },
  {
    // text-conditional: the caption dropout draws and the caption lookups must resume exactly too
    command: 'train-ar', label: 'train-ar (text-conditional)', config: 'configs/ar-text-test-tiny.json', extra: ['--tokens', arTextTokens], steps: 12, killAfter: 4, killDuring: 8,
    logSteps: [2, 4, 5, 6, 8, 10, 10, 12, 12], progressSteps: [2, 4, 6, 8, 10, 12], exports: ['model.safetensors'],
  },
];

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** The environment without any test kill hook (each run sets the one it wants), with the backend pinned:
 * bitwise equality needs every run on the same kernels, so a native addon that goes missing half-way
 * fails a run loudly instead of silently switching it to the TypeScript kernels. */
const cleanEnv: Record<string, string | undefined> = {
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEXTOK_TEST_'))),
  FLEXTOK_BACKEND: process.env.FLEXTOK_BACKEND ?? (fs.existsSync(path.join(root, 'native/build/Release/flextok_native.node')) ? 'native' : 'js'),
};

function train(kind: Kind, out: string, opts: { resume?: boolean; env?: Record<string, string> } = {}): Run {
  const args = ['--import', 'tsx', cli, kind.command, '--out', out, '--steps', String(kind.steps)];
  if (opts.resume) args.push('--resume');
  else args.push('--config', path.join(root, kind.config), ...kind.extra);
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: { ...cleanEnv, ...opts.env }, timeout: 60_000 });
  return { status: r.status, signal: r.signal, stderr: r.stderr };
}

function trainToEnd(kind: Kind, out: string, resume = false): Run {
  const r = train(kind, out, { resume });
  assert.equal(r.status, 0, `training failed:\n${r.stderr}`);
  return r;
}

const killAfterEnv = (step: number) => ({ FLEXTOK_TEST_KILL_AFTER_CHECKPOINT: String(step) });
const killDuringEnv = (step: number) => ({ FLEXTOK_TEST_KILL_DURING_CHECKPOINT: String(step) });

const numbers = (re: RegExp, text: string): number[] => [...text.matchAll(re)].map((m) => Number(m[1]));

/** What a resumed process says about itself. */
function resumeReport(kind: Kind, stderr: string): { resumedAt: number[]; progress: number[]; checkpoints: number[] } {
  return {
    resumedAt: numbers(/^resumed .* at step (\d+)$/gm, stderr),
    progress: numbers(new RegExp(`^${kind.command} step (\\d+)/`, 'gm'), stderr),
    checkpoints: numbers(/^checkpoint saved at step (\d+)/gm, stderr),
  };
}

function logLines(dir: string): string[] {
  return fs.readFileSync(path.join(dir, 'log.jsonl'), 'utf8').split('\n').filter((l) => l.length > 0);
}
const stepOf = (line: string) => (JSON.parse(line) as { step: number }).step;

function tensorBytes(file: string): Map<string, Buffer> {
  const { tensors } = readSafetensors(file);
  const out = new Map<string, Buffer>();
  for (const [name, t] of tensors) out.set(name, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return out;
}

/** Every tensor of the two files bitwise equal (the files' headers hold timings, so not whole files). */
function assertSameTensors(a: string, b: string, what: string): void {
  const ta = tensorBytes(a);
  const tb = tensorBytes(b);
  assert.deepEqual([...tb.keys()].sort(), [...ta.keys()].sort(), `${what}: tensor names differ`);
  for (const [name, bytes] of ta) assert.ok(bytes.equals(tb.get(name)!), `${what}: tensor ${name} differs after resume`);
}

/** The resumed run's end state equals the uninterrupted run's: checkpoint, exported model, log values. */
function assertSameEnd(kind: Kind, straight: string, resumed: string): void {
  assertSameTensors(path.join(straight, 'checkpoint.safetensors'), path.join(resumed, 'checkpoint.safetensors'), 'checkpoint');
  assert.equal(readCheckpointHeader(path.join(resumed, 'checkpoint.safetensors')).step, kind.steps);
  for (const file of kind.exports) {
    if (file.endsWith('.safetensors')) assertSameTensors(path.join(straight, file), path.join(resumed, file), file);
    else assert.equal(fs.readFileSync(path.join(resumed, file), 'utf8'), fs.readFileSync(path.join(straight, file), 'utf8'), `${file} differs`);
  }
  // log.jsonl: every step once, in order, with the uninterrupted run's values (timings aside).
  const values = (line: string) => {
    const { elapsed_s: _e, images_per_sec: _i, ...rest } = JSON.parse(line) as Record<string, unknown>;
    return rest;
  };
  const a = logLines(straight);
  const b = logLines(resumed);
  assert.deepEqual(b.map(stepOf), kind.logSteps, 'log.jsonl steps after resume');
  assert.deepEqual(b.map(values), a.map(values), 'log.jsonl values after resume');
}

/** The checks on a resumed process's own report: it started at `from` and ran only the steps after it. */
function assertResumedFrom(kind: Kind, run: Run, from: number, until = kind.steps): void {
  const r = resumeReport(kind, run.stderr);
  assert.deepEqual(r.resumedAt, [from], `the resumed run does not report 'resumed … at step ${from}':\n${run.stderr}`);
  assert.deepEqual(r.progress, (kind.progressSteps ?? kind.logSteps).filter((s) => s > from && s <= until), `progress lines of the resumed run (only steps after ${from}):\n${run.stderr}`);
  assert.ok(r.checkpoints.every((s) => s > from), `the resumed run saved checkpoints at or before step ${from}:\n${run.stderr}`);
}

const tempFiles = (dir: string) => fs.readdirSync(dir).filter((n) => /\.tmp-\d+$/.test(n));

for (const kind of KINDS) {
  describe(`${kind.label ?? kind.command} --resume`, { timeout: 120_000 }, () => {
    let dir = '';
    let straight = '';
    /** the run killed right after checkpoint killAfter, untouched (each test resumes a copy) */
    let killed = '';
    let killedRun: Run;

    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-resume-'));
      straight = path.join(dir, 'straight');
      killed = path.join(dir, 'killed');
      trainToEnd(kind, straight);
      killedRun = train(kind, killed, { env: killAfterEnv(kind.killAfter) });
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    const copyOfKilled = (name: string): string => {
      const to = path.join(dir, name);
      fs.cpSync(killed, to, { recursive: true });
      return to;
    };

    test(`FLEXTOK_TEST_KILL_AFTER_CHECKPOINT=${kind.killAfter} kills the run right after that checkpoint`, () => {
      assert.equal(killedRun.signal, 'SIGKILL', `the run was not killed by the hook (status ${killedRun.status}):\n${killedRun.stderr}`);
      assert.equal(readCheckpointHeader(path.join(killed, 'checkpoint.safetensors')).step, kind.killAfter);
      assert.deepEqual(logLines(killed).map(stepOf), kind.logSteps.filter((s) => s <= kind.killAfter));
      assert.deepEqual(tempFiles(killed), []);
    });

    test('the resumed run continues from the checkpoint and ends bitwise identical to an uninterrupted run', () => {
      const resumed = copyOfKilled('resumed');
      const killedLog = logLines(resumed);
      const run = trainToEnd(kind, resumed, true);
      assertResumedFrom(kind, run, kind.killAfter);
      // The killed process's log lines are kept byte for byte (a retrain from step 0 would rewrite them:
      // elapsed_s and images_per_sec are wall-clock measurements).
      assert.deepEqual(logLines(resumed).slice(0, killedLog.length), killedLog, 'log lines of the killed session were rewritten');
      assertSameEnd(kind, straight, resumed);
      if (kind.command !== 'train-vae') {
        const names = [...tensorBytes(path.join(resumed, 'checkpoint.safetensors')).keys()];
        assert.ok(names.some((k) => k.startsWith('optim.m/')) && names.some((k) => k.startsWith('ema/')), 'the checkpoint holds AdamW and EMA state');
      }
    });

    test('the resume uses the checkpoint\'s weights: one altered parameter changes the end result', () => {
      const corrupt = copyOfKilled('corrupt');
      const file = path.join(corrupt, 'checkpoint.safetensors');
      const { metadata, tensors } = readSafetensors(file);
      const name = [...tensors.keys()].find((k) => k.startsWith('model/') && tensors.has(`optim.m/${k.slice('model/'.length)}`))!;
      assert.ok(name, 'no trainable model tensor in the checkpoint');
      const data = tensors.get(name)!.data as Float32Array;
      data[0] += 0.5;
      writeSafetensors(file, tensors, metadata);

      const run = trainToEnd(kind, corrupt, true);
      assertResumedFrom(kind, run, kind.killAfter);
      const a = tensorBytes(path.join(straight, 'checkpoint.safetensors'));
      const b = tensorBytes(file);
      assert.ok(!a.get(name)!.equals(b.get(name)!), `${name} ends equal to the uninterrupted run's although the checkpoint's value was altered`);
      const model = kind.exports[0];
      const ma = tensorBytes(path.join(straight, model));
      const mb = tensorBytes(path.join(corrupt, model));
      assert.ok([...ma].some(([n, bytes]) => !bytes.equals(mb.get(n)!)), `the exported ${model} is unchanged by the altered checkpoint`);
    });

    test(`a kill in the middle of writing checkpoint ${kind.killDuring} leaves checkpoint ${kind.killAfter} intact and resumable`, () => {
      const during = copyOfKilled('during');
      const ckpt = path.join(during, 'checkpoint.safetensors');
      const before = fs.readFileSync(ckpt);
      const killedLog = logLines(during);

      const killedMidWrite = train(kind, during, { resume: true, env: killDuringEnv(kind.killDuring) });
      assert.equal(killedMidWrite.signal, 'SIGKILL', `the run was not killed by the hook (status ${killedMidWrite.status}):\n${killedMidWrite.stderr}`);
      assertResumedFrom(kind, killedMidWrite, kind.killAfter, kind.killDuring);
      assert.ok(!resumeReport(kind, killedMidWrite.stderr).checkpoints.includes(kind.killDuring), 'the checkpoint write finished before the kill');
      // The previous checkpoint is untouched; the write was really cut short (a partial temp file).
      assert.ok(fs.readFileSync(ckpt).equals(before), 'the previous checkpoint was changed by the interrupted write');
      assert.equal(readCheckpointHeader(ckpt).step, kind.killAfter);
      const temps = tempFiles(during);
      assert.deepEqual(temps.map((n) => n.replace(/\d+$/, '')), ['checkpoint.safetensors.tmp-'], 'one partial temp file of the checkpoint');
      const partial = fs.statSync(path.join(during, temps[0])).size;
      assert.ok(partial > 8 && partial < before.length, `temp file of ${partial} bytes is not a partial checkpoint (${before.length} bytes)`);

      // The leftover temp file does not disturb the resume (and is cleaned up), which ends identical.
      const run = trainToEnd(kind, during, true);
      assertResumedFrom(kind, run, kind.killAfter);
      assert.deepEqual(tempFiles(during), [], 'the stale temp file is still there');
      assert.deepEqual(logLines(during).slice(0, killedLog.length), killedLog, 'log lines of the first killed session were rewritten');
      assertSameEnd(kind, straight, during);
    });
  });
}
