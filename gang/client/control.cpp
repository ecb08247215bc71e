#include "gang/client/control.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "gang/gangd/coordinator.hpp"
#include "gang/hostlist.hpp"

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

namespace {
std::string join(const std::string& dir, const std::string& name) {
  return dir.ends_with('/') ? dir + name : dir + "/" + name;
}
bool executable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}
}  // namespace

Result<std::string> resolve_program(const std::string& program, const std::string& cwd) {
  if (program.find('/') != std::string::npos) {
    std::string path = program.starts_with('/') ? program : join(cwd, program);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
      return fail(Errc::not_found, "PROGRAM '" + program + "' does not exist");
    if (!executable(path))
      return fail(Errc::invalid_argument, "'" + program + "' is not an executable file");
    return path;
  }
  const char* env = std::getenv("PATH");
  std::string path_var = env ? env : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= path_var.size()) {
    auto colon = path_var.find(':', start);
    std::string dir = path_var.substr(start, colon == std::string::npos ? colon : colon - start);
    if (dir.empty())
      dir = cwd;  // an empty entry is the working directory
    else if (!dir.starts_with('/'))
      dir = join(cwd, dir);
    if (executable(join(dir, program))) return join(dir, program);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return fail(Errc::not_found, program + ": command not found (not on $PATH)");
}

Result<gang::proto::NodeCommandResult> node_command(const std::string& socket,
                                                    std::vector<std::string> nodes, std::string op,
                                                    std::vector<std::string> args,
                                                    std::chrono::nanoseconds timeout) {
  // --node options take Slurm hostlists (n[1-3]) as well as names.
  std::vector<std::string> names;
  for (const auto& n : nodes) {
    auto expanded = gang::expand_hostlist(n);
    if (!expanded) return std::unexpected(expanded.error());
    names.insert(names.end(), expanded->begin(), expanded->end());
  }
  gang::proto::NodeCommand cmd{std::move(names), std::move(op), std::move(args),
                               static_cast<std::uint64_t>(timeout.count())};
  // gangd waits for the slowest node up to `timeout`; give the answer a moment more.
  return ask_for<gang::proto::NodeCommandResult>(socket, cmd, timeout + std::chrono::seconds(5));
}

}  // namespace dynamos::cli
