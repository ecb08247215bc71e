#include "core/remote_threads.hpp"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace dynamos::core::remote {

std::unexpected<Error> exec_refusal(pid_t pid) {
  return fail(Errc::not_permitted,
              "process " + std::to_string(pid) +
                  " executed a new program while dynamos was attached: detached, the new "
                  "program left running and untouched");
}

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
  const bool had_threads = !threads_.empty();
  for (auto& t : threads_) {
    if (t.tid <= 0) continue;
    const pid_t tid = t.tid;
    if (!t.stopped && !stop(t, Clock::now() + std::chrono::milliseconds(500))) {
      if (t.tid > 0) note_gone(t);  // did not stop: exiting (or frozen) — reap it later
      continue;
    }
    ptrace(PTRACE_DETACH, tid, 0, 0);
  }
  threads_.clear();
  if (had_threads) release_exec_leftover(Clock::now() + std::chrono::milliseconds(500));
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
    // Every exec is reported from now on: the identity checked after the seize stays true.
    if (ptrace(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACEEXEC) != 0) {
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

SeizedThreads::Seen SeizedThreads::poll_stop(Thread& t) {
  for (;;) {
    int status = 0;
    pid_t r = waitpid(t.tid, &status, __WALL | WNOHANG);
    if (r < 0) return Seen::gone;
    if (r == 0) return Seen::running;
    if (WIFEXITED(status) || WIFSIGNALED(status)) return Seen::gone;
    if (!WIFSTOPPED(status)) continue;
    const int event = status >> 16;
    const int sig = WSTOPSIG(status);
    if (event == PTRACE_EVENT_EXEC) {
      exec_stop(t);
      return Seen::gone;
    }
    if (event == PTRACE_EVENT_STOP) {
      t.group_stop = sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
      t.stopped = true;
      return Seen::stopped;
    }
    // A signal on its way to the thread: deliver it and keep waiting for our stop.
    ptrace(PTRACE_CONT, t.tid, 0, reinterpret_cast<void*>(static_cast<long>(event ? 0 : sig)));
  }
}

bool SeizedThreads::wait_stop(Thread& t, Clock::time_point deadline) {
  for (;;) {
    const Seen seen = poll_stop(t);
    if (seen != Seen::running) return seen == Seen::stopped;
    if (Clock::now() > deadline) return false;
    pump_events(&t);  // the others' exits and signals, and an exec under way
    if (exec_seen_) return false;
    wait_for_child_event();
  }
}

bool SeizedThreads::traced_by_us() const {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid_) + "/status").c_str(), "re");
  if (!f) return false;
  char line[256];
  long tracer = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "TracerPid:", 10) == 0) tracer = std::atol(line + 10);
  std::fclose(f);
  return tracer == getpid();
}

// A thread that executes a new program takes over the main thread's id and reports its
// exec event under it, possibly once the entries of the old threads are gone (or
// while the exec is still under way when the tool detaches): catch that event and
// detach, so the new program never stays stopped.
bool SeizedThreads::catch_exec() {
  int status = 0;
  if (waitpid(pid_, &status, __WALL | WNOHANG) != pid_ || !WIFSTOPPED(status)) return false;
  if ((status >> 16) == PTRACE_EVENT_EXEC) exec_seen_ = true;
  ptrace(PTRACE_DETACH, pid_, 0, 0);
  return true;
}

void SeizedThreads::release_exec_leftover(Clock::time_point deadline) {
  while (traced_by_us()) {
    reap_gone();
    if (catch_exec()) continue;
    if (Clock::now() > deadline) return;  // the kernel detaches when the tool exits
    wait_for_child_event();
  }
}

bool SeizedThreads::main_thread_known() const {
  return std::any_of(threads_.begin(), threads_.end(),
                     [&](const Thread& t) { return t.tid == pid_; });
}

void SeizedThreads::exec_stop(Thread& t) {
  exec_seen_ = true;
  ptrace(PTRACE_DETACH, t.tid, 0, 0);
  t.stopped = false;
  t.tid = -std::abs(t.tid);
}

bool SeizedThreads::stop(Thread& t, Clock::time_point deadline) {
  if (exec_seen_ || t.tid <= 0) return false;
  if (ptrace(PTRACE_INTERRUPT, t.tid, 0, 0) != 0) {
    note_gone(t);
    return false;
  }
  return wait_stop(t, deadline);
}

void SeizedThreads::note_gone(Thread& t) {
  gone_.push_back(std::abs(t.tid));
  t.tid = -std::abs(t.tid);
  t.stopped = false;
}

