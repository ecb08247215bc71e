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

#include "bench/workload/progress.hpp"
#include "bench/workload/result_line.hpp"
#include "bench/workload/size.hpp"

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

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
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
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return NAN;
  std::istringstream in(text.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

// One job of a run while it is watched.
struct Harness::Job {
  proto::JobId id = 0;
  std::string progress_path, output_path;
  std::optional<ProgressReader> reader;
  struct Sample {
    double t = 0;
    bool running = false;    // gangd: running (vs frozen)
    bool computing = false;  // the workload had set up its data (progress state running)
    std::uint64_t work = 0;
    std::uint64_t iterations = 0;
  };
  std::vector<Sample> samples;
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
  std::vector<std::string> a{
      (fs::path(bin_dir_) / w.program).string(),
      "--mem",
      std::to_string(footprint_per_rank(config_, comparison_.node_memory) >> 20) + "M",
      "--progress-file",
      progress,
      "-q"};
  if (calibration) {
    a.push_back("--seconds");
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", config_.calibrate_s);
    a.push_back(buf);
  } else {
    for (const auto& c : comparison_.calibration)
      if (c.workload == w.name) {
        a.push_back("--iterations");
        a.push_back(std::to_string(c.iterations));
      }
  }
  return a;
}

Result<void> Harness::calibrate(const WorkloadSpec& w, const Hooks& hooks) {
  Calibration cal;
  cal.workload = w.name;
  cal.footprint_per_rank = footprint_per_rank(config_, comparison_.node_memory);
  const std::string tag = "calibrate-" + w.name;
  Job job;
  job.progress_path = (fs::path(work_dir_) / (tag + ".progress")).string();
  job.output_path = (fs::path(work_dir_) / (tag + ".out")).string();
  fs::remove(job.progress_path);
  SubmitRequest s;
  s.name = tag;
  s.ranks = static_cast<unsigned>(job_nodes_.size()) * config_.ranks_per_node;
  s.nodes = static_cast<unsigned>(job_nodes_.size());
  s.paging = "demand";
  s.output = job.output_path;
  s.argv = workload_argv(w, job.progress_path, true);
  if (hooks.progress)
    status("calibrating " + w.name + " alone (" + std::to_string(s.ranks) + " ranks, " +
               workload::format_size(cal.footprint_per_rank) + " a rank, " +
               fmt_s(config_.calibrate_s) + ")...",
           true);
  auto id = cluster_.submit(s);
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
  auto out = read_file(job.output_path);
  auto result = workload::find_result_line(out);
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

RunResult Harness::run_pair(const WorkloadSpec& w, const std::string& policy, bool cyclesteal,
                            unsigned repeat, const Hooks& hooks) {
  RunResult run;
  run.workload = w.name;
  run.policy = policy;
  run.cyclesteal = cyclesteal;
  run.repeat = repeat;
  const std::string tag = w.name.substr(0, w.name.find(':')) + (w.builtin ? "" : "-cmd") + "-" +
                          policy + (cyclesteal ? "-cs" : "") + "-r" + std::to_string(repeat);
  const std::string label = w.name + " / " + policy + (cyclesteal ? " + guests" : "") +
                            (config_.repeat > 1 ? " / repeat " + std::to_string(repeat) : "");
  const Calibration* cal = nullptr;
  for (const auto& c : comparison_.calibration)
    if (c.workload == w.name) cal = &c;

  std::vector<Job> jobs(2);
  struct Guest {
    std::string node;
    pid_t pid = -1;
    std::string progress_path;
    std::optional<ProgressReader> reader;
    double cpu0 = NAN;
    std::uint64_t work0 = 0;
  };
  std::vector<Guest> guests;
  std::vector<std::string> cyclesteal_nodes;

  // Whatever happens below, nothing of this run is left behind.
  auto cleanup = [&] {
    for (auto& j : jobs)
      if (j.id && !ended(j.info.state)) (void)cluster_.cancel(j.id);
    for (auto& g : guests)
      if (g.pid > 0) ::kill(g.pid, SIGKILL);
    for (const auto& n : cyclesteal_nodes)
      (void)cluster_.cyclesteal(n, false, "");
    cyclesteal_nodes.clear();
    guests.clear();
  };
  auto failed = [&](std::string why) {
    run.error = std::move(why);
    cleanup();
    status("  " + label + ": FAILED: " + run.error, true);
    return run;
  };

  // Switch rounds already on record, to tell this run's from older ones.
  std::map<std::string, double> last_round;
  if (auto before = cluster_.switches(job_nodes_); before) {
    for (const auto& s : *before)
      last_round[s["node"].string()] =
          std::max(last_round[s["node"].string()], s["round"].number());
  } else {
    return failed(before.error().message());
  }

  if (cyclesteal) {
    for (const auto& node : nodes_) {
      if (auto r = cluster_.cyclesteal(node, true, config_.guest_policy); !r)
        return failed(r.error().message());
      cyclesteal_nodes.push_back(node);
      Guest g;
      g.node = node;
      g.progress_path = (fs::path(work_dir_) / (tag + "-guest-" + node + ".progress")).string();
      fs::remove(g.progress_path);
      auto pid = cluster_.guest_run(node,
                                    {(fs::path(bin_dir_) / "dynamos-sweep").string(), "--mem",
                                     std::to_string(config_.guest_mem >> 20) + "M", "--seconds",
                                     "100000", "--progress-file", g.progress_path, "-q"},
                                    work_dir_);
      if (!pid) return failed(pid.error().message());
      g.pid = *pid;
      guests.push_back(std::move(g));
    }
  }

  // The guests' starting point, once each has set up its data (a few seconds at most).
  for (auto& g : guests) {
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
      return failed("the guest on " + g.node + " (pid " + std::to_string(g.pid) +
                    ") did not start its work within 10 s");
    g.cpu0 = cpu_seconds(g.pid);
  }

  const double t0 = now_s();
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    auto& j = jobs[i];
    const std::string name = tag + "-" + static_cast<char>('a' + i);
    j.progress_path = (fs::path(work_dir_) / (name + ".progress")).string();
    j.output_path = (fs::path(work_dir_) / (name + ".out")).string();
    fs::remove(j.progress_path);
    SubmitRequest s;
    s.name = name;
    s.ranks = static_cast<unsigned>(job_nodes_.size()) * config_.ranks_per_node;
    s.nodes = static_cast<unsigned>(job_nodes_.size());
    s.paging = policy;
    s.output = j.output_path;
    s.argv = workload_argv(w, j.progress_path, false);
    auto id = cluster_.submit(s);
    if (!id) return failed(id.error().message());
    j.id = *id;
  }

  // Watch until both ended.
  bool hook_done = !hooks.during_run;
  bool placement_checked = false;
  std::vector<std::string> run_nodes;
  for (;;) {
    if (stopping()) return failed("interrupted");
    auto list = cluster_.jobs();
    if (!list) return failed(list.error().message());
    const double t = now_s();
    for (auto& j : jobs) {
      bool found = false;
      for (const auto& info : *list)
        if (info.job == j.id) {
          j.info = info;
          found = true;
        }
      if (!found) return failed("job " + std::to_string(j.id) + " vanished from gangd's list");
      Job::Sample s;
      s.t = t;
      s.running = j.info.state == "running";
      if (auto p = j.progress()) {
        s.work = p->work;
        s.iterations = p->iterations;
        s.computing = p->state == ProgressState::running || p->state == ProgressState::done;
      } else if (!j.samples.empty()) {
        s.work = j.samples.back().work;
      }
      j.samples.push_back(s);
    }
    if (!placement_checked && !jobs[0].info.nodes.empty() && !jobs[1].info.nodes.empty()) {
      placement_checked = true;
      run_nodes = jobs[0].info.nodes;
      if (jobs[0].info.nodes != jobs[1].info.nodes || jobs[0].info.slot == jobs[1].info.slot)
        return failed("the two jobs do not alternate on the same nodes (job " +
                      std::to_string(jobs[0].id) + " slot " + std::to_string(jobs[0].info.slot) +
                      ", job " + std::to_string(jobs[1].id) + " slot " +
                      std::to_string(jobs[1].info.slot) +
                      "): the cluster's nodes take more than one job a slot; start it with "
                      "--slots equal to the ranks per node");
    }
    if (ended(jobs[0].info.state) && ended(jobs[1].info.state)) break;
    if (t - t0 > static_cast<double>(config_.run_timeout.count()))
      return failed("the jobs did not end within " + fmt_s(config_.run_timeout.count()) +
                    " (raise --timeout)");
    if (!hook_done && jobs[0].info.switches >= 1 && jobs[1].info.switches >= 1) {
      hook_done = true;
      LiveRun live{run, {jobs[0].id, jobs[1].id}, run_nodes, t - t0};
      hooks.during_run(cluster_, live);
    }
    if (hooks.progress) {
      std::string line = "[" + std::to_string(runs_done_ + 1) + "/" + std::to_string(runs_total_) +
                         "] " + label + ": " + fmt_s(now_s() - t0);
      for (const auto& j : jobs) {
        line += " | job " + std::to_string(j.id) + " " + j.info.state;
        if (cal && cal->iterations && !j.samples.empty()) {
          line += " " +
                  std::to_string(std::min<std::uint64_t>(
                      100, j.samples.back().iterations * 100 / cal->iterations)) +
                  "%";
        }
      }
      line += " | total " + fmt_s(now_s() - started_) + ", ETA " + eta();
      status(line, false);
    }
    std::this_thread::sleep_for(kPoll);
  }

  // Guests: what they got during the run.
  if (!guests.empty()) {
    double cpu = 0, work = 0;
    for (auto& g : guests) {
      double c = cpu_seconds(g.pid);
      if (std::isfinite(c) && std::isfinite(g.cpu0)) cpu += c - g.cpu0;
      if (g.reader)
        if (auto s = g.reader->sample()) work += static_cast<double>(s->work - g.work0);
    }
    run.guest_cpu_s = cpu;
    run.guest_work = work;
  }

  // Makespan, faults, results.
  std::uint64_t first_submit = UINT64_MAX, last_end = 0;
  run.verified = true;
  for (auto& j : jobs) {
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
    auto result = workload::find_result_line(read_file(j.output_path));
    if (result) {
      o.verified = result->boolean("verified").value_or(false);
      o.seconds = result->number("seconds").value_or(0);
      o.iterations = static_cast<std::uint64_t>(result->number("iterations").value_or(0));
      o.checksum = result->number("checksum").value_or(NAN);
    }
    bool ok = o.exit_code == 0 && o.state == "done" && (!o.verified || *o.verified) &&
              (o.verified || !w.builtin);
    if (!ok) {
      run.verified = false;
      bool computed = false;
      for (const auto& smp : j.samples)
        computed = computed || smp.computing;
      if (w.builtin && !computed && !o.verified) run.startup_failure = true;
      if (run.error.empty())
        run.error = "job " + std::to_string(j.id) + " " + o.state + ", exit code " +
                    std::to_string(o.exit_code) + (o.reason.empty() ? "" : " (" + o.reason + ")") +
                    (o.verified && !*o.verified ? ", result NOT verified" : "") +
                    (w.builtin && !o.verified ? ", no RESULT line" : "") + ": see " + j.output_path;
    }
    run.jobs.push_back(std::move(o));
  }
  run.makespan_s = (first_submit != UINT64_MAX && last_end > first_submit)
                       ? (last_end - first_submit) / 1e9
                       : now_s() - t0;

  // Quanta that began and ended frozen (their work is exact), and the best one-second
  // rate the job showed inside a quantum. Lost time is computed from them at the end,
  // with the workload's final r0 (see finish_lost_time).
  if (cal && w.builtin) {
    for (const auto& j : jobs) {
      const auto& s = j.samples;
      for (std::size_t i = 1; i + 1 < s.size(); ++i) {
        if (!(s[i].running && !s[i - 1].running && s[i - 1].computing)) continue;
        std::size_t k = i;
        while (k + 1 < s.size() && s[k + 1].running)
          ++k;
        if (k + 1 >= s.size()) break;  // still running at the end: it ended in this quantum
        const auto& before = s[i - 1];
        const auto& after = s[k + 1];
        double q = (s[k].t + after.t) / 2 - (before.t + s[i].t) / 2;
        double work = static_cast<double>(after.work - before.work);
        if (q > 0) run.quanta.emplace_back(q, work);
        i = k;
      }
      // Windows of at least 0.9 s between samples of one running stretch.
      for (std::size_t a = 0; a < s.size(); ++a) {
        if (!s[a].running || !s[a].computing) continue;
        for (std::size_t b = a + 1; b < s.size() && s[b].running; ++b)
          if (s[b].t - s[a].t >= 0.9) {
            run.best_rate = std::max(run.best_rate, (s[b].work - s[a].work) / (s[b].t - s[a].t));
            break;
          }
      }
    }
  }

  // The agents' records of this run's rounds.
  if (auto after = cluster_.switches(run_nodes.empty() ? job_nodes_ : run_nodes); after) {
    std::map<double, double> round_ms;  // round -> slowest node
    for (const auto& s : *after) {
      if (s["round"].number() <= last_round[s["node"].string()]) continue;
      bool ours = false;
      for (const auto* list : {&s["outgoing"], &s["incoming"]})
        for (const auto& id : list->array())
          for (const auto& j : jobs)
            if (static_cast<proto::JobId>(id.number()) == j.id) ours = true;
      if (!ours) continue;
      double& ms = round_ms[s["round"].number()];
      ms = std::max(ms, s["total_ms"].number());
      for (const auto& rep : s["paging"].array()) {
        run.pages_out += static_cast<std::uint64_t>(std::max(0.0, rep["pages_out"].number()));
        run.pages_in += static_cast<std::uint64_t>(std::max(0.0, rep["pages_in"].number()));
      }
    }
    std::vector<double> ms;
    for (const auto& [round, v] : round_ms)
      ms.push_back(v);
    run.switch_rounds = static_cast<unsigned>(ms.size());
    run.switch_ms_median = median(ms);
    if (!ms.empty()) run.switch_ms_max = *std::max_element(ms.begin(), ms.end());
  } else if (run.error.empty()) {
    run.error = "reading the switch records: " + after.error().message();
  }
  cleanup();

  // Lost time so far (the final figure uses the best r0 of all runs).
  double lost = NAN;
  if (cal && !run.quanta.empty()) {
    const double r0 = std::max(cal->r0, run.best_rate);
    lost = 0;
    for (const auto& [q, work] : run.quanta)
      lost += (q - work / r0) / static_cast<double>(run.quanta.size());
  }
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "  %s: makespan %.1f s, lost %.2f s/switch over %zu quanta, %u rounds (median "
                "%.0f ms), %llu major faults%s%s",
                label.c_str(), run.makespan_s, lost, run.quanta.size(), run.switch_rounds,
                run.switch_ms_median, static_cast<unsigned long long>(run.major_faults),
                run.verified ? ", verified" : ", NOT verified",
                run.error.empty() ? "" : (" - " + run.error).c_str());
  status(buf, true);
  return run;
}

Result<Comparison> Harness::run(const Hooks& hooks) {
  started_ = now_s();
  comparison_ = Comparison{};
  comparison_.config = config_;
  comparison_.started = utc_now();

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
