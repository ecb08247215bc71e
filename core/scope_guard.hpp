// Runs a cleanup when the scope ends, unless dismissed: rollback on every early
// return without writing it on each path (std::experimental::scope_exit, which
// libstdc++ 12 does not have yet).
#pragma once

#include <utility>

namespace dynamos::core {

template <class F>
class ScopeGuard {
 public:
  explicit ScopeGuard(F f) : f_(std::move(f)) {}
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  ~ScopeGuard() {
    if (armed_) f_();
  }
  // The scope succeeded: keep what it did.
  void dismiss() { armed_ = false; }

 private:
  F f_;
  bool armed_ = true;
};

}  // namespace dynamos::core
