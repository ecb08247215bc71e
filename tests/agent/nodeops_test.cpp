// Node operations end to end: the `dynamos` CLI, a real gangd and two dynamosd processes
// (virtual nodes n0, n1 with the paging and cycle-stealing extensions loaded), on real
// cgroups. Cycle stealing on a node and on idle nodes driven by gangd, guests started
// as a user the test creates, extensions listed, set and upgraded in place while jobs
// alternate, and bad input refused with clear errors.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "gang/client/control.hpp"
#include "gang/dynamosd/node_agent.hpp"
#include "gang/gangd/coordinator.hpp"
#include "kernelside/fs.hpp"
#include "testkit/reachable.hpp"
#include "tests/gang/test_util.hpp"
#include "tests/kernelside/support.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace dynamos::kernelside;
using namespace std::chrono_literals;
namespace kt = dynamos::kernelside::test;
namespace gt = dynamos::gang::test;

using dynamos::gang::test::Daemon;
using dynamos::gang::test::exit_code;
using dynamos::gang::test::slurp;
using dynamos::gang::test::spawn;

namespace {

const std::string kSpin = "while :; do :; done";

struct Output {
  int code = -1;
  std::string out, err;
};

// Runs `prog args` as `uid` (0: as root) in `cwd`, with extra environment `env`. Another
// user runs `prog` from where it can reach it (testkit/reachable.hpp).
Output run_as(std::string prog, std::vector<std::string> args, uid_t uid, const std::string& cwd,
              std::vector<std::string> env = {}) {
  if (uid != 0) prog = dynamos::testkit::reachable(prog);
  gt::TempDir dir;
  std::string out_path = dir / "out", err_path = dir / "err";
  gid_t gid = 0;
  if (uid != 0)
    if (passwd* pw = ::getpwuid(uid)) gid = pw->pw_gid;
  pid_t pid = ::fork();
  if (pid == 0) {
    gt::redirect_output(out_path, err_path);
    for (auto& e : env)
      ::putenv(e.data());
    if (uid != 0 && (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0))
      ::_exit(125);
    if (::chdir(cwd.c_str()) != 0) ::_exit(124);
    gt::exec_or_exit(prog, args);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out_path), slurp(err_path)};
}

// /proc/PID/<file>, "" when the process is gone: one that exits between the open and
// the read fails the read with ESRCH (an ifstream throws then).
std::string proc_text(pid_t pid, const std::string& file) {
  auto text = dynamos::kernelside::read_text("/proc/" + std::to_string(pid) + "/" + file);
  return text ? *text : std::string();
}

