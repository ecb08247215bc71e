#include "kernelside/spawn.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kernelside/limits.hpp"

extern char** environ;

namespace dynamos::kernelside {

namespace {

// How long the parent waits for the child to exec (or fail) once it let it go.
constexpr int kExecTimeoutMs = 10'000;

// The child's steps, in order; a failure names its step (and, for cgroups, which one).
enum class Stage : int {
  parent_died,
  cgroup,
  identity,
  cwd,
  open_in,
  open_out,
  open_err,
  exec,
  at_gate,  // not a failure: everything but the exec done, waiting for the parent's hook
};

struct ChildFailure {
  Stage stage;
  int index;  // cgroups: which one
  int err;
};

// A path with "{pid}" in it, split so that the child can fill in its pid without allocating.
struct PathTemplate {
  std::string head, tail;
  bool has_pid = false;
  std::string buffer;  // head + up to 20 digits + tail + NUL

  explicit PathTemplate(const std::string& path) {
    auto at = path.find("{pid}");
    has_pid = at != std::string::npos;
    head = has_pid ? path.substr(0, at) : path;
    tail = has_pid ? path.substr(at + 5) : "";
    buffer.assign(head.size() + tail.size() + 24, '\0');
  }
  // Async-signal-safe.
  const char* fill(pid_t pid) {
    std::memcpy(buffer.data(), head.data(), head.size());
    std::size_t at = head.size();
    if (has_pid) {
      char digits[24];
      int n = 0;
      for (unsigned long v = static_cast<unsigned long>(pid); v || n == 0; v /= 10)
        digits[n++] = static_cast<char>('0' + v % 10);
      while (n)
        buffer[at++] = digits[--n];
    }
    std::memcpy(buffer.data() + at, tail.data(), tail.size());
    buffer[at + tail.size()] = '\0';
    return buffer.c_str();
  }
};

// Everything the child needs, built before fork.
struct ChildPlan {
  const SpawnOptions& o;
  std::string program;  // argv[0] resolved against PATH
  std::vector<std::string> env;
  std::vector<char*> argv, envp;
  std::vector<std::string> procs;   // <cgroup>/cgroup.procs
  std::vector<PathTemplate> files;  // one per redirect (unused unless Kind::file)
  pid_t parent = ::getpid();
  int err_fd = -1, gate_fd = -1;
  // The soft limit on descriptors the parent started with, when it raised its own.
  std::optional<std::uint64_t> open_files = open_files_to_pass_on();

  explicit ChildPlan(const SpawnOptions& options) : o(options) {
    if (o.env)
      env = *o.env;
    else
      for (char** e = environ; *e; ++e)
        env.emplace_back(*e);
    env.insert(env.end(), o.extra_env.begin(), o.extra_env.end());
    for (auto& e : env)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    for (const auto& a : o.argv)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& g : o.cgroups)
      procs.push_back(g + "/cgroup.procs");
    for (const Redirect* r : {&o.in, &o.out, &o.err})
      files.emplace_back(r->path);
  }
};

// The PATH the program will have: the last PATH= of its environment.
std::string path_of(const std::vector<std::string>& env) {
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : env)
    if (e.starts_with("PATH=")) path = e.substr(5);
  return path;
}

