// The golden-directory parity runner behind `flextok parity <dir>`: finds every golden case folder, picks the
// runner by its config.json schema (tokenizer core, VAE, or end-to-end checkpoint), and reports per tensor,
// per stage and per case.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { PyValue } from '../io/pyliteral.js';
import { openSafetensors } from '../io/safetensors.js';
import { concat } from '../tensor/ops.js';
import { noGrad, Tensor } from '../tensor/tensor.js';
import { parseMetadataConfig } from './checkpoint.js';
import { FlexTok } from './model.js';
import { compareTensor, missingResult, readTensorFile, worstResult, type ParityResult } from './parity_util.js';
import { tokenizerParity } from './parity_tokenizer.js';
import { vaeParityCases } from './vae_parity.js';

export const SCHEMA_TOKENIZER = 'flextok-golden/1';
export const SCHEMA_VAE = 'flextok-golden-vae/1';
export const SCHEMA_E2E = 'flextok-golden-e2e/1';
const SCHEMAS = [SCHEMA_TOKENIZER, SCHEMA_VAE, SCHEMA_E2E];

/** Tolerance of the e2e case (README "End-to-end case"): token ids exact, every float tensor 1e-4. */
export const E2E_FLOAT_TOL = 1e-4;

export interface StageReport {
  stage: string;
  results: ParityResult[];
}

export interface CaseReport {
  name: string;
  dir: string;
  schema: string;
  stages: StageReport[];
  /** Set when the case could not be run at all. */
  error?: string;
  pass: boolean;
  seconds: number;
}

export interface ParityReport {
  cases: CaseReport[];
  pass: boolean;
}

/** The schema of a golden case folder (null when the folder is not one). */
export function goldenSchema(dir: string): string | null {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) return null;
  try {
    const schema = (JSON.parse(fs.readFileSync(file, 'utf8')) as { schema?: unknown }).schema;
    return typeof schema === 'string' ? schema : null;
  } catch {
    return null;
  }
}

