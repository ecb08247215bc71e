// dynamos-bench-switch: gang switches between two memory-bound jobs on a node whose
// memory cannot hold both, under each paging policy of the paging extension.
//
// Per policy: a node cgroup with a memory limit (the node's RAM; swap on zram), two
// dynamos-sweep jobs in child cgroups. Job A starts and is switched out (frozen), job B
// starts and runs a warm-up quantum, then the jobs alternate for --switches quanta.
// A switch freezes the outgoing job (kernelside), calls the extension's switch_out and
// switch_in through core's extension host, and thaws the incoming job; ticks go to the
// extension every --tick-ms during the quantum.
//
// Calibration: r0, the rate of one job alone without memory limit. Lost time of a
// quantum of length Q in which the job did work W: Q - W/r0. Makespan: the wall time of
// the switches and quanta plus the lost time, i.e. the time the node needs for the work
// the jobs would have done at r0 in their quanta. See docs/paging.md.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <thread>

#include <boost/program_options.hpp>

#include "bench/paging/node.hpp"
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

std::atomic<bool> interrupted{false};

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
  bool verify = false;
};

struct PolicyResult {
  std::string policy;
  double r0 = 0;       // work per second on a CPU of its own (W / on-CPU time)
  double r0_wall = 0;  // work per wall-clock second during the calibration
  std::vector<double> lost, lost_raw, switch_s, majflt, quantum, cpu_wait;
  uint64_t pages_out = 0, pages_in = 0, background_pages_out = 0, background_pages_in = 0;
  double makespan = 0;
  bool verified = false;
  bool checked = false;  // results verified (--verify) rather than the jobs killed
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

// A number field of the extension's JSON report (flat objects only).
double json_number(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return 0;
  return std::strtod(json.c_str() + at + key.size() + 3, nullptr);
}
std::string json_text(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":\"");
  if (at == std::string::npos) return "";
  at += key.size() + 4;
  return json.substr(at, json.find('"', at) - at);
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

Result<PolicyResult> run_policy(const Options& o, const std::string& policy,
                                core::ExtensionHost& host, const kernelside::Layout& layout,
                                const std::string& root, const std::string& dir) {
  PolicyResult res;
  res.policy = policy;
  auto r0 = calibrate(o, layout, root, dir);
  if (!r0) return std::unexpected(with_context(r0.error(), "calibrating"));
  res.r0 = r0->per_cpu_s;
  res.r0_wall = r0->per_wall_s;
  if (o.verbose)
    std::fprintf(stderr, "[%s] r0 = %.0f MiB/s per CPU second (%.0f MiB/s wall)\n", policy.c_str(),
                 res.r0 / (1 << 20), res.r0_wall / (1 << 20));

  const kernelside::Controllers ctl = {kernelside::Controller::memory,
                                       kernelside::Controller::freezer};
  auto n = kernelside::Group::create(layout, root + "/" + policy, ctl);
  if (!n) return std::unexpected(n.error());
  OwnedGroup node(*n);
  if (auto r = node->set_memory_max(o.node_memory); !r) return std::unexpected(r.error());
  auto ga = node->create_child("jobA");
  auto gb = node->create_child("jobB");
  if (!ga || !gb) return std::unexpected(ga ? gb.error() : ga.error());

  // With --verify the sweeps run until all quanta are done, with slack, then finish and
  // verify their data (the sweep has no early stop); else they are killed at the end.
  double total = o.verify ? (o.switches + 2) * (o.quantum + 4) + 30 : 1e6;
  JobSpec spec{o.sweep, o.job_memory, total, 1};
  auto a = Job::start(spec, *ga, dir, policy + "-A");
  if (!a) return std::unexpected(a.error());
  Job& A = **a;
  if (auto r = A.wait_running(std::chrono::seconds(120)); !r) return std::unexpected(r.error());
  std::vector<Job*> jobs = {&A};
  std::array<double, 2> work_done{};  // work at the start of each job's quantum

  if (auto r = A.group().freeze(); !r) return std::unexpected(r.error());
  auto so = host.switch_out("paging", subject_of(A, 1, policy, node->path(), res.r0, 0));
  if (!so) return std::unexpected(so.error());
  spec.seed = 2;
  auto b = Job::start(spec, *gb, dir, policy + "-B");
  if (!b) return std::unexpected(b.error());
  Job& B = **b;
  jobs.push_back(&B);
  auto si = host.switch_in("paging", subject_of(B, 2, policy, node->path(), res.r0, 0));
  if (!si) return std::unexpected(si.error());
  if (auto r = B.wait_running(std::chrono::seconds(300)); !r) return std::unexpected(r.error());

  auto run_quantum = [&](int index, bool counted) -> Result<void> {
    Job& job = *jobs[index];
    auto start = Clock::now();
    auto s0 = job.sample();
    if (!s0) return std::unexpected(s0.error());
    uint64_t majflt0 = major_faults(job.pid());
    auto c0 = process_schedstat(job.pid());
    bool majflt_taken = false;
    while (seconds_since(start) < o.quantum && !interrupted) {
      std::this_thread::sleep_for(std::chrono::milliseconds(o.tick_ms));
      auto s = job.sample();
      double work = s ? static_cast<double>(s->work - s0->work) : 0;
      if (!majflt_taken && seconds_since(start) >= 1.0) {
        majflt_taken = true;
        if (counted) res.majflt.push_back(static_cast<double>(major_faults(job.pid()) - majflt0));
      }
      auto t = host.tick("paging", subject_of(job, index + 1, policy, node->path(), res.r0, work));
      if (!t) return std::unexpected(t.error());
    }
    auto s1 = job.sample();
    if (!s1) return std::unexpected(s1.error());
    double q =
        workload::progress_rate(*s0, *s1) > 0 ? (s1->read_ns - s0->read_ns) / 1e9 : o.quantum;
    double w = static_cast<double>(s1->work - s0->work);
    auto c1 = process_schedstat(job.pid());
    // Time the job was runnable but other processes had the CPUs: the machine's load,
    // not paging.
    double wait = c0 && c1 ? std::chrono::duration<double>(c1->waiting - c0->waiting).count() : 0;
    if (counted) {
      res.quantum.push_back(q);
      res.cpu_wait.push_back(wait);
      res.lost_raw.push_back(q - w / res.r0);
      res.lost.push_back(q - w / res.r0 - wait);
      if (o.verbose)
        std::fprintf(stderr, "[%s] quantum of %s: %.2f s, lost %.2f s\n", policy.c_str(),
                     job.name().c_str(), q, q - w / res.r0 - wait);
    }
    return {};
  };
  (void)work_done;

  // Warm-up quantum of B (its data was just set up), not counted.
  if (auto r = run_quantum(1, false); !r) return std::unexpected(r.error());
  int running = 1;
  for (int i = 0; i < o.switches && !interrupted; ++i) {
    int next = 1 - running;
    auto t0 = Clock::now();
    if (auto r = jobs[running]->group().freeze(); !r) return std::unexpected(r.error());
    auto out = host.switch_out(
        "paging", subject_of(*jobs[running], running + 1, policy, node->path(), res.r0, 0));
    if (!out) return std::unexpected(out.error());
    auto in = host.switch_in("paging",
                             subject_of(*jobs[next], next + 1, policy, node->path(), res.r0, 0));
    if (!in) return std::unexpected(in.error());
    if (auto r = jobs[next]->group().thaw(); !r) return std::unexpected(r.error());
    res.switch_s.push_back(seconds_since(t0));
    res.pages_out += static_cast<uint64_t>(json_number(*in, "pages_out"));
    res.pages_in += static_cast<uint64_t>(json_number(*in, "pages_in"));
    if (auto w = json_text(*in, "warning"); !w.empty()) res.warning = w;
    if (o.verbose)
      std::fprintf(stderr, "[%s] switch %d to %s: %.2f s %s\n", policy.c_str(), i + 1,
                   jobs[next]->name().c_str(), res.switch_s.back(), in->c_str());
    running = next;
    if (auto r = run_quantum(running, true); !r) return std::unexpected(r.error());
  }
  if (auto all = host.call("paging", "switches"); all) {
    std::istringstream lines(*all);
    std::string line;
    // The extension stays loaded across policies: only this policy's switches.
    const double first = json_number(*si, "switch");
    while (std::getline(lines, line)) {
      if (json_number(line, "switch") < first) continue;
      res.background_pages_out += static_cast<uint64_t>(json_number(line, "background_pages_out"));
      res.background_pages_in += static_cast<uint64_t>(json_number(line, "background_pages_in"));
    }
  }
  for (size_t i = 0; i < res.quantum.size(); ++i)
    res.makespan += res.switch_s[i] + res.quantum[i] + res.lost[i];
  if (!o.verify) return res;
  // Let both finish without the node's limit, and check their results.
  res.checked = true;
  (void)node->set_memory_max(std::nullopt);
  (void)A.group().thaw();
  (void)B.group().thaw();
  res.verified = true;
  for (Job* j : jobs) {
    auto r = j->finish(std::chrono::seconds(static_cast<long>(total) + 120));
    bool ok = r && r->boolean("verified").value_or(false);
    if (!ok && o.verbose)
      std::fprintf(stderr, "[%s] job %s: %s\n", policy.c_str(), j->name().c_str(),
                   r ? "verification failed" : r.error().message().c_str());
    res.verified = res.verified && ok;
  }
  return res;
}

std::string to_json(const Options& o, const PolicyResult& r) {
  auto list = [](const std::vector<double>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      char b[32];
      std::snprintf(b, sizeof b, "%s%.3f", i ? "," : "", v[i]);
      s += b;
    }
    return s + "]";
  };
  double lost_sum = 0, raw_sum = 0;
  for (double l : r.lost)
    lost_sum += l;
  for (double l : r.lost_raw)
    raw_sum += l;
  double n = r.lost.empty() ? 1.0 : static_cast<double>(r.lost.size());
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "{\"policy\":\"%s\",\"switches\":%zu,\"quantum_s\":%.3f,\"node_memory\":%llu,"
                "\"job_memory\":%llu,\"r0_bytes_per_s\":%.0f,\"r0_wall_bytes_per_s\":%.0f,"
                "\"makespan_s\":%.3f,\"lost_s_per_switch_with_cpu_wait\":%.3f,"
                "\"ideal_s\":%.3f,\"lost_s_per_switch\":%.3f,\"switch_s\":%.3f,"
                "\"majflt_after_switch\":%.0f,\"pages_out\":%llu,\"pages_in\":%llu,"
                "\"background_pages_out\":%llu,\"background_pages_in\":%llu,\"verified\":%s,",
                r.policy.c_str(), r.switch_s.size(), o.quantum, (unsigned long long)o.node_memory,
                (unsigned long long)o.job_memory, r.r0, r.r0_wall, r.makespan, raw_sum / n,
                o.quantum * static_cast<double>(r.quantum.size()), lost_sum / n, median(r.switch_s),
                median(r.majflt), (unsigned long long)r.pages_out, (unsigned long long)r.pages_in,
                (unsigned long long)r.background_pages_out,
                (unsigned long long)r.background_pages_in,
                !r.checked   ? "null"
                : r.verified ? "true"
                             : "false");
  return std::string(buf) + "\"lost_s\":" + list(r.lost) +
         ",\"lost_s_with_cpu_wait\":" + list(r.lost_raw) + ",\"cpu_wait_s\":" + list(r.cpu_wait) +
         ",\"switch_s_all\":" + list(r.switch_s) + ",\"majflt_all\":" + list(r.majflt) +
         ",\"warning\":\"" + r.warning + "\"}";
}

