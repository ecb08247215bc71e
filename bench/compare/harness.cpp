#include "bench/compare/harness.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "bench/compare/measure.hpp"
#include "bench/compare/staging.hpp"
#include "bench/workload/progress.hpp"
#include "bench/workload/result_line.hpp"
#include "bench/workload/size.hpp"
#include "kernelside/procfs.hpp"

namespace dynamos::compare {

namespace fs = std::filesystem;
namespace proto = gang::proto;
using workload::ProgressReader;
using workload::ProgressState;

namespace {

constexpr auto kPoll = std::chrono::milliseconds(50);

double now_s() {
  return workload::monotonic_ns() / 1e9;
}

std::string fmt_s(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return buf;
}

bool ended(const std::string& state) {
  return state == "done" || state == "failed" || state == "cancelled";
}

// CPU seconds of a process (utime + stime), NaN when it is gone.
double cpu_seconds(pid_t pid) {
  auto st = kernelside::read_stat(pid);
  return st ? std::chrono::duration<double>(st->utime + st->stime).count() : NAN;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

// One job of a run while it is watched.
struct Harness::Job {
  proto::JobId id = 0;
  std::string progress_path, output_path;
  std::string run_id;  // names this run in the first line of the output file
  std::string dir;     // its own folder, where it runs (with --stage or --pass-if), else ""
  std::optional<ProgressReader> reader;
  std::vector<JobSample> samples;
  proto::JobInfo info;

  std::optional<workload::ProgressSample> progress() {
    if (!reader) {
      auto r = ProgressReader::open(progress_path);
      if (!r) return std::nullopt;
      reader.emplace(std::move(*r));
    }
    auto s = reader->sample();
    if (!s) return std::nullopt;
    return *s;
  }

  // The job's RESULT line, from this run's output only.
  Result<workload::ResultFields> result() const {
    auto out = this_runs_output(read_file(output_path), run_id);
    if (!out)
      return fail(Errc::state, output_path + " does not hold this run's output (" + run_id + ")");
    return workload::find_result_line(*out);
  }
};

Harness::Harness(CompareConfig config, Cluster& cluster, std::string bin_dir,
                 const std::atomic<bool>* stop)
    : config_(std::move(config)), cluster_(cluster), bin_dir_(std::move(bin_dir)), stop_(stop) {
  tty_ = ::isatty(2);
}

void Harness::status(const std::string& line, bool event) {
  if (tty_) {
    // A status line rewritten in place; events get their own line above it.
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), event ? "\n" : "");
    line_open_ = !event;
  } else if (event) {
    // Not a terminal: events, and a status line at the start of each step and every 10 s.
    std::fprintf(stderr, "%s\n", line.c_str());
    last_plain_status_ = 0;
  } else if (last_plain_status_ == 0 || now_s() - last_plain_status_ >= 10) {
    std::fprintf(stderr, "%s\n", line.c_str());
    last_plain_status_ = now_s();
  }
  std::fflush(stderr);
}

std::string Harness::eta() const {
  double per_run = runs_done_ ? run_wall_sum_ / runs_done_ : expected_run_s_;
  double current_left =
      current_run_start_ > 0 ? std::max(0.0, per_run - (now_s() - current_run_start_)) : 0;
  unsigned left = runs_total_ - runs_done_ - (current_run_start_ > 0 ? 1 : 0);
  return fmt_s(current_left + left * per_run);
}

std::vector<std::string> Harness::workload_argv(const WorkloadSpec& w, const std::string& progress,
                                                bool calibration) const {
  if (!w.builtin) {
    std::vector<std::string> a{w.program};
    a.insert(a.end(), w.args.begin(), w.args.end());
    return a;
  }
  std::uint64_t iterations = 0;
  for (const auto& c : comparison_.calibration)
    if (c.workload == w.name) iterations = c.iterations;
  return builtin_argv(bin_dir_, w, footprint_per_rank(config_, comparison_.node_memory), progress,
                      calibration ? std::optional<double>(config_.calibrate_s) : std::nullopt,
                      iterations);
}

Result<void> Harness::calibrate(const WorkloadSpec& w, const Hooks& hooks) {
  Calibration cal;
  cal.workload = w.name;
  cal.footprint_per_rank = footprint_per_rank(config_, comparison_.node_memory);
  const std::string tag = "calibrate-" + w.name;
  Job job;
  auto s = new_job(job, tag, "demand");
  if (!s) return std::unexpected(s.error());
  s->argv = workload_argv(w, job.progress_path, true);
  if (hooks.progress)
    status("calibrating " + w.name + " alone (" + std::to_string(s->ranks) + " ranks, " +
               workload::format_size(cal.footprint_per_rank) + " a rank, " +
               fmt_s(config_.calibrate_s) + ")...",
           true);
  auto id = cluster_.submit(*s);
  if (!id) return std::unexpected(with_context(id.error(), "calibrating " + w.name));
  job.id = *id;
  const double t0 = now_s();
  // r0: the best one-second rate of rank 0 while it computes.
  std::vector<workload::ProgressSample> window;
  double best = 0;
  std::string unit;
  for (;;) {
    if (stopping()) {
      (void)cluster_.cancel(job.id);
      return fail(Errc::state, "interrupted");
    }
    if (auto p = job.progress(); p && p->state == ProgressState::running) {
      window.push_back(*p);
      while (window.size() > 2 && (p->read_ns - window[1].read_ns) >= 1'000'000'000ull)
        window.erase(window.begin());
      if (p->read_ns - window.front().read_ns >= 900'000'000ull)
        best = std::max(best, workload::progress_rate(window.front(), *p));
      if (unit.empty() && job.reader) unit = job.reader->unit();
    }
    auto jobs = cluster_.jobs();
    if (!jobs) return std::unexpected(with_context(jobs.error(), "calibrating " + w.name));
    const proto::JobInfo* info = nullptr;
    for (const auto& j : *jobs)
      if (j.job == job.id) info = &j;
    if (!info) return fail(Errc::state, "calibration job " + std::to_string(job.id) + " vanished");
    if (ended(info->state)) {
      job.info = *info;
      break;
    }
    if (now_s() - t0 > config_.calibrate_s + 120) {
      (void)cluster_.cancel(job.id);
      return fail(Errc::timed_out, "calibrating " + w.name + ": the job did not end within " +
                                       fmt_s(config_.calibrate_s + 120));
    }
    if (hooks.progress)
      status("calibrating " + w.name + ": " + fmt_s(now_s() - t0) + " (job " +
                 std::to_string(job.id) + " " + info->state + ")",
             false);
    std::this_thread::sleep_for(kPoll);
  }
  auto result = job.result();
  if (job.info.exit_code != 0 || !result)
    return fail(Errc::state, "calibrating " + w.name + ": job " + std::to_string(job.id) + " " +
                                 job.info.state + " with exit code " +
                                 std::to_string(job.info.exit_code) +
                                 (job.info.reason.empty() ? "" : " (" + job.info.reason + ")") +
                                 (result ? "" : ", no RESULT line in " + job.output_path));
  cal.verified = result->boolean("verified").value_or(false);
  if (!cal.verified)
    return fail(Errc::state,
                "calibrating " + w.name + ": the result did not verify (" + job.output_path + ")");
  cal.seconds = result->number("seconds").value_or(0);
  double iterations = result->number("iterations").value_or(0);
  cal.iterations_per_s = cal.seconds > 0 ? iterations / cal.seconds : 0;
  cal.iterations =
      static_cast<std::uint64_t>(std::max(1.0, std::round(config_.work_s * cal.iterations_per_s)));
  cal.unit = unit.empty() ? result->text("unit").value_or("") : unit;
  // Runs shorter than a second: the whole run's rank-0 rate.
  double whole = cal.seconds > 0
                     ? result->number("work").value_or(0) /
                           std::max(1.0, result->number("ranks").value_or(1)) / cal.seconds
                     : 0;
  cal.r0 = best > 0 ? std::max(best, whole) : whole;
  cal.r0_alone = cal.r0;
  if (!(cal.r0 > 0))
    return fail(Errc::state,
                "calibrating " + w.name + ": no work rate measured (" + job.output_path + ")");
  comparison_.calibration.push_back(cal);
  if (hooks.progress) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "  %s alone: r0 %.3g %s/s (rank 0), %.2f iterations/s: each job runs %llu "
                  "iterations (~%.0f s alone)",
                  w.name.c_str(), cal.r0, cal.unit.c_str(), cal.iterations_per_s,
                  static_cast<unsigned long long>(cal.iterations),
                  cal.iterations / std::max(cal.iterations_per_s, 1e-9));
    status(buf, true);
  }
  return {};
}

