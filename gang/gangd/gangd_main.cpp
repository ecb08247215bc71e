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

#include "gang/daemon_options.hpp"
#include "gang/gangd/coordinator.hpp"
#include "gang/gangd/launch.hpp"
#include "gang/protocol_io.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::gang;

namespace {

int die(const std::string& message) {
  std::fprintf(stderr, "gangd: %s\n", message.c_str());
  return 1;
}

Result<Nanos> duration_option(const po::variables_map& vm, const char* name) {
  auto d = parse_duration(vm[name].as<std::string>());
  if (!d) return std::unexpected(with_context(d.error(), std::string("--") + name));
  return d;
}

void make_parent(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description opts(
      "usage: gangd --hostfile FILE --secret FILE [options]\n\n"
      "The DynAMOS gang-scheduling coordinator. Node agents (dynamosd) connect over TCP\n"
      "and authenticate with the shared secret; the dynamos CLI talks to the local\n"
      "control socket.\n\noptions");
  // clang-format off
  opts.add_options()
      ("help,h", "print this help and exit")
      ("config", po::value<std::string>(), "read options from this file (key = value lines)")
      ("hostfile", po::value<std::string>(), "nodes in Open MPI syntax: 'host slots=N' lines")
      ("secret", po::value<std::string>(), "shared secret file (mode 0600)")
      ("create-secret", po::bool_switch(), "create the secret file if it does not exist")
      ("listen", po::value<std::string>()->default_value("127.0.0.1:7207"),
       "address:port for node agents")
      ("control-socket", po::value<std::string>()->default_value("/run/dynamos/gangd.sock"),
       "local control socket for the CLI ('' for none)")
      ("journal", po::value<std::string>()->default_value("/var/lib/dynamos/gangd.journal"),
       "state file that survives a restart ('' for none)")
      ("quantum", po::value<std::string>()->default_value("30s"), "time slice, e.g. 30s, 500ms")
      ("heartbeat", po::value<std::string>()->default_value("1s"),
       "heartbeat interval; a node silent for 3 intervals is down")
      ("node-timeout", po::value<std::string>()->default_value("60s"),
       "a node down this long fails its jobs (other jobs go on)")
      ("switch-lead", po::value<std::string>()->default_value("5ms"),
       "first switch round's deadline lead (later rounds adapt)")
      ("time-slots", po::value<int>()->default_value(8), "rows of the Ousterhout matrix")
      ("launch", po::value<std::string>()->default_value("ssh"),
       "how jobs start: ssh (mpirun over the hostfile's real hosts), virtual (every node is "
       "this host: dynamos cluster up), slurm (Open MPI's Slurm launcher inside an allocation: "
       "dynamos cluster up --slurm), none (placed only; ranks are attached by hand)")
      ("run-dir", po::value<std::string>()->default_value("/run/dynamos"),
       "the agents' sockets and the launchers' files (as dynamosd's --run-dir)")
      ("mpirun", po::value<std::string>()->default_value("mpirun"), "the mpirun jobs start with")
      ("mpirun-args", po::value<std::string>()->default_value(kDefaultMpirunArgs),
       "mpirun options for every job, before each job's own (dynamos submit --mpi-args)")
      ("round-log", po::value<std::string>()->default_value(""),
       "append one JSON line per switch round to this file: nodes, running_ms (decision "
       "to every incoming rank thawed), total_ms (decision to the last node's ack), skew_ms, "
       "lead_ms, prepare_ms, max_switch_ms, late, failed");
  // clang-format on

  po::variables_map vm;
  if (auto parsed = parse_daemon_options(argc, argv, opts, vm); !parsed)
    return die(parsed.error().message());
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  if (!vm.count("hostfile")) return die("--hostfile is required (try --help)");
  if (!vm.count("secret")) return die("--secret is required (try --help)");

  CoordinatorConfig cfg;
  auto hosts = read_hostfile(vm["hostfile"].as<std::string>());
  if (!hosts) return die(hosts.error().message());
  cfg.hosts = std::move(*hosts);

  auto secret_path = vm["secret"].as<std::string>();
  auto secret = Secret::load(secret_path);
  if (!secret && secret.error().code == Errc::not_found && vm["create-secret"].as<bool>()) {
    make_parent(secret_path);
    secret = Secret::create(secret_path);
  }
  if (!secret) return die(secret.error().message());
  cfg.secret = std::move(*secret);

  auto listen = parse_endpoint(vm["listen"].as<std::string>(), "--listen", true);
  if (!listen) return die(listen.error().message());
  cfg.listen_address = listen->host;
  cfg.port = listen->port;
  cfg.control_socket = vm["control-socket"].as<std::string>();
  cfg.journal_path = vm["journal"].as<std::string>();
  for (auto [name, field] : {std::pair{"quantum", &cfg.quantum},
                             {"heartbeat", &cfg.heartbeat},
                             {"switch-lead", &cfg.switch_lead},
                             {"node-timeout", &cfg.node_timeout}}) {
    auto d = duration_option(vm, name);
    if (!d) return die(d.error().message());
    *field = *d;
  }
  cfg.max_rows = vm["time-slots"].as<int>();
  if (cfg.max_rows < 1 || cfg.max_rows > 1024) return die("--time-slots must be within 1..1024");
  auto launch_mode = vm["launch"].as<std::string>();
  if (launch_mode != "ssh" && launch_mode != "virtual" && launch_mode != "slurm" &&
      launch_mode != "none")
    return die("--launch must be ssh, virtual, slurm or none, got '" + launch_mode + "'");
  if (launch_mode != "none") {
    if (cfg.control_socket.empty())
      return die("--launch " + launch_mode +
                 " needs the control socket (jobs report their exit there)");
    LaunchConfig lc;
    lc.mode = launch_mode;
    lc.launcher = sibling_program("dynamos-launch");
    lc.run_dir = vm["run-dir"].as<std::string>();
    lc.control_socket = std::filesystem::absolute(cfg.control_socket).string();
    lc.mpirun = vm["mpirun"].as<std::string>();
    lc.mpirun_args = vm["mpirun-args"].as<std::string>();
    if (::access(lc.launcher.c_str(), X_OK) != 0)
      return die("--launch " + launch_mode + ": " + lc.launcher +
                 " is missing (build dynamos-launch)");
    cfg.launch = [lc](const JournalJob& job, const proto::JobSubmit& req) {
      return launch_job(lc, job, req);
    };
  }
  if (auto path = vm["round-log"].as<std::string>(); !path.empty()) {
    auto out = std::make_shared<std::ofstream>(path, std::ios::app);
    if (!*out) return die("--round-log: cannot open " + path);
    cfg.round_log = [out](const RoundStats& r) {
      auto ms = [](Nanos d) { return std::to_string(static_cast<double>(d.count()) / 1e6); };
      *out << "{\"round\":" << r.round << ",\"time_ns\":" << realtime_ns()
           << ",\"nodes\":" << r.nodes << ",\"switched\":" << r.switched
           << ",\"failed\":" << r.failed << ",\"late\":" << r.late
           << ",\"total_ms\":" << ms(r.total) << ",\"prepare_ms\":" << ms(r.prepare_phase)
           << ",\"lead_ms\":" << ms(r.lead) << ",\"running_ms\":" << ms(r.running)
           << ",\"skew_ms\":" << ms(r.skew) << ",\"max_switch_ms\":" << ms(r.max_switch_duration)
           << "}" << std::endl;
    };
  }
  if (!cfg.control_socket.empty()) make_parent(cfg.control_socket);
  if (!cfg.journal_path.empty()) make_parent(cfg.journal_path);

  boost::asio::io_context io{1};  // one thread: Asio may skip its locking
  auto c = Coordinator::create(io, std::move(cfg));
  if (!c) return die(c.error().message());
  auto coordinator = *c;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    std::fprintf(stderr, "gangd: signal %d, shutting down\n", sig);
    coordinator->stop();
  });
  coordinator->start();
  std::fprintf(
      stderr, "gangd: listening on %s port %u, %zu nodes, %zu jobs recovered, quantum %s\n",
      listen->host.c_str(), coordinator->port(), coordinator->matrix().nodes().size(),
      coordinator->list_jobs(0).jobs.size(), format_duration(coordinator->quantum()).c_str());
  io.run();
  return 0;
}
