#include "core/remote_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "base/file.hpp"

namespace dynamos::core::remote {

Result<std::string> TargetLock::directory() {
  return make_run_dir("locks");
}

Result<TargetLock> TargetLock::take(pid_t pid) {
  auto dir = directory();  // created and checked
  if (!dir) return std::unexpected(dir.error());
  return lock_in(*dir, pid);
}

Result<TargetLock> TargetLock::take_in(const std::string& dir, pid_t pid) {
  if (auto ok = make_private_dir(dir, 0700); !ok)
    return std::unexpected(with_context(ok.error(), "lock directory"));
  return lock_in(dir, pid);
}

Result<TargetLock> TargetLock::lock_in(const std::string& dir, pid_t pid) {
  const std::string path = dir + "/" + std::to_string(pid) + ".lock";
  const std::string busy = "another dynamos is working on process " + std::to_string(pid);
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)  // left by a holder, or held now: the flock decides
      fd = open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // its holder removed it meanwhile
      return fail_errno("open lock file " + path);
    }
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
      close(fd);
      return fail(Errc::not_permitted, path + " is not a lock file of this user");
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      return fail(Errc::busy, busy);
    }
    // Locked: but a holder may have removed the file between our open and our flock,
    // and a third tool then created a new one. Ours must still be the file at `path`.
    struct stat now {};
    if (stat(path.c_str(), &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev)
      return TargetLock(fd, path);
    close(fd);
  }
  return fail(Errc::busy, busy);
}

TargetLock::TargetLock(TargetLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

TargetLock::~TargetLock() {
  if (fd_ < 0) return;
  unlink(path_.c_str());  // while still holding it, so none pile up
  close(fd_);
}

}  // namespace dynamos::core::remote