// A guest of a cycle-stealing run: a dynamos-sweep on one node.
struct Harness::Guest {
  std::string node;
  pid_t pid = -1;
  std::string progress_path;
  std::optional<ProgressReader> reader;
  double cpu0 = NAN;
  std::uint64_t work0 = 0;
};

// One run of two jobs under one policy: what it started, released when it goes out of
// scope whatever happened, and what it saw.
struct Harness::Pair {
  explicit Pair(Cluster& c) : cluster(c) {}
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  ~Pair() { release(); }

  // Cancels the jobs still running, kills the guests, turns cycle stealing off again.
  void release() {
    for (auto& j : jobs)
      if (j.id && !ended(j.info.state)) (void)cluster.cancel(j.id);
    for (auto& g : guests)
      if (g.pid > 0) ::kill(g.pid, SIGKILL);
    for (const auto& n : cyclesteal_nodes)
      (void)cluster.cyclesteal(n, false, "");
    cyclesteal_nodes.clear();
    guests.clear();
  }

  Cluster& cluster;
  RunResult run;
  std::string tag, label;
  const Calibration* cal = nullptr;
  std::vector<Job> jobs = std::vector<Job>(2);
  std::vector<Guest> guests;
  std::vector<std::string> cyclesteal_nodes;
  std::vector<std::string> run_nodes;           // the jobs' nodes, once placed
  std::map<std::string, double> earlier_round;  // node -> last switch round before this run
  double t0 = 0;                                // when the jobs were submitted
  std::optional<SubmitRequest> second;          // sequential: submitted when the first job ended
};

