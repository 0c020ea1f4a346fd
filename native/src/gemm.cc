// BLIS-style float32 GEMM (and bf16-input GEMM): packed A/B panels, register-blocked microkernels
// (AVX-512 14x32, AVX-512-BF16 14x32 on bf16 pairs, AVX2 6x16, scalar 4x16), cache blocking, batched
// and multithreaded over the persistent pool.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.h"
#include "vecmath.h"

namespace ft {

namespace {

// ---------------------------------------------------------------------------------------------
// Blocking parameters (FLEXTOK_GEMM_MC / _NC / _KC override for tuning)
// ---------------------------------------------------------------------------------------------

struct Blocking {
  int64_t mc, nc, kc;
};

int64_t env_int(const char* name, int64_t dflt) {
  const char* v = std::getenv(name);
  if (!v) return dflt;
  long long x = std::atoll(v);
  return x > 0 ? x : dflt;
}

// ---------------------------------------------------------------------------------------------
// bf16 rounding
// ---------------------------------------------------------------------------------------------

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
/** bfloat16 bits of f, round to nearest even (NaN stays NaN). */
inline uint32_t bf16_bits(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return ((u >> 16) | 0x40u) & 0xffffu;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
inline float round_bf16(float f) { return bits_f32(bf16_bits(f) << 16); }

// ---------------------------------------------------------------------------------------------
// Packing (generic C++). A block -> panels of MR rows: panel p holds kc x MR, dst[kk*MR + r].
// B block -> panels of NR columns: panel p holds kc x NR, dst[kk*NR + c]. Rows/columns past the
// matrix edge are zero. `kcPad` rows are written per panel (kcPad >= kc; extra rows are zero).
// ---------------------------------------------------------------------------------------------

/** Reads element (i, p) of op(X) where X is stored row-major with leading dimension ld. */
template <int R>
void pack_rows_generic(bool trans, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                       int64_t kcPad, float* dst) {
  // op(X) element (i, p): trans ? x[p*ld + i] : x[i*ld + p]
  for (int64_t ip = 0; ip < rows; ip += R) {
    int64_t rr = std::min<int64_t>(R, rows - ip);
    float* d = dst + (ip / R) * kcPad * R;
    if (trans) {
      for (int64_t kk = 0; kk < kc; kk++) {
        const float* s = x + (p0 + kk) * ld + i0 + ip;
        float* dd = d + kk * R;
        int64_t r = 0;
        for (; r < rr; r++) dd[r] = s[r];
        for (; r < R; r++) dd[r] = 0.f;
      }
    } else {
      for (int64_t r = 0; r < rr; r++) {
        const float* s = x + (i0 + ip + r) * ld + p0;
        for (int64_t kk = 0; kk < kc; kk++) d[kk * R + r] = s[kk];
      }
      for (int64_t r = rr; r < R; r++)
        for (int64_t kk = 0; kk < kc; kk++) d[kk * R + r] = 0.f;
    }
    for (int64_t kk = kc; kk < kcPad; kk++)
      for (int r = 0; r < R; r++) d[kk * R + r] = 0.f;
  }
}

#if FT_X86
/** AVX-512 packing of op(X) rows [i0, i0+rows) x cols [p0, p0+kc) into R-row panels (R = 14 or 32). */
template <int R>
FT_AVX512 void pack_rows_avx512(bool trans, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0,
                                int64_t kc, int64_t kcPad, float* dst) {
  static_assert(R == 14 || R == 32, "panel width");
  for (int64_t ip = 0; ip < rows; ip += R) {
    int64_t rr = std::min<int64_t>(R, rows - ip);
    float* d = dst + (ip / R) * kcPad * R;
    if (trans) {
      // rows of the panel are contiguous in memory for each kk: plain copies
      if (R == 32) {
        __mmask16 m0 = rr >= 16 ? __mmask16(0xffff) : __mmask16((1u << rr) - 1);
        __mmask16 m1 = rr >= 32 ? __mmask16(0xffff) : rr > 16 ? __mmask16((1u << (rr - 16)) - 1) : __mmask16(0);
        for (int64_t kk = 0; kk < kc; kk++) {
          const float* s = x + (p0 + kk) * ld + i0 + ip;
          _mm512_store_ps(d + kk * 32, _mm512_maskz_loadu_ps(m0, s));
          _mm512_store_ps(d + kk * 32 + 16, _mm512_maskz_loadu_ps(m1, s + 16));
        }
      } else {
        __mmask16 m = __mmask16((1u << rr) - 1);
        for (int64_t kk = 0; kk < kc; kk++) {
          const float* s = x + (p0 + kk) * ld + i0 + ip;
          _mm512_mask_storeu_ps(d + kk * 14, 0x3fff, _mm512_maskz_loadu_ps(m, s));
        }
      }
    } else {
      // each panel row is contiguous along k: transpose 16x16 blocks
      for (int half = 0; half < (R == 32 ? 2 : 1); half++) {
        int64_t rbase = half * 16;
        int64_t rcount = std::min<int64_t>(16, std::max<int64_t>(0, rr - rbase));
        int64_t rlimit = R == 32 ? 16 : 14;
        const float* src[16];
        for (int r = 0; r < 16; r++) src[r] = r < rcount ? x + (i0 + ip + rbase + r) * ld + p0 : nullptr;
        for (int64_t kk = 0; kk < kc; kk += 16) {
          int64_t kn = std::min<int64_t>(16, kc - kk);
          __mmask16 km = kn == 16 ? __mmask16(0xffff) : __mmask16((1u << kn) - 1);
          __m512 v[16];
          for (int r = 0; r < 16; r++) v[r] = src[r] ? _mm512_maskz_loadu_ps(km, src[r] + kk) : _mm512_setzero_ps();
          vm::transpose16(v);
          if (R == 32) {
            for (int j = 0; j < kn; j++) _mm512_store_ps(d + (kk + j) * 32 + rbase, v[j]);
          } else {
            (void)rlimit;
            for (int j = 0; j < kn; j++) _mm512_mask_storeu_ps(d + (kk + j) * 14, 0x3fff, v[j]);
          }
        }
      }
    }
    for (int64_t kk = kc; kk < kcPad; kk++)
      for (int r = 0; r < R; r++) d[kk * R + r] = 0.f;
  }
}

/** Converts packed fp32 rows (pairs of W-float rows) into W bf16-pair words in place: word = lo | hi << 16. */
FT_AVX512 void pairs_to_bf16_avx512(float* buf, int64_t npairs, int W) {
  uint32_t* out = reinterpret_cast<uint32_t*>(buf);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x40);
  auto round = [&](__m512i u) FT_AVX512 {
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(_mm512_srli_epi32(u, 16), one)), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absmask), inf);
    return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
  };
  for (int64_t q = 0; q < npairs; q++) {
    const float* lo = buf + 2 * q * W;
    const float* hi = lo + W;
    for (int c = 0; c < W; c += 16) {
      int n = std::min(16, W - c);
      __mmask16 m = n == 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
      __m512i a = round(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, lo + c)));
      __m512i b = round(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, hi + c)));
      __m512i w = _mm512_or_si512(a, _mm512_slli_epi32(b, 16));
      _mm512_mask_storeu_epi32(out + q * W + c, m, w);
    }
  }
}
#endif

