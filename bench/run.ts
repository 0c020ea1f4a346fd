// Engine benchmark (`npm run bench`, `npm run bench -- --json`): the machine's FMA peak, sgemm and bf16 GEMM
// rates as % of that peak, fused attention, layernorm, a whole transformer block, the d12 shapes, the WebAssembly
// kernels against the native ones. Asserts nothing.
// Options: --json (JSON on stdout), --quick (shorter runs), --only=<substring> (entries whose name matches).
import { arEntry } from './ar.js';
import { wasmEntry } from './wasm.js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { loadNativeKernels } from '../src/tensor/backend_native.js';
import type { GemmArgs, Kernels } from '../src/tensor/kernels.js';
import { Rng, Tensor, setBackend } from '../src/tensor/index.js';
import {
  type BenchContext, type BenchEntry, type BenchRow, formatTable, makeContext, timeIt, withPeak, withThreads,
} from './harness.js';
import { flextokD12Entry, trainStepEntry } from './flextok_shapes.js';
import { blockForwardFlops, blockInference, blockTrainFlops, blockTrainStep, makeBlock, type BlockConfig } from './transformer_block.js';

function native(): Kernels {
  const k = loadNativeKernels();
  if (!k) throw new Error('native kernels not built');
  return k;
}

function randomF32(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 4294967296 - 0.5;
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// entries

const peakEntry: BenchEntry = {
  name: 'fma peak',
  needsNative: true,
  run(ctx) {
    const rows: BenchRow[] = [];
    const seconds = ctx.quick ? 0.1 : 0.25;
    for (const t of ctx.threadCounts) {
      let best = 0, bestBf16 = 0;
      for (let r = 0; r < 3; r++) best = Math.max(best, ctx.addon!.fmaPeak(seconds, t));
      ctx.peak.set(t, best);
      rows.push({ name: 'fma peak (fp32, register chains)', threads: t, gflops: best, pctPeak: 100, note: ctx.addon!.isa().active });
      if (ctx.addon!.isa().bf16) {
        for (let r = 0; r < 2; r++) bestBf16 = Math.max(bestBf16, ctx.addon!.fmaPeak(seconds, t, true));
        rows.push({ name: 'dpbf16 peak (bf16 pairs)', threads: t, gflops: bestBf16, note: `${(bestBf16 / best).toFixed(2)}x fp32 peak` });
      }
    }
    return rows;
  },
};

const gemmShapes: Array<[number, number, number]> = [[1024, 1024, 1024], [256, 768, 3072], [4096, 768, 768]];

function gemmArgs(m: number, n: number, k: number): GemmArgs {
  return {
    transA: false, transB: false, m, n, k, alpha: 1, beta: 0,
    a: randomF32(m * k, 1), aOffset: 0, lda: k, strideA: 0,
    b: randomF32(k * n, 2), bOffset: 0, ldb: n, strideB: 0,
    c: new Float32Array(m * n), cOffset: 0, ldc: n, strideC: 0, batch: 1,
  };
}

function gemmEntry(bf16: boolean): BenchEntry {
  return {
    name: bf16 ? 'bf16 gemm' : 'sgemm',
    needsNative: true,
    dependsOn: bf16 ? ['fma peak', 'sgemm'] : ['fma peak'],
    run(ctx) {
      const K = native();
      const rows: BenchRow[] = [];
      for (const [m, n, k] of gemmShapes) {
        const args = gemmArgs(m, n, k);
        const flops = 2 * m * n * k;
        for (const t of ctx.threadCounts) {
          const { best, median } = withThreads(t, () =>
            timeIt(() => (bf16 ? K.gemmBf16(args) : K.gemm(args)), { minSeconds: ctx.quick ? 0.3 : 1.0 }));
          const gflops = flops / best / 1e6;
          const key = `${m}x${n}x${k}@${t}`;
          let note: string | undefined;
          if (bf16) {
            const fp32 = ctx.rates.get(`sgemm ${key}`);
            if (fp32) note = `${(gflops / fp32).toFixed(2)}x fp32`;
          } else {
            ctx.rates.set(`sgemm ${key}`, gflops);
          }
          rows.push(withPeak(ctx, { name: `${bf16 ? 'bf16 gemm' : 'sgemm'} ${m}x${n}x${k}`, threads: t, ms: best, medianMs: median, gflops, note }));
        }
      }
      return rows;
    },
  };
}

/** Attention 8 heads x 512 tokens x 64 dims (batch 1), forward and forward+backward. */
const attentionEntry: BenchEntry = {
  name: 'attention',
  needsNative: true,
  dependsOn: ['fma peak', 'sgemm'],
  run(ctx) {
    const K = native();
    const B = 1, H = 8, L = 512, D = 64;
    const n = B * L * H * D;
    const q = randomF32(n, 3), k = randomF32(n, 4), v = randomF32(n, 5), dOut = randomF32(n, 6);
    const out = new Float32Array(n), lse = new Float32Array(B * H * L);
    const dq = new Float32Array(n), dk = new Float32Array(n), dv = new Float32Array(n);
    const rows: BenchRow[] = [];
    const fwdFlops = 4 * B * H * L * L * D; // QK^T and PV
    const trainFlops = 3 * fwdFlops; // + dV, dP, dQ, dK (recompute of QK^T not counted)
    for (const causal of [false, true]) {
      const args = { q, k, v, out, lse, batch: B, heads: H, lq: L, lk: L, headDim: D, scale: 1 / Math.sqrt(D), mask: null, maskBatchStride: 0, causal };
      for (const t of ctx.threadCounts) {
        const sgemm = ctx.rates.get(`sgemm 1024x1024x1024@${t}`);
        const fwd = withThreads(t, () => timeIt(() => K.attentionForward(args), { minSeconds: ctx.quick ? 0.2 : 0.6 }));
        const both = withThreads(t, () => timeIt(() => {
          K.attentionForward(args);
          K.attentionBackward({ ...args, dOut, dq, dk, dv });
        }, { minSeconds: ctx.quick ? 0.2 : 0.6 }));
        // causal: half the score matrix is skipped, so count half the FLOPs
        const f = causal ? fwdFlops / 2 : fwdFlops, tf = causal ? trainFlops / 2 : trainFlops;
        const ratio = (ms: number, flops: number): string => (sgemm ? `${(ms / (flops / sgemm / 1e6)).toFixed(2)}x matmul time` : '');
        const label = `attention ${H}h x ${L} x ${D}${causal ? ' causal' : ''}`;
        rows.push(withPeak(ctx, { name: `${label} fwd`, threads: t, ms: fwd.best, medianMs: fwd.median, gflops: f / fwd.best / 1e6, note: ratio(fwd.best, f) }));
        rows.push(withPeak(ctx, { name: `${label} fwd+bwd`, threads: t, ms: both.best, medianMs: both.median, gflops: tf / both.best / 1e6, note: ratio(both.best, tf) }));
      }
    }
    return rows;
  },
};

const layerNormEntry: BenchEntry = {
  name: 'layernorm',
  needsNative: true,
  run(ctx) {
    const K = native();
    const rows = 512, dim = 768;
    const x = randomF32(rows * dim, 7), w = randomF32(dim, 8), b = randomF32(dim, 9), dy = randomF32(rows * dim, 10);
    const y = new Float32Array(rows * dim), mean = new Float32Array(rows), rstd = new Float32Array(rows);
    const dx = new Float32Array(rows * dim), dw = new Float32Array(dim), db = new Float32Array(dim);
    const out: BenchRow[] = [];
    for (const t of ctx.threadCounts) {
      const f = withThreads(t, () => timeIt(() => K.layerNormForward(x, w, b, y, mean, rstd, rows, dim, 1e-5), { minSeconds: 0.3, maxReps: 5000 }));
      const bw = withThreads(t, () => timeIt(() => K.layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, dim), { minSeconds: 0.3, maxReps: 5000 }));
      const gbs = (bytes: number, ms: number): string => `${(bytes / ms / 1e6).toFixed(1)} GB/s`;
      out.push({ name: `layernorm [${rows},${dim}] fwd`, threads: t, ms: f.best, medianMs: f.median, note: gbs(2 * 4 * rows * dim, f.best) });
      out.push({ name: `layernorm [${rows},${dim}] bwd`, threads: t, ms: bw.best, medianMs: bw.median, note: gbs(3 * 4 * rows * dim, bw.best) });
    }
    return out;
  },
};

