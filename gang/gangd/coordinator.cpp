#include "gang/gangd/coordinator.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "gang/node_ops.hpp"
#include "gang/protocol_io.hpp"

namespace dynamos::gang {

using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;
using steady = std::chrono::steady_clock;

// --- durations and policies ----------------------------------------------------------

const std::vector<std::string>& paging_policies() {
  static const std::vector<std::string>& p = paging::policy_names();
  return p;
}

namespace {
bool known_policy(const std::string& p) {
  const auto& all = paging_policies();
  return std::find(all.begin(), all.end(), p) != all.end();
}
std::string policy_list() {
  std::string s;
  for (const auto& p : paging_policies())
    s += (s.empty() ? "" : ", ") + p;
  return s;
}
}  // namespace

// --- a round in progress -------------------------------------------------------------

struct Coordinator::PendingCommand {
  explicit PendingCommand(asio::io_context& io) : wake(io) {}
  asio::steady_timer wake;
  std::vector<proto::NodeResult> results;   // one per node, in the order asked
  std::map<std::size_t, std::size_t> slot;  // node index -> index in results
  std::size_t pending = 0;
};

struct Coordinator::Round {
  explicit Round(asio::io_context& io) : wake(io) {}
  asio::steady_timer wake;
  std::set<std::size_t> pending_prepare, pending_switch;
  RoundStats stats;
  std::uint64_t sent_ns = 0, deadline_ns = 0;
  std::uint64_t first_switch = UINT64_MAX, last_switch = 0, last_receipt = 0;
  std::uint64_t decision_ns = 0, last_running = 0;
};

// --- an agent's connection -----------------------------------------------------------

class Coordinator::AgentConn : public std::enable_shared_from_this<AgentConn> {
 public:
  AgentConn(std::shared_ptr<Coordinator> c, tcp::socket s)
      : c_(std::move(c)),
        socket_(std::move(s)),
        outbox_(socket_.get_executor()),
        watchdog_(socket_.get_executor()) {}

  void start() {
    auto self = shared_from_this();
    asio::co_spawn(
        socket_.get_executor(), [self]() { return self->reader(); }, asio::detached);
    asio::co_spawn(
        socket_.get_executor(), [self]() { return self->writer(); }, asio::detached);
    asio::co_spawn(
        socket_.get_executor(), [self]() { return self->auth_watchdog(); }, asio::detached);
  }
  void send(const proto::Message& m) {
    if (auto f = make_frame(m)) outbox_.push(*f);
  }
  void send_frame(Frame f) { outbox_.push(std::move(f)); }
  void close() {
    outbox_.close();
    error_code ec;
    socket_.close(ec);
    watchdog_.cancel();
  }
  steady::time_point last_heard = steady::now();
  std::string name;

 private:
  // Sends an error and closes once it is written.
  void refuse(const Error& e) {
    send(proto::error_message(e));
    outbox_.finish();
  }

  asio::awaitable<void> writer() {
    co_await outbox_.run(socket_);
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    close();
  }

  asio::awaitable<void> auth_watchdog() {
    watchdog_.expires_after(c_->config_.auth_timeout);
    error_code ec;
    co_await watchdog_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !registered_) {
      c_->config_.log("peer " + peer() + ": no authentication within " +
                      format_duration(c_->config_.auth_timeout) + ", closing");
      refuse(Error{Errc::timed_out, 0, "authentication timed out"});
    }
  }

  std::string peer() const {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    return ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  asio::awaitable<void> reader() {
    auto self = shared_from_this();
    FrameReader buf;
    if (auto ok = co_await handshake(buf); !ok) {
      c_->config_.log("peer " + peer() + " refused: " + ok.error().message());
      refuse(ok.error());
      co_return;
    }
    for (;;) {
      auto msg = co_await buf.next(socket_);
      if (!msg) {
        if (msg.error().code == Errc::protocol || msg.error().code == Errc::version_mismatch) {
          c_->config_.log("node " + name + ": " + msg.error().message() + ", closing");
          refuse(msg.error());
        }
        break;
      }
      last_heard = steady::now();
      bool ok = std::visit(
          [&](auto& m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, proto::PrepareAck>)
              c_->on_prepare_ack(node_, m);
            else if constexpr (std::is_same_v<T, proto::SwitchAck>)
              c_->on_switch_ack(node_, m);
            else if constexpr (std::is_same_v<T, proto::MetricsReport>)
              c_->on_metrics(node_, m);
            else if constexpr (std::is_same_v<T, proto::NodeReply>)
              c_->on_node_reply(node_, m);
            else if constexpr (std::is_same_v<T, proto::Heartbeat>) {
            } else if constexpr (std::is_same_v<T, proto::ErrorMsg>)
              c_->config_.log("node " + name + " reports: " + m.message);
            else
              return false;
            return true;
          },
          *msg);
      if (!ok) {
        refuse(Error{Errc::protocol, 0,
                     std::string("unexpected ") + proto::msg_type_name(proto::type_of(*msg)) +
                         " message from an agent"});
        break;
      }
    }
    c_->agent_gone(node_, this);
    outbox_.finish();
  }

  asio::awaitable<Result<void>> handshake(FrameReader& buf) {
    auto msg = co_await buf.next(socket_);
    if (!msg) co_return std::unexpected(msg.error());
    auto* hello = std::get_if<proto::Hello>(&*msg);
    if (!hello)
      co_return fail(Errc::protocol, std::string("expected hello, got ") +
                                         proto::msg_type_name(proto::type_of(*msg)));
    if (hello->role != proto::Role::agent)
      co_return fail(Errc::not_permitted,
                     "only node agents connect over TCP; the CLI uses the local control socket");
    auto node = c_->node_for(hello->node);
    if (!node) co_return std::unexpected(node.error());
    auto nonce = random_nonce();
    if (!nonce) co_return std::unexpected(nonce.error());
    const Secret& secret = c_->config_.secret;
    send(proto::Challenge{*nonce, server_proof(secret, hello->client_nonce, *nonce, hello->node)});
    auto reply = co_await buf.next(socket_);
    if (!reply) co_return std::unexpected(reply.error());
    auto* auth = std::get_if<proto::Auth>(&*reply);
    if (!auth)
      co_return fail(Errc::protocol, std::string("expected auth, got ") +
                                         proto::msg_type_name(proto::type_of(*reply)));
    if (!mac_equal(auth->client_proof,
                   client_proof(secret, *nonce, hello->client_nonce, hello->node)))
      co_return fail(Errc::not_permitted,
                     "authentication failed for node '" + hello->node + "': wrong shared secret");
    registered_ = true;
    watchdog_.cancel();
    node_ = *node;
    name = hello->node;
    last_heard = steady::now();
    c_->agent_registered(node_, shared_from_this());
    co_return Result<void>{};
  }

