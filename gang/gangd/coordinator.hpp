// gangd's core: the coordinator. One io_context thread runs everything: an acceptor
// for node agents (TCP, authenticated with the shared secret), an acceptor for the
// local control socket (Unix, callers identified by SO_PEERCRED), the quantum loop that
// advances the Ousterhout matrix and runs switch rounds, and a heartbeat loop.
//
// A switch round (switch_round) is two-phase:
//   1. PrepareSwitch to every node concerned; wait for every PrepareAck (or timeout).
//   2. SwitchAt(deadline) to the same nodes, deadline = now + lead; every agent switches
//      when its CLOCK_REALTIME reaches the deadline and sends a SwitchAck with timings.
// The round ends when every SwitchAck is in (or on timeout). The lead adapts: twice
// the delivery spread measured in the previous round (the latest agent's receipt of
// SwitchAt after it was sent), clamped to [min_switch_lead, max_switch_lead], so that
// every agent holds the deadline before it passes; agents that got it late are counted.
//
// State that must survive a restart (jobs, placements, paging policies, the quantum)
// is written to the journal before it is acknowledged to the caller.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/units.hpp"
#include "gang/auth.hpp"
#include "gang/hostfile.hpp"
#include "gang/gangd/journal.hpp"
#include "gang/gangd/matrix.hpp"
#include "gang/protocol.hpp"

namespace dynamos::gang {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Nanos = std::chrono::nanoseconds;

// "30s", "500ms", "250us", "2m", "1h", "100ns"; a bare number is seconds.
using dynamos::format_duration;  // base/units.hpp
using dynamos::parse_duration;

// The paging policies the CLI may name (extensions/paging implements them).
const std::vector<std::string>& paging_policies();

struct RoundStats;

struct CoordinatorConfig {
  std::vector<HostEntry> hosts;  // the nodes, from the hostfile
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 0;      // 0: any free port (see Coordinator::port())
  std::string control_socket;  // empty: no control socket
  std::string journal_path;    // empty: no journal (state is lost on restart)
  Secret secret;
  Nanos quantum = 30s;           // Slurm's default time slice
  bool run_quantum_loop = true;  // false: rounds only when asked (benchmarks)
  Nanos heartbeat = 1s;          // an agent silent for 3 intervals is down
  Nanos node_timeout = 60s;      // a node down this long fails its jobs (others go on)
  Nanos auth_timeout = 5s;
  Nanos prepare_timeout = 5s;
  Nanos switch_timeout = 5s;  // after the deadline
  Nanos switch_lead = 5ms;    // first round's lead; later rounds adapt
  Nanos min_switch_lead = 1ms;
  Nanos max_switch_lead = 500ms;
  int max_rows = 8;  // time slots in the matrix
  // Where gangd's log lines go (one line each, no newline); empty: standard error.
  std::function<void(const std::string&)> log;
  // Starts a newly placed job's ranks (gangd: the launcher, see gang/gangd/launch.hpp); its
  // nodes in placement order with their rank counts. Empty: jobs are only placed (tests
  // that attach processes themselves). An error refuses the submission.
  std::function<Result<void>(const JournalJob& job, const proto::JobSubmit& request)> launch;
  Nanos node_command_timeout = 30s;  // NodeCommand without a timeout of its own
  // Called with every finished switch round (gangd --round-log writes them as JSON).
  std::function<void(const RoundStats&)> round_log;
};

// What one switch round measured.
struct RoundStats {
  std::uint64_t round = 0;
  std::size_t nodes = 0;        // nodes the round was sent to
  std::size_t prepared = 0;     // PrepareAcks received with ok
  std::size_t switched = 0;     // SwitchAcks received with ok
  std::size_t failed = 0;       // acks with !ok, plus nodes that never answered
  std::size_t late = 0;         // agents that got SwitchAt after its deadline
  Nanos prepare_phase{};        // decision to last PrepareAck
  Nanos lead{};                 // SwitchAt sent to deadline
  Nanos total{};                // decision to last SwitchAck
  Nanos skew{};                 // first to last node switching
  Nanos delivery{};             // SwitchAt sent to the last agent receiving it
  Nanos max_switch_duration{};  // slowest node's switch
  Nanos running{};              // decision to the last node's incoming jobs thawed
  std::vector<std::string> errors;
};

class Coordinator : public std::enable_shared_from_this<Coordinator> {
 public:
  // Binds the TCP port and the control socket, opens and replays the journal. Jobs of
  // the journal are placed back in the matrix (warnings() says what could not be).
  static Result<std::shared_ptr<Coordinator>> create(asio::io_context& io,
                                                     CoordinatorConfig config);
  ~Coordinator();

