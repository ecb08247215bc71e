// dynamos patch --job: the remote live update applied to every rank of a job on two
// nodes, all or none. A real cluster in one process: gangd's Coordinator with its
// control socket, two NodeAgents (real cgroups, each on its own io thread as dynamosd
// runs them, with the patch ops of gang/dynamosd/agent_ops_patch.cpp), real target processes
// in the jobs' groups, and the real `dynamos` CLI talking to the control socket.
//
// Prints the figures of docs/remote.md ("Patching a whole job").
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "gang/client/control.hpp"
#include "gang/dynamosd/agent_ops.hpp"
#include "gang/dynamosd/node_agent.hpp"
#include "gang/job_patch.hpp"
#include "gang/node_ops.hpp"
#include "testkit/cluster_harness.hpp"
#include "testkit/process.hpp"
#include "testkit/reachable.hpp"
#include "tests/kernelside/support.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace dynamos::kernelside;
using namespace dynamos::kernelside::test;
using namespace std::chrono_literals;
using remote_test::Output;
using remote_test::Program;
using remote_test::run;

namespace {

// Where the test's other user can reach them too (testkit/reachable.hpp): its ranks run
// the target, it runs the CLI, and the agent checks that it may read the patch.
const std::string kCli = dynamos::testkit::reachable(DYNAMOS_CLI);
const std::string kPatch = dynamos::testkit::reachable(PATCH_SO);
constexpr uid_t kUser = 47013;  // a uid with no passwd entry, for the permission tests

Secret test_secret() {
  std::vector<std::uint8_t> b(32, 'p');
  return Secret::from_bytes(b);
}

std::string tracer_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("TracerPid:")) return line.substr(10);
  return "?";
}

// A target rank: prints "result 14 ..." every 20 ms, "result 1014 ..." once compute()
// is patched with kPatch. With `as_user`, it runs as kUser, from where kUser can reach it
// and its library (its RUNPATH names the build tree: the library path names the copy's).
std::unique_ptr<Program> start_rank(const std::string& exe, bool as_user = false) {
  std::vector<std::string> args;
  const std::string user_exe = as_user ? dynamos::testkit::reachable(exe) : exe;
  if (as_user)
    args = {"/usr/bin/setpriv",
            "--reuid=" + std::to_string(kUser),
            "--regid=" + std::to_string(kUser),
            "--clear-groups",
            "/usr/bin/env",
            "LD_LIBRARY_PATH=" + std::filesystem::path(user_exe).parent_path().string(),
            user_exe,
            "0"};
  else
    args = {exe, "0"};  // no busy workers: the main thread calls compute() and prints
  auto p = std::make_unique<Program>(args);
  return p;
}

// Two virtual nodes under an in-process gangd with a control socket.
class JobCluster {
 public:
  explicit JobCluster(Layout layout, std::chrono::milliseconds quantum, int slots = 2)
      : layout_(std::move(layout)), parent_(unique_group_name()) {
    char tmpl[] = "/tmp/dynamos-patchjob-XXXXXX";
    dir_ = mkdtemp(tmpl) ? tmpl : "";
    // The control socket must be reachable by the test's other user.
    std::filesystem::permissions(dir_, std::filesystem::perms(0755));
    for (int i = 0; i < 2; ++i) {
      NodeAgentConfig cfg;
      cfg.node = "n" + std::to_string(i);
      cfg.cgroup_parent = parent_;
      cfg.layout = layout_;
      cfg.log = [](const std::string&) {};
      auto a = NodeAgent::create(cfg);
      if (!a) {
        error = a.error().message();
        return;
      }
      nodes.push_back(std::move(*a));
      AgentOpsContext ops{*nodes.back(), nullptr, "", "", {}};
      add_patch_ops(ops);
    }
    CoordinatorConfig cc;
    for (int i = 0; i < 2; ++i)
      cc.hosts.push_back({"n" + std::to_string(i), slots, 0});
    cc.secret = test_secret();
    cc.quantum = quantum;
    cc.heartbeat = 200ms;
    cc.control_socket = socket();
    cc.log = [](const std::string&) {};
    if (auto r = c.start_coordinator(cc); !r) {
      error = r.error().message();
      return;
    }
    auto port = c.call([&] { return c.coordinator->port(); });
    for (int i = 0; i < 2; ++i)
      agents.push_back(std::make_unique<dynamos::gang::test::AgentThread>(
          port, "n" + std::to_string(i), test_secret(), *nodes[i]));
    if (!c.wait_for([&] { return c.coordinator->agents_connected() == 2; }))
      error = "agents did not connect";
  }

