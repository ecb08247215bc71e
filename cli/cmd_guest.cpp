// dynamos guest run --node NAME -- CMD [ARGS...]: starts a guest on a node where cycle
// stealing is on. The guest runs as the caller, in the caller's working directory (it
// must exist on the node), inside the node's guest class from its first instruction.
#include <sys/stat.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "gang/client/control.hpp"
#include "gang/node_ops.hpp"

namespace po = boost::program_options;
using namespace dynamos;

namespace {

constexpr const char* kName = "guest";

int run_guest(std::span<const std::string> all) {
  po::options_description desc(
      "usage: dynamos guest run --node NAME [--json] -- CMD [ARGS...]\n\n"
      "Starts CMD as a cycle-stealing guest on node NAME, as you, in your current\n"
      "directory, inside the node's guest class (idle CPU priority, memory bounded by\n"
      "the host's working set; paused or evicted per the node's policy). Its output goes\n"
      "to DIR/dynamos-guest-NODE-PID.out (or /dev/null when DIR is not writable).\n"
      "Prints the guest's pid. Cycle stealing must be on on the node (dynamos cyclesteal).\n"
      "\noptions");
  std::string node;
  bool json = false;
  desc.add_options()("help,h", "show this help")("node", po::value(&node), "the node")(
      "json", po::bool_switch(&json), "print the node's reply (JSON) instead of the pid");
  cli::add_socket_option(desc);
  auto dash = std::find(all.begin(), all.end(), std::string("--"));
  std::span<const std::string> opts(all.begin(), dash);
  std::vector<std::string> command(dash == all.end() ? dash : dash + 1, all.end());
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto status = cli::parse_options(kName, opts, desc, positional, vm)) return *status;
  if (positional.size() != 1 || positional[0] != "run")
    return cli::error(kName, "the only subcommand is 'run' (try --help)", 2);
  if (node.empty()) return cli::error(kName, "--node NAME is required", 2);
  if (command.empty()) return cli::error(kName, "give the command after '--' (try --help)", 2);
  char buf[4096];
  if (!::getcwd(buf, sizeof buf)) return cli::error(kName, "cannot read the working directory");
  std::string cwd = buf;
  auto program = cli::resolve_program(command[0], cwd);
  if (!program) return cli::error(kName, program.error().message());
  std::vector<std::string> op_args{cwd, *program};
  op_args.insert(op_args.end(), command.begin() + 1, command.end());
  auto r =
      cli::node_command(cli::socket_path(vm), {node}, std::string(gang::ops::guest_run), op_args);
  if (!r) return cli::error(kName, r.error().message());
  if (r->results.size() != 1) return cli::error(kName, "gangd answered for no node");
  const auto& res = r->results[0];
  if (!res.ok) return cli::error(kName, res.node + ": " + res.output);
  auto reply = nlohmann::ordered_json::parse(res.output, nullptr, false);
  if (json && reply.is_object()) {
    nlohmann::ordered_json out = {{"node", res.node}};
    out.update(reply);
    std::cout << out.dump() << "\n";
    return 0;
  }
  const long pid = reply.is_object() ? reply.value("pid", 0L) : 0L;
  if (pid <= 0) return cli::error(kName, "unexpected reply from " + res.node + ": " + res.output);
  std::cout << pid << "\n";
  return 0;
}

}  // namespace

DYNAMOS_COMMAND(guest, "guest", "run a cycle-stealing guest on a node (run --node NAME -- CMD)",
                run_guest);
