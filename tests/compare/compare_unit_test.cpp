// bench/compare's parts that need no cluster: command-line values, the JSON reader,
// statistics and summaries, results.json / results.md and the gnuplot plots.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <nlohmann/json.hpp>
#include <tuple>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "bench/compare/config.hpp"
#include "bench/compare/measure.hpp"
#include "bench/compare/process.hpp"
#include "bench/compare/results.hpp"
#include "bench/compare/staging.hpp"
#include "bench/workload/result_line.hpp"
#include "tests/compare/report_fields.hpp"
#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::compare;
namespace fs = std::filesystem;
using dynamos::gang::test::in_ci;
using dynamos::gang::test::TempDir;

namespace {

RunResult run(std::string w, std::string p, bool cs, unsigned rep, double makespan, double lost) {
  RunResult r;
  r.workload = std::move(w);
  r.policy = std::move(p);
  r.cyclesteal = cs;
  r.repeat = rep;
  r.makespan_s = makespan;
  r.lost_s_per_switch = lost;
  r.lost_s = {lost};
  r.switch_rounds = 4;
  r.switch_ms_median = 12;
  r.switch_ms_max = 20;
  r.major_faults = 1000;
  r.verified = true;
  if (cs) {
    r.guest_cpu_s = 3;
    r.guest_work = 1e9;
  }
  JobOutcome j;
  j.id = 7;
  j.state = "done";
  j.exit_code = 0;
  j.verified = true;
  r.jobs = {j, j};
  return r;
}

Comparison sample() {
  Comparison c;
  c.config.workloads = *parse_workloads({"stencil,cg"});
  c.config.policies = {"demand", "adaptive"};
  c.config.cyclesteal = {false, true};
  c.config.repeat = 2;
  c.config.argv = {"dynamos", "bench", "compare", "--workloads", "stencil,cg"};
  c.node_memory = 256ull << 20;
  c.cluster_nodes = 2;
  c.started = "2026-11-26T00:00:00Z";
  c.ended = "2026-11-26T00:10:00Z";
  c.wall_s = 600;
  for (const char* w : {"stencil", "cg"}) {
    Calibration cal;
    cal.workload = w;
    cal.r0 = 1e8;
    cal.unit = "points";
    cal.iterations_per_s = 5;
    cal.iterations = 15;
    cal.footprint_per_rank = 192ull << 20;
    cal.seconds = 2;
    cal.verified = true;
    c.calibration.push_back(cal);
    for (unsigned rep = 1; rep <= 2; ++rep) {
      c.runs.push_back(run(w, "demand", false, rep, 40 + rep, 2.0 + rep));
      c.runs.push_back(run(w, "adaptive", false, rep, 30 + rep, 0.5 + rep * 0.1));
      c.runs.push_back(run(w, "demand", true, rep, 44 + rep, 2.2 + rep));
      c.runs.push_back(run(w, "adaptive", true, rep, 33 + rep, 0.6 + rep * 0.1));
    }
  }
  return c;
}

}  // namespace

TEST(CompareConfig, WorkloadLists) {
  auto w = parse_workloads({"stencil,cg", "ft"});
  ASSERT_TRUE(w) << w.error().message();
  ASSERT_EQ(w->size(), 3u);
  EXPECT_EQ((*w)[0].program, "dynamos-mpi-stencil");
  EXPECT_TRUE((*w)[2].power_of_two_ranks);
  EXPECT_FALSE(parse_workloads({"stencil,bogus"}));
  EXPECT_FALSE(parse_workloads({"stencil,,cg"}));
  EXPECT_FALSE(parse_workloads({"cg,cg"}));
  EXPECT_FALSE(parse_workloads({}));
  auto e = parse_workloads({"bogus"});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("'bogus'"), std::string::npos) << e.error().message();
}

