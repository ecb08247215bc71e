// gangd's coordinator: what gangd_main, the tests and the benchmarks drive. The
// design (what a switch round is, who drives it, which file does what) is at the top
// of coordinator.cpp; the internals are in coordinator_core.hpp.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/log.hpp"
#include "base/units.hpp"
#include "gang/auth.hpp"
#include "gang/gangd/journal.hpp"
#include "gang/gangd/matrix.hpp"
#include "gang/hostfile.hpp"
#include "gang/protocol.hpp"

namespace dynamos::gang {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Nanos = std::chrono::nanoseconds;

struct RoundStats;

struct CoordinatorConfig {
  std::vector<HostEntry> hosts;  // the nodes, from the hostfile
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 0;      // 0: any free port (see Coordinator::port())
  std::string control_socket;  // empty: no control socket
  std::string journal_path;    // empty: no journal (state is lost on restart)
  Secret secret;
  // Tag every frame between gangd and agents (gang/auth.hpp). Off only to measure
  // what it costs (bench_gang_coordinator_scale --frame-auth off); agents must agree.
  bool frame_auth = true;
  Nanos quantum = 30s;           // Slurm's default time slice
  bool run_quantum_loop = true;  // false: rounds only when asked (benchmarks)
  Nanos heartbeat = 1s;          // an agent silent for 3 intervals is down
  Nanos node_timeout = 60s;      // a node down this long fails its jobs (others go on)
  Nanos auth_timeout = 5s;
  // Connections gangd keeps at once; more are accepted and closed at once (and logged,
  // at most once a minute). Agents: 0 means twice the hostfile's nodes plus 64 (a
  // reconnecting agent briefly holds two). Control: CLI callers.
  std::size_t max_agent_connections = 0;
  std::size_t max_control_connections = 256;
  Nanos control_idle_timeout = 5min;  // a control caller silent this long is closed
  Nanos switch_timeout = 5s;          // after the deadline
  Nanos switch_lead = 5ms;            // first round's lead; later rounds adapt
  Nanos min_switch_lead = 1ms;
  Nanos max_switch_lead = 500ms;
  int max_rows = 8;  // time slots in the matrix
  // Where gangd's log lines go (one line each, no newline); empty: standard error.
  log::Logger log;
  // Starts a newly placed job's ranks (gangd: the launcher, see gang/gangd/launch.hpp); its
  // nodes in placement order with their rank counts. Empty: jobs are only placed (tests
  // that attach processes themselves). An error refuses the submission.
  std::function<Result<void>(const JournalJob& job, const proto::JobSubmit& request)> launch;
  Nanos node_command_timeout = 30s;  // NodeCommand without a timeout of its own
  // Called with every finished switch round (gangd --round-log writes them as JSON).
  std::function<void(const RoundStats&)> round_log;
  // The scheduler (queue.hpp, history.hpp): a node's committed memory stays within
  // `overcommit` times its memory for jobs whose paging policy pages out at switches,
  // `overcommit_demand` under demand paging.
  double overcommit = 1.5;
  double overcommit_demand = 1.0;
  std::uint64_t default_mem_per_rank = 0;  // bytes a rank when a job asks none
  std::size_t history_limit = 10'000;      // ended jobs kept in the history
  std::string sched_journal_path;          // empty: <journal_path>.sched (none without one)
  Nanos queue_interval = 1s;               // the queue retried, time limits enforced
  std::string hostfile_path;               // reread by reconfigure() (SIGHUP); empty: cannot be
};

// What one switch round measured.
struct RoundStats {
  std::uint64_t round = 0;
  std::size_t nodes = 0;        // nodes the round was sent to
  std::size_t switched = 0;     // SwitchAcks received with ok
  std::size_t failed = 0;       // acks with !ok, plus nodes that never answered
  std::size_t late = 0;         // agents that got their SwitchOrder after its deadline
  std::size_t unprepared = 0;   // agents whose prepare failed (they switched all the same)
  Nanos send{};                 // decision to the last SwitchOrder sent
  Nanos lead{};                 // first SwitchOrder sent to the deadline
  Nanos total{};                // decision to last SwitchAck
  Nanos skew{};                 // first to last node switching
  Nanos delivery{};             // first SwitchOrder sent to the last agent receiving it
  Nanos max_switch_duration{};  // slowest node's switch
  Nanos running{};              // decision to the last node's incoming jobs thawed
  std::vector<std::string> errors;
};

class CoordinatorCore;

class Coordinator {
 public:
  // Binds the TCP port and the control socket, opens and replays the journal. Jobs of
  // the journal are placed back in the matrix (warnings() says what could not be).
  static Result<std::shared_ptr<Coordinator>> create(asio::io_context& io,
                                                     CoordinatorConfig config);
  ~Coordinator();
  void start();  // accept agents and callers, heartbeats, the quantum loop (if configured)
  void stop();   // close every socket and timer; the io_context then runs out of work

  // A switch round on every connected node with empty plans (measurements; the quantum
  // loop runs the real ones). Call from the io_context's thread (co_spawn).
  asio::awaitable<RoundStats> broadcast_round();

  // The control API, as the control socket serves it: one request (any message type)
  // of caller `uid` (root, 0, may act on every job; others on their own only).
  proto::Message handle_control(std::uint32_t uid, const proto::Message& request);
  // An operation forwarded to nodes (gang/node_ops.hpp), their replies gathered.
  asio::awaitable<proto::Message> node_command(std::uint32_t uid, proto::NodeCommand cmd);
  // The requests handle_control serves, typed.
  Result<JobId> submit(std::uint32_t uid, const proto::JobSubmit& req);
  Result<void> cancel(std::uint32_t uid, JobId job);
  Result<void> job_exited(std::uint32_t uid, const proto::JobExited& m);
  Result<void> set_quantum(std::uint32_t uid, Nanos quantum);
  Result<void> set_paging(std::uint32_t uid, JobId job, const std::string& policy);
  Result<void> set_cyclesteal(std::uint32_t uid, const proto::SetCycleSteal& m);
  proto::JobList list_jobs(std::uint32_t uid) const;
  proto::NodeList list_nodes(std::uint32_t uid) const;
  // Rereads the hostfile: new nodes join, nodes no longer listed take no new job (their
  // jobs finish). What changed, or why nothing did. Root only (SIGHUP: gangd itself).
  Result<std::string> reconfigure(std::uint32_t uid);

  // What it holds.
  std::uint16_t port() const;
  const std::vector<std::string>& warnings() const;
  std::size_t agents_connected() const;
  const Matrix& matrix() const;
  const std::vector<RoundStats>& rounds() const;
  Nanos quantum() const;

 private:
  explicit Coordinator(std::shared_ptr<CoordinatorCore> core) : core_(std::move(core)) {}
  std::shared_ptr<CoordinatorCore> core_;
};

}  // namespace dynamos::gang