  ~JobCluster() {
    agents.clear();  // stopped before the coordinator
    c.shutdown();
    for (auto& n : nodes)
      (void)n->remove_all();
    if (Group::exists(layout_, parent_))
      if (auto g = Group::open(layout_, parent_)) (void)g->remove_tree(Evict::kill);
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  std::string socket() const { return dir_ + "/gangd.sock"; }

  // Submits a job of `ranks` ranks over both nodes as `uid`, waits until both agents
  // have its group, and attaches the processes: the first half to n0, the rest to n1.
  Result<JobId> job(std::uint32_t uid, const std::vector<std::unique_ptr<Program>>& ranks) {
    proto::JobSubmit js{
        "patchme", static_cast<std::uint32_t>(ranks.size()), 2, "demand", {"/bin/true"}, "/", ""};
    auto id = c.call([&] { return c.coordinator->submit(uid, js); });
    if (!id) return id;
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      auto& node = nodes[i < ranks.size() / 2 ? 0 : 1];
      if (!wait_until(
              [&] {
                auto j = node->jobs();
                return std::find(j.begin(), j.end(), *id) != j.end();
              },
              5000ms))
        return fail(Errc::timed_out, "job never assigned to its node");
      if (auto r = node->attach(*id, ranks[i]->pid()); !r) return std::unexpected(r.error());
    }
    return id;
  }

  // Runs a node request on the agent's own thread, as gangd's requests are.
  Result<std::string> node_request(int node, proto::NodeRequest r) {
    return agents[node]->call([&] { return nodes[node]->node_request(r); });
  }

  bool running_everywhere(JobId job) {
    for (auto& n : nodes)
      if (n->frozen(job).value_or(true)) return false;
    return true;
  }

  Output cli(std::vector<std::string> args, bool as_user = false) {
    args.insert(args.begin(), kCli);
    args.push_back("--socket");
    args.push_back(socket());
    if (as_user)
      args.insert(args.begin(), {"/usr/bin/setpriv", "--reuid=" + std::to_string(kUser),
                                 "--regid=" + std::to_string(kUser), "--clear-groups"});
    return run(args);
  }

  std::string error;
  dynamos::gang::test::Cluster c;
  std::vector<std::unique_ptr<NodeAgent>> nodes;
  std::vector<std::unique_ptr<dynamos::gang::test::AgentThread>> agents;

 private:
  Layout layout_;
  std::string parent_;
  std::string dir_;
};

std::vector<std::unique_ptr<Program>> ranks_of(const std::vector<std::string>& exes,
                                               const std::vector<bool>& as_user = {}) {
  std::vector<std::unique_ptr<Program>> v;
  for (std::size_t i = 0; i < exes.size(); ++i)
    v.push_back(start_rank(exes[i], i < as_user.size() && as_user[i]));
  return v;
}

bool all_show(const std::vector<std::unique_ptr<Program>>& ranks, const std::string& text,
              std::string* which = nullptr) {
  for (std::size_t i = 0; i < ranks.size(); ++i)
    if (!ranks[i]->wait_for(text, 3000ms)) {
      if (which) *which = "rank " + std::to_string(i) + ": " + ranks[i]->last_line();
      return false;
    }
  return true;
}

// No update left applied in the process (dynamos updates lists none, or only reverted ones).
bool nothing_applied(pid_t pid, std::string* listing) {
  auto o = run({kCli, "updates", std::to_string(pid)});
  *listing = o.out + o.err;
  return o.status == 0 && o.out.find("applied") == std::string::npos;
}

std::string revert_line(const std::string& out) {
  auto at = out.find("revert with: ");
  if (at == std::string::npos) return "";
  auto end = out.find('\n', at);
  return out.substr(at + 13, end == std::string::npos ? end : end - at - 13);
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> v;
  for (std::string w; in >> w;)
    v.push_back(w);
  return v;
}

#define SETUP_CLUSTER(name, quantum, slots)  \
  KERNELSIDE_REQUIRE_ROOT();                 \
  auto layout = ASSERT_OK(Layout::detect()); \
  sweep_stale_groups(layout);                \
  JobCluster name(layout, quantum, slots);   \
  ASSERT_TRUE(name.error.empty()) << name.error

