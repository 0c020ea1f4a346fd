// Node-API bindings of the flextok native kernels: argument checking (bounds are validated so a bad call
// throws instead of crashing the process) and zero-copy access to the caller's TypedArrays.
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "common.h"

namespace {

using ft::ConvGeom;

template <typename T>
struct View {
  T* ptr = nullptr;
  size_t len = 0;
};

[[noreturn]] void fail(const Napi::Env& env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] void range_fail(const Napi::Env& env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

template <typename T>
View<T> typed(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type want, const char* what, bool optional) {
  Napi::Env env = info.Env();
  napi_value v = info[i];
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  // one call gives type, length and the data pointer (already offset by byteOffset)
  if (napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok) {
    napi_valuetype vt;
    if (optional && napi_typeof(env, v, &vt) == napi_ok && (vt == napi_null || vt == napi_undefined)) {
      return {};  // (napi_get_typedarray_info reports a status only; no JS exception is pending)
    }
    fail(env, std::string(what) + ": expected a typed array");
  }
  if (type != want) fail(env, std::string(what) + ": wrong typed array type");
  return View<T>{static_cast<T*>(data), length};
}

View<float> f32(const Napi::CallbackInfo& info, size_t i, const char* what, bool optional = false) {
  return typed<float>(info, i, napi_float32_array, what, optional);
}

/** Any 4-byte element typed array (Float32Array, Int32Array, Uint32Array) as raw words. */
View<uint32_t> words(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, info[i], &type, &length, &data, nullptr, nullptr) != napi_ok)
    fail(env, std::string(what) + ": expected a typed array");
  if (type != napi_float32_array && type != napi_int32_array && type != napi_uint32_array)
    fail(env, std::string(what) + ": expected 4-byte elements");
  return View<uint32_t>{static_cast<uint32_t*>(data), length};
}

View<double> params(const Napi::CallbackInfo& info, size_t i, size_t need) {
  View<double> p = typed<double>(info, i, napi_float64_array, "params", false);
  if (p.len < need) fail(info.Env(), "params: too short");
  return p;
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) fail(info.Env(), std::string(what) + ": expected a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9.0e15 || d != std::floor(d)) range_fail(info.Env(), std::string(what) + ": bad integer");
  return static_cast<int64_t>(d);
}
double num_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) fail(info.Env(), std::string(what) + ": expected a number");
  return v.As<Napi::Number>().DoubleValue();
}
int64_t to_int(const Napi::Env& env, double d, const char* what) {
  if (!(d >= 0) || d > 9.0e15 || d != std::floor(d)) range_fail(env, std::string(what) + ": bad integer");
  return static_cast<int64_t>(d);
}

void need_len(const Napi::Env& env, size_t have, double need, const char* what) {
  if (need > static_cast<double>(have)) range_fail(env, std::string(what) + ": array too short");
}

/** Checks that a batch of rows x cols matrices (offset, ld, stride) lies inside an array of `len` elements. */
void check_matrix(const Napi::Env& env, size_t len, int64_t off, int64_t rows, int64_t cols, int64_t ld,
                  int64_t stride, int64_t batch, const char* what) {
  if (ld < std::max<int64_t>(1, cols)) range_fail(env, std::string(what) + ": leading dimension too small");
  if (rows == 0 || cols == 0 || batch == 0) return;
  double last = double(off) + double(batch - 1) * double(stride) + double(rows - 1) * double(ld) + double(cols - 1);
  if (last >= double(len)) range_fail(env, std::string(what) + ": matrix exceeds the array");
}

// ---------------------------------------------------------------------------------------------

