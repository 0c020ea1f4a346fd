// The job queue of `flextok serve`: model computations run one at a time, in arrival order (the engine is
// synchronous), with a bound on how many may wait — past it a request gets 503 with a Retry-After estimate.
import { HttpError } from './http.js';

interface Entry {
  job: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  /** true when the client has gone away: the job is skipped */
  cancelled: () => boolean;
}

/** A job skipped because its client disconnected while it waited. */
export class JobCancelled extends Error {
  constructor() {
    super('the client disconnected before its job started');
    this.name = 'JobCancelled';
  }
}

export interface QueueStats {
  /** jobs waiting to start */
  waiting: number;
  /** whether a job is running now */
  running: boolean;
  /** the most jobs that may wait */
  limit: number;
  /** jobs finished since the start */
  completed: number;
  /** requests refused with 503 since the start */
  rejected: number;
}

export class JobQueue {
  private readonly waiting: Entry[] = [];
  private running = false;
  private completed = 0;
  private rejected = 0;
  /** exponential moving average of a job's duration (ms), for Retry-After */
  private averageMs = 1000;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 0) throw new Error(`the queue limit must be a whole number ≥ 0, got ${limit}`);
  }

  stats(): QueueStats {
    return { waiting: this.waiting.length, running: this.running, limit: this.limit, completed: this.completed, rejected: this.rejected };
  }

  /** Throws the 503 a new job would get now (call before reading a large body, so a full queue costs nothing). */
  checkCapacity(): void {
    if (this.waiting.length < this.limit || (this.limit === 0 && !this.running)) return;
    this.rejected++;
    const seconds = Math.max(1, Math.ceil(((this.waiting.length + 1) * this.averageMs) / 1000));
    throw new HttpError(
      503,
      `the server is busy: ${this.waiting.length} job${this.waiting.length === 1 ? ' is' : 's are'} waiting (limit ${this.limit}); retry after ${seconds} s`,
      { 'Retry-After': String(seconds) },
    );
  }

  /**
   * Runs `job` after every job queued before it; the promise settles with its result. Each job starts from a fresh
   * turn of the event loop, so the connections' pending reads and writes are served between jobs. `cancelled` is
   * asked just before the job would start (true: skipped, rejected with JobCancelled). A full queue rejects with
   * the 503 of checkCapacity.
   */
  run<T>(job: () => T | Promise<T>, cancelled: () => boolean = () => false): Promise<T> {
    try {
      this.checkCapacity();
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ job, resolve: resolve as (value: unknown) => void, reject, cancelled });
      this.pump();
    });
  }

  private pump(): void {
    if (this.running) return;
    const entry = this.waiting.shift();
    if (entry === undefined) return;
    this.running = true;
    setImmediate(() => void this.execute(entry));
  }

  private async execute(entry: Entry): Promise<void> {
    if (entry.cancelled()) {
      entry.reject(new JobCancelled());
    } else {
      const started = Date.now();
      try {
        entry.resolve(await entry.job());
      } catch (err) {
        entry.reject(err);
      }
      this.completed++;
      this.averageMs = 0.8 * this.averageMs + 0.2 * (Date.now() - started);
    }
    this.running = false;
    this.pump();
  }
}
