// base/metrics (the text exposition format) and gang/metrics_server (/metrics over
// HTTP), checked against Prometheus's own parser (promtool) where it is installed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "base/metrics.hpp"
#include "gang/metrics_server.hpp"

namespace dynamos {
namespace {

namespace asio = boost::asio;
using metrics::Registry;

TEST(Metrics, RendersCountersGaugesAndHistogramsInTheTextFormat) {
  Registry r;
  r.add("dynamos_rounds_total", "switch rounds", 2);
  r.add("dynamos_rounds_total", "switch rounds", 1);
  r.add("dynamos_rounds_total", "switch rounds", -5);  // counters never go down
  r.set("dynamos_jobs", "jobs by state", 3, {{"state", "running"}});
  r.set("dynamos_jobs", "jobs by state", 1, {{"state", "pending \"q\""}});
  r.observe("dynamos_round_seconds", "round latency", 0.003, {0.001, 0.01});
  r.observe("dynamos_round_seconds", "round latency", 0.5, {0.001, 0.01});
  EXPECT_EQ(r.render(),
            "# HELP dynamos_jobs jobs by state\n"
            "# TYPE dynamos_jobs gauge\n"
            "dynamos_jobs{state=\"pending \\\"q\\\"\"} 1\n"
            "dynamos_jobs{state=\"running\"} 3\n"
            "# HELP dynamos_round_seconds round latency\n"
            "# TYPE dynamos_round_seconds histogram\n"
            "dynamos_round_seconds_bucket{le=\"0.001\"} 0\n"
            "dynamos_round_seconds_bucket{le=\"0.01\"} 1\n"
            "dynamos_round_seconds_bucket{le=\"+Inf\"} 2\n"
            "dynamos_round_seconds_sum 0.503\n"
            "dynamos_round_seconds_count 2\n"
            "# HELP dynamos_rounds_total switch rounds\n"
            "# TYPE dynamos_rounds_total counter\n"
            "dynamos_rounds_total 3\n");
}

TEST(Metrics, CollectorsRefreshAtScrapeAndTypesDoNotMix) {
  Registry r;
  int scrapes = 0;
  r.add_collector([&](Registry& reg) { reg.set("dynamos_scrapes", "scrapes", ++scrapes); });
  EXPECT_NE(r.render().find("dynamos_scrapes 1\n"), std::string::npos);
  EXPECT_NE(r.render().find("dynamos_scrapes 2\n"), std::string::npos);
  EXPECT_THROW(r.add("dynamos_scrapes", "scrapes"), std::logic_error);
}

// One HTTP request to the server, the whole answer back.
std::string http_get(const std::string& address, const std::string& request) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  auto colon = address.rfind(':');
  s.connect({asio::ip::make_address(address.substr(0, colon)),
             static_cast<unsigned short>(std::stoi(address.substr(colon + 1)))});
  asio::write(s, asio::buffer(request));
  std::string out;
  boost::system::error_code ec;
  char buf[4096];
  for (;;) {
    std::size_t n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

struct Served {
  asio::io_context io;
  Registry registry;
  std::unique_ptr<gang::MetricsServer> server;
  std::thread thread;
  explicit Served(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    registry.add("dynamos_rounds_total", "switch rounds", 7);
    auto s = gang::MetricsServer::start(
        io, {"127.0.0.1:0", [this] { return registry.render(); }, 4, timeout});
    EXPECT_TRUE(s) << (s ? "" : s.error().message());
    server = std::move(*s);
    thread = std::thread([this] { io.run(); });
  }
  ~Served() {
    io.stop();
    thread.join();
  }
};

TEST(MetricsServer, ServesMetricsAndRefusesOtherPaths) {
  Served s;
  auto ok = http_get(s.server->address(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(ok.find("\r\n\r\n# HELP dynamos_rounds_total"), std::string::npos);
  EXPECT_NE(ok.find("dynamos_rounds_total 7\n"), std::string::npos);
  auto other = http_get(s.server->address(), "GET /etc/passwd HTTP/1.1\r\n\r\n");
  EXPECT_EQ(other.rfind("HTTP/1.1 404", 0), 0u) << other;
}

TEST(MetricsServer, OversizedAndSilentRequestsCannotStallIt) {
  Served s(std::chrono::milliseconds(300));
  // A request head past 8 KiB is answered 431 and closed.
  auto big = http_get(s.server->address(), "GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a'));
  EXPECT_EQ(big.rfind("HTTP/1.1 431", 0), 0u) << big.substr(0, 80);
  // Silent clients up to the connection cap are dropped at the read timeout, and a
  // scrape after them is answered.
  asio::io_context io;
  std::vector<asio::ip::tcp::socket> idle;
  auto addr = s.server->address();
  auto colon = addr.rfind(':');
  asio::ip::tcp::endpoint ep(asio::ip::make_address(addr.substr(0, colon)),
                             static_cast<unsigned short>(std::stoi(addr.substr(colon + 1))));
  for (int i = 0; i < 6; ++i) {
    idle.emplace_back(io);
    idle.back().connect(ep);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto ok = http_get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK", 0), 0u) << ok;
}

TEST(MetricsServer, BadAddressIsRefusedAtStart) {
  asio::io_context io;
  auto s = gang::MetricsServer::start(io, {"localhost-ish:9", [] { return std::string(); }});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("metrics-listen"), std::string::npos) << s.error().message();
}

TEST(Metrics, PromtoolAcceptsTheOutput) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    if (const char* ci = std::getenv("CI"); ci && std::string(ci) == "true")
      FAIL() << "promtool is missing (scripts/setup.sh installs prometheus)";
    GTEST_SKIP() << "promtool is not installed";
  }
  Registry r;
  r.add("dynamos_rounds_total", "switch rounds", 3);
  r.set("dynamos_jobs", "jobs by state", 2, {{"state", "running"}});
  r.observe("dynamos_round_seconds", "round latency", 0.004, metrics::latency_buckets(),
            {{"phase", "running"}});
  char path[] = "/tmp/dynamos-metrics-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << r.render();
  std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p))
    out += buf;
  int rc = ::pclose(p);
  ::unlink(path);
  EXPECT_EQ(rc, 0) << out;
}

}  // namespace
}  // namespace dynamos
