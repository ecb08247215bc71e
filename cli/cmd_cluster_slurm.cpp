// dynamos cluster up --slurm: gangd and one dynamosd per node inside a Slurm allocation
// (salloc -N 3, or an sbatch script). Slurm allocates the nodes and starts the processes;
// DynAMOS time-slices the MPI jobs submitted inside the allocation.
//
//   calling host (salloc's shell, or the batch step's node)
//     gangd --launch slurm, listening on every address (the nodes connect over TCP and
//       authenticate with the cluster's secret); jobs start through dynamos-launch with
//       mpirun's Slurm launcher (orted in a step of their own, never ssh)
//     dynamos cluster slurm-watch -- srun --overlap --ntasks-per-node=1 -N <n> ...
//       holds the agents' step; when the step ends without `cluster down` (scancel, the
//       allocation's end) it takes the rest down: jobs, launchers, gangd, state files
//   every node, one task of that step
//     dynamos cluster slurm-node: the node's name (SLURMD_NODENAME), CPUs (the step's
//       affinity), memory (SLURM_MEM_PER_NODE), gangd's address (SLURM_LAUNCH_NODE_IPADDR),
//       the Slurm job's cgroup (/proc/self/cgroup), the secret (from srun's environment
//       into a 0600 file), then dynamosd as its child; removes its files when it ends
//
// `dynamos cluster down` stops it all as for a virtual cluster: cluster.conf records
// the watcher as the agents' process (SIGTERM: it ends the step, every dynamosd thaws
// and removes its groups) and the job groups' parent where Slurm has no cgroup for the
// job ("dynamos-slurm-<job id>").
#include "cli/cmd_cluster_slurm.hpp"
#include "base/units.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "cli/command.hpp"
#include "gang/client/control.hpp"
#include "gang/launch_path.hpp"
#include "gang/mpirun_command.hpp"
#include "gang/slurm/allocation.hpp"
#include "kernelside/spawn.hpp"
#include "kernelside/topology.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
namespace proto = dynamos::gang::proto;
using namespace std::chrono_literals;

