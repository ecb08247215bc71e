#include "gang/metrics_server.hpp"

#include "base/file.hpp"
#include "gang/daemon_options.hpp"

namespace dynamos::gang {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct MetricsServer::State {
  MetricsServerConfig config;
  tcp::acceptor acceptor;
  unsigned open = 0;
  bool stopped = false;
  State(asio::io_context& io, MetricsServerConfig c) : config(std::move(c)), acceptor(io) {}
};

namespace {

constexpr std::size_t kMaxRequestHead = 8192;

std::string response(int status, const char* reason, const std::string& type,
                     const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
}

// Reads one request head and answers it; the deadline covers reading and writing.
asio::awaitable<void> answer(tcp::socket& socket, MetricsServer::State& st) {
  std::string head;
  boost::system::error_code ec;
  char buf[1024];
  while (head.find("\r\n\r\n") == std::string::npos) {
    std::size_t n = co_await socket.async_read_some(asio::buffer(buf),
                                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    head.append(buf, n);
    if (head.size() > kMaxRequestHead) {
      auto r = response(431, "Request Header Fields Too Large", "text/plain", "too long\n");
      co_await asio::async_write(socket, asio::buffer(r),
                                 asio::redirect_error(asio::use_awaitable, ec));
      co_return;
    }
  }
  std::string line = head.substr(0, head.find("\r\n"));
  bool metrics = line.rfind("GET /metrics ", 0) == 0 || line.rfind("GET /metrics?", 0) == 0;
  auto r = metrics
               ? response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", st.config.render())
               : response(404, "Not Found", "text/plain", "only /metrics is here\n");
  co_await asio::async_write(socket, asio::buffer(r),
                             asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> serve(tcp::socket socket, std::shared_ptr<MetricsServer::State> st) {
  ++st->open;
  // The deadline closes the socket, which ends a read or write still waiting.
  asio::steady_timer deadline(socket.get_executor(), st->config.read_timeout);
  deadline.async_wait([&socket](boost::system::error_code ec) {
    if (!ec) socket.close(ec);
  });
  co_await answer(socket, *st);
  deadline.cancel();
  boost::system::error_code ec;
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
  --st->open;
}

asio::awaitable<void> accept_loop(std::shared_ptr<MetricsServer::State> st) {
  auto ex = co_await asio::this_coro::executor;
  while (!st->stopped) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await st->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (st->stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: back off instead of spinning on the error.
      asio::steady_timer pause(ex, std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    (void)set_close_on_exec(socket.native_handle());  // no child inherits it
    if (st->open >= st->config.max_connections) {
      socket.close(ec);
      continue;
    }
    asio::co_spawn(ex, serve(std::move(socket), st), asio::detached);
  }
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(asio::io_context& io,
                                                            MetricsServerConfig config) {
  if (!config.render) return fail(Errc::invalid_argument, "metrics server without a registry");
  auto hp = parse_endpoint(config.listen, "metrics-listen", true);
  if (!hp) return std::unexpected(hp.error());
  boost::system::error_code ec;
  auto address = asio::ip::make_address(hp->host, ec);
  if (ec)
    return fail(Errc::invalid_argument,
                "metrics-listen '" + config.listen + "': not an IP address");
  auto st = std::make_shared<State>(io, std::move(config));
  tcp::endpoint endpoint(address, hp->port);
  st->acceptor.open(endpoint.protocol(), ec);
  if (!ec) st->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) st->acceptor.bind(endpoint, ec);
  if (!ec) st->acceptor.listen(64, ec);
  if (ec) return fail(Errc::system, "metrics-listen " + st->config.listen + ": " + ec.message());
  (void)set_close_on_exec(st->acceptor.native_handle());
  asio::co_spawn(io, accept_loop(st), asio::detached);
  return std::unique_ptr<MetricsServer>(new MetricsServer(st));
}

MetricsServer::~MetricsServer() {
  stop();
}

// The io_context may be gone already (destruction); closing the descriptor needs none.
void MetricsServer::stop() {
  state_->stopped = true;
  boost::system::error_code ec;
  state_->acceptor.close(ec);
}

std::string MetricsServer::address() const {
  boost::system::error_code ec;
  auto ep = state_->acceptor.local_endpoint(ec);
  if (ec) return {};
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace dynamos::gang