  std::shared_ptr<Coordinator> c_;
  tcp::socket socket_;
  Outbox outbox_;
  asio::steady_timer watchdog_;
  bool registered_ = false;
  std::size_t node_ = static_cast<std::size_t>(-1);
};

// --- a control connection (local CLI) ------------------------------------------------

class Coordinator::ControlConn : public std::enable_shared_from_this<ControlConn> {
 public:
  ControlConn(std::shared_ptr<Coordinator> c, unix_socket::socket s)
      : c_(std::move(c)), socket_(std::move(s)) {}
  void start() {
    auto self = shared_from_this();
    asio::co_spawn(
        socket_.get_executor(), [self]() { return self->serve(); }, asio::detached);
  }
  void close() {
    error_code ec;
    socket_.close(ec);
  }

 private:
  asio::awaitable<void> serve() {
    auto self = shared_from_this();
    struct ucred cred {};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      c_->config_.log("control socket: cannot read the caller's credentials, closing");
      co_await reply(proto::error_message(fail_errno("SO_PEERCRED").error()));
    } else {
      FrameReader buf;
      for (;;) {
        auto req = co_await buf.next(socket_);
        if (!req) {
          if (req.error().code == Errc::protocol || req.error().code == Errc::version_mismatch)
            co_await reply(proto::error_message(req.error()));
          break;
        }
        if (auto* cmd = std::get_if<proto::NodeCommand>(&*req)) {
          auto answer = co_await c_->node_command(cred.uid, std::move(*cmd));
          if (!co_await reply(answer)) break;
        } else if (!co_await reply(c_->handle_control(cred.uid, *req))) {
          break;
        }
      }
    }
    close();
    c_->controls_.erase(self);
  }

  asio::awaitable<bool> reply(const proto::Message& m) {
    auto bytes = proto::encode(m);
    if (!bytes) bytes = proto::encode(proto::error_message(bytes.error()));
    error_code ec;
    co_await asio::async_write(socket_, asio::buffer(*bytes),
                               asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  std::shared_ptr<Coordinator> c_;
  unix_socket::socket socket_;
};

// --- construction and recovery -------------------------------------------------------

Coordinator::Coordinator(asio::io_context& io, CoordinatorConfig config)
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
  for (const auto& h : config_.hosts)
    nodes_.push_back(Node{h.name, h.slots, nullptr, steady::now(), {}, "unknown", false, {}});
  if (!config_.log)
    config_.log = [](const std::string& line) {
      std::fprintf(stderr, "gangd: %s\n", line.c_str());
    };
}

Coordinator::~Coordinator() = default;

Result<std::shared_ptr<Coordinator>> Coordinator::create(asio::io_context& io,
                                                         CoordinatorConfig config) {
  if (config.hosts.empty())
    return fail(Errc::invalid_argument, "gangd needs nodes: give a hostfile");
  if (config.secret.bytes().size() < 16)
    return fail(Errc::invalid_argument, "gangd needs the cluster's shared secret");
  std::shared_ptr<Coordinator> c(new Coordinator(io, std::move(config)));
  const auto& cfg = c->config_;

  error_code ec;
  auto addr = asio::ip::make_address(cfg.listen_address, ec);
  if (ec)
    return fail(Errc::invalid_argument,
                "listen address '" + cfg.listen_address + "': " + ec.message());
  tcp::endpoint ep(addr, cfg.port);
  auto where = "listen on " + cfg.listen_address + ":" + std::to_string(cfg.port);
  c->acceptor_.open(ep.protocol(), ec);
  if (!ec) c->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) c->acceptor_.bind(ep, ec);
  if (!ec) c->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail_errno(ec.value(), where);
  c->port_ = c->acceptor_.local_endpoint().port();

  if (!cfg.control_socket.empty()) {
    const auto& path = cfg.control_socket;
    if (path.size() >= sizeof(sockaddr_un::sun_path))
      return fail(Errc::invalid_argument, "control socket path '" + path + "' is too long");
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return fail(Errc::invalid_argument,
                    "control socket path '" + path + "' exists and is not a socket");
      // A live gangd answers; a stale socket from a crash does not and is replaced.
      unix_socket::socket probe(io);
      probe.connect(unix_socket::endpoint(path), ec);
      if (!ec) return fail(Errc::busy, "another gangd is listening on " + path);
      ::unlink(path.c_str());
    }
    c->control_.emplace(io);
    c->control_->open(unix_socket(), ec);
    if (!ec) c->control_->bind(unix_socket::endpoint(path), ec);
    if (!ec) c->control_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return fail_errno(ec.value(), "listen on control socket " + path);
    // Every local user may connect; what each may do is decided by SO_PEERCRED.
    if (::chmod(path.c_str(), 0666) != 0) return fail_errno("chmod 666 " + path);
  }

  if (!cfg.journal_path.empty()) {
    JournalState state;
    auto j = Journal::open(cfg.journal_path, state);
    if (!j) return std::unexpected(j.error());
    c->journal_.emplace(std::move(*j));
    for (auto& w : state.warnings)
      c->warnings_.push_back(w);
    if (auto ok = c->recover(state); !ok) return std::unexpected(ok.error());
  }
  c->matrix_.recompute();
  for (const auto& w : c->warnings_)
    c->config_.log(w);
  return c;
}

