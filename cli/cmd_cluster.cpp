// dynamos cluster up|status|down: the embedded virtual cluster. gangd and N node agents
// on this machine, over loopback TCP; every agent is a virtual node with its own cgroups,
// CPU set (hwloc: whole cores, round robin when there are more nodes than cores) and
// memory limit. Jobs start with mpirun through dynamos-vrsh (gangd --launch virtual).
//
// The cluster's files live in the state directory (default /run/dynamos):
//   cluster.conf   what `up` started (pids, port, nodes), read by status and down
//   secret hosts gangd.sock gangd.journal gangd.journal.sched gangd.log
//   agent-<node>.log agent-<node>.sock
//   launch/        the job supervisors' files
// `down` removes all of it, every process and cgroup, and the zram swap `up` set up.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "base/units.hpp"
#include "cli/cmd_cluster_slurm.hpp"
#include "cli/command.hpp"
#include "core/tunables.hpp"
#include "gang/client/control.hpp"
#include "gang/launch_path.hpp"
#include "kernelside/cgroup.hpp"
#include "kernelside/procfs.hpp"
#include "kernelside/spawn.hpp"
#include "kernelside/topology.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace dynamos;
namespace proto = dynamos::gang::proto;
using namespace std::chrono_literals;

namespace {

constexpr const char* kCgroupParent = "dynamos";

struct ClusterFile {
  std::map<std::string, std::string> values;
  std::string get(const std::string& k) const {
    auto it = values.find(k);
    return it == values.end() ? "" : it->second;
  }
};

Result<ClusterFile> read_cluster(const std::string& dir) {
  std::ifstream in(dir + "/cluster.conf");
  if (!in) return fail(Errc::not_found, "no virtual cluster is up (no " + dir + "/cluster.conf)");
  ClusterFile f;
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find(" = ");
    if (eq != std::string::npos) f.values[line.substr(0, eq)] = line.substr(eq + 3);
  }
  return f;
}

Result<void> write_cluster(const std::string& dir, const ClusterFile& f) {
  std::string tmp = dir + "/cluster.conf.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& [k, v] : f.values)
      out << k << " = " << v << "\n";
    if (!out) return fail(Errc::system, "cannot write " + tmp);
  }
  if (::rename(tmp.c_str(), (dir + "/cluster.conf").c_str()) != 0)
    return fail_errno("rename " + tmp);
  return {};
}

// A process that exists and has not exited: a zombie that init has not reaped yet (late
// on some machines) is gone as far as the cluster is concerned.
bool alive(pid_t pid) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno != EPERM)) return false;
  auto stat = kernelside::read_stat(pid);
  return !stat || (stat->state != 'Z' && stat->state != 'X');
}

// A daemon of the cluster: a session of its own, output to `log`.
Result<pid_t> spawn_daemon(const std::vector<std::string>& args, const std::string& log) {
  return kernelside::spawn_program(args, log, true, true);
}

// Reaps `pid` if it is our child; tells whether it is gone.
bool gone(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) == pid) return true;
  return !alive(pid);
}

bool wait_gone(pid_t pid, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!gone(pid)) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// SIGTERM, then SIGKILL after `grace`.
void stop_process(pid_t pid, std::chrono::milliseconds grace) {
  if (!alive(pid)) return;
  ::kill(pid, SIGTERM);
  if (!wait_gone(pid, grace)) {
    ::kill(pid, SIGKILL);
    wait_gone(pid, 2s);
  }
}

std::string last_lines(const std::string& path, int n) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line))
    lines.push_back(line);
  std::string out;
  for (std::size_t i = lines.size() > static_cast<std::size_t>(n) ? lines.size() - n : 0;
       i < lines.size(); ++i)
    out += "    " + lines[i] + "\n";
  return out;
}

Result<std::uint16_t> free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return fail_errno("finding a free loopback port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string size_text(std::uint64_t bytes) {
  if (bytes % (1ull << 30) == 0) return std::to_string(bytes >> 30) + "G";
  return std::to_string(bytes >> 20) + "M";
}

