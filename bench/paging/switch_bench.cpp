// dynamos-bench-switch: gang switches between two memory-bound jobs on a node whose
// memory cannot hold both, under each paging policy of the paging extension.
//
// Per policy: a node cgroup with a memory limit (the node's RAM; swap on zram), two
// dynamos-sweep jobs in child cgroups, each with a fixed amount of work: as many sweeps
// of its working set as it does alone in --switches/2 quanta (from the first policy's r0,
// the same for every policy). Job A starts and
// is switched out (frozen), job B starts and runs a first quantum, then the jobs
// alternate quanta until both have done their work (a job that is done ends, verifies its
// data and leaves the node to the other). A switch is dynamosd's: it freezes the outgoing
// job (kernelside), calls the extension's switch_out and switch_in through core's
// extension host, and thaws the incoming job, whose memory alone is shielded from the
// reclaim the node's limit triggers (Group::set_reclaim_protected); ticks go to the
// extension every --tick-ms during the quantum.
//
// Calibration: r0, the rate of one job alone without memory limit. Lost time of a
// quantum of length Q in which the job did work W: Q - W/r0, the time the job waited for
// a CPU included (on a busy node that wait holds kswapd, zram compression and the
// extension's own background page-out); the same without that wait is a named secondary
// figure. Makespan: on the wall clock, from the jobs' start until both did their work and
// verified it (makespan_wall_s); the computed one (switches + quanta + lost time) is kept
// as makespan_computed_s. See docs/paging.md.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include <boost/program_options.hpp>

#include "bench/paging/node.hpp"
#include "bench/workload/interrupt.hpp"
#include "bench/workload/options.hpp"
#include "bench/workload/size.hpp"
#include "core/extension_host.hpp"
#include "extensions/paging/policy.hpp"
#include "kernelside/memory.hpp"
#include "kernelside/procfs.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::paging_bench;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  uint64_t node_memory = 1ull << 30;
  uint64_t job_memory = 700ull << 20;
  double quantum = 8;
  int switches = 6;
  std::vector<std::string> policies = paging::policy_names();
  bool json = false;
  int tick_ms = 100;
  double calibrate_s = 3;
  std::string sweep, extension, swap_size = "4G";
  std::vector<std::string> sets;  // ext tunables: key=value
  bool verbose = false;
  bool verify = true;  // let the jobs verify their data at the end and check the results
};

// Switches at most, as a multiple of --switches: a run that needs more is cut off there
// (the jobs then finish without gang scheduling) and says so in `warning`.
constexpr int kSwitchCapFactor = 10;

