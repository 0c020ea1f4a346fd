// NEON (aarch64) back end of the SIMD vocabulary (see README.md): 4 float lanes in a float32x4_t, masks
// as all-ones/zero uint32x4_t lanes. NEON is baseline on aarch64, so FT_FN is plain `static inline`.
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

constexpr int W = 4;
constexpr int WD = 2;
struct V { float32x4_t v; };
struct M { uint32x4_t m; };
struct D { float64x2_t v; };

FT_FN V vzero() { return V{vdupq_n_f32(0.f)}; }
FT_FN V vset(float x) { return V{vdupq_n_f32(x)}; }
FT_FN V viota() {
  static const float k[4] = {0.f, 1.f, 2.f, 3.f};
  return V{vld1q_f32(k)};
}
FT_FN V vload(const float* p) { return V{vld1q_f32(p)}; }
FT_FN void vstore(float* p, V a) { vst1q_f32(p, a.v); }
FT_FN V vload_n(const float* p, int64_t n) {
  if (n >= 4) return vload(p);
  float t[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t i = 0; i < n; i++) t[i] = p[i];
  return V{vld1q_f32(t)};
}
FT_FN void vstore_n(float* p, V a, int64_t n) {
  if (n >= 4) return vstore(p, a);
  float t[4];
  vst1q_f32(t, a.v);
  for (int64_t i = 0; i < n; i++) p[i] = t[i];
}

FT_FN V operator+(V a, V b) { return V{vaddq_f32(a.v, b.v)}; }
FT_FN V operator-(V a, V b) { return V{vsubq_f32(a.v, b.v)}; }
FT_FN V operator*(V a, V b) { return V{vmulq_f32(a.v, b.v)}; }
FT_FN V operator/(V a, V b) { return V{vdivq_f32(a.v, b.v)}; }
FT_FN V vfma(V a, V b, V c) { return V{vfmaq_f32(c.v, a.v, b.v)}; }
FT_FN V vfnma(V a, V b, V c) { return V{vfmsq_f32(c.v, a.v, b.v)}; }
FT_FN V vfms(V a, V b, V c) { return V{vnegq_f32(vfmsq_f32(c.v, a.v, b.v))}; }
FT_FN V vneg(V a) { return V{vnegq_f32(a.v)}; }
FT_FN V vabs(V a) { return V{vabsq_f32(a.v)}; }
FT_FN V vsqrt(V a) { return V{vsqrtq_f32(a.v)}; }
FT_FN V vround(V a) { return V{vrndnq_f32(a.v)}; }
// the vocabulary's rule a > b ? a : b (vmaxq_f32 would propagate NaN from either side)
FT_FN V vmax(V a, V b) { return V{vbslq_f32(vcgtq_f32(a.v, b.v), a.v, b.v)}; }
FT_FN V vmin(V a, V b) { return V{vbslq_f32(vcltq_f32(a.v, b.v), a.v, b.v)}; }

FT_FN M vlt(V a, V b) { return M{vcltq_f32(a.v, b.v)}; }
FT_FN M vle(V a, V b) { return M{vcleq_f32(a.v, b.v)}; }
FT_FN M vgt(V a, V b) { return M{vcgtq_f32(a.v, b.v)}; }
FT_FN M vge(V a, V b) { return M{vcgeq_f32(a.v, b.v)}; }
FT_FN M vnan(V a) { return M{vmvnq_u32(vceqq_f32(a.v, a.v))}; }
FT_FN M mand(M a, M b) { return M{vandq_u32(a.m, b.m)}; }
FT_FN M mor(M a, M b) { return M{vorrq_u32(a.m, b.m)}; }
FT_FN M mnot(M a) { return M{vmvnq_u32(a.m)}; }
FT_FN M mtail(int64_t n) {
  static const uint32_t idx[4] = {0, 1, 2, 3};
  const uint32_t c = n < 0 ? 0u : n > 4 ? 4u : uint32_t(n);
  return M{vcltq_u32(vld1q_u32(idx), vdupq_n_u32(c))};
}
FT_FN bool many(M a) { return vmaxvq_u32(a.m) != 0; }
FT_FN V vselect(M m, V a, V b) { return V{vbslq_f32(m.m, a.v, b.v)}; }
FT_FN M mload_nonzero(const uint8_t* p, int64_t n) {
  uint32_t t[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < n && i < 4; i++) t[i] = p[i];
  return M{vmvnq_u32(vceqq_u32(vld1q_u32(t), vdupq_n_u32(0)))};
}

