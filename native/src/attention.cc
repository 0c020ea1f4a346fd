// Fused scaled-dot-product attention, forward and backward, flash-attention style: scores exist only one
// (query tile x key tile) block at a time per thread, softmax is computed online, and key tiles that the
// mask/causal flag rule out entirely are skipped. Token-major layout [B, L, H, D] (see kernels.ts).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"
#include "vecmath.h"

namespace ft {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/** Which keys each query row may attend to: [lo, hi] (hi < lo when none), from the mask and causal flag. */
struct RowRanges {
  std::vector<int32_t> lo, hi;
};

/** First index in [b, e) with a nonzero byte, or e. */
int64_t first_nonzero(const uint8_t* m, int64_t b, int64_t e) {
  int64_t i = b;
  while (i < e && (i & 7)) {
    if (m[i]) return i;
    i++;
  }
  for (; i + 8 <= e; i += 8) {
    uint64_t w;
    std::memcpy(&w, m + i, 8);
    if (w) break;
  }
  for (; i < e; i++)
    if (m[i]) return i;
  return e;
}

/** Last index in [b, e) with a nonzero byte, or b - 1. */
int64_t last_nonzero(const uint8_t* m, int64_t b, int64_t e) {
  int64_t i = e;
  while (i > b && (i & 7)) {
    if (m[i - 1]) return i - 1;
    i--;
  }
  for (; i - 8 >= b; i -= 8) {
    uint64_t w;
    std::memcpy(&w, m + i - 8, 8);
    if (w) break;
  }
  for (; i > b; i--)
    if (m[i - 1]) return i - 1;
  return b - 1;
}

inline const uint8_t* mask_row(const AttentionParams& p, int64_t b, int64_t i) {
  return p.mask ? p.mask + b * p.maskBatchStride + i * p.lk : nullptr;
}

/** Allowed key range of query rows [q0, q0 + n) of batch b. */
void row_ranges(const AttentionParams& p, int64_t b, int64_t q0, int64_t n, int32_t* lo, int32_t* hi) {
  for (int64_t r = 0; r < n; r++) {
    const int64_t i = q0 + r;
    int64_t e = p.lk;
    if (p.causal) e = std::min<int64_t>(e, i + 1);
    if (!p.mask) {
      lo[r] = 0;
      hi[r] = static_cast<int32_t>(e - 1);
      continue;
    }
    const uint8_t* m = mask_row(p, b, i);
    int64_t f = first_nonzero(m, 0, e);
    if (f >= e) {
      lo[r] = 1;
      hi[r] = 0;
      continue;
    }
    lo[r] = static_cast<int32_t>(f);
    hi[r] = static_cast<int32_t>(last_nonzero(m, f, e));
  }
}

/** True when some row r in [0, n) of the block (rows q0.., keys k0..k0+bk) has an allowed key. */
bool block_has_allowed(const AttentionParams& p, int64_t b, int64_t q0, int64_t n, const int32_t* lo, const int32_t* hi,
                       int64_t k0, int64_t bk) {
  for (int64_t r = 0; r < n; r++) {
    int64_t a = std::max<int64_t>(lo[r], k0), e = std::min<int64_t>(hi[r], k0 + bk - 1);
    if (a > e) continue;
    if (!p.mask) return true;
    const uint8_t* m = mask_row(p, b, q0 + r);
    if (first_nonzero(m, a, e + 1) <= e) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Scalar path (no AVX-512): per query row, one row of scores
// ---------------------------------------------------------------------------------------------

inline bool allowed(const AttentionParams& p, const uint8_t* mrow, int64_t i, int64_t j) {
  if (p.causal && j > i) return false;
  return !mrow || mrow[j] != 0;
}

void forward_scalar_rows(const AttentionParams& p, int64_t b, int64_t h, int64_t i0, int64_t i1) {
  const int64_t H = p.heads, D = p.headDim, Lq = p.lq, Lk = p.lk;
  std::vector<float> sc(Lk);
  std::vector<double> acc(D);
  for (int64_t i = i0; i < i1; i++) {
    const float* q = p.q + ((b * Lq + i) * H + h) * D;
    float* o = p.out + ((b * Lq + i) * H + h) * D;
    const uint8_t* mrow = mask_row(p, b, i);
    float m = kNegInf;
    for (int64_t j = 0; j < Lk; j++) {
      if (!allowed(p, mrow, i, j)) continue;
      const float* k = p.k + ((b * Lk + j) * H + h) * D;
      float s = 0;
      for (int64_t d = 0; d < D; d++) s += q[d] * k[d];
      s *= p.scale;
      sc[j] = s;
      m = std::max(m, s);
    }
    float* lse = p.lse + (b * H + h) * Lq + i;
    if (m == kNegInf) {
      for (int64_t d = 0; d < D; d++) o[d] = 0.f;
      *lse = kNegInf;
      continue;
    }
    double sum = 0;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t j = 0; j < Lk; j++) {
      if (!allowed(p, mrow, i, j)) continue;
      double e = std::exp(double(sc[j]) - m);
      sum += e;
      const float* v = p.v + ((b * Lk + j) * H + h) * D;
      for (int64_t d = 0; d < D; d++) acc[d] += e * v[d];
    }
    for (int64_t d = 0; d < D; d++) o[d] = float(acc[d] / sum);
    *lse = float(m + std::log(sum));
  }
}

void backward_scalar_head(const AttentionParams& p, int64_t b, int64_t h) {
  const int64_t H = p.heads, D = p.headDim, Lq = p.lq, Lk = p.lk;
  for (int64_t j = 0; j < Lk; j++) {
    std::memset(p.dk + ((b * Lk + j) * H + h) * D, 0, D * sizeof(float));
    std::memset(p.dv + ((b * Lk + j) * H + h) * D, 0, D * sizeof(float));
  }
  std::vector<double> dq(D);
  for (int64_t i = 0; i < Lq; i++) {
    const int64_t qi = ((b * Lq + i) * H + h) * D;
    const float *q = p.q + qi, *o = p.out + qi, *dO = p.dOut + qi;
    float* dqo = p.dq + qi;
    const float lse = p.lse[(b * H + h) * Lq + i];
    std::fill(dq.begin(), dq.end(), 0.0);
    if (lse != kNegInf) {
      double Di = 0;
      for (int64_t d = 0; d < D; d++) Di += double(dO[d]) * o[d];
      const uint8_t* mrow = mask_row(p, b, i);
      for (int64_t j = 0; j < Lk; j++) {
        if (!allowed(p, mrow, i, j)) continue;
        const int64_t kj = ((b * Lk + j) * H + h) * D;
        const float *k = p.k + kj, *v = p.v + kj;
        float *dk = p.dk + kj, *dv = p.dv + kj;
        double s = 0, dp = 0;
        for (int64_t d = 0; d < D; d++) {
          s += double(q[d]) * k[d];
          dp += double(dO[d]) * v[d];
        }
        const double pr = std::exp(s * p.scale - lse);
        const double ds = pr * (dp - Di) * p.scale;
        for (int64_t d = 0; d < D; d++) {
          dv[d] += float(pr * dO[d]);
          dq[d] += ds * k[d];
          dk[d] += float(ds * q[d]);
        }
      }
    }
    for (int64_t d = 0; d < D; d++) dqo[d] = float(dq[d]);
  }
}

#if FT_X86
/** dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols. */
FT_AVX512 void transpose_block(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t nr = std::min<int64_t>(16, rows - r0);
    const __mmask16 rm = vm::tail_mask(nr);
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const int64_t nc = std::min<int64_t>(16, cols - c0);
      const __mmask16 cm = vm::tail_mask(nc);
      __m512 v[16];
      for (int r = 0; r < 16; r++)
        v[r] = r < nr ? _mm512_maskz_loadu_ps(cm, src + (r0 + r) * lds + c0) : _mm512_setzero_ps();
      vm::transpose16(v);
      for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(dst + (c0 + c) * ldd + r0, rm, v[c]);
    }
  }
}

