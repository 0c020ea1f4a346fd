// BLIS-style float32 GEMM (and bf16-input GEMM): packed A/B panels, register-blocked microkernels
// (AVX-512 14x32, AVX-512-BF16 14x32 on bf16 pairs, AVX2 6x16, WebAssembly SIMD128 2x16, scalar 4x16), cache
// blocking, batched and multithreaded over the persistent pool; GEMMs with M <= 6 skip packing (GEMV-like calls).
//
// Threading: a large GEMM packs A and B once per k block, cooperatively, into shared buffers, then splits
// C into a grid of tasks (a multiple of the thread count, dynamically scheduled); a batch of small GEMMs
// runs one matrix per task. Blocking can be overridden with FLEXTOK_GEMM_MC / _NC / _KC / _KC_BF16.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#include <tuple>
#include <vector>

#include "common.h"
#include "kernels/table.h"

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#endif

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
// Cache sizes (read at run time: sysfs on Linux, sysctl on macOS; defaults when unknown)
// ---------------------------------------------------------------------------------------------

struct CacheSizes {
  int64_t l1d, l2, l3;  // bytes per core (L3: per cache instance)
};

int64_t parse_size(const char* text) {
  char* end = nullptr;
  long long v = std::strtoll(text, &end, 10);
  if (v <= 0) return 0;
  if (end && (*end == 'K' || *end == 'k')) v *= 1024;
  else if (end && (*end == 'M' || *end == 'm')) v *= 1024 * 1024;
  return v;
}

CacheSizes detect_caches() {
  CacheSizes c{32 * 1024, 512 * 1024, 8 * 1024 * 1024};
#if defined(__linux__)
  for (int i = 0; i < 8; i++) {
    char path[128], buf[64];
    auto read = [&](const char* leaf) -> bool {
      std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", i, leaf);
      FILE* f = std::fopen(path, "r");
      if (!f) return false;
      const bool ok = std::fgets(buf, sizeof buf, f) != nullptr;
      std::fclose(f);
      return ok;
    };
    if (!read("level")) break;
    const int level = std::atoi(buf);
    if (!read("type") || buf[0] == 'I') continue;  // skip instruction caches
    if (!read("size")) continue;
    const int64_t size = parse_size(buf);
    if (size <= 0) continue;
    if (level == 1) c.l1d = size;
    else if (level == 2) c.l2 = size;
    else if (level == 3) c.l3 = size;
  }
#elif defined(__APPLE__)
  int64_t v = 0;
  size_t len = sizeof v;
  if (sysctlbyname("hw.l1dcachesize", &v, &len, nullptr, 0) == 0 && v > 0) c.l1d = v;
  len = sizeof v;
  if (sysctlbyname("hw.l2cachesize", &v, &len, nullptr, 0) == 0 && v > 0) c.l2 = v;
#endif
  return c;
}

/** BLIS-style blocking for an MR x NR float kernel from the cache sizes: a kc x NR panel of B fills L1 (A's
 * micro-panel and C stream through it; measured on Zen 3, kc = L1/(4 NR) = 512 beat L1/2 by 5-8 points of
 * peak, since a deeper k halves the passes over C), an mc x kc block of A takes half of L2, a kc x nc block
 * of B a quarter of L3 (capped). FLEXTOK_GEMM_MC / _NC / _KC override. */
Blocking blocking_for(int mr, int nr, const CacheSizes& c) {
  int64_t kc = c.l1d / (int64_t(nr) * 4);
  kc = std::max<int64_t>(128, std::min<int64_t>(768, kc / 8 * 8));
  int64_t mc = c.l2 / 2 / (kc * 4);
  mc = std::max<int64_t>(mr, std::min<int64_t>(1024, mc / mr * mr));
  int64_t nc = c.l3 / 4 / (kc * 4);
  nc = std::max<int64_t>(nr, std::min<int64_t>(4096, nc / nr * nr));
  kc = env_int("FLEXTOK_GEMM_KC", kc);
  mc = std::max<int64_t>(mr, env_int("FLEXTOK_GEMM_MC", mc) / mr * mr);
  nc = std::max<int64_t>(nr, env_int("FLEXTOK_GEMM_NC", nc) / nr * nr);
  return {mc, nc, kc};
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

#if defined(__wasm_simd128__)
/** SIMD128 packing of op(X) rows [i0, i0+rows) x cols [p0, p0+kc) into R-row panels (R = 2 or 16, the wasm
 * kernel's A and B panels); same layout as pack_rows_generic, which packs the edge panels. */
template <int R>
void pack_rows_wasm(bool trans, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                    int64_t kcPad, float* dst) {
  static_assert(R == 2 || R == 16, "panel width");
  for (int64_t ip = 0; ip < rows; ip += R) {
    float* d = dst + (ip / R) * kcPad * R;
    if (rows - ip < R) {
      pack_rows_generic<R>(trans, x, ld, i0 + ip, rows - ip, p0, kc, kcPad, d);
      continue;
    }
    if (trans) {
      // the R values of a panel row are contiguous in memory for each kk
      const float* s = x + p0 * ld + i0 + ip;
      for (int64_t kk = 0; kk < kc; kk++, s += ld) {
        if (R == 16) {
          for (int v = 0; v < 4; v++) wasm_v128_store(d + kk * 16 + 4 * v, wasm_v128_load(s + 4 * v));
        } else {
          d[kk * 2] = s[0];
          d[kk * 2 + 1] = s[1];
        }
      }
    } else if (R == 2) {
      // two rows contiguous along k: interleave them
      const float* s0 = x + (i0 + ip) * ld + p0;
      const float* s1 = s0 + ld;
      int64_t kk = 0;
      for (; kk + 4 <= kc; kk += 4) {
        const v128_t v0 = wasm_v128_load(s0 + kk), v1 = wasm_v128_load(s1 + kk);
        wasm_v128_store(d + kk * 2, wasm_i32x4_shuffle(v0, v1, 0, 4, 1, 5));
        wasm_v128_store(d + kk * 2 + 4, wasm_i32x4_shuffle(v0, v1, 2, 6, 3, 7));
      }
      for (; kk < kc; kk++) {
        d[kk * 2] = s0[kk];
        d[kk * 2 + 1] = s1[kk];
      }
    } else {
      // 16 rows contiguous along k: 4x4 transposes
      for (int g = 0; g < R / 4; g++) {
        const float* s = x + (i0 + ip + 4 * g) * ld + p0;
        float* dg = d + 4 * g;
        int64_t kk = 0;
        for (; kk + 4 <= kc; kk += 4) {
          const v128_t r0 = wasm_v128_load(s + kk), r1 = wasm_v128_load(s + ld + kk);
          const v128_t r2 = wasm_v128_load(s + 2 * ld + kk), r3 = wasm_v128_load(s + 3 * ld + kk);
          const v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);
          const v128_t t2 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
          wasm_v128_store(dg + kk * R, wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5));
          wasm_v128_store(dg + (kk + 1) * R, wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7));
          wasm_v128_store(dg + (kk + 2) * R, wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5));
          wasm_v128_store(dg + (kk + 3) * R, wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7));
        }
        for (; kk < kc; kk++)
          for (int j = 0; j < 4; j++) dg[kk * R + j] = s[j * ld + kk];
      }
    }
    for (int64_t kk = kc; kk < kcPad; kk++)
      for (int r = 0; r < R; r++) d[kk * R + r] = 0.f;
  }
}
#endif

