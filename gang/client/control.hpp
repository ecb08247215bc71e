// The client side of gangd's control socket: one blocking request and its reply
// (gang::control_request, for every program that talks to gangd: the CLI, the
// launchers, the comparison harness), and the CLI's helpers around it shared by every
// command that talks to the coordinator (jobs, nodes, submit, cyclesteal, ext, patch --job...).
#pragma once

#include <boost/program_options.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "gang/protocol.hpp"

namespace dynamos::gang {

// A blocking request to gangd's control socket: sends `request`, returns the reply. An
// ErrorMsg reply becomes an Error with its code and message.
Result<proto::Message> control_request(const std::string& socket_path,
                                       const proto::Message& request,
                                       std::chrono::nanoseconds timeout = std::chrono::seconds(10));

}  // namespace dynamos::gang

namespace dynamos::cli {

// gangd's control socket unless --socket or $DYNAMOS_SOCKET says otherwise.
inline constexpr const char* kDefaultSocket = "/run/dynamos/gangd.sock";

// Adds --socket to a command's options.
void add_socket_option(boost::program_options::options_description& desc);
// --socket, else $DYNAMOS_SOCKET, else kDefaultSocket.
std::string socket_path(const boost::program_options::variables_map& vm);

// One request to gangd. An unreachable gangd is an error that says how to start one.
Result<gang::proto::Message> ask(const std::string& socket, const gang::proto::Message& request,
                                 std::chrono::nanoseconds timeout = std::chrono::seconds(10));

// The reply as the type expected; anything else is a protocol error naming both.
template <class T>
Result<T> ask_for(const std::string& socket, const gang::proto::Message& request,
                  std::chrono::nanoseconds timeout = std::chrono::seconds(10)) {
  auto r = ask(socket, request, timeout);
  if (!r) return std::unexpected(r.error());
  if (auto* t = std::get_if<T>(&*r)) return std::move(*t);
  return fail(Errc::protocol, std::string("gangd answered ") +
                                  gang::proto::msg_type_name(gang::proto::type_of(*r)) + " to " +
                                  gang::proto::msg_type_name(gang::proto::type_of(request)));
}

// PROGRAM as a shell would run it from `cwd`: with a '/', that path (made absolute);
// without, the first executable file of that name on $PATH (an empty or relative entry
// is relative to `cwd`). A missing or non-executable program is an error naming it.
Result<std::string> resolve_program(const std::string& program, const std::string& cwd);

// A node operation (gang/node_ops.hpp) on `nodes` (empty: gangd's default set). The
// per-node results come back as they are; the caller decides what a failure means.
Result<gang::proto::NodeCommandResult> node_command(
    const std::string& socket, std::vector<std::string> nodes, std::string op,
    std::vector<std::string> args, std::chrono::nanoseconds timeout = std::chrono::seconds(30));

}  // namespace dynamos::cli
