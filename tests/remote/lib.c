// A library function of the remote test targets: patched to show that functions of
// any loaded library can be replaced (also in a stripped executable).
__attribute__((noinline)) int lib_compute(int x) {
  int acc = x * 3 + 1;
  __asm__ volatile("" : "+r"(acc));
  return x + 50 + (acc & 0);
}
