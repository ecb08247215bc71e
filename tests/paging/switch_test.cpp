// The paging extension on a small node: a 160 MiB memory cgroup, two dynamos-sweep jobs
// of 96 MiB each, the extension loaded through core's extension host. Checks through
// pagemap what each policy pages out, that an adaptive switch-in brings the incoming
// working set back into memory, that the jobs' results verify, and the awkward cases:
// a job exiting during a switch, no recorded working set, a node without swap, a
// policy change at runtime.
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "bench/paging/node.hpp"
#include "core/extension_host.hpp"
#include "kernelside/memory.hpp"
#include "tests/kernelside/support.hpp"

using namespace dynamos;
using namespace dynamos::kernelside;
using namespace dynamos::kernelside::test;
using dynamos::paging_bench::Job;
using dynamos::paging_bench::JobSpec;
using dynamos::paging_bench::TempDir;

namespace {

constexpr uint64_t MiB = 1ull << 20;
constexpr uint64_t kNodeMemory = 160 * MiB;
constexpr uint64_t kJobMemory = 96 * MiB;

double json_number(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1e300;
  return std::strtod(json.c_str() + at + key.size() + 3, nullptr);
}
std::string json_text(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":\"");
  if (at == std::string::npos) return "<no " + key + ">";
  at += key.size() + 4;
  return json.substr(at, json.find('"', at) - at);
}

// Resident and swapped pages of a process's anonymous memory.
PageCounts anon_pages(pid_t pid) {
  auto maps = read_maps(pid);
  if (!maps) return {};
  auto pm = Pagemap::open(pid);
  if (!pm) return {};
  auto c = pm->count(anonymous_ranges(*maps));
  return c ? *c : PageCounts{};
}

class PagingSwitch : public ::testing::Test {
 protected:
  void SetUp() override {
    KERNELSIDE_REQUIRE_ROOT();
    auto l = Layout::detect();
    ASSERT_TRUE(l) << l.error().message();
    layout_ = *l;
    sweep_stale_groups(layout_);
    sweep_stale_swap();
    swap_ = std::make_unique<SwapGuard>();
    ASSERT_TRUE(swap_->ok()) << "setting up swap on zram failed: " << swap_->output();
    auto h = core::ExtensionHost::create();
    ASSERT_TRUE(h) << h.error().message();
    host_ = std::move(*h);
    auto loaded = host_->load(PAGING_EXTENSION);
    ASSERT_TRUE(loaded) << loaded.error().message();
    auto t = TempDir::create("dynamos-test-paging");
    ASSERT_TRUE(t) << t.error().message();
    tmp_.emplace(std::move(*t));
    auto g = Group::create(layout_, unique_group_name(), {Controller::memory, Controller::freezer});
    ASSERT_TRUE(g) << g.error().message();
    node_ = std::make_unique<ScopedGroup>(std::move(*g));
    auto m = (*node_)->set_memory_max(kNodeMemory);
    ASSERT_TRUE(m) << m.error().message();
  }

  void TearDown() override {
    jobs_.clear();  // killed and reaped before their groups go
    node_.reset();
    host_.reset();
    swap_.reset();
  }

  Job& start(const std::string& name, double seconds, uint64_t seed) {
    auto g = (*node_)->create_child(name);
    EXPECT_TRUE(g) << g.error().message();
    auto j = Job::start(JobSpec{SWEEP_PROGRAM, kJobMemory, seconds, seed}, *g, tmp_->path(), name);
    EXPECT_TRUE(j) << j.error().message();
    jobs_.push_back(std::move(*j));
    return *jobs_.back();
  }

  // The state before a switch from `out` to `in`: both running, `out` frozen.
  void ready_to_switch(Job& out, Job& in) {
    ASSERT_TRUE(out.wait_running(std::chrono::seconds(30)));
    ASSERT_TRUE(in.wait_running(std::chrono::seconds(30)));
    ASSERT_TRUE(out.group().freeze());
  }

  core::Subject subject(Job& job, uint64_t id, const std::string& policy) {
    core::Subject s;
    s.id = id;
    s.name = job.name();
    s.cgroup = job.group().path();
    s.pids = {job.pid()};
    s.policy = policy;
    s.attrs = {{"node_cgroup", (*node_)->path()}};
    return s;
  }

  std::string must(Result<std::string> r, const char* what) {
    EXPECT_TRUE(r) << what << " failed: " << (r ? "" : r.error().message());
    return r ? *r : std::string();
  }