Result<void> Coordinator::recover(JournalState& state) {
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

// --- lifecycle -----------------------------------------------------------------------

void Coordinator::start() {
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
}

void Coordinator::stop() {
  if (stopped_) return;
  stopped_ = true;
  error_code ec;
  acceptor_.close(ec);
  if (control_) {
    control_->close(ec);
    ::unlink(config_.control_socket.c_str());
  }
  quantum_timer_.cancel();
  heartbeat_timer_.cancel();
  round_gate_.cancel();
  if (current_) current_->wake.cancel();
  for (auto& n : nodes_)
    n.conn.reset();
  for (auto& w : conns_)
    if (auto c = w.lock()) c->close();
  conns_.clear();
  auto controls = controls_;
  for (auto& c : controls)
    c->close();
}

std::size_t Coordinator::agents_connected() const {
  return static_cast<std::size_t>(
      std::count_if(nodes_.begin(), nodes_.end(), [](const Node& n) { return n.conn != nullptr; }));
}

asio::awaitable<void> Coordinator::accept_agents() {
  while (!stopped_) {
    error_code ec;
    tcp::socket s = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (stopped_ || ec == asio::error::operation_aborted) break;
      config_.log("accept: " + ec.message());
      continue;
    }
    s.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<AgentConn>(shared_from_this(), std::move(s));
    // Remember every connection, authenticated or not, so that stop() closes them all.
    if (conns_.size() > 64 && conns_.size() > 2 * agents_connected())
      std::erase_if(conns_, [](const auto& w) { return w.expired(); });
    conns_.push_back(conn);
    conn->start();
  }
}

asio::awaitable<void> Coordinator::accept_control() {
  while (!stopped_) {
    error_code ec;
    unix_socket::socket s =
        co_await control_->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (stopped_ || ec == asio::error::operation_aborted) break;
      config_.log("control accept: " + ec.message());
      continue;
    }
    auto conn = std::make_shared<ControlConn>(shared_from_this(), std::move(s));
    controls_.insert(conn);
    conn->start();
  }
}

asio::awaitable<void> Coordinator::heartbeat_loop() {
  while (!stopped_) {
    heartbeat_timer_.expires_after(config_.heartbeat);
    error_code ec;
    co_await heartbeat_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    auto now = steady::now();
    auto frame = make_frame(proto::Heartbeat{realtime_ns()});
    for (auto& n : nodes_) {
      if (!n.conn) continue;
      if (now - n.conn->last_heard > 3 * config_.heartbeat) {
        config_.log("node " + n.name + " silent for more than " +
                    format_duration(3 * config_.heartbeat) + ", marking it down");
        auto c = std::exchange(n.conn, nullptr);
        n.down_since = now;
        c->close();
        continue;
      }
      if (frame) n.conn->send_frame(*frame);
    }
    fail_jobs_of_lost_nodes();
  }
}

void Coordinator::fail_jobs_of_lost_nodes() {
  auto now = steady::now();
  std::vector<std::pair<JobId, std::string>> doomed;
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    if (nodes_[n].conn || now - nodes_[n].down_since < config_.node_timeout) continue;
    for (JobId j : matrix_.jobs_on(n))
      doomed.emplace_back(j, "node " + nodes_[n].name + " has been down for more than " +
                                 format_duration(config_.node_timeout));
  }
  for (const auto& [id, reason] : doomed) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;  // a job on two lost nodes
    if (auto ok = journal([&](Journal& j) { return j.job_removed(id, reason); }); !ok) {
      config_.log("job " + std::to_string(id) + ": " + ok.error().message());
      continue;  // it stays; the next heartbeat tries again
    }
    config_.log("job " + std::to_string(id) + " failed: " + reason);
    record_end(id, "failed", 1, reason);
    if (const auto* p = matrix_.find(id))
      for (const auto& c : p->cells)
        send_to(c.node, proto::JobRelease{id, reason});
    (void)matrix_.remove(id);
    jobs_.erase(it);
    replan();
  }
}

asio::awaitable<void> Coordinator::quantum_loop() {
  while (!stopped_) {
    bool expired = false;
    if (!replan_) {
      quantum_timer_.expires_after(quantum_);
      error_code ec;
      co_await quantum_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      expired = !ec;
    }
    if (stopped_) break;
    Matrix::Step step;
    if (replan_) {
      replan_ = false;
      step = matrix_.recompute();
    } else if (expired) {
      step = matrix_.advance();
    } else {
      continue;  // the quantum changed: re-arm with the new one
    }
    if (!step.changed()) continue;
    std::map<std::size_t, NodePlan> plan;
    for (JobId j : step.stopped) {
      if (auto it = jobs_.find(j); it != jobs_.end()) ++it->second.switches;
      if (const auto* p = matrix_.find(j))
        for (const auto& c : p->cells)
          plan[c.node].outgoing.push_back(j);
    }
    for (JobId j : step.started) {
      if (auto it = jobs_.find(j); it != jobs_.end()) ++it->second.switches;
      if (const auto* p = matrix_.find(j))
        for (const auto& c : p->cells)
          plan[c.node].incoming.push_back(j);
    }
    auto stats = co_await switch_round(std::move(plan));
    drive_cyclesteal();
    if (!stats.errors.empty())
      config_.log("round " + std::to_string(stats.round) + ": " + std::to_string(stats.failed) +
                  " node(s) failed, first: " + stats.errors.front());
  }
}

void Coordinator::replan() {
  replan_ = true;
  quantum_timer_.cancel();
}

// --- switch rounds -------------------------------------------------------------------

