// AVX2 + FMA back end of the SIMD vocabulary (see README.md): 8 float lanes in a __m256, masks as
// all-ones/zero lanes. Included inside ft::avx2 with FT_FN = target("avx2,fma,f16c") static inline.
#pragma once

#include <immintrin.h>

#include <cstdint>

constexpr int W = 8;
constexpr int WD = 4;
struct V { __m256 v; };
struct M { __m256 m; };
struct D { __m256d v; };

FT_FN __m256i lanes_below(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int c = n < 0 ? 0 : n > 8 ? 8 : int(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), idx);
}

FT_FN V vzero() { return V{_mm256_setzero_ps()}; }
FT_FN V vset(float x) { return V{_mm256_set1_ps(x)}; }
FT_FN V viota() { return V{_mm256_setr_ps(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f)}; }
FT_FN V vload(const float* p) { return V{_mm256_loadu_ps(p)}; }
FT_FN void vstore(float* p, V a) { _mm256_storeu_ps(p, a.v); }
FT_FN V vload_n(const float* p, int64_t n) {
  if (n >= 8) return vload(p);
  return V{_mm256_maskload_ps(p, lanes_below(n))};
}
FT_FN void vstore_n(float* p, V a, int64_t n) {
  if (n >= 8) return vstore(p, a);
  _mm256_maskstore_ps(p, lanes_below(n), a.v);
}

FT_FN V operator+(V a, V b) { return V{_mm256_add_ps(a.v, b.v)}; }
FT_FN V operator-(V a, V b) { return V{_mm256_sub_ps(a.v, b.v)}; }
FT_FN V operator*(V a, V b) { return V{_mm256_mul_ps(a.v, b.v)}; }
FT_FN V operator/(V a, V b) { return V{_mm256_div_ps(a.v, b.v)}; }
FT_FN V vfma(V a, V b, V c) { return V{_mm256_fmadd_ps(a.v, b.v, c.v)}; }
FT_FN V vfnma(V a, V b, V c) { return V{_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
FT_FN V vfms(V a, V b, V c) { return V{_mm256_fmsub_ps(a.v, b.v, c.v)}; }
FT_FN V vneg(V a) { return V{_mm256_xor_ps(a.v, _mm256_set1_ps(-0.f))}; }
FT_FN V vabs(V a) { return V{_mm256_andnot_ps(_mm256_set1_ps(-0.f), a.v)}; }
FT_FN V vsqrt(V a) { return V{_mm256_sqrt_ps(a.v)}; }
FT_FN V vround(V a) { return V{_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
// maxps(a, b) = a > b ? a : b, exactly the vocabulary's rule
FT_FN V vmax(V a, V b) { return V{_mm256_max_ps(a.v, b.v)}; }
FT_FN V vmin(V a, V b) { return V{_mm256_min_ps(a.v, b.v)}; }

FT_FN M vlt(V a, V b) { return M{_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
FT_FN M vle(V a, V b) { return M{_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
FT_FN M vgt(V a, V b) { return M{_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
FT_FN M vge(V a, V b) { return M{_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
FT_FN M vnan(V a) { return M{_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)}; }
FT_FN M mand(M a, M b) { return M{_mm256_and_ps(a.m, b.m)}; }
FT_FN M mor(M a, M b) { return M{_mm256_or_ps(a.m, b.m)}; }
FT_FN M mnot(M a) { return M{_mm256_xor_ps(a.m, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))}; }
FT_FN M mtail(int64_t n) { return M{_mm256_castsi256_ps(lanes_below(n))}; }
FT_FN bool many(M a) { return _mm256_movemask_ps(a.m) != 0; }
FT_FN V vselect(M m, V a, V b) { return V{_mm256_blendv_ps(b.v, a.v, m.m)}; }
FT_FN M mload_nonzero(const uint8_t* p, int64_t n) {
  uint64_t w = 0;
  for (int64_t i = 0; i < n && i < 8; i++) w |= uint64_t(p[i]) << (8 * i);
  const __m256i bytes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(w)));
  return M{_mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpeq_epi32(bytes, _mm256_setzero_si256()), _mm256_set1_epi32(-1)))};
}

FT_FN float vsum(V a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
FT_FN float vmax_lanes(V a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

FT_FN V vpow2i(V n) {
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
  return V{_mm256_castsi256_ps(_mm256_slli_epi32(e, 23))};
}
FT_FN V vcopysign(V mag, V sgn) {
  const __m256 s = _mm256_set1_ps(-0.f);
  return V{_mm256_or_ps(_mm256_andnot_ps(s, mag.v), _mm256_and_ps(s, sgn.v))};
}

/** In-place transpose of a W x W block: r[i] holds row i before, column i after. */
FT_FN void vtranspose(V r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
  }
  for (int g = 0; g < 2; g++) {
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c = 0; c < 4; c++) {
    r[c].v = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c].v = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

FT_FN D dzero() { return D{_mm256_setzero_pd()}; }
FT_FN D dset(double x) { return D{_mm256_set1_pd(x)}; }
FT_FN D dlo(V a) { return D{_mm256_cvtps_pd(_mm256_castps256_ps128(a.v))}; }
FT_FN D dhi(V a) { return D{_mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1))}; }
FT_FN D dadd(D a, D b) { return D{_mm256_add_pd(a.v, b.v)}; }
FT_FN D dsub(D a, D b) { return D{_mm256_sub_pd(a.v, b.v)}; }
FT_FN D dmul(D a, D b) { return D{_mm256_mul_pd(a.v, b.v)}; }
FT_FN D ddiv(D a, D b) { return D{_mm256_div_pd(a.v, b.v)}; }
FT_FN D dsqrt(D a) { return D{_mm256_sqrt_pd(a.v)}; }
FT_FN double dsum(D a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
FT_FN D dload_f_n(const float* p, int64_t n) {
  const __m128 f = n >= 4 ? _mm_loadu_ps(p) : _mm_maskload_ps(p, _mm256_castsi256_si128(lanes_below(n)));
  return D{_mm256_cvtps_pd(f)};
}
FT_FN void dstore_f_n(float* p, D a, int64_t n) {
  const __m128 f = _mm256_cvtpd_ps(a.v);
  if (n >= 4) _mm_storeu_ps(p, f);
  else _mm_maskstore_ps(p, _mm256_castsi256_si128(lanes_below(n)), f);
}
FT_FN __m256i dlanes_below(int64_t n) {
  const __m256i idx = _mm256_setr_epi64x(0, 1, 2, 3);
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n < 0 ? 0 : n > 4 ? 4 : n), idx);
}
FT_FN D dload_n(const double* p, int64_t n) {
  return D{n >= 4 ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, dlanes_below(n))};
}
FT_FN void dstore_n(double* p, D a, int64_t n) {
  if (n >= 4) _mm256_storeu_pd(p, a.v);
  else _mm256_maskstore_pd(p, dlanes_below(n), a.v);
}
