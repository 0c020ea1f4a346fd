// The persistent thread pool every multithreaded kernel runs on, plus ISA selection and per-thread scratch buffers.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

#if defined(__linux__)
#include <sched.h>
#endif

namespace ft {

// ---------------------------------------------------------------------------------------------
// ISA selection
// ---------------------------------------------------------------------------------------------

static Isa detect_cpu_isa() {
#if FT_X86
  __builtin_cpu_init();
  Isa best = Isa::Scalar;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::Avx2;
  if (best == Isa::Avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    best = Isa::Avx512;
  const char* env = std::getenv("FLEXTOK_ISA");
  if (env) {
    Isa cap = best;
    if (!std::strcmp(env, "scalar")) cap = Isa::Scalar;
    else if (!std::strcmp(env, "avx2")) cap = Isa::Avx2;
    else if (!std::strcmp(env, "avx512")) cap = Isa::Avx512;
    if (static_cast<int>(cap) < static_cast<int>(best)) best = cap;
  }
  return best;
#else
#if defined(__aarch64__)
  const Isa best = Isa::Neon;
#elif defined(__wasm_simd128__)
  const Isa best = Isa::Wasm;
#else
  const Isa best = Isa::Scalar;
#endif
  const char* env = std::getenv("FLEXTOK_ISA");
  return env && !std::strcmp(env, "scalar") ? Isa::Scalar : best;
#endif
}

static bool detect_cpu_bf16() {
#if FT_X86
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bf16")) return false;
  const char* env = std::getenv("FLEXTOK_ISA");
  if (env && std::strcmp(env, "avx512") && std::strcmp(env, "avx512bf16")) return false;
  return true;
#else
  return false;
#endif
}

static const Isa g_cpu_isa = detect_cpu_isa();
static const bool g_cpu_bf16 = detect_cpu_bf16() && g_cpu_isa == Isa::Avx512;
static std::atomic<int> g_active_isa{static_cast<int>(g_cpu_isa)};
static std::atomic<bool> g_active_bf16{g_cpu_bf16};

Isa cpu_isa() { return g_cpu_isa; }
bool cpu_has_bf16() { return g_cpu_bf16; }
Isa active_isa() { return static_cast<Isa>(g_active_isa.load(std::memory_order_relaxed)); }
bool active_bf16() { return g_active_bf16.load(std::memory_order_relaxed); }
void set_isa(Isa isa, bool allow_bf16) {
  const bool x86Order = g_cpu_isa <= Isa::Avx512 && isa <= Isa::Avx512;
  if (isa != Isa::Scalar && (x86Order ? static_cast<int>(isa) > static_cast<int>(g_cpu_isa) : isa != g_cpu_isa))
    isa = g_cpu_isa;
  g_active_isa.store(static_cast<int>(isa));
  g_active_bf16.store(allow_bf16 && g_cpu_bf16 && isa == Isa::Avx512);
}

// ---------------------------------------------------------------------------------------------
// Scratch buffers
// ---------------------------------------------------------------------------------------------

namespace {
struct ScratchBuffers {
  void* ptr[kScratchSlots] = {};
  size_t size[kScratchSlots] = {};
  ~ScratchBuffers() {
    for (int i = 0; i < kScratchSlots; i++) std::free(ptr[i]);
  }
};
thread_local ScratchBuffers t_scratch;
}  // namespace

void* scratch(ScratchSlot slot, size_t bytes) {
  ScratchBuffers& s = t_scratch;
  if (s.size[slot] < bytes) {
    std::free(s.ptr[slot]);
    size_t want = (bytes + bytes / 4 + 4095) & ~size_t(4095);
    s.ptr[slot] = std::aligned_alloc(64, want);
    if (!s.ptr[slot]) {
      s.size[slot] = 0;
      throw std::bad_alloc();
    }
    s.size[slot] = want;
  }
  return s.ptr[slot];
}

// ---------------------------------------------------------------------------------------------
// Thread pool
// ---------------------------------------------------------------------------------------------

int available_cores() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

static inline void cpu_relax() {
#if FT_X86
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

namespace {

thread_local bool t_in_pool_task = false;

class ThreadPool {
 public:
  ThreadPool() {
    int n = available_cores();
    if (const char* env = std::getenv("FLEXTOK_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) n = v;
    }
    if (const char* env = std::getenv("FLEXTOK_SPIN_US")) {
      int v = std::atoi(env);
      if (v >= 0) spin_us_ = v;
    }
    start(n);
  }
  ~ThreadPool() { stop(); }

  int threads() const { return nthreads_; }

  void resize(int n) {
    if (n < 1) n = 1;
    if (n > 256) n = 256;
    if (n == nthreads_) return;
    std::lock_guard<std::mutex> use(use_mu_);
    stop();
    start(n);
  }

  void run(int64_t ntasks, const std::function<void(int64_t, int)>& fn) {
    if (ntasks <= 0) return;
    if (nthreads_ <= 1 || ntasks == 1 || t_in_pool_task) {
      run_serial(ntasks, fn);
      return;
    }
    std::unique_lock<std::mutex> use(use_mu_, std::try_to_lock);
    if (!use.owns_lock()) {  // another thread owns the pool right now
      run_serial(ntasks, fn);
      return;
    }
    job_ = &fn;
    ntasks_ = ntasks;
    next_.store(0, std::memory_order_relaxed);
    int helpers = static_cast<int>(std::min<int64_t>(ntasks - 1, nthreads_ - 1));
    pending_.store(helpers, std::memory_order_relaxed);
    helpers_wanted_.store(helpers, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
    t_in_pool_task = true;
    work(0);
    t_in_pool_task = false;
    // helpers that have not joined yet are not needed any more; wait only for those that joined
    int unjoined = helpers_wanted_.exchange(0, std::memory_order_acq_rel);
    if (unjoined) pending_.fetch_sub(unjoined, std::memory_order_acq_rel);
    int spins = 0;
    while (pending_.load(std::memory_order_acquire) != 0) {
      if (++spins < 2000) cpu_relax();
      else std::this_thread::yield();
    }
    job_ = nullptr;
  }

 private:
  void run_serial(int64_t ntasks, const std::function<void(int64_t, int)>& fn) {
    bool was = t_in_pool_task;
    t_in_pool_task = true;
    for (int64_t t = 0; t < ntasks; t++) fn(t, 0);
    t_in_pool_task = was;
  }

  void work(int index) {
    const std::function<void(int64_t, int)>& fn = *job_;
    for (;;) {
      int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= ntasks_) break;
      fn(t, index);
    }
  }

  void start(int n) {
    nthreads_ = n;
    stopping_.store(false);
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < n; i++) workers_.emplace_back([this, i, gen] { worker_loop(i, gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_.store(true);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    nthreads_ = 1;
  }

  void worker_loop(int index, uint64_t seen) {
    t_in_pool_task = true;
    for (;;) {
      // spin briefly, then sleep on the condition variable
      uint64_t g = generation_.load(std::memory_order_acquire);
      if (g == seen && spin_us_ > 0) {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0;; i++) {
          for (int j = 0; j < 64; j++) cpu_relax();
          g = generation_.load(std::memory_order_acquire);
          if (g != seen) break;
          if ((i & 7) == 7 &&
              std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(spin_us_))
            break;
        }
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1, std::memory_order_acq_rel);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen || stopping_.load(); });
        sleepers_.fetch_sub(1, std::memory_order_acq_rel);
        g = generation_.load(std::memory_order_acquire);
      }
      seen = g;
      if (stopping_.load()) return;
      // join the job if it still wants helpers
      int want = helpers_wanted_.load(std::memory_order_acquire);
      bool joined = false;
      while (want > 0) {
        if (helpers_wanted_.compare_exchange_weak(want, want - 1, std::memory_order_acq_rel)) {
          joined = true;
          break;
        }
      }
      if (!joined) continue;
      work(index);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  int nthreads_ = 1;
  int spin_us_ = 300;  // workers spin this long after a job before sleeping: between two ops JS runs for
                       // ~100 µs (allocation, autograd); 300 beat 50 by 3-10% on the d12 encoder (Zen 3)
  std::vector<std::thread> workers_;
  std::mutex use_mu_;  // held by the thread that currently drives a job
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int> helpers_wanted_{0};
  std::atomic<int> pending_{0};
  std::atomic<int64_t> next_{0};
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int64_t ntasks_ = 0;
  std::atomic<bool> stopping_{false};
};

ThreadPool& pool() {
  static ThreadPool* p = new ThreadPool();  // never destroyed: workers must not outlive statics at exit
  return *p;
}

}  // namespace

void parallel_for(int64_t ntasks, const std::function<void(int64_t, int)>& fn) { pool().run(ntasks, fn); }
int num_threads() { return pool().threads(); }
void set_num_threads(int n) { pool().resize(n); }

}  // namespace ft