RunResult Harness::run_pair(const WorkloadSpec& w, const std::string& policy, bool cyclesteal,
                            unsigned repeat, const Hooks& hooks) {
  Pair p(cluster_);
  p.run.workload = w.name;
  p.run.policy = policy;
  p.run.cyclesteal = cyclesteal;
  p.run.repeat = repeat;
  p.tag = w.name.substr(0, w.name.find(':')) + (w.builtin ? "" : "-cmd") + "-" + policy +
          (cyclesteal ? "-cs" : "") + "-r" + std::to_string(repeat);
  p.label = w.name + " / " + policy + (cyclesteal ? " + guests" : "") +
            (config_.repeat > 1 ? " / repeat " + std::to_string(repeat) : "");
  for (const auto& c : comparison_.calibration)
    if (c.workload == w.name) p.cal = &c;

  auto oom_before = cluster_.oom_kills(job_nodes_);
  auto started = [&]() -> Result<void> {
    if (auto r = record_earlier_rounds(p); !r) return r;
    if (cyclesteal)
      if (auto r = start_guests(p); !r) return r;
    if (auto r = submit_jobs(p, w, policy); !r) return r;
    return watch(p, hooks);
  }();
  if (!started) {
    p.run.error = started.error().message();
    p.release();
    status("  " + p.label + ": FAILED: " + p.run.error, true);
    if (hooks.after_run) hooks.after_run(cluster_, p.run);
    return std::move(p.run);
  }
  measure_guests(p);
  collect_outcomes(p, w);
  name_oom_kills(p.run, oom_before);
  if (p.cal && w.builtin) measure_quanta(p);
  measure_switches(p);
  p.release();
  report(p);
  if (hooks.after_run) hooks.after_run(cluster_, p.run);
  return std::move(p.run);
}