TEST(CompareConfig, ExternalCommands) {
  auto w = parse_workloads({"cmd:/opt/npb/cg.B.x --size 'a b',c", "is"});
  ASSERT_TRUE(w) << w.error().message();
  ASSERT_EQ(w->size(), 2u);
  EXPECT_FALSE((*w)[0].builtin);
  EXPECT_EQ((*w)[0].name, "cmd:cg.B.x");
  EXPECT_EQ((*w)[0].program, "/opt/npb/cg.B.x");
  EXPECT_EQ((*w)[0].args, (std::vector<std::string>{"--size", "a b,c"}));
  EXPECT_FALSE(parse_workload("cmd:"));
  EXPECT_FALSE(parse_workload("cmd:prog 'open"));
}

TEST(CompareConfig, PoliciesModesDurations) {
  auto p = parse_policies("demand, adaptive,selective");
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, (std::vector<std::string>{"demand", "adaptive", "selective"}));
  EXPECT_FALSE(parse_policies("demand,lru"));
  EXPECT_FALSE(parse_policies("demand,demand"));
  EXPECT_EQ(*parse_cyclesteal("both"), (std::vector<bool>{false, true}));
  EXPECT_EQ(*parse_cyclesteal("on"), (std::vector<bool>{true}));
  EXPECT_FALSE(parse_cyclesteal("maybe"));
  EXPECT_EQ(*parse_duration("2s"), std::chrono::seconds(2));
  EXPECT_EQ(*parse_duration("1.5"), std::chrono::milliseconds(1500));
  EXPECT_EQ(*parse_duration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(*parse_duration("1m"), std::chrono::seconds(60));
  EXPECT_FALSE(parse_duration("fast"));
  EXPECT_FALSE(parse_duration("-1s"));
  EXPECT_EQ(format_duration(std::chrono::milliseconds(1500)), "1.5s");
  EXPECT_EQ(format_duration(std::chrono::milliseconds(500)), "500ms");
  EXPECT_EQ(format_duration(std::chrono::seconds(2)), "2s");
}

TEST(CompareConfig, ValidationAndFootprint) {
  CompareConfig c;
  c.workloads = *parse_workloads({"ft"});
  EXPECT_TRUE(validate(c, 2));
  auto three = validate(c, 3);
  ASSERT_FALSE(three);
  EXPECT_NE(three.error().message().find("power-of-two"), std::string::npos);
  c.job_nodes = 4;
  EXPECT_FALSE(validate(c, 3));  // more job nodes than the cluster has
  c.job_nodes = 0;
  c.overcommit = 9;
  EXPECT_FALSE(validate(c, 2));
  c.overcommit = 1.5;
  c.quantum = std::chrono::milliseconds(10);
  EXPECT_FALSE(validate(c, 2));
  // 1.5 x 512 MiB shared by two jobs, two ranks a node: 192 MiB a rank.
  c.ranks_per_node = 2;
  EXPECT_EQ(footprint_per_rank(c, 512ull << 20), 192ull << 20);
  c.ranks_per_node = 1;
  EXPECT_EQ(footprint_per_rank(c, 256ull << 20), 192ull << 20);
}

// `sequential` (the jobs one after the other) is the baseline a policy list may hold.
TEST(CompareConfig, SequentialIsAPolicyOfTheComparison) {
  auto p = parse_policies("sequential,demand");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(*p, (std::vector<std::string>{"sequential", "demand"}));
  EXPECT_FALSE(parse_policies("sequential,sequential"));
}

