// The plain C exports of the WebAssembly build of the flextok kernels: one function per entry of the
// Node-API addon (native/src/addon.cc), taking pointers into linear memory and 32-bit counts, plus an
// allocator. Arguments are validated by the JavaScript side (src/tensor/kernels_wasm/); these shims only
// convert them to the ft:: structures and call the shared kernels of native/src/.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../src/common.h"

#define FT_EXPORT(name) extern "C" __attribute__((export_name(#name), used))

namespace {
using ft::ConvGeom;

/** geom points at 11 int32: [channels, height, width, kh, kw, strideH, strideW, padTop, padLeft, outH, outW] */
ConvGeom conv_geom(const int32_t* g) {
  return ConvGeom{g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10]};
}

ft::AttentionParams attention_params(const float* q, const float* k, const float* v, float* out, float* lse,
                                     const uint8_t* mask, int32_t maskBatchStride, int32_t batch, int32_t heads,
                                     int32_t lq, int32_t lk, int32_t headDim, float scale, int32_t causal) {
  ft::AttentionParams a;
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.lse = lse;
  a.mask = mask;
  a.maskBatchStride = maskBatchStride;
  a.batch = batch;
  a.heads = heads;
  a.lq = lq;
  a.lk = lk;
  a.headDim = headDim;
  a.scale = scale;
  a.causal = causal != 0;
  return a;
}
}  // namespace

// ---- memory ----

/** `bytes` bytes aligned to 64, or 0 when the memory cannot grow that far. */
FT_EXPORT(ft_alloc) void* ft_alloc(uint32_t bytes) { return std::aligned_alloc(64, (bytes + 63u) & ~63u); }
FT_EXPORT(ft_free) void ft_free(void* p) { std::free(p); }

// ---- engine info ----

/** 4 = SIMD128, 0 = the generic back end (ft::Isa). */
FT_EXPORT(ft_isa) int32_t ft_isa() { return static_cast<int32_t>(ft::active_isa()); }
/** scalar != 0 selects the generic back end, 0 the SIMD128 one; returns ft_isa(). */
FT_EXPORT(ft_set_isa) int32_t ft_set_isa(int32_t scalar) {
  ft::set_isa(scalar ? ft::Isa::Scalar : ft::Isa::Wasm, false);
  return ft_isa();
}
/** 1 in the relaxed-SIMD build (f32x4.relaxed_madd in the GEMM and the row kernels), 0 in the SIMD128 one. */
FT_EXPORT(ft_relaxed_simd) int32_t ft_relaxed_simd() {
#if defined(__wasm_relaxed_simd__)
  return 1;
#else
  return 0;
#endif
}
FT_EXPORT(ft_threads) int32_t ft_threads() { return ft::num_threads(); }
/** Threads the kernels may use (clamped to the helpers running plus the caller); returns the new count. */
FT_EXPORT(ft_set_threads) int32_t ft_set_threads(int32_t n) {
  ft::set_num_threads(n);
  return ft::num_threads();
}

// ---- GEMM ----

/** C[b] = alpha op(A[b]) op(B[b]) + beta C[b]; a, b, c already point at the first element (offsets applied). */
FT_EXPORT(ft_gemm)
void ft_gemm(int32_t bf16, int32_t transA, int32_t transB, int32_t m, int32_t n, int32_t k, float alpha, float beta,
             const float* a, int32_t lda, int32_t strideA, const float* b, int32_t ldb, int32_t strideB, float* c,
             int32_t ldc, int32_t strideC, int32_t batch) {
  ft::GemmParams g;
  g.transA = transA != 0;
  g.transB = transB != 0;
  g.m = m;
  g.n = n;
  g.k = k;
  g.alpha = alpha;
  g.beta = beta;
  g.a = a;
  g.lda = lda;
  g.strideA = strideA;
  g.b = b;
  g.ldb = ldb;
  g.strideB = strideB;
  g.c = c;
  g.ldc = ldc;
  g.strideC = strideC;
  g.batch = batch;
  ft::gemm(g, bf16 != 0);
}

// ---- attention ----

FT_EXPORT(ft_attention_forward)
void ft_attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, const uint8_t* mask,
                          int32_t maskBatchStride, int32_t batch, int32_t heads, int32_t lq, int32_t lk, int32_t headDim,
                          float scale, int32_t causal) {
  ft::attention_forward(attention_params(q, k, v, out, lse, mask, maskBatchStride, batch, heads, lq, lk, headDim, scale, causal));
}

FT_EXPORT(ft_attention_backward)
void ft_attention_backward(const float* q, const float* k, const float* v, float* out, float* lse, const uint8_t* mask,
                           int32_t maskBatchStride, int32_t batch, int32_t heads, int32_t lq, int32_t lk,
                           int32_t headDim, float scale, int32_t causal, const float* dOut, float* dq, float* dk,
                           float* dv) {
  ft::AttentionParams a =
      attention_params(q, k, v, out, lse, mask, maskBatchStride, batch, heads, lq, lk, headDim, scale, causal);
  a.dOut = dOut;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  ft::attention_backward(a);
}

// ---- elementwise ----

FT_EXPORT(ft_unary) void ft_unary(int32_t op, const float* x, float* y, int32_t n) {
  ft::unary_forward(static_cast<ft::UnaryOp>(op), x, y, n);
}

FT_EXPORT(ft_unary_backward)
void ft_unary_backward(int32_t op, const float* x, const float* y, const float* dy, float* dx, int32_t n, int32_t acc) {
  ft::unary_backward(static_cast<ft::UnaryOp>(op), x, y, dy, dx, n, acc != 0);
}

