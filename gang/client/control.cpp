#include "gang/client/control.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstdlib>

#include "base/units.hpp"
#include "gang/hostlist.hpp"

namespace dynamos::gang {

Result<proto::Message> control_request(const std::string& socket_path,
                                       const proto::Message& request,
                                       std::chrono::nanoseconds timeout) {
  auto frame = proto::encode(request);
  if (!frame) return std::unexpected(frame.error());
  if (socket_path.size() >= sizeof(sockaddr_un::sun_path))
    return fail(Errc::invalid_argument, "control socket path '" + socket_path + "' is too long");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_errno("socket");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::copy(socket_path.begin(), socket_path.end(), addr.sun_path);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return fail_errno("connect to gangd at " + socket_path);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto wait = [&](short events) -> Result<void> {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return fail(Errc::timed_out, "gangd did not answer within " + format_duration(timeout));
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0) return fail_errno("poll the control socket");
    if (n == 0)
      return fail(Errc::timed_out, "gangd did not answer within " + format_duration(timeout));
    return {};
  };
  for (std::size_t done = 0; done < frame->size();) {
    if (auto ok = wait(POLLOUT); !ok) return std::unexpected(ok.error());
    ssize_t n = ::send(fd, frame->data() + done, frame->size() - done, MSG_NOSIGNAL);
    if (n < 0) return fail_errno("send to gangd");
    done += static_cast<std::size_t>(n);
  }
  auto read_exact = [&](std::uint8_t* out, std::size_t size) -> Result<void> {
    for (std::size_t done = 0; done < size;) {
      if (auto ok = wait(POLLIN); !ok) return ok;
      ssize_t n = ::recv(fd, out + done, size - done, 0);
      if (n < 0) return fail_errno("receive from gangd");
      if (n == 0) return fail(Errc::protocol, "gangd closed the connection without answering");
      done += static_cast<std::size_t>(n);
    }
    return {};
  };
  std::array<std::uint8_t, proto::kHeaderSize> hdr;
  if (auto ok = read_exact(hdr.data(), hdr.size()); !ok) return std::unexpected(ok.error());
  auto h = proto::decode_header(hdr);
  if (!h) return std::unexpected(h.error());
  std::vector<std::uint8_t> payload(h->length);
  if (auto ok = read_exact(payload.data(), payload.size()); !ok) return std::unexpected(ok.error());
  auto reply = proto::decode_payload(h->type, payload);
  if (!reply) return reply;
  if (auto* e = std::get_if<proto::ErrorMsg>(&*reply)) {
    auto code = e->code <= static_cast<std::uint16_t>(Errc::protocol) ? static_cast<Errc>(e->code)
                                                                      : Errc::protocol;
    return fail(code, e->message);
  }
  return reply;
}

}  // namespace dynamos::gang

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
