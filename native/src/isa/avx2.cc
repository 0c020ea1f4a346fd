// The AVX2 + FMA back end: every kernel of kernels/all.inc compiled for AVX2 (chosen at run time).
#include "../common.h"
#include "../kernels/table.h"

#if FT_X86
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "../kernels/attention_common.h"

namespace ft {
namespace avx2 {
#define FT_FN __attribute__((target("avx2,fma,f16c"))) static inline
#define FT_TABLE_NAME "avx2"
#include "../simd/vec_avx2.h"
#include "../kernels/all.inc"
#undef FT_FN
#undef FT_TABLE_NAME
}  // namespace avx2
const KernelTable* kernels_avx2() { return &avx2::table; }
}  // namespace ft
#else
namespace ft {
const KernelTable* kernels_avx2() { return nullptr; }
}  // namespace ft
#endif
