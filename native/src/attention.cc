// Fused scaled-dot-product attention, forward and backward, flash-attention style: scores exist only one
// (query tile x key tile) block at a time per thread, softmax is computed online, and key tiles that the
// mask/causal flag rule out entirely are skipped. Token-major layout [B, L, H, D] (see kernels.ts).
// This file splits the work (query tiles forward, heads backward) over the thread pool; the tiles
// themselves are kernels/attention.inc, compiled once per ISA.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common.h"
#include "kernels/attention_common.h"
#include "kernels/table.h"

namespace ft {

void attention_forward(const AttentionParams& p) {
  if (p.batch <= 0 || p.heads <= 0 || p.lq <= 0) return;
  if (p.headDim == 0 || p.lk == 0) {
    // no keys (or empty vectors): outputs are zero; lse is -inf without keys, else log of the allowed count
    for (int64_t b = 0; b < p.batch; b++)
      for (int64_t i = 0; i < p.lq; i++)
        for (int64_t h = 0; h < p.heads; h++) {
          int32_t lo, hi;
          attn::row_ranges(p, b, i, 1, &lo, &hi);
          int64_t count = 0;
          if (lo <= hi) {
            const uint8_t* m = attn::mask_row(p, b, i);
            for (int64_t j = lo; j <= hi; j++) count += (!m || m[j]) ? 1 : 0;
          }
          p.lse[(b * p.heads + h) * p.lq + i] = count ? std::log(float(count)) : attn::kNegInf;
        }
    if (p.headDim > 0) std::memset(p.out, 0, sizeof(float) * p.batch * p.lq * p.heads * p.headDim);
    return;
  }
  const KernelTable& kt = kernel_table();
  const int64_t BQ = kt.attentionQueryTile;
  const int64_t qTiles = (p.lq + BQ - 1) / BQ;
  parallel_for(p.batch * p.heads * qTiles, [&](int64_t t, int) {
    const int64_t qt = t % qTiles, bh = t / qTiles;
    const int64_t q0 = qt * BQ;
    kt.attentionForwardTile(p, bh / p.heads, bh % p.heads, q0, std::min(BQ, p.lq - q0));
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
  const KernelTable& kt = kernel_table();
  parallel_for(p.batch * p.heads, [&](int64_t t, int) { kt.attentionBackwardHead(p, t / p.heads, t % p.heads); });
}

}  // namespace ft
