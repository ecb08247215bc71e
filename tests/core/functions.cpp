#include "tests/core/functions.hpp"

#include <execinfo.h>

#include <chrono>
#include <stdexcept>
#include <thread>

extern "C" {

int dyn_add(int a, int b) {
  return a + b;
}
int dyn_add_v2(int a, int b) {
  return a + b + 1000;
}
int dyn_add_v3(int a, int b) {
  return a + b + 2000;
}

// A dependent chain of multiplies and xors: about 20 ns on a current core. Inlined
// into both versions (always_inline holds under -fno-inline), so each is whole.
[[gnu::always_inline]] static inline long work_body(long x) {
  for (int i = 0; i < 16; ++i)
    x = static_cast<long>(static_cast<unsigned long>(x) * 6364136223846793005UL +
                          1442695040888963407UL) ^
        (x >> 17);
  return x;
}
__attribute__((noinline)) long dyn_work(long x) {
  return work_body(x);
}
__attribute__((noinline)) long dyn_work_v2(long x) {
  return work_body(x);
}

int dyn_throws(int x) {
  if (x < 0) throw std::runtime_error("original");
  return x;
}
int dyn_throws_v2(int x) {
  if (x < 0) throw std::runtime_error("v2");
  return x * 2;
}

// Not tail calls: each keeps its own frame, as a function with work after the call.
int dyn_backtrace_depth(void** out, int max) {
  int n = backtrace(out, max);
  asm volatile("" : "+r"(n));
  return n;
}
int dyn_backtrace_depth_v2(void** out, int max) {
  int n = backtrace(out, max);
  asm volatile("" : "+r"(n));
  return n;
}

void dyn_sleep_inside(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}
void dyn_sleep_inside_v2(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// Work after each call keeps every frame (no tail call, no loop).
int dyn_recurse(int depth, int ms) {
  if (depth <= 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return 0;
  }
  int n = dyn_recurse(depth - 1, ms);
  asm volatile("" : "+r"(n));
  return n + 1;
}
void dyn_deep_inside(int depth, int ms) {
  int n = dyn_recurse(depth, ms);
  asm volatile("" : : "r"(n));
}
void dyn_deep_inside_v2(int depth, int ms) {
  int n = dyn_recurse(depth, ms);
  asm volatile("" : : "r"(n));
}
}
