// gangd: the gang-scheduling coordinator. Reads the nodes from a hostfile, accepts node
// agents over TCP (shared-secret authentication), serves the CLI on a local control
// socket, and alternates jobs every quantum with synchronised switch rounds.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/log.hpp"
#include "gang/daemon_options.hpp"
#include "gang/gangd/coordinator.hpp"
#include "gang/gangd/launch.hpp"
#include "gang/gangd/metrics.hpp"
#include "gang/metrics_server.hpp"
#include "gang/protocol_io.hpp"
#include "kernelside/limits.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::gang;

namespace {

void make_parent(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
}

po::options_description options() {
  po::options_description opts(
      "usage: gangd --hostfile FILE --secret FILE [options]\n\n"
      "The DynAMOS gang-scheduling coordinator. Node agents (dynamosd) connect over TCP\n"
      "and authenticate with the shared secret; the dynamos CLI talks to the local\n"
      "control socket.\n\noptions");
  // A text option with its default.
  auto text = [](const char* def) { return po::value<std::string>()->default_value(def); };
  // clang-format off
  opts.add_options()
      ("help,h", "print this help and exit")
      ("config", po::value<std::string>(), "read options from this file (key = value lines)")
      ("hostfile", po::value<std::string>(), "nodes in Open MPI syntax: 'host slots=N' lines")
      ("secret", po::value<std::string>(), "shared secret file (mode 0600)")
      ("create-secret", po::bool_switch(), "create the secret file if it does not exist")
      ("listen", text("127.0.0.1:7207"), "address:port for node agents")
      ("control-socket", text("/run/dynamos/gangd.sock"),
       "local control socket for the CLI ('' for none)")
      ("journal", text("/var/lib/dynamos/gangd.journal"),
       "state file that survives a restart ('' for none)")
      ("quantum", text("30s"), "time slice, e.g. 30s, 500ms")
      ("heartbeat", text("1s"), "heartbeat interval; a node silent for 3 intervals is down")
      ("node-timeout", text("60s"), "a node down this long fails its jobs (other jobs go on)")
      ("switch-lead", text("5ms"), "first switch round's deadline lead (later rounds adapt)")
      ("time-slots", po::value<int>()->default_value(8), "rows of the Ousterhout matrix")
      ("overcommit", po::value<double>()->default_value(1.5),
       "a node's committed memory stays within this factor of its memory, for jobs whose "
       "paging policy pages out at switches (selective, aggressive, adaptive)")
      ("overcommit-demand", po::value<double>()->default_value(1.0),
       "the same factor for jobs under demand paging")
      ("mem-per-rank", text(""),
       "memory a rank commits when its job asks none (dynamos submit --mem-per-rank), "
       "e.g. 1G ('' for none)")
      ("history-limit", po::value<std::size_t>()->default_value(10'000),
       "ended jobs kept in the history journal (<journal>.sched)")
      ("launch", text("ssh"),
       "how jobs start: ssh (mpirun over the hostfile's real hosts), virtual (every node is "
       "this host: dynamos cluster up), slurm (Open MPI's Slurm launcher inside an allocation: "
       "dynamos cluster up --slurm), none (placed only; ranks are attached by hand)")
      ("run-dir", text("/run/dynamos"),
       "the agents' sockets and the launchers' files (as dynamosd's --run-dir)")
      ("mpirun", text("mpirun"), "the mpirun jobs start with")
      ("mpirun-args", text(kDefaultMpirunArgs),
       "mpirun options for every job, before each job's own (dynamos submit --mpi-args)")
      ("round-log", text(""),
       "append one JSON line per switch round to this file: nodes, running_ms (decision "
       "to every incoming rank thawed), total_ms (decision to the last node's ack), skew_ms, "
       "lead_ms, send_ms, max_switch_ms, late, failed")
      ("metrics-listen", text(""),
       "address:port to serve Prometheus metrics on (/metrics); port 0 picks a free one "
       "('' for none)")
      ("log-level", text("info"), "error, warning, notice, info or debug");
  // clang-format on
  return opts;
}

// The secret from --secret, created first with --create-secret.
Result<Secret> load_secret(const po::variables_map& vm) {
  auto path = vm["secret"].as<std::string>();
  auto secret = Secret::load(path);
  if (!secret && secret.error().code == Errc::not_found && vm["create-secret"].as<bool>()) {
    make_parent(path);
    secret = Secret::create(path);
  }
  return secret;
}

// --launch: how a placed job's ranks start (none: they are attached by hand).
Result<void> configure_launch(const po::variables_map& vm, CoordinatorConfig& cfg) {
  auto mode = vm["launch"].as<std::string>();
  if (mode != "ssh" && mode != "virtual" && mode != "slurm" && mode != "none")
    return fail(Errc::invalid_argument,
                "--launch must be ssh, virtual, slurm or none, got '" + mode + "'");
  if (mode == "none") return {};
  if (cfg.control_socket.empty())
    return fail(Errc::invalid_argument,
                "--launch " + mode + " needs the control socket (jobs report their exit there)");
  LaunchConfig lc;
  lc.mode = mode;
  lc.launcher = sibling_program("dynamos-launch");
  lc.run_dir = vm["run-dir"].as<std::string>();
  lc.control_socket = std::filesystem::absolute(cfg.control_socket).string();
  lc.mpirun = vm["mpirun"].as<std::string>();
  lc.mpirun_args = vm["mpirun-args"].as<std::string>();
  if (::access(lc.launcher.c_str(), X_OK) != 0)
    return fail(Errc::not_found,
                "--launch " + mode + ": " + lc.launcher + " is missing (build dynamos-launch)");
  cfg.launch = [lc](const JournalJob& job, const proto::JobSubmit& req) {
    return launch_job(lc, job, req);
  };
  return {};
}

// --round-log: one JSON line per switch round, appended to the file.
Result<void> configure_round_log(const std::string& path, CoordinatorConfig& cfg) {
  if (path.empty()) return {};
  auto out = std::make_shared<std::ofstream>(path, std::ios::app);
  if (!*out) return fail(Errc::not_found, "--round-log: cannot open " + path);
  cfg.round_log = [out](const RoundStats& r) {
    auto ms = [](Nanos d) { return static_cast<double>(d.count()) / 1e6; };
    nlohmann::ordered_json line = {
        {"round", r.round},        {"time_ns", realtime_ns()},
        {"nodes", r.nodes},        {"switched", r.switched},
        {"failed", r.failed},      {"late", r.late},
        {"total_ms", ms(r.total)}, {"send_ms", ms(r.send)},
        {"lead_ms", ms(r.lead)},   {"running_ms", ms(r.running)},
        {"skew_ms", ms(r.skew)},   {"max_switch_ms", ms(r.max_switch_duration)}};
    *out << line.dump() << std::endl;
  };
  return {};
}

// The scheduler's options: overcommit factors, the default memory a rank, the history.
Result<void> configure_scheduler(const po::variables_map& vm, CoordinatorConfig& cfg) {
  for (auto [name, field] :
       {std::pair{"overcommit", &cfg.overcommit}, {"overcommit-demand", &cfg.overcommit_demand}}) {
    *field = vm[name].as<double>();
    if (!(*field >= 0.1 && *field <= 100))
      return fail(Errc::invalid_argument, std::string("--") + name + " must be within 0.1..100");
  }
  if (auto text = vm["mem-per-rank"].as<std::string>(); !text.empty()) {
    auto bytes = parse_size(text);
    if (!bytes) return fail(Errc::invalid_argument, "--mem-per-rank: " + bytes.error().message());
    cfg.default_mem_per_rank = *bytes;
  }
  cfg.history_limit = vm["history-limit"].as<std::size_t>();
  if (cfg.history_limit < 1 || cfg.history_limit > 10'000'000)
    return fail(Errc::invalid_argument, "--history-limit must be within 1..10000000");
  return {};
}

// The coordinator's configuration from the options.
Result<CoordinatorConfig> configure(const po::variables_map& vm) {
  if (!vm.count("hostfile"))
    return fail(Errc::invalid_argument, "--hostfile is required (try --help)");
  if (!vm.count("secret")) return fail(Errc::invalid_argument, "--secret is required (try --help)");
  CoordinatorConfig cfg;
  auto hosts = read_hostfile(vm["hostfile"].as<std::string>());
  if (!hosts) return std::unexpected(hosts.error());
  cfg.hosts = std::move(*hosts);
  cfg.hostfile_path = std::filesystem::absolute(vm["hostfile"].as<std::string>()).string();
  auto secret = load_secret(vm);
  if (!secret) return std::unexpected(secret.error());
  cfg.secret = std::move(*secret);
  auto listen = parse_endpoint(vm["listen"].as<std::string>(), "--listen", true);
  if (!listen) return std::unexpected(listen.error());
  cfg.listen_address = listen->host;
  cfg.port = listen->port;
  cfg.control_socket = vm["control-socket"].as<std::string>();
  cfg.journal_path = vm["journal"].as<std::string>();
  for (auto [name, field] : {std::pair{"quantum", &cfg.quantum},
                             {"heartbeat", &cfg.heartbeat},
                             {"switch-lead", &cfg.switch_lead},
                             {"node-timeout", &cfg.node_timeout}}) {
    auto d = duration_option(vm, name);
    if (!d) return std::unexpected(d.error());
    *field = *d;
  }
  cfg.max_rows = vm["time-slots"].as<int>();
  if (cfg.max_rows < 1 || cfg.max_rows > 1024)
    return fail(Errc::invalid_argument, "--time-slots must be within 1..1024");
  if (auto ok = configure_scheduler(vm, cfg); !ok) return std::unexpected(ok.error());
  if (auto ok = configure_launch(vm, cfg); !ok) return std::unexpected(ok.error());
  if (auto ok = configure_round_log(vm["round-log"].as<std::string>(), cfg); !ok)
    return std::unexpected(ok.error());
  if (!cfg.control_socket.empty()) make_parent(cfg.control_socket);
  if (!cfg.journal_path.empty()) make_parent(cfg.journal_path);
  return cfg;
}

// Metrics: every round observed as it ends; jobs and nodes read at each scrape.
Result<std::unique_ptr<MetricsServer>> serve_metrics(boost::asio::io_context& io,
                                                     const std::string& listen,
                                                     std::shared_ptr<metrics::Registry> registry,
                                                     std::shared_ptr<Coordinator> coordinator) {
  registry->add_collector(
      [coordinator](metrics::Registry& r) { collect_coordinator(r, *coordinator); });
  auto server = MetricsServer::start(io, {listen, [registry] { return registry->render(); }});
  if (server) log::notice("metrics on " + (*server)->url());
  return server;
}

// One descriptor an agent connection (two while an agent reconnects), the control
// callers, journals and logs: the soft limit goes up to the hard one, as daemons do at
// start (a soft limit of 1,024 would stop gangd at about 1,000 nodes), with a log line
// when it changed and a warning when the hostfile needs more than the hard limit.
void raise_descriptor_limit(const CoordinatorConfig& cfg) {
  std::uint64_t need = cfg.hosts.size() + cfg.max_control_connections + 64;
  auto lim = kernelside::raise_open_files();
  if (!lim) {
    log::warning("open files: " + lim.error().message());
    return;
  }
  if (lim->raised())
    log::notice("open files: soft limit raised from " + std::to_string(lim->soft_before) +
                " to the hard limit " + std::to_string(lim->soft));
  if (lim->soft < need)
    log::warning("open files: the hostfile's " + std::to_string(cfg.hosts.size()) +
                 " nodes need about " + std::to_string(need) + " descriptors, the limit is " +
                 std::to_string(lim->soft) +
                 ": agents beyond it are refused (raise the hard limit, e.g. LimitNOFILE=)");
}

// Runs the coordinator until SIGINT or SIGTERM.
int run(CoordinatorConfig cfg, const std::string& metrics_listen) {
  boost::asio::io_context io{1};  // one thread: Asio may skip its locking
  std::string host = cfg.listen_address;
  auto registry = std::make_shared<metrics::Registry>();
  if (!metrics_listen.empty())
    cfg.round_log = [log = std::move(cfg.round_log), registry](const RoundStats& r) {
      if (log) log(r);
      record_round(*registry, r);
    };
  auto c = Coordinator::create(io, std::move(cfg));
  if (!c) return daemon_error("gangd", c.error().message());
  auto coordinator = *c;
  std::unique_ptr<MetricsServer> metrics_server;
  if (!metrics_listen.empty()) {
    auto server = serve_metrics(io, metrics_listen, registry, coordinator);
    if (!server) return daemon_error("gangd", server.error().message());
    metrics_server = std::move(*server);
  }
  boost::asio::signal_set hangup(io, SIGHUP);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    log::notice("signal " + std::to_string(sig) + ", shutting down");
    hangup.cancel();
    coordinator->stop();
    if (metrics_server) metrics_server->stop();  // else its accept keeps io.run() going
  });
  // SIGHUP: reread the hostfile (dynamos reconfigure asks the same over the socket).
  std::function<void()> on_hangup = [&] {
    hangup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      auto what = coordinator->reconfigure(0);
      log::notice(what ? *what : "SIGHUP: " + what.error().message());
      on_hangup();
    });
  };
  on_hangup();
  coordinator->start();
  log::notice("listening on " + host + " port " + std::to_string(coordinator->port()) + ", " +
              std::to_string(coordinator->matrix().nodes().size()) + " nodes, " +
              std::to_string(coordinator->list_jobs(0).jobs.size()) + " jobs recovered, quantum " +
              format_duration(coordinator->quantum()));
  io.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  po::variables_map vm;
  if (auto done = parse_daemon_command_line("gangd", argc, argv, options(), vm)) return *done;
  if (auto r = set_daemon_log("gangd", vm); !r) return daemon_error("gangd", r.error().message());
  auto cfg = configure(vm);
  if (!cfg) return daemon_error("gangd", cfg.error().message());
  if (!cfg->log) cfg->log = log::sink();
  raise_descriptor_limit(*cfg);
  return run(std::move(*cfg), vm["metrics-listen"].as<std::string>());
}