  // Starts accepting, the heartbeat loop and (if configured) the quantum loop.
  void start();
  // Closes every socket and timer; the io_context then runs out of work.
  void stop();

  std::uint16_t port() const { return port_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  std::size_t agents_connected() const;
  const Matrix& matrix() const { return matrix_; }
  const std::vector<RoundStats>& rounds() const { return history_; }
  Nanos quantum() const { return quantum_; }

  // Runs a switch round: per node index, the jobs to stop and to start. Rounds are
  // serialised; call it from the io_context's thread (co_spawn).
  struct NodePlan {
    std::vector<JobId> outgoing, incoming;
  };
  asio::awaitable<RoundStats> switch_round(std::map<std::size_t, NodePlan> plan);
  // A round on every connected node with empty plans (for measurements).
  asio::awaitable<RoundStats> broadcast_round();

  // The control API, as the control socket serves it. `uid` is the caller's; root
  // (0) may act on every job, other users on their own only.
  Result<JobId> submit(std::uint32_t uid, const proto::JobSubmit& req);
  Result<void> cancel(std::uint32_t uid, JobId job);
  proto::JobList list_jobs(std::uint32_t uid) const;
  proto::NodeList list_nodes(std::uint32_t uid) const;
  Result<void> set_quantum(std::uint32_t uid, Nanos quantum);
  Result<void> set_paging(std::uint32_t uid, JobId job, const std::string& policy);
  // The launcher's report that the job's mpirun ended: the job leaves the matrix and
  // its groups, and stays in the job list with its exit code.
  Result<void> job_exited(std::uint32_t uid, const proto::JobExited& m);
  // Forwards an operation to nodes (gang/node_ops.hpp) and gathers their replies.
  asio::awaitable<proto::Message> node_command(std::uint32_t uid, proto::NodeCommand cmd);
  // Cycle stealing driven by gangd (root only): when enabled, every node with no
  // running job in the current slot gets `cyclesteal on POLICY`, the others
  // `cyclesteal on pause`, after every switch round; disabling sends `cyclesteal off`
  // to the nodes gangd set.
  Result<void> set_cyclesteal(std::uint32_t uid, const proto::SetCycleSteal& m);
  // Answers one control request (any message type) for a caller.
  proto::Message handle_control(std::uint32_t uid, const proto::Message& request);

 private:
  class AgentConn;
  class ControlConn;
  struct Job {
    Job() = default;
    explicit Job(JournalJob r) : rec(std::move(r)) {}
    JournalJob rec;
    std::uint64_t switches = 0;
    std::uint64_t cpu_ns = 0;
    std::map<std::size_t, std::uint64_t> cpu_by_node;
    std::map<std::size_t, std::uint64_t> majflt_by_node;
    std::uint64_t major_faults = 0;
    std::uint64_t submitted_ns = 0;
  };
  struct Node {
    std::string name;
    int slots = 1;
    std::shared_ptr<AgentConn> conn;                   // null while down
    std::chrono::steady_clock::time_point down_since;  // valid while conn is null
    std::optional<proto::MetricsReport> metrics;
    // Cycle stealing on the node as gangd knows it (NodeInfo::guest_policy): what its
    // last successful `cyclesteal` set, "unknown" after the agent (re)connects.
    std::string guest_policy = "unknown";
    bool guest_policy_by_gangd = false;  // set by idle-node driving (vs. an explicit command)
    std::string guest_policy_pending;    // asked by gangd, reply not yet in
  };
  struct Round;
  struct PendingCommand;

  Coordinator(asio::io_context& io, CoordinatorConfig config);
  Result<void> recover(JournalState& state);
  asio::awaitable<void> accept_agents();
  asio::awaitable<void> accept_control();
  asio::awaitable<void> quantum_loop();
  asio::awaitable<void> heartbeat_loop();
  asio::awaitable<void> wait_round(Round& r, std::set<std::size_t>& pending,
                                   std::chrono::steady_clock::time_point until);

  // Called by agent connections.
  Result<std::size_t> node_for(const std::string& name) const;
  void agent_registered(std::size_t node, std::shared_ptr<AgentConn> conn);
  void agent_gone(std::size_t node, const AgentConn* conn);
  void on_prepare_ack(std::size_t node, const proto::PrepareAck& ack);
  void on_switch_ack(std::size_t node, const proto::SwitchAck& ack);
  void on_metrics(std::size_t node, const proto::MetricsReport& m);
  void on_node_reply(std::size_t node, const proto::NodeReply& m);
  // Cycle stealing (see set_cyclesteal).
  void drive_cyclesteal();
  void send_cyclesteal(std::size_t node, const std::string& policy);
  bool on_cyclesteal_reply(std::size_t node, const proto::NodeReply& m);
  void note_cyclesteal_command(const proto::NodeCommand& cmd,
                               const std::vector<proto::NodeResult>& results);

  void send_to(std::size_t node, const proto::Message& m);
  proto::JobAssign assign_message(const Job& job, std::size_t node) const;
  void replan();  // wake the quantum loop to re-derive the running set now
  void fail_jobs_of_lost_nodes();
  // Keeps an ending job in the job list (ended_) with its state, exit code and reason.
  void record_end(JobId id, const std::string& state, std::int32_t exit_code,
                  const std::string& reason);
  bool may_act(std::uint32_t uid, const Job& job) const { return uid == 0 || uid == job.rec.uid; }
  Result<void> journal(const std::function<Result<void>(Journal&)>& write);

  asio::io_context& io_;
  CoordinatorConfig config_;
  asio::ip::tcp::acceptor acceptor_;
  std::optional<asio::local::stream_protocol::acceptor> control_;
  std::uint16_t port_ = 0;
  std::optional<Journal> journal_;
  Matrix matrix_;
  std::vector<Node> nodes_;
  std::map<JobId, Job> jobs_;
  std::map<JobId, proto::JobInfo> ended_;  // failed jobs, for the job list (not journaled)
  JobId next_id_ = 1;
  Nanos quantum_;
  Nanos lead_;
  asio::steady_timer quantum_timer_;
  asio::steady_timer heartbeat_timer_;
  asio::steady_timer round_gate_;  // serialises rounds
  bool round_running_ = false;
  bool replan_ = false;
  bool stopped_ = false;
  std::uint64_t round_id_ = 0;
  Round* current_ = nullptr;
  std::vector<RoundStats> history_;
  std::vector<std::string> warnings_;
  std::set<std::shared_ptr<ControlConn>> controls_;
  std::vector<std::weak_ptr<AgentConn>> conns_;
  std::uint64_t next_request_ = 1;
  // NodeRequests awaiting their reply: request id -> (command, node index).
  std::map<std::uint64_t, std::pair<PendingCommand*, std::size_t>> pending_requests_;
  // Cycle stealing: driven on idle nodes, its policy there, and gangd's own requests
  // in flight (request id -> node, policy).
  bool cyclesteal_idle_ = false;
  std::string cyclesteal_policy_ = "linger";
  std::map<std::uint64_t, std::pair<std::size_t, std::string>> cyclesteal_requests_;
};

// A blocking request to gangd's control socket, for the CLI: sends `request`, returns
// the reply. An ErrorMsg reply becomes an Error with its code and message.
Result<proto::Message> control_request(const std::string& socket_path,
                                       const proto::Message& request, Nanos timeout = 10s);

}  // namespace dynamos::gang