  // Runs `job` for `seconds`, ticking the extension as the node agent would.
  void run(Job& job, uint64_t id, const std::string& policy, double seconds) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      must(host_->tick("paging", subject(job, id, policy)), "tick");
    }
  }

  // Lifts the node's limit, thaws the jobs and checks that their results verify.
  void expect_verified() {
    ASSERT_TRUE((*node_)->set_memory_max(std::nullopt));
    for (auto& j : jobs_) {
      ASSERT_TRUE(j->group().thaw());
      auto r = j->finish(std::chrono::seconds(60));
      ASSERT_TRUE(r) << "job " << j->name() << ": " << r.error().message();
      EXPECT_TRUE(r->boolean("verified").value_or(false))
          << "job " << j->name() << " computed a wrong result after the switches";
    }
  }

  Layout layout_;
  std::unique_ptr<SwapGuard> swap_;
  std::unique_ptr<core::ExtensionHost> host_;
  std::optional<TempDir> tmp_;
  std::unique_ptr<ScopedGroup> node_;
  std::vector<std::unique_ptr<Job>> jobs_;
};

struct Observed {
  std::string report;            // switch_in's report for the switch B -> A
  PageCounts b_before, b_after;  // the outgoing job
  uint64_t a_charged = 0;        // the incoming job's cgroup memory after switch_in
  std::string last;              // the completed record after A's first second
};

class PagingPolicies : public PagingSwitch, public ::testing::WithParamInterface<const char*> {
 protected:
  // A runs, is switched out; B starts and runs 1 s; then B -> A under the policy.
  Observed two_jobs(const std::string& policy) {
    Observed o;
    // A small reserve: on a 160 MiB node the default (32 MiB) plus a 96 MiB working set
    // leaves selective nothing to keep of the outgoing job, and the test wants to see
    // that it pages out only part of it.
    EXPECT_TRUE(host_->set("paging.reserve=4M"));
    Job& a = start("a", 4, 1);
    auto r = a.wait_running(std::chrono::seconds(30));
    EXPECT_TRUE(r) << r.error().message();
    EXPECT_TRUE(a.group().freeze());
    must(host_->switch_out("paging", subject(a, 1, policy)), "switch_out a");
    Job& b = start("b", 4, 2);
    must(host_->switch_in("paging", subject(b, 2, policy)), "switch_in b");
    r = b.wait_running(std::chrono::seconds(30));
    EXPECT_TRUE(r) << r.error().message();
    run(b, 2, policy, 1.0);

    EXPECT_TRUE(b.group().freeze());
    o.b_before = anon_pages(b.pid());
    must(host_->switch_out("paging", subject(b, 2, policy)), "switch_out b");
    o.report = must(host_->switch_in("paging", subject(a, 1, policy)), "switch_in a");
    o.b_after = anon_pages(b.pid());
    o.a_charged = a.group().memory_current().value_or(0);
    EXPECT_TRUE(a.group().thaw());
    run(a, 1, policy, 1.3);
    o.last = must(host_->call("paging", "last", "1"), "call last");
    return o;
  }
};