// Switch rounds already on record, to tell this run's from older ones.
Result<void> Harness::record_earlier_rounds(Pair& p) {
  auto before = cluster_.switches(job_nodes_);
  if (!before) return std::unexpected(before.error());
  for (const auto& s : *before) {
    double& last = p.earlier_round[s.value("node", "")];
    last = std::max(last, s.value("round", 0.0));
  }
  return {};
}

// Cycle stealing on every node, a guest on each, and each guest's starting point once it
// has set up its data (a few seconds at most).
Result<void> Harness::start_guests(Pair& p) {
  for (const auto& node : nodes_) {
    if (auto r = cluster_.cyclesteal(node, true, config_.guest_policy); !r)
      return std::unexpected(r.error());
    p.cyclesteal_nodes.push_back(node);
    Guest g;
    g.node = node;
    g.progress_path = (fs::path(work_dir_) / (p.tag + "-guest-" + node + ".progress")).string();
    fs::remove(g.progress_path);
    auto pid = cluster_.guest_run(node,
                                  {(fs::path(bin_dir_) / "dynamos-sweep").string(), "--mem",
                                   std::to_string(config_.guest_mem >> 20) + "M", "--seconds",
                                   "100000", "--progress-file", g.progress_path, "-q"},
                                  work_dir_);
    if (!pid) return std::unexpected(pid.error());
    g.pid = *pid;
    p.guests.push_back(std::move(g));
  }
  for (auto& g : p.guests) {
    const double deadline = now_s() + 10;
    while (now_s() < deadline && !stopping()) {
      if (!g.reader)
        if (auto r = ProgressReader::open(g.progress_path)) g.reader.emplace(std::move(*r));
      if (g.reader)
        if (auto smp = g.reader->sample(); smp && smp->state == ProgressState::running) {
          g.work0 = smp->work;
          break;
        }
      std::this_thread::sleep_for(kPoll);
    }
    if (!g.reader)
      return fail(Errc::timed_out, "the guest on " + g.node + " (pid " + std::to_string(g.pid) +
                                       ") did not start its work within 10 s");
    g.cpu0 = cpu_seconds(g.pid);
  }
  return {};
}

// Submits both jobs; under `sequential` the second waits for the first to end (watch).
Result<void> Harness::submit_jobs(Pair& p, const WorkloadSpec& w, const std::string& policy) {
  p.t0 = now_s();
  const bool sequential = policy == kSequential;
  for (std::size_t i = 0; i < p.jobs.size(); ++i) {
    auto& j = p.jobs[i];
    auto s = new_job(j, p.tag + "-" + static_cast<char>('a' + i), sequential ? "demand" : policy);
    if (!s) return std::unexpected(s.error());
    s->argv = workload_argv(w, j.progress_path, false);
    if (sequential && i > 0) {
      p.second = std::move(*s);
      continue;
    }
    auto id = cluster_.submit(*s);
    if (!id) return std::unexpected(id.error());
    j.id = *id;
  }
  return {};
}

// A job of this comparison named `name` on the job nodes: its files in the work folder,
// the progress file removed and the output file started afresh for this run (the
// launcher appends, and a file left by an earlier run must not give its result). The
// request lacks only the program.
Result<SubmitRequest> Harness::new_job(Job& j, const std::string& name, const std::string& paging) {
  j.progress_path = (fs::path(work_dir_) / (name + ".progress")).string();
  j.output_path = (fs::path(work_dir_) / (name + ".out")).string();
  j.run_id = name + " " + session_id_;
  std::error_code ec;
  fs::remove(j.progress_path, ec);
  if (!start_output(j.output_path, j.run_id))
    return fail(Errc::system, "cannot write " + j.output_path);
  SubmitRequest s;
  s.name = name;
  s.ranks = static_cast<unsigned>(job_nodes_.size()) * config_.ranks_per_node;
  s.nodes = static_cast<unsigned>(job_nodes_.size());
  s.paging = paging;
  s.output = j.output_path;
  if (!config_.stage.empty() || !config_.pass_if.empty()) {
    auto dir = stage_job_folder(fs::path(work_dir_) / name, config_.stage);
    if (!dir) return std::unexpected(dir.error());
    j.dir = s.cwd = *dir;
  }
  return s;
}