int usage_error(const std::string& message) {
  std::cerr << "dynamos-bench-switch: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string node_mem = "1G", job_mem = "700M", policies = "demand,selective,aggressive,adaptive";
  po::options_description desc(
      "dynamos-bench-switch: gang switches of two memory-bound jobs on a memory-limited node,\n"
      "under each paging policy. Needs root (cgroups, swap on zram).\n\nOptions");
  desc.add_options()("help,h", "show this help")(
      "node-memory", po::value(&node_mem)->default_value(node_mem), "the node's memory limit")(
      "job-memory", po::value(&job_mem)->default_value(job_mem), "each job's working set")(
      "quantum", po::value(&o.quantum)->default_value(o.quantum), "quantum length, seconds")(
      "switches", po::value(&o.switches)->default_value(o.switches), "switches per policy")(
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
      "verify", po::bool_switch(&o.verify),
      "let the jobs finish after the last quantum and check their results")(
      "verbose,v", po::bool_switch(&o.verbose), "per-switch lines on stderr");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
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
  if (::geteuid() != 0) {
    std::cerr << "dynamos-bench-switch: needs root (cgroups, swap)\n";
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = [](int) { interrupted = true; };
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  auto layout = kernelside::Layout::detect();
  if (!layout) {
    std::cerr << "dynamos-bench-switch: " << layout.error().message() << "\n";
    return 1;
  }
  SwapSetup swap(DYNAMOS_SOURCE_DIR, o.swap_size);
  if (!swap.active()) {
    std::cerr << "dynamos-bench-switch: warning: no swap (" << swap.message()
              << "): only demand can be measured, the other policies act as demand\n";
  }
  auto host = core::ExtensionHost::create();
  if (!host) {
    std::cerr << "dynamos-bench-switch: " << host.error().message() << "\n";
    return 1;
  }
  if (auto l = (*host)->load(o.extension); !l) {
    std::cerr << "dynamos-bench-switch: " << l.error().message() << "\n";
    return 1;
  }
  for (const auto& s : o.sets)
    if (auto r = (*host)->set("paging." + s); !r) {
      std::cerr << "dynamos-bench-switch: " << r.error().message() << "\n";
      return 1;
    }
  auto tmp = TempDir::create("dynamos-bench-switch");
  if (!tmp) {
    std::cerr << "dynamos-bench-switch: " << tmp.error().message() << "\n";
    return 1;
  }
  std::string root = "dynamos-bench-switch-" + std::to_string(::getpid());
  auto rg = kernelside::Group::create(
      *layout, root, {kernelside::Controller::memory, kernelside::Controller::freezer});
  if (!rg) {
    std::cerr << "dynamos-bench-switch: " << rg.error().message() << "\n";
    return 1;
  }
  OwnedGroup root_group(*rg);
  int status = 0;
  for (const auto& p : o.policies) {
    if (interrupted) break;
    auto r = run_policy(o, p, **host, *layout, root, tmp->path());
    if (!r) {
      std::cerr << "dynamos-bench-switch: policy " << p << ": " << r.error().message() << "\n";
      status = 1;
      continue;
    }
    if (o.json) {
      std::cout << to_json(o, *r) << std::endl;
    } else {
      std::printf("%-10s lost/switch %6.2f s  switch %5.2f s  makespan %6.1f s (ideal %.1f)  "
                  "majflt(1st s) %7.0f  pages out %8llu in %8llu  %s\n",
                  p.c_str(),
                  r->lost.empty() ? 0.0 : [&] { double s = 0; for (double l : r->lost) s += l; return s / r->lost.size(); }(),
                  median(r->switch_s), r->makespan, o.quantum * r->quantum.size(),
                  median(r->majflt), (unsigned long long)r->pages_out,
                  (unsigned long long)r->pages_in, !r->checked ? "" : r->verified ? "verified" : "NOT VERIFIED");
      std::fflush(stdout);
    }
    if (r->checked && !r->verified) status = 1;
  }
  if (interrupted) status = 130;
  return status;
}