Napi::Value Gemm(const Napi::CallbackInfo& info, bool bf16) {
  Napi::Env env = info.Env();
  View<float> a = f32(info, 0, "a"), b = f32(info, 1, "b"), c = f32(info, 2, "c");
  View<double> p = params(info, 3, 17);
  ft::GemmParams g;
  g.transA = p.ptr[0] != 0;
  g.transB = p.ptr[1] != 0;
  g.m = to_int(env, p.ptr[2], "m");
  g.n = to_int(env, p.ptr[3], "n");
  g.k = to_int(env, p.ptr[4], "k");
  g.alpha = static_cast<float>(p.ptr[5]);
  g.beta = static_cast<float>(p.ptr[6]);
  int64_t aOff = to_int(env, p.ptr[7], "aOffset"), bOff = to_int(env, p.ptr[10], "bOffset"),
          cOff = to_int(env, p.ptr[13], "cOffset");
  g.lda = to_int(env, p.ptr[8], "lda");
  g.strideA = to_int(env, p.ptr[9], "strideA");
  g.ldb = to_int(env, p.ptr[11], "ldb");
  g.strideB = to_int(env, p.ptr[12], "strideB");
  g.ldc = to_int(env, p.ptr[14], "ldc");
  g.strideC = to_int(env, p.ptr[15], "strideC");
  g.batch = to_int(env, p.ptr[16], "batch");
  if (g.m == 0 || g.n == 0 || g.batch == 0) return env.Undefined();
  check_matrix(env, c.len, cOff, g.m, g.n, g.ldc, g.strideC, g.batch, "c");
  if (g.k > 0) {
    check_matrix(env, a.len, aOff, g.transA ? g.k : g.m, g.transA ? g.m : g.k, g.lda, g.strideA, g.batch, "a");
    check_matrix(env, b.len, bOff, g.transB ? g.n : g.k, g.transB ? g.k : g.n, g.ldb, g.strideB, g.batch, "b");
  }
  g.a = a.ptr + aOff;
  g.b = b.ptr + bOff;
  g.c = c.ptr + cOff;
  ft::gemm(g, bf16);
  return env.Undefined();
}
Napi::Value GemmF32(const Napi::CallbackInfo& info) { return Gemm(info, false); }
Napi::Value GemmBf16(const Napi::CallbackInfo& info) { return Gemm(info, true); }

/** params: [batch, heads, lq, lk, headDim, scale, maskBatchStride, causal] */
ft::AttentionParams attention_params(const Napi::CallbackInfo& info, size_t maskIndex, size_t paramIndex) {
  Napi::Env env = info.Env();
  View<double> p = params(info, paramIndex, 8);
  ft::AttentionParams a;
  a.batch = to_int(env, p.ptr[0], "batch");
  a.heads = to_int(env, p.ptr[1], "heads");
  a.lq = to_int(env, p.ptr[2], "lq");
  a.lk = to_int(env, p.ptr[3], "lk");
  a.headDim = to_int(env, p.ptr[4], "headDim");
  a.scale = static_cast<float>(p.ptr[5]);
  a.maskBatchStride = to_int(env, p.ptr[6], "maskBatchStride");
  a.causal = p.ptr[7] != 0;
  View<float> q = f32(info, 0, "q"), k = f32(info, 1, "k"), v = f32(info, 2, "v"), out = f32(info, 3, "out"),
              lse = f32(info, 4, "lse");
  double qn = double(a.batch) * a.lq * a.heads * a.headDim, kn = double(a.batch) * a.lk * a.heads * a.headDim;
  need_len(env, q.len, qn, "q");
  need_len(env, out.len, qn, "out");
  need_len(env, k.len, kn, "k");
  need_len(env, v.len, kn, "v");
  need_len(env, lse.len, double(a.batch) * a.heads * a.lq, "lse");
  View<uint8_t> mask = typed<uint8_t>(info, maskIndex, napi_uint8_array, "mask", true);
  if (mask.ptr && a.batch > 0)
    need_len(env, mask.len, double(a.batch - 1) * a.maskBatchStride + double(a.lq) * a.lk, "mask");
  a.q = q.ptr;
  a.k = k.ptr;
  a.v = v.ptr;
  a.out = out.ptr;
  a.lse = lse.ptr;
  a.mask = mask.ptr;
  return a;
}

// attentionForward(q, k, v, out, lse, mask, params)
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  ft::AttentionParams a = attention_params(info, 5, 6);
  ft::attention_forward(a);
  return info.Env().Undefined();
}

