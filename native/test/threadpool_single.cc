// Single-threaded stand-in for native/src/threadpool.cc, for targets without threads (wasm32-wasi: its
// libc++ has no <thread>/<mutex>, and the test is built with -fno-exceptions). Same API (common.h): ISA
// selection, per-slot scratch buffers, and a parallel_for that runs every task on the calling thread.
// Used only by the standalone kernel test (native/test/kernel_test.cc, scripts/native-kernel-test.sh).
#include <cstdlib>
#include <cstring>

#include "../src/common.h"

namespace ft {

static Isa detect_cpu_isa() {
#if defined(__wasm_simd128__)
  const Isa best = Isa::Wasm;
#elif defined(__aarch64__)
  const Isa best = Isa::Neon;
#else
  const Isa best = Isa::Scalar;
#endif
  const char* env = std::getenv("FLEXTOK_ISA");
  return env && !std::strcmp(env, "scalar") ? Isa::Scalar : best;
}

static const Isa g_cpu_isa = detect_cpu_isa();
static Isa g_active_isa = g_cpu_isa;

Isa cpu_isa() { return g_cpu_isa; }
bool cpu_has_bf16() { return false; }
Isa active_isa() { return g_active_isa; }
bool active_bf16() { return false; }
void set_isa(Isa isa, bool) { g_active_isa = (isa == Isa::Scalar || isa == g_cpu_isa) ? isa : g_cpu_isa; }

void* scratch(ScratchSlot slot, size_t bytes) {
  static void* ptr[kScratchSlots] = {};
  static size_t size[kScratchSlots] = {};
  if (size[slot] < bytes) {
    std::free(ptr[slot]);
    const size_t want = (bytes + bytes / 4 + 4095) & ~size_t(4095);
    ptr[slot] = std::aligned_alloc(64, want);
    if (!ptr[slot]) std::abort();
    size[slot] = want;
  }
  return ptr[slot];
}

void parallel_for(int64_t ntasks, const std::function<void(int64_t, int)>& fn) {
  for (int64_t t = 0; t < ntasks; t++) fn(t, 0);
}
int num_threads() { return 1; }
void set_num_threads(int) {}
int available_cores() { return 1; }

}  // namespace ft
