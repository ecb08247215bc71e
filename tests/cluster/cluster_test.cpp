// The virtual cluster end to end, as an operator drives it: `dynamos cluster up`, real
// gangd and dynamosd processes, MPI jobs launched with mpirun through dynamos-launch and
// dynamos-rank, `dynamos wait` exit codes, and the faults the gang issue names (an
// agent killed and restarted, the coordinator killed and restarted, an agent that never
// comes back). Every test runs its own cluster (own state directory and cgroup parent)
// and takes it down, also when it fails. Needs root; under CI=true it fails instead of
// skipping without it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "gang/launch_path.hpp"
#include "kernelside/cgroup.hpp"
#include "kernelside/procfs.hpp"
#include "kernelside/spawn.hpp"
#include "testkit/reachable.hpp"
#include "tests/gang/test_util.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace gt = dynamos::gang::test;
namespace ks = dynamos::kernelside;
using dynamos::gang::test::eventually;

namespace {

// The programs, where a second user can reach them too (testkit/reachable.hpp).
const std::string kBin = dynamos::testkit::reachable(DYNAMOS_BIN_DIR);

struct Out {
  int code = -1;
  std::string text;  // stdout and stderr
};

// Runs a shell command line; its output and exit code.
Out sh(const std::string& cmd) {
  Out o;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return o;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    o.text.append(buf, n);
  int status = ::pclose(p);
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> cmdline(pid_t pid) {
  auto raw = slurp("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> args;
  std::size_t start = 0;
  while (start < raw.size()) {
    auto end = raw.find('\0', start);
    args.push_back(raw.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

// Starts a daemon again as it was started, in a session of its own, appending to its log.
pid_t respawn(const std::vector<std::string>& args, const std::string& log) {
  return dynamos::kernelside::spawn_program(args, log, /*truncate_log=*/false, /*new_session=*/true)
      .value_or(-1);
}

bool swap_active() {
  std::ifstream in("/proc/swaps");
  std::string line;
  int lines = 0;
  while (std::getline(in, line))
    ++lines;
  return lines > 1;
}

// One virtual cluster of the test's own; down on destruction whatever happened.
class Cluster {
 public:
  Cluster(int nodes, const std::string& extra) {
    parent_ = "dynamos-test-cluster-" + std::to_string(::getpid()) + "-" + std::to_string(++seq_);
    swap_before_ = swap_active();
    // 2 slots a node whatever its CPUs (the default): the tests place 2 ranks a node.
    auto o = sh(kBin + "/dynamos cluster up --nodes " + std::to_string(nodes) + " --state-dir " +
                dir_.path().string() + " --cgroup-parent " + parent_ + " --slots 2 " + extra);
    up_ = o.code == 0;
    up_text_ = o.text;
  }
  ~Cluster() {
    if (!down_) (void)down();
  }
  bool up() const { return up_; }
  const std::string& up_text() const { return up_text_; }
  std::string dir() const { return dir_.path().string(); }
  std::string socket() const { return dir() + "/gangd.sock"; }
  const std::string& parent() const { return parent_; }
  // A dynamos command against this cluster.
  Out cli(const std::string& args) const {
    return sh("cd " + dir() + " && DYNAMOS_SOCKET=" + socket() + " " + kBin + "/dynamos " + args);
  }
  std::string conf(const std::string& key) const {
    std::istringstream in(slurp(dir() + "/cluster.conf"));
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(key + " = ", 0) == 0) return line.substr(key.size() + 3);
    return "";
  }
  void set_conf(const std::string& key, const std::string& value) {
    std::istringstream in(slurp(dir() + "/cluster.conf"));
    std::string line, out;
    while (std::getline(in, line))
      out += (line.rfind(key + " = ", 0) == 0 ? key + " = " + value : line) + "\n";
    std::ofstream(dir() + "/cluster.conf", std::ios::trunc) << out;
  }
  pid_t agent_pid(int index) const {
    auto pids = conf("agent_pids");
    std::istringstream in(pids);
    std::string p;
    for (int i = 0; std::getline(in, p, ','); ++i)
      if (i == index) return std::atoi(p.c_str());
    return -1;
  }
  Out down() {
    down_ = true;
    return sh(kBin + "/dynamos cluster down --state-dir " + dir());
  }
  bool swap_before() const { return swap_before_; }

  // The job's group on a node exists, and whether it is frozen.
  std::optional<bool> frozen(const std::string& node, int job) const {
    auto layout = ks::Layout::detect();
    if (!layout) return std::nullopt;
    auto path = parent_ + "/" + node + "/job" + std::to_string(job);
    if (!ks::Group::exists(*layout, path)) return std::nullopt;
    auto g = ks::Group::open(*layout, path);
    if (!g) return std::nullopt;
    auto f = g->frozen();
    if (!f) return std::nullopt;
    return *f;
  }

 private:
  static inline int seq_ = 0;
  gt::TempDir dir_;
  std::string parent_;
  bool up_ = false, down_ = false, swap_before_ = false;
  std::string up_text_;
};

int job_id(const Out& submit) {
  std::smatch m;
  static const std::regex re("job ([0-9]+)\\s*$");
  if (!std::regex_search(submit.text, m, re)) return -1;
  return std::stoi(m[1]);
}

// The state of every job in `dynamos jobs --json`, by id.
std::map<int, std::string> job_states(const Cluster& c) {
  std::map<int, std::string> states;
  auto o = c.cli("jobs --json");
  static const std::regex re("\\{\"id\":([0-9]+),[^}]*?\"state\":\"([a-z]+)\"");
  for (std::sregex_iterator it(o.text.begin(), o.text.end(), re), end; it != end; ++it)
    states[std::stoi((*it)[1])] = (*it)[2];
  return states;
}

void expect_clean_after_down(Cluster& c) {
  auto start = std::chrono::steady_clock::now();
  auto o = c.down();
  EXPECT_EQ(o.code, 0) << o.text;
  // The daemons leave at SIGTERM (down waits 10 s for agents, 5 s for gangd before
  // SIGKILL): a daemon that stays, like one whose metrics listener kept it running,
  // is not what systemd's stop expects either.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "cluster down had to kill daemons";
  auto layout = ks::Layout::detect();
  ASSERT_TRUE(layout.has_value());
  EXPECT_FALSE(ks::Group::exists(*layout, c.parent())) << "cgroup " << c.parent() << " left";
  EXPECT_FALSE(fs::exists(c.dir() + "/cluster.conf"));
  EXPECT_FALSE(fs::exists(c.socket()));
  EXPECT_EQ(swap_active(), c.swap_before()) << "swap not restored";
  std::string left;
  for (const auto& e : fs::directory_iterator("/proc")) {
    auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::atoi(name.c_str());
    if (pid == ::getpid()) continue;
    std::string line;
    for (const auto& a : cmdline(pid))
      line += a + " ";
    if (line.find(c.dir()) != std::string::npos) left += name + ": " + line + "\n";
  }
  EXPECT_TRUE(left.empty()) << "processes of the cluster left:\n" << left;
}

const std::string kStencil = kBin + "/dynamos-mpi-stencil";

// The scheduling class (SCHED_*) of each thread of pid, by thread name.
std::map<std::string, unsigned> thread_policies(pid_t pid) {
  std::map<std::string, unsigned> out;
  std::error_code ec;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec))
    if (auto st = ks::read_thread_stat(pid, std::atoi(t.path().filename().c_str())))
      out[st->comm] = st->policy;
  return out;
}

}  // namespace

TEST(Cluster, GangJobsAlternateAndReportTheirExitCodes) {
  GANG_REQUIRE_ROOT();
  Cluster c(2, "--mem-per-node 1G --quantum 300ms");
  ASSERT_TRUE(c.up()) << c.up_text();

  // The agent switches at SCHED_FIFO; its background paging thread must not inherit that
  // (real-time write-out would take the CPU from the ranks it pages for).
  auto policies = thread_policies(c.agent_pid(0));
  ASSERT_TRUE(policies.count("dynamos-pager")) << "no background paging thread in dynamosd";
  EXPECT_EQ(policies["dynamos-pager"], unsigned(SCHED_OTHER));
  EXPECT_EQ(policies["dynamosd"], unsigned(SCHED_FIFO));

  // Two 4-rank jobs fill both nodes' 2 slots: they must take turns.
  auto a = c.cli("submit --ranks 4 --name alpha -- " + kStencil + " -q --mem 32M --seconds 2");
  auto b =
      c.cli("submit --ranks 4 --name beta -- " + kBin + "/dynamos-mpi-cg -q --mem 32M --seconds 2");
  ASSERT_EQ(a.code, 0) << a.text;
  ASSERT_EQ(b.code, 0) << b.text;
  int ja = job_id(a), jb = job_id(b);
  ASSERT_GT(ja, 0) << a.text;
  ASSERT_GT(jb, 0) << b.text;

  // While both run, gangd never runs them together, and each node's groups follow.
  std::set<std::string> seen_a, seen_b;
  int both_running = 0, mismatched_nodes = 0, samples = 0;
  for (auto until = std::chrono::steady_clock::now() + 3s; std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(50ms)) {
    auto s = job_states(c);
    if (!s.count(ja) || !s.count(jb) || s[ja] == "done" || s[jb] == "done") break;
    seen_a.insert(s[ja]);
    seen_b.insert(s[jb]);
    both_running += s[ja] == "running" && s[jb] == "running";
    auto f1 = c.frozen("n1", ja), f2 = c.frozen("n2", ja);
    if (f1 && f2 && *f1 != *f2) ++mismatched_nodes;  // a switch in flight
    ++samples;
  }
  EXPECT_EQ(both_running, 0);
  EXPECT_TRUE(seen_a.count("running") && seen_a.count("frozen")) << "alpha never alternated";
  EXPECT_TRUE(seen_b.count("running") && seen_b.count("frozen")) << "beta never alternated";
  EXPECT_LE(mismatched_nodes, std::max(1, samples / 10)) << "a gang's nodes disagreed too often";

  auto wa = c.cli("wait " + std::to_string(ja) + " --timeout 60");
  auto wb = c.cli("wait " + std::to_string(jb) + " --timeout 60");
  EXPECT_EQ(wa.code, 0) << wa.text;
  EXPECT_EQ(wb.code, 0) << wb.text;
  auto out_a = slurp(c.dir() + "/dynamos-job" + std::to_string(ja) + ".out");
  EXPECT_NE(out_a.find("\"verified\":true"), std::string::npos) << out_a;
  auto jobs = c.cli("jobs --json");
  EXPECT_NE(jobs.text.find("\"state\":\"done\""), std::string::npos) << jobs.text;
  // Every round reached both nodes, with a small skew.
  auto rounds = slurp(c.dir() + "/rounds.jsonl");
  EXPECT_NE(rounds.find("\"switched\":2"), std::string::npos) << rounds;
  EXPECT_EQ(rounds.find("\"failed\":1"), std::string::npos) << rounds;

  // A wrong result is an exit code, not a fast run.
  auto bad =
      c.cli("submit --ranks 2 -- " + kStencil + " -q --mem 16M --iterations 4 --inject-error");
  ASSERT_EQ(bad.code, 0) << bad.text;
  auto wbad = c.cli("wait " + std::to_string(job_id(bad)) + " --timeout 60");
  EXPECT_EQ(wbad.code, 1) << wbad.text;

  // Bad input: clear errors, nothing started.
  auto missing = c.cli("submit --ranks 2 -- /no/such/program");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.text.find("does not exist"), std::string::npos) << missing.text;
  auto policy = c.cli("submit --paging sometimes -- " + kStencil);
  EXPECT_NE(policy.code, 0);
  EXPECT_NE(policy.text.find("unknown paging policy"), std::string::npos) << policy.text;
  auto unknown = c.cli("wait 999");
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.text.find("no job 999"), std::string::npos) << unknown.text;