// attentionBackward(q, k, v, out, lse, dOut, dq, dk, dv, mask, params)
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ft::AttentionParams a = attention_params(info, 9, 10);
  View<float> dOut = f32(info, 5, "dOut"), dq = f32(info, 6, "dq"), dk = f32(info, 7, "dk"), dv = f32(info, 8, "dv");
  double qn = double(a.batch) * a.lq * a.heads * a.headDim, kn = double(a.batch) * a.lk * a.heads * a.headDim;
  need_len(env, dOut.len, qn, "dOut");
  need_len(env, dq.len, qn, "dq");
  need_len(env, dk.len, kn, "dk");
  need_len(env, dv.len, kn, "dv");
  a.dOut = dOut.ptr;
  a.dq = dq.ptr;
  a.dk = dk.ptr;
  a.dv = dv.ptr;
  ft::attention_backward(a);
  return env.Undefined();
}

ft::UnaryOp unary_op(const Napi::CallbackInfo& info, size_t i) {
  int64_t op = int_arg(info, i, "op");
  if (op >= static_cast<int64_t>(ft::UnaryOp::Count)) range_fail(info.Env(), "unknown unary op");
  return static_cast<ft::UnaryOp>(op);
}

// unary(op, x, y, n)
Napi::Value Unary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ft::UnaryOp op = unary_op(info, 0);
  View<float> x = f32(info, 1, "x"), y = f32(info, 2, "y");
  int64_t n = int_arg(info, 3, "n");
  need_len(env, x.len, n, "x");
  need_len(env, y.len, n, "y");
  ft::unary_forward(op, x.ptr, y.ptr, n);
  return env.Undefined();
}

// unaryBackward(op, x, y, dy, dx, n, accumulate)
Napi::Value UnaryBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ft::UnaryOp op = unary_op(info, 0);
  View<float> x = f32(info, 1, "x"), y = f32(info, 2, "y"), dy = f32(info, 3, "dy"), dx = f32(info, 4, "dx");
  int64_t n = int_arg(info, 5, "n");
  bool acc = info[6].ToBoolean().Value();
  need_len(env, x.len, n, "x");
  need_len(env, y.len, n, "y");
  need_len(env, dy.len, n, "dy");
  need_len(env, dx.len, n, "dx");
  ft::unary_backward(op, x.ptr, y.ptr, dy.ptr, dx.ptr, n, acc);
  return env.Undefined();
}

// binary(op, a, b, out, dims) with dims = [ndim, shape..., aStrides..., bStrides...]
Napi::Value Binary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t op = int_arg(info, 0, "op");
  if (op >= static_cast<int64_t>(ft::BinaryOp::Count)) range_fail(env, "unknown binary op");
  View<float> a = f32(info, 1, "a"), b = f32(info, 2, "b"), out = f32(info, 3, "out");
  View<double> d = params(info, 4, 1);
  int64_t nd = to_int(env, d.ptr[0], "ndim");
  if (nd > 64 || d.len < size_t(1 + 3 * nd)) range_fail(env, "binary: bad dims");
  int64_t shape[64], as[64], bs[64];
  double total = 1, aLast = 0, bLast = 0;
  for (int64_t i = 0; i < nd; i++) {
    shape[i] = to_int(env, d.ptr[1 + i], "shape");
    as[i] = to_int(env, d.ptr[1 + nd + i], "aStrides");
    bs[i] = to_int(env, d.ptr[1 + 2 * nd + i], "bStrides");
    total *= double(shape[i]);
    if (shape[i] > 0) {
      aLast += double(shape[i] - 1) * as[i];
      bLast += double(shape[i] - 1) * bs[i];
    }
  }
  if (total == 0) return env.Undefined();
  need_len(env, out.len, total, "out");
  need_len(env, a.len, aLast + 1, "a");
  need_len(env, b.len, bLast + 1, "b");
  ft::binary_broadcast(static_cast<ft::BinaryOp>(op), a.ptr, b.ptr, out.ptr, static_cast<int>(nd), shape, as, bs);
  return env.Undefined();
}