// Removes every file the cluster made in its state directory.
void remove_state(const std::string& dir, const ClusterFile& c) {
  std::error_code ec;
  for (const char* f :
       {"cluster.conf", "secret", "hosts", "gangd.sock", "gangd.journal", "gangd.journal.sched",
        "gangd.journal.sched.new", "gangd.log", "cluster.conf.tmp", "rounds.jsonl"})
    fs::remove(fs::path(dir) / f, ec);
  // zram-swap.sh's lock, once it keeps no swap of its own here.
  if (!fs::exists(fs::path(dir) / "zram-swap")) fs::remove(fs::path(dir) / "zram-swap.lock", ec);
  std::string nodes = c.get("nodes");
  std::size_t start = 0;
  while (start < nodes.size()) {
    auto comma = nodes.find(',', start);
    auto n = nodes.substr(start, comma == std::string::npos ? comma : comma - start);
    fs::remove(fs::path(dir) / ("agent-" + n + ".log"), ec);
    fs::remove(fs::path(dir) / ("agent-" + n + ".sock"), ec);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  fs::remove_all(fs::path(dir) / "launch", ec);
  fs::remove(dir, ec);  // only when empty (zram-swap's records may stay)
}

// Tears down what cluster.conf records; every step is tried whatever failed before.
int down(const std::string& dir, bool quiet) {
  auto c = read_cluster(dir);
  if (!c) {
    if (!quiet) std::cerr << "dynamos cluster down: " << c.error().message() << "\n";
    return quiet ? 0 : 1;
  }
  int status = 0;
  auto socket = dir + "/gangd.sock";
  // Jobs first, so that their supervisors see them end and go.
  if (auto jobs = cli::ask_for<proto::JobList>(socket, proto::ListJobs{}, 5s)) {
    for (const auto& j : jobs->jobs)
      if (!j.ended_ns) (void)cli::ask_for<proto::Ok>(socket, proto::JobCancel{j.job}, 5s);
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(dir) / "launch", ec)) {
    if (e.path().extension() != ".pid") continue;
    std::ifstream in(e.path());
    pid_t pid = 0;
    if (in >> pid) stop_process(pid, 3s);
  }
  std::string agents = c->get("agent_pids");
  std::vector<pid_t> pids;
  for (std::size_t start = 0; start < agents.size();) {
    auto comma = agents.find(',', start);
    pids.push_back(std::atoi(agents.substr(start, comma - start).c_str()));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  for (pid_t p : pids)
    if (alive(p)) ::kill(p, SIGTERM);
  for (pid_t p : pids)
    if (!wait_gone(p, 10s)) {
      ::kill(p, SIGKILL);
      wait_gone(p, 2s);
    }
  pid_t gangd = std::atoi(c->get("gangd_pid").c_str());
  stop_process(gangd, 5s);
  // Agents that were killed leave their groups: remove whatever is left.
  if (auto layout = kernelside::Layout::detect()) {
    auto parent = c->get("cgroup_parent");
    if (!parent.empty() && kernelside::Group::exists(*layout, parent)) {
      auto g = kernelside::Group::open(*layout, parent);
      if (g) {
        if (auto r = g->remove_tree(kernelside::Evict::kill); !r) {
          std::cerr << "dynamos cluster down: removing cgroup " << parent << ": "
                    << r.error().message() << "\n";
          status = 1;
        }
      }
    }
  }
  if (c->get("swap") == "zram") {
    std::string cmd = gang::sibling_program("dynamos-zram-swap") + " down --holder " +
                      std::to_string(gangd) + (quiet ? " >/dev/null" : "");
    if (std::system(cmd.c_str()) != 0) {
      std::cerr << "dynamos cluster down: taking the zram swap down failed\n";
      status = 1;
    }
  }
  remove_state(dir, *c);
  if (!quiet)
    std::cout << "cluster down: " << pids.size() << " agents and gangd stopped, cgroups "
              << c->get("cgroup_parent") << " removed"
              << (c->get("swap") == "zram" ? ", zram swap removed" : "") << "\n";
  return status;
}

// `cluster up`'s options, checked.
struct UpOptions {
  unsigned nodes = 0, slots = 0;  // slots 0: each node's CPUs
  std::string mem, quantum = "2s", dir, node_timeout, cgroup_parent;
};

// Parses and checks `cluster up`'s options: an exit status when it should stop there
// (help, a bad option).
std::optional<int> parse_up_options(std::span<const std::string> args, UpOptions& o) {
  po::options_description desc(
      "usage: dynamos cluster up --nodes N [--mem-per-node SIZE] [--quantum DURATION]\n"
      "                          [--slots S]\n\n"
      "Starts a virtual cluster on this machine: gangd and N node agents (dynamosd) on\n"
      "loopback, each agent a virtual node with its own cgroups, CPUs (whole cores from\n"
      "hwloc, shared round robin when N exceeds the cores) and memory limit. Sets up zram\n"
      "swap when no swap is active (memory-overcommitted gangs page). Needs root.\n"
      "Then: dynamos submit, jobs, nodes; dynamos cluster down removes everything.\n\n"
      "options");
  desc.add_options()("help,h", "show this help")("nodes", po::value(&o.nodes), "virtual nodes")(
      "mem-per-node", po::value(&o.mem), "memory limit of each node, e.g. 2G (default: RAM / N)")(
      "quantum", po::value(&o.quantum)->default_value("2s"), "gang time slice")(
      "slots", po::value(&o.slots), "ranks a node takes per time slot (default: its CPUs)")(
      "state-dir", po::value(&o.dir)->default_value("/run/dynamos"),
      "where the cluster's sockets, logs and state go")(
      "node-timeout", po::value(&o.node_timeout)->default_value("60s"),
      "a node whose agent stays away this long fails its jobs")(
      "cgroup-parent", po::value(&o.cgroup_parent)->default_value(kCgroupParent),
      "the nodes' groups are <cgroup-parent>/<node> in every hierarchy");
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = cli::parse_options("cluster up", args, desc, positional, vm)) return *s;
  if (!positional.empty()) return cli::error("cluster up", "unexpected '" + positional[0] + "'", 2);
  if (o.nodes == 0 || o.nodes > 64)
    return cli::error("cluster up", "--nodes must be between 1 and 64 (try --help)", 2);
  if (vm.count("slots") && (o.slots == 0 || o.slots > 1024))
    return cli::error("cluster up", "--slots must be between 1 and 1024", 2);
  if (auto q = parse_duration(o.quantum); !q)
    return cli::error("cluster up", "--quantum: " + q.error().message(), 2);
  if (::geteuid() != 0)
    return cli::error("cluster up", "needs root (it creates cgroups and may set up swap)");
  return std::nullopt;
}

