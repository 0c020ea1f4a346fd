// The AVX-512 back end: every kernel of kernels/all.inc compiled for AVX-512F/BW/DQ/VL (chosen at run time).
#include "../common.h"
#include "../kernels/table.h"

#if FT_X86
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "../kernels/attention_common.h"

namespace ft {
namespace avx512 {
#define FT_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))) static inline
#define FT_TABLE_NAME "avx512"
#include "../simd/vec_avx512.h"
#include "../kernels/all.inc"
#undef FT_FN
#undef FT_TABLE_NAME
}  // namespace avx512
const KernelTable* kernels_avx512() { return &avx512::table; }
}  // namespace ft
#else
namespace ft {
const KernelTable* kernels_avx512() { return nullptr; }
}  // namespace ft
#endif
