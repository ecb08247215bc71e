// gangd's core with simulated agents on loopback: authentication, malformed input,
// synchronised gang switches, journal recovery, control-socket credentials, and the
// agent's reaction to a lost coordinator.
#include "gang/gangd/coordinator.hpp"
#include "gang/client/control.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <thread>

#include "gang/protocol_io.hpp"
#include "testkit/cluster_harness.hpp"
#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace std::chrono_literals;
using test::Cluster;

namespace {

Secret test_secret(char fill = 'k') {
  std::vector<std::uint8_t> b(32, static_cast<std::uint8_t>(fill));
  return Secret::from_bytes(b);
}

CoordinatorConfig config(int nodes, int slots, Nanos quantum = 1h) {
  CoordinatorConfig cfg;
  for (int i = 0; i < nodes; ++i)
    cfg.hosts.push_back({"n" + std::to_string(i), slots, 0});
  cfg.secret = test_secret();
  cfg.quantum = quantum;
  cfg.heartbeat = 200ms;
  return cfg;
}

bool all_connected(Cluster& c, std::size_t n) {
  return c.wait_for([&] { return c.coordinator->agents_connected() == n; });
}

// A raw TCP peer that speaks (or breaks) the protocol by hand.
struct RawPeer {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s{io};
  explicit RawPeer(std::uint16_t port) {
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  }
  void send_bytes(const std::vector<std::uint8_t>& b) {
    boost::asio::write(s, boost::asio::buffer(b));
  }
  void send(const proto::Message& m) { send_bytes(proto::encode(m).value()); }
  // Reads one frame; an error when the peer closed.
  Result<proto::Message> read() {
    std::array<std::uint8_t, proto::kHeaderSize> h;
    boost::system::error_code ec;
    boost::asio::read(s, boost::asio::buffer(h), ec);
    if (ec) return fail(Errc::state, "closed: " + ec.message());
    auto hdr = proto::decode_header(h);
    if (!hdr) return std::unexpected(hdr.error());
    std::vector<std::uint8_t> p(hdr->length);
    boost::asio::read(s, boost::asio::buffer(p), ec);
    if (ec) return fail(Errc::state, "closed: " + ec.message());
    return proto::decode_payload(hdr->type, p);
  }
  std::string error_text() {
    auto m = read();
    if (!m) return "(no message: " + m.error().message() + ")";
    if (auto* e = std::get_if<proto::ErrorMsg>(&*m)) return e->message;
    return std::string("(got ") + proto::msg_type_name(proto::type_of(*m)) + ")";
  }
  bool closed_by_peer() {
    std::uint8_t b;
    boost::system::error_code ec;
    s.read_some(boost::asio::buffer(&b, 1), ec);
    return ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset;
  }
};

}  // namespace

TEST(Coordinator, AgentsAuthenticateAndRegister) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(config(3, 2)));
  for (int i = 0; i < 3; ++i)
    c.add_agent("n" + std::to_string(i), test_secret());
  ASSERT_TRUE(all_connected(c, 3)) << "agents did not register";
  auto nodes = c.call([&] { return c.coordinator->list_nodes(0); });
  for (const auto& n : nodes.nodes)
    EXPECT_EQ(n.state, "up") << n.name;
}

