// Elementwise, row-wise and data-movement kernels: unary ops, broadcast binary ops, reductions, softmax,
// layer/RMS/group norms, im2col/col2im, permute and AdamW. AVX-512 paths for the hot ones, portable
// scalar paths for everything; sums and statistics are accumulated in double.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"
#include "vecmath.h"

namespace ft {

namespace {

constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluC = 0.044715;

inline bool use_avx512() {
#if FT_X86
  return active_isa() == Isa::Avx512;
#else
  return false;
#endif
}

/** Runs fn(begin, end) over [0, count) split into chunks on the pool when the work is large enough. */
template <class F>
void parallel_chunks(int64_t count, double costPerItem, F&& fn) {
  const int T = num_threads();
  if (count <= 0) return;
  if (T <= 1 || count < 2 || double(count) * costPerItem < 32768.0) {
    fn(int64_t(0), count);
    return;
  }
  const int64_t tasks = std::min<int64_t>(count, int64_t(T) * 4);
  parallel_for(tasks, [&](int64_t t, int) {
    int64_t b = count * t / tasks, e = count * (t + 1) / tasks;
    if (e > b) fn(b, e);
  });
}

// ---------------------------------------------------------------------------------------------
// Unary ops: scalar definitions (double math, rounded once to float)
// ---------------------------------------------------------------------------------------------

inline double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }

float unary_scalar(UnaryOp op, float xf) {
  const double x = xf;
  switch (op) {
    case UnaryOp::Neg: return -xf;
    case UnaryOp::Abs: return std::fabs(xf);
    case UnaryOp::Exp: return float(std::exp(x));
    case UnaryOp::Log: return float(std::log(x));
    case UnaryOp::Sqrt: return float(std::sqrt(x));
    case UnaryOp::Rsqrt: return float(1.0 / std::sqrt(x));
    case UnaryOp::Tanh: return float(std::tanh(x));
    case UnaryOp::Atanh: return float(std::atanh(x));
    case UnaryOp::Sigmoid: return float(sigmoid_d(x));
    case UnaryOp::Silu: return float(x * sigmoid_d(x));
    case UnaryOp::GeluTanh: return float(x * sigmoid_d(2.0 * kSqrt2OverPi * (x + kGeluC * x * x * x)));
    case UnaryOp::GeluErf: return float(0.5 * x * std::erfc(-x / kSqrt2));
    case UnaryOp::Relu: return xf > 0.f ? xf : (xf != xf ? xf : 0.f);
    case UnaryOp::Sin: return float(std::sin(x));
    case UnaryOp::Cos: return float(std::cos(x));
    case UnaryOp::Square: return xf * xf;
    case UnaryOp::Recip: return float(1.0 / x);
    default: return xf;
  }
}

/** f'(x) * dy for one element; y = f(x). */
float unary_grad_scalar(UnaryOp op, float xf, float yf, float dyf) {
  const double x = xf, y = yf, dy = dyf;
  switch (op) {
    case UnaryOp::Neg: return -dyf;
    case UnaryOp::Abs: return xf > 0.f ? dyf : xf < 0.f ? -dyf : 0.f * dyf;
    case UnaryOp::Exp: return float(y * dy);
    case UnaryOp::Log: return float(dy / x);
    case UnaryOp::Sqrt: return float(0.5 * dy / y);
    case UnaryOp::Rsqrt: return float(-0.5 * dy * y * y * y);
    case UnaryOp::Tanh: return float(dy * (1.0 - y * y));
    case UnaryOp::Atanh: return float(dy / (1.0 - x * x));
    case UnaryOp::Sigmoid: return float(dy * y * (1.0 - y));
    case UnaryOp::Silu: {
      double s = sigmoid_d(x);
      return float(dy * s * (1.0 + x * (1.0 - s)));
    }
    case UnaryOp::GeluTanh: {
      double u = kSqrt2OverPi * (x + kGeluC * x * x * x);
      double s = sigmoid_d(2.0 * u);
      double du = kSqrt2OverPi * (1.0 + 3.0 * kGeluC * x * x);
      return float(dy * (s + 2.0 * x * s * (1.0 - s) * du));
    }
    case UnaryOp::GeluErf: {
      double cdf = 0.5 * std::erfc(-x / kSqrt2);
      return float(dy * (cdf + x * kInvSqrt2Pi * std::exp(-0.5 * x * x)));
    }
    case UnaryOp::Relu: return xf > 0.f ? dyf : 0.f;
    case UnaryOp::Sin: return float(dy * std::cos(x));
    case UnaryOp::Cos: return float(-dy * std::sin(x));
    case UnaryOp::Square: return float(2.0 * x * dy);
    case UnaryOp::Recip: return float(-dy * y * y);
    default: return dyf;
  }
}

#if FT_X86
// ---------------------------------------------------------------------------------------------
// Unary ops: AVX-512 (ops with a vector form; the rest use the scalar path)
// ---------------------------------------------------------------------------------------------

bool unary_has_vector(UnaryOp op) {
  switch (op) {
    case UnaryOp::Log:
    case UnaryOp::Atanh:
    case UnaryOp::Sin:
    case UnaryOp::Cos: return false;
    default: return true;
  }
}

FT_AVX512 inline __m512 unary_vec(UnaryOp op, __m512 x) {
  const __m512 one = _mm512_set1_ps(1.f), zero = _mm512_setzero_ps();
  switch (op) {
    case UnaryOp::Neg: return _mm512_sub_ps(zero, x);
    case UnaryOp::Abs: return _mm512_abs_ps(x);
    case UnaryOp::Exp: return vm::exp(x);
    case UnaryOp::Sqrt: return _mm512_sqrt_ps(x);
    case UnaryOp::Rsqrt: return _mm512_div_ps(one, _mm512_sqrt_ps(x));
    case UnaryOp::Tanh: return vm::tanh(x);
    case UnaryOp::Sigmoid: return vm::sigmoid(x);
    case UnaryOp::Silu: return _mm512_mul_ps(x, vm::sigmoid(x));
    case UnaryOp::GeluTanh: {
      __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
      __m512 u2 = _mm512_mul_ps(_mm512_set1_ps(float(2.0 * kSqrt2OverPi)),
                                _mm512_fmadd_ps(_mm512_set1_ps(float(kGeluC)), x3, x));
      return _mm512_mul_ps(x, vm::sigmoid(u2));
    }
    case UnaryOp::GeluErf: {
      // 0.5 x erfc(-x / sqrt2), with x / sqrt2 carried in double-float for the far tail
      __m512 aLo;
      __m512 a = vm::div_sqrt2(x, &aLo);
      __mmask16 pos = _mm512_cmp_ps_mask(x, zero, _CMP_GT_OQ);
      __m512 r = vm::erfc_abs(_mm512_abs_ps(a), _mm512_mask_sub_ps(aLo, _mm512_cmp_ps_mask(a, zero, _CMP_LT_OQ), zero, aLo),
                              nullptr);
      r = _mm512_mask_sub_ps(r, pos, _mm512_set1_ps(2.f), r);
      return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), r);
    }
    case UnaryOp::Relu: {
      __mmask16 pos = _mm512_cmp_ps_mask(x, zero, _CMP_NLE_UQ);  // x > 0 or NaN
      return _mm512_maskz_mov_ps(pos, x);
    }
    case UnaryOp::Square: return _mm512_mul_ps(x, x);
    case UnaryOp::Recip: return _mm512_div_ps(one, x);
    default: return x;
  }
}