void pairs_to_bf16_generic(float* buf, int64_t npairs, int W) {
  uint32_t* out = reinterpret_cast<uint32_t*>(buf);
  std::vector<uint32_t> tmp(W);
  for (int64_t q = 0; q < npairs; q++) {
    const float* lo = buf + 2 * q * W;
    const float* hi = lo + W;
    for (int c = 0; c < W; c++) tmp[c] = bf16_bits(lo[c]) | (bf16_bits(hi[c]) << 16);
    std::memcpy(out + q * W, tmp.data(), W * 4);
  }
}

void round_buffer_bf16(float* buf, int64_t n) {
  for (int64_t i = 0; i < n; i++) buf[i] = round_bf16(buf[i]);
}

// ---------------------------------------------------------------------------------------------
// Microkernels. Contract: acc(MR x NR) = sum over kc of packed A (kc x MR) times packed B (kc x NR);
// then C[r, c] = alpha * acc + beta * C[r, c] for r < mr, c < nr (beta == 0: C is not read).
// ---------------------------------------------------------------------------------------------

#if FT_X86
template <int MR>
FT_AVX512 void ukr_avx512_f32(int64_t kc, const float* __restrict A, const float* __restrict B, float* C, int64_t ldc,
                              int nr, float alpha, float beta) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 14
  for (int r = 0; r < MR; r++) {
    c0[r] = _mm512_setzero_ps();
    c1[r] = _mm512_setzero_ps();
  }
