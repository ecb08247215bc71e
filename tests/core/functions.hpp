// Functions the core tests patch. Defined in functions.cpp (C++) and functions.S
// (hand-written prologues); extern "C" so the tests find them by name too.
#pragma once

#include <cstdint>

extern "C" {
// C++-compiled targets.
int dyn_add(int a, int b);
int dyn_add_v2(int a, int b);
int dyn_add_v3(int a, int b);
long dyn_work(long x);  // about 20 ns of arithmetic
long dyn_work_v2(long x);
int dyn_throws(int x);  // throws std::runtime_error when x < 0
int dyn_throws_v2(int x);
int dyn_backtrace_depth(void** out, int max);  // backtrace() from inside
int dyn_backtrace_depth_v2(void** out, int max);
void dyn_sleep_inside(int ms);  // sleeps while inside the function
void dyn_sleep_inside_v2(int ms);
int dyn_recurse(int depth, int ms);       // `depth` frames of itself, then sleeps at the bottom
void dyn_deep_inside(int depth, int ms);  // dyn_recurse(depth, ms) from inside
void dyn_deep_inside_v2(int depth, int ms);
}