FT_AVX512 inline __m512 unary_grad_vec(UnaryOp op, __m512 x, __m512 y, __m512 dy) {
  const __m512 one = _mm512_set1_ps(1.f), zero = _mm512_setzero_ps();
  switch (op) {
    case UnaryOp::Neg: return _mm512_sub_ps(zero, dy);
    case UnaryOp::Abs: {
      __mmask16 pos = _mm512_cmp_ps_mask(x, zero, _CMP_GT_OQ), neg = _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ);
      __m512 r = _mm512_mul_ps(zero, dy);
      r = _mm512_mask_mov_ps(r, pos, dy);
      return _mm512_mask_sub_ps(r, neg, zero, dy);
    }
    case UnaryOp::Exp: return _mm512_mul_ps(y, dy);
    case UnaryOp::Sqrt: return _mm512_div_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), dy), y);
    case UnaryOp::Rsqrt:
      return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-0.5f), dy), _mm512_mul_ps(_mm512_mul_ps(y, y), y));
    case UnaryOp::Tanh: return _mm512_mul_ps(dy, _mm512_fnmadd_ps(y, y, one));
    case UnaryOp::Sigmoid: return _mm512_mul_ps(dy, _mm512_mul_ps(y, _mm512_sub_ps(one, y)));
    case UnaryOp::Silu: {
      __m512 s = vm::sigmoid(x);
      return _mm512_mul_ps(_mm512_mul_ps(dy, s), _mm512_fmadd_ps(x, _mm512_sub_ps(one, s), one));
    }
    case UnaryOp::GeluTanh: {
      __m512 xx = _mm512_mul_ps(x, x);
      __m512 u2 = _mm512_mul_ps(_mm512_set1_ps(float(2.0 * kSqrt2OverPi)),
                                _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(float(kGeluC)), xx), x, x));
      __m512 s = vm::sigmoid(u2);
      __m512 du = _mm512_mul_ps(_mm512_set1_ps(float(kSqrt2OverPi)),
                                _mm512_fmadd_ps(_mm512_set1_ps(float(3.0 * kGeluC)), xx, one));
      __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(x, x), _mm512_mul_ps(s, _mm512_sub_ps(one, s))), du);
      return _mm512_mul_ps(dy, _mm512_add_ps(s, t));
    }
    case UnaryOp::GeluErf: {
      __m512 aLo;
      __m512 a = vm::div_sqrt2(x, &aLo);
      __mmask16 negA = _mm512_cmp_ps_mask(a, zero, _CMP_LT_OQ);
      __m512 e;
      __m512 r = vm::erfc_abs(_mm512_abs_ps(a), _mm512_mask_sub_ps(aLo, negA, zero, aLo), &e);  // erfc(|x|/sqrt2), e = exp(-x^2/2)
      __mmask16 pos = _mm512_cmp_ps_mask(x, zero, _CMP_GT_OQ);
      __m512 erfcNeg = _mm512_mask_sub_ps(r, pos, _mm512_set1_ps(2.f), r);  // erfc(-x/sqrt2)
      __m512 cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f), erfcNeg);
      __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(float(kInvSqrt2Pi)), e);
      return _mm512_mul_ps(dy, _mm512_fmadd_ps(x, pdf, cdf));
    }
    case UnaryOp::Relu: {
      __mmask16 pos = _mm512_cmp_ps_mask(x, zero, _CMP_GT_OQ);
      return _mm512_maskz_mov_ps(pos, dy);
    }
    case UnaryOp::Square: return _mm512_mul_ps(_mm512_add_ps(x, x), dy);
    case UnaryOp::Recip: return _mm512_sub_ps(zero, _mm512_mul_ps(dy, _mm512_mul_ps(y, y)));
    default: return dy;
  }
}

template <UnaryOp OP>
FT_AVX512 void unary_fwd_avx512(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, unary_vec(OP, _mm512_loadu_ps(x + i)));
  if (i < n) {
    __mmask16 m = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, unary_vec(OP, _mm512_maskz_loadu_ps(m, x + i)));
  }
}

template <UnaryOp OP>
FT_AVX512 void unary_bwd_avx512(const float* x, const float* y, const float* dy, float* dx, int64_t n, bool acc) {
  int64_t i = 0;
  for (; i < n; i += 16) {
    __mmask16 m = vm::tail_mask(n - i);
    __m512 g = unary_grad_vec(OP, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i),
                              _mm512_maskz_loadu_ps(m, dy + i));
    if (acc) g = _mm512_add_ps(g, _mm512_maskz_loadu_ps(m, dx + i));
    _mm512_mask_storeu_ps(dx + i, m, g);
  }
}

using UnaryFwdFn = void (*)(const float*, float*, int64_t);
using UnaryBwdFn = void (*)(const float*, const float*, const float*, float*, int64_t, bool);

template <int... Ops>
struct UnaryTables {
  UnaryFwdFn fwd[int(UnaryOp::Count)] = {unary_fwd_avx512<UnaryOp(Ops)>...};
  UnaryBwdFn bwd[int(UnaryOp::Count)] = {unary_bwd_avx512<UnaryOp(Ops)>...};
};
template <int... I>
UnaryTables<I...> make_unary_tables(std::integer_sequence<int, I...>) {
  return {};
}
const auto& unary_tables() {
  static const auto t = make_unary_tables(std::make_integer_sequence<int, int(UnaryOp::Count)>{});
  return t;
}
#endif

}  // namespace

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n) {
#if FT_X86
  if (use_avx512() && unary_has_vector(op)) {
    UnaryFwdFn f = unary_tables().fwd[int(op)];
    parallel_chunks((n + 15) / 16, 64, [&](int64_t b, int64_t e) {
      f(x + b * 16, y + b * 16, std::min(n, e * 16) - b * 16);
    });
    return;
  }
#endif
  parallel_chunks(n, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) y[i] = unary_scalar(op, x[i]);
  });
}

