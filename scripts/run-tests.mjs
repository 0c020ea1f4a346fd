// Runs the test suite: every test file once on the default backend (native when built), then the
// engine's op/kernel/autograd tests a second time on the pure TypeScript backend (FLEXTOK_BACKEND=js).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
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
// Files whose names start with these prefixes exercise the engine and run on both backends.
const engine = all.filter((f) => /^test\/(engine|ops|nn|kernels|autograd|optim|train_toy)[^/]*\.test\.ts$/.test(f));

function run(files, env, label) {
  if (files.length === 0) return 0;
  console.log(`\n=== ${label}: ${files.length} test files ===`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
    cwd: root, stdio: 'inherit', env: { ...process.env, ...env },
  });
  return r.status ?? 1;
}

let status = run(all, {}, 'default backend');
status |= run(engine, { FLEXTOK_BACKEND: 'js' }, 'pure TypeScript backend (FLEXTOK_BACKEND=js)');
process.exit(status ? 1 : 0);
