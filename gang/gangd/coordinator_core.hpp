// The coordinator's internals, shared by its files (see the top of coordinator.cpp):
// coordinator.cpp (construction, recovery, start and stop), agents.cpp (agent
// connections, heartbeats, node timeouts), rounds.cpp (the quantum loop and switch
// rounds), control.cpp (the control socket and its requests) and cyclesteal.cpp
// (cycle stealing on idle nodes). Everything runs on the io_context's one thread.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "gang/gangd/coordinator.hpp"
#include "gang/gangd/history.hpp"
#include "gang/gangd/queue.hpp"
#include "gang/protocol_io.hpp"

namespace dynamos::gang {

using steady = std::chrono::steady_clock;

// An accept loop's answer to failures and floods. accept() errors such as EMFILE repeat
// at once while the backlog holds a connection, so the loop waits (10 ms doubling to
// 1 s) instead of spinning; log lines are rate-limited to one a minute with the count
// of those left out, so a flood cannot fill the disk.
class AcceptGuard {
 public:
  explicit AcceptGuard(asio::io_context& io) : timer_(io) {}
  // After a failed accept: logs (rate-limited) and waits before the next try.
  asio::awaitable<void> failed(const std::string& what, const error_code& ec,
                               const log::Logger& log) {
    note(what + ": " + ec.message(), log);
    timer_.expires_after(backoff_);
    backoff_ = std::min<Nanos>(2 * backoff_, std::chrono::seconds(1));
    error_code ignored;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  void accepted() { backoff_ = std::chrono::milliseconds(10); }
  // A rate-limited log line.
  void note(const std::string& line, const log::Logger& log) {
    auto now = steady::now();
    if (now - last_log_ < std::chrono::minutes(1) && last_log_ != steady::time_point{}) {
      ++suppressed_;
      return;
    }
    std::string more =
        suppressed_ ? " (" + std::to_string(suppressed_) + " more like it in the last minute)" : "";
    log.warning(line + more);
    last_log_ = now;
    suppressed_ = 0;
  }
  void cancel() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
  Nanos backoff_ = std::chrono::milliseconds(10);
  steady::time_point last_log_{};
  std::size_t suppressed_ = 0;
};

class CoordinatorCore : public std::enable_shared_from_this<CoordinatorCore> {
 public:
  class AgentConn;    // agents.cpp
  class ControlConn;  // control.cpp

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
    std::shared_ptr<AgentConn> conn;  // null while down
    steady::time_point down_since;    // valid while conn is null
    std::optional<proto::MetricsReport> metrics;
    // Cycle stealing on the node as gangd knows it (NodeInfo::guest_policy): what its
    // last successful `cyclesteal` set, "unknown" after the agent (re)connects.
    std::string guest_policy = "unknown";
    bool guest_policy_by_gangd = false;  // set by idle-node driving (vs. an explicit command)
    std::string guest_policy_pending;    // asked by gangd, reply not yet in
    // Jobs that ended while the node was down: released (thawed and killed by the
    // agent, never left frozen) as soon as it registers again.
    std::vector<proto::JobRelease> owed_releases;
  };
  // Per node index, the jobs to stop and to start in a round.
  struct NodePlan {
    std::vector<JobId> outgoing, incoming;
  };
  // A switch round in progress (rounds.cpp); acks and lost agents update it.
  struct Round {
    explicit Round(asio::io_context& io) : wake(io) {}
    asio::steady_timer wake;
    std::vector<std::uint8_t> awaiting;  // by node index: its SwitchAck is still due
    std::size_t pending = 0;             // how many are
    RoundStats stats;
    std::uint64_t sent_ns = 0, deadline_ns = 0;
    std::uint64_t first_switch = UINT64_MAX, last_switch = 0, last_receipt = 0;
    std::uint64_t decision_ns = 0, last_running = 0;
  };
  // A NodeCommand waiting for its nodes' replies (control.cpp).
  struct PendingCommand {
    explicit PendingCommand(asio::io_context& io) : wake(io) {}
    asio::steady_timer wake;
    std::vector<proto::NodeResult> results;   // one per node, in the order asked
    std::map<std::size_t, std::size_t> slot;  // node index -> index in results
    std::size_t pending = 0;
  };

  CoordinatorCore(asio::io_context& io, CoordinatorConfig config);
  ~CoordinatorCore();

  // --- coordinator.cpp: life cycle
  static Result<std::shared_ptr<CoordinatorCore>> create(asio::io_context& io,
                                                         CoordinatorConfig config);
  Result<void> listen_agents();
  Result<void> listen_control();
  Result<void> recover(JournalState& state);
  void start();
  void stop();

  // --- agents.cpp: agent connections, heartbeats, node timeouts
  asio::awaitable<void> accept_agents();
  asio::awaitable<void> heartbeat_loop();
  Result<std::size_t> node_for(const std::string& name) const;
  void agent_registered(std::size_t node, std::shared_ptr<AgentConn> conn);
  void agent_gone(std::size_t node, const AgentConn* conn);
  void on_metrics(std::size_t node, const proto::MetricsReport& m);
  void fail_jobs_of_lost_nodes();
  void send_to(std::size_t node, const proto::Message& m);
  bool send_frame_to(std::size_t node, const Frame& f);  // false: the node is down
  void close_agents();
  std::size_t agents_connected() const;
  proto::JobAssign assign_message(const Job& job, std::size_t node) const;