  // Cancel: the ranks go, wait reports it.
  auto longjob = c.cli("submit --ranks 2 -- " + kStencil + " -q --mem 16M --seconds 120");
  int jl = job_id(longjob);
  ASSERT_GT(jl, 0) << longjob.text;
  std::this_thread::sleep_for(500ms);
  auto cancel = c.cli("cancel " + std::to_string(jl));
  EXPECT_EQ(cancel.code, 0) << cancel.text;
  auto wl = c.cli("wait " + std::to_string(jl) + " --timeout 30");
  EXPECT_EQ(wl.code, 143) << wl.text;
  // Its agents remove its groups once they have killed its ranks.
  bool gone = eventually(
      10s, [&] { return !c.frozen("n1", jl).has_value() && !c.frozen("n2", jl).has_value(); });
  EXPECT_TRUE(gone) << "a cancelled job's group is left";

  expect_clean_after_down(c);
}

// Issue 17: a launched rank holds only its standard descriptors, none of the daemons'
// (the agent's link to gangd, the rank socket's listener, gangd's control socket).
TEST(Cluster, LaunchedRanksSeeOnlyTheStandardDescriptors) {
  GANG_REQUIRE_ROOT();
  Cluster c(1, "--mem-per-node 1G --quantum 300ms");
  ASSERT_TRUE(c.up()) << c.up_text();
  auto job = c.cli("submit --ranks 2 --name fds -- /bin/ls /proc/self/fd");
  ASSERT_EQ(job.code, 0) << job.text;
  const int id = job_id(job);
  auto w = c.cli("wait " + std::to_string(id) + " --timeout 60");
  EXPECT_EQ(w.code, 0) << w.text;
  // ls prints in columns on Open MPI's pseudo-terminal: words, not lines.
  std::istringstream out(slurp(c.dir() + "/dynamos-job" + std::to_string(id) + ".out"));
  int fds = 0;
  for (std::string fd; out >> fd; ++fds)  // 3: ls's own directory
    EXPECT_TRUE(fd == "0" || fd == "1" || fd == "2" || fd == "3")
        << "a rank inherited descriptor " << fd;
  EXPECT_EQ(fds, 8) << "two ranks, four descriptors each";
  expect_clean_after_down(c);
}

