// WebAssembly SIMD128 back end of the SIMD vocabulary (see README.md): 4 float lanes in a v128_t, masks
// as all-ones/zero i32 lanes. Built with clang --target=wasm32 -msimd128; FT_FN is plain `static inline`.
// WebAssembly SIMD has no fused multiply-add in its base set. vfma is a multiply then an add (polynomials and
// sums do not need it fused), or in the relaxed-SIMD build (-mrelaxed-simd) f32x4.relaxed_madd, which the engine
// may fuse or not (V8 fuses it on CPUs with FMA); vfms and vfnma are fused in effect in both builds: the kernels
// use them as exact error terms (vfms(a, a, a*a) in erfc, x/sqrt2 in double-float, 1 - y*y in tanh'), so they
// go through f64, where an f32 x f32 product is exact (one f64 rounding of the sum, then one to f32). Checked by
// native/test/kernel_test.cc.
#pragma once

#include <wasm_simd128.h>

#include <cstdint>
#include <cstring>

constexpr int W = 4;
constexpr int WD = 2;
struct V { v128_t v; };
struct M { v128_t m; };
struct D { v128_t v; };

FT_FN V vzero() { return V{wasm_f32x4_splat(0.f)}; }
FT_FN V vset(float x) { return V{wasm_f32x4_splat(x)}; }
FT_FN V viota() { return V{wasm_f32x4_make(0.f, 1.f, 2.f, 3.f)}; }
FT_FN V vload(const float* p) { return V{wasm_v128_load(p)}; }
FT_FN void vstore(float* p, V a) { wasm_v128_store(p, a.v); }
FT_FN V vload_n(const float* p, int64_t n) {
  if (n >= 4) return vload(p);
  float t[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t i = 0; i < n; i++) t[i] = p[i];
  return V{wasm_v128_load(t)};
}
FT_FN void vstore_n(float* p, V a, int64_t n) {
  if (n >= 4) return vstore(p, a);
  float t[4];
  wasm_v128_store(t, a.v);
  for (int64_t i = 0; i < n; i++) p[i] = t[i];
}

FT_FN V operator+(V a, V b) { return V{wasm_f32x4_add(a.v, b.v)}; }
FT_FN V operator-(V a, V b) { return V{wasm_f32x4_sub(a.v, b.v)}; }
FT_FN V operator*(V a, V b) { return V{wasm_f32x4_mul(a.v, b.v)}; }
FT_FN V operator/(V a, V b) { return V{wasm_f32x4_div(a.v, b.v)}; }
#if defined(__wasm_relaxed_simd__)
FT_FN V vfma(V a, V b, V c) { return V{(v128_t)__builtin_wasm_relaxed_madd_f32x4((__f32x4)a.v, (__f32x4)b.v, (__f32x4)c.v)}; }
#else
FT_FN V vfma(V a, V b, V c) { return V{wasm_f32x4_add(wasm_f32x4_mul(a.v, b.v), c.v)}; }
#endif
/** NEG ? c - a·b : a·b - c, the product exact (in f64) */
template <bool NEG>
FT_FN V fused_sub_f64(V a, V b, V c) {
  const v128_t ah = wasm_i32x4_shuffle(a.v, a.v, 2, 3, 2, 3), bh = wasm_i32x4_shuffle(b.v, b.v, 2, 3, 2, 3);
  const v128_t ch = wasm_i32x4_shuffle(c.v, c.v, 2, 3, 2, 3);
  const v128_t pl = wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(a.v), wasm_f64x2_promote_low_f32x4(b.v));
  const v128_t ph = wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(ah), wasm_f64x2_promote_low_f32x4(bh));
  const v128_t cl = wasm_f64x2_promote_low_f32x4(c.v), chd = wasm_f64x2_promote_low_f32x4(ch);
  const v128_t lo = NEG ? wasm_f64x2_sub(cl, pl) : wasm_f64x2_sub(pl, cl);
  const v128_t hi = NEG ? wasm_f64x2_sub(chd, ph) : wasm_f64x2_sub(ph, chd);
  return V{wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 1, 4, 5)};
}
FT_FN V vfnma(V a, V b, V c) { return fused_sub_f64<true>(a, b, c); }
FT_FN V vfms(V a, V b, V c) { return fused_sub_f64<false>(a, b, c); }
FT_FN V vneg(V a) { return V{wasm_f32x4_neg(a.v)}; }
FT_FN V vabs(V a) { return V{wasm_f32x4_abs(a.v)}; }
FT_FN V vsqrt(V a) { return V{wasm_f32x4_sqrt(a.v)}; }
FT_FN V vround(V a) { return V{wasm_f32x4_nearest(a.v)}; }
// pmax(x, y) = x < y ? y : x, so pmax(b, a) = a > b ? a : b (the vocabulary's rule)
FT_FN V vmax(V a, V b) { return V{wasm_f32x4_pmax(b.v, a.v)}; }
FT_FN V vmin(V a, V b) { return V{wasm_f32x4_pmin(b.v, a.v)}; }

