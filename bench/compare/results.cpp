#include "bench/compare/results.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bench/compare/measure.hpp"
#include "bench/compare/process.hpp"
#include "bench/workload/size.hpp"

namespace dynamos::compare {

namespace fs = std::filesystem;

Stat stat_of(const std::vector<double>& values) {
  Stat s;
  double sum = 0;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    ++s.n;
    sum += v;
    s.min = s.n == 1 ? v : std::min(s.min, v);
    s.max = s.n == 1 ? v : std::max(s.max, v);
  }
  if (s.n == 0) return s;
  s.mean = sum / s.n;
  if (s.n > 1) {
    double sq = 0;
    for (double v : values)
      if (std::isfinite(v)) sq += (v - s.mean) * (v - s.mean);
    s.sd = std::sqrt(sq / (s.n - 1));
  } else {
    s.sd = 0;
  }
  return s;
}

void count_oom_kills(RunResult& run, const Result<std::uint64_t>& before,
                     const Result<std::uint64_t>& after, const std::string& scope) {
  if (!before || !after) {
    run.oom_kills = -1;
    return;
  }
  run.oom_kills = static_cast<std::int64_t>(*after - *before);
  if (run.oom_kills > 0 && !run.verified)
    run.error = "the memory controller's OOM killer killed a rank (" +
                std::to_string(run.oom_kills) + " OOM kill" + (run.oom_kills == 1 ? "" : "s") +
                " in " + scope + " during the run): " + run.error;
}

void finish_lost_time(Comparison& c) {
  for (auto& cal : c.calibration) {
    if (cal.r0_alone == 0) cal.r0_alone = cal.r0;
    for (const auto& r : c.runs)
      if (r.workload == cal.workload) cal.r0 = std::max(cal.r0, r.best_rate);
    for (auto& r : c.runs) {
      if (r.workload != cal.workload || r.quanta.empty() || !(cal.r0 > 0)) continue;
      r.lost_s = lost_per_quantum(r.quanta, cal.r0);
      r.lost_s_per_switch = lost_per_switch(r.quanta, cal.r0);
    }
  }
}

namespace {

SummaryRow summary_row(const Comparison& c, const std::string& sched, const std::string& w,
                       const std::string& p, bool cs) {
  SummaryRow row;
  row.scheduler = sched;
  row.workload = w;
  row.policy = p;
  row.cyclesteal = cs;
  std::vector<double> mk, lost, mf, sw, hs, gc, gw, gap, ov, rss;
  for (const auto& r : c.runs) {
    if (r.scheduler != sched || r.workload != w || r.policy != p || r.cyclesteal != cs) continue;
    ++row.runs;
    if (r.verified && r.error.empty()) ++row.verified_runs;
    if (!r.error.empty()) continue;
    mk.push_back(r.makespan_s);
    lost.push_back(r.lost_s_per_switch);
    mf.push_back(static_cast<double>(r.major_faults));
    sw.push_back(r.switch_ms_median);
    hs.push_back(r.host_slowdown);
    gc.push_back(r.guest_cpu_s);
    gw.push_back(r.guest_work);
    gap.push_back(r.switch_gap_s);
    ov.push_back(r.overlap);
    rss.push_back(r.suspended_rss_bytes);
  }
  row.makespan_s = stat_of(mk);
  row.lost_s_per_switch = stat_of(lost);
  row.major_faults = stat_of(mf);
  row.switch_ms = stat_of(sw);
  row.host_slowdown = stat_of(hs);
  row.guest_cpu_s = stat_of(gc);
  row.guest_work = stat_of(gw);
  row.switch_gap_s = stat_of(gap);
  row.overlap = stat_of(ov);
  row.suspended_rss_bytes = stat_of(rss);
  return row;
}

}  // namespace