TEST(Coordinator, AgentWithWrongSecretOrUnknownNameIsRefused) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(config(1, 2)));
  auto bad = c.add_agent("n0", test_secret('x'), {}, false);
  auto stranger = c.add_agent("zz", test_secret(), {}, false);
  ASSERT_TRUE(c.wait_for([&] {
    return c.agents[bad]->state() == AgentSession::State::stopped &&
           c.agents[stranger]->state() == AgentSession::State::stopped;
  }));
  auto e1 = c.call([&] { return c.agents[bad]->last_error(); });
  ASSERT_TRUE(e1.has_value());
  // The coordinator proves itself first, so an agent with another secret rejects it.
  EXPECT_NE(e1->message().find("could not prove"), std::string::npos) << e1->message();
  auto e2 = c.call([&] { return c.agents[stranger]->last_error(); });
  ASSERT_TRUE(e2.has_value());
  EXPECT_NE(e2->message().find("unknown node 'zz'"), std::string::npos) << e2->message();
  EXPECT_EQ(c.call([&] { return c.coordinator->agents_connected(); }), 0u);

  // A peer that skips the check and answers with a forged proof is refused by gangd.
  RawPeer p(c.call([&] { return c.coordinator->port(); }));
  p.send(proto::Hello{proto::Role::agent, "n0", 1, {}});
  auto ch = p.read();
  ASSERT_TRUE(ch && std::holds_alternative<proto::Challenge>(*ch));
  p.send(proto::Auth{});
  auto text = p.error_text();
  EXPECT_NE(text.find("wrong shared secret"), std::string::npos) << text;
  EXPECT_TRUE(p.closed_by_peer());
}

TEST(Coordinator, MalformedInputIsRefusedAndOthersGoOn) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(config(1, 2)));
  c.add_agent("n0", test_secret());
  ASSERT_TRUE(all_connected(c, 1));
  auto port = c.call([&] { return c.coordinator->port(); });
  {
    RawPeer p(port);
    p.send_bytes({'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1'});
    auto text = p.error_text();
    EXPECT_NE(text.find("bad magic"), std::string::npos) << text;
    EXPECT_TRUE(p.closed_by_peer());
  }
  {
    RawPeer p(port);
    proto::Writer w;
    w.u32(proto::kMagic);
    w.u16(proto::kProtocolVersion);
    w.u16(static_cast<std::uint16_t>(proto::MsgType::hello));
    w.u32(0x40000000);  // 1 GiB
    p.send_bytes(w.buffer());
    auto text = p.error_text();
    EXPECT_NE(text.find("exceeds"), std::string::npos) << text;
  }
  {
    RawPeer p(port);  // the CLI role is not for TCP
    p.send(proto::Hello{proto::Role::cli, "n0", 1, {}});
    auto text = p.error_text();
    EXPECT_NE(text.find("control socket"), std::string::npos) << text;
  }
  {
    RawPeer p(port);  // says nothing: dropped after the authentication timeout
    c.call([] { return 0; });
  }
  // The real agent is still there and a round still works.
  EXPECT_EQ(c.call([&] { return c.coordinator->agents_connected(); }), 1u);
  auto stats = c.await(c.coordinator->broadcast_round());
  EXPECT_EQ(stats.switched, 1u);
  EXPECT_EQ(stats.failed, 0u) << (stats.errors.empty() ? "" : stats.errors[0]);
}

// A round is one plan with its deadline a node: a node whose prepare fails still
// switches at the deadline (the gang stays together), and gangd says which and why.
TEST(Coordinator, ANodeWhosePrepareFailsStillSwitchesAndTheRoundSaysSo) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(config(2, 1)));
  c.add_agent("n0", test_secret());
  c.add_agent("n1", test_secret());
  ASSERT_TRUE(all_connected(c, 2));
  {
    std::lock_guard l(c.handlers[1]->mu);
    c.handlers[1]->prepare_error = "swap device gone";
  }
  auto stats = c.await(c.coordinator->broadcast_round());
  EXPECT_EQ(stats.nodes, 2u);
  EXPECT_EQ(stats.switched, 2u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.unprepared, 1u);
  ASSERT_EQ(stats.errors.size(), 1u);
  EXPECT_NE(stats.errors[0].find("n1 failed to prepare (it switched all the same): swap device "
                                 "gone"),
            std::string::npos)
      << stats.errors[0];
  for (auto& h : c.handlers) {
    auto sw = h->switches_copy();
    ASSERT_EQ(sw.size(), 1u);
    EXPECT_EQ(sw[0].round, stats.round);
  }
  // Both switched at the one deadline: after the plan went out, within the round.
  EXPECT_GT(stats.lead.count(), 0);
  EXPECT_LE(stats.skew, stats.total);
}