// The virtual nodes: names, CPU sets (whole cores, round robin) and memory limit.
struct NodePlan {
  std::vector<std::string> names;
  std::vector<std::string> cpus;  // per node
  std::uint64_t mem_bytes = 0;
  std::string hostfile;  // "n1 slots=S" lines
  std::string list() const {
    std::string s;
    for (const auto& n : names)
      s += (s.empty() ? "" : ",") + n;
    return s;
  }
};

// Plans the nodes from the machine's topology; the error is a one-line message and
// whether it is a usage error.
Result<NodePlan> plan_nodes(const UpOptions& o) {
  auto topo = kernelside::read_topology();
  if (!topo) return std::unexpected(topo.error());
  NodePlan plan;
  plan.mem_bytes = topo->memory_bytes / o.nodes;
  if (!o.mem.empty()) {
    auto b = parse_size_bytes(o.mem);
    if (!b || *b < (64 << 20))
      return fail(Errc::invalid_argument,
                  "--mem-per-node: '" + o.mem + "' is not a size of 64M or more");
    plan.mem_bytes = static_cast<std::uint64_t>(*b);
  }
  plan.mem_bytes &= ~((1ull << 20) - 1);
  auto parts =
      topo->split_cores(std::min<unsigned>(o.nodes, static_cast<unsigned>(topo->cores.size())));
  if (!parts) return std::unexpected(parts.error());
  for (unsigned i = 1; i <= o.nodes; ++i) {
    plan.names.push_back("n" + std::to_string(i));
    plan.cpus.push_back((*parts)[(i - 1) % parts->size()]);
    std::size_t slots = o.slots;  // default: the node's CPUs
    if (auto cpus = kernelside::parse_cpu_list(plan.cpus.back()); !slots && cpus)
      slots = cpus->size();
    plan.hostfile +=
        plan.names.back() + " slots=" + std::to_string(std::max<std::size_t>(slots, 1)) + "\n";
  }
  return plan;
}