  // --- rounds.cpp: the quantum loop and switch rounds
  asio::awaitable<void> quantum_loop();
  // Rounds are serialised; call from the io_context's thread.
  asio::awaitable<RoundStats> switch_round(std::map<std::size_t, NodePlan> plan);
  asio::awaitable<RoundStats> broadcast_round();
  void send_plans(Round& r, const std::map<std::size_t, NodePlan>& plan);
  void on_switch_ack(std::size_t node, const proto::SwitchAck& ack);
  void replan();  // wake the quantum loop to re-derive the running set now
  void finish_round(Round& r);
  void round_lost_node(std::size_t node);  // its agent disconnected during a round

  // --- control.cpp: the control socket and its requests
  asio::awaitable<void> accept_control();
  void close_controls();
  proto::Message handle_control(std::uint32_t uid, const proto::Message& request);
  Result<JobId> submit(std::uint32_t uid, const proto::JobSubmit& req);
  Result<void> cancel(std::uint32_t uid, JobId job);
  Result<void> job_exited(std::uint32_t uid, const proto::JobExited& m);
  Result<void> set_quantum(std::uint32_t uid, Nanos quantum);
  Result<void> set_paging(std::uint32_t uid, JobId job, const std::string& policy);
  proto::JobList list_jobs(std::uint32_t uid, bool all = false) const;  // fits one message
  proto::JobInfo job_info(JobId id, const Job& job) const;
  proto::NodeList list_nodes(std::uint32_t uid) const;
  asio::awaitable<proto::Message> node_command(std::uint32_t uid, proto::NodeCommand cmd);
  Result<std::vector<std::size_t>> command_targets(std::uint32_t uid,
                                                   const proto::NodeCommand& cmd);
  void on_node_reply(std::size_t node, const proto::NodeReply& m);
  void commands_lost_node(std::size_t node);  // its agent disconnected: fail its requests
  // Ends a job: journal first, then the job list (ended_), its nodes, the matrix.
  Result<void> end_job(JobId id, const std::string& state, std::int32_t exit_code,
                       const std::string& reason, const std::string& why);
  // Keeps an ending job in the job list (ended_) with its state, exit code and reason.
  void record_end(JobId id, const std::string& state, std::int32_t exit_code,
                  const std::string& reason);
  bool may_act(std::uint32_t uid, const Job& job) const { return uid == 0 || uid == job.rec.uid; }
  Result<void> journal(const std::function<Result<void>(Journal&)>& write);
  Result<void> start_job(JobId id, std::uint32_t uid, const std::string& name,
                         const proto::JobSubmit& req, const Placement& placed);

  // --- queue_ops.cpp: the pending queue, memory, time limits, history, node states
  Result<void> recover_sched();
  asio::awaitable<void> queue_loop();
  Result<JobId> enqueue(std::uint32_t uid, const proto::JobSubmit& req, const std::string& name);
  // One scheduling pass (queue.hpp); starts what it places. Launch errors by job.
  std::map<JobId, Error> schedule();
  Request request_of(const proto::JobSubmit& req) const;
  void sync_nodes();  // drained nodes and node memory into the matrix
  Result<void> cancel_pending(std::uint32_t uid, JobId id);
  void end_timed_out();
  Result<void> history_end(JobId id, const std::string& state, std::int32_t exit_code,
                           const std::string& reason);
  void list_queue(std::uint32_t uid, bool all, proto::JobList& out) const;
  void describe_running(JobId id, proto::JobInfo& info) const;
  void describe_node(std::size_t n, proto::NodeInfo& info) const;
  std::optional<proto::Message> sched_control(std::uint32_t uid, const proto::Message& m);
  Result<void> hold(std::uint32_t uid, JobId id, bool held);
  Result<JobId> requeue(std::uint32_t uid, JobId id);
  Result<void> node_admin(std::uint32_t uid, const proto::NodeAdmin& m);
  proto::JobList list_history(std::uint32_t uid, std::uint64_t since_ns) const;
  Result<std::string> reconfigure(std::uint32_t uid);
  std::set<std::string> removed_nodes_;  // gone from the hostfile since gangd started

  // --- cyclesteal.cpp: cycle stealing on idle nodes
  Result<void> set_cyclesteal(std::uint32_t uid, const proto::SetCycleSteal& m);
  void drive_cyclesteal();
  void send_cyclesteal(std::size_t node, const std::string& policy);
  bool on_cyclesteal_reply(std::size_t node, const proto::NodeReply& m);
  void note_cyclesteal_command(const proto::NodeCommand& cmd,
                               const std::vector<proto::NodeResult>& results);
  void forget_cyclesteal(std::size_t node);  // the agent (re)connected

  asio::io_context& io_;
  CoordinatorConfig config_;
  asio::ip::tcp::acceptor acceptor_;
  std::optional<asio::local::stream_protocol::acceptor> control_;
  std::uint16_t port_ = 0;
  std::optional<Journal> journal_;
  Matrix matrix_;
  std::vector<Node> nodes_;
  std::unordered_map<std::string, std::size_t> node_index_;  // name -> index in nodes_
  std::size_t next_sweep_ = 64;  // conns_ size at which closed ones are swept out
  std::optional<AcceptGuard> agent_accept_, control_accept_;
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
  // The scheduler (queue_ops.cpp): pending, running and ended jobs' records, why each
  // pending job waits.
  SchedJournal sched_journal_ = SchedJournal::in_memory(10'000);
  SchedState sched_;
  std::map<JobId, std::string> pending_reason_;
  asio::steady_timer queue_timer_{io_};
};

}  // namespace dynamos::gang