// Ranks running the executables in the braces, all printing results, then one job of
// them on cl's nodes, running everywhere.
#define START_JOB(cl, job, ranks, ...)        \
  auto ranks = ranks_of(__VA_ARGS__);         \
  ASSERT_TRUE(all_show(ranks, "result 14 ")); \
  auto job = ASSERT_OK(cl.job(0, ranks));     \
  ASSERT_TRUE(wait_until([&] { return cl.running_everywhere(job); }, 3000ms))

TEST(PatchJob, EveryRankOnBothNodesThenRevertAll) {
  SETUP_CLUSTER(cl, 30000ms, 2);
  START_JOB(cl, job, ranks, {TARGET_PIE, TARGET_PIE, TARGET_PIE, TARGET_PIE});

  std::vector<double> patch_ms, cmd_ms, revert_ms;
  for (int round = 0; round < 8; ++round) {
    auto t0 = std::chrono::steady_clock::now();
    auto o = cl.cli({"patch", "--job", std::to_string(job), "--replace", "compute=" + kPatch});
    cmd_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_EQ(o.status, 0) << o.err;
    ASSERT_NE(o.out.find("patched job " + std::to_string(job) + ": 4 ranks on 2 nodes"),
              std::string::npos)
        << o.out;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(o.out, m, std::regex(R"(on 2 nodes in ([0-9.]+) ms)")));
    patch_ms.push_back(std::stod(m[1]));
    for (auto& r : ranks)
      EXPECT_NE(o.out.find("rank " + std::to_string(r->pid()) + ": update "), std::string::npos)
          << "rank " << r->pid() << " missing from: " << o.out;
    std::string which;
    ASSERT_TRUE(all_show(ranks, "result 1014 ", &which)) << "not patched everywhere: " << which;
    for (auto& r : ranks)
      EXPECT_EQ(tracer_of(r->pid()), "\t0") << "rank " << r->pid() << " left traced";

    // The line it printed reverts them all.
    auto line = words(revert_line(o.out));
    ASSERT_GE(line.size(), 5u) << o.out;
    ASSERT_EQ(line[0], "dynamos");
    t0 = std::chrono::steady_clock::now();
    auto rv = cl.cli(std::vector<std::string>(line.begin() + 1, line.end()));
    revert_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_EQ(rv.status, 0) << rv.err;
    EXPECT_EQ(std::count(rv.out.begin(), rv.out.end(), '\n'), 4) << rv.out;
    ASSERT_TRUE(all_show(ranks, "result 14 ", &which)) << "not reverted everywhere: " << which;
  }
  for (auto& r : ranks) {
    std::string why;
    EXPECT_TRUE(r->runs_on(&why)) << why;
    EXPECT_EQ(tracer_of(r->pid()), "\t0");
  }
  auto report = [](const char* what, std::vector<double> v) {
    std::sort(v.begin(), v.end());
    std::printf("[ figures  ] %s: median %.1f ms, max %.1f ms over %zu runs\n", what,
                v[v.size() / 2], v.back(), v.size());
  };
  report("patch --job, 4 ranks on 2 nodes, nodes' work (gangd to last reply)", patch_ms);
  report("patch --job, 4 ranks on 2 nodes, whole command", cmd_ms);
  report("revert --job, 4 ranks on 2 nodes, whole command", revert_ms);
}

TEST(PatchJob, OneRankFailingLeavesEveryRankUnpatched) {
  SETUP_CLUSTER(cl, 30000ms, 2);
  // The last rank (on n1) is stripped: its static hidden_compute() cannot be found
  // there. Whatever order the nodes and ranks go in, no rank may keep the update.
  START_JOB(cl, job, ranks, {TARGET_PIE, TARGET_PIE, TARGET_PIE, TARGET_STRIPPED});

  const std::string hidden = "hidden_compute=" + kPatch + ":hidden_v2";
  auto o = cl.cli({"patch", "--job", std::to_string(job), "--replace", hidden});
  EXPECT_NE(o.status, 0) << o.out;
  EXPECT_NE(o.err.find("node n1"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("rank " + std::to_string(ranks[3]->pid())), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("hidden_compute"), std::string::npos) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "not one line: " << o.err;
  EXPECT_EQ(o.err.find("COULD NOT REVERT"), std::string::npos) << o.err;
  std::this_thread::sleep_for(100ms);
  for (auto& r : ranks) {
    EXPECT_TRUE(r->wait_for(" hidden 107 ")) << "rank " << r->pid() << ": " << r->last_line();
    std::string listing;
    EXPECT_TRUE(nothing_applied(r->pid(), &listing)) << listing;
    EXPECT_EQ(tracer_of(r->pid()), "\t0");
    std::string why;
    EXPECT_TRUE(r->runs_on(&why)) << why;
  }

  // Without the rank that cannot take it, the same patch goes to the three others.
  ranks[3].reset();  // killed: it leaves the job's group
  ranks.pop_back();
  o = cl.cli({"patch", "--job", std::to_string(job), "--replace", hidden});
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("3 ranks on 2 nodes"), std::string::npos) << o.out;
  std::string which;
  EXPECT_TRUE(all_show(ranks, " hidden 207 ", &which)) << which;
}

