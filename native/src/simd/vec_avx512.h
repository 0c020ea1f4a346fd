// AVX-512 back end of the SIMD vocabulary (see README.md): 16 float lanes in a __m512, masks in
// __mmask16. Included inside ft::avx512 with FT_FN = target("avx512f,avx512bw,avx512vl,avx512dq,fma").
#pragma once

#include <immintrin.h>

#include <cstdint>

constexpr int W = 16;
constexpr int WD = 8;
struct V { __m512 v; };
struct M { __mmask16 m; };
struct D { __m512d v; };

FT_FN __mmask16 kbelow(int64_t n) { return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }
FT_FN __mmask8 kbelow8(int64_t n) { return n >= 8 ? __mmask8(0xff) : n <= 0 ? __mmask8(0) : __mmask8((1u << n) - 1); }

FT_FN V vzero() { return V{_mm512_setzero_ps()}; }
FT_FN V vset(float x) { return V{_mm512_set1_ps(x)}; }
FT_FN V viota() { return V{_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)}; }
FT_FN V vload(const float* p) { return V{_mm512_loadu_ps(p)}; }
FT_FN void vstore(float* p, V a) { _mm512_storeu_ps(p, a.v); }
FT_FN V vload_n(const float* p, int64_t n) { return V{_mm512_maskz_loadu_ps(kbelow(n), p)}; }
FT_FN void vstore_n(float* p, V a, int64_t n) { _mm512_mask_storeu_ps(p, kbelow(n), a.v); }

FT_FN V operator+(V a, V b) { return V{_mm512_add_ps(a.v, b.v)}; }
FT_FN V operator-(V a, V b) { return V{_mm512_sub_ps(a.v, b.v)}; }
FT_FN V operator*(V a, V b) { return V{_mm512_mul_ps(a.v, b.v)}; }
FT_FN V operator/(V a, V b) { return V{_mm512_div_ps(a.v, b.v)}; }
FT_FN V vfma(V a, V b, V c) { return V{_mm512_fmadd_ps(a.v, b.v, c.v)}; }
FT_FN V vfnma(V a, V b, V c) { return V{_mm512_fnmadd_ps(a.v, b.v, c.v)}; }
FT_FN V vfms(V a, V b, V c) { return V{_mm512_fmsub_ps(a.v, b.v, c.v)}; }
FT_FN V vneg(V a) { return V{_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(int(0x80000000u))))}; }
FT_FN V vabs(V a) { return V{_mm512_abs_ps(a.v)}; }
FT_FN V vsqrt(V a) { return V{_mm512_sqrt_ps(a.v)}; }
FT_FN V vround(V a) { return V{_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
FT_FN V vmax(V a, V b) { return V{_mm512_max_ps(a.v, b.v)}; }
FT_FN V vmin(V a, V b) { return V{_mm512_min_ps(a.v, b.v)}; }

FT_FN M vlt(V a, V b) { return M{_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
FT_FN M vle(V a, V b) { return M{_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
FT_FN M vgt(V a, V b) { return M{_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
FT_FN M vge(V a, V b) { return M{_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
FT_FN M vnan(V a) { return M{_mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q)}; }
FT_FN M mand(M a, M b) { return M{__mmask16(a.m & b.m)}; }
FT_FN M mor(M a, M b) { return M{__mmask16(a.m | b.m)}; }
FT_FN M mnot(M a) { return M{__mmask16(~a.m)}; }
FT_FN M mtail(int64_t n) { return M{kbelow(n)}; }
FT_FN bool many(M a) { return a.m != 0; }
FT_FN V vselect(M m, V a, V b) { return V{_mm512_mask_mov_ps(b.v, m.m, a.v)}; }
FT_FN M mload_nonzero(const uint8_t* p, int64_t n) {
  const __mmask16 t = kbelow(n);
  return M{__mmask16(t & _mm_cmpneq_epi8_mask(_mm_maskz_loadu_epi8(t, p), _mm_setzero_si128()))};
}

FT_FN float vsum(V a) { return _mm512_reduce_add_ps(a.v); }
FT_FN float vmax_lanes(V a) { return _mm512_reduce_max_ps(a.v); }

FT_FN V vpow2i(V n) {
  const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
  return V{_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
}
FT_FN V vcopysign(V mag, V sgn) {
  const __m512i s = _mm512_set1_epi32(int(0x80000000u));
  return V{_mm512_castsi512_ps(_mm512_ternarylogic_epi32(s, _mm512_castps_si512(sgn.v), _mm512_castps_si512(mag.v), 0xCA))};
}

/** In-place transpose of a W x W block: r[i] holds row i before, column i after. */
FT_FN void vtranspose(V r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i].v, r[2 * i + 1].v);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i].v, r[2 * i + 1].v);
  }
  for (int g = 0; g < 4; g++) {
    const __m512 lo01 = t[4 * g], hi01 = t[4 * g + 1], lo23 = t[4 * g + 2], hi23 = t[4 * g + 3];
    u[4 * g + 0] = _mm512_shuffle_ps(lo01, lo23, 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(lo01, lo23, 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(hi01, hi23, 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(hi01, hi23, 0xEE);
  }
  for (int c = 0; c < 4; c++) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), x1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 x2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), x3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[c].v = _mm512_shuffle_f32x4(x0, x2, 0x88);
    r[4 + c].v = _mm512_shuffle_f32x4(x0, x2, 0xDD);
    r[8 + c].v = _mm512_shuffle_f32x4(x1, x3, 0x88);
    r[12 + c].v = _mm512_shuffle_f32x4(x1, x3, 0xDD);
  }
}

FT_FN D dzero() { return D{_mm512_setzero_pd()}; }
FT_FN D dset(double x) { return D{_mm512_set1_pd(x)}; }
FT_FN D dlo(V a) { return D{_mm512_cvtps_pd(_mm512_castps512_ps256(a.v))}; }
FT_FN D dhi(V a) { return D{_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1)))}; }
FT_FN D dadd(D a, D b) { return D{_mm512_add_pd(a.v, b.v)}; }
FT_FN D dsub(D a, D b) { return D{_mm512_sub_pd(a.v, b.v)}; }
FT_FN D dmul(D a, D b) { return D{_mm512_mul_pd(a.v, b.v)}; }
FT_FN D ddiv(D a, D b) { return D{_mm512_div_pd(a.v, b.v)}; }
FT_FN D dsqrt(D a) { return D{_mm512_sqrt_pd(a.v)}; }
FT_FN double dsum(D a) { return _mm512_reduce_add_pd(a.v); }
FT_FN D dload_f_n(const float* p, int64_t n) { return D{_mm512_cvtps_pd(_mm256_maskz_loadu_ps(kbelow8(n), p))}; }
FT_FN void dstore_f_n(float* p, D a, int64_t n) { _mm256_mask_storeu_ps(p, kbelow8(n), _mm512_cvtpd_ps(a.v)); }
FT_FN D dload_n(const double* p, int64_t n) { return D{_mm512_maskz_loadu_pd(kbelow8(n), p)}; }
FT_FN void dstore_n(double* p, D a, int64_t n) { _mm512_mask_storeu_pd(p, kbelow8(n), a.v); }