struct PolicyResult {
  std::string policy;
  double r0 = 0;       // work per second on a CPU of its own (W / on-CPU time)
  double r0_wall = 0;  // work per wall-clock second during the calibration
  // lost: Q - W/r0 (the CPU wait included); lost_no_wait: the same minus the time the
  // job's threads were runnable but waiting for a CPU.
  std::vector<double> lost, lost_no_wait, switch_s, majflt, quantum, cpu_wait;
  uint64_t pages_out = 0, pages_in = 0, background_pages_out = 0, background_pages_in = 0;
  uint64_t iterations = 0;  // sweeps of its working set each job does
  double makespan = 0;
  double makespan_wall = 0;  // wall clock from job A's start until both jobs ended
  bool verified = false;
  bool checked = false;  // results verified rather than the jobs killed (--no-verify)
  std::string warning;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A field of one of the extension's JSON reports (0 or "" when missing or not JSON).
nlohmann::json report_of(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  return j.is_object() ? j : nlohmann::json::object();
}
double json_number(const nlohmann::json& report, const char* key) {
  auto it = report.find(key);
  return it != report.end() && it->is_number() ? it->get<double>() : 0;
}
std::string json_text(const nlohmann::json& report, const char* key) {
  auto it = report.find(key);
  return it != report.end() && it->is_string() ? it->get<std::string>() : "";
}

core::Subject subject_of(Job& job, uint64_t id, const std::string& policy,
                         const std::string& node_cgroup, double r0, double work) {
  core::Subject s;
  s.kind = DYNAMOS_SUBJECT_JOB;
  s.id = id;
  s.name = job.name();
  s.cgroup = job.group().path();
  s.pids = {job.pid()};
  s.policy = policy;
  s.attrs = {
      {"node_cgroup", node_cgroup}, {"r0", std::to_string(r0)}, {"work", std::to_string(work)}};
  return s;
}

// CPU time and run-queue wait of all threads of a process (the sweep works in threads
// other than its main thread; /proc/PID/schedstat covers the main thread only).
Result<kernelside::SchedStat> process_schedstat(pid_t pid) {
  auto tids = kernelside::list_threads(pid);
  if (!tids) return std::unexpected(tids.error());
  kernelside::SchedStat sum;
  for (pid_t tid : *tids) {
    if (auto s = kernelside::read_thread_schedstat(pid, tid)) {
      sum.on_cpu += s->on_cpu;
      sum.waiting += s->waiting;
      sum.timeslices += s->timeslices;
    }
  }
  return sum;
}

// r0: the best one-second rate of a job alone, without memory limit, counted per second
// of CPU time the job got (the machine is shared: time spent waiting for a CPU is not the
// job's rate), and the plain wall-clock rate of the same window.
struct Calibration {
  double per_cpu_s = 0, per_wall_s = 0;
};
Result<Calibration> calibrate(const Options& o, const kernelside::Layout& layout,
                              const std::string& root, const std::string& dir) {
  auto g =
      kernelside::Group::create(layout, root + "/calibrate",
                                {kernelside::Controller::memory, kernelside::Controller::freezer});
  if (!g) return std::unexpected(g.error());
  OwnedGroup group(*g);
  JobSpec spec{o.sweep, o.job_memory, 1e6, 7};
  auto job = Job::start(spec, *group, dir, "calibrate");
  if (!job) return std::unexpected(job.error());
  if (auto r = (*job)->wait_running(std::chrono::seconds(120)); !r)
    return std::unexpected(r.error());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Calibration best;
  auto end = Clock::now() + std::chrono::duration<double>(o.calibrate_s);
  do {
    auto a = (*job)->sample();
    auto ca = process_schedstat((*job)->pid());
    std::this_thread::sleep_for(std::chrono::seconds(1));
    auto b = (*job)->sample();
    auto cb = process_schedstat((*job)->pid());
    if (!a || !b) return std::unexpected(a ? b.error() : a.error());
    if (!ca || !cb) return std::unexpected(ca ? cb.error() : ca.error());
    double cpu = std::chrono::duration<double>(cb->on_cpu - ca->on_cpu).count();
    double work = static_cast<double>(b->work - a->work);
    if (cpu > 0) best.per_cpu_s = std::max(best.per_cpu_s, work / cpu);
    best.per_wall_s = std::max(best.per_wall_s, workload::progress_rate(*a, *b));
  } while (Clock::now() < end);
  (*job)->kill();
  return best;
}

// One policy's run: the node's cgroup with its memory limit, the two jobs, and what the
// switches and quanta measured.
struct PolicyRun {
  const Options& o;
  const std::string& policy;
  core::ExtensionHost& host;
  OwnedGroup node;
  std::vector<std::unique_ptr<Job>> jobs;  // A, B
  double first_switch = 0;                 // the extension's number of this policy's first switch
  Clock::time_point started;               // just before job A started
  PolicyResult res;
  uint64_t goal = 0;      // bytes of work each job does (its sweeps times its memory)
  bool done[2] = {};      // the job did its work, ended and was checked (or killed)
  bool verified[2] = {};  // its result line says its data verified

