// Node operations for cycle stealing: `cyclesteal on POLICY | off` drives the
// cycle-stealing extension (extensions/cyclesteal) loaded in dynamosd, and `guest-run`
// starts a guest process inside the node's guest class. See docs/gang.md, "Cycle
// stealing, guests and extensions from the CLI".
//
// The node's job groups are the extension's host jobs (attached as kind JOB, kept in
// step with the agent's jobs by the ticker below); the node's `guests` group is the
// extension's guest class, one child g<PID> per guest. A ticker thread of its own (not
// the agent's io thread) calls the extension's tick(node) every 100 ms, reaps guests
// that ended (no zombies) and detaches them from the extension.
//
// guest-run refuses when cycle stealing is off on the node (a guest would then run at
// the host's priority, unbounded) or when the evict policy does not admit guests now.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stop_token>
#include <thread>

#include "core/extension_host.hpp"
#include "base/json.hpp"
#include "gang/dynamosd/agent_ops.hpp"
#include "gang/node_ops.hpp"

namespace dynamos::gang {

namespace {

constexpr auto kTick = std::chrono::milliseconds(100);

bool known_policy(const std::string& p) {
  return p == "linger" || p == "pause" || p == "evict";
}

// What the child reports through its close-on-exec pipe when it fails before exec.
struct ChildFailure {
  int stage;  // 0 setgroups/setgid/setuid, 1 chdir, 2 exec
  int err;
};

class CycleSteal {
 public:
  explicit CycleSteal(const AgentOpsContext& ctx)
      : agent_(ctx.agent), ext_(ctx.extensions), name_(ctx.cyclesteal_extension), log_(ctx.log) {
    if (!loaded()) return;
    // Cycle stealing starts off on a node unless the extension's config or environment
    // names a policy: guests only where the operator asked for them.
    if (auto t = ext_->get(name_, "policy"); t && t->source == core::ValueSource::default_value)
      if (auto r = ext_->set(name_, "policy", "off"); !r)
        note("cyclesteal: " + r.error().message());
    ticker_ = std::jthread([this](std::stop_token stop) { run_ticker(stop); });
  }
  ~CycleSteal() {
    if (ticker_.joinable()) {
      ticker_.request_stop();
      ticker_.join();
    }
  }

  Result<std::string> cyclesteal(const proto::NodeRequest& r);
  Result<std::string> guest_run(const proto::NodeRequest& r);

 private:
  bool loaded() const { return ext_ && !name_.empty(); }
  Result<void> require_loaded() const {
    if (loaded()) return {};
    return fail(Errc::unsupported, "node " + agent_.node_path() +
                                       " has no cycle-stealing extension loaded (start dynamosd "
                                       "with --cyclesteal-extension)");
  }
  void note(const std::string& line) const {
    if (log_)
      log_(line);
    else
      std::fprintf(stderr, "dynamosd: %s\n", line.c_str());
  }
  std::string policy() const {
    auto t = ext_->get(name_, "policy");
    return t ? t->text : "off";
  }
  void run_ticker(std::stop_token stop);
  void sync_hosts_locked();
  void reap_locked();
  void reset_class_locked();
  Result<pid_t> spawn_locked(const proto::NodeRequest& r, const std::string& program);

