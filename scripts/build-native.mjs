// Builds the native SIMD kernels (native/) with node-gyp during `npm install`, then checks that the addon loads.
// A failed build is not fatal for `npm install` (a user without g++ still gets a working, slower flextok on
// the pure TypeScript backend), but `npm test` then FAILS unless run as `FLEXTOK_BACKEND=js npm test`.
// `--strict` (npm run build:native) makes a failure an error instead.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const strict = process.argv.includes('--strict');
const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
if (!existsSync(path.join(root, 'native', 'binding.gyp'))) {
  console.log('[flextok] no native/binding.gyp; skipping the native build');
  process.exit(0);
}
const require = createRequire(import.meta.url);
// npm ships node-gyp: prefer the copy npm runs scripts with, then a local install, then npm's own.
function findNodeGyp() {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    const bundled = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    return existsSync(bundled) ? bundled : null;
  }
}
const gyp = findNodeGyp();
const args = gyp ? [gyp, 'rebuild'] : ['rebuild'];
const cmd = gyp ? process.execPath : 'node-gyp';
if (!process.env.npm_config_nodedir && existsSync('/usr/include/node/node.h')) args.push('--nodedir=/usr');
const r = spawnSync(cmd, args, { cwd: path.join(root, 'native'), stdio: 'inherit' });
function fail(msg) {
  msg += ' Install g++, make and Node headers, then run `npm run build:native`. ' +
    '`npm test` fails without the addon; `FLEXTOK_BACKEND=js npm test` tests the TypeScript backend alone.';
  if (strict) { console.error(msg); process.exit(1); }
  console.warn(msg);
  process.exit(0);
}
if (r.status !== 0) fail('[flextok] native build failed; the pure TypeScript backend will be used (slow).');
const addonFile = path.join(root, 'native', 'build', 'Release', 'flextok_native.node');
let addon;
try {
  addon = require(addonFile);
} catch (e) {
  fail(`[flextok] the native addon was built but does not load (${e.message}); the pure TypeScript backend will be used (slow).`);
}
const isa = addon.isa();
console.log(`[flextok] native addon built: ISA ${isa.active} (CPU ${isa.cpu}${isa.bf16 ? ', bf16' : ''}), ${addon.getThreads()} threads`);
