// A thread-safe allocator for the multi-threaded wasm build (wasi-libc's dlmalloc is compiled without atomics,
// so wasm-ld refuses it with a shared memory, and it has no locks): malloc, free, calloc, realloc,
// aligned_alloc and posix_memalign over 64 KiB pages taken from memory.grow, behind one spin lock.
// Blocks up to 32 KiB come from per-size-class free lists (powers of two, each page holds one class, so a
// block is aligned to its size); larger ones are runs of whole pages, first fit, coalesced when freed.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

extern "C" unsigned char __heap_base;

namespace {

constexpr uint32_t kPageShift = 16;  // the wasm page: 64 KiB
constexpr uint32_t kPageSize = 1u << kPageShift;
constexpr uint32_t kMaxPages = 65536;  // 4 GiB
constexpr int kClasses = 12;           // 16 B .. 32 KiB
constexpr uint32_t kMinShift = 4;

// page states
constexpr uint8_t kUnmanaged = 0, kFree = 1, kLargeHead = 2, kLargeBody = 3, kSmall = 4;  // kSmall + class

uint8_t g_state[kMaxPages];
uint32_t g_runLen[kMaxPages];  // free runs: at the first and the last page; large blocks: at the first page
uint32_t g_freeRuns = 0;       // first page of the first free run (0 = none; page 0 is never on the heap)
void* g_smallFree[kClasses];
bool g_ready = false;
int32_t g_lock = 0;

struct FreeRun {
  uint32_t next, prev;  // first pages of the neighbouring free runs in the list (0 = none)
};
inline FreeRun* run_at(uint32_t page) { return reinterpret_cast<FreeRun*>(uintptr_t(page) << kPageShift); }

struct Guard {
  Guard() {
    while (__atomic_exchange_n(&g_lock, 1, __ATOMIC_ACQUIRE)) {
      while (__atomic_load_n(&g_lock, __ATOMIC_RELAXED)) {
      }
    }
  }
  ~Guard() { __atomic_store_n(&g_lock, 0, __ATOMIC_RELEASE); }
};

void list_remove(uint32_t p) {
  FreeRun* r = run_at(p);
  if (r->prev) run_at(r->prev)->next = r->next;
  else g_freeRuns = r->next;
  if (r->next) run_at(r->next)->prev = r->prev;
}

/** Marks pages [p, p + n) as one free run and puts it on the list. */
void make_free_run(uint32_t p, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) g_state[p + i] = kFree;
  g_runLen[p] = n;
  g_runLen[p + n - 1] = n;
  FreeRun* r = run_at(p);
  r->prev = 0;
  r->next = g_freeRuns;
  if (g_freeRuns) run_at(g_freeRuns)->prev = p;
  g_freeRuns = p;
}

/** Frees pages [p, p + n), merged with free neighbours. */
void release_run(uint32_t p, uint32_t n) {
  if (p > 0 && g_state[p - 1] == kFree) {
    const uint32_t len = g_runLen[p - 1], head = p - len;
    list_remove(head);
    p = head;
    n += len;
  }
  if (p + n < kMaxPages && g_state[p + n] == kFree) {
    const uint32_t len = g_runLen[p + n];
    list_remove(p + n);
    n += len;
  }
  make_free_run(p, n);
}

void init() {
  const uint32_t first = uint32_t((uintptr_t(&__heap_base) + kPageSize - 1) >> kPageShift);
  const uint32_t end = uint32_t(__builtin_wasm_memory_size(0));
  if (end > first) make_free_run(first, end - first);
  g_ready = true;
}

/** n contiguous pages (their first page), 0 when the memory cannot grow. */
uint32_t take_pages(uint32_t n) {
  for (uint32_t p = g_freeRuns; p; p = run_at(p)->next) {
    const uint32_t len = g_runLen[p];
    if (len < n) continue;
    list_remove(p);
    if (len > n) make_free_run(p + n, len - n);
    return p;
  }
  // grow: reuse a free run at the end of memory, add the rest
  const uint32_t end = uint32_t(__builtin_wasm_memory_size(0));
  uint32_t tail = end > 0 && g_state[end - 1] == kFree ? g_runLen[end - 1] : 0;
  if (size_t(end) + n - tail > kMaxPages) return 0;
  if (__builtin_wasm_memory_grow(0, n - tail) < 0) return 0;
  const uint32_t start = end - tail;
  if (tail) list_remove(start);
  return start;
}