#if FT_X86
// The vector vocabularies of simd/ for the packing transposes and tail masks below (the kernels in
// kernels/*.inc use the same headers).
namespace avx512v {
#define FT_FN FT_AVX512 static inline
#include "simd/vec_avx512.h"
#undef FT_FN
}  // namespace avx512v
namespace avx2v {
#define FT_FN FT_AVX2 static inline
#include "simd/vec_avx2.h"
#undef FT_FN
}  // namespace avx2v

/** AVX-512 packing of op(X) rows [i0, i0+rows) x cols [p0, p0+kc) into R-row panels (R = 14 or 32). */
template <int R>
FT_AVX512 void pack_rows_avx512(bool trans, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0,
                                int64_t kc, int64_t kcPad, float* dst) {
  static_assert(R == 14 || R == 32, "panel width");
  const int64_t panels = (rows + R - 1) / R;
  if (trans) {
    // the R values of a panel are contiguous in memory for each kk: walk memory row by row
    for (int64_t kk = 0; kk < kc; kk++) {
      const float* s = x + (p0 + kk) * ld + i0;
      for (int64_t pn = 0; pn < panels; pn++) {
        const int64_t rr = std::min<int64_t>(R, rows - pn * R);
        float* d = dst + pn * kcPad * R + kk * R;
        const float* sp = s + pn * R;
        if (R == 32) {
          if (rr == 32) {
            _mm512_store_ps(d, _mm512_loadu_ps(sp));
            _mm512_store_ps(d + 16, _mm512_loadu_ps(sp + 16));
          } else {
            __mmask16 m0 = rr >= 16 ? __mmask16(0xffff) : __mmask16((1u << rr) - 1);
            __mmask16 m1 = rr > 16 ? __mmask16((1u << (rr - 16)) - 1) : __mmask16(0);
            _mm512_store_ps(d, _mm512_maskz_loadu_ps(m0, sp));
            _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(m1, sp + 16));
          }
        } else {
          __mmask16 m = __mmask16((1u << rr) - 1);
          _mm512_mask_storeu_ps(d, 0x3fff, _mm512_maskz_loadu_ps(m, sp));
        }
      }
    }
  } else {
    for (int64_t pn = 0; pn < panels; pn++) {
      const int64_t ip = pn * R;
      const int64_t rr = std::min<int64_t>(R, rows - ip);
      float* d = dst + pn * kcPad * R;
      // each panel row is contiguous along k: transpose 16x16 blocks
      for (int half = 0; half < (R == 32 ? 2 : 1); half++) {
        const int64_t rbase = half * 16;
        const int64_t rcount = std::min<int64_t>(16, std::max<int64_t>(0, rr - rbase));
        const float* src[16];
        for (int r = 0; r < 16; r++) src[r] = r < rcount ? x + (i0 + ip + rbase + r) * ld + p0 : nullptr;
        for (int64_t kk = 0; kk < kc; kk += 16) {
          const int64_t kn = std::min<int64_t>(16, kc - kk);
          const __mmask16 km = kn == 16 ? __mmask16(0xffff) : __mmask16((1u << kn) - 1);
          avx512v::V v[16];
          for (int r = 0; r < 16; r++) v[r].v = src[r] ? _mm512_maskz_loadu_ps(km, src[r] + kk) : _mm512_setzero_ps();
          avx512v::vtranspose(v);
          if (R == 32) {
            for (int j = 0; j < kn; j++) _mm512_store_ps(d + (kk + j) * 32 + rbase, v[j].v);
          } else {
            for (int j = 0; j < kn; j++) _mm512_mask_storeu_ps(d + (kk + j) * 14, 0x3fff, v[j].v);
          }
        }
      }
    }
  }
  for (int64_t pn = 0; pn < panels; pn++)
    for (int64_t kk = kc; kk < kcPad; kk++)
      for (int r = 0; r < R; r++) dst[pn * kcPad * R + kk * R + r] = 0.f;
}