// HPCC reads hpccinf.txt from its working directory and writes hpccoutf.txt there: each
// job runs in a folder of its own holding the staged input, afresh every run.
TEST(CompareStaging, EachJobGetsTheStagedInputAfreshInItsOwnFolder) {
  TempDir tmp;
  const std::string input = tmp / "hpccinf.txt";
  std::ofstream(input) << "HPLinpack benchmark input file\n";
  const fs::path folder = tmp.path() / "work" / "hpcc-a";
  auto dir = stage_job_folder(folder, {input});
  ASSERT_TRUE(dir) << dir.error().message();
  EXPECT_EQ(*dir, folder.string());
  EXPECT_EQ((fs::status(folder).permissions() & fs::perms::all), fs::perms(0755));
  std::ifstream staged(folder / "hpccinf.txt");
  std::string line;
  ASSERT_TRUE(std::getline(staged, line));
  EXPECT_EQ(line, "HPLinpack benchmark input file");
  // An earlier run's output does not survive into the next run's folder.
  std::ofstream(folder / "hpccoutf.txt") << "Success=1\n";
  ASSERT_TRUE(stage_job_folder(folder, {input}));
  EXPECT_FALSE(fs::exists(folder / "hpccoutf.txt"));
  EXPECT_TRUE(fs::exists(folder / "hpccinf.txt"));
  // A symlink planted as the folder is replaced, not followed.
  const fs::path victim = tmp.path() / "victim";
  fs::create_directory(victim);
  std::ofstream(victim / "keep") << "x";
  fs::remove_all(folder);
  fs::create_directory_symlink(victim, folder);
  ASSERT_TRUE(stage_job_folder(folder, {input}));
  EXPECT_FALSE(fs::is_symlink(folder));
  EXPECT_TRUE(fs::exists(victim / "keep"));
  EXPECT_FALSE(fs::exists(victim / "hpccinf.txt"));
  // A missing input is named.
  auto missing = stage_job_folder(folder, {(tmp / "nope.txt")});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("nope.txt"), std::string::npos);
}

TEST(CompareStaging, PassIfReadsTheProgramsOwnVerdict) {
  TempDir tmp;
  EXPECT_FALSE(check_pass_if(tmp.path().string(), "hpccoutf.txt:^Success=1$"));  // no file
  std::ofstream(tmp / "hpccoutf.txt") << "Begin of Summary section.\nSuccess=0\n";
  auto failed = check_pass_if(tmp.path().string(), "hpccoutf.txt:^Success=1$");
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find("no line matching"), std::string::npos);
  std::ofstream(tmp / "hpccoutf.txt") << "Begin of Summary section.\nSuccess=1\n";
  EXPECT_TRUE(check_pass_if(tmp.path().string(), "hpccoutf.txt:^Success=1$"));
  // Bad specs are refused when the options are checked, naming what is wrong.
  EXPECT_FALSE(parse_pass_if("Success=1"));
  EXPECT_FALSE(parse_pass_if("../x:y"));
  EXPECT_FALSE(parse_pass_if("f:(unclosed"));
  CompareConfig c;
  c.workloads = *parse_workloads({"cmd:/usr/bin/hpcc"});
  c.stage = {tmp / "absent.txt"};
  auto v = validate(c, 2);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message().find("absent.txt"), std::string::npos);
  c.stage = {tmp / "hpccoutf.txt"};
  c.pass_if = "hpccoutf.txt:^Success=1$";
  EXPECT_TRUE(validate(c, 2));
}

// Samples of a job every 0.5 s: frozen, running (work +100 a sample), frozen again.
std::vector<JobSample> quantum_samples() {
  std::vector<JobSample> s;
  std::uint64_t work = 1000;
  auto add = [&](double t, bool running) {
    if (running) work += 100;
    s.push_back({t, running, true, work, 0});
  };
  add(0.0, false);
  add(0.5, false);
  for (double t = 1.0; t <= 3.0; t += 0.5)
    add(t, true);  // 5 samples running
  add(3.5, false);
  add(4.0, false);
  return s;
}

TEST(CompareMeasure, FrozenQuantaCountExactWork) {
  auto q = frozen_quanta(quantum_samples());
  ASSERT_EQ(q.size(), 1u);
  // From the midpoint of 0.5/1.0 to the midpoint of 3.0/3.5.
  EXPECT_DOUBLE_EQ(q[0].first, 3.25 - 0.75);
  EXPECT_DOUBLE_EQ(q[0].second, 500);
  // A quantum still running at the last sample ended the job: not counted.
  auto open = quantum_samples();
  open.resize(6);
  EXPECT_TRUE(frozen_quanta(open).empty());
  // Before the workload computes (set-up), a quantum is not counted either.
  auto setup = quantum_samples();
  for (auto& smp : setup)
    smp.computing = false;
  EXPECT_TRUE(frozen_quanta(setup).empty());
}

