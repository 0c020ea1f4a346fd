// Elementwise, row-wise and data-movement kernels: unary ops, broadcast binary ops, reductions, softmax,
// layer/RMS/group norms, segment FMA, im2col/col2im, permute and AdamW. This file splits the work over the
// thread pool; the per-row building blocks come from the active ISA's KernelTable (kernels/*.inc, written
// once over the SIMD vocabulary of simd/). Sums and statistics are accumulated in double. The few ops
// without a vector form (log, atanh, sin, cos, pow, strided broadcasts) use the scalar double-math paths
// here. kernel_table() picks the back end.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"
#include "kernels/table.h"

namespace ft {

const KernelTable& kernel_table() {
  static const KernelTable* const generic = kernels_generic();
  switch (active_isa()) {
    case Isa::Avx512: return *kernels_avx512();
    case Isa::Avx2: return *kernels_avx2();
    case Isa::Neon: return *kernels_neon();
    case Isa::Wasm: return *kernels_wasm();
    default: return *generic;
  }
}

namespace {

constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluC = 0.044715;

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

}  // namespace

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n) {
  if (auto f = kernel_table().unaryFwd[int(op)]) {
    parallel_chunks((n + 15) / 16, 64, [&](int64_t b, int64_t e) {
      f(x + b * 16, y + b * 16, std::min(n, e * 16) - b * 16);
    });
    return;
  }
  parallel_chunks(n, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) y[i] = unary_scalar(op, x[i]);
  });
}

void unary_backward(UnaryOp op, const float* x, const float* y, const float* dy, float* dx, int64_t n, bool accumulate) {
  if (auto f = kernel_table().unaryBwd[int(op)]) {
    parallel_chunks((n + 15) / 16, 96, [&](int64_t b, int64_t e) {
      f(x + b * 16, y + b * 16, dy + b * 16, dx + b * 16, std::min(n, e * 16) - b * 16, accumulate);
    });
    return;
  }
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
  if (ia <= 1 && ib <= 1) row = kernel_table().binaryRow[int(op)];
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
double sum_contig(const float* x, int64_t n) { return kernel_table().sum(x, n); }
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
  const KernelTable& kt = kernel_table();
  parallel_chunks(outer * colBlocks, double(red) * 16, [&](int64_t b, int64_t e) {
    for (int64_t w = b; w < e; w++) {
      const int64_t o = w / colBlocks, c0 = (w % colBlocks) * 16, cnt = std::min<int64_t>(16, inner - c0);
      kt.sumCols(x + o * red * inner + c0, out + o * inner + c0, red, inner, cnt);
    }
  });
}

void reduce_max(const float* x, float* out, int32_t* argmax, int64_t outer, int64_t red, int64_t inner) {
  const KernelTable& kt = kernel_table();
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
      for (int64_t r = 1; r < red; r++) kt.maxUpdate(xs + r * inner, best.data(), bi.data(), int32_t(r), inner);
      std::memcpy(out + o * inner, best.data(), inner * sizeof(float));
      std::memcpy(argmax + o * inner, bi.data(), inner * sizeof(int32_t));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Softmax family
// ---------------------------------------------------------------------------------------------

void softmax_forward(const float* x, float* y, int64_t rows, int64_t dim) {
  const KernelTable& kt = kernel_table();
  parallel_chunks(rows, double(dim) * 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      float m = kt.rowMax(xr, dim);
      if (m == -std::numeric_limits<float>::infinity()) m = 0.f;  // all -inf: exp gives 0, sum 0 -> NaN like torch
      const double s = kt.expShiftSum(xr, yr, dim, m);
      kt.scale(yr, dim, float(1.0 / s));
    }
  });
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t dim) {
  const KernelTable& kt = kernel_table();
  parallel_chunks(rows, double(dim) * 2, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float *yr = y + r * dim, *dyr = dy + r * dim;
      kt.softmaxBwdRow(yr, dyr, dx + r * dim, dim, float(kt.dot(yr, dyr, dim)));
    }
  });
}

void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t dim) {
  const KernelTable& kt = kernel_table();
  parallel_chunks(rows, double(dim) * 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* xr = x + r * dim;
      float m = kt.rowMax(xr, dim);
      if (m == -std::numeric_limits<float>::infinity()) m = 0.f;
      const double s = kt.expShiftSum(xr, nullptr, dim, m);
      kt.addConst(xr, y + r * dim, dim, float(-(double(m) + std::log(s))));
    }
  });
}

void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t dim) {
  const KernelTable& kt = kernel_table();
  parallel_chunks(rows, double(dim) * 3, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float *yr = y + r * dim, *dyr = dy + r * dim;
      kt.logSoftmaxBwdRow(yr, dyr, dx + r * dim, dim, float(kt.sum(dyr, dim)));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// LayerNorm / RMSNorm
// ---------------------------------------------------------------------------------------------

namespace {

/** mean and sum of squared deviations of x (double). */
void moments(const KernelTable& kt, const float* x, int64_t n, double* meanOut, double* m2Out) {
  const double mean = kt.sum(x, n) / double(n);
  double m2 = kt.sqDevSum(x, n, float(mean));
  // correct for the float rounding of the mean: sum (x - m)^2 = sum (x - mf)^2 - n (m - mf)^2
  const double dm = mean - double(float(mean));
  m2 -= double(n) * dm * dm;
  *meanOut = mean;
  *m2Out = m2 < 0 ? 0 : m2;
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
  const KernelTable& kt = kernel_table();
  parallel_chunks(rows, double(dim) * 3, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * dim;
      double mu, m2;
      moments(kt, xr, dim, &mu, &m2);
      const double rs = 1.0 / std::sqrt(m2 / double(dim) + double(eps));
      mean[r] = float(mu);
      rstd[r] = float(rs);
      kt.affineNormRow(xr, w, b, y + r * dim, dim, float(mu), float(rs));
    }
  });
}

void layer_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dw, float* db, int64_t rows, int64_t dim) {
  const KernelTable& kt = kernel_table();
  rows_with_param_grads(rows, dim, dw, db, [&](int64_t r, double* dwAcc, double* dbAcc) {
    const float *xr = x + r * dim, *dyr = dy + r * dim;
    double sg, sgx;
    kt.normBwdSums(xr, w, dyr, dim, mean[r], rstd[r], &sg, &sgx, dwAcc, dbAcc);
    kt.normBwdDx(xr, w, dyr, dx + r * dim, dim, mean[r], rstd[r], float(sg / dim), float(sgx / dim));
  });
}

