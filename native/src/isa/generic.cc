// The generic back end: every kernel of kernels/all.inc over plain 4-lane arrays (any CPU; also what
// FLEXTOK_ISA=scalar selects on x86).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "../common.h"
#include "../kernels/attention_common.h"
#include "../kernels/table.h"

namespace ft {
namespace generic {
#define FT_FN static inline
#define FT_TABLE_NAME "scalar"
#include "../simd/vec_generic.h"
#include "../kernels/all.inc"
#undef FT_FN
#undef FT_TABLE_NAME
}  // namespace generic
const KernelTable* kernels_generic() { return &generic::table; }
}  // namespace ft
