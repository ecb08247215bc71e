// Files, with errors that name them, and the one place for the checks a root daemon
// makes on paths that other users may control (docs/security.md, "Node-side files and
// descriptors"):
//   - a directory root writes into is a real directory (not a symbolic link), owned by
//     the writer, writable by nobody else, and so is every directory above it (a sticky
//     directory such as /tmp excepted: nobody can rename what others created there);
//   - a file root creates is created new (O_EXCL|O_NOFOLLOW): never through a link an
//     attacker planted, never a file someone else opened first;
//   - a file root reads for a user is opened O_NONBLOCK|O_NOFOLLOW and must be a regular
//     file: a FIFO or a device cannot block the reader, a link cannot redirect it;
//   - code root maps (extensions) lies on a path only root can change.
// Every descriptor opened here is close-on-exec.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "base/error.hpp"

namespace dynamos {

// A descriptor that closes itself: movable, not copyable.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Marks a descriptor close-on-exec: for descriptors opened by libraries that do not
// (Boost.Asio's sockets, acceptors and accepted connections). Every descriptor a daemon
// keeps must be: its children (guests, ranks, helpers) start with only 0, 1 and 2.
Result<void> set_close_on_exec(int fd);
// Marks every descriptor from 3 up close-on-exec: what a daemon inherited from whoever
// started it (a lock, a log, a pipe of a service manager) never reaches its children.
Result<void> close_on_exec_from_3();

// The contents of the file at `path`. `what` names it in errors ("config file":
// "open config file PATH: No such file or directory").
Result<std::string> read_whole_file(const std::string& path, std::string_view what);

// ---- Paths other users may control ----

// Opens an existing regular file for reading: O_RDONLY|O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC,
// then fstat. Errc::not_found "no such file: PATH"; Errc::invalid_argument "PATH is a
// FIFO, not a regular file" (a symbolic link, a directory, a device, a socket likewise).
// The descriptor is left non-blocking (reads of a regular file never block anyway).
Result<UniqueFd> open_regular_file(const std::string& path);
// Reads at most `limit` bytes from an open file (Errc::invalid_argument past it).
Result<std::string> read_fd(int fd, const std::string& path, std::size_t limit);
// open_regular_file + read_fd.
Result<std::string> read_regular_file(const std::string& path, std::size_t limit);

// Opens a file to append output to: a regular file, or a new one created with `mode`.
// O_WRONLY|O_APPEND|O_CREAT|O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC, fstat, then O_NONBLOCK is
// cleared. A FIFO, a device, a directory, a symbolic link are refused, naming the path.
Result<UniqueFd> open_output_file(const std::string& path, mode_t mode);

// A directory only the calling user (its effective uid) can change: created with `mode`
// when missing (its parent must exist), else checked. Refused (Errc::not_permitted,
// naming the offending path and what is wrong with it) when it is a symbolic link or
// not a directory, is owned by another user, has group or other write permission, has
// permissions beyond `mode`, or when a directory above it is not safe (see
// check_dir_chain).
Result<void> make_private_dir(const std::string& path, mode_t mode);
// Root's run directory: /run/dynamos, created 0755 when missing, root's and writable by
// nobody else (nor is any directory above it).
inline constexpr const char* kRootRunDir = "/run/dynamos";
// kRootRunDir/NAME (NAME one path component: "locks", "patches"), created when missing
// with make_private_dir(…, mode) after kRootRunDir itself is created and checked.
// Returns its path. For the caller running as root (another user gets Errc::not_permitted
// naming kRootRunDir, since it is root's).
Result<std::string> make_root_run_dir(std::string_view name, mode_t mode);
// The caller's private run directory NAME (mode 0700): /run/dynamos/NAME for root
// (make_root_run_dir), for another user $XDG_RUNTIME_DIR/dynamos-NAME when that is
// usable, else /tmp/dynamos-NAME-UID (make_private_dir).
Result<std::string> make_run_dir(std::string_view name);
// A fresh private directory PREFIX-XXXXXX (mkdtemp, mode 0700) under $TMPDIR or /tmp.
Result<std::string> make_temp_dir(std::string_view prefix);
// Every directory from / down to `dir` (inclusive) is a real directory owned by root or
// the caller and not writable by group or others unless it is sticky.
Result<void> check_dir_chain(const std::string& dir);

// Creates `path` new (O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, `mode`) and writes `bytes`;
// on any failure nothing is left behind. Errc::busy when the name exists.
Result<void> write_new_file(const std::string& path, std::string_view bytes, mode_t mode);

// Whether code at `path` may be mapped into a process running as root: the file and
// every directory on its canonical path are owned by root and not writable by group or
// others (a sticky directory such as /tmp excepted: no one else can rename root's
// entries there). Returns the canonical path, which is what should be mapped:
// a link in an unsafe directory cannot be swapped after the check. Errc::not_permitted
// naming the offending path ("/tmp is writable by others").
Result<std::string> check_root_trusted_file(const std::string& path);

}  // namespace dynamos