void unary_backward(UnaryOp op, const float* x, const float* y, const float* dy, float* dx, int64_t n, bool accumulate) {
#if FT_X86
  if (use_avx512() && unary_has_vector(op)) {
    UnaryBwdFn f = unary_tables().bwd[int(op)];
    parallel_chunks((n + 15) / 16, 96, [&](int64_t b, int64_t e) {
      f(x + b * 16, y + b * 16, dy + b * 16, dx + b * 16, std::min(n, e * 16) - b * 16, accumulate);
    });
    return;
  }
#endif
  parallel_chunks(n, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      float g = unary_grad_scalar(op, x[i], y[i], dy[i]);
      dx[i] = accumulate ? dx[i] + g : g;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Binary ops with broadcasting
// ---------------------------------------------------------------------------------------------

namespace {

inline float binary_scalar(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow: return float(std::pow(double(a), double(b)));
    case BinaryOp::Max: return (a != a || a > b) ? a : b;
    case BinaryOp::Min: return (a != a || a < b) ? a : b;
    default: return 0.f;
  }
}

/** out[i] = a[i*sa] op b[i*sb] for i < n (sa, sb in {0, 1} on the vector path). */
void binary_row_scalar(BinaryOp op, const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = binary_scalar(op, a[i * sa], b[i * sb]);
}

#if FT_X86
FT_AVX512 inline __m512 binary_vec(BinaryOp op, __m512 a, __m512 b) {
  switch (op) {
    case BinaryOp::Add: return _mm512_add_ps(a, b);
    case BinaryOp::Sub: return _mm512_sub_ps(a, b);
    case BinaryOp::Mul: return _mm512_mul_ps(a, b);
    case BinaryOp::Div: return _mm512_div_ps(a, b);
    case BinaryOp::Max: {
      __m512 r = _mm512_max_ps(a, b);  // returns b when either is NaN
      return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
    }
    case BinaryOp::Min: {
      __m512 r = _mm512_min_ps(a, b);
      return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
    }
    default: return a;
  }
}

template <BinaryOp OP>
FT_AVX512 void binary_row_avx512(const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n) {
  if (sa == 1 && sb == 1) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(out + i, binary_vec(OP, _mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    if (i < n) {
      __mmask16 m = vm::tail_mask(n - i);
      _mm512_mask_storeu_ps(out + i, m, binary_vec(OP, _mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
    }
  } else if (sa == 1 && sb == 0) {
    __m512 vb = _mm512_set1_ps(*b);
    for (int64_t i = 0; i < n; i += 16) {
      __mmask16 m = vm::tail_mask(n - i);
      _mm512_mask_storeu_ps(out + i, m, binary_vec(OP, _mm512_maskz_loadu_ps(m, a + i), vb));
    }
  } else if (sa == 0 && sb == 1) {
    __m512 va = _mm512_set1_ps(*a);
    for (int64_t i = 0; i < n; i += 16) {
      __mmask16 m = vm::tail_mask(n - i);
      _mm512_mask_storeu_ps(out + i, m, binary_vec(OP, va, _mm512_maskz_loadu_ps(m, b + i)));
    }
  } else {
    binary_row_scalar(OP, a, sa, b, sb, out, n);
  }
}

using BinaryRowFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t);
BinaryRowFn binary_row_table(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return binary_row_avx512<BinaryOp::Add>;
    case BinaryOp::Sub: return binary_row_avx512<BinaryOp::Sub>;
    case BinaryOp::Mul: return binary_row_avx512<BinaryOp::Mul>;
    case BinaryOp::Div: return binary_row_avx512<BinaryOp::Div>;
    case BinaryOp::Max: return binary_row_avx512<BinaryOp::Max>;
    case BinaryOp::Min: return binary_row_avx512<BinaryOp::Min>;
    default: return nullptr;
  }
}
#endif

}  // namespace

void binary_broadcast(BinaryOp op, const float* a, const float* b, float* out, int ndim, const int64_t* shape,
                      const int64_t* aStrides, const int64_t* bStrides) {
  // Drop size-1 dimensions and merge dimensions that are contiguous in both inputs (ndim <= 64).
  int64_t sh[64], sa[64], sb[64];
  int nd = 0;
  for (int d = 0; d < ndim && d < 64; d++) {
    if (shape[d] == 1) continue;
    if (nd > 0 && sa[nd - 1] == aStrides[d] * shape[d] && sb[nd - 1] == bStrides[d] * shape[d]) {
      sh[nd - 1] *= shape[d];
      sa[nd - 1] = aStrides[d];
      sb[nd - 1] = bStrides[d];
    } else {
      sh[nd] = shape[d];
      sa[nd] = aStrides[d];
      sb[nd] = bStrides[d];
      nd++;
    }
  }
  if (nd == 0) {
    sh[0] = 1;
    sa[0] = sb[0] = 0;
    nd = 1;
  }
  const int64_t inner = sh[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
  int64_t rows = 1;
  for (int d = 0; d < nd - 1; d++) rows *= sh[d];

  void (*row)(const float*, int64_t, const float*, int64_t, float*, int64_t) = nullptr;
  BinaryOp opCopy = op;
#if FT_X86
  if (use_avx512() && (ia <= 1 && ib <= 1)) row = binary_row_table(op);
#endif
  const double cost = op == BinaryOp::Pow ? 16 : 1;
  // Few long rows (e.g. a flat same-shape op): split the rows into column chunks instead.
  const int64_t kColChunk = 16384;
  if (rows < 4 * int64_t(num_threads()) && inner > 2 * kColChunk) {
    const int64_t nCh = (inner + kColChunk - 1) / kColChunk;
    parallel_chunks(rows * nCh, double(kColChunk) * cost, [&](int64_t w0, int64_t w1) {
      for (int64_t w = w0; w < w1; w++) {
        const int64_t r = w / nCh, c0 = (w % nCh) * kColChunk, len = std::min(kColChunk, inner - c0);
        int64_t rem = r, offA = c0 * ia, offB = c0 * ib;
        for (int d = nd - 2; d >= 0; d--) {
          const int64_t i = rem % sh[d];
          rem /= sh[d];
          offA += i * sa[d];
          offB += i * sb[d];
        }
        float* o = out + r * inner + c0;
        if (row) row(a + offA, ia, b + offB, ib, o, len);
        else binary_row_scalar(opCopy, a + offA, ia, b + offB, ib, o, len);
      }
    });
    return;
  }
  parallel_chunks(rows, double(inner) * cost, [&](int64_t r0, int64_t r1) {
    // multi-index of row r0 over the outer dims
    int64_t idx[64] = {};
    int64_t rem = r0, offA = 0, offB = 0;
    for (int d = nd - 2; d >= 0; d--) {
      idx[d] = rem % sh[d];
      rem /= sh[d];
      offA += idx[d] * sa[d];
      offB += idx[d] * sb[d];
    }
    for (int64_t r = r0; r < r1; r++) {
      float* o = out + r * inner;
      if (row) row(a + offA, ia, b + offB, ib, o, inner);
      else binary_row_scalar(opCopy, a + offA, ia, b + offB, ib, o, inner);
      for (int d = nd - 2; d >= 0; d--) {
        idx[d]++;
        offA += sa[d];
        offB += sb[d];
        if (idx[d] < sh[d]) break;
        offA -= sa[d] * sh[d];
        offB -= sb[d] * sh[d];
        idx[d] = 0;
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

namespace {
#if FT_X86
FT_AVX512 double sum_contig_avx512(const float* x, int64_t n) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = vm::widen_add(a0, _mm512_loadu_ps(x + i));
    a1 = vm::widen_add(a1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i < n; i += 16) a0 = vm::widen_add(a0, _mm512_maskz_loadu_ps(vm::tail_mask(n - i), x + i));
  return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

/** out[i] = sum_r x[r*inner + i] for i in [0, cnt), cnt <= 16, accumulated in double. */
FT_AVX512 void sum_cols16_avx512(const float* x, float* out, int64_t red, int64_t inner, int64_t cnt) {
  __mmask16 m = vm::tail_mask(cnt);
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (int64_t r = 0; r < red; r++) {
    __m512 v = _mm512_maskz_loadu_ps(m, x + r * inner);
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  __m256 l = _mm512_cvtpd_ps(lo), h = _mm512_cvtpd_ps(hi);
  __m512 r = _mm512_insertf32x8(_mm512_castps256_ps512(l), h, 1);
  _mm512_mask_storeu_ps(out, m, r);
}
#endif

double sum_contig(const float* x, int64_t n) {
#if FT_X86
  if (use_avx512()) return sum_contig_avx512(x, n);
#endif
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}
}  // namespace

void reduce_sum(const float* x, float* out, int64_t outer, int64_t red, int64_t inner) {
  if (inner == 1) {
    parallel_chunks(outer, double(red), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; o++) out[o] = float(sum_contig(x + o * red, red));
    });
    return;
  }
  // columns of 16 inner positions per work item
  const int64_t colBlocks = (inner + 15) / 16;
  parallel_chunks(outer * colBlocks, double(red) * 16, [&](int64_t b, int64_t e) {
    std::vector<double> acc;
    for (int64_t w = b; w < e; w++) {
      const int64_t o = w / colBlocks, c0 = (w % colBlocks) * 16, cnt = std::min<int64_t>(16, inner - c0);
      const float* xs = x + o * red * inner + c0;
      float* os = out + o * inner + c0;
#if FT_X86
      if (use_avx512()) {
        sum_cols16_avx512(xs, os, red, inner, cnt);
        continue;
      }
#endif
      acc.assign(cnt, 0.0);
      for (int64_t r = 0; r < red; r++)
        for (int64_t i = 0; i < cnt; i++) acc[i] += xs[r * inner + i];
      for (int64_t i = 0; i < cnt; i++) os[i] = float(acc[i]);
    }
  });
}

void reduce_max(const float* x, float* out, int32_t* argmax, int64_t outer, int64_t red, int64_t inner) {
  parallel_chunks(outer, double(red) * inner, [&](int64_t b, int64_t e) {
    std::vector<float> best;
    std::vector<int32_t> bi;
    for (int64_t o = b; o < e; o++) {
      const float* xs = x + o * red * inner;
      if (red == 0) {
        for (int64_t i = 0; i < inner; i++) {
          out[o * inner + i] = -std::numeric_limits<float>::infinity();
          argmax[o * inner + i] = -1;
        }
        continue;
      }
      best.assign(xs, xs + inner);
      bi.assign(inner, 0);
      for (int64_t r = 1; r < red; r++) {
        const float* row = xs + r * inner;
        for (int64_t i = 0; i < inner; i++) {
          float v = row[i], cur = best[i];
          if (v > cur || (v != v && cur == cur)) {
            best[i] = v;
            bi[i] = static_cast<int32_t>(r);
          }
        }
      }
      std::memcpy(out + o * inner, best.data(), inner * sizeof(float));
      std::memcpy(argmax + o * inner, bi.data(), inner * sizeof(int32_t));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Softmax family
// ---------------------------------------------------------------------------------------------

namespace {

float row_max_scalar(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; i++) {
    if (x[i] != x[i]) return x[i];
    m = std::max(m, x[i]);
  }
  return m;
}

#if FT_X86
FT_AVX512 float row_max_avx512(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __mmask16 nan = 0;
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    __m512 v = _mm512_mask_loadu_ps(m, k, x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    m = _mm512_max_ps(m, v);
  }
  if (nan) return std::numeric_limits<float>::quiet_NaN();
  return _mm512_reduce_max_ps(m);
}

/** y = exp(x - m); returns sum(y) in double. */
FT_AVX512 double exp_shift_sum_avx512(const float* x, float* y, int64_t n, float m) {
  __m512 vm_ = _mm512_set1_ps(m);
  __m512d s0 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    __m512 e = vm::exp_diff(_mm512_maskz_loadu_ps(k, x + i), vm_);
    e = _mm512_maskz_mov_ps(k, e);
    if (y) _mm512_mask_storeu_ps(y + i, k, e);
    s0 = vm::widen_add(s0, e);
  }
  return _mm512_reduce_add_pd(s0);
}

FT_AVX512 void scale_avx512(float* y, int64_t n, float s) {
  __m512 vs = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, y + i), vs));
  }
}

FT_AVX512 void add_const_avx512(const float* x, float* y, int64_t n, float c) {
  __m512 vc = _mm512_set1_ps(c);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, x + i), vc));
  }
}

FT_AVX512 double dot_avx512(const float* a, const float* b, int64_t n) {
  __m512d s0 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    s0 = vm::widen_add(s0, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i)));
  }
  return _mm512_reduce_add_pd(s0);
}

