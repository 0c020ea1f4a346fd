// Progress reporting on stderr for long CLI steps (denoising, downloads, tokenizing a dataset): a redrawn bar on a
// terminal; otherwise (a log file, a pipe) one plain line every half minute while the work lasts, then the summary
// line, so a short step leaves only its summary and a long one still shows it is alive.

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Format for amounts: 'count' (steps) or 'bytes'. */
  unit?: 'count' | 'bytes';
  /** Force the non-TTY behaviour (plain lines). */
  plain?: boolean;
  /** Not on a terminal: the least time between two plain progress lines (ms; default 30 s). */
  plainEveryMs?: number;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export class ProgressBar {
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly unit: 'count' | 'bytes';
  private readonly started = Date.now();
  private lastDraw = 0;
  private readonly plainEveryMs: number;
  private lastPlain: number;
  private current = 0;
  private finished = false;

  constructor(
    private readonly label: string,
    private total: number | null,
    opts: ProgressOptions = {},
  ) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = !opts.plain && this.stream.isTTY === true && process.env.TERM !== 'dumb';
    this.unit = opts.unit ?? 'count';
    this.plainEveryMs = opts.plainEveryMs ?? 30_000;
    this.lastPlain = this.started;
    if (this.tty) this.draw();
  }

  private amount(n: number): string {
    return this.unit === 'bytes' ? formatBytes(n) : String(n);
  }

  /** `[####....] 12/40 (3.1 s, ~7 s left)`, or without the bar for a plain line. */
  private status(withBar: boolean): string {
    const elapsed = (Date.now() - this.started) / 1000;
    const width = 24;
    let bar: string;
    if (this.total !== null && this.total > 0) {
      const frac = Math.min(1, this.current / this.total);
      const filled = Math.round(frac * width);
      bar = `${withBar ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : ''}${this.amount(this.current)}/${this.amount(this.total)}${withBar ? '' : ` (${(100 * frac).toFixed(0)} %)`}`;
    } else {
      bar = this.amount(this.current);
    }
    let eta = '';
    if (this.total !== null && this.current > 0 && this.current < this.total) {
      eta = `, ~${(((this.total - this.current) * elapsed) / this.current).toFixed(0)} s left`;
    }
    return `${this.label} ${bar} (${elapsed.toFixed(1)} s${eta})`;
  }

  private draw(): void {
    this.stream.write(`\r\x1b[2K${this.status(true)}`);
  }

  /** Sets the amount done (and optionally the total). Redraws at most every 100 ms on a terminal. */
  update(current: number, total?: number | null): void {
    if (this.finished) return;
    this.current = current;
    if (total !== undefined) this.total = total;
    const now = Date.now();
    if (this.tty && (now - this.lastDraw > 100 || (this.total !== null && current >= this.total))) {
      this.lastDraw = now;
      this.draw();
    } else if (!this.tty && now - this.lastPlain >= this.plainEveryMs && (this.total === null || current < this.total)) {
      this.lastPlain = now;
      this.stream.write(`${this.status(false)}\n`);
    }
  }

  /** Ends the bar with a summary line. */
  done(note = ''): void {
    if (this.finished) return;
    this.finished = true;
    const elapsed = ((Date.now() - this.started) / 1000).toFixed(1);
    const summary = `${this.label} ${this.amount(this.current)}${this.total !== null && this.unit === 'count' ? `/${this.amount(this.total)}` : ''} in ${elapsed} s${note ? ` ${note}` : ''}`;
    this.stream.write(this.tty ? `\r\x1b[2K${summary}\n` : `${summary}\n`);
  }

  /** Ends the bar without a summary (e.g. on an error), clearing its line on a terminal. */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.tty) this.stream.write('\r\x1b[2K');
  }
}