TEST(Cluster, AnAgentKilledAndRestartedAdoptsItsJobs) {
  GANG_REQUIRE_ROOT();
  Cluster c(2, "--mem-per-node 1G --quantum 400ms");
  ASSERT_TRUE(c.up()) << c.up_text();
  auto a = c.cli("submit --ranks 4 -- " + kStencil + " -q --mem 32M --seconds 4");
  auto b = c.cli("submit --ranks 4 -- " + kStencil + " -q --mem 32M --seconds 4");
  int ja = job_id(a), jb = job_id(b);
  ASSERT_GT(ja, 0) << a.text;
  ASSERT_GT(jb, 0) << b.text;
  std::this_thread::sleep_for(1s);

  pid_t agent = c.agent_pid(0);
  auto args = cmdline(agent);
  ASSERT_FALSE(args.empty());
  ASSERT_EQ(::kill(agent, SIGKILL), 0);
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  pid_t again = respawn(args, c.dir() + "/agent-n1.log");
  ASSERT_GT(again, 0);
  c.set_conf("agent_pids", std::to_string(again) + "," + std::to_string(c.agent_pid(1)));
  // Back in: it adopted both job groups and follows gangd's rounds again; no job stays
  // frozen longer than the restart plus one quantum.
  bool followed = eventually(
      t0 + 5s,
      [&] {
        auto s = job_states(c);
        auto fa = c.frozen("n1", ja), fb = c.frozen("n1", jb);
        return fa && fb && s[ja] == "running" && !*fa && s[jb] == "frozen" && *fb;
      },
      20ms);
  EXPECT_TRUE(followed) << slurp(c.dir() + "/agent-n1.log");
  EXPECT_NE(slurp(c.dir() + "/agent-n1.log").find("2 jobs adopted"), std::string::npos)
      << slurp(c.dir() + "/agent-n1.log");
  EXPECT_EQ(c.cli("wait " + std::to_string(ja) + " --timeout 60").code, 0);
  EXPECT_EQ(c.cli("wait " + std::to_string(jb) + " --timeout 60").code, 0);
  expect_clean_after_down(c);
}

