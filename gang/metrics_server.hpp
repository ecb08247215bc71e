// /metrics over HTTP/1.1 for Prometheus: a small server on the daemon's own
// io_context. It answers `GET /metrics` with the registry's text and every other
// request with 404, one request a connection. Bounded so that a scraper, or anyone
// else who can reach the port, cannot stall the daemon: at most max_connections at
// once (further ones are closed at once), a request head of at most 8 KiB read within
// read_timeout, and the response written within the same time.
#pragma once

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/error.hpp"

namespace dynamos::gang {

struct MetricsServerConfig {
  std::string listen;  // "127.0.0.1:9207"; port 0 picks a free one
  std::function<std::string()> render;
  unsigned max_connections = 16;
  std::chrono::milliseconds read_timeout{5000};
};

class MetricsServer {
 public:
  // Binds now (so a bad address is reported at start-up) and serves on `io`.
  static Result<std::unique_ptr<MetricsServer>> start(boost::asio::io_context& io,
                                                      MetricsServerConfig config);
  ~MetricsServer();

  // Stops accepting (a daemon's io_context then runs out of work once the scrapes in
  // flight end, each within read_timeout): called at SIGTERM.
  void stop();

  // The bound address, e.g. "127.0.0.1:41233", and the URL to scrape.
  std::string address() const;
  std::string url() const { return "http://" + address() + "/metrics"; }

  struct State;

 private:
  explicit MetricsServer(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace dynamos::gang