/** dx = y * (dy - s) */
FT_AVX512 void softmax_bwd_row_avx512(const float* y, const float* dy, float* dx, int64_t n, float s) {
  __m512 vs = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    __m512 yy = _mm512_maskz_loadu_ps(k, y + i), d = _mm512_maskz_loadu_ps(k, dy + i);
    _mm512_mask_storeu_ps(dx + i, k, _mm512_mul_ps(yy, _mm512_sub_ps(d, vs)));
  }
}

/** dx = dy - exp(y) * s */
FT_AVX512 void log_softmax_bwd_row_avx512(const float* y, const float* dy, float* dx, int64_t n, float s) {
  __m512 vs = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    __m512 e = vm::exp(_mm512_maskz_loadu_ps(k, y + i));
    _mm512_mask_storeu_ps(dx + i, k, _mm512_fnmadd_ps(e, vs, _mm512_maskz_loadu_ps(k, dy + i)));
  }
}
#endif

float row_max(const float* x, int64_t n) {
#if FT_X86
  if (use_avx512()) return row_max_avx512(x, n);
#endif
  return row_max_scalar(x, n);
}

double exp_shift_sum(const float* x, float* y, int64_t n, float m) {
#if FT_X86
  if (use_avx512()) return exp_shift_sum_avx512(x, y, n, m);
#endif
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    float e = float(std::exp(double(x[i]) - double(m)));
    if (y) y[i] = e;
    s += e;
  }
  return s;
}

double dot(const float* a, const float* b, int64_t n) {
#if FT_X86
  if (use_avx512()) return dot_avx512(a, b, n);
#endif
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += double(a[i]) * b[i];
  return s;
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t dim) {
  parallel_chunks(rows, double(dim) * 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      float m = row_max(xr, dim);
      if (m == -std::numeric_limits<float>::infinity()) m = 0.f;  // all -inf: exp gives 0, sum 0 -> NaN like torch
      double s = exp_shift_sum(xr, yr, dim, m);
      float inv = float(1.0 / s);
#if FT_X86
      if (use_avx512()) {
        scale_avx512(yr, dim, inv);
        continue;
      }
#endif
      for (int64_t i = 0; i < dim; i++) yr[i] *= inv;
    }
  });
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t dim) {
  parallel_chunks(rows, double(dim) * 2, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float *yr = y + r * dim, *dyr = dy + r * dim;
      float* dxr = dx + r * dim;
      float s = float(dot(yr, dyr, dim));
#if FT_X86
      if (use_avx512()) {
        softmax_bwd_row_avx512(yr, dyr, dxr, dim, s);
        continue;
      }
#endif
      for (int64_t i = 0; i < dim; i++) dxr[i] = yr[i] * (dyr[i] - s);
    }
  });
}