TEST(Coordinator, GangsAlternateTogetherAndALoneJobIsNeverSwitched) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(config(4, 2, 60ms)));
  for (int i = 0; i < 4; ++i)
    c.add_agent("n" + std::to_string(i), test_secret());
  ASSERT_TRUE(all_connected(c, 4));
  proto::JobSubmit a{"a", 4, 2, "demand", {"/bin/true"}, "/", ""};
  proto::JobSubmit alone{"alone", 4, 2, "demand", {"/bin/true"}, "/", ""};
  auto ja = c.call([&] { return c.coordinator->submit(0, a); });      // n0,n1 slot 0
  auto jc = c.call([&] { return c.coordinator->submit(0, alone); });  // n2,n3 slot 0
  auto jb = c.call([&] { return c.coordinator->submit(0, a); });      // n0,n1 slot 1
  ASSERT_TRUE(ja && jb && jc);
  EXPECT_EQ(c.call([&] { return c.coordinator->matrix().find(*jb)->row; }), 1);

  // Wait for several alternations.
  ASSERT_TRUE(c.wait_for([&] { return c.coordinator->rounds().size() >= 6; }, 5000ms))
      << "no switch rounds";
  auto rounds = c.call([&] { return c.coordinator->rounds(); });
  for (const auto& r : rounds) {
    EXPECT_EQ(r.failed, 0u) << "round " << r.round << ": " << (r.errors.empty() ? "" : r.errors[0]);
    EXPECT_EQ(r.switched, r.nodes);
  }
  auto n0 = c.handlers[0]->switches_copy(), n1 = c.handlers[1]->switches_copy();
  auto n2 = c.handlers[2]->switches_copy(), n3 = c.handlers[3]->switches_copy();
  // The job alone on n2,n3 is started once and never stopped.
  for (const auto* node : {&n2, &n3}) {
    ASSERT_EQ(node->size(), 1u) << "the job alone on n2,n3 was switched after its start";
    EXPECT_TRUE(node->front().outgoing.empty());
    EXPECT_EQ(node->front().incoming, std::vector<JobId>{*jc});
  }
  ASSERT_GE(n0.size(), 4u);
  // n0 and n1 carry out the same rounds with the same jobs: the gang moves together.
  std::size_t k = std::min(n0.size(), n1.size());
  for (std::size_t i = 0; i < k; ++i) {
    EXPECT_EQ(n0[i].round, n1[i].round);
    EXPECT_EQ(n0[i].outgoing, n1[i].outgoing) << "round " << n0[i].round;
    EXPECT_EQ(n0[i].incoming, n1[i].incoming) << "round " << n0[i].round;
  }
  // After the first round (which starts the new jobs) a and b alternate.
  for (std::size_t i = 1; i < n0.size(); ++i) {
    ASSERT_EQ(n0[i].outgoing.size(), 1u);
    ASSERT_EQ(n0[i].incoming.size(), 1u);
    EXPECT_NE(n0[i].outgoing[0], n0[i].incoming[0]);
    EXPECT_EQ(n0[i].incoming[0],
              n0[i - 1].outgoing.empty() ? n0[i].incoming[0] : n0[i - 1].outgoing[0]);
  }
  auto jobs = c.call([&] { return c.coordinator->list_jobs(0); });
  ASSERT_EQ(jobs.jobs.size(), 3u);
  for (const auto& j : jobs.jobs)
    if (j.name == "alone") {
      EXPECT_EQ(j.state, "running");
    }
  // Skew: every node switched within a few milliseconds of the deadline.
  for (const auto& r : rounds)
    EXPECT_LT(r.skew, 50ms) << "round " << r.round;
}

