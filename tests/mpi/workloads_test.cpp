// The MPI workloads and dynamos-sweep: each verifies its own result at two rank counts,
// a deliberately corrupted run is caught, and the progress file advances while it runs.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "bench/workload/progress.hpp"
#include "bench/workload/result_line.hpp"
#include "tests/mpi/command.hpp"

using namespace dynamos;
using namespace dynamos::test;
using namespace dynamos::workload;

namespace {

const std::string kBin = DYNAMOS_BIN_DIR;

std::string program(const std::string& workload) {
  return workload == "sweep" ? kBin + "/dynamos-sweep" : kBin + "/dynamos-mpi-" + workload;
}

std::vector<std::string> launch(const std::string& workload, int ranks,
                                std::vector<std::string> args) {
  std::vector<std::string> argv;
  if (workload != "sweep") argv = mpirun(ranks);
  argv.push_back(program(workload));
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv)
    s += (s.empty() ? "" : " ") + a;
  return s;
}

// Parses the RESULT line or fails the test with the program's output.
ResultFields result_of(const CommandResult& r, const std::string& what) {
  auto f = find_result_line(r.stdout_text);
  EXPECT_TRUE(f.has_value()) << what << ": " << (f ? "" : f.error().message()) << "\noutput:\n"
                             << r.output;
  return f ? *f : ResultFields{};
}

double num(const ResultFields& f, const std::string& key) {
  auto v = f.number(key);
  EXPECT_TRUE(v.has_value()) << (v ? "" : v.error().message());
  return v ? *v : -1;
}

class MpiAvailable : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = run_command({"mpirun", "--version"}, 20);
    if (r.exit_code != 0) {
      if (in_ci()) FAIL() << "mpirun is not available (install openmpi-bin): " << r.output;
      GTEST_SKIP() << "mpirun is not available (install openmpi-bin)";
    }
  }
};

struct Case {
  std::string workload;
  int ranks;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.workload << " on " << c.ranks << " rank(s)";
}

class Verifies : public MpiAvailable, public ::testing::WithParamInterface<Case> {};

TEST_P(Verifies, ItsOwnResult) {
  const Case& c = GetParam();
  auto argv = launch(c.workload, c.ranks, {"--mem", "512K", "--iterations", "4", "--quiet"});
  auto r = run_command(argv, 60, mpi_env());
  ASSERT_FALSE(r.timed_out) << joined(argv) << " did not finish in 60 s:\n" << r.output;
  EXPECT_EQ(r.exit_code, 0) << joined(argv) << " failed:\n" << r.output;
  auto f = result_of(r, joined(argv));
  EXPECT_EQ(f.text("workload").value_or(""), c.workload);
  EXPECT_EQ(f.boolean("verified").value_or(false), true) << r.output;
  EXPECT_EQ(num(f, "ranks"), c.ranks);
  EXPECT_EQ(num(f, "iterations"), 4);
  EXPECT_EQ(num(f, "footprint"), 512.0 * 1024 * c.ranks);
  EXPECT_GT(num(f, "rate"), 0);
  EXPECT_GT(num(f, "seconds"), 0);
  EXPECT_TRUE(f.has("checksum") && f.has("residual")) << r.stdout_text;
}

class CatchesCorruption : public MpiAvailable, public ::testing::WithParamInterface<Case> {};

TEST_P(CatchesCorruption, AndFails) {
  const Case& c = GetParam();
  auto argv = launch(c.workload, c.ranks,
                     {"--mem", "512K", "--iterations", "4", "--quiet", "--inject-error"});
  auto r = run_command(argv, 60, mpi_env());
  ASSERT_FALSE(r.timed_out) << joined(argv) << " did not finish in 60 s:\n" << r.output;
  EXPECT_NE(r.exit_code, 0) << "a corrupted run exited 0: " << joined(argv) << "\n" << r.output;
  auto f = result_of(r, joined(argv));
  EXPECT_EQ(f.boolean("verified").value_or(true), false)
      << "a corrupted run reported verified: " << r.stdout_text;
}

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  return i.param.workload + "_" + std::to_string(i.param.ranks) + "ranks";
}

INSTANTIATE_TEST_SUITE_P(Workloads, Verifies,
                         ::testing::Values(Case{"stencil", 1}, Case{"stencil", 2}, Case{"cg", 1},
                                           Case{"cg", 2}, Case{"ft", 1}, Case{"ft", 2},
                                           Case{"is", 1}, Case{"is", 2}, Case{"sweep", 1}),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Workloads, CatchesCorruption,
                         ::testing::Values(Case{"stencil", 2}, Case{"cg", 2}, Case{"ft", 2},
                                           Case{"is", 2}, Case{"sweep", 1}),
                         case_name);

class ProgressAdvances : public MpiAvailable, public ::testing::WithParamInterface<Case> {};