#pragma GCC unroll 14
  for (int r = 0; r < MR; r++) _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(B);
    __m512 b1 = _mm512_load_ps(B + 16);
    _mm_prefetch(reinterpret_cast<const char*>(B + 32 * 8), _MM_HINT_T0);
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
      __m512 a = _mm512_set1_ps(A[r]);
      c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
    }
    A += 14;
    B += 32;
  }
  __mmask16 m0 = nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1);
  __mmask16 m1 = nr >= 32 ? __mmask16(0xffff) : nr > 16 ? __mmask16((1u << (nr - 16)) - 1) : __mmask16(0);
  __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.f) {
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
      _mm512_mask_storeu_ps(C + r * ldc, m0, _mm512_mul_ps(va, c0[r]));
      _mm512_mask_storeu_ps(C + r * ldc + 16, m1, _mm512_mul_ps(va, c1[r]));
    }
  } else {
    __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
      float* cr = C + r * ldc;
      __m512 o0 = _mm512_maskz_loadu_ps(m0, cr), o1 = _mm512_maskz_loadu_ps(m1, cr + 16);
      _mm512_mask_storeu_ps(cr, m0, _mm512_fmadd_ps(va, c0[r], _mm512_mul_ps(vb, o0)));
      _mm512_mask_storeu_ps(cr + 16, m1, _mm512_fmadd_ps(va, c1[r], _mm512_mul_ps(vb, o1)));
    }
  }
}

/** bf16 microkernel: A holds kc2 x 14 words (bf16 pairs along k), B holds kc2 x 32 words. */
template <int MR>
FT_AVX512BF16 void ukr_avx512_bf16(int64_t kc2, const float* __restrict Af, const float* __restrict Bf, float* C,
                                   int64_t ldc, int nr, float alpha, float beta) {
  const int32_t* A = reinterpret_cast<const int32_t*>(Af);
  const int32_t* B = reinterpret_cast<const int32_t*>(Bf);
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 14
  for (int r = 0; r < MR; r++) {
    c0[r] = _mm512_setzero_ps();
    c1[r] = _mm512_setzero_ps();
  }
#pragma GCC unroll 14
  for (int r = 0; r < MR; r++) _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc2; k++) {
    __m512bh b0 = (__m512bh)_mm512_load_si512(B);
    __m512bh b1 = (__m512bh)_mm512_load_si512(B + 16);
    _mm_prefetch(reinterpret_cast<const char*>(B + 32 * 8), _MM_HINT_T0);
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
      __m512bh a = (__m512bh)_mm512_set1_epi32(A[r]);
      c0[r] = _mm512_dpbf16_ps(c0[r], a, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], a, b1);
    }
    A += 14;
    B += 32;
  }
  __mmask16 m0 = nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1);
  __mmask16 m1 = nr >= 32 ? __mmask16(0xffff) : nr > 16 ? __mmask16((1u << (nr - 16)) - 1) : __mmask16(0);
  __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.f) {
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
      _mm512_mask_storeu_ps(C + r * ldc, m0, _mm512_mul_ps(va, c0[r]));
      _mm512_mask_storeu_ps(C + r * ldc + 16, m1, _mm512_mul_ps(va, c1[r]));
    }
  } else {
    __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
      float* cr = C + r * ldc;
      __m512 o0 = _mm512_maskz_loadu_ps(m0, cr), o1 = _mm512_maskz_loadu_ps(m1, cr + 16);
      _mm512_mask_storeu_ps(cr, m0, _mm512_fmadd_ps(va, c0[r], _mm512_mul_ps(vb, o0)));
      _mm512_mask_storeu_ps(cr + 16, m1, _mm512_fmadd_ps(va, c1[r], _mm512_mul_ps(vb, o1)));
    }
  }
}