TEST(Coordinator, BadRequestsGetClearErrors) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(config(2, 2)));
  auto submit = [&](proto::JobSubmit s) {
    return c.call([&] { return c.coordinator->submit(1000, s); });
  };
  auto r = submit({"x", 2, 0, "bogus", {"/bin/true"}, "/", ""});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("unknown paging policy 'bogus'"), std::string::npos);
  r = submit({"x", 5, 0, "demand", {"/bin/true"}, "/", ""});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("4 slots"), std::string::npos) << r.error().message();
  r = submit({"x", 1, 0, "demand", {}, "/", ""});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("no program"), std::string::npos);
  auto cancel = c.call([&] { return c.coordinator->cancel(1000, 99); });
  ASSERT_FALSE(cancel);
  EXPECT_EQ(cancel.error().code, Errc::not_found);
  auto reply = c.call([&] { return c.coordinator->handle_control(0, proto::Heartbeat{}); });
  ASSERT_TRUE(std::holds_alternative<proto::ErrorMsg>(reply));
  EXPECT_NE(std::get<proto::ErrorMsg>(reply).message.find("not a control request"),
            std::string::npos);
  // Nothing was placed by the failed requests.
  EXPECT_TRUE(c.call([&] { return c.coordinator->list_jobs(0); }).jobs.empty());
}

TEST(Coordinator, RestartedCoordinatorRecoversJobsFromItsJournal) {
  test::TempDir dir;
  auto cfg = config(2, 2);
  cfg.journal_path = dir / "journal";
  JobId a = 0, b = 0;
  {
    Cluster c;
    ASSERT_TRUE(c.start_coordinator(cfg));
    a = c.call([&] {
           return c.coordinator->submit(1000, {"a", 4, 0, "demand", {"/bin/a"}, "/", ""});
         }).value();
    b = c.call([&] {
           return c.coordinator->submit(1001, {"b", 2, 1, "adaptive", {"/bin/b"}, "/", ""});
         }).value();
    ASSERT_TRUE(c.call([&] { return c.coordinator->set_paging(1000, a, "selective"); }));
    ASSERT_TRUE(c.call([&] { return c.coordinator->set_quantum(0, 250ms); }));
  }
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(cfg));
  auto jobs = c.call([&] { return c.coordinator->list_jobs(0); }).jobs;
  ASSERT_EQ(jobs.size(), 2u) << "jobs were not recovered";
  EXPECT_EQ(jobs[0].job, a);
  EXPECT_EQ(jobs[0].paging, "selective");
  EXPECT_EQ(jobs[0].uid, 1000u);
  EXPECT_EQ(jobs[1].job, b);
  EXPECT_EQ(jobs[1].slot, 1u);
  EXPECT_EQ(c.call([&] { return c.coordinator->quantum(); }), 250ms);
  auto next = c.call([&] {
    return c.coordinator->submit(0, {"c", 1, 0, "demand", {"/bin/c"}, "/", ""});
  });
  ASSERT_TRUE(next);
  EXPECT_GT(*next, b) << "a recovered coordinator reused a job id";
  // An agent that connects now learns its jobs (adoption after restarts).
  c.add_agent("n0", test_secret());
  ASSERT_TRUE(c.wait_for([&] { return c.handlers[0]->assigned_copy().size() >= 2; }));
}

TEST(Coordinator, AgentThawsEverythingWhenTheCoordinatorIsLost) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(config(1, 2)));
  c.add_agent("n0", test_secret(), 300ms);
  ASSERT_TRUE(all_connected(c, 1));
  EXPECT_EQ(c.handlers[0]->lost.load(), 0);
  auto t0 = std::chrono::steady_clock::now();
  c.stop_coordinator();
  ASSERT_TRUE(c.wait_for([&] { return c.handlers[0]->lost.load() == 1; }, 3000ms))
      << "the agent never declared its coordinator lost";
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 1500ms) << "coordinator loss noticed too late";
}

