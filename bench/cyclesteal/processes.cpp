#include "bench/cyclesteal/processes.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernelside/procfs.hpp"
#include "kernelside/spawn.hpp"

namespace dynamos::bench {

Process::Process(const std::vector<std::string>& argv, std::optional<int> nice_value,
                 const std::function<void(pid_t)>& before_exec) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return;
  kernelside::SpawnOptions o;
  o.argv = argv;
  o.in = kernelside::Redirect::inherit();
  o.out = kernelside::Redirect::from_fd(out[1]);
  o.nice = nice_value;
  o.die_with_parent = true;
  if (before_exec)
    o.before_exec = [&](pid_t pid) -> Result<void> {
      before_exec(pid);
      return {};
    };
  auto pid = kernelside::spawn(o);
  ::close(out[1]);
  out_fd_ = out[0];
  ::fcntl(out_fd_, F_SETFL, O_NONBLOCK);
  if (!pid) {
    // As a program that could not exec: it ended at once with 127.
    reaped_ = true;
    status_ = 127;
    return;
  }
  pid_ = *pid;
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
}

Process::~Process() {
  kill();
  if (out_fd_ >= 0) ::close(out_fd_);
  if (pidfd_ >= 0) ::close(pidfd_);
}

bool Process::exited() {
  if (reaped_) return true;
  if (pid_ <= 0) return true;
  output();  // keep the pipe drained
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return true;
  }
  return false;
}

bool Process::wait_exit(std::chrono::milliseconds timeout) {
  if (exited()) return true;
  // Wake on the exit or on output (so the pipe never fills); without a pidfd, just sleep.
  pollfd fds[2] = {{pidfd_, POLLIN, 0}, {out_fd_, POLLIN, 0}};
  if (pidfd_ >= 0)
    ::poll(fds, 2, static_cast<int>(timeout.count()));
  else
    ::poll(nullptr, 0, static_cast<int>(timeout.count()));
  return exited();
}

void Process::kill() {
  if (pid_ <= 0 || reaped_) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  ::waitpid(pid_, &st, 0);
  reaped_ = true;
  status_ = 128 + SIGKILL;
}

std::string Process::output() {
  char buf[4096];
  while (out_fd_ >= 0) {
    ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) break;
    out_.append(buf, static_cast<size_t>(n));
  }
  return out_;
}

void ThreadAccount::sample(pid_t pid) {
  auto tids = kernelside::list_threads(pid);
  if (!tids) return;
  for (pid_t tid : *tids) {
    auto s = kernelside::read_thread_schedstat(pid, tid);
    if (!s) continue;
    Times t{static_cast<uint64_t>(s->on_cpu.count()), static_cast<uint64_t>(s->waiting.count())};
    auto key = std::make_pair(pid, tid);
    // Cumulative since the thread started: a caller wanting an interval subtracts.
    last_[key] = t;
  }
}

double ThreadAccount::cpu_s() const {
  uint64_t ns = 0;
  for (auto& [k, t] : last_)
    ns += t.cpu;
  return static_cast<double>(ns) * 1e-9;
}

double ThreadAccount::wait_s() const {
  uint64_t ns = 0;
  for (auto& [k, t] : last_)
    ns += t.wait;
  return static_cast<double>(ns) * 1e-9;
}

}  // namespace dynamos::bench
