// Comparing our tensors with golden reference tensors under the golden metric
// err = max|mine − ref| / max(1, max|ref|), plus loading reference files and printing a report.

import { readSafetensors, toFloat32, toInt32 } from '../io/safetensors.js';
import { Tensor } from '../tensor/tensor.js';

/** One compared tensor. `rel` is the golden metric; `pass` is `rel <= tol` with matching shapes and no NaN. */
export interface ParityResult {
  name: string;
  /** Shape of the reference (ours, when there is no reference). */
  shape: number[];
  /** max |mine − ref| over all elements (NaN when not comparable). */
  maxAbs: number;
  /** max |ref| over all elements. */
  refMaxAbs: number;
  /** maxAbs / max(1, refMaxAbs). */
  rel: number;
  tol: number;
  pass: boolean;
  /** Why a comparison failed outright (shape mismatch, missing tensor, NaN). */
  note?: string;
}

/** What a reference can be: one of our tensors, a `{shape, data}` record (e.g. a safetensors entry
 * after conversion), or a bare array (then only the element count is checked). */
export type ReferenceValues =
  | Tensor
  | { readonly shape: readonly number[]; readonly data: ArrayLike<number> | BigInt64Array }
  | ArrayLike<number>
  | BigInt64Array;

function numberAt(a: ArrayLike<number> | BigInt64Array, i: number): number {
  const v = (a as ArrayLike<number | bigint>)[i];
  return typeof v === 'bigint' ? Number(v) : (v as number);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Compare flat arrays (with their shapes; refShape null = bare array, sizes must agree). */
export function compareArrays(
  name: string,
  mine: ArrayLike<number> | BigInt64Array,
  mineShape: readonly number[],
  ref: ArrayLike<number> | BigInt64Array,
  refShape: readonly number[] | null,
  tol: number,
): ParityResult {
  const shape = [...(refShape ?? mineShape)];
  const fail = (note: string): ParityResult => ({ name, shape, maxAbs: NaN, refMaxAbs: NaN, rel: NaN, tol, pass: false, note });
  if (refShape !== null && !sameShape(mineShape, refShape)) {
    return fail(`shape mismatch: ours [${mineShape.join(', ')}], reference [${refShape.join(', ')}]`);
  }
  if (mine.length !== ref.length) return fail(`size mismatch: ours ${mine.length} elements, reference ${ref.length}`);
  let maxAbs = 0;
  let refMaxAbs = 0;
  let nanAt = -1;
  for (let i = 0; i < ref.length; i++) {
    const r = numberAt(ref, i);
    const m = numberAt(mine, i);
    if (Number.isNaN(r) !== Number.isNaN(m)) {
      if (nanAt < 0) nanAt = i;
      continue;
    }
    if (Number.isNaN(r)) continue; // NaN in both: equal
    if (r === m) {
      // Also covers equal infinities.
      const ar = Math.abs(r);
      if (ar > refMaxAbs) refMaxAbs = ar;
      continue;
    }
    const d = Math.abs(m - r);
    if (!(d <= maxAbs)) maxAbs = d; // NaN (inf - inf of different signs) propagates
    const ar = Math.abs(r);
    if (ar > refMaxAbs) refMaxAbs = ar;
  }
  if (nanAt >= 0) {
    return { name, shape, maxAbs: NaN, refMaxAbs, rel: NaN, tol, pass: false, note: `NaN in one side only (first at flat index ${nanAt})` };
  }
  const rel = maxAbs / Math.max(1, refMaxAbs);
  return { name, shape, maxAbs, refMaxAbs, rel, tol, pass: rel <= tol };
}

/** Compare our tensor with a reference under err = max|mine − ref| / max(1, max|ref|) ≤ tol
 * (tol 0 = exact, for ids and masks). */
export function compareTensor(name: string, mine: Tensor, ref: ReferenceValues, tol = 1e-4): ParityResult {
  if (ref instanceof Tensor) return compareArrays(name, mine.data, mine.shape, ref.data, ref.shape, tol);
  if ('shape' in ref && 'data' in ref && !ArrayBuffer.isView(ref)) {
    return compareArrays(name, mine.data, mine.shape, ref.data, ref.shape, tol);
  }
  return compareArrays(name, mine.data, mine.shape, ref as ArrayLike<number> | BigInt64Array, null, tol);
}

/** A result for a reference tensor we were expected to produce but did not. */
export function missingResult(name: string, shape: readonly number[], tol: number, note = 'not produced by our implementation'): ParityResult {
  return { name, shape: [...shape], maxAbs: NaN, refMaxAbs: NaN, rel: NaN, tol, pass: false, note };
}

/** Every tensor of a safetensors file as one of our tensors: float dtypes as float32, integer and
 * boolean dtypes (ids, masks) as int32. */
export function readTensorFile(path: string): Map<string, Tensor> {
  const { tensors } = readSafetensors(path);
  const out = new Map<string, Tensor>();
  for (const [name, td] of tensors) {
    const isInt = td.dtype === 'I64' || td.dtype === 'I32' || td.dtype === 'U8' || td.dtype === 'BOOL';
    const data = isInt ? toInt32(td, name) : toFloat32(td);
    // Copy so the tensor owns aligned memory independent of the file buffer.
    out.set(name, new Tensor(isInt ? Int32Array.from(data as Int32Array) : Float32Array.from(data as Float32Array), td.shape));
  }
  return out;
}

/** Worst result (largest rel; failures without a number first). */
export function worstResult(results: readonly ParityResult[]): ParityResult | null {
  let worst: ParityResult | null = null;
  for (const r of results) {
    if (worst === null) worst = r;
    else if (Number.isNaN(r.rel) && !Number.isNaN(worst.rel)) worst = r;
    else if (!Number.isNaN(worst.rel) && r.rel > worst.rel) worst = r;
  }
  return worst;
}

/** A fixed-width table, one line per result, then a summary line. */
export function formatParityResults(results: readonly ParityResult[]): string {
  const width = Math.max(4, ...results.map((r) => r.name.length));
  const fmt = (v: number): string => (Number.isNaN(v) ? '—' : v.toExponential(2));
  const lines = results.map((r) => {
    const status = r.pass ? 'ok  ' : 'FAIL';
    const note = r.note ? `  (${r.note})` : '';
    return `${status} ${r.name.padEnd(width)}  [${r.shape.join(', ')}]  maxAbs ${fmt(r.maxAbs)}  err ${fmt(r.rel)} ≤ ${r.tol.toExponential(0)}${note}`;
  });
  const failed = results.filter((r) => !r.pass).length;
  const worst = worstResult(results);
  lines.push(
    `${results.length - failed}/${results.length} tensors within tolerance` +
      (worst ? `; worst ${worst.name} err ${fmt(worst.rel)}` : ''),
  );
  return lines.join('\n');
}
