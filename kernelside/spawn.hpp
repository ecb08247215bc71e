// The one process spawner: fork, prepare the child, exec. Every program DynAMOS starts
// (daemons started by the CLI, guests started by dynamosd, the benchmarks' workloads)
// goes through spawn(), so that every child gets the same guarantees:
//
//   - only descriptors 0, 1 and 2 are open in the program (close_range after the dup2s:
//     a daemon's listening socket or a job's pipe never leaks into it);
//   - identity dropped in the order that works (setgroups, setresgid, setresuid), and a
//     uid 0 refused when the caller says root must not run it;
//   - cgroups joined before exec (the child writes its pid to each cgroup.procs), so the
//     program runs there from its first instruction;
//   - exec failure reported to the parent through a close-on-exec pipe: spawn() returns
//     only once the program runs, or fails naming the step and errno.
//
// The child between fork and exec calls async-signal-safe functions only (the parent may
// have threads): everything it needs is prepared before fork.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/file.hpp"

namespace dynamos::kernelside {

// Where one of the child's standard descriptors comes from.
struct Redirect {
  enum class Kind { inherit, null, file, fd };
  Kind kind = Kind::inherit;
  // file: opened by the child after it dropped its identity (so with the user's rights),
  // O_NOFOLLOW | O_CLOEXEC, created 0644. "{pid}" in the path becomes the child's pid.
  std::string path;
  bool append = false;       // file: append rather than truncate
  bool or_dev_null = false;  // file: /dev/null when it cannot be opened (else spawn fails)
  int fd = -1;               // fd: a descriptor of the parent, dup2'd into place

  static Redirect inherit() { return {}; }
  static Redirect null() { return {Kind::null, {}, false, false, -1}; }
  static Redirect file(std::string p, bool append = false, bool or_dev_null = false) {
    return {Kind::file, std::move(p), append, or_dev_null, -1};
  }
  static Redirect from_fd(int fd) { return {Kind::fd, {}, false, false, fd}; }
};

// A user to run as: uid, primary gid and supplementary groups.
struct User {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string name;  // from the passwd entry ("" when made by hand)
  std::string home;
};

// The passwd entry of uid with its group list; fails when uid has none.
Result<User> user_of(uid_t uid);

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] the program: a path, or a name looked up in
                                  // the PATH of its environment
  // The environment: nullopt inherits the parent's; extra_env is added after either.
  std::optional<std::vector<std::string>> env;
  std::vector<std::string> extra_env;
  std::string cwd;           // "" keeps the parent's
  std::optional<User> user;  // nullopt keeps the parent's identity
  bool refuse_root = false;  // fail when the program would run as uid 0
  // cgroup directories (any hierarchy) the child joins before exec.
  std::vector<std::string> cgroups;
  Redirect in = Redirect::null(), out = Redirect::inherit(), err = Redirect::inherit();
  bool err_to_out = false;  // standard error is standard output's descriptor
  bool new_session = false;
  bool new_process_group = false;
  bool reset_signal_mask = true;
  bool reset_scheduler = false;  // SCHED_OTHER in the child (the parent may be real-time)
  bool die_with_parent = false;  // PR_SET_PDEATHSIG SIGKILL
  std::optional<int> nice;
  // Runs in the parent while the child waits at a gate just before exec (identity
  // dropped, directory and descriptors in place, so that little is left to do in a class
  // of idle priority): a hook that moves the child into groups or classes the parent
  // manages. Its failure kills the child and is spawn()'s failure.
  std::function<Result<void>(pid_t)> before_exec;
};

// Starts the program; returns its pid once it has exec'd (with a before_exec hook: or
// once it is past the gate and has not exec'd within 10 s, which a child put in a class of
// idle priority beside a busy host may take). The caller reaps it. The program gets back
// the soft limit on open descriptors the caller started with, when the caller raised its
// own (kernelside/limits.hpp).
Result<pid_t> spawn(const SpawnOptions& options);

// The daemons' shorthand: args[0] a path, standard input from /dev/null, standard output
// and error to `log` (truncated, or appended to), in a session of its own when asked.
Result<pid_t> spawn_program(const std::vector<std::string>& args, const std::string& log,
                            bool truncate_log, bool new_session);

using dynamos::set_close_on_exec;  // base/file.hpp

}  // namespace dynamos::kernelside