// sum(x, out, outer, red, inner)
Napi::Value Sum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), out = f32(info, 1, "out");
  int64_t outer = int_arg(info, 2, "outer"), red = int_arg(info, 3, "red"), inner = int_arg(info, 4, "inner");
  need_len(env, x.len, double(outer) * red * inner, "x");
  need_len(env, out.len, double(outer) * inner, "out");
  ft::reduce_sum(x.ptr, out.ptr, outer, red, inner);
  return env.Undefined();
}

// max(x, out, argmax, outer, red, inner)
Napi::Value Max(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), out = f32(info, 1, "out");
  View<int32_t> am = typed<int32_t>(info, 2, napi_int32_array, "argmax", false);
  int64_t outer = int_arg(info, 3, "outer"), red = int_arg(info, 4, "red"), inner = int_arg(info, 5, "inner");
  need_len(env, x.len, double(outer) * red * inner, "x");
  need_len(env, out.len, double(outer) * inner, "out");
  need_len(env, am.len, double(outer) * inner, "argmax");
  ft::reduce_max(x.ptr, out.ptr, am.ptr, outer, red, inner);
  return env.Undefined();
}

// rowwise(a, b, c, rows, dim) for the softmax family
template <void (*Fwd)(const float*, float*, int64_t, int64_t)>
Napi::Value RowForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), y = f32(info, 1, "y");
  int64_t rows = int_arg(info, 2, "rows"), dim = int_arg(info, 3, "dim");
  need_len(env, x.len, double(rows) * dim, "x");
  need_len(env, y.len, double(rows) * dim, "y");
  Fwd(x.ptr, y.ptr, rows, dim);
  return env.Undefined();
}
template <void (*Bwd)(const float*, const float*, float*, int64_t, int64_t)>
Napi::Value RowBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> y = f32(info, 0, "y"), dy = f32(info, 1, "dy"), dx = f32(info, 2, "dx");
  int64_t rows = int_arg(info, 3, "rows"), dim = int_arg(info, 4, "dim");
  double n = double(rows) * dim;
  need_len(env, y.len, n, "y");
  need_len(env, dy.len, n, "dy");
  need_len(env, dx.len, n, "dx");
  Bwd(y.ptr, dy.ptr, dx.ptr, rows, dim);
  return env.Undefined();
}

// layerNormForward(x, w, b, y, mean, rstd, rows, dim, eps)
Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), w = f32(info, 1, "w", true), b = f32(info, 2, "b", true), y = f32(info, 3, "y"),
              mean = f32(info, 4, "mean"), rstd = f32(info, 5, "rstd");
  int64_t rows = int_arg(info, 6, "rows"), dim = int_arg(info, 7, "dim");
  float eps = static_cast<float>(num_arg(info, 8, "eps"));
  need_len(env, x.len, double(rows) * dim, "x");
  need_len(env, y.len, double(rows) * dim, "y");
  if (w.ptr) need_len(env, w.len, dim, "w");
  if (b.ptr) need_len(env, b.len, dim, "b");
  need_len(env, mean.len, rows, "mean");
  need_len(env, rstd.len, rows, "rstd");
  ft::layer_norm_forward(x.ptr, w.ptr, b.ptr, y.ptr, mean.ptr, rstd.ptr, rows, dim, eps);
  return env.Undefined();
}

// layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, dim)
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), w = f32(info, 1, "w", true), mean = f32(info, 2, "mean"),
              rstd = f32(info, 3, "rstd"), dy = f32(info, 4, "dy"), dx = f32(info, 5, "dx"),
              dw = f32(info, 6, "dw", true), db = f32(info, 7, "db", true);
  int64_t rows = int_arg(info, 8, "rows"), dim = int_arg(info, 9, "dim");
  double n = double(rows) * dim;
  need_len(env, x.len, n, "x");
  need_len(env, dy.len, n, "dy");
  need_len(env, dx.len, n, "dx");
  need_len(env, mean.len, rows, "mean");
  need_len(env, rstd.len, rows, "rstd");
  if (w.ptr) need_len(env, w.len, dim, "w");
  if (dw.ptr) need_len(env, dw.len, dim, "dw");
  if (db.ptr) need_len(env, db.len, dim, "db");
  ft::layer_norm_backward(x.ptr, w.ptr, mean.ptr, rstd.ptr, dy.ptr, dx.ptr, dw.ptr, db.ptr, rows, dim);
  return env.Undefined();
}

