// Runs a wasm32-wasi command module under Node's WASI (Node >= 20): node run-wasi.mjs module.wasm [args...].
// Exits with the module's exit code. FLEXTOK_ISA is passed through to the module's environment.
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import { WASI } from 'node:wasi';

// relaxed-SIMD builds (scripts/native-kernel-test.sh wasm32-relaxed) validate on Node 20 only behind this flag
v8.setFlagsFromString('--experimental-wasm-relaxed-simd');

const [file, ...args] = process.argv.slice(2);
if (!file) {
  console.error('usage: node run-wasi.mjs module.wasm [args...]');
  process.exit(2);
}
const env = {};
if (process.env.FLEXTOK_ISA) env.FLEXTOK_ISA = process.env.FLEXTOK_ISA;
const wasi = new WASI({ version: 'preview1', args: [file, ...args], env, returnOnExit: true });
const module = await WebAssembly.compile(readFileSync(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
let code;
try {
  code = wasi.start(instance);
} catch (e) {
  // a trap (out-of-bounds access, unreachable, ...) ends the module without an exit code
  console.error(`run-wasi: ${file} trapped: ${e?.stack ?? e}`);
  code = 2;
}
process.exit(code ?? 0);
