#include "gang/dynamosd/rank_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gang/protocol_io.hpp"
#include "kernelside/spawn.hpp"

namespace dynamos::gang {

namespace asio = boost::asio;
using unix_socket = asio::local::stream_protocol;

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
    asio::co_spawn(
        acceptor_.get_executor(),
        [this, s = std::move(s)]() mutable { return serve(std::move(s)); }, asio::detached);
  }
}

proto::Message RankSocket::answer(unix_socket::socket& s, const Result<proto::Message>& msg) {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return proto::error_message(fail_errno("SO_PEERCRED").error());
  if (!msg) return proto::error_message(msg.error());
  auto* req = std::get_if<proto::RankAttach>(&*msg);
  if (!req)
    return proto::error_message(Error{
        Errc::protocol, 0,
        std::string("expected rank_attach, got ") + proto::msg_type_name(proto::type_of(*msg))});
  if (auto r = agent_.attach_rank(req->job, cred.pid, cred.uid); !r)
    return proto::error_message(r.error());
  return proto::Ok{"pid " + std::to_string(cred.pid) + " joined job " + std::to_string(req->job)};
}

asio::awaitable<void> RankSocket::serve(unix_socket::socket s) {
  FrameReader reader;
  auto msg = co_await reader.next(s);
  // Named, not a temporary inside the co_await: GCC 12 destroys such temporaries twice.
  auto bytes = proto::encode(answer(s, msg));
  if (!bytes) co_return;
  boost::system::error_code ec;
  co_await asio::async_write(s, asio::buffer(*bytes),
                             asio::redirect_error(asio::use_awaitable, ec));
}

}  // namespace dynamos::gang
