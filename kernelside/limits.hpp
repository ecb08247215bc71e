// Resource limits a daemon adjusts at start: the number of open descriptors.
//
// A coordinator holds one socket per node agent, so its descriptor limit bounds the
// cluster it can run. Linux starts processes with a soft limit (often 1,024) below the
// hard one; a daemon may raise its soft limit up to the hard limit, as systemd's own
// services and most daemons do at start. Raising the hard limit takes CAP_SYS_RESOURCE
// and stays within /proc/sys/fs/nr_open. The raised soft limit is the daemon's own: the
// programs it starts (kernelside::spawn) get back the soft limit it started with, as
// systemd gives services 1,024 (select() fails above it, and programs that close every
// descriptor up to the limit would loop a million times).
#pragma once

#include <sys/resource.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "base/error.hpp"

namespace dynamos::kernelside {

struct OpenFilesLimit {
  std::uint64_t soft_before = 0;  // the soft limit found
  std::uint64_t soft = 0;         // the soft limit now
  std::uint64_t hard = 0;         // the hard limit now
  bool raised() const { return soft > soft_before; }
};

namespace detail {
// The soft limit found by the first raise_open_files that raised it; 0: never raised.
inline std::atomic<std::uint64_t> soft_open_files_at_start{0};
}  // namespace detail

// The soft limit this process started with, when raise_open_files raised it since: what
// its children should get back.
inline std::optional<std::uint64_t> open_files_to_pass_on() {
  std::uint64_t v = detail::soft_open_files_at_start.load();
  if (v == 0) return std::nullopt;
  return v;
}

// Raises the soft limit on open descriptors to the hard limit; with `want` above the
// hard limit, first tries to raise the hard limit to `want` (it stays where it was
// when that is not permitted: the result says what was reached).
inline Result<OpenFilesLimit> raise_open_files(std::uint64_t want = 0) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return fail_errno("getrlimit(RLIMIT_NOFILE)");
  OpenFilesLimit out{r.rlim_cur, r.rlim_cur, r.rlim_max};
  auto remember = [&] {
    std::uint64_t none = 0;
    detail::soft_open_files_at_start.compare_exchange_strong(none, out.soft_before);
  };
  if (want > r.rlim_max && r.rlim_max != RLIM_INFINITY) {
    rlimit higher{static_cast<rlim_t>(want), static_cast<rlim_t>(want)};
    if (::setrlimit(RLIMIT_NOFILE, &higher) == 0) {
      remember();
      out.soft = out.hard = want;
      return out;
    }
  }
  if (r.rlim_cur < r.rlim_max) {
    remember();
    r.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &r) != 0)
      return fail_errno("setrlimit(RLIMIT_NOFILE) to the hard limit " + std::to_string(r.rlim_max));
    out.soft = r.rlim_max;
  }
  return out;
}

}  // namespace dynamos::kernelside
