// The runtime the kernels need on wasm32, in place of native/src/threadpool.cc (which uses std::thread and
// sysfs): ISA selection (SIMD128 or the generic back end), per-slot scratch buffers and parallel_for.
// Built without FT_WASM_THREADS, parallel_for runs every task on the calling thread. With FT_WASM_THREADS
// (the module built with -matomics -mbulk-memory on an imported shared memory), helper threads are
// JavaScript workers that run ft_worker_loop on the same memory; parallel_for hands a job to them through
// atomics in linear memory and joins in itself (see native/wasm/README.md).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "../src/common.h"
#include "../src/kernels/table.h"

namespace ft {

// ---- ISA: SIMD128 unless lowered to the generic back end (for tests) ----

static Isa g_active_isa = Isa::Wasm;

Isa cpu_isa() { return Isa::Wasm; }
bool cpu_has_bf16() { return false; }
Isa active_isa() { return g_active_isa; }
bool active_bf16() { return false; }
void set_isa(Isa isa, bool) { g_active_isa = isa == Isa::Scalar ? Isa::Scalar : Isa::Wasm; }

// ---- scratch: one growable 64-byte-aligned buffer per (thread, slot) ----

namespace {
struct Scratch {
  void* ptr[kScratchSlots] = {};
  size_t size[kScratchSlots] = {};
};
#if defined(FT_WASM_THREADS)
thread_local Scratch t_scratch;
#else
Scratch t_scratch;
#endif
}  // namespace

void* scratch(ScratchSlot slot, size_t bytes) {
  Scratch& s = t_scratch;
  if (s.size[slot] < bytes) {
    std::free(s.ptr[slot]);
    const size_t want = (bytes + bytes / 4 + 4095) & ~size_t(4095);
    s.ptr[slot] = std::aligned_alloc(64, want);
    if (!s.ptr[slot]) __builtin_trap();  // out of wasm memory: the JS side reports the trap
    s.size[slot] = want;
  }
  return s.ptr[slot];
}

#if !defined(FT_WASM_THREADS)

void parallel_for(int64_t ntasks, const std::function<void(int64_t, int)>& fn) {
  for (int64_t t = 0; t < ntasks; t++) fn(t, 0);
}
int num_threads() { return 1; }
void set_num_threads(int) {}
int available_cores() { return 1; }

#else

// ---- thread pool over JavaScript workers ----
// Every field below lives in the shared linear memory. A job is published by bumping g_generation; idle
// helpers sleep in memory.atomic.wait32 on it. Tasks are claimed from g_next; g_pending counts helpers that
// joined the current job and have not finished it.

namespace {
constexpr int kMaxThreads = 64;
int32_t g_workers = 0;      // helpers inside ft_worker_loop
int32_t g_want = 1;         // threads asked for (ft_set_threads); jobs use min(g_want, g_workers + 1)
int32_t g_generation = 0;   // bumped once per job (and once to stop)
int32_t g_stopping = 0;
int32_t g_wanted = 0;       // helpers the current job still wants
int32_t g_pending = 0;      // helpers that joined the current job and are still working
int32_t g_busy = 0;         // 1 while a thread drives a job
int64_t g_next = 0;         // next task index of the current job
int64_t g_ntasks = 0;
int32_t g_helper_tasks = 0;  // tasks run by helpers since the start (tests read it)
const std::function<void(int64_t, int)>* g_job = nullptr;
thread_local bool t_in_task = false;

inline int32_t load(int32_t* p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
inline void store(int32_t* p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }

void work(int index) {
  const std::function<void(int64_t, int)>& fn = *g_job;
  for (;;) {
    const int64_t t = __atomic_fetch_add(&g_next, int64_t(1), __ATOMIC_SEQ_CST);
    if (t >= g_ntasks) break;
    fn(t, index);
    if (index != 0) __atomic_fetch_add(&g_helper_tasks, 1, __ATOMIC_RELAXED);
  }
}
}  // namespace

int num_threads() {
  const int32_t want = load(&g_want), have = load(&g_workers) + 1;
  return want < have ? want : have;
}
void set_num_threads(int n) { store(&g_want, n < 1 ? 1 : n > kMaxThreads ? kMaxThreads : n); }
int available_cores() { return load(&g_workers) + 1; }

void parallel_for(int64_t ntasks, const std::function<void(int64_t, int)>& fn) {
  if (ntasks <= 0) return;
  const int T = num_threads();
  int32_t idle = 0;
  if (T <= 1 || ntasks == 1 || t_in_task ||
      !__atomic_compare_exchange_n(&g_busy, &idle, 1, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    const bool was = t_in_task;
    t_in_task = true;
    for (int64_t t = 0; t < ntasks; t++) fn(t, 0);
    t_in_task = was;
    return;
  }
  g_job = &fn;
  g_ntasks = ntasks;
  __atomic_store_n(&g_next, int64_t(0), __ATOMIC_SEQ_CST);
  const int32_t helpers = int32_t(ntasks - 1 < T - 1 ? ntasks - 1 : T - 1);
  store(&g_pending, helpers);
  store(&g_wanted, helpers);
  __atomic_fetch_add(&g_generation, 1, __ATOMIC_SEQ_CST);
  __builtin_wasm_memory_atomic_notify(&g_generation, uint32_t(kMaxThreads));
  t_in_task = true;
  work(0);
  t_in_task = false;
  // helpers that have not joined yet are no longer needed; wait for those that did
  const int32_t unjoined = __atomic_exchange_n(&g_wanted, 0, __ATOMIC_SEQ_CST);
  if (unjoined) __atomic_fetch_sub(&g_pending, unjoined, __ATOMIC_SEQ_CST);
  for (int spin = 0;; spin++) {
    const int32_t p = load(&g_pending);
    if (p == 0) break;
    // Node lets its main thread wait (browsers only workers); a short timeout guards against a lost wake-up
    if (spin > 1000) __builtin_wasm_memory_atomic_wait32(&g_pending, p, 200000);
  }
  g_job = nullptr;
  store(&g_busy, 0);
}

}  // namespace ft

extern "C" {

/** Body of one helper thread (a JS worker that instantiated this module on the shared memory): serves jobs
 * until ft_stop_workers. `index` in 1..kMaxThreads-1. */
__attribute__((export_name("ft_worker_loop"))) void ft_worker_loop(int32_t index) {
  using namespace ft;
  t_in_task = true;
  __atomic_fetch_add(&g_workers, 1, __ATOMIC_SEQ_CST);
  int32_t seen = load(&g_generation);
  for (;;) {
    int32_t g = load(&g_generation);
    for (int spin = 0; g == seen && spin < 20000; spin++) g = load(&g_generation);
    while (g == seen) {
      __builtin_wasm_memory_atomic_wait32(&g_generation, seen, -1);
      g = load(&g_generation);
    }
    seen = g;
    if (load(&g_stopping)) break;
    int32_t want = load(&g_wanted);
    bool joined = false;
    while (want > 0) {
      if (__atomic_compare_exchange_n(&g_wanted, &want, want - 1, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    work(index);
    if (__atomic_sub_fetch(&g_pending, 1, __ATOMIC_SEQ_CST) == 0) __builtin_wasm_memory_atomic_notify(&g_pending, 1);
  }
  __atomic_fetch_sub(&g_workers, 1, __ATOMIC_SEQ_CST);
}

/** Asks every helper to leave ft_worker_loop. */
__attribute__((export_name("ft_stop_workers"))) void ft_stop_workers() {
  using namespace ft;
  store(&g_stopping, 1);
  __atomic_fetch_add(&g_generation, 1, __ATOMIC_SEQ_CST);
  __builtin_wasm_memory_atomic_notify(&g_generation, uint32_t(kMaxThreads));
}

/** Runs the kernels' lazy initialisations (function-local statics: wasi-libc's libc++abi guards them without
 * locks) on the calling thread, before any helper starts. */
__attribute__((export_name("ft_threads_init"))) void ft_threads_init() {
  using namespace ft;
  const Isa isa = active_isa();
  for (Isa i : {Isa::Scalar, Isa::Wasm}) {
    set_isa(i, false);
    (void)kernel_table();
    alignas(64) float a[64] = {}, b[64] = {}, c[64] = {};
    GemmParams g;
    g.m = g.n = g.k = 8;
    g.a = a;
    g.b = b;
    g.c = c;
    g.lda = g.ldb = g.ldc = 8;
    gemm(g, false);
    gemm(g, true);
  }
  set_isa(isa, false);
}

/** Helpers currently serving jobs. */
__attribute__((export_name("ft_workers"))) int32_t ft_workers() { return ft::load(&ft::g_workers); }

/** Tasks the helpers have run since the module started. */
__attribute__((export_name("ft_helper_tasks"))) int32_t ft_helper_tasks() { return ft::load(&ft::g_helper_tasks); }

}  // extern "C"

namespace ft {
#endif  // FT_WASM_THREADS

}  // namespace ft