template <int MR>
FT_AVX2 void ukr_avx2_f32(int64_t kc, const float* __restrict A, const float* __restrict B, float* C, int64_t ldc,
                          int nr, float alpha, float beta) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
    c0[r] = _mm256_setzero_ps();
    c1[r] = _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(B);
    __m256 b1 = _mm256_load_ps(B + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      __m256 a = _mm256_broadcast_ss(A + r);
      c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
    }
    A += 6;
    B += 16;
  }
  __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (nr == 16) {
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      float* cr = C + r * ldc;
      if (beta == 0.f) {
        _mm256_storeu_ps(cr, _mm256_mul_ps(va, c0[r]));
        _mm256_storeu_ps(cr + 8, _mm256_mul_ps(va, c1[r]));
      } else {
        _mm256_storeu_ps(cr, _mm256_fmadd_ps(va, c0[r], _mm256_mul_ps(vb, _mm256_loadu_ps(cr))));
        _mm256_storeu_ps(cr + 8, _mm256_fmadd_ps(va, c1[r], _mm256_mul_ps(vb, _mm256_loadu_ps(cr + 8))));
      }
    }
  } else {
    alignas(32) float tile[MR * 16];
    for (int r = 0; r < MR; r++) {
      _mm256_store_ps(tile + r * 16, c0[r]);
      _mm256_store_ps(tile + r * 16 + 8, c1[r]);
    }
    for (int r = 0; r < MR; r++)
      for (int c = 0; c < nr; c++) {
        float* cc = C + r * ldc + c;
        *cc = beta == 0.f ? alpha * tile[r * 16 + c] : alpha * tile[r * 16 + c] + beta * *cc;
      }
  }
}
#endif

template <int MR>
void ukr_scalar_f32(int64_t kc, const float* __restrict A, const float* __restrict B, float* C, int64_t ldc, int nr,
                    float alpha, float beta) {
  float acc[MR][16] = {};
  for (int64_t k = 0; k < kc; k++) {
    for (int r = 0; r < MR; r++) {
      float a = A[r];
      for (int c = 0; c < 16; c++) acc[r][c] += a * B[c];
    }
    A += 4;
    B += 16;
  }
  for (int r = 0; r < MR; r++)
    for (int c = 0; c < nr; c++) {
      float* cc = C + r * ldc + c;
      *cc = beta == 0.f ? alpha * acc[r][c] : alpha * acc[r][c] + beta * *cc;
    }
}

using Ukr = void (*)(int64_t, const float*, const float*, float*, int64_t, int, float, float);

