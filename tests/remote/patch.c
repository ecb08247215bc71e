// Patch objects for the remote tests: new versions of target.c's functions.
__attribute__((noinline)) int compute(int x) {
  return x * 2 + 1000;
}
__attribute__((noinline)) int compute_v3(int x) {
  return x * 2 + 3000;
}
__attribute__((noinline)) int hidden_v2(int x) {
  return x + 200;
}
__attribute__((noinline)) int lib_v2(int x) {
  return x + 500;
}