// Samples both jobs every 50 ms until both ended; runs the hook once each has had a
// quantum.
Result<void> Harness::watch(Pair& p, const Hooks& hooks) {
  bool hook_done = !hooks.during_run;
  for (;;) {
    if (stopping()) return fail(Errc::state, "interrupted");
    const double t = now_s();
    if (auto r = sample_jobs(p, t); !r) return r;
    if (p.second && ended(p.jobs[0].info.state)) {
      auto id = cluster_.submit(*p.second);
      if (!id) return std::unexpected(id.error());
      p.jobs[1].id = *id;
      p.second.reset();
      continue;
    }
    if (p.run.policy != kSequential)
      if (auto r = check_placement(p); !r) return r;
    if (ended(p.jobs[0].info.state) && ended(p.jobs[1].info.state)) return {};
    if (t - p.t0 > static_cast<double>(config_.run_timeout.count()))
      return fail(Errc::timed_out, "the jobs did not end within " +
                                       fmt_s(config_.run_timeout.count()) + " (raise --timeout)");
    if (!hook_done && p.jobs[0].info.switches >= 1 && p.jobs[1].info.switches >= 1) {
      hook_done = true;
      LiveRun live{p.run, {p.jobs[0].id, p.jobs[1].id}, p.run_nodes, t - p.t0};
      hooks.during_run(cluster_, live);
    }
    if (hooks.progress) status(progress_line(p), false);
    std::this_thread::sleep_for(kPoll);
  }
}

// gangd's state of each job and rank 0's progress, as one sample a job.
Result<void> Harness::sample_jobs(Pair& p, double t) {
  auto list = cluster_.jobs();
  if (!list) return std::unexpected(list.error());
  for (auto& j : p.jobs) {
    if (j.id == 0) continue;  // sequential: not submitted yet
    auto info = std::find_if(list->begin(), list->end(),
                             [&](const proto::JobInfo& i) { return i.job == j.id; });
    if (info == list->end())
      return fail(Errc::state, "job " + std::to_string(j.id) + " vanished from gangd's list");
    j.info = *info;
    JobSample s;
    s.t = t;
    s.running = j.info.state == "running";
    if (auto pr = j.progress()) {
      s.work = pr->work;
      s.iterations = pr->iterations;
      s.computing = pr->state == ProgressState::running || pr->state == ProgressState::done;
    } else if (!j.samples.empty()) {
      s.work = j.samples.back().work;
    }
    j.samples.push_back(s);
  }
  return {};
}

// Once both are placed: the two jobs must alternate on the same nodes.
Result<void> Harness::check_placement(Pair& p) {
  const auto& a = p.jobs[0];
  const auto& b = p.jobs[1];
  if (!p.run_nodes.empty() || a.info.nodes.empty() || b.info.nodes.empty()) return {};
  p.run_nodes = a.info.nodes;
  if (a.info.nodes != b.info.nodes || a.info.slot == b.info.slot)
    return fail(Errc::state, "the two jobs do not alternate on the same nodes (job " +
                                 std::to_string(a.id) + " slot " + std::to_string(a.info.slot) +
                                 ", job " + std::to_string(b.id) + " slot " +
                                 std::to_string(b.info.slot) +
                                 "): the cluster's nodes take more than one job a slot; start "
                                 "it with --slots equal to the ranks per node");
  return {};
}