void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t dim) {
  parallel_chunks(rows, double(dim) * 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      float m = row_max(xr, dim);
      if (m == -std::numeric_limits<float>::infinity()) m = 0.f;
      double s = exp_shift_sum(xr, nullptr, dim, m);
      float shift = float(-(double(m) + std::log(s)));
#if FT_X86
      if (use_avx512()) {
        add_const_avx512(xr, yr, dim, shift);
        continue;
      }
#endif
      for (int64_t i = 0; i < dim; i++) yr[i] = xr[i] + shift;
    }
  });
}

void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t dim) {
  parallel_chunks(rows, double(dim) * 3, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float *yr = y + r * dim, *dyr = dy + r * dim;
      float* dxr = dx + r * dim;
      float s = float(sum_contig(dyr, dim));
#if FT_X86
      if (use_avx512()) {
        log_softmax_bwd_row_avx512(yr, dyr, dxr, dim, s);
        continue;
      }
#endif
      for (int64_t i = 0; i < dim; i++) dxr[i] = float(double(dyr[i]) - std::exp(double(yr[i])) * s);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// LayerNorm / RMSNorm
// ---------------------------------------------------------------------------------------------

namespace {

/** mean and sum of squared deviations of x (double). */
void moments(const float* x, int64_t n, double* meanOut, double* m2Out) {
  double mean = sum_contig(x, n) / double(n);
  double m2 = 0;
#if FT_X86
  if (use_avx512()) {
    m2 = [&]() FT_AVX512 {
      __m512 mu = _mm512_set1_ps(float(mean));
      __m512d acc = _mm512_setzero_pd();
      for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = vm::tail_mask(n - i);
        __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + i), mu);
        acc = vm::widen_add(acc, _mm512_mul_ps(d, d));
      }
      return _mm512_reduce_add_pd(acc);
    }();
    // correct for the float rounding of the mean: sum (x - m)^2 = sum (x - mf)^2 - n (m - mf)^2
    double dm = mean - double(float(mean));
    m2 -= double(n) * dm * dm;
    if (m2 < 0) m2 = 0;
    *meanOut = mean;
    *m2Out = m2;
    return;
  }
#endif
  for (int64_t i = 0; i < n; i++) {
    double d = double(x[i]) - mean;
    m2 += d * d;
  }
  *meanOut = mean;
  *m2Out = m2;
}

#if FT_X86
/** y = (x - mean) * rstd * w + b (w, b optional) */
FT_AVX512 void affine_norm_row_avx512(const float* x, const float* w, const float* b, float* y, int64_t n, float mean,
                                      float rstd) {
  __m512 mu = _mm512_set1_ps(mean), rs = _mm512_set1_ps(rstd);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mu), rs);
    if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, w + i));
    if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, b + i));
    _mm512_mask_storeu_ps(y + i, k, v);
  }
}

/** One row of the norm backward. g = dy*w; xhat = (x-mean)*rstd; returns sums of g and g*xhat (double);
 * accumulates dw += dy*xhat, db += dy into double arrays when given. */
FT_AVX512 void norm_bwd_sums_avx512(const float* x, const float* w, const float* dy, int64_t n, float mean, float rstd,
                                    double* sumG, double* sumGX, double* dwAcc, double* dbAcc) {
  __m512 mu = _mm512_set1_ps(mean), rs = _mm512_set1_ps(rstd);
  __m512d sg = _mm512_setzero_pd(), sgx = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    __m512 xh = _mm512_maskz_mul_ps(k, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mu), rs);
    __m512 d = _mm512_maskz_loadu_ps(k, dy + i);
    __m512 g = w ? _mm512_mul_ps(d, _mm512_maskz_loadu_ps(k, w + i)) : d;
    sg = vm::widen_add(sg, g);
    sgx = vm::widen_add(sgx, _mm512_mul_ps(g, xh));
    if (dwAcc) {
      __m512 p = _mm512_mul_ps(d, xh);
      __mmask8 k0 = __mmask8(k & 0xff), k1 = __mmask8(k >> 8);
      __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(p));
      __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1)));
      _mm512_mask_storeu_pd(dwAcc + i, k0, _mm512_add_pd(_mm512_maskz_loadu_pd(k0, dwAcc + i), lo));
      _mm512_mask_storeu_pd(dwAcc + i + 8, k1, _mm512_add_pd(_mm512_maskz_loadu_pd(k1, dwAcc + i + 8), hi));
    }
    if (dbAcc) {
      __mmask8 k0 = __mmask8(k & 0xff), k1 = __mmask8(k >> 8);
      __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
      __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
      _mm512_mask_storeu_pd(dbAcc + i, k0, _mm512_add_pd(_mm512_maskz_loadu_pd(k0, dbAcc + i), lo));
      _mm512_mask_storeu_pd(dbAcc + i + 8, k1, _mm512_add_pd(_mm512_maskz_loadu_pd(k1, dbAcc + i + 8), hi));
    }
  }
  *sumG = _mm512_reduce_add_pd(sg);
  *sumGX = _mm512_reduce_add_pd(sgx);
}

/** dx = rstd * (g - a - xhat * c) with g = dy*w, xhat = (x - mean)*rstd */
FT_AVX512 void norm_bwd_dx_avx512(const float* x, const float* w, const float* dy, float* dx, int64_t n, float mean,
                                  float rstd, float a, float c) {
  __m512 mu = _mm512_set1_ps(mean), rs = _mm512_set1_ps(rstd), va = _mm512_set1_ps(a), vc = _mm512_set1_ps(c);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mu), rs);
    __m512 d = _mm512_maskz_loadu_ps(k, dy + i);
    __m512 g = w ? _mm512_mul_ps(d, _mm512_maskz_loadu_ps(k, w + i)) : d;
    __m512 r = _mm512_fnmadd_ps(xh, vc, _mm512_sub_ps(g, va));
    _mm512_mask_storeu_ps(dx + i, k, _mm512_mul_ps(r, rs));
  }
}
#endif

#if FT_X86
/** y = (x - mu) * scale + shift */
FT_AVX512 void scale_shift_avx512(const float* x, float* y, int64_t n, float mu, float scale, float shift) {
  const __m512 vm_ = _mm512_set1_ps(mu), vs = _mm512_set1_ps(scale), vb = _mm512_set1_ps(shift);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = vm::tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm_), vs, vb));
  }
}

