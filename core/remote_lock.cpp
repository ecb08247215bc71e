#include "core/remote_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace dynamos::core::remote {

namespace {

// `dir` exists (created 0700 when missing) as a real directory of the effective user,
// with no permission for group or others.
Result<void> private_dir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return fail_errno("create " + dir);
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) return fail_errno("stat " + dir);
  if (!S_ISDIR(st.st_mode))
    return fail(Errc::not_permitted, dir +
                                         " is not a directory (a symbolic link?): refusing to "
                                         "keep dynamos lock files there");
  if (st.st_uid != geteuid())
    return fail(Errc::not_permitted, dir + " belongs to uid " + std::to_string(st.st_uid) +
                                         ", not to uid " + std::to_string(geteuid()) +
                                         ": refusing to keep dynamos lock files there");
  if (st.st_mode & 077) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return fail(Errc::not_permitted, dir + " is open to group or others (mode " + mode +
                                         "): refusing to keep dynamos lock files there");
  }
  return {};
}

// `dir` is root's and writable by nobody else (the parent of root's lock directory).
Result<void> root_dir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return fail_errno("create " + dir);
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) return fail_errno("stat " + dir);
  if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
    return fail(Errc::not_permitted,
                dir + " is not a root-owned directory that only root can write");
  return {};
}

}  // namespace

Result<std::string> TargetLock::directory() {
  if (geteuid() == 0) {
    if (auto ok = root_dir("/run/dynamos"); !ok) return std::unexpected(ok.error());
    const std::string dir = "/run/dynamos/locks";
    if (auto ok = private_dir(dir); !ok) return std::unexpected(ok.error());
    return dir;
  }
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg == '/') {
    const std::string dir = std::string(xdg) + "/dynamos-locks";
    if (private_dir(xdg) && private_dir(dir)) return dir;
  }
  const std::string dir = "/tmp/dynamos-locks-" + std::to_string(geteuid());
  if (auto ok = private_dir(dir); !ok) return std::unexpected(ok.error());
  return dir;
}

Result<TargetLock> TargetLock::take(pid_t pid) {
  auto dir = directory();
  if (!dir) return std::unexpected(dir.error());
  return take_in(*dir, pid);
}

Result<TargetLock> TargetLock::take_in(const std::string& dir, pid_t pid) {
  if (auto ok = private_dir(dir); !ok) return std::unexpected(ok.error());
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
