#include "core/remote_threads.hpp"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

namespace dynamos::core::remote {

SeizedThreads::SeizedThreads(pid_t pid) : pid_(pid) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  if (pthread_sigmask(SIG_BLOCK, &chld, &saved_mask_) == 0)
    sigchld_fd_ = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
}

SeizedThreads::~SeizedThreads() {
  detach_all();
}

void SeizedThreads::detach_all() {
  for (auto& t : threads_) {
    if (!t.stopped && !stop(t, Clock::now() + std::chrono::milliseconds(500))) continue;
    ptrace(PTRACE_DETACH, t.tid, 0, 0);
  }
  threads_.clear();
  if (sigchld_fd_ >= 0) {
    close(sigchld_fd_);
    sigchld_fd_ = -1;
    pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
  }
}

Result<void> SeizedThreads::seize_new() {
  const std::string dir = "/proc/" + std::to_string(pid_) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return fail_errno("list " + dir);
  std::vector<pid_t> tids;
  while (auto* e = readdir(d)) {
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') tids.push_back(std::atoi(e->d_name));
  }
  closedir(d);
  for (pid_t tid : tids) {
    if (std::any_of(threads_.begin(), threads_.end(),
                    [&](const Thread& t) { return t.tid == tid; }))
      continue;
    if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
      if (errno == ESRCH) continue;  // exited meanwhile
      if (errno == EPERM)
        return fail_errno("not permitted to trace process " + std::to_string(pid_) +
                          " (another user's process, or restricted by ptrace_scope)");
      return fail_errno("ptrace(PTRACE_SEIZE) thread " + std::to_string(tid));
    }
    threads_.push_back(Thread{tid});
  }
  return {};
}

void SeizedThreads::wait_for_child_event() {
  if (sigchld_fd_ < 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(20));
    return;
  }
  pollfd p{sigchld_fd_, POLLIN, 0};
  if (poll(&p, 1, 1) > 0) {
    signalfd_siginfo info[16];
    while (::read(sigchld_fd_, info, sizeof info) > 0) {
    }
  }
}

bool SeizedThreads::wait_stop(Thread& t, Clock::time_point deadline) {
  for (;;) {
    int status = 0;
    pid_t r = waitpid(t.tid, &status, __WALL | WNOHANG);
    if (r < 0) return false;  // gone
    if (r == 0) {
      if (Clock::now() > deadline) return false;
      wait_for_child_event();
      continue;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) return false;
    if (!WIFSTOPPED(status)) continue;
    const int event = status >> 16;
    const int sig = WSTOPSIG(status);
    if (event == PTRACE_EVENT_STOP) {
      t.group_stop = sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
      t.stopped = true;
      return true;
    }
    // A signal on its way to the thread: deliver it and keep waiting for our stop.
    ptrace(PTRACE_CONT, t.tid, 0, reinterpret_cast<void*>(static_cast<long>(event ? 0 : sig)));
  }
}

bool SeizedThreads::stop(Thread& t, Clock::time_point deadline) {
  return ptrace(PTRACE_INTERRUPT, t.tid, 0, 0) == 0 && wait_stop(t, deadline);
}

void SeizedThreads::pump_events() {
  for (auto& t : threads_) {
    if (t.stopped) continue;
    int status = 0;
    if (waitpid(t.tid, &status, __WALL | WNOHANG) > 0 && WIFSTOPPED(status)) {
      const int event = status >> 16;
      if (event == PTRACE_EVENT_STOP) {
        ptrace(PTRACE_CONT, t.tid, 0, 0);  // a stale interrupt: let it go
      } else {
        ptrace(PTRACE_CONT, t.tid, 0, reinterpret_cast<void*>(static_cast<long>(WSTOPSIG(status))));
      }
    }
  }
}

Result<void> SeizedThreads::stop_all(Clock::time_point deadline) {
  for (;;) {
    if (auto r = seize_new(); !r) return r;
    bool any_new = false;
    for (auto& t : threads_) {
      if (t.stopped) continue;
      any_new = true;
      if (ptrace(PTRACE_INTERRUPT, t.tid, 0, 0) != 0) t.tid = -t.tid;  // exited
    }
    if (!any_new) break;  // a scan with every thread already stopped: nobody can clone now
    for (auto& t : threads_) {
      if (t.stopped || t.tid < 0) continue;
      if (!wait_stop(t, deadline)) {
        const std::string task = "/proc/" + std::to_string(pid_) + "/task/" + std::to_string(t.tid);
        if (access(task.c_str(), F_OK) != 0) {
          t.tid = -t.tid;
          continue;
        }
        return fail(Errc::timed_out,
                    "thread " + std::to_string(t.tid) + " of process " + std::to_string(pid_) +
                        " did not stop in time (frozen or in uninterruptible sleep?)");
      }
    }
    std::erase_if(threads_, [](const Thread& t) { return t.tid < 0; });
  }
  for (auto& t : threads_) {
    if (ptrace(PTRACE_GETREGS, t.tid, 0, &t.regs) != 0)
      return fail_errno("ptrace(PTRACE_GETREGS) thread " + std::to_string(t.tid));
    t.regs_dirty = false;
  }
  return {};
}

void SeizedThreads::resume_all() {
  for (auto& t : threads_) {
    if (!t.stopped) continue;
    if (t.regs_dirty) ptrace(PTRACE_SETREGS, t.tid, 0, &t.regs);
    t.regs_dirty = false;
    ptrace(t.group_stop ? PTRACE_LISTEN : PTRACE_CONT, t.tid, 0, 0);
    t.stopped = false;
  }
}

Thread* SeizedThreads::pick(pid_t tid) {
  for (auto& t : threads_)
    if (t.tid == tid) return &t;
  return threads_.empty() ? nullptr : &threads_.front();
}

PriorityBoost::PriorityBoost() {
  if (getenv("DYNAMOS_NO_BOOST")) return;
  if (pthread_getschedparam(pthread_self(), &saved_policy_, &saved_param_) != 0) return;
  sched_param p{};
  p.sched_priority = 1;
  boosted_ = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p) == 0;
}

PriorityBoost::PriorityBoost(PriorityBoost&& other) noexcept
    : boosted_(std::exchange(other.boosted_, false)),
      saved_policy_(other.saved_policy_),
      saved_param_(other.saved_param_) {}

PriorityBoost::~PriorityBoost() {
  if (boosted_) pthread_setschedparam(pthread_self(), saved_policy_, &saved_param_);
}

}  // namespace dynamos::core::remote
