// dynamosd: the node agent. Owns this node's cgroups, connects to gangd, carries out its
// switch rounds (freeze, paging extension, thaw) and thaws every job when gangd is lost.
// Jobs and their cgroups survive a restart of dynamosd: the next one adopts them.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>

#include <boost/program_options.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "base/units.hpp"
#include "core/extension_host.hpp"
#include "core/tunables.hpp"
#include "gang/daemon_options.hpp"
#include "gang/dynamosd/agent_ops.hpp"
#include "gang/dynamosd/node_agent.hpp"
#include "gang/dynamosd/rank_socket.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::gang;

namespace {

int die(const std::string& message) {
  std::fprintf(stderr, "dynamosd: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description opts(
      "usage: dynamosd --node NAME --secret FILE [options]\n\n"
      "The DynAMOS node agent: owns the node's cgroups (<cgroup-parent>/<node>/job<ID>),\n"
      "connects to gangd and carries out its switch rounds.\n\noptions");
  // clang-format off
  opts.add_options()
      ("help,h", "print this help and exit")
      ("config", po::value<std::string>(), "read options from this file (key = value lines)")
      ("node", po::value<std::string>(), "this node's name, as in gangd's hostfile")
      ("coordinator", po::value<std::string>()->default_value("127.0.0.1:7207"),
       "gangd's address:port")
      ("secret", po::value<std::string>(), "shared secret file (mode 0600), as gangd's")
      ("cgroup-parent", po::value<std::string>()->default_value("dynamos"),
       "the node's group is <cgroup-parent>/<node>")
      ("cpus", po::value<std::string>()->default_value(""),
       "the node's CPUs, e.g. 0-1 ('' inherits)")
      ("memory", po::value<std::string>()->default_value(""),
       "the node's memory limit, e.g. 2G ('' for none)")
      ("paging-extension", po::value<std::string>()->default_value(""),
       "path of the paging extension (libdynamos_ext_paging.so), '' for none")
      ("cyclesteal-extension", po::value<std::string>()->default_value(""),
       "path of the cycle-stealing extension (libdynamos_ext_cyclesteal.so), '' for none")
      ("extension-config", po::value<std::string>()->default_value(""),
       "extension tunables file (ext.key = value lines)")
      ("tick", po::value<std::string>()->default_value("100ms"),
       "interval of the paging extension's tick on the running jobs (0 disables it)")
      ("rt-priority", po::value<int>()->default_value(10),
       "SCHED_FIFO priority of the agent (1..99; 0 keeps the normal policy): switches "
       "must not wait behind the ranks for a CPU")
      ("run-dir", po::value<std::string>()->default_value("/run/dynamos"),
       "where the agent's local socket for ranks goes (<run-dir>/agent-<node>.sock)")
      ("remove-on-exit", po::bool_switch(),
       "remove the node's cgroups (killing their processes) on SIGTERM/SIGINT; "
       "by default they stay for the next dynamosd to adopt");
  // clang-format on

  po::variables_map vm;
  if (auto parsed = parse_daemon_options(argc, argv, opts, vm); !parsed)
    return die(parsed.error().message());
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  if (!vm.count("node")) return die("--node is required (try --help)");
  if (!vm.count("secret")) return die("--secret is required (try --help)");

  AgentConfig session;
  session.node = vm["node"].as<std::string>();
  auto coordinator = vm["coordinator"].as<std::string>();
  auto endpoint = parse_endpoint(coordinator, "--coordinator", false);
  if (!endpoint) return die(endpoint.error().message());
  session.coordinator_host = endpoint->host;
  session.coordinator_port = endpoint->port;
  auto secret = Secret::load(vm["secret"].as<std::string>());
  if (!secret) return die(secret.error().message());
  session.secret = std::move(*secret);

  NodeAgentConfig node;
  node.node = session.node;
  node.cgroup_parent = vm["cgroup-parent"].as<std::string>();
  node.cpus = vm["cpus"].as<std::string>();
  if (auto mem = vm["memory"].as<std::string>(); !mem.empty()) {
    auto bytes = parse_size_bytes(mem);
    if (!bytes) return die("--memory: " + bytes.error().message());
    if (*bytes <= 0) return die("--memory: must be positive, got '" + mem + "'");
    node.memory_max = static_cast<std::uint64_t>(*bytes);
  }

  core::HostOptions host_options;
  host_options.config_path = vm["extension-config"].as<std::string>();
  auto host = core::ExtensionHost::create(std::move(host_options));
  if (!host) return die(host.error().message());
  node.extensions = host->get();
  node.paging_extension.clear();
  std::string cyclesteal_name;
  for (auto which : {"paging-extension", "cyclesteal-extension"}) {
    auto path = vm[which].as<std::string>();
    if (path.empty()) continue;
    auto info = (*host)->load(path);
    if (!info) return die(std::string("--") + which + ": " + info.error().message());
    std::fprintf(stderr, "dynamosd: loaded extension %s %s from %s\n", info->name.c_str(),
                 info->version.c_str(), path.c_str());
    if (std::string(which) == "paging-extension") node.paging_extension = info->name;
    if (std::string(which) == "cyclesteal-extension") cyclesteal_name = info->name;
  }

  auto tick = parse_duration(vm["tick"].as<std::string>());
  if (!tick) return die("--tick: " + tick.error().message());
  int rt = vm["rt-priority"].as<int>();
  if (rt < 0 || rt > 99) return die("--rt-priority must be within 0..99");
  if (rt > 0) {
    // The agent sleeps between rounds; at a deadline it must run at once, even on a node
    // whose ranks keep every CPU busy. Without the privilege it runs, slower, and says so.
    sched_param sp{};
    sp.sched_priority = rt;
    if (int e = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); e != 0)
      std::fprintf(stderr, "dynamosd: warning: SCHED_FIFO priority %d: %s (switches may be late)\n",
                   rt, std::strerror(e));
  }

