#include "base/file.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace dynamos {

namespace {

std::string type_name(mode_t m) {
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  return "not a regular file";
}

std::unexpected<Error> not_regular(const std::string& path, mode_t m) {
  return fail(Errc::invalid_argument, path + " is " + type_name(m) + ", not a regular file");
}

// open(2) of a user-given path, with the type named when O_NOFOLLOW or the open fails
// because of what the path is.
Result<UniqueFd> open_checked(const std::string& path, int flags, mode_t mode) {
  UniqueFd fd{::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode)};
  if (fd.get() >= 0) return fd;
  const int err = errno;
  struct stat st {};
  if (err == ENOENT) return fail(Errc::not_found, "no such file: " + path);
  if ((err == ELOOP || err == EISDIR || err == ENXIO) && ::lstat(path.c_str(), &st) == 0)
    return not_regular(path, st.st_mode);
  if (err == EACCES || err == EPERM)
    return fail_errno(err, "open " + path + " (the caller may not)");
  return fail_errno(err, "open " + path);
}

std::string octal(mode_t m) {
  char b[8];
  std::snprintf(b, sizeof b, "%04o", static_cast<unsigned>(m & 07777));
  return b;
}

// A directory's own checks: real directory, owner, no foreign write permission.
Result<void> check_dir(const std::string& path, const struct stat& st, bool allow_sticky) {
  if (!S_ISDIR(st.st_mode))
    return fail(Errc::not_permitted, path + " is " + type_name(st.st_mode) + ", not a directory");
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return fail(Errc::not_permitted, path + " belongs to uid " + std::to_string(st.st_uid) +
                                         ", not to root or uid " + std::to_string(::geteuid()));
  const bool sticky = allow_sticky && (st.st_mode & S_ISVTX);
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !sticky)
    return fail(Errc::not_permitted,
                path + " is writable by " + (st.st_mode & S_IWOTH ? "others" : "its group") +
                    " (mode " + octal(st.st_mode) + "): open to group or others");
  return {};
}

// "/", "/a", "/a/b" for "/a/b" (repeated and trailing slashes ignored).
std::vector<std::string> prefixes(const std::string& path) {
  std::vector<std::string> out{"/"};
  std::string at;
  for (std::size_t i = 0; i < path.size();) {
    const std::size_t j = path.find('/', i);
    const std::string part = path.substr(i, j == std::string::npos ? std::string::npos : j - i);
    if (!part.empty()) out.push_back(at += "/" + part);
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return out;
}

}  // namespace

Result<std::string> read_whole_file(const std::string& path, std::string_view what) {
  const std::string named = std::string(what) + " " + path;
  std::ifstream in(path);
  if (!in) return fail_errno("open " + named);
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return fail_errno("read " + named);
  return text.str();
}

Result<void> set_close_on_exec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0 || ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
    return fail_errno("close-on-exec on descriptor " + std::to_string(fd));
  return {};
}

Result<void> close_on_exec_from_3() {
  if (::close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) == 0) return {};
  return fail_errno("close-on-exec on descriptors from 3 up");
}

Result<UniqueFd> open_regular_file(const std::string& path) {
  auto fd = open_checked(path, O_RDONLY, 0);
  if (!fd) return fd;
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return fail_errno("stat " + path);
  if (!S_ISREG(st.st_mode)) return not_regular(path, st.st_mode);
  return fd;
}

Result<std::string> read_fd(int fd, const std::string& path, std::size_t limit) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read " + path);
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > limit)
      return fail(Errc::invalid_argument,
                  path + " is larger than " + std::to_string(limit) + " bytes");
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

Result<std::string> read_regular_file(const std::string& path, std::size_t limit) {
  auto fd = open_regular_file(path);
  if (!fd) return std::unexpected(fd.error());
  return read_fd(fd->get(), path, limit);
}

Result<UniqueFd> open_output_file(const std::string& path, mode_t mode) {
  auto fd = open_checked(path, O_WRONLY | O_APPEND | O_CREAT, mode);
  if (!fd) return fd;
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return fail_errno("stat " + path);
  if (!S_ISREG(st.st_mode)) return not_regular(path, st.st_mode);
  const int fl = ::fcntl(fd->get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd->get(), F_SETFL, fl & ~O_NONBLOCK) != 0)
    return fail_errno("fcntl " + path);
  return fd;
}

Result<void> check_dir_chain(const std::string& dir) {
  if (dir.empty() || dir[0] != '/')
    return fail(Errc::invalid_argument, "'" + dir + "' is not an absolute path");
  for (const auto& at : prefixes(dir)) {
    struct stat st {};
    if (::lstat(at.c_str(), &st) != 0) return fail_errno("stat " + at);
    if (auto ok = check_dir(at, st, true); !ok) return ok;
  }
  return {};
}

