// gangd's sockets under floods and exhaustion: a cap on agent and control connections,
// an idle timeout for control callers, and accept loops that back off (no busy loop,
// no log flood) when the process runs out of descriptors. Each time the cluster's real
// agent still switches afterwards.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio.hpp>

#include "testkit/cluster_harness.hpp"
#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace std::chrono_literals;
using test::Cluster;
namespace ip = boost::asio::ip;

namespace {

Secret test_secret() {
  std::vector<std::uint8_t> b(32, 'k');
  return Secret::from_bytes(b);
}

CoordinatorConfig one_node() {
  CoordinatorConfig cfg;
  cfg.hosts.push_back({"n0", 1, 0});
  cfg.secret = test_secret();
  cfg.quantum = 1h;
  cfg.heartbeat = 200ms;
  cfg.auth_timeout = 30s;  // flooders stay until the test ends
  return cfg;
}

std::size_t lines_with(Cluster& c, const std::string& text) {
  std::size_t n = 0;
  for (const auto& l : c.log_lines())
    n += l.find(text) != std::string::npos;
  return n;
}

// True when the peer closes the socket within `patience`.
bool closed_within(int fd, std::chrono::milliseconds patience) {
  timeval tv{static_cast<time_t>(patience.count() / 1000),
             static_cast<suseconds_t>(patience.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char b;
  ssize_t n = ::recv(fd, &b, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

int tcp_socket() {
  return ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

bool tcp_connect(int fd, std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

double process_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

void expect_round_works(Cluster& c) {
  auto stats = c.await(c.coordinator->broadcast_round());
  EXPECT_EQ(stats.switched, 1u);
  EXPECT_EQ(stats.failed, 0u) << (stats.errors.empty() ? "" : stats.errors[0]);
}

}  // namespace

TEST(CoordinatorLimits, AgentConnectionFloodIsCappedAndTheClusterGoesOn) {
  auto cfg = one_node();
  cfg.max_agent_connections = 8;
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(cfg));
  c.add_agent("n0", test_secret());
  ASSERT_TRUE(c.wait_for([&] { return c.coordinator->agents_connected() == 1; }));
  auto port = c.call([&] { return c.coordinator->port(); });

  std::vector<int> flood;
  for (int i = 0; i < 40; ++i) {
    flood.push_back(tcp_socket());
    ASSERT_TRUE(tcp_connect(flood.back(), port));
  }
  // The first 7 (with the agent, 8) are kept waiting for their handshake; the rest are
  // closed at once.
  int closed = 0;
  for (int fd : flood)
    closed += closed_within(fd, 300ms);
  EXPECT_GE(closed, 40 - 7) << "gangd kept more connections than its limit";
  EXPECT_LE(closed, 40 - 6);
  EXPECT_EQ(lines_with(c, "refusing a connection"), 1u) << "the refusals flooded the log";
  expect_round_works(c);
  for (int fd : flood)
    ::close(fd);
}

TEST(CoordinatorLimits, IdleControlCallerIsClosed) {
  test::TempDir dir;
  auto cfg = one_node();
  cfg.control_socket = dir / "gangd.sock";
  cfg.control_idle_timeout = 300ms;
  cfg.max_control_connections = 4;
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(cfg));
  auto connect_control = [&] {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", cfg.control_socket.c_str());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  };
  // Half a frame header, then silence: a slow-loris caller.
  int slow = connect_control();
  ASSERT_EQ(::write(slow, "DYGP", 4), 4);
  std::vector<int> more;
  for (int i = 0; i < 6; ++i)
    more.push_back(connect_control());
  int refused = 0;
  for (int fd : more)
    refused += closed_within(fd, 100ms);
  EXPECT_GE(refused, 6 - 3) << "more control connections than the limit were kept";
  EXPECT_TRUE(closed_within(slow, 2000ms)) << "an idle caller kept its connection";
  EXPECT_GE(lines_with(c, "idle for"), 1u);
  ::close(slow);
  for (int fd : more)
    ::close(fd);
}

TEST(CoordinatorLimits, AcceptAtEmfileBacksOffWithoutBusyLoopOrLogFlood) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(one_node()));
  auto port = c.call([&] { return c.coordinator->port(); });
  // Sockets made now, connected once the process has no descriptor left: gangd's
  // accept then fails with EMFILE while the connections wait in its backlog.
  std::vector<int> clients;
  for (int i = 0; i < 4; ++i)
    clients.push_back(tcp_socket());
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  std::vector<int> fillers;
  rlimit low = saved;
  low.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;)
    fillers.push_back(fd);
  for (int fd : clients)
    ASSERT_TRUE(tcp_connect(fd, port));

  double cpu0 = process_cpu_seconds();
  std::this_thread::sleep_for(1500ms);
  double cpu = process_cpu_seconds() - cpu0;

  for (int fd : fillers)
    ::close(fd);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_LT(cpu, 0.5) << "gangd spun on accept: " << cpu << " s of CPU in 1.5 s";
  EXPECT_EQ(lines_with(c, "accept: Too many open files"), 1u)
      << "EMFILE should be logged once, then rate-limited";
  // Descriptors are back: the backlog drains and a real agent joins.
  c.add_agent("n0", test_secret());
  EXPECT_TRUE(c.wait_for([&] { return c.coordinator->agents_connected() == 1; }));
  expect_round_works(c);
  for (int fd : clients)
    ::close(fd);
}

TEST(CoordinatorLimits, JobListOf1000EndedJobsWithLongReasonsFitsOneMessage) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(one_node()));
  std::string reason(60 * 1024, 'r');  // a launcher's long error output
  JobId last = 0;
  for (int i = 0; i < 1000; ++i) {
    auto id = c.call([&] {
      return c.coordinator->submit(0, {"j", 1, 0, "demand", {"/bin/true"}, "/", ""});
    });
    ASSERT_TRUE(id.has_value()) << id.error().message();
    auto ok = c.call([&] { return c.coordinator->job_exited(0, {*id, 1, reason}); });
    ASSERT_TRUE(ok.has_value()) << ok.error().message();
    last = *id;
  }
  // A live job too: it must be listed whatever else is.
  auto live = c.call([&] {
    return c.coordinator->submit(0, {"live", 1, 0, "demand", {"/bin/true"}, "/", ""});
  });
  ASSERT_TRUE(live.has_value());
  auto list = c.call([&] { return c.coordinator->list_jobs(0); });
  auto frame = proto::encode(list);
  ASSERT_TRUE(frame.has_value()) << "the job list no longer fits a message: "
                                 << frame.error().message();
  auto has = [&](JobId id) {
    return std::any_of(list.jobs.begin(), list.jobs.end(),
                       [&](const proto::JobInfo& j) { return j.job == id; });
  };
  EXPECT_TRUE(has(*live));
  EXPECT_TRUE(has(last)) << "the newest ended job is missing";
  // Through the control API too (what `dynamos jobs` gets).
  auto reply = c.call([&] { return c.coordinator->handle_control(0, proto::ListJobs{}); });
  EXPECT_TRUE(std::holds_alternative<proto::JobList>(reply));
}
