// The WebAssembly rows of the benchmark: sgemm 1024³ and the d12 decoder step on the wasm kernels (the threaded
// build when more than one thread is benchmarked; relaxed SIMD where Node runs it, else SIMD128 — each row names
// which; FLEXTOK_WASM_SIMD=simd128 measures the SIMD128 build), each with its ratio to the native kernels measured
// in this run.
import { loadWasmKernels, setWasmThreads, waitForWasmHelpers, wasmInfo, wasmUnavailableReason } from '../src/tensor/backend_wasm.js';
import type { GemmArgs } from '../src/tensor/kernels.js';
import { setBackend } from '../src/tensor/index.js';
import { flextokD12Benches } from './flextok_shapes.js';
import { timeIt, withThreads, type BenchEntry, type BenchRow } from './harness.js';

function gemmArgs(n: number): GemmArgs {
  const fill = (seed: number) => Float32Array.from({ length: n * n }, (_, i) => (((i * 2654435761 + seed) >>> 0) % 1000) / 1000 - 0.5);
  return {
    transA: false, transB: false, m: n, n, k: n, alpha: 1, beta: 0,
    a: fill(1), aOffset: 0, lda: n, strideA: 0, b: fill(2), bOffset: 0, ldb: n, strideB: 0,
    c: new Float32Array(n * n), cOffset: 0, ldc: n, strideC: 0, batch: 1,
  };
}

export const wasmEntry: BenchEntry = {
  name: 'wasm',
  needsNative: true,
  dependsOn: ['sgemm'],
  run(ctx) {
    const most = Math.max(...ctx.threadCounts);
    // the threaded module is chosen when the wasm kernels first load (nothing has loaded them before this entry)
    if (most > 1 && process.env.FLEXTOK_WASM_THREADS === undefined) process.env.FLEXTOK_WASM_THREADS = String(most);
    const wasm = loadWasmKernels();
    if (!wasm) return [{ name: 'wasm kernels', threads: 0, note: `not measured: ${wasmUnavailableReason()}` }];
    waitForWasmHelpers();
    const simd = wasmInfo()?.simd === 'wasm-relaxed-simd' ? 'relaxed SIMD' : 'SIMD128';
    const rows: BenchRow[] = [];
    const n = 1024;
    const args = gemmArgs(n);
    for (const t of ctx.threadCounts) {
      const used = setWasmThreads(t);
      // V8 runs a new wasm function on its baseline code until the optimised code (compiled in the background, on
      // a core the helpers also want) is ready: a short warm-up measured Liftoff speeds, 30–40 % slower
      const r = timeIt(() => wasm.gemm(args), { minSeconds: ctx.quick ? 0.5 : 2, minReps: 2, warmupSeconds: ctx.quick ? 0.5 : 2 });
      const gflops = (2 * n * n * n) / r.best / 1e6;
      const native = ctx.rates.get(`sgemm ${n}x${n}x${n}@${t}`);
      rows.push({ name: `wasm ${simd} sgemm ${n}x${n}x${n}`, threads: used, ms: r.best, medianMs: r.median, gflops, note: native ? `${((100 * gflops) / native).toFixed(0)} % of native (${native.toFixed(0)} GFLOP/s)` : undefined });
    }
    const decoder = flextokD12Benches().find((b) => b.name.includes('decoder step'))!;
    for (const t of ctx.threadCounts) {
      setBackend('native');
      const nat = withThreads(t, () => timeIt(decoder.run, { minSeconds: ctx.quick ? 1 : 2, minReps: 2, warmup: 1 }));
      setBackend('wasm');
      setWasmThreads(t);
      const w = timeIt(decoder.run, { minSeconds: ctx.quick ? 1 : 2, minReps: 2, warmup: 1, warmupSeconds: ctx.quick ? 0.5 : 2 });
      rows.push({ name: `wasm ${simd} ${decoder.name}`, threads: t, ms: w.best, medianMs: w.median, gflops: decoder.flops / w.best / 1e6, note: `${(w.best / nat.best).toFixed(1)}x the native time (${nat.best.toFixed(0)} ms)` });
    }
    setBackend('native');
    return rows;
  },
};
