// dynamos-bench-cyclesteal: how much a guest slows the host, and how many of the idle
// cycles it gets, under each cycle-stealing policy.
//
// The host is a bursty dynamos-sweep (busy on --host-threads threads for --busy-ms, idle
// for --idle-ms, --bursts times, a fixed amount of work per burst calibrated once alone);
// the guest a CPU- and memory-hungry dynamos-sweep. Policies: none (host alone); the
// baselines a site has without the extension, the guest started beside the host in the
// host's own group: nice (nice -n 19) and sched-idle (SCHED_IDLE); nice-own-group (nice 19
// in a group of its own beside the host's, where nice means nothing across groups: only
// to show that); and the extension's linger, pause, evict. Each policy
// run is paired with a run of none just before it, repetitions interleaved (none, p, none,
// p, ...), so that the machine's drift cancels in the paired ratio.
//
// Per policy (one JSON object a line with --json): host_s (median wall time of the host
// workload), host_slowdown (median of the paired ratios host_s / host_s(none) - 1, with
// min and max), host_wait_share (the host threads' time runnable but waiting for a CPU
// over their time running during the bursts, from /proc/.../schedstat, which the host
// reads for its own threads: no poller competes with it; host_wait_share_all is the same
// over the host's whole life, start-up included), guest_cpu_s and guest_idle_share (guest CPU
// seconds during the host run over the idle CPU seconds the host left: cpus x host_s - host CPU
// seconds).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "bench/cyclesteal/processes.hpp"
#include "bench/workload/interrupt.hpp"
#include "bench/workload/options.hpp"
#include "bench/workload/result_line.hpp"
#include "bench/workload/size.hpp"
#include "core/extension_host.hpp"
#include "extensions/cyclesteal/policy.hpp"
#include "kernelside/cgroup.hpp"
#include "kernelside/procfs.hpp"
#include "kernelside/sched.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::bench;
using Clock = std::chrono::steady_clock;

namespace {

// SIGINT/SIGTERM: stop here, so that the node group, the guests and the swap hold are
// undone by the destructors and the end of main.
void check_interrupted() {
  if (workload::interrupted()) throw std::runtime_error("interrupted");
}

struct Options {
  std::vector<std::string> policies;
  int reps = 3;
  int bursts = 6;
  double busy_ms = 300, idle_ms = 300;
  int host_threads = 2;
  std::string host_mem = "64M";
  int guest_threads = 2;
  std::string guest_mem = "256M";
  // Memory scenario: the node group gets node_mem (host and guests share it, swap on
  // zram), and the host grows from host_mem to host_grow_to over its first bursts.
  std::string scenario = "cpu";
  std::string node_mem = "1536M";
  std::string host_grow_to = "1G";
  unsigned node_weight = 0;       // CPU weight of the benchmark's node group; 0 = default
  unsigned host_weight = 0;       // CPU weight of the host's group inside it; 0 = default
  std::string guest_priority;     // "", cpu.idle or SCHED_IDLE (the guests' attach attribute)
  int poll_ms = 100;              // the benchmark's own sampling of the guest's threads
  int tick_ms = 100;              // how often the benchmark ticks the extension (as dynamosd)
  std::vector<std::string> sets;  // extension tunables, "key=value"
  bool json = false;
  std::string sweep = DYNAMOS_SWEEP;
  std::string extension = CYCLESTEAL_EXTENSION;
};

struct Run {
  double system_idle_s = 0;  // idle CPU time of the whole machine during the host run
  double host_s = 0, host_cpu_s = 0, host_wait_s = 0, host_busy_s = 0;
  double burst_cpu_s = 0, burst_wait_s = 0;  // the host's threads from its first burst on
  double guest_cpu_s = 0;
  uint64_t host_majflt = 0;
  int guests_started = 0;
  bool guest_lost = false;  // a guest (not under evict) ended before the host
  bool verified = false;
  std::string report;  // the extension's, for extension policies
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// One of the extension's reports, parsed (an empty object when it is not JSON).
nlohmann::ordered_json report_of(const std::string& text) {
  auto j = nlohmann::ordered_json::parse(text, nullptr, false);
  return j.is_object() ? j : nlohmann::ordered_json::object();
}

class Bench {
 public:
  Bench(Options o, std::unique_ptr<core::ExtensionHost> host, uint64_t burst_work,
        uint64_t guest_bytes, kernelside::Group node, kernelside::Group host_group,
        kernelside::Group nice_group)
      : o_(std::move(o)),
        ext_(std::move(host)),
        burst_work_(burst_work),
        guest_bytes_(guest_bytes),
        node_(std::move(node)),
        host_group_(std::move(host_group)),
        nice_group_(std::move(nice_group)) {}
  ~Bench() {
    ext_.reset();  // releases the guest class inside the node
    (void)host_group_.remove(kernelside::Evict::kill);
    (void)nice_group_.remove(kernelside::Evict::kill);
    (void)node_.remove_tree(kernelside::Evict::kill);
  }

