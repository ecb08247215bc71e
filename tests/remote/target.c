// A long-running target for the remote tests: N threads (argv[1], default 4) call
// compute(), hidden_compute() and lib_compute() nonstop; the main thread prints
// "result R hidden H lib L calls N" every 20 ms, so a test sees each update take
// effect and sees that the process still runs.
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int lib_compute(int x);  // in libremote_lib.so

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

// Too short to hold a jump, and a prologue with no rel32 form: both refused.
__asm__(
    ".text\n.globl tiny\n.type tiny,@function\ntiny:\n xor %eax,%eax\n ret\n.size tiny,.-tiny\n"
    ".globl tiny_next\n.type tiny_next,@function\ntiny_next:\n mov $1,%eax\n ret\n"
    ".size tiny_next,.-tiny_next\n"
    ".p2align 4\n.globl unrelocatable\n.type unrelocatable,@function\nunrelocatable:\n"
    " mov %edi,%ecx\n jrcxz 1f\n mov $1,%eax\n ret\n1: xor %eax,%eax\n ret\n"
    ".size unrelocatable,.-unrelocatable\n");
int tiny(void);
int tiny_next(void);
int unrelocatable(int);

static void* worker(void* arg) {
  (void)arg;
  int (*volatile fn)(int) = compute;
  int (*volatile hidden)(int) = hidden_compute;
  int (*volatile lib)(int) = lib_compute;
  long local = 0;
  for (;;) {
    local += fn((int)(local & 1023)) + hidden(1) + lib(2) + tiny() + unrelocatable(1);
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
    printf("result %d hidden %d lib %d calls %ld\n", fn(7), hidden(7), lib_compute(7),
           atomic_load(&calls));
    fflush(stdout);
    usleep(20000);
  }
}
