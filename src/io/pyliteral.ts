// A safe parser for Python literal syntax (the `str(dict)` configs stored in FlexTok checkpoint metadata); it never evaluates anything.
//
// Accepted: dicts, lists, tuples (→ arrays), str ('…' or "…" with Python escapes), int, float
// (incl. exponents and the repr forms `inf`, `nan`), True/False/None (→ true/false/null), and a
// leading + or - on numbers. Anything else — names, calls, operators, sets, bytes — is an error
// that gives the line, column and a snippet of the text.

export type PyValue = null | boolean | number | bigint | string | PyValue[] | PyDict | Map<PyKey, PyValue>;
export interface PyDict {
  [key: string]: PyValue;
}
export type PyKey = string | number | bigint | boolean | null | PyKey[];

export interface PyLiteralOptions {
  /**
   * Return dicts as `Map`s (keys keep their Python type and order) instead of plain objects.
   * Plain objects turn keys into strings (Python `str()` form) and, like every JS object, list
   * integer-like keys ('0', '1', …) before the others.
   */
  dictsAsMaps?: boolean;
}

/** A syntax error in a Python literal, with its position. */
export class PyLiteralError extends Error {
  readonly offset: number;
  readonly line: number;
  readonly column: number;

  constructor(text: string, offset: number, problem: string) {
    const before = text.slice(0, offset);
    const line = before.split('\n').length;
    const column = offset - (before.lastIndexOf('\n') + 1) + 1;
    const lineStart = before.lastIndexOf('\n') + 1;
    const lineEndRaw = text.indexOf('\n', offset);
    const lineEnd = lineEndRaw === -1 ? text.length : lineEndRaw;
    const from = Math.max(lineStart, offset - 30);
    const to = Math.min(lineEnd, offset + 30);
    const snippet = `${from > lineStart ? '…' : ''}${text.slice(from, to)}${to < lineEnd ? '…' : ''}`;
    const caret = ' '.repeat(offset - from + (from > lineStart ? 1 : 0)) + '^';
    super(`Python literal: ${problem} at line ${line}, column ${column} (offset ${offset}):\n  ${snippet}\n  ${caret}`);
    this.name = 'PyLiteralError';
    this.offset = offset;
    this.line = line;
    this.column = column;
  }
}

const MAX_DEPTH = 500;

