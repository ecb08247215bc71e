// gangd's agent connections (Slurm's agent.c and ping_nodes.c): each node agent's
// session (authentication, then its messages dispatched to the coordinator), the
// heartbeat loop that marks silent agents down, and the node timeout that fails the
// jobs of nodes down too long.
#include <algorithm>

#include "base/file.hpp"
#include "gang/gangd/coordinator_core.hpp"

namespace dynamos::gang {

using tcp = asio::ip::tcp;

class CoordinatorCore::AgentConn : public std::enable_shared_from_this<AgentConn> {
 public:
  AgentConn(std::shared_ptr<CoordinatorCore> c, tcp::socket s)
      : c_(std::move(c)),
        socket_(std::move(s)),
        outbox_(socket_.get_executor()),
        watchdog_(socket_.get_executor()) {}

  void start() {
    outbox_.write_through(socket_.native_handle());
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
  // A round's order every quantum tells the agent as much as a heartbeat would.
  void heartbeat(Frame frame) { outbox_.push_heartbeat(std::move(frame)); }
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
      c_->config_.log.warning("peer " + peer() + ": no authentication within " +
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
      c_->config_.log.warning("peer " + peer() + " refused: " + ok.error().message());
      refuse(ok.error());
      co_return;
    }
    for (;;) {
      auto msg = co_await buf.next(socket_);
      if (!msg) {
        if (msg.error().code == Errc::protocol || msg.error().code == Errc::version_mismatch) {
          c_->config_.log.warning("node " + name + " (" + peer() + "): " + msg.error().message() +
                                  ", closing");
          refuse(msg.error());
        }
        break;
      }
      last_heard = steady::now();
      bool ok = std::visit(
          [&](auto& m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, proto::SwitchAck>)
              c_->on_switch_ack(node_, m);
            else if constexpr (std::is_same_v<T, proto::MetricsReport>)
              c_->on_metrics(node_, m);
            else if constexpr (std::is_same_v<T, proto::NodeReply>)
              c_->on_node_reply(node_, m);
            else if constexpr (std::is_same_v<T, proto::Heartbeat>) {
            } else if constexpr (std::is_same_v<T, proto::ErrorMsg>)
              c_->config_.log.error("node " + name + " reports: " + m.message);
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
    auto expected = proto::expect<proto::Hello>(*msg);
    if (!expected) co_return std::unexpected(expected.error());
    const proto::Hello* hello = *expected;
    if (hello->role != proto::Role::agent)
      co_return fail(Errc::not_permitted,
                     "only node agents connect over TCP; the CLI uses the local control socket");
    auto node = c_->node_for(hello->node);
    if (!node) co_return std::unexpected(node.error());
    if (hello->frame_auth != c_->config_.frame_auth)
      co_return fail(Errc::not_permitted,
                     std::string("node '") + hello->node + "' asks for frame authentication " +
                         (hello->frame_auth ? "on" : "off") + "; this gangd has it " +
                         (c_->config_.frame_auth ? "on" : "off"));
    auto nonce = random_nonce();
    if (!nonce) co_return std::unexpected(nonce.error());
    const Secret& secret = c_->config_.secret;
    send(proto::Challenge{*nonce, server_proof(secret, hello->client_nonce, *nonce, hello->node)});
    auto reply = co_await buf.next(socket_);
    if (!reply) co_return std::unexpected(reply.error());
    auto auth = proto::expect<proto::Auth>(*reply);
    if (!auth) co_return std::unexpected(auth.error());
    if (!mac_equal((*auth)->client_proof,
                   client_proof(secret, *nonce, hello->client_nonce, hello->node)))
      co_return fail(Errc::not_permitted,
                     "authentication failed for node '" + hello->node + "': wrong shared secret");
    if (c_->config_.frame_auth) {
      // From here on every frame is tagged, Welcome first (gang/auth.hpp).
      auto keys = frame_keys(secret, hello->client_nonce, *nonce, hello->node);
      buf.authenticate(FrameMac(keys.to_gangd));
      outbox_.seal(FrameMac(keys.to_agent));
    }
    registered_ = true;
    watchdog_.cancel();
    node_ = *node;
    name = hello->node;
    last_heard = steady::now();
    c_->agent_registered(node_, shared_from_this());
    co_return Result<void>{};
  }

  std::shared_ptr<CoordinatorCore> c_;
  tcp::socket socket_;
  Outbox outbox_;
  asio::steady_timer watchdog_;
  bool registered_ = false;
  std::size_t node_ = static_cast<std::size_t>(-1);
};

asio::awaitable<void> CoordinatorCore::accept_agents() {
  agent_accept_.emplace(io_);
  std::size_t cap =
      config_.max_agent_connections ? config_.max_agent_connections : 2 * nodes_.size() + 64;
  (void)set_close_on_exec(acceptor_.native_handle());
  while (!stopped_) {
    error_code ec;
    tcp::socket s = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (stopped_ || ec == asio::error::operation_aborted) break;
      co_await agent_accept_->failed("accept", ec, config_.log);
      continue;
    }
    agent_accept_->accepted();
    // Remember every connection, authenticated or not, so that stop() closes them all;
    // closed ones are swept out whenever the list doubles (amortised O(1) an accept).
    if (conns_.size() >= next_sweep_) {
      std::erase_if(conns_, [](const auto& w) { return w.expired(); });
      next_sweep_ = std::max<std::size_t>(64, 2 * conns_.size());
    }
    if (conns_.size() >= cap) {
      error_code ignored;
      auto ep = s.remote_endpoint(ignored);
      agent_accept_->note("refusing a connection from " + ep.address().to_string() + ": " +
                              std::to_string(conns_.size()) + " agent connections open (limit " +
                              std::to_string(cap) + ")",
                          config_.log);
      s.close(ignored);
      // Sweep before the next one, so that closed connections stop counting at once.
      next_sweep_ = conns_.size();
      continue;
    }
    s.set_option(tcp::no_delay(true), ec);
    (void)set_close_on_exec(s.native_handle());  // no child of gangd inherits it
    auto conn = std::make_shared<AgentConn>(shared_from_this(), std::move(s));
    conns_.push_back(conn);
    conn->start();
  }
}

asio::awaitable<void> CoordinatorCore::heartbeat_loop() {
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
        config_.log.warning("node " + n.name + " silent for more than " +
                            format_duration(3 * config_.heartbeat) + ", marking it down");
        auto c = std::exchange(n.conn, nullptr);
        n.down_since = now;
        c->close();
        continue;
      }
      if (frame) n.conn->heartbeat(*frame);
    }
    fail_jobs_of_lost_nodes();
  }
}