namespace dynamos::cli {
namespace {

constexpr const char* kUp = "cluster up --slurm";
constexpr const char* kSecretVar = "DYNAMOS_SLURM_SECRET";

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// cluster.conf as `dynamos cluster status` and `down` read it: "key = value" lines.
void write_conf(const std::string& dir, const std::map<std::string, std::string>& values) {
  {
    std::ofstream out(dir + "/cluster.conf.tmp", std::ios::trunc);
    for (const auto& [k, v] : values)
      out << k << " = " << v << "\n";
  }
  std::error_code ec;
  fs::rename(dir + "/cluster.conf.tmp", dir + "/cluster.conf", ec);
}

std::map<std::string, std::string> read_conf(const std::string& dir) {
  std::map<std::string, std::string> values;
  std::istringstream in(read_text(dir + "/cluster.conf"));
  for (std::string line; std::getline(in, line);)
    if (auto eq = line.find(" = "); eq != std::string::npos)
      values[line.substr(0, eq)] = line.substr(eq + 3);
  return values;
}

pid_t spawn_child(const std::vector<std::string>& argv) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  std::vector<char*> a;
  for (const auto& s : argv)
    a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  ::execvp(a[0], a.data());
  std::fprintf(stderr, "dynamos: cannot run %s: %s\n", a[0], std::strerror(errno));
  ::_exit(127);
}

// `dynamos cluster down --state-dir DIR`, the one teardown of every kind of cluster.
int cluster_down(const std::string& dir) {
  pid_t pid =
      spawn_child({gang::sibling_program("dynamos"), "cluster", "down", "--state-dir", dir});
  int status = 0;
  if (pid < 0) return 1;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

Result<std::uint16_t> free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  socklen_t len = sizeof a;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  if (!ok) return fail_errno("finding a free port");
  return ntohs(a.sin_port);
}

template <class Ready>
bool wait_until(std::chrono::seconds timeout, pid_t daemon, Ready ready) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!ready()) {
    int status = 0;
    if (::waitpid(daemon, &status, WNOHANG) == daemon) return false;
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

struct UpOptions {
  std::string dir, quantum, node_timeout, mpirun_args, coordinator_host, mem;
  unsigned slots = 0;
};

// gangd on this host; its secret is the cluster's.
Result<pid_t> start_gangd(const UpOptions& o, const gang::slurm::Allocation& a,
                          std::uint16_t port) {
  std::string hosts;
  for (std::size_t i = 0; i < a.nodes.size(); ++i)
    hosts += a.nodes[i] + " slots=" + std::to_string(o.slots ? o.slots : a.cpus[i]) + "\n";
  std::ofstream(o.dir + "/hosts", std::ios::trunc) << hosts;
  std::error_code ec;
  fs::remove(o.dir + "/secret", ec);
  fs::remove(o.dir + "/gangd.journal", ec);
  return kernelside::spawn_program({gang::sibling_program("gangd"),
                                    "--hostfile",
                                    o.dir + "/hosts",
                                    "--secret",
                                    o.dir + "/secret",
                                    "--create-secret",
                                    "--listen",
                                    "0.0.0.0:" + std::to_string(port),
                                    "--control-socket",
                                    o.dir + "/gangd.sock",
                                    "--journal",
                                    o.dir + "/gangd.journal",
                                    "--quantum",
                                    o.quantum,
                                    "--launch",
                                    "slurm",
                                    "--run-dir",
                                    o.dir,
                                    "--node-timeout",
                                    o.node_timeout,
                                    "--round-log",
                                    o.dir + "/rounds.jsonl",
                                    "--mpirun-args",
                                    o.mpirun_args},
                                   o.dir + "/gangd.log", true, true);
}

// The agents' step, held by a watcher; the secret reaches the nodes in srun's environment.
Result<pid_t> start_agents(const UpOptions& o, const gang::slurm::Allocation& a,
                           std::uint16_t port) {
  std::string nodes;
  for (const auto& n : a.nodes)
    nodes += (nodes.empty() ? "" : ",") + n;
  std::vector<std::string> args = {gang::sibling_program("dynamos"),
                                   "cluster",
                                   "slurm-watch",
                                   "--state-dir",
                                   o.dir,
                                   "--",
                                   "srun",
                                   "--overlap",
                                   "--ntasks-per-node=1",
                                   "-N",
                                   std::to_string(a.nodes.size()),
                                   "--nodelist=" + nodes,
                                   "--kill-on-bad-exit=0",
                                   "--job-name=dynamosd",
                                   gang::sibling_program("dynamos"),
                                   "cluster",
                                   "slurm-node",
                                   "--state-dir",
                                   o.dir,
                                   "--port",
                                   std::to_string(port)};
  if (!o.coordinator_host.empty())
    args.insert(args.end(), {"--coordinator-host", o.coordinator_host});
  if (!o.mem.empty()) args.insert(args.end(), {"--memory", o.mem});
  auto secret = read_text(o.dir + "/secret");
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == ' '))
    secret.pop_back();
  if (secret.empty()) return fail(Errc::system, "gangd made no secret in " + o.dir);
  ::setenv(kSecretVar, secret.c_str(), 1);
  auto pid = kernelside::spawn_program(args, o.dir + "/agents.log", true, true);
  ::unsetenv(kSecretVar);
  return pid;
}

std::size_t nodes_up(const std::string& socket) {
  auto list = ask_for<proto::NodeList>(socket, proto::ListNodes{}, 1s);
  std::size_t up = 0;
  if (list)
    for (const auto& n : list->nodes)
      up += n.state == "up";
  return up;
}