asio::awaitable<void> Coordinator::wait_round(Round& r, std::set<std::size_t>& pending,
                                              steady::time_point until) {
  while (!pending.empty() && !stopped_ && steady::now() < until) {
    r.wake.expires_at(until);
    error_code ec;
    co_await r.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<RoundStats> Coordinator::switch_round(std::map<std::size_t, NodePlan> plan) {
  auto self = shared_from_this();
  while (round_running_ && !stopped_) {
    error_code ec;
    co_await round_gate_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  round_running_ = true;
  auto start = steady::now();
  Round r(io_);
  r.decision_ns = realtime_ns();
  r.stats.round = ++round_id_;
  r.stats.nodes = plan.size();
  current_ = &r;

  // Phase 1: prepare.
  for (auto& [node, p] : plan) {
    if (!nodes_[node].conn) {
      ++r.stats.failed;
      r.stats.errors.push_back("node " + nodes_[node].name + " is down");
      continue;
    }
    nodes_[node].conn->send(proto::PrepareSwitch{r.stats.round, p.outgoing, p.incoming});
    r.pending_prepare.insert(node);
  }
  std::set<std::size_t> asked = r.pending_prepare;
  co_await wait_round(r, r.pending_prepare, start + config_.prepare_timeout);
  for (auto node : r.pending_prepare) {
    ++r.stats.failed;
    r.stats.errors.push_back("node " + nodes_[node].name + " did not prepare within " +
                             format_duration(config_.prepare_timeout));
  }
  r.stats.prepare_phase = steady::now() - start;

  // Phase 2: switch at a common deadline. Nodes that failed to prepare switch too:
  // the gang must stay together on every node that can still follow.
  r.sent_ns = realtime_ns();
  r.deadline_ns = r.sent_ns + static_cast<std::uint64_t>(lead_.count());
  r.stats.lead = lead_;
  auto frame = make_frame(proto::SwitchAt{r.stats.round, r.deadline_ns});
  for (auto node : asked) {
    if (!nodes_[node].conn || !frame) continue;
    nodes_[node].conn->send_frame(*frame);
    r.pending_switch.insert(node);
  }
  co_await wait_round(r, r.pending_switch, steady::now() + lead_ + config_.switch_timeout);
  for (auto node : r.pending_switch) {
    ++r.stats.failed;
    r.stats.errors.push_back("node " + nodes_[node].name + " did not acknowledge the switch");
  }
  r.stats.total = steady::now() - start;
  if (r.stats.switched > 0) {
    r.stats.skew = Nanos(static_cast<std::int64_t>(r.last_switch - r.first_switch));
    if (r.last_running > r.decision_ns)
      r.stats.running = Nanos(static_cast<std::int64_t>(r.last_running - r.decision_ns));
    if (r.last_receipt > r.sent_ns) {
      r.stats.delivery = Nanos(static_cast<std::int64_t>(r.last_receipt - r.sent_ns));
      lead_ =
          std::clamp(Nanos(2 * r.stats.delivery), config_.min_switch_lead, config_.max_switch_lead);
    }
  }
  current_ = nullptr;
  round_running_ = false;
  round_gate_.cancel();
  if (history_.size() >= 1000) history_.erase(history_.begin());
  history_.push_back(r.stats);
  if (config_.round_log) config_.round_log(r.stats);
  co_return r.stats;
}

asio::awaitable<RoundStats> Coordinator::broadcast_round() {
  std::map<std::size_t, NodePlan> plan;
  for (std::size_t n = 0; n < nodes_.size(); ++n)
    if (nodes_[n].conn) plan[n] = {};
  co_return co_await switch_round(std::move(plan));
}

void Coordinator::on_prepare_ack(std::size_t node, const proto::PrepareAck& ack) {
  if (!current_ || ack.round != current_->stats.round) return;  // stale
  Round& r = *current_;
  if (!r.pending_prepare.erase(node)) return;
  if (ack.ok)
    ++r.stats.prepared;
  else {
    ++r.stats.failed;
    r.stats.errors.push_back("node " + nodes_[node].name + " failed to prepare: " + ack.error);
  }
  if (r.pending_prepare.empty()) r.wake.cancel();
}

void Coordinator::on_switch_ack(std::size_t node, const proto::SwitchAck& ack) {
  if (!current_ || ack.round != current_->stats.round) return;
  Round& r = *current_;
  if (!r.pending_switch.erase(node)) return;
  if (ack.ok) {
    ++r.stats.switched;
    r.first_switch = std::min(r.first_switch, ack.switched_ns);
    r.last_switch = std::max(r.last_switch, ack.switched_ns);
    r.last_receipt = std::max(r.last_receipt, ack.received_ns);
    r.last_running = std::max(r.last_running, ack.running_ns);
    if (ack.received_ns > r.deadline_ns) ++r.stats.late;
    r.stats.max_switch_duration =
        std::max(r.stats.max_switch_duration, Nanos(static_cast<std::int64_t>(ack.duration_ns)));
  } else {
    ++r.stats.failed;
    r.stats.errors.push_back("node " + nodes_[node].name + " failed to switch: " + ack.error);
  }
  if (r.pending_switch.empty()) r.wake.cancel();
}

void Coordinator::on_metrics(std::size_t node, const proto::MetricsReport& m) {
  nodes_[node].metrics = m;
  // A node reports only for jobs it hosts; the job's CPU time is the sum over its nodes
  // (kept per node so that reports can arrive in any order).
  for (const auto& jm : m.jobs) {
    auto it = jobs_.find(jm.job);
    const auto* p = matrix_.find(jm.job);
    if (it == jobs_.end() || !p) continue;
    bool here = std::any_of(p->cells.begin(), p->cells.end(),
                            [&](const Cell& c) { return c.node == node; });
    if (!here) continue;
    it->second.cpu_by_node[node] = jm.cpu_ns;
    std::uint64_t sum = 0;
    for (const auto& [n, ns] : it->second.cpu_by_node)
      sum += ns;
    it->second.cpu_ns = sum;
    it->second.majflt_by_node[node] = jm.major_faults;
    sum = 0;
    for (const auto& [n, f] : it->second.majflt_by_node)
      sum += f;
    it->second.major_faults = sum;
  }
}

// --- agents --------------------------------------------------------------------------

Result<std::size_t> Coordinator::node_for(const std::string& name) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].name == name) return i;
  return fail(Errc::not_found, "unknown node '" + name + "' (not in gangd's hostfile)");
}

