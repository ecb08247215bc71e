// The agent's side of the gang protocol, shared by dynamosd and by the simulated
// agents of tests and benchmarks. An AgentSession connects to gangd over TCP,
// authenticates (mutually, see gang/auth.hpp), and then carries out what gangd asks
// through a SwitchHandler: the node-specific work (freezing cgroups, running the paging
// extension) lives in the handler, the protocol and its timing live here.
//
// Timing of a round, as seen by the agent (one message each way):
//   SwitchOrder -> handler.prepare() -> wait until the deadline (CLOCK_REALTIME)
//              -> handler.switch_now() -> SwitchAck (receipt time, prepare time, switch
//                 start, duration)
// A SwitchOrder that arrives after its deadline is carried out at once; one that arrives
// while an earlier round still waits for its deadline replaces it (gangd gave up on
// that round).
//
// Coordinator loss: if nothing is heard from gangd for the coordinator timeout (three
// heartbeat intervals unless configured), handler.coordinator_lost() is called once,
// so that the node thaws every job (a job is never left frozen), and the session
// reconnects with backoff. Everything runs on the session's executor; the handler is
// called on that thread and should return quickly (long work belongs on a worker).
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/error.hpp"
#include "base/log.hpp"
#include "gang/auth.hpp"
#include "gang/protocol.hpp"

namespace dynamos::gang {

namespace asio = boost::asio;
class FrameReader;

// What a node does when gangd asks. Only switch_now is required.
class SwitchHandler {
 public:
  virtual ~SwitchHandler() = default;
  virtual void welcomed(const proto::Welcome&) {}
  // gangd's quantum changed (`dynamos set quantum=`); Welcome carries the one in force.
  virtual void quantum_changed(std::uint64_t /*quantum_ns*/) {}
  // A job has ranks here (or its paging policy or running state changed).
  virtual void job_assigned(const proto::JobAssign&) {}
  virtual void job_released(const proto::JobRelease&) {}
  // On receipt of the order: get ready (e.g. start paging out the outgoing job). An
  // error is reported to gangd in the SwitchAck; the switch still follows.
  virtual Result<void> prepare(const proto::SwitchOrder&) { return {}; }
  // At the deadline: freeze `outgoing`, thaw `incoming`.
  virtual Result<void> switch_now(const proto::SwitchOrder& round) = 0;
  // When the last switch_now thawed its incoming jobs (CLOCK_REALTIME ns); 0: at its end.
  virtual std::uint64_t last_running_ns() const { return 0; }
  // gangd has been silent too long: thaw every job.
  virtual void coordinator_lost() {}
  // Sent with every heartbeat when it returns a report.
  virtual std::optional<proto::MetricsReport> metrics() { return std::nullopt; }
  // An operation on the node (gang/node_ops.hpp), already permitted by gangd. Runs on
  // the session's thread: keep it short (no heartbeat is sent meanwhile).
  virtual Result<std::string> node_request(const proto::NodeRequest& r) {
    return fail(Errc::unsupported, "this node does not support '" + r.op + "'");
  }
  // The same, answered later: a handler that runs long operations on a worker calls
  // `done` from there (any thread: the session posts the reply to its own). Default:
  // node_request, answered at once.
  using NodeReplyFn = std::function<void(Result<std::string>)>;
  virtual void node_request_async(const proto::NodeRequest& r, NodeReplyFn done) {
    done(node_request(r));
  }
};

struct AgentConfig {
  std::string coordinator_host = "127.0.0.1";
  std::uint16_t coordinator_port = 0;
  std::string node;  // this node's name, as in gangd's hostfile
  Secret secret;
  bool frame_auth = true;  // must match gangd's (CoordinatorConfig::frame_auth)
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(5);  // connect + handshake
  std::chrono::nanoseconds coordinator_timeout{0};  // 0: three heartbeats (from Welcome)
  bool reconnect = true;
  std::chrono::nanoseconds reconnect_min = std::chrono::milliseconds(100);
  std::chrono::nanoseconds reconnect_max = std::chrono::seconds(5);
  // Log lines (no newline); empty: standard error.
  log::Logger log;
};

class AgentSession : public std::enable_shared_from_this<AgentSession> {
 public:
  enum class State { idle, connecting, connected, stopped };

  // The handler must outlive the session.
  static std::shared_ptr<AgentSession> create(asio::any_io_executor ex, AgentConfig config,
                                              SwitchHandler& handler);
  ~AgentSession();

  void start();
  void stop();

  State state() const { return state_; }
  // The last thing that went wrong (refused authentication, lost link...).
  const std::optional<Error>& last_error() const { return last_error_; }
  std::uint32_t node_index() const { return node_index_; }
  std::uint64_t rounds_switched() const { return rounds_switched_; }
  // Sends a metrics report now (when connected).
  void send(const proto::Message& m);

 private:
  struct Link;
  AgentSession(asio::any_io_executor ex, AgentConfig config, SwitchHandler& handler);
  asio::awaitable<void> run();
  asio::awaitable<Result<void>> session();
  asio::awaitable<Result<void>> handshake(Link& link, FrameReader& buf);
  asio::awaitable<void> watchdog();
  asio::awaitable<void> heartbeats(std::shared_ptr<Link> link);
  void schedule_switch(const proto::SwitchOrder& order);
  void carry_out(std::uint64_t round);
  bool dispatch(proto::Message& m);
  std::chrono::nanoseconds coordinator_timeout() const;
  void log(const std::string& line, log::Level level = log::Level::info) const;

  asio::any_io_executor ex_;
  AgentConfig config_;
  SwitchHandler& handler_;
  State state_ = State::idle;
  std::shared_ptr<Link> link_;
  asio::steady_timer watchdog_timer_;
  asio::steady_timer backoff_timer_;
  std::optional<Error> last_error_;
  bool fatal_ = false;  // refused by gangd: reconnecting would not help
  std::uint32_t node_index_ = 0;
  std::chrono::nanoseconds heartbeat_{std::chrono::seconds(1)};
  std::chrono::steady_clock::time_point last_heard_;
  bool lost_reported_ = false;
  // The round waiting for its deadline: its order, its acknowledgement so far, its link.
  struct Pending {
    proto::SwitchOrder order;
    proto::SwitchAck ack;
    std::shared_ptr<Link> link;
  };
  std::optional<Pending> pending_;
  asio::steady_timer switch_timer_;
  std::uint64_t rounds_switched_ = 0;
};

}  // namespace dynamos::gang
