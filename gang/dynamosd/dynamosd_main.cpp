// dynamosd: the node agent. Owns this node's cgroups, connects to gangd, carries out its
// switch rounds (freeze, paging extension, thaw) and thaws every job when gangd is lost.
// Jobs and their cgroups survive a restart of dynamosd: the next one adopts them.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "base/units.hpp"
#include "core/extension_host.hpp"
#include "core/tunables.hpp"
#include "gang/daemon_options.hpp"
#include "gang/dynamosd/agent_ops.hpp"
#include "gang/dynamosd/follow_slurm.hpp"
#include "gang/dynamosd/metrics.hpp"
#include "gang/dynamosd/node_agent.hpp"
#include "gang/dynamosd/rank_socket.hpp"
#include "gang/metrics_server.hpp"
#include "kernelside/sched.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::gang;

namespace {

int die(const std::string& message) {
  std::fprintf(stderr, "dynamosd: %s\n", message.c_str());
  return 1;
}

// The agent's log lines: levels and times from base/log (--log-level).
void say(const std::string& line) {
  log::info(line);
}

// The extension host's lines (DYNAMOS_LOG_*) at base/log's levels.
void extension_log(int level, std::string_view extension, std::string_view message) {
  constexpr log::Level kLevels[] = {log::Level::error, log::Level::warning, log::Level::info,
                                    log::Level::debug};
  const auto l = kLevels[std::clamp(level, DYNAMOS_LOG_ERROR, DYNAMOS_LOG_DEBUG)];
  if (!log::enabled(l)) return;
  log::write(l, extension.empty()
                    ? "extension host: " + std::string(message)
                    : "extension " + std::string(extension) + ": " + std::string(message));
}

po::options_description options() {
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
       "by default they stay for the next dynamosd to adopt")
      ("metrics-listen", po::value<std::string>()->default_value(""),
       "address:port to serve Prometheus metrics on (/metrics); port 0 picks a free one "
       "('' for none)")
      ("log-level", po::value<std::string>()->default_value("info"),
       "error, warning, notice, info or debug");
  // clang-format on
  follow::add_options(opts);
  return opts;
}

// The connection to gangd: node name, coordinator address, shared secret.
Result<AgentConfig> session_config(const po::variables_map& vm) {
  AgentConfig session;
  session.node = vm["node"].as<std::string>();
  session.log = log::sink();
  auto endpoint = parse_endpoint(vm["coordinator"].as<std::string>(), "--coordinator", false);
  if (!endpoint) return std::unexpected(endpoint.error());
  session.coordinator_host = endpoint->host;
  session.coordinator_port = endpoint->port;
  auto secret = Secret::load(vm["secret"].as<std::string>());
  if (!secret) return std::unexpected(secret.error());
  session.secret = std::move(*secret);
  return session;
}

// The node's group: where it goes, its CPUs and memory limit.
Result<NodeAgentConfig> node_config(const po::variables_map& vm) {
  NodeAgentConfig node;
  node.node = vm["node"].as<std::string>();
  node.log = log::sink();
  node.cgroup_parent = vm["cgroup-parent"].as<std::string>();
  node.cpus = vm["cpus"].as<std::string>();
  if (auto mem = vm["memory"].as<std::string>(); !mem.empty()) {
    auto bytes = parse_size_bytes(mem);
    if (!bytes) return fail(Errc::invalid_argument, "--memory: " + bytes.error().message());
    if (*bytes <= 0)
      return fail(Errc::invalid_argument, "--memory: must be positive, got '" + mem + "'");
    node.memory_max = static_cast<std::uint64_t>(*bytes);
  }
  return node;
}

// The extension host and the extensions named on the command line, by their names.
struct Extensions {
  std::unique_ptr<core::ExtensionHost> host;
  std::string paging, cyclesteal;  // "" when not loaded
};

Result<Extensions> load_extensions(const po::variables_map& vm) {
  core::HostOptions host_options;
  host_options.config_path = vm["extension-config"].as<std::string>();
  host_options.log = extension_log;
  auto host = core::ExtensionHost::create(std::move(host_options));
  if (!host) return std::unexpected(host.error());
  Extensions ext{std::move(*host), {}, {}};
  for (auto which : {"paging-extension", "cyclesteal-extension"}) {
    auto path = vm[which].as<std::string>();
    if (path.empty()) continue;
    auto info = ext.host->load(path);
    if (!info) return std::unexpected(with_context(info.error(), std::string("--") + which));
    say("loaded extension " + info->name + " " + info->version + " from " + path);
    (std::string(which) == "paging-extension" ? ext.paging : ext.cyclesteal) = info->name;
  }
  return ext;
}

// The agent sleeps between rounds; at a deadline it must run at once, even on a node
// whose ranks keep every CPU busy. Without the privilege it runs, slower, and says so.
Result<void> raise_priority(int rt) {
  if (rt < 0 || rt > 99) return fail(Errc::invalid_argument, "--rt-priority must be within 0..99");
  if (rt == 0) return {};
  sched_param sp{};
  sp.sched_priority = rt;
  if (int e = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); e != 0)
    log::warning("SCHED_FIFO priority " + std::to_string(rt) + ": " + std::strerror(e) +
                 " (switches may be late)");
  return {};
}