/** Copies rows (stride ld) into a dense [n x D] buffer, optionally scaled. */
FT_AVX512 void gather_rows(const float* src, int64_t ld, int64_t n, int64_t D, float* dst, float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t r = 0; r < n; r++)
    for (int64_t d = 0; d < D; d += 16) {
      __mmask16 m = vm::tail_mask(D - d);
      __m512 v = _mm512_maskz_loadu_ps(m, src + r * ld + d);
      if (scale != 1.f) v = _mm512_mul_ps(v, s);
      _mm512_mask_storeu_ps(dst + r * D + d, m, v);
    }
}

/** Sets S[r, j] = -inf where key k0 + j is not allowed for query row q0 + r (mask and causal). */
FT_AVX512 void apply_mask(const AttentionParams& p, int64_t b, int64_t q0, int64_t bq, int64_t k0, int64_t bk, float* S,
                          int64_t lds, const int32_t* lo, const int32_t* hi) {
  const __m512 ninf = _mm512_set1_ps(kNegInf);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t r = 0; r < bq; r++) {
    float* srow = S + r * lds;
    const int64_t i = q0 + r;
    if (lo[r] > hi[r] || hi[r] < k0 || lo[r] >= k0 + bk) {  // nothing allowed in this tile
      for (int64_t j = 0; j < bk; j += 16) _mm512_mask_storeu_ps(srow + j, vm::tail_mask(bk - j), ninf);
      continue;
    }
    const bool needCausal = p.causal && k0 + bk - 1 > i;
    if (!p.mask && !needCausal) continue;
    const uint8_t* mrow = p.mask ? mask_row(p, b, i) + k0 : nullptr;
    for (int64_t j = 0; j < bk; j += 16) {
      const __mmask16 t = vm::tail_mask(bk - j);
      __mmask16 ok = t;
      if (mrow) {
        __m128i bytes = _mm_maskz_loadu_epi8(t, mrow + j);
        ok &= _mm_cmpneq_epi8_mask(bytes, _mm_setzero_si128());
      }
      if (needCausal) {
        __m512i keys = _mm512_add_epi32(lane, _mm512_set1_epi32(int(k0 + j)));
        ok &= _mm512_cmple_epi32_mask(keys, _mm512_set1_epi32(int(i)));
      }
      if (ok != t) {
        __m512 v = _mm512_maskz_loadu_ps(t, srow + j);
        _mm512_mask_storeu_ps(srow + j, t, _mm512_mask_mov_ps(ninf, ok, v));
      }
    }
  }
}