  NodeAgent& agent_;
  core::ExtensionHost* ext_;
  std::string name_;
  std::function<void(const std::string&)> log_;
  std::mutex mu_;                  // guests_, hosts_; held across a guest's start and a tick
  std::map<pid_t, uid_t> guests_;  // guest pid (its id in the extension) -> uid
  std::set<JobId> hosts_;          // job groups attached as host jobs
  std::jthread ticker_;            // last: stopped before the rest goes
};

// The node's job groups are the host: attach new ones, detach the ones released.
void CycleSteal::sync_hosts_locked() {
  auto jobs = agent_.jobs();
  std::set<JobId> now(jobs.begin(), jobs.end());
  for (JobId j : now) {
    if (hosts_.contains(j)) continue;
    core::Subject s;
    s.kind = DYNAMOS_SUBJECT_JOB;
    s.id = j;
    s.cgroup = agent_.node_path() + "/" + NodeAgent::job_group_name(j);
    if (auto r = ext_->attach(name_, s); r)
      hosts_.insert(j);
    else
      note("cyclesteal: host job " + std::to_string(j) + ": " + r.error().message());
  }
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    if (now.contains(*it)) {
      ++it;
      continue;
    }
    core::Subject s;
    s.kind = DYNAMOS_SUBJECT_JOB;
    s.id = *it;
    (void)ext_->detach(name_, s);
    it = hosts_.erase(it);
  }
}

// Guests that ended: reaped here (dynamosd is their parent) and let go by the extension.
void CycleSteal::reap_locked() {
  bool released = false;
  for (auto it = guests_.begin(); it != guests_.end();) {
    int status = 0;
    pid_t got = ::waitpid(it->first, &status, WNOHANG);
    if (got == 0) {
      ++it;
      continue;
    }
    core::Subject s;
    s.kind = DYNAMOS_SUBJECT_GUEST;
    s.id = static_cast<std::uint64_t>(it->first);
    (void)ext_->detach(name_, s);
    note("guest " + std::to_string(it->first) + " ended (" +
         (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                            : "signal " + std::to_string(WTERMSIG(status))) +
         ")");
    it = guests_.erase(it);
    released = true;
  }
  if (released && guests_.empty()) reset_class_locked();
}

// The extension adopts the node's guests group as its class and sets cpu.idle there;
// releasing an adopted class leaves that. Undo it, so that nothing stays changed.
void CycleSteal::reset_class_locked() {
  kernelside::Group guests = agent_.guests_group();
  (void)guests.set_cpu_idle(false);
}

void CycleSteal::run_ticker(std::stop_token stop) {
  std::mutex m;
  std::condition_variable_any cv;
  std::string last_error;
  core::Subject node;
  node.kind = DYNAMOS_SUBJECT_NODE;
  node.cgroup = agent_.node_path();
  while (!stop.stop_requested()) {
    {
      std::unique_lock l(m);
      cv.wait_for(l, stop, kTick, [] { return false; });
    }
    if (stop.stop_requested()) break;
    std::lock_guard l(mu_);
    reap_locked();
    sync_hosts_locked();
    if (auto r = ext_->tick(name_, node); !r && r.error().message() != last_error) {
      last_error = r.error().message();  // once per distinct error
      note("cyclesteal tick: " + last_error);
    }
  }
}

Result<std::string> CycleSteal::cyclesteal(const proto::NodeRequest& r) {
  const auto& a = r.args;
  bool on = !a.empty() && a[0] == "on";
  if (!(on && a.size() == 2) && !(a.size() == 1 && a[0] == "off"))
    return fail(Errc::invalid_argument, "cyclesteal takes 'on POLICY' or 'off'");
  if (on && !known_policy(a[1]))
    return fail(Errc::invalid_argument,
                "cyclesteal: unknown policy '" + a[1] + "' (linger, pause or evict)");
  if (auto ok = require_loaded(); !ok) return std::unexpected(ok.error());
  std::lock_guard l(mu_);
  std::string before = policy();
  if (on) sync_hosts_locked();  // the host is known before the first decision
  auto set = ext_->set(name_, "policy", on ? a[1] : "off");
  if (!set) return std::unexpected(with_context(set.error(), "cyclesteal"));
  if (!on) reset_class_locked();
  return "{\"policy\":\"" + set->text + "\",\"was\":\"" + json_escape(before) +
         "\",\"guests\":" + std::to_string(guests_.size()) + "}";
}

Result<pid_t> CycleSteal::spawn_locked(const proto::NodeRequest& r, const std::string& program) {
  const std::string& cwd = r.args[0];
  // Everything the child needs, prepared before fork (the child may not allocate).
  uid_t uid = r.uid;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string home = "/", user = "root";
  if (uid != 0) {
    passwd pw{}, *found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found)
      return fail(Errc::not_found, "guest-run: uid " + std::to_string(uid) +
                                       " has no passwd entry on node " + agent_.node_path());
    gid = pw.pw_gid;
    home = pw.pw_dir;
    user = pw.pw_name;
    int n = 64;
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw.pw_name, gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<std::size_t>(n));
      if (::getgrouplist(pw.pw_name, gid, groups.data(), &n) < 0) n = 0;
    }
    groups.resize(static_cast<std::size_t>(n));
  }
  std::vector<std::string> env = {
      "PATH=/usr/local/bin:/usr/bin:/bin",  "HOME=" + home,   "USER=" + user, "LOGNAME=" + user,
      "DYNAMOS_NODE=" + agent_.node_path(), "DYNAMOS_GUEST=1"};
  std::vector<char*> envp, argv;
  for (auto& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args(r.args.begin() + 1, r.args.end());
  args[0] = program;
  for (auto& s : args)
    argv.push_back(s.data());
  argv.push_back(nullptr);
  std::string node = agent_.node_path().substr(agent_.node_path().rfind('/') + 1);
  std::string out_prefix = cwd + (cwd.ends_with('/') ? "" : "/") + "dynamos-guest-" + node + "-";
  std::string out_path(out_prefix.size() + 32, '\0');

  int go[2], err[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return fail_errno("guest-run: pipe");
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(go[0]);
    ::close(go[1]);
    return fail_errno("guest-run: pipe");
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {go[0], go[1], err[0], err[1]})
      ::close(fd);
    return fail_errno("guest-run: fork");
  }
  if (pid == 0) {
    // The child: async-signal-safe calls only (dynamosd has other threads).
    auto die = [&](int stage) {
      ChildFailure f{stage, errno};
      (void)!::write(err[1], &f, sizeof f);
      ::_exit(127);
    };
    ::setsid();  // not in dynamosd's session: its signals are not the guest's
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    sched_param sp{};
    ::sched_setscheduler(0, SCHED_OTHER, &sp);  // dynamosd may run SCHED_FIFO
    char c;
    if (::read(go[0], &c, 1) != 1) ::_exit(126);  // the agent gave up on us
    if (uid != 0) {
      if (::setgroups(groups.size(), groups.data()) != 0 || ::setresgid(gid, gid, gid) != 0 ||
          ::setresuid(uid, uid, uid) != 0)
        die(0);
    }
    if (::chdir(cwd.c_str()) != 0) die(1);
    // Output: <CWD>/dynamos-guest-<node>-<pid>.out, or /dev/null when CWD is not
    // writable for the user.
    char digits[24];
    int nd = 0;
    for (unsigned long v = static_cast<unsigned long>(::getpid()); v; v /= 10)
      digits[nd++] = static_cast<char>('0' + v % 10);
    std::memcpy(out_path.data(), out_prefix.data(), out_prefix.size());
    std::size_t at = out_prefix.size();
    while (nd)
      out_path[at++] = digits[--nd];
    std::memcpy(out_path.data() + at, ".out", 5);
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
    if (out < 0) out = ::open("/dev/null", O_WRONLY);
    int in = ::open("/dev/null", O_RDONLY);
    if (in >= 0) ::dup2(in, 0);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    ::execve(program.c_str(), argv.data(), envp.data());
    die(2);
  }
  ::close(go[0]);
  ::close(err[1]);
  // The child inherited dynamosd's real-time policy; it drops it itself, but it may not
  // have run yet, and a real-time task cannot join a cpu group without RT runtime.
  sched_param normal{};
  (void)::sched_setscheduler(pid, SCHED_OTHER, &normal);
  auto abandon = [&](Error e) -> std::unexpected<Error> {
    ::close(go[1]);
    ::close(err[0]);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return std::unexpected(std::move(e));
  };
  // Into the node's guests group (its cpuset and memory limit in every hierarchy), then
  // into the guest class: the guest never runs its program outside it.
  kernelside::Group guests = agent_.guests_group();
  if (auto a = guests.attach(pid); !a)
    return abandon(with_context(a.error(), "guest-run: into the guests group"));
  core::Subject s;
  s.kind = DYNAMOS_SUBJECT_GUEST;
  s.id = static_cast<std::uint64_t>(pid);
  s.name = program.substr(program.rfind('/') + 1);
  s.pids = {pid};
  s.attrs.emplace_back("class", agent_.guests_group().path());
  if (auto a = ext_->attach(name_, s); !a)
    return abandon(with_context(a.error(), "guest-run: into the guest class"));
  auto detach = [&] { (void)ext_->detach(name_, s); };
  char c = 1;
  if (::write(go[1], &c, 1) != 1) {
    detach();
    return abandon(Error{Errc::system, errno, "guest-run: starting the guest"});
  }
  ::close(go[1]);
  // The error pipe closes at exec (close-on-exec): EOF means the program runs.
  pollfd p{err[0], POLLIN, 0};
  int ready = ::poll(&p, 1, 5000);
  ChildFailure f{};
  ssize_t n = ready > 0 ? ::read(err[0], &f, sizeof f) : -1;
  ::close(err[0]);
  if (n == 0) return pid;
  detach();
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  if (n != static_cast<ssize_t>(sizeof f))
    return fail(Errc::timed_out, "guest-run: " + program + " did not start within 5 s");
  std::string what = f.stage == 0   ? "switching to uid " + std::to_string(uid)
                     : f.stage == 1 ? "chdir " + cwd
                                    : "exec " + program;
  return fail_errno(f.err, "guest-run: " + what);
}

