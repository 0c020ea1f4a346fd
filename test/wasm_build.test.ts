// The committed WebAssembly modules (native/wasm/*.wasm) must be exactly what their sources build to, so that
// `npm install` needs no wasm toolchain and a stale module cannot ship: rebuild from scratch and compare bytes
// (scripts/build-wasm.mjs --check). Needs Debian's clang, lld and wasi-libc (.ci/run installs them); without
// them the test skips locally and fails in CI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { REPO_ROOT } from './helpers/golden.js';

const haveToolchain = spawnSync('clang++-16', ['--version']).status === 0 && spawnSync('wasm-ld', ['--version']).status === 0;
const skip = !haveToolchain && !process.env.CI ? 'no wasm toolchain (apt-get install clang-16 lld-16 wasi-libc libc++-16-dev-wasm32 libc++abi-16-dev-wasm32 libclang-rt-16-dev-wasm32)' : false;

for (const variant of [[], ['--threads'], ['--relaxed'], ['--threads', '--relaxed']]) {
  const name = `${variant.includes('--threads') ? 'threaded' : 'single-threaded'} ${variant.includes('--relaxed') ? 'relaxed-SIMD' : 'SIMD128'}`;
  test(`the committed ${name} wasm module equals a fresh build of its sources`, { skip, timeout: 600_000 }, () => {
    const r = spawnSync(process.execPath, ['scripts/build-wasm.mjs', '--check', ...variant], { cwd: REPO_ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /matches its sources/);
  });
}
