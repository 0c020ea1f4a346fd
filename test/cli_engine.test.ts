// Which engine runs is said: `flextok --version` names the back end, ISA and thread count, and a run that
// falls back from the native kernels (to the WebAssembly ones, or to the TypeScript ones when those do not load
// either) says so once on stderr, with the reason and the fix.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nativeAddon } from '../src/tensor/backend_native.js';
import { REPO_ROOT } from './helpers/golden.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The CLI with the automatic back-end choice (FLEXTOK_BACKEND unset) and extra environment. */
function flextok(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const base: Record<string, string | undefined> = { ...process.env, FLEXTOK_DEBUG: '' };
  delete base.FLEXTOK_BACKEND;
  Object.assign(base, env);
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: REPO_ROOT, env: base }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function count(text: string, re: RegExp): number {
  return (text.match(new RegExp(re.source, 'g')) ?? []).length;
}

describe('flextok says which engine runs', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flextok-engine-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('--version names the native back end, its ISA and thread count', { skip: nativeAddon() ? false : 'the native addon is not built (the native pass of npm test fails on that itself)' }, async () => {
    const r = await flextok(['--version'], { FLEXTOK_THREADS: '2' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^flextok \d+\.\d+\.\d+ \(Node v\d+/);
    const isa = nativeAddon()!.isa();
    assert.match(r.stdout, new RegExp(`engine: native C\\+\\+ kernels \\(ISA ${isa.active}, CPU ${isa.cpu}, 2 threads\\)`));
    assert.equal(r.stderr, '', 'no warning when the native kernels load');
  });

  it('without the addon: the WebAssembly kernels, one warning with the reason and the fix, and --version says so', async () => {
    const missing = path.join(dir, 'no-such-addon.node');
    const r = await flextok(['--version'], { FLEXTOK_NATIVE_ADDON: missing });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /engine: WebAssembly C\+\+ kernels \(ISA wasm-relaxed-simd, 1 thread; the native addon is not built/);
    assert.equal(count(r.stderr, /running on the WebAssembly kernels/), 1, r.stderr);
    assert.match(r.stderr, /npm rebuild flextok/);
    assert.match(r.stderr, /FLEXTOK_BACKEND=wasm to choose these kernels on purpose/);
  });

  it('without the addon and the wasm module: the TypeScript kernels, one warning naming both reasons', async () => {
    const missing = path.join(dir, 'no-such-addon.node');
    const r = await flextok(['--version'], { FLEXTOK_NATIVE_ADDON: missing, FLEXTOK_WASM_MODULE: path.join(dir, 'none.wasm') });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /engine: pure TypeScript kernels \(1 thread\): the native addon is not built/);
    assert.equal(count(r.stderr, /running on the pure TypeScript kernels/), 1, r.stderr);
    assert.match(r.stderr, /10–20× slower/);
    assert.match(r.stderr, new RegExp(`not built \\(${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is missing\\)`));
    assert.match(r.stderr, /npm rebuild flextok/);
    assert.match(r.stderr, /g\+\+/);
    assert.match(r.stderr, /the WebAssembly kernels do not load either: .*none\.wasm is missing/);
  });

  it('with an addon that fails to load: the warning carries the loader error', async () => {
    const broken = path.join(dir, 'broken.node');
    fs.writeFileSync(broken, 'not a shared object');
    const r = await flextok(['--version'], { FLEXTOK_NATIVE_ADDON: broken, FLEXTOK_WASM_MODULE: path.join(dir, 'none.wasm') });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(count(r.stderr, /running on the pure TypeScript kernels/), 1, r.stderr);
    assert.match(r.stderr, /built but does not load \(.*broken\.node: .+\)/);
  });

  it('FLEXTOK_BACKEND=js is a choice: no warning', async () => {
    const r = await flextok(['--version'], { FLEXTOK_BACKEND: 'js', FLEXTOK_NATIVE_ADDON: path.join(dir, 'none.node') });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });
});