// The programs and extensions a virtual cluster runs, all present.
struct ClusterPrograms {
  std::string gangd, dynamosd, paging, cyclesteal;
};
Result<ClusterPrograms> find_programs() {
  auto lib = fs::path(gang::sibling_program("")).parent_path().parent_path() / "lib";
  ClusterPrograms p{gang::sibling_program("gangd"), gang::sibling_program("dynamosd"),
                    (lib / "libdynamos_ext_paging.so").string(),
                    (lib / "libdynamos_ext_cyclesteal.so").string()};
  for (const auto& f :
       {p.gangd, p.dynamosd, gang::sibling_program("dynamos-launch"), p.paging, p.cyclesteal})
    if (::access(f.c_str(), R_OK) != 0)
      return fail(Errc::not_found, f + " is missing (build the project: scripts/build.sh)");
  return p;
}

// A cluster being started: cluster.conf records each process as it starts, and unless
// the start is committed, whatever was started is taken down again when this goes.
class Startup {
 public:
  explicit Startup(std::string dir) : dir_(std::move(dir)) {}
  Startup(const Startup&) = delete;
  Startup& operator=(const Startup&) = delete;
  ~Startup() {
    if (committed_) return;
    (void)write_cluster(dir_, conf_);
    down(dir_, true);
  }
  void record(const std::string& key, const std::string& value) {
    conf_.values[key] = value;
    (void)write_cluster(dir_, conf_);
  }
  const ClusterFile& conf() const { return conf_; }
  const std::string& dir() const { return dir_; }
  std::string socket() const { return dir_ + "/gangd.sock"; }
  void commit() { committed_ = true; }

 private:
  std::string dir_;
  ClusterFile conf_;
  bool committed_ = false;
};