/** Pre-norm transformer block, dim 768, 12 heads, SwiGLU hidden 2048, 512 tokens, via the Tensor/autograd ops. */
const blockEntry: BenchEntry = {
  name: 'transformer block',
  needsNative: true,
  dependsOn: ['fma peak'],
  run(ctx) {
    setBackend('native');
    const cfg: BlockConfig = { dim: 768, heads: 12, hidden: 2048, tokens: 512, batch: 1 };
    const block = makeBlock(cfg);
    const x = Tensor.randn([cfg.batch, cfg.tokens, cfg.dim], new Rng(3)).requireGrad();
    const rows: BenchRow[] = [];
    const label = `block d${cfg.dim} h${cfg.heads} swiglu${cfg.hidden} L${cfg.tokens}`;
    for (const t of ctx.threadCounts) {
      const f = withThreads(t, () => timeIt(() => blockInference(block, x), { minSeconds: ctx.quick ? 0.5 : 1.5 }));
      const tr = withThreads(t, () => timeIt(() => blockTrainStep(block, x), { minSeconds: ctx.quick ? 0.5 : 2 }));
      rows.push(withPeak(ctx, { name: `${label} fwd`, threads: t, ms: f.best, medianMs: f.median, gflops: blockForwardFlops(cfg) / f.best / 1e6, note: 'Tensor ops' }));
      rows.push(withPeak(ctx, { name: `${label} fwd+bwd`, threads: t, ms: tr.best, medianMs: tr.median, gflops: blockTrainFlops(cfg) / tr.best / 1e6, note: 'Tensor ops + autograd' }));
    }
    return rows;
  },
};