// While the workload runs, its progress file's work counter grows; at the end its state
// is "done" and its iteration count matches the result line.
TEST_P(ProgressAdvances, WhileItRuns) {
  const Case& c = GetParam();
  TempDir dir;
  std::string path = dir.path() + "/progress";
  auto argv = launch(c.workload, c.ranks,
                     {"--mem", "8M", "--seconds", "1.5", "--quiet", "--progress-file", path});
  BackgroundCommand cmd(argv, mpi_env());
  // Wait for the file, then for the run to start counting.
  ProgressReader reader;
  std::optional<ProgressSample> first;
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < give_up) {
    if (!reader.workload().size()) {
      auto r = ProgressReader::open(path);
      if (r) reader = std::move(*r);
    }
    if (reader.workload().size()) {
      auto s = reader.sample();
      if (s && s->work > 0) {
        first = *s;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(first.has_value()) << "the progress file " << path
                                 << " never showed work within 20 s";
  // The counter must move on within a few seconds even on a loaded machine.
  std::optional<ProgressSample> second;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto s = reader.sample();
    ASSERT_TRUE(s.has_value()) << s.error().message();
    second = *s;
    if (s->work > first->work || s->state != ProgressState::running) break;
  }
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->work, first->work)
      << "work did not advance while running (state " << progress_state_name(second->state) << ")";
  EXPECT_GT(progress_rate(*first, *second), 0.0);
  EXPECT_GE(second->updated_ns, first->updated_ns);
  auto r = cmd.wait(60);
  ASSERT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto last = reader.sample();
  ASSERT_TRUE(last.has_value()) << last.error().message();
  EXPECT_EQ(last->state, ProgressState::done) << progress_state_name(last->state);
  EXPECT_GT(last->work, second->work - 1);
  auto f = result_of(r, joined(argv));
  EXPECT_EQ(static_cast<double>(last->iterations), num(f, "iterations"));
  EXPECT_EQ(reader.workload(), c.workload == "sweep" ? "sweep" : c.workload);
}

INSTANTIATE_TEST_SUITE_P(Workloads, ProgressAdvances,
                         ::testing::Values(Case{"stencil", 2}, Case{"cg", 2}, Case{"ft", 2},
                                           Case{"is", 2}, Case{"sweep", 1}),
                         case_name);

TEST(WorkloadHelp, EveryProgramExplainsItselfAndRejectsBadOptions) {
  for (std::string w : {"stencil", "cg", "ft", "is", "sweep"}) {
    auto h = run_command({program(w), "--help"}, 20, mpi_env());
    EXPECT_EQ(h.exit_code, 0) << w << " --help:\n" << h.output;
    EXPECT_NE(h.output.find("--mem"), std::string::npos) << w << " --help:\n" << h.output;
    EXPECT_NE(h.output.find("--progress-file"), std::string::npos) << w;
    auto bad = run_command({program(w), "--mem", "lots"}, 20, mpi_env());
    EXPECT_EQ(bad.exit_code, 2) << w << " --mem lots:\n" << bad.output;
    EXPECT_NE(bad.output.find("lots"), std::string::npos) << bad.output;
  }
}

TEST(Sweep, PatternsThreadsAndBurstsVerify) {
  std::vector<std::vector<std::string>> runs = {
      {"--mem", "4M", "-n", "3", "--pattern", "random", "-q"},
      {"--mem", "4M", "-n", "3", "--pattern", "hotspot", "--threads", "2", "-q"},
      {"--mem", "4M", "--mode", "bursty", "--busy-ms", "20", "--idle-ms", "10", "-n", "3",
       "--threads", "2", "-q"},
  };
  for (const auto& args : runs) {
    auto argv = launch("sweep", 1, args);
    auto r = run_command(argv, 30);
    EXPECT_EQ(r.exit_code, 0) << joined(argv) << "\n" << r.output;
    auto f = result_of(r, joined(argv));
    EXPECT_EQ(f.boolean("verified").value_or(false), true) << r.stdout_text;
    EXPECT_EQ(num(f, "iterations"), 3) << r.stdout_text;
  }
}

TEST(Sweep, BurstyHostGrowsItsWorkingSet) {
  auto r = run_command(launch("sweep", 1,
                              {"--mem", "2M", "--mode", "bursty", "--grow-to", "8M", "--grow-steps",
                               "3", "--burst-work", "1M", "--idle-ms", "1", "-n", "5", "-q"}),
                       30);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = result_of(r, "growing bursty");
  EXPECT_EQ(num(f, "footprint_start"), 2.0 * (1 << 20));
  EXPECT_EQ(num(f, "footprint"), 8.0 * (1 << 20));
  EXPECT_EQ(f.boolean("verified").value_or(false), true) << r.stdout_text;
  auto bad = run_command(launch("sweep", 1, {"--mem", "2M", "--grow-to", "8M"}), 30);
  EXPECT_EQ(bad.exit_code, 2) << "--grow-to without --mode bursty was accepted: " << bad.output;
}

TEST(Sweep, BurstyHostKeepsItsWorkPerBurstFixed) {
  auto r = run_command(launch("sweep", 1,
                              {"--mem", "4M", "--mode", "bursty", "--burst-work", "8M", "--idle-ms",
                               "5", "-n", "4", "-q"}),
                       30);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = result_of(r, "bursty");
  EXPECT_EQ(num(f, "burst_work"), 8.0 * (1 << 20));
  EXPECT_EQ(num(f, "work"), 4 * 8.0 * (1 << 20));
  EXPECT_GT(num(f, "burst_s_median"), 0);
}

}  // namespace

namespace {

TEST(ProgressTool, ReadsARunningWorkloadAsJson) {
  TempDir dir;
  std::string path = dir.path() + "/progress";
  BackgroundCommand sweep(
      launch("sweep", 1, {"--mem", "4M", "-s", "1", "-q", "--progress-file", path}));
  CommandResult r;
  for (int i = 0; i < 100; ++i) {
    r = run_command({kBin + "/dynamos-progress", path, "--json"}, 10);
    if (r.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = parse_result_line(r.stdout_text);
  ASSERT_TRUE(f.has_value()) << f.error().message() << "\n" << r.output;
  EXPECT_EQ(f->text("workload").value_or(""), "sweep");
  EXPECT_EQ(f->text("unit").value_or(""), "bytes");
  EXPECT_TRUE(f->has("work") && f->has("state")) << r.stdout_text;
  auto done = sweep.wait(30);
  EXPECT_EQ(done.exit_code, 0) << done.output;
  auto missing = run_command({kBin + "/dynamos-progress", dir.path() + "/none"}, 10);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("No such file"), std::string::npos) << missing.output;
}

}  // namespace
