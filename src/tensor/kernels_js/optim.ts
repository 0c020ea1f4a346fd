// The AdamW optimiser step (decoupled weight decay) on float32 parameters, in place.
import type { AdamWArgs } from '../kernels.js';

/** p -= lr·wd·p; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²; p -= lr (m/bc1) / (√(v/bc2) + eps). */
export function adamw(args: AdamWArgs): void {
  const { param, grad, m, v, lr, beta1, beta2, eps, weightDecay, biasCorrection1, biasCorrection2 } = args;
  const decay = 1 - lr * weightDecay;
  const stepSize = lr / biasCorrection1;
  const invBc2 = 1 / biasCorrection2;
  const n = param.length;
  for (let i = 0; i < n; i++) {
    const g = grad[i];
    const mi = beta1 * m[i] + (1 - beta1) * g;
    const vi = beta2 * v[i] + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - (stepSize * mi) / (Math.sqrt(vi * invBc2) + eps);
  }
}