// argv[0] as execve needs it: a name without '/' is looked up in the program's PATH.
Result<std::string> resolve_program(const std::string& name, const std::string& dirs) {
  if (name.empty()) return fail(Errc::invalid_argument, "spawn: empty program name");
  if (name.find('/') != std::string::npos) return name;
  for (std::size_t start = 0; start <= dirs.size();) {
    auto colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    std::string dir = dirs.substr(start, colon - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  return fail_errno(ENOENT, "starting " + name);
}

[[noreturn]] void child_fail(const ChildPlan& p, Stage stage, int index = 0) {
  ChildFailure f{stage, index, errno};
  (void)!::write(p.err_fd, &f, sizeof f);
  ::_exit(127);
}

// Writes the child's pid into each cgroup.procs (before the identity drop: root's right).
void child_join_cgroups(const ChildPlan& p) {
  char digits[24];
  int n = 0;
  for (unsigned long v = static_cast<unsigned long>(::getpid()); v; v /= 10)
    digits[n++] = static_cast<char>('0' + v % 10);
  char text[24];
  for (int i = 0; i < n; ++i)
    text[i] = digits[n - 1 - i];
  for (std::size_t i = 0; i < p.procs.size(); ++i) {
    int fd = ::open(p.procs[i].c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, text, static_cast<std::size_t>(n)) != n)
      child_fail(p, Stage::cgroup, static_cast<int>(i));
    ::close(fd);
  }
}

// The descriptor a redirect names, opened now (-1: inherit, keep what is there).
int child_open(ChildPlan& p, int target) {
  const Redirect& r = target == 0 ? p.o.in : target == 1 ? p.o.out : p.o.err;
  switch (r.kind) {
    case Redirect::Kind::inherit:
      return -1;
    case Redirect::Kind::fd:
      return r.fd;
    case Redirect::Kind::null:
      break;
    case Redirect::Kind::file: {
      int flags = target == 0 ? O_RDONLY : O_WRONLY | O_CREAT | (r.append ? O_APPEND : O_TRUNC);
      // O_NONBLOCK: a FIFO planted there fails instead of blocking the child forever.
      int fd = ::open(p.files[static_cast<std::size_t>(target)].fill(::getpid()),
                      flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644);
      // Output into a FIFO or a socket someone planted is refused, not sent to /dev/null
      // (ENXIO: a FIFO with no reader, or one found by fstat).
      struct stat st {};
      if (fd >= 0 && target != 0 && ::fstat(fd, &st) == 0 &&
          (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
        ::close(fd);
        fd = -1;
        errno = ENXIO;
      }
      if (fd >= 0) {
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        return fd;
      }
      if (!r.or_dev_null || errno == ENXIO)
        child_fail(p, static_cast<Stage>(static_cast<int>(Stage::open_in) + target));
      break;
    }
  }
  int fd = ::open("/dev/null", (target == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
  if (fd < 0) child_fail(p, static_cast<Stage>(static_cast<int>(Stage::open_in) + target));
  return fd;
}

// Puts fd at target (a descriptor already there keeps its place, without close-on-exec).
void child_place(int fd, int target) {
  if (fd < 0) return;
  if (fd == target)
    ::fcntl(fd, F_SETFD, 0);
  else
    ::dup2(fd, target);
}

// Closes every descriptor from 3 up but the error pipe and the gate (both close-on-exec:
// they go at exec).
void child_close_others(int keep_a, int keep_b) {
  auto close_range = [](unsigned lo, unsigned hi) {
    if (lo > hi) return;
    if (::syscall(SYS_close_range, lo, hi, 0) == 0) return;
    rlimit rl{};
    unsigned top = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                       ? static_cast<unsigned>(rl.rlim_cur)
                       : 65536u;
    for (unsigned fd = lo; fd <= hi && fd < top; ++fd)
      ::close(static_cast<int>(fd));
  };
  unsigned from = 3;
  for (int keep : {std::min(keep_a, keep_b), std::max(keep_a, keep_b)}) {
    if (keep < static_cast<int>(from)) continue;  // none (-1)
    close_range(from, static_cast<unsigned>(keep) - 1);
    from = static_cast<unsigned>(keep) + 1;
  }
  close_range(from, ~0U);
}

[[noreturn]] void run_child(ChildPlan& p) {
  const SpawnOptions& o = p.o;
  if (o.die_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != p.parent) child_fail(p, Stage::parent_died);
  }
  if (o.new_session) ::setsid();
  if (o.new_process_group) ::setpgid(0, 0);
  if (o.reset_signal_mask) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
  }
  if (o.reset_scheduler) {
    sched_param sp{};
    ::sched_setscheduler(0, SCHED_OTHER, &sp);
  }
  if (o.nice) ::setpriority(PRIO_PROCESS, 0, *o.nice);
  child_join_cgroups(p);
  // Everything but the exec before the gate: once the parent's hook has put the child in
  // an idle-priority class, it may get little CPU, and exec alone is enough to do there.
  if (o.user) {
    const User& u = *o.user;
    if (::setgroups(u.groups.size(), u.groups.data()) != 0 ||
        ::setresgid(u.gid, u.gid, u.gid) != 0 || ::setresuid(u.uid, u.uid, u.uid) != 0)
      child_fail(p, Stage::identity);
  }
  if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) child_fail(p, Stage::cwd);
  // Opened before any is placed: a redirect from a parent's descriptor 0-2 is read first.
  int in = child_open(p, 0), out = child_open(p, 1);
  int err = o.err_to_out ? (out >= 0 ? out : 1) : child_open(p, 2);
  // Keep the error pipe clear of 0-2 so that the dup2s do not overwrite it.
  child_place(in, 0);
  child_place(out, 1);
  child_place(err, 2);
  child_close_others(p.err_fd, p.gate_fd);
  if (p.open_files) {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > *p.open_files) {
      rl.rlim_cur = static_cast<rlim_t>(*p.open_files);
      ::setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  if (p.gate_fd >= 0) {
    ChildFailure at_gate{Stage::at_gate, 0, 0};
    (void)!::write(p.err_fd, &at_gate, sizeof at_gate);
    char go = 0;
    if (::read(p.gate_fd, &go, 1) != 1) ::_exit(126);  // the parent gave up on us
  }
  ::execve(p.program.c_str(), p.argv.data(), p.envp.data());
  child_fail(p, Stage::exec);
}

std::string describe(const SpawnOptions& o, const ChildFailure& f) {
  switch (f.stage) {
    case Stage::parent_died:
      return "starting " + o.argv[0] + ": the parent ended";
    case Stage::cgroup:
      return "joining cgroup " + o.cgroups.at(static_cast<std::size_t>(f.index));
    case Stage::identity:
      return "switching to uid " + std::to_string(o.user->uid);
    case Stage::cwd:
      return "chdir " + o.cwd;
    case Stage::open_in:
      return "opening " + o.in.path;
    case Stage::open_out:
      return "opening " + o.out.path;
    case Stage::open_err:
      return "opening " + o.err.path;
    case Stage::exec:
    case Stage::at_gate:
      break;
  }
  return "exec " + o.argv[0];
}

// A pipe whose ends close when this goes.
struct Pipe {
  int r = -1, w = -1;
  ~Pipe() {
    close_read();
    close_write();
  }
  Result<void> open() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return fail_errno("spawn: pipe");
    r = fds[0];
    w = fds[1];
    return {};
  }
  void close_read() {
    if (r >= 0) ::close(r);
    r = -1;
  }
  void close_write() {
    if (w >= 0) ::close(w);
    w = -1;
  }
};

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// Lets the child go on; a child that died meanwhile is EPIPE, not a SIGPIPE for us.
bool open_gate(int fd) {
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  char go = 1;
  bool ok = ::write(fd, &go, 1) == 1;
  if (!ok && errno == EPIPE) {
    int saved = errno;
    timespec now{};
    ::sigtimedwait(&pipe_only, nullptr, &now);  // the SIGPIPE it raised, if pending
    errno = saved;
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return ok;
}

// The child's next record on the error pipe within the timeout: a failure, at_gate, or
// nothing (0: EOF, the program runs; -1: nothing within the timeout).
ssize_t next_record(int fd, ChildFailure& f) {
  pollfd pf{fd, POLLIN, 0};
  int ready;
  while ((ready = ::poll(&pf, 1, kExecTimeoutMs)) < 0 && errno == EINTR) {
  }
  ssize_t n = -1;
  if (ready > 0)
    while ((n = ::read(fd, &f, sizeof f)) < 0 && errno == EINTR) {
    }
  return n == 0 || n == static_cast<ssize_t>(sizeof f) ? n : -1;
}

// After fork: the child's steps up to the gate, the hook, the gate, then the child's
// verdict on the error pipe.
Result<pid_t> supervise_start(const SpawnOptions& o, pid_t pid, Pipe& err, Pipe& gate) {
  err.close_write();
  gate.close_read();
  ChildFailure f{};
  ssize_t n = 0;
  auto failed = [&]() -> std::unexpected<Error> {
    kill_and_reap(pid);
    if (n != static_cast<ssize_t>(sizeof f))
      return fail(Errc::timed_out, o.argv[0] + " did not start within " +
                                       std::to_string(kExecTimeoutMs / 1000) + " s");
    return fail_errno(f.err, describe(o, f));
  };
  if (o.before_exec) {
    if (o.reset_scheduler) {
      // It may not have run yet, and a real-time task cannot join a cpu group without
      // real-time runtime: drop it from here too.
      sched_param normal{};
      (void)::sched_setscheduler(pid, SCHED_OTHER, &normal);
    }
    n = next_record(err.r, f);
    if (n != static_cast<ssize_t>(sizeof f) || f.stage != Stage::at_gate) return failed();
    if (auto hook = o.before_exec(pid); !hook) {
      kill_and_reap(pid);
      return std::unexpected(hook.error());
    }
    if (!open_gate(gate.w)) {
      auto e = fail_errno("starting " + o.argv[0]);
      kill_and_reap(pid);
      return e;
    }
    gate.close_write();
    // Only the exec is left; in a class of idle priority beside a busy host it may wait
    // long for a CPU. A child still waiting then has started: the exec follows.
    n = next_record(err.r, f);
    if (n < 0) return pid;
  } else {
    n = next_record(err.r, f);
  }
  // The error pipe closes at exec (close-on-exec): EOF means the program runs.
  if (n == 0) return pid;
  return failed();
}

}  // namespace

Result<User> user_of(uid_t uid) {
  passwd pw{}, *found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found)
    return fail(Errc::not_found, "uid " + std::to_string(uid) + " has no passwd entry");
  User u;
  u.uid = uid;
  u.gid = pw.pw_gid;
  u.name = pw.pw_name;
  u.home = pw.pw_dir;
  int n = 64;
  u.groups.resize(static_cast<std::size_t>(n));
  if (::getgrouplist(pw.pw_name, u.gid, u.groups.data(), &n) < 0) {
    u.groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw.pw_name, u.gid, u.groups.data(), &n) < 0) n = 0;
  }
  u.groups.resize(static_cast<std::size_t>(n));
  return u;
}