std::string Harness::progress_line(const Pair& p) const {
  std::string line = "[" + std::to_string(runs_done_ + 1) + "/" + std::to_string(runs_total_) +
                     "] " + p.label + ": " + fmt_s(now_s() - p.t0);
  for (const auto& j : p.jobs) {
    line += " | job " + std::to_string(j.id) + " " + j.info.state;
    if (p.cal && p.cal->iterations && !j.samples.empty())
      line += " " +
              std::to_string(std::min<std::uint64_t>(
                  100, j.samples.back().iterations * 100 / p.cal->iterations)) +
              "%";
  }
  return line + " | total " + fmt_s(now_s() - started_) + ", ETA " + eta();
}

// What the guests got during the run: CPU time and work.
void Harness::measure_guests(Pair& p) {
  if (p.guests.empty()) return;
  double cpu = 0, work = 0;
  for (auto& g : p.guests) {
    double c = cpu_seconds(g.pid);
    if (std::isfinite(c) && std::isfinite(g.cpu0)) cpu += c - g.cpu0;
    if (g.reader)
      if (auto s = g.reader->sample()) work += static_cast<double>(s->work - g.work0);
  }
  p.run.guest_cpu_s = cpu;
  p.run.guest_work = work;
}

// Each job's outcome (state, exit code, its RESULT line), faults and the makespan.
void Harness::collect_outcomes(Pair& p, const WorkloadSpec& w) {
  auto& run = p.run;
  std::uint64_t first_submit = UINT64_MAX, last_end = 0;
  run.verified = true;
  for (auto& j : p.jobs) {
    JobOutcome o;
    o.id = j.id;
    o.state = j.info.state;
    o.exit_code = j.info.exit_code;
    o.reason = j.info.reason;
    o.major_faults = j.info.major_faults;
    o.switches = j.info.switches;
    o.cpu_s = j.info.cpu_ns / 1e9;
    o.output_file = j.output_path;
    run.major_faults += j.info.major_faults;
    if (j.info.submitted_ns) first_submit = std::min(first_submit, j.info.submitted_ns);
    last_end = std::max(last_end, j.info.ended_ns);
    if (auto result = j.result()) {
      o.verified = result->boolean("verified").value_or(false);
      o.seconds = result->number("seconds").value_or(0);
      o.iterations = static_cast<std::uint64_t>(result->number("iterations").value_or(0));
      o.checksum = result->number("checksum").value_or(NAN);
    }
    std::string check_failed;
    if (!w.builtin && !config_.pass_if.empty()) {
      auto check = check_pass_if(j.dir, config_.pass_if);
      o.verified = check.has_value();
      if (!check) check_failed = ", " + check.error().message();
    }
    bool ok = o.exit_code == 0 && o.state == "done" && (!o.verified || *o.verified) &&
              (o.verified || !w.builtin);
    if (!ok) {
      run.verified = false;
      bool computed = std::any_of(j.samples.begin(), j.samples.end(),
                                  [](const JobSample& s) { return s.computing; });
      if (w.builtin && !computed && !o.verified) run.startup_failure = true;
      if (run.error.empty())
        run.error = "job " + std::to_string(j.id) + " " + o.state + ", exit code " +
                    std::to_string(o.exit_code) + (o.reason.empty() ? "" : " (" + o.reason + ")") +
                    (o.verified && !*o.verified ? ", result NOT verified" : "") +
                    (w.builtin && !o.verified ? ", no RESULT line" : "") + check_failed + ": see " +
                    j.output_path;
    }
    run.jobs.push_back(std::move(o));
  }
  run.makespan_s = makespan_s(first_submit, last_end, now_s() - p.t0);
}

// A rank the memory controller killed is named as such: the OOM kills the nodes' memory
// cgroups counted during the run (v1 memory.oom_control, v2 memory.events).
void Harness::name_oom_kills(RunResult& run, const Result<std::uint64_t>& before) {
  count_oom_kills(run, before, cluster_.oom_kills(job_nodes_), Cluster::oom_scope());
}

