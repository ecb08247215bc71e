#include "bench/cyclesteal/processes.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernelside/procfs.hpp"

namespace dynamos::bench {

Process::Process(const std::vector<std::string>& argv, std::optional<int> nice_value) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(fds[1], 1);
    if (nice_value) ::setpriority(PRIO_PROCESS, 0, *nice_value);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  out_fd_ = fds[0];
  ::fcntl(out_fd_, F_SETFL, O_NONBLOCK);
}

Process::~Process() {
  kill();
  if (out_fd_ >= 0) ::close(out_fd_);
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