Result<pid_t> spawn(const SpawnOptions& o) {
  if (o.argv.empty()) return fail(Errc::invalid_argument, "spawn: empty command");
  uid_t runs_as = o.user ? o.user->uid : ::geteuid();
  if (o.refuse_root && runs_as == 0)
    return fail(Errc::refused, "refusing to run " + o.argv[0] + " as root");
  for (const Redirect* r : {&o.in, &o.out, &o.err})
    if (r->kind == Redirect::Kind::fd && r->fd < 0)
      return fail(Errc::invalid_argument, "spawn: redirect from an invalid descriptor");
  ChildPlan plan(o);
  auto program = resolve_program(o.argv[0], path_of(plan.env));
  if (!program) return std::unexpected(program.error());
  plan.program = *program;
  Pipe err, gate;
  if (auto ok = err.open(); !ok) return std::unexpected(ok.error());
  if (o.before_exec)
    if (auto ok = gate.open(); !ok) return std::unexpected(ok.error());
  // The error pipe and the gate above 2, so that placing 0-2 never lands on them.
  for (int* fd : {&err.w, &gate.r}) {
    if (*fd < 0 || *fd > 2) continue;
    int moved = ::fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return fail_errno("spawn: pipe");
    ::close(*fd);
    *fd = moved;
  }
  plan.err_fd = err.w;
  plan.gate_fd = gate.r;
  pid_t pid = ::fork();
  if (pid < 0) return fail_errno("fork for " + o.argv[0]);
  if (pid == 0) run_child(plan);
  return supervise_start(o, pid, err, gate);
}

Result<pid_t> spawn_program(const std::vector<std::string>& args, const std::string& log,
                            bool truncate_log, bool new_session) {
  SpawnOptions o;
  o.argv = args;
  o.out = Redirect::file(log, /*append=*/!truncate_log);
  o.err_to_out = true;
  o.new_session = new_session;
  return spawn(o);
}

}  // namespace dynamos::kernelside
