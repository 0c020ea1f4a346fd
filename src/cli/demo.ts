// `flextok demo`: a short demonstration of the tensor engine (ops, autograd, AdamW) on a toy regression;
// a placeholder until the reconstruction demo arrives.
import { AdamW, backendName, linear, mseLoss, Rng, silu, Tensor } from '../tensor/index.js';
import type { CommandSpec, ParsedArgs } from './args.js';

export const demoSpec: CommandSpec = {
  name: 'demo',
  summary: 'A short engine demo: fit a small SiLU MLP to a noisy sine with autograd and AdamW.',
  usage: 'flextok demo [--steps N]',
  positionals: [],
  options: [{ name: 'steps', kind: 'string', value: 'N', help: 'training steps', defaultText: '200' }],
};

export async function runDemo(args: ParsedArgs, print: (line: string) => void): Promise<void> {
  const steps = args.num('steps', 200, { integer: true, min: 1 });
  const rng = new Rng(0);
  const n = 256;
  const hidden = 32;
  const xs = new Float32Array(n);
  const ys = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    xs[i] = (i / (n - 1)) * 2 * Math.PI - Math.PI;
    ys[i] = Math.sin(xs[i]!) + 0.05 * rng.normal();
  }
  const x = new Tensor(xs, [n, 1]);
  const y = new Tensor(ys, [n, 1]);
  const w1 = Tensor.randn([hidden, 1], rng, 'float32', 1).requireGrad();
  const b1 = Tensor.zeros([hidden]).requireGrad();
  const w2 = Tensor.randn([1, hidden], rng, 'float32', 1 / Math.sqrt(hidden)).requireGrad();
  const b2 = Tensor.zeros([1]).requireGrad();
  const opt = new AdamW([w1, b1, w2, b2], { lr: 0.02, weightDecay: 0 });
  print(`engine demo (backend: ${backendName()}): fitting sin(x) on [-π, π] with a ${hidden}-unit SiLU MLP, ${steps} AdamW steps`);
  const started = Date.now();
  for (let step = 1; step <= steps; step++) {
    opt.zeroGrad();
    const loss = mseLoss(linear(silu(linear(x, w1, b1)), w2, b2), y);
    loss.backward();
    opt.step();
    if (step === 1 || step % Math.max(1, Math.floor(steps / 5)) === 0 || step === steps) print(`  step ${String(step).padStart(4)}  mse ${loss.item().toFixed(5)}`);
  }
  print(`done in ${((Date.now() - started) / 1000).toFixed(2)} s (noise floor ≈ ${(0.05 ** 2).toFixed(4)})`);
}