  core::Subject subject(int index, double work = 0) {
    core::Subject s = subject_of(*jobs[index], index + 1, policy, node->path(), res.r0, work);
    if (done[index]) s.pids.clear();  // ended: its (empty) cgroup's processes, none
    return s;
  }
};

// The node's cgroup (memory and freezer); its memory limit is set once it is owned.
Result<kernelside::Group> make_node(const kernelside::Layout& layout, const std::string& root,
                                    const std::string& policy) {
  return kernelside::Group::create(
      layout, root + "/" + policy,
      {kernelside::Controller::memory, kernelside::Controller::freezer});
}

// Job A starts and is switched out (frozen), then job B starts and is switched in.
Result<void> start_jobs(PolicyRun& p, const std::string& dir) {
  auto ga = p.node->create_child("jobA");
  auto gb = p.node->create_child("jobB");
  if (!ga || !gb) return std::unexpected(ga ? gb.error() : ga.error());
  // As dynamosd does: the running job's memory is shielded from the node limit's reclaim.
  if (auto r = ga->set_reclaim_protected(true); !r) return r;
  // Each job does a fixed number of sweeps, then verifies its data and ends.
  JobSpec spec{p.o.sweep, p.o.job_memory, 0, 1};
  spec.iterations = p.res.iterations;
  p.started = Clock::now();
  auto a = Job::start(spec, *ga, dir, p.policy + "-A");
  if (!a) return std::unexpected(a.error());
  p.jobs.push_back(std::move(*a));
  if (auto r = p.jobs[0]->wait_running(std::chrono::seconds(120)); !r) return r;
  if (auto r = p.jobs[0]->group().set_reclaim_protected(false); !r) return r;
  if (auto r = p.jobs[0]->group().freeze(); !r) return r;
  if (auto so = p.host.switch_out("paging", p.subject(0)); !so) return std::unexpected(so.error());
  if (auto r = gb->set_reclaim_protected(true); !r) return r;
  spec.seed = 2;
  auto b = Job::start(spec, *gb, dir, p.policy + "-B");
  if (!b) return std::unexpected(b.error());
  p.jobs.push_back(std::move(*b));
  auto si = p.host.switch_in("paging", p.subject(1));
  if (!si) return std::unexpected(si.error());
  p.first_switch = json_number(report_of(*si), "switch");
  return p.jobs[1]->wait_running(std::chrono::seconds(300));
}

// Job `index` did its work: it verifies its data and ends (the node stays its own
// meanwhile), or, with --no-verify, is killed at once.
void end_job(PolicyRun& p, int index) {
  Job& job = *p.jobs[index];
  p.done[index] = true;
  if (!p.o.verify) {
    job.kill();
    return;
  }
  auto r = job.finish(std::chrono::minutes(10));
  p.verified[index] = r && r->boolean("verified").value_or(false);
  if (!p.verified[index] && p.o.verbose)
    std::fprintf(stderr, "[%s] job %s: %s\n", p.policy.c_str(), job.name().c_str(),
                 r ? "verification failed" : r.error().message().c_str());
}

// One quantum of job `index`, ticking the extension, until the quantum is over or the job
// did its work (it then ends: end_job). A counted quantum (one that follows a switch)
// records the lost time.
Result<void> run_quantum(PolicyRun& p, int index, bool counted) {
  Job& job = *p.jobs[index];
  auto& res = p.res;
  auto start = Clock::now();
  auto s0 = job.sample();
  if (!s0) return std::unexpected(s0.error());
  uint64_t majflt0 = major_faults(job.pid());
  auto c0 = process_schedstat(job.pid());
  // The CPU wait so far, read on every tick while the job works: a job that finished
  // loses its worker thread, and with it that thread's schedstat.
  auto c1 = c0;
  bool majflt_taken = false, finished = s0->work >= p.goal;
  while (!finished && seconds_since(start) < p.o.quantum && !workload::interrupted()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(p.o.tick_ms));
    auto s = job.sample();
    double work = s ? static_cast<double>(s->work - s0->work) : 0;
    auto c = process_schedstat(job.pid());
    finished = (s && s->work >= p.goal) || job.exited();
    if (!finished && c) c1 = c;
    if (!majflt_taken && seconds_since(start) >= 1.0) {
      majflt_taken = true;
      if (counted) res.majflt.push_back(static_cast<double>(major_faults(job.pid()) - majflt0));
    }
    if (auto t = p.host.tick("paging", p.subject(index, work)); !t)
      return std::unexpected(t.error());
  }
  auto s1 = job.sample();
  if (!s1) return std::unexpected(s1.error());
  if (!finished)
    if (auto c = process_schedstat(job.pid())) c1 = c;
  // A job that finished: its quantum ends when it counted its last work.
  uint64_t end_ns = finished ? s1->updated_ns : s1->read_ns;
  double q = workload::progress_rate(*s0, *s1) > 0 && end_ns > s0->read_ns
                 ? static_cast<double>(end_ns - s0->read_ns) / 1e9
                 : seconds_since(start);
  double w = static_cast<double>(s1->work - s0->work);
  // Time the job was runnable but other processes had the CPUs: the machine's load, not
  // paging.
  double wait = c0 && c1 ? std::chrono::duration<double>(c1->waiting - c0->waiting).count() : 0;
  if (finished) end_job(p, index);
  if (!counted) return {};
  res.quantum.push_back(q);
  res.cpu_wait.push_back(wait);
  res.lost.push_back(q - w / res.r0);
  res.lost_no_wait.push_back(q - w / res.r0 - wait);
  if (p.o.verbose)
    std::fprintf(stderr,
                 "[%s] quantum of %s: %.2f s%s, lost %.2f s (%.2f s of it waiting for a CPU)\n",
                 p.policy.c_str(), job.name().c_str(), q, finished ? " (work done)" : "",
                 q - w / res.r0, wait);
  return {};
}

