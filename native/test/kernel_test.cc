// Standalone test of the native kernels without Node: every entry of the KernelTable of each back end this
// binary holds (kernels/*.inc compiled by isa/*.cc) against a plain float64 reference written here, on odd
// shapes and tails (n = 0, 1, W-1, W, W+1, 2W+3, 37, 1000, ...), plus the packed GEMM of gemm.cc
// (ft::gemm, ft::gemm_serial) on odd m, n, k and both transposes. Built and run for x86-64, aarch64
// (under qemu-user) and wasm32 SIMD128 (under Node's WASI) by scripts/native-kernel-test.sh.
//
// Usage: kernel_test [-v] [--isa=LIST]   (LIST: comma-separated table names, e.g. avx2,scalar; default: every
//        back end in the binary that the CPU can run; FLEXTOK_ISA=... does the same). -v prints the worst
//        error / tolerance ratio of every check.
// Exit status 1 when any check fails; each failure prints the table, kernel, shape and worst error.
//
// Inputs live at the very end of a page followed by an inaccessible page (Linux), so a kernel that reads
// past p + n crashes; a SIGSEGV handler names the check that was running. Elsewhere (wasm) buffers carry
// canaries after their end, which must survive every call.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__linux__)
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#define KT_GUARD 1
#else
#define KT_GUARD 0
#endif

#include "../src/common.h"
#include "../src/kernels/table.h"

namespace {

using ft::KernelTable;
using ft::UnaryOp;
using ft::BinaryOp;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr float kInfF = std::numeric_limits<float>::infinity();
const float kNaNF = std::numeric_limits<float>::quiet_NaN();

#if defined(__x86_64__)
const char* const kTarget = "x86-64";
#elif defined(__aarch64__)
const char* const kTarget = "aarch64";
#elif defined(__wasm__)
const char* const kTarget = "wasm32";
#else
const char* const kTarget = "unknown";
#endif

// ---------------------------------------------------------------------------------------------
// Reporting

bool g_verbose = false;
const char* g_table = "";  // table under test
int64_t g_checks = 0, g_failures = 0, g_printed = 0;
char g_current[512] = "";  // the running check, for the crash handler

/** One named check: values are compared as they come; on destruction a failure prints the worst one. */
class Check {
 public:
  Check(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    va_list ap;
    va_start(ap, fmt);
    char buf[400];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    name_ = buf;
    std::snprintf(g_current, sizeof g_current, "[%s] %s", g_table, buf);
  }
  Check(const Check&) = delete;
  Check& operator=(const Check&) = delete;
  ~Check() {
    g_checks++;
    if (bad_ == 0 && note_.empty()) {
      if (g_verbose) std::printf("  ok   [%s] %s: %" PRId64 " values, worst err/tol %.3g\n", g_table, name_.c_str(), values_, worstRatio_);
      return;
    }
    g_failures++;
    if (g_printed++ >= 200) return;
    if (!note_.empty()) {
      std::printf("FAIL [%s] %s: %s\n", g_table, name_.c_str(), note_.c_str());
    }
    if (bad_) {
      std::printf("FAIL [%s] %s: worst error %.3g at [%" PRId64 "] (got %.9g, expected %.9g, tol %.3g); %" PRId64
                  " of %" PRId64 " values out of tolerance\n",
                  g_table, name_.c_str(), worstErr_, worstI_, worstGot_, worstWant_, worstTol_, bad_, values_);
    }
  }
  /** |got - want| <= tol; NaN must meet NaN and an infinite expectation must be met exactly. */
  void val(int64_t i, double got, double want, double tol) {
    values_++;
    double err;
    bool ok;
    if (std::isnan(want)) {
      ok = std::isnan(got);
      err = ok ? 0 : kInf;
    } else if (std::isinf(want)) {
      ok = got == want;
      err = ok ? 0 : kInf;
    } else {
      err = std::fabs(got - want);
      if (std::isnan(err)) err = kInf;
      ok = err <= tol;
    }
    const double ratio = err == 0 ? 0 : tol > 0 ? err / tol : kInf;
    if (!ok) bad_++;
    if (ratio > worstRatio_ || (!ok && worstI_ < 0)) {
      worstRatio_ = ratio;
      worstErr_ = err;
      worstI_ = i;
      worstGot_ = got;
      worstWant_ = want;
      worstTol_ = tol;
    }
  }
  void exact(int64_t i, double got, double want) { val(i, got, want, 0); }
  /** A failure that is not a numeric mismatch (canary overwritten, wrong index, ...). */
  void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    if (!note_.empty()) return;
    va_list ap;
    va_start(ap, fmt);
    char buf[300];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    note_ = buf;
  }

 private:
  std::string name_, note_;
  int64_t values_ = 0, bad_ = 0, worstI_ = -1;
  double worstRatio_ = 0, worstErr_ = 0, worstGot_ = 0, worstWant_ = 0, worstTol_ = 0;
};

/** Names the kernel call about to run, for the crash handler (a Check names itself when constructed). */
void running(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void running(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[400];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::snprintf(g_current, sizeof g_current, "[%s] %s", g_table, buf);
}

#if KT_GUARD
void on_crash(int sig) {
  char msg[700];
  const int len = std::snprintf(msg, sizeof msg, "CRASH (signal %d) in %s: a read or write past the end of a buffer?\n", sig,
                                g_current);
  if (len > 0) (void)!write(2, msg, size_t(len));
  _exit(2);
}
#endif

// ---------------------------------------------------------------------------------------------
// Buffers: the data ends at a page boundary followed by an inaccessible page (Linux) or by canaries.

template <class T>
class Buf {
 public:
  explicit Buf(int64_t n) : n_(n) {
#if KT_GUARD
    static const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t bytes = size_t(n) * sizeof(T);
    const size_t dataPages = (bytes + page - 1) / page;
    total_ = (dataPages + 1) * page;
    void* m = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      std::perror("mmap");
      std::exit(3);
    }
    base_ = static_cast<char*>(m);
    if (mprotect(base_ + dataPages * page, page, PROT_NONE) != 0) {
      std::perror("mprotect");
      std::exit(3);
    }
    p_ = reinterpret_cast<T*>(base_ + dataPages * page - bytes);
#else
    const size_t bytes = size_t(n) * sizeof(T) + kCanaryBytes;
    base_ = static_cast<char*>(std::malloc(bytes + 64));
    if (!base_) std::exit(3);
    p_ = reinterpret_cast<T*>(base_);
    std::memset(base_ + size_t(n) * sizeof(T), kCanary, kCanaryBytes);
#endif
  }
  Buf(int64_t n, T fill) : Buf(n) {
    for (int64_t i = 0; i < n; i++) p_[i] = fill;
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() {
#if KT_GUARD
    munmap(base_, total_);
#else
    std::free(base_);
#endif
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  T& operator[](int64_t i) { return p_[i]; }
  const T& operator[](int64_t i) const { return p_[i]; }
  int64_t size() const { return n_; }
  /** Fails the check when bytes past the end were written (only detectable without a guard page). */
  void check_tail(Check& c, const char* what) const {
#if !KT_GUARD
    const unsigned char* t = reinterpret_cast<const unsigned char*>(p_ + n_);
    size_t last = 0;
    for (size_t i = 0; i < kCanaryBytes; i++)
      if (t[i] != kCanary) last = i + 1;
    if (last) c.fail("%s: wrote past the end (bytes up to +%zu changed)", what, last);
#else
    (void)c;
    (void)what;
#endif
  }

 private:
  static constexpr size_t kCanaryBytes = 256;
  static constexpr unsigned char kCanary = 0xA7;
  int64_t n_;
  char* base_ = nullptr;
  size_t total_ = 0;
  T* p_ = nullptr;
};
using FBuf = Buf<float>;
using DBuf = Buf<double>;

// ---------------------------------------------------------------------------------------------
// Random numbers (deterministic)

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ull;
  }
  double uni() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
  float range(double lo, double hi) { return float(lo + (hi - lo) * uni()); }
};
Rng g_rng(12345);

void fill(FBuf& b, double lo, double hi) {
  for (int64_t i = 0; i < b.size(); i++) b[i] = g_rng.range(lo, hi);
}