  bool node_has_paging = !node.paging_extension.empty();
  const std::string paging_name = node.paging_extension;
  auto agent = NodeAgent::create(std::move(node));
  if (!agent) return die(agent.error().message());
  // The node operations gangd forwards (gang/node_ops.hpp), one group a file.
  AgentOpsContext ops{
      **agent, host->get(), paging_name, cyclesteal_name,
      [](const std::string& line) { std::fprintf(stderr, "dynamosd: %s\n", line.c_str()); }};
  add_patch_ops(ops);
  add_cyclesteal_ops(ops);
  add_extension_ops(ops);

  boost::asio::io_context io{1};
  auto run_dir = vm["run-dir"].as<std::string>();
  if (::mkdir(run_dir.c_str(), 0755) != 0 && errno != EEXIST)
    return die("--run-dir: cannot create " + run_dir + ": " + std::strerror(errno));
  auto ranks =
      RankSocket::create(io.get_executor(), rank_socket_path(run_dir, session.node), **agent);
  if (!ranks) return die(ranks.error().message());
  (*ranks)->start();
  auto s = AgentSession::create(io.get_executor(), std::move(session), **agent);
  bool remove_on_exit = vm["remove-on-exit"].as<bool>();
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    std::fprintf(stderr, "dynamosd: signal %d, shutting down\n", sig);
    (*ranks)->stop();
    s->stop();
  });
  s->start();
  std::fprintf(stderr, "dynamosd: node %s (%s), %zu jobs adopted, coordinator %s\n",
               vm["node"].as<std::string>().c_str(), (*agent)->node_path().c_str(),
               (*agent)->jobs().size(), coordinator.c_str());
  // Paging ticks on a thread of their own (normal priority): background write-out may
  // take a while and must not hold up the io thread or a switch.
  std::jthread ticker;
  if (tick->count() > 0 && node_has_paging)
    ticker = std::jthread([&, period = *tick](std::stop_token stop) {
      std::mutex m;
      std::condition_variable_any cv;
      std::string last_error;
      while (!stop.stop_requested()) {
        std::unique_lock l(m);
        cv.wait_for(l, stop, period, [] { return false; });  // wakes early on stop
        if (stop.stop_requested()) break;
        if (auto r = (*agent)->tick(); !r && r.error().message() != last_error) {
          last_error = r.error().message();  // once per distinct error, not every tick
          std::fprintf(stderr, "dynamosd: %s\n", last_error.c_str());
        }
      }
    });
  io.run();
  if (ticker.joinable()) {
    ticker.request_stop();
    ticker.join();
  }
  // Leaving: never leave a job frozen behind us.
  if (auto r = (*agent)->thaw_all(); !r)
    std::fprintf(stderr, "dynamosd: %s\n", r.error().message().c_str());
  if (remove_on_exit)
    if (auto r = (*agent)->remove_all(); !r) return die(r.error().message());
  return 0;
}
