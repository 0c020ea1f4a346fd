// The per-ISA kernel table: single-threaded building blocks written once over the SIMD vocabulary
// (kernels/*.inc) and compiled once per back end (isa/*.cc). rowops.cc and attention.cc split work over
// the thread pool and call the table of the active ISA.
#pragma once

#include <cstdint>

#include "../common.h"

namespace ft {

struct KernelTable {
  const char* name;
  int lanes;  // float lanes of the back end's vector
  // elementwise (n floats); unaryFwd[op] is null for ops without a vector form
  void (*unaryFwd[int(UnaryOp::Count)])(const float* x, float* y, int64_t n);
  void (*unaryBwd[int(UnaryOp::Count)])(const float* x, const float* y, const float* dy, float* dx, int64_t n, bool acc);
  /** out[i] = a[i*sa] op b[i*sb], sa, sb in {0, 1}; null for ops without a vector form (Pow) */
  void (*binaryRow[int(BinaryOp::Count)])(const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n);
  // reductions (double accumulation)
  double (*sum)(const float* x, int64_t n);
  /** out[i] = Σ_r x[r*inner + i] for i < cnt (cnt ≤ 16) */
  void (*sumCols)(const float* x, float* out, int64_t red, int64_t inner, int64_t cnt);
  /** running max/argmax over one more row: where v[i] > best[i] or v is NaN (best not), take it */
  void (*maxUpdate)(const float* v, float* best, int32_t* idx, int32_t r, int64_t n);
  double (*dot)(const float* a, const float* b, int64_t n);
  // softmax family
  /** max of a row; NaN when the row holds a NaN */
  float (*rowMax)(const float* x, int64_t n);
  /** y = exp(x - m) (y may be null); returns Σ y in double */
  double (*expShiftSum)(const float* x, float* y, int64_t n, float m);
  void (*scale)(float* y, int64_t n, float s);
  void (*addConst)(const float* x, float* y, int64_t n, float c);
  /** dx = y (dy - s) */
  void (*softmaxBwdRow)(const float* y, const float* dy, float* dx, int64_t n, float s);
  /** dx = dy - exp(y) s */
  void (*logSoftmaxBwdRow)(const float* y, const float* dy, float* dx, int64_t n, float s);
  // norms
  /** Σ (x - mean)² in double, mean given as a float */
  double (*sqDevSum)(const float* x, int64_t n, float mean);
  /** y = (x - mean) rstd w + b (w, b optional) */
  void (*affineNormRow)(const float* x, const float* w, const float* b, float* y, int64_t n, float mean, float rstd);
  /** g = dy w, xhat = (x - mean) rstd: *sumG = Σ g, *sumGX = Σ g xhat; dwAcc += dy xhat, dbAcc += dy (doubles, optional) */
  void (*normBwdSums)(const float* x, const float* w, const float* dy, int64_t n, float mean, float rstd, double* sumG,
                      double* sumGX, double* dwAcc, double* dbAcc);
  /** dx = rstd (dy w - a - xhat c) */
  void (*normBwdDx)(const float* x, const float* w, const float* dy, float* dx, int64_t n, float mean, float rstd, float a,
                    float c);
  /** y = (x - mu) scale + shift */
  void (*scaleShift)(const float* x, float* y, int64_t n, float mu, float scale, float shift);
  /** dx = rstd (dy w - a - xhat c) with a scalar channel weight w */
  void (*groupNormDx)(const float* x, const float* dy, float* dx, int64_t n, float mean, float rstd, float w, float a,
                      float c);
  // segment FMA
  /** o = x a + c */
  void (*fmaRow)(const float* x, const float* a, const float* c, float* o, int64_t n);
  /** d = g a */
  void (*mulRow)(const float* g, const float* a, float* d, int64_t n);
  /** acc[i] += g[i] x[i] (x optional: acc += g), in double */
  void (*accProductRow)(const float* g, const float* x, double* acc, int64_t n);
  // optimizer
  void (*adamw)(const AdamWParams& p, int64_t begin, int64_t end);
  // attention (one tile of queries / one head)
  void (*attentionForwardTile)(const AttentionParams& p, int64_t b, int64_t h, int64_t q0, int64_t bq);
  void (*attentionBackwardHead)(const AttentionParams& p, int64_t b, int64_t h);
  int64_t attentionQueryTile;  // forward tile rows (bq)
  /** C[M x N] (+)= A[M x K] B[K x N], row-major with leading dimensions, unpacked register tiles */
  void (*tileGemm)(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                   int64_t ldc, bool accumulate);
  /** out[r*ldo + (j - j0)] = Σ_p A[r*lda + p] B[j*ldb + p] for r < M (M ≤ 6), j in [j0, j1) */
  void (*smallMDots)(int64_t M, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t j0, int64_t j1,
                     float* out, int64_t ldo);
};

/** The table of one back end (null when this build has no such back end). */
const KernelTable* kernels_avx512();
const KernelTable* kernels_avx2();
const KernelTable* kernels_neon();
const KernelTable* kernels_wasm();
const KernelTable* kernels_generic();

/** The table of the active ISA (active_isa(); the generic one for Isa::Scalar). */
const KernelTable& kernel_table();

}  // namespace ft