TEST_P(PagingPolicies, PagesAsThePolicySaysAndJobsStayCorrect) {
  const std::string policy = GetParam();
  Observed o = two_jobs(policy);
  SCOPED_TRACE("switch_in report: " + o.report);
  const double page = static_cast<double>(page_size());
  const double job_pages = kJobMemory / page;
  double pages_out = json_number(o.report, "pages_out");
  double pages_in = json_number(o.report, "pages_in");
  EXPECT_EQ(json_text(o.report, "policy"), policy);
  EXPECT_EQ(json_text(o.report, "effective_policy"), policy);
  EXPECT_GE(json_number(o.report, "switch_s"), 0.0);
  EXPECT_GE(json_number(o.last, "majflt_first_s"), 0.0)
      << "the record lacks the incoming job's major faults after its first second: " << o.last;
  ASSERT_GT(o.b_before.present, job_pages / 2) << "job b should have been resident before";

  if (policy == "demand") {
    EXPECT_EQ(pages_out, 0);
    EXPECT_EQ(pages_in, 0);
    EXPECT_GE(o.b_after.present, o.b_before.present * 0.95) << "demand must not page out";
  } else if (policy == "aggressive") {
    EXPECT_GE(pages_out, o.b_before.present * 0.9);
    EXPECT_LT(o.b_after.present, job_pages * 0.05)
        << "aggressive left " << o.b_after.present << " pages of the outgoing job resident";
    EXPECT_GE(o.b_after.swapped, o.b_before.swapped + pages_out * 0.9);
  } else if (policy == "selective") {
    EXPECT_GT(pages_out, 0) << "a 96 MiB job coming back into a full 160 MiB node needs room";
    EXPECT_LT(pages_out, o.b_before.present) << "selective paged out all of the outgoing job";
    EXPECT_GT(o.b_after.present, 0u);
    EXPECT_LE(o.b_after.present, o.b_before.present - pages_out * 0.9);
    EXPECT_EQ(pages_in, 0);
  } else if (policy == "adaptive") {
    EXPECT_GT(pages_in, job_pages * 0.5) << "adaptive should prefetch the recorded working set";
    EXPECT_GE(static_cast<double>(o.a_charged), pages_in * page * 0.8)
        << "the prefetched working set is not in the incoming job's memory";
    EXPECT_LT(json_number(o.last, "majflt_first_s"), pages_in * 0.2)
        << "after an adaptive switch-in the working set should not fault back in: " << o.last;
    EXPECT_GT(pages_out, 0);
  }
  expect_verified();
}

INSTANTIATE_TEST_SUITE_P(Policy, PagingPolicies,
                         ::testing::Values("demand", "selective", "aggressive", "adaptive"),
                         [](const auto& info) { return std::string(info.param); });

TEST_F(PagingSwitch, JobExitingDuringTheSwitchIsReportedNotFatal) {
  Job& a = start("a", 30, 1);
  Job& b = start("b", 30, 2);
  ASSERT_NO_FATAL_FAILURE(ready_to_switch(a, b));
  must(host_->switch_out("paging", subject(a, 1, "aggressive")), "switch_out a");
  a.kill();  // a's processes exit between switch_out and switch_in
  std::string in = must(host_->switch_in("paging", subject(b, 2, "aggressive")), "switch_in b");
  EXPECT_GE(json_number(in, "processes_gone"), 1) << in;
  EXPECT_EQ(json_number(in, "pages_out"), 0) << in;
  // And a switch_out of a job that is already gone.
  std::string out = must(host_->switch_out("paging", subject(a, 1, "aggressive")), "switch_out a");
  EXPECT_EQ(json_number(out, "processes_gone"), 1) << out;
  EXPECT_EQ(json_number(out, "ws_pages"), 0) << out;
  must(host_->detach("paging", subject(a, 1, "")), "detach a");
}

TEST_F(PagingSwitch, NoRecordedWorkingSetYet) {
  Job& b = start("b", 30, 2);
  ASSERT_TRUE(b.wait_running(std::chrono::seconds(30)));
  std::string in = must(host_->switch_in("paging", subject(b, 2, "adaptive")), "switch_in b");
  EXPECT_EQ(in.find("\"ws_recorded\":false") != std::string::npos, true) << in;
  EXPECT_EQ(json_number(in, "pages_in"), 0) << in;
  EXPECT_NE(json_text(in, "warning").find("no working set recorded"), std::string::npos) << in;
}

TEST_F(PagingSwitch, NodeWithoutSwapActsAsDemandWithAWarning) {
  // The node may not swap: memory+swap limited to the memory limit.
  auto s = (*node_)->set_swap_max(0);
  ASSERT_TRUE(s) << s.error().message();
  Job& a = start("a", 30, 1);
  ASSERT_TRUE(a.wait_running(std::chrono::seconds(30)));
  ASSERT_TRUE(a.group().freeze());
  must(host_->switch_out("paging", subject(a, 1, "aggressive")), "switch_out a");
  Job& b = start("b", 30, 2);
  std::string in = must(host_->switch_in("paging", subject(b, 2, "aggressive")), "switch_in b");
  EXPECT_EQ(json_text(in, "effective_policy"), "demand") << in;
  EXPECT_NE(json_text(in, "warning").find("no swap"), std::string::npos) << in;
  EXPECT_EQ(json_number(in, "pages_out"), 0) << in;
  PageCounts a_pages = anon_pages(a.pid());
  EXPECT_EQ(a_pages.swapped, 0u) << "nothing may be paged out of a node without swap";
}

