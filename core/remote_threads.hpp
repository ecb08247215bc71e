// The threads of a remote target: seized with ptrace (PTRACE_SEIZE, so they run on),
// stopped with PTRACE_INTERRUPT, resumed with PTRACE_CONT (or PTRACE_LISTEN for a
// thread in a group stop), detached at the end.
//
// The promise "the target is never left stopped" rests on one rule: every stop is
// made under a ResumeGuard, which resumes every stopped thread when its scope ends,
// on every path (returns, errors, exceptions). A guard is released only where another
// owner takes the stopped threads over (a StoppedWorld, a call stub), and says so.
#pragma once

#include <sched.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <utility>
#include <vector>

#include "base/error.hpp"

namespace dynamos::core::remote {

using Clock = std::chrono::steady_clock;

// The refusal once process `pid` was seen executing a new program.
std::unexpected<Error> exec_refusal(pid_t pid);

struct Thread {
  pid_t tid = 0;
  bool stopped = false;
  bool group_stop = false;  // stopped by SIGSTOP & co: resume with PTRACE_LISTEN
  bool regs_dirty = false;  // regs to be written back before resuming
  user_regs_struct regs{};
};

class SeizedThreads {
 public:
  explicit SeizedThreads(pid_t pid);
  ~SeizedThreads();  // detaches
  SeizedThreads(const SeizedThreads&) = delete;
  SeizedThreads& operator=(const SeizedThreads&) = delete;

  // Seizes the threads of the process not seized yet (those it cloned meanwhile).
  Result<void> seize_new();
  // Stops every thread (also those cloned while stopping) and reads their registers.
  // On failure some threads may be stopped: call under a ResumeGuard.
  Result<void> stop_all(Clock::time_point deadline);
  // Stops one thread; false when it exited or did not stop by the deadline.
  bool stop(Thread& t, Clock::time_point deadline);
  // Waits for `t` to report an interrupt (or group) stop; passes on any signal that
  // arrives first. False when the thread exited or the deadline passed.
  bool wait_stop(Thread& t, Clock::time_point deadline);
  // Delivers signals that stopped running threads (but `except`) while the tool was busy
  // elsewhere; reaps threads that exited.
  void pump_events(const Thread* except = nullptr);
  // Whether the process executed a new program since it was seized (PTRACE_O_TRACEEXEC
  // reported it). The thread that did is detached at once, running: the new program,
  // maybe setuid, is never touched. Every later stop fails.
  bool exec_seen() const { return exec_seen_; }
  // Stops and detaches every thread (they run on), forgets them, stops listening
  // for SIGCHLD.
  void detach_all();

  std::vector<Thread>& all() { return threads_; }
  // The thread `tid` (the main thread, usually), else the first one; nullptr if none.
  Thread* pick(pid_t tid);

 private:
  friend class ResumeGuard;
  // Resumes every stopped thread, writing back changed registers. Only ResumeGuard
  // calls it.
  void resume_all();
  // Sleeps until a tracee changes state (or 1 ms passes, in case another thread of
  // this process took the SIGCHLD).
  void wait_for_child_event();
  // A PTRACE_EVENT_EXEC stop of `t`: detach it (it runs the new program) and remember.
  void exec_stop(Thread& t);
  // One look, without waiting, at whether `t` reached its interrupt (or group) stop;
  // passes on any signal that arrived first.
  enum class Seen { running, stopped, gone };
  Seen poll_stop(Thread& t);
  // Waits until every interrupted thread is stopped or gone (marked with a negative tid).
  Result<void> wait_all(Clock::time_point deadline);
  // Exec events reported under the main thread's id when no entry of ours has it.
  bool catch_exec();
  // Marks `t` gone (negative tid) and remembers to reap it; reap_gone waits for those.
  void note_gone(Thread& t);
  void reap_gone();
  bool main_thread_known() const;
  bool traced_by_us() const;
  // After detaching every entry: whatever still reports to us under the process's id
  // (an exec under way) is waited for and detached, until `deadline`.
  void release_exec_leftover(Clock::time_point deadline);

  pid_t pid_;
  std::vector<Thread> threads_;
  int sigchld_fd_ = -1;  // ptrace stops raise SIGCHLD: wake on it instead of polling
  sigset_t saved_mask_{};
  bool exec_seen_ = false;
  std::vector<pid_t> gone_;  // exited threads not yet reaped
};

// Resumes every stopped thread of `threads` when the scope ends.
class ResumeGuard {
 public:
  explicit ResumeGuard(SeizedThreads& threads) : threads_(&threads) {}
  ResumeGuard(ResumeGuard&& other) noexcept : threads_(std::exchange(other.threads_, nullptr)) {}
  ResumeGuard& operator=(ResumeGuard&&) = delete;
  ~ResumeGuard() {
    if (threads_) threads_->resume_all();
  }
  // The stopped threads belong to another owner now, who resumes them.
  void release() { threads_ = nullptr; }

 private:
  SeizedThreads* threads_;
};

// While the target is stopped the tool runs at real-time priority when allowed:
// otherwise each thread it resumes preempts it (wakeup preemption) and the threads
// not yet resumed wait a whole time slice of the busy ones. DYNAMOS_NO_BOOST=1: never.
class PriorityBoost {
 public:
  PriorityBoost();
  PriorityBoost(PriorityBoost&& other) noexcept;
  PriorityBoost& operator=(PriorityBoost&&) = delete;
  ~PriorityBoost();

 private:
  bool boosted_ = false;
  int saved_policy_ = SCHED_OTHER;
  sched_param saved_param_{};
};

}  // namespace dynamos::core::remote