FT_AVX2 inline __m256i avx2_lanes_below(int64_t n) {
  const int c = n < 0 ? 0 : n > 8 ? 8 : int(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/** AVX2 packing of op(X) rows [i0, i0+rows) x cols [p0, p0+kc) into R-row panels (R = 6 or 16); same layout
 * as pack_rows_generic. */
template <int R>
FT_AVX2 void pack_rows_avx2(bool trans, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                            int64_t kcPad, float* dst) {
  static_assert(R == 6 || R == 16, "panel width");
  const int64_t panels = (rows + R - 1) / R;
  if (trans) {
    // the R values of a panel are contiguous in memory for each kk
    for (int64_t pn = 0; pn < panels; pn++) {
      const int64_t rr = std::min<int64_t>(R, rows - pn * R);
      float* d = dst + pn * kcPad * R;
      const float* s = x + p0 * ld + i0 + pn * R;
      if (R == 16) {
        const __m256i m0 = avx2_lanes_below(rr), m1 = avx2_lanes_below(rr - 8);
        for (int64_t kk = 0; kk < kc; kk++, s += ld) {
          if (rr == 16) {
            _mm256_store_ps(d + kk * 16, _mm256_loadu_ps(s));
            _mm256_store_ps(d + kk * 16 + 8, _mm256_loadu_ps(s + 8));
          } else {
            _mm256_store_ps(d + kk * 16, _mm256_maskload_ps(s, m0));
            _mm256_store_ps(d + kk * 16 + 8, _mm256_maskload_ps(s + 8, m1));
          }
        }
      } else {
        // 6 values per kk: plain 8-wide loads and stores where they stay inside the source row / panel
        // (masked stores are slow on AMD), masked ones at the edges; each 8-wide store's 2 extra lanes are
        // overwritten by the next kk's store
        const __m256i m = avx2_lanes_below(rr), m6 = avx2_lanes_below(6);
        const bool fullLoads = rr == 6 && i0 + pn * R + 8 <= ld;
        for (int64_t kk = 0; kk < kc; kk++, s += ld) {
          const __m256 v = fullLoads ? _mm256_loadu_ps(s) : _mm256_maskload_ps(s, m);
          if (kk + 1 < kc) _mm256_storeu_ps(d + kk * 6, v);
          else _mm256_maskstore_ps(d + kk * 6, m6, v);
        }
      }
    }
  } else {
    // each panel row is contiguous along k: transpose 8x8 blocks
    for (int64_t pn = 0; pn < panels; pn++) {
      const int64_t ip = pn * R;
      const int64_t rr = std::min<int64_t>(R, rows - ip);
      float* d = dst + pn * kcPad * R;
      for (int64_t rbase = 0; rbase < R; rbase += 8) {
        const int64_t rcount = std::min<int64_t>(8, std::max<int64_t>(0, rr - rbase));
        const int64_t width = std::min<int64_t>(8, R - rbase);  // lanes of the panel row this group fills
        const __m256i wm = avx2_lanes_below(width);
        const float* src[8];
        for (int r = 0; r < 8; r++) src[r] = r < rcount ? x + (i0 + ip + rbase + r) * ld + p0 : nullptr;
        for (int64_t kk = 0; kk < kc; kk += 8) {
          const int64_t kn = std::min<int64_t>(8, kc - kk);
          const __m256i km = avx2_lanes_below(kn);
          avx2v::V v[8];
          for (int r = 0; r < 8; r++)
            v[r].v = !src[r] ? _mm256_setzero_ps() : kn == 8 ? _mm256_loadu_ps(src[r] + kk) : _mm256_maskload_ps(src[r] + kk, km);
          avx2v::vtranspose(v);
          for (int j = 0; j < kn; j++) {
            float* o = d + (kk + j) * R + rbase;
            // a 6-wide panel row: the 8-wide store's extra lanes land in the next kk's row (rewritten next)
            if (width == 8 || kk + j + 1 < kc) _mm256_storeu_ps(o, v[j].v);
            else _mm256_maskstore_ps(o, wm, v[j].v);
          }
        }
      }
    }
  }
  for (int64_t pn = 0; pn < panels; pn++)
    for (int64_t kk = kc; kk < kcPad; kk++)
      for (int r = 0; r < R; r++) dst[pn * kcPad * R + kk * R + r] = 0.f;
}

/** Converts packed fp32 rows (pairs of W-float rows) at src into W bf16-pair words at dst: word = lo | hi << 16. */
FT_AVX512 void pairs_to_bf16_avx512(const float* buf, int64_t npairs, int W, float* dst) {
  uint32_t* out = reinterpret_cast<uint32_t*>(dst);
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

void round_buffer_bf16(float* buf, int64_t n) {
  for (int64_t i = 0; i < n; i++) buf[i] = round_bf16(buf[i]);
}

// ---------------------------------------------------------------------------------------------
// Microkernels. Contract: acc(MR x NR) = sum over kc of packed A (kc x MR) times packed B (kc x NR);
// then C[r, c] = alpha * acc + beta * C[r, c] for r < mr, c < nr (beta == 0: C is not read).
// ---------------------------------------------------------------------------------------------

/** How many k steps ahead the microkernels prefetch the packed B panel. */
constexpr int kPrefetchK = 8;

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
  for (int r = 0; r < MR; r++) {  // both cache lines of each C row, well before the stores
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + 31), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(B);
    __m512 b1 = _mm512_load_ps(B + 16);
    _mm_prefetch(reinterpret_cast<const char*>(B + 32 * kPrefetchK), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(B + 32 * kPrefetchK + 16), _MM_HINT_T0);
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
  for (int r = 0; r < MR; r++) {  // both cache lines of each C row, well before the stores
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + 31), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc2; k++) {
    __m512bh b0 = (__m512bh)_mm512_load_si512(B);
    __m512bh b1 = (__m512bh)_mm512_load_si512(B + 16);
    _mm_prefetch(reinterpret_cast<const char*>(B + 32 * kPrefetchK), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(B + 32 * kPrefetchK + 16), _MM_HINT_T0);
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

/** AVX2 6x16 microkernel. The accumulators are named variables (not an array): with an array GCC kept
 * them on the stack and the kernel ran at 27% of the FMA peak; named, they stay in 12 of the 16 ymm
 * registers (2 hold B, 1 the broadcast of A). */
template <int MR>
FT_AVX2 void ukr_avx2_f32(int64_t kc, const float* __restrict A, const float* __restrict B, float* C, int64_t ldc,
                          int nr, float alpha, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_load_ps(B), b1 = _mm256_load_ps(B + 8);
    _mm_prefetch(reinterpret_cast<const char*>(B + 16 * kPrefetchK), _MM_HINT_T0);
    __m256 a = _mm256_broadcast_ss(A);
    c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01);
    if constexpr (MR > 1) a = _mm256_broadcast_ss(A + 1), c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11);
    if constexpr (MR > 2) a = _mm256_broadcast_ss(A + 2), c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21);
    if constexpr (MR > 3) a = _mm256_broadcast_ss(A + 3), c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31);
    if constexpr (MR > 4) a = _mm256_broadcast_ss(A + 4), c40 = _mm256_fmadd_ps(a, b0, c40), c41 = _mm256_fmadd_ps(a, b1, c41);
    if constexpr (MR > 5) a = _mm256_broadcast_ss(A + 5), c50 = _mm256_fmadd_ps(a, b0, c50), c51 = _mm256_fmadd_ps(a, b1, c51);
    A += 6;
    B += 16;
  }
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (nr == 16) {
    for (int r = 0; r < MR; r++) {
      float* cr = C + r * ldc;
      if (beta == 0.f) {
        _mm256_storeu_ps(cr, _mm256_mul_ps(va, acc[r][0]));
        _mm256_storeu_ps(cr + 8, _mm256_mul_ps(va, acc[r][1]));
      } else {
        _mm256_storeu_ps(cr, _mm256_fmadd_ps(va, acc[r][0], _mm256_mul_ps(vb, _mm256_loadu_ps(cr))));
        _mm256_storeu_ps(cr + 8, _mm256_fmadd_ps(va, acc[r][1], _mm256_mul_ps(vb, _mm256_loadu_ps(cr + 8))));
      }
    }
  } else {
    alignas(32) float tile[MR * 16];
    for (int r = 0; r < MR; r++) {
      _mm256_store_ps(tile + r * 16, acc[r][0]);
      _mm256_store_ps(tile + r * 16 + 8, acc[r][1]);
    }
    for (int r = 0; r < MR; r++)
      for (int c = 0; c < nr; c++) {
        float* cc = C + r * ldc + c;
        *cc = beta == 0.f ? alpha * tile[r * 16 + c] : alpha * tile[r * 16 + c] + beta * *cc;
      }
  }
}
#endif