TEST(PatchJob, FrozenJobWaitsForItsTimeSlice) {
  // Two jobs fill both nodes' two slots: they alternate every quantum.
  SETUP_CLUSTER(cl, 800ms, 2);
  auto a_ranks = ranks_of({TARGET_PIE, TARGET_PIE, TARGET_PIE, TARGET_PIE});
  auto b_ranks = ranks_of({TARGET_PIE, TARGET_PIE, TARGET_PIE, TARGET_PIE});
  ASSERT_TRUE(all_show(a_ranks, "result 14 "));
  ASSERT_TRUE(all_show(b_ranks, "result 14 "));
  auto a = ASSERT_OK(cl.job(0, a_ranks));
  auto b = ASSERT_OK(cl.job(0, b_ranks));
  ASSERT_TRUE(cl.c.wait_for([&] { return cl.c.coordinator->rounds().size() >= 2; }, 5000ms));
  auto frozen_everywhere = [&](JobId j) {
    for (auto& n : cl.nodes)
      if (!n->frozen(j).value_or(false)) return false;
    return true;
  };
  // Right after job a is switched out (it stays out for a whole quantum).
  auto just_frozen = [&] {
    EXPECT_TRUE(wait_until([&] { return cl.running_everywhere(a); }, 5000ms));
    EXPECT_TRUE(wait_until([&] { return frozen_everywhere(a); }, 5000ms));
  };

  // The agent refuses while the job is frozen, naming the job and the node.
  just_frozen();
  jobpatch::PatchArgs pa{
      a, {ASSERT_OK(core::parse_replacement("compute=" + kPatch))}, core::SafetyMode::drain, 500ms};
  auto refused =
      cl.node_request(0, proto::NodeRequest{1, 0, std::string(ops::patch), jobpatch::to_args(pa)});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Errc::state);
  EXPECT_TRUE(jobpatch::is_frozen_refusal(refused.error().message())) << refused.error().message();
  EXPECT_NE(refused.error().message().find("node n0"), std::string::npos);

  // --wait 0: the CLI gives up at once, nothing patched.
  just_frozen();
  auto o = cl.cli(
      {"patch", "--job", std::to_string(a), "--wait", "0", "--replace", "compute=" + kPatch});
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.err.find("is frozen on node"), std::string::npos) << o.err;
  std::string listing;
  ASSERT_TRUE(wait_until([&] { return cl.running_everywhere(a); }, 5000ms));
  for (auto& r : a_ranks)
    EXPECT_TRUE(nothing_applied(r->pid(), &listing)) << listing;

  // By default the CLI waits for the job's slice, then patches every rank.
  just_frozen();
  auto t0 = std::chrono::steady_clock::now();
  o = cl.cli({"patch", "--job", std::to_string(a), "--replace", "compute=" + kPatch});
  auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.err.find("waiting for its time slice"), std::string::npos) << o.err;
  EXPECT_GT(waited, 100ms) << "the job was frozen: the command should have waited";
  EXPECT_NE(o.out.find("4 ranks on 2 nodes"), std::string::npos) << o.out;
  // Observed while a runs; the other job's ranks were never touched.
  ASSERT_TRUE(wait_until([&] { return cl.running_everywhere(a); }, 5000ms));
  std::string which;
  EXPECT_TRUE(all_show(a_ranks, "result 1014 ", &which)) << which;
  ASSERT_TRUE(wait_until([&] { return cl.running_everywhere(b); }, 5000ms));
  for (auto& r : b_ranks)
    EXPECT_TRUE(nothing_applied(r->pid(), &listing)) << listing;

  // Gang scheduling goes on: a and b still alternate, never both frozen for long, and
  // no rank is left traced.
  EXPECT_TRUE(wait_until([&] { return frozen_everywhere(a) && cl.running_everywhere(b); }, 5000ms));
  EXPECT_TRUE(wait_until([&] { return frozen_everywhere(b) && cl.running_everywhere(a); }, 5000ms));
  for (auto* set : {&a_ranks, &b_ranks})
    for (auto& r : *set)
      EXPECT_EQ(tracer_of(r->pid()), "\t0");

  // Revert also waits for the slice.
  just_frozen();
  auto line = words(revert_line(o.out));
  ASSERT_GE(line.size(), 5u) << o.out;
  auto rv = cl.cli(std::vector<std::string>(line.begin() + 1, line.end()));
  ASSERT_EQ(rv.status, 0) << rv.err;
  ASSERT_TRUE(wait_until([&] { return cl.running_everywhere(a); }, 5000ms));
  EXPECT_TRUE(all_show(a_ranks, "result 14 ", &which)) << which;
}