void Coordinator::agent_registered(std::size_t node, std::shared_ptr<AgentConn> conn) {
  if (stopped_) {
    conn->close();
    return;
  }
  if (auto old = std::exchange(nodes_[node].conn, conn); old && old != conn) {
    config_.log("node " + nodes_[node].name + " reconnected; closing its previous connection");
    old->close();
  }
  conn->send(proto::Welcome{static_cast<std::uint32_t>(node),
                            static_cast<std::uint64_t>(quantum_.count()),
                            static_cast<std::uint64_t>(config_.heartbeat.count()), round_id_});
  for (const auto& [id, job] : jobs_) {
    const auto* p = matrix_.find(id);
    if (!p) continue;
    for (const auto& c : p->cells)
      if (c.node == node) conn->send(assign_message(job, node));
  }
  // A (re)started agent may have lost its cycle-stealing setting: ask again.
  nodes_[node].guest_policy = "unknown";
  nodes_[node].guest_policy_pending.clear();
  std::erase_if(cyclesteal_requests_, [&](const auto& r) { return r.second.first == node; });
  drive_cyclesteal();
}

void Coordinator::agent_gone(std::size_t node, const AgentConn* conn) {
  if (node >= nodes_.size() || nodes_[node].conn.get() != conn) return;
  nodes_[node].conn.reset();
  nodes_[node].down_since = steady::now();
  if (!stopped_) config_.log("node " + nodes_[node].name + " disconnected");
  for (auto it = pending_requests_.begin(); it != pending_requests_.end();) {
    auto [cmd, n] = it->second;
    if (n != node) {
      ++it;
      continue;
    }
    auto& res = cmd->results[cmd->slot[n]];
    res.ok = false;
    res.output = "node " + nodes_[node].name + " disconnected before it answered";
    if (--cmd->pending == 0) cmd->wake.cancel();
    it = pending_requests_.erase(it);
  }
  if (current_) {
    Round& r = *current_;
    if (r.pending_prepare.erase(node) + r.pending_switch.erase(node) > 0) {
      ++r.stats.failed;
      r.stats.errors.push_back("node " + nodes_[node].name + " disconnected during the round");
      if (r.pending_prepare.empty() || r.pending_switch.empty()) r.wake.cancel();
    }
  }
}

void Coordinator::send_to(std::size_t node, const proto::Message& m) {
  if (node < nodes_.size() && nodes_[node].conn) nodes_[node].conn->send(m);
}

proto::JobAssign Coordinator::assign_message(const Job& job, std::size_t node) const {
  proto::JobAssign a{job.rec.id, job.rec.name,   job.rec.uid,
                     0,          job.rec.paging, matrix_.is_running(job.rec.id)};
  if (const auto* p = matrix_.find(job.rec.id))
    for (const auto& c : p->cells)
      if (c.node == node) a.ranks_here = static_cast<std::uint32_t>(c.ranks);
  return a;
}

// --- the control API -----------------------------------------------------------------

Result<void> Coordinator::journal(const std::function<Result<void>(Journal&)>& write) {
  if (!journal_) return {};
  return write(*journal_);
}

Result<JobId> Coordinator::submit(std::uint32_t uid, const proto::JobSubmit& req) {
  if (req.argv.empty() || req.argv[0].empty())
    return fail(Errc::invalid_argument, "no program given");
  if (req.ranks == 0 || req.ranks > 1'000'000)
    return fail(Errc::invalid_argument,
                "ranks must be between 1 and 1000000, got " + std::to_string(req.ranks));
  if (!known_policy(req.paging))
    return fail(Errc::invalid_argument,
                "unknown paging policy '" + req.paging + "' (known: " + policy_list() + ")");
  std::string name = req.name;
  if (name.empty()) {
    name = req.argv[0].substr(req.argv[0].rfind('/') + 1);
  }
  if (name.size() > 255) return fail(Errc::invalid_argument, "job name longer than 255 bytes");
  for (char ch : name)
    if (static_cast<unsigned char>(ch) < 0x20)
      return fail(Errc::invalid_argument, "job name contains a control character");

  JobId id = next_id_;
  auto placed = matrix_.place(id, static_cast<int>(req.ranks), static_cast<int>(req.nodes));
  if (!placed) return std::unexpected(with_context(placed.error(), "job not accepted"));
  JournalJob rec{id,        uid,       name,
                 req.ranks, req.nodes, req.paging,
                 req.argv,  req.cwd,   static_cast<std::uint32_t>(placed->row),
                 {}};
  for (const auto& c : placed->cells)
    rec.cells.emplace_back(nodes_[c.node].name, static_cast<std::uint32_t>(c.ranks));
  if (auto ok = journal([&](Journal& j) { return j.job_added(rec); }); !ok) {
    (void)matrix_.remove(id);
    return std::unexpected(with_context(ok.error(), "job not accepted"));
  }
  ++next_id_;
  auto& job = jobs_[id] = Job{rec};
  job.submitted_ns = realtime_ns();
  // Agents learn of the job frozen; the next round (replan) lets it run. Ranks that
  // start before then are frozen as they join the job's group.
  for (const auto& c : placed->cells) {
    auto a = assign_message(job, c.node);
    a.running = false;
    send_to(c.node, a);
  }
  if (config_.launch) {
    if (auto ok = config_.launch(rec, req); !ok) {
      (void)journal([&](Journal& j) { return j.job_removed(id, "launch failed"); });
      for (const auto& c : placed->cells)
        send_to(c.node, proto::JobRelease{id, "launch failed"});
      (void)matrix_.remove(id);
      jobs_.erase(id);
      return std::unexpected(with_context(ok.error(), "job not started"));
    }
  }
  config_.log("job " + std::to_string(id) + " (" + name + ", uid " + std::to_string(uid) + ", " +
              std::to_string(req.ranks) + " ranks) placed in slot " + std::to_string(placed->row));
  replan();
  return id;
}

