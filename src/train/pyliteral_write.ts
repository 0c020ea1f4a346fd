// Writes JS values as Python literals exactly as Python's str()/repr() prints them, so exported
// checkpoints carry the same `__metadata__` strings as the official `save_safetensors` (str(dict)).
//
// JS numbers do not say whether Python had an int or a float: integers are written as ints unless
// wrapped with `pyFloat(x)` (e.g. mlp_ratio 4.0, max_timestep 1.0, dropout_prob 0.0).

/** A number that Python holds as a float (printed with a decimal point or exponent). */
export class PyFloat {
  constructor(readonly value: number) {}
}

export const pyFloat = (value: number): PyFloat => new PyFloat(value);

export type PyWritable = null | boolean | number | string | PyFloat | PyWritable[] | { [key: string]: PyWritable | undefined };

/** Python's repr of a float: shortest round-trip digits, fixed notation for 1e-4 ≤ |x| < 1e16,
 * else d.ddde±XX (two-digit minimum exponent); integral values keep '.0'. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mant, expStr] = Math.abs(x).toExponential().split('e'); // shortest digits, e.g. '1.5', '-5'
  const exp = Number(expStr);
  const digits = mant.replace('.', '');
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
  }
  let fixed: string;
  if (exp < 0) fixed = `0.${'0'.repeat(-exp - 1)}${digits}`;
  else if (digits.length <= exp + 1) fixed = `${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
  else fixed = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  return sign + fixed;
}

/** Python's repr of a str: single quotes unless the text has ' and no ", escapes as CPython does. */
export function pyStrRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp >= 0x80 && cp < 0xa0) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}

/** The Python literal of a value: dict {'k': v, ...}, list [a, b], str, int, float, True/False/None. */
export function toPyLiteral(v: PyWritable): string {
  if (v === null) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (v instanceof PyFloat) return pyFloatRepr(v.value);
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return pyFloatRepr(v);
    if (!Number.isSafeInteger(v)) throw new Error(`toPyLiteral: integer ${v} is not exactly representable`);
    return String(v);
  }
  if (typeof v === 'string') return pyStrRepr(v);
  if (Array.isArray(v)) return `[${v.map(toPyLiteral).join(', ')}]`;
  const parts: string[] = [];
  for (const [k, val] of Object.entries(v)) {
    if (val === undefined) continue;
    parts.push(`${pyStrRepr(k)}: ${toPyLiteral(val)}`);
  }
  return `{${parts.join(', ')}}`;
}

/** Python's str(): a str is written bare, anything else as its literal (what the official
 * save_safetensors stores per top-level config key). */
export function toPyStr(v: PyWritable): string {
  return typeof v === 'string' ? v : toPyLiteral(v);
}
