#include "bench/compare/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "kernelside/spawn.hpp"

namespace dynamos::compare {

namespace {

using Clock = std::chrono::steady_clock;

// SIGTERM to the group, a moment to end its children (mpirun ends its ranks), SIGKILL.
int end_group(pid_t pid) {
  int status = 0;
  ::kill(-pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      ::kill(-pid, SIGKILL);
      return status;
    }
    ::usleep(30'000);
  }
  ::kill(-pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return status;
}

}  // namespace

Result<Finished> run_command(const std::vector<std::string>& argv,
                             std::chrono::milliseconds timeout,
                             const std::vector<std::string>& extra_env) {
  if (argv.empty()) return fail(Errc::invalid_argument, "run_command: empty command");
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return fail_errno("pipe");
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return fail_errno("pipe");
  }
  kernelside::SpawnOptions o;
  o.argv = argv;
  o.extra_env = extra_env;
  o.out = kernelside::Redirect::from_fd(out[1]);
  o.err = kernelside::Redirect::from_fd(err[1]);
  o.new_process_group = true;
  auto spawned = kernelside::spawn(o);
  ::close(out[1]);
  ::close(err[1]);
  if (!spawned) {
    ::close(out[0]);
    ::close(err[0]);
    return std::unexpected(spawned.error());
  }
  pid_t pid = *spawned;

  Finished f;
  const auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[8192];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      f.timed_out = true;
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(std::min<long>(left.count(), 1000)) + 1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2 && n > 0; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got <= 0) {
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      (i == 0 ? f.out : f.err).append(buf, static_cast<std::size_t>(got));
    }
  }
  ::close(out[0]);
  ::close(err[0]);
  int status = 0;
  if (f.timed_out) {
    status = end_group(pid);
  } else {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  f.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return f;
}

std::string self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  // A program rebuilt while it runs reads as "PATH (deleted)": the new build is at PATH.
  std::string s = p.string();
  constexpr std::string_view kDeleted = " (deleted)";
  if (s.ends_with(kDeleted)) s.resize(s.size() - kDeleted.size());
  return s;
}

std::string self_dir() {
  return std::filesystem::path(self_exe()).parent_path().string();
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    if (!a.empty() && a.find_first_of(" \t\n'\"$\\;&|<>*?()") == std::string::npos) {
      s += a;
    } else {
      s += '\'';
      for (char c : a)
        s += c == '\'' ? std::string("'\\''") : std::string(1, c);
      s += '\'';
    }
  }
  return s;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace dynamos::compare
