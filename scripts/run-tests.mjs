// Runs the test suite in passes, each on one backend that a probe subprocess confirms before the pass runs:
//   1. every test file on the native backend (FLEXTOK_BACKEND=native, so nothing can fall back to JS);
//      the run FAILS when the native addon is not built or does not load;
//   2. the engine tests (ops, kernels, autograd, optimizers, toy training) and the golden-parity and model
//      tests (tokenizer, VAE, end to end, pixel-space checkpoints) again on the pure TypeScript backend;
//   3. when the WebAssembly build of the kernels exists (native/wasm/flextok_kernels.wasm, `npm run build:wasm`),
//      the op-level engine tests (ops, nn, autograd, optimizers, toy training) on it (FLEXTOK_BACKEND=wasm):
//      on the relaxed-SIMD build (flextok_kernels_relaxed.wasm) when it exists, and on the SIMD128 one
//      (FLEXTOK_WASM_SIMD=simd128, the browsers' fallback);
//   4. when the threaded builds exist too (flextok_kernels_mt[_relaxed].wasm), the same tests on each with 2
//      threads (FLEXTOK_WASM_THREADS=2: kernels split across a helper worker on a shared memory).
// `FLEXTOK_BACKEND=js npm test` asks for the TypeScript backend only: one pass of every file on it, with no
// native addon required (tests of the addon itself skip when it is missing, and run when it loads).
// Each pass's header names its backend, ISA and thread count (FLEXTOK_ISA and FLEXTOK_THREADS are honoured).
// Arguments: test files to run instead of all of test/ (each still goes through the passes that take it).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(path.relative(root, p));
  }
  return out;
}
const only = process.argv.slice(2);
const all = only.length ? only : find(path.join(root, 'test'));
// Files that also run on the pure TypeScript backend: the engine tests, and the golden parity / model tests
// (measured on FLEXTOK_BACKEND=js with 2 cores: tokenizer_parity 12 s, model_e2e 4 s, vae 2 s, the rest ~1 s).
const jsPassFiles = all.filter((f) =>
  /^test\/(engine|ops|nn|kernels|autograd|optim|train_toy|tokenizer_parity|vae|model_e2e|model_pixel|checkpoint|ar_model|ar_sampling)[^/]*\.test\.ts$/.test(f));

// Files that also run on the wasm backend when it is built: the op-level engine tests. (wasm_backend.test.ts tests
// the wasm kernels directly and runs in the native pass; backend_compare compares native with JS on any backend.)
const wasmPassFiles = all.filter((f) => /^test\/(ops|nn|autograd|optim|train_toy)[^/]*\.test\.ts$/.test(f));
const built = (file) => existsSync(path.join(root, 'native', 'wasm', file));
/** The wasm passes: each built module (relaxed SIMD, SIMD128; single-threaded, 2 threads) on the op-level tests. */
const wasmPasses = [['1', ''], ['2', '_mt']].flatMap(([threads, mt]) => [
  ...(built(`flextok_kernels${mt}_relaxed.wasm`) ? [{ backend: 'wasm', files: wasmPassFiles, env: { FLEXTOK_WASM_THREADS: threads, FLEXTOK_WASM_SIMD: 'relaxed' } }] : []),
  ...(built(`flextok_kernels${mt}.wasm`) ? [{ backend: 'wasm', files: wasmPassFiles, env: { FLEXTOK_WASM_THREADS: threads, FLEXTOK_WASM_SIMD: 'simd128' } }] : []),
]);

const requested = process.env.FLEXTOK_BACKEND ?? '';
if (!['', 'auto', 'native', 'js'].includes(requested)) {
  console.error(`[run-tests] unknown FLEXTOK_BACKEND=${requested}: use native (the default) or js (TypeScript backend only)`);
  process.exit(1);
}
const jsOnly = requested === 'js';

/** What the tests will run on with this backend request: { info } from backendInfo(), or { error }. */
function probe(backend, extraEnv = {}) {
  const code = `
    import { backendInfo, nativeUnavailableReason } from './src/tensor/backend.js';
    import { loadWasmKernels, waitForWasmHelpers } from './src/tensor/backend_wasm.js';
    // the threaded wasm kernels count their helpers once they have joined
    if (process.env.FLEXTOK_BACKEND === 'wasm' && loadWasmKernels()) waitForWasmHelpers();
    let out;
    try { out = { info: backendInfo() }; } catch (e) { out = { error: nativeUnavailableReason() ?? e.message }; }
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: root, encoding: 'utf8', env: { ...process.env, ...extraEnv, FLEXTOK_BACKEND: backend },
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line);
  } catch {
    return { error: `the backend probe failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}` };
  }
}

function describeInfo(info) {
  const threads = `${info.threads} thread${info.threads === 1 ? '' : 's'}`;
  if (info.name === 'wasm') return `wasm backend (FLEXTOK_BACKEND=wasm, ISA ${info.isa}, ${threads})`;
  return info.name === 'native' ? `native backend (ISA ${info.isa}, ${threads})` : `pure TypeScript backend (FLEXTOK_BACKEND=js, ${threads})`;
}

const passes = jsOnly
  ? [{ backend: 'js', files: all, note: 'ONLY this backend (FLEXTOK_BACKEND=js was set: no native pass, native addon not required)' }]
  : [{ backend: 'native', files: all }, { backend: 'js', files: jsPassFiles },
    ...wasmPasses];

const summary = [];
let failed = false;
for (const pass of passes) {
  if (pass.files.length === 0) continue;
  const p = probe(pass.backend, pass.env);
  if (p.error || !p.info) {
    const why = p.error ?? 'the backend probe printed nothing';
    console.error(`\n[run-tests] FAIL: cannot run the ${pass.backend} pass: ${why}`);
    if (pass.backend === 'native') {
      console.error('[run-tests] `npm test` requires the native addon. To test the pure TypeScript backend only, run `FLEXTOK_BACKEND=js npm test`.');
    }
    summary.push(`${pass.backend} pass: NOT RUN (${why})`);
    failed = true;
    continue;
  }
  if (p.info.name !== pass.backend) {
    const why = `the probe reports backend ${p.info.name} for a pass that claims ${pass.backend}`;
    console.error(`\n[run-tests] FAIL: ${why}`);
    summary.push(`${pass.backend} pass: NOT RUN (${why})`);
    failed = true;
    continue;
  }
  const label = describeInfo(p.info);
  console.log(`\n=== ${label}${pass.note ? ` — ${pass.note}` : ''}: ${pass.files.length} test files ===`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...pass.files], {
    cwd: root, stdio: 'inherit', env: { ...process.env, ...pass.env, FLEXTOK_BACKEND: pass.backend },
  });
  const status = r.status ?? 1;
  if (status !== 0) failed = true;
  summary.push(`${label}: ${pass.files.length} files, ${((Date.now() - t0) / 1000).toFixed(1)} s, ${status === 0 ? 'passed' : `FAILED (exit ${status})`}`);
}
console.log(`\n=== summary ===\n${summary.join('\n')}`);
process.exit(failed ? 1 : 0);
