// dynamos ext list|set|upgrade: the extensions loaded in the node agents (paging,
// cycle stealing), their tunables, and upgrades in place, on one node or on all.
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>

#include "cli/command.hpp"
#include "gang/client/control.hpp"
#include "gang/node_ops.hpp"

namespace po = boost::program_options;
using namespace dynamos;

namespace {

constexpr const char* kName = "ext";

int run_ext(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos ext list [--node NAME] [--json]\n"
      "       dynamos ext set EXT.KEY=VALUE [--node NAME] [--json]\n"
      "       dynamos ext upgrade EXT PATH.so [--node NAME] [--json]\n\n"
      "The extensions loaded in the node agents. list: each extension's version, path\n"
      "and tunables (value, type, default, source, range, help). set: a runtime tunable\n"
      "(root). upgrade: loads a new build of EXT into the running agents in place; its\n"
      "state is handed over and jobs and guests go on undisturbed (root; PATH must exist\n"
      "on every node). Without --node: every node that is up. Exits non-zero, naming\n"
      "them, when some nodes failed. --json: list prints one JSON object a line, a node\n"
      "and extension; set and upgrade an array, one {\"node\", \"ok\", \"result\",\n"
      "\"error\"} a node (failures also on standard error).\n\noptions");
  std::vector<std::string> nodes;
  bool json = false;
  desc.add_options()("help,h", "show this help")("node", po::value(&nodes),
                                                 "a node by its hostfile name (repeatable)")(
      "json", po::bool_switch(&json),
      "list: one JSON object per node and extension; set, upgrade: an array, one a node");
  cli::add_socket_option(desc);
  std::vector<std::string> pos;
  po::variables_map vm;
  if (auto status = cli::parse_options(kName, args, desc, pos, vm)) return *status;
  if (pos.empty()) return cli::error(kName, "say list, set or upgrade (try --help)", 2);
  std::string op;
  std::vector<std::string> op_args;
  if (pos[0] == "list") {
    if (pos.size() != 1) return cli::error(kName, "list takes no argument", 2);
    op = gang::ops::ext_list;
    op_args = {json ? "json" : "text"};
  } else if (pos[0] == "set") {
    if (pos.size() != 2 || pos[1].find('=') == std::string::npos ||
        pos[1].find('.') > pos[1].find('='))
      return cli::error(kName, "set takes one EXT.KEY=VALUE (e.g. paging.policy=demand)", 2);
    op = gang::ops::ext_set;
    op_args = {pos[1]};
  } else if (pos[0] == "upgrade") {
    if (pos.size() != 3) return cli::error(kName, "upgrade takes EXT PATH.so", 2);
    std::error_code ec;
    auto path = std::filesystem::absolute(pos[2], ec);
    if (ec) return cli::error(kName, pos[2] + ": " + ec.message());
    op = gang::ops::ext_upgrade;
    op_args = {pos[1], path.lexically_normal().string()};
  } else {
    return cli::error(kName, "unknown subcommand '" + pos[0] + "' (list, set or upgrade)", 2);
  }

  // An upgrade may wait for the old build to drain (up to the host's 5 s) on each node.
  auto r = cli::node_command(cli::socket_path(vm), nodes, op, op_args, std::chrono::seconds(60));
  if (!r) return cli::error(kName, r.error().message());
  std::string failed;
  auto results = nlohmann::ordered_json::array();
  for (const auto& res : r->results) {
    if (pos[0] != "list")
      results.push_back({{"node", res.node},
                         {"ok", res.ok},
                         {"result", res.ok ? nlohmann::ordered_json(res.output)
                                           : nlohmann::ordered_json(nullptr)},
                         {"error", res.ok ? nlohmann::ordered_json(nullptr)
                                          : nlohmann::ordered_json(res.output)}});
    if (!res.ok) {
      std::cerr << "dynamos ext: " << res.node << ": " << res.output << "\n";
      failed += (failed.empty() ? "" : ", ") + res.node;
      continue;
    }
    if (pos[0] == "list") {
      std::cout << res.output;
      if (!res.output.empty() && !res.output.ends_with('\n')) std::cout << "\n";
    } else if (!json) {
      std::cout << res.node << ": " << res.output << "\n";
    }
  }
  if (json && pos[0] != "list") cli::print_json(results);
  if (r->results.empty()) return cli::error(kName, "no node is up");
  // One node asked: its error line says it all; more: name the ones that failed.
  if (!failed.empty() && r->results.size() == 1) return 1;
  if (!failed.empty()) return cli::error(kName, "failed on " + failed);
  return 0;
}

}  // namespace

DYNAMOS_COMMAND(ext, "ext", "extensions in the node agents: list, set EXT.KEY=VALUE, upgrade",
                run_ext);