// The state directory, ready for a new cluster: the remains of one whose processes died
// are removed; a cluster still up is an error.
Result<void> prepare_state_dir(const std::string& dir) {
  if (auto existing = read_cluster(dir)) {
    if (alive(std::atoi(existing->get("gangd_pid").c_str())))
      return fail(Errc::busy,
                  "a cluster is already up (dynamos cluster status; dynamos cluster down first)");
    down(dir, true);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(Errc::system, "cannot create " + dir + ": " + ec.message());
  return {};
}

// gangd on a free loopback port, with the hostfile and a new secret; ready once its
// control socket answers.
Result<pid_t> start_gangd(const UpOptions& o, const NodePlan& plan, const ClusterPrograms& progs,
                          Startup& up) {
  const std::string& dir = o.dir;
  {
    std::ofstream h(dir + "/hosts", std::ios::trunc);
    h << plan.hostfile;
  }
  std::error_code ec;
  fs::remove(dir + "/secret", ec);
  fs::remove(dir + "/gangd.journal", ec);
  fs::remove(dir + "/gangd.journal.sched", ec);  // the queue and history of an older cluster
  auto port = free_port();
  if (!port) return std::unexpected(port.error());
  up.record("port", std::to_string(*port));
  auto metrics_port = free_port();
  if (!metrics_port) return std::unexpected(metrics_port.error());
  const std::string metrics = "127.0.0.1:" + std::to_string(*metrics_port);
  up.record("gangd_metrics", metrics);
  auto gangd = spawn_daemon({progs.gangd,        "--hostfile",
                             dir + "/hosts",     "--secret",
                             dir + "/secret",    "--create-secret",
                             "--listen",         "127.0.0.1:" + std::to_string(*port),
                             "--control-socket", up.socket(),
                             "--journal",        dir + "/gangd.journal",
                             "--quantum",        o.quantum,
                             "--launch",         "virtual",
                             "--run-dir",        dir,
                             "--node-timeout",   o.node_timeout,
                             "--round-log",      dir + "/rounds.jsonl",
                             "--metrics-listen", metrics},
                            dir + "/gangd.log");
  if (!gangd) return std::unexpected(gangd.error());
  up.record("gangd_pid", std::to_string(*gangd));
  auto until = std::chrono::steady_clock::now() + 10s;
  while (!cli::ask_for<proto::NodeList>(up.socket(), proto::ListNodes{}, 1s)) {
    if (gone(*gangd) || std::chrono::steady_clock::now() > until)
      return fail(Errc::state, "gangd did not start:\n" + last_lines(dir + "/gangd.log", 5));
    std::this_thread::sleep_for(20ms);
  }
  return *gangd;
}

// Swap: anonymous pages of overcommitted gangs need somewhere to go. The script sets
// zram swap up when none is active, and when the active swap is zram it set up for
// someone else (a test, another cluster), adds gangd as a holder so that the swap
// stays until this cluster is down too; swap it did not set up is left alone.
Result<void> set_up_swap(pid_t gangd, Startup& up) {
  std::string cmd =
      gang::sibling_program("dynamos-zram-swap") + " up --holder " + std::to_string(gangd);
  if (std::system(cmd.c_str()) != 0) return fail(Errc::system, "setting up zram swap failed");
  if (fs::exists(fs::path("/run/dynamos/zram-swap/holders") / std::to_string(gangd)))
    up.record("swap", "zram");
  return {};
}

// One agent a node, each with its CPUs, memory limit and the extensions.
Result<void> start_agents(const UpOptions& o, const NodePlan& plan, const ClusterPrograms& progs,
                          Startup& up) {
  std::string agent_pids, agent_metrics;
  for (std::size_t i = 0; i < plan.names.size(); ++i) {
    auto metrics_port = free_port();
    if (!metrics_port) return std::unexpected(metrics_port.error());
    const std::string metrics = "127.0.0.1:" + std::to_string(*metrics_port);
    auto pid = spawn_daemon({progs.dynamosd,
                             "--node",
                             plan.names[i],
                             "--secret",
                             o.dir + "/secret",
                             "--coordinator",
                             "127.0.0.1:" + up.conf().get("port"),
                             "--cgroup-parent",
                             o.cgroup_parent,
                             "--cpus",
                             plan.cpus[i],
                             "--memory",
                             std::to_string(plan.mem_bytes),
                             "--paging-extension",
                             progs.paging,
                             "--cyclesteal-extension",
                             progs.cyclesteal,
                             "--run-dir",
                             o.dir,
                             "--metrics-listen",
                             metrics,
                             "--remove-on-exit"},
                            o.dir + "/agent-" + plan.names[i] + ".log");
    if (!pid) return std::unexpected(pid.error());
    agent_pids += (agent_pids.empty() ? "" : ",") + std::to_string(*pid);
    up.record("agent_pids", agent_pids);
    agent_metrics += (agent_metrics.empty() ? "" : ",") + metrics;
    up.record("agent_metrics", agent_metrics);
    std::cout << "node " << plan.names[i] << ": cpus " << plan.cpus[i] << ", memory "
              << size_text(plan.mem_bytes) << ", agent pid " << *pid << "\n";
  }
  return {};
}

// Waits until every node's agent has connected to gangd.
Result<void> wait_nodes_up(const UpOptions& o, const Startup& up) {
  auto until = std::chrono::steady_clock::now() + 15s;
  for (;;) {
    auto list = cli::ask_for<proto::NodeList>(up.socket(), proto::ListNodes{}, 1s);
    std::size_t n_up = 0;
    std::string missing;
    if (list)
      for (const auto& n : list->nodes) {
        if (n.state == "up")
          ++n_up;
        else
          missing = n.name;
      }
    if (n_up == o.nodes) return {};
    if (std::chrono::steady_clock::now() > until)
      return fail(Errc::timed_out, "node " + missing + "'s agent did not connect:\n" +
                                       last_lines(o.dir + "/agent-" + missing + ".log", 5));
    std::this_thread::sleep_for(20ms);
  }
}

void print_up(const UpOptions& o, const Startup& up) {
  std::cout << "cluster up: " << o.nodes << " nodes, "
            << (o.slots ? std::to_string(o.slots) : std::string("their CPUs as"))
            << " slots each, quantum " << o.quantum << ", gangd pid " << up.conf().get("gangd_pid")
            << " (127.0.0.1:" << up.conf().get("port") << ", " << up.socket() << ")"
            << (up.conf().get("swap") == "zram" ? ", zram swap set up" : "") << "\n";
  if (o.dir != "/run/dynamos")
    std::cout << "use it with: export DYNAMOS_SOCKET=" << up.socket() << "\n";
}

int run_up(std::span<const std::string> args) {
  UpOptions o;
  if (auto status = parse_up_options(args, o)) return *status;
  auto plan = plan_nodes(o);
  if (!plan)
    return cli::error("cluster up", plan.error().message(),
                      plan.error().code == Errc::invalid_argument ? 2 : 1);
  if (auto r = prepare_state_dir(o.dir); !r) return cli::error("cluster up", r.error().message());
  auto progs = find_programs();
  if (!progs) return cli::error("cluster up", progs.error().message());

  Startup up(o.dir);  // takes down what started unless committed
  up.record("nodes", plan->list());
  up.record("cgroup_parent", o.cgroup_parent);
  up.record("quantum", o.quantum);
  up.record("mem_per_node", std::to_string(plan->mem_bytes));
  auto gangd = start_gangd(o, *plan, *progs, up);
  if (!gangd) return cli::error("cluster up", gangd.error().message());
  if (auto r = set_up_swap(*gangd, up); !r) return cli::error("cluster up", r.error().message());
  if (auto r = start_agents(o, *plan, *progs, up); !r)
    return cli::error("cluster up", r.error().message());
  if (auto r = wait_nodes_up(o, up); !r) return cli::error("cluster up", r.error().message());
  up.commit();
  print_up(o, up);
  return 0;
}

// Each daemon's Prometheus endpoint: {"gangd": URL, "n1": URL, ...}.
nlohmann::ordered_json metrics_urls(const ClusterFile& c) {
  nlohmann::ordered_json urls = nlohmann::ordered_json::object();
  auto url = [](const std::string& address) { return "http://" + address + "/metrics"; };
  if (!c.get("gangd_metrics").empty()) urls["gangd"] = url(c.get("gangd_metrics"));
  std::stringstream names(c.get("nodes")), addresses(c.get("agent_metrics"));
  std::string name, address;
  while (std::getline(names, name, ',') && std::getline(addresses, address, ','))
    urls[name] = url(address);
  return urls;
}

int run_status(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos cluster status [--json]\n\n"
      "The virtual cluster's processes, nodes and jobs.\n\noptions");
  std::string dir;
  bool json = false;
  desc.add_options()("help,h", "show this help")("json", po::bool_switch(&json), "as JSON")(
      "state-dir", po::value(&dir)->default_value("/run/dynamos"), "the cluster's state directory");
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = cli::parse_options("cluster status", args, desc, positional, vm)) return *s;
  auto c = read_cluster(dir);
  if (!c) return cli::error("cluster status", c.error().message());
  pid_t gangd = std::atoi(c->get("gangd_pid").c_str());
  auto socket = dir + "/gangd.sock";
  auto nodes = cli::ask_for<proto::NodeList>(socket, proto::ListNodes{}, 3s);
  auto jobs = cli::ask_for<proto::JobList>(socket, proto::ListJobs{}, 3s);
  std::size_t up = 0, running = 0;
  if (nodes)
    for (const auto& n : nodes->nodes)
      up += n.state == "up";
  if (jobs)
    for (const auto& j : jobs->jobs)
      running += !j.ended_ns;
  if (json) {
    auto number = [](const std::string& text) -> std::uint64_t {
      return std::strtoull(text.c_str(), nullptr, 10);
    };
    nlohmann::ordered_json j = {{"gangd_pid", gangd},
                                {"gangd", alive(gangd) ? "up" : "down"},
                                {"port", number(c->get("port"))},
                                {"socket", socket},
                                {"nodes", nodes ? nodes->nodes.size() : 0},
                                {"nodes_up", up},
                                {"jobs", running},
                                {"quantum", c->get("quantum")},
                                {"mem_per_node", number(c->get("mem_per_node"))},
                                {"swap", c->get("swap")},
                                {"metrics", metrics_urls(*c)}};
    std::cout << j.dump() << "\n";
  } else {
    std::cout << "gangd: pid " << gangd << " " << (alive(gangd) ? "up" : "DOWN")
              << ", 127.0.0.1:" << c->get("port") << ", " << socket << "\n"
              << "nodes: " << up << " of " << (nodes ? nodes->nodes.size() : 0) << " up ("
              << c->get("nodes") << "), memory " << size_text(std::stoull(c->get("mem_per_node")))
              << " each\n"
              << "jobs: " << running << " running or waiting\n"
              << "quantum at start: " << c->get("quantum")
              << (c->get("swap") == "zram" ? ", zram swap set up by the cluster" : "") << "\n";
    if (!nodes) std::cout << "gangd does not answer: " << nodes.error().message() << "\n";
  }
  return alive(gangd) && nodes && up == nodes->nodes.size() ? 0 : 1;
}