int up_slurm(const UpOptions& o) {
  auto alloc = gang::slurm::allocation_from_env();
  if (!alloc) return error(kUp, alloc.error().message());
  if (::geteuid() != 0) return error(kUp, "needs root (the agents create cgroups)");
  if (fs::exists(o.dir + "/cluster.conf"))
    return error(
        kUp, "a cluster is up already (" + o.dir + "/cluster.conf; dynamos cluster down first)");
  auto lib = fs::path(gang::sibling_program("")).parent_path().parent_path() / "lib";
  for (const auto& p :
       {gang::sibling_program("gangd"), gang::sibling_program("dynamosd"),
        gang::sibling_program("dynamos-launch"), (lib / "libdynamos_ext_paging.so").string(),
        (lib / "libdynamos_ext_cyclesteal.so").string()})
    if (::access(p.c_str(), R_OK) != 0)
      return error(kUp, p + " is missing (build the project: scripts/build.sh)");
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  if (ec) return error(kUp, "cannot create " + o.dir + ": " + ec.message());
  auto port = free_port();
  if (!port) return error(kUp, port.error().message());
  std::map<std::string, std::string> conf = {
      {"nodes", ""},
      {"slurm_job", alloc->job_id},
      {"cgroup_parent", gang::slurm::cgroup_parent("", alloc->job_id)},
      {"quantum", o.quantum},
      {"mem_per_node", std::to_string(alloc->mem_per_node)},
      {"port", std::to_string(*port)}};
  for (const auto& n : alloc->nodes)
    conf["nodes"] += (conf["nodes"].empty() ? "" : ",") + n;
  auto fail_up = [&](const std::string& why) {
    write_conf(o.dir, conf);
    cluster_down(o.dir);
    return error(kUp, why);
  };
  auto gangd = start_gangd(o, *alloc, *port);
  if (!gangd) return fail_up(gangd.error().message());
  conf["gangd_pid"] = std::to_string(*gangd);
  write_conf(o.dir, conf);
  auto socket = o.dir + "/gangd.sock";
  if (!wait_until(10s, *gangd, [&] {
        return ask_for<proto::NodeList>(socket, proto::ListNodes{}, 1s).has_value();
      }))
    return fail_up("gangd did not start (" + o.dir + "/gangd.log)");
  auto watcher = start_agents(o, *alloc, *port);
  if (!watcher) return fail_up(watcher.error().message());
  conf["agent_pids"] = std::to_string(*watcher);
  write_conf(o.dir, conf);
  if (!wait_until(30s, *watcher, [&] { return nodes_up(socket) == alloc->nodes.size(); }))
    return fail_up("the nodes' agents did not all connect (" + o.dir + "/agents.log, " + o.dir +
                   "/agent-NODE.log):\n" + read_text(o.dir + "/agents.log"));
  std::cout << "cluster up --slurm: Slurm job " << alloc->job_id << ", " << alloc->nodes.size()
            << " nodes (" << conf["nodes"] << "), quantum " << o.quantum << ", gangd pid " << *gangd
            << " (port " << *port << ", " << socket << ")\n";
  if (o.dir != "/run/dynamos") std::cout << "use it with: export DYNAMOS_SOCKET=" << socket << "\n";
  return 0;
}

int run_up_slurm(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos cluster up --slurm [--quantum D] [--slots S] [--mpirun-args ARGS]\n\n"
      "Inside a Slurm allocation (salloc -N 3, or an sbatch script): gangd on this host and\n"
      "one node agent per allocated node, started with srun --overlap. Jobs submitted with\n"
      "dynamos submit start with Open MPI's Slurm launcher inside the allocation. dynamos\n"
      "cluster down, or the allocation's end, removes everything. Needs root.\n\noptions");
  UpOptions o;
  bool slurm = false;
  desc.add_options()("help,h", "show this help")("slurm", po::bool_switch(&slurm),
                                                 "inside the Slurm allocation of the environment")(
      "quantum", po::value(&o.quantum)->default_value("2s"), "gang time slice")(
      "slots", po::value(&o.slots), "ranks a node takes per time slot (default: its CPUs)")(
      "mem-per-node", po::value(&o.mem),
      "memory limit of each node's jobs (default: SLURM_MEM_PER_NODE, else the node's)")(
      "mpirun-args", po::value(&o.mpirun_args)->default_value(gang::kDefaultMpirunArgs),
      "mpirun options of every job (each job adds its own: dynamos submit --mpi-args)")(
      "coordinator-host", po::value(&o.coordinator_host),
      "the address nodes reach gangd at (default: srun's, SLURM_LAUNCH_NODE_IPADDR)")(
      "state-dir", po::value(&o.dir)->default_value("/run/dynamos"),
      "where the cluster's sockets, logs and state go (on every node)")(
      "node-timeout", po::value(&o.node_timeout)->default_value("60s"),
      "a node whose agent stays away this long fails its jobs");
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = parse_options(kUp, args, desc, positional, vm)) return *s;
  if (!positional.empty()) return error(kUp, "unexpected '" + positional[0] + "'", 2);
  if (!parse_duration(o.quantum)) return error(kUp, "--quantum: not a duration", 2);
  if (!o.mem.empty() && !parse_size_bytes(o.mem))
    return error(kUp, "--mem-per-node: not a size", 2);
  o.dir = fs::absolute(o.dir).lexically_normal().string();
  return up_slurm(o);
}

volatile std::sig_atomic_t g_stop = 0;
pid_t g_child = -1;

void forward_stop(int) {
  g_stop = 1;
  if (g_child > 0) ::kill(g_child, SIGTERM);
}

