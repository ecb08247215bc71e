// dynamos cyclesteal on|off --node NAME|--idle [--policy linger|pause|evict]: cycle
// stealing on one node (the node's agent drives the cycle-stealing extension), or on
// every idle node, driven by gangd after each switch round.
#include <boost/program_options.hpp>
#include <iostream>

#include "cli/command.hpp"
#include "gang/client/control.hpp"
#include "gang/node_ops.hpp"

namespace po = boost::program_options;
using namespace dynamos;

namespace {

constexpr const char* kName = "cyclesteal";

int run_cyclesteal(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos cyclesteal on|off --node NAME [--node NAME...] [--policy POLICY]\n"
      "       dynamos cyclesteal on|off --idle [--policy POLICY]\n\n"
      "Cycle stealing: guests (dynamos guest run) use the idle cycles of a node.\n"
      "--node sets the node's policy now. --idle lets gangd drive it: after every switch\n"
      "round, nodes with no running job get POLICY and nodes running a job get 'pause'\n"
      "(guests frozen while the host job is busy); 'off --idle' turns it off where gangd\n"
      "set it. POLICY: linger (guests keep running at idle priority, the default), pause\n"
      "(frozen while the host is busy), evict (killed when the host turns busy).\n"
      "Root only. --json: with --node an array, one {\"node\", \"ok\", \"policy\", \"error\"}\n"
      "a node (failures also on standard error); with --idle {\"idle\": true, \"enabled\",\n"
      "\"policy\", \"message\"}.\n\noptions");
  std::vector<std::string> nodes;
  std::string policy = "linger";
  bool idle = false, json = false;
  desc.add_options()("help,h", "show this help")("node", po::value(&nodes),
                                                 "a node by its hostfile name (repeatable)")(
      "idle", po::bool_switch(&idle), "every node with no running job, driven by gangd")(
      "policy", po::value(&policy), "linger, pause or evict (with 'on'; default linger)");
  cli::add_json_option(desc, json);
  cli::add_socket_option(desc);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto status = cli::parse_options(kName, args, desc, positional, vm)) return *status;
  if (positional.size() != 1 || (positional[0] != "on" && positional[0] != "off"))
    return cli::error(kName, "say 'on' or 'off' (try --help)", 2);
  bool on = positional[0] == "on";
  if (idle == !nodes.empty())
    return cli::error(kName, "give either --node NAME or --idle (try --help)", 2);
  if (!on && vm.count("policy")) return cli::error(kName, "--policy goes with 'on' only", 2);
  if (!cyclesteal::is_guest_policy(policy))
    return cli::error(kName, "unknown policy '" + policy + "' (linger, pause or evict)", 2);
  std::string socket = cli::socket_path(vm);

  if (idle) {
    auto r = cli::ask(socket, gang::proto::SetCycleSteal{on, policy});
    if (!r) return cli::error(kName, r.error().message());
    auto* ok = std::get_if<gang::proto::Ok>(&*r);
    if (json)
      cli::print_json({{"idle", true},
                       {"enabled", on},
                       {"policy", on ? policy : std::string("off")},
                       {"message", ok ? ok->message : std::string()}});
    else if (ok)
      std::cout << ok->message << "\n";
    return 0;
  }
  std::vector<std::string> op_args =
      on ? std::vector<std::string>{"on", policy} : std::vector<std::string>{"off"};
  auto r = cli::node_command(socket, nodes, std::string(gang::ops::cyclesteal), op_args);
  if (!r) return cli::error(kName, r.error().message());
  std::string failed;
  auto results = nlohmann::ordered_json::array();
  for (const auto& res : r->results) {
    results.push_back(
        {{"node", res.node},
         {"ok", res.ok},
         {"policy", on ? policy : std::string("off")},
         {"error", res.ok ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(res.output)}});
    if (res.ok) {
      if (!json) std::cout << res.node << ": " << (on ? policy : std::string("off")) << "\n";
    } else {
      std::cerr << "dynamos cyclesteal: " << res.node << ": " << res.output << "\n";
      failed += (failed.empty() ? "" : ", ") + res.node;
    }
  }
  if (json) cli::print_json(results);
  // One node asked: its error line says it all; more: name the ones that failed.
  if (!failed.empty() && r->results.size() == 1) return 1;
  if (!failed.empty()) return cli::error(kName, "failed on " + failed);
  return 0;
}

}  // namespace

DYNAMOS_COMMAND(cyclesteal, "cyclesteal",
                "cycle stealing on a node or on every idle node (on|off --node NAME|--idle)",
                run_cyclesteal);