TEST(PatchJob, NonOwnerIsRefused) {
  SETUP_CLUSTER(cl, 30000ms, 4);  // both jobs in one slot: both run
  // Job r belongs to root: another user is refused by gangd.
  auto root_ranks = ranks_of({TARGET_PIE, TARGET_PIE});
  ASSERT_TRUE(all_show(root_ranks, "result 14 "));
  auto r = ASSERT_OK(cl.job(0, root_ranks));
  ASSERT_TRUE(wait_until([&] { return cl.running_everywhere(r); }, 3000ms));
  auto o = cl.cli({"patch", "--job", std::to_string(r), "--replace", "compute=" + kPatch}, true);
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.err.find("belongs to another user"), std::string::npos) << o.err;
  std::string listing;
  for (auto& p : root_ranks)
    EXPECT_TRUE(nothing_applied(p->pid(), &listing)) << listing;

  // Job u belongs to the user, but one of its ranks (on n1) runs as root: the agent
  // there refuses, and the user's own ranks on n0 are left unpatched (all or none).
  auto user_ranks = ranks_of({TARGET_PIE, TARGET_PIE, TARGET_PIE}, {true, true, false});
  ASSERT_TRUE(all_show(user_ranks, "result 14 "));
  auto u = ASSERT_OK(cl.job(kUser, user_ranks));  // n0: ranks 0 (user); n1: 1 (user), 2 (root)
  ASSERT_TRUE(wait_until([&] { return cl.running_everywhere(u); }, 3000ms));
  o = cl.cli({"patch", "--job", std::to_string(u), "--replace", "compute=" + kPatch}, true);
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.err.find("runs as uid 0, not as the caller (uid " + std::to_string(kUser) + ")"),
            std::string::npos)
      << o.err;
  EXPECT_EQ(o.err.find("COULD NOT REVERT"), std::string::npos) << o.err;
  for (auto& p : user_ranks) {
    EXPECT_TRUE(p->wait_for("result 14 ")) << p->last_line();
    EXPECT_TRUE(nothing_applied(p->pid(), &listing)) << listing;
  }
  // Without the root rank, the user patches their own job; root may patch any job.
  user_ranks[2].reset();
  o = cl.cli({"patch", "--job", std::to_string(u), "--replace", "compute=" + kPatch}, true);
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_TRUE(user_ranks[0]->wait_for("result 1014 ")) << user_ranks[0]->last_line();
  EXPECT_TRUE(user_ranks[1]->wait_for("result 1014 ")) << user_ranks[1]->last_line();
  o = cl.cli({"patch", "--job", std::to_string(r), "--replace", "compute=" + kPatch});
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_TRUE(all_show(root_ranks, "result 1014 "));
  // A patch object the user may not read is refused by the agent (it reads as root).
  const std::string secret = "/tmp/dynamos-patchjob-secret.so";
  std::filesystem::copy_file(kPatch, secret, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::permissions(secret, std::filesystem::perms(0600));
  struct Remove {
    std::string p;
    ~Remove() { std::filesystem::remove(p); }
  } remove{secret};
  jobpatch::PatchArgs pa{
      u, {ASSERT_OK(core::parse_replacement("compute=" + secret))}, core::SafetyMode::drain, 500ms};
  auto refused = cl.node_request(
      0, proto::NodeRequest{1, kUser, std::string(ops::patch), jobpatch::to_args(pa)});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Errc::not_permitted) << refused.error().message();
  EXPECT_NE(refused.error().message().find("may not read"), std::string::npos)
      << refused.error().message();
}

