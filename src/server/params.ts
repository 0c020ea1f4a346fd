// Request parameters of the `flextok serve` API — from a query string or a JSON object — read with typed getters
// that refuse missing, mistyped, non-finite and out-of-range values and unknown names, with messages that say
// what is accepted.
import { HttpError } from './http.js';

export interface NumberRule {
  min?: number;
  max?: number;
  integer?: boolean;
}

/** The parameters of one request; `finish()` refuses any name no getter asked for (a typo would otherwise be ignored). */
export class Params {
  private readonly asked = new Set<string>();

  private constructor(
    private readonly values: ReadonlyMap<string, unknown>,
    /** 'query parameter' or 'field' */
    private readonly noun: string,
    /** query values are strings to convert; JSON values must have their JSON type */
    private readonly fromQuery: boolean,
  ) {}

  /** The parameters of a query string; a name given twice is an error. */
  static fromQuery(query: string): Params {
    const values = new Map<string, unknown>();
    for (const [k, v] of new URLSearchParams(query)) {
      if (values.has(k)) throw new HttpError(400, `query parameter '${k}' is given twice; give it once`);
      values.set(k, v);
    }
    return new Params(values, 'query parameter', true);
  }

  /** The fields of a parsed JSON body, which must be an object. */
  static fromJson(body: unknown): Params {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new HttpError(400, `the JSON body must be an object such as {"model": "fmnist-default", …}, got ${Array.isArray(body) ? 'an array' : body === null ? 'null' : typeof body}`);
    }
    return new Params(new Map(Object.entries(body as Record<string, unknown>)), 'field', false);
  }

  has(name: string): boolean {
    this.asked.add(name);
    return this.values.has(name) && this.values.get(name) !== null;
  }

  private raw(name: string): unknown {
    this.asked.add(name);
    const v = this.values.get(name);
    return v === null ? undefined : v;
  }

  /** A number (integer with rule.integer) within [min, max], or `dflt` when absent. */
  number(name: string, dflt: number, rule?: NumberRule): number;
  number(name: string, dflt: undefined, rule?: NumberRule): number | undefined;
  number(name: string, dflt: number | undefined, rule: NumberRule = {}): number | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return dflt;
    const v = this.fromQuery && typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    const what = `${rule.integer ? 'an integer' : 'a number'}${rangeText(rule)}`;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new HttpError(400, `${this.noun} '${name}' must be ${what}, got ${shown(raw)}`);
    if ((rule.integer && !Number.isInteger(v)) || (rule.min !== undefined && v < rule.min) || (rule.max !== undefined && v > rule.max)) {
      throw new HttpError(400, `${this.noun} '${name}' must be ${what}, got ${shown(raw)}`);
    }
    return v;
  }

  /** A non-empty string, or `dflt` when absent. */
  string(name: string, dflt: string): string;
  string(name: string, dflt: undefined): string | undefined;
  string(name: string, dflt: string | undefined): string | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return dflt;
    if (typeof raw !== 'string' || raw.trim() === '') throw new HttpError(400, `${this.noun} '${name}' must be a non-empty string, got ${shown(raw)}`);
    return raw;
  }

  /** A boolean (query: 1/0/true/false/yes/no; an empty value counts as true, as in `?pad`), or `dflt` when absent. */
  boolean(name: string, dflt: boolean): boolean;
  boolean(name: string, dflt: undefined): boolean | undefined;
  boolean(name: string, dflt: boolean | undefined): boolean | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return dflt;
    if (typeof raw === 'boolean') return raw;
    if (this.fromQuery && typeof raw === 'string') {
      const s = raw.trim().toLowerCase();
      if (['', '1', 'true', 'yes', 'on'].includes(s)) return true;
      if (['0', 'false', 'no', 'off'].includes(s)) return false;
    }
    throw new HttpError(400, `${this.noun} '${name}' must be ${this.fromQuery ? '1 or 0 (true or false)' : 'true or false'}, got ${shown(raw)}`);
  }

  /** One of `choices`, or `dflt` when absent. */
  choice<T extends string>(name: string, choices: readonly T[], dflt: T): T {
    const raw = this.raw(name);
    if (raw === undefined) return dflt;
    if (typeof raw !== 'string' || !(choices as readonly string[]).includes(raw)) {
      throw new HttpError(400, `${this.noun} '${name}' must be one of ${choices.join(', ')}, got ${shown(raw)}`);
    }
    return raw as T;
  }

  /** A raw value for the caller to check (e.g. a token list or a class given as a name or an index). */
  value(name: string): unknown {
    return this.raw(name);
  }

  /** Refuses the names no getter asked for. */
  finish(): void {
    const unknown = [...this.values.keys()].filter((k) => !this.asked.has(k));
    if (unknown.length) {
      throw new HttpError(400, `unknown ${this.noun}${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k.slice(0, 40)}'`).join(', ')}; accepted: ${[...this.asked].join(', ')}`);
    }
  }
}

function rangeText(rule: NumberRule): string {
  if (rule.min !== undefined && rule.max !== undefined) return ` from ${rule.min} to ${rule.max}`;
  if (rule.min !== undefined) return ` ≥ ${rule.min}`;
  if (rule.max !== undefined) return ` ≤ ${rule.max}`;
  return '';
}

/** A value for an error message, shortened. */
export function shown(v: unknown): string {
  const s = typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

/** A list of token ids: 1 to `maxLength` integers in [0, codebookSize). */
export function tokenList(raw: unknown, name: string, maxLength: number, codebookSize: number): number[] {
  if (!Array.isArray(raw) || raw.length === 0) throw new HttpError(400, `field '${name}' must be a non-empty array of token ids (1 to ${maxLength} integers), got ${shown(raw)}`);
  if (raw.length > maxLength) throw new HttpError(400, `field '${name}' has ${raw.length} tokens; this model takes 1 to ${maxLength}`);
  raw.forEach((id, i) => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= codebookSize) {
      throw new HttpError(400, `${name}[${i}] = ${shown(id)} is not a token id of this model: ids are integers from 0 to ${codebookSize - 1}`);
    }
  });
  return raw as number[];
}
