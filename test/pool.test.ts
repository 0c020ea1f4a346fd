// The tensor buffer pool (src/tensor/pool.ts, withBufferPool in tensor.ts): buffers are reused only
// after the scope that allocated them proved them dead; training with the pool is bitwise identical
// to training without it (also with poisoned buffers, which turns any read of recycled or
// uninitialised storage into NaN); and no recycled buffer stays reachable after a training step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { linear, layerNorm, mseLoss } from '../src/tensor/nn.js';
import { add, concat, mul, reshape, silu, slice, sum } from '../src/tensor/ops.js';
import { BufferPool, unpooled } from '../src/tensor/pool.js';
import { Rng } from '../src/tensor/rng.js';
import { allocUninit, noGrad, Tensor, withBufferPool } from '../src/tensor/tensor.js';
import { parseTokenizerConfig, parseVaeConfig, readJsonFile } from '../src/train/config.js';
import { syntheticShapes } from '../src/train/data.js';
import type { RepaTeacher } from '../src/train/repa.js';
import { TokenizerTrainer } from '../src/train/tokenizer.js';
import { VaeTrainer } from '../src/train/vae.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

v8.setFlagsFromString('--expose-gc');
const runGc = vm.runInNewContext('gc') as () => void;
/** A full collection once the current job is over (WeakRef targets stay alive until then). */
async function gc(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  runGc();
}

/**
 * pool.reachableReturned() after full collections, repeated (up to 10 rounds, 10 ms apart) while
 * any remain: one forced collection does not always free everything that is
 * unreachable (seen in CI: 224 dead buffers survived two collections and went on the third), while
 * a real leak stays reachable however often we collect.
 */