/** dx = rstd * (dy * w - a - xhat * c) for one channel of a group (scalar channel weight w). */
FT_AVX512 void group_norm_dx_avx512(const float* x, const float* dy, float* dx, int64_t n, float mean, float rstd,
                                    float w, float a, float c) {
  const __m512 mu = _mm512_set1_ps(mean), rs = _mm512_set1_ps(rstd), vw = _mm512_set1_ps(w);
  const __m512 va = _mm512_set1_ps(a), vc = _mm512_set1_ps(c);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = vm::tail_mask(n - i);
    const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mu), rs);
    const __m512 g = _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, dy + i), vw), va);  // not fused: matches a
    _mm512_mask_storeu_ps(dx + i, k, _mm512_mul_ps(_mm512_fnmadd_ps(xh, vc, g), rs));
  }
}
#endif

void norm_bwd_sums(const float* x, const float* w, const float* dy, int64_t n, float mean, float rstd, double* sumG,
                   double* sumGX, double* dwAcc, double* dbAcc) {
#if FT_X86
  if (use_avx512()) {
    norm_bwd_sums_avx512(x, w, dy, n, mean, rstd, sumG, sumGX, dwAcc, dbAcc);
    return;
  }
#endif
  double sg = 0, sgx = 0;
  for (int64_t i = 0; i < n; i++) {
    double xh = (double(x[i]) - mean) * rstd;
    double g = w ? double(dy[i]) * w[i] : double(dy[i]);
    sg += g;
    sgx += g * xh;
    if (dwAcc) dwAcc[i] += double(dy[i]) * xh;
    if (dbAcc) dbAcc[i] += dy[i];
  }
  *sumG = sg;
  *sumGX = sgx;
}

void norm_bwd_dx(const float* x, const float* w, const float* dy, float* dx, int64_t n, float mean, float rstd, float a,
                 float c) {
#if FT_X86
  if (use_avx512()) {
    norm_bwd_dx_avx512(x, w, dy, dx, n, mean, rstd, a, c);
    return;
  }
#endif
  for (int64_t i = 0; i < n; i++) {
    double xh = (double(x[i]) - mean) * rstd;
    double g = w ? double(dy[i]) * w[i] : double(dy[i]);
    dx[i] = float(rstd * (g - a - xh * c));
  }
}

/** Splits rows into per-task chunks; each task gets its own double accumulators for dw/db (then summed). */
template <class RowFn>
void rows_with_param_grads(int64_t rows, int64_t dim, float* dw, float* db, RowFn&& rowFn) {
  const int T = num_threads();
  const bool parallel = T > 1 && double(rows) * dim >= 32768.0 && rows >= 2;
  const int64_t tasks = parallel ? std::min<int64_t>(rows, T) : 1;
  std::vector<double> dwAcc(dw ? tasks * dim : 0, 0.0), dbAcc(db ? tasks * dim : 0, 0.0);
  auto body = [&](int64_t t, int) {
    int64_t b = rows * t / tasks, e = rows * (t + 1) / tasks;
    for (int64_t r = b; r < e; r++)
      rowFn(r, dw ? dwAcc.data() + t * dim : nullptr, db ? dbAcc.data() + t * dim : nullptr);
  };
  if (tasks > 1) parallel_for(tasks, body);
  else body(0, 0);
  for (int64_t i = 0; i < dim; i++) {
    if (dw) {
      double s = 0;
      for (int64_t t = 0; t < tasks; t++) s += dwAcc[t * dim + i];
      dw[i] = float(s);
    }
    if (db) {
      double s = 0;
      for (int64_t t = 0; t < tasks; t++) s += dbAcc[t * dim + i];
      db[i] = float(s);
    }
  }
}

}  // namespace

void layer_norm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows,
                        int64_t dim, float eps) {
  parallel_chunks(rows, double(dim) * 3, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      double mu, m2;
      moments(xr, dim, &mu, &m2);
      double rs = 1.0 / std::sqrt(m2 / double(dim) + double(eps));
      mean[r] = float(mu);
      rstd[r] = float(rs);
#if FT_X86
      if (use_avx512()) {
        affine_norm_row_avx512(xr, w, b, yr, dim, float(mu), float(rs));
        continue;
      }
#endif
      for (int64_t i = 0; i < dim; i++) {
        double v = (double(xr[i]) - mu) * rs;
        if (w) v *= w[i];
        if (b) v += b[i];
        yr[i] = float(v);
      }
    }
  });
}

void layer_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dw, float* db, int64_t rows, int64_t dim) {
  rows_with_param_grads(rows, dim, dw, db, [&](int64_t r, double* dwAcc, double* dbAcc) {
    const float *xr = x + r * dim, *dyr = dy + r * dim;
    double sg, sgx;
    norm_bwd_sums(xr, w, dyr, dim, mean[r], rstd[r], &sg, &sgx, dwAcc, dbAcc);
    norm_bwd_dx(xr, w, dyr, dx + r * dim, dim, mean[r], rstd[r], float(sg / dim), float(sgx / dim));
  });
}

void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t dim, float eps) {
  parallel_chunks(rows, double(dim) * 2, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * dim;
      double ss = dot(xr, xr, dim);
      double rs = 1.0 / std::sqrt(ss / double(dim) + double(eps));
      rstd[r] = float(rs);
#if FT_X86
      if (use_avx512()) {
        affine_norm_row_avx512(xr, w, nullptr, y + r * dim, dim, 0.f, float(rs));
        continue;
      }
#endif
      for (int64_t i = 0; i < dim; i++) y[r * dim + i] = float(double(xr[i]) * rs * (w ? w[i] : 1.f));
    }
  });
}

void rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                       int64_t rows, int64_t dim) {
  rows_with_param_grads(rows, dim, dw, nullptr, [&](int64_t r, double* dwAcc, double*) {
    const float *xr = x + r * dim, *dyr = dy + r * dim;
    double sg, sgx;
    norm_bwd_sums(xr, w, dyr, dim, 0.f, rstd[r], &sg, &sgx, dwAcc, nullptr);
    norm_bwd_dx(xr, w, dyr, dx + r * dim, dim, 0.f, rstd[r], 0.f, float(sgx / dim));
  });
}

// ---------------------------------------------------------------------------------------------
// GroupNorm on [n, channels, spatial]
// ---------------------------------------------------------------------------------------------

void group_norm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t n,
                        int64_t channels, int64_t spatial, int64_t groups, float eps) {
  const int64_t cpg = channels / groups, gsize = cpg * spatial;
  parallel_chunks(n * groups, double(gsize) * 3, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int64_t g = t % groups;
      const float* xg = x + t * gsize;
      float* yg = y + t * gsize;
      double mu, m2;
      moments(xg, gsize, &mu, &m2);
      double rs = 1.0 / std::sqrt(m2 / double(gsize) + double(eps));
      mean[t] = float(mu);
      rstd[t] = float(rs);
      const float muF = float(mu);
      for (int64_t c = 0; c < cpg; c++) {
        const int64_t ch = g * cpg + c;
        // y = (x - mean) * scale + shift per channel
        const float scale = float(rs * (w ? w[ch] : 1.f));
        const float shift = b ? b[ch] : 0.f;
        const float* xc = xg + c * spatial;
        float* yc = yg + c * spatial;
#if FT_X86
        if (use_avx512()) {
          scale_shift_avx512(xc, yc, spatial, muF, scale, shift);
          continue;
        }
#endif
        for (int64_t s = 0; s < spatial; s++) yc[s] = (xc[s] - muF) * scale + shift;
      }
    }
  });
}

