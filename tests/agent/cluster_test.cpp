// Node agents under a real coordinator (in-process gangd, loopback TCP, real cgroups):
// two jobs on the same 4 virtual nodes alternate as gangs, every rank of a job frozen
// and thawed together, the paging extension running at each switch. Prints the switch
// latency figures of docs/gang.md.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/extension_host.hpp"
#include "gang/dynamosd/node_agent.hpp"
#include "testkit/cluster_harness.hpp"
#include "tests/kernelside/support.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace dynamos::kernelside;
using namespace dynamos::kernelside::test;
using namespace std::chrono_literals;

namespace {

constexpr int kNodes = 4;

Secret test_secret() {
  std::vector<std::uint8_t> b(32, 'a');
  return Secret::from_bytes(b);
}

void spin(Shared* s) {
  for (;;)
    s->counter.fetch_add(1, std::memory_order_relaxed);
}

class TreeGuard {
 public:
  TreeGuard(Layout layout, std::string parent)
      : layout_(std::move(layout)), parent_(std::move(parent)) {}
  ~TreeGuard() {
    if (!Group::exists(layout_, parent_)) return;
    if (auto g = Group::open(layout_, parent_)) (void)g->remove_tree(Evict::kill);
  }

 private:
  Layout layout_;
  std::string parent_;
};

double ms(Nanos n) {
  return std::chrono::duration<double, std::milli>(n).count();
}

TEST(AgentCluster, TwoJobsAlternateAsGangsOnFourNodes) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = ASSERT_OK(Layout::detect());
  sweep_stale_groups(layout);
  // AGENT_FREEZER=v2: the freezer served by cgroup v2 (for the figures of docs/gang.md).
  if (const char* f = std::getenv("AGENT_FREEZER"); f && std::string(f) == "v2")
    layout = layout.prefer_v2({Controller::freezer});
  std::string parent = unique_group_name();
  auto host = ASSERT_OK(core::ExtensionHost::create());
  auto paging = ASSERT_OK(host->load(DYNAMOS_LIB_DIR "/libdynamos_ext_paging.so"));

  // One rank of each job per node: counters[node][job index].
  std::vector<std::unique_ptr<SharedMemory>> counters;
  std::vector<std::unique_ptr<Child>> ranks;
  for (int i = 0; i < 2 * kNodes; ++i) {
    counters.push_back(std::make_unique<SharedMemory>());
    Shared* s = counters.back()->get();
    ranks.push_back(std::make_unique<Child>([s] { spin(s); }));
  }
  TreeGuard guard(layout, parent);

  std::vector<std::unique_ptr<NodeAgent>> nodes;
  for (int i = 0; i < kNodes; ++i) {
    NodeAgentConfig cfg;
    cfg.node = "n" + std::to_string(i);
    cfg.cgroup_parent = parent;
    cfg.layout = layout;
    cfg.extensions = host.get();
    cfg.paging_extension = paging.name;
    cfg.log = [](const std::string&) {};
    nodes.push_back(ASSERT_OK(NodeAgent::create(cfg)));
  }

  // Each agent on its own io thread, as dynamosd runs one process per node.
  std::vector<std::unique_ptr<dynamos::gang::test::AgentThread>> agents;
  auto stop_agents = [&] {
    for (auto& a : agents)
      a->stop();
  };
  struct StopAgents {
    std::function<void()> f;
    ~StopAgents() { f(); }
  } stop_guard{stop_agents};

