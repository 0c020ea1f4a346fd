// Generic back end of the SIMD vocabulary (see README.md): 4-lane vectors as plain arrays, for CPUs
// without a SIMD back end and as the semantic reference of the others. Included inside the namespace of
// one ISA (isa/generic.cc) after FT_FN is defined.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

constexpr int W = 4;
constexpr int WD = 2;
struct V { float v[4]; };
struct M { uint32_t m[4]; };
struct D { double v[2]; };

#define FT_LANES(i) for (int i = 0; i < 4; i++)

FT_FN V vzero() { return V{{0.f, 0.f, 0.f, 0.f}}; }
FT_FN V vset(float x) { return V{{x, x, x, x}}; }
FT_FN V viota() { return V{{0.f, 1.f, 2.f, 3.f}}; }
FT_FN V vload(const float* p) { V r; std::memcpy(r.v, p, sizeof r.v); return r; }
FT_FN void vstore(float* p, V a) { std::memcpy(p, a.v, sizeof a.v); }
FT_FN V vload_n(const float* p, int64_t n) {
  if (n >= 4) return vload(p);
  V r = vzero();
  for (int64_t i = 0; i < n; i++) r.v[i] = p[i];
  return r;
}
FT_FN void vstore_n(float* p, V a, int64_t n) {
  if (n >= 4) return vstore(p, a);
  for (int64_t i = 0; i < n; i++) p[i] = a.v[i];
}

FT_FN V operator+(V a, V b) { V r; FT_LANES(i) r.v[i] = a.v[i] + b.v[i]; return r; }
FT_FN V operator-(V a, V b) { V r; FT_LANES(i) r.v[i] = a.v[i] - b.v[i]; return r; }
FT_FN V operator*(V a, V b) { V r; FT_LANES(i) r.v[i] = a.v[i] * b.v[i]; return r; }
FT_FN V operator/(V a, V b) { V r; FT_LANES(i) r.v[i] = a.v[i] / b.v[i]; return r; }
FT_FN V vfma(V a, V b, V c) { V r; FT_LANES(i) r.v[i] = std::fma(a.v[i], b.v[i], c.v[i]); return r; }
FT_FN V vfnma(V a, V b, V c) { V r; FT_LANES(i) r.v[i] = std::fma(-a.v[i], b.v[i], c.v[i]); return r; }
FT_FN V vfms(V a, V b, V c) { V r; FT_LANES(i) r.v[i] = std::fma(a.v[i], b.v[i], -c.v[i]); return r; }
FT_FN V vneg(V a) { V r; FT_LANES(i) r.v[i] = -a.v[i]; return r; }
FT_FN V vabs(V a) { V r; FT_LANES(i) r.v[i] = std::fabs(a.v[i]); return r; }
FT_FN V vsqrt(V a) { V r; FT_LANES(i) r.v[i] = std::sqrt(a.v[i]); return r; }
FT_FN V vround(V a) { V r; FT_LANES(i) r.v[i] = std::nearbyint(a.v[i]); return r; }
FT_FN V vmax(V a, V b) { V r; FT_LANES(i) r.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i]; return r; }
FT_FN V vmin(V a, V b) { V r; FT_LANES(i) r.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i]; return r; }