#if defined(__wasm_simd128__)
/** a·b + c: one f32x4.relaxed_madd in the relaxed-SIMD build (fused where the CPU has FMA, as V8 compiles it on
 * x64 with FMA3 and on arm64), else an f32x4.mul and an f32x4.add. */
static inline v128_t wasm_madd(v128_t a, v128_t b, v128_t c) {
#if defined(__wasm_relaxed_simd__)
  return (v128_t)__builtin_wasm_relaxed_madd_f32x4((__f32x4)a, (__f32x4)b, (__f32x4)c);
#else
  return wasm_f32x4_add(wasm_f32x4_mul(a, b), c);
#endif
}

/** WebAssembly SIMD128 2x16 microkernel (2 rows x 4 vectors of 4 floats). Base SIMD128 has no fused multiply-add:
 * each step is an f32x4.mul and an f32x4.add, so that build is bound by instruction count (on x64, V8's code for
 * one k step is ~28 instructions for 64 flops; ~72 % of the 128-bit FMA peak on Zen 3). The relaxed-SIMD build
 * (-mrelaxed-simd) uses f32x4.relaxed_madd, one vfmadd on x64 with FMA3: ~90 % of that peak, 1.24x the base
 * build on Zen 3 (Node 20). Registers: V8 allocates 15 xmm registers, which must hold the 8 accumulators, the 4
 * vectors of B, the broadcast of A (one v128.load32_splat) and, without FMA, a product. 2x16, 3x12 and 5x8 tiles
 * fit and ran within 3% of each other (on Zen 5, Node 20; with relaxed_madd 2x16, 3x12, 4x12, 5x8 and 6x8 within
 * 4 % on Zen 3); 2x16 divides the usual widths. Two things keep V8's loop tight:
 * - the loop is not unrolled: V8 schedules the loads of an unrolled body ahead of its arithmetic, which then
 *   needs more than 15 registers and spills accumulators (a 4x8 tile unrolled by 4 ran ~25% slower);
 * - A and B pass through an empty asm statement each step, which hides them from loop strength reduction:
 *   otherwise LLVM rewrites the addresses as i32.add of pointers it cannot prove non-wrapping, and every load
 *   pays an add instead of a constant offset in its memarg. */