void summarise(Comparison& c) {
  for (auto& r : c.runs) {
    r.host_slowdown = NAN;
    if (!r.cyclesteal) continue;
    for (const auto& b : c.runs)
      if (!b.cyclesteal && b.scheduler == r.scheduler && b.workload == r.workload &&
          b.policy == r.policy && b.repeat == r.repeat && b.error.empty() && r.error.empty() &&
          b.makespan_s > 0)
        r.host_slowdown = r.makespan_s / b.makespan_s;
  }
  c.summary.clear();
  std::vector<std::string> workloads;
  for (const auto& w : c.config.workloads)
    workloads.push_back(w.name);
  for (const auto& r : c.runs)
    if (std::find(workloads.begin(), workloads.end(), r.workload) == workloads.end())
      workloads.push_back(r.workload);
  for (const auto& w : workloads)
    for (bool cs : c.config.cyclesteal)
      for (const auto& sched : c.config.schedulers) {
        // Slurm alone only suspends and resumes: demand paging whatever --policies says.
        const std::vector<std::string> policies =
            sched == kSchedulerSlurm ? std::vector<std::string>{"demand"} : c.config.policies;
        for (const auto& p : policies)
          if (auto row = summary_row(c, sched, w, p, cs); row.runs) c.summary.push_back(row);
      }
  // Ratios against the first row of the same workload and mode.
  for (auto& row : c.summary)
    for (const auto& base : c.summary)
      if (base.workload == row.workload && base.cyclesteal == row.cyclesteal) {
        row.makespan_vs_first = ratio(row.makespan_s.mean, base.makespan_s.mean);
        row.lost_vs_first = ratio(row.lost_s_per_switch.mean, base.lost_s_per_switch.mean);
        break;
      }
}

namespace {

using ojson = nlohmann::ordered_json;

// A number, or null when it is not finite (not measured).
ojson num(double v) {
  return std::isfinite(v) ? ojson(v) : ojson(nullptr);
}
ojson stat_json(const Stat& s) {
  return {{"n", s.n},
          {"mean", num(s.mean)},
          {"sd", num(s.sd)},
          {"min", num(s.min)},
          {"max", num(s.max)}};
}
ojson list(const std::vector<double>& v) {
  ojson a = ojson::array();
  for (double x : v)
    a.push_back(num(x));
  return a;
}

ojson config_json(const Comparison& c) {
  const auto& k = c.config;
  ojson workloads = ojson::array();
  for (const auto& w : k.workloads)
    workloads.push_back(
        {{"name", w.name}, {"builtin", w.builtin}, {"program", w.program}, {"args", w.args}});
  return {{"workloads", workloads},
          {"policies", k.policies},
          {"cyclesteal", k.cyclesteal},
          {"schedulers", k.schedulers},
          {"nodes", c.cluster_nodes},
          {"job_nodes", k.job_nodes ? k.job_nodes : c.cluster_nodes},
          {"ranks_per_node", k.ranks_per_node},
          {"mem_per_node", c.node_memory},
          {"overcommit", num(k.overcommit)},
          {"quantum_s", num(k.quantum.count() / 1e9)},
          {"repeat", k.repeat},
          {"work_s", num(k.work_s)},
          {"calibrate_s", num(k.calibrate_s)},
          {"guest_policy", k.guest_policy},
          {"guest_mem", k.guest_mem},
          {"quick", k.quick},
          {"command", shell_join(k.argv)}};
}

ojson calibration_json(const Calibration& cal) {
  return {{"workload", cal.workload},
          {"r0", num(cal.r0)},
          {"r0_alone", num(cal.r0_alone)},
          {"unit", cal.unit},
          {"iterations_per_s", num(cal.iterations_per_s)},
          {"iterations", cal.iterations},
          {"footprint_per_rank", cal.footprint_per_rank},
          {"seconds", num(cal.seconds)},
          {"verified", cal.verified}};
}

ojson job_json(const JobOutcome& jb) {
  return {{"id", jb.id},
          {"state", jb.state},
          {"exit_code", jb.exit_code},
          {"reason", jb.reason},
          {"verified", jb.verified ? ojson(*jb.verified) : ojson(nullptr)},
          {"seconds", num(jb.seconds)},
          {"iterations", jb.iterations},
          {"checksum", num(jb.checksum)},
          {"major_faults", jb.major_faults},
          {"switches", jb.switches},
          {"cpu_s", num(jb.cpu_s)},
          {"output", jb.output_file}};
}

ojson run_json(const RunResult& r) {
  ojson jobs = ojson::array();
  for (const auto& jb : r.jobs)
    jobs.push_back(job_json(jb));
  return {{"scheduler", r.scheduler},
          {"workload", r.workload},
          {"policy", r.policy},
          {"cyclesteal", r.cyclesteal},
          {"repeat", r.repeat},
          {"makespan_s", num(r.makespan_s)},
          {"lost_s_per_switch", num(r.lost_s_per_switch)},
          {"lost_s", list(r.lost_s)},
          {"switch_rounds", r.switch_rounds},
          {"switch_ms_median", num(r.switch_ms_median)},
          {"switch_ms_max", num(r.switch_ms_max)},
          {"major_faults", r.major_faults},
          {"pages_out", r.pages_out},
          {"pages_in", r.pages_in},
          {"guest_cpu_s", num(r.guest_cpu_s)},
          {"guest_work", num(r.guest_work)},
          {"host_slowdown", num(r.host_slowdown)},
          {"switch_gap_s", num(r.switch_gap_s)},
          {"switch_gaps", r.switch_gaps},
          {"overlap", num(r.overlap)},
          {"suspended_rss_bytes", num(r.suspended_rss_bytes)},
          {"footprint_bytes", r.footprint_bytes},
          {"verified", r.verified},
          {"oom_kills", r.oom_kills},
          {"error", r.error},
          {"retried_after", r.retried_after},
          {"jobs", jobs}};
}

ojson summary_json(const SummaryRow& s) {
  return {{"scheduler", s.scheduler},
          {"workload", s.workload},
          {"policy", s.policy},
          {"cyclesteal", s.cyclesteal},
          {"runs", s.runs},
          {"verified_runs", s.verified_runs},
          {"makespan_s", stat_json(s.makespan_s)},
          {"lost_s_per_switch", stat_json(s.lost_s_per_switch)},
          {"major_faults", stat_json(s.major_faults)},
          {"switch_ms", stat_json(s.switch_ms)},
          {"host_slowdown", stat_json(s.host_slowdown)},
          {"guest_cpu_s", stat_json(s.guest_cpu_s)},
          {"guest_work", stat_json(s.guest_work)},
          {"switch_gap_s", stat_json(s.switch_gap_s)},
          {"overlap", stat_json(s.overlap)},
          {"suspended_rss_bytes", stat_json(s.suspended_rss_bytes)},
          {"makespan_vs_first", num(s.makespan_vs_first)},
          {"lost_vs_first", num(s.lost_vs_first)}};
}

}  // namespace