// A gang switch from job `from` to job `to`, as dynamosd makes it: the outgoing job's
// reclaim shield off, freeze, switch_out, switch_in, the incoming job's shield on, thaw.
Result<void> switch_jobs(PolicyRun& p, int from, int to, int number) {
  auto t0 = Clock::now();
  if (auto r = p.jobs[from]->group().set_reclaim_protected(false); !r) return r;
  if (auto r = p.jobs[from]->group().freeze(); !r) return r;
  auto out = p.host.switch_out("paging", p.subject(from));
  if (!out) return std::unexpected(out.error());
  auto in = p.host.switch_in("paging", p.subject(to));
  if (!in) return std::unexpected(in.error());
  if (auto r = p.jobs[to]->group().set_reclaim_protected(true); !r) return r;
  if (auto r = p.jobs[to]->group().thaw(); !r) return r;
  p.res.switch_s.push_back(seconds_since(t0));
  auto report = report_of(*in);
  p.res.pages_out += static_cast<uint64_t>(json_number(report, "pages_out"));
  p.res.pages_in += static_cast<uint64_t>(json_number(report, "pages_in"));
  if (auto w = json_text(report, "warning"); !w.empty()) p.res.warning = w;
  if (p.o.verbose)
    std::fprintf(stderr, "[%s] switch %d to %s: %.2f s %s\n", p.policy.c_str(), number,
                 p.jobs[to]->name().c_str(), p.res.switch_s.back(), in->c_str());
  return {};
}

// The background write-out and prefetch of this policy's switches (the extension stays
// loaded across policies).
void count_background_pages(PolicyRun& p) {
  auto all = p.host.call("paging", "switches");
  if (!all) return;
  std::istringstream lines(*all);
  for (std::string line; std::getline(lines, line);) {
    auto report = report_of(line);
    if (json_number(report, "switch") < p.first_switch) continue;
    p.res.background_pages_out +=
        static_cast<uint64_t>(json_number(report, "background_pages_out"));
    p.res.background_pages_in += static_cast<uint64_t>(json_number(report, "background_pages_in"));
  }
}

