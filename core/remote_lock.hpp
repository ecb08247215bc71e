// One dynamos at a time per target process: an flock on a per-pid lock file.
//
// The lock files live in a directory only the tool's user can change: for root
// /run/dynamos/locks (root's, 0700, under a root-owned /run/dynamos), for another user
// $XDG_RUNTIME_DIR/dynamos-locks or else /tmp/dynamos-locks-UID (theirs, 0700). A
// directory someone else created first, a symbolic link, or one writable by others is
// refused, naming it: in a shared directory such as /tmp an attacker could plant a link
// where root would create its file (base/file: make_root_run_dir, make_private_dir).
// Files are created O_EXCL|O_NOFOLLOW|O_CLOEXEC.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/error.hpp"

namespace dynamos::core::remote {

class TargetLock {
 public:
  // Takes the lock for process `pid`. Errc::busy when another dynamos holds it,
  // Errc::not_permitted when the lock directory is not safe.
  static Result<TargetLock> take(pid_t pid);
  // The same in directory `dir`, which must be private to the tool's user (created 0700
  // when missing).
  static Result<TargetLock> take_in(const std::string& dir, pid_t pid);
  // The directory the lock files of this user live in (created and checked).
  static Result<std::string> directory();

  TargetLock(TargetLock&& other) noexcept;
  TargetLock& operator=(TargetLock&&) = delete;
  ~TargetLock();  // removes the file while still holding it, then unlocks
  const std::string& path() const { return path_; }

 private:
  // The lock in `dir`, which the caller has checked.
  static Result<TargetLock> lock_in(const std::string& dir, pid_t pid);
  TargetLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

}  // namespace dynamos::core::remote