// Paging ticks on a thread of their own: background write-out may take a while and must
// not hold up the io thread or a switch. The thread would inherit the agent's SCHED_FIFO
// (raise_priority runs first), and real-time write-out would take the CPU from the very
// ranks it pages for, so it drops back to the normal class before its first tick.
std::jthread start_paging_ticker(NodeAgent& agent, std::chrono::nanoseconds period) {
  return std::jthread([&agent, period](std::stop_token stop) {
    (void)pthread_setname_np(pthread_self(), "dynamos-pager");
    if (auto r = kernelside::set_thread_policy(static_cast<pid_t>(::gettid()),
                                               kernelside::Policy::other);
        !r)
      say("warning: background paging thread keeps the real-time class: " + r.error().message());
    std::mutex m;
    std::condition_variable_any cv;
    std::string last_error;
    while (!stop.stop_requested()) {
      std::unique_lock l(m);
      cv.wait_for(l, stop, period, [] { return false; });  // wakes early on stop
      if (stop.stop_requested()) break;
      if (auto r = agent.tick(); !r && r.error().message() != last_error) {
        last_error = r.error().message();  // once per distinct error, not every tick
        log::warning(last_error);
      }
    }
  });
}

// Serves gangd and the ranks until SIGTERM/SIGINT; then never leaves a job frozen.
// What the metrics read besides the agent.
struct MetricSources {
  core::ExtensionHost* host;
  std::string cyclesteal;  // the cycle-stealing extension's name, "" when not loaded
  const LiveUpdateCounts* updates;
};

int serve(const po::variables_map& vm, AgentConfig session, NodeAgent& agent,
          const MetricSources& sources, std::chrono::nanoseconds tick, bool has_paging) {
  boost::asio::io_context io{1};
  metrics::Registry registry;
  NodeMetrics node_metrics(agent, sources.host, vm["node"].as<std::string>(), sources.cyclesteal,
                           sources.updates);
  registry.add_collector([&](metrics::Registry& r) { node_metrics.collect(r); });
  std::unique_ptr<MetricsServer> metrics_server;
  if (auto listen = vm["metrics-listen"].as<std::string>(); !listen.empty()) {
    auto server = MetricsServer::start(io, {listen, [&] { return registry.render(); }});
    if (!server) return die(server.error().message());
    metrics_server = std::move(*server);
    log::notice("metrics on " + metrics_server->url());
  }
  auto run_dir = vm["run-dir"].as<std::string>();
  if (::mkdir(run_dir.c_str(), 0755) != 0 && errno != EEXIST)
    return die("--run-dir: cannot create " + run_dir + ": " + std::strerror(errno));
  auto ranks =
      RankSocket::create(io.get_executor(), rank_socket_path(run_dir, session.node), agent);
  if (!ranks) return die(ranks.error().message());
  (*ranks)->start();
  auto s = AgentSession::create(io.get_executor(), std::move(session), agent);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    say("signal " + std::to_string(sig) + ", shutting down");
    (*ranks)->stop();
    s->stop();
    if (metrics_server) metrics_server->stop();  // else its accept keeps io.run() going
  });
  s->start();
  say("node " + vm["node"].as<std::string>() + " (" + agent.node_path() + "), " +
      std::to_string(agent.jobs().size()) + " jobs adopted, coordinator " +
      vm["coordinator"].as<std::string>());
  std::jthread ticker;
  if (tick.count() > 0 && has_paging) ticker = start_paging_ticker(agent, tick);
  io.run();
  if (ticker.joinable()) {
    ticker.request_stop();
    ticker.join();
  }
  if (auto r = agent.thaw_all(); !r) log::error(r.error().message());
  if (vm["remove-on-exit"].as<bool>())
    if (auto r = agent.remove_all(); !r) return die(r.error().message());
  return 0;
}

// dynamosd --follow slurm (follow_slurm.hpp): no gangd, Slurm switches, dynamosd pages.
int run_follow(const po::variables_map& vm) {
  if (auto r = set_daemon_log("dynamosd", vm); !r) return die(r.error().message());
  auto ext = load_extensions(vm);
  if (!ext) return die(ext.error().message());
  return follow::run(vm, ext->host.get(), ext->paging);
}

}  // namespace

int main(int argc, char** argv) {
  po::variables_map vm;
  if (auto done = parse_daemon_command_line("dynamosd", argc, argv, options(), vm)) return *done;
  if (vm.count("follow")) return run_follow(vm);
  if (!vm.count("node")) return die("--node is required (try --help)");
  if (auto r = set_daemon_log("dynamosd", vm); !r) return die(r.error().message());
  if (!vm.count("secret")) return die("--secret is required (try --help)");
  auto session = session_config(vm);
  if (!session) return die(session.error().message());
  auto node = node_config(vm);
  if (!node) return die(node.error().message());
  auto ext = load_extensions(vm);
  if (!ext) return die(ext.error().message());
  node->extensions = ext->host.get();
  node->paging_extension = ext->paging;
  auto tick = parse_duration(vm["tick"].as<std::string>());
  if (!tick) return die("--tick: " + tick.error().message());
  if (auto rt = raise_priority(vm["rt-priority"].as<int>()); !rt) return die(rt.error().message());

  auto agent = NodeAgent::create(std::move(*node));
  if (!agent) return die(agent.error().message());
  // The node operations gangd forwards (gang/node_ops.hpp), one group a file.
  LiveUpdateCounts updates;
  AgentOpsContext ops{**agent,         ext->host.get(), ext->paging,
                      ext->cyclesteal, log::sink(),     &updates};
  add_patch_ops(ops);
  add_cyclesteal_ops(ops);
  add_extension_ops(ops);
  return serve(vm, std::move(*session), **agent, {ext->host.get(), ext->cyclesteal, &updates},
               *tick, !ext->paging.empty());
}
