// Batched general matrix multiply in plain TypeScript (float64 accumulation), plus its bfloat16 emulation.
import type { FArr, GemmArgs } from '../kernels.js';

/** Row accumulator scratch (float64), grown on demand. */
let rowScratch = new Float64Array(256);
function scratchRow(n: number): Float64Array {
  if (rowScratch.length < n) rowScratch = new Float64Array(Math.max(n, rowScratch.length * 2));
  return rowScratch;
}
/** Column-of-A scratch for the transA && transB case. */
let colScratch = new Float64Array(256);
function scratchCol(n: number): Float64Array {
  if (colScratch.length < n) colScratch = new Float64Array(Math.max(n, colScratch.length * 2));
  return colScratch;
}

/** Writes C[i, 0..n) = alpha * acc[0..n) + beta * C[i, 0..n) (beta = 0 ignores old C). */
function storeRow(c: FArr, cRow: number, acc: Float64Array, n: number, alpha: number, beta: number): void {
  if (beta === 0) {
    for (let j = 0; j < n; j++) c[cRow + j] = alpha * acc[j];
  } else {
    for (let j = 0; j < n; j++) c[cRow + j] = alpha * acc[j] + beta * c[cRow + j];
  }
}

/** One matrix of the batch. aOff/bOff/cOff point at the start of the b-th matrices. */
function gemmOne(args: GemmArgs, aOff: number, bOff: number, cOff: number): void {
  const { transA, transB, m, n, k, alpha, beta, a, lda, b, ldb, c, ldc } = args;
  if (k === 0 || alpha === 0) {
    // C = beta * C only.
    for (let i = 0; i < m; i++) {
      const cRow = cOff + i * ldc;
      if (beta === 0) for (let j = 0; j < n; j++) c[cRow + j] = 0;
      else for (let j = 0; j < n; j++) c[cRow + j] = beta * c[cRow + j];
    }
    return;
  }
  if (!transB) {
    // B is k×n, rows contiguous: C[i,:] = Σ_p A(i,p) * B[p,:]  (i-p-j order, 4 rows of B per pass).
    const acc = scratchRow(n);
    const aRowStep = transA ? 1 : lda; // step in A between successive i
    const aColStep = transA ? lda : 1; // step in A between successive p
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) acc[j] = 0;
      const aBase = aOff + i * aRowStep;
      let p = 0;
      for (; p + 4 <= k; p += 4) {
        const a0 = a[aBase + p * aColStep];
        const a1 = a[aBase + (p + 1) * aColStep];
        const a2 = a[aBase + (p + 2) * aColStep];
        const a3 = a[aBase + (p + 3) * aColStep];
        const b0 = bOff + p * ldb;
        const b1 = b0 + ldb;
        const b2 = b1 + ldb;
        const b3 = b2 + ldb;
        for (let j = 0; j < n; j++) {
          acc[j] += a0 * b[b0 + j] + a1 * b[b1 + j] + a2 * b[b2 + j] + a3 * b[b3 + j];
        }
      }
      for (; p < k; p++) {
        const ap = a[aBase + p * aColStep];
        const bp = bOff + p * ldb;
        for (let j = 0; j < n; j++) acc[j] += ap * b[bp + j];
      }
      storeRow(c, cOff + i * ldc, acc, n, alpha, beta);
    }
    return;
  }
  // transB: B is n×k, so op(B)[:, j] is row j of B (contiguous): C[i,j] = dot(A(i,:), B[j,:]).
  const acc = scratchRow(n);
  if (!transA) {
    for (let i = 0; i < m; i++) {
      const aRow = aOff + i * lda;
      for (let j = 0; j < n; j++) {
        const bRow = bOff + j * ldb;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        let p = 0;
        for (; p + 4 <= k; p += 4) {
          s0 += a[aRow + p] * b[bRow + p];
          s1 += a[aRow + p + 1] * b[bRow + p + 1];
          s2 += a[aRow + p + 2] * b[bRow + p + 2];
          s3 += a[aRow + p + 3] * b[bRow + p + 3];
        }
        for (; p < k; p++) s0 += a[aRow + p] * b[bRow + p];
        acc[j] = s0 + s1 + s2 + s3;
      }
      storeRow(c, cOff + i * ldc, acc, n, alpha, beta);
    }
    return;
  }
  // transA && transB: gather column i of A (A is k×m) into a contiguous buffer, then dot with rows of B.
  const col = scratchCol(k);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) col[p] = a[aOff + p * lda + i];
    for (let j = 0; j < n; j++) {
      const bRow = bOff + j * ldb;
      let s0 = 0, s1 = 0;
      let p = 0;
      for (; p + 2 <= k; p += 2) {
        s0 += col[p] * b[bRow + p];
        s1 += col[p + 1] * b[bRow + p + 1];
      }
      for (; p < k; p++) s0 += col[p] * b[bRow + p];
      acc[j] = s0 + s1;
    }
    storeRow(c, cOff + i * ldc, acc, n, alpha, beta);
  }
}

