// Runs the standalone kernel test on every target (scripts/native-kernel-test.sh: native/test/kernel_test.cc
// for x86-64, for aarch64 under qemu-user and for wasm32 SIMD128 and relaxed SIMD under Node's WASI), so `npm test` checks the
// NEON and WebAssembly back ends too. A missing cross toolchain FAILS this test when CI is set (.ci/run
// installs them); elsewhere it skips with the reason and the apt packages to install.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
const script = path.join(root, 'scripts', 'native-kernel-test.sh');
const inCI = Boolean(process.env.CI);

test('native kernels on x86-64, aarch64 (qemu), wasm32 SIMD128 and relaxed SIMD (WASI) vs float64 (scripts/native-kernel-test.sh)', (t) => {
  const t0 = Date.now();
  // Every back end of every target, whatever ISA the Node pass was asked to use: FLEXTOK_ISA (an x86 name,
  // e.g. avx2) would otherwise select which tables the standalone binaries run, and none on aarch64/wasm32.
  const env = { ...process.env };
  delete env.FLEXTOK_ISA;
  const r = spawnSync('bash', [script, ...(inCI ? ['--require-all'] : [])], {
    cwd: root, env, encoding: 'utf8', timeout: 10 * 60 * 1000, maxBuffer: 64 * 1024 * 1024,
  });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  const summary = out.slice(out.lastIndexOf('=== native kernel test summary')).trim();
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.error) assert.fail(`could not run ${script}: ${r.error.message}\n${out.slice(-4000)}`);
  if (r.status === 3 && !inCI) {
    const reason = `cross toolchains missing (not CI, so skipped): ${summary.split('\n').slice(1).map((l) => l.trim()).join('; ')}`;
    console.log(`[native_cross] ${reason}`);
    t.skip(reason);
    return;
  }
  if (r.status !== 0) {
    // the failing checks (FAIL/CRASH lines name the back end, kernel, size and worst error), then the summary
    const failures = out.split('\n').filter((l) => /^(FAIL|CRASH)|compile failed|error:/.test(l)).slice(0, 40).join('\n');
    assert.fail(`scripts/native-kernel-test.sh exited ${r.status ?? r.signal} after ${seconds} s\n${failures}\n${summary}\n--- output tail ---\n${out.slice(-3000)}`);
  }
  for (const line of summary.split('\n').slice(1)) t.diagnostic(line.trim());
  t.diagnostic(`${seconds} s`);
});
