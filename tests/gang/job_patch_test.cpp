// The patch/revert node ops' arguments and replies (gang/job_patch.hpp): what the CLI
// sends is what the agent reads, and bad input is refused with a clear reason.
#include "gang/job_patch.hpp"

#include <gtest/gtest.h>

using namespace dynamos;
using namespace dynamos::gang::jobpatch;

namespace {

std::vector<std::string> v(std::initializer_list<const char*> l) {
  return {l.begin(), l.end()};
}

TEST(JobPatchArgs, PatchRoundTrip) {
  PatchArgs a;
  a.job = 42;
  a.mode = core::SafetyMode::quiescent;
  a.timeout = std::chrono::milliseconds(250);
  a.replacements.push_back(*core::parse_replacement("compute=/opt/p/fix.so"));
  a.replacements.push_back(*core::parse_replacement("lib_compute=/opt/p/fix.so:lib_v2"));
  auto b = parse_patch_args(to_args(a));
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(b->job, 42u);
  EXPECT_EQ(b->mode, core::SafetyMode::quiescent);
  EXPECT_EQ(b->timeout.count(), 250);
  ASSERT_EQ(b->replacements.size(), 2u);
  EXPECT_EQ(b->replacements[0].symbol, "compute");
  EXPECT_EQ(b->replacements[0].new_symbol, "compute");
  EXPECT_EQ(b->replacements[1].object, "/opt/p/fix.so");
  EXPECT_EQ(b->replacements[1].new_symbol, "lib_v2");
}

TEST(JobPatchArgs, PatchRefusals) {
  struct Case {
    std::vector<std::string> args;
    const char* message;
  } cases[] = {
      {v({}), "first argument must be a job id"},
      {v({"x", "--replace", "f=/a.so"}), "not 'x'"},
      {v({"0", "--replace", "f=/a.so"}), "must be a job id"},
      {v({"3"}), "nothing to do"},
      {v({"3", "--replace", "f=rel.so"}), "absolute path"},
      {v({"3", "--replace", "nonsense"}), "is not SYM=PATCH.so"},
      {v({"3", "--replace"}), "needs a value"},
      {v({"3", "--mode", "later", "--replace", "f=/a.so"}), "unknown safety mode"},
      {v({"3", "--timeout-ms", "2000", "--replace", "f=/a.so"}), "at most 500"},
      {v({"3", "--timeout-ms", "-1", "--replace", "f=/a.so"}), "must be positive"},
      {v({"3", "--frobnicate", "1"}), "unknown argument '--frobnicate'"},
  };
  for (const auto& c : cases) {
    auto r = parse_patch_args(c.args);
    ASSERT_FALSE(r) << c.message;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_NE(r.error().message().find(c.message), std::string::npos) << r.error().message();
  }
}

TEST(JobPatchArgs, RevertRoundTripAndRefusals) {
  RevertArgs a{7, core::SafetyMode::drain, {{0, 3}, {1234, 5}}};
  auto b = parse_revert_args(to_args(a));
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(b->job, 7u);
  ASSERT_EQ(b->targets.size(), 2u);
  EXPECT_EQ(b->targets[0].pid, 0);
  EXPECT_EQ(b->targets[0].update, 3u);
  EXPECT_EQ(b->targets[1].pid, 1234);
  EXPECT_EQ(b->targets[1].update, 5u);
  for (auto bad : {v({"7"}), v({"7", "0"}), v({"7", "x"}), v({"7", ":3"}), v({"7", "12:"}),
                   v({"7", "--mode"})})
    EXPECT_FALSE(parse_revert_args(bad)) << bad.back();
}

TEST(JobPatchReply, JsonRoundTripAndGarbage) {
  NodeUpdates u{"node \"a\"", 9, 12.5, {{100, 1, 0.25, 6.5}, {101, 2, 0.5, 7}}};
  auto json = to_json(u);
  auto back = parse_node_updates(json);
  ASSERT_TRUE(back) << back.error().message() << " in " << json;
  EXPECT_EQ(back->node, "node \"a\"");
  EXPECT_EQ(back->job, 9u);
  EXPECT_DOUBLE_EQ(back->took_ms, 12.5);
  ASSERT_EQ(back->ranks.size(), 2u);
  EXPECT_EQ(back->ranks[1].pid, 101);
  EXPECT_EQ(back->ranks[1].update, 2u);
  EXPECT_DOUBLE_EQ(back->ranks[0].stopped_ms, 0.25);
  EXPECT_TRUE(parse_node_updates(to_json({"n", 1, 0, {}})));
  for (const char* bad :
       {"", "ok", "{\"node\":\"n\"}", "{\"job\":1,\"took_ms\":1,\"ranks\":[{\"pid\":1}]}",
        "{\"job\":1,\"took_ms\":1,\"ranks\":[{\"pid\":1,\"update\":2,\"stopped_ms\":1,\"took_ms\":"
        "1}"})
    EXPECT_FALSE(parse_node_updates(bad)) << bad;
}

TEST(JobPatchReply, FrozenRefusalIsRecognised) {
  EXPECT_TRUE(is_frozen_refusal(frozen_refusal(3, "n1")));
  EXPECT_EQ(frozen_refusal(3, "n1"), "job 3 is frozen on node n1 (not its time slice)");
  EXPECT_FALSE(is_frozen_refusal("rank 12 of job 3 on node n1: no such process"));
}

}  // namespace