int run_down(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos cluster down\n\n"
      "Stops the virtual cluster: cancels its jobs, stops the agents and gangd, removes\n"
      "the cgroups, the zram swap it set up and its state files.\n\noptions");
  std::string dir;
  cli::add_state_dir_options(desc, dir);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = cli::parse_options("cluster down", args, desc, positional, vm)) return *s;
  if (::geteuid() != 0) return cli::error("cluster down", "needs root");
  return down(dir, false);
}

int run_cluster(std::span<const std::string> args) {
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::FILE* out = args.empty() ? stderr : stdout;
    std::fprintf(out,
                 "usage: dynamos cluster up|status|down [options]\n\n"
                 "  up      start a virtual cluster on this machine (gangd + N node agents)\n"
                 "  status  its processes, nodes and jobs\n"
                 "  down    stop it and remove everything it made\n\n"
                 "Run 'dynamos cluster SUBCOMMAND --help' for options.\n");
    return args.empty() ? 2 : 0;
  }
  if (auto slurm = cli::run_cluster_slurm(args)) return *slurm;  // up --slurm
  auto rest = args.subspan(1);
  if (args[0] == "up") return run_up(rest);
  if (args[0] == "status") return run_status(rest);
  if (args[0] == "down") return run_down(rest);
  return cli::error("cluster", "unknown subcommand '" + args[0] + "' (up, status or down)", 2);
}

}  // namespace

DYNAMOS_COMMAND(cluster, "cluster", "start, inspect or stop a virtual cluster on this machine",
                run_cluster);