// Quanta alternate until both jobs did their work; a job whose partner is done keeps
// the node (its further quanta follow no switch and are not counted). Past the switch
// cap the jobs finish together without gang scheduling.
Result<void> alternate(PolicyRun& p) {
  // B's first quantum follows no switch of a recorded job: not counted.
  if (auto r = run_quantum(p, 1, false); !r) return r;
  int running = 1, number = 0;
  const int cap = kSwitchCapFactor * p.o.switches;
  while (!(p.done[0] && p.done[1]) && !workload::interrupted()) {
    int next = p.done[1 - running] ? running : 1 - running;
    bool switched = next != running;
    if (switched && number == cap) break;
    if (switched) {
      if (auto r = switch_jobs(p, running, next, ++number); !r) return r;
      running = next;
    }
    if (auto r = run_quantum(p, running, switched); !r) return r;
  }
  if (p.done[0] && p.done[1]) return {};
  if (!workload::interrupted())
    p.res.warning =
        "stopped switching after " + std::to_string(cap) + " switches: the jobs finished together";
  for (int i = 0; i < 2; ++i)
    (void)p.jobs[i]->group().thaw();
  for (int i = 0; i < 2; ++i)
    if (!p.done[i]) end_job(p, i);
  return {};
}

// iterations: each job's sweeps, set from the first policy's r0 (0: not yet) so that every
// policy's jobs do the same work.
Result<PolicyResult> run_policy(const Options& o, const std::string& policy,
                                core::ExtensionHost& host, const kernelside::Layout& layout,
                                const std::string& root, const std::string& dir,
                                uint64_t& iterations) {
  auto r0 = calibrate(o, layout, root, dir);
  if (!r0) return std::unexpected(with_context(r0.error(), "calibrating"));
  auto n = make_node(layout, root, policy);
  if (!n) return std::unexpected(n.error());
  PolicyRun p{o, policy, host, OwnedGroup(std::move(*n)), {}, 0, {}, {}};
  if (auto r = p.node->set_memory_max(o.node_memory); !r) return std::unexpected(r.error());
  p.res.policy = policy;
  p.res.r0 = r0->per_cpu_s;
  p.res.r0_wall = r0->per_wall_s;
  // Each job's work: what it does alone in half the switches' quanta, in whole sweeps.
  double alone = p.res.r0 * o.quantum * o.switches / 2;
  if (iterations == 0)
    iterations = std::max<uint64_t>(
        1, static_cast<uint64_t>(std::llround(alone / static_cast<double>(o.job_memory))));
  p.res.iterations = iterations;
  p.goal = p.res.iterations * o.job_memory;
  if (o.verbose)
    std::fprintf(stderr,
                 "[%s] r0 = %.0f MiB/s per CPU second (%.0f MiB/s wall); each job sweeps its "
                 "working set %llu times\n",
                 policy.c_str(), p.res.r0 / (1 << 20), p.res.r0_wall / (1 << 20),
                 static_cast<unsigned long long>(p.res.iterations));
  if (auto r = start_jobs(p, dir); !r) return std::unexpected(r.error());
  if (auto r = alternate(p); !r) return std::unexpected(r.error());
  p.res.makespan_wall = seconds_since(p.started);
  count_background_pages(p);
  for (size_t i = 0; i < p.res.quantum.size(); ++i)
    p.res.makespan += p.res.switch_s[i] + p.res.quantum[i] + p.res.lost[i];
  p.res.checked = o.verify;
  p.res.verified = p.verified[0] && p.verified[1];
  return std::move(p.res);
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v)
    sum += x;
  return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

// Rounded for the JSON line (as the line always printed them).
double rounded(double v, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(v * f) / f;
}