// utime + stime of a process, in clock ticks; -1 when it is gone.
long cpu_ticks(pid_t pid) {
  std::string stat = proc_text(pid, "stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

char proc_state(pid_t pid) {
  std::string stat = proc_text(pid, "stat");
  auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

uid_t proc_uid(pid_t pid) {
  std::string status = proc_text(pid, "status");
  auto at = status.find("\nUid:\t");
  return at == std::string::npos ? static_cast<uid_t>(-1)
                                 : static_cast<uid_t>(std::stoul(status.substr(at + 6)));
}

// The process's cgroup in the hierarchy of `controller` (v1 line "N:ctl,...:/path").
std::string proc_cgroup(pid_t pid, const std::string& controller) {
  std::istringstream in(proc_text(pid, "cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    std::string ctls = "," + line.substr(a + 1, b - a - 1) + ",";
    if (ctls.find("," + controller + ",") != std::string::npos) return line.substr(b + 1);
  }
  return "";
}

// CPU time grows by at least one tick within `timeout` (an idle-priority guest may
// wait while other load takes the CPUs).
bool cpu_grows(pid_t pid, std::chrono::milliseconds timeout) {
  long before = cpu_ticks(pid);
  return kt::wait_until([&] { return cpu_ticks(pid) > before; }, timeout);
}

class ScopedUser {
 public:
  ScopedUser() {
    name_ = "dyno" + std::to_string(::getpid() % 100000);
    (void)std::system(("userdel " + name_ + " >/dev/null 2>&1").c_str());
    ok_ =
        std::system(("useradd -M -s /usr/sbin/nologin " + name_ + " >/dev/null 2>&1").c_str()) == 0;
    if (passwd* pw = ::getpwnam(name_.c_str()); ok_ && pw) {
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
    } else {
      ok_ = false;
    }
  }
  ~ScopedUser() {
    if (ok_) {
      // Whatever still runs as the user goes first: userdel refuses otherwise.
      (void)std::system(("pkill -KILL -u " + std::to_string(uid_) + " >/dev/null 2>&1").c_str());
      (void)std::system(("userdel " + name_ + " >/dev/null 2>&1").c_str());
    }
  }
  bool ok() const { return ok_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }

 private:
  std::string name_;
  bool ok_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

// gangd and one dynamosd per node, as separate processes; all stopped and every
// cgroup removed on destruction.
class LiveCluster {
 public:
  LiveCluster(int nodes, const std::string& quantum) : nodes_(nodes) {
    ::chmod(dir_.path().c_str(), 0755);  // test users reach the control socket
    layout_ = *Layout::detect();
    kt::sweep_stale_groups(layout_);
    parent_ = kt::unique_group_name();
    {
      std::ofstream h(dir_ / "hosts");
      for (int i = 0; i < nodes; ++i)
        h << "n" << i << " slots=1\n";
    }
    gangd_.pid =
        spawn(GANGD_PATH,
              {"--launch", "none", "--hostfile", dir_ / "hosts", "--secret", dir_ / "secret",
               "--create-secret", "--listen", "127.0.0.1:0", "--control-socket",
               dir_ / "gangd.sock", "--journal", "", "--quantum", quantum, "--heartbeat", "200ms"},
              dir_.path(), "gangd");
    std::smatch m;
    std::string err;
    std::regex listening("port ([0-9]+)");
    if (!kt::wait_until(
            [&] {
              err = slurp(dir_ / "gangd.err");
              return std::regex_search(err, m, listening);
            },
            5000ms)) {
      error_ = "gangd did not start: " + err;
      return;
    }
    port_ = m[1];
    agents_.resize(static_cast<std::size_t>(nodes));
    for (int i = 0; i < nodes; ++i)
      agents_[i].pid = start_agent(i, "agent" + std::to_string(i));
    if (!all_up()) error_ = "the agents did not connect: " + slurp(dir_ / "agent0.err");
  }
  // Agent i killed with SIGKILL (no clean-up runs) and started again, its log in
  // agentI-restarted.err; whether it started (gangd may not have seen it go yet).
  bool kill_and_restart_agent(int i) {
    Daemon& a = agents_[static_cast<std::size_t>(i)];
    ::kill(a.pid, SIGKILL);
    ::waitpid(a.pid, nullptr, 0);
    a.pid = start_agent(i, "agent" + std::to_string(i) + "-restarted");
    return a.pid > 0 && all_up();
  }
  ~LiveCluster() {
    for (auto& a : agents_)
      a.stop();
    gangd_.stop();
    if (Group::exists(layout_, parent_))
      if (auto g = Group::open(layout_, parent_)) (void)g->remove_tree(Evict::kill);
  }

  const std::string& error() const { return error_; }
  std::string socket() const { return dir_ / "gangd.sock"; }
  const gt::TempDir& dir() const { return dir_; }
  const Layout& layout() const { return layout_; }
  const std::string& parent() const { return parent_; }
  pid_t gangd_pid() const { return gangd_.pid; }
  pid_t agent_pid(int i) const { return agents_[static_cast<std::size_t>(i)].pid; }
  std::string logs() const {
    std::string s = "gangd: " + slurp(dir_ / "gangd.err");
    for (int i = 0; i < nodes_; ++i)
      s += "\nagent" + std::to_string(i) + ": " +
           slurp(dir_ / ("agent" + std::to_string(i) + ".err"));
    return s;
  }

  // The dynamos CLI against this cluster.
  Output cli(std::vector<std::string> args, uid_t uid = 0, std::string cwd = "/") const {
    return run_as(DYNAMOS_CLI_PATH, std::move(args), uid, cwd, {"DYNAMOS_SOCKET=" + socket()});
  }

  std::string guest_policy(const std::string& node) const {
    auto r = control_request(socket(), proto::ListNodes{});
    if (!r) return "?";
    for (auto& n : std::get<proto::NodeList>(*r).nodes)
      if (n.name == node) return n.guest_policy;
    return "?";
  }
  bool policy_becomes(const std::string& node, const std::string& policy) const {
    return kt::wait_until([&] { return guest_policy(node) == policy; }, 5000ms);
  }

  // A job placed by gangd (no launcher: the test attaches its processes).
  JobId submit(std::uint32_t ranks, std::uint32_t nodes) const {
    auto r = control_request(socket(),
                             proto::JobSubmit{"t", ranks, nodes, "demand", {"/bin/true"}, "/", ""});
    return r ? std::get<proto::JobSubmitted>(*r).job : 0;
  }
  std::string job_node(JobId job) const {
    auto r = control_request(socket(), proto::ListJobs{});
    if (!r) return "";
    for (auto& j : std::get<proto::JobList>(*r).jobs)
      if (j.job == job && !j.nodes.empty()) return j.nodes[0];
    return "";
  }
  std::string job_path(const std::string& node, JobId job) const {
    return parent_ + "/" + node + "/" + NodeAgent::job_group_name(job);
  }
  std::string guests_path(const std::string& node) const {
    return parent_ + "/" + node + "/guests";
  }
  std::string cpu_idle(const std::string& node) const {
    std::string root = layout_.root_of(Controller::cpu);
    return root.empty() ? "" : slurp(root + "/" + guests_path(node) + "/cpu.idle");
  }

 private:
  int nodes_;
  gt::TempDir dir_;
  Layout layout_ = *Layout::detect();
  std::string parent_;
  std::string port_;
  Daemon gangd_;
  std::vector<Daemon> agents_;

  pid_t start_agent(int i, const std::string& tag) {
    return spawn(DYNAMOSD_PATH,
                 {"--node", "n" + std::to_string(i), "--coordinator", "127.0.0.1:" + port_,
                  "--secret", dir_ / "secret", "--cgroup-parent", parent_, "--paging-extension",
                  DYNAMOS_LIB_DIR "/libdynamos_ext_paging.so", "--cyclesteal-extension",
                  DYNAMOS_LIB_DIR "/libdynamos_ext_cyclesteal.so", "--run-dir",
                  dir_.path().string(), "--remove-on-exit"},
                 dir_.path(), tag);
  }
  bool all_up() const {
    return kt::wait_until(
        [&] {
          auto r = control_request(socket(), proto::ListNodes{});
          if (!r) return false;
          auto& list = std::get<proto::NodeList>(*r).nodes;
          return std::all_of(list.begin(), list.end(), [](auto& n) { return n.state == "up"; });
        },
        5000ms);
  }
  std::string error_;
};

pid_t guest_pid(const Output& o) {
  try {
    return static_cast<pid_t>(std::stol(o.out));
  } catch (...) {
    return -1;
  }
}

// A guest the test started: SIGKILLed when the test ends, however it ends.
struct KillOnExit {
  pid_t pid;
  ~KillOnExit() {
    if (pid > 0) ::kill(pid, SIGKILL);
  }
};

#define REQUIRE_CLUSTER(c) ASSERT_TRUE((c).error().empty()) << (c).error() << "\n" << (c).logs()

TEST(NodeOps, BadInputIsRefusedWithClearErrors) {
  KERNELSIDE_REQUIRE_ROOT();
  LiveCluster c(1, "30s");
  REQUIRE_CLUSTER(c);
  auto no = [&](std::vector<std::string> args, const std::string& expect, uid_t uid = 0) {
    auto o = c.cli(args, uid);
    EXPECT_NE(o.code, 0) << args[0] << ": " << o.out;
    EXPECT_NE(o.err.find(expect), std::string::npos) << "expected '" << expect << "' in: " << o.err;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  };
  no({"cyclesteal", "on", "--node", "n0", "--policy", "fast"}, "unknown policy 'fast'");
  no({"cyclesteal", "maybe", "--node", "n0"}, "'on' or 'off'");
  no({"cyclesteal", "on"}, "--node NAME or --idle");
  no({"cyclesteal", "on", "--node", "n9"}, "unknown node 'n9'");
  no({"guest", "run", "--node", "n0", "--", "/no/such/program"}, "/no/such/program");
  no({"guest", "run", "--node", "n0", "--", "no-such-command-here"}, "command not found");
  no({"guest", "run", "--node", "n0", "--", "true"}, "cycle stealing is off on node");
  no({"ext", "set", "paging.no_such_key=1", "--node", "n0"}, "no_such_key");
  no({"ext", "set", "paging.prefetch_budget=lots", "--node", "n0"}, "prefetch_budget");
  no({"ext", "set", "nothing"}, "EXT.KEY=VALUE");
  no({"ext", "upgrade", "paging", "/no/such.so", "--node", "n0"}, "/no/such.so");
  no({"ext", "frob"}, "unknown subcommand 'frob'");

  // Past the CLI's own checks: the agent refuses malformed requests as well.
  auto agent_says = [&](std::string op, std::vector<std::string> args) {
    auto r = control_request(c.socket(), proto::NodeCommand{{"n0"}, op, args, 0});
    if (!r) return "gangd: " + r.error().message();
    auto& res = std::get<proto::NodeCommandResult>(*r).results;
    return res.size() == 1 && !res[0].ok ? res[0].output : std::string("accepted");
  };
  EXPECT_NE(agent_says("cyclesteal", {"on", "fast"}).find("unknown policy 'fast'"),
            std::string::npos);
  EXPECT_NE(agent_says("cyclesteal", {}).find("'on POLICY' or 'off'"), std::string::npos);
  EXPECT_NE(agent_says("ext-upgrade", {"paging"}).find("EXT PATH.so"), std::string::npos);
  EXPECT_NE(agent_says("ext-list", {"xml"}).find("ext-list takes"), std::string::npos);
  EXPECT_NE(agent_says("guest-run", {"/", "/no/such/prog"}).find("/no/such/prog"),
            std::string::npos);
  EXPECT_NE(agent_says("guest-run", {"relative", "/bin/true"}).find("not absolute"),
            std::string::npos);

  // Root's operations refused to a user, before anything reaches a node.
  ScopedUser user;
  ASSERT_TRUE(user.ok()) << "useradd failed";
  no({"cyclesteal", "on", "--node", "n0"}, "only root may cyclesteal", user.uid());
  no({"cyclesteal", "on", "--idle"}, "only root may", user.uid());
  no({"ext", "set", "paging.policy=demand"}, "only root may ext-set", user.uid());
  no({"ext", "upgrade", "paging", DYNAMOS_LIB_DIR "/libdynamos_ext_paging.so"},
     "only root may ext-upgrade", user.uid());
  // Nothing changed on the node: no tunable was set, the policy is the agent's own.
  auto list = c.cli({"ext", "list", "--json"}, user.uid());
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find("\"name\":\"prefetch_budget\",\"type\":\"size\",\"value\":\"1GiB\""),
            std::string::npos)
      << list.out;
  EXPECT_EQ(c.guest_policy("n0"), "unknown");
}

TEST(NodeOps, GuestRunsAsTheCallerInTheGuestClass) {
  KERNELSIDE_REQUIRE_ROOT();
  LiveCluster c(1, "30s");
  REQUIRE_CLUSTER(c);
  ScopedUser user;
  ASSERT_TRUE(user.ok()) << "useradd failed";
  std::string home = c.dir() / "home";
  ASSERT_EQ(::mkdir(home.c_str(), 0755), 0);
  ASSERT_EQ(::chown(home.c_str(), user.uid(), user.gid()), 0);

  auto on = c.cli({"cyclesteal", "on", "--node", "n0"});
  ASSERT_EQ(on.code, 0) << on.err << c.logs();
  EXPECT_EQ(on.out, "n0: linger\n");
  EXPECT_TRUE(c.policy_becomes("n0", "linger")) << c.guest_policy("n0");

  auto run = c.cli({"guest", "run", "--node", "n0", "--", "sh", "-c", kSpin}, user.uid(), home);
  ASSERT_EQ(run.code, 0) << run.err << c.logs();
  pid_t pid = guest_pid(run);
  ASSERT_GT(pid, 0) << run.out;
  KillOnExit kill_guest{pid};

  EXPECT_EQ(proc_uid(pid), user.uid());
  std::string group = "/" + c.guests_path("n0") + "/g" + std::to_string(pid);
  EXPECT_EQ(proc_cgroup(pid, "freezer"), group);
  EXPECT_EQ(proc_cgroup(pid, "memory"), group);
  EXPECT_EQ(proc_cgroup(pid, "cpuset"), "/" + c.guests_path("n0"));  // the node's CPUs
  EXPECT_EQ(c.cpu_idle("n0"), "1\n");
  EXPECT_TRUE(cpu_grows(pid, 10000ms)) << "the guest on an idle node does not run";
  std::string out_file = home + "/dynamos-guest-n0-" + std::to_string(pid) + ".out";
  struct stat st {};
  ASSERT_EQ(::stat(out_file.c_str(), &st), 0) << out_file;
  EXPECT_EQ(st.st_uid, user.uid());

  // The guest ends: dynamosd reaps it (no zombie) and its group goes.
  ::kill(pid, SIGKILL);
  EXPECT_TRUE(kt::wait_until([&] { return proc_state(pid) == '?'; }, 3000ms))
      << "guest " << pid << " left as state " << proc_state(pid);
  EXPECT_TRUE(kt::wait_until(
      [&] { return !Group::exists(c.layout(), c.guests_path("n0") + "/g" + std::to_string(pid)); },
      3000ms));
  // The class lets the guests group go once its last guest has gone (next tick).
  EXPECT_TRUE(kt::wait_until([&] { return c.cpu_idle("n0") == "0\n"; }, 3000ms))
      << c.cpu_idle("n0");

  auto off = c.cli({"cyclesteal", "off", "--node", "n0"});
  EXPECT_EQ(off.code, 0) << off.err;
  EXPECT_TRUE(c.policy_becomes("n0", "off"));
}

// Issue 17, fault: dynamosd killed (SIGKILL, no clean-up) while a guest runs beside a
// host job whose CPU weight cycle stealing raised. The weight was recorded before it was
// raised; the next dynamosd gives the job its own weight back and drops the record.
TEST(NodeOps, HostJobWeightRaisedForAGuestComesBackAfterDynamosdIsKilled) {
  KERNELSIDE_REQUIRE_ROOT();
  LiveCluster c(1, "30s");
  REQUIRE_CLUSTER(c);
  JobId job = c.submit(1, 1);
  ASSERT_NE(job, 0u);
  ASSERT_TRUE(
      kt::wait_until([&] { return Group::exists(c.layout(), c.job_path("n0", job)); }, 5000ms));
  kt::Child rank([] {
    for (;;) {
    }
  });
  auto jg = *Group::open(c.layout(), c.job_path("n0", job), {Controller::cpu});
  ASSERT_OK_VOID(jg.attach(rank.pid()));
  ASSERT_OK_VOID(jg.set_cpu_weight(250));
  auto weight = [&] { return jg.cpu_weight().value_or(0); };

  auto on = c.cli({"cyclesteal", "on", "--node", "n0"});
  ASSERT_EQ(on.code, 0) << on.err << c.logs();
  std::string cwd = c.dir().path().string();
  auto run = c.cli({"guest", "run", "--node", "n0", "--", "/bin/sh", "-c", kSpin}, 0, cwd);
  ASSERT_EQ(run.code, 0) << run.err << c.logs();
  pid_t guest = guest_pid(run);
  ASSERT_GT(guest, 0) << run.out;
  KillOnExit kill_guest{guest};
  ASSERT_TRUE(kt::wait_until([&] { return weight() == 10000; }, 5000ms))
      << "the host job's weight was not raised beside the guest: " << weight() << c.logs();
  const std::string record_prefix = std::to_string(c.agent_pid(0)) + "-";
  auto recorded = [&] {
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator("/run/dynamos/cyclesteal", ec))
      if (e.path().filename().string().starts_with(record_prefix)) return true;
    return false;
  };
  EXPECT_TRUE(recorded()) << "the raise was not recorded";

  ASSERT_TRUE(c.kill_and_restart_agent(0)) << c.logs();
  EXPECT_TRUE(kt::wait_until([&] { return weight() == 250; }, 5000ms))
      << "after the restart the host job's weight is " << weight() << "\n"
      << c.logs() << slurp(c.dir() / "agent0-restarted.err");
  EXPECT_FALSE(recorded()) << "the dead agent's record was not removed once restored";
  // The guest outlived its agent: left running at idle priority, not frozen.
  std::string freezer = c.layout().root_of(Controller::freezer) + "/" + c.guests_path("n0") + "/g" +
                        std::to_string(guest) + "/freezer.state";
  if (proc_state(guest) != '?' && std::filesystem::exists(freezer)) {
    EXPECT_EQ(slurp(freezer), "THAWED\n");
  }
}

// Issue 17: a guest holds none of dynamosd's descriptors (its sockets to gangd and for
// the ranks, its extension files): only its standard input, output and error.
TEST(NodeOps, GuestSeesOnlyTheStandardDescriptors) {
  KERNELSIDE_REQUIRE_ROOT();
  LiveCluster c(1, "30s");
  REQUIRE_CLUSTER(c);
  auto on = c.cli({"cyclesteal", "on", "--node", "n0"});
  ASSERT_EQ(on.code, 0) << on.err << c.logs();
  std::string cwd = c.dir().path().string();
  auto run = c.cli({"guest", "run", "--node", "n0", "--", "/bin/ls", "/proc/self/fd"}, 0, cwd);
  ASSERT_EQ(run.code, 0) << run.err << c.logs();
  pid_t pid = guest_pid(run);
  ASSERT_GT(pid, 0) << run.out;
  std::string out_file = cwd + "/dynamos-guest-n0-" + std::to_string(pid) + ".out";
  EXPECT_TRUE(kt::wait_until([&] { return proc_state(pid) == '?'; }, 5000ms))
      << "the guest did not end";
  // ls's own directory descriptor is the lowest free one: 3.
  EXPECT_EQ(slurp(out_file), "0\n1\n2\n3\n") << "the guest inherited descriptors of dynamosd";
  auto off = c.cli({"cyclesteal", "off", "--node", "n0"});
  EXPECT_EQ(off.code, 0) << off.err;
}

TEST(NodeOps, GangdDrivesIdleNodesAndPausesGuestsWhereAJobRuns) {
  KERNELSIDE_REQUIRE_ROOT();
  LiveCluster c(2, "30s");
  REQUIRE_CLUSTER(c);
  JobId job = c.submit(1, 1);
  ASSERT_NE(job, 0u);
  std::string busy = c.job_node(job);
  ASSERT_FALSE(busy.empty());
  std::string idle = busy == "n0" ? "n1" : "n0";
  ASSERT_TRUE(
      kt::wait_until([&] { return Group::exists(c.layout(), c.job_path(busy, job)); }, 5000ms));
  // The job's rank: a spinning process in its group.
  kt::Child rank([] {
    for (;;) {
    }
  });
  auto jg = *Group::open(c.layout(), c.job_path(busy, job));
  ASSERT_OK_VOID(jg.attach(rank.pid()));

  auto on = c.cli({"cyclesteal", "on", "--idle", "--policy", "linger"});
  ASSERT_EQ(on.code, 0) << on.err;
  EXPECT_TRUE(c.policy_becomes(idle, "linger")) << c.guest_policy(idle) << c.logs();
  EXPECT_TRUE(c.policy_becomes(busy, "pause")) << c.guest_policy(busy) << c.logs();

  std::string cwd = c.dir().path().string();
  auto g_idle = c.cli({"guest", "run", "--node", idle, "--", "/bin/sh", "-c", kSpin}, 0, cwd);
  auto g_busy = c.cli({"guest", "run", "--node", busy, "--", "/bin/sh", "-c", kSpin}, 0, cwd);
  ASSERT_EQ(g_idle.code, 0) << g_idle.err;
  ASSERT_EQ(g_busy.code, 0) << g_busy.err;
  pid_t pi = guest_pid(g_idle), pb = guest_pid(g_busy);
  ASSERT_GT(pi, 0);
  ASSERT_GT(pb, 0);
  struct Kill {
    pid_t a, b;
    ~Kill() {
      ::kill(a, SIGKILL);
      ::kill(b, SIGKILL);
    }
  } kill_guests{pi, pb};

  EXPECT_TRUE(cpu_grows(pi, 10000ms)) << "the guest on the idle node does not run";
  // Under pause, the busy host job freezes the guest (after one sample, ~100 ms). An
  // idle-priority task enters the freezer when it is next scheduled: FREEZING counts,
  // and then its CPU time stops.
  std::string state_file = c.layout().root_of(Controller::freezer) + "/" + c.guests_path(busy) +
                           "/g" + std::to_string(pb) + "/freezer.state";
  EXPECT_TRUE(kt::wait_until([&] { return slurp(state_file).starts_with("FR"); }, 5000ms))
      << "the guest on the job's node was not paused: " << slurp(state_file) << "\n"
      << c.logs();
  EXPECT_TRUE(kt::wait_until(
      [&] {
        long before = cpu_ticks(pb);
        std::this_thread::sleep_for(300ms);
        return cpu_ticks(pb) == before;
      },
      5000ms))
      << "a paused guest keeps running (" << slurp(state_file) << ")";
  EXPECT_TRUE(cpu_grows(pi, 10000ms)) << "the guest on the idle node stopped";

  // Off: every guest released into the node's guests group, running, nothing changed.
  auto off = c.cli({"cyclesteal", "off", "--idle"});
  ASSERT_EQ(off.code, 0) << off.err;
  EXPECT_TRUE(c.policy_becomes(idle, "off"));
  EXPECT_TRUE(c.policy_becomes(busy, "off"));
  for (const auto& node : {idle, busy}) {
    auto guests = *Group::open(c.layout(), c.guests_path(node));
    EXPECT_TRUE(kt::wait_until([&] { return guests.children()->empty(); }, 3000ms))
        << node << ": guest groups left behind";
    EXPECT_FALSE(guests.frozen().value_or(true));
    EXPECT_EQ(c.cpu_idle(node), "0\n") << node;
  }
  EXPECT_EQ(proc_cgroup(pb, "freezer"), "/" + c.guests_path(busy));
  EXPECT_TRUE(cpu_grows(pb, 10000ms)) << "the released guest stays frozen";
  // Guests still end cleanly: reaped by their agents.
  ::kill(pi, SIGKILL);
  ::kill(pb, SIGKILL);
  EXPECT_TRUE(
      kt::wait_until([&] { return proc_state(pi) == '?' && proc_state(pb) == '?'; }, 3000ms));
}

TEST(NodeOps, ExtensionsListSetAndUpgradeWhileJobsAlternate) {
  KERNELSIDE_REQUIRE_ROOT();
  LiveCluster c(2, "200ms");
  REQUIRE_CLUSTER(c);
  auto list = c.cli({"ext", "list", "--json"});
  ASSERT_EQ(list.code, 0) << list.err;
  for (const char* want :
       {"{\"node\":\"n0\",\"name\":\"paging\"", "{\"node\":\"n1\",\"name\":\"cyclesteal\"",
        "\"name\":\"prefetch_budget\",\"type\":\"size\"", "\"default\":\"1GiB\"",
        "\"range\":", "\"help\":", "libdynamos_ext_paging.so"})
    EXPECT_NE(list.out.find(want), std::string::npos) << want << " not in " << list.out;
  auto text = c.cli({"ext", "list", "--node", "n1"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("n1: cyclesteal 1.0.0"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("cyclesteal.policy"), std::string::npos) << text.out;

  // Two jobs on both nodes alternate every quantum; each has a process in its group.
  JobId a = c.submit(2, 2), b = c.submit(2, 2);
  ASSERT_TRUE(a && b);
  std::vector<std::unique_ptr<kt::Child>> ranks;
  for (JobId j : {a, b})
    for (const char* n : {"n0", "n1"}) {
      ASSERT_TRUE(
          kt::wait_until([&] { return Group::exists(c.layout(), c.job_path(n, j)); }, 5000ms));
      ranks.push_back(std::make_unique<kt::Child>([] {
        for (;;)
          ::pause();
      }));
      ASSERT_OK_VOID(Group::open(c.layout(), c.job_path(n, j))->attach(ranks.back()->pid()));
    }
  auto switches = [&] {
    auto r = control_request(c.socket(), proto::NodeCommand{{"n0"}, "switches", {}, 0});
    std::vector<std::string> lines;
    if (!r) return lines;
    std::istringstream in(std::get<proto::NodeCommandResult>(*r).results.at(0).output);
    for (std::string l; std::getline(in, l);)
      lines.push_back(l);
    return lines;
  };
  ASSERT_TRUE(kt::wait_until([&] { return switches().size() >= 3; }, 5000ms)) << c.logs();

  auto set = c.cli({"ext", "set", "paging.prefetch_budget=256M", "--node", "n0"});
  ASSERT_EQ(set.code, 0) << set.err;
  EXPECT_NE(set.out.find("\"value\":\"256MiB\""), std::string::npos) << set.out;

  auto up = c.cli(
      {"ext", "upgrade", "paging", DYNAMOS_LIB_DIR "/libdynamos_ext_paging.so", "--node", "n0"});
  ASSERT_EQ(up.code, 0) << up.err << c.logs();
  EXPECT_NE(up.out.find("\"new_version\":\"1.0.0\""), std::string::npos) << up.out;
  std::size_t at_upgrade = switches().size();
  // Switches go on through the new build: three more rounds, each with paging reports
  // and no error.
  ASSERT_TRUE(kt::wait_until([&] { return switches().size() >= at_upgrade + 3; }, 5000ms))
      << "switches stopped after the upgrade\n"
      << c.logs();
  auto after = switches();
  for (std::size_t i = at_upgrade; i < after.size(); ++i) {
    EXPECT_NE(after[i].find("\"error\":\"\""), std::string::npos) << after[i];
    EXPECT_NE(after[i].find("\"in_job\""), std::string::npos) << after[i];
  }
  auto again = c.cli({"ext", "list", "--node", "n0", "--json"});
  EXPECT_NE(again.out.find("\"builds\":2"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("\"value\":\"256MiB\""), std::string::npos)
      << "the runtime tunable was lost in the upgrade: " << again.out;
  // Every node (no --node): n1 upgrades too; the cycle-stealing extension as well.
  auto all =
      c.cli({"ext", "upgrade", "cyclesteal", DYNAMOS_LIB_DIR "/libdynamos_ext_cyclesteal.so"});
  EXPECT_EQ(all.code, 0) << all.err;
  EXPECT_NE(all.out.find("n0: "), std::string::npos);
  EXPECT_NE(all.out.find("n1: "), std::string::npos);
  // cyclesteal hands its state over (CYCLESTEAL1 text); paging has none to hand over.
  EXPECT_NE(all.out.find("\"state_carried\":true"), std::string::npos) << all.out;
  // A failure names the nodes.
  auto bad = c.cli({"ext", "upgrade", "paging", DYNAMOS_LIB_DIR "/libdynamos_ext_cyclesteal.so"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("failed on n0, n1"), std::string::npos) << bad.err;
}

// ---- Issue 17: node-side files and descriptors (docs/security.md) ----

// What `op` answers on `node` (the output of a refusal too).
proto::NodeResult node_says(const LiveCluster& c, const std::string& node, const std::string& op,
                            std::vector<std::string> args) {
  auto r = control_request(c.socket(), proto::NodeCommand{{node}, op, std::move(args), 0});
  if (!r) return {node, false, "gangd: " + r.error().message()};
  auto& res = std::get<proto::NodeCommandResult>(*r).results;
  return res.size() == 1 ? res[0] : proto::NodeResult{node, false, "no single result"};
}

// The newest switch round the node has carried out (0: none yet).
std::uint64_t last_round(const LiveCluster& c, const std::string& node) {
  auto r = node_says(c, node, "switches", {"1"});
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  return r.ok && j.is_object() ? j.value("round", std::uint64_t{0}) : 0;
}

// Two one-rank jobs that take turns on node n0, each with a spinning process as its rank.
struct TwoJobs {
  JobId a = 0, b = 0;
  std::unique_ptr<kt::Child> ra, rb;
};

void start_two_jobs(const LiveCluster& c, TwoJobs& t) {
  t.a = c.submit(1, 1);
  t.b = c.submit(1, 1);
  ASSERT_NE(t.a, 0u);
  ASSERT_NE(t.b, 0u);
  for (JobId j : {t.a, t.b})
    ASSERT_TRUE(
        kt::wait_until([&] { return Group::exists(c.layout(), c.job_path("n0", j)); }, 5000ms));
  auto spin = [] {
    for (;;) {
    }
  };
  t.ra = std::make_unique<kt::Child>(spin);
  t.rb = std::make_unique<kt::Child>(spin);
  ASSERT_OK_VOID(Group::open(c.layout(), c.job_path("n0", t.a))->attach(t.ra->pid()));
  ASSERT_OK_VOID(Group::open(c.layout(), c.job_path("n0", t.b))->attach(t.rb->pid()));
}

// The node's switch rounds go on (heartbeats and switches are on the session's thread).
void expect_switching(const LiveCluster& c) {
  const auto before = last_round(c, "n0");
  EXPECT_TRUE(kt::wait_until([&] { return last_round(c, "n0") >= before + 2; }, 5000ms))
      << "node n0 stopped switching (round " << before << ")\n"
      << c.logs();
  auto r = control_request(c.socket(), proto::ListNodes{});
  ASSERT_TRUE(r);
  for (auto& n : std::get<proto::NodeList>(*r).nodes)
    EXPECT_EQ(n.state, "up") << n.name;
}

TEST(NodeOps, FifoAsPatchObjectIsRefusedAndTheNodeKeepsSwitching) {
  KERNELSIDE_REQUIRE_ROOT();
  LiveCluster c(1, "300ms");
  REQUIRE_CLUSTER(c);
  TwoJobs t;
  start_two_jobs(c, t);
  const std::string fifo = c.dir() / "patch.so";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0666), 0);
  // Before: root's agent opened the FIFO on its io thread and waited for a writer.
  auto r = node_says(c, "n0", "patch", {std::to_string(t.a), "--replace", "compute=" + fifo});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.output.find(fifo + " is a FIFO, not a regular file"), std::string::npos) << r.output;
  expect_switching(c);
  // The job that was to be patched still takes its turns.
  EXPECT_TRUE(kt::wait_until(
      [&] { return Group::open(c.layout(), c.job_path("n0", t.a))->frozen().value_or(false); },
      3000ms));
  EXPECT_TRUE(kt::wait_until(
      [&] { return !Group::open(c.layout(), c.job_path("n0", t.a))->frozen().value_or(true); },
      3000ms));
}

TEST(NodeOps, FifoAsGuestOutputIsRefusedAndTheNodeKeepsSwitching) {
  KERNELSIDE_REQUIRE_ROOT();
  LiveCluster c(1, "300ms");
  REQUIRE_CLUSTER(c);
  TwoJobs t;
  start_two_jobs(c, t);
  auto on = c.cli({"cyclesteal", "on", "--node", "n0"});
  ASSERT_EQ(on.code, 0) << on.err;
  // The guest's output is CWD/dynamos-guest-n0-PID.out: FIFOs planted for the pids the
  // kernel hands out next.
  const std::string cwd = c.dir() / "trap";
  ASSERT_EQ(::mkdir(cwd.c_str(), 0755), 0);
  long last = std::stol(slurp("/proc/sys/kernel/ns_last_pid"));
  for (long p = last + 1; p <= last + 4000; ++p)
    ::mkfifo((cwd + "/dynamos-guest-n0-" + std::to_string(p) + ".out").c_str(), 0666);
  auto r = node_says(c, "n0", "guest-run", {cwd, "/bin/true"});
  EXPECT_FALSE(r.ok) << "a guest ran with a FIFO (or /dev/null) as its output: " << r.output;
  EXPECT_NE(r.output.find("is a FIFO or a socket, not a regular file"), std::string::npos)
      << r.output;
  expect_switching(c);
  auto off = c.cli({"cyclesteal", "off", "--node", "n0"});
  EXPECT_EQ(off.code, 0) << off.err;
}

// Every descriptor gangd and dynamosd hold is close-on-exec: their children (guests,
// launched jobs, helpers) never inherit the agents' link, the control socket or the
// rank socket's listener.
TEST(NodeOps, DaemonDescriptorsAreAllCloseOnExec) {
  KERNELSIDE_REQUIRE_ROOT();
  LiveCluster c(1, "30s");
  REQUIRE_CLUSTER(c);
  // A control connection held open: gangd has accepted it by the time it answers.
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", c.socket().c_str());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(c.cli({"ext", "list", "--node", "n0"}).code, 0);
  std::this_thread::sleep_for(200ms);
  for (pid_t pid : {c.gangd_pid(), c.agent_pid(0)}) {
    const std::string proc = "/proc/" + std::to_string(pid);
    int checked = 0;
    for (const auto& e : std::filesystem::directory_iterator(proc + "/fd")) {
      const int n = std::stoi(e.path().filename().string());
      if (n <= 2) continue;
      std::string info = slurp(proc + "/fdinfo/" + std::to_string(n));
      auto at = info.find("flags:");
      if (at == std::string::npos) continue;  // closed meanwhile
      const unsigned long flags = std::stoul(info.substr(at + 6), nullptr, 8);
      std::error_code ec;
      EXPECT_NE(flags & O_CLOEXEC, 0u)
          << "descriptor " << n << " of process " << pid << " ("
          << std::filesystem::read_symlink(e.path(), ec).string() << ") is inherited by children";
      ++checked;
    }
    EXPECT_GT(checked, 1) << "process " << pid << " holds no socket?";
  }
  ::close(fd);
}

}  // namespace