// Heartbeats are skipped only for an agent that was sent something else since the last
// tick: an idle agent hears one every interval (not every other one, which would let an
// agent with a timeout under two intervals declare a live gangd lost).
TEST(Coordinator, AnIdleAgentHearsAHeartbeatEveryInterval) {
  Cluster c;
  auto cfg = config(1, 2);  // heartbeat 200 ms, no rounds (quantum 1 h)
  ASSERT_TRUE(c.start_coordinator(cfg));
  c.add_agent("n0", test_secret(), 350ms);
  ASSERT_TRUE(all_connected(c, 1));
  std::this_thread::sleep_for(2500ms);
  EXPECT_EQ(c.handlers[0]->lost.load(), 0)
      << "the agent went 350 ms without hearing from a live gangd";
  EXPECT_EQ(c.call([&] { return c.coordinator->agents_connected(); }), 1u);
}

TEST(Coordinator, ReconnectingAgentReplacesItsOldLink) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(config(1, 2)));
  c.add_agent("n0", test_secret());
  ASSERT_TRUE(all_connected(c, 1));
  ASSERT_TRUE(c.call([&] {
    return c.coordinator->submit(0, {"j", 2, 0, "demand", {"/bin/j"}, "/", ""});
  }));
  c.add_agent("n0", test_secret());  // the restarted agent (the old one is still up)
  ASSERT_TRUE(c.wait_for([&] { return !c.handlers[1]->assigned_copy().empty(); }))
      << "the new agent did not learn its job";
  EXPECT_EQ(c.call([&] { return c.coordinator->agents_connected(); }), 1u);
}