std::string to_json(const Options& o, const PolicyResult& r) {
  auto list = [](const std::vector<double>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (double x : v)
      a.push_back(rounded(x, 3));
    return a;
  };
  nlohmann::ordered_json j = {
      {"policy", r.policy},
      {"switches", r.switch_s.size()},
      {"quantum_s", rounded(o.quantum, 3)},
      {"node_memory", o.node_memory},
      {"job_memory", o.job_memory},
      {"r0_bytes_per_s", std::round(r.r0)},
      {"r0_wall_bytes_per_s", std::round(r.r0_wall)},
      {"makespan_wall_s", rounded(r.makespan_wall, 3)},
      {"makespan_computed_s", rounded(r.makespan, 3)},
      {"work_bytes", r.iterations * o.job_memory},
      {"iterations", r.iterations},
      {"ideal_s", rounded(2.0 * static_cast<double>(r.iterations * o.job_memory) / r.r0, 3)},
      {"lost_s_per_switch", rounded(mean(r.lost), 3)},
      {"lost_s_per_switch_without_cpu_wait", rounded(mean(r.lost_no_wait), 3)},
      {"switch_s", rounded(median(r.switch_s), 3)},
      {"majflt_after_switch", std::round(median(r.majflt))},
      {"pages_out", r.pages_out},
      {"pages_in", r.pages_in},
      {"background_pages_out", r.background_pages_out},
      {"background_pages_in", r.background_pages_in},
      {"verified", r.checked ? nlohmann::ordered_json(r.verified) : nullptr},
      {"lost_s", list(r.lost)},
      {"lost_s_without_cpu_wait", list(r.lost_no_wait)},
      {"cpu_wait_s", list(r.cpu_wait)},
      {"switch_s_all", list(r.switch_s)},
      {"majflt_all", list(r.majflt)},
      {"warning", r.warning}};
  return j.dump();
}

constexpr const char* kProgram = "dynamos-bench-switch";

int usage_error(const std::string& message) {
  return workload::usage_error(kProgram, message);
}

// Parses the command line into `o`: an exit status when the program should stop there.
std::optional<int> parse_options(int argc, char** argv, Options& o) {
  std::string node_mem = "1G", job_mem = "700M", policies = "demand,selective,aggressive,adaptive";
  bool no_verify = false, verify = false;
  po::options_description desc(
      "dynamos-bench-switch: gang switches of two memory-bound jobs on a memory-limited node,\n"
      "under each paging policy. Needs root (cgroups, swap on zram).\n\nOptions");
  desc.add_options()("help,h", "show this help")(
      "node-memory", po::value(&node_mem)->default_value(node_mem), "the node's memory limit")(
      "job-memory", po::value(&job_mem)->default_value(job_mem), "each job's working set")(
      "quantum", po::value(&o.quantum)->default_value(o.quantum), "quantum length, seconds")(
      "switches", po::value(&o.switches)->default_value(o.switches),
      "sets each job's work: as much as it does alone in switches/2 quanta (the switches\n"
      "done follow from it; at most 10 times as many)")(
      "policies", po::value(&policies)->default_value(policies), "comma-separated policies")(
      "json", po::bool_switch(&o.json), "one JSON object per policy per line")(
      "tick-ms", po::value(&o.tick_ms)->default_value(o.tick_ms), "extension tick period")(
      "calibrate-s", po::value(&o.calibrate_s)->default_value(o.calibrate_s),
      "length of the r0 measurement")("set", po::value(&o.sets)->composing(),
                                      "extension tunable key=value (repeatable)")(
      "sweep", po::value(&o.sweep), "path of dynamos-sweep (default: next to this program)")(
      "extension", po::value(&o.extension),
      "path of the paging extension (default: ../lib/libdynamos_ext_paging.so)")(
      "swap-size", po::value(&o.swap_size)->default_value(o.swap_size),
      "zram swap size when none is active")(
      "verify", po::bool_switch(&verify),
      "let each job verify its data once its work is done and check the results (the default)")(
      "no-verify", po::bool_switch(&no_verify),
      "kill each job once its work is done instead of letting it verify (verified is null)")(
      "verbose,v", po::bool_switch(&o.verbose), "per-switch lines on stderr");
  po::variables_map vm;
  if (auto status = workload::parse_command_line(argc, argv, desc, vm, kProgram)) return status;
  if (verify && no_verify) return usage_error("--verify and --no-verify exclude each other");
  o.verify = !no_verify;
  auto nm = workload::parse_size(node_mem);
  auto jm = workload::parse_size(job_mem);
  if (!nm || !jm) return usage_error("bad size: " + (nm ? jm.error() : nm.error()).message());
  o.node_memory = *nm;
  o.job_memory = *jm;
  if (!(o.quantum > 0) || o.switches < 1 || o.tick_ms < 1)
    return usage_error("--quantum, --switches and --tick-ms must be positive");
  o.policies.clear();
  std::stringstream ps(policies);
  for (std::string p; std::getline(ps, p, ',');) {
    if (!paging::parse_policy(p))
      return usage_error("unknown policy '" + p + "' (demand, selective, aggressive, adaptive)");
    o.policies.push_back(p);
  }
  std::string dir = program_dir();
  if (o.sweep.empty()) o.sweep = dir + "/dynamos-sweep";
  if (o.extension.empty()) o.extension = dir + "/../lib/libdynamos_ext_paging.so";
  return std::nullopt;
}