// segmentFmaForward(x, a, c, seg, out, rows, dim, segments, cPerRow)
Napi::Value SegmentFmaForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), a = f32(info, 1, "a"), c = f32(info, 2, "c");
  View<int32_t> seg = typed<int32_t>(info, 3, napi_int32_array, "seg", false);
  View<float> out = f32(info, 4, "out");
  int64_t rows = int_arg(info, 5, "rows"), dim = int_arg(info, 6, "dim"), segments = int_arg(info, 7, "segments");
  bool cPerRow = info[8].ToBoolean().Value();
  need_len(env, x.len, double(rows) * dim, "x");
  need_len(env, out.len, double(rows) * dim, "out");
  need_len(env, a.len, double(segments) * dim, "a");
  need_len(env, c.len, double(cPerRow ? rows : segments) * dim, "c");
  need_len(env, seg.len, rows, "seg");
  for (int64_t r = 0; r < rows; r++) {
    if (seg.ptr[r] < 0 || seg.ptr[r] >= segments) range_fail(env, "segmentFmaForward: seg index out of range");
  }
  ft::segment_fma_forward(x.ptr, a.ptr, c.ptr, seg.ptr, out.ptr, rows, dim, cPerRow);
  return env.Undefined();
}

// segmentFmaBackward(x, a, seg, dy, dx, da, dc, rows, dim, segments)
Napi::Value SegmentFmaBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), a = f32(info, 1, "a");
  View<int32_t> seg = typed<int32_t>(info, 2, napi_int32_array, "seg", false);
  View<float> dy = f32(info, 3, "dy"), dx = f32(info, 4, "dx", true), da = f32(info, 5, "da", true), dc = f32(info, 6, "dc", true);
  int64_t rows = int_arg(info, 7, "rows"), dim = int_arg(info, 8, "dim"), segments = int_arg(info, 9, "segments");
  need_len(env, x.len, double(rows) * dim, "x");
  need_len(env, dy.len, double(rows) * dim, "dy");
  need_len(env, a.len, double(segments) * dim, "a");
  need_len(env, seg.len, rows, "seg");
  if (dx.ptr) need_len(env, dx.len, double(rows) * dim, "dx");
  if (da.ptr) need_len(env, da.len, double(segments) * dim, "da");
  if (dc.ptr) need_len(env, dc.len, double(segments) * dim, "dc");
  for (int64_t r = 0; r < rows; r++) {
    if (seg.ptr[r] < 0 || seg.ptr[r] >= segments) range_fail(env, "segmentFmaBackward: seg index out of range");
  }
  ft::segment_fma_backward(x.ptr, a.ptr, seg.ptr, dy.ptr, dx.ptr, da.ptr, dc.ptr, rows, dim, segments);
  return env.Undefined();
}

// rmsNormForward(x, w, y, rstd, rows, dim, eps)
Napi::Value RmsNormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), w = f32(info, 1, "w", true), y = f32(info, 2, "y"), rstd = f32(info, 3, "rstd");
  int64_t rows = int_arg(info, 4, "rows"), dim = int_arg(info, 5, "dim");
  float eps = static_cast<float>(num_arg(info, 6, "eps"));
  need_len(env, x.len, double(rows) * dim, "x");
  need_len(env, y.len, double(rows) * dim, "y");
  if (w.ptr) need_len(env, w.len, dim, "w");
  need_len(env, rstd.len, rows, "rstd");
  ft::rms_norm_forward(x.ptr, w.ptr, y.ptr, rstd.ptr, rows, dim, eps);
  return env.Undefined();
}

