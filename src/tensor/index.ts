// The tensor engine's public surface: tensors, autograd, ops, optimizers, RNG, backend choice.

export * from './tensor.js';
export * from './ops.js';
export * from './nn.js';
export * from './rng.js';
export * from './module.js';
export * from './optim.js';
export { BufferPool, unpooled, type BufferPoolOptions, type BufferPoolStats } from './pool.js';
export { kernels, setBackend, backendName, type BackendName } from './backend.js';
export type { Kernels, FArr } from './kernels.js';