int wait_child(pid_t pid) {
  struct sigaction sa {};
  sa.sa_handler = forward_stop;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  g_child = pid;
  if (g_stop) ::kill(pid, SIGTERM);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// slurm-watch --state-dir DIR -- SRUN...: the agents' step. SIGTERM (cluster down) ends
// the step; a step that ends by itself (scancel, the allocation's end) takes the rest down.
int run_watch(std::span<const std::string> args) {
  if (args.size() < 4 || args[0] != "--state-dir" || args[2] != "--")
    return error("cluster slurm-watch", "usage: slurm-watch --state-dir DIR -- COMMAND...", 2);
  std::string dir = args[1];
  pid_t srun = spawn_child({args.begin() + 3, args.end()});
  if (srun < 0) return error("cluster slurm-watch", "fork failed");
  int status = wait_child(srun);
  std::fprintf(stderr, "dynamos cluster slurm-watch: the agents' step ended (status %d)%s\n",
               status, g_stop ? "" : ": taking the cluster down");
  int down = 0;
  if (!g_stop && fs::exists(dir + "/cluster.conf")) {
    auto conf = read_conf(dir);
    // not this watcher, which is ending (a restart-node's srun stays for down to stop)
    std::string others, self = std::to_string(::getpid());
    std::istringstream pids(conf["agent_pids"]);
    for (std::string pid; std::getline(pids, pid, ',');)
      if (pid != self) others += (others.empty() ? "" : ",") + pid;
    conf["agent_pids"] = others;
    write_conf(dir, conf);
    down = cluster_down(dir);
  }
  // This watcher's own log and the nodes' secrets if a node's task was killed before it
  // removed its own (cluster down removes the rest, and the directory once empty).
  std::error_code ec;
  fs::remove(dir + "/agents.log", ec);
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with("secret-")) fs::remove(e.path(), ec);
  if (!g_stop) fs::remove(dir, ec);
  return down;
}

std::string affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<unsigned> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    for (unsigned c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return kernelside::format_cpu_list(cpus);
}

// slurm-node: one task of the agents' step on each node; dynamosd as its child.
int run_node(std::span<const std::string> args) {
  constexpr const char* kName = "cluster slurm-node";
  po::options_description desc("usage: dynamos cluster slurm-node (started by cluster up --slurm)");
  std::string dir, host, memory;
  unsigned port = 0;
  desc.add_options()("state-dir", po::value(&dir))("port", po::value(&port))(
      "coordinator-host", po::value(&host))("memory", po::value(&memory));
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = parse_options(kName, args, desc, positional, vm)) return *s;
  auto env = [](const char* name) {
    return std::string(std::getenv(name) ? std::getenv(name) : "");
  };
  auto node = env("SLURMD_NODENAME"), job = env("SLURM_JOB_ID"), secret = env(kSecretVar);
  if (host.empty()) host = env("SLURM_LAUNCH_NODE_IPADDR");
  if (node.empty() || job.empty() || host.empty() || secret.empty() || port == 0)
    return error(kName, "not in the agents' step of dynamos cluster up --slurm", 2);
  ::unsetenv(kSecretVar);
  if (memory.empty() && !env("SLURM_MEM_PER_NODE").empty())
    memory = env("SLURM_MEM_PER_NODE") + "M";
  fs::create_directories(dir);
  auto secret_file = dir + "/secret-" + node;
  {
    mode_t old = ::umask(077);
    std::ofstream(secret_file, std::ios::trunc) << secret << "\n";
    ::umask(old);
  }
  auto lib = fs::path(gang::sibling_program("")).parent_path().parent_path() / "lib";
  std::vector<std::string> argv = {gang::sibling_program("dynamosd"),
                                   "--node",
                                   node,
                                   "--secret",
                                   secret_file,
                                   "--coordinator",
                                   host + ":" + std::to_string(port),
                                   "--cgroup-parent",
                                   gang::slurm::cgroup_parent(read_text("/proc/self/cgroup"), job),
                                   "--cpus",
                                   affinity_cpus(),
                                   "--paging-extension",
                                   (lib / "libdynamos_ext_paging.so").string(),
                                   "--cyclesteal-extension",
                                   (lib / "libdynamos_ext_cyclesteal.so").string(),
                                   "--run-dir",
                                   dir,
                                   "--remove-on-exit"};
  if (!memory.empty()) argv.insert(argv.end(), {"--memory", memory});
  std::fprintf(stderr, "%s: node %s of Slurm job %s, gangd at %s:%u, cgroups under %s\n", kName,
               node.c_str(), job.c_str(), host.c_str(), port, argv[8].c_str());
  std::fflush(stderr);
  // dynamosd's output to its log; Slurm's signals reach it directly (proctrack), ours too.
  auto log = dir + "/agent-" + node + ".log";
  std::error_code ec;
  // A killed agent leaves its rank socket; its successor makes a new one (and the wait
  // for it below must not see the old one).
  fs::remove(gang::rank_socket_path(dir, node), ec);
  auto pid = kernelside::spawn_program(argv, log, true, false);
  if (!pid) {
    std::fprintf(stderr, "%s: %s\n", kName, pid.error().message().c_str());
    fs::remove(secret_file, ec);
    return 1;
  }
  // dynamosd reads the secret before it makes its rank socket: the file can go then (a
  // SIGKILL from Slurm later leaves no secret behind on the node).
  wait_until(10s, *pid, [&] { return fs::exists(gang::rank_socket_path(dir, node)); });
  fs::remove(secret_file, ec);
  int status = wait_child(*pid);
  if (status != 0)
    std::fprintf(stderr, "%s: dynamosd on %s: status %d:\n%s", kName, node.c_str(), status,
                 read_text(log).c_str());
  fs::remove(log, ec);
  fs::remove(dir, ec);  // when empty: a node's own state dir
  return status;
}