TEST(Cluster, CoordinatorLostAgentsThawJobsAndARestartedGangdRecoversThem) {
  GANG_REQUIRE_ROOT();
  Cluster c(2, "--mem-per-node 1G --quantum 400ms");
  ASSERT_TRUE(c.up()) << c.up_text();
  auto a = c.cli("submit --ranks 4 -- " + kStencil + " -q --mem 32M --seconds 5");
  auto b = c.cli("submit --ranks 4 -- " + kStencil + " -q --mem 32M --seconds 5");
  int ja = job_id(a), jb = job_id(b);
  ASSERT_GT(ja, 0) << a.text;
  ASSERT_GT(jb, 0) << b.text;
  std::this_thread::sleep_for(1s);

  pid_t gangd = std::atoi(c.conf("gangd_pid").c_str());
  auto args = cmdline(gangd);
  ASSERT_FALSE(args.empty());
  ASSERT_EQ(::kill(gangd, SIGKILL), 0);
  // Three silent heartbeats (1 s each) later every job runs: none is left frozen.
  bool thawed = eventually(6s, [&] {
    for (auto node : {"n1", "n2"})
      for (int j : {ja, jb})
        if (auto f = c.frozen(node, j); !f || *f) return false;
    return true;
  });
  EXPECT_TRUE(thawed) << "a job stayed frozen without its coordinator";

  pid_t again = respawn(args, c.dir() + "/gangd.log");
  ASSERT_GT(again, 0);
  c.set_conf("gangd_pid", std::to_string(again));
  // Its journal brings both jobs back, alternating again; their launchers report the
  // exits to the new gangd.
  bool alternating = eventually(5s, [&] {
    auto s = job_states(c);
    return s.count(ja) && s.count(jb) && s[ja] != s[jb];
  });
  EXPECT_TRUE(alternating) << c.cli("jobs").text << slurp(c.dir() + "/gangd.log");
  EXPECT_EQ(c.cli("wait " + std::to_string(ja) + " --timeout 60").code, 0);
  EXPECT_EQ(c.cli("wait " + std::to_string(jb) + " --timeout 60").code, 0);
  expect_clean_after_down(c);
}