/** Parses one Python literal (the whole text, surrounding whitespace allowed). */
export function parsePyLiteral(text: string, options: PyLiteralOptions = {}): PyValue {
  const parser = new PyLiteralParser(text, options.dictsAsMaps === true);
  return parser.parseDocument();
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

function isIdentifierStart(c: string | undefined): boolean {
  return c !== undefined && /[A-Za-z_]/.test(c);
}

function isIdentifierChar(c: string | undefined): boolean {
  return c !== undefined && /[A-Za-z0-9_]/.test(c);
}

/** Python `str()` of a key, for plain-object dicts. */
function keyToString(key: PyKey): string {
  if (key === null) return 'None';
  if (key === true) return 'True';
  if (key === false) return 'False';
  if (Array.isArray(key)) return `(${key.map(keyToString).join(', ')}${key.length === 1 ? ',' : ''})`;
  return String(key);
}

class PyLiteralParser {
  private pos = 0;
  private depth = 0;

  constructor(
    private readonly text: string,
    private readonly dictsAsMaps: boolean,
  ) {}

  parseDocument(): PyValue {
    this.skipSpace();
    if (this.pos >= this.text.length) this.fail('empty input, expected a value');
    const value = this.parseValue();
    this.skipSpace();
    if (this.pos < this.text.length) this.fail(`unexpected ${this.describeHere()} after the value`);
    return value;
  }

  private fail(problem: string, at = this.pos): never {
    throw new PyLiteralError(this.text, at, problem);
  }

  private describeHere(): string {
    if (this.pos >= this.text.length) return 'end of input';
    if (isIdentifierStart(this.text[this.pos])) {
      let end = this.pos;
      while (isIdentifierChar(this.text[end])) end++;
      return `name '${this.text.slice(this.pos, end)}'`;
    }
    return `'${this.text[this.pos]}'`;
  }

  /** Skips whitespace, including newlines (values may be pretty-printed). Comments are not literals. */
  private skipSpace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t[this.pos];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') this.pos++;
      else if (c === '\\' && (t[this.pos + 1] === '\n' || (t[this.pos + 1] === '\r' && t[this.pos + 2] === '\n'))) {
        this.pos += t[this.pos + 1] === '\n' ? 2 : 3; // explicit line continuation
      } else break;
    }
  }

  private expect(c: string): void {
    if (this.text[this.pos] !== c) this.fail(`expected '${c}' but found ${this.describeHere()}`);
    this.pos++;
  }

  private enter(): void {
    if (++this.depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels`);
  }

  private parseValue(): PyValue {
    this.skipSpace();
    const c = this.text[this.pos];
    switch (c) {
      case '{':
        return this.parseDict();
      case '[':
        return this.parseSequence('[', ']');
      case '(':
        return this.parseParenthesized();
      case "'":
      case '"':
        return this.parseString();
      case undefined:
        return this.fail('unexpected end of input, expected a value');
    }
    if (c === '-' || c === '+' || c === '.' || isDigit(c)) return this.parseNumber();
    if (isIdentifierStart(c)) return this.parseName();
    return this.fail(`unexpected '${c}', expected a value`);
  }

  private parseName(): PyValue {
    const start = this.pos;
    while (isIdentifierChar(this.text[this.pos])) this.pos++;
    const name = this.text.slice(start, this.pos);
    const next = this.text[this.pos];
    if ((next === "'" || next === '"') && /^[rRbBuUfF]{1,2}$/.test(name)) {
      this.fail(`string prefix '${name}' is not supported (only plain '…' and "…" strings)`, start);
    }
    switch (name) {
      case 'True':
        return true;
      case 'False':
        return false;
      case 'None':
        return null;
      case 'inf':
        return Infinity;
      case 'nan':
        return NaN;
    }
    this.skipSpace();
    if (this.text[this.pos] === '(') this.fail(`call of '${name}' is not a literal`, start);
    return this.fail(`name '${name}' is not a literal`, start);
  }

  private parseNumber(): number | bigint {
    const t = this.text;
    const start = this.pos;
    let negative = false;
    if (t[this.pos] === '-' || t[this.pos] === '+') {
      negative = t[this.pos] === '-';
      this.pos++;
      this.skipSpace();
      const after = t[this.pos];
      if (after === 'i' || after === 'n') {
        const value = this.parseName();
        if (typeof value !== 'number') this.fail('expected a number after the sign', start);
        return negative ? -value : value;
      }
      if (!(isDigit(after) || after === '.')) this.fail(`expected a number after '${t[start]}'`, start);
    }
    const digitsStart = this.pos;
    const readDigits = (): number => {
      const from = this.pos;
      while (isDigit(t[this.pos]) || (t[this.pos] === '_' && isDigit(t[this.pos - 1]) && isDigit(t[this.pos + 1]))) this.pos++;
      return this.pos - from;
    };
    if (t[this.pos] === '0' && /[xXoObB]/.test(t[this.pos + 1] ?? '')) {
      this.fail('hexadecimal, octal and binary integers are not supported', start);
    }
    let isFloat = false;
    const intDigits = readDigits();
    let fracDigits = 0;
    if (t[this.pos] === '.') {
      isFloat = true;
      this.pos++;
      fracDigits = readDigits();
    }
    if (intDigits === 0 && fracDigits === 0) this.fail('malformed number', start);
    if (t[this.pos] === 'e' || t[this.pos] === 'E') {
      isFloat = true;
      this.pos++;
      if (t[this.pos] === '+' || t[this.pos] === '-') this.pos++;
      if (readDigits() === 0) this.fail('malformed exponent', start);
    }
    if (t[this.pos] === 'j' || t[this.pos] === 'J') this.fail('complex numbers are not supported', start);
    if (isIdentifierChar(t[this.pos]) || t[this.pos] === '.') this.fail('malformed number', start);
    const digits = t.slice(digitsStart, this.pos).replace(/_/g, '');
    this.skipSpace();
    if (this.text[this.pos] !== undefined && /[-+*/%@&|^<>=~]/.test(this.text[this.pos]!)) {
      this.fail(`operator '${this.text[this.pos]}' is not allowed in a literal`);
    }
    if (isFloat) {
      const value = Number(digits);
      return negative ? -value : value;
    }
    if (digits.length > 1 && digits[0] === '0' && /[1-9]/.test(digits)) {
      this.fail('leading zeros in a decimal integer are not allowed', digitsStart);
    }
    const value = Number(digits);
    if (Number.isSafeInteger(value)) return negative ? -value : value;
    const big = BigInt(digits);
    return negative ? -big : big;
  }

  private parseString(): string {
    const t = this.text;
    const quote = t[this.pos]!;
    const start = this.pos;
    if (t.startsWith(quote.repeat(3), this.pos)) this.fail('triple-quoted strings are not supported');
    this.pos++;
    let out = '';
    let runStart = this.pos;
    for (;;) {
      const c = t[this.pos];
      if (c === undefined || c === '\n') this.fail('unterminated string', start);
      if (c === quote) {
        out += t.slice(runStart, this.pos);
        this.pos++;
        break;
      }
      if (c !== '\\') {
        this.pos++;
        continue;
      }
      out += t.slice(runStart, this.pos);
      out += this.parseEscape();
      runStart = this.pos;
    }
    this.skipSpace();
    if (t[this.pos] === "'" || t[this.pos] === '"') this.fail('implicit concatenation of strings is not supported');
    return out;
  }

  /** Decodes the escape sequence at `pos` (which is at the backslash), as Python does for str literals. */
  private parseEscape(): string {
    const t = this.text;
    const at = this.pos;
    const c = t[at + 1];
    this.pos += 2;
    switch (c) {
      case '\n':
        return '';
      case '\\':
        return '\\';
      case "'":
        return "'";
      case '"':
        return '"';
      case 'a':
        return '\x07';
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'v':
        return '\v';
      case 'x':
        return this.hexEscape(at, 2);
      case 'u':
        return this.hexEscape(at, 4);
      case 'U':
        return this.hexEscape(at, 8);
      case 'N':
        return this.fail('\\N{...} escapes are not supported', at);
      case undefined:
        return this.fail('unterminated string', at);
    }
    if (c >= '0' && c <= '7') {
      let end = at + 1;
      while (end < at + 4 && t[end]! >= '0' && t[end]! <= '7') end++;
      this.pos = end;
      return String.fromCodePoint(parseInt(t.slice(at + 1, end), 8));
    }
    return `\\${c}`; // Python keeps unknown escapes as they are
  }

  private hexEscape(at: number, length: number): string {
    const hex = this.text.slice(this.pos, this.pos + length);
    if (hex.length !== length || !/^[0-9a-fA-F]+$/.test(hex)) this.fail(`truncated \\${this.text[at + 1]} escape`, at);
    const code = parseInt(hex, 16);
    if (code > 0x10ffff) this.fail('escape is not a valid code point', at);
    this.pos += length;
    return String.fromCodePoint(code);
  }

  /** `[a, b, …]` or `(a, b, …)`, trailing comma allowed. */
  private parseSequence(open: string, close: string): PyValue[] {
    this.enter();
    this.expect(open);
    const items: PyValue[] = [];
    this.skipSpace();
    while (this.text[this.pos] !== close) {
      items.push(this.parseValue());
      this.skipSpace();
      if (this.text[this.pos] === ',') {
        this.pos++;
        this.skipSpace();
      } else if (this.text[this.pos] !== close) {
        this.fail(`expected ',' or '${close}' but found ${this.describeHere()}`);
      }
    }
    this.pos++;
    this.depth--;
    return items;
  }

  /** A tuple `()`, `(a,)`, `(a, b)`, or a parenthesised value `(a)`. */
  private parseParenthesized(): PyValue {
    this.enter();
    const start = this.pos;
    this.pos++;
    this.skipSpace();
    if (this.text[this.pos] === ')') {
      this.pos++;
      this.depth--;
      return [];
    }
    const first = this.parseValue();
    this.skipSpace();
    if (this.text[this.pos] === ')') {
      this.pos++;
      this.depth--;
      return first;
    }
    this.pos = start;
    this.depth--;
    return this.parseSequence('(', ')');
  }

  private parseDict(): PyValue {
    this.enter();
    const start = this.pos;
    this.expect('{');
    const entries: Array<[PyKey, PyValue]> = [];
    this.skipSpace();
    while (this.text[this.pos] !== '}') {
      const keyAt = this.pos;
      const keyOpens = this.text[keyAt];
      const key = this.parseValue();
      if (keyOpens === '[' || keyOpens === '{' || !isHashable(key)) this.fail('dict key must be a str, number, bool, None or tuple', keyAt);
      this.skipSpace();
      if (this.text[this.pos] !== ':') {
        if (entries.length === 0 && (this.text[this.pos] === ',' || this.text[this.pos] === '}')) {
          this.fail('sets are not supported', start);
        }
        this.fail(`expected ':' after the dict key but found ${this.describeHere()}`);
      }
      this.pos++;
      const value = this.parseValue();
      entries.push([key, value]);
      this.skipSpace();
      if (this.text[this.pos] === ',') {
        this.pos++;
        this.skipSpace();
      } else if (this.text[this.pos] !== '}') {
        this.fail(`expected ',' or '}' but found ${this.describeHere()}`);
      }
    }
    this.pos++;
    this.depth--;
    if (this.dictsAsMaps) {
      const map = new Map<PyKey, PyValue>();
      for (const [k, v] of entries) map.set(k, v);
      return map;
    }
    const dict: PyDict = {};
    for (const [k, v] of entries) {
      // defineProperty: a key such as '__proto__' becomes an ordinary property.
      Object.defineProperty(dict, keyToString(k), { value: v, enumerable: true, writable: true, configurable: true });
    }
    return dict;
  }
}

function isHashable(value: PyValue): value is PyKey {
  if (value === null || typeof value !== 'object') return true;
  return Array.isArray(value) && value.every(isHashable);
}
