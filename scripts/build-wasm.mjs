// Builds the WebAssembly form of the flextok kernels, native/wasm/flextok_kernels.wasm (`npm run build:wasm`):
// the C++ sources of the native addon (native/src/: GEMM, row ops, attention, the SIMD128 and generic back ends)
// plus native/wasm/ (plain C exports, a runtime in place of the thread pool), compiled with clang++ for
// wasm32-wasi with SIMD128 and linked by wasm-ld as a reactor (no main; `_initialize` runs static constructors).
// The output is reproducible: no debug info, names or paths, stripped, fixed input order (`--verify` builds
// twice from scratch and compares the bytes).
// Toolchain (Debian): clang-16, lld-16, wasi-libc, libc++-16-dev-wasm32, libc++abi-16-dev-wasm32,
// libclang-rt-16-dev-wasm32 (clang 16 is the first to emit the final relaxed-SIMD opcodes).
// Options: --verify (build twice without the object cache, compare), --check (build from scratch into a temporary
// folder and fail unless the bytes equal the committed module: CI's guard against a stale .wasm; writes nothing),
// --threads (the multi-threaded variant,
// native/wasm/flextok_kernels_mt.wasm: atomics, an imported shared memory), --relaxed (the relaxed-SIMD variant,
// *_relaxed.wasm: f32x4.relaxed_madd, fused multiply-add where the CPU has it; loaded where the engine supports
// it, the SIMD128 modules elsewhere). WASM_CXX names the compiler,
// WASM_BUILD_JOBS (default 2) bounds parallel compiles. Objects are cached in native/wasm/build/ by a hash of
// the flags and every source and header.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
const args = process.argv.slice(2);
const verify = args.includes('--verify');
const check = args.includes('--check');
const threads = args.includes('--threads');
const relaxed = args.includes('--relaxed');
for (const a of args) {
  if (!['--verify', '--threads', '--check', '--relaxed'].includes(a)) {
    console.error('usage: node scripts/build-wasm.mjs [--verify | --check] [--threads] [--relaxed]');
    process.exit(2);
  }
}
// Node 20 validates relaxed-SIMD modules only behind this V8 flag (on by default from Node 22)
v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
const cxx = process.env.WASM_CXX ?? 'clang++-16';
const TOOLCHAIN = 'apt-get install clang-16 lld-16 wasi-libc libc++-16-dev-wasm32 libc++abi-16-dev-wasm32 libclang-rt-16-dev-wasm32';
/** Where Debian's libc++-16-dev-wasm32 puts the C++ headers (clang 16's driver does not search there itself). */
const LIBCXX_INCLUDE = '/usr/include/wasm32-wasi/c++/v1';
const jobs = Math.max(1, Number(process.env.WASM_BUILD_JOBS ?? 2) || 2);

// Paths relative to the repository root (the compiler runs there, so no absolute path reaches the objects).
const sources = [
  'native/wasm/exports.cc',
  'native/wasm/runtime.cc',
  'native/src/gemm.cc',
  'native/src/rowops.cc',
  'native/src/attention.cc',
  'native/src/isa/wasm.cc',
  'native/src/isa/generic.cc',
  // the x86 and NEON back ends compile to stubs returning null on wasm32 (rowops.cc refers to them)
  'native/src/isa/avx512.cc',
  'native/src/isa/avx2.cc',
  'native/src/isa/neon.cc',
  // the threaded build brings its own thread-safe malloc (wasi-libc's is built without atomics)
  ...(threads ? ['native/wasm/malloc.cc'] : []),
];
/** Initial pages of the threaded build's imported memory (src/tensor/kernels_wasm/threads.ts creates it this size). */
const WASM_MT_INITIAL_PAGES = 64;
const variant = `${threads ? '_mt' : ''}${relaxed ? '_relaxed' : ''}`;
const output = `native/wasm/flextok_kernels${variant}.wasm`;
const buildFlags = [threads ? '--threads' : '', relaxed ? '--relaxed' : ''].filter(Boolean).join(' ');