TEST(Cluster, JobsOfAnAgentThatNeverComesBackFailOthersGoOn) {
  GANG_REQUIRE_ROOT();
  Cluster c(3, "--mem-per-node 1G --quantum 400ms --node-timeout 2s");
  ASSERT_TRUE(c.up()) << c.up_text();
  // alpha on n1 and n2; beta alone on n3.
  auto a = c.cli("submit --ranks 4 --nodes 2 -- " + kStencil + " -q --mem 16M --seconds 60");
  auto b = c.cli("submit --ranks 2 --nodes 1 -- " + kStencil + " -q --mem 16M --seconds 4");
  int ja = job_id(a), jb = job_id(b);
  ASSERT_GT(ja, 0) << a.text;
  ASSERT_GT(jb, 0) << b.text;
  auto nodes = c.cli("jobs --json").text;
  ASSERT_NE(nodes.find("\"nodes\":[\"n1\",\"n2\"]"), std::string::npos) << nodes;
  ASSERT_NE(nodes.find("\"nodes\":[\"n3\"]"), std::string::npos) << nodes;
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(::kill(c.agent_pid(0), SIGKILL), 0);

  auto wa = c.cli("wait " + std::to_string(ja) + " --timeout 30");
  EXPECT_NE(wa.code, 0);
  EXPECT_NE(wa.text.find("node n1 has been down"), std::string::npos) << wa.text;
  auto wb = c.cli("wait " + std::to_string(jb) + " --timeout 60");
  EXPECT_EQ(wb.code, 0) << wb.text;
  expect_clean_after_down(c);
}

TEST(Cluster, PatchJobReachesEveryRankOfASubmittedMpiJob) {
  GANG_REQUIRE_ROOT();
  Cluster c(2, "--mem-per-node 1G --quantum 300ms");
  ASSERT_TRUE(c.up()) << c.up_text();
  // The target job alternates with another one, so the patch has to find its time slice.
  auto t = c.cli("submit --ranks 4 --name target -- " + std::string(TARGET_MPI));
  auto other = c.cli("submit --ranks 4 --name other -- " + kStencil + " -q --mem 16M --seconds 60");
  int jt = job_id(t), jo = job_id(other);
  ASSERT_GT(jt, 0) << t.text;
  ASSERT_GT(jo, 0) << other.text;
  auto out = c.dir() + "/dynamos-job" + std::to_string(jt) + ".out";
  // Whether the output's latest sum, after `within`, is `sum`.
  auto latest_is = [&](const std::string& sum, std::chrono::seconds within) {
    static const std::regex re("sum ([0-9]+)");
    return eventually(within, [&] {
      auto text = slurp(out);
      std::string last;
      for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it)
        last = (*it)[1];
      return last == sum;
    });
  };
  ASSERT_TRUE(latest_is("56", 20s)) << slurp(out);

  auto p = c.cli("patch --job " + std::to_string(jt) + " --replace compute=" + PATCH_SO);
  ASSERT_EQ(p.code, 0) << p.text;
  // Every one of the 4 ranks, on both nodes, now contributes 1014.
  EXPECT_TRUE(latest_is("4056", 20s)) << slurp(out);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(p.text, m, std::regex("(dynamos revert --job [^\n]+)"))) << p.text;
  auto r = c.cli(m[1].str().substr(std::string("dynamos ").size()));
  EXPECT_EQ(r.code, 0) << r.text;
  EXPECT_TRUE(latest_is("56", 20s)) << slurp(out);

  EXPECT_EQ(c.cli("cancel " + std::to_string(jt)).code, 0);
  EXPECT_EQ(c.cli("cancel " + std::to_string(jo)).code, 0);
  expect_clean_after_down(c);
}

namespace {

// A user the test creates (and removes, with whatever still runs as it).
class ScopedUser {
 public:
  ScopedUser() : name_("dyncl" + std::to_string(::getpid())) {
    ok_ = sh("useradd -M -s /usr/sbin/nologin " + name_).code == 0;
    if (const passwd* pw = ::getpwnam(name_.c_str()); ok_ && pw) {
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
    } else {
      ok_ = false;
    }
  }
  ~ScopedUser() {
    if (!ok_) return;
    (void)sh("pkill -KILL -u " + std::to_string(uid_));
    (void)sh("userdel " + name_);
  }
  bool ok() const { return ok_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }
  // A shell command line run as the user.
  std::string as(const std::string& cmd) const {
    return "setpriv --reuid=" + std::to_string(uid_) + " --regid=" + std::to_string(gid_) +
           " --init-groups sh -c '" + cmd + "'";
  }