/** One microkernel family: register tile sizes, kernels for every row count 1..MR, and packing. */
struct KernelSet {
  int mr, nr;
  Ukr ukr[15];       // ukr[rows] for rows in 1..mr
  bool bf16Pairs;    // packed operands are bf16 pairs (k halved)
  bool emulateBf16;  // round packed fp32 operands to bf16
  void (*packA)(bool, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
  void (*packB)(bool, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
  Blocking blk;
};

template <template <int> class K, int... Rs>
struct UkrTable;

#if FT_X86
template <int MR>
struct Avx512F32 {
  static constexpr Ukr fn = &ukr_avx512_f32<MR>;
};
template <int MR>
struct Avx512Bf16 {
  static constexpr Ukr fn = &ukr_avx512_bf16<MR>;
};
template <int MR>
struct Avx2F32 {
  static constexpr Ukr fn = &ukr_avx2_f32<MR>;
};
#endif
template <int MR>
struct ScalarF32 {
  static constexpr Ukr fn = &ukr_scalar_f32<MR>;
};

template <template <int> class K, int... Rs>
void fill_table(Ukr* t, std::integer_sequence<int, Rs...>) {
  ((t[Rs + 1] = K<Rs + 1>::fn), ...);
}

// The packed A layout uses the family's MR for every panel; a kernel with fewer rows reads the first rows.
// For this to work, the per-k stride of A inside the kernel is the family MR (14, 6, 4), which each
// kernel hard-codes.

#if FT_X86
void packA_avx512(bool t, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0, int64_t kc, int64_t kcPad,
                  float* d) {
  pack_rows_avx512<14>(t, x, ld, i0, rows, p0, kc, kcPad, d);
}
void packB_avx512(bool t, const float* x, int64_t ld, int64_t j0, int64_t cols, int64_t p0, int64_t kc, int64_t kcPad,
                  float* d) {
  // op(B) is k x n; its columns are the "rows" of op(B)^T, which is stored transposed relative to B
  pack_rows_avx512<32>(!t, x, ld, j0, cols, p0, kc, kcPad, d);
}
#endif
void packA_6(bool t, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0, int64_t kc, int64_t kcPad,
             float* d) {
  pack_rows_generic<6>(t, x, ld, i0, rows, p0, kc, kcPad, d);
}
void packB_16(bool t, const float* x, int64_t ld, int64_t j0, int64_t cols, int64_t p0, int64_t kc, int64_t kcPad,
              float* d) {
  pack_rows_generic<16>(!t, x, ld, j0, cols, p0, kc, kcPad, d);
}
void packA_4(bool t, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0, int64_t kc, int64_t kcPad,
             float* d) {
  pack_rows_generic<4>(t, x, ld, i0, rows, p0, kc, kcPad, d);
}

struct Families {
  KernelSet avx512, avx512bf16, avx512emu, avx2, avx2emu, scalar, scalaremu;
  Families() {
    int64_t mc = env_int("FLEXTOK_GEMM_MC", 336), nc = env_int("FLEXTOK_GEMM_NC", 1536),
            kc = env_int("FLEXTOK_GEMM_KC", 384);
#if FT_X86
    avx512 = KernelSet{14, 32, {}, false, false, packA_avx512, packB_avx512, {mc / 14 * 14, nc / 32 * 32, kc}};
    fill_table<Avx512F32>(avx512.ukr, std::make_integer_sequence<int, 14>{});
    avx512emu = avx512;
    avx512emu.emulateBf16 = true;
    avx512bf16 = KernelSet{14, 32, {}, true, false, packA_avx512, packB_avx512,
                           {mc / 14 * 14, nc / 32 * 32, env_int("FLEXTOK_GEMM_KC_BF16", 512) / 2 * 2}};
    fill_table<Avx512Bf16>(avx512bf16.ukr, std::make_integer_sequence<int, 14>{});
    avx2 = KernelSet{6, 16, {}, false, false, packA_6, packB_16, {144, 1024, 256}};
    fill_table<Avx2F32>(avx2.ukr, std::make_integer_sequence<int, 6>{});
    avx2emu = avx2;
    avx2emu.emulateBf16 = true;
#endif
    scalar = KernelSet{4, 16, {}, false, false, packA_4, packB_16, {64, 512, 256}};
    fill_table<ScalarF32>(scalar.ukr, std::make_integer_sequence<int, 4>{});
    scalaremu = scalar;
    scalaremu.emulateBf16 = true;
  }
};

const Families& families() {
  static Families f;
  return f;
}

const KernelSet& pick_kernels(bool bf16) {
  const Families& f = families();
#if FT_X86
  switch (active_isa()) {
    case Isa::Avx512: return bf16 ? (active_bf16() ? f.avx512bf16 : f.avx512emu) : f.avx512;
    case Isa::Avx2: return bf16 ? f.avx2emu : f.avx2;
    default: break;
  }
#endif
  return bf16 ? f.scalaremu : f.scalar;
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; i++) {
    float* row = c + i * ldc;
    if (beta == 0.f) std::memset(row, 0, n * sizeof(float));
    else if (beta != 1.f)
      for (int64_t j = 0; j < n; j++) row[j] *= beta;
  }
}

/** One GEMM on the calling thread: C[m x n] = alpha op(A) op(B) + beta C. */
void gemm_one(const KernelSet& ks, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
              const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const int MR = ks.mr, NR = ks.nr;
  const int64_t MC = ks.blk.mc, NC = ks.blk.nc, KC = ks.blk.kc;
  const int64_t kcMax = std::min(KC, k);
  const int64_t kcPadMax = (kcMax + 1) / 2 * 2;
  const int64_t ncMax = std::min(NC, (n + NR - 1) / NR * NR);
  const int64_t mcMax = std::min(MC, (m + MR - 1) / MR * MR);
  float* packB = static_cast<float*>(scratch(kScratchPackB, (ncMax + NR) * kcPadMax * sizeof(float)));
  float* packA = static_cast<float*>(scratch(kScratchPackA, (mcMax + MR) * kcPadMax * sizeof(float)));

  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc);
    const int64_t nPanels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      const int64_t kcPad = ks.bf16Pairs ? (kc + 1) / 2 * 2 : kc;
      const int64_t kIter = ks.bf16Pairs ? kcPad / 2 : kc;
      const float betaEff = pc == 0 ? beta : 1.f;
      ks.packB(transB, b, ldb, jc, nc, pc, kc, kcPad, packB);
      if (ks.bf16Pairs) {
#if FT_X86
        pairs_to_bf16_avx512(packB, nPanels * kcPad / 2, NR);
#endif
      } else if (ks.emulateBf16) {
        round_buffer_bf16(packB, nPanels * kcPad * NR);
      }
      const int64_t panelB = (ks.bf16Pairs ? kcPad / 2 : kcPad) * NR;
      for (int64_t ic = 0; ic < m; ic += MC) {
        const int64_t mc = std::min(MC, m - ic);
        const int64_t mPanels = (mc + MR - 1) / MR;
        ks.packA(transA, a, lda, ic, mc, pc, kc, kcPad, packA);
        if (ks.bf16Pairs) {
#if FT_X86
          pairs_to_bf16_avx512(packA, mPanels * kcPad / 2, MR);
#endif
        } else if (ks.emulateBf16) {
          round_buffer_bf16(packA, mPanels * kcPad * MR);
        }
        const int64_t panelA = (ks.bf16Pairs ? kcPad / 2 : kcPad) * MR;
        for (int64_t jp = 0; jp < nPanels; jp++) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jp * NR));
          const float* bp = packB + jp * panelB;
          for (int64_t ipn = 0; ipn < mPanels; ipn++) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ipn * MR));
            float* cp = c + (ic + ipn * MR) * ldc + jc + jp * NR;
            ks.ukr[mr](kIter, packA + ipn * panelA, bp, cp, ldc, nr, alpha, betaEff);
          }
        }
      }
    }
  }
}

}  // namespace