async function reachableAfterGc(pool: BufferPool): Promise<number> {
  let n = Infinity;
  for (let round = 0; round < 10 && n > 0; round++) {
    if (round > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    await gc();
    n = pool.reachableReturned();
  }
  return n;
}

function bitsEqual(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  const fa = new Float32Array(a as ArrayLike<number>);
  const fb = new Float32Array(b as ArrayLike<number>);
  const ua = new Uint32Array(fa.buffer);
  const ub = new Uint32Array(fb.buffer);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} differs (${fa[i]} vs ${fb[i]})`);
  }
}

test('a scope recycles what it allocated, zero-fills allocData, keeps returned tensors', () => {
  const pool = new BufferPool();
  let first: Float32Array | null = null;
  withBufferPool(pool, () => {
    const t = Tensor.full([256], 3);
    first = t.f as Float32Array;
  });
  assert.equal(pool.stats().returned, 1);
  // The next scope gets the same storage back, zeroed for Tensor.zeros.
  const kept = withBufferPool(pool, () => {
    const z = Tensor.zeros([256]);
    assert.equal(z.f, first, 'the freed buffer is reused');
    assert.ok(z.f.every((v) => v === 0), 'zero-filled');
    return z.detach();
  });
  assert.equal(kept.f, first);
  // A returned tensor's storage leaves the pool: a later scope never sees it again.
  withBufferPool(pool, () => {
    const u = Tensor.zeros([256]);
    assert.notEqual(u.f, first);
  });
  // Allocations outside a scope, or inside unpooled(), never come from the pool.
  const outside = Tensor.zeros([256]);
  assert.notEqual(outside.f, first);
  const cached = withBufferPool(pool, () => {
    const c = { t: unpooled(() => Tensor.full([256], 2)) };
    assert.notEqual(c.t.f, first);
    return c.t.f[0];
  });
  assert.equal(cached, 2);
  assert.equal(pool.stats().returned, 2, 'the unpooled tensor did not go to the pool');
});

test('a scope refuses graph-attached results and promises, and recycles nothing when it throws', () => {
  const pool = new BufferPool();
  const w = Tensor.randn([16, 16], new Rng(1)).requireGrad();
  assert.throws(() => withBufferPool(pool, () => linear(Tensor.randn([8, 16], new Rng(2)), w)), /still on the autograd graph/);
  assert.throws(() => withBufferPool(pool, () => Promise.resolve(1)), /synchronous/);
  const before = pool.stats().returned;
  assert.throws(() => withBufferPool(pool, () => {
    Tensor.zeros([1024]);
    throw new Error('boom');
  }), /boom/);
  assert.equal(pool.stats().returned, before, 'nothing goes back after a throw');
  // And the active slot is restored: allocations after the failed scopes are unpooled.
  const hits = pool.stats().hits;
  Tensor.zeros([1024]);
  assert.equal(pool.stats().hits, hits);
});

/** A small graph with fan-out (x feeds three ops), pass-through gradients (add, reshape), slices
 * (PartialGrad), concat and a parameter used twice. */
function toyLoss(x: Tensor, w: Tensor, b: Tensor): Tensor {
  const h = linear(x, w, b); // [N, 32]
  const n = layerNorm(h);
  const y = add(h, mul(silu(n), reshape(slice(h, 0, 0, 1), [1, 32])));
  const parts = concat([slice(y, 1, 0, 16), slice(y, 1, 16, 32)], 0);
  const z = linear(reshape(parts, [-1, 32]), w);
  return add(mseLoss(z, Tensor.zeros(z.shape)), sum(mul(x, x)));
}

function toyGrads(pool: BufferPool | null, steps: number): Float32Array[] {
  const rng = new Rng(5);
  const w = Tensor.randn([32, 32], rng, 'float32', 0.2).requireGrad();
  const b = Tensor.randn([32], rng).requireGrad();
  const x = Tensor.randn([24, 32], rng).requireGrad();
  for (let s = 0; s < steps; s++) {
    // Each scope's gradients accumulate into the leaves' .grad (kept across scopes).
    withBufferPool(pool, () => toyLoss(x, w, b).backward());
  }
  return [w, b, x].map((t) => Float32Array.from(t.grad!.f));
}

test('gradients are bitwise the same with and without the pool (accumulated across scopes)', () => {
  const ref = toyGrads(null, 3);
  for (const opts of [{}, { poison: true }]) {
    const pool = new BufferPool(opts);
    const got = toyGrads(pool, 3);
    ref.forEach((r, i) => bitsEqual(got[i], r, `grad ${i} ${JSON.stringify(opts)}`));
    const st = pool.stats();
    assert.ok(st.hits > 0, 'buffers were reused');
    assert.ok(st.returnedEarly > 0, 'backward handed temporaries back before the scope ended');
  }
});

test('allocUninit gives stale storage inside a scope only', () => {
  const pool = new BufferPool({ poison: true });
  withBufferPool(pool, () => {
    Tensor.zeros([100]).f.fill(7);
  });
  withBufferPool(pool, () => {
    const d = allocUninit('float32', 100);
    assert.ok(Number.isNaN(d[0]), 'poisoned storage came back');
  });
  assert.equal(allocUninit('float32', 100)[0], 0);
});

// ---------------------------------------------------------------------------------------------
// training

const tinyJson = readJsonFile(path.join(root, 'configs/test-tiny.json')) as Record<string, unknown>;

/** A fixed toy REPA teacher (4×4 average pooling through a fixed 1→8 channel map), allocating through the engine. */
const toyTeacher: RepaTeacher = {
  features(images: Tensor): Tensor {
    const [bsz, , h, w] = images.shape;
    const g = 4;
    const out = Tensor.zeros([bsz, 8, g, g]);
    for (let n = 0; n < bsz; n++) {
      for (let i = 0; i < g; i++) {
        for (let j = 0; j < g; j++) {
          let s = 0;
          for (let y = (i * h) / g; y < ((i + 1) * h) / g; y++) for (let x = (j * w) / g; x < ((j + 1) * w) / g; x++) s += images.f[n * h * w + y * w + x];
          for (let c = 0; c < 8; c++) out.f[((n * 8 + c) * g + i) * g + j] = Math.tanh((s * 16) / (h * w) + 0.1 * c);
        }
      }
    }
    return out;
  },
};

function tokenizerTrainer(repa: boolean, pool: BufferPool | null): TokenizerTrainer {
  const c = JSON.parse(JSON.stringify(tinyJson)) as Record<string, any>;
  if (repa) c.repa = { layer: 0, weight: 0.5, projector_hidden: 16, resample: 'bilinear' };
  const cfg = parseTokenizerConfig(c, 'test config');
  const trainer = new TokenizerTrainer(cfg, { dataset: syntheticShapes(32, 16), vae: null, teacher: repa ? toyTeacher : null });
  trainer.bufferPool = pool;
  return trainer;
}

function trainedState(t: { params: Tensor[]; optimizer: { getState(): { slots: Record<string, Float32Array>[] } }; ema: { getState(): Float32Array[] } | null; trainStep(): unknown }, steps: number): Float32Array[] {
  for (let s = 0; s < steps; s++) t.trainStep();
  return [
    ...t.params.map((p) => Float32Array.from(p.f)),
    ...t.optimizer.getState().slots.flatMap((s) => Object.values(s)),
    ...(t.ema?.getState() ?? []),
  ];
}

for (const repa of [false, true]) {
  test(`tokenizer training (test-tiny${repa ? ' + REPA' : ''}) is bitwise identical with the pool, without it, and with poisoned buffers`, () => {
    const steps = 3;
    const ref = trainedState(tokenizerTrainer(repa, null), steps);
    for (const pool of [new BufferPool(), new BufferPool({ poison: true })]) {
      const got = trainedState(tokenizerTrainer(repa, pool), steps);
      assert.equal(got.length, ref.length);
      ref.forEach((r, i) => bitsEqual(got[i], r, `state tensor ${i}${pool.poison ? ' (poisoned pool)' : ''}`));
      const st = pool.stats();
      assert.ok(st.hits > st.misses, `steps after the first reuse their buffers (${st.hits} hits, ${st.misses} misses)`);
    }
  });
}

test('VAE training (vae-test-tiny) is bitwise identical with and without the (poisoned) pool', () => {
  const json = readJsonFile(path.join(root, 'configs/vae-test-tiny.json'));
  const make = (pool: BufferPool | null) => {
    const t = new VaeTrainer(parseVaeConfig(json, 'vae-test-tiny'), syntheticShapes(16, 16));
    t.bufferPool = pool;
    return t;
  };
  const ref = trainedState(make(null), 2);
  const got = trainedState(make(new BufferPool({ poison: true })), 2);
  ref.forEach((r, i) => bitsEqual(got[i], r, `VAE state tensor ${i}`));
});

test('no buffer handed back to the pool is still reachable after training steps', async () => {
  const pool = new BufferPool({ detectLeaks: true });
  const trainer = tokenizerTrainer(true, pool);
  for (let s = 0; s < 2; s++) trainer.trainStep();
  assert.ok(pool.stats().returned > 100, `${pool.stats().returned} buffers handed back`);
  assert.equal(await reachableAfterGc(pool), 0, 'a tensor built inside the step outlived it');
  // The detector does see a tensor that a step keeps (the one thing the scope contract forbids).
  const stash: Tensor[] = [];
  withBufferPool(pool, () => {
    stash.push(noGrad(() => add(Tensor.ones([128]), 1)));
  });
  assert.equal(await reachableAfterGc(pool), 1);
  assert.ok(Number.isNaN(stash[0].f[0]), 'and its storage was poisoned');
});

// ---------------------------------------------------------------------------------------------
// inference

test('encoder and decoder inference reuse their buffers across calls; results equal unpooled passes and stay intact', () => {
  const trainer = tokenizerTrainer(false, null);
  const { encoder, decoder } = trainer;
  const cfg = encoder.config;
  const rng = new Rng(7);
  const side = Math.sqrt(cfg.max_sizes[0] * cfg.max_sizes[1]) * cfg.patch_sizes[0];
  const latents = [0, 1, 2].map(() => Tensor.randn([1, cfg.channels_in, side, side], rng));
  const noTrace = () => {}; // a trace callback makes a pass run unpooled
  for (const poison of [false, true]) {
    encoder._inferencePool = new BufferPool({ poison });
    decoder._inferencePool = new BufferPool({ poison });
    const kept: { got: Tensor; want: Float32Array; what: string }[] = [];
    noGrad(() => {
      for (const [i, lat] of latents.entries()) {
        const [z] = encoder.forward([lat]);
        kept.push({ got: z, want: Float32Array.from(encoder.forward([lat], noTrace)[0].f), what: `encoder call ${i}` });
        const regs = decoder.registerTokens([z], [null]);
        const [v] = decoder.forwardWithRegisters([lat], [0.25 * (i + 1)], regs);
        const [vRef] = decoder.forwardWithRegisters([lat], [0.25 * (i + 1)], regs, noTrace);
        kept.push({ got: v, want: Float32Array.from(vRef.f), what: `decoder call ${i}` });
      }
    });
    // every result still holds what an unpooled pass computed, after the later calls reused the pools
    for (const k of kept) bitsEqual(k.got.f, k.want, `${k.what}${poison ? ' (poisoned pool)' : ''}`);
    for (const pool of [encoder._inferencePool, decoder._inferencePool]) {
      const st = pool.stats();
      assert.equal(st.scopes, latents.length, 'one pool scope per pooled call');
      assert.ok(st.hits > st.misses, `calls after the first reuse their buffers (${st.hits} hits, ${st.misses} misses)`);
    }
  }
  // with gradients on (training), a pass never touches the inference pool
  encoder._inferencePool = new BufferPool();
  encoder.forward([latents[0]]);
  assert.equal(encoder._inferencePool.stats().scopes, 0);
});