 private:
  std::string name_;
  bool ok_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

uid_t process_uid(pid_t pid) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Uid:", 0) == 0) return static_cast<uid_t>(std::atoi(line.c_str() + 4));
  return static_cast<uid_t>(-1);
}

}  // namespace

TEST(Cluster, UsersSeeAndActOnTheirOwnJobsWhichRunAsThem) {
  GANG_REQUIRE_ROOT();
  ScopedUser user;
  ASSERT_TRUE(user.ok()) << "useradd failed";
  Cluster c(2, "--mem-per-node 1G --quantum 300ms");
  ASSERT_TRUE(c.up()) << c.up_text();
  ASSERT_EQ(::chmod(c.dir().c_str(), 0755), 0);  // the user reaches the sockets
  gt::TempDir home;
  ASSERT_EQ(::chmod(home.path().c_str(), 0755), 0);
  ASSERT_EQ(::chown(home.path().c_str(), user.uid(), user.gid()), 0);
  auto as_user = [&](const std::string& args) {
    return sh(user.as("cd " + home.path().string() + " && DYNAMOS_SOCKET=" + c.socket() + " " +
                      kBin + "/dynamos " + args));
  };

  auto mine = as_user("submit --ranks 2 --name mine -- " + kStencil + " -q --mem 16M --seconds 3");
  ASSERT_EQ(mine.code, 0) << mine.text;
  auto roots = c.cli("submit --ranks 2 --name roots -- " + kStencil + " -q --mem 16M --seconds 30");
  ASSERT_EQ(roots.code, 0) << roots.text;
  int jm = job_id(mine), jr = job_id(roots);

  // The user's ranks run as the user, inside the job's group.
  std::set<uid_t> uids;
  auto layout = ks::Layout::detect();
  ASSERT_TRUE(layout.has_value());
  eventually(10s, [&] {
    for (auto node : {"n1", "n2"}) {
      auto path = c.parent() + "/" + node + "/job" + std::to_string(jm);
      if (!ks::Group::exists(*layout, path)) continue;
      if (auto g = ks::Group::open(*layout, path))
        if (auto pids = g->pids())
          for (pid_t p : *pids)
            uids.insert(process_uid(p));
    }
    return !uids.empty();
  });
  EXPECT_EQ(uids, std::set<uid_t>{user.uid()});

  // Each sees their own jobs; root sees all; the user cannot act on root's job.
  auto list = as_user("jobs --json");
  EXPECT_NE(list.text.find("\"name\":\"mine\""), std::string::npos) << list.text;
  EXPECT_EQ(list.text.find("\"name\":\"roots\""), std::string::npos) << list.text;
  EXPECT_NE(c.cli("jobs --json").text.find("\"name\":\"mine\""), std::string::npos);
  auto cancel = as_user("cancel " + std::to_string(jr));
  EXPECT_NE(cancel.code, 0);
  EXPECT_NE(cancel.text.find("belongs to another user"), std::string::npos) << cancel.text;
  auto quantum = as_user("set quantum=1s");
  EXPECT_NE(quantum.code, 0);
  EXPECT_NE(quantum.text.find("only root"), std::string::npos) << quantum.text;

  auto wait = as_user("wait " + std::to_string(jm) + " --timeout 60");
  EXPECT_EQ(wait.code, 0) << wait.text;
  struct stat st {};
  auto out = home.path().string() + "/dynamos-job" + std::to_string(jm) + ".out";
  ASSERT_EQ(::stat(out.c_str(), &st), 0) << out;
  EXPECT_EQ(st.st_uid, user.uid()) << "the job's output belongs to its owner";
  EXPECT_NE(slurp(out).find("\"verified\":true"), std::string::npos) << slurp(out);
  EXPECT_EQ(c.cli("cancel " + std::to_string(jr)).code, 0);
  expect_clean_after_down(c);
}

// --- the scheduler (issue 21): memory, the pending queue, history, drain, hold -------

namespace {
// The JSON object of job `id` in `dynamos jobs [--all] --json`, or "".
std::string job_json_of(const Cluster& c, int id, const std::string& flags = "") {
  auto text = c.cli("jobs --json " + flags).text;
  auto at = text.find("{\"id\":" + std::to_string(id) + ",");
  if (at == std::string::npos) return "";
  return text.substr(at, text.find('}', at) - at + 1);
}
std::string state_of(const Cluster& c, int id) {
  auto j = job_json_of(c, id);
  std::smatch m;
  static const std::regex re("\"state\":\"([a-z]+)\"");
  return std::regex_search(j, m, re) ? std::string(m[1]) : "";
}
}  // namespace