void CoordinatorCore::fail_jobs_of_lost_nodes() {
  auto now = steady::now();
  std::vector<std::pair<JobId, std::string>> doomed;
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    if (nodes_[n].conn || now - nodes_[n].down_since < config_.node_timeout) continue;
    for (JobId j : matrix_.jobs_on(n))
      doomed.emplace_back(j, "node " + nodes_[n].name + " has been down for more than " +
                                 format_duration(config_.node_timeout));
  }
  for (const auto& [id, reason] : doomed) {
    if (!jobs_.count(id)) continue;  // a job on two lost nodes
    if (auto ok = end_job(id, "failed", 1, reason, reason); !ok) {
      config_.log.error("job " + std::to_string(id) + ": " + ok.error().message());
      continue;  // it stays; the next heartbeat tries again
    }
    config_.log.warning("job " + std::to_string(id) + " failed: " + reason);
  }
}

Result<std::size_t> CoordinatorCore::node_for(const std::string& name) const {
  if (auto it = node_index_.find(name); it != node_index_.end()) return it->second;
  return fail(Errc::not_found, "unknown node '" + name + "' (not in gangd's hostfile)");
}

void CoordinatorCore::agent_registered(std::size_t node, std::shared_ptr<AgentConn> conn) {
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
  // Jobs that ended while it was away go first: the agent may still hold them (frozen,
  // if it restarted and adopted them), and nothing else would tell it.
  for (auto& rel : std::exchange(nodes_[node].owed_releases, {})) {
    config_.log("node " + nodes_[node].name + " is back: releasing job " + std::to_string(rel.job) +
                ", which ended while it was away");
    conn->send(rel);
  }
  for (const auto& [id, job] : jobs_) {
    const auto* p = matrix_.find(id);
    if (!p) continue;
    for (const auto& c : p->cells)
      if (c.node == node) conn->send(assign_message(job, node));
  }
  // A (re)started agent may have lost its cycle-stealing setting: ask again.
  forget_cyclesteal(node);
  drive_cyclesteal();
}

void CoordinatorCore::agent_gone(std::size_t node, const AgentConn* conn) {
  if (node >= nodes_.size() || nodes_[node].conn.get() != conn) return;
  nodes_[node].conn.reset();
  nodes_[node].down_since = steady::now();
  if (!stopped_) config_.log.warning("node " + nodes_[node].name + " disconnected");
  commands_lost_node(node);
  round_lost_node(node);
}

void CoordinatorCore::on_metrics(std::size_t node, const proto::MetricsReport& m) {
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

std::size_t CoordinatorCore::agents_connected() const {
  return static_cast<std::size_t>(
      std::count_if(nodes_.begin(), nodes_.end(), [](const Node& n) { return n.conn != nullptr; }));
}

void CoordinatorCore::send_to(std::size_t node, const proto::Message& m) {
  if (node < nodes_.size() && nodes_[node].conn) nodes_[node].conn->send(m);
}

proto::JobAssign CoordinatorCore::assign_message(const Job& job, std::size_t node) const {
  proto::JobAssign a{job.rec.id, job.rec.name,   job.rec.uid,
                     0,          job.rec.paging, matrix_.is_running(job.rec.id)};
  if (const auto* p = matrix_.find(job.rec.id))
    for (const auto& c : p->cells)
      if (c.node == node) a.ranks_here = static_cast<std::uint32_t>(c.ranks);
  return a;
}

bool CoordinatorCore::send_frame_to(std::size_t node, const Frame& f) {
  if (node >= nodes_.size() || !nodes_[node].conn) return false;
  nodes_[node].conn->send_frame(f);
  return true;
}

void CoordinatorCore::close_agents() {
  for (auto& n : nodes_)
    n.conn.reset();
  for (auto& w : conns_)
    if (auto c = w.lock()) c->close();
  conns_.clear();
}

}  // namespace dynamos::gang
