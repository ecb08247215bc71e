#include "bench/compare/slurm.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "bench/compare/cluster.hpp"
#include "bench/compare/measure.hpp"
#include "bench/compare/process.hpp"
#include "bench/workload/progress.hpp"
#include "bench/workload/result_line.hpp"
#include "bench/workload/size.hpp"
#include "kernelside/procfs.hpp"
#include "kernelside/spawn.hpp"

#ifndef DYNAMOS_SOURCE_DIR
#define DYNAMOS_SOURCE_DIR ""
#endif

namespace dynamos::compare {

namespace fs = std::filesystem;
using workload::ProgressReader;
using workload::ProgressState;

namespace {

constexpr auto kLook = std::chrono::milliseconds(10);

double now_s() {
  return workload::monotonic_ns() / 1e9;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string last_line(const std::string& text) {
  auto t = text.substr(0, text.find_last_not_of('\n') + 1);
  return t.substr(t.find_last_of('\n') + 1);
}

// A daemon or salloc the comparison started: ended (SIGTERM, then SIGKILL after `grace`)
// when it goes out of scope, so that nothing outlives a run.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { stop(std::chrono::seconds(10)); }

  Result<void> start(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     const std::string& log) {
    kernelside::SpawnOptions o;
    o.argv = argv;
    o.extra_env = env;
    o.out = kernelside::Redirect::file(log);
    o.err_to_out = true;
    o.new_process_group = true;
    auto pid = kernelside::spawn(o);
    if (!pid) return std::unexpected(pid.error());
    pid_ = *pid;
    return {};
  }
  bool running() {
    if (pid_ <= 0) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      status_ = st;
      return false;
    }
    return true;
  }
  // Waits up to `timeout` for it to end by itself; whether it did.
  bool wait(std::chrono::seconds timeout) {
    for (double end = now_s() + timeout.count(); running() && now_s() < end;)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return !running();
  }
  void stop(std::chrono::seconds grace) {
    if (!running()) return;
    ::kill(-pid_, SIGTERM);
    if (wait(grace)) return;
    ::kill(-pid_, SIGKILL);
    (void)wait(std::chrono::seconds(5));
  }
  int status() const { return status_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

// One job of a run (or a calibration) while it is watched.
struct Watched {
  std::string name, progress, output;
  std::string slurm_id;         // sbatch's job id
  gang::proto::JobId gang = 0;  // gangd's (dynamos)
  std::optional<ProgressReader> reader;
  std::vector<JobSample> samples;
  ProgressState state = ProgressState::starting;
  pid_t pid = 0;
  std::uint64_t major_faults = 0;
  std::vector<double> suspended_rss;
  bool ended = false;
  double work_end = 0, end_t = 0;
  std::string gang_state;
  int exit_code = -1;

  // One look at time t; `gang_running`: gangd's word on whether it runs (dynamos),
  // nullopt: from the rank's process state (Slurm stops it).
  void look(double t, std::optional<bool> gang_running) {
    JobSample s;
    s.t = t;
    if (!reader)
      if (auto r = ProgressReader::open(progress)) reader.emplace(std::move(*r));
    if (reader)
      if (auto p = reader->sample()) {
        s.work = p->work;
        s.iterations = p->iterations;
        s.updated = p->updated_ns / 1e9;
        s.computing = p->state == ProgressState::running || p->state == ProgressState::done;
        state = p->state;
        pid = p->pid;
      }
    bool stopped = false, alive = false;
    if (pid > 0)
      if (auto st = kernelside::read_stat(pid)) {
        alive = st->state != 'Z' && st->state != 'X';
        stopped = st->state == 'T';
        major_faults = std::max(major_faults, st->majflt);
        s.running = gang_running ? *gang_running : alive && !stopped;
        if (!s.running && alive && state == ProgressState::running)
          suspended_rss.push_back(static_cast<double>(st->rss_pages) *
                                  static_cast<double>(::sysconf(_SC_PAGESIZE)));
      }
    if (!alive && !samples.empty() && s.updated == 0) s = samples.back(), s.t = t;
    samples.push_back(s);
    if (!work_end && (state == ProgressState::done || state == ProgressState::failed)) work_end = t;
    // Slurm's jobs are over when their work is; gangd's when gangd says so (watch).
    if (!gang_running && work_end) end(t);
  }
  // The job's end: when its work ended (its progress file said so), else when it left
  // the scheduler.
  void end(double t) {
    if (ended) return;
    ended = true;
    end_t = work_end ? work_end : t;
  }
};

class Runner {
 public:
  Runner(const CompareConfig& c, const SlurmBed& bed, const std::atomic<bool>* stop,
         Comparison& out)
      : c_(c), bed_(bed), stop_(stop), out_(out) {
    const char* dir = std::getenv("DYNAMOS_SLURM_TESTBED_DIR");
    state_ = dir && *dir ? dir : "/run/dynamos-slurm-testbed";
    env_ = {"SLURM_CONF=" + state_ + "/slurm.conf", "OMPI_ALLOW_RUN_AS_ROOT=1",
            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"};
    slice_ =
        static_cast<unsigned>(std::chrono::duration_cast<std::chrono::seconds>(c.quantum).count());
  }
  ~Runner() { down(); }

  Result<void> run();

 private:
  bool stopping() const { return stop_ && stop_->load(); }
  void say(const std::string& line) const { std::fprintf(stderr, "%s\n", line.c_str()); }
  Result<Finished> must(const std::vector<std::string>& argv, std::chrono::seconds timeout) const;
  Result<void> up();
  void down();
  void drain_queue() const;
  std::uint64_t footprint() const { return footprint_per_rank(c_, c_.mem_per_node); }
  Result<void> sbatch(Watched& j, const std::vector<std::string>& argv, const std::string& policy);
  Result<void> watch(std::vector<Watched>& jobs, Cluster* gangd, double deadline);
  Result<void> calibrate(const WorkloadSpec& w);
  RunResult run_pair(const std::string& sched, const WorkloadSpec& w, const std::string& policy,
                     unsigned repeat);
  Result<void> start_pair(const std::string& sched, const WorkloadSpec& w,
                          const std::string& policy, const std::string& tag,
                          std::vector<Watched>& jobs, Child& daemon, std::optional<Cluster>& gangd,
                          double& t0);
  void measure(RunResult& r, std::vector<Watched>& jobs, double t0);

  const CompareConfig& c_;
  const SlurmBed& bed_;
  const std::atomic<bool>* stop_;
  Comparison& out_;
  std::string state_, work_;
  std::vector<std::string> env_;
  unsigned slice_ = 5;
  bool zram_ = false, testbed_ = false;
};

Result<Finished> Runner::must(const std::vector<std::string>& argv,
                              std::chrono::seconds timeout) const {
  auto r = run_command(argv, timeout, env_);
  if (!r) return std::unexpected(r.error());
  if (r->exit_code != 0)
    return fail(Errc::state, shell_join(argv) + " failed (exit " + std::to_string(r->exit_code) +
                                 (r->timed_out ? ", timed out" : "") +
                                 "): " + last_line(r->err.empty() ? r->out : r->err));
  return r;
}

Result<void> Runner::up() {
  for (const auto& f : {bed_.testbed, bed_.zram, bed_.lib_dir + "/dynamos_spank.so",
                        bed_.lib_dir + "/libdynamos_ext_paging.so", bed_.bin_dir + "/dynamosd",
                        bed_.bin_dir + "/dynamos"})
    if (!fs::exists(f))
      return fail(Errc::not_found, f + " is missing (build dynamos dynamosd dynamos_spank "
                                       "dynamos_ext_paging; the test bed needs libslurm-dev)");
  const auto mb = std::to_string(c_.mem_per_node >> 20);
  if (auto r = must({bed_.zram, "up", "--size", std::to_string((c_.mem_per_node >> 20) * 2) + "M",
                     "--holder", std::to_string(::getpid())},
                    std::chrono::seconds(60));
      !r)
    return std::unexpected(with_context(r.error(), "swap on zram"));
  zram_ = true;
  say("bringing the Slurm test bed up: one node, one CPU, " + mb + " MB, gang time slice " +
      std::to_string(slice_) + " s...");
  testbed_ = true;
  if (auto r = must({bed_.testbed, "up", "--nodes", "1", "--cpus-per-node", "1", "--mem-per-node",
                     mb, "--gang", "--timeslice", std::to_string(slice_), "--spank",
                     bed_.lib_dir + "/dynamos_spank.so", "--limit-memory", "--timeout", "30"},
                    std::chrono::seconds(180));
      !r)
    return std::unexpected(with_context(r.error(), "the Slurm test bed"));
  return {};
}

void Runner::down() {
  if (testbed_) {
    (void)run_command({"scancel", "--state=RUNNING,SUSPENDED,PENDING", "-u", "root"},
                      std::chrono::seconds(20), env_);
    if (auto r = run_command({bed_.testbed, "down"}, std::chrono::seconds(120));
        !r || r->exit_code != 0)
      say("bringing the Slurm test bed down failed: run " + bed_.testbed + " down");
    testbed_ = false;
  }
  if (zram_) {
    (void)run_command({bed_.zram, "down", "--holder", std::to_string(::getpid())},
                      std::chrono::seconds(60));
    zram_ = false;
  }
}

// Waits (up to 30 s) until Slurm's queue is empty, so that the next run starts on an empty
// node: a job still completing would share Slurm's gang rotation with it (and the
// allocation of a dynamos run be suspended with it).
void Runner::drain_queue() const {
  for (double end = now_s() + 30; now_s() < end;) {
    auto q = run_command({"squeue", "-h", "-o", "%i"}, std::chrono::seconds(10), env_);
    if (!q || (q->exit_code == 0 && q->out.find_first_not_of(" \n") == std::string::npos)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<void> Runner::sbatch(Watched& j, const std::vector<std::string>& argv,
                            const std::string& policy) {
  std::vector<std::string> cmd{"sbatch", "--parsable", "-n", "1", "-o", j.output};
  if (!policy.empty()) cmd.push_back("--dynamos-paging=" + policy);
  std::vector<std::string> mpirun{"mpirun", "-np", "1", "--oversubscribe"};
  mpirun.insert(mpirun.end(), argv.begin(), argv.end());
  cmd.insert(cmd.end(), {"--wrap", "exec " + shell_join(mpirun)});
  auto r = must(cmd, std::chrono::seconds(30));
  if (!r) return std::unexpected(r.error());
  j.slurm_id = r->out.substr(0, r->out.find_first_of(";\n"));
  return {};
}

// Looks at the jobs every 10 ms until all ended. Slurm's jobs end also when they leave
// its queue (a rank that died before its progress file said so).
Result<void> Runner::watch(std::vector<Watched>& jobs, Cluster* gangd, double deadline) {
  double last_queue = 0;
  for (;;) {
    if (stopping()) return fail(Errc::state, "interrupted");
    const double t = now_s();
    std::optional<std::vector<gang::proto::JobInfo>> infos;
    if (gangd) {
      auto l = gangd->jobs();
      if (!l) return std::unexpected(with_context(l.error(), "gangd inside the allocation"));
      infos = std::move(*l);
    }
    for (auto& j : jobs) {
      std::optional<bool> running;
      if (infos)
        for (const auto& i : *infos)
          if (i.job == j.gang) {
            running = i.state == "running";
            j.gang_state = i.state;
            j.exit_code = i.exit_code;
          }
      j.look(t, gangd ? std::optional<bool>(running.value_or(false)) : std::nullopt);
      if (gangd &&
          (j.gang_state == "done" || j.gang_state == "failed" || j.gang_state == "cancelled"))
        j.end(t);
    }
    if (!gangd && t - last_queue >= 1) {
      last_queue = t;
      auto q = run_command({"squeue", "-h", "-o", "%i"}, std::chrono::seconds(10), env_);
      if (q && q->exit_code == 0)
        for (auto& j : jobs)
          if (("\n" + q->out).find("\n" + j.slurm_id + "\n") == std::string::npos) j.end(t);
    }
    if (std::all_of(jobs.begin(), jobs.end(), [](const Watched& j) { return j.ended; })) return {};
    if (t > deadline) return fail(Errc::timed_out, "the jobs did not end in time (--timeout)");
    std::this_thread::sleep_for(kLook);
  }
}

Result<void> Runner::calibrate(const WorkloadSpec& w) {
  Watched j;
  j.name = "calibrate-" + w.name;
  j.progress = work_ + "/" + j.name + ".progress";
  j.output = work_ + "/" + j.name + ".out";
  fs::remove(j.progress);
  fs::remove(j.output);
  say("calibrating " + w.name + " alone under Slurm (" + workload::format_size(footprint()) + ", " +
      format_duration(std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::duration<double>(c_.calibrate_s))) +
      ")...");
  if (auto r =
          sbatch(j, builtin_argv(bed_.bin_dir, w, footprint(), j.progress, c_.calibrate_s, 0), "");
      !r)
    return r;
  std::vector<Watched> one;
  one.push_back(std::move(j));
  if (auto r = watch(one, nullptr, now_s() + c_.calibrate_s + 120); !r) return r;
  drain_queue();  // Slurm writes the output at the end
  auto result = workload::find_result_line(read_text(one[0].output));
  if (!result || !result->boolean("verified").value_or(false))
    return fail(Errc::state,
                "calibrating " + w.name + ": no verified RESULT line in " + one[0].output);
  Calibration cal;
  cal.workload = w.name;
  cal.footprint_per_rank = footprint();
  cal.verified = true;
  cal.seconds = result->number("seconds").value_or(0);
  cal.iterations_per_s =
      cal.seconds > 0 ? result->number("iterations").value_or(0) / cal.seconds : 0;
  cal.iterations =
      static_cast<std::uint64_t>(std::max(1.0, std::round(c_.work_s * cal.iterations_per_s)));
  cal.unit = one[0].reader ? one[0].reader->unit() : "";
  for (auto& s : one[0].samples)
    s.running = true;  // alone: never suspended
  cal.r0 = cal.r0_alone = best_rate(one[0].samples);
  if (!(cal.r0 > 0)) return fail(Errc::state, "calibrating " + w.name + ": no work rate measured");
  char buf[200];
  std::snprintf(buf, sizeof buf, "  %s alone: r0 %.3g %s/s, each job runs %llu iterations",
                w.name.c_str(), cal.r0, cal.unit.c_str(),
                static_cast<unsigned long long>(cal.iterations));
  say(buf);
  out_.calibration.push_back(cal);
  return {};
}

Result<void> Runner::start_pair(const std::string& sched, const WorkloadSpec& w,
                                const std::string& policy, const std::string& tag,
                                std::vector<Watched>& jobs, Child& daemon,
                                std::optional<Cluster>& gangd, double& t0) {
  std::uint64_t iterations = 0;
  for (const auto& cal : out_.calibration)
    if (cal.workload == w.name) iterations = cal.iterations;
  if (sched == kSchedulerSlurmFollow)
    if (auto r = daemon.start(
            {bed_.bin_dir + "/dynamosd", "--follow", "slurm", "--follow-dir", state_ + "/spank",
             "--follow-log", work_ + "/" + tag + "-switches.jsonl", "--paging-extension",
             bed_.lib_dir + "/libdynamos_ext_paging.so", "--log-level", "warning"},
            {}, work_ + "/" + tag + "-dynamosd.log");
        !r)
      return r;
  if (sched == kSchedulerDynamos) {
    // DynAMOS's gang scheduler inside one allocation of the node, Slurm's time slice its
    // quantum; the allocation ends when the harness has seen the jobs end.
    const std::string dir = work_ + "/" + tag + "-cluster", dyn = bed_.bin_dir + "/dynamos";
    std::error_code ec;  // an earlier attempt's
    fs::remove(dir + ".ready", ec);
    fs::remove(dir + ".release", ec);
    const std::string script = shell_join({dyn, "cluster", "up", "--slurm", "--quantum",
                                           std::to_string(slice_) + "s", "--state-dir", dir}) +
                               " && touch " + shell_join({dir + ".ready"}) + " && while [ ! -e " +
                               shell_join({dir + ".release"}) + " ]; do sleep 0.2; done; " +
                               shell_join({dyn, "cluster", "down", "--state-dir", dir});
    if (auto r =
            daemon.start({"salloc", "-N", "1", "--mem=" + std::to_string(c_.mem_per_node >> 20),
                          "bash", "-c", script},
                         env_, work_ + "/" + tag + "-cluster.log");
        !r)
      return r;
    for (double end = now_s() + 90; !fs::exists(dir + ".ready");) {
      if (!daemon.running() || now_s() > end || stopping())
        return fail(Errc::state,
                    "dynamos cluster up --slurm inside the allocation did not come "
                    "up: " +
                        last_line(read_text(work_ + "/" + tag + "-cluster.log")) + " (" + work_ +
                        "/" + tag + "-cluster.log)");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    gangd.emplace(dyn, dir + "/gangd.sock");
  }
  t0 = now_s();  // the makespan starts at the first submission
  for (auto& j : jobs) {
    auto argv = builtin_argv(bed_.bin_dir, w, footprint(), j.progress, std::nullopt, iterations);
    if (gangd) {
      SubmitRequest s;
      s.name = j.name;
      s.ranks = s.nodes = 1;
      s.paging = policy;
      s.output = j.output;
      s.argv = argv;
      auto id = gangd->submit(s);
      if (!id) return std::unexpected(id.error());
      j.gang = *id;
    } else if (auto r = sbatch(j, argv, sched == kSchedulerSlurmFollow ? policy : ""); !r) {
      return r;
    }
  }
  return {};
}

void Runner::measure(RunResult& r, std::vector<Watched>& jobs, double t0) {
  // Slurm writes a batch job's output when it ends: wait a moment for the RESULT lines.
  for (double end = now_s() + 15; now_s() < end;) {
    bool all = true;
    for (const auto& j : jobs)
      all = all && workload::find_result_line(read_text(j.output)).has_value();
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  double last_end = t0;
  std::vector<double> rss;
  r.verified = true;
  for (auto& j : jobs) {
    JobOutcome o;
    o.id = j.gang ? j.gang : std::strtoull(j.slurm_id.c_str(), nullptr, 10);
    o.state = j.gang ? j.gang_state : (j.state == ProgressState::done ? "done" : "failed");
    o.exit_code = j.gang ? j.exit_code : (j.state == ProgressState::done ? 0 : -1);
    o.major_faults = j.major_faults;
    o.output_file = j.output;
    if (auto res = workload::find_result_line(read_text(j.output))) {
      o.verified = res->boolean("verified").value_or(false);
      o.seconds = res->number("seconds").value_or(0);
      o.iterations = static_cast<std::uint64_t>(res->number("iterations").value_or(0));
      o.checksum = res->number("checksum").value_or(NAN);
    }
    if (!o.verified.value_or(false) || o.state != "done") {
      r.verified = false;
      if (r.error.empty())
        r.error = "job " + std::to_string(o.id) + " " + o.state +
                  (o.verified ? ", result NOT verified" : ", no RESULT line") + ": see " + j.output;
    }
    r.major_faults += j.major_faults;
    last_end = std::max(last_end, j.end_t);
    rss.insert(rss.end(), j.suspended_rss.begin(), j.suspended_rss.end());
    auto q = frozen_quanta(j.samples);
    r.quanta.insert(r.quanta.end(), q.begin(), q.end());
    r.best_rate = std::max(r.best_rate, best_rate(j.samples));
    r.jobs.push_back(std::move(o));
  }
  r.makespan_s = last_end - t0;
  auto gaps = switch_gaps(jobs[0].samples, jobs[1].samples, slice_ / 2.0);
  r.switch_gaps = static_cast<unsigned>(gaps.size());
  r.switch_gap_s = median(gaps);
  r.overlap = overlap_share(jobs[0].samples, jobs[1].samples);
  r.suspended_rss_bytes = median(rss);
}

RunResult Runner::run_pair(const std::string& sched, const WorkloadSpec& w,
                           const std::string& policy, unsigned repeat) {
  RunResult r;
  r.scheduler = sched;
  r.workload = w.name;
  r.policy = policy;
  r.repeat = repeat;
  r.footprint_bytes = footprint();
  std::string s = sched;
  std::replace(s.begin(), s.end(), '+', '-');
  const std::string tag = w.name + "-" + s + "-" + policy + "-r" + std::to_string(repeat);
  std::vector<Watched> jobs(2);
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    jobs[i].name = tag + "-" + static_cast<char>('a' + i);
    jobs[i].progress = work_ + "/" + jobs[i].name + ".progress";
    jobs[i].output = work_ + "/" + jobs[i].name + ".out";
    std::error_code ec;
    fs::remove(jobs[i].progress, ec);
    fs::remove(jobs[i].output, ec);
  }
  say("  " + sched + " / " + w.name + " / " + policy + " / repeat " + std::to_string(repeat) +
      "...");
  Child daemon;
  std::optional<Cluster> gangd;
  double t0 = now_s();
  // The test bed's nodes and the allocation's groups are all on this machine.
  auto oom_before = Cluster::machine_oom_kills();
  auto ran = start_pair(sched, w, policy, tag, jobs, daemon, gangd, t0);
  r.startup_failure = !ran;
  if (ran)
    ran = watch(jobs, gangd ? &*gangd : nullptr, t0 + static_cast<double>(c_.run_timeout.count()));
  if (ran) measure(r, jobs, t0);
  if (!ran) r.error = ran.error().message();
  count_oom_kills(r, oom_before, Cluster::machine_oom_kills(), "this machine (/proc/vmstat)");
  if (sched == kSchedulerDynamos) {
    std::ofstream(work_ + "/" + tag + "-cluster.release").put('\n');
    if (!daemon.wait(std::chrono::seconds(60)))
      say("  the allocation did not end within 60 s of the jobs: ended it");
  }
  daemon.stop(std::chrono::seconds(10));
  (void)run_command({"scancel", "--state=RUNNING,SUSPENDED,PENDING", "-u", "root"},
                    std::chrono::seconds(20), env_);
  drain_queue();
  char buf[400];
  std::snprintf(buf, sizeof buf,
                "    makespan %.2f s, switch gap %.3f s (%u), overlap %.2f, %llu major faults, "
                "suspended RSS %.0f MiB%s%s",
                r.makespan_s, r.switch_gap_s, r.switch_gaps, r.overlap,
                static_cast<unsigned long long>(r.major_faults), r.suspended_rss_bytes / (1 << 20),
                r.verified ? ", verified" : ", NOT verified",
                r.error.empty() ? "" : (" - " + r.error).c_str());
  say(buf);
  return r;
}

Result<void> Runner::run() {
  work_ = fs::absolute(fs::path(c_.out_dir) / "work").string();
  std::error_code ec;
  fs::create_directories(work_, ec);
  if (ec) return fail(Errc::system, "creating " + work_ + ": " + ec.message());
  for (const auto& w : c_.workloads)
    if (!fs::exists(fs::path(bed_.bin_dir) / w.program))
      return fail(Errc::not_found, (fs::path(bed_.bin_dir) / w.program).string() + " is missing");
  if (auto r = up(); !r) return r;
  out_.node_memory = c_.mem_per_node;
  out_.cluster_nodes = 1;
  for (const auto& w : c_.workloads)
    if (auto r = calibrate(w); !r) return r;
  // The schedulers take turns within each repeat, so that load from elsewhere falls on all
  // alike; Slurm alone pages on demand whatever the policy: one run a workload and repeat.
  for (unsigned rep = 1; rep <= c_.repeat; ++rep)
    for (const auto& w : c_.workloads)
      for (const auto& p : c_.policies)
        for (const auto& sched : c_.schedulers) {
          if (sched == kSchedulerSlurm && p != c_.policies.front()) continue;
          const std::string policy = sched == kSchedulerSlurm ? "demand" : p;
          auto r = run_pair(sched, w, policy, rep);
          if (r.startup_failure && !stopping()) {
            // The pair did not start (the allocation's cluster, dynamosd or a submission):
            // once more, as the harness does after a failed MPI start-up.
            say("  the run failed before its jobs were submitted: running it once more");
            auto again = run_pair(sched, w, policy, rep);
            again.retried_after = r.error;
            r = std::move(again);
          }
          out_.runs.push_back(std::move(r));
          if (stopping()) return fail(Errc::state, "interrupted");
        }
  return {};
}

}  // namespace

SlurmBed default_slurm_bed(const std::string& bin_dir) {
  SlurmBed b;
  b.bin_dir = bin_dir;
  b.lib_dir = (fs::path(bin_dir).parent_path() / "lib").string();
  b.zram = (fs::path(bin_dir) / "dynamos-zram-swap").string();
  b.testbed = std::string(DYNAMOS_SOURCE_DIR) + "/scripts/slurm-testbed.sh";
  return b;
}

Result<Comparison> run_slurm_comparison(const CompareConfig& config, const SlurmBed& bed,
                                        const std::atomic<bool>* stop, Comparison& partial) {
  partial = Comparison{};
  partial.config = config;
  partial.started = utc_now();
  const double t0 = now_s();
  if (::geteuid() != 0)
    return fail(Errc::not_permitted,
                "the Slurm test bed needs root (namespaces, slurmd, slurmctld, zram)");
  Result<void> ran;
  {
    Runner runner(config, bed, stop, partial);
    ran = runner.run();
  }  // the test bed goes down here
  partial.ended = utc_now();
  partial.wall_s = now_s() - t0;
  finish_lost_time(partial);
  summarise(partial);
  if (!ran) return std::unexpected(ran.error());
  return partial;
}

}  // namespace dynamos::compare
