// A small seeded generator for kernel tests that must not depend on the engine's own Rng (mulberry32), and uniform
// float32 arrays drawn from it.

/** mulberry32: a seeded stream of uniforms in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A function drawing n uniforms in [lo, hi) as float32 from the stream `rand`. */
export function uniformArrays(rand: () => number): (n: number, lo?: number, hi?: number) => Float32Array {
  return (n, lo = -1, hi = 1) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rand();
    return a;
  };
}