/** Online-softmax update of one row: S row (bk scores) becomes P = exp(S - mNew); returns the row sum;
 * *alpha = exp(mOld - mNew) scales the running output and sum. */
FT_AVX512 float online_row(float* s, int64_t bk, float* mRun, float* alpha) {
  __m512 mx = _mm512_set1_ps(kNegInf);
  for (int64_t j = 0; j < bk; j += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, vm::tail_mask(bk - j), s + j));
  const float tileMax = _mm512_reduce_max_ps(mx);
  const float mOld = *mRun, mNew = std::max(mOld, tileMax);
  if (mNew == kNegInf) {  // nothing allowed yet
    for (int64_t j = 0; j < bk; j += 16) _mm512_mask_storeu_ps(s + j, vm::tail_mask(bk - j), _mm512_setzero_ps());
    *alpha = 1.f;
    return 0.f;
  }
  *alpha = mOld == kNegInf ? 0.f : std::exp(mOld - mNew);
  *mRun = mNew;
  const __m512 vm_ = _mm512_set1_ps(mNew);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < bk; j += 16) {
    const __mmask16 t = vm::tail_mask(bk - j);
    __m512 e = vm::exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, s + j), vm_));
    e = _mm512_maskz_mov_ps(t, e);
    _mm512_mask_storeu_ps(s + j, t, e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
}

FT_AVX512 void scale_row(float* x, int64_t n, float a) {
  const __m512 va = _mm512_set1_ps(a);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 t = vm::tail_mask(n - j);
    _mm512_mask_storeu_ps(x + j, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, x + j), va));
  }
}

struct TileSizes {
  int64_t bq, bk;
};
/** Forward tiles: 64 queries x 128 keys; causal uses 64-key tiles so less of the diagonal tile is wasted. */
TileSizes fwd_tiles(bool causal) { return causal ? TileSizes{64, 64} : TileSizes{64, 128}; }
TileSizes bwd_tiles() {
  static TileSizes t{64, 64};
  return t;
}

