// Per-frame authentication between gangd and agents (gang/auth.hpp): someone on the
// network path who can write into a session after its handshake (without the session
// keys) can neither inject a frame nor replay one; either side closes the session and
// logs why. Both directions are attacked: a raw peer plays the agent against a real
// gangd, and a raw listener plays gangd against a real agent.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <future>
#include <mutex>

#include "gang/agent_session.hpp"
#include "gang/protocol_io.hpp"
#include "testkit/cluster_harness.hpp"

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

// One end of a session spoken by hand over a blocking socket: frames are tagged and
// checked once keys are set, exactly as the real peers do.
struct RawEnd {
  ip::tcp::socket s;
  std::optional<FrameMac> out, in;

  explicit RawEnd(ip::tcp::socket sock) : s(std::move(sock)) {}

  // The bytes of the next frame as this end would send them (tagged once keyed).
  std::vector<std::uint8_t> sealed(const proto::Message& m) {
    auto bytes = proto::encode(m).value();
    if (out) {
      auto tag = out->seal(bytes);
      bytes.insert(bytes.end(), tag.begin(), tag.end());
    }
    return bytes;
  }
  void send_bytes(const std::vector<std::uint8_t>& b) {
    boost::asio::write(s, boost::asio::buffer(b));
  }
  void send(const proto::Message& m) { send_bytes(sealed(m)); }

  // The next frame, its tag checked once keyed; an error when closed or forged.
  Result<proto::Message> read() {
    std::array<std::uint8_t, proto::kHeaderSize> h;
    boost::system::error_code ec;
    boost::asio::read(s, boost::asio::buffer(h), ec);
    if (ec) return fail(Errc::state, "closed: " + ec.message());
    auto hdr = proto::decode_header(h);
    if (!hdr) return std::unexpected(hdr.error());
    std::vector<std::uint8_t> frame(h.begin(), h.end());
    frame.resize(proto::kHeaderSize + hdr->length + (in ? proto::kMacSize : 0));
    boost::asio::read(
        s,
        boost::asio::buffer(frame.data() + proto::kHeaderSize, frame.size() - proto::kHeaderSize),
        ec);
    if (ec) return fail(Errc::state, "closed: " + ec.message());
    std::span<const std::uint8_t> body(frame.data(), proto::kHeaderSize + hdr->length);
    if (in && !in->check(body, std::span(frame).subspan(body.size())))
      return fail(Errc::protocol, "a frame from the peer failed its tag");
    return proto::decode_payload(hdr->type, body.subspan(proto::kHeaderSize));
  }

  // Reads until the peer closes; true if it did within the socket's patience.
  bool closed_by_peer() {
    for (int i = 0; i < 100; ++i) {
      auto m = read();
      if (!m) return m.error().code == Errc::state;
    }
    return false;
  }
};

// Plays an agent through the handshake against gangd at `port`; keyed on return.
RawEnd join_as_agent(boost::asio::io_context& io, std::uint16_t port, const std::string& node) {
  ip::tcp::socket s(io);
  s.connect({ip::make_address("127.0.0.1"), port});
  RawEnd e(std::move(s));
  proto::Nonce cn{};
  cn.fill(3);
  e.send(proto::Hello{proto::Role::agent, node, 1, cn});
  auto ch = e.read();
  EXPECT_TRUE(ch && std::holds_alternative<proto::Challenge>(*ch));
  auto sn = std::get<proto::Challenge>(*ch).server_nonce;
  e.send(proto::Auth{client_proof(test_secret(), sn, cn, node)});
  auto keys = frame_keys(test_secret(), cn, sn, node);
  e.out.emplace(keys.to_gangd);
  e.in.emplace(keys.to_agent);
  auto welcome = e.read();
  EXPECT_TRUE(welcome && std::holds_alternative<proto::Welcome>(*welcome))
      << (welcome ? "another message" : welcome.error().message());
  return e;
}

bool logged(Cluster& c, const std::string& text) {
  return c.wait_for([&] {
    for (const auto& l : c.log_lines())
      if (l.find(text) != std::string::npos) return true;
    return false;
  });
}

CoordinatorConfig one_node() {
  CoordinatorConfig cfg;
  cfg.hosts.push_back({"n0", 1, 0});
  cfg.hosts.push_back({"n1", 1, 0});
  cfg.secret = test_secret();
  cfg.quantum = 1h;
  cfg.heartbeat = 200ms;
  return cfg;
}

}  // namespace

TEST(FrameAuth, InjectedFrameWithWrongMacIsRefusedAndTheSessionClosed) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(one_node()));
  c.add_agent("n1", test_secret());
  boost::asio::io_context io;
  auto raw = join_as_agent(io, c.call([&] { return c.coordinator->port(); }), "n0");
  ASSERT_TRUE(c.wait_for([&] { return c.coordinator->agents_connected() == 2; }));

  // A well-formed SwitchAck whose tag was not made with the session key.
  auto bytes = proto::encode(proto::SwitchAck{1, true, 0, 0, 0, {}, 0, 0, {}}).value();
  bytes.resize(bytes.size() + proto::kMacSize, 0xAB);
  raw.send_bytes(bytes);

  EXPECT_TRUE(raw.closed_by_peer()) << "gangd kept a session that sent a forged frame";
  EXPECT_TRUE(logged(c, "switch_ack frame 0 failed authentication"));
  EXPECT_TRUE(c.wait_for([&] { return c.coordinator->agents_connected() == 1; }));
  // The cluster goes on: the honest agent still switches.
  auto stats = c.await(c.coordinator->broadcast_round());
  EXPECT_EQ(stats.switched, 1u);
  EXPECT_EQ(stats.failed, 0u) << (stats.errors.empty() ? "" : stats.errors[0]);
}