// rmsNormBackward(x, w, rstd, dy, dx, dw, rows, dim)
Napi::Value RmsNormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), w = f32(info, 1, "w", true), rstd = f32(info, 2, "rstd"), dy = f32(info, 3, "dy"),
              dx = f32(info, 4, "dx"), dw = f32(info, 5, "dw", true);
  int64_t rows = int_arg(info, 6, "rows"), dim = int_arg(info, 7, "dim");
  double n = double(rows) * dim;
  need_len(env, x.len, n, "x");
  need_len(env, dy.len, n, "dy");
  need_len(env, dx.len, n, "dx");
  need_len(env, rstd.len, rows, "rstd");
  if (w.ptr) need_len(env, w.len, dim, "w");
  if (dw.ptr) need_len(env, dw.len, dim, "dw");
  ft::rms_norm_backward(x.ptr, w.ptr, rstd.ptr, dy.ptr, dx.ptr, dw.ptr, rows, dim);
  return env.Undefined();
}

void check_group_args(const Napi::Env& env, int64_t n, int64_t channels, int64_t spatial, int64_t groups) {
  (void)n;
  (void)spatial;
  if (groups <= 0 || channels % groups != 0) range_fail(env, "groupNorm: groups must divide channels");
}

// groupNormForward(x, w, b, y, mean, rstd, n, channels, spatial, groups, eps)
Napi::Value GroupNormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), w = f32(info, 1, "w", true), b = f32(info, 2, "b", true), y = f32(info, 3, "y"),
              mean = f32(info, 4, "mean"), rstd = f32(info, 5, "rstd");
  int64_t n = int_arg(info, 6, "n"), ch = int_arg(info, 7, "channels"), sp = int_arg(info, 8, "spatial"),
          groups = int_arg(info, 9, "groups");
  float eps = static_cast<float>(num_arg(info, 10, "eps"));
  check_group_args(env, n, ch, sp, groups);
  double total = double(n) * ch * sp;
  need_len(env, x.len, total, "x");
  need_len(env, y.len, total, "y");
  if (w.ptr) need_len(env, w.len, ch, "w");
  if (b.ptr) need_len(env, b.len, ch, "b");
  need_len(env, mean.len, double(n) * groups, "mean");
  need_len(env, rstd.len, double(n) * groups, "rstd");
  ft::group_norm_forward(x.ptr, w.ptr, b.ptr, y.ptr, mean.ptr, rstd.ptr, n, ch, sp, groups, eps);
  return env.Undefined();
}

// groupNormBackward(x, w, mean, rstd, dy, dx, dw, db, n, channels, spatial, groups)
Napi::Value GroupNormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x"), w = f32(info, 1, "w", true), mean = f32(info, 2, "mean"),
              rstd = f32(info, 3, "rstd"), dy = f32(info, 4, "dy"), dx = f32(info, 5, "dx"),
              dw = f32(info, 6, "dw", true), db = f32(info, 7, "db", true);
  int64_t n = int_arg(info, 8, "n"), ch = int_arg(info, 9, "channels"), sp = int_arg(info, 10, "spatial"),
          groups = int_arg(info, 11, "groups");
  check_group_args(env, n, ch, sp, groups);
  double total = double(n) * ch * sp;
  need_len(env, x.len, total, "x");
  need_len(env, dy.len, total, "dy");
  need_len(env, dx.len, total, "dx");
  if (w.ptr) need_len(env, w.len, ch, "w");
  if (dw.ptr) need_len(env, dw.len, ch, "dw");
  if (db.ptr) need_len(env, db.len, ch, "db");
  need_len(env, mean.len, double(n) * groups, "mean");
  need_len(env, rstd.len, double(n) * groups, "rstd");
  ft::group_norm_backward(x.ptr, w.ptr, mean.ptr, rstd.ptr, dy.ptr, dx.ptr, dw.ptr, db.ptr, n, ch, sp, groups);
  return env.Undefined();
}