void forward_tile_avx512(const AttentionParams& p, int64_t b, int64_t h, int64_t q0, int64_t bq) {
  const int64_t H = p.heads, D = p.headDim, Lq = p.lq, Lk = p.lk;
  const TileSizes ts = fwd_tiles(p.causal);
  const int64_t BK = ts.bk;
  const int64_t rowStride = H * D;
  // scratch: Q [bq x D], Kt [D x BK], S [bq x BK], O [bq x D], m, l, lo, hi
  const size_t need = sizeof(float) * (bq * D + D * BK + bq * BK + bq * D + 2 * bq) + sizeof(int32_t) * 2 * bq + 256;
  float* Qs = static_cast<float*>(scratch(kScratchAttn, need));
  float* Kt = Qs + bq * D;
  float* S = Kt + D * BK;
  float* O = S + bq * BK;
  float* mRun = O + bq * D;
  float* lRun = mRun + bq;
  int32_t* lo = reinterpret_cast<int32_t*>(lRun + bq);
  int32_t* hi = lo + bq;

  row_ranges(p, b, q0, bq, lo, hi);
  int64_t kLo = Lk, kHi = -1;
  for (int64_t r = 0; r < bq; r++)
    if (lo[r] <= hi[r]) {
      kLo = std::min<int64_t>(kLo, lo[r]);
      kHi = std::max<int64_t>(kHi, hi[r]);
    }
  gather_rows(p.q + ((b * Lq + q0) * H + h) * D, rowStride, bq, D, Qs, p.scale);
  std::memset(O, 0, sizeof(float) * bq * D);
  for (int64_t r = 0; r < bq; r++) {
    mRun[r] = kNegInf;
    lRun[r] = 0.f;
  }
  if (kHi >= 0) {
    for (int64_t k0 = kLo / BK * BK; k0 <= kHi; k0 += BK) {
      const int64_t bk = std::min(BK, Lk - k0);
      if (p.mask && !block_has_allowed(p, b, q0, bq, lo, hi, k0, bk)) continue;
      const float* kbase = p.k + ((b * Lk + k0) * H + h) * D;
      transpose_block(kbase, rowStride, bk, D, Kt, BK);
      tile_gemm_avx512(bq, bk, D, Qs, D, Kt, BK, S, BK, false);
      apply_mask(p, b, q0, bq, k0, bk, S, BK, lo, hi);
      for (int64_t r = 0; r < bq; r++) {
        float alpha;
        const float rs = online_row(S + r * BK, bk, &mRun[r], &alpha);
        if (alpha != 1.f) {
          scale_row(O + r * D, D, alpha);
          lRun[r] *= alpha;
        }
        lRun[r] += rs;
      }
      tile_gemm_avx512(bq, D, bk, S, BK, p.v + ((b * Lk + k0) * H + h) * D, rowStride, O, D, true);
    }
  }
  for (int64_t r = 0; r < bq; r++) {
    float* o = p.out + ((b * Lq + q0 + r) * H + h) * D;
    float* lse = p.lse + (b * H + h) * Lq + q0 + r;
    if (lRun[r] > 0.f) {
      const float inv = 1.f / lRun[r];
      for (int64_t d = 0; d < D; d++) o[d] = O[r * D + d] * inv;
      *lse = mRun[r] + std::log(lRun[r]);
    } else {
      std::memset(o, 0, D * sizeof(float));
      *lse = kNegInf;
    }
  }
}

/** P = exp(scale * S - lse_r) on allowed entries (S already has -inf on disallowed ones), 0 for empty rows. */
FT_AVX512 void probs_from_scores(float* S, int64_t lds, int64_t bq, int64_t bk, const float* lse, float scale) {
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t r = 0; r < bq; r++) {
    float* s = S + r * lds;
    if (lse[r] == kNegInf) {
      for (int64_t j = 0; j < bk; j += 16) _mm512_mask_storeu_ps(s + j, vm::tail_mask(bk - j), _mm512_setzero_ps());
      continue;
    }
    const __m512 l = _mm512_set1_ps(lse[r]);
    for (int64_t j = 0; j < bk; j += 16) {
      const __mmask16 t = vm::tail_mask(bk - j);
      __m512 e = vm::exp(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(t, s + j), vs, l));
      _mm512_mask_storeu_ps(s + j, t, e);
    }
  }
}

/** dS = scale * P * (dP - Drow) in place of dP. */
FT_AVX512 void dscores(const float* P, float* dP, int64_t lds, int64_t bq, int64_t bk, const float* Drow, float scale) {
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t r = 0; r < bq; r++) {
    const __m512 dr = _mm512_set1_ps(Drow[r]);
    for (int64_t j = 0; j < bk; j += 16) {
      const __mmask16 t = vm::tail_mask(bk - j);
      __m512 pv = _mm512_maskz_loadu_ps(t, P + r * lds + j), dp = _mm512_maskz_loadu_ps(t, dP + r * lds + j);
      _mm512_mask_storeu_ps(dP + r * lds + j, t, _mm512_mul_ps(_mm512_mul_ps(pv, vs), _mm512_sub_ps(dp, dr)));
    }
  }
}

