// Builds the browser bundle of the library's core (`npm run build:web`): src/browser/index.ts bundled by esbuild
// for platform 'browser' (ESM, es2022, minified) into web/flextok.js, plus a copy of the single-threaded wasm
// kernels (native/wasm/flextok_kernels.wasm) as web/flextok_kernels.wasm. The build fails, naming the import chain,
// when a Node built-in (`node:*`, or a bare built-in name such as `fs`) or `sharp` is reachable from the entry;
// two Node-layer modules are swapped for node-free ones (SWAPS: the kernels chooser, the built-ins of file loaders).
// Options: --out DIR (write there instead of web/), --check (build into a temporary folder and fail unless both
// files equal the ones in web/ (a stale bundle after a source change: rerun npm run build:web); writes nothing), --entry FILE (bundle another
// entry: the test of the guard).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
const args = process.argv.slice(2);
let outDir = path.join(root, 'web');
let check = false;
let entry = path.join(root, 'src', 'browser', 'index.ts');
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out' && args[i + 1]) outDir = path.resolve(args[++i]);
  else if (args[i] === '--entry' && args[i + 1]) entry = path.resolve(args[++i]);
  else if (args[i] === '--check') check = true;
  else {
    console.error('usage: node scripts/build-web.mjs [--out DIR | --check] [--entry FILE]');
    process.exit(2);
  }
}

const WASM = path.join(root, 'native', 'wasm', 'flextok_kernels.wasm');
const builtins = new Set(builtinModules);
/** The only Node-layer modules the browser graph reaches, as their importers name them, and the node-free
 * modules the bundle takes instead (what a package.json "browser" map does): any other Node import fails. */
const SWAPS = new Map([
  [path.join(root, 'src', 'tensor', 'backend.js'), path.join(root, 'src', 'tensor', 'backend_core.ts')],
  [path.join(root, 'src', 'io', 'node_builtins.js'), path.join(root, 'src', 'io', 'node_builtins_browser.ts')],
]);

/** Whether an import specifier names something a browser does not have. */
function forbidden(spec) {
  return spec.startsWith('node:') || builtins.has(spec) || builtins.has(spec.split('/')[0]) || spec === 'sharp' || spec.startsWith('sharp/');
}

/** An esbuild plugin that records who imports whom and turns any forbidden import into an error with its chain. */
function nodeFreeGuard() {
  const importerOf = new Map(); // resolved path -> the first file that imported it
  const rel = (p) => path.relative(root, p);
  return {
    name: 'node-free-guard',
    setup(b) {
      b.onResolve({ filter: /.*/ }, async (a) => {
        if (a.kind === 'entry-point' || a.pluginData === 'guarded') return undefined;
        if (forbidden(a.path)) {
          const chain = [a.path, rel(a.importer)];
          for (let at = a.importer; importerOf.has(at);) chain.push(rel((at = importerOf.get(at))));
          return { errors: [{ text: `the browser bundle would import '${a.path}': ${chain.reverse().join(' → ')}` }] };
        }
        // the Node chooser of the kernels gives way to the node-free state it wraps (as a package.json "browser" map)
        // and the Node built-ins of the file-path loaders give way to stand-ins that throw on use
        const swapped = SWAPS.get(path.join(a.resolveDir, a.path));
        if (swapped !== undefined) return { path: swapped };
        const r = await b.resolve(a.path, { importer: a.importer, resolveDir: a.resolveDir, kind: a.kind, pluginData: 'guarded' });
        if (r.errors.length === 0 && r.path && !importerOf.has(r.path)) importerOf.set(r.path, a.importer);
        return r.errors.length > 0 ? { errors: r.errors } : { path: r.path, external: r.external, namespace: r.namespace, sideEffects: r.sideEffects };
      });
    },
  };
}

/** Bundles the entry into `dir`/flextok.js and copies the wasm kernels next to it; returns the two paths. */
export async function buildWeb(dir) {
  mkdirSync(dir, { recursive: true });
  const js = path.join(dir, 'flextok.js');
  await build({
    entryPoints: [entry],
    outfile: js,
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
    plugins: [nodeFreeGuard()],
  });
  const wasm = path.join(dir, 'flextok_kernels.wasm');
  writeFileSync(wasm, readFileSync(WASM)); // a plain copy (mode 644 whatever the source's)
  return { js, wasm };
}

async function main() {
  const dir = check ? mkdtempSync(path.join(os.tmpdir(), 'flextok-web-')) : outDir;
  try {
    const { js, wasm } = await buildWeb(dir);
    if (check) {
      const stale = [['web/flextok.js', js], ['web/flextok_kernels.wasm', wasm]].filter(([committed, fresh]) => {
        try {
          return !readFileSync(path.join(root, committed)).equals(readFileSync(fresh));
        } catch {
          return true;
        }
      });
      if (stale.length > 0) {
        console.error(`build-web --check: ${stale.map(([c]) => c).join(' and ')} differ from a fresh build; run \`npm run build:web\` and commit the result`);
        process.exit(1);
      }
      console.log('build-web --check: web/flextok.js and web/flextok_kernels.wasm are up to date');
    } else {
      console.log(`build-web: ${path.relative(root, js)} (${readFileSync(js).length} bytes), ${path.relative(root, wasm)} (${readFileSync(wasm).length} bytes)`);
    }
  } catch (e) {
    const errors = e?.errors ?? [];
    if (errors.length === 0) throw e;
    for (const err of errors) console.error(`build-web: ${err.text}${err.location ? ` (${err.location.file}:${err.location.line})` : ''}`);
    process.exit(1);
  } finally {
    if (check) rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
