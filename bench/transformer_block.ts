// A pre-norm transformer block (LayerNorm → attention → residual, LayerNorm → SwiGLU MLP → residual) written
// with the Tensor/autograd ops, for benchmarking the whole engine (kernels plus the JS op layer) end to end.
import * as T from '../src/tensor/index.js';
import { Rng, Tensor } from '../src/tensor/index.js';

export interface BlockConfig {
  dim: number;
  heads: number;
  hidden: number;
  tokens: number;
  batch: number;
}

export interface Block {
  cfg: BlockConfig;
  params: Tensor[];
  forward(x: Tensor): Tensor;
}

/** Model FLOPs of one forward pass (matmuls and attention; elementwise work not counted). */
export function blockForwardFlops(c: BlockConfig): number {
  const rows = c.batch * c.tokens;
  const linears = 2 * rows * c.dim * (4 * c.dim) + 2 * rows * c.dim * c.hidden * 3;
  const attn = 4 * c.batch * c.tokens * c.tokens * c.dim;
  return linears + attn;
}

/** Model FLOPs of forward + backward (backward = 2x the linears, 2x the attention matmuls, no recompute counted). */
export function blockTrainFlops(c: BlockConfig): number {
  return 3 * blockForwardFlops(c);
}

export function makeBlock(cfg: BlockConfig, seed = 1): Block {
  const rng = new Rng(seed);
  const { dim, hidden } = cfg;
  const w = (out: number, inp: number): Tensor => Tensor.randn([out, inp], rng, 'float32', 1 / Math.sqrt(inp));
  const ln1w = Tensor.ones([dim]), ln1b = Tensor.zeros([dim]);
  const ln2w = Tensor.ones([dim]), ln2b = Tensor.zeros([dim]);
  const wq = w(dim, dim), wk = w(dim, dim), wv = w(dim, dim), wo = w(dim, dim);
  const w1 = w(hidden, dim), w3 = w(hidden, dim), w2 = w(dim, hidden);
  const params = [ln1w, ln1b, wq, wk, wv, wo, ln2w, ln2b, w1, w3, w2];
  for (const p of params) p.requireGrad();
  const headDim = dim / cfg.heads;

  function forward(x: Tensor): Tensor {
    const { batch, tokens, heads } = cfg;
    const h = T.layerNorm(x, ln1w, ln1b);
    const split = (t: Tensor): Tensor => T.reshape(t, [batch, tokens, heads, headDim]);
    const q = split(T.linear(h, wq)), k = split(T.linear(h, wk)), v = split(T.linear(h, wv));
    const a = T.reshape(T.attention(q, k, v), [batch, tokens, dim]);
    const x2 = T.add(x, T.linear(a, wo));
    const h2 = T.layerNorm(x2, ln2w, ln2b);
    const gate = T.silu(T.linear(h2, w1));
    const up = T.linear(h2, w3);
    return T.add(x2, T.linear(T.mul(gate, up), w2));
  }

  return { cfg, params, forward };
}

/** Runs forward without autograd. */
export function blockInference(block: Block, x: Tensor): Tensor {
  return T.noGrad(() => block.forward(x));
}

/** Forward + backward of sum(output) into the parameters' (and x's) gradients. */
export function blockTrainStep(block: Block, x: Tensor): void {
  T.zeroGrad([...block.params, x]);
  const out = block.forward(x);
  T.sum(out).backward();
}