// Quanta that began and ended frozen (their work is exact), and the best one-second rate
// the job showed inside a quantum. Lost time is computed from them at the end, with the
// workload's final r0 (see finish_lost_time).
void Harness::measure_quanta(Pair& p) {
  for (const auto& j : p.jobs) {
    auto q = frozen_quanta(j.samples);
    p.run.quanta.insert(p.run.quanta.end(), q.begin(), q.end());
    p.run.best_rate = std::max(p.run.best_rate, best_rate(j.samples));
  }
}

// The agents' records of this run's rounds: switch times (slowest node a round) and the
// pages the paging extension moved.
void Harness::measure_switches(Pair& p) {
  auto& run = p.run;
  auto after = cluster_.switches(p.run_nodes.empty() ? job_nodes_ : p.run_nodes);
  if (!after) {
    if (run.error.empty()) run.error = "reading the switch records: " + after.error().message();
    return;
  }
  auto ours = [&](const nlohmann::json& s) {
    for (const char* side : {"outgoing", "incoming"})
      for (const auto& id : s.value(side, nlohmann::json::array()))
        for (const auto& j : p.jobs)
          if (id.is_number() && id.get<proto::JobId>() == j.id) return true;
    return false;
  };
  std::map<double, double> round_ms;  // round -> slowest node
  for (const auto& s : *after) {
    const double round = s.value("round", 0.0);
    if (round <= p.earlier_round[s.value("node", "")] || !ours(s)) continue;
    double& ms = round_ms[round];
    ms = std::max(ms, s.value("total_ms", 0.0));
    for (const auto& rep : s.value("paging", nlohmann::json::array())) {
      run.pages_out += static_cast<std::uint64_t>(std::max(0.0, rep.value("pages_out", 0.0)));
      run.pages_in += static_cast<std::uint64_t>(std::max(0.0, rep.value("pages_in", 0.0)));
    }
  }
  std::vector<double> ms;
  for (const auto& [round, v] : round_ms)
    ms.push_back(v);
  run.switch_rounds = static_cast<unsigned>(ms.size());
  run.switch_ms_median = median(ms);
  if (!ms.empty()) run.switch_ms_max = *std::max_element(ms.begin(), ms.end());
}

// One line on the run, with its lost time so far (the final figure uses the best r0 of
// all runs).
void Harness::report(const Pair& p) {
  const auto& run = p.run;
  const double lost = p.cal ? lost_per_switch(run.quanta, std::max(p.cal->r0, run.best_rate)) : NAN;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "  %s: makespan %.1f s, lost %.2f s/switch over %zu quanta, %u rounds (median "
                "%.0f ms), %llu major faults%s%s",
                p.label.c_str(), run.makespan_s, lost, run.quanta.size(), run.switch_rounds,
                run.switch_ms_median, static_cast<unsigned long long>(run.major_faults),
                run.verified ? ", verified" : ", NOT verified",
                run.error.empty() ? "" : (" - " + run.error).c_str());
  status(buf, true);
}

