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

#include <nlohmann/json.hpp>

#include "core/extension_host.hpp"
#include "extensions/cyclesteal/policy.hpp"
#include "gang/dynamosd/agent_ops.hpp"
#include "gang/node_ops.hpp"
#include "kernelside/spawn.hpp"

namespace dynamos::gang {

namespace {

constexpr auto kTick = std::chrono::milliseconds(100);

// Where a guest's output goes, but for "<pid>.out": <CWD>/dynamos-guest-<node>-.
std::string guest_output_prefix(const std::string& cwd, const std::string& node_path) {
  std::string node = node_path.substr(node_path.rfind('/') + 1);
  return cwd + (cwd.ends_with('/') ? "" : "/") + "dynamos-guest-" + node + "-";
}

// Whether the extension's status reply says it admits guests now.
bool admits(const std::string& status) {
  auto j = nlohmann::json::parse(status, nullptr, false);
  return !j.is_object() || j.value("admit", true);
}

class CycleSteal {
 public:
  explicit CycleSteal(const AgentOpsContext& ctx)
      : agent_(ctx.agent), ext_(ctx.extensions), name_(ctx.cyclesteal_extension), log_(ctx.log) {
    if (!loaded()) return;
    // Cycle stealing starts off on a node unless the extension's config or environment
    // names a policy: guests only where the operator asked for them.
    if (auto t = ext_->get(name_, "policy"); t && t->source == core::ValueSource::default_value)
      if (auto r = ext_->set(name_, "policy", "off"); !r)
        note("cyclesteal: " + r.error().message(), log::Level::warning);
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
  void note(const std::string& line, log::Level level = log::Level::info) const {
    if (log_)
      log_(level, line);
    else
      log::write(level, line);
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
  log::Logger log_;
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
      note("cyclesteal: host job " + std::to_string(j) + ": " + r.error().message(),
           log::Level::warning);
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
      note("cyclesteal tick: " + last_error, log::Level::warning);
    }
  }
}

Result<std::string> CycleSteal::cyclesteal(const proto::NodeRequest& r) {
  const auto& a = r.args;
  bool on = !a.empty() && a[0] == "on";
  if (!(on && a.size() == 2) && !(a.size() == 1 && a[0] == "off"))
    return fail(Errc::invalid_argument, "cyclesteal takes 'on POLICY' or 'off'");
  if (on && !cyclesteal::is_guest_policy(a[1]))
    return fail(Errc::invalid_argument,
                "cyclesteal: unknown policy '" + a[1] + "' (linger, pause or evict)");
  if (auto ok = require_loaded(); !ok) return std::unexpected(ok.error());
  std::lock_guard l(mu_);
  std::string before = policy();
  if (on) sync_hosts_locked();  // the host is known before the first decision
  auto set = ext_->set(name_, "policy", on ? a[1] : "off");
  if (!set) return std::unexpected(with_context(set.error(), "cyclesteal"));
  if (!on) reset_class_locked();
  return dump({{"policy", set->text}, {"was", before}, {"guests", guests_.size()}});
}

// Starts the guest: in the node's guests group (its cpuset and memory limit in every
// hierarchy), then in the extension's guest class, both before exec, so that the guest
// never runs its program outside them; as the caller, in its directory.
Result<pid_t> CycleSteal::spawn_locked(const proto::NodeRequest& r, const std::string& program) {
  const std::string& cwd = r.args[0];
  kernelside::User user;  // root stays root: the caller is root
  if (r.uid != 0) {
    auto u = kernelside::user_of(r.uid);
    if (!u)
      return fail(Errc::not_found, "guest-run: uid " + std::to_string(r.uid) +
                                       " has no passwd entry on node " + agent_.node_path());
    user = *u;
  } else {
    user.name = "root";
    user.home = "/";
  }
  kernelside::SpawnOptions o;
  o.argv.assign(r.args.begin() + 1, r.args.end());
  o.argv[0] = program;
  o.env = std::vector<std::string>{"PATH=/usr/local/bin:/usr/bin:/bin",
                                   "HOME=" + user.home,
                                   "USER=" + user.name,
                                   "LOGNAME=" + user.name,
                                   "DYNAMOS_NODE=" + agent_.node_path(),
                                   "DYNAMOS_GUEST=1"};
  if (r.uid != 0) o.user = user;
  o.cwd = cwd;
  // Output: <CWD>/dynamos-guest-<node>-<pid>.out, or /dev/null when CWD is not writable
  // for the user.
  o.out = kernelside::Redirect::file(guest_output_prefix(cwd, agent_.node_path()) + "{pid}.out",
                                     false, true);
  o.err_to_out = true;
  o.new_session = true;      // not in dynamosd's session: its signals are not the guest's
  o.reset_scheduler = true;  // dynamosd may run SCHED_FIFO
  core::Subject s;
  s.kind = DYNAMOS_SUBJECT_GUEST;
  s.name = program.substr(program.rfind('/') + 1);
  s.attrs.emplace_back("class", agent_.guests_group().path());
  bool attached = false;
  o.before_exec = [&](pid_t pid) -> Result<void> {
    kernelside::Group guests = agent_.guests_group();
    if (auto a = guests.attach(pid); !a)
      return std::unexpected(with_context(a.error(), "guest-run: into the guests group"));
    s.id = static_cast<std::uint64_t>(pid);
    s.pids = {pid};
    if (auto a = ext_->attach(name_, s); !a)
      return std::unexpected(with_context(a.error(), "guest-run: into the guest class"));
    attached = true;
    return {};
  };
  auto pid = kernelside::spawn(o);
  if (pid) return pid;
  if (attached) (void)ext_->detach(name_, s);
  if (pid.error().what.starts_with("guest-run")) return pid;
  if (pid.error().sys_errno == ENXIO)  // kernelside/spawn refuses a FIFO or a socket there
    return fail(Errc::invalid_argument,
                "guest-run: the output file " + guest_output_prefix(cwd, agent_.node_path()) +
                    "PID.out is a FIFO or a socket, not a regular file: refused");
  return std::unexpected(with_context(pid.error(), "guest-run"));
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
      status && !admits(*status))
    return fail(Errc::busy, "guest-run: the host is busy on node " + agent_.node_path() +
                                " and policy " + p + " admits no guest now; try again later");
  std::lock_guard l(mu_);
  auto pid = spawn_locked(r, program);
  if (!pid) return std::unexpected(pid.error());
  guests_[*pid] = r.uid;
  // The child wrote its output file before exec, or fell back to /dev/null.
  std::string out =
      guest_output_prefix(r.args[0], agent_.node_path()) + std::to_string(*pid) + ".out";
  struct stat os {};
  if (::lstat(out.c_str(), &os) != 0 || os.st_uid != r.uid) out = "/dev/null";
  note("guest " + std::to_string(*pid) + " (uid " + std::to_string(r.uid) + "): " + program);
  return dump({{"pid", *pid},
               {"policy", p},
               {"cgroup", agent_.guests_group().path() + "/g" + std::to_string(*pid)},
               {"output", out}});
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