constexpr int kWasmMR = 2, kWasmNV = 4, kWasmNR = 4 * kWasmNV;
template <int MR>
void ukr_wasm_f32(int64_t kc, const float* __restrict A, const float* __restrict B, float* C, int64_t ldc, int nr,
                  float alpha, float beta) {
  v128_t acc[MR][kWasmNV];
#pragma unroll
  for (int r = 0; r < MR; r++)
#pragma unroll
    for (int v = 0; v < kWasmNV; v++) acc[r][v] = wasm_f32x4_splat(0.f);
  for (const float* const Bend = B + kc * kWasmNR; B != Bend; A += kWasmMR, B += kWasmNR) {
    __asm__("" : "+r"(A), "+r"(B));
    v128_t b[kWasmNV];
#pragma unroll
    for (int v = 0; v < kWasmNV; v++) b[v] = wasm_v128_load(B + 4 * v);
#pragma unroll
    for (int r = 0; r < MR; r++) {
      const v128_t a = wasm_v128_load32_splat(A + r);
#pragma unroll
      for (int v = 0; v < kWasmNV; v++) acc[r][v] = wasm_madd(a, b[v], acc[r][v]);
    }
  }
  const v128_t va = wasm_f32x4_splat(alpha), vb = wasm_f32x4_splat(beta);
  if (nr == kWasmNR) {
#pragma unroll
    for (int r = 0; r < MR; r++) {
      float* cr = C + r * ldc;
#pragma unroll
      for (int v = 0; v < kWasmNV; v++) {
        const v128_t x = wasm_f32x4_mul(va, acc[r][v]);
        wasm_v128_store(cr + 4 * v, beta == 0.f ? x : wasm_f32x4_add(x, wasm_f32x4_mul(vb, wasm_v128_load(cr + 4 * v))));
      }
    }
  } else {
    alignas(16) float tile[MR * kWasmNR];
    for (int r = 0; r < MR; r++)
      for (int v = 0; v < kWasmNV; v++) wasm_v128_store(tile + r * kWasmNR + 4 * v, acc[r][v]);
    for (int r = 0; r < MR; r++)
      for (int c = 0; c < nr; c++) {
        float* cc = C + r * ldc + c;
        *cc = beta == 0.f ? alpha * tile[r * kWasmNR + c] : alpha * tile[r * kWasmNR + c] + beta * *cc;
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
  bool smallM;       // tiny-M GEMMs may skip packing (gemm_small_m)
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
#if defined(__wasm_simd128__)
template <int MR>
struct WasmF32 {
  static constexpr Ukr fn = &ukr_wasm_f32<MR>;
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
void packA_avx2(bool t, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0, int64_t kc, int64_t kcPad,
                float* d) {
  pack_rows_avx2<6>(t, x, ld, i0, rows, p0, kc, kcPad, d);
}
void packB_avx2(bool t, const float* x, int64_t ld, int64_t j0, int64_t cols, int64_t p0, int64_t kc, int64_t kcPad,
                float* d) {
  pack_rows_avx2<16>(!t, x, ld, j0, cols, p0, kc, kcPad, d);
}
#endif
void packB_16(bool t, const float* x, int64_t ld, int64_t j0, int64_t cols, int64_t p0, int64_t kc, int64_t kcPad,
              float* d) {
  pack_rows_generic<16>(!t, x, ld, j0, cols, p0, kc, kcPad, d);
}
#if defined(__wasm_simd128__)
void packA_wasm(bool t, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0, int64_t kc, int64_t kcPad,
                float* d) {
  pack_rows_wasm<kWasmMR>(t, x, ld, i0, rows, p0, kc, kcPad, d);
}
void packB_wasm(bool t, const float* x, int64_t ld, int64_t j0, int64_t cols, int64_t p0, int64_t kc, int64_t kcPad,
                float* d) {
  pack_rows_wasm<kWasmNR>(!t, x, ld, j0, cols, p0, kc, kcPad, d);
}
#endif
void packA_4(bool t, const float* x, int64_t ld, int64_t i0, int64_t rows, int64_t p0, int64_t kc, int64_t kcPad,
             float* d) {
  pack_rows_generic<4>(t, x, ld, i0, rows, p0, kc, kcPad, d);
}

struct Families {
  KernelSet avx512, avx512bf16, avx512emu, avx2, avx2emu, wasm, wasmemu, scalar, scalaremu;
  Families() {
    const CacheSizes caches = detect_caches();
#if FT_X86
    // AVX-512 blocking: MC rows of A per task (L2), NC columns of B per packed panel, KC deep
    const int64_t mc = env_int("FLEXTOK_GEMM_MC", 168), nc = env_int("FLEXTOK_GEMM_NC", 1536),
                  kc = env_int("FLEXTOK_GEMM_KC", 384);
    avx512 = KernelSet{14, 32, {}, false, false, true, packA_avx512, packB_avx512, {mc / 14 * 14, nc / 32 * 32, kc}};
    fill_table<Avx512F32>(avx512.ukr, std::make_integer_sequence<int, 14>{});
    avx512emu = avx512;
    avx512emu.emulateBf16 = true;
    avx512emu.smallM = false;
    avx512bf16 = KernelSet{14, 32, {}, true, false, false, packA_avx512, packB_avx512,
                           {mc / 14 * 14, nc / 32 * 32, env_int("FLEXTOK_GEMM_KC_BF16", 768) / 2 * 2}};
    fill_table<Avx512Bf16>(avx512bf16.ukr, std::make_integer_sequence<int, 14>{});
    avx2 = KernelSet{6, 16, {}, false, false, true, packA_avx2, packB_avx2, blocking_for(6, 16, caches)};
    fill_table<Avx2F32>(avx2.ukr, std::make_integer_sequence<int, 6>{});
    avx2emu = avx2;
    avx2emu.emulateBf16 = true;
    avx2emu.smallM = false;
#endif
#if defined(__wasm_simd128__)
    wasm = KernelSet{kWasmMR, kWasmNR, {}, false, false, true, packA_wasm, packB_wasm, blocking_for(kWasmMR, kWasmNR, caches)};
    fill_table<WasmF32>(wasm.ukr, std::make_integer_sequence<int, kWasmMR>{});
    wasmemu = wasm;
    wasmemu.emulateBf16 = true;
    wasmemu.smallM = false;
#endif
    scalar = KernelSet{4, 16, {}, false, false, true, packA_4, packB_16, blocking_for(4, 16, caches)};
    fill_table<ScalarF32>(scalar.ukr, std::make_integer_sequence<int, 4>{});
    scalaremu = scalar;
    scalaremu.emulateBf16 = true;
    scalaremu.smallM = false;
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
#if defined(__wasm_simd128__)
  if (active_isa() == Isa::Wasm) return bf16 ? f.wasmemu : f.wasm;
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

#if FT_X86
// ---------------------------------------------------------------------------------------------
// AVX-512 tile GEMM (no packing): C[M x N] (+)= A[M x K] B[K x N], all row-major with leading dimensions.
// Register tile: up to 6 rows x 4 vectors (64 columns). Used by attention and by GEMMs with tiny M.
// ---------------------------------------------------------------------------------------------

template <int MR, int NV>
FT_AVX512 void tile_kernel(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc,
                           __mmask16 last, bool accumulate) {
  __m512 c[MR][NV];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
      __mmask16 m = v == NV - 1 ? last : __mmask16(0xffff);
      c[r][v] = accumulate ? _mm512_maskz_loadu_ps(m, C + r * ldc + 16 * v) : _mm512_setzero_ps();
    }
#pragma GCC unroll 2
  for (int64_t k = 0; k < K; k++) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
      b[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, B + k * ldb + 16 * v) : _mm512_loadu_ps(B + k * ldb + 16 * v);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      __m512 a = _mm512_set1_ps(A[r * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
      __mmask16 m = v == NV - 1 ? last : __mmask16(0xffff);
      _mm512_mask_storeu_ps(C + r * ldc + 16 * v, m, c[r][v]);
    }
}

using TileFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t, __mmask16, bool);

template <int MR>
struct TileRow {
  TileFn fn[5] = {nullptr, tile_kernel<MR, 1>, tile_kernel<MR, 2>, tile_kernel<MR, 3>, tile_kernel<MR, 4>};
};
struct TileTable {
  TileFn fn[7][5];
  TileTable() {
    TileRow<1> r1;
    TileRow<2> r2;
    TileRow<3> r3;
    TileRow<4> r4;
    TileRow<5> r5;
    TileRow<6> r6;
    const TileFn* rows[7] = {nullptr, r1.fn, r2.fn, r3.fn, r4.fn, r5.fn, r6.fn};
    for (int r = 1; r <= 6; r++)
      for (int v = 0; v < 5; v++) fn[r][v] = rows[r][v];
    for (int v = 0; v < 5; v++) fn[0][v] = nullptr;
  }
};
const TileTable& tile_table() {
  static TileTable t;
  return t;
}

}  // namespace

void tile_gemm_avx512(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
               int64_t ldc, bool accumulate) {
  const TileTable& t = tile_table();
  for (int64_t n0 = 0; n0 < N; n0 += 64) {
    const int64_t nn = std::min<int64_t>(64, N - n0);
    const int nv = static_cast<int>((nn + 15) / 16);
    const int64_t rem = nn - (nv - 1) * 16;
    const __mmask16 last = rem >= 16 ? __mmask16(0xffff) : __mmask16((1u << rem) - 1);
    for (int64_t m0 = 0; m0 < M; m0 += 6) {
      const int mr = static_cast<int>(std::min<int64_t>(6, M - m0));
      t.fn[mr][nv](K, A + m0 * lda, lda, B + n0, ldb, C + m0 * ldc + n0, ldc, last, accumulate);
    }
  }
}

namespace {

/** Dot products for tiny M with B transposed: out[r*ldo + (j - j0)] = sum_p A[r*lda + p] * B[j*ldb + p]
 * for r < M, j in [j0, j1); four columns of C at a time. */
template <int M>
FT_AVX512 void small_m_dots(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t j0, int64_t j1,
                            float* out, int64_t ldo) {
  int64_t j = j0;
  for (; j + 4 <= j1; j += 4) {
    __m512 acc[M][4];
#pragma GCC unroll 6
    for (int r = 0; r < M; r++)
#pragma GCC unroll 4
      for (int q = 0; q < 4; q++) acc[r][q] = _mm512_setzero_ps();
    for (int64_t p = 0; p < K; p += 16) {
      const __mmask16 t = avx512v::kbelow(K - p);
      __m512 b[4];
#pragma GCC unroll 4
      for (int q = 0; q < 4; q++) b[q] = _mm512_maskz_loadu_ps(t, B + (j + q) * ldb + p);
#pragma GCC unroll 6
      for (int r = 0; r < M; r++) {
        const __m512 a = _mm512_maskz_loadu_ps(t, A + r * lda + p);
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[r][q] = _mm512_fmadd_ps(a, b[q], acc[r][q]);
      }
    }
    for (int r = 0; r < M; r++)
      for (int q = 0; q < 4; q++) out[r * ldo + (j + q - j0)] = _mm512_reduce_add_ps(acc[r][q]);
  }
  for (; j < j1; j++) {
    __m512 acc[M];
    for (int r = 0; r < M; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t p = 0; p < K; p += 16) {
      const __mmask16 t = avx512v::kbelow(K - p);
      const __m512 bv = _mm512_maskz_loadu_ps(t, B + j * ldb + p);
      for (int r = 0; r < M; r++) acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t, A + r * lda + p), bv, acc[r]);
    }
    for (int r = 0; r < M; r++) out[r * ldo + (j - j0)] = _mm512_reduce_add_ps(acc[r]);
  }
}

using SmallDotFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, int64_t, int64_t, float*, int64_t);
const SmallDotFn kSmallDots[7] = {nullptr, small_m_dots<1>, small_m_dots<2>, small_m_dots<3>,
                                  small_m_dots<4>, small_m_dots<5>, small_m_dots<6>};

#endif

constexpr int64_t kSmallM = 6;

/** C = alpha op(A) op(B) + beta C for m <= kSmallM, reading B in place (no packing): GEMV-like calls such as
 * one-token decoding steps. Splits the columns over the pool when `parallel`. AVX-512 uses its own register
 * tiles above; every other back end the tile and dot kernels of its KernelTable. */
void gemm_small_m(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc, bool parallel) {
  const float* A = a;
  int64_t la = lda;
  if (transA) {  // rows of op(A) made contiguous
    float* t = static_cast<float*>(scratch(kScratchMisc, size_t(m) * k * sizeof(float)));
    for (int64_t p = 0; p < k; p++)
      for (int64_t i = 0; i < m; i++) t[i * k + p] = a[p * lda + i];
    A = t;
    la = k;
  }
  const bool direct = alpha == 1.f && beta == 0.f;
  constexpr int64_t kChunk = 256;
  const int64_t tasks = (n + kChunk - 1) / kChunk;
  auto body = [&](int64_t t, int) {
    const int64_t j0 = t * kChunk, j1 = std::min(n, j0 + kChunk), w = j1 - j0;
    alignas(64) float tmp[kSmallM * kChunk];
    float* out = direct ? c + j0 : tmp;
    const int64_t ldo = direct ? ldc : w;
#if FT_X86
    if (active_isa() == Isa::Avx512) {
      if (transB) kSmallDots[m](k, A, la, b, ldb, j0, j1, out, ldo);
      else tile_gemm_avx512(m, w, k, A, la, b + j0, ldb, out, ldo, false);
    } else
#endif
    {
      const KernelTable& kt = kernel_table();
      if (transB) kt.smallMDots(m, k, A, la, b, ldb, j0, j1, out, ldo);
      else kt.tileGemm(m, w, k, A, la, b + j0, ldb, out, ldo, false);
    }
    if (!direct)
      for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < w; j++) {
          float* cc = c + r * ldc + j0 + j;
          *cc = beta == 0.f ? alpha * tmp[r * w + j] : alpha * tmp[r * w + j] + beta * *cc;
        }
  };
  if (parallel && tasks > 1 && 2.0 * m * n * k >= 2.0e5) parallel_for(tasks, body);
  else
    for (int64_t t = 0; t < tasks; t++) body(t, 0);
}

/** Runs `pack(dst)` for `panels` panels of `width` rows/columns x kcPad, then applies the kernel set's bf16
 * form: pairs packed to bf16 (via a private fp32 buffer: the result is half its size) or rounding. */
template <class Pack>
void pack_panels(const KernelSet& ks, int64_t panels, int width, int64_t kcPad, float* dst, Pack&& pack) {
  if (ks.bf16Pairs) {
#if FT_X86
    float* tmp = static_cast<float*>(scratch(kScratchMisc, panels * kcPad * width * sizeof(float)));
    pack(tmp);
    pairs_to_bf16_avx512(tmp, panels * kcPad / 2, width, dst);
#endif
    return;
  }
  pack(dst);
  if (ks.emulateBf16) round_buffer_bf16(dst, panels * kcPad * width);
}

/** Packs op(A) rows [i0, i0+rows) x k-range [pc, pc+kc) into MR-row panels at dst. */
void pack_a_block(const KernelSet& ks, bool transA, const float* a, int64_t lda, int64_t i0, int64_t rows, int64_t pc,
                  int64_t kc, int64_t kcPad, float* dst) {
  pack_panels(ks, (rows + ks.mr - 1) / ks.mr, ks.mr, kcPad, dst,
              [&](float* to) { ks.packA(transA, a, lda, i0, rows, pc, kc, kcPad, to); });
}

/** Packs op(B) columns [j0, j0+cols) x k-range [pc, pc+kc) into NR-column panels at dst. */
void pack_b_block(const KernelSet& ks, bool transB, const float* b, int64_t ldb, int64_t j0, int64_t cols, int64_t pc,
                  int64_t kc, int64_t kcPad, float* dst) {
  pack_panels(ks, (cols + ks.nr - 1) / ks.nr, ks.nr, kcPad, dst,
              [&](float* to) { ks.packB(transB, b, ldb, j0, cols, pc, kc, kcPad, to); });
}

/** Runs the microkernel over A panels [ip0, ip1) x B panels [jp0, jp1) of one packed (ic, jc, pc) block.
 * C points at element (row of panel 0, column of panel 0); m, n bound the valid rows/columns. */
void macro_kernel(const KernelSet& ks, int64_t kIter, const float* packA, int64_t panelA, const float* packB,
                  int64_t panelB, int64_t ip0, int64_t ip1, int64_t jp0, int64_t jp1, int64_t m, int64_t n, float* c,
                  int64_t ldc, float alpha, float beta) {
  const int MR = ks.mr, NR = ks.nr;
  for (int64_t jp = jp0; jp < jp1; jp++) {
    const int nr = static_cast<int>(std::min<int64_t>(NR, n - jp * NR));
    const float* bp = packB + jp * panelB;
    for (int64_t ip = ip0; ip < ip1; ip++) {
      const int mr = static_cast<int>(std::min<int64_t>(MR, m - ip * MR));
      ks.ukr[mr](kIter, packA + ip * panelA, bp, c + ip * MR * ldc + jp * NR, ldc, nr, alpha, beta);
    }
  }
}

struct KBlock {
  int64_t kc, kcPad, kIter, panelA, panelB;
};
KBlock k_block(const KernelSet& ks, int64_t k, int64_t pc) {
  KBlock b;
  b.kc = std::min(ks.blk.kc, k - pc);
  b.kcPad = ks.bf16Pairs ? (b.kc + 1) / 2 * 2 : b.kc;
  b.kIter = ks.bf16Pairs ? b.kcPad / 2 : b.kc;
  b.panelA = (ks.bf16Pairs ? b.kcPad / 2 : b.kcPad) * ks.mr;
  b.panelB = (ks.bf16Pairs ? b.kcPad / 2 : b.kcPad) * ks.nr;
  return b;
}

/** One GEMM on the calling thread: C[m x n] = alpha op(A) op(B) + beta C. */
void gemm_one(const KernelSet& ks, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
              const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  if (ks.smallM && m <= kSmallM) {
    gemm_small_m(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, false);
    return;
  }
  const int MR = ks.mr, NR = ks.nr;
  const int64_t MC = ks.blk.mc, NC = ks.blk.nc, KC = ks.blk.kc;
  const int64_t kcPadMax = (std::min(KC, k) + 1) / 2 * 2;
  const int64_t ncMax = std::min(NC, (n + NR - 1) / NR * NR);
  const int64_t mcMax = std::min(MC, (m + MR - 1) / MR * MR);
  float* packB = static_cast<float*>(scratch(kScratchPackB, (ncMax + NR) * kcPadMax * sizeof(float)));
  float* packA = static_cast<float*>(scratch(kScratchPackA, (mcMax + MR) * kcPadMax * sizeof(float)));

  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc);
    const int64_t nPanels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < k; pc += KC) {
      const KBlock kb = k_block(ks, k, pc);
      const float betaEff = pc == 0 ? beta : 1.f;
      pack_b_block(ks, transB, b, ldb, jc, nc, pc, kb.kc, kb.kcPad, packB);
      for (int64_t ic = 0; ic < m; ic += MC) {
        const int64_t mc = std::min(MC, m - ic);
        pack_a_block(ks, transA, a, lda, ic, mc, pc, kb.kc, kb.kcPad, packA);
        macro_kernel(ks, kb.kIter, packA, kb.panelA, packB, kb.panelB, 0, (mc + MR - 1) / MR, 0, nPanels, mc, nc,
                     c + ic * ldc + jc, ldc, alpha, betaEff);
      }
    }
  }
}

