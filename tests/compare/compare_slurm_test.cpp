// dynamos bench compare --schedulers slurm,slurm+dynamos,dynamos on the Slurm test bed it
// brings up itself (one node of one CPU, 384 MiB, swap on zram, Slurm's gang scheduler
// with a 5 s time slice): one stencil pair per scheduler, 11 s of work a job, so that
// each job has a quantum that begins and ends suspended (lost time per switch). Every
// field of every row, all verified, the test bed down after. Root and Slurm; fails
// instead of skipping under CI=true. Overcommit 1.3: on a 256 MiB node at 1.5 a rank of
// the slurm+dynamos pair died once without a RESULT line (not caught in the act; the
// memory controller's OOM kill of demand-paged ranks, docs/compare.md, is the suspect).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/compare/process.hpp"
#include "tests/compare/report_fields.hpp"
#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::compare;
namespace fs = std::filesystem;
using dynamos::gang::test::TempDir;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(BenchCompareSlurm, SchedulersSideBySideEveryRowVerified) {
  GANG_REQUIRE_ROOT();
  for (const char* need : {"/usr/sbin/slurmctld", DYNAMOS_LIB_DIR "/dynamos_spank.so"})
    if (!fs::exists(need)) {
      if (gang::test::in_ci()) FAIL() << need << " is missing (CI=true)";
      GTEST_SKIP() << need << " is missing (scripts/setup.sh installs Slurm and libslurm-dev)";
    }
  TempDir dir;
  const std::string out = dir / "out";
  auto r = run_command(
      {DYNAMOS_BIN_DIR "/dynamos", "bench", "compare", "--workloads", "stencil", "--policies",
       "adaptive", "--schedulers", "slurm,slurm+dynamos,dynamos", "--mem-per-node", "384M",
       "--overcommit", "1.3", "--work", "11", "--calibrate", "2", "--out", out},
      std::chrono::seconds(300));
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_FALSE(r->timed_out) << r->err;
  ASSERT_EQ(r->exit_code, 0) << r->err << r->out;
  // The test bed went down with the comparison.
  EXPECT_FALSE(fs::exists("/run/dynamos-slurm-testbed/slurm.conf"));
  for (const char* row : {"| slurm | stencil | demand |", "| slurm+dynamos | stencil | adaptive |",
                          "| dynamos | stencil | adaptive |"})
    EXPECT_NE(r->out.find(row), std::string::npos) << row << "\n" << r->out;

  auto j = nlohmann::json::parse(slurp(out + "/results.json"), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["config"]["quantum_s"].get<double>(), 5);
  EXPECT_EQ(j["config"]["schedulers"].size(), 3u);
  ASSERT_EQ(j["calibration"].size(), 1u);
  EXPECT_GT(j["calibration"][0]["r0"].get<double>(), 0);
  const auto& runs = j["runs"];
  ASSERT_EQ(runs.size(), 3u);
  const char* scheds[] = {"slurm", "slurm+dynamos", "dynamos"};
  for (std::size_t i = 0; i < 3; ++i) {
    const auto& run = runs[i];
    SCOPED_TRACE(scheds[i]);
    test::expect_run_fields(run);
    for (const char* k : {"scheduler", "switch_gap_s", "switch_gaps", "overlap",
                          "suspended_rss_bytes", "footprint_bytes"})
      EXPECT_TRUE(run.contains(k)) << k;
    EXPECT_EQ(run["scheduler"].get<std::string>(), scheds[i]);
    EXPECT_EQ(run["policy"].get<std::string>(), i == 0 ? "demand" : "adaptive");
    EXPECT_EQ(run["workload"].get<std::string>(), "stencil");
    EXPECT_EQ(run["error"].get<std::string>(), "");
    EXPECT_TRUE(run["verified"].get<bool>());
    // Wall clock from the first submission: longer than either job's timed part.
    for (const auto& job : run["jobs"])
      EXPECT_GT(run["makespan_s"].get<double>(), job["seconds"].get<double>());
    ASSERT_TRUE(run["lost_s_per_switch"].is_number()) << run.dump();
    EXPECT_LT(run["lost_s_per_switch"].get<double>(), 5.5);
    // DynAMOS switches at every quantum; Slurm's gang scheduler does not always hand the
    // CPU over within 11 s of work (seen once: one suspension, no resume seen as a
    // switch), so there a gap is checked where one was seen.
    if (i == 2) {
      EXPECT_GE(run["switch_gaps"].get<double>(), 1);
    }
    if (run["switch_gaps"].get<double>() >= 1) {
      ASSERT_TRUE(run["switch_gap_s"].is_number()) << run.dump();
      EXPECT_GT(run["switch_gap_s"].get<double>(), 0);
      EXPECT_LT(run["switch_gap_s"].get<double>(), 5);
    } else {
      EXPECT_TRUE(run["switch_gap_s"].is_null()) << run.dump();
    }
    const double overlap = run["overlap"].get<double>();
    EXPECT_GE(overlap, 0);
    EXPECT_LT(overlap, 0.5);
    EXPECT_GE(run["major_faults"].get<double>(), 0);
    EXPECT_EQ(run["oom_kills"].get<int>(), 0) << "counted on this machine during the run";
    ASSERT_TRUE(run["suspended_rss_bytes"].is_number()) << run.dump();
    EXPECT_GT(run["suspended_rss_bytes"].get<double>(), 0);
    EXPECT_LE(run["suspended_rss_bytes"].get<double>(), run["footprint_bytes"].get<double>() * 1.3);
    ASSERT_EQ(run["jobs"].size(), 2u);
    for (const auto& job : run["jobs"])
      EXPECT_TRUE(job["verified"].get<bool>()) << job.dump();
  }
  for (const char* f : {"results.md", "makespan.png", "lost-per-switch.png"})
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
}

// Options that do not fit the Slurm test bed are refused before anything starts: a clear
// message naming the option, exit 2, nothing written.
TEST(BenchCompareSlurm, OptionsThatDoNotFitAreRefusedBeforeAnythingStarts) {
  TempDir dir;
  const std::string out = dir / "out";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--schedulers", "slurm,pbs"}, "unknown scheduler 'pbs' (slurm, slurm+dynamos, dynamos)"},
      {{"--schedulers", "slurm,slurm"}, "scheduler 'slurm' given twice"},
      {{"--schedulers", "slurm", "--quantum", "2s"}, "at least 5s"},
      {{"--schedulers", "slurm", "--quantum", "5500ms"}, "whole seconds"},
      {{"--schedulers", "slurm+dynamos", "--nodes", "3"}, "--nodes does not apply"},
      {{"--schedulers", "slurm", "--cyclesteal", "on"}, "--cyclesteal does not apply"},
      {{"--schedulers", "slurm", "--policies", "sequential"}, "sequential does not apply"}};
  for (const auto& [extra, message] : cases) {
    std::vector<std::string> argv{
        DYNAMOS_BIN_DIR "/dynamos", "bench", "compare", "--workloads", "stencil", "--out", out};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto r = run_command(argv, std::chrono::seconds(30));
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->exit_code, 2) << shell_join(argv) << "\n" << r->err;
    EXPECT_NE(r->err.find(message), std::string::npos) << shell_join(argv) << "\n" << r->err;
    EXPECT_FALSE(fs::exists(out)) << shell_join(argv);
  }
}