Result<void> make_private_dir(const std::string& path, mode_t mode) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos || slash + 1 == path.size())
    return fail(Errc::invalid_argument, "'" + path + "' is not an absolute directory path");
  if (auto ok = check_dir_chain(slash == 0 ? "/" : path.substr(0, slash)); !ok) return ok;
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return fail_errno("create " + path);
  UniqueFd fd{::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
  struct stat st {};
  if (fd.get() < 0) {
    if (::lstat(path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      return fail(Errc::not_permitted, path + " is " + type_name(st.st_mode) + ", not a directory");
    return fail_errno("open " + path);
  }
  if (::fstat(fd.get(), &st) != 0) return fail_errno("stat " + path);
  if (st.st_uid != ::geteuid())
    return fail(Errc::not_permitted, path + " belongs to uid " + std::to_string(st.st_uid) +
                                         ", not to uid " + std::to_string(::geteuid()) +
                                         " (someone created it first: remove it)");
  if (auto ok = check_dir(path, st, false); !ok) return ok;
  // Ours and nobody else can write it: bring the permissions to what is asked (mkdir
  // applied the umask; an older version may have used other bits).
  if ((st.st_mode & 07777) != mode && ::fchmod(fd.get(), mode) != 0)
    return fail_errno("chmod " + path);
  return {};
}

Result<std::string> make_root_run_dir(std::string_view name, mode_t mode) {
  if (name.empty() || name.find('/') != std::string_view::npos || name == "." || name == "..")
    return fail(Errc::invalid_argument, "'" + std::string(name) + "' is not a directory name");
  if (::mkdir(kRootRunDir, 0755) != 0 && errno != EEXIST)
    return fail_errno(std::string("create ") + kRootRunDir);
  const std::string dir = std::string(kRootRunDir) + "/" + std::string(name);
  if (auto ok = make_private_dir(dir, mode); !ok) return std::unexpected(ok.error());
  return dir;
}

Result<std::string> make_run_dir(std::string_view name) {
  if (::geteuid() == 0) return make_root_run_dir(name, 0700);
  const std::string leaf = "dynamos-" + std::string(name);
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg == '/') {
    const std::string dir = std::string(xdg) + "/" + leaf;
    if (make_private_dir(dir, 0700)) return dir;
  }
  const std::string dir = "/tmp/" + leaf + "-" + std::to_string(::geteuid());
  if (auto ok = make_private_dir(dir, 0700); !ok) return std::unexpected(ok.error());
  return dir;
}

Result<std::string> make_temp_dir(std::string_view prefix) {
  const char* env = std::getenv("TMPDIR");
  std::string base = env && *env == '/' ? env : "/tmp";
  std::string tmpl = base + "/" + std::string(prefix) + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return fail_errno("create a private directory in " + base);
  if (auto ok = check_dir_chain(base); !ok) {
    ::rmdir(tmpl.c_str());
    return std::unexpected(ok.error());
  }
  return tmpl;
}

Result<void> write_new_file(const std::string& path, std::string_view bytes, mode_t mode) {
  UniqueFd fd{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)};
  if (fd.get() < 0) {
    if (errno == EEXIST) return fail(Errc::busy, "create " + path + ": it exists already");
    return fail_errno("create " + path);
  }
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      auto e = fail_errno("write " + path);
      ::unlink(path.c_str());
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd.get(), mode) != 0) {  // exactly `mode`, whatever the umask
    auto e = fail_errno("chmod " + path);
    ::unlink(path.c_str());
    return e;
  }
  return {};
}

Result<std::string> check_root_trusted_file(const std::string& path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) {
    if (errno == ENOENT) return fail(Errc::not_found, "no such file: " + path);
    return fail_errno("resolve " + path);
  }
  const std::string real = buf;
  auto untrusted = [&](const std::string& at, const std::string& why) {
    return fail(Errc::not_permitted, "refusing to load " + path +
                                         " into a process running as root: " + at + " " + why +
                                         "; only root may be able to change the code root runs");
  };
  const auto chain = prefixes(real);
  for (const auto& at : chain) {
    struct stat st {};
    if (::lstat(at.c_str(), &st) != 0) return fail_errno("stat " + at);
    if (st.st_uid != 0)
      return untrusted(at, "is owned by uid " + std::to_string(st.st_uid) + ", not root");
    // A sticky directory (/tmp) is safe too: nobody else can rename root's entries.
    const bool sticky_dir = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX);
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !sticky_dir)
      return untrusted(at, std::string("is writable by ") +
                               (st.st_mode & S_IWOTH ? "others" : "its group") + " (mode " +
                               octal(st.st_mode) + ")");
    if (at == chain.back() && !S_ISREG(st.st_mode)) return not_regular(path, st.st_mode);
  }
  return real;
}

}  // namespace dynamos