FT_AVX512 float dot_f(const float* a, const float* b, int64_t n) {
  __m512 s = _mm512_setzero_ps();
  for (int64_t d = 0; d < n; d += 16) {
    const __mmask16 t = vm::tail_mask(n - d);
    s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t, a + d), _mm512_maskz_loadu_ps(t, b + d), s);
  }
  return _mm512_reduce_add_ps(s);
}

void backward_head_avx512(const AttentionParams& p, int64_t b, int64_t h) {
  const int64_t H = p.heads, D = p.headDim, Lq = p.lq, Lk = p.lk;
  const TileSizes ts = bwd_tiles();
  const int64_t BQ = ts.bq, BK = ts.bk;
  const int64_t rowStride = H * D;
  // scratch: Qc, dOc, dQ [Lq x D]; Drow, L [Lq]; lo, hi [Lq]; K, V [BK x D]; Kt, Vt [D x BK];
  //          dK, dV [BK x D]; S, dP [BQ x BK]; T [BK x BQ]
  const size_t floats = 3 * Lq * D + 2 * Lq + 2 * BK * D + 2 * D * BK + 2 * BK * D + 2 * BQ * BK + BK * BQ;
  float* Qc = static_cast<float*>(scratch(kScratchAttn, sizeof(float) * floats + sizeof(int32_t) * 2 * Lq + 256));
  float* dOc = Qc + Lq * D;
  float* dQ = dOc + Lq * D;
  float* Drow = dQ + Lq * D;
  float* L = Drow + Lq;
  float* Kc = L + Lq;
  float* Vc = Kc + BK * D;
  float* Kt = Vc + BK * D;
  float* Vt = Kt + D * BK;
  float* dK = Vt + D * BK;
  float* dV = dK + BK * D;
  float* S = dV + BK * D;
  float* dP = S + BQ * BK;
  float* Tt = dP + BQ * BK;
  int32_t* lo = reinterpret_cast<int32_t*>(Tt + BK * BQ);
  int32_t* hi = lo + Lq;

  gather_rows(p.q + (b * Lq * H + h) * D, rowStride, Lq, D, Qc, 1.f);
  gather_rows(p.dOut + (b * Lq * H + h) * D, rowStride, Lq, D, dOc, 1.f);
  std::memset(dQ, 0, sizeof(float) * Lq * D);
  for (int64_t i = 0; i < Lq; i++) {
    Drow[i] = dot_f(dOc + i * D, p.out + ((b * Lq + i) * H + h) * D, D);
    L[i] = p.lse[(b * H + h) * Lq + i];
  }
  row_ranges(p, b, 0, Lq, lo, hi);

  for (int64_t k0 = 0; k0 < Lk; k0 += BK) {
    const int64_t bk = std::min(BK, Lk - k0);
    const float* kbase = p.k + ((b * Lk + k0) * H + h) * D;
    const float* vbase = p.v + ((b * Lk + k0) * H + h) * D;
    gather_rows(kbase, rowStride, bk, D, Kc, 1.f);
    gather_rows(vbase, rowStride, bk, D, Vc, 1.f);
    transpose_block(Kc, D, bk, D, Kt, BK);
    transpose_block(Vc, D, bk, D, Vt, BK);
    std::memset(dK, 0, sizeof(float) * bk * D);
    std::memset(dV, 0, sizeof(float) * bk * D);
    for (int64_t q0 = 0; q0 < Lq; q0 += BQ) {
      const int64_t bq = std::min(BQ, Lq - q0);
      if (!block_has_allowed(p, b, q0, bq, lo + q0, hi + q0, k0, bk)) continue;
      // S = Q K^T (unscaled), masked; P = exp(scale S - lse)
      tile_gemm_avx512(bq, bk, D, Qc + q0 * D, D, Kt, BK, S, BK, false);
      apply_mask(p, b, q0, bq, k0, bk, S, BK, lo + q0, hi + q0);
      probs_from_scores(S, BK, bq, bk, L + q0, p.scale);
      // dV += P^T dO
      transpose_block(S, BK, bq, bk, Tt, BQ);
      tile_gemm_avx512(bk, D, bq, Tt, BQ, dOc + q0 * D, D, dV, D, true);
      // dP = dO V^T; dS = scale P (dP - Drow)
      tile_gemm_avx512(bq, bk, D, dOc + q0 * D, D, Vt, BK, dP, BK, false);
      dscores(S, dP, BK, bq, bk, Drow + q0, p.scale);
      // dQ += dS K; dK += dS^T Q
      tile_gemm_avx512(bq, D, bk, dP, BK, Kc, D, dQ + q0 * D, D, true);
      transpose_block(dP, BK, bq, bk, Tt, BQ);
      tile_gemm_avx512(bk, D, bq, Tt, BQ, Qc + q0 * D, D, dK, D, true);
    }
    for (int64_t j = 0; j < bk; j++) {
      std::memcpy(p.dk + ((b * Lk + k0 + j) * H + h) * D, dK + j * D, D * sizeof(float));
      std::memcpy(p.dv + ((b * Lk + k0 + j) * H + h) * D, dV + j * D, D * sizeof(float));
    }
  }
  for (int64_t i = 0; i < Lq; i++) std::memcpy(p.dq + ((b * Lq + i) * H + h) * D, dQ + i * D, D * sizeof(float));
}
#endif

