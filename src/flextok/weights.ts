// Strict loading of named weights (PyTorch state_dict names) into our modules: every lookup is
// recorded, and `finish()` reports every missing, unexpected and mis-shaped key in one error.

import { Tensor } from '../tensor/tensor.js';

/** Called by modules with intermediate results, named as in the golden io.safetensors files. */
export type Trace = (name: string, value: Tensor) => void;

export class WeightLoadError extends Error {
  constructor(
    message: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly misshaped: string[],
  ) {
    super(message);
    this.name = 'WeightLoadError';
  }
}

export class WeightMap {
  private readonly used = new Set<string>();
  private readonly missing: string[] = [];
  private readonly misshaped: string[] = [];

  /** tensors: name → float32 tensor; source: a file name or description for error messages. */
  constructor(
    readonly tensors: Map<string, Tensor>,
    readonly source: string,
  ) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** The tensor called `name`, checked against `shape` (entries of -1 match any size).
   * A missing or mis-shaped key is recorded (see finish()) and a zero tensor of the expected shape
   * returned so loading can continue and report every problem at once. */
  take(name: string, shape?: readonly number[]): Tensor {
    const t = this.tensors.get(name);
    if (t === undefined) {
      this.missing.push(shape ? `${name} [${shape.join(', ')}]` : name);
      return Tensor.zeros(shape ? shape.map((d) => Math.max(d, 1)) : [1]);
    }
    this.used.add(name);
    if (shape && (shape.length !== t.shape.length || shape.some((d, i) => d !== -1 && d !== t.shape[i]))) {
      this.misshaped.push(`${name}: checkpoint has [${t.shape.join(', ')}], model expects [${shape.join(', ')}]`);
      return Tensor.zeros(shape.map((d, i) => (d === -1 ? t.shape[i] ?? 1 : d)));
    }
    return t;
  }

  /** Like take, but returns null (and records nothing) if the key is absent. */
  maybe(name: string, shape?: readonly number[]): Tensor | null {
    return this.tensors.has(name) ? this.take(name, shape) : null;
  }

  /** Mark keys as deliberately ignored (e.g. training-only modules). */
  ignore(predicate: (name: string) => boolean): void {
    for (const k of this.tensors.keys()) if (predicate(k)) this.used.add(k);
  }

  unused(): string[] {
    return [...this.tensors.keys()].filter((k) => !this.used.has(k));
  }

  /** Throws a WeightLoadError listing every missing, unexpected (unused) and mis-shaped key. */
  finish(opts: { allowUnexpected?: boolean } = {}): void {
    const unexpected = opts.allowUnexpected ? [] : this.unused();
    if (this.missing.length === 0 && this.misshaped.length === 0 && unexpected.length === 0) return;
    const parts: string[] = [`${this.source}: the weights do not match the model`];
    const list = (title: string, keys: string[]) => {
      if (keys.length) parts.push(`${title} (${keys.length}):\n  ${keys.join('\n  ')}`);
    };
    list('missing keys', this.missing);
    list('unexpected keys', unexpected);
    list('shape mismatches', this.misshaped);
    parts.push('Check that the checkpoint and its config belong together (same model size and version).');
    throw new WeightLoadError(parts.join('\n'), [...this.missing], unexpected, [...this.misshaped]);
  }
}