// A traced thread that exits stays a zombie until its tracer waits for it, and an exec
// in its process waits for every other thread to be gone: reap them.
void SeizedThreads::reap_gone() {
  std::erase_if(gone_, [](pid_t tid) {
    int status = 0;
    const pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
    return r < 0 || (r > 0 && (WIFEXITED(status) || WIFSIGNALED(status)));
  });
}

void SeizedThreads::pump_events(const Thread* except) {
  reap_gone();
  if (!main_thread_known()) catch_exec();
  for (auto& t : threads_) {
    if (t.stopped || t.tid <= 0 || &t == except) continue;
    int status = 0;
    const pid_t r = waitpid(t.tid, &status, __WALL | WNOHANG);
    if (r < 0 || (r > 0 && (WIFEXITED(status) || WIFSIGNALED(status)))) {
      t.tid = -t.tid;  // gone, and reaped
      continue;
    }
    if (r > 0 && WIFSTOPPED(status)) {
      const int event = status >> 16;
      if (event == PTRACE_EVENT_EXEC) {
        exec_stop(t);
      } else if (event == PTRACE_EVENT_STOP) {
        ptrace(PTRACE_CONT, t.tid, 0, 0);  // a stale interrupt: let it go
      } else {
        ptrace(PTRACE_CONT, t.tid, 0, reinterpret_cast<void*>(static_cast<long>(WSTOPSIG(status))));
      }
    }
  }
}

// The threads known are interrupted first and waited for in one pass (whichever stops
// first is collected first); only then is the task list read, once per stop when no
// thread was created meanwhile. A scan made while every known thread is stopped sees
// every thread there is: a thread being cloned is listed before its parent returns from
// clone, and that parent is stopped. Threads it finds are seized, stopped, and the
// scan repeats.
Result<void> SeizedThreads::stop_all(Clock::time_point deadline) {
  for (;;) {
    if (exec_seen_) return exec_refusal(pid_);
    for (auto& t : threads_)
      if (!t.stopped && t.tid > 0 && ptrace(PTRACE_INTERRUPT, t.tid, 0, 0) != 0)
        note_gone(t);  // exiting
    if (auto r = wait_all(deadline); !r) return r;
    const std::size_t known = threads_.size();
    if (auto r = seize_new(); !r) return r;
    if (threads_.size() == known) break;
  }
  std::erase_if(threads_, [](const Thread& t) { return t.tid <= 0; });
  for (auto& t : threads_) {
    if (ptrace(PTRACE_GETREGS, t.tid, 0, &t.regs) != 0)
      return fail_errno("ptrace(PTRACE_GETREGS) thread " + std::to_string(t.tid));
    t.regs_dirty = false;
  }
  return {};
}

Result<void> SeizedThreads::wait_all(Clock::time_point deadline) {
  const auto started = Clock::now();
  for (;;) {
    Thread* waiting = nullptr;
    for (auto& t : threads_) {
      if (t.stopped || t.tid <= 0) continue;
      const Seen seen = poll_stop(t);
      if (seen == Seen::gone && t.tid > 0) t.tid = -t.tid;
      if (seen == Seen::running && !waiting) waiting = &t;
    }
    if (!main_thread_known()) catch_exec();
    if (exec_seen_) return exec_refusal(pid_);
    if (!waiting) return {};
    if (Clock::now() > deadline) {
      const std::string task =
          "/proc/" + std::to_string(pid_) + "/task/" + std::to_string(waiting->tid);
      if (access(task.c_str(), F_OK) != 0) {
        note_gone(*waiting);  // exited without a report yet
        continue;
      }
      return fail(Errc::timed_out,
                  "thread " + std::to_string(waiting->tid) + " of process " + std::to_string(pid_) +
                      " did not stop in time (frozen or in uninterruptible sleep?)");
    }
    // Sixteen busy threads on two cores take some 0.1 ms to stop, one after the other.
    // Woken by each stop's SIGCHLD, the tool (at real-time priority) would preempt a
    // target thread on its way to its stop each time: for the first millisecond it
    // looks every 50 us instead, then waits for the events.
    if (Clock::now() - started < std::chrono::milliseconds(1))
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    else
      wait_for_child_event();
  }
}

void SeizedThreads::resume_all() {
  for (auto& t : threads_) {
    if (!t.stopped || t.tid <= 0) continue;
    if (t.regs_dirty) ptrace(PTRACE_SETREGS, t.tid, 0, &t.regs);
    t.regs_dirty = false;
    ptrace(t.group_stop ? PTRACE_LISTEN : PTRACE_CONT, t.tid, 0, 0);
    t.stopped = false;
  }
}

Thread* SeizedThreads::pick(pid_t tid) {
  Thread* first = nullptr;
  for (auto& t : threads_) {
    if (t.tid == tid) return &t;
    if (!first && t.tid > 0) first = &t;
  }
  return first;
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
