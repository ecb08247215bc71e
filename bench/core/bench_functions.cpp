// The functions the core benchmark calls. All compute the same thing, about 20 ns
// of dependent arithmetic; they differ only in how the call reaches the work.
extern "C" {

#define WORK_BODY                                                      \
  for (int i = 0; i < 16; ++i)                                         \
    x = (x * 6364136223846793005L + 1442695040888963407L) ^ (x >> 17); \
  return x;

__attribute__((noinline)) long bench_work(long x) {
  WORK_BODY
}  // the version that runs
__attribute__((noinline)) long bench_redirected(long x) {
  WORK_BODY
}  // hijacked -> bench_work
__attribute__((noinline)) long bench_counted(long x) {
  WORK_BODY
}  // hijacked, counted
__attribute__((noinline)) long bench_switched(long x) {
  WORK_BODY
}  // versions flipped
__attribute__((noinline)) long bench_probed(long x) {
  WORK_BODY
}  // a probe wraps it

// Four functions updated together by the quiescent benchmark, and their new versions.
__attribute__((noinline)) long bench_q0(long x) {
  return x + 1;
}
__attribute__((noinline)) long bench_q1(long x) {
  return x + 2;
}
__attribute__((noinline)) long bench_q2(long x) {
  return x + 3;
}
__attribute__((noinline)) long bench_q3(long x) {
  return x + 4;
}
__attribute__((noinline)) long bench_q0_v2(long x) {
  return x - 1;
}
__attribute__((noinline)) long bench_q1_v2(long x) {
  return x - 2;
}
__attribute__((noinline)) long bench_q2_v2(long x) {
  return x - 3;
}
__attribute__((noinline)) long bench_q3_v2(long x) {
  return x - 4;
}
}
