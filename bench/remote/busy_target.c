// The process the remote benchmark patches and probes: T threads (argv[1]) call
// bench_work(), about 20 ns of arithmetic, nonstop; every 200 ms the main thread
// prints "rate <calls per second>".
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_long calls;

__attribute__((noinline)) long bench_work(long x) {
  for (int i = 0; i < 16; ++i)
    x = (long)((unsigned long)x * 6364136223846793005UL + 1442695040888963407UL) ^ (x >> 17);
  return x;
}

static void* worker(void* arg) {
  (void)arg;
  long (*volatile fn)(long) = bench_work;
  long x = 1;
  for (;;) {
    for (int i = 0; i < 1000; ++i)
      x = fn(x);
    atomic_fetch_add_explicit(&calls, 1000, memory_order_relaxed);
  }
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 16;
  for (int i = 0; i < threads; ++i) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
  }
  long last = 0;
  double t0 = now();
  for (;;) {
    usleep(200000);
    long c = atomic_load(&calls);
    double t1 = now();
    printf("rate %.0f\n", (c - last) / (t1 - t0));
    fflush(stdout);
    last = c;
    t0 = t1;
  }
}
