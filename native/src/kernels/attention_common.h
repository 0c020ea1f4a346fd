// Mask and causal bookkeeping of the fused attention, shared by every back end: which keys each query row
// may attend to, and whether a (query tile x key tile) block has any allowed entry.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../common.h"

namespace ft {
namespace attn {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/** First index in [b, e) with a nonzero byte, or e. */
inline int64_t first_nonzero(const uint8_t* m, int64_t b, int64_t e) {
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
inline int64_t last_nonzero(const uint8_t* m, int64_t b, int64_t e) {
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

/** True when m[b..e) holds no zero byte. */
inline bool all_nonzero(const uint8_t* m, int64_t b, int64_t e) {
  int64_t i = b;
  for (; i + 8 <= e; i += 8) {
    uint64_t w;
    std::memcpy(&w, m + i, 8);
    if ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull) return false;  // some byte is zero
  }
  for (; i < e; i++)
    if (!m[i]) return false;
  return true;
}

/** Allowed key range of query rows [q0, q0 + n) of batch b. With `dense`, also whether every key in a
 * row's range is allowed (dense[r] = 1: the row's allowed keys are exactly [lo, hi], causal included), so
 * masking that row needs only the range (full, causal, causal_last and block-diagonal masks are dense). */
inline void row_ranges(const AttentionParams& p, int64_t b, int64_t q0, int64_t n, int32_t* lo, int32_t* hi,
                       uint8_t* dense = nullptr) {
  for (int64_t r = 0; r < n; r++) {
    const int64_t i = q0 + r;
    int64_t e = p.lk;
    if (p.causal) e = std::min<int64_t>(e, i + 1);
    if (dense) dense[r] = 1;
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
    if (dense) dense[r] = all_nonzero(m, lo[r], int64_t(hi[r]) + 1) ? 1 : 0;
  }
}

/** True when some row r in [0, n) of the block (rows q0.., keys k0..k0+bk) has an allowed key. */
inline bool block_has_allowed(const AttentionParams& p, int64_t b, int64_t q0, int64_t n, const int32_t* lo, const int32_t* hi,
                       int64_t k0, int64_t bk, const uint8_t* dense = nullptr) {
  for (int64_t r = 0; r < n; r++) {
    int64_t a = std::max<int64_t>(lo[r], k0), e = std::min<int64_t>(hi[r], k0 + bk - 1);
    if (a > e) continue;
    if (!p.mask || (dense && dense[r])) return true;
    const uint8_t* m = mask_row(p, b, q0 + r);
    if (first_nonzero(m, a, e + 1) <= e) return true;
  }
  return false;
}

}  // namespace attn
}  // namespace ft