// The same through the real daemons: gangd and one dynamosd per node (separate
// processes), ranks placed into the jobs' groups as the launch path would.
TEST(PatchJob, ThroughGangdAndDynamosdProcesses) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = ASSERT_OK(Layout::detect());
  sweep_stale_groups(layout);
  const std::string parent = unique_group_name();
  char tmpl[] = "/tmp/dynamos-patchjob-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  struct Daemons {
    std::vector<pid_t> pids;
    Layout layout;
    std::string parent, dir;
    ~Daemons() {
      for (pid_t p : pids) {
        ::kill(p, SIGTERM);
        ::waitpid(p, nullptr, 0);
      }
      if (Group::exists(layout, parent))
        if (auto g = Group::open(layout, parent)) (void)g->remove_tree(Evict::kill);
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
    pid_t spawn(std::vector<std::string> args, const std::string& tag) {
      pid_t pid = ::fork();
      if (pid == 0) {
        int err = ::open((dir + "/" + tag + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(err, 2);
        auto v = remote_test::argv_of(args);
        ::execv(v[0], v.data());
        ::_exit(127);
      }
      pids.push_back(pid);
      return pid;
    }
    std::string err(const std::string& tag) {
      std::ifstream in(dir + "/" + tag + ".err");
      return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
  } d{{}, layout, parent, dir};
  { std::ofstream(dir + "/hosts") << "n0 slots=2\nn1 slots=2\n"; }
  const std::string sock = dir + "/gangd.sock";
  d.spawn({GANGD_PATH,
           "--launch",
           "none",
           "--run-dir",
           dir,
           "--hostfile",
           dir + "/hosts",
           "--secret",
           dir + "/secret",
           "--create-secret",
           "--listen",
           "127.0.0.1:0",
           "--control-socket",
           sock,
           "--journal",
           "",
           "--quantum",
           "30s",
           "--heartbeat",
           "200ms"},
          "gangd");
  std::smatch m;
  std::string err;
  ASSERT_TRUE(wait_until(
      [&] {
        err = d.err("gangd");
        return std::regex_search(err, m, std::regex("port ([0-9]+)"));
      },
      5000ms))
      << err;
  const std::string port = m[1];
  for (const char* node : {"n0", "n1"})
    d.spawn({DYNAMOSD_PATH, "--node", node, "--coordinator", "127.0.0.1:" + port, "--secret",
             dir + "/secret", "--cgroup-parent", parent, "--run-dir", dir, "--remove-on-exit"},
            node);
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = control_request(sock, proto::ListNodes{});
        if (!r) return false;
        auto& nodes = std::get<proto::NodeList>(*r).nodes;
        return nodes.size() == 2 && nodes[0].state == "up" && nodes[1].state == "up";
      },
      5000ms))
      << d.err("n0") << d.err("n1");
  auto sub = control_request(sock, proto::JobSubmit{"j", 4, 2, "demand", {"/bin/true"}, "/", ""});
  ASSERT_TRUE(sub) << sub.error().message();
  const JobId job = std::get<proto::JobSubmitted>(*sub).job;
  auto ranks = ranks_of({TARGET_PIE, TARGET_PIE, TARGET_PIE, TARGET_PIE});
  ASSERT_TRUE(all_show(ranks, "result 14 "));
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    const std::string path =
        parent + "/n" + std::to_string(i / 2) + "/" + NodeAgent::job_group_name(job);
    ASSERT_TRUE(wait_until([&] { return Group::exists(layout, path); }, 5000ms)) << path;
    auto g = ASSERT_OK(Group::open(layout, path));
    ASSERT_OK_VOID(g.attach(ranks[i]->pid()));
  }
  auto o = run({kCli, "patch", "--job", std::to_string(job), "--replace", "compute=" + kPatch,
                "--socket", sock});
  ASSERT_EQ(o.status, 0) << o.err << d.err("n0") << d.err("n1");
  EXPECT_NE(o.out.find("4 ranks on 2 nodes"), std::string::npos) << o.out;
  std::string which;
  EXPECT_TRUE(all_show(ranks, "result 1014 ", &which)) << which;
  auto line = words(revert_line(o.out));
  ASSERT_GE(line.size(), 5u) << o.out;
  line.erase(line.begin());
  line.insert(line.begin(), kCli);
  line.push_back("--socket");
  line.push_back(sock);
  auto rv = run(line);
  ASSERT_EQ(rv.status, 0) << rv.err;
  EXPECT_TRUE(all_show(ranks, "result 14 ", &which)) << which;
  EXPECT_NE(d.err("n0").find("rank(s) patched"), std::string::npos) << d.err("n0");
}

}  // namespace