TEST_F(PagingSwitch, PolicyChangesBetweenSwitches) {
  Job& a = start("a", 30, 1);
  Job& b = start("b", 30, 2);
  ASSERT_NO_FATAL_FAILURE(ready_to_switch(a, b));
  must(host_->switch_out("paging", subject(a, 1, "demand")), "switch_out");
  std::string r1 = must(host_->switch_in("paging", subject(b, 2, "demand")), "switch_in");
  EXPECT_EQ(json_text(r1, "policy"), "demand");
  ASSERT_TRUE(b.group().freeze());
  must(host_->switch_out("paging", subject(b, 2, "aggressive")), "switch_out");
  std::string r2 = must(host_->switch_in("paging", subject(a, 1, "aggressive")), "switch_in");
  EXPECT_EQ(json_text(r2, "policy"), "aggressive");
  EXPECT_GT(json_number(r2, "pages_out"), 0) << r2;
  // No policy named: the `policy` tunable, changed at runtime.
  auto set = host_->set("paging.policy=selective");
  ASSERT_TRUE(set) << set.error().message();
  ASSERT_TRUE(a.group().freeze());
  must(host_->switch_out("paging", subject(a, 1, "")), "switch_out");
  std::string r3 = must(host_->switch_in("paging", subject(b, 2, "")), "switch_in");
  EXPECT_EQ(json_text(r3, "policy"), "selective") << r3;
  // An unknown policy is refused with a message naming it.
  auto bad = host_->switch_in("paging", subject(b, 2, "lru"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("unknown policy 'lru'"), std::string::npos)
      << bad.error().message();
  std::string all = must(host_->call("paging", "switches"), "call switches");
  EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 3) << all;
}

TEST_F(PagingSwitch, TunablesAreRegistered) {
  auto info = host_->info("paging");
  ASSERT_TRUE(info) << info.error().message();
  std::vector<std::string> names;
  for (const auto& t : info->tunables)
    names.push_back(t.spec.name);
  for (const char* n : {"policy", "prefetch_budget", "pageout_batch", "background_write_rate",
                        "ws_sample_period", "reserve"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << "no tunable " << n;
  EXPECT_TRUE(host_->set("paging.prefetch_budget=64M"));
  auto bad = host_->set("paging.pageout_batch=1");
  EXPECT_FALSE(bad) << "a page-out batch below 4KiB must be refused";
}

}  // namespace

// Issue 18: an upgrade in place keeps the working sets recorded by the old build: the new
// build prefetches job A's at A's next switch-in.
TEST_F(PagingSwitch, UpgradeInPlaceCarriesTheRecordedWorkingSets) {
  ASSERT_TRUE(host_->set("paging.reserve=4M"));
  Job& a = start("a", 30, 1);
  ASSERT_TRUE(a.wait_running(std::chrono::seconds(30)));
  ASSERT_TRUE(a.group().freeze());
  std::string out_a = must(host_->switch_out("paging", subject(a, 1, "adaptive")), "switch_out a");
  ASSERT_GT(json_number(out_a, "ws_pages"), 0) << out_a;
  Job& b = start("b", 30, 2);
  // Aggressive: all of A leaves memory, so that A's next switch-in has pages to prefetch.
  must(host_->switch_in("paging", subject(b, 2, "aggressive")), "switch_in b");
  ASSERT_TRUE(b.wait_running(std::chrono::seconds(30)));
  run(b, 2, "aggressive", 0.5);
  ASSERT_TRUE(b.group().freeze());
  must(host_->switch_out("paging", subject(b, 2, "adaptive")), "switch_out b");

  auto up = host_->upgrade("paging", PAGING_EXTENSION);
  ASSERT_TRUE(up) << "upgrade: " << up.error().message();
  EXPECT_TRUE(up->state_carried) << "the paging extension dropped its state at the upgrade";
  std::string status = must(host_->call("paging", "status"), "call status");
  EXPECT_NE(status.find("\"id\":1,\"name\":\"a\""), std::string::npos) << status;

  std::string in = must(host_->switch_in("paging", subject(a, 1, "adaptive")), "switch_in a");
  EXPECT_NE(in.find("\"ws_recorded\":true"), std::string::npos) << in;
  EXPECT_GT(json_number(in, "pages_in"), 0) << "the new build prefetched nothing: " << in;
  EXPECT_EQ(json_number(in, "switch"), 2) << "the switch count did not carry over: " << in;
  std::string all = must(host_->call("paging", "switches"), "call switches");
  EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 2) << all;
}