Result<std::string> CycleSteal::guest_run(const proto::NodeRequest& r) {
  if (r.args.size() < 2)
    return fail(Errc::invalid_argument, "guest-run takes CWD PROGRAM [ARGS...]");
  if (auto ok = require_loaded(); !ok) return std::unexpected(ok.error());
  const std::string& cwd = r.args[0];
  if (!cwd.starts_with('/'))
    return fail(Errc::invalid_argument, "guest-run: the directory '" + cwd + "' is not absolute");
  struct stat st {};
  if (::stat(cwd.c_str(), &st) != 0) return fail_errno("guest-run: directory " + cwd);
  if (!S_ISDIR(st.st_mode))
    return fail(Errc::invalid_argument, "guest-run: " + cwd + " is not a directory");
  std::string program = r.args[1];
  if (program.empty()) return fail(Errc::invalid_argument, "guest-run: empty program name");
  if (!program.starts_with('/')) program = cwd + (cwd.ends_with('/') ? "" : "/") + program;
  if (::stat(program.c_str(), &st) != 0) return fail_errno("guest-run: " + program);
  if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
    return fail(Errc::invalid_argument, "guest-run: " + program + " is not an executable file");
  std::string p = policy();
  if (p == "off")
    return fail(Errc::state, "guest-run: cycle stealing is off on node " + agent_.node_path() +
                                 " (root: dynamos cyclesteal on --node NAME)");
  if (auto status = p == "evict" ? ext_->call(name_, "status") : Result<std::string>();
      status && status->find("\"admit\":false") != std::string::npos)
    return fail(Errc::busy, "guest-run: the host is busy on node " + agent_.node_path() +
                                " and policy " + p + " admits no guest now; try again later");
  std::lock_guard l(mu_);
  auto pid = spawn_locked(r, program);
  if (!pid) return std::unexpected(pid.error());
  guests_[*pid] = r.uid;
  // The child wrote its output file before exec, or fell back to /dev/null.
  std::string node = agent_.node_path().substr(agent_.node_path().rfind('/') + 1);
  std::string out = r.args[0] + (r.args[0].ends_with('/') ? "" : "/") + "dynamos-guest-" + node +
                    "-" + std::to_string(*pid) + ".out";
  struct stat os {};
  if (::lstat(out.c_str(), &os) != 0 || os.st_uid != r.uid) out = "/dev/null";
  note("guest " + std::to_string(*pid) + " (uid " + std::to_string(r.uid) + "): " + program);
  return "{\"pid\":" + std::to_string(*pid) + ",\"policy\":\"" + p + "\",\"cgroup\":\"" +
         json_escape(agent_.guests_group().path() + "/g" + std::to_string(*pid)) +
         "\",\"output\":\"" + json_escape(out) + "\"}";
}

}  // namespace

void add_cyclesteal_ops(AgentOpsContext& ctx) {
  auto cs = std::make_shared<CycleSteal>(ctx);
  ctx.agent.add_op(std::string(ops::cyclesteal),
                   [cs](const proto::NodeRequest& r) { return cs->cyclesteal(r); });
  ctx.agent.add_op(std::string(ops::guest_run),
                   [cs](const proto::NodeRequest& r) { return cs->guest_run(r); });
}

}  // namespace dynamos::gang
