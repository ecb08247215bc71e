#include "gang/dynamosd/rank_socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gang/protocol_io.hpp"
#include "kernelside/procfs.hpp"
#include "kernelside/spawn.hpp"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5; Debian 12's headers predate it
#endif

namespace dynamos::gang {

namespace asio = boost::asio;
using unix_socket = asio::local::stream_protocol;

namespace {

std::string gone(pid_t pid) {
  return "the process that connected (pid " + std::to_string(pid) +
         ") has exited; its request is refused (the pid may name another process now)";
}

Result<std::uint64_t> start_time(pid_t pid) {
  auto st = kernelside::read_stat(pid);
  if (!st) return fail(Errc::not_found, gone(pid));
  return st->starttime_ticks;
}

}  // namespace

Result<RankPeer> RankPeer::of_process(pid_t pid, uid_t uid) {
  auto before = start_time(pid);
  if (!before) return std::unexpected(before.error());
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return fail(Errc::not_found, gone(pid));
  RankPeer peer(pid, uid, fd, *before);
  // The pidfd may name a newer process under the same pid: the start time tells.
  if (auto ok = peer.still_there(); !ok) return std::unexpected(ok.error());
  return peer;
}

Result<RankPeer> RankPeer::of_socket(int fd) {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return fail_errno("SO_PEERCRED");
  int pidfd = -1;
  len = sizeof pidfd;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) {
    if (errno == ESRCH) return fail(Errc::not_found, gone(cred.pid));
    return of_process(cred.pid, cred.uid);  // an older kernel
  }
  // The pidfd names the process that connected; its start time then, to check the pid.
  auto when = start_time(cred.pid);
  RankPeer peer(cred.pid, cred.uid, pidfd, when ? *when : 0);
  if (!when) return std::unexpected(when.error());
  if (auto ok = peer.still_there(); !ok) return std::unexpected(ok.error());
  return peer;
}

RankPeer::RankPeer(RankPeer&& other) noexcept
    : pid_(other.pid_),
      uid_(other.uid_),
      pidfd_(std::exchange(other.pidfd_, -1)),
      start_time_(other.start_time_) {}

RankPeer::~RankPeer() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

Result<void> RankPeer::still_there() const {
  pollfd p{pidfd_, POLLIN, 0};
  // A pidfd polls readable once its process has exited.
  if (pidfd_ < 0 || ::poll(&p, 1, 0) != 0) return fail(Errc::state, gone(pid_));
  auto now = start_time(pid_);
  if (!now) return std::unexpected(now.error());
  if (*now != start_time_)
    return fail(Errc::state, "pid " + std::to_string(pid_) +
                                 " names another process than the one that connected (start "
                                 "time changed); its request is refused");
  return {};
}

Result<std::unique_ptr<RankSocket>> RankSocket::create(asio::any_io_executor ex, std::string path,
                                                       NodeAgent& agent) {
  boost::system::error_code ec;
  unix_socket::acceptor acceptor(ex);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return fail(Errc::invalid_argument, path + " exists and is not a socket");
    ::unlink(path.c_str());  // left by an agent that was killed
  }
  acceptor.open(unix_socket(), ec);
  // Asio's sockets are not close-on-exec: a guest or a spawned program must not hold it.
  if (!ec)
    if (auto c = kernelside::set_close_on_exec(acceptor.native_handle()); !c)
      return fail(Errc::system, "rank socket " + path + ": " + c.error().message());
  if (!ec) acceptor.bind(unix_socket::endpoint(path), ec);
  if (!ec) acceptor.listen(64, ec);
  if (ec) return fail(Errc::system, "binding the rank socket " + path + ": " + ec.message());
  ::chmod(path.c_str(), 0666);
  return std::unique_ptr<RankSocket>(new RankSocket(std::move(acceptor), std::move(path), agent));
}

RankSocket::RankSocket(unix_socket::acceptor acceptor, std::string path, NodeAgent& agent)
    : acceptor_(std::move(acceptor)), path_(std::move(path)), agent_(agent) {}

RankSocket::~RankSocket() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  ::unlink(path_.c_str());
}

void RankSocket::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

void RankSocket::start() {
  asio::co_spawn(
      acceptor_.get_executor(), [this] { return accept(); }, asio::detached);
}

asio::awaitable<void> RankSocket::accept() {
  for (;;) {
    boost::system::error_code ec;
    auto s = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;
    (void)kernelside::set_close_on_exec(s.native_handle());
    auto peer = RankPeer::of_socket(s.native_handle());  // bound before anything is read
    asio::co_spawn(
        acceptor_.get_executor(),
        [this, s = std::move(s), peer = std::move(peer)]() mutable {
          return serve(std::move(s), std::move(peer));
        },
        asio::detached);
  }
}

proto::Message RankSocket::answer(const Result<RankPeer>& peer, const Result<proto::Message>& msg) {
  if (!peer) return proto::error_message(peer.error());
  if (!msg) return proto::error_message(msg.error());
  // The request is the connecting process's only while that process still runs.
  if (auto ok = peer->still_there(); !ok) return proto::error_message(ok.error());
  const pid_t pid = peer->pid();
  auto* req = std::get_if<proto::RankAttach>(&*msg);
  if (!req)
    return proto::error_message(Error{
        Errc::protocol, 0,
        std::string("expected rank_attach, got ") + proto::msg_type_name(proto::type_of(*msg))});
  if (auto r = agent_.attach_rank(req->job, pid, peer->uid()); !r)
    return proto::error_message(r.error());
  return proto::Ok{"pid " + std::to_string(pid) + " joined job " + std::to_string(req->job)};
}

asio::awaitable<void> RankSocket::serve(unix_socket::socket s, Result<RankPeer> peer) {
  FrameReader reader;
  auto msg = co_await reader.next(s);
  // Named, not a temporary inside the co_await: GCC 12 destroys such temporaries twice.
  auto bytes = proto::encode(answer(peer, msg));
  if (!bytes) co_return;
  boost::system::error_code ec;
  co_await asio::async_write(s, asio::buffer(*bytes),
                             asio::redirect_error(asio::use_awaitable, ec));
}

}  // namespace dynamos::gang
