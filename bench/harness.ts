// Benchmark plumbing shared by bench entries: best-of timing, thread-count switching, result rows and table output.
import { nativeAddon, nativeThreads, type NativeAddon } from '../src/tensor/backend_native.js';

/** One measured line of the report. */
export interface BenchRow {
  /** what was measured, e.g. "sgemm 1024x1024x1024" */
  name: string;
  /** pool threads used (1 or all) */
  threads: number;
  /** best wall time of one call, milliseconds (absent for pure rate rows like the FMA peak) */
  ms?: number;
  /** median wall time of one call, milliseconds */
  medianMs?: number;
  /** achieved GFLOP/s (best time) */
  gflops?: number;
  /** gflops as a percentage of the FMA peak measured with the same thread count */
  pctPeak?: number;
  /** free-form extra column, e.g. "1.72x fp32" */
  note?: string;
  /** any additional numbers for the JSON output */
  extra?: Record<string, number | string>;
}

/** What every entry can use: the addon, thread counts, and numbers measured by earlier entries. */
export interface BenchContext {
  addon: NativeAddon | null;
  /** all threads of the pool (FLEXTOK_THREADS or the available cores) */
  allThreads: number;
  /** thread counts each entry should measure: [1, allThreads] (deduplicated) */
  threadCounts: number[];
  /** FMA peak GFLOP/s by thread count (filled by the peak entry) */
  peak: Map<number, number>;
  /** named rates measured by earlier entries, e.g. "sgemm@2" → GFLOP/s */
  rates: Map<string, number>;
  /** shorter runs (--quick) */
  quick: boolean;
}

/** A named benchmark; later issues add rows by appending entries to the list in bench/run.ts. */
export interface BenchEntry {
  name: string;
  /** needs the native addon (skipped, with a note, when it is not built) */
  needsNative: boolean;
  /** names of entries whose measurements this one uses (run first even when filtered out with --only) */
  dependsOn?: string[];
  run(ctx: BenchContext): BenchRow[] | Promise<BenchRow[]>;
}

export interface TimeOptions {
  /** keep repeating until this much time is spent (seconds) */
  minSeconds?: number;
  minReps?: number;
  maxReps?: number;
  warmup?: number;
  /** also keep warming up until this much time is spent (seconds): code that a JIT compiles in tiers (WebAssembly:
   * a baseline compiler first, the optimising one later, in the background) reaches its steady speed only then */
  warmupSeconds?: number;
}

/** Best and median wall time (ms) of fn over repeated calls after warm-up. */
export function timeIt(fn: () => void, opts: TimeOptions = {}): { best: number; median: number; reps: number } {
  const minSeconds = opts.minSeconds ?? 0.6, minReps = opts.minReps ?? 3, maxReps = opts.maxReps ?? 200;
  const warmStart = process.hrtime.bigint();
  for (let i = 0; i < (opts.warmup ?? 1) || Number(process.hrtime.bigint() - warmStart) / 1e9 < (opts.warmupSeconds ?? 0); i++) fn();
  const times: number[] = [];
  const start = process.hrtime.bigint();
  while (times.length < maxReps) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const spent = Number(process.hrtime.bigint() - start) / 1e9;
    if (times.length >= minReps && spent >= minSeconds) break;
  }
  const sorted = [...times].sort((a, b) => a - b);
  return { best: sorted[0], median: sorted[Math.floor(sorted.length / 2)], reps: times.length };
}

/** Runs fn with the native pool resized to `threads`, restoring the previous size afterwards. */
export function withThreads<T>(threads: number, fn: () => T): T {
  const saved = nativeThreads.get();
  nativeThreads.set(threads);
  try {
    return fn();
  } finally {
    nativeThreads.set(saved);
  }
}

export function makeContext(quick: boolean): BenchContext {
  const addon = nativeAddon();
  const allThreads = addon ? addon.getThreads() : 1;
  return {
    addon,
    allThreads,
    threadCounts: allThreads > 1 ? [1, allThreads] : [1],
    peak: new Map(),
    rates: new Map(),
    quick,
  };
}

/** Fills pctPeak from the peak of the row's thread count. */
export function withPeak(ctx: BenchContext, row: BenchRow): BenchRow {
  const peak = ctx.peak.get(row.threads);
  if (row.gflops !== undefined && peak) row.pctPeak = (100 * row.gflops) / peak;
  return row;
}

function fmt(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? '' : x.toFixed(digits);
}

/** Plain-text table of all rows. */
export function formatTable(rows: BenchRow[]): string {
  const header = ['benchmark', 'thr', 'best ms', 'median ms', 'GFLOP/s', '% peak', 'note'];
  const body = rows.map((r) => [
    r.name, r.threads ? String(r.threads) : "-", fmt(r.ms, r.ms !== undefined && r.ms < 1 ? 3 : 2), fmt(r.medianMs, r.medianMs !== undefined && r.medianMs < 1 ? 3 : 2),
    fmt(r.gflops, 1), fmt(r.pctPeak, 1), r.note ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
