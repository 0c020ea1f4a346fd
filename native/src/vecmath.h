// AVX-512 float math used by the row and attention kernels: exp, expm1, sigmoid, tanh, erfc, with
// relative errors of a few ulp (checked against float64 in test/native_kernels.test.ts).
#pragma once

#include "common.h"

#if FT_X86
namespace ft {
namespace vm {

/** e^x; exact 0 below -104, +inf above 88.8, NaN stays NaN. */
FT_AVX512 static inline __m512 exp(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.f), x);  // operand order keeps NaN
  x = _mm512_min_ps(_mm512_set1_ps(88.8f), x);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606820309417232e-6f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

/** e^x - 1, relatively accurate near 0. */
FT_AVX512 static inline __m512 expm1(__m512 x) {
  __m512 r = x;
  __m512 p = _mm512_set1_ps(1.f / 40320.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 5040.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_mul_ps(p, r);
  __m512 small = _mm512_fmadd_ps(p, r, r);  // r + r^2 (1/2 + r/6 + ...)
  __m512 big = _mm512_sub_ps(exp(x), _mm512_set1_ps(1.f));
  __mmask16 isSmall = _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(0.34657359f), _CMP_LT_OQ);
  return _mm512_mask_mov_ps(big, isSmall, small);
}

/** 1 / (1 + e^-x) */
FT_AVX512 static inline __m512 sigmoid(__m512 x) {
  __m512 e = exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
  return _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_add_ps(_mm512_set1_ps(1.f), e));
}

FT_AVX512 static inline __m512 tanh(__m512 x) {
  __m512 a = _mm512_min_ps(_mm512_set1_ps(9.1f), _mm512_abs_ps(x));
  __m512 e = expm1(_mm512_add_ps(a, a));
  __m512 t = _mm512_div_ps(e, _mm512_add_ps(e, _mm512_set1_ps(2.f)));
  // copy the sign of x
  __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int(0x80000000u)));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
}

/** erfc(a) for a >= 0, a = aHi + aLo (aLo: the rounding error of aHi, or 0): t * e^{-a^2} * e^{poly(t)}
 * (Chebyshev fit, relative error ~1.2e-7); a^2 is formed in double-float so large arguments keep their
 * relative accuracy. Also returns e^{-a^2} when expNegSq is given. */
FT_AVX512 static inline __m512 erfc_abs(__m512 a, __m512 aLo, __m512* expNegSq) {
  a = _mm512_min_ps(_mm512_set1_ps(10.f), a);
  __m512 t = _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_fmadd_ps(_mm512_set1_ps(0.5f), a, _mm512_set1_ps(1.f)));
  __m512 p = _mm512_set1_ps(0.17087277f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
  __m512 hi = _mm512_mul_ps(a, a);
  __m512 lo = _mm512_fmadd_ps(_mm512_add_ps(a, a), aLo, _mm512_fmsub_ps(a, a, hi));
  __m512 eHi = exp(_mm512_sub_ps(_mm512_setzero_ps(), hi));
  __m512 eLo = _mm512_fnmadd_ps(eHi, lo, eHi);  // e^{-hi} (1 - lo), |lo| tiny
  if (expNegSq) *expNegSq = eLo;
  return _mm512_mul_ps(_mm512_mul_ps(t, eLo), exp(p));
}

/** x / sqrt(2) as a double-float (hi, lo). */
FT_AVX512 static inline __m512 div_sqrt2(__m512 x, __m512* lo) {
  const __m512 c = _mm512_set1_ps(0.70710677f);           // float(1/sqrt2)
  const __m512 cLo = _mm512_set1_ps(1.2101617e-08f);      // 1/sqrt2 - float(1/sqrt2)
  __m512 hi = _mm512_mul_ps(x, c);
  *lo = _mm512_fmadd_ps(x, cLo, _mm512_fmsub_ps(x, c, hi));
  return hi;
}

/** erfc(z) for all z. */
FT_AVX512 static inline __m512 erfc(__m512 z) {
  __m512 r = erfc_abs(_mm512_abs_ps(z), _mm512_setzero_ps(), nullptr);
  __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
  return _mm512_mask_sub_ps(r, neg, _mm512_set1_ps(2.f), r);
}

/** e^{x - m} with x - m formed exactly (two-sum), for softmax rows. */
FT_AVX512 static inline __m512 exp_diff(__m512 x, __m512 m) {
  __m512 d = _mm512_sub_ps(x, m);
  __m512 bb = _mm512_sub_ps(d, x);
  __m512 err = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_sub_ps(d, bb)), _mm512_add_ps(m, bb));
  __m512 e = exp(d);
  // when d is -inf (masked entry) err is NaN: keep e = 0
  __mmask16 fin = _mm512_cmp_ps_mask(err, err, _CMP_ORD_Q);
  return _mm512_mask_fmadd_ps(e, fin, err, e);
}

FT_AVX512 static inline __mmask16 tail_mask(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
}

/** Sum of 16 floats in double. */
FT_AVX512 static inline __m512d widen_add(__m512d acc, __m512 v) {
  acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  return _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

/** In-register transpose of a 16x16 float block: r[i] row i in, r[j] column j out. */
FT_AVX512 static inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // group g = rows 4g..4g+3: u[4g + c] has, in lane L, column 4L + c of those rows
  for (int g = 0; g < 4; g++) {
    __m512 lo01 = t[4 * g], hi01 = t[4 * g + 1], lo23 = t[4 * g + 2], hi23 = t[4 * g + 3];
    u[4 * g + 0] = _mm512_shuffle_ps(lo01, lo23, 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(lo01, lo23, 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(hi01, hi23, 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(hi01, hi23, 0xEE);
  }
  for (int c = 0; c < 4; c++) {
    __m512 v0 = u[c], v1 = u[4 + c], v2 = u[8 + c], v3 = u[12 + c];
    __m512 x0 = _mm512_shuffle_f32x4(v0, v1, 0x44);
    __m512 x1 = _mm512_shuffle_f32x4(v0, v1, 0xEE);
    __m512 x2 = _mm512_shuffle_f32x4(v2, v3, 0x44);
    __m512 x3 = _mm512_shuffle_f32x4(v2, v3, 0xEE);
    r[c] = _mm512_shuffle_f32x4(x0, x2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(x0, x2, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(x1, x3, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(x1, x3, 0xDD);
  }
}

}  // namespace vm
}  // namespace ft
#endif