void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t dim, float eps) {
  const KernelTable& kt = kernel_table();
  parallel_chunks(rows, double(dim) * 2, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * dim;
      const double rs = 1.0 / std::sqrt(kt.dot(xr, xr, dim) / double(dim) + double(eps));
      rstd[r] = float(rs);
      kt.affineNormRow(xr, w, nullptr, y + r * dim, dim, 0.f, float(rs));
    }
  });
}

void rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                       int64_t rows, int64_t dim) {
  const KernelTable& kt = kernel_table();
  rows_with_param_grads(rows, dim, dw, nullptr, [&](int64_t r, double* dwAcc, double*) {
    const float *xr = x + r * dim, *dyr = dy + r * dim;
    double sg, sgx;
    kt.normBwdSums(xr, w, dyr, dim, 0.f, rstd[r], &sg, &sgx, dwAcc, nullptr);
    kt.normBwdDx(xr, w, dyr, dx + r * dim, dim, 0.f, rstd[r], 0.f, float(sgx / dim));
  });
}

// ---------------------------------------------------------------------------------------------
// GroupNorm on [n, channels, spatial]
// ---------------------------------------------------------------------------------------------

void group_norm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t n,
                        int64_t channels, int64_t spatial, int64_t groups, float eps) {
  const KernelTable& kt = kernel_table();
  const int64_t cpg = channels / groups, gsize = cpg * spatial;
  parallel_chunks(n * groups, double(gsize) * 3, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int64_t g = t % groups;
      const float* xg = x + t * gsize;
      float* yg = y + t * gsize;
      double mu, m2;
      moments(kt, xg, gsize, &mu, &m2);
      const double rs = 1.0 / std::sqrt(m2 / double(gsize) + double(eps));
      mean[t] = float(mu);
      rstd[t] = float(rs);
      for (int64_t c = 0; c < cpg; c++) {
        const int64_t ch = g * cpg + c;
        // y = (x - mean) * scale + shift per channel
        kt.scaleShift(xg + c * spatial, yg + c * spatial, spatial, float(mu), float(rs * (w ? w[ch] : 1.f)),
                      b ? b[ch] : 0.f);
      }
    }
  });
}

void group_norm_backward(const float* x, const float* w, const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dw, float* db, int64_t n, int64_t channels, int64_t spatial, int64_t groups) {
  const KernelTable& kt = kernel_table();
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
        kt.normBwdSums(xg + c * spatial, nullptr, dyg + c * spatial, spatial, float(mu), float(rs), &sdy, &sdyx, nullptr,
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
        kt.groupNormDx(xg + c * spatial, dyg + c * spatial, dxg + c * spatial, spatial, float(mu), float(rs), float(wc),
                       float(a), float(cc));
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

void adamw(const AdamWParams& p) {
  const KernelTable& kt = kernel_table();
  parallel_chunks((p.n + 15) / 16, 16 * 4, [&](int64_t b16, int64_t e16) {
    kt.adamw(p, b16 * 16, std::min(p.n, e16 * 16));
  });
}

// ---------------------------------------------------------------------------------------------
// Segment FMA (AdaLN modulation and gated residuals): rows of x pick a row of a (and of c) by seg
// ---------------------------------------------------------------------------------------------

void segment_fma_forward(const float* x, const float* a, const float* c, const int32_t* seg, float* out, int64_t rows,
                         int64_t dim, bool cPerRow) {
  const KernelTable& kt = kernel_table();
  parallel_chunks(rows, double(dim) * 2, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      kt.fmaRow(x + r * dim, a + int64_t(seg[r]) * dim, c + (cPerRow ? r : int64_t(seg[r])) * dim, out + r * dim, dim);
    }
  });
}

void segment_fma_backward(const float* x, const float* a, const int32_t* seg, const float* dy, float* dx, float* da,
                          float* dc, int64_t rows, int64_t dim, int64_t segments) {
  // Columns are independent: each task owns a column range, so the per-segment sums need no merging.
  const KernelTable& kt = kernel_table();
  const int64_t colChunk = 64;
  const int64_t tasks = (dim + colChunk - 1) / colChunk;
  auto body = [&](int64_t t, int) {
    const int64_t j0 = t * colChunk, j1 = std::min(dim, j0 + colChunk), w = j1 - j0;
    std::vector<double> accA(da ? segments * w : 0, 0.0), accC(dc ? segments * w : 0, 0.0);
    for (int64_t r = 0; r < rows; r++) {
      const int64_t s = seg[r];
      const float* g = dy + r * dim + j0;
      if (dx) kt.mulRow(g, a + s * dim + j0, dx + r * dim + j0, w);
      if (da) kt.accProductRow(g, x + r * dim + j0, accA.data() + s * w, w);
      if (dc) kt.accProductRow(g, nullptr, accC.data() + s * w, w);
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