TEST(Cluster, MemoryPastTheNodeWaitsUnderDemandAndTheSamePairRunsUnderAdaptive) {
  GANG_REQUIRE_ROOT();
  // One node of 2 slots and 1 GiB. Two jobs of 2 ranks x 300 MiB commit 1.2 GiB: past
  // the node under demand paging (factor 1.0), within adaptive paging's 1.5.
  Cluster c(1, "--mem-per-node 1G --quantum 300ms");
  ASSERT_TRUE(c.up()) << c.up_text();
  auto job = [&](const std::string& paging, const std::string& secs) {
    return job_id(c.cli("submit --ranks 2 --mem-per-rank 300M --paging " + paging + " -- " +
                        kStencil + " -q --mem 16M --seconds " + secs));
  };
  int d1 = job("demand", "3"), d2 = job("demand", "1");
  ASSERT_GT(d1, 0);
  ASSERT_GT(d2, 0);
  EXPECT_TRUE(eventually(5s, [&] { return state_of(c, d1) == "running"; })) << c.cli("jobs").text;
  EXPECT_EQ(state_of(c, d2), "pending") << c.cli("jobs").text;
  EXPECT_NE(job_json_of(c, d2).find("not enough memory"), std::string::npos) << job_json_of(c, d2);
  // The second starts when the first has ended and given its memory back.
  EXPECT_EQ(c.cli("wait " + std::to_string(d1) + " --timeout 30").code, 0);
  EXPECT_EQ(c.cli("wait " + std::to_string(d2) + " --timeout 30").code, 0);

  int a1 = job("adaptive", "2"), a2 = job("adaptive", "2");
  ASSERT_GT(a1, 0);
  ASSERT_GT(a2, 0);
  bool both_placed = eventually(5s, [&] {
    auto s1 = state_of(c, a1), s2 = state_of(c, a2);
    return (s1 == "running" || s1 == "frozen") && (s2 == "running" || s2 == "frozen");
  });
  EXPECT_TRUE(both_placed) << c.cli("jobs").text;
  EXPECT_EQ(c.cli("wait " + std::to_string(a1) + " --timeout 30").code, 0);
  EXPECT_EQ(c.cli("wait " + std::to_string(a2) + " --timeout 30").code, 0);

  // Bad input: clear errors, nothing queued.
  auto big = c.cli("submit --ranks 2 --mem-per-rank 2G -- " + kStencil);
  EXPECT_NE(big.code, 0);
  EXPECT_NE(big.text.find("memory"), std::string::npos) << big.text;
  auto size = c.cli("submit --mem-per-rank lots -- " + kStencil);
  EXPECT_EQ(size.code, 2);
  EXPECT_NE(size.text.find("--mem-per-rank"), std::string::npos) << size.text;
  auto limit = c.cli("submit --time 5m -- " + kStencil);
  EXPECT_EQ(limit.code, 2);
  EXPECT_NE(limit.text.find("MM:SS"), std::string::npos) << limit.text;
  expect_clean_after_down(c);
}

TEST(Cluster, GangdKilledWithPendingRunningAndEndedJobsBringsAllThreeBack) {
  GANG_REQUIRE_ROOT();
  Cluster c(1, "--mem-per-node 1G --quantum 300ms");
  ASSERT_TRUE(c.up()) << c.up_text();
  int ended = job_id(c.cli("submit --ranks 2 -- " + kStencil + " -q --mem 16M --iterations 4"));
  ASSERT_GT(ended, 0);
  ASSERT_EQ(c.cli("wait " + std::to_string(ended) + " --timeout 30").code, 0);
  auto big = [&](const std::string& secs) {
    return job_id(c.cli("submit --ranks 2 --mem-per-rank 400M -- " + kStencil +
                        " -q --mem 16M --seconds " + secs));
  };
  int running = big("5"), pending = big("1");
  ASSERT_GT(running, 0);
  ASSERT_GT(pending, 0);
  ASSERT_TRUE(eventually(5s, [&] { return state_of(c, running) == "running"; }))
      << c.cli("jobs").text;
  ASSERT_EQ(state_of(c, pending), "pending") << c.cli("jobs").text;

  pid_t gangd = std::atoi(c.conf("gangd_pid").c_str());
  auto args = cmdline(gangd);
  ASSERT_FALSE(args.empty());
  ASSERT_EQ(::kill(gangd, SIGKILL), 0);
  std::this_thread::sleep_for(200ms);
  pid_t again = respawn(args, c.dir() + "/gangd.log");
  ASSERT_GT(again, 0);
  c.set_conf("gangd_pid", std::to_string(again));

  // All three as they were: the ended job in the history (jobs --all, wait), the
  // running one still running, the pending one still pending, then started.
  EXPECT_TRUE(eventually(5s, [&] { return state_of(c, running) == "running"; }))
      << c.cli("jobs").text << slurp(c.dir() + "/gangd.log");
  EXPECT_EQ(state_of(c, pending), "pending") << c.cli("jobs").text;
  EXPECT_NE(job_json_of(c, ended, "--all").find("\"state\":\"done\""), std::string::npos)
      << c.cli("jobs --all").text;
  EXPECT_EQ(c.cli("wait " + std::to_string(ended) + " --timeout 5").code, 0);
  auto history = c.cli("history --json");
  EXPECT_EQ(history.code, 0) << history.text;
  EXPECT_NE(history.text.find("\"id\": " + std::to_string(ended)), std::string::npos)
      << history.text;
  EXPECT_EQ(c.cli("wait " + std::to_string(running) + " --timeout 30").code, 0);
  EXPECT_EQ(c.cli("wait " + std::to_string(pending) + " --timeout 30").code, 0);
  expect_clean_after_down(c);
}