bool use_avx512() {
#if FT_X86
  return active_isa() == Isa::Avx512;
#else
  return false;
#endif
}

}  // namespace

void attention_forward(const AttentionParams& p) {
  if (p.batch <= 0 || p.heads <= 0 || p.lq <= 0) return;
  if (p.headDim == 0 || p.lk == 0) {
    // no keys (or empty vectors): outputs are zero; lse is -inf without keys, else log of the allowed count
    for (int64_t b = 0; b < p.batch; b++)
      for (int64_t i = 0; i < p.lq; i++)
        for (int64_t h = 0; h < p.heads; h++) {
          int32_t lo, hi;
          row_ranges(p, b, i, 1, &lo, &hi);
          int64_t count = 0;
          if (lo <= hi) {
            const uint8_t* m = mask_row(p, b, i);
            for (int64_t j = lo; j <= hi; j++) count += (!m || m[j]) ? 1 : 0;
          }
          p.lse[(b * p.heads + h) * p.lq + i] = count ? std::log(float(count)) : kNegInf;
        }
    if (p.headDim > 0) std::memset(p.out, 0, sizeof(float) * p.batch * p.lq * p.heads * p.headDim);
    return;
  }
#if FT_X86
  if (use_avx512()) {
    const int64_t BQ = fwd_tiles(p.causal).bq;
    const int64_t qTiles = (p.lq + BQ - 1) / BQ;
    parallel_for(p.batch * p.heads * qTiles, [&](int64_t t, int) {
      const int64_t qt = t % qTiles, bh = t / qTiles;
      const int64_t q0 = qt * BQ;
      forward_tile_avx512(p, bh / p.heads, bh % p.heads, q0, std::min(BQ, p.lq - q0));
    });
    return;
  }
#endif
  const int64_t rowsPerTask = 16;
  const int64_t qTiles = (p.lq + rowsPerTask - 1) / rowsPerTask;
  parallel_for(p.batch * p.heads * qTiles, [&](int64_t t, int) {
    const int64_t qt = t % qTiles, bh = t / qTiles;
    const int64_t i0 = qt * rowsPerTask;
    forward_scalar_rows(p, bh / p.heads, bh % p.heads, i0, std::min(p.lq, i0 + rowsPerTask));
  });
}

void attention_backward(const AttentionParams& p) {
  if (p.batch <= 0 || p.heads <= 0) return;
  const int64_t qn = p.batch * p.lq * p.heads * p.headDim, kn = p.batch * p.lk * p.heads * p.headDim;
  if (p.headDim == 0 || p.lq == 0 || p.lk == 0) {
    if (qn) std::memset(p.dq, 0, sizeof(float) * qn);
    if (kn) {
      std::memset(p.dk, 0, sizeof(float) * kn);
      std::memset(p.dv, 0, sizeof(float) * kn);
    }
    return;
  }
  parallel_for(p.batch * p.heads, [&](int64_t t, int) {
    const int64_t b = t / p.heads, h = t % p.heads;
#if FT_X86
    if (use_avx512()) {
      backward_head_avx512(p, b, h);
      return;
    }
#endif
    backward_scalar_head(p, b, h);
  });
}

}  // namespace ft