// As native/binding.gyp (-ffp-contract=off keeps results identical to the other back ends), for wasm32 SIMD128.
const cflags = [
  '--target=wasm32-wasi', '-msimd128', ...(relaxed ? ['-mrelaxed-simd'] : []), '-mmutable-globals',
  '-nostdinc++', '-isystem', LIBCXX_INCLUDE, '-O3', '-std=c++17', '-fno-exceptions', '-fno-rtti', '-fno-math-errno',
  '-fno-trapping-math', '-ffp-contract=off', '-DNDEBUG', '-g0', `-ffile-prefix-map=${root}/=`, '-Wall',
  '-Wno-unused-function', '-Wno-unused-const-variable',
  ...(threads ? ['-matomics', '-mbulk-memory', '-ftls-model=local-exec', '-DFT_WASM_THREADS=1'] : []),
];
const ldflags = [
  // __stack_pointer is exported so that the loader can reset it after a trap
  '-mexec-model=reactor', '-Wl,--strip-all', '-Wl,-z,stack-size=1048576', '-Wl,--max-memory=4294967296',
  '-Wl,--export=__stack_pointer',
  // threads: the memory is imported (each worker's instance shares it); a worker sets its own stack pointer and
  // TLS block (exported for that) before it enters ft_worker_loop. wasi-libc is built without atomics, which
  // wasm-ld refuses with a shared memory: --no-check-features accepts it, since the kernels' threads call into
  // libc only for malloc (replaced by native/wasm/malloc.cc) and for math functions without state (errno,
  // a plain global there, is never read), and ft_threads_init runs every lazy initialisation on one thread.
  ...(threads ? ['-Wl,--import-memory', '-Wl,--shared-memory', '-Wl,--no-check-features', `-Wl,--initial-memory=${WASM_MT_INITIAL_PAGES * 65536}`,
    '-Wl,--export=__wasm_init_tls', '-Wl,--export=__tls_size', '-Wl,--export=__tls_align', '-Wl,--export=__tls_base'] : []),
];

function fail(msg) {
  console.error(`[build-wasm] ${msg}`);
  process.exit(1);
}

function checkToolchain() {
  const v = spawnSync(cxx, ['--version'], { encoding: 'utf8' });
  if (v.error || v.status !== 0) {
    fail(`${cxx} not found: ${TOOLCHAIN}`);
  }
  if (!existsSync(LIBCXX_INCLUDE)) fail(`no libc++ headers for wasm32 at ${LIBCXX_INCLUDE}: ${TOOLCHAIN}`);
  return v.stdout.split('\n')[0];
}

/** Every header the sources may include (a change in one rebuilds every object). */
function headers() {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(path.join(root, dir)).sort()) {
      const rel = path.join(dir, name);
      if (statSync(path.join(root, rel)).isDirectory()) walk(rel);
      else if (/\.(h|inc)$/.test(name)) out.push(rel);
    }
  };
  walk('native/src');
  walk('native/wasm');
  return out;
}

function run(cmd, argv) {
  return new Promise((resolve) => {
    const p = spawn(cmd, argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    p.stdout.on('data', (d) => (log += d));
    p.stderr.on('data', (d) => (log += d));
    p.on('close', (code) => resolve({ code, log }));
    p.on('error', (e) => resolve({ code: -1, log: String(e) }));
  });
}

/** Compiles every source into objDir (reusing cached objects when useCache), links `out`. */
async function build(objDir, out, useCache) {
  mkdirSync(objDir, { recursive: true });
  const headerText = headers().map((h) => `${h}\n${readFileSync(path.join(root, h), 'utf8')}`).join('\n');
  const objects = [];
  const todo = [];
  for (const src of sources) {
    const hash = createHash('sha256').update(`${cxx}\n${cflags.join(' ')}\n${src}\n`).update(readFileSync(path.join(root, src)))
      .update(headerText).digest('hex').slice(0, 16);
    const obj = path.join(objDir, `${path.basename(src, '.cc')}-${hash}.o`);
    objects.push(obj);
    if (!(useCache && existsSync(obj))) todo.push({ src, obj });
  }
  // objects of older sources or flags are dropped from the cache
  const keep = new Set(objects.map((o) => path.basename(o)));
  for (const name of readdirSync(objDir)) if (!keep.has(name)) rmSync(path.join(objDir, name), { force: true });
  let failed = false;
  const queue = [...todo];
  const worker = async () => {
    for (let t = queue.shift(); t; t = queue.shift()) {
      const r = await run(cxx, [...cflags, '-c', t.src, '-o', `${t.obj}.tmp`]);
      if (r.log.trim()) process.stderr.write(r.log);
      if (r.code !== 0) {
        console.error(`[build-wasm] compile failed: ${t.src}`);
        failed = true;
      } else renameSync(`${t.obj}.tmp`, t.obj);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, Math.max(1, todo.length)) }, worker));
  if (failed) fail('build failed');
  const r = await run(cxx, [...cflags, ...objects.map((o) => path.relative(root, o)), ...ldflags, '-o', out]);
  if (r.log.trim()) process.stderr.write(r.log);
  if (r.code !== 0) fail('link failed');
  return { compiled: todo.length, cached: sources.length - todo.length };
}