/** geom params: [channels, height, width, kh, kw, strideH, strideW, padTop, padLeft, outH, outW] */
ConvGeom conv_geom(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  View<double> p = params(info, i, 11);
  ConvGeom g;
  g.channels = to_int(env, p.ptr[0], "channels");
  g.height = to_int(env, p.ptr[1], "height");
  g.width = to_int(env, p.ptr[2], "width");
  g.kh = to_int(env, p.ptr[3], "kh");
  g.kw = to_int(env, p.ptr[4], "kw");
  g.strideH = to_int(env, p.ptr[5], "strideH");
  g.strideW = to_int(env, p.ptr[6], "strideW");
  g.padTop = to_int(env, p.ptr[7], "padTop");
  g.padLeft = to_int(env, p.ptr[8], "padLeft");
  g.outH = to_int(env, p.ptr[9], "outH");
  g.outW = to_int(env, p.ptr[10], "outW");
  if (g.strideH == 0 || g.strideW == 0) range_fail(env, "conv: stride must be positive");
  return g;
}

// im2col(x, xOffset, cols, geom)
Napi::Value Im2col(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = f32(info, 0, "x");
  int64_t off = int_arg(info, 1, "xOffset");
  View<float> cols = f32(info, 2, "cols");
  ConvGeom g = conv_geom(info, 3);
  need_len(env, x.len, double(off) + double(g.channels) * g.height * g.width, "x");
  need_len(env, cols.len, double(g.channels) * g.kh * g.kw * g.outH * g.outW, "cols");
  ft::im2col(x.ptr + off, cols.ptr, g);
  return env.Undefined();
}

// col2im(cols, dx, dxOffset, geom)
Napi::Value Col2im(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> cols = f32(info, 0, "cols"), dx = f32(info, 1, "dx");
  int64_t off = int_arg(info, 2, "dxOffset");
  ConvGeom g = conv_geom(info, 3);
  need_len(env, dx.len, double(off) + double(g.channels) * g.height * g.width, "dx");
  need_len(env, cols.len, double(g.channels) * g.kh * g.kw * g.outH * g.outW, "cols");
  ft::col2im(cols.ptr, dx.ptr + off, g);
  return env.Undefined();
}

// permute(x, y, dims) with dims = [ndim, shape..., perm...]
Napi::Value Permute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<uint32_t> x = words(info, 0, "x"), y = words(info, 1, "y");
  View<double> d = params(info, 2, 1);
  int64_t nd = to_int(env, d.ptr[0], "ndim");
  if (nd > 64 || d.len < size_t(1 + 2 * nd)) range_fail(env, "permute: bad dims");
  std::vector<int64_t> shape(nd);
  std::vector<int> perm(nd);
  std::vector<bool> seen(nd, false);
  double total = 1;
  for (int64_t i = 0; i < nd; i++) {
    shape[i] = to_int(env, d.ptr[1 + i], "shape");
    total *= double(shape[i]);
    int64_t pi = to_int(env, d.ptr[1 + nd + i], "perm");
    if (pi >= nd || seen[pi]) range_fail(env, "permute: bad perm");
    seen[pi] = true;
    perm[i] = static_cast<int>(pi);
  }
  if (total == 0) return env.Undefined();
  need_len(env, x.len, total, "x");
  need_len(env, y.len, total, "y");
  ft::permute4(x.ptr, y.ptr, static_cast<int>(nd), shape.data(), perm.data());
  return env.Undefined();
}

// adamw(param, grad, m, v, params) with params = [lr, beta1, beta2, eps, weightDecay, bc1, bc2]
Napi::Value AdamW(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> param = f32(info, 0, "param"), grad = f32(info, 1, "grad"), m = f32(info, 2, "m"), v = f32(info, 3, "v");
  View<double> p = params(info, 4, 7);
  size_t n = param.len;
  need_len(env, grad.len, n, "grad");
  need_len(env, m.len, n, "m");
  need_len(env, v.len, n, "v");
  ft::AdamWParams a{param.ptr, grad.ptr, m.ptr, v.ptr, static_cast<int64_t>(n), p.ptr[0], p.ptr[1], p.ptr[2],
                    p.ptr[3], p.ptr[4], p.ptr[5], p.ptr[6]};
  ft::adamw(a);
  return env.Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  int64_t n = int_arg(info, 0, "threads");
  ft::set_num_threads(n == 0 ? ft::available_cores() : static_cast<int>(std::min<int64_t>(n, 256)));
  return Napi::Number::New(info.Env(), ft::num_threads());
}
Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ft::num_threads()); }
Napi::Value AvailableCores(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ft::available_cores());
}