/** The case folders of a golden directory: the directory itself when it is one, else its subfolders that are. */
export function findGoldenCases(dir: string): string[] {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: no such directory`);
  if (goldenSchema(dir) !== null) return [dir];
  const cases = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && goldenSchema(path.join(dir, e.name)) !== null)
    .map((e) => path.join(dir, e.name))
    .sort();
  if (cases.length === 0) throw new Error(`${dir}: no golden case folders (subfolders with a config.json that has a 'schema')`);
  return cases;
}

/** Groups results into stages by name: the first `depth(name)` dot-separated parts. */
function groupStages(results: ParityResult[], stageOf: (name: string) => string): StageReport[] {
  const stages = new Map<string, ParityResult[]>();
  for (const r of results) {
    const s = stageOf(r.name);
    if (!stages.has(s)) stages.set(s, []);
    stages.get(s)!.push(r);
  }
  return [...stages].map(([stage, rs]) => ({ stage, results: rs }));
}

function prefixParts(name: string, n: number): string {
  return name.split('.').slice(0, n).join('.');
}

/** Stage of a tokenizer-core tensor: `enc`, `fsq`, `noise`, `posemb`, `dec.<case>`, `detok.<guidance>`. */
function tokenizerStage(name: string): string {
  const first = name.split('.')[0]!;
  return first === 'dec' || first === 'detok' ? prefixParts(name, 2) : first;
}

/** Stage of a VAE tensor: `vae.enc`, `vae.dec`, `vae.posterior`, … */
function vaeStage(name: string): string {
  return prefixParts(name, 2);
}

/** Stage of an e2e tensor: `<prec>.checkpoint`, `<prec>.tokenize`, `<prec>.tokenize_mode`, `<prec>.detok.<case>[.<guidance>]`. */
function e2eStage(name: string): string {
  const parts = name.split('.');
  if (parts[1] !== 'detok') return prefixParts(name, 2);
  return parts.length > 4 && parts[3] !== 'token_ids' && parts[3] !== 'quants_padded' ? prefixParts(name, 4) : prefixParts(name, 3);
}

// ---------------------------------------------------------------------------------------------
// end-to-end case

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

function pyToJson(v: PyValue): unknown {
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of v) o[String(k)] = pyToJson(x);
    return o;
  }
  if (Array.isArray(v)) return v.map(pyToJson);
  if (typeof v === 'bigint') return Number(v);
  return v;
}

function deepEqualJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === 'number' && typeof b === 'number') return a === b;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqualJson(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const ka = Object.keys(a as object);
    const kb = Object.keys(b as object);
    return ka.length === kb.length && ka.every((k) => deepEqualJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return false;
}

function flagResult(name: string, pass: boolean, note?: string): ParityResult {
  return { name, shape: [], maxAbs: pass ? 0 : NaN, refMaxAbs: 0, rel: pass ? 0 : NaN, tol: 0, pass, note };
}

function idsTensor(ids: readonly number[]): Tensor {
  return new Tensor(Int32Array.from(ids), [1, ids.length]);
}

/** The checkpoint file of a precision prefix: `fp32` → model.safetensors, `bf16` → model_bf16.safetensors. */
function checkpointFor(dir: string, precision: string): string {
  return path.join(dir, precision === 'fp32' ? 'model.safetensors' : `model_${precision}.safetensors`);
}

/**
 * Runs the e2e case of a golden folder in the official checkpoint format: for each precision prefix of
 * io.safetensors (`fp32`, `bf16`, …) loads the matching checkpoint with FlexTok.load (VAE from `hub/`),
 * reproduces tokenize (posterior sample with the recorded ε, and the mode), and every detokenize case and
 * guidance setting from the recorded initial noise, and compares every recorded tensor.
 */
export function e2eParity(dir: string): ParityResult[] {
  const cfg: Json = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const io = readTensorFile(path.join(dir, 'io.safetensors'));
  const results: ParityResult[] = [];
  const compared = new Set<string>();
  const input = (name: string): Tensor => {
    const t = io.get(name);
    if (!t) throw new Error(`${dir}/io.safetensors: input '${name}' is missing`);
    return t;
  };
  const tolOf = (name: string): number => (/\.token_ids\.\d+$/.test(name) ? 0 : E2E_FLOAT_TOL);
  const check = (name: string, mine: Tensor): void => {
    const ref = io.get(name);
    if (!ref || compared.has(name)) return;
    compared.add(name);
    results.push(compareTensor(name, mine, ref, tolOf(name)));
  };
  const cat = (ts: Tensor[]): Tensor => (ts.length === 1 ? ts[0]! : concat(ts, 0));

  const precisions = [...new Set([...io.keys()].map((n) => n.split('.')[0]!).filter((p) => p !== 'in'))];
  const images = input('in.images');
  const posteriorNoise = input('in.posterior_noise');
  const initNames = [...io.keys()].filter((n) => /^in\.init_noise\.\d+$/.test(n)).sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()));
  const initNoise = initNames.map((n) => io.get(n)!);
  const lengths: Record<string, number> = cfg.cases?.detokenize?.lengths ?? {};
  const guidance: Record<string, { guidance_scale: number; perform_norm_guidance: boolean }> = cfg.cases?.detokenize?.guidance ?? {};
  const steps: number = cfg.model?.pipeline?.steps;
  if (!Number.isInteger(steps)) throw new Error(`${dir}/config.json: model.pipeline.steps is missing`);

  for (const prec of precisions) {
    const file = checkpointFor(dir, prec);
    if (!fs.existsSync(file)) {
      results.push(flagResult(`${prec}.checkpoint.file`, false, `${path.basename(file)} not found`));
      continue;
    }
    // The metadata, parsed without evaluation, must equal the harness's parsed config.
    const expectedConfig = cfg.checkpoint?.config;
    if (expectedConfig !== undefined) {
      const st = openSafetensors(file);
      let same = false;
      try {
        same = deepEqualJson(pyToJson(parseMetadataConfig(st.metadata, file)), expectedConfig);
      } finally {
        st.close();
      }
      results.push(flagResult(`${prec}.checkpoint.metadata`, same, same ? undefined : 'parsed metadata differs from checkpoint.config'));
    }
    const model = FlexTok.load(file, { hubDir: path.join(dir, 'hub') });
    const expectedTargets: string[] | undefined = cfg.checkpoint?.targets;
    if (expectedTargets) {
      const ours = [...new Set(model.config.targets.map((t) => t.target))].sort();
      const same = deepEqualJson(ours, [...expectedTargets].sort());
      results.push(flagResult(`${prec}.checkpoint.targets`, same, same ? undefined : `targets differ: ${ours.join(', ')}`));
    }

    noGrad(() => {
      // Tokenize: posterior sample (recorded ε) and mode.
      const ids: Record<string, number[][]> = {};
      for (const [stage, samplePosterior] of [['tokenize', true], ['tokenize_mode', false]] as const) {
        const pre = `${prec}.${stage}`;
        if (![...io.keys()].some((n) => n.startsWith(`${pre}.`))) continue;
        const posterior = model.vae.posterior(images);
        check(`${pre}.posterior_mean`, posterior.mean);
        check(`${pre}.posterior_std`, posterior.std);
        const enc = model.encode(images, { samplePosterior, noise: samplePosterior ? posteriorNoise : undefined });
        check(`${pre}.vae_latents`, cat(enc.latents));
        enc.encLatents.forEach((t, i) => check(`${pre}.enc_latents.${i}`, t));
        enc.codes.forEach((t, i) => check(`${pre}.quants.${i}`, t));
        enc.ids.forEach((t, i) => check(`${pre}.token_ids.${i}`, idsTensor(t)));
        ids[stage] = enc.ids;
      }
      // Detokenize: each case (token prefix length) and guidance setting, from the recorded noise.
      for (const [caseName, length] of Object.entries(lengths)) {
        const pre = `${prec}.detok.${caseName}`;
        if (![...io.keys()].some((n) => n.startsWith(`${pre}.`))) continue;
        // Our own tokens (prefixes of the tokenize output) must equal the recorded inputs, which drive this stage.
        const golden = initNoise.map((_, b) => Array.from(input(`${pre}.token_ids.${b}`).i));
        (ids.tokenize ?? []).forEach((seq, b) => check(`${pre}.token_ids.${b}`, idsTensor(seq.slice(0, length))));
        golden.forEach((seq, b) => check(`${pre}.quants_padded.${b}`, model.fsq.paddedCodes(seq, model.numTokens)));
        for (const [g, setting] of Object.entries(guidance)) {
          const gp = `${pre}.${g}`;
          if (![...io.keys()].some((n) => n.startsWith(`${gp}.`))) continue;
          const out = model.decode(golden, {
            steps,
            guidance: setting.guidance_scale,
            apg: setting.perform_norm_guidance,
            noise: initNoise,
            trace: (name, t) => check(`${gp}.${name.replace(/^detok\./, '')}`, t),
          });
          check(`${gp}.latents`, cat(out.latents));
          check(`${gp}.images`, cat(out.images));
        }
      }
    });
  }
  // Every recorded output must have been produced (fsq_margin is derived by the harness, not an output).
  for (const [name, ref] of io) {
    if (name.startsWith('in.') || compared.has(name) || /\.fsq_margin\.\d+$/.test(name)) continue;
    results.push(missingResult(name, ref.shape, tolOf(name)));
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// runner

/** Runs one golden case folder with the runner its schema selects. */
export function runGoldenCase(dir: string): CaseReport {
  const schema = goldenSchema(dir) ?? 'unknown';
  const start = Date.now();
  const name = path.basename(dir);
  const finish = (stages: StageReport[], error?: string): CaseReport => ({
    name,
    dir,
    schema,
    stages,
    error,
    pass: error === undefined && stages.every((s) => s.results.every((r) => r.pass)) && stages.length > 0,
    seconds: (Date.now() - start) / 1000,
  });
  try {
    switch (schema) {
      case SCHEMA_TOKENIZER:
        return finish(groupStages(tokenizerParity(dir), tokenizerStage));
      case SCHEMA_VAE:
        return finish(groupStages(vaeParityCases(dir), vaeStage));
      case SCHEMA_E2E:
        return finish(groupStages(e2eParity(dir), e2eStage));
      default:
        return finish([], `unknown golden schema '${schema}' (known: ${SCHEMAS.join(', ')})`);
    }
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (process.env.FLEXTOK_DEBUG === '1' && err instanceof Error && err.stack) return finish([], err.stack);
    return finish([], msg);
  }
}

/** Runs every golden case under `dir` (or `dir` itself); `onCase` sees each report as it finishes. */
export function runParity(dir: string, onCase?: (report: CaseReport) => void): ParityReport {
  const cases: CaseReport[] = [];
  for (const caseDir of findGoldenCases(dir)) {
    const report = runGoldenCase(caseDir);
    onCase?.(report);
    cases.push(report);
  }
  return { cases, pass: cases.every((c) => c.pass) };
}

function fmt(v: number): string {
  return Number.isNaN(v) ? '—' : v.toExponential(2);
}

/** A readable report of one case: every tensor (max abs and relative error), then one line per stage. */
export function formatCaseReport(report: CaseReport, opts: { onlyFailures?: boolean } = {}): string {
  const lines: string[] = [];
  const all = report.stages.flatMap((s) => s.results);
  lines.push(`== ${report.name} (${report.schema}) ${report.pass ? 'PASS' : 'FAIL'} — ${all.length} tensors, ${report.seconds.toFixed(1)} s`);
  if (report.error) lines.push(`   error: ${report.error}`);
  const width = Math.max(4, ...all.map((r) => r.name.length));
  const shapeWidth = Math.max(2, ...all.map((r) => r.shape.join(', ').length + 2));
  for (const stage of report.stages) {
    for (const r of stage.results) {
      if (opts.onlyFailures && r.pass) continue;
      lines.push(
        `   ${r.pass ? 'ok  ' : 'FAIL'} ${r.name.padEnd(width)}  ${`[${r.shape.join(', ')}]`.padEnd(shapeWidth)}  maxAbs ${fmt(r.maxAbs)}  err ${fmt(r.rel)} (tol ${r.tol === 0 ? 'exact' : r.tol.toExponential(0)})${r.note ? `  ${r.note}` : ''}`,
      );
    }
  }
  const sw = Math.max(5, ...report.stages.map((s) => s.stage.length));
  for (const stage of report.stages) {
    const worst = worstResult(stage.results);
    const failed = stage.results.filter((r) => !r.pass).length;
    lines.push(
      `   stage ${stage.stage.padEnd(sw)}  ${failed === 0 ? 'ok  ' : 'FAIL'} ${String(stage.results.length - failed).padStart(3)}/${String(stage.results.length).padEnd(3)}` +
        (worst ? `  worst err ${fmt(worst.rel)} (maxAbs ${fmt(worst.maxAbs)}) ${worst.name}` : ''),
    );
  }
  return lines.join('\n');
}
