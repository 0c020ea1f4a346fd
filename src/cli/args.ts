// Command-line option parsing on top of node:util parseArgs: typed getters, clear usage errors, and help
// texts generated from the same option list.
import { parseArgs } from 'node:util';

/** A wrong command line; printed as one line, followed by a pointer to --help. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface OptionSpec {
  name: string;
  short?: string;
  kind: 'string' | 'boolean';
  /** Placeholder in help, e.g. 'N' or 'PATH'. */
  value?: string;
  help: string;
  /** Shown as "(default: …)". */
  defaultText?: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  /** Positional arguments, for help. */
  positionals: Array<{ name: string; help: string }>;
  options: OptionSpec[];
  /** Extra help paragraphs. */
  notes?: string[];
}

/** The parsed command line of one command. */
export class ParsedArgs {
  constructor(
    readonly command: string,
    readonly positionals: string[],
    private readonly values: Map<string, string | boolean>,
  ) {}

  has(name: string): boolean {
    return this.values.has(name);
  }

  flag(name: string): boolean {
    return this.values.get(name) === true;
  }

  str(name: string): string | undefined {
    const v = this.values.get(name);
    return typeof v === 'string' ? v : undefined;
  }

  requireStr(name: string): string {
    const v = this.str(name);
    if (v === undefined || v === '') throw new UsageError(`--${name} is required`, this.command);
    return v;
  }

  /** A number option; `integer` and `min` are checked. */
  num(name: string, dflt: number, opts: { integer?: boolean; min?: number } = {}): number {
    const raw = this.str(name);
    if (raw === undefined) return dflt;
    const v = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min)) {
      const what = opts.integer ? 'an integer' : 'a number';
      throw new UsageError(`--${name} must be ${what}${opts.min !== undefined ? ` ≥ ${opts.min}` : ''}, got '${raw}'`, this.command);
    }
    return v;
  }

  /** A comma-separated list of integers (e.g. --k 1,2,4). */
  intList(name: string): number[] | undefined {
    const raw = this.str(name);
    if (raw === undefined) return undefined;
    const parts = raw.split(',').map((s) => s.trim());
    const values = parts.map(Number);
    if (parts.some((p) => p === '') || values.some((v) => !Number.isInteger(v))) {
      throw new UsageError(`--${name} must be an integer or a comma-separated list of integers, got '${raw}'`, this.command);
    }
    return values;
  }
}

/** Parses `argv` (after the command name) against `spec`; `--help` is always accepted. */
export function parseCommand(spec: CommandSpec, argv: string[]): ParsedArgs {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const o of spec.options) options[o.name] = o.short ? { type: o.kind, short: o.short } : { type: o.kind };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    throw new UsageError(msg.replace(/\. To specify a positional argument.*$/, '').replace(/^Unknown option/, 'unknown option'), spec.name);
  }
  const values = new Map<string, string | boolean>();
  for (const [k, v] of Object.entries(parsed.values)) {
    if (typeof v === 'string' || typeof v === 'boolean') values.set(k, v);
  }
  return new ParsedArgs(spec.name, parsed.positionals, values);
}

/** The help text of a command. */
export function commandHelp(spec: CommandSpec): string {
  const lines = [`Usage: ${spec.usage}`, '', spec.summary];
  if (spec.positionals.length) {
    lines.push('', 'Arguments:');
    const w = Math.max(...spec.positionals.map((p) => p.name.length));
    for (const p of spec.positionals) lines.push(`  ${p.name.padEnd(w)}  ${p.help}`);
  }
  const all: OptionSpec[] = [...spec.options, { name: 'help', short: 'h', kind: 'boolean', help: 'show this help' }];
  const label = (o: OptionSpec) => `${o.short ? `-${o.short}, ` : '    '}--${o.name}${o.value ? ` ${o.value}` : ''}`;
  const w = Math.max(...all.map((o) => label(o).length));
  lines.push('', 'Options:');
  for (const o of all) lines.push(`  ${label(o).padEnd(w)}  ${o.help}${o.defaultText !== undefined ? ` (default: ${o.defaultText})` : ''}`);
  for (const note of spec.notes ?? []) lines.push('', note);
  return lines.join('\n');
}