Result<void> Coordinator::cancel(std::uint32_t uid, JobId id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return fail(Errc::not_found, "no job " + std::to_string(id));
  if (!may_act(uid, it->second))
    return fail(Errc::not_permitted, "job " + std::to_string(id) + " belongs to another user");
  if (auto ok = journal([&](Journal& j) { return j.job_removed(id, "cancelled"); }); !ok) return ok;
  record_end(id, "cancelled", 128 + 15, "cancelled");
  if (const auto* p = matrix_.find(id))
    for (const auto& c : p->cells)
      send_to(c.node, proto::JobRelease{id, "cancelled"});
  (void)matrix_.remove(id);
  jobs_.erase(it);
  replan();
  return {};
}

proto::JobList Coordinator::list_jobs(std::uint32_t uid) const {
  proto::JobList out;
  for (const auto& [id, info] : ended_)
    if (uid == 0 || uid == info.uid) out.jobs.push_back(info);
  for (const auto& [id, job] : jobs_) {
    if (!may_act(uid, job)) continue;
    proto::JobInfo info;
    info.job = id;
    info.name = job.rec.name;
    info.uid = job.rec.uid;
    info.state = matrix_.is_running(id) ? "running" : "frozen";
    info.slot = job.rec.row;
    for (const auto& [node, ranks] : job.rec.cells)
      info.nodes.push_back(node);
    info.paging = job.rec.paging;
    info.switches = job.switches;
    info.cpu_ns = job.cpu_ns;
    info.major_faults = job.major_faults;
    info.submitted_ns = job.submitted_ns;
    out.jobs.push_back(std::move(info));
  }
  return out;
}

proto::NodeList Coordinator::list_nodes(std::uint32_t uid) const {
  proto::NodeList out;
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    proto::NodeInfo info;
    info.name = nodes_[n].name;
    info.state = nodes_[n].conn ? "up" : "down";
    info.guest_policy = nodes_[n].guest_policy;
    info.slots = static_cast<std::uint32_t>(nodes_[n].slots);
    for (JobId j : matrix_.jobs_on(n))
      if (auto it = jobs_.find(j); it != jobs_.end() && may_act(uid, it->second))
        info.jobs.push_back(j);
    if (nodes_[n].metrics) {
      info.mem_total = nodes_[n].metrics->mem_total;
      info.mem_available = nodes_[n].metrics->mem_available;
    }
    out.nodes.push_back(std::move(info));
  }
  return out;
}

Result<void> Coordinator::set_quantum(std::uint32_t uid, Nanos q) {
  if (uid != 0) return fail(Errc::not_permitted, "only root may change the quantum");
  if (q < 1ms || q > 24h)
    return fail(Errc::invalid_argument, "quantum " + format_duration(q) + " is outside 1ms..24h");
  auto ns = static_cast<std::uint64_t>(q.count());
  if (auto ok = journal([&](Journal& j) { return j.quantum_set(ns); }); !ok) return ok;
  quantum_ = q;
  quantum_timer_.cancel();  // the loop re-arms with the new quantum
  return {};
}

Result<void> Coordinator::set_paging(std::uint32_t uid, JobId id, const std::string& policy) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return fail(Errc::not_found, "no job " + std::to_string(id));
  if (!may_act(uid, it->second))
    return fail(Errc::not_permitted, "job " + std::to_string(id) + " belongs to another user");
  if (!known_policy(policy))
    return fail(Errc::invalid_argument,
                "unknown paging policy '" + policy + "' (known: " + policy_list() + ")");
  if (auto ok = journal([&](Journal& j) { return j.paging_set(id, policy); }); !ok) return ok;
  it->second.rec.paging = policy;
  // A JobAssign for a known job updates it on the agent.
  if (const auto* p = matrix_.find(id))
    for (const auto& c : p->cells)
      send_to(c.node, assign_message(it->second, c.node));
  return {};
}

void Coordinator::record_end(JobId id, const std::string& state, std::int32_t exit_code,
                             const std::string& reason) {
  for (auto& j : list_jobs(0).jobs)
    if (j.job == id) {
      j.state = state;
      j.exit_code = exit_code;
      j.reason = reason;
      j.ended_ns = realtime_ns();
      ended_[id] = std::move(j);
    }
  if (ended_.size() > 1000) ended_.erase(ended_.begin());  // keep the newest
}

Result<void> Coordinator::job_exited(std::uint32_t uid, const proto::JobExited& m) {
  auto it = jobs_.find(m.job);
  if (it == jobs_.end()) {
    if (ended_.count(m.job)) return {};  // reported twice (the launcher retried)
    return fail(Errc::not_found, "no job " + std::to_string(m.job));
  }
  if (!may_act(uid, it->second))
    return fail(Errc::not_permitted, "job " + std::to_string(m.job) + " belongs to another user");
  std::string why = m.reason.empty() ? "exited " + std::to_string(m.exit_code) : m.reason;
  if (auto ok = journal([&](Journal& j) { return j.job_removed(m.job, why); }); !ok) return ok;
  record_end(m.job, m.exit_code == 0 && m.reason.empty() ? "done" : "failed", m.exit_code,
             m.reason);
  if (const auto* p = matrix_.find(m.job))
    for (const auto& c : p->cells)
      send_to(c.node, proto::JobRelease{m.job, why});
  (void)matrix_.remove(m.job);
  jobs_.erase(it);
  config_.log("job " + std::to_string(m.job) + " ended: " + why);
  replan();
  return {};
}