// The control socket: users see and act on their own jobs only, root on all. The users
// are uids made up by the test (SO_PEERCRED reports the connecting process's uid).
TEST(Coordinator, ControlSocketChecksCallerCredentials) {
  GANG_REQUIRE_ROOT();
  test::TempDir dir;
  ::chmod(dir.path().c_str(), 0755);  // the test users must reach the socket
  auto cfg = config(2, 2);
  cfg.control_socket = dir / "gangd.sock";
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(cfg));
  const auto sock = cfg.control_socket;
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u);

  auto root_job =
      control_request(sock, proto::JobSubmit{"rootjob", 1, 0, "demand", {"/bin/true"}, "/", ""});
  ASSERT_TRUE(root_job) << root_job.error().message();
  auto root_id = std::get<proto::JobSubmitted>(*root_job).job;

  // Runs `body` as uid/gid `uid` in a child process; returns its report ("" = passed).
  auto as_user = [&](uid_t uid, auto body) -> std::string {
    int fds[2];
    if (::pipe(fds) != 0) return "pipe failed";
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      std::string report;
      if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0)
        report = "cannot become uid " + std::to_string(uid);
      else
        report = body();
      (void)!::write(fds[1], report.data(), report.size());
      ::_exit(0);
    }
    ::close(fds[1]);
    std::string out;
    char buf[512];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
      out.append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return out;
  };

  const uid_t alice = 47011, bob = 47012;
  auto report = as_user(alice, [&]() -> std::string {
    auto sub =
        control_request(sock, proto::JobSubmit{"alicejob", 1, 0, "demand", {"/bin/true"}, "/", ""});
    if (!sub) return "alice cannot submit: " + sub.error().message();
    auto list = control_request(sock, proto::ListJobs{});
    if (!list) return "alice cannot list: " + list.error().message();
    const auto& jobs = std::get<proto::JobList>(*list).jobs;
    if (jobs.size() != 1 || jobs[0].name != "alicejob" || jobs[0].uid != alice)
      return "alice sees " + std::to_string(jobs.size()) + " jobs, expected only her own";
    auto cancel = control_request(sock, proto::JobCancel{root_id});
    if (cancel || cancel.error().code != Errc::not_permitted)
      return "alice could cancel root's job or got the wrong error";
    auto q = control_request(sock, proto::SetQuantum{1'000'000'000});
    if (q || q.error().code != Errc::not_permitted) return "alice could change the quantum";
    auto pol = control_request(sock, proto::SetPaging{root_id, "adaptive"});
    if (pol) return "alice could change the paging policy of root's job";
    return "";
  });
  EXPECT_EQ(report, "");

  auto alice_job = c.call([&] {
    for (const auto& j : c.coordinator->list_jobs(0).jobs)
      if (j.uid == alice) return j.job;
    return JobId{0};
  });
  ASSERT_NE(alice_job, 0u);
  report = as_user(bob, [&]() -> std::string {
    auto list = control_request(sock, proto::ListJobs{});
    if (!list) return "bob cannot list: " + list.error().message();
    if (!std::get<proto::JobList>(*list).jobs.empty()) return "bob sees other users' jobs";
    auto nodes = control_request(sock, proto::ListNodes{});
    if (!nodes) return "bob cannot list nodes";
    for (const auto& n : std::get<proto::NodeList>(*nodes).nodes)
      if (!n.jobs.empty()) return "bob sees job ids of others on node " + n.name;
    auto cancel = control_request(sock, proto::JobCancel{alice_job});
    if (cancel) return "bob cancelled alice's job";
    return "";
  });
  EXPECT_EQ(report, "");

  // Root sees and acts on everything.
  auto list = control_request(sock, proto::ListJobs{});
  ASSERT_TRUE(list);
  EXPECT_EQ(std::get<proto::JobList>(*list).jobs.size(), 2u);
  auto cancel = control_request(sock, proto::JobCancel{alice_job});
  EXPECT_TRUE(cancel) << cancel.error().message();

  // Garbage on the control socket: a clear error, the socket keeps serving.
  {
    boost::asio::io_context io;
    boost::asio::local::stream_protocol::socket s(io);
    s.connect(boost::asio::local::stream_protocol::endpoint(sock));
    std::vector<std::uint8_t> junk(64, 0xAB);
    boost::asio::write(s, boost::asio::buffer(junk));
    std::array<std::uint8_t, proto::kHeaderSize> h;
    boost::asio::read(s, boost::asio::buffer(h));
    auto hdr = proto::decode_header(h);
    ASSERT_TRUE(hdr);
    EXPECT_EQ(hdr->type, proto::MsgType::error);
  }
  EXPECT_TRUE(control_request(sock, proto::ListNodes{}));
}

TEST(Coordinator, MetricsReachJobAndNodeLists) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(config(2, 2)));
  c.add_agent("n0", test_secret());
  ASSERT_TRUE(all_connected(c, 1));
  auto id = c.call([&] {
    return c.coordinator->submit(0, {"m", 2, 0, "demand", {"/bin/m"}, "/", ""});
  });
  ASSERT_TRUE(id);
  // The report also claims a job that is not on n0: it must not be believed.
  auto other = c.call([&] {
    return c.coordinator->submit(0, {"o", 2, 1, "demand", {"/bin/o"}, "/", ""});
  });
  ASSERT_TRUE(other);
  c.handlers[0]->set_report(
      {1, 8 << 20, 4 << 20, {{*id, 123456, 0, 0, 0, 0}, {*other, 999, 0, 0, 0, 0}}});
  ASSERT_TRUE(c.wait_for([&] {
    auto nodes = c.coordinator->list_nodes(0).nodes;
    return nodes[0].mem_total == (8u << 20);
  })) << "no metrics arrived with the heartbeats";
  auto jobs = c.call([&] { return c.coordinator->list_jobs(0); }).jobs;
  for (const auto& j : jobs) {
    if (j.job == *id) {
      EXPECT_EQ(j.cpu_ns, 123456u);
    } else if (j.job == *other) {
      EXPECT_EQ(j.cpu_ns, 0u) << "a node set the CPU time of a job it does not host";
    }
  }
}

