#include "gang/cli/control.hpp"

#include <cstdlib>

#include "gang/coordinator.hpp"

namespace dynamos::cli {

namespace po = boost::program_options;

void add_socket_option(po::options_description& desc) {
  desc.add_options()("socket", po::value<std::string>(),
                     "gangd's control socket (default $DYNAMOS_SOCKET, else "
                     "/run/dynamos/gangd.sock)");
}

std::string socket_path(const po::variables_map& vm) {
  if (vm.count("socket")) return vm["socket"].as<std::string>();
  if (const char* env = std::getenv("DYNAMOS_SOCKET"); env && *env) return env;
  return kDefaultSocket;
}

Result<gang::proto::Message> ask(const std::string& socket, const gang::proto::Message& request,
                                 std::chrono::nanoseconds timeout) {
  auto r = gang::control_request(socket, request, timeout);
  if (!r && (r.error().sys_errno == ENOENT || r.error().sys_errno == ECONNREFUSED))
    return fail(Errc::not_found, "gangd is not running at " + socket +
                                     " (start a virtual cluster with 'dynamos cluster up', or "
                                     "give --socket)");
  return r;
}

Result<gang::proto::NodeCommandResult> node_command(const std::string& socket,
                                                    std::vector<std::string> nodes, std::string op,
                                                    std::vector<std::string> args,
                                                    std::chrono::nanoseconds timeout) {
  gang::proto::NodeCommand cmd{std::move(nodes), std::move(op), std::move(args),
                               static_cast<std::uint64_t>(timeout.count())};
  // gangd waits for the slowest node up to `timeout`; give the answer a moment more.
  return ask_for<gang::proto::NodeCommandResult>(socket, cmd, timeout + std::chrono::seconds(5));
}

}  // namespace dynamos::cli