FT_FN M vlt(V a, V b) { M r; FT_LANES(i) r.m[i] = a.v[i] < b.v[i] ? ~0u : 0u; return r; }
FT_FN M vle(V a, V b) { M r; FT_LANES(i) r.m[i] = a.v[i] <= b.v[i] ? ~0u : 0u; return r; }
FT_FN M vgt(V a, V b) { M r; FT_LANES(i) r.m[i] = a.v[i] > b.v[i] ? ~0u : 0u; return r; }
FT_FN M vge(V a, V b) { M r; FT_LANES(i) r.m[i] = a.v[i] >= b.v[i] ? ~0u : 0u; return r; }
FT_FN M vnan(V a) { M r; FT_LANES(i) r.m[i] = a.v[i] != a.v[i] ? ~0u : 0u; return r; }
FT_FN M mand(M a, M b) { M r; FT_LANES(i) r.m[i] = a.m[i] & b.m[i]; return r; }
FT_FN M mor(M a, M b) { M r; FT_LANES(i) r.m[i] = a.m[i] | b.m[i]; return r; }
FT_FN M mnot(M a) { M r; FT_LANES(i) r.m[i] = ~a.m[i]; return r; }
FT_FN M mtail(int64_t n) { M r; FT_LANES(i) r.m[i] = i < n ? ~0u : 0u; return r; }
FT_FN bool many(M a) { return (a.m[0] | a.m[1] | a.m[2] | a.m[3]) != 0; }
FT_FN V vselect(M m, V a, V b) { V r; FT_LANES(i) r.v[i] = m.m[i] ? a.v[i] : b.v[i]; return r; }
FT_FN M mload_nonzero(const uint8_t* p, int64_t n) { M r; FT_LANES(i) r.m[i] = (i < n && p[i]) ? ~0u : 0u; return r; }

FT_FN float vsum(V a) { return (a.v[0] + a.v[2]) + (a.v[1] + a.v[3]); }
FT_FN float vmax_lanes(V a) {
  float x = a.v[0] > a.v[2] ? a.v[0] : a.v[2], y = a.v[1] > a.v[3] ? a.v[1] : a.v[3];
  return x > y ? x : y;
}

FT_FN V vpow2i(V n) {
  V r;
  FT_LANES(i) {
    const int32_t k = n.v[i] == n.v[i] ? int32_t(std::nearbyint(n.v[i])) : 0;  // NaN: any finite value will do
    uint32_t u = uint32_t(k + 127) << 23;
    std::memcpy(&r.v[i], &u, 4);
  }
  return r;
}
FT_FN V vcopysign(V mag, V sgn) { V r; FT_LANES(i) r.v[i] = std::copysign(mag.v[i], sgn.v[i]); return r; }

/** In-place transpose of a W x W block: r[i] holds row i before, column i after. */
FT_FN void vtranspose(V r[4]) {
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++) {
      const float t = r[i].v[j];
      r[i].v[j] = r[j].v[i];
      r[j].v[i] = t;
    }
}

FT_FN D dzero() { return D{{0.0, 0.0}}; }
FT_FN D dset(double x) { return D{{x, x}}; }
FT_FN D dlo(V a) { return D{{double(a.v[0]), double(a.v[1])}}; }
FT_FN D dhi(V a) { return D{{double(a.v[2]), double(a.v[3])}}; }
FT_FN D dadd(D a, D b) { return D{{a.v[0] + b.v[0], a.v[1] + b.v[1]}}; }
FT_FN D dsub(D a, D b) { return D{{a.v[0] - b.v[0], a.v[1] - b.v[1]}}; }
FT_FN D dmul(D a, D b) { return D{{a.v[0] * b.v[0], a.v[1] * b.v[1]}}; }
FT_FN D ddiv(D a, D b) { return D{{a.v[0] / b.v[0], a.v[1] / b.v[1]}}; }
FT_FN D dsqrt(D a) { return D{{std::sqrt(a.v[0]), std::sqrt(a.v[1])}}; }
FT_FN double dsum(D a) { return a.v[0] + a.v[1]; }
FT_FN D dload_f_n(const float* p, int64_t n) { return D{{n > 0 ? double(p[0]) : 0.0, n > 1 ? double(p[1]) : 0.0}}; }
FT_FN void dstore_f_n(float* p, D a, int64_t n) {
  if (n > 0) p[0] = float(a.v[0]);
  if (n > 1) p[1] = float(a.v[1]);
}
FT_FN D dload_n(const double* p, int64_t n) { return D{{n > 0 ? p[0] : 0.0, n > 1 ? p[1] : 0.0}}; }
FT_FN void dstore_n(double* p, D a, int64_t n) {
  if (n > 0) p[0] = a.v[0];
  if (n > 1) p[1] = a.v[1];
}

#undef FT_LANES