asio::awaitable<proto::Message> Coordinator::node_command(std::uint32_t uid,
                                                          proto::NodeCommand cmd) {
  auto refuse = [](Errc code, std::string why) {
    return proto::error_message(Error{code, 0, std::move(why)});
  };
  auto who = ops::who_may(cmd.op);
  if (!who) co_return refuse(Errc::invalid_argument, "unknown node operation '" + cmd.op + "'");
  if (*who == ops::Who::root && uid != 0)
    co_return refuse(Errc::not_permitted, "only root may " + cmd.op);
  std::vector<std::size_t> targets;
  for (const auto& name : cmd.nodes) {
    auto n = node_for(name);
    if (!n) co_return proto::error_message(n.error());
    if (std::find(targets.begin(), targets.end(), *n) == targets.end()) targets.push_back(*n);
  }
  if (*who == ops::Who::job_owner) {
    JobId id = 0;
    const char* first = cmd.args.empty() ? nullptr : cmd.args[0].c_str();
    auto [end, ec] = first ? std::from_chars(first, first + cmd.args[0].size(), id)
                           : std::from_chars_result{nullptr, std::errc::invalid_argument};
    if (!first || ec != std::errc() || end != first + cmd.args[0].size())
      co_return refuse(Errc::invalid_argument, cmd.op + ": the first argument must be a job id");
    auto it = jobs_.find(id);
    if (it == jobs_.end()) co_return refuse(Errc::not_found, "no job " + std::to_string(id));
    if (!may_act(uid, it->second))
      co_return refuse(Errc::not_permitted,
                       "job " + std::to_string(id) + " belongs to another user");
    const auto* p = matrix_.find(id);
    std::vector<std::size_t> job_nodes;
    if (p)
      for (const auto& c : p->cells)
        job_nodes.push_back(c.node);
    for (std::size_t n : targets)
      if (std::find(job_nodes.begin(), job_nodes.end(), n) == job_nodes.end())
        co_return refuse(Errc::invalid_argument,
                         "job " + std::to_string(id) + " has no ranks on node " + nodes_[n].name);
    if (targets.empty()) targets = job_nodes;
  } else if (targets.empty()) {
    for (std::size_t n = 0; n < nodes_.size(); ++n)
      if (nodes_[n].conn) targets.push_back(n);
  }
  auto timeout = cmd.timeout_ns ? Nanos(static_cast<std::int64_t>(std::min<std::uint64_t>(
                                      cmd.timeout_ns, 3'600'000'000'000ull)))
                                : config_.node_command_timeout;
  PendingCommand pc(io_);
  std::vector<std::uint64_t> ids;
  for (std::size_t n : targets) {
    pc.slot[n] = pc.results.size();
    pc.results.push_back({nodes_[n].name, false, ""});
    if (!nodes_[n].conn) {
      pc.results.back().output = "node " + nodes_[n].name + " is down";
      continue;
    }
    std::uint64_t id = next_request_++;
    pending_requests_[id] = {&pc, n};
    ids.push_back(id);
    ++pc.pending;
    send_to(n, proto::NodeRequest{id, uid, cmd.op, cmd.args});
  }
  if (pc.pending > 0) {
    pc.wake.expires_after(timeout);
    error_code ec;
    co_await pc.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  for (std::uint64_t id : ids)
    if (auto it = pending_requests_.find(id); it != pending_requests_.end()) {
      auto& res = pc.results[pc.slot[it->second.second]];
      res.ok = false;
      res.output = "node " + res.node + " did not answer within " + format_duration(timeout);
      pending_requests_.erase(it);
    }
  if (cmd.op == ops::cyclesteal) note_cyclesteal_command(cmd, pc.results);
  co_return proto::NodeCommandResult{std::move(pc.results)};
}

void Coordinator::on_node_reply(std::size_t node, const proto::NodeReply& m) {
  if (on_cyclesteal_reply(node, m)) return;
  auto it = pending_requests_.find(m.request);
  if (it == pending_requests_.end() || it->second.second != node) return;  // late or forged
  PendingCommand& pc = *it->second.first;
  auto& res = pc.results[pc.slot[node]];
  res.ok = m.ok;
  res.output = m.output;
  pending_requests_.erase(it);
  if (--pc.pending == 0) pc.wake.cancel();
}

// --- cycle stealing on idle nodes ----------------------------------------------------

Result<void> Coordinator::set_cyclesteal(std::uint32_t uid, const proto::SetCycleSteal& m) {
  if (uid != 0) return fail(Errc::not_permitted, "only root may turn cycle stealing on or off");
  if (m.enable && !cyclesteal::is_guest_policy(m.policy))
    return fail(Errc::invalid_argument,
                "unknown cycle-stealing policy '" + m.policy + "' (linger, pause or evict)");
  cyclesteal_idle_ = m.enable;
  if (m.enable) cyclesteal_policy_ = m.policy;
  config_.log(m.enable ? "cycle stealing on idle nodes: " + m.policy : "cycle stealing off");
  drive_cyclesteal();
  return {};
}

// Sends each node the policy it should have now, when that differs from what it has
// (or was last asked for). Off: only the nodes gangd itself set are turned off.
void Coordinator::drive_cyclesteal() {
  std::vector<bool> idle(nodes_.size(), false);
  for (std::size_t n : matrix_.idle_nodes())
    if (n < idle.size()) idle[n] = true;
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    Node& node = nodes_[n];
    if (!node.conn) continue;
    std::string want;
    if (cyclesteal_idle_)
      want = idle[n] ? cyclesteal_policy_ : "pause";
    else if (node.guest_policy_by_gangd && node.guest_policy != "off")
      want = "off";
    if (want.empty()) continue;
    const std::string& has =
        node.guest_policy_pending.empty() ? node.guest_policy : node.guest_policy_pending;
    if (has != want) send_cyclesteal(n, want);
  }
}

void Coordinator::send_cyclesteal(std::size_t node, const std::string& policy) {
  std::uint64_t id = next_request_++;
  cyclesteal_requests_[id] = {node, policy};
  nodes_[node].guest_policy_pending = policy;
  std::vector<std::string> args =
      policy == "off" ? std::vector<std::string>{"off"} : std::vector<std::string>{"on", policy};
  send_to(node, proto::NodeRequest{id, 0, std::string(ops::cyclesteal), std::move(args)});
}

