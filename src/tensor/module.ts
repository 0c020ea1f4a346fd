// Parameter containers: any object whose fields are Tensors, nested objects or arrays of them;
// dotted names follow the object path (`blocks.0.attn.wq.weight`), as PyTorch state_dict keys do.

import { Tensor } from './tensor.js';

/** Walk an object tree and list every Tensor with its dotted path. Fields starting with `_` are skipped. */
export function namedTensors(root: object, prefix = ''): [string, Tensor][] {
  const out: [string, Tensor][] = [];
  const seen = new Set<object>();
  const walk = (obj: unknown, path: string): void => {
    if (obj instanceof Tensor) {
      out.push([path, obj]);
      return;
    }
    if (obj === null || typeof obj !== 'object' || seen.has(obj)) return;
    if (ArrayBuffer.isView(obj) || obj instanceof Map || obj instanceof Set) return;
    seen.add(obj);
    const entries: [string, unknown][] = Array.isArray(obj) ? obj.map((v, i) => [String(i), v]) : Object.entries(obj);
    for (const [k, v] of entries) {
      if (k.startsWith('_')) continue;
      walk(v, path ? `${path}.${k}` : k);
    }
  };
  walk(root, prefix);
  return out;
}

/** The trainable tensors (requiresGrad) of an object tree, each once even if shared (tied weights),
 * so an optimizer never updates one tensor twice per step. */
export function parameters(root: object): Tensor[] {
  return [...new Set(namedTensors(root).map(([, t]) => t))].filter((t) => t.requiresGrad);
}

export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) p.grad = null;
}