/** dims points at 3 * ndim int32: shape, then a's strides, then b's strides (ndim <= 64). */
FT_EXPORT(ft_binary)
void ft_binary(int32_t op, const float* a, const float* b, float* out, int32_t ndim, const int32_t* dims) {
  int64_t shape[64], as[64], bs[64];
  for (int32_t i = 0; i < ndim; i++) {
    shape[i] = dims[i];
    as[i] = dims[ndim + i];
    bs[i] = dims[2 * ndim + i];
  }
  ft::binary_broadcast(static_cast<ft::BinaryOp>(op), a, b, out, ndim, shape, as, bs);
}

// ---- reductions and the softmax family ----

FT_EXPORT(ft_sum) void ft_sum(const float* x, float* out, int32_t outer, int32_t red, int32_t inner) {
  ft::reduce_sum(x, out, outer, red, inner);
}
FT_EXPORT(ft_max)
void ft_max(const float* x, float* out, int32_t* argmax, int32_t outer, int32_t red, int32_t inner) {
  ft::reduce_max(x, out, argmax, outer, red, inner);
}
FT_EXPORT(ft_softmax_forward) void ft_softmax_forward(const float* x, float* y, int32_t rows, int32_t dim) {
  ft::softmax_forward(x, y, rows, dim);
}
FT_EXPORT(ft_softmax_backward)
void ft_softmax_backward(const float* y, const float* dy, float* dx, int32_t rows, int32_t dim) {
  ft::softmax_backward(y, dy, dx, rows, dim);
}
FT_EXPORT(ft_log_softmax_forward) void ft_log_softmax_forward(const float* x, float* y, int32_t rows, int32_t dim) {
  ft::log_softmax_forward(x, y, rows, dim);
}
FT_EXPORT(ft_log_softmax_backward)
void ft_log_softmax_backward(const float* y, const float* dy, float* dx, int32_t rows, int32_t dim) {
  ft::log_softmax_backward(y, dy, dx, rows, dim);
}

// ---- segment FMA and norms (null pointers = absent optional arrays) ----

FT_EXPORT(ft_segment_fma_forward)
void ft_segment_fma_forward(const float* x, const float* a, const float* c, const int32_t* seg, float* out, int32_t rows,
                            int32_t dim, int32_t cPerRow) {
  ft::segment_fma_forward(x, a, c, seg, out, rows, dim, cPerRow != 0);
}
FT_EXPORT(ft_segment_fma_backward)
void ft_segment_fma_backward(const float* x, const float* a, const int32_t* seg, const float* dy, float* dx, float* da,
                             float* dc, int32_t rows, int32_t dim, int32_t segments) {
  ft::segment_fma_backward(x, a, seg, dy, dx, da, dc, rows, dim, segments);
}
FT_EXPORT(ft_layer_norm_forward)
void ft_layer_norm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,
                           int32_t rows, int32_t dim, float eps) {
  ft::layer_norm_forward(x, w, b, y, mean, rstd, rows, dim, eps);
}
FT_EXPORT(ft_layer_norm_backward)
void ft_layer_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                            float* dx, float* dw, float* db, int32_t rows, int32_t dim) {
  ft::layer_norm_backward(x, w, mean, rstd, dy, dx, dw, db, rows, dim);
}
FT_EXPORT(ft_rms_norm_forward)
void ft_rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int32_t rows, int32_t dim, float eps) {
  ft::rms_norm_forward(x, w, y, rstd, rows, dim, eps);
}
FT_EXPORT(ft_rms_norm_backward)
void ft_rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                          int32_t rows, int32_t dim) {
  ft::rms_norm_backward(x, w, rstd, dy, dx, dw, rows, dim);
}
FT_EXPORT(ft_group_norm_forward)
void ft_group_norm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int32_t n,
                           int32_t channels, int32_t spatial, int32_t groups, float eps) {
  ft::group_norm_forward(x, w, b, y, mean, rstd, n, channels, spatial, groups, eps);
}
FT_EXPORT(ft_group_norm_backward)
void ft_group_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                            float* dx, float* dw, float* db, int32_t n, int32_t channels, int32_t spatial,
                            int32_t groups) {
  ft::group_norm_backward(x, w, mean, rstd, dy, dx, dw, db, n, channels, spatial, groups);
}

// ---- layout ----

FT_EXPORT(ft_im2col) void ft_im2col(const float* x, float* cols, const int32_t* geom) {
  ft::im2col(x, cols, conv_geom(geom));
}
FT_EXPORT(ft_col2im) void ft_col2im(const float* cols, float* dx, const int32_t* geom) {
  ft::col2im(cols, dx, conv_geom(geom));
}
/** dims points at 2 * ndim int32: shape, then perm (ndim <= 64). */
FT_EXPORT(ft_permute) void ft_permute(const uint32_t* x, uint32_t* y, int32_t ndim, const int32_t* dims) {
  int64_t shape[64];
  int perm[64];
  for (int32_t i = 0; i < ndim; i++) {
    shape[i] = dims[i];
    perm[i] = dims[ndim + i];
  }
  ft::permute4(x, y, ndim, shape, perm);
}

// ---- optimizer ----

FT_EXPORT(ft_adamw)
void ft_adamw(float* param, const float* grad, float* m, float* v, int32_t n, double lr, double beta1, double beta2,
              double eps, double weightDecay, double biasCorrection1, double biasCorrection2) {
  ft::AdamWParams p{param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, biasCorrection1, biasCorrection2};
  ft::adamw(p);
}