FT_FN float vsum(V a) { return vaddvq_f32(a.v); }
FT_FN float vmax_lanes(V a) {
  // pairwise a > b ? a : b, as vmax
  float t[4];
  vst1q_f32(t, a.v);
  float x = t[0] > t[2] ? t[0] : t[2], y = t[1] > t[3] ? t[1] : t[3];
  return x > y ? x : y;
}

FT_FN V vpow2i(V n) {
  const int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n.v), vdupq_n_s32(127));
  return V{vreinterpretq_f32_s32(vshlq_n_s32(e, 23))};
}
FT_FN V vcopysign(V mag, V sgn) {
  return V{vbslq_f32(vdupq_n_u32(0x80000000u), sgn.v, mag.v)};
}

/** In-place transpose of a W x W block: r[i] holds row i before, column i after. */
FT_FN void vtranspose(V r[4]) {
  const float32x4x2_t a = vtrnq_f32(r[0].v, r[1].v), b = vtrnq_f32(r[2].v, r[3].v);
  r[0].v = vcombine_f32(vget_low_f32(a.val[0]), vget_low_f32(b.val[0]));
  r[1].v = vcombine_f32(vget_low_f32(a.val[1]), vget_low_f32(b.val[1]));
  r[2].v = vcombine_f32(vget_high_f32(a.val[0]), vget_high_f32(b.val[0]));
  r[3].v = vcombine_f32(vget_high_f32(a.val[1]), vget_high_f32(b.val[1]));
}

FT_FN D dzero() { return D{vdupq_n_f64(0.0)}; }
FT_FN D dset(double x) { return D{vdupq_n_f64(x)}; }
FT_FN D dlo(V a) { return D{vcvt_f64_f32(vget_low_f32(a.v))}; }
FT_FN D dhi(V a) { return D{vcvt_high_f64_f32(a.v)}; }
FT_FN D dadd(D a, D b) { return D{vaddq_f64(a.v, b.v)}; }
FT_FN D dsub(D a, D b) { return D{vsubq_f64(a.v, b.v)}; }
FT_FN D dmul(D a, D b) { return D{vmulq_f64(a.v, b.v)}; }
FT_FN D ddiv(D a, D b) { return D{vdivq_f64(a.v, b.v)}; }
FT_FN D dsqrt(D a) { return D{vsqrtq_f64(a.v)}; }
FT_FN double dsum(D a) { return vaddvq_f64(a.v); }
FT_FN D dload_f_n(const float* p, int64_t n) {
  float t[2] = {n > 0 ? p[0] : 0.f, n > 1 ? p[1] : 0.f};
  return D{vcvt_f64_f32(vld1_f32(t))};
}
FT_FN void dstore_f_n(float* p, D a, int64_t n) {
  float t[2];
  vst1_f32(t, vcvt_f32_f64(a.v));
  if (n > 0) p[0] = t[0];
  if (n > 1) p[1] = t[1];
}
FT_FN D dload_n(const double* p, int64_t n) {
  if (n >= 2) return D{vld1q_f64(p)};
  double t[2] = {n > 0 ? p[0] : 0.0, 0.0};
  return D{vld1q_f64(t)};
}
FT_FN void dstore_n(double* p, D a, int64_t n) {
  if (n >= 2) return vst1q_f64(p, a.v);
  if (n > 0) p[0] = vgetq_lane_f64(a.v, 0);
}
