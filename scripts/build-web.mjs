// Builds the browser files (`npm run build:web`, also run by `npm install`): the library's core, src/browser/index.ts
// bundled by esbuild for platform 'browser' (ESM, es2022, minified) into web/flextok.js; the web page's script
// (src/browser/page.ts → web/app.js) and its engine worker (src/browser/engine_worker.ts → web/engine.js, a classic
// worker script); and copies of the wasm kernels (native/wasm/flextok_kernels{,_mt}{,_relaxed}.wasm) in web/. The build fails, naming the import chain,
// when a Node built-in (`node:*`, or a bare built-in name such as `fs`) or `sharp` is reachable from the entry;
// two Node-layer modules are swapped for node-free ones (SWAPS: the kernels chooser, the built-ins of file loaders).
// Options: --out DIR (write there instead of web/), --check (build into a temporary folder and fail unless every
// file equals the one in web/ (a stale bundle after a source change: rerun npm run build:web); writes nothing),
// --entry FILE (bundle another entry as flextok.js, and nothing else: the test of the guard).
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
let onlyEntry = false;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out' && args[i + 1]) outDir = path.resolve(args[++i]);
  else if (args[i] === '--entry' && args[i + 1]) {
    entry = path.resolve(args[++i]);
    onlyEntry = true;
  }
  else if (args[i] === '--check') check = true;
  else {
    console.error('usage: node scripts/build-web.mjs [--out DIR | --check] [--entry FILE]');
    process.exit(2);
  }
}

const WASM_FILES = ['flextok_kernels.wasm', 'flextok_kernels_mt.wasm', 'flextok_kernels_relaxed.wasm', 'flextok_kernels_mt_relaxed.wasm'];
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

/** Bundles `from` into `file` (format 'esm' or 'iife') with the node-free guard. */
async function bundle(from, file, format) {
  await build({
    entryPoints: [from],
    outfile: file,
    bundle: true,
    platform: 'browser',
    format,
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
    plugins: [nodeFreeGuard()],
  });
}

/** Builds every browser file into `dir`; returns their paths (the library bundle first). */
export async function buildWeb(dir) {
  mkdirSync(dir, { recursive: true });
  const js = path.join(dir, 'flextok.js');
  await bundle(entry, js, 'esm');
  if (onlyEntry) return [js];
  const app = path.join(dir, 'app.js');
  const engine = path.join(dir, 'engine.js');
  await bundle(path.join(root, 'src', 'browser', 'page.ts'), app, 'esm');
  await bundle(path.join(root, 'src', 'browser', 'engine_worker.ts'), engine, 'iife');
  const wasm = WASM_FILES.map((f) => {
    const to = path.join(dir, f);
    writeFileSync(to, readFileSync(path.join(root, 'native', 'wasm', f))); // a plain copy (mode 644 whatever the source's)
    return to;
  });
  return [js, app, engine, ...wasm];
}

async function main() {
  const dir = check ? mkdtempSync(path.join(os.tmpdir(), 'flextok-web-')) : outDir;
  try {
    const files = await buildWeb(dir);
    if (check) {
      const stale = files.map((f) => `web/${path.basename(f)}`).filter((shipped, i) => {
        try {
          return !readFileSync(path.join(root, shipped)).equals(readFileSync(files[i]));
        } catch {
          return true;
        }
      });
      if (stale.length > 0) {
        console.error(`build-web --check: ${stale.join(', ')} differ from a fresh build; run \`npm run build:web\``);
        process.exit(1);
      }
      console.log(`build-web --check: ${files.map((f) => path.basename(f)).join(', ')} are up to date`);
    } else {
      console.log(`build-web: ${files.map((f) => `${path.relative(root, f)} (${readFileSync(f).length} bytes)`).join(', ')}`);
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