void group_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dw, float* db, int64_t n, int64_t channels, int64_t spatial, int64_t groups) {
  const int64_t cpg = channels / groups, gsize = cpg * spatial;
  const int T = num_threads();
  const int64_t items = n * groups;
  const bool parallel = T > 1 && double(items) * gsize >= 32768.0 && items >= 2;
  const int64_t tasks = parallel ? std::min<int64_t>(items, T) : 1;
  std::vector<double> dwAcc(dw ? tasks * channels : 0, 0.0), dbAcc(db ? tasks * channels : 0, 0.0);
  auto body = [&](int64_t task, int) {
    int64_t b0 = items * task / tasks, b1 = items * (task + 1) / tasks;
    for (int64_t t = b0; t < b1; t++) {
      const int64_t g = t % groups;
      const float *xg = x + t * gsize, *dyg = dy + t * gsize;
      float* dxg = dx + t * gsize;
      const double mu = mean[t], rs = rstd[t];
      double sg = 0, sgx = 0;
      for (int64_t c = 0; c < cpg; c++) {
        const int64_t ch = g * cpg + c;
        const double wc = w ? w[ch] : 1.0;
        double sdy = 0, sdyx = 0;
        norm_bwd_sums(xg + c * spatial, nullptr, dyg + c * spatial, spatial, float(mu), float(rs), &sdy, &sdyx, nullptr,
                      nullptr);
        sg += sdy * wc;
        sgx += sdyx * wc;
        if (dw) dwAcc[task * channels + ch] += sdyx;
        if (db) dbAcc[task * channels + ch] += sdy;
      }
      const double a = sg / double(gsize), cc = sgx / double(gsize);
      for (int64_t c = 0; c < cpg; c++) {
        const int64_t ch = g * cpg + c;
        const double wc = w ? w[ch] : 1.0;
#if FT_X86
        if (use_avx512()) {
          group_norm_dx_avx512(xg + c * spatial, dyg + c * spatial, dxg + c * spatial, spatial, float(mu), float(rs),
                               float(wc), float(a), float(cc));
          continue;
        }
#endif
        for (int64_t s = 0; s < spatial; s++) {
          const int64_t i = c * spatial + s;
          double xh = (double(xg[i]) - mu) * rs;
          dxg[i] = float(rs * (double(dyg[i]) * wc - a - xh * cc));
        }
      }
    }
  };
  if (tasks > 1) parallel_for(tasks, body);
  else body(0, 0);
  for (int64_t ch = 0; ch < channels; ch++) {
    if (dw) {
      double s = 0;
      for (int64_t t = 0; t < tasks; t++) s += dwAcc[t * channels + ch];
      dw[ch] = float(s);
    }
    if (db) {
      double s = 0;
      for (int64_t t = 0; t < tasks; t++) s += dbAcc[t * channels + ch];
      db[ch] = float(s);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// im2col / col2im
// ---------------------------------------------------------------------------------------------

void im2col(const float* x, float* cols, const ConvGeom& g) {
  const int64_t rows = g.channels * g.kh * g.kw, ncols = g.outH * g.outW;
  parallel_chunks(rows, double(ncols), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; row++) {
      const int64_t c = row / (g.kh * g.kw), ki = (row / g.kw) % g.kh, kj = row % g.kw;
      const float* xc = x + c * g.height * g.width;
      float* dst = cols + row * ncols;
      for (int64_t oh = 0; oh < g.outH; oh++) {
        const int64_t ih = oh * g.strideH - g.padTop + ki;
        float* d = dst + oh * g.outW;
        if (ih < 0 || ih >= g.height) {
          std::memset(d, 0, g.outW * sizeof(float));
          continue;
        }
        const float* src = xc + ih * g.width;
        if (g.strideW == 1) {  // a shifted copy of the input row with zero edges
          const int64_t off = kj - g.padLeft;  // iw = ow + off
          const int64_t lo = std::min(g.outW, std::max<int64_t>(0, -off));
          const int64_t hi = std::max(lo, std::min(g.outW, g.width - off));
          std::memset(d, 0, lo * sizeof(float));
          std::memcpy(d + lo, src + lo + off, (hi - lo) * sizeof(float));
          std::memset(d + hi, 0, (g.outW - hi) * sizeof(float));
          continue;
        }
        for (int64_t ow = 0; ow < g.outW; ow++) {
          const int64_t iw = ow * g.strideW - g.padLeft + kj;
          d[ow] = (iw >= 0 && iw < g.width) ? src[iw] : 0.f;
        }
      }
    }
  });
}

void col2im(const float* cols, float* dx, const ConvGeom& g) {
  const int64_t ncols = g.outH * g.outW, kk = g.kh * g.kw;
  // one channel per work item: rows of different channels never touch the same dx elements
  parallel_chunks(g.channels, double(kk) * ncols, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
      float* xc = dx + c * g.height * g.width;
      for (int64_t k = 0; k < kk; k++) {
        const int64_t ki = k / g.kw, kj = k % g.kw;
        const float* src = cols + (c * kk + k) * ncols;
        for (int64_t oh = 0; oh < g.outH; oh++) {
          const int64_t ih = oh * g.strideH - g.padTop + ki;
          if (ih < 0 || ih >= g.height) continue;
          float* drow = xc + ih * g.width;
          const float* s = src + oh * g.outW;
          if (g.strideW == 1) {
            const int64_t off = kj - g.padLeft;
            const int64_t lo = std::min(g.outW, std::max<int64_t>(0, -off));
            const int64_t hi = std::max(lo, std::min(g.outW, g.width - off));
            for (int64_t ow = lo; ow < hi; ow++) drow[ow + off] += s[ow];
            continue;
          }
          for (int64_t ow = 0; ow < g.outW; ow++) {
            const int64_t iw = ow * g.strideW - g.padLeft + kj;
            if (iw >= 0 && iw < g.width) drow[iw] += s[ow];
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// permute (4-byte elements)
// ---------------------------------------------------------------------------------------------

void permute4(const uint32_t* x, uint32_t* y, int ndim, const int64_t* shape, const int* perm) {
  // input strides, then output dims with their input strides; drop size-1 dims and merge runs
  std::vector<int64_t> inStride(ndim);
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    inStride[d] = s;
    s *= shape[d];
  }
  const int64_t total = s;
  std::vector<int64_t> osh, ost;
  for (int i = 0; i < ndim; i++) {
    int64_t len = shape[perm[i]], st = inStride[perm[i]];
    if (len == 1) continue;
    if (!osh.empty() && ost.back() == st * len) {
      osh.back() *= len;
      ost.back() = st;
    } else {
      osh.push_back(len);
      ost.push_back(st);
    }
  }
  if (osh.empty()) {
    if (total > 0) y[0] = x[0];
    return;
  }
  const int nd = static_cast<int>(osh.size());
  const int64_t inner = osh[nd - 1], innerStride = ost[nd - 1];
  const int64_t rows = total / inner;
  parallel_chunks(rows, double(inner), [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(nd, 0);
    int64_t rem = r0, off = 0;
    for (int d = nd - 2; d >= 0; d--) {
      idx[d] = rem % osh[d];
      rem /= osh[d];
      off += idx[d] * ost[d];
    }
    for (int64_t r = r0; r < r1; r++) {
      uint32_t* dst = y + r * inner;
      const uint32_t* src = x + off;
      if (innerStride == 1) std::memcpy(dst, src, inner * sizeof(uint32_t));
      else
        for (int64_t i = 0; i < inner; i++) dst[i] = src[i * innerStride];
      for (int d = nd - 2; d >= 0; d--) {
        idx[d]++;
        off += ost[d];
        if (idx[d] < osh[d]) break;
        off -= ost[d] * osh[d];
        idx[d] = 0;
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// AdamW
// ---------------------------------------------------------------------------------------------

namespace {
#if FT_X86
/** AdamW on 8 lanes at a time, in double (the update is a small difference of large terms). */
FT_AVX512 void adamw_avx512(const AdamWParams& p, int64_t b, int64_t e) {
  const __m512d b1 = _mm512_set1_pd(p.beta1), b2 = _mm512_set1_pd(p.beta2);
  const __m512d omb1 = _mm512_set1_pd(1.0 - p.beta1), omb2 = _mm512_set1_pd(1.0 - p.beta2);
  const __m512d decay = _mm512_set1_pd(1.0 - p.lr * p.weightDecay);
  const __m512d stepSize = _mm512_set1_pd(p.lr / p.biasCorrection1);
  const __m512d invBc2 = _mm512_set1_pd(1.0 / p.biasCorrection2);
  const __m512d eps = _mm512_set1_pd(p.eps);
  for (int64_t i = b; i < e; i += 8) {
    const int64_t n = std::min<int64_t>(8, e - i);
    const __mmask8 k = n >= 8 ? __mmask8(0xff) : __mmask8((1u << n) - 1);
    __m512d g = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, p.grad + i));
    __m512d m = _mm512_add_pd(_mm512_mul_pd(b1, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, p.m + i))), _mm512_mul_pd(omb1, g));
    __m512d v = _mm512_add_pd(_mm512_mul_pd(b2, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, p.v + i))),
                              _mm512_mul_pd(_mm512_mul_pd(omb2, g), g));
    __m512d denom = _mm512_add_pd(_mm512_sqrt_pd(_mm512_mul_pd(v, invBc2)), eps);
    __m512d w = _mm512_mul_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, p.param + i)), decay);
    w = _mm512_sub_pd(w, _mm512_div_pd(_mm512_mul_pd(stepSize, m), denom));
    _mm256_mask_storeu_ps(p.m + i, k, _mm512_cvtpd_ps(m));
    _mm256_mask_storeu_ps(p.v + i, k, _mm512_cvtpd_ps(v));
    _mm256_mask_storeu_ps(p.param + i, k, _mm512_cvtpd_ps(w));
  }
}
#endif
}  // namespace

void adamw(const AdamWParams& p) {
  parallel_chunks((p.n + 15) / 16, 16 * 4, [&](int64_t b16, int64_t e16) {
    const int64_t b = b16 * 16, e = std::min(p.n, e16 * 16);
#if FT_X86
    if (use_avx512()) {
      adamw_avx512(p, b, e);
      return;
    }
#endif
    const double decay = 1.0 - p.lr * p.weightDecay, stepSize = p.lr / p.biasCorrection1;
    const double invBc2 = 1.0 / p.biasCorrection2;
    for (int64_t i = b; i < e; i++) {
      const double g = p.grad[i];
      const double m = p.beta1 * p.m[i] + (1.0 - p.beta1) * g;
      const double v = p.beta2 * p.v[i] + (1.0 - p.beta2) * g * g;
      p.m[i] = float(m);
      p.v[i] = float(v);
      p.param[i] = float(p.param[i] * decay - stepSize * m / (std::sqrt(v * invBc2) + p.eps));
    }
  });
}

}  // namespace ft