/** Instantiates the module with stub imports and checks the exports the backend needs. */
async function smokeTest(file) {
  const bytes = readFileSync(file);
  const module = await WebAssembly.compile(bytes);
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    imports[imp.module] ??= {};
    if (imp.kind === 'memory') imports[imp.module][imp.name] = new WebAssembly.Memory({ initial: 64, maximum: 65536, shared: true });
    else if (imp.kind === 'function') imports[imp.module][imp.name] = () => 0;
  }
  const instance = await WebAssembly.instantiate(module, imports);
  const names = WebAssembly.Module.exports(module).map((e) => e.name);
  for (const want of ['ft_gemm', 'ft_attention_forward', 'ft_adamw', 'ft_alloc', '_initialize']) {
    if (!names.includes(want)) fail(`${file} lacks the export ${want}`);
  }
  instance.exports._initialize();
  return names.filter((n) => n.startsWith('ft_')).length;
}

const t0 = Date.now();
const version = checkToolchain();
const outFile = path.join(root, output);
if (check) {
  // CI: the committed module must be what these sources build to
  if (!existsSync(outFile)) fail(`${output} is missing; run \`npm run build:wasm${buildFlags ? ` -- ${buildFlags}` : ''}\` and commit it`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flextok-wasm-check-'));
  try {
    const fresh = path.join(dir, 'fresh.wasm');
    await build(path.join(dir, 'obj'), fresh, false);
    const want = createHash('sha256').update(readFileSync(fresh)).digest('hex');
    const have = createHash('sha256').update(readFileSync(outFile)).digest('hex');
    if (want !== have) {
      fail(`${output} is stale: the sources build to sha256 ${want}, the committed file is ${have}; ` +
        `run \`npm run build:wasm${buildFlags ? ` -- ${buildFlags}` : ''}\` and commit the result`);
    }
    console.log(`[build-wasm] ${output} matches its sources (sha256 ${have}; ${version}; ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
mkdirSync(path.dirname(outFile), { recursive: true });
const tmpOut = `${outFile}.tmp`;
const stats = await build(path.join(root, 'native', 'wasm', 'build', `${threads ? 'mt' : 'st'}${relaxed ? '-relaxed' : ''}`), path.relative(root, tmpOut), true);
renameSync(tmpOut, outFile);
const bytes = readFileSync(outFile);
const sha = createHash('sha256').update(bytes).digest('hex');
const exported = await smokeTest(outFile);
console.log(`[build-wasm] ${output}: ${bytes.length} bytes, sha256 ${sha}, ${exported} kernel exports ` +
  `(${stats.compiled} compiled, ${stats.cached} cached; ${version}; ${((Date.now() - t0) / 1000).toFixed(1)} s)`);

if (verify) {
  // a second build from scratch in a fresh directory must give the same bytes
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flextok-wasm-'));
  try {
    const second = path.join(dir, 'second.wasm');
    await build(path.join(dir, 'obj'), second, false);
    const sha2 = createHash('sha256').update(readFileSync(second)).digest('hex');
    if (sha2 !== sha) fail(`not reproducible: a second build from scratch gave sha256 ${sha2}`);
    console.log('[build-wasm] reproducible: a second build from scratch gave identical bytes');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