/** Task grid for one GEMM on T threads: row blocks x column blocks (in panels) with a count that is a
 * multiple of T (dynamic scheduling evens out the rest), row blocks small enough for L2. */
struct Grid {
  int64_t rowBlocks, colBlocks;
};
Grid task_grid(int64_t mPanels, int64_t nPanels, int64_t maxRowPanels, int T) {
  for (int64_t q = 1; q <= 64; q++) {
    const int64_t tasks = int64_t(T) * q;
    for (int64_t rb = 1; rb <= tasks; rb++) {
      if (tasks % rb) continue;
      const int64_t cb = tasks / rb;
      if (rb > mPanels || cb > nPanels) continue;
      if ((mPanels + rb - 1) / rb > maxRowPanels) continue;
      // prefer enough tasks to balance uneven blocks: at least 2 per thread unless blocks are exact
      if (q == 1 && (mPanels % rb != 0 || nPanels % cb != 0)) continue;
      return {rb, cb};
    }
  }
  return {std::min<int64_t>(mPanels, (mPanels + maxRowPanels - 1) / maxRowPanels), 1};
}

/** One large GEMM on the whole pool: for each (jc, pc) block the threads pack A and B together into
 * shared buffers, then split the C block into a grid of tasks. */
void gemm_parallel(const KernelSet& ks, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (k <= 0 || alpha == 0.f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  if (ks.smallM && m <= kSmallM) {
    gemm_small_m(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, true);
    return;
  }
  const int T = num_threads();
  const int MR = ks.mr, NR = ks.nr;
  const int64_t NC = ks.blk.nc, KC = ks.blk.kc;
  const int64_t kcPadMax = (std::min(KC, k) + 1) / 2 * 2;
  const int64_t mPanels = (m + MR - 1) / MR;
  const int64_t ncMax = std::min(NC, (n + NR - 1) / NR * NR);
  float* packA = static_cast<float*>(scratch(kScratchPackA, (mPanels * MR + MR) * kcPadMax * sizeof(float)));
  float* packB = static_cast<float*>(scratch(kScratchPackB, (ncMax + NR) * kcPadMax * sizeof(float)));
  const int64_t maxRowPanels = std::max<int64_t>(1, ks.blk.mc / MR);

  const int64_t chunk = 8;  // panels per packing task
  const int64_t aChunks = (mPanels + chunk - 1) / chunk;
  for (int64_t pc = 0; pc < k; pc += KC) {
    const KBlock kb = k_block(ks, k, pc);
    const float betaEff = pc == 0 ? beta : 1.f;
    for (int64_t jc = 0; jc < n; jc += NC) {
      const int64_t nc = std::min(NC, n - jc);
      const int64_t nPanels = (nc + NR - 1) / NR;
      const Grid grid = task_grid(mPanels, nPanels, maxRowPanels, T);
      // phase 1: pack B panels (and, for the first column block, all A panels of this k block)
      const int64_t aTasks = jc == 0 ? aChunks : 0, bChunks = (nPanels + chunk - 1) / chunk;
      parallel_for(aTasks + bChunks, [&](int64_t t, int) {
        if (t < aTasks) {
          const int64_t p0 = t * chunk, p1 = std::min(mPanels, p0 + chunk);
          pack_a_block(ks, transA, a, lda, p0 * MR, std::min(m, p1 * MR) - p0 * MR, pc, kb.kc, kb.kcPad,
                       packA + p0 * kb.panelA);
        } else {
          const int64_t p0 = (t - aTasks) * chunk, p1 = std::min(nPanels, p0 + chunk);
          pack_b_block(ks, transB, b, ldb, jc + p0 * NR, std::min(nc, p1 * NR) - p0 * NR, pc, kb.kc, kb.kcPad,
                       packB + p0 * kb.panelB);
        }
      });
      // phase 2: the C block as a grid of tasks
      parallel_for(grid.rowBlocks * grid.colBlocks, [&](int64_t t, int) {
        const int64_t rb = t / grid.colBlocks, cb = t % grid.colBlocks;
        const int64_t ip0 = mPanels * rb / grid.rowBlocks, ip1 = mPanels * (rb + 1) / grid.rowBlocks;
        const int64_t jp0 = nPanels * cb / grid.colBlocks, jp1 = nPanels * (cb + 1) / grid.colBlocks;
        macro_kernel(ks, kb.kIter, packA, kb.panelA, packB, kb.panelB, ip0, ip1, jp0, jp1, m, nc, c + jc, ldc, alpha,
                     betaEff);
      });
    }
  }
}

/** One GEMM split into T slices of whole rows (m >= n) or columns, each computed by gemm_one on one thread
 * with its own packing: no barriers between k blocks, and each thread keeps its A block in its own L2
 * (BLIS locality). The other operand is packed once per thread, a small duplicate when the split side is
 * the long one. */
void gemm_split(const KernelSet& ks, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const int T = num_threads();
  const bool rows = m >= n;
  const int64_t unit = rows ? ks.mr : ks.nr;
  const int64_t units = ((rows ? m : n) + unit - 1) / unit;
  const int64_t tasks = std::min<int64_t>(T, units);
  parallel_for(tasks, [&](int64_t t, int) {
    const int64_t u0 = units * t / tasks, u1 = units * (t + 1) / tasks;
    const int64_t i0 = u0 * unit, i1 = std::min(rows ? m : n, u1 * unit);
    if (i1 <= i0) return;
    if (rows) {
      // rows i0..i1 of op(A): A[i0, 0] (A stored m x k) or A[0, i0] (stored k x m)
      const float* as = transA ? a + i0 : a + i0 * lda;
      gemm_one(ks, transA, transB, i1 - i0, n, k, alpha, as, lda, b, ldb, beta, c + i0 * ldc, ldc);
    } else {
      // columns i0..i1 of op(B): B[0, i0] (B stored k x n) or B[i0, 0] (stored n x k)
      const float* bs = transB ? b + i0 * ldb : b + i0;
      gemm_one(ks, transA, transB, m, i1 - i0, k, alpha, a, lda, bs, ldb, beta, c + i0, ldc);
    }
  });
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
  const double itemFlops = 2.0 * double(p.m) * double(p.n) * double(p.k);
  const double flops = itemFlops * double(p.batch);
  auto item = [&](int64_t bi) {
    return std::make_tuple(p.a + bi * p.strideA, p.b + bi * p.strideB, p.c + bi * p.strideC);
  };
  if (T <= 1 || flops < 4.0e5) {
    for (int64_t bi = 0; bi < p.batch; bi++) {
      auto [a, b, c] = item(bi);
      gemm_one(ks, p.transA, p.transB, p.m, p.n, p.k, p.alpha, a, p.lda, b, p.ldb, p.beta, c, p.ldc);
    }
    return;
  }
  // Many small GEMMs: one task per matrix. Otherwise: each matrix on the whole pool.
  if (p.batch >= 4 * T || (p.batch >= T && itemFlops < 2.0e7)) {
    parallel_for(p.batch, [&](int64_t bi, int) {
      auto [a, b, c] = item(bi);
      gemm_one(ks, p.transA, p.transB, p.m, p.n, p.k, p.alpha, a, p.lda, b, p.ldb, p.beta, c, p.ldc);
    });
    return;
  }
  // Up to 4 threads: whole-row/column slices per thread (gemm_split; on 2 Zen 3 cores it matched the shared
  // scheme on large shapes and beat it by 5-20% on the training shapes, K = 128 or M, N = 128). More threads:
  // shared packed blocks (gemm_parallel), whose B block is packed once for all threads instead of T times.
  // FLEXTOK_GEMM_SPLIT=1 / 2 forces one or the other.
  static const int64_t splitMode = env_int("FLEXTOK_GEMM_SPLIT", 0);
  const bool split = splitMode == 1 || (splitMode != 2 && T <= 4);
  for (int64_t bi = 0; bi < p.batch; bi++) {
    auto [a, b, c] = item(bi);
    if (split && !(ks.smallM && p.m <= kSmallM)) gemm_split(ks, p.transA, p.transB, p.m, p.n, p.k, p.alpha, a, p.lda, b, p.ldb, p.beta, c, p.ldc);
    else gemm_parallel(ks, p.transA, p.transB, p.m, p.n, p.k, p.alpha, a, p.lda, b, p.ldb, p.beta, c, p.ldc);
  }
}

}  // namespace ft
