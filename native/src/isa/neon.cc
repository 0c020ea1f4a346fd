// The NEON back end (aarch64): every kernel of kernels/all.inc over float32x4_t.
#include "../common.h"
#include "../kernels/table.h"

#if defined(__aarch64__)
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "../kernels/attention_common.h"

namespace ft {
namespace neon {
#define FT_FN static inline
#define FT_TABLE_NAME "neon"
#include "../simd/vec_neon.h"
#include "../kernels/all.inc"
#undef FT_FN
#undef FT_TABLE_NAME
}  // namespace neon
const KernelTable* kernels_neon() { return &neon::table; }
}  // namespace ft
#else
namespace ft {
const KernelTable* kernels_neon() { return nullptr; }
}  // namespace ft
#endif
