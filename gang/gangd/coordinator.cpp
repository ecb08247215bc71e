// gangd's coordinator.
//
// One io_context thread runs everything: an acceptor for node agents (TCP,
// authenticated with the shared secret), an acceptor for the local control socket
// (Unix, callers identified by SO_PEERCRED), the quantum loop and a heartbeat loop.
//
// Who drives what. The quantum loop (rounds.cpp) drives the gang: every quantum it
// advances the Ousterhout matrix to its next time slot, or re-derives the running set
// at once when a submission, a cancellation or a job's end asked it to (replan), and
// runs one switch round with the jobs that stop and start on each node. After every
// round it lets cycle stealing (cyclesteal.cpp) follow the nodes that became idle or
// busy. The heartbeat loop (agents.cpp) marks silent agents down and fails the jobs of
// nodes down longer than node_timeout. Control requests (control.cpp) change the
// matrix and then ask the quantum loop to replan.
//
// A switch round (Slurm's gang.c, with a common deadline) is one message each way:
// a SwitchOrder(deadline, outgoing, incoming) to every node concerned, deadline = now +
// lead; every agent prepares at once, switches when its CLOCK_REALTIME reaches the
// deadline and sends a SwitchAck with timings. The round ends when every SwitchAck is
// in (or on timeout). Rounds are serialised. The lead adapts: the delivery measured in
// the previous round (the latest agent's receipt after the first plan was sent) plus a
// quarter and 1 ms, twice the delivery after a round with late agents, clamped to
// [min_switch_lead, max_switch_lead], so that every agent holds the deadline before it
// passes; agents that got it late switch at once and are counted. A node whose prepare
// failed still switches: the gang stays together on every node that can follow.
// (Protocol versions 1-5 sent the deadline in a second message, once every node had
// acknowledged the plan: four messages a node instead of two, which at 10,000 nodes
// cost more than the 100 ms a round may take; docs/gang.md.)
//
// State that must survive a restart (jobs, placements, paging policies, the quantum)
// is written to the journal before it is acknowledged to the caller.
//
// Files: coordinator.cpp (this: construction, recovery, start, stop, the public verbs),
// agents.cpp (Slurm's agent.c + ping_nodes.c), rounds.cpp (gang.c), control.cpp
// (proc_req.c), cyclesteal.cpp (idle-node cycle stealing); coordinator_core.hpp holds
// the state they share.
#include "gang/gangd/coordinator.hpp"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>

#include "gang/gangd/coordinator_core.hpp"

