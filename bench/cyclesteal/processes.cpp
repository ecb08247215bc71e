#include "bench/cyclesteal/processes.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernelside/procfs.hpp"

namespace dynamos::bench {

Process::Process(const std::vector<std::string>& argv, std::optional<int> nice_value,
                 const std::function<void(pid_t)>& before_exec) {
  int out[2], gate[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return;
  if (::pipe2(gate, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return;
  }
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(out[1], 1);
    if (nice_value) ::setpriority(PRIO_PROCESS, 0, *nice_value);
    char go = 0;
    if (::read(gate[0], &go, 1) != 1) ::_exit(127);  // the parent gave up on us
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(gate[0]);
  out_fd_ = out[0];
  ::fcntl(out_fd_, F_SETFL, O_NONBLOCK);
  if (pid_ > 0) {
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (before_exec) before_exec(pid_);
    char go = 1;
    if (::write(gate[1], &go, 1) != 1) kill();
  }
  ::close(gate[1]);
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