TEST(CompareMeasure, BestRateLostTimeMakespanRatios) {
  // 100 work every 0.5 s while running: 200 a second over any window of >= 0.9 s.
  EXPECT_DOUBLE_EQ(best_rate(quantum_samples()), 200);
  EXPECT_EQ(best_rate({}), 0);
  EXPECT_DOUBLE_EQ(lost_per_switch({{2.0, 200}, {2.0, 300}}, 200), (1.0 + 0.5) / 2);
  EXPECT_EQ(lost_per_quantum({{2.0, 200}, {2.0, 300}}, 200), (std::vector<double>{1.0, 0.5}));
  EXPECT_TRUE(std::isnan(lost_per_switch({}, 200)));
  EXPECT_TRUE(std::isnan(lost_per_switch({{1.0, 1}}, 0)));
  EXPECT_DOUBLE_EQ(makespan_s(1'000'000'000, 43'500'000'000, 7), 42.5);
  EXPECT_EQ(makespan_s(0, 43'500'000'000, 7), 7);
  EXPECT_EQ(makespan_s(UINT64_MAX, 0, 7), 7);
  EXPECT_DOUBLE_EQ(ratio(31.5, 42), 0.75);
  EXPECT_TRUE(std::isnan(ratio(1, 0)));
  EXPECT_DOUBLE_EQ(median({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(median({4, 1, 2, 3}), 2.5);
  EXPECT_TRUE(std::isnan(median({})));
}

// A job's output file left by an earlier run into the same folder (the launcher appends)
// must not give its RESULT line to this run.
TEST(CompareMeasure, StaleOutputIsNotThisRunsResult) {
  TempDir dir;
  const std::string path = (dir.path() / "stencil-demand-r1-a.out").string();
  const std::string stale = "RESULT {\"verified\":true,\"seconds\":1}\n";
  {
    std::ofstream f(path);
    f << output_marker("stencil-demand-r1-a earlier") << stale;
  }
  auto read = [&] {
    std::ifstream f(path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  // The earlier run's file, read as this run's: not this run's output.
  EXPECT_FALSE(this_runs_output(read(), "stencil-demand-r1-a now"));
  // Started afresh: the stale line is gone; the job (failed here) appended nothing.
  ASSERT_TRUE(start_output(path, "stencil-demand-r1-a now"));
  auto out = this_runs_output(read(), "stencil-demand-r1-a now");
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, "");
  EXPECT_FALSE(workload::find_result_line(*out));
  // What the job appends is this run's.
  {
    std::ofstream f(path, std::ios::app);
    f << "RESULT {\"verified\":false}\n";
  }
  out = this_runs_output(read(), "stencil-demand-r1-a now");
  ASSERT_TRUE(out);
  auto result = workload::find_result_line(*out);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->boolean("verified").value_or(true), false);
}

TEST(CompareResults, StatsOverRepeats) {
  auto s = stat_of({1, 2, 3, NAN});
  EXPECT_EQ(s.n, 3u);
  EXPECT_DOUBLE_EQ(s.mean, 2);
  EXPECT_DOUBLE_EQ(s.sd, 1);
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.max, 3);
  auto one = stat_of({5});
  EXPECT_EQ(one.sd, 0);
  EXPECT_EQ(stat_of({}).n, 0u);
  EXPECT_EQ(format_stat(s, 1), "2.0 ± 1.0");
  EXPECT_EQ(format_stat(one, 2), "5.00");
  EXPECT_EQ(format_stat(Stat{}, 1), "-");
}

TEST(CompareResults, SummaryPairsCycleStealingWithItsBaseline) {
  auto c = sample();
  summarise(c);
  ASSERT_EQ(c.summary.size(), 8u);  // 2 workloads x 2 modes x 2 policies
  // Order: workloads, then modes, then policies.
  EXPECT_EQ(c.summary[0].workload, "stencil");
  EXPECT_EQ(c.summary[0].policy, "demand");
  EXPECT_FALSE(c.summary[0].cyclesteal);
  EXPECT_TRUE(c.summary[2].cyclesteal);
  const auto& demand = c.summary[0];
  const auto& adaptive = c.summary[1];
  EXPECT_DOUBLE_EQ(demand.makespan_s.mean, 41.5);
  EXPECT_EQ(demand.makespan_s.n, 2u);
  EXPECT_DOUBLE_EQ(adaptive.makespan_vs_first, 31.5 / 41.5);
  EXPECT_DOUBLE_EQ(adaptive.lost_vs_first, 0.65 / 3.5);
  EXPECT_TRUE(std::isnan(demand.host_slowdown.mean));
  // Host slowdown: with guests / without, same policy and repeat.
  const auto& demand_cs = c.summary[2];
  EXPECT_NEAR(demand_cs.host_slowdown.mean, (45.0 / 41 + 46.0 / 42) / 2, 1e-12);
  EXPECT_DOUBLE_EQ(demand_cs.guest_cpu_s.mean, 3);
  EXPECT_EQ(demand_cs.runs, 2u);
  EXPECT_EQ(demand_cs.verified_runs, 2u);
  // A failed run is counted but not averaged.
  c.runs[0].error = "job 7 failed";
  c.runs[0].verified = false;
  summarise(c);
  EXPECT_EQ(c.summary[0].verified_runs, 1u);
  EXPECT_EQ(c.summary[0].makespan_s.n, 1u);
  EXPECT_DOUBLE_EQ(c.summary[0].makespan_s.mean, 42);
}

TEST(CompareResults, LostTimeUsesTheBestRateSeen) {
  auto c = sample();
  for (auto& r : c.runs)
    r.quanta.clear();
  // Calibrated at 1e8 a second; a quantum of stencil's showed 2e8 a second for one second.
  c.runs[0].quanta = {{2.0, 2e8}, {2.0, 3e8}};
  c.runs[1].quanta = {{2.0, 4e8}};
  c.runs[1].best_rate = 2e8;
  c.runs[8].quanta = {{1.0, 5e7}};  // cg: stays at its calibration
  finish_lost_time(c);
  EXPECT_EQ(c.calibration[0].r0, 2e8);
  EXPECT_EQ(c.calibration[0].r0_alone, 1e8);
  EXPECT_EQ(c.runs[0].lost_s, (std::vector<double>{1.0, 0.5}));
  EXPECT_DOUBLE_EQ(c.runs[0].lost_s_per_switch, 0.75);
  EXPECT_DOUBLE_EQ(c.runs[1].lost_s_per_switch, 0.0);
  EXPECT_EQ(c.calibration[1].r0, 1e8);
  EXPECT_DOUBLE_EQ(c.runs[8].lost_s_per_switch, 0.5);
  // A run without measured quanta keeps what it had.
  EXPECT_DOUBLE_EQ(c.runs[2].lost_s_per_switch, 2.2 + 1);
}

TEST(CompareResults, JsonHasEveryFieldAndParses) {
  auto c = sample();
  summarise(c);
  auto text = results_json(c);
  auto j = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << "\n" << text;
  for (const char* k :
       {"config", "started", "ended", "wall_s", "calibration", "runs", "summary", "plots"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["config"]["policies"].size(), 2u);
  EXPECT_EQ(j["config"]["mem_per_node"].get<double>(), 256 << 20);
  ASSERT_EQ(j["runs"].size(), 16u);
  const auto& r = j["runs"][2];
  test::expect_run_fields(r);
  EXPECT_TRUE(r["cyclesteal"].get<bool>());
  EXPECT_GT(r["host_slowdown"].get<double>(), 1);
  EXPECT_TRUE(j["runs"][0]["host_slowdown"].is_null());
  const auto& s = j["summary"][1];
  EXPECT_EQ(s["makespan_s"]["n"].get<double>(), 2);
  EXPECT_DOUBLE_EQ(s["makespan_s"]["mean"].get<double>(), 31.5);
  EXPECT_TRUE(s["makespan_s"].contains("sd"));
}

// The OOM-kill count of a run comes from readings before and after it; a failed run
// with kills names the OOM killer first, and a reading that failed is -1, never 0.
TEST(CompareResults, OomKillsAreCountedAndNamedInAFailedRunsError) {
  RunResult failed;
  failed.verified = false;
  failed.error = "job 7 failed, no RESULT line";
  count_oom_kills(failed, std::uint64_t{3}, std::uint64_t{5}, "this machine (/proc/vmstat)");
  EXPECT_EQ(failed.oom_kills, 2);
  EXPECT_EQ(failed.error,
            "the memory controller's OOM killer killed a rank (2 OOM kills in this machine "
            "(/proc/vmstat) during the run): job 7 failed, no RESULT line");

  RunResult fine;
  fine.verified = true;
  count_oom_kills(fine, std::uint64_t{5}, std::uint64_t{6}, "the nodes' memory cgroups");
  EXPECT_EQ(fine.oom_kills, 1);
  EXPECT_TRUE(fine.error.empty()) << "a verified run keeps its error empty";

  RunResult unread;
  count_oom_kills(unread, std::uint64_t{5}, fail(Errc::unsupported, "no oom_kill"), "x");
  EXPECT_EQ(unread.oom_kills, -1);
}

TEST(CompareResults, MarkdownTable) {
  auto c = sample();
  summarise(c);
  auto md = results_markdown(c);
  EXPECT_NE(md.find("| workload | policy | cycle stealing | makespan s |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("| stencil | adaptive | off | 31.5 ± 0.7 | 0.76 |"), std::string::npos) << md;
  EXPECT_NE(md.find("host slowdown"), std::string::npos);
  EXPECT_NE(md.find("Reproduce: `dynamos bench compare --workloads stencil,cg`"),
            std::string::npos);
  c.runs[3].error = "job 9 failed, exit code 1";
  summarise(c);
  md = results_markdown(c);
  EXPECT_NE(md.find("job 9 failed, exit code 1"), std::string::npos);
}

TEST(CompareConfig, SchedulersOnTheSlurmTestBed) {
  auto s = parse_schedulers("slurm, slurm+dynamos,dynamos");
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, (std::vector<std::string>{"slurm", "slurm+dynamos", "dynamos"}));
  auto bad = parse_schedulers("slurm,pbs");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("unknown scheduler 'pbs'"), std::string::npos);
  EXPECT_FALSE(parse_schedulers("slurm,slurm"));
  CompareConfig c;
  EXPECT_FALSE(on_slurm(c));  // the default: DynAMOS on a cluster of its own
  c.schedulers = {"dynamos", "slurm"};
  EXPECT_TRUE(on_slurm(c));
}

// Two jobs alternating every 5 s (looks every second): a runs 0-4, b 5-9, a 10-14.
TEST(CompareMeasure, SwitchGapsFromTheOutgoingLastToTheIncomingFirst) {
  std::vector<JobSample> a, b;
  std::uint64_t wa = 0, wb = 0;
  double ua = 0.1, ub = 0.1;
  for (int t = 0; t < 15; ++t) {
    const bool a_runs = t < 5 || t >= 10;
    if (a_runs) wa += 10, ua = t + 0.9;
    if (!a_runs) wb += 10, ub = t + 0.7;  // b's first progress 0.7 s into its quantum
    a.push_back({double(t), a_runs, true, wa, 0, ua});
    b.push_back({double(t), !a_runs, true, wb, 0, ub});
  }
  auto gaps = switch_gaps(a, b, 2.5);
  ASSERT_EQ(gaps.size(), 2u);
  EXPECT_NEAR(gaps[0], 5.7 - 4.9, 1e-9);  // a's last at 4.9, b's first at 5.7
  EXPECT_NEAR(gaps[1], 10.9 - 9.7, 1e-9);
  EXPECT_DOUBLE_EQ(overlap_share(a, b), 0);
  // Both progressing for a moment is overlap, and no switch.
  b[2].work = b[1].work + 1;
  b[2].updated = 2.5;
  EXPECT_EQ(switch_gaps(a, b, 2.5).size(), 2u);
  EXPECT_NEAR(overlap_share(a, b), 1.0 / 14, 1e-12);
}

TEST(CompareResults, SchedulersSideBySide) {
  Comparison c;
  c.config.schedulers = {"slurm", "slurm+dynamos", "dynamos"};
  c.config.policies = {"demand", "adaptive"};
  c.config.workloads = {*parse_workload("stencil")};
  for (const auto& [sched, policy, makespan] :
       std::vector<std::tuple<std::string, std::string, double>>{{"slurm", "demand", 25},
                                                                 {"slurm+dynamos", "demand", 24},
                                                                 {"slurm+dynamos", "adaptive", 20},
                                                                 {"dynamos", "demand", 22},
                                                                 {"dynamos", "adaptive", 15}}) {
    RunResult r;
    r.scheduler = sched;
    r.workload = "stencil";
    r.policy = policy;
    r.repeat = 1;
    r.makespan_s = makespan;
    r.switch_gap_s = 0.5;
    r.overlap = 0;
    r.suspended_rss_bytes = 200 << 20;
    r.footprint_bytes = 288 << 20;
    r.verified = true;
    c.runs.push_back(r);
  }
  summarise(c);
  ASSERT_EQ(c.summary.size(), 5u);  // Slurm alone: demand only
  EXPECT_EQ(c.summary[0].scheduler, "slurm");
  EXPECT_DOUBLE_EQ(c.summary[4].makespan_vs_first, 15.0 / 25);
  auto md = results_markdown(c);
  EXPECT_NE(md.find("| scheduler | workload | policy | makespan s | vs slurm |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("| dynamos | stencil | adaptive | 15.00 | 0.60 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 200 (288) | 1/1 |"), std::string::npos) << md;
  auto j = nlohmann::json::parse(results_json(c));
  EXPECT_EQ(j["runs"][0]["scheduler"], "slurm");
  EXPECT_DOUBLE_EQ(j["runs"][0]["switch_gap_s"].get<double>(), 0.5);
  EXPECT_EQ(j["summary"][4]["scheduler"], "dynamos");
}

TEST(CompareResults, PlotsArePngs) {
  if (run_command({"gnuplot", "--version"}, std::chrono::seconds(10))
          .value_or(Finished{})
          .exit_code != 0) {
    if (in_ci()) FAIL() << "gnuplot is missing (scripts/deps: gnuplot-nox)";
    GTEST_SKIP() << "gnuplot is missing";
  }
  TempDir dir;
  auto c = sample();
  c.config.out_dir = dir / "out";
  summarise(c);
  auto p = write_plots(c);
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_EQ(c.plots.size(), 2u);
  ASSERT_TRUE(write_results(c));
  for (const auto& name : c.plots) {
    std::ifstream f(fs::path(c.config.out_dir) / name, std::ios::binary);
    char magic[8] = {};
    f.read(magic, 8);
    EXPECT_EQ(std::string(magic, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << name;
  }
  EXPECT_TRUE(fs::exists(fs::path(c.config.out_dir) / "results.json"));
  std::ifstream md(fs::path(c.config.out_dir) / "results.md");
  std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("![makespan.png](makespan.png)"), std::string::npos);
}

TEST(CompareProcess, RunsCapturesAndTimesOut) {
  auto r = run_command({"sh", "-c", "echo out; echo err >&2; exit 3"}, std::chrono::seconds(10));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  auto slow = run_command({"sleep", "10"}, std::chrono::milliseconds(200));
  ASSERT_TRUE(slow);
  EXPECT_TRUE(slow->timed_out);
  EXPECT_FALSE(run_command({"/nonexistent/program"}, std::chrono::seconds(1)));
  EXPECT_EQ(shell_join({"a", "b c", "it's"}), "a 'b c' 'it'\\''s'");
}
