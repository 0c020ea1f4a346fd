// Measures the machine's floating-point peak: independent FMA chains held in registers, timed over a
// fixed interval on 1..N pool threads. The benchmark reports GEMM rates as a fraction of this.
#include <atomic>
#include <chrono>

#include "common.h"

namespace ft {

namespace {

constexpr int64_t kChunk = 20000;

#if FT_X86
/** Runs kChunk iterations of 12 independent zmm FMA chains; returns the flops done. */
FT_AVX512 double chunk_avx512(float* sink) {
  __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);
  __m512 c[12];
  for (int j = 0; j < 12; j++) c[j] = _mm512_set1_ps(1.0f + j * 1e-3f);
  for (int64_t i = 0; i < kChunk; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) c[j] = _mm512_fmadd_ps(c[j], x, y);
  }
  __m512 s = c[0];
  for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, c[j]);
  *sink += _mm512_reduce_add_ps(s);
  return double(kChunk) * 12 * 16 * 2;
}

/** 12 independent vdpbf16ps chains: 16 lanes x 2 products x 2 flops per instruction. */
FT_AVX512BF16 double chunk_bf16(float* sink) {
  __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80);  // (1.0, 1.0) in bf16
  __m512bh y = (__m512bh)_mm512_set1_epi32(0x33d633d6);  // tiny
  __m512 c[12];
  for (int j = 0; j < 12; j++) c[j] = _mm512_set1_ps(1.0f + j * 1e-3f);
  for (int64_t i = 0; i < kChunk; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) c[j] = _mm512_dpbf16_ps(c[j], x, y);
  }
  __m512 s = c[0];
  for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, c[j]);
  *sink += _mm512_reduce_add_ps(s);
  return double(kChunk) * 12 * 16 * 4;
}

FT_AVX2 double chunk_avx2(float* sink) {
  __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-6f);
  __m256 c[12];
  for (int j = 0; j < 12; j++) c[j] = _mm256_set1_ps(1.0f + j * 1e-3f);
  for (int64_t i = 0; i < kChunk; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; j++) c[j] = _mm256_fmadd_ps(c[j], x, y);
  }
  alignas(32) float t[8];
  __m256 s = c[0];
  for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, c[j]);
  _mm256_store_ps(t, s);
  for (int j = 0; j < 8; j++) *sink += t[j];
  return double(kChunk) * 12 * 8 * 2;
}
#endif

double chunk_scalar(float* sink) {
  float c[8];
  for (int j = 0; j < 8; j++) c[j] = 1.0f + j * 1e-3f;
  volatile float xv = 0.999999f, yv = 1e-6f;
  float x = xv, y = yv;
  for (int64_t i = 0; i < kChunk; i++)
    for (int j = 0; j < 8; j++) c[j] = c[j] * x + y;
  for (int j = 0; j < 8; j++) *sink += c[j];
  return double(kChunk) * 8 * 2;
}

}  // namespace

double fma_peak_gflops(double seconds, int threads, bool bf16) {
  if (threads <= 0 || threads > num_threads()) threads = num_threads();
  if (seconds <= 0) seconds = 0.2;
  double (*chunk)(float*) = chunk_scalar;
#if FT_X86
  Isa isa = active_isa();
  if (bf16 && active_bf16()) chunk = chunk_bf16;
  else if (isa == Isa::Avx512) chunk = chunk_avx512;
  else if (isa == Isa::Avx2) chunk = chunk_avx2;
#endif
  using clock = std::chrono::steady_clock;
  std::atomic<double> total{0.0};
  std::atomic<float> sinkAll{0.f};
  // warm up (clocks ramp, pages fault in)
  float warm = 0;
  chunk(&warm);
  const auto start = clock::now();
  const auto deadline = start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
  parallel_for(threads, [&](int64_t, int) {
    float sink = 0;
    double flops = 0;
    while (clock::now() < deadline) flops += chunk(&sink);
    double cur = total.load();
    while (!total.compare_exchange_weak(cur, cur + flops)) {
    }
    float s = sinkAll.load();
    while (!sinkAll.compare_exchange_weak(s, s + sink)) {
    }
  });
  const double elapsed = std::chrono::duration<double>(clock::now() - start).count();
  return total.load() / elapsed / 1e9 + 0.0 * double(sinkAll.load() + warm);
}

}  // namespace ft