namespace dynamos::gang {

using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;

// --- construction and recovery -------------------------------------------------------

CoordinatorCore::CoordinatorCore(asio::io_context& io, CoordinatorConfig config)
    : io_(io),
      config_(std::move(config)),
      acceptor_(io),
      matrix_(
          [&] {
            std::vector<Matrix::NodeSpec> n;
            for (const auto& h : config_.hosts)
              n.push_back({h.name, h.slots});
            return n;
          }(),
          config_.max_rows),
      quantum_(config_.quantum),
      lead_(config_.switch_lead),
      quantum_timer_(io),
      heartbeat_timer_(io),
      round_gate_(io) {
  round_gate_.expires_at(steady::time_point::max());
  for (const auto& h : config_.hosts) {
    node_index_.emplace(h.name, nodes_.size());
    nodes_.push_back(Node{h.name, h.slots, nullptr, steady::now(), {}, "unknown", false, {}, {}});
  }
  if (!config_.log) config_.log = log::sink();
}

CoordinatorCore::~CoordinatorCore() = default;

Result<std::shared_ptr<CoordinatorCore>> CoordinatorCore::create(asio::io_context& io,
                                                                 CoordinatorConfig config) {
  if (config.hosts.empty())
    return fail(Errc::invalid_argument, "gangd needs nodes: give a hostfile");
  if (config.secret.bytes().size() < 16)
    return fail(Errc::invalid_argument, "gangd needs the cluster's shared secret");
  auto c = std::make_shared<CoordinatorCore>(io, std::move(config));
  if (auto ok = c->listen_agents(); !ok) return std::unexpected(ok.error());
  if (auto ok = c->listen_control(); !ok) return std::unexpected(ok.error());
  if (!c->config_.journal_path.empty()) {
    JournalState state;
    auto j = Journal::open(c->config_.journal_path, state);
    if (!j) return std::unexpected(j.error());
    c->journal_.emplace(std::move(*j));
    for (auto& w : state.warnings)
      c->warnings_.push_back(w);
    if (auto ok = c->recover(state); !ok) return std::unexpected(ok.error());
  }
  if (auto ok = c->recover_sched(); !ok) return std::unexpected(ok.error());
  c->matrix_.recompute();
  for (const auto& w : c->warnings_)
    c->config_.log.warning(w);
  return c;
}

Result<void> CoordinatorCore::listen_agents() {
  error_code ec;
  auto addr = asio::ip::make_address(config_.listen_address, ec);
  if (ec)
    return fail(Errc::invalid_argument,
                "listen address '" + config_.listen_address + "': " + ec.message());
  tcp::endpoint ep(addr, config_.port);
  auto where = "listen on " + config_.listen_address + ":" + std::to_string(config_.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail_errno(ec.value(), where);
  port_ = acceptor_.local_endpoint().port();
  return {};
}

Result<void> CoordinatorCore::listen_control() {
  const auto& path = config_.control_socket;
  if (path.empty()) return {};
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return fail(Errc::invalid_argument, "control socket path '" + path + "' is too long");
  error_code ec;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return fail(Errc::invalid_argument,
                  "control socket path '" + path + "' exists and is not a socket");
    // A live gangd answers; a stale socket from a crash does not and is replaced.
    unix_socket::socket probe(io_);
    probe.connect(unix_socket::endpoint(path), ec);
    if (!ec) return fail(Errc::busy, "another gangd is listening on " + path);
    ::unlink(path.c_str());
  }
  control_.emplace(io_);
  control_->open(unix_socket(), ec);
  if (!ec) control_->bind(unix_socket::endpoint(path), ec);
  if (!ec) control_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail_errno(ec.value(), "listen on control socket " + path);
  // Every local user may connect; what each may do is decided by SO_PEERCRED.
  if (::chmod(path.c_str(), 0666) != 0) return fail_errno("chmod 666 " + path);
  return {};
}

Result<void> CoordinatorCore::recover(JournalState& state) {
  next_id_ = state.next_id;
  if (state.quantum_ns) quantum_ = Nanos(*state.quantum_ns);
  std::vector<std::uint64_t> dropped;
  for (auto& [id, rec] : state.jobs) {
    Placement p{id, static_cast<int>(rec.row), {}};
    std::string missing;
    for (const auto& [name, ranks] : rec.cells) {
      std::size_t n = matrix_.node_index(name);
      if (n == static_cast<std::size_t>(-1)) missing = name;
      p.cells.push_back({n, static_cast<int>(ranks)});
    }
    if (missing.empty() && matrix_.restore(p)) {
      jobs_[id] = Job{rec};
      continue;
    }
    // The hostfile changed: place the job afresh if it still fits somewhere.
    auto placed = matrix_.place(id, static_cast<int>(rec.ranks), static_cast<int>(rec.nodes));
    if (!placed) {
      warnings_.push_back(
          "job " + std::to_string(id) + " (" + rec.name + ") dropped at recovery: " +
          (missing.empty() ? placed.error().message()
                           : "node '" + missing + "' is no longer in the hostfile"));
      dropped.push_back(id);
      continue;
    }
    rec.row = static_cast<std::uint32_t>(placed->row);
    rec.cells.clear();
    for (const auto& c : placed->cells)
      rec.cells.emplace_back(nodes_[c.node].name, static_cast<std::uint32_t>(c.ranks));
    warnings_.push_back("job " + std::to_string(id) + " re-placed at recovery (hostfile changed)");
    jobs_[id] = Job{rec};
  }
  for (auto id : dropped)
    state.jobs.erase(id);
  for (auto& [id, job] : jobs_)
    state.jobs[id] = job.rec;
  // Rewrite the journal to exactly what was recovered: drops dead records and the
  // placements that changed.
  return journal_->compact(state);
}

// --- life cycle ----------------------------------------------------------------------

void CoordinatorCore::start() {
  auto self = shared_from_this();
  asio::co_spawn(
      io_, [self]() { return self->accept_agents(); }, asio::detached);
  if (control_)
    asio::co_spawn(
        io_, [self]() { return self->accept_control(); }, asio::detached);
  asio::co_spawn(
      io_, [self]() { return self->heartbeat_loop(); }, asio::detached);
  if (config_.run_quantum_loop)
    asio::co_spawn(
        io_, [self]() { return self->quantum_loop(); }, asio::detached);
  asio::co_spawn(
      io_, [self]() { return self->queue_loop(); }, asio::detached);
}

void CoordinatorCore::stop() {
  if (stopped_) return;
  stopped_ = true;
  error_code ec;
  acceptor_.close(ec);
  if (control_) {
    control_->close(ec);
    ::unlink(config_.control_socket.c_str());
  }
  quantum_timer_.cancel();
  queue_timer_.cancel();
  heartbeat_timer_.cancel();
  round_gate_.cancel();
  if (current_) current_->wake.cancel();
  close_agents();
  close_controls();
}

// --- the public verbs ----------------------------------------------------------------

Result<std::shared_ptr<Coordinator>> Coordinator::create(asio::io_context& io,
                                                         CoordinatorConfig config) {
  auto core = CoordinatorCore::create(io, std::move(config));
  if (!core) return std::unexpected(core.error());
  return std::shared_ptr<Coordinator>(new Coordinator(std::move(*core)));
}

Coordinator::~Coordinator() = default;
void Coordinator::start() {
  core_->start();
}
void Coordinator::stop() {
  core_->stop();
}
asio::awaitable<RoundStats> Coordinator::broadcast_round() {
  return core_->broadcast_round();
}
proto::Message Coordinator::handle_control(std::uint32_t uid, const proto::Message& request) {
  return core_->handle_control(uid, request);
}
asio::awaitable<proto::Message> Coordinator::node_command(std::uint32_t uid,
                                                          proto::NodeCommand cmd) {
  return core_->node_command(uid, std::move(cmd));
}
Result<JobId> Coordinator::submit(std::uint32_t uid, const proto::JobSubmit& req) {
  return core_->submit(uid, req);
}
Result<void> Coordinator::cancel(std::uint32_t uid, JobId job) {
  return core_->cancel(uid, job);
}
Result<void> Coordinator::job_exited(std::uint32_t uid, const proto::JobExited& m) {
  return core_->job_exited(uid, m);
}
Result<void> Coordinator::set_quantum(std::uint32_t uid, Nanos quantum) {
  return core_->set_quantum(uid, quantum);
}
Result<void> Coordinator::set_paging(std::uint32_t uid, JobId job, const std::string& policy) {
  return core_->set_paging(uid, job, policy);
}
Result<void> Coordinator::set_cyclesteal(std::uint32_t uid, const proto::SetCycleSteal& m) {
  return core_->set_cyclesteal(uid, m);
}
Result<std::string> Coordinator::reconfigure(std::uint32_t uid) {
  return core_->reconfigure(uid);
}
proto::JobList Coordinator::list_jobs(std::uint32_t uid) const {
  return core_->list_jobs(uid);
}
proto::NodeList Coordinator::list_nodes(std::uint32_t uid) const {
  return core_->list_nodes(uid);
}
std::uint16_t Coordinator::port() const {
  return core_->port_;
}
const std::vector<std::string>& Coordinator::warnings() const {
  return core_->warnings_;
}
std::size_t Coordinator::agents_connected() const {
  return core_->agents_connected();
}
const Matrix& Coordinator::matrix() const {
  return core_->matrix_;
}
const std::vector<RoundStats>& Coordinator::rounds() const {
  return core_->history_;
}
Nanos Coordinator::quantum() const {
  return core_->quantum_;
}

}  // namespace dynamos::gang
