// A long-running target for the remote tests: N threads call compute() nonstop;
// the main thread prints "result <compute(7)> calls <n>" every 50 ms (flushed), so
// a test sees each update take effect and sees that the process still runs.
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_long calls;

__attribute__((noinline)) int compute(int x) {
  int acc = x * 3 + 1;
  acc ^= acc >> 2;
  __asm__ volatile("" : "+r"(acc));
  return x * 2 + (acc & 0);
}

// A static function: found only through the executable's .symtab.
static __attribute__((noinline)) int hidden_compute(int x) {
  int acc = x * 5 + 1;
  __asm__ volatile("" : "+r"(acc));
  return x + 100 + (acc & 0);
}

static void* worker(void* arg) {
  (void)arg;
  int (*volatile fn)(int) = compute;
  int (*volatile hidden)(int) = hidden_compute;
  long local = 0;
  for (;;) {
    local += fn((int)(local & 1023)) + hidden(1);
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
  }
  return NULL;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 4;
  for (int i = 0; i < threads; ++i) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
  }
  int (*volatile fn)(int) = compute;
  int (*volatile hidden)(int) = hidden_compute;
  for (;;) {
    printf("result %d hidden %d calls %ld\n", fn(7), hidden(7), atomic_load(&calls));
    fflush(stdout);
    usleep(50000);
  }
}