TEST(Coordinator, JobsOfANodeThatNeverComesBackFailOthersGoOn) {
  Cluster c;
  auto cfg = config(2, 2);
  cfg.heartbeat = 50ms;
  cfg.node_timeout = 300ms;
  ASSERT_TRUE(c.start_coordinator(cfg));
  c.add_agent("n0", test_secret());
  c.add_agent("n1", test_secret());
  ASSERT_TRUE(all_connected(c, 2));
  auto a = c.call([&] {
    return c.coordinator->submit(0, {"a", 2, 1, "demand", {"/bin/a"}, "/", ""});
  });
  auto b = c.call([&] {
    return c.coordinator->submit(0, {"b", 2, 1, "demand", {"/bin/b"}, "/", ""});
  });
  ASSERT_TRUE(a && b);
  ASSERT_EQ(c.call([&] { return c.coordinator->matrix().find(*b)->cells[0].node; }), 1u);
  c.call([&] {
    c.agents[1]->stop();  // n1 goes away for good
    return 0;
  });
  ASSERT_TRUE(c.wait_for(
      [&] {
        for (const auto& j : c.coordinator->list_jobs(0).jobs)
          if (j.job == *b) return j.state == "failed";
        return false;
      },
      3000ms))
      << "the job of the lost node did not fail";
  auto jobs = c.call([&] { return c.coordinator->list_jobs(0); }).jobs;
  for (const auto& j : jobs) {
    if (j.job == *b) {
      EXPECT_NE(j.reason.find("node n1 has been down"), std::string::npos) << j.reason;
    } else {
      EXPECT_EQ(j.state, "running") << "job " << j.job << " was affected by n1's loss";
    }
  }
  EXPECT_TRUE(c.call([&] { return c.coordinator->matrix().find(*a) != nullptr; }));
  EXPECT_TRUE(c.call([&] { return c.handlers[0]->released.empty(); }))
      << "n0 was told to release a job";
}

TEST(Coordinator, JobFailedWhileItsAgentWasAwayIsReleasedWhenTheAgentComesBack) {
  Cluster c;
  auto cfg = config(2, 2);
  cfg.heartbeat = 50ms;
  cfg.node_timeout = 300ms;
  ASSERT_TRUE(c.start_coordinator(cfg));
  c.add_agent("n0", test_secret());
  c.add_agent("n1", test_secret());
  ASSERT_TRUE(all_connected(c, 2));
  auto b = c.call([&] {
    return c.coordinator->submit(0, {"b", 2, 1, "demand", {"/bin/b"}, "/", ""});
  });
  auto a = c.call([&] {
    return c.coordinator->submit(0, {"a", 2, 1, "demand", {"/bin/a"}, "/", ""});
  });
  ASSERT_TRUE(a && b);
  auto node_of_b = c.call([&] { return c.coordinator->matrix().find(*b)->cells[0].node; });
  c.call([&] {
    c.agents[node_of_b]->stop();  // the agent crashes mid-switch
    return 0;
  });
  ASSERT_TRUE(c.wait_for(
      [&] {
        for (const auto& j : c.coordinator->list_jobs(0).jobs)
          if (j.job == *b) return j.state == "failed";
        return false;
      },
      3000ms))
      << "the job of the lost node did not fail";
  // The agent comes back (a restarted dynamosd, which adopted the job's frozen group).
  auto back = c.add_agent("n" + std::to_string(node_of_b), test_secret());
  ASSERT_TRUE(all_connected(c, 2));
  EXPECT_TRUE(c.wait_for([&] {
    std::lock_guard l(c.handlers[back]->mu);
    const auto& r = c.handlers[back]->released;
    return std::find(r.begin(), r.end(), *b) != r.end();
  })) << "the returning agent was never told to release the failed job";
  // Only once: a later reconnect owes nothing.
  EXPECT_EQ(c.call([&] { return c.handlers[back]->released.size(); }), 1u);
}