/** Documentation only: the side-by-side against the official PyTorch code is ../shared/anchor/vs-pytorch.sh
 * (same machine, same shapes, one run); this row repeats its last recorded result (bench/vs-pytorch.json,
 * written by hand from that script's output) so the table says where to look. It measures nothing. */
const vsPytorchEntry: BenchEntry = {
  name: 'vs PyTorch',
  needsNative: false,
  run() {
    const file = new URL('./vs-pytorch.json', import.meta.url);
    let note = 'run `bash ../shared/anchor/vs-pytorch.sh` (official PyTorch on the same shapes and machine)';
    const extra: Record<string, number | string> = {};
    if (fs.existsSync(file)) {
      const r = JSON.parse(fs.readFileSync(file, 'utf8')) as { date: string; cpu: string; isa: string; threads: number; encoder: number; decoder: number };
      note = `last recorded ${r.date}, ${r.cpu} (${r.isa}, ${r.threads} thr): encoder ${r.encoder.toFixed(2)}x, decoder step ${r.decoder.toFixed(2)}x faster; rerun: bash ../shared/anchor/vs-pytorch.sh`;
      Object.assign(extra, { recordedEncoderSpeedup: r.encoder, recordedDecoderSpeedup: r.decoder, recordedDate: r.date });
    }
    return [{ name: 'vs PyTorch (documentation, not measured here)', threads: 0, note, extra }];
  },
};

/** Every benchmark, in order (later entries may use rates measured by earlier ones). Add new rows here. */
export const entries: BenchEntry[] = [
  peakEntry,
  gemmEntry(false),
  gemmEntry(true),
  attentionEntry,
  layerNormEntry,
  blockEntry,
  flextokD12Entry,
  trainStepEntry,
  wasmEntry,
  arEntry,
  vsPytorchEntry,
];

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const json = argv.includes('--json');
  const quick = argv.includes('--quick');
  const only = argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const ctx: BenchContext = makeContext(quick);
  const log = (s: string): void => {
    if (!json) console.log(s);
    else console.error(s);
  };
  const isa = ctx.addon?.isa();
  log(`flextok engine benchmark — ${os.cpus()[0]?.model ?? 'unknown CPU'}; native addon: ${ctx.addon ? `yes, ISA ${isa!.active}${isa!.bf16 ? '+bf16' : ''} (CPU ${isa!.cpu})` : 'not built'}, threads: ${ctx.allThreads}`);
  const rows: BenchRow[] = [];
  const skipped: string[] = [];
  // --only: the matching entries plus (transitively) the entries they depend on
  const wanted = new Set(entries.filter((e) => !only || e.name.includes(only)).map((e) => e.name));
  for (let changed = true; changed;) {
    changed = false;
    for (const e of entries) {
      if (!wanted.has(e.name)) continue;
      for (const d of e.dependsOn ?? []) if (!wanted.has(d)) { wanted.add(d); changed = true; }
    }
  }
  for (const e of entries) {
    if (!wanted.has(e.name)) continue;
    if (e.needsNative && !ctx.addon) {
      skipped.push(e.name);
      continue;
    }
    log(`… ${e.name}`);
    rows.push(...(await e.run(ctx)));
  }
  if (json) {
    process.stdout.write(JSON.stringify({
      machine: { isa: isa ?? null, threads: ctx.allThreads, node: process.version },
      peakGflops: Object.fromEntries(ctx.peak),
      rows,
      skipped,
    }, null, 2) + '\n');
  } else {
    console.log('\n' + formatTable(rows));
    if (skipped.length) console.log(`\nskipped (native addon not built): ${skipped.join(', ')}`);
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
