// Resource limits a daemon adjusts at start: the number of open descriptors.
//
// A coordinator holds one socket per node agent, so its descriptor limit bounds the
// cluster it can run. Linux starts processes with a soft limit (often 1,024) below the
// hard one; a daemon may raise its soft limit up to the hard limit, as systemd's own
// services and most daemons do at start. Raising the hard limit takes CAP_SYS_RESOURCE
// and stays within /proc/sys/fs/nr_open.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <string>

#include "base/error.hpp"

namespace dynamos::kernelside {

struct OpenFilesLimit {
  std::uint64_t soft_before = 0;  // the soft limit found
  std::uint64_t soft = 0;         // the soft limit now
  std::uint64_t hard = 0;         // the hard limit now
  bool raised() const { return soft > soft_before; }
};

// Raises the soft limit on open descriptors to the hard limit; with `want` above the
// hard limit, first tries to raise the hard limit to `want` (it stays where it was
// when that is not permitted: the result says what was reached).
inline Result<OpenFilesLimit> raise_open_files(std::uint64_t want = 0) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return fail_errno("getrlimit(RLIMIT_NOFILE)");
  OpenFilesLimit out{r.rlim_cur, r.rlim_cur, r.rlim_max};
  if (want > r.rlim_max && r.rlim_max != RLIM_INFINITY) {
    rlimit higher{static_cast<rlim_t>(want), static_cast<rlim_t>(want)};
    if (::setrlimit(RLIMIT_NOFILE, &higher) == 0) {
      out.soft = out.hard = want;
      return out;
    }
  }
  if (r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &r) != 0)
      return fail_errno("setrlimit(RLIMIT_NOFILE) to the hard limit " + std::to_string(r.rlim_max));
    out.soft = r.rlim_max;
  }
  return out;
}

}  // namespace dynamos::kernelside