bool Coordinator::on_cyclesteal_reply(std::size_t node, const proto::NodeReply& m) {
  auto it = cyclesteal_requests_.find(m.request);
  if (it == cyclesteal_requests_.end()) return false;
  if (it->second.first != node) return true;  // forged: ignore
  Node& n = nodes_[node];
  const std::string policy = it->second.second;
  cyclesteal_requests_.erase(it);
  if (n.guest_policy_pending == policy) n.guest_policy_pending.clear();
  if (m.ok) {
    n.guest_policy = policy;
    n.guest_policy_by_gangd = true;
  } else {
    config_.log("node " + n.name + ": cyclesteal " + policy + ": " + m.output);
  }
  return true;
}

// An explicit `dynamos cyclesteal on|off --node` that succeeded: the node's policy is
// the operator's now (gangd's idle driving overrides it at its next change).
void Coordinator::note_cyclesteal_command(const proto::NodeCommand& cmd,
                                          const std::vector<proto::NodeResult>& results) {
  if (cmd.args.empty()) return;
  std::string policy = cmd.args[0] == "off" ? "off" : cmd.args.size() > 1 ? cmd.args[1] : "";
  if (policy.empty()) return;
  for (const auto& r : results) {
    auto n = node_for(r.node);
    if (!r.ok || !n) continue;
    nodes_[*n].guest_policy = policy;
    nodes_[*n].guest_policy_by_gangd = false;
  }
}

proto::Message Coordinator::handle_control(std::uint32_t uid, const proto::Message& request) {
  auto ok_or = [](const Result<void>& r, std::string text) -> proto::Message {
    if (!r) return proto::error_message(r.error());
    return proto::Ok{std::move(text)};
  };
  return std::visit(
      [&](const auto& m) -> proto::Message {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, proto::JobSubmit>) {
          auto id = submit(uid, m);
          if (!id) return proto::error_message(id.error());
          return proto::JobSubmitted{*id};
        } else if constexpr (std::is_same_v<T, proto::JobCancel>) {
          return ok_or(cancel(uid, m.job), "job " + std::to_string(m.job) + " cancelled");
        } else if constexpr (std::is_same_v<T, proto::ListJobs>) {
          return list_jobs(uid);
        } else if constexpr (std::is_same_v<T, proto::ListNodes>) {
          return list_nodes(uid);
        } else if constexpr (std::is_same_v<T, proto::SetQuantum>) {
          return ok_or(set_quantum(uid, Nanos(static_cast<std::int64_t>(
                                            std::min<std::uint64_t>(m.quantum_ns, INT64_MAX)))),
                       "quantum set");
        } else if constexpr (std::is_same_v<T, proto::SetPaging>) {
          return ok_or(set_paging(uid, m.job, m.policy), "paging policy set");
        } else if constexpr (std::is_same_v<T, proto::SetCycleSteal>) {
          return ok_or(set_cyclesteal(uid, m), m.enable ? "cycle stealing on idle nodes: " +
                                                              m.policy + " (pause where a job runs)"
                                                        : "cycle stealing off");
        } else if constexpr (std::is_same_v<T, proto::JobExited>) {
          return ok_or(job_exited(uid, m), "job " + std::to_string(m.job) + " ended");
        } else {
          return proto::error_message(
              Error{Errc::protocol, 0,
                    std::string(proto::msg_type_name(proto::type_of(request))) +
                        " is not a control request"});
        }
      },
      request);
}

// --- the CLI's side of the control socket --------------------------------------------

Result<proto::Message> control_request(const std::string& socket_path,
                                       const proto::Message& request, Nanos timeout) {
  auto frame = proto::encode(request);
  if (!frame) return std::unexpected(frame.error());
  if (socket_path.size() >= sizeof(sockaddr_un::sun_path))
    return fail(Errc::invalid_argument, "control socket path '" + socket_path + "' is too long");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_errno("socket");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::copy(socket_path.begin(), socket_path.end(), addr.sun_path);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return fail_errno("connect to gangd at " + socket_path);
  auto deadline = steady::now() + timeout;
  auto wait = [&](short events) -> Result<void> {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0)
      return fail(Errc::timed_out, "gangd did not answer within " + format_duration(timeout));
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0) return fail_errno("poll the control socket");
    if (n == 0)
      return fail(Errc::timed_out, "gangd did not answer within " + format_duration(timeout));
    return {};
  };
  for (std::size_t done = 0; done < frame->size();) {
    if (auto ok = wait(POLLOUT); !ok) return std::unexpected(ok.error());
    ssize_t n = ::send(fd, frame->data() + done, frame->size() - done, MSG_NOSIGNAL);
    if (n < 0) return fail_errno("send to gangd");
    done += static_cast<std::size_t>(n);
  }
  auto read_exact = [&](std::uint8_t* out, std::size_t size) -> Result<void> {
    for (std::size_t done = 0; done < size;) {
      if (auto ok = wait(POLLIN); !ok) return ok;
      ssize_t n = ::recv(fd, out + done, size - done, 0);
      if (n < 0) return fail_errno("receive from gangd");
      if (n == 0) return fail(Errc::protocol, "gangd closed the connection without answering");
      done += static_cast<std::size_t>(n);
    }
    return {};
  };
  std::array<std::uint8_t, proto::kHeaderSize> hdr;
  if (auto ok = read_exact(hdr.data(), hdr.size()); !ok) return std::unexpected(ok.error());
  auto h = proto::decode_header(hdr);
  if (!h) return std::unexpected(h.error());
  std::vector<std::uint8_t> payload(h->length);
  if (auto ok = read_exact(payload.data(), payload.size()); !ok) return std::unexpected(ok.error());
  auto reply = proto::decode_payload(h->type, payload);
  if (!reply) return reply;
  if (auto* e = std::get_if<proto::ErrorMsg>(&*reply)) {
    auto code = e->code <= static_cast<std::uint16_t>(Errc::protocol) ? static_cast<Errc>(e->code)
                                                                      : Errc::protocol;
    return fail(code, e->message);
  }
  return reply;
}

}  // namespace dynamos::gang