  Run run(const std::string& policy);

 private:
  bool extension_policy(const std::string& p) const { return cyclesteal::is_guest_policy(p); }
  std::unique_ptr<Process> start_guest(const std::string& policy);
  std::unique_ptr<Process> start_warm_guest(const std::string& policy);
  std::jthread start_ticker(std::atomic<bool>& stop);
  std::vector<std::string> host_argv() const;
  std::unique_ptr<Process> start_host(bool ext);
  void wait_host(Process& host, std::unique_ptr<Process>& guest, ThreadAccount& guest_acct,
                 const std::string& policy, std::atomic<bool>& stop, Run& out);
  void read_host_result(Process& host, Run& out) const;

  Options o_;
  std::unique_ptr<core::ExtensionHost> ext_;
  uint64_t burst_work_;
  uint64_t guest_bytes_;
  kernelside::Group node_, host_group_, nice_group_;
  uint64_t next_id_ = 1;
};

core::Subject subject(dynamos_subject_kind kind, uint64_t id, pid_t pid, std::string cgroup = "",
                      std::vector<std::pair<std::string, std::string>> attrs = {}) {
  return core::Subject{.kind = kind,
                       .id = id,
                       .name = kind == DYNAMOS_SUBJECT_JOB ? "host" : "guest",
                       .cgroup = std::move(cgroup),
                       .pids = {pid},
                       .policy = "",
                       .attrs = std::move(attrs)};
}

// The baselines without the extension: where the guest runs and at what priority.
struct Baseline {
  const char* name;
  bool own_group;   // a group of its own beside the host's, else the host's group
  bool sched_idle;  // SCHED_IDLE, else nice 19
};
constexpr Baseline kBaselines[] = {
    {"nice", false, false}, {"sched-idle", false, true}, {"nice-own-group", true, false}};
const Baseline* baseline(const std::string& policy) {
  for (const auto& b : kBaselines)
    if (policy == b.name) return &b;
  return nullptr;
}

std::unique_ptr<Process> Bench::start_guest(const std::string& policy) {
  // Like the host, the guest is placed before it runs: beside the host in its group (or
  // in a group of its own) at its baseline priority, or into the extension's guest class
  // (attach), which lives inside the benchmark's node group. The child is one thread at
  // the gate: the threads it starts inherit SCHED_IDLE.
  const Baseline* base = baseline(policy);
  auto place = [&](pid_t pid) {
    if (base) {
      (void)(base->own_group ? nice_group_ : host_group_).attach(pid);
      if (base->sched_idle)
        if (auto r = kernelside::set_thread_policy(pid, kernelside::Policy::idle); !r)
          std::cerr << "dynamos-bench-cyclesteal: SCHED_IDLE guest: " << r.error().message()
                    << "\n";
    }
    if (!extension_policy(policy)) return;
    std::vector<std::pair<std::string, std::string>> attrs{{"class", node_.path() + "/guests"}};
    if (!o_.guest_priority.empty()) attrs.emplace_back("cpu_priority", o_.guest_priority);
    auto r = ext_->attach("cyclesteal", subject(DYNAMOS_SUBJECT_GUEST, next_id_++, pid, "", attrs));
    if (!r) std::cerr << "dynamos-bench-cyclesteal: attach guest: " << r.error().message() << "\n";
  };
  return std::make_unique<Process>(
      std::vector<std::string>{o_.sweep, "--mem", o_.guest_mem, "--threads",
                               std::to_string(o_.guest_threads), "--pattern", "random", "--seconds",
                               "100000", "--quiet"},
      base && !base->sched_idle ? std::optional<int>(19) : std::nullopt, place);
}

// A guest that has filled its memory and reached full speed, before the host starts.
std::unique_ptr<Process> Bench::start_warm_guest(const std::string& policy) {
  auto guest = start_guest(policy);
  auto deadline = Clock::now() + std::chrono::seconds(20);
  uint64_t want = guest_bytes_ * 9 / 10;
  while (Clock::now() < deadline && !guest->exited()) {
    check_interrupted();
    auto st = kernelside::read_stat(guest->pid());
    if (!st || st->rss_pages * 4096 >= want) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return guest;
}

// Ticks the extension every tick_ms, as a node agent would, until `stop`.
std::jthread Bench::start_ticker(std::atomic<bool>& stop) {
  return std::jthread([this, &stop] {
    core::Subject node{.kind = DYNAMOS_SUBJECT_NODE,
                       .id = 0,
                       .name = "",
                       .cgroup = "",
                       .pids = {},
                       .policy = "",
                       .attrs = {}};
    while (!stop.load()) {
      (void)ext_->tick("cyclesteal", node);
      std::this_thread::sleep_for(std::chrono::milliseconds(o_.tick_ms));
    }
  });
}

std::vector<std::string> Bench::host_argv() const {
  std::vector<std::string> argv{o_.sweep,
                                "--mode",
                                "bursty",
                                "--threads",
                                std::to_string(o_.host_threads),
                                "--busy-ms",
                                std::to_string(o_.busy_ms),
                                "--idle-ms",
                                std::to_string(o_.idle_ms),
                                "-n",
                                std::to_string(o_.bursts),
                                "--mem",
                                o_.host_mem,
                                "--burst-work",
                                std::to_string(burst_work_),
                                "--quiet"};
  if (o_.scenario == "memory")
    argv.insert(argv.end(), {"--grow-to", o_.host_grow_to, "--grow-steps",
                             std::to_string(std::max(1, o_.bursts / 2))});
  return argv;
}

// The host runs in its group, known to the extension as a host job, from its first
// instruction (as a rank under dynamosd): started outside, it would compete with the
// node group holding the guests as an equal until moved.
std::unique_ptr<Process> Bench::start_host(bool ext) {
  return std::make_unique<Process>(host_argv(), std::nullopt, [this, ext](pid_t pid) {
    (void)host_group_.attach(pid);
    if (!ext) return;
    auto r =
        ext_->attach("cyclesteal", subject(DYNAMOS_SUBJECT_JOB, 1000000, pid, host_group_.path()));
    if (!r) std::cerr << "dynamos-bench-cyclesteal: attach host: " << r.error().message() << "\n";
  });
}

// Waits for the host. The host's own figures come from its result line, and a guest that
// lives through the run is sampled before and after it: polling threads' schedstat here
// would put this process on the host's CPUs while it measures. Only under evict, and in
// the memory scenario (where a guest may be killed by the kernel), does this wake every
// poll_ms: to count a guest's CPU time before it ends, and to play the agent's part.
void Bench::wait_host(Process& host, std::unique_ptr<Process>& guest, ThreadAccount& guest_acct,
                      const std::string& policy, std::atomic<bool>& stop, Run& out) {
  bool polling = policy == "evict" || o_.scenario == "memory";
  while (!host.wait_exit(std::chrono::milliseconds(polling ? o_.poll_ms : 1000))) {
    if (workload::interrupted()) {
      stop = true;
      check_interrupted();
    }
    if (!guest || !polling) continue;
    if (!guest->exited()) {
      guest_acct.sample(guest->pid());
    } else if (policy == "evict") {
      // The node agent's part: start a new guest once the extension admits guests again.
      auto s = ext_->call("cyclesteal", "status", "");
      if (s && report_of(*s).value("admit", false)) {
        (void)ext_->detach("cyclesteal", subject(DYNAMOS_SUBJECT_GUEST, next_id_ - 1, 0));
        guest = start_guest(policy);
        ++out.guests_started;
      }
    }
  }
}

// The host's RESULT line: its own threads' figures, busy time, verification.
void Bench::read_host_result(Process& host, Run& out) const {
  std::string result = host.output();
  auto fields = workload::find_result_line(result);
  auto number = [&](const char* key) { return fields ? fields->number(key).value_or(0.0) : 0.0; };
  out.host_cpu_s = number("threads_cpu_s");
  out.host_wait_s = number("threads_wait_s");
  out.burst_cpu_s = number("bursts_cpu_s");
  out.burst_wait_s = number("bursts_wait_s");
  out.host_majflt = static_cast<uint64_t>(number("majflt"));
  out.host_busy_s = number("busy_s");
  out.verified = fields && fields->boolean("verified").value_or(false);
  if (out.host_cpu_s <= 0)
    std::cerr << "dynamos-bench-cyclesteal: the host reported no CPU time (no schedstat?): "
              << result << "\n";
}

Run Bench::run(const std::string& policy) {
  Run out;
  bool ext = extension_policy(policy);
  if (ext) {
    if (auto r = ext_->set("cyclesteal", "policy", policy); !r)
      throw std::runtime_error("set policy: " + r.error().message());
    (void)ext_->call("cyclesteal", "reset", "");
  }
  std::unique_ptr<Process> guest;
  if (policy != "none") guest = start_warm_guest(policy);
  std::atomic<bool> stop{false};
  std::jthread ticker;
  if (ext) ticker = start_ticker(stop);

  ThreadAccount guest_acct;
  double guest_base = 0;
  if (guest) {
    guest_acct.sample(guest->pid());
    guest_base = guest_acct.cpu_s();
  }
  auto t0 = Clock::now();
  auto host = start_host(ext);
  auto sys0 = kernelside::read_system_cpu();
  out.guests_started = guest ? 1 : 0;
  wait_host(*host, guest, guest_acct, policy, stop, out);
  out.host_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (guest && !guest->exited()) guest_acct.sample(guest->pid());  // over the host's run only
  if (guest && guest->exited() && policy != "evict") {
    out.guest_lost = true;
    std::cerr << "dynamos-bench-cyclesteal: the " << policy << " guest ended during the run ("
              << (guest->exit_status() == 128 + SIGKILL
                      ? "killed: the OOM killer? see dmesg"
                      : "status " + std::to_string(guest->exit_status()))
              << ")\n";
  }
  if (auto sys1 = kernelside::read_system_cpu(); sys0 && sys1)
    out.system_idle_s =
        std::chrono::duration<double>((sys1->idle + sys1->iowait) - (sys0->idle + sys0->iowait))
            .count();
  stop = true;
  if (ticker.joinable()) ticker.join();
  out.guest_cpu_s = guest ? guest_acct.cpu_s() - guest_base : 0;
  read_host_result(*host, out);
  if (ext) {
    if (auto r = ext_->call("cyclesteal", "report", "")) out.report = *r;
    (void)ext_->detach("cyclesteal", subject(DYNAMOS_SUBJECT_JOB, 1000000, 0));
    (void)ext_->detach("cyclesteal", subject(DYNAMOS_SUBJECT_GUEST, next_id_ - 1, 0));
  }
  if (guest) guest->kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return out;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

constexpr const char* kProgram = "dynamos-bench-cyclesteal";

int usage_error(const std::string& msg) {
  return workload::usage_error(kProgram, msg);
}

// Parses the command line into `o`: an exit status when the program should stop there.
std::optional<int> parse_options(int argc, char** argv, Options& o) {
  std::string policies = "none,nice,sched-idle,nice-own-group,linger,pause,evict";
  po::options_description desc(
      "dynamos-bench-cyclesteal: host slowdown and guest throughput per cycle-stealing policy");
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("policies", po::value(&policies)->default_value(policies),
     "comma-separated: none; nice and sched-idle (the guest beside the host in its group at "
     "nice 19 or SCHED_IDLE); nice-own-group (nice 19 in a group of its own); linger, pause, "
     "evict (the extension)")
    ("reps", po::value(&o.reps)->default_value(o.reps), "paired repetitions per policy")
    ("bursts", po::value(&o.bursts)->default_value(o.bursts), "host bursts per run")
    ("busy-ms", po::value(&o.busy_ms)->default_value(o.busy_ms), "host burst length (calibrated alone)")
    ("idle-ms", po::value(&o.idle_ms)->default_value(o.idle_ms), "host idle time between bursts")
    ("host-threads", po::value(&o.host_threads)->default_value(o.host_threads), "host threads per burst")
    ("host-mem", po::value(&o.host_mem)->default_value(o.host_mem), "host working set")
    ("guest-threads", po::value(&o.guest_threads)->default_value(o.guest_threads), "guest threads")
    ("guest-mem", po::value(&o.guest_mem)->default_value(o.guest_mem), "guest working set")
    ("scenario", po::value(&o.scenario)->default_value(o.scenario), "cpu, or memory: the host grows into memory the guest holds, inside a node of --node-mem (needs swap: scripts/zram-swap.sh is called)")
    ("node-mem", po::value(&o.node_mem)->default_value(o.node_mem), "memory scenario: the node group's memory")
    ("host-grow-to", po::value(&o.host_grow_to)->default_value(o.host_grow_to), "memory scenario: the host's final working set")
    ("tick-ms", po::value(&o.tick_ms)->default_value(o.tick_ms),
     "how often the benchmark ticks the extension, as a node agent would (it samples once "
     "per its interval whatever the ticks)")
    ("poll-ms", po::value(&o.poll_ms)->default_value(o.poll_ms),
     "evict only: how often the benchmark samples the guest's threads (/proc schedstat) and "
     "asks whether guests are admitted again (other guests are sampled before and after the "
     "run; the host reports its own threads' figures)")
    ("guest-priority", po::value(&o.guest_priority),
     "how guests yield the CPU: cpu.idle (their group, the default where the cpu controller "
     "has it) or SCHED_IDLE (every guest thread)")
    ("node-weight", po::value(&o.node_weight)->default_value(o.node_weight), "CPU weight (1..10000) of the node group holding host and guests against the rest of the machine; 0 = the default 100")
    ("host-weight", po::value(&o.host_weight)->default_value(o.host_weight), "CPU weight (1..10000) of the host's group beside the guests; 0 = the default 100")
    ("set", po::value(&o.sets), "extension tunable KEY=VALUE (repeatable), e.g. --set idle_period=500ms")
    ("json", po::bool_switch(&o.json), "one JSON object per policy per line")
    ("sweep", po::value(&o.sweep)->default_value(o.sweep), "the dynamos-sweep binary")
    ("extension", po::value(&o.extension)->default_value(o.extension), "the cycle-stealing extension");
  // clang-format on
  po::variables_map vm;
  if (auto status = workload::parse_command_line(argc, argv, desc, vm, kProgram)) return status;
  o.policies = split(policies);
  for (auto& p : o.policies)
    if (p != "none" && !baseline(p) && !cyclesteal::is_guest_policy(p))
      return usage_error("unknown policy '" + p +
                         "' (none, nice, sched-idle, nice-own-group, linger, pause, evict)");
  if (o.scenario != "cpu" && o.scenario != "memory")
    return usage_error("unknown --scenario '" + o.scenario + "' (cpu, memory)");
  if (o.reps < 1 || o.bursts < 1) return usage_error("--reps and --bursts must be positive");
  if (o.tick_ms < 1 || o.poll_ms < 1)
    return usage_error("--tick-ms and --poll-ms must be positive");
  if (::geteuid() != 0) return usage_error("needs root (cgroups)");
  return std::nullopt;
}

// The work of one burst: what the host sweeps in busy_ms alone, measured once.
Result<uint64_t> calibrate_burst(const Options& o) {
  Process cal({o.sweep, "--mode", "bursty", "--threads", std::to_string(o.host_threads),
               "--busy-ms", std::to_string(o.busy_ms), "--idle-ms", "0", "-n", "1", "--mem",
               o.host_mem, "--quiet"});
  while (!cal.wait_exit(std::chrono::seconds(1)))
    continue;
  uint64_t burst_work = 0;
  if (auto f = workload::find_result_line(cal.output()))
    burst_work = static_cast<uint64_t>(f->number("burst_work").value_or(0));
  if (burst_work == 0)
    return fail(Errc::state, "calibrating the host burst failed: " + cal.output());
  return burst_work;
}

// zram swap for the memory scenario, held for this process: released on destruction.
class SwapHold {
 public:
  Result<void> take() {
    holder_ = std::to_string(::getpid());
    std::string up = std::string(DYNAMOS_SOURCE_DIR) +
                     "/scripts/zram-swap.sh up --size 4G --holder " + holder_ + " >&2";
    if (std::system(up.c_str()) != 0) {
      holder_.clear();
      return fail(Errc::system, "the memory scenario needs swap: " + up + " failed");
    }
    return {};
  }
  ~SwapHold() {
    if (holder_.empty()) return;
    std::string down =
        std::string(DYNAMOS_SOURCE_DIR) + "/scripts/zram-swap.sh down --holder " + holder_ + " >&2";
    if (std::system(down.c_str()) != 0)
      std::cerr << "dynamos-bench-cyclesteal: " << down << " failed\n";
  }

 private:
  std::string holder_;
};

// The benchmark's node: a group holding the host's group and the guests (the
// nice-own-group guest's group, or the extension's guest class), so that host and guests compete
// inside it; with the memory scenario, its memory limit and swap.
Result<std::unique_ptr<Bench>> make_bench(const Options& o,
                                          std::unique_ptr<core::ExtensionHost> ext,
                                          uint64_t burst_work, SwapHold& swap) {
  auto guest_bytes = workload::parse_size(o.guest_mem);
  if (!guest_bytes) return std::unexpected(with_context(guest_bytes.error(), "--guest-mem"));
  auto layout = kernelside::Layout::detect();
  if (!layout) return std::unexpected(layout.error());
  std::string node_path = "dynamos-bench-cyclesteal-" + std::to_string(::getpid());
  kernelside::Controllers ctl{kernelside::Controller::cpu, kernelside::Controller::cpuacct,
                              kernelside::Controller::memory, kernelside::Controller::freezer};
  auto node = kernelside::Group::create(*layout, node_path, ctl);
  if (!node) return std::unexpected(node.error());
  auto built = [&]() -> Result<std::unique_ptr<Bench>> {
    if (o.node_weight)
      if (auto r = node->set_cpu_weight(o.node_weight); !r) return std::unexpected(r.error());
    if (o.scenario == "memory") {
      auto bytes = workload::parse_size(o.node_mem);
      if (!bytes) return std::unexpected(with_context(bytes.error(), "--node-mem"));
      if (auto r = node->set_memory_max(*bytes); !r) return std::unexpected(r.error());
      // The extension shares the node's memory, not the machine's.
      if (auto r = ext->set("cyclesteal.node_memory=" + o.node_mem); !r)
        return std::unexpected(r.error());
      if (auto r = swap.take(); !r) return std::unexpected(r.error());
    }
    auto host_group = node->create_child("host");
    auto nice_group = node->create_child("nice");
    if (!host_group || !nice_group)
      return fail(Errc::system, "create the host's and nice guest's groups in " + node_path);
    if (o.host_weight)
      if (auto r = host_group->set_cpu_weight(o.host_weight); !r) return std::unexpected(r.error());
    return std::make_unique<Bench>(o, std::move(ext), burst_work, *guest_bytes, std::move(*node),
                                   std::move(*host_group), std::move(*nice_group));
  }();
  if (!built) (void)node->remove_tree(kernelside::Evict::kill);
  return built;
}

// Every policy's runs, each paired with a run of none just before it.
struct AllRuns {
  std::map<std::string, std::vector<Run>> runs, paired_none;
};
Result<AllRuns> run_all(Bench& bench, const Options& o) {
  AllRuns all;
  try {
    for (int rep = 0; rep < o.reps; ++rep)
      for (auto& p : o.policies) {
        if (p == "none") {
          all.runs["none"].push_back(bench.run("none"));
          continue;
        }
        all.paired_none[p].push_back(bench.run("none"));
        all.runs[p].push_back(bench.run(p));
        std::cerr << "rep " << rep << " " << p << ": host " << all.runs[p].back().host_s << " s vs "
                  << all.paired_none[p].back().host_s << " s alone, host majflt "
                  << all.runs[p].back().host_majflt << "\n";
      }
  } catch (const std::exception& e) {
    return fail(Errc::state, e.what());
  }
  return all;
}

double round_to(double v, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(v * f) / f;
}

// One policy's line: medians over its runs, slowdown from the paired ratios.
nlohmann::ordered_json summarise(const std::string& p, const std::vector<Run>& rs,
                                 const std::vector<Run>& none, unsigned cpus) {
  std::vector<double> host_s, ratio, wait, gcpu, gshare, gfree, wait_none, wait_all, wait_all_none;
  auto share = [](double wait_s, double cpu_s) { return cpu_s > 0 ? wait_s / cpu_s : 0; };
  bool verified = true;
  uint64_t majflt = 0;
  int guests_lost = 0;
  for (size_t i = 0; i < rs.size(); ++i) {
    const Run& r = rs[i];
    host_s.push_back(r.host_s);
    wait.push_back(share(r.burst_wait_s, r.burst_cpu_s));
    wait_all.push_back(share(r.host_wait_s, r.host_cpu_s));
    gcpu.push_back(r.guest_cpu_s);
    double idle = cpus * r.host_s - r.host_cpu_s;
    gshare.push_back(idle > 0 ? r.guest_cpu_s / idle : 0);
    // Robust to other load on the machine: of the CPU time nobody else wanted (what
    // stayed idle, plus what the guest took), the guest's part.
    double free_s = r.system_idle_s + r.guest_cpu_s;
    gfree.push_back(free_s > 0 ? r.guest_cpu_s / free_s : 0);
    verified = verified && r.verified;
    majflt = std::max(majflt, r.host_majflt);
    guests_lost += r.guest_lost;
    if (p != "none") {
      const Run& n = none[i];
      ratio.push_back(r.host_s / n.host_s);
      wait_none.push_back(share(n.burst_wait_s, n.burst_cpu_s));
      wait_all_none.push_back(share(n.host_wait_s, n.host_cpu_s));
    }
  }
  auto [lo, hi] = ratio.empty() ? std::pair{1.0, 1.0}
                                : std::pair{*std::min_element(ratio.begin(), ratio.end()),
                                            *std::max_element(ratio.begin(), ratio.end())};
  auto report = rs.empty() ? nlohmann::ordered_json::object() : report_of(rs.back().report);
  return {{"policy", p},
          {"reps", rs.size()},
          {"host_s", round_to(median(host_s), 4)},
          {"host_slowdown", round_to(ratio.empty() ? 0 : median(ratio) - 1, 4)},
          {"host_slowdown_min", round_to(lo - 1, 4)},
          {"host_slowdown_max", round_to(hi - 1, 4)},
          {"host_wait_share", round_to(median(wait), 4)},
          {"host_wait_share_alone", round_to(p == "none" ? median(wait) : median(wait_none), 4)},
          {"host_wait_share_all", round_to(median(wait_all), 4)},
          {"host_wait_share_all_alone",
           round_to(p == "none" ? median(wait_all) : median(wait_all_none), 4)},
          {"guest_cpu_s", round_to(median(gcpu), 3)},
          {"guest_idle_share", round_to(median(gshare), 3)},
          {"guest_free_share", round_to(median(gfree), 3)},
          {"host_majflt", majflt},
          {"host_verified", verified},
          {"guest_pages_out", std::round(report.value("guest_pages_out", 0.0))},
          {"guests_started", rs.empty() ? 0 : rs.back().guests_started},
          {"guests_lost", guests_lost},
          {"cpus", cpus},
          {"reactions", rs.empty() || rs.back().report.empty()
                            ? nlohmann::ordered_json(nullptr)
                            : report.value("reactions", nlohmann::ordered_json::object())}};
}

void print_policy(const Options& o, const nlohmann::ordered_json& s) {
  if (o.json) {
    std::cout << s.dump() << std::endl;
    return;
  }
  std::printf(
      "%-14s host %.3f s  slowdown %+.1f%% [%+.1f%%, %+.1f%%]  wait share %.4f (all %.4f)  "
      "guest %.2f CPU s (%.0f%% of idle)\n",
      s["policy"].get<std::string>().c_str(), s["host_s"].get<double>(),
      100 * s["host_slowdown"].get<double>(), 100 * s["host_slowdown_min"].get<double>(),
      100 * s["host_slowdown_max"].get<double>(), s["host_wait_share"].get<double>(),
      s["host_wait_share_all"].get<double>(), s["guest_cpu_s"].get<double>(),
      100 * s["guest_idle_share"].get<double>());
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (auto status = parse_options(argc, argv, o)) return *status;
  workload::catch_stop_signals();

  auto host = core::ExtensionHost::create({});
  if (!host) return usage_error(host.error().message());
  if (auto r = (*host)->load(o.extension); !r) return usage_error(r.error().message());
  for (auto& s : o.sets)
    if (auto r = (*host)->set("cyclesteal." + s); !r) return usage_error(r.error().message());
  auto burst_work = calibrate_burst(o);
  if (!burst_work) return usage_error(burst_work.error().message());
  const unsigned cpus = static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN));
  SwapHold swap;  // declared before the bench: released after the node is gone
  auto bench = make_bench(o, std::move(*host), *burst_work, swap);
  if (!bench) return usage_error(bench.error().message());
  auto all = run_all(**bench, o);
  if (!all) {
    std::cerr << "dynamos-bench-cyclesteal: " << all.error().message() << "\n";
    return 1;
  }
  for (auto& p : o.policies)
    print_policy(o, summarise(p, all->runs[p], all->paired_none[p], cpus));
  return 0;
}
