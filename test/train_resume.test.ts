// Exact resume: a training run killed with SIGKILL right after a checkpoint and continued with
// --resume ends with weights (and optimizer / EMA state) bitwise identical to an uninterrupted run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSafetensors } from '../src/io/safetensors.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const cli = path.join(root, 'src/cli/main.ts');
const STEPS = '16';

function trainArgs(out: string, extra: string[] = []): string[] {
  return ['--import', 'tsx', cli, 'train-tokenizer', '--config', path.join(root, 'configs/test-tiny.json'), '--data', 'synthetic:64', '--out', out, '--steps', STEPS, ...extra];
}

function runToEnd(args: string[]): void {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, `training failed:\n${r.stderr}`);
}

/** Starts a run and SIGKILLs it as soon as it reports the checkpoint of `killAfter`. */
function runAndKill(args: string[], killAfter: number): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root });
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const m = /checkpoint saved at step (\d+)/g;
      let hit: RegExpExecArray | null;
      while ((hit = m.exec(stderr)) !== null) {
        if (!killed && Number(hit[1]) >= killAfter) {
          killed = true;
          child.kill('SIGKILL');
        }
      }
    });
    child.on('exit', (_code, signal) => resolve({ signal, stderr }));
  });
}

function tensorBytes(file: string): Map<string, Buffer> {
  const { tensors } = readSafetensors(file);
  const out = new Map<string, Buffer>();
  for (const [name, t] of tensors) out.set(name, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return out;
}

test('a run killed with SIGKILL and resumed ends bitwise identical to an uninterrupted run', { timeout: 180_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-resume-'));
  try {
    const straight = path.join(dir, 'straight');
    const broken = path.join(dir, 'broken');
    runToEnd(trainArgs(straight));

    const killed = await runAndKill(trainArgs(broken), 4);
    assert.equal(killed.signal, 'SIGKILL', `the run was not killed mid-way (it finished first?):\n${killed.stderr}`);
    assert.ok(fs.existsSync(path.join(broken, 'checkpoint.safetensors')));
    runToEnd(trainArgs(broken, ['--resume']));

    // Checkpoints: model weights, AdamW m/v, EMA — every tensor bitwise equal.
    const a = tensorBytes(path.join(straight, 'checkpoint.safetensors'));
    const b = tensorBytes(path.join(broken, 'checkpoint.safetensors'));
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    for (const [name, bytes] of a) assert.ok(bytes.equals(b.get(name)!), `tensor ${name} differs after resume`);
    assert.ok([...a.keys()].some((k) => k.startsWith('optim.m/')) && [...a.keys()].some((k) => k.startsWith('ema/')));
    // The exported models too.
    const ma = tensorBytes(path.join(straight, 'model.safetensors'));
    const mb = tensorBytes(path.join(broken, 'model.safetensors'));
    for (const [name, bytes] of ma) assert.ok(bytes.equals(mb.get(name)!), `exported ${name} differs after resume`);
    // log.jsonl: one line per log interval, no duplicates from the killed session.
    const steps = fs.readFileSync(path.join(broken, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
    assert.deepEqual(steps, [2, 4, 6, 8, 10, 12, 14, 16]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
