// The WebAssembly SIMD128 back end (wasm32, -msimd128; with -mrelaxed-simd, vfma is f32x4.relaxed_madd): every
// kernel of kernels/all.inc over v128_t.
#include "../common.h"
#include "../kernels/table.h"

#if defined(__wasm_simd128__)
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "../kernels/attention_common.h"

namespace ft {
namespace wasm {
#define FT_FN static inline
#if defined(__wasm_relaxed_simd__)
#define FT_TABLE_NAME "wasm-relaxed-simd"
#else
#define FT_TABLE_NAME "wasm-simd128"
#endif
#include "../simd/vec_wasm.h"
#include "../kernels/all.inc"
#undef FT_FN
#undef FT_TABLE_NAME
}  // namespace wasm
const KernelTable* kernels_wasm() { return &wasm::table; }
}  // namespace ft
#else
namespace ft {
const KernelTable* kernels_wasm() { return nullptr; }
}  // namespace ft
#endif