FT_FN M vlt(V a, V b) { return M{wasm_f32x4_lt(a.v, b.v)}; }
FT_FN M vle(V a, V b) { return M{wasm_f32x4_le(a.v, b.v)}; }
FT_FN M vgt(V a, V b) { return M{wasm_f32x4_gt(a.v, b.v)}; }
FT_FN M vge(V a, V b) { return M{wasm_f32x4_ge(a.v, b.v)}; }
FT_FN M vnan(V a) { return M{wasm_f32x4_ne(a.v, a.v)}; }
FT_FN M mand(M a, M b) { return M{wasm_v128_and(a.m, b.m)}; }
FT_FN M mor(M a, M b) { return M{wasm_v128_or(a.m, b.m)}; }
FT_FN M mnot(M a) { return M{wasm_v128_not(a.m)}; }
FT_FN M mtail(int64_t n) {
  const int32_t c = n < 0 ? 0 : n > 4 ? 4 : int32_t(n);
  return M{wasm_i32x4_lt(wasm_i32x4_make(0, 1, 2, 3), wasm_i32x4_splat(c))};
}
FT_FN bool many(M a) { return wasm_v128_any_true(a.m); }
FT_FN V vselect(M m, V a, V b) { return V{wasm_v128_bitselect(a.v, b.v, m.m)}; }
FT_FN M mload_nonzero(const uint8_t* p, int64_t n) {
  int32_t t[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < n && i < 4; i++) t[i] = p[i];
  return M{wasm_v128_not(wasm_i32x4_eq(wasm_v128_load(t), wasm_i32x4_splat(0)))};
}

FT_FN float vsum(V a) {
  return (wasm_f32x4_extract_lane(a.v, 0) + wasm_f32x4_extract_lane(a.v, 2)) +
         (wasm_f32x4_extract_lane(a.v, 1) + wasm_f32x4_extract_lane(a.v, 3));
}
FT_FN float vmax_lanes(V a) {
  const float t0 = wasm_f32x4_extract_lane(a.v, 0), t1 = wasm_f32x4_extract_lane(a.v, 1);
  const float t2 = wasm_f32x4_extract_lane(a.v, 2), t3 = wasm_f32x4_extract_lane(a.v, 3);
  const float x = t0 > t2 ? t0 : t2, y = t1 > t3 ? t1 : t3;
  return x > y ? x : y;
}

FT_FN V vpow2i(V n) {
  const v128_t e = wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(n.v)), wasm_i32x4_splat(127));
  return V{wasm_i32x4_shl(e, 23)};
}
FT_FN V vcopysign(V mag, V sgn) {
  return V{wasm_v128_bitselect(sgn.v, mag.v, wasm_i32x4_splat(int32_t(0x80000000u)))};
}

/** In-place transpose of a W x W block: r[i] holds row i before, column i after. */
FT_FN void vtranspose(V r[4]) {
  const v128_t t0 = wasm_i32x4_shuffle(r[0].v, r[1].v, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r[0].v, r[1].v, 2, 6, 3, 7);
  const v128_t t2 = wasm_i32x4_shuffle(r[2].v, r[3].v, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(r[2].v, r[3].v, 2, 6, 3, 7);
  r[0].v = wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5);
  r[1].v = wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7);
  r[2].v = wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5);
  r[3].v = wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7);
}

FT_FN D dzero() { return D{wasm_f64x2_splat(0.0)}; }
FT_FN D dset(double x) { return D{wasm_f64x2_splat(x)}; }
FT_FN D dlo(V a) { return D{wasm_f64x2_promote_low_f32x4(a.v)}; }
FT_FN D dhi(V a) { return D{wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(a.v, a.v, 2, 3, 2, 3))}; }
FT_FN D dadd(D a, D b) { return D{wasm_f64x2_add(a.v, b.v)}; }
FT_FN D dsub(D a, D b) { return D{wasm_f64x2_sub(a.v, b.v)}; }
FT_FN D dmul(D a, D b) { return D{wasm_f64x2_mul(a.v, b.v)}; }
FT_FN D ddiv(D a, D b) { return D{wasm_f64x2_div(a.v, b.v)}; }
FT_FN D dsqrt(D a) { return D{wasm_f64x2_sqrt(a.v)}; }
FT_FN double dsum(D a) { return wasm_f64x2_extract_lane(a.v, 0) + wasm_f64x2_extract_lane(a.v, 1); }
FT_FN D dload_f_n(const float* p, int64_t n) {
  return D{wasm_f64x2_make(n > 0 ? double(p[0]) : 0.0, n > 1 ? double(p[1]) : 0.0)};
}
FT_FN void dstore_f_n(float* p, D a, int64_t n) {
  if (n > 0) p[0] = float(wasm_f64x2_extract_lane(a.v, 0));
  if (n > 1) p[1] = float(wasm_f64x2_extract_lane(a.v, 1));
}
FT_FN D dload_n(const double* p, int64_t n) {
  if (n >= 2) return D{wasm_v128_load(p)};
  return D{wasm_f64x2_make(n > 0 ? p[0] : 0.0, 0.0)};
}
FT_FN void dstore_n(double* p, D a, int64_t n) {
  if (n >= 2) return wasm_v128_store(p, a.v);
  if (n > 0) p[0] = wasm_f64x2_extract_lane(a.v, 0);
}