TEST(Cluster, DrainHoldTimeLimitAndRequeueAsAnOperatorUsesThem) {
  GANG_REQUIRE_ROOT();
  Cluster c(1, "--mem-per-node 1G --quantum 300ms");
  ASSERT_TRUE(c.up()) << c.up_text();
  // A drained node takes no job: it waits, and starts on resume.
  auto drain = c.cli("node drain n1 --reason maintenance");
  ASSERT_EQ(drain.code, 0) << drain.text;
  auto nodes = c.cli("nodes --json").text;
  EXPECT_NE(nodes.find("\"state\":\"drained\""), std::string::npos) << nodes;
  int j = job_id(c.cli("submit --ranks 2 -- " + kStencil + " -q --mem 16M --iterations 4"));
  ASSERT_GT(j, 0);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(state_of(c, j), "pending") << c.cli("jobs").text;
  EXPECT_EQ(c.cli("node resume n1").code, 0);
  EXPECT_EQ(c.cli("wait " + std::to_string(j) + " --timeout 30").code, 0);

  // Held: pending until released.
  int h = job_id(c.cli("submit --hold --ranks 2 -- " + kStencil + " -q --mem 16M --iterations 4"));
  ASSERT_GT(h, 0);
  std::this_thread::sleep_for(1500ms);
  EXPECT_NE(job_json_of(c, h).find("\"reason\":\"held\""), std::string::npos) << job_json_of(c, h);
  auto rel = c.cli("release " + std::to_string(h) + " --json");
  EXPECT_EQ(rel.code, 0) << rel.text;
  EXPECT_NE(rel.text.find("\"ok\":true"), std::string::npos) << rel.text;
  EXPECT_EQ(c.cli("wait " + std::to_string(h) + " --timeout 30").code, 0);

  // A time limit ends the job at its limit; requeue submits it again.
  auto t0 = std::chrono::steady_clock::now();
  int t =
      job_id(c.cli("submit --time 0:02 --ranks 2 -- " + kStencil + " -q --mem 16M --seconds 60"));
  ASSERT_GT(t, 0);
  auto w = c.cli("wait " + std::to_string(t) + " --timeout 30");
  EXPECT_EQ(w.code, 143) << w.text;
  EXPECT_NE(w.text.find("time limit"), std::string::npos) << w.text;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  auto rq = c.cli("requeue " + std::to_string(t));
  EXPECT_EQ(rq.code, 0) << rq.text;
  EXPECT_NE(rq.text.find("requeued as job"), std::string::npos) << rq.text;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(rq.text, m, std::regex("as job ([0-9]+)")));
  EXPECT_EQ(c.cli("cancel " + std::string(m[1])).code, 0);

  // Bad input names what is wrong.
  auto no_node = c.cli("node drain nosuch");
  EXPECT_NE(no_node.code, 0);
  EXPECT_NE(no_node.text.find("nosuch"), std::string::npos) << no_node.text;
  auto not_pending = c.cli("hold " + std::to_string(j));
  EXPECT_NE(not_pending.code, 0);
  EXPECT_NE(not_pending.text.find("pending"), std::string::npos) << not_pending.text;
  auto done_requeue = c.cli("requeue " + std::to_string(j));
  EXPECT_NE(done_requeue.code, 0) << done_requeue.text;
  auto since = c.cli("history --since yesterdayish");
  EXPECT_EQ(since.code, 2);
  EXPECT_NE(since.text.find("--since"), std::string::npos) << since.text;
  expect_clean_after_down(c);
}