// ---------------------------------------------------------------------------------------------
// Segment FMA (AdaLN modulation and gated residuals): rows of x pick a row of a (and of c) by seg
// ---------------------------------------------------------------------------------------------

namespace ft {

namespace {
#if FT_X86
/** o = x * a + c over n floats; returns n. */
FT_AVX512 int64_t fma_rows_avx512(const float* x, const float* a, const float* c, float* o, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = vm::tail_mask(n - i);
    __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, c + i));
    _mm512_mask_storeu_ps(o + i, k, v);
  }
  return n;
}
#endif
}  // namespace

void segment_fma_forward(const float* x, const float* a, const float* c, const int32_t* seg, float* out, int64_t rows,
                         int64_t dim, bool cPerRow) {
  parallel_chunks(rows, double(dim) * 2, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * dim;
      const float* ar = a + int64_t(seg[r]) * dim;
      const float* cr = c + (cPerRow ? r : int64_t(seg[r])) * dim;
      float* o = out + r * dim;
      int64_t i = 0;
#if FT_X86
      if (use_avx512()) i = fma_rows_avx512(xr, ar, cr, o, dim);
#endif
      for (; i < dim; i++) o[i] = xr[i] * ar[i] + cr[i];
    }
  });
}

void segment_fma_backward(const float* x, const float* a, const int32_t* seg, const float* dy, float* dx, float* da,
                          float* dc, int64_t rows, int64_t dim, int64_t segments) {
  // Columns are independent: each task owns a column range, so the per-segment sums need no merging.
  const int64_t colChunk = 64;
  const int64_t tasks = (dim + colChunk - 1) / colChunk;
  auto body = [&](int64_t t, int) {
    const int64_t j0 = t * colChunk, j1 = std::min(dim, j0 + colChunk), w = j1 - j0;
    std::vector<double> accA(da ? segments * w : 0, 0.0), accC(dc ? segments * w : 0, 0.0);
    for (int64_t r = 0; r < rows; r++) {
      const int64_t s = seg[r];
      const float* g = dy + r * dim;
      const float* ar = a + s * dim;
      if (dx) {
        float* d = dx + r * dim;
        for (int64_t j = j0; j < j1; j++) d[j] = g[j] * ar[j];
      }
      if (da) {
        const float* xr = x + r * dim;
        double* acc = accA.data() + s * w - j0;
        for (int64_t j = j0; j < j1; j++) acc[j] += double(g[j]) * double(xr[j]);
      }
      if (dc) {
        double* acc = accC.data() + s * w - j0;
        for (int64_t j = j0; j < j1; j++) acc[j] += double(g[j]);
      }
    }
    for (int64_t s = 0; s < segments; s++) {
      for (int64_t j = j0; j < j1; j++) {
        if (da) da[s * dim + j] = float(accA[s * w + j - j0]);
        if (dc) dc[s * dim + j] = float(accC[s * w + j - j0]);
      }
    }
  };
  if (num_threads() > 1 && tasks > 1 && double(rows) * dim >= 32768.0) parallel_for(tasks, body);
  else for (int64_t t = 0; t < tasks; t++) body(t, 0);
}

}  // namespace ft
