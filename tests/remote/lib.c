// A library function of the remote test targets: patched to show that functions of
// any loaded library can be replaced (also in a stripped executable).
__attribute__((noinline)) int lib_compute(int x) { return x + 50; }