/** Sizes around the vector width W and the x2/x6 unrolls, plus a few long ones. */
std::vector<int64_t> sizes(int W) {
  std::vector<int64_t> s = {0, 1, 2, 3, W - 1, W, W + 1, 2 * W - 1, 2 * W, 2 * W + 1, 2 * W + 3, 3 * W + 1, 4 * W + 5, 37, 64, 100, 1000};
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end()), s.end());
  s.erase(std::remove_if(s.begin(), s.end(), [](int64_t v) { return v < 0; }), s.end());
  return s;
}

// ---------------------------------------------------------------------------------------------
// Unary ops: float64 definitions (as rowops.cc's scalar paths, without the rounding)

constexpr double kSqrt2 = 1.4142135623730951, kSqrt2OverPi = 0.7978845608028654, kInvSqrt2Pi = 0.3989422804014327,
                 kGeluC = 0.044715;
double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double unary_ref(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return std::fabs(x);
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return 1.0 / std::sqrt(x);
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Sigmoid: return sigmoid_d(x);
    case UnaryOp::Silu: return x * sigmoid_d(x);
    case UnaryOp::GeluTanh: return x * sigmoid_d(2.0 * kSqrt2OverPi * (x + kGeluC * x * x * x));
    case UnaryOp::GeluErf: return 0.5 * x * std::erfc(-x / kSqrt2);
    case UnaryOp::Relu: return x > 0 ? x : (x != x ? x : 0.0);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Recip: return 1.0 / x;
    default: return NAN;
  }
}

/** f'(x) dy, with y = f(x) as the kernels get it (a float). */
double unary_grad_ref(UnaryOp op, double x, double y, double dy) {
  switch (op) {
    case UnaryOp::Neg: return -dy;
    case UnaryOp::Abs: return x > 0 ? dy : x < 0 ? -dy : 0.0 * dy;
    case UnaryOp::Exp: return y * dy;
    case UnaryOp::Sqrt: return 0.5 * dy / y;
    case UnaryOp::Rsqrt: return -0.5 * dy * y * y * y;
    case UnaryOp::Tanh: return dy * (1.0 - y * y);
    case UnaryOp::Sigmoid: return dy * y * (1.0 - y);
    case UnaryOp::Silu: {
      const double s = sigmoid_d(x);
      return dy * s * (1.0 + x * (1.0 - s));
    }
    case UnaryOp::GeluTanh: {
      const double s = sigmoid_d(2.0 * kSqrt2OverPi * (x + kGeluC * x * x * x));
      const double du = kSqrt2OverPi * (1.0 + 3.0 * kGeluC * x * x);
      return dy * (s + 2.0 * x * s * (1.0 - s) * du);
    }
    case UnaryOp::GeluErf: return dy * (0.5 * std::erfc(-x / kSqrt2) + x * kInvSqrt2Pi * std::exp(-0.5 * x * x));
    case UnaryOp::Relu: return x > 0 ? dy : 0.0;
    case UnaryOp::Square: return 2.0 * x * dy;
    case UnaryOp::Recip: return -dy * y * y;
    default: return NAN;
  }
}

/** Σ |terms| of unary_grad_ref: the scale of its rounding error (several gradients cancel, e.g. silu' near
 * x = -1.28, gelu' in the far negative tail). */
double unary_grad_mag(UnaryOp op, double x, double y, double dy) {
  const double ady = std::fabs(dy);
  switch (op) {
    case UnaryOp::Sigmoid: return ady * std::fabs(y) * (1.0 + std::fabs(y));
    case UnaryOp::Silu: {
      const double s = sigmoid_d(x);
      return ady * s * (1.0 + std::fabs(x) * (1.0 + s));
    }
    case UnaryOp::GeluTanh: {
      const double s = sigmoid_d(2.0 * kSqrt2OverPi * (x + kGeluC * x * x * x));
      const double du = kSqrt2OverPi * (1.0 + 3.0 * kGeluC * x * x);
      return ady * (s + 2.0 * std::fabs(x) * s * (1.0 - s) * du);
    }
    case UnaryOp::GeluErf: return ady * (0.5 * std::erfc(-x / kSqrt2) + std::fabs(x) * kInvSqrt2Pi * std::exp(-0.5 * x * x));
    default: return std::fabs(unary_grad_ref(op, x, y, dy));
  }
}

/** How much the exact gradient moves when x moves by one float ulp (the inherent error of computing it from a
 * float x; the ops that use y instead see no change). */
double unary_grad_cond(UnaryOp op, double x, double y, double dy) {
  const double g = unary_grad_ref(op, x, y, dy);
  const double up = unary_grad_ref(op, x * (1 + 1.2e-7), y, dy), dn = unary_grad_ref(op, x * (1 - 1.2e-7), y, dy);
  const double c = std::max(std::fabs(up - g), std::fabs(dn - g));
  return std::isfinite(c) ? c : 0.0;
}

/** The float result a float64 value rounds to when it is out of float range (inf), else the value itself. */
double in_float_range(double e) {
  const double e32 = double(float(e));
  return std::isinf(e32) && std::isfinite(e) ? e32 : e;
}

struct UnaryCase {
  UnaryOp op;
  const char* name;
  double lo, hi;
  bool infSpecials;  // ±inf has an unambiguous value for this op
};
const UnaryCase kUnary[] = {
    {UnaryOp::Neg, "neg", -3, 3, true},          {UnaryOp::Abs, "abs", -3, 3, true},
    {UnaryOp::Exp, "exp", -80, 80, true},        {UnaryOp::Sqrt, "sqrt", 1e-3, 100, true},
    {UnaryOp::Rsqrt, "rsqrt", 1e-3, 100, true},  {UnaryOp::Tanh, "tanh", -12, 12, true},
    {UnaryOp::Sigmoid, "sigmoid", -30, 30, true}, {UnaryOp::Silu, "silu", -30, 30, false},
    {UnaryOp::GeluTanh, "gelu_tanh", -12, 12, false}, {UnaryOp::GeluErf, "gelu_erf", -12, 12, false},
    {UnaryOp::Relu, "relu", -3, 3, true},        {UnaryOp::Square, "square", -3, 3, true},
    {UnaryOp::Recip, "recip", 0.05, 20, true},
};