  {
    dynamos::gang::test::Cluster c;
    CoordinatorConfig cc;
    for (int i = 0; i < kNodes; ++i)
      cc.hosts.push_back({"n" + std::to_string(i), 1, 0});  // one slot: the jobs share no row
    cc.secret = test_secret();
    cc.quantum = 150ms;
    cc.heartbeat = 200ms;
    cc.log = [](const std::string&) {};
    ASSERT_TRUE(c.start_coordinator(cc).has_value());
    auto port = c.call([&] { return c.coordinator->port(); });
    for (int i = 0; i < kNodes; ++i)
      agents.push_back(std::make_unique<dynamos::gang::test::AgentThread>(
          port, "n" + std::to_string(i), test_secret(), *nodes[i]));
    ASSERT_TRUE(c.wait_for([&] { return c.coordinator->agents_connected() == kNodes; }))
        << "agents did not connect";

    proto::JobSubmit js{"a", kNodes, kNodes, "demand", {"/bin/true"}, "/", ""};
    auto ja = c.call([&] { return c.coordinator->submit(0, js); });
    js.name = "b";
    auto jb = c.call([&] { return c.coordinator->submit(0, js); });
    ASSERT_TRUE(ja && jb);
    JobId job[2] = {*ja, *jb};
    // The launch path will attach ranks; here the test does, once the job is assigned.
    for (int i = 0; i < kNodes; ++i)
      for (int k = 0; k < 2; ++k) {
        ASSERT_TRUE(wait_until(
            [&] {
              auto j = nodes[i]->jobs();
              return std::find(j.begin(), j.end(), job[k]) != j.end();
            },
            5000ms))
            << "job " << job[k] << " never assigned to n" << i;
        ASSERT_OK_VOID(nodes[i]->attach(job[k], ranks[2 * i + k]->pid()));
      }

    // Sample during the alternation: at every sample, the ranks of one job all run or
    // are all frozen, never a mix across nodes (outside the moment of a switch).
    ASSERT_TRUE(c.wait_for([&] { return c.coordinator->rounds().size() >= 3; }, 5000ms));
    int consistent = 0, samples = 0;
    for (int s = 0; s < 12; ++s) {
      std::this_thread::sleep_for(37ms);
      bool frozen[2][kNodes];
      for (int k = 0; k < 2; ++k)
        for (int i = 0; i < kNodes; ++i)
          frozen[k][i] = nodes[i]->frozen(job[k]).value_or(false);
      ++samples;
      bool ok = true;
      for (int k = 0; k < 2; ++k)
        for (int i = 1; i < kNodes; ++i)
          ok = ok && frozen[k][i] == frozen[k][0];
      ok = ok && frozen[0][0] != frozen[1][0];
      consistent += ok;
    }
    // A sample may fall inside a switch (a few ms of 150, tens of ms at worst on a
    // loaded machine): allow a few. Mixed states that last are a gang broken apart.
    EXPECT_GE(consistent, samples - 3) << "the ranks of a job were not frozen together";

    ASSERT_TRUE(c.wait_for([&] { return c.coordinator->rounds().size() >= 16; }, 10000ms));
    auto rounds = c.call([&] { return c.coordinator->rounds(); });
    std::vector<double> total, decision, slowest, skew;
    // A node whose freeze is starved past the acknowledgement timeout (seen once in
    // ~30 runs on a machine saturated by other builds) fails that one round; the
    // coordinator goes on. More than one such round is a fault of the agent.
    int failed_rounds = 0;
    for (const auto& r : rounds) {
      if (r.failed) {
        ++failed_rounds;
        std::printf("[ note     ] round %lu: %s\n", static_cast<unsigned long>(r.round),
                    r.errors.empty() ? "failed" : r.errors[0].c_str());
      }
      if (r.round <= 2 || r.failed) continue;  // the first rounds start the jobs
      total.push_back(ms(r.total - r.lead));
      decision.push_back(ms(r.total));
      slowest.push_back(ms(r.max_switch_duration));
      skew.push_back(ms(r.skew));
    }
    auto report = [](const char* what, std::vector<double> v) {
      std::sort(v.begin(), v.end());
      std::printf("[ figures  ] %s: p50 %.3f ms, max %.3f ms over %zu rounds\n", what,
                  v[v.size() / 2], v.back(), v.size());
      return v[v.size() / 2];
    };
    EXPECT_LE(failed_rounds, 1) << "nodes failed to acknowledge switches in " << failed_rounds
                                << " of " << rounds.size() << " rounds";
    ASSERT_FALSE(total.empty());
    double p50 = report("deadline to last SwitchAck (all incoming ranks thawed)", total);
    report("decision to last SwitchAck (send + lead + switch)", decision);
    report("slowest node's switch (freeze + paging + thaw)", slowest);
    report("skew (first to last node switching)", skew);
    std::vector<double> freeze, paging_ms, thaw, node_total;
    for (auto& n : nodes)
      for (const auto& rec : n->switch_history()) {
        if (rec.round <= 2) continue;
        freeze.push_back(ms(rec.freeze));
        paging_ms.push_back(ms(rec.paging));
        thaw.push_back(ms(rec.thaw));
        node_total.push_back(ms(rec.total));
      }
    report("per node: freeze outgoing", freeze);
    report("per node: paging switch_out + switch_in", paging_ms);
    report("per node: thaw incoming", thaw);
    report("per node: whole switch", node_total);
    // A sanity bound, not the target (10 ms): CI shares this machine with builds.
    EXPECT_LT(p50, 100.0) << "switch latency far above the 10 ms target";
    // Every node ran the paging extension at its switches.
    for (int i = 0; i < kNodes; ++i) {
      auto rec = nodes[i]->last_switch();
      ASSERT_TRUE(rec.has_value());
      EXPECT_NE(rec->paging_report.find("\"in_job\""), std::string::npos) << "n" << i;
    }
    // gangd goes away: after three silent heartbeats every agent thaws its jobs, so
    // both jobs' ranks run again on every node.
    c.stop_coordinator();
    for (int i = 0; i < 2 * kNodes; ++i) {
      EXPECT_TRUE(wait_until(
          [&] {
            auto before = (*counters[i])->counter.load();
            std::this_thread::sleep_for(20ms);
            return (*counters[i])->counter.load() > before;
          },
          3000ms))
          << "rank " << i << " stays frozen after the coordinator was lost";
    }
    stop_agents();
    c.shutdown();
  }
  for (auto& n : nodes)
    ASSERT_OK_VOID(n->remove_all());
  EXPECT_FALSE(Group::exists(layout, parent)) << "cgroups left behind";
}

}  // namespace
