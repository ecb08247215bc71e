// A target with its own allocator (it interposes malloc & co., as jemalloc or tcmalloc
// do): one lock, and the main thread spends about half its time inside malloc holding it,
// calling compute() in between and printing "ready" every 20 ms. dlopen calls malloc:
// sent through dlopen while it holds the lock, the main thread would wait for itself
// forever.
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_flag lock = ATOMIC_FLAG_INIT;
static _Alignas(4096) char arena[256 << 20];
static size_t used;
static _Thread_local int slow;  // the main loop's allocations hold the lock a while

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

// Every block has 16 bytes before it holding its size; alignment up to a page.
static void* take(size_t n, size_t align) {
  if (align < 16) align = 16;
  while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire)) {
  }
  if (slow) {
    const double until = now_us() + 200;
    while (now_us() < until) {
    }
  }
  size_t at = (used + 16 + align - 1) & ~(align - 1);
  void* p = NULL;
  if (at + n <= sizeof arena) {
    ((size_t*)(arena + at))[-1] = n;
    used = at + n;
    p = arena + at;
  }
  atomic_flag_clear_explicit(&lock, memory_order_release);
  return p;
}

void* malloc(size_t n) {
  return take(n, 16);
}
void free(void* p) {
  (void)p;
}
void* calloc(size_t a, size_t b) {
  void* p = take(a * b, 16);
  if (p) memset(p, 0, a * b);
  return p;
}
size_t malloc_usable_size(void* p) {
  return p ? ((size_t*)p)[-1] : 0;
}
void* realloc(void* p, size_t n) {
  void* q = take(n, 16);
  if (q && p) memcpy(q, p, malloc_usable_size(p) < n ? malloc_usable_size(p) : n);
  return q;
}
void* memalign(size_t align, size_t n) {
  return take(n, align);
}
void* aligned_alloc(size_t align, size_t n) {
  return take(n, align);
}
int posix_memalign(void** out, size_t align, size_t n) {
  *out = take(n, align);
  return *out ? 0 : 12;
}
void* valloc(size_t n) {
  return take(n, 4096);
}
void* pvalloc(size_t n) {
  return take((n + 4095) & ~(size_t)4095, 4096);
}

__attribute__((noinline)) int compute(int x) {
  int acc = x * 3 + 1;
  __asm__ volatile("" : "+r"(acc));
  return x * 2 + (acc & 0);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int (*volatile fn)(int) = compute;
  for (;;) {
    const double next = now_us() + 20000;
    long sum = 0;
    while (now_us() < next) {
      slow = 1;
      char* p = malloc(16);
      slow = 0;
      const double until = now_us() + 200;
      while (now_us() < until)
        sum += fn(p ? 1 : 0);
    }
    printf("ready %ld\n", sum > 0 ? 1L : 0L);
  }
}