Napi::Value GetIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("active", ft::isa_name(ft::active_isa()));
  o.Set("cpu", ft::isa_name(ft::cpu_isa()));
  o.Set("bf16", ft::active_bf16());
  o.Set("cpuBf16", ft::cpu_has_bf16());
  return o;
}

// setIsa(name, allowBf16): for tests; never raises above what the CPU has
Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  std::string name = info[0].As<Napi::String>().Utf8Value();
  bool bf16 = info.Length() > 1 ? info[1].ToBoolean().Value() : true;
  ft::Isa isa = name == "avx512" ? ft::Isa::Avx512 : name == "avx2" ? ft::Isa::Avx2 : ft::Isa::Scalar;
  ft::set_isa(isa, bf16);
  return GetIsa(info);
}

// fmaPeak(seconds, threads, bf16) -> GFLOP/s
Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  double s = num_arg(info, 0, "seconds");
  int64_t t = int_arg(info, 1, "threads");
  bool bf16 = info.Length() > 2 && info[2].ToBoolean().Value();
  return Napi::Number::New(info.Env(), ft::fma_peak_gflops(s, static_cast<int>(t), bf16));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, GemmF32, "gemm"));
  exports.Set("gemmBf16", Napi::Function::New(env, GemmBf16, "gemmBf16"));
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward, "attentionForward"));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
  exports.Set("unary", Napi::Function::New(env, Unary, "unary"));
  exports.Set("unaryBackward", Napi::Function::New(env, UnaryBackward, "unaryBackward"));
  exports.Set("binary", Napi::Function::New(env, Binary, "binary"));
  exports.Set("sum", Napi::Function::New(env, Sum, "sum"));
  exports.Set("max", Napi::Function::New(env, Max, "max"));
  exports.Set("softmaxForward", Napi::Function::New(env, RowForward<ft::softmax_forward>, "softmaxForward"));
  exports.Set("softmaxBackward", Napi::Function::New(env, RowBackward<ft::softmax_backward>, "softmaxBackward"));
  exports.Set("logSoftmaxForward", Napi::Function::New(env, RowForward<ft::log_softmax_forward>, "logSoftmaxForward"));
  exports.Set("logSoftmaxBackward",
              Napi::Function::New(env, RowBackward<ft::log_softmax_backward>, "logSoftmaxBackward"));
  exports.Set("layerNormForward", Napi::Function::New(env, LayerNormForward, "layerNormForward"));
  exports.Set("layerNormBackward", Napi::Function::New(env, LayerNormBackward, "layerNormBackward"));
  exports.Set("segmentFmaForward", Napi::Function::New(env, SegmentFmaForward, "segmentFmaForward"));
  exports.Set("segmentFmaBackward", Napi::Function::New(env, SegmentFmaBackward, "segmentFmaBackward"));
  exports.Set("rmsNormForward", Napi::Function::New(env, RmsNormForward, "rmsNormForward"));
  exports.Set("rmsNormBackward", Napi::Function::New(env, RmsNormBackward, "rmsNormBackward"));
  exports.Set("groupNormForward", Napi::Function::New(env, GroupNormForward, "groupNormForward"));
  exports.Set("groupNormBackward", Napi::Function::New(env, GroupNormBackward, "groupNormBackward"));
  exports.Set("im2col", Napi::Function::New(env, Im2col, "im2col"));
  exports.Set("col2im", Napi::Function::New(env, Col2im, "col2im"));
  exports.Set("permute", Napi::Function::New(env, Permute, "permute"));
  exports.Set("adamw", Napi::Function::New(env, AdamW, "adamw"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads, "getThreads"));
  exports.Set("availableCores", Napi::Function::New(env, AvailableCores, "availableCores"));
  exports.Set("isa", Napi::Function::New(env, GetIsa, "isa"));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa, "setIsa"));
  exports.Set("fmaPeak", Napi::Function::New(env, FmaPeak, "fmaPeak"));
  return exports;
}

}  // namespace

NODE_API_MODULE(flextok_native, Init)