// restart-node NODE: a node's agent again (it died or was killed; its step's task ended),
// in a step of its own inside the same allocation; it adopts the node's jobs.
int run_restart_node(std::span<const std::string> args) {
  constexpr const char* kName = "cluster restart-node";
  po::options_description desc(
      "usage: dynamos cluster restart-node NODE [--state-dir DIR]\n\n"
      "Starts NODE's agent again inside the Slurm allocation of a cluster up --slurm\n"
      "(srun --overlap -w NODE); it takes over the node's jobs. Needs root.\n\noptions");
  std::string dir;
  add_state_dir_options(desc, dir);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = parse_options(kName, args, desc, positional, vm)) return *s;
  if (positional.size() != 1) return error(kName, "name one node (try --help)", 2);
  auto conf = read_conf(dir);
  if (conf["slurm_job"].empty())
    return error(kName, "no cluster up --slurm in " + dir + " (no slurm_job in cluster.conf)");
  auto secret = read_text(dir + "/secret");
  while (!secret.empty() && secret.back() == '\n')
    secret.pop_back();
  auto srun = resolve_program("srun", fs::current_path().string());
  if (!srun) return error(kName, srun.error().message());
  std::vector<std::string> argv = {*srun,
                                   "--overlap",
                                   "--jobid=" + conf["slurm_job"],
                                   "-N1",
                                   "-n1",
                                   "--nodelist=" + positional[0],
                                   "--job-name=dynamosd",
                                   gang::sibling_program("dynamos"),
                                   "cluster",
                                   "slurm-node",
                                   "--state-dir",
                                   dir,
                                   "--port",
                                   conf["port"]};
  ::setenv(kSecretVar, secret.c_str(), 1);
  auto pid = kernelside::spawn_program(argv, dir + "/agents.log", false, true);
  ::unsetenv(kSecretVar);
  if (!pid) return error(kName, pid.error().message());
  // cluster down stops it with the others (SIGTERM: srun ends the step, dynamosd cleans up)
  conf["agent_pids"] += (conf["agent_pids"].empty() ? "" : ",") + std::to_string(*pid);
  write_conf(dir, conf);
  auto socket = dir + "/gangd.sock";
  if (!wait_until(30s, *pid, [&] {
        auto list = ask_for<proto::NodeList>(socket, proto::ListNodes{}, 1s);
        if (list)
          for (const auto& n : list->nodes)
            if (n.name == positional[0]) return n.state == "up";
        return false;
      }))
    return error(kName, positional[0] + "'s agent did not connect (" + dir + "/agents.log)");
  std::cout << "node " << positional[0] << ": agent up again (srun pid " << *pid << ")\n";
  return 0;
}

}  // namespace

std::optional<int> run_cluster_slurm(std::span<const std::string> args) {
  if (args.empty()) return std::nullopt;
  if (args[0] == "slurm-watch") return run_watch(args.subspan(1));
  if (args[0] == "slurm-node") return run_node(args.subspan(1));
  if (args[0] == "restart-node") return run_restart_node(args.subspan(1));
  if (args[0] == "up")
    for (const auto& a : args)
      if (a == "--slurm") return run_up_slurm(args.subspan(1));
  return std::nullopt;
}

}  // namespace dynamos::cli