Result<Comparison> Harness::run(const Hooks& hooks) {
  started_ = now_s();
  comparison_ = Comparison{};
  comparison_.config = config_;
  comparison_.started = utc_now();
  session_id_ = comparison_.started + " pid " + std::to_string(::getpid());

  // A node reports its memory with its first metrics: wait a moment for every node.
  auto nodes = cluster_.nodes();
  for (double deadline = now_s() + 15; nodes && now_s() < deadline && !stopping();
       nodes = cluster_.nodes()) {
    bool ready = !nodes->empty();
    for (const auto& n : *nodes)
      if (n.state != "up" || n.mem_total == 0) ready = false;
    if (ready) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!nodes) return std::unexpected(nodes.error());
  std::uint64_t mem = 0;
  for (const auto& n : *nodes)
    if (n.state == "up") {
      nodes_.push_back(n.name);
      if (n.mem_total && (mem == 0 || n.mem_total < mem)) mem = n.mem_total;
    }
  if (nodes_.empty()) return fail(Errc::state, "no node of the cluster is up");
  if (mem == 0)
    return fail(Errc::state,
                "the cluster's nodes report no memory size (no metrics from their "
                "agents within 15 s)");
  comparison_.node_memory = mem;
  comparison_.cluster_nodes = static_cast<unsigned>(nodes_.size());
  if (auto v = validate(config_, comparison_.cluster_nodes); !v) return std::unexpected(v.error());
  const unsigned jn = config_.job_nodes ? config_.job_nodes : comparison_.cluster_nodes;
  job_nodes_.assign(nodes_.begin(), nodes_.begin() + jn);
  for (const auto& w : config_.workloads)
    if (w.builtin && !fs::exists(fs::path(bin_dir_) / w.program))
      return fail(Errc::not_found, (fs::path(bin_dir_) / w.program).string() +
                                       " is missing (build it: cmake --build build --target " +
                                       w.program + ")");
  if (std::find(config_.cyclesteal.begin(), config_.cyclesteal.end(), true) !=
          config_.cyclesteal.end() &&
      !fs::exists(fs::path(bin_dir_) / "dynamos-sweep"))
    return fail(Errc::not_found, (fs::path(bin_dir_) / "dynamos-sweep").string() +
                                     " (the cycle-stealing guest) is missing");

  work_dir_ = (fs::path(config_.out_dir) / "work").string();
  std::error_code ec;
  fs::create_directories(work_dir_, ec);
  if (ec) return fail(Errc::system, "creating " + work_dir_ + ": " + ec.message());
  work_dir_ = fs::absolute(work_dir_).string();

  runs_total_ =
      config_.repeat * static_cast<unsigned>(config_.workloads.size() * config_.policies.size() *
                                             config_.cyclesteal.size());
  expected_run_s_ = 2 * config_.work_s * 1.4 + 6;
  if (hooks.progress)
    status("comparing " + std::to_string(config_.workloads.size()) + " workload(s) x " +
               std::to_string(config_.policies.size()) + " polic" +
               (config_.policies.size() == 1 ? "y" : "ies") + " x " +
               std::to_string(config_.cyclesteal.size()) + " cycle-stealing mode(s) x " +
               std::to_string(config_.repeat) + " repeat(s) = " + std::to_string(runs_total_) +
               " runs on " + std::to_string(nodes_.size()) + " nodes of " +
               workload::format_size(mem) + "; two jobs of " +
               workload::format_size(footprint_per_rank(config_, mem)) + " a rank on " +
               std::to_string(jn) + " node(s) each",
           true);

  for (const auto& w : config_.workloads) {
    if (!w.builtin) continue;
    if (auto r = calibrate(w, hooks); !r) {
      if (stopping()) return fail(Errc::state, "interrupted");
      return std::unexpected(r.error());
    }
  }

  for (unsigned rep = 1; rep <= config_.repeat; ++rep)
    for (const auto& w : config_.workloads)
      for (bool cs : config_.cyclesteal)
        for (const auto& p : config_.policies) {
          current_run_start_ = now_s();
          auto r = run_pair(w, p, cs, rep, hooks);
          if (r.startup_failure && !stopping()) {
            status(
                "  a job failed while MPI started (before its data was set up): running the "
                "pair once more",
                true);
            auto again = run_pair(w, p, cs, rep, hooks);
            again.retried_after = r.error;
            r = std::move(again);
          }
          run_wall_sum_ += now_s() - current_run_start_;
          current_run_start_ = 0;
          ++runs_done_;
          comparison_.runs.push_back(std::move(r));
          if (stopping()) return fail(Errc::state, "interrupted");
        }
  comparison_.ended = utc_now();
  comparison_.wall_s = now_s() - started_;
  finish_lost_time(comparison_);
  summarise(comparison_);
  return comparison_;
}

}  // namespace dynamos::compare
