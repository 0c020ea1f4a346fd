// Shared declarations of the flextok native kernels: ISA selection, the thread pool, scratch buffers
// and the entry points of every kernel (implemented in gemm.cc, attention.cc, rowops.cc, peak.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(FT_NO_X86)  // FT_NO_X86: check the portable build
#define FT_X86 1
#include <immintrin.h>
#else
#define FT_X86 0
#endif

#define FT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define FT_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define FT_AVX2 __attribute__((target("avx2,fma")))

namespace ft {

// ---- instruction set selection ----
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3, Wasm = 4 };
/** Best ISA the CPU supports (FLEXTOK_ISA=scalar|avx2|avx512 caps it on x86; FLEXTOK_ISA=scalar selects the
 * generic back end on aarch64 and wasm32, whose SIMD back ends are NEON and SIMD128). */
Isa cpu_isa();
/** True when the CPU has AVX512_BF16 (vdpbf16ps). */
bool cpu_has_bf16();
/** The ISA kernels currently use (cpu_isa() unless lowered with set_isa for testing). */
Isa active_isa();
bool active_bf16();
/** Caps the ISA used from now on (never above what the CPU supports; Scalar is always allowed). */
void set_isa(Isa isa, bool allow_bf16);
inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Neon: return "neon";
    case Isa::Wasm: return "wasm-simd128";
    default: return "scalar";
  }
}

// ---- thread pool ----
/** Runs fn(task, thread_index) for every task in [0, ntasks) on the pool (the calling thread takes part).
 * Tasks are handed out dynamically. Runs serially when the pool has one thread, when called from inside
 * a pool task, or when another thread is already using the pool. thread_index < num_threads(). */
void parallel_for(int64_t ntasks, const std::function<void(int64_t, int)>& fn);
int num_threads();
void set_num_threads(int n);
/** Threads the process may run on (sched_getaffinity or hardware_concurrency). */
int available_cores();

// ---- scratch memory: one growable 64-byte-aligned buffer per (thread, slot) ----
enum ScratchSlot { kScratchPackA = 0, kScratchPackB = 1, kScratchAttn = 2, kScratchMisc = 3, kScratchSlots = 4 };
/** A buffer of at least `bytes` bytes, private to the calling thread, reused across calls. */
void* scratch(ScratchSlot slot, size_t bytes);

// ---- GEMM ----
struct GemmParams {
  bool transA = false, transB = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.f, beta = 0.f;
  const float* a = nullptr;
  int64_t lda = 0, strideA = 0;
  const float* b = nullptr;
  int64_t ldb = 0, strideB = 0;
  float* c = nullptr;
  int64_t ldc = 0, strideC = 0;
  int64_t batch = 1;
};
/** C = alpha op(A) op(B) + beta C (batched); bf16 rounds A and B to bfloat16 first. Multithreaded. */
void gemm(const GemmParams& p, bool bf16);
/** Single-threaded GEMM on one matrix (used inside other kernels' tasks). */
void gemm_serial(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc, bool bf16);

#if FT_X86
/** C[M x N] (+)= A[M x K] B[K x N] (row-major, leading dimensions), AVX-512 register tiles, no packing.
 * Only valid while the active ISA is AVX-512. */
void tile_gemm_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                      int64_t ldc, bool accumulate);
#endif

// ---- attention ----
struct AttentionParams {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  float* out = nullptr;
  float* lse = nullptr;
  const uint8_t* mask = nullptr;
  int64_t maskBatchStride = 0;
  int64_t batch = 0, heads = 0, lq = 0, lk = 0, headDim = 0;
  float scale = 1.f;
  bool causal = false;
  // backward only
  const float* dOut = nullptr;
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
};
void attention_forward(const AttentionParams& p);
void attention_backward(const AttentionParams& p);

// ---- row / elementwise kernels ----
enum class UnaryOp : int {
  Neg, Abs, Exp, Log, Sqrt, Rsqrt, Tanh, Atanh, Sigmoid, Silu, GeluTanh, GeluErf, Relu, Sin, Cos, Square, Recip, Count
};
enum class BinaryOp : int { Add, Sub, Mul, Div, Pow, Max, Min, Count };

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n);
void unary_backward(UnaryOp op, const float* x, const float* y, const float* dy, float* dx, int64_t n, bool accumulate);
/** out (contiguous, `shape`) = a op b with strided broadcast reads. */
void binary_broadcast(BinaryOp op, const float* a, const float* b, float* out, int ndim, const int64_t* shape,
                      const int64_t* aStrides, const int64_t* bStrides);
void reduce_sum(const float* x, float* out, int64_t outer, int64_t red, int64_t inner);
void reduce_max(const float* x, float* out, int32_t* argmax, int64_t outer, int64_t red, int64_t inner);

void softmax_forward(const float* x, float* y, int64_t rows, int64_t dim);
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t dim);
void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t dim);
void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t dim);

void layer_norm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows,
                        int64_t dim, float eps);
void layer_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dw, float* db, int64_t rows, int64_t dim);
/** out[r] = x[r] * a[seg[r]] + (cPerRow ? c[r] : c[seg[r]]) over rows of dim floats. */
void segment_fma_forward(const float* x, const float* a, const float* c, const int32_t* seg, float* out, int64_t rows,
                         int64_t dim, bool cPerRow);
/** Gradients of segment_fma_forward: dx = dy * a[seg]; da[s] = Σ_{seg[r]=s} dy*x; dc[s] = Σ_{seg[r]=s} dy (each optional, overwritten). */
void segment_fma_backward(const float* x, const float* a, const int32_t* seg, const float* dy, float* dx, float* da,
                          float* dc, int64_t rows, int64_t dim, int64_t segments);
void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t dim, float eps);
void rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                       int64_t rows, int64_t dim);
void group_norm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t n,
                        int64_t channels, int64_t spatial, int64_t groups, float eps);
void group_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dw, float* db, int64_t n, int64_t channels, int64_t spatial, int64_t groups);

struct ConvGeom {
  int64_t channels, height, width, kh, kw, strideH, strideW, padTop, padLeft, outH, outW;
};
void im2col(const float* x, float* cols, const ConvGeom& g);
void col2im(const float* cols, float* dx, const ConvGeom& g);

/** Generic strided copy of 4-byte elements: y = x permuted by perm (x has `shape`). */
void permute4(const uint32_t* x, uint32_t* y, int ndim, const int64_t* shape, const int* perm);

struct AdamWParams {
  float* param;
  const float* grad;
  float* m;
  float* v;
  int64_t n;
  double lr, beta1, beta2, eps, weightDecay, biasCorrection1, biasCorrection2;
};
void adamw(const AdamWParams& p);

// ---- machine peak ----
/** GFLOP/s of independent FMA chains (widest FMA the active ISA has) on `threads` threads for ~seconds. */
double fma_peak_gflops(double seconds, int threads, bool bf16);

}  // namespace ft