void* alloc_locked(size_t size, size_t align) {
  if (!g_ready) init();
  size_t want = size > align ? size : align;
  if (want <= (size_t(1) << (kMinShift + kClasses - 1))) {
    int c = 0;
    while ((size_t(1) << (kMinShift + c)) < want) c++;
    if (!g_smallFree[c]) {
      const uint32_t page = take_pages(1);
      if (!page) return nullptr;
      g_state[page] = uint8_t(kSmall + c);
      const size_t bs = size_t(1) << (kMinShift + c);
      unsigned char* base = reinterpret_cast<unsigned char*>(uintptr_t(page) << kPageShift);
      for (size_t off = kPageSize; off >= bs; off -= bs) {
        void** blk = reinterpret_cast<void**>(base + off - bs);
        *blk = g_smallFree[c];
        g_smallFree[c] = blk;
      }
    }
    void** blk = static_cast<void**>(g_smallFree[c]);
    g_smallFree[c] = *blk;
    return blk;
  }
  if (align > kPageSize || size > (size_t(kMaxPages) << kPageShift) - kPageSize) return nullptr;
  const uint32_t n = uint32_t((size + kPageSize - 1) >> kPageShift);
  const uint32_t p = take_pages(n);
  if (!p) return nullptr;
  g_state[p] = kLargeHead;
  for (uint32_t i = 1; i < n; i++) g_state[p + i] = kLargeBody;
  g_runLen[p] = n;
  return reinterpret_cast<void*>(uintptr_t(p) << kPageShift);
}

/** Usable bytes of a live block. */
size_t block_size(void* ptr) {
  const uint32_t p = uint32_t(uintptr_t(ptr) >> kPageShift);
  const uint8_t s = g_state[p];
  if (s >= kSmall) return size_t(1) << (kMinShift + (s - kSmall));
  return size_t(g_runLen[p]) << kPageShift;
}

void free_locked(void* ptr) {
  const uint32_t p = uint32_t(uintptr_t(ptr) >> kPageShift);
  const uint8_t s = g_state[p];
  if (s >= kSmall) {
    void** blk = static_cast<void**>(ptr);
    *blk = g_smallFree[s - kSmall];
    g_smallFree[s - kSmall] = blk;
  } else if (s == kLargeHead && (uintptr_t(ptr) & (kPageSize - 1)) == 0) {
    release_run(p, g_runLen[p]);
  } else {
    __builtin_trap();  // not a block of this allocator
  }
}

}  // namespace

extern "C" {

void* malloc(size_t size) {
  Guard g;
  return alloc_locked(size, 16);
}

void free(void* ptr) {
  if (!ptr) return;
  Guard g;
  free_locked(ptr);
}

void* calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return nullptr;
  void* p;
  {
    Guard g;
    p = alloc_locked(n * size, 16);
  }
  if (p) std::memset(p, 0, n * size);
  return p;
}

void* realloc(void* ptr, size_t size) {
  if (!ptr) return malloc(size);
  if (size == 0) {
    free(ptr);
    return nullptr;
  }
  Guard g;
  const size_t old = block_size(ptr);
  if (size <= old) return ptr;
  void* q = alloc_locked(size, 16);
  if (!q) return nullptr;
  std::memcpy(q, ptr, old);
  free_locked(ptr);
  return q;
}

void* aligned_alloc(size_t align, size_t size) {
  if (align == 0 || (align & (align - 1))) return nullptr;
  Guard g;
  return alloc_locked(size, align < 16 ? 16 : align);
}

int posix_memalign(void** out, size_t align, size_t size) {
  if (align < sizeof(void*) || (align & (align - 1))) return EINVAL;
  void* p = aligned_alloc(align, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

size_t malloc_usable_size(void* ptr) {
  if (!ptr) return 0;
  Guard g;
  return block_size(ptr);
}

}  // extern "C"