int fatal(const std::string& message) {
  std::cerr << "dynamos-bench-switch: " << message << "\n";
  return 1;
}

// The paging extension loaded into an extension host, with the --set tunables.
Result<std::unique_ptr<core::ExtensionHost>> load_extension(const Options& o) {
  auto host = core::ExtensionHost::create();
  if (!host) return std::unexpected(host.error());
  if (auto l = (*host)->load(o.extension); !l) return std::unexpected(l.error());
  for (const auto& s : o.sets)
    if (auto r = (*host)->set("paging." + s); !r) return std::unexpected(r.error());
  return host;
}

void print_row(const Options& o, const PolicyResult& r) {
  if (o.json) {
    std::cout << to_json(o, r) << std::endl;
    return;
  }
  std::printf(
      "%-10s lost/switch %6.2f s (%.2f s without CPU wait)  switch %5.2f s  makespan %6.1f s "
      "(wall; ideal %.1f)  majflt(1st s) %7.0f  pages out %8llu in %8llu  %s\n",
      r.policy.c_str(), mean(r.lost), mean(r.lost_no_wait), median(r.switch_s), r.makespan_wall,
      2.0 * static_cast<double>(r.iterations * o.job_memory) / r.r0, median(r.majflt),
      (unsigned long long)r.pages_out, (unsigned long long)r.pages_in,
      !r.checked   ? ""
      : r.verified ? "verified"
                   : "NOT VERIFIED");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (auto status = parse_options(argc, argv, o)) return *status;
  if (::geteuid() != 0) return fatal("needs root (cgroups, swap)");
  workload::catch_stop_signals();

  auto layout = kernelside::Layout::detect();
  if (!layout) return fatal(layout.error().message());
  SwapSetup swap(DYNAMOS_SOURCE_DIR, o.swap_size);
  if (!swap.active())
    std::cerr << "dynamos-bench-switch: warning: no swap (" << swap.message()
              << "): only demand can be measured, the other policies act as demand\n";
  auto host = load_extension(o);
  if (!host) return fatal(host.error().message());
  auto tmp = TempDir::create("dynamos-bench-switch");
  if (!tmp) return fatal(tmp.error().message());
  std::string root = "dynamos-bench-switch-" + std::to_string(::getpid());
  auto rg = kernelside::Group::create(
      *layout, root, {kernelside::Controller::memory, kernelside::Controller::freezer});
  if (!rg) return fatal(rg.error().message());
  OwnedGroup root_group(*rg);
  int status = 0;
  uint64_t iterations = 0;
  for (const auto& p : o.policies) {
    if (workload::interrupted()) break;
    auto r = run_policy(o, p, **host, *layout, root, tmp->path(), iterations);
    if (!r) {
      std::cerr << "dynamos-bench-switch: policy " << p << ": " << r.error().message() << "\n";
      status = 1;
      continue;
    }
    print_row(o, *r);
    if (r->checked && !r->verified) status = 1;
  }
  if (workload::interrupted()) status = 130;
  return status;
}