void test_unary(const KernelTable& t) {
  // which ops have a vector form
  for (int op = 0; op < int(UnaryOp::Count); op++) {
    const UnaryOp u = UnaryOp(op);
    const bool scalarOnly = u == UnaryOp::Log || u == UnaryOp::Atanh || u == UnaryOp::Sin || u == UnaryOp::Cos;
    Check c("unary table entry %d", op);
    if (scalarOnly && (t.unaryFwd[op] || t.unaryBwd[op])) c.fail("op %d has no vector form but a table entry", op);
    if (!scalarOnly && (!t.unaryFwd[op] || !t.unaryBwd[op])) c.fail("op %d lacks a vector kernel", op);
  }
  for (const UnaryCase& uc : kUnary) {
    auto fwd = t.unaryFwd[int(uc.op)];
    auto bwd = t.unaryBwd[int(uc.op)];
    if (!fwd || !bwd) continue;
    for (int64_t n : sizes(t.lanes)) {
      FBuf x(n), y(n), dy(n), dx(n), yref(n);
      fill(x, uc.lo, uc.hi);
      if (n > 1) x[0] = float(0.5 * (uc.lo + uc.hi));  // 0 for symmetric ranges
      for (int64_t i = 0; i < n; i++) y[i] = kNaNF;
      {
        Check c("%s forward n=%" PRId64, uc.name, n);
        fwd(x.data(), y.data(), n);
        for (int64_t i = 0; i < n; i++) {
          const double e = unary_ref(uc.op, x[i]);
          const double cond = std::fabs(double(x[i]) * unary_grad_ref(uc.op, x[i], e, 1.0));
          c.val(i, y[i], e, 1e-6 * std::fabs(e) + 1.2e-7 * cond + 1e-37);
        }
        y.check_tail(c, "y");
      }
      for (int64_t i = 0; i < n; i++) yref[i] = float(unary_ref(uc.op, x[i]));
      fill(dy, -1, 1);
      for (int acc = 0; acc < 2; acc++) {
        for (int64_t i = 0; i < n; i++) dx[i] = acc ? 0.25f : kNaNF;
        Check c("%s backward n=%" PRId64 " acc=%d", uc.name, n, acc);
        bwd(x.data(), yref.data(), dy.data(), dx.data(), n, acc != 0);
        for (int64_t i = 0; i < n; i++) {
          const double g = unary_grad_ref(uc.op, x[i], yref[i], dy[i]);
          const double e = (acc ? 0.25 : 0.0) + g;
          c.val(i, dx[i], e,
                3e-6 * (std::fabs(e) + unary_grad_mag(uc.op, x[i], yref[i], dy[i])) + 2 * unary_grad_cond(uc.op, x[i], yref[i], dy[i]) +
                    1e-30);
        }
        dx.check_tail(c, "dx");
      }
    }
    // special values (each also in a full vector and in a tail)
    std::vector<float> sp = {0.f, -0.f, 1.f, -1.f, 1e-30f, -1e-30f, 0.5f, -0.5f, 30.f, -30.f, 88.f, -88.f, 100.f, -100.f,
                             1e4f, -1e4f, 1e30f, -1e30f, kNaNF};
    if (uc.infSpecials) {
      sp.push_back(kInfF);
      sp.push_back(-kInfF);
    }
    const int64_t n = int64_t(sp.size());
    FBuf x(n), y(n);
    for (int64_t i = 0; i < n; i++) x[i] = sp[i];
    Check c("%s forward special values", uc.name);
    fwd(x.data(), y.data(), n);
    for (int64_t i = 0; i < n; i++) {
      const double e = unary_ref(uc.op, x[i]);
      double cond = std::fabs(double(x[i]) * unary_grad_ref(uc.op, x[i], e, 1.0));
      if (!std::isfinite(cond)) cond = 0;
      c.val(i, y[i], in_float_range(e), 1e-6 * std::fabs(e) + 1.2e-7 * cond + 1e-37);
    }
    // backward at finite special values, y = f(x) in float as the engine passes it. gelu_tanh' is NaN once x² overflows
    // float (|x| > 1.8e19: s (1 - s) = 0 times du = inf), so it stops at 1e4.
    std::vector<float> bs = {0.f, -0.f, 1.f, -1.f, 1e-30f, -1e-30f, 30.f, -30.f, 88.f, -88.f, 100.f, -100.f, 1e4f, -1e4f};
    if (uc.op != UnaryOp::GeluTanh) {
      bs.push_back(1e30f);
      bs.push_back(-1e30f);
    }
    const int64_t nb = int64_t(bs.size());
    FBuf bx(nb), by(nb), bdy(nb, 1.f), bdx(nb);
    for (int64_t i = 0; i < nb; i++) bx[i] = bs[i], by[i] = float(unary_ref(uc.op, bs[i]));
    Check cb("%s backward special values", uc.name);
    bwd(bx.data(), by.data(), bdy.data(), bdx.data(), nb, false);
    for (int64_t i = 0; i < nb; i++) {
      const double e = unary_grad_ref(uc.op, bx[i], by[i], 1.0);
      double mag = unary_grad_mag(uc.op, bx[i], by[i], 1.0);
      if (!std::isfinite(mag)) mag = 0;
      cb.val(i, bdx[i], in_float_range(e), 3e-6 * (std::fabs(e) + mag) + 2 * unary_grad_cond(uc.op, bx[i], by[i], 1.0) + 1e-30);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Binary rows

double binary_ref(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return float(a + b);
    case BinaryOp::Sub: return float(a - b);
    case BinaryOp::Mul: return float(a * b);
    case BinaryOp::Div: return float(a / b);
    case BinaryOp::Max: return (a != a || b != b) ? NAN : std::max(a, b);
    case BinaryOp::Min: return (a != a || b != b) ? NAN : std::min(a, b);
    default: return NAN;
  }
}

void test_binary(const KernelTable& t) {
  const struct {
    BinaryOp op;
    const char* name;
  } ops[] = {{BinaryOp::Add, "add"}, {BinaryOp::Sub, "sub"}, {BinaryOp::Mul, "mul"},
             {BinaryOp::Div, "div"}, {BinaryOp::Max, "max"}, {BinaryOp::Min, "min"}};
  {
    Check c("binary table entries");
    if (t.binaryRow[int(BinaryOp::Pow)]) c.fail("pow has no vector form but a table entry");
    for (const auto& o : ops)
      if (!t.binaryRow[int(o.op)]) c.fail("%s lacks a vector kernel", o.name);
  }
  for (const auto& o : ops) {
    auto row = t.binaryRow[int(o.op)];
    if (!row) continue;
    for (int64_t n : sizes(t.lanes)) {
      for (int sa = 0; sa < 2; sa++)
        for (int sb = 0; sb < 2; sb++) {
          const int64_t na = sa ? n : (n ? 1 : 0), nb = sb ? n : (n ? 1 : 0);
          if (n == 0 && (!sa || !sb)) continue;  // a broadcast operand reads one element
          FBuf a(na), b(nb), out(n, kNaNF);
          fill(a, -2, 2);
          fill(b, -2, 2);
          if (o.op == BinaryOp::Max || o.op == BinaryOp::Min) {
            // NaN on either side, equal values, ±inf, signed zeros
            if (na > 0) a[na - 1] = kNaNF;
            if (nb > 2) b[1] = kNaNF;
            if (na > 3 && nb > 3) a[3] = b[3];
            if (na > 4) a[4] = kInfF;
            if (nb > 5) b[5] = -kInfF;
            if (na > 6 && nb > 6) a[6] = 0.f, b[6] = -0.f;
          }
          if (o.op == BinaryOp::Div && nb > 2) b[2] = 0.f;  // ±inf or NaN
          Check c("%s row n=%" PRId64 " strides a=%d b=%d", o.name, n, sa, sb);
          row(a.data(), sa, b.data(), sb, out.data(), n);
          for (int64_t i = 0; i < n; i++) c.exact(i, out[i], binary_ref(o.op, a[sa ? i : 0], b[sb ? i : 0]));
          out.check_tail(c, "out");
        }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reductions

void test_reductions(const KernelTable& t) {
  for (int64_t n : sizes(t.lanes)) {
    FBuf x(n), y(n);
    fill(x, -1, 3);
    fill(y, -2, 2);
    double s = 0, sa = 0, d = 0, da = 0;
    for (int64_t i = 0; i < n; i++) {
      s += x[i];
      sa += std::fabs(x[i]);
      d += double(x[i]) * y[i];
      da += std::fabs(double(x[i]) * y[i]);
    }
    {
      Check c("sum n=%" PRId64, n);
      c.val(0, t.sum(x.data(), n), s, 1e-13 * sa + 1e-300);
    }
    {
      // products are rounded to float, then summed in double
      Check c("dot n=%" PRId64, n);
      c.val(0, t.dot(x.data(), y.data(), n), d, 6.5e-8 * da + 1e-300);
    }
  }
  // sumCols: out[i] = Σ_r x[r*inner + i], cnt <= 16
  for (int64_t cnt : {int64_t(1), int64_t(2), int64_t(3), int64_t(t.lanes - 1), int64_t(t.lanes), int64_t(t.lanes + 1),
                      int64_t(7), int64_t(9), int64_t(15), int64_t(16)}) {
    if (cnt < 1 || cnt > 16) continue;
    for (int64_t red : {0, 1, 2, 5, 37}) {
      for (int64_t extra : {0, 3}) {
        const int64_t inner = cnt + extra;
        const int64_t len = red == 0 ? 0 : (red - 1) * inner + cnt;
        FBuf x(len), out(cnt, kNaNF);
        fill(x, -1, 2);
        Check c("sumCols cnt=%" PRId64 " red=%" PRId64 " inner=%" PRId64, cnt, red, inner);
        t.sumCols(x.data(), out.data(), red, inner, cnt);
        for (int64_t i = 0; i < cnt; i++) {
          double e = 0, b = 0;
          for (int64_t r = 0; r < red; r++) {
            e += x[r * inner + i];
            b += std::fabs(x[r * inner + i]);
          }
          c.val(i, out[i], e, 1.2e-7 * std::fabs(e) + 1e-13 * b + 1e-38);  // one float ulp
        }
        out.check_tail(c, "out");
      }
    }
  }
  // maxUpdate: take where v > best, or v is NaN and best is not
  for (int64_t n : sizes(t.lanes)) {
    FBuf v(n), best(n);
    Buf<int32_t> idx(n);
    fill(v, -1, 1);
    fill(best, -1, 1);
    for (int64_t i = 0; i < n; i++) {
      idx[i] = int32_t(100 + i);
      switch (i % 7) {
        case 1: v[i] = kNaNF; break;                 // NaN beats a number
        case 2: v[i] = kNaNF, best[i] = kNaNF; break;  // NaN stays
        case 3: best[i] = kNaNF; break;              // a number never beats NaN
        case 4: v[i] = best[i]; break;               // ties keep the first
        case 5: v[i] = kInfF; break;
        case 6: best[i] = -kInfF; break;
        default: break;
      }
    }
    std::vector<float> b0(best.data(), best.data() + n);
    Check c("maxUpdate n=%" PRId64, n);
    t.maxUpdate(v.data(), best.data(), idx.data(), 7, n);
    for (int64_t i = 0; i < n; i++) {
      const bool take = v[i] > b0[i] || (v[i] != v[i] && b0[i] == b0[i]);
      const float e = take ? v[i] : b0[i];
      c.exact(i, best[i], e);
      if (idx[i] != (take ? 7 : int32_t(100 + i)))
        c.fail("idx[%" PRId64 "] = %d, expected %d", i, idx[i], take ? 7 : int(100 + i));
    }
    best.check_tail(c, "best");
    idx.check_tail(c, "idx");
  }
}

// ---------------------------------------------------------------------------------------------
// Softmax family

void test_softmax(const KernelTable& t) {
  for (int64_t n : sizes(t.lanes)) {
    FBuf x(n);
    fill(x, -20, 20);
    // rowMax: plain, with -inf, with a NaN in every position class
    {
      double e = -kInf;
      for (int64_t i = 0; i < n; i++) e = std::max<double>(e, x[i]);
      Check c("rowMax n=%" PRId64, n);
      c.exact(0, t.rowMax(x.data(), n), e);
    }
    if (n > 0) {
      FBuf ninf(n, -kInfF);
      Check c("rowMax all -inf n=%" PRId64, n);
      c.exact(0, t.rowMax(ninf.data(), n), -kInf);
      for (int64_t pos : {int64_t(0), n / 2, n - 1}) {
        FBuf z(n);
        for (int64_t i = 0; i < n; i++) z[i] = x[i];
        z[pos] = kNaNF;
        Check cn("rowMax NaN at %" PRId64 " n=%" PRId64, pos, n);
        cn.exact(0, t.rowMax(z.data(), n), NAN);
      }
    }
    // expShiftSum with y and without, m = the row max and m above it, with -inf entries
    for (int variant = 0; variant < 3; variant++) {
      FBuf z(n), y(n, kNaNF);
      for (int64_t i = 0; i < n; i++) z[i] = x[i];
      if (variant == 2)
        for (int64_t i = 1; i < n; i += 3) z[i] = -kInfF;
      double mx = -kInf;
      for (int64_t i = 0; i < n; i++) mx = std::max<double>(mx, z[i]);
      const float m = n == 0 ? 0.f : variant == 1 ? float(mx + 3.0) : float(mx);
      Check c("expShiftSum n=%" PRId64 " variant=%d", n, variant);
      const double s = t.expShiftSum(z.data(), y.data(), n, m);
      const double s2 = t.expShiftSum(z.data(), nullptr, n, m);
      double es = 0;
      for (int64_t i = 0; i < n; i++) {
        const double e = std::exp(double(z[i]) - double(m));
        es += e;
        c.val(i, y[i], e, 1e-6 * e + 1e-38);
      }
      c.val(n, s, es, 1e-6 * es + 1e-300);
      c.val(n + 1, s2, es, 1e-6 * es + 1e-300);
      y.check_tail(c, "y");
    }
    // scale, addConst (exact float ops)
    {
      FBuf y(n);
      for (int64_t i = 0; i < n; i++) y[i] = x[i];
      Check c("scale n=%" PRId64, n);
      t.scale(y.data(), n, 0.37f);
      for (int64_t i = 0; i < n; i++) c.exact(i, y[i], float(x[i] * 0.37f));
      y.check_tail(c, "y");
    }
    {
      FBuf y(n, kNaNF);
      Check c("addConst n=%" PRId64, n);
      t.addConst(x.data(), y.data(), n, -1.25f);
      for (int64_t i = 0; i < n; i++) c.exact(i, y[i], float(x[i] + -1.25f));
      y.check_tail(c, "y");
    }
    // backward rows: dx = y (dy - s); dx = dy - exp(y) s
    {
      FBuf y(n), dy(n), dx(n, kNaNF);
      fill(y, 0, 1);
      fill(dy, -1, 1);
      const float s = 0.3125f;
      Check c("softmaxBwdRow n=%" PRId64, n);
      t.softmaxBwdRow(y.data(), dy.data(), dx.data(), n, s);
      for (int64_t i = 0; i < n; i++) {
        const double e = double(y[i]) * (double(dy[i]) - s);
        c.val(i, dx[i], e, 2.5e-7 * std::fabs(double(y[i])) * (std::fabs(dy[i]) + s) + 1e-38);
      }
      dx.check_tail(c, "dx");
    }
    {
      FBuf y(n), dy(n), dx(n, kNaNF);
      fill(y, -20, 0);
      if (n > 2) y[2] = -kInfF;
      fill(dy, -1, 1);
      const float s = -0.75f;
      Check c("logSoftmaxBwdRow n=%" PRId64, n);
      t.logSoftmaxBwdRow(y.data(), dy.data(), dx.data(), n, s);
      for (int64_t i = 0; i < n; i++) {
        const double p = std::exp(double(y[i]));
        const double e = double(dy[i]) - p * s;
        c.val(i, dx[i], e, 1e-6 * (std::fabs(dy[i]) + p * std::fabs(s)) + 1e-38);
      }
      dx.check_tail(c, "dx");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Norms

void test_norms(const KernelTable& t) {
  for (int64_t n : sizes(t.lanes)) {
    FBuf x(n), w(n), b(n), dy(n);
    fill(x, -3, 5);
    fill(w, -1.5, 1.5);
    fill(b, -1, 1);
    fill(dy, -1, 1);
    const float mean = 0.8125f, rstd = 0.4375f;
    {
      Check c("sqDevSum n=%" PRId64, n);
      double e = 0;
      for (int64_t i = 0; i < n; i++) e += (double(x[i]) - mean) * (double(x[i]) - mean);
      c.val(0, t.sqDevSum(x.data(), n, mean), e, 2.5e-7 * e + 1e-300);
    }
    for (int mode = 0; mode < 4; mode++) {
      const bool hw = mode & 1, hb = mode & 2;
      FBuf y(n, kNaNF);
      Check c("affineNormRow n=%" PRId64 " w=%d b=%d", n, int(hw), int(hb));
      t.affineNormRow(x.data(), hw ? w.data() : nullptr, hb ? b.data() : nullptr, y.data(), n, mean, rstd);
      for (int64_t i = 0; i < n; i++) {
        const double xh = (double(x[i]) - mean) * rstd;
        const double e = xh * (hw ? w[i] : 1.0) + (hb ? b[i] : 0.0);
        c.val(i, y[i], e, 3.6e-7 * (std::fabs(xh * (hw ? w[i] : 1.0)) + (hb ? std::fabs(b[i]) : 0.0)) + 1e-38);
      }
      y.check_tail(c, "y");
    }
    for (int mode = 0; mode < 8; mode++) {
      const bool hw = mode & 1, hdw = mode & 2, hdb = mode & 4;
      DBuf dwAcc(n), dbAcc(n);
      std::vector<double> dw0(n), db0(n);
      for (int64_t i = 0; i < n; i++) dwAcc[i] = dw0[i] = 0.5 + 0.001 * double(i), dbAcc[i] = db0[i] = -0.25 * double(i % 5);
      double sg = NAN, sgx = NAN;
      Check c("normBwdSums n=%" PRId64 " w=%d dwAcc=%d dbAcc=%d", n, int(hw), int(hdw), int(hdb));
      t.normBwdSums(x.data(), hw ? w.data() : nullptr, dy.data(), n, mean, rstd, &sg, &sgx, hdw ? dwAcc.data() : nullptr,
                    hdb ? dbAcc.data() : nullptr);
      double eg = 0, egx = 0, bg = 0, bgx = 0;
      for (int64_t i = 0; i < n; i++) {
        const double g = double(dy[i]) * (hw ? w[i] : 1.0), xh = (double(x[i]) - mean) * rstd;
        eg += g;
        egx += g * xh;
        bg += std::fabs(g);
        bgx += std::fabs(g * xh);
        if (hdw) c.val(i, dwAcc[i], dw0[i] + double(dy[i]) * xh, 2.5e-7 * std::fabs(double(dy[i]) * xh) + 1e-15 * std::fabs(dw0[i]));
        else c.exact(i, dwAcc[i], dw0[i]);
        if (hdb) c.val(i, dbAcc[i], db0[i] + double(dy[i]), 1e-15 * (std::fabs(db0[i]) + std::fabs(dy[i])));
        else c.exact(i, dbAcc[i], db0[i]);
      }
      c.val(n, sg, eg, 6.5e-8 * bg + 1e-300);
      c.val(n + 1, sgx, egx, 3e-7 * bgx + 1e-300);
    }
    for (int hw = 0; hw < 2; hw++) {
      FBuf dx(n, kNaNF);
      const float a = 0.15625f, cc = -0.40625f;
      Check c("normBwdDx n=%" PRId64 " w=%d", n, hw);
      t.normBwdDx(x.data(), hw ? w.data() : nullptr, dy.data(), dx.data(), n, mean, rstd, a, cc);
      for (int64_t i = 0; i < n; i++) {
        const double g = double(dy[i]) * (hw ? w[i] : 1.0), xh = (double(x[i]) - mean) * rstd;
        const double e = rstd * (g - a - xh * cc);
        c.val(i, dx[i], e, 3.6e-7 * rstd * (std::fabs(g) + std::fabs(a) + std::fabs(xh * cc)) + 1e-38);
      }
      dx.check_tail(c, "dx");
    }
    {
      FBuf y(n, kNaNF);
      const float mu = -0.3f, sc = 1.7f, sh = 0.45f;
      Check c("scaleShift n=%" PRId64, n);
      t.scaleShift(x.data(), y.data(), n, mu, sc, sh);
      for (int64_t i = 0; i < n; i++) {
        const double e = (double(x[i]) - mu) * sc + sh;
        c.val(i, y[i], e, 2.5e-7 * (std::fabs((double(x[i]) - mu) * sc) + std::fabs(sh)) + 1e-38);
      }
      y.check_tail(c, "y");
    }
    {
      FBuf dx(n, kNaNF);
      const float wc = -1.3f, a = 0.21875f, cc = 0.34375f;
      Check c("groupNormDx n=%" PRId64, n);
      t.groupNormDx(x.data(), dy.data(), dx.data(), n, mean, rstd, wc, a, cc);
      for (int64_t i = 0; i < n; i++) {
        const double g = double(dy[i]) * wc, xh = (double(x[i]) - mean) * rstd;
        const double e = rstd * (g - a - xh * cc);
        c.val(i, dx[i], e, 3.6e-7 * rstd * (std::fabs(g) + std::fabs(a) + std::fabs(xh * cc)) + 1e-38);
      }
      dx.check_tail(c, "dx");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Segment FMA

void test_segment(const KernelTable& t) {
  for (int64_t n : sizes(t.lanes)) {
    FBuf x(n), a(n), cc(n), g(n);
    fill(x, -2, 2);
    fill(a, -2, 2);
    fill(cc, -2, 2);
    fill(g, -1, 1);
    {
      FBuf o(n, kNaNF);
      Check c("fmaRow n=%" PRId64, n);
      t.fmaRow(x.data(), a.data(), cc.data(), o.data(), n);
      for (int64_t i = 0; i < n; i++) {
        const double e = double(x[i]) * a[i] + cc[i];
        c.val(i, o[i], e, 1.2e-7 * (std::fabs(double(x[i]) * a[i]) + std::fabs(cc[i])) + 1e-38);
      }
      o.check_tail(c, "o");
    }
    {
      FBuf d(n, kNaNF);
      Check c("mulRow n=%" PRId64, n);
      t.mulRow(g.data(), a.data(), d.data(), n);
      for (int64_t i = 0; i < n; i++) c.exact(i, d[i], float(g[i] * a[i]));
      d.check_tail(c, "d");
    }
    for (int hx = 0; hx < 2; hx++) {
      DBuf acc(n);
      std::vector<double> acc0(n);
      for (int64_t i = 0; i < n; i++) acc[i] = acc0[i] = 1.0 / double(i + 3);
      Check c("accProductRow n=%" PRId64 " x=%d", n, hx);
      t.accProductRow(g.data(), hx ? x.data() : nullptr, acc.data(), n);
      for (int64_t i = 0; i < n; i++) {
        const double p = hx ? double(g[i]) * double(x[i]) : double(g[i]);
        c.val(i, acc[i], acc0[i] + p, 2.3e-16 * (std::fabs(acc0[i]) + std::fabs(p)));
      }
      acc.check_tail(c, "acc");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AdamW

void test_adamw(const KernelTable& t) {
  for (int64_t n : sizes(t.lanes)) {
    for (int64_t begin : {int64_t(0), int64_t(1), int64_t(3)}) {
      if (begin > n) continue;
      for (int64_t endCut : {int64_t(0), int64_t(2)}) {
        const int64_t end = std::max(begin, n - endCut);
        FBuf param(n), grad(n), m(n), v(n);
        fill(param, -1, 1);
        fill(grad, -1, 1);
        fill(m, -0.1, 0.1);
        fill(v, 0, 0.1);
        const std::vector<float> p0(param.data(), param.data() + n), m0(m.data(), m.data() + n), v0(v.data(), v.data() + n);
        ft::AdamWParams p{param.data(), grad.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.95, 1e-8, 0.05,
                          1 - std::pow(0.9, 3), 1 - std::pow(0.95, 3)};
        Check c("adamw n=%" PRId64 " range [%" PRId64 ", %" PRId64 ")", n, begin, end);
        t.adamw(p, begin, end);
        const double decay = 1.0 - p.lr * p.weightDecay, step = p.lr / p.biasCorrection1;
        for (int64_t i = 0; i < n; i++) {
          if (i < begin || i >= end) {
            c.exact(i, param[i], p0[i]);
            c.exact(i, m[i], m0[i]);
            c.exact(i, v[i], v0[i]);
            continue;
          }
          const double g = grad[i];
          const double em = p.beta1 * m0[i] + (1 - p.beta1) * g;
          const double ev = p.beta2 * v0[i] + (1 - p.beta2) * g * g;
          const double ep = p0[i] * decay - step * em / (std::sqrt(ev / p.biasCorrection2) + p.eps);
          // float64 arithmetic rounded once to float: one float ulp
          c.val(i, m[i], em, 1.2e-7 * std::fabs(em) + 1e-40);
          c.val(i, v[i], ev, 1.2e-7 * std::fabs(ev) + 1e-40);
          c.val(i, param[i], ep, 1.2e-7 * std::fabs(ep) + 1e-40);
        }
        param.check_tail(c, "param");
        m.check_tail(c, "m");
        v.check_tail(c, "v");
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tile GEMM and small-M dots

void test_tile_gemm(const KernelTable& t) {
  const int W = t.lanes;
  const int64_t Ms[] = {1, 2, 3, 4, 5, 6, 7, 13};
  const int64_t Ns[] = {1, W - 1, W, W + 1, 2 * W, 2 * W + 3, 37};
  const int64_t Ks[] = {0, 1, 5, 64};
  for (int64_t M : Ms)
    for (int64_t N : Ns)
      for (int64_t K : Ks) {
        if (N < 1) continue;
        const int64_t lda = K + 1, ldb = N + 2, ldc = N + 3;
        FBuf A(M * lda), B(K * ldb), C(M * ldc);
        fill(A, -1, 1);
        fill(B, -1, 1);
        for (int acc = 0; acc < 2; acc++) {
          fill(C, -1, 1);
          std::vector<float> c0(C.data(), C.data() + M * ldc);
          Check c("tileGemm M=%" PRId64 " N=%" PRId64 " K=%" PRId64 " acc=%d", M, N, K, acc);
          t.tileGemm(M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, acc != 0);
          for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < ldc; j++) {
              if (j >= N) {  // padding between rows
                if (i * ldc + j < M * ldc && !(C[i * ldc + j] == c0[i * ldc + j])) c.fail("wrote C[%" PRId64 ", %" PRId64 "] past N", i, j);
                continue;
              }
              double s = acc ? double(c0[i * ldc + j]) : 0.0, bnd = std::fabs(s);
              for (int64_t p = 0; p < K; p++) {
                s += double(A[i * lda + p]) * B[p * ldb + j];
                bnd += std::fabs(double(A[i * lda + p]) * B[p * ldb + j]);
              }
              c.val(i * ldc + j, C[i * ldc + j], s, 2e-6 * std::sqrt(double(K + 1)) * bnd + 1e-30);
            }
          C.check_tail(c, "C");
        }
      }
  for (int64_t M = 1; M <= 6; M++)
    for (int64_t K : {int64_t(1), int64_t(W - 1), int64_t(W), int64_t(W + 1), int64_t(2 * W + 3), int64_t(37), int64_t(100)})
      for (int64_t span : {int64_t(1), int64_t(2), int64_t(5)}) {
        if (K < 1) continue;
        const int64_t j0 = 3, j1 = j0 + span, lda = K + 2, ldb = K + 1, ldo = span + 1;
        FBuf A(M * lda), B(j1 * ldb), out(M * ldo, kNaNF);
        fill(A, -1, 1);
        fill(B, -1, 1);
        Check c("smallMDots M=%" PRId64 " K=%" PRId64 " j=[%" PRId64 ", %" PRId64 ")", M, K, j0, j1);
        t.smallMDots(M, K, A.data(), lda, B.data(), ldb, j0, j1, out.data(), ldo);
        for (int64_t r = 0; r < M; r++)
          for (int64_t j = j0; j < j1; j++) {
            double s = 0, bnd = 0;
            for (int64_t p = 0; p < K; p++) {
              s += double(A[r * lda + p]) * B[j * ldb + p];
              bnd += std::fabs(double(A[r * lda + p]) * B[j * ldb + p]);
            }
            c.val(r * ldo + (j - j0), out[r * ldo + (j - j0)], s, 2e-6 * std::sqrt(double(K + 1)) * bnd + 1e-30);
          }
        for (int64_t r = 0; r < M; r++)
          if (r * ldo + span < M * ldo && out[r * ldo + span] == out[r * ldo + span]) c.fail("wrote out[%" PRId64 ", %" PRId64 "] past j1", r, span);
        out.check_tail(c, "out");
      }
}

// ---------------------------------------------------------------------------------------------
// Attention (one forward tile / one backward head at a time, as attention.cc drives them)

enum class MaskKind { None, Causal, Random, PerBatchCausal, RandomCausal, CausalLast, BlockDiag };
const char* mask_name(MaskKind m) {
  switch (m) {
    case MaskKind::None: return "none";
    case MaskKind::Causal: return "causal";
    case MaskKind::Random: return "random (empty rows)";
    case MaskKind::PerBatchCausal: return "per-batch + causal";
    case MaskKind::CausalLast: return "causal_last (dense rows)";
    case MaskKind::BlockDiag: return "block-diagonal (dense rows)";
    default: return "random + causal";
  }
}

struct AttnCase {
  int64_t batch, heads, lq, lk, d;
  MaskKind mask;
};

void test_attention(const KernelTable& t) {
  const AttnCase cases[] = {
      {1, 1, 1, 1, 1, MaskKind::None},     {2, 3, 17, 17, 16, MaskKind::Causal},  {1, 2, 65, 130, 7, MaskKind::None},
      {1, 2, 130, 130, 24, MaskKind::Causal}, {2, 2, 70, 45, 8, MaskKind::Random}, {3, 2, 40, 45, 33, MaskKind::PerBatchCausal},
      {1, 2, 33, 140, 65, MaskKind::Random}, {1, 1, 67, 67, 5, MaskKind::RandomCausal}, {1, 1, 3, 200, 2, MaskKind::None},
      {2, 2, 150, 150, 16, MaskKind::CausalLast}, {1, 2, 141, 141, 8, MaskKind::BlockDiag},
  };
  for (const AttnCase& ac : cases) {
    const int64_t B = ac.batch, H = ac.heads, Lq = ac.lq, Lk = ac.lk, D = ac.d;
    FBuf q(B * Lq * H * D), k(B * Lk * H * D), v(B * Lk * H * D), dOut(B * Lq * H * D);
    fill(q, -2, 2);
    fill(k, -2, 2);
    fill(v, -1, 1);
    fill(dOut, -1, 1);
    const bool causal = ac.mask == MaskKind::Causal || ac.mask == MaskKind::PerBatchCausal || ac.mask == MaskKind::RandomCausal;
    const bool perBatch = ac.mask == MaskKind::PerBatchCausal;
    const bool structured = ac.mask == MaskKind::CausalLast || ac.mask == MaskKind::BlockDiag;
    const bool hasMask = ac.mask == MaskKind::Random || perBatch || ac.mask == MaskKind::RandomCausal || structured;
    Buf<uint8_t> mask(hasMask ? (perBatch ? B : 1) * Lq * Lk : 0);
    if (structured) {
      // rows whose allowed keys are one contiguous range (the kernels' dense-row path), ranges not on tile edges
      const int64_t prefix = 77;
      for (int64_t i = 0; i < Lq; i++) {
        int64_t lo = 0, hi = 0;
        if (ac.mask == MaskKind::CausalLast) hi = i < prefix ? prefix - 1 : i;  // patches see patches; the rest causal
        else lo = i < 53 ? 0 : i < 100 ? 53 : 100, hi = i < 53 ? 52 : i < 100 ? 99 : Lk - 1;
        for (int64_t j = 0; j < Lk; j++) mask[i * Lk + j] = j >= lo && j <= hi ? 1 : 0;
      }
    } else if (perBatch) {
      for (int64_t b = 0; b < B; b++) {
        const int64_t valid = std::max<int64_t>(1, Lk - 7 * (b + 1));
        for (int64_t i = 0; i < Lq; i++)
          for (int64_t j = 0; j < Lk; j++) mask[(b * Lq + i) * Lk + j] = j < valid ? 1 : 0;
      }
    } else if (hasMask) {
      for (int64_t i = 0; i < Lq; i++)
        for (int64_t j = 0; j < Lk; j++) mask[i * Lk + j] = i % 5 == 2 ? 0 : g_rng.uni() < 0.4 ? 1 : 0;
    }
    const int64_t maskStride = perBatch ? Lq * Lk : 0;
    const float scale = float(1.0 / std::sqrt(double(D)));
    auto allowed = [&](int64_t b, int64_t i, int64_t j) {
      if (causal && j > i) return false;
      return !hasMask || mask[b * maskStride + i * Lk + j] != 0;
    };
    // float64 reference forward and backward
    std::vector<double> out(B * Lq * H * D), lse(B * H * Lq), dq(B * Lq * H * D, 0.0), dk(B * Lk * H * D, 0.0),
        dv(B * Lk * H * D, 0.0);
    auto qi = [&](int64_t b, int64_t i, int64_t h) { return ((b * Lq + i) * H + h) * D; };
    auto ki = [&](int64_t b, int64_t j, int64_t h) { return ((b * Lk + j) * H + h) * D; };
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < Lq; i++) {
          std::vector<double> s(Lk, 0.0), p(Lk, 0.0);
          double mx = -kInf;
          for (int64_t j = 0; j < Lk; j++) {
            if (!allowed(b, i, j)) continue;
            double dot = 0;
            for (int64_t e = 0; e < D; e++) dot += double(q[qi(b, i, h) + e]) * k[ki(b, j, h) + e];
            s[j] = dot * scale;
            mx = std::max(mx, s[j]);
          }
          if (mx == -kInf) {
            lse[(b * H + h) * Lq + i] = -kInf;
            for (int64_t e = 0; e < D; e++) out[qi(b, i, h) + e] = 0;
            continue;
          }
          double sum = 0;
          for (int64_t j = 0; j < Lk; j++)
            if (allowed(b, i, j)) sum += std::exp(s[j] - mx);
          const double l = mx + std::log(sum);
          lse[(b * H + h) * Lq + i] = l;
          for (int64_t j = 0; j < Lk; j++)
            if (allowed(b, i, j)) p[j] = std::exp(s[j] - l);
          for (int64_t e = 0; e < D; e++) {
            double a = 0;
            for (int64_t j = 0; j < Lk; j++) a += p[j] * v[ki(b, j, h) + e];
            out[qi(b, i, h) + e] = a;
          }
          double Di = 0;
          for (int64_t e = 0; e < D; e++) Di += double(dOut[qi(b, i, h) + e]) * out[qi(b, i, h) + e];
          for (int64_t j = 0; j < Lk; j++) {
            if (!allowed(b, i, j)) continue;
            double dp = 0;
            for (int64_t e = 0; e < D; e++) dp += double(dOut[qi(b, i, h) + e]) * v[ki(b, j, h) + e];
            const double ds = p[j] * (dp - Di) * scale;
            for (int64_t e = 0; e < D; e++) {
              dv[ki(b, j, h) + e] += p[j] * dOut[qi(b, i, h) + e];
              dq[qi(b, i, h) + e] += ds * k[ki(b, j, h) + e];
              dk[ki(b, j, h) + e] += ds * q[qi(b, i, h) + e];
            }
          }
        }
    auto maxAbs = [](const std::vector<double>& a) {
      double m = 0;
      for (double x : a)
        if (std::isfinite(x)) m = std::max(m, std::fabs(x));
      return m;
    };
    // forward with the table's query tile and with an odd one (rows not a multiple of the register tile)
    for (int64_t BQ : {t.attentionQueryTile, int64_t(5)}) {
      FBuf o(B * Lq * H * D, kNaNF), ls(B * H * Lq, kNaNF);
      ft::AttentionParams p;
      p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = o.data(), p.lse = ls.data();
      p.mask = hasMask ? mask.data() : nullptr, p.maskBatchStride = maskStride;
      p.batch = B, p.heads = H, p.lq = Lq, p.lk = Lk, p.headDim = D, p.scale = scale, p.causal = causal;
      running("attentionForwardTile B=%" PRId64 " H=%" PRId64 " Lq=%" PRId64 " Lk=%" PRId64 " D=%" PRId64 " mask=%s tile=%" PRId64, B,
              H, Lq, Lk, D, mask_name(ac.mask), BQ);
      for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
          for (int64_t q0 = 0; q0 < Lq; q0 += BQ) t.attentionForwardTile(p, b, h, q0, std::min(BQ, Lq - q0));
      {
        Check c("attentionForwardTile B=%" PRId64 " H=%" PRId64 " Lq=%" PRId64 " Lk=%" PRId64 " D=%" PRId64 " mask=%s tile=%" PRId64 " out",
                B, H, Lq, Lk, D, mask_name(ac.mask), BQ);
        for (int64_t i = 0; i < int64_t(out.size()); i++) c.val(i, o[i], out[i], 1e-5 * std::fabs(out[i]) + 2e-6);
        o.check_tail(c, "out");
      }
      {
        Check c("attentionForwardTile B=%" PRId64 " H=%" PRId64 " Lq=%" PRId64 " Lk=%" PRId64 " D=%" PRId64 " mask=%s tile=%" PRId64 " lse",
                B, H, Lq, Lk, D, mask_name(ac.mask), BQ);
        for (int64_t i = 0; i < int64_t(lse.size()); i++) c.val(i, ls[i], lse[i], 1e-5 * std::fabs(lse[i]) + 2e-6);
        ls.check_tail(c, "lse");
      }
      if (BQ != t.attentionQueryTile) continue;
      // backward on the kernel's own forward results (as the engine runs it)
      FBuf gq(q.size(), kNaNF), gk(k.size(), kNaNF), gv(v.size(), kNaNF);
      p.dOut = dOut.data(), p.dq = gq.data(), p.dk = gk.data(), p.dv = gv.data();
      running("attentionBackwardHead B=%" PRId64 " H=%" PRId64 " Lq=%" PRId64 " Lk=%" PRId64 " D=%" PRId64 " mask=%s", B, H, Lq, Lk, D,
              mask_name(ac.mask));
      for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) t.attentionBackwardHead(p, b, h);
      const struct {
        const char* name;
        FBuf& got;
        const std::vector<double>& want;
      } grads[] = {{"dq", gq, dq}, {"dk", gk, dk}, {"dv", gv, dv}};
      for (const auto& g : grads) {
        Check c("attentionBackwardHead B=%" PRId64 " H=%" PRId64 " Lq=%" PRId64 " Lk=%" PRId64 " D=%" PRId64 " mask=%s %s", B, H,
                Lq, Lk, D, mask_name(ac.mask), g.name);
        const double atol = 1e-5 * std::max(1.0, maxAbs(g.want));
        for (int64_t i = 0; i < int64_t(g.want.size()); i++) c.val(i, g.got[i], g.want[i], 1e-4 * std::fabs(g.want[i]) + atol);
        g.got.check_tail(c, g.name);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Packed GEMM (gemm.cc) under one ISA

float round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return f;
  u = ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) << 16;
  std::memcpy(&f, &u, 4);
  return f;
}

struct GemmCase {
  int64_t m, n, k;
  bool ta, tb;
  int64_t batch;
  float alpha, beta;
  bool serial, bf16;
};

void check_gemm(const GemmCase& gc) {
  const int64_t m = gc.m, n = gc.n, k = gc.k, batch = gc.batch;
  const int64_t lda = (gc.ta ? m : k) + 3, ldb = (gc.tb ? k : n) + 1, ldc = n + 2;
  const int64_t aRows = gc.ta ? k : m, bRows = gc.tb ? n : k;
  const int64_t strideA = aRows * lda + 5, strideB = bRows * ldb + 7, strideC = m * ldc + 1;
  FBuf a((batch - 1) * strideA + aRows * lda), b((batch - 1) * strideB + bRows * ldb), c((batch - 1) * strideC + m * ldc);
  fill(a, -1, 1);
  fill(b, -1, 1);
  fill(c, -1, 1);
  if (gc.beta == 0.f)
    for (int64_t i = 0; i < c.size(); i++) c[i] = kNaNF;  // beta = 0 must not read C
  const std::vector<float> c0(c.data(), c.data() + c.size());
  running("%s m=%" PRId64 " n=%" PRId64 " k=%" PRId64 " transA=%d transB=%d batch=%" PRId64, gc.serial ? "gemm_serial" : "gemm", m,
          n, k, int(gc.ta), int(gc.tb), batch);
  if (gc.serial) {
    for (int64_t bi = 0; bi < batch; bi++)
      ft::gemm_serial(gc.ta, gc.tb, m, n, k, gc.alpha, a.data() + bi * strideA, lda, b.data() + bi * strideB, ldb, gc.beta,
                      c.data() + bi * strideC, ldc, gc.bf16);
  } else {
    ft::GemmParams p;
    p.transA = gc.ta, p.transB = gc.tb, p.m = m, p.n = n, p.k = k, p.alpha = gc.alpha, p.beta = gc.beta;
    p.a = a.data(), p.lda = lda, p.strideA = strideA, p.b = b.data(), p.ldb = ldb, p.strideB = strideB;
    p.c = c.data(), p.ldc = ldc, p.strideC = strideC, p.batch = batch;
    ft::gemm(p, gc.bf16);
  }
  Check chk("%s m=%" PRId64 " n=%" PRId64 " k=%" PRId64 " transA=%d transB=%d batch=%" PRId64 " alpha=%g beta=%g%s",
            gc.serial ? "gemm_serial" : "gemm", m, n, k, int(gc.ta), int(gc.tb), batch, double(gc.alpha), double(gc.beta),
            gc.bf16 ? " bf16" : "");
  auto rd = [&](float x) { return gc.bf16 ? double(round_bf16(x)) : double(x); };
  for (int64_t bi = 0; bi < batch; bi++)
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < ldc; j++) {
        const int64_t ci = bi * strideC + i * ldc + j;
        if (j >= n) {
          if (i * ldc + j < m * ldc && !(std::memcmp(&c[ci], &c0[ci], 4) == 0)) chk.fail("wrote padding C[%" PRId64 "]", ci);
          continue;
        }
        double s = 0, bnd = 0;
        for (int64_t p = 0; p < k; p++) {
          const double av = rd(a[bi * strideA + (gc.ta ? p * lda + i : i * lda + p)]);
          const double bv = rd(b[bi * strideB + (gc.tb ? j * ldb + p : p * ldb + j)]);
          s += av * bv;
          bnd += std::fabs(av * bv);
        }
        const double old = gc.beta == 0.f ? 0.0 : double(gc.beta) * c0[ci];
        const double e = double(gc.alpha) * s + old;
        chk.val(ci, c[ci], e, 2e-6 * std::sqrt(double(k + 1)) * (std::fabs(gc.alpha) * bnd + std::fabs(old)) + 1e-30);
      }
  c.check_tail(chk, "C");
}

void test_gemm() {
  const int64_t shapes[][3] = {{1, 1, 1},   {3, 17, 5},  {17, 65, 130}, {65, 3, 1},  {15, 33, 257},
                               {130, 31, 17}, {29, 70, 520}, {6, 300, 70}, {2, 37, 513}, {7, 9, 0}, {5, 1, 33}};
  for (const auto& s : shapes)
    for (int tr = 0; tr < 4; tr++) {
      const bool ta = tr & 1, tb = tr & 2;
      const bool big = s[0] * s[1] * s[2] > 200000;
      check_gemm({s[0], s[1], s[2], ta, tb, 1, 1.f, 0.f, false, false});
      check_gemm({s[0], s[1], s[2], ta, tb, 1, 0.75f, 0.5f, false, false});
      if (!big) {
        check_gemm({s[0], s[1], s[2], ta, tb, 3, -1.25f, 1.f, false, false});
        check_gemm({s[0], s[1], s[2], ta, tb, 2, 1.f, 0.f, true, false});
      }
      if (tr == 1 || tr == 2) check_gemm({s[0], s[1], s[2], ta, tb, 1, 1.f, 0.25f, false, true});
    }
  // many small matrices: one task per matrix
  check_gemm({9, 10, 11, false, true, 12, 1.f, 0.f, false, false});
  check_gemm({4, 20, 7, true, false, 12, 2.f, -1.f, false, false});
}

// ---------------------------------------------------------------------------------------------
// Driver

struct Backend {
  const char* name;
  const KernelTable* table;
  ft::Isa isa;
  int lanes;
  const char* skipWhy;  // null when runnable here
};

std::vector<Backend> backends() {
  std::vector<Backend> b;
  const char* none = "not in this build";
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  b.push_back({"avx512", ft::kernels_avx512(), ft::Isa::Avx512, 16, !ft::kernels_avx512() ? none : avx512 ? nullptr : "the CPU lacks AVX-512"});
  b.push_back({"avx2", ft::kernels_avx2(), ft::Isa::Avx2, 8, !ft::kernels_avx2() ? none : avx2 ? nullptr : "the CPU lacks AVX2/FMA"});
#endif
  b.push_back({"neon", ft::kernels_neon(), ft::Isa::Neon, 4, ft::kernels_neon() ? nullptr : none});
#if defined(__wasm_relaxed_simd__)
  b.push_back({"wasm-relaxed-simd", ft::kernels_wasm(), ft::Isa::Wasm, 4, ft::kernels_wasm() ? nullptr : none});
#else
  b.push_back({"wasm-simd128", ft::kernels_wasm(), ft::Isa::Wasm, 4, ft::kernels_wasm() ? nullptr : none});
#endif
  b.push_back({"scalar", ft::kernels_generic(), ft::Isa::Scalar, 4, ft::kernels_generic() ? nullptr : none});
  return b;
}

bool in_list(const std::string& list, const char* name) {
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t e = list.find(',', pos);
    if (e == std::string::npos) e = list.size();
    const std::string item = list.substr(pos, e - pos);
    if (item == name || (item == "generic" && std::strcmp(name, "scalar") == 0) ||
        (item == "wasm" && std::strncmp(name, "wasm-", 5) == 0))
      return true;
    pos = e + 1;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
#if KT_GUARD
  signal(SIGSEGV, on_crash);
  signal(SIGBUS, on_crash);
  signal(SIGILL, on_crash);
  signal(SIGFPE, on_crash);
#endif
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string only;
  if (const char* env = std::getenv("FLEXTOK_ISA")) only = env;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "-v")) g_verbose = true;
    else if (!std::strncmp(argv[i], "--isa=", 6)) only = argv[i] + 6;
    else {
      std::fprintf(stderr, "usage: %s [-v] [--isa=avx512,avx2,neon,wasm,scalar]\n", argv[0]);
      return 2;
    }
  }
  ft::set_num_threads(3);  // the threaded GEMM paths, even on a small machine (no-op without threads)
  std::printf("kernel_test (%s, %d thread%s for gemm)\n", kTarget, ft::num_threads(), ft::num_threads() == 1 ? "" : "s");
  std::string ran, skipped;
  for (const Backend& be : backends()) {
    if (be.skipWhy || (!only.empty() && !in_list(only, be.name))) {
      const std::string why = be.skipWhy ? be.skipWhy : "not selected";
      if (be.skipWhy && std::strcmp(be.skipWhy, "not in this build") == 0) continue;
      skipped += std::string(skipped.empty() ? "" : ", ") + be.name + " (" + why + ")";
      continue;
    }
    g_table = be.name;
    const int64_t f0 = g_failures, c0 = g_checks;
    const KernelTable& t = *be.table;
    {
      Check c("table identity");
      if (std::strcmp(t.name, be.name) != 0) c.fail("table name '%s', expected '%s'", t.name, be.name);
      if (t.lanes != be.lanes) c.fail("lanes %d, expected %d", t.lanes, be.lanes);
      if (t.attentionQueryTile < 1) c.fail("attentionQueryTile %" PRId64, t.attentionQueryTile);
    }
    test_unary(t);
    test_binary(t);
    test_reductions(t);
    test_softmax(t);
    test_norms(t);
    test_segment(t);
    test_adamw(t);
    test_tile_gemm(t);
    test_attention(t);
    ft::set_isa(be.isa, false);
    {
      Check c("set_isa(%s)", be.name);
      if (ft::active_isa() != be.isa) c.fail("active ISA is %s", ft::isa_name(ft::active_isa()));
      if (&ft::kernel_table() != be.table) c.fail("kernel_table() is '%s'", ft::kernel_table().name);
    }
    test_gemm();
    ft::set_isa(ft::cpu_isa(), true);
    std::printf("  %-13s %2d lanes: %5" PRId64 " checks, %" PRId64 " failed\n", be.name, t.lanes, g_checks - c0, g_failures - f0);
    ran += std::string(ran.empty() ? "" : ", ") + be.name;
  }
  if (ran.empty()) {
    std::printf("kernel_test (%s): FAILED: no back end ran%s%s\n", kTarget, skipped.empty() ? "" : "; skipped: ", skipped.c_str());
    return 1;
  }
  std::printf("kernel_test (%s): back ends run: %s%s%s\n", kTarget, ran.c_str(), skipped.empty() ? "" : "; skipped: ", skipped.c_str());
  if (g_failures) {
    if (g_printed > 200) std::printf("(%" PRId64 " more failing checks not printed)\n", g_printed - 200);
    std::printf("kernel_test (%s): FAILED: %" PRId64 " of %" PRId64 " checks\n", kTarget, g_failures, g_checks);
    return 1;
  }
  std::printf("kernel_test (%s): all %" PRId64 " checks passed\n", kTarget, g_checks);
  return 0;
}