/** C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for every batch entry. */
export function gemm(args: GemmArgs): void {
  if (args.m === 0 || args.n === 0) return;
  for (let bi = 0; bi < args.batch; bi++) {
    gemmOne(args, args.aOffset + bi * args.strideA, args.bOffset + bi * args.strideB, args.cOffset + bi * args.strideC);
  }
}

/** Scratch for bf16 rounding: a float32 view and its bit pattern view over one buffer. */
let bf16F32 = new Float32Array(1024);
let bf16U32 = new Uint32Array(bf16F32.buffer);
let bf16Other = new Float32Array(1024);
let bf16OtherU32 = new Uint32Array(bf16Other.buffer);

/** Rounds the float32 bit patterns in u32[0..len) to bfloat16, nearest-even (NaN stays NaN). */
function roundBitsToBf16(u32: Uint32Array, len: number): void {
  for (let i = 0; i < len; i++) {
    const bits = u32[i];
    if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
      u32[i] = (bits | 0x00400000) & 0xffff0000; // quiet NaN, keep it NaN after truncation
    } else {
      u32[i] = ((bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000) >>> 0;
    }
  }
}

/** Rounds one float32 value to the nearest bfloat16 (exported for tests). */
export function roundToBf16(x: number): number {
  const f = new Float32Array([x]);
  roundBitsToBf16(new Uint32Array(f.buffer), 1);
  return f[0];
}

/** Elements of a spanned by one operand across the batch (rows × ld with the last row only `cols` long). */
function operandExtent(rows: number, cols: number, ld: number, stride: number, batch: number): number {
  if (rows === 0 || cols === 0 || batch === 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

/** gemm with A and B rounded to bfloat16 first (emulation; accumulation is float64 then stored). */
export function gemmBf16(args: GemmArgs): void {
  const { transA, transB, m, n, k, batch } = args;
  const aLen = operandExtent(transA ? k : m, transA ? m : k, args.lda, args.strideA, batch);
  const bLen = operandExtent(transB ? n : k, transB ? k : n, args.ldb, args.strideB, batch);
  if (bf16F32.length < aLen) {
    bf16F32 = new Float32Array(Math.max(aLen, bf16F32.length * 2));
    bf16U32 = new Uint32Array(bf16F32.buffer);
  }
  if (bf16Other.length < bLen) {
    bf16Other = new Float32Array(Math.max(bLen, bf16Other.length * 2));
    bf16OtherU32 = new Uint32Array(bf16Other.buffer);
  }
  for (let i = 0; i < aLen; i++) bf16F32[i] = args.a[args.aOffset + i];
  for (let i = 0; i < bLen; i++) bf16Other[i] = args.b[args.bOffset + i];
  roundBitsToBf16(bf16U32, aLen);
  roundBitsToBf16(bf16OtherU32, bLen);
  gemm({ ...args, a: bf16F32, aOffset: 0, b: bf16Other, bOffset: 0 });
}