std::string results_json(const Comparison& c) {
  ojson doc = {{"config", config_json(c)},
               {"started", c.started},
               {"ended", c.ended},
               {"wall_s", num(c.wall_s)},
               {"calibration", ojson::array()},
               {"runs", ojson::array()},
               {"summary", ojson::array()},
               {"plots", c.plots}};
  for (const auto& cal : c.calibration)
    doc["calibration"].push_back(calibration_json(cal));
  for (const auto& r : c.runs)
    doc["runs"].push_back(run_json(r));
  for (const auto& s : c.summary)
    doc["summary"].push_back(summary_json(s));
  return doc.dump(2) + "\n";
}

std::string format_stat(const Stat& s, int precision) {
  if (s.n == 0 || !std::isfinite(s.mean)) return "-";
  char buf[64];
  if (s.n > 1 && std::isfinite(s.sd))
    std::snprintf(buf, sizeof buf, "%.*f ± %.*f", precision, s.mean, precision, s.sd);
  else
    std::snprintf(buf, sizeof buf, "%.*f", precision, s.mean);
  return buf;
}

namespace {

std::string ratio(double v) {
  if (!std::isfinite(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string count_stat(const Stat& s) {
  if (s.n == 0 || !std::isfinite(s.mean)) return "-";
  char buf[64];
  if (s.n > 1)
    std::snprintf(buf, sizeof buf, "%.0f ± %.0f", s.mean, s.sd);
  else
    std::snprintf(buf, sizeof buf, "%.0f", s.mean);
  return buf;
}

// The table of a comparison on the Slurm test bed: the schedulers side by side.
void slurm_table(std::ostringstream& o, const Comparison& c) {
  o << "| scheduler | workload | policy | makespan s | vs " << c.config.schedulers.front()
    << " | lost s/switch | switch gap s | overlap | major faults | suspended RSS MiB (of "
       "footprint) | verified |\n";
  o << "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const auto& s : c.summary) {
    Stat rss = s.suspended_rss_bytes;
    for (double* v : {&rss.mean, &rss.sd, &rss.min, &rss.max})
      *v /= 1 << 20;
    o << "| " << s.scheduler << " | " << s.workload << " | " << s.policy << " | "
      << format_stat(s.makespan_s, 2) << " | " << ratio(s.makespan_vs_first) << " | "
      << format_stat(s.lost_s_per_switch, 2) << " | " << format_stat(s.switch_gap_s, 3) << " | "
      << format_stat(s.overlap, 2) << " | " << count_stat(s.major_faults) << " | "
      << format_stat(rss, 0) << " (" << (c.runs.empty() ? 0 : c.runs.front().footprint_bytes >> 20)
      << ") | " << s.verified_runs << "/" << s.runs << " |\n";
  }
  o << "\nOne node of the Slurm test bed (one CPU), Slurm's time slice as the quantum for "
       "all. slurm: Slurm's gang scheduler alone (PreemptMode=GANG, CR_Core; it suspends "
       "and resumes, the kernel pages on demand); slurm+dynamos: the same with dynamosd "
       "--follow slurm paging at its switches (sbatch --dynamos-paging=POLICY); dynamos: "
       "DynAMOS's gang scheduler inside one Slurm allocation of the node. makespan: first "
       "submission to the last job's end (wall clock); lost s/switch: mean over the quanta "
       "that began and ended suspended of Q - W/r0 (r0: the workload's rate alone); switch "
       "gap: median time from the outgoing job's last progress to the incoming job's first; "
       "overlap: share of looks (every 10 ms) at which both jobs progressed; suspended RSS: "
       "median resident size of a suspended job's rank; ± is the standard deviation over "
       "repeats.\n";
}

}  // namespace

namespace {

void dynamos_table(std::ostringstream& o, const Comparison& c) {
  const auto& k = c.config;
  bool any_cs = std::find(k.cyclesteal.begin(), k.cyclesteal.end(), true) != k.cyclesteal.end();
  o << "| workload | policy |" << (any_cs ? " cycle stealing |" : "") << " makespan s | vs "
    << k.policies.front() << " | lost s/switch | vs " << k.policies.front()
    << " | major faults | switch ms |" << (any_cs ? " host slowdown | guest CPU s |" : "")
    << " verified |\n";
  o << "| --- | --- |" << (any_cs ? " --- |" : "") << " --- | --- | --- | --- | --- | --- |"
    << (any_cs ? " --- | --- |" : "") << " --- |\n";
  for (const auto& s : c.summary) {
    o << "| " << s.workload << " | " << s.policy << " |";
    if (any_cs) o << " " << (s.cyclesteal ? k.guest_policy : std::string("off")) << " |";
    o << " " << format_stat(s.makespan_s, 1) << " | " << ratio(s.makespan_vs_first) << " | "
      << format_stat(s.lost_s_per_switch, 2) << " | " << ratio(s.lost_vs_first) << " | "
      << count_stat(s.major_faults) << " | " << format_stat(s.switch_ms, 0) << " |";
    if (any_cs)
      o << " " << format_stat(s.host_slowdown, 2) << " | " << format_stat(s.guest_cpu_s, 1) << " |";
    o << " " << s.verified_runs << "/" << s.runs << " |\n";
  }
  o << "\nmakespan: first submission to last job's end; lost s/switch: mean over the measured "
       "quanta of Q - W/r0 (W: work done in a quantum of length Q, r0: the workload's rate "
       "alone); switch ms: median of the agents' switch (freeze, paging, thaw); ± is the "
       "standard deviation over repeats";
  if (any_cs)
    o << "; host slowdown: makespan with cycle stealing / without (same policy and repeat); "
         "guest CPU s: CPU time the guests got during the run";
  o << ".\n";
}

std::string run_name(const RunResult& r) {
  return (r.scheduler == kSchedulerDynamos ? "" : r.scheduler + " ") + r.workload + " " + r.policy +
         (r.cyclesteal ? " with cycle stealing" : "") + " repeat " + std::to_string(r.repeat);
}

void errors_and_plots(std::ostringstream& o, const Comparison& c) {
  bool errors = false;
  for (const auto& r : c.runs)
    if (!r.error.empty()) {
      if (!errors) o << "\nRuns that failed:\n\n";
      errors = true;
      o << "- " << run_name(r) << ": " << r.error << "\n";
    }
  bool retried = false;
  for (const auto& r : c.runs)
    if (!r.retried_after.empty()) {
      if (!retried) o << "\nRuns repeated once after a job failed while MPI started:\n\n";
      retried = true;
      o << "- " << run_name(r) << ": " << r.retried_after << "\n";
    }
  if (!c.plots.empty()) {
    o << "\n";
    for (const auto& p : c.plots)
      o << "![" << p << "](" << p << ")\n";
  }
  o << "\nReproduce: `" << shell_join(c.config.argv) << "`\n";
}

}  // namespace

std::string results_markdown(const Comparison& c) {
  const auto& k = c.config;
  std::ostringstream o;
  o << "# dynamos bench compare\n\n";
  o << c.cluster_nodes << " nodes of " << workload::format_size(c.node_memory) << ", jobs on "
    << (k.job_nodes ? k.job_nodes : c.cluster_nodes) << " node(s) x " << k.ranks_per_node
    << " rank(s), two jobs overcommitting node memory " << ratio(k.overcommit) << "x, quantum "
    << format_duration(k.quantum) << ", " << k.repeat << " repeat(s); started " << c.started << ", "
    << ratio(c.wall_s / 60) << " min.\n\n";
  if (on_slurm(k)) {
    slurm_table(o, c);
  } else {
    dynamos_table(o, c);
  }
  errors_and_plots(o, c);
  return o.str();
}

Result<void> write_results(const Comparison& c) {
  std::error_code ec;
  fs::create_directories(c.config.out_dir, ec);
  if (ec) return fail(Errc::system, "creating " + c.config.out_dir + ": " + ec.message());
  for (auto [name, text] : {std::pair<const char*, std::string>{"results.json", results_json(c)},
                            {"results.md", results_markdown(c)}}) {
    auto path = fs::path(c.config.out_dir) / name;
    std::ofstream f(path);
    f << text;
    f.close();
    if (!f) return fail(Errc::system, "writing " + path.string());
  }
  return {};
}

namespace {

// A plot's series: each policy (DynAMOS alone), or each scheduler and policy that has a
// row (the Slurm test bed), in the summary's order.
struct Series {
  std::string scheduler, policy, title;
};
std::vector<Series> plot_series(const Comparison& c) {
  std::vector<Series> out;
  if (!on_slurm(c.config)) {
    for (const auto& p : c.config.policies)
      out.push_back({kSchedulerDynamos, p, p});
    return out;
  }
  for (const auto& s : c.summary)
    if (std::none_of(out.begin(), out.end(), [&](const Series& x) {
          return x.scheduler == s.scheduler && x.policy == s.policy;
        }))
      out.push_back({s.scheduler, s.policy, s.scheduler + " " + s.policy});
  return out;
}

// A gnuplot histogram with error bars: rows are workloads, columns the series (one
// cycle-stealing mode per plot block).
std::string data_block(const Comparison& c, const std::vector<Series>& series, bool cs, bool lost) {
  std::ostringstream o;
  o << "# workload";
  for (const auto& p : series)
    o << " " << p.scheduler << "/" << p.policy << " sd";
  o << "\n";
  std::vector<std::string> workloads;
  for (const auto& s : c.summary)
    if (std::find(workloads.begin(), workloads.end(), s.workload) == workloads.end())
      workloads.push_back(s.workload);
  for (const auto& w : workloads) {
    o << "\"" << w << "\"";
    for (const auto& p : series) {
      const SummaryRow* row = nullptr;
      for (const auto& s : c.summary)
        if (s.workload == w && s.scheduler == p.scheduler && s.policy == p.policy &&
            s.cyclesteal == cs)
          row = &s;
      const Stat* st = row ? (lost ? &row->lost_s_per_switch : &row->makespan_s) : nullptr;
      if (st && st->n > 0)
        o << " " << num(st->mean) << " " << num(std::isfinite(st->sd) ? st->sd : 0.0);
      else
        o << " 0 0";
    }
    o << "\n";
  }
  return o.str();
}

}  // namespace

Result<void> write_plots(Comparison& c) {
  auto dir = fs::path(c.config.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(Errc::system, "creating " + dir.string() + ": " + ec.message());
  c.plots.clear();
  const auto series = plot_series(c);
  const std::size_t np = series.size();
  struct Plot {
    const char* file;
    const char* title;
    const char* ylabel;
    bool lost;
  };
  std::string script;
  script += "set terminal pngcairo size 900,520 noenhanced font ',11'\n";
  script += "set style data histograms\nset style histogram errorbars gap 2 lw 1\n";
  script += "set style fill solid 0.85 border -1\nset boxwidth 0.9\nset grid ytics\n";
  script += "set yrange [0:*]\nset key top left\nset xtics nomirror\n";
  std::vector<std::pair<std::string, std::string>> data_files;
  for (const Plot& p :
       {Plot{"makespan.png", "Makespan of two overcommitted jobs", "seconds", false},
        Plot{"lost-per-switch.png", "Lost time per switch (Q - W/r0)", "seconds", true}}) {
    std::string plot_cmd;
    for (bool cs : c.config.cyclesteal) {
      std::string dat = std::string(p.lost ? "lost" : "makespan") + (cs ? "-cs" : "") + ".dat";
      data_files.emplace_back(dat, data_block(c, series, cs, p.lost));
      for (std::size_t i = 0; i < np; ++i) {
        std::string title = series[i].title;
        if (cs) title += " + " + c.config.guest_policy + " guest";
        // The first series carries the workloads' names as x labels.
        plot_cmd += std::string(plot_cmd.empty() ? "" : ", ") + "'" + (dir / dat).string() +
                    "' using " + std::to_string(2 + 2 * i) + ":" + std::to_string(3 + 2 * i) +
                    (plot_cmd.empty() ? ":xtic(1)" : "") + " title '" + title + "'";
      }
    }
    script += "set output '" + (dir / p.file).string() + "'\n";
    char shape[160];
    std::snprintf(shape, sizeof shape, "%u nodes of %s, overcommit %.2gx, quantum %s, %u repeat%s",
                  c.cluster_nodes, workload::format_size(c.node_memory).c_str(),
                  c.config.overcommit, format_duration(c.config.quantum).c_str(), c.config.repeat,
                  c.config.repeat == 1 ? "" : "s");
    script += std::string("set title \"") + p.title + "\\n" + shape + "\"\nset ylabel '" +
              p.ylabel + "'\n";
    script += "plot " + plot_cmd + "\n";
    c.plots.push_back(p.file);
  }
  for (const auto& [name, text] : data_files) {
    std::ofstream f(dir / name);
    f << text;
    if (!f) return fail(Errc::system, "writing " + (dir / name).string());
  }
  {
    std::ofstream f(dir / "plots.gp");
    f << script;
    if (!f) return fail(Errc::system, "writing " + (dir / "plots.gp").string());
  }
  auto r = run_command({"gnuplot", (dir / "plots.gp").string()}, std::chrono::seconds(60));
  if (!r) {
    c.plots.clear();
    return fail(Errc::not_found,
                "gnuplot is not installed (apt-get install gnuplot-nox, or run "
                "scripts/setup.sh): no plots drawn");
  }
  if (r->exit_code != 0) {
    c.plots.clear();
    auto first = r->err.substr(0, r->err.find('\n', r->err.find_first_not_of('\n')));
    return fail(Errc::system, "gnuplot failed (" + (dir / "plots.gp").string() + "): " + first);
  }
  return {};
}

}  // namespace dynamos::compare