TEST(FrameAuth, ReplayedFrameIsRefusedAndTheSessionClosed) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(one_node()));
  boost::asio::io_context io;
  auto raw = join_as_agent(io, c.call([&] { return c.coordinator->port(); }), "n0");
  ASSERT_TRUE(c.wait_for([&] { return c.coordinator->agents_connected() == 1; }));

  auto first = raw.sealed(proto::Heartbeat{42});
  raw.send_bytes(first);  // genuine: accepted
  raw.send_bytes(first);  // the same bytes again, as a recorder on the path would
  EXPECT_TRUE(raw.closed_by_peer()) << "gangd accepted a replayed frame";
  EXPECT_TRUE(logged(c, "heartbeat frame 1 failed authentication"));
  EXPECT_TRUE(c.wait_for([&] { return c.coordinator->agents_connected() == 0; }));
}

TEST(FrameAuth, DowngradeToUntaggedFramesIsRefused) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(one_node()));
  boost::asio::io_context io;
  ip::tcp::socket s(io);
  s.connect({ip::make_address("127.0.0.1"), c.call([&] { return c.coordinator->port(); })});
  RawEnd e(std::move(s));
  e.send(proto::Hello{proto::Role::agent, "n0", 1, {}, false});
  auto m = e.read();
  ASSERT_TRUE(m && std::holds_alternative<proto::ErrorMsg>(*m));
  EXPECT_NE(std::get<proto::ErrorMsg>(*m).message.find("frame authentication off"),
            std::string::npos)
      << std::get<proto::ErrorMsg>(*m).message;
}

namespace {

// Records what the agent was asked to do and what it logged.
struct Recorder : test::RecordingNode {};

// A raw gangd: accepts one agent, authenticates it, and hands back the keyed end.
struct RawGangd {
  boost::asio::io_context io;
  ip::tcp::acceptor acc{io, {ip::make_address("127.0.0.1"), 0}};
  std::uint16_t port() const { return acc.local_endpoint().port(); }

  RawEnd accept_agent(const std::string& node) {
    RawEnd e(acc.accept());
    auto hello = e.read();
    EXPECT_TRUE(hello && std::holds_alternative<proto::Hello>(*hello));
    auto cn = std::get<proto::Hello>(*hello).client_nonce;
    proto::Nonce sn{};
    sn.fill(9);
    e.send(proto::Challenge{sn, server_proof(test_secret(), cn, sn, node)});
    auto auth = e.read();
    EXPECT_TRUE(auth && std::holds_alternative<proto::Auth>(*auth));
    auto keys = frame_keys(test_secret(), cn, sn, node);
    e.out.emplace(keys.to_agent);
    e.in.emplace(keys.to_gangd);
    e.send(proto::Welcome{0, 1'000'000'000, 10'000'000'000, 0});
    return e;
  }
};

struct AgentUnderAttack {
  Recorder node;
  std::mutex mu;
  std::vector<std::string> lines;
  boost::asio::io_context io;
  std::shared_ptr<AgentSession> session;
  std::thread thread;

  explicit AgentUnderAttack(std::uint16_t port) {
    AgentConfig ac;
    ac.coordinator_port = port;
    ac.node = "n0";
    ac.secret = test_secret();
    ac.reconnect = false;
    ac.log = [this](const std::string& l) {
      std::lock_guard g(mu);
      lines.push_back(l);
    };
    session = AgentSession::create(io.get_executor(), ac, node);
    thread = std::thread([this] {
      auto work = boost::asio::make_work_guard(io);
      session->start();
      io.run();
    });
  }
  ~AgentUnderAttack() {
    boost::asio::post(io, [this] { session->stop(); });
    io.stop();
    thread.join();
  }
  bool logged(const std::string& text) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard g(mu);
        for (const auto& l : lines)
          if (l.find(text) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
};

}  // namespace

TEST(FrameAuth, AgentRefusesAnInjectedFreezeAndClosesTheSession) {
  RawGangd g;
  AgentUnderAttack agent(g.port());
  auto e = g.accept_agent("n0");
  // A SwitchOrder that would freeze job 7, tagged with a key the injector guessed.
  auto bytes = proto::encode(proto::SwitchOrder{1, 0, {7}, {}}).value();
  bytes.resize(bytes.size() + proto::kMacSize, 0);
  e.send_bytes(bytes);
  EXPECT_TRUE(e.closed_by_peer()) << "the agent kept a session that sent a forged frame";
  EXPECT_TRUE(agent.logged("switch_order frame 1 failed authentication"));
  // The plan was refused, so no switch follows.
  EXPECT_TRUE(agent.node.switches_copy().empty());
}

TEST(FrameAuth, AgentRefusesAReplayedJobAssignAndClosesTheSession) {
  RawGangd g;
  AgentUnderAttack agent(g.port());
  auto e = g.accept_agent("n0");
  auto assign = e.sealed(proto::JobAssign{7, "lu", 1000, 1, "demand", true});
  e.send_bytes(assign);
  e.send_bytes(assign);
  EXPECT_TRUE(e.closed_by_peer()) << "the agent accepted a replayed frame";
  EXPECT_TRUE(agent.logged("job_assign frame 2 failed authentication"));
  EXPECT_EQ(agent.node.assigned_copy().size(), 1u);
}