void gemm_serial(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc, bool bf16) {
  gemm_one(pick_kernels(bf16), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(const GemmParams& p, bool bf16) {
  if (p.batch <= 0 || p.m <= 0 || p.n <= 0) return;
  const KernelSet& ks = pick_kernels(bf16);
  const int T = num_threads();
  const double flops = 2.0 * double(p.m) * double(p.n) * double(p.k) * double(p.batch);

  // Split every matrix of the batch into `parts` pieces along M or N, so that the task count balances.
  int64_t parts = 1;
  if (T > 1 && flops >= 2.0e5) {
    if (p.batch == 1) parts = T;
    else
      while (!((p.batch * parts) % T == 0 || p.batch * parts >= 4 * T)) parts++;
  }
  // Which dimension to split: the one whose duplicated packing costs less (transposing packs cost more).
  const double wA = p.transA ? 1.0 : 2.0, wB = p.transB ? 2.0 : 1.0;
  const double costM = double(p.m) * p.k * wA / parts + double(p.k) * p.n * wB;
  const double costN = double(p.m) * p.k * wA + double(p.k) * p.n * wB / parts;
  bool splitM = costM <= costN;
  if (splitM && p.m < parts * ks.mr * 2 && p.n >= parts * ks.nr * 2) splitM = false;
  if (!splitM && p.n < parts * ks.nr * 2 && p.m >= parts * ks.mr * 2) splitM = true;
  const int64_t dim = splitM ? p.m : p.n;
  const int64_t unit = splitM ? ks.mr : ks.nr;
  const int64_t units = (dim + unit - 1) / unit;
  if (parts > units) parts = std::max<int64_t>(1, units);

  auto task = [&](int64_t t, int) {
    const int64_t bi = t / parts, part = t % parts;
    const int64_t u0 = units * part / parts, u1 = units * (part + 1) / parts;
    const int64_t lo = std::min(dim, u0 * unit), hi = std::min(dim, u1 * unit);
    if (hi <= lo) return;
    const float* a = p.a + bi * p.strideA;
    const float* b = p.b + bi * p.strideB;
    float* c = p.c + bi * p.strideC;
    if (splitM) {
      const float* as = p.transA ? a + lo : a + lo * p.lda;
      gemm_one(ks, p.transA, p.transB, hi - lo, p.n, p.k, p.alpha, as, p.lda, b, p.ldb, p.beta, c + lo * p.ldc, p.ldc);
    } else {
      const float* bs = p.transB ? b + lo * p.ldb : b + lo;
      gemm_one(ks, p.transA, p.transB, p.m, hi - lo, p.k, p.alpha, a, p.lda, bs, p.ldb, p.beta, c + lo, p.ldc);
    }
  };
  const int64_t ntasks = p.batch * parts;
  if (T <= 1 || flops < 2.0e5 || ntasks == 1) {
    for (int64_t t = 0; t < ntasks; t++) task(t, 0);
  } else {
    parallel_for(ntasks, task);
  }
}

}  // namespace ft
