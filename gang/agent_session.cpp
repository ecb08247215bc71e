#include "gang/agent_session.hpp"

#include <unistd.h>

#include <cstdio>

#include "base/file.hpp"
#include "gang/protocol_io.hpp"

namespace dynamos::gang {

using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

// One TCP connection's life: its socket, send queue and handshake deadline.
struct AgentSession::Link {
  explicit Link(const asio::any_io_executor& ex) : socket(ex), outbox(ex), deadline(ex) {}
  tcp::socket socket;
  Outbox outbox;
  asio::steady_timer deadline;
  bool up = false;
  void close() {
    up = false;
    outbox.close();
    error_code ec;
    socket.close(ec);
    deadline.cancel();
  }
};

std::shared_ptr<AgentSession> AgentSession::create(asio::any_io_executor ex, AgentConfig config,
                                                   SwitchHandler& handler) {
  return std::shared_ptr<AgentSession>(new AgentSession(std::move(ex), std::move(config), handler));
}

AgentSession::AgentSession(asio::any_io_executor ex, AgentConfig config, SwitchHandler& handler)
    : ex_(ex),
      config_(std::move(config)),
      handler_(handler),
      watchdog_timer_(ex),
      backoff_timer_(ex),
      switch_timer_(ex) {
  if (!config_.log) config_.log = log::sink("node " + config_.node + ": ");
}

AgentSession::~AgentSession() = default;

void AgentSession::log(const std::string& line, log::Level level) const {
  config_.log(level, line);
}

void AgentSession::start() {
  if (state_ != State::idle) return;
  state_ = State::connecting;
  last_heard_ = steady::now();
  auto self = shared_from_this();
  asio::co_spawn(
      ex_, [self]() { return self->run(); }, asio::detached);
  asio::co_spawn(
      ex_, [self]() { return self->watchdog(); }, asio::detached);
}

void AgentSession::stop() {
  state_ = State::stopped;
  if (link_) link_->close();
  watchdog_timer_.cancel();
  backoff_timer_.cancel();
  switch_timer_.cancel();
}

void AgentSession::send(const proto::Message& m) {
  if (!link_ || !link_->up) return;
  if (auto f = make_frame(m)) link_->outbox.push(*f);
}

std::chrono::nanoseconds AgentSession::coordinator_timeout() const {
  if (config_.coordinator_timeout.count() > 0) return config_.coordinator_timeout;
  return 3 * heartbeat_;
}

asio::awaitable<void> AgentSession::run() {
  auto self = shared_from_this();
  auto backoff = config_.reconnect_min;
  while (state_ != State::stopped) {
    state_ = State::connecting;
    auto r = co_await session();
    if (state_ == State::stopped) break;
    if (!r) {
      last_error_ = r.error();
      log(r.error().message(), log::Level::warning);
    }
    if (fatal_ || !config_.reconnect) {
      state_ = State::stopped;
      break;
    }
    // Back off only when the link never came up; a link that worked retries at once.
    backoff_timer_.expires_after(backoff);
    error_code ec;
    co_await backoff_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    backoff = std::min(backoff * 2, config_.reconnect_max);
    if (r) backoff = config_.reconnect_min;
  }
  watchdog_timer_.cancel();
}

asio::awaitable<void> AgentSession::watchdog() {
  auto self = shared_from_this();
  while (state_ != State::stopped) {
    auto timeout = coordinator_timeout();
    watchdog_timer_.expires_after(std::max<std::chrono::nanoseconds>(timeout / 4, 5ms));
    error_code ec;
    co_await watchdog_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (state_ == State::stopped) break;
    if (steady::now() - last_heard_ > timeout && !lost_reported_) {
      lost_reported_ = true;
      log("coordinator silent for more than " + std::to_string(timeout.count() / 1'000'000) +
              " ms: thawing every job",
          log::Level::warning);
      handler_.coordinator_lost();
      if (link_) link_->close();  // a silent link is a dead link: reconnect
    }
  }
}

asio::awaitable<Result<void>> AgentSession::session() {
  auto link = std::make_shared<Link>(ex_);
  link_ = link;
  FrameReader buf;

  // The handshake deadline closes the socket if connect + authentication take too long.
  link->deadline.expires_after(config_.connect_timeout);
  asio::co_spawn(
      ex_,
      [link]() -> asio::awaitable<void> {
        error_code ec;
        co_await link->deadline.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (!ec && !link->up) {
          link->close();
        }
      },
      asio::detached);

  auto where = config_.coordinator_host + ":" + std::to_string(config_.coordinator_port);
  error_code ec;
  tcp::resolver resolver(ex_);
  auto endpoints = co_await resolver.async_resolve(config_.coordinator_host,
                                                   std::to_string(config_.coordinator_port),
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return fail(Errc::not_found, "resolve gangd at " + where + ": " + ec.message());
  co_await asio::async_connect(link->socket, endpoints,
                               asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    link->close();
    co_return fail(Errc::system, "connect to gangd at " + where + ": " + ec.message());
  }
  link->socket.set_option(tcp::no_delay(true), ec);
  (void)set_close_on_exec(link->socket.native_handle());  // no child inherits the link

  if (auto ok = co_await handshake(*link, buf); !ok) {
    link->close();
    co_return std::unexpected(with_context(ok.error(), "joining gangd at " + where));
  }
  link->up = true;
  link->outbox.write_through(link->socket.native_handle());
  link->deadline.cancel();
  state_ = State::connected;
  last_heard_ = steady::now();
  lost_reported_ = false;
  last_error_.reset();

  asio::co_spawn(
      ex_, [link]() { return link->outbox.run(link->socket); }, asio::detached);
  auto self = shared_from_this();
  asio::co_spawn(
      ex_, [self, link]() { return self->heartbeats(link); }, asio::detached);

  Result<void> result;
  for (;;) {
    auto msg = co_await buf.next(link->socket);
    if (!msg) {
      if (msg.error().code == Errc::protocol || msg.error().code == Errc::version_mismatch) {
        if (auto f = make_frame(proto::error_message(msg.error()))) link->outbox.push(*f);
        result = std::unexpected(msg.error());
      } else if (state_ != State::stopped) {
        result = fail(Errc::state, "lost the link to gangd at " + where);
      }
      break;
    }
    last_heard_ = steady::now();
    if (!dispatch(*msg)) {
      result = fail(Errc::protocol, std::string("unexpected ") +
                                        proto::msg_type_name(proto::type_of(*msg)) +
                                        " message from gangd");
      break;
    }
  }
  link->close();
  if (state_ != State::stopped) state_ = State::connecting;
  co_return result;
}

asio::awaitable<Result<void>> AgentSession::handshake(Link& link, FrameReader& buf) {
  auto nonce = random_nonce();
  if (!nonce) co_return std::unexpected(nonce.error());
  auto hello = proto::encode(proto::Hello{proto::Role::agent, config_.node,
                                          static_cast<std::uint32_t>(::getpid()), *nonce,
                                          config_.frame_auth});
  if (!hello) co_return std::unexpected(hello.error());
  error_code ec;
  co_await asio::async_write(link.socket, asio::buffer(*hello),
                             asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return fail(Errc::system, "send hello: " + ec.message());

  auto refused = [this](const proto::ErrorMsg& e) {
    // gangd said no (unknown node, wrong secret): retrying will not change that.
    fatal_ = e.code == static_cast<std::uint16_t>(Errc::not_permitted) ||
             e.code == static_cast<std::uint16_t>(Errc::not_found);
    Errc code = e.code <= static_cast<std::uint16_t>(Errc::protocol) ? static_cast<Errc>(e.code)
                                                                     : Errc::protocol;
    return fail(code, "gangd refused: " + e.message);
  };

  auto msg = co_await buf.next(link.socket);
  if (!msg) co_return std::unexpected(msg.error());
  if (auto* e = std::get_if<proto::ErrorMsg>(&*msg)) co_return refused(*e);
  auto challenge = proto::expect<proto::Challenge>(*msg);
  if (!challenge) co_return std::unexpected(challenge.error());
  if (!mac_equal((*challenge)->server_proof,
                 server_proof(config_.secret, *nonce, (*challenge)->server_nonce, config_.node))) {
    fatal_ = true;
    co_return fail(Errc::not_permitted,
                   "the coordinator could not prove it knows the shared secret");
  }
  auto auth = proto::encode(
      proto::Auth{client_proof(config_.secret, (*challenge)->server_nonce, *nonce, config_.node)});
  co_await asio::async_write(link.socket, asio::buffer(*auth),
                             asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return fail(Errc::system, "send auth: " + ec.message());
  if (config_.frame_auth) {
    // From here on every frame is tagged, Welcome first (gang/auth.hpp).
    auto keys = frame_keys(config_.secret, *nonce, (*challenge)->server_nonce, config_.node);
    buf.authenticate(FrameMac(keys.to_agent));
    link.outbox.seal(FrameMac(keys.to_gangd));
  }

  msg = co_await buf.next(link.socket);
  if (!msg) co_return std::unexpected(msg.error());
  if (auto* e = std::get_if<proto::ErrorMsg>(&*msg)) co_return refused(*e);
  auto expected = proto::expect<proto::Welcome>(*msg);
  if (!expected) co_return std::unexpected(expected.error());
  const proto::Welcome* welcome = *expected;
  node_index_ = welcome->node_index;
  if (welcome->heartbeat_ns > 0)
    heartbeat_ = std::chrono::nanoseconds(static_cast<std::int64_t>(welcome->heartbeat_ns));
  pending_.reset();  // a round of the previous link is abandoned
  switch_timer_.cancel();
  handler_.welcomed(*welcome);
  co_return Result<void>{};
}

asio::awaitable<void> AgentSession::heartbeats(std::shared_ptr<Link> link) {
  asio::steady_timer t(ex_);
  while (link->up && !link->outbox.closed()) {
    t.expires_after(heartbeat_);
    error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!link->up || link->outbox.closed()) break;
    // Any frame sent since the last tick (a switch_ack, a metrics report) told gangd
    // as much.
    if (auto f = make_frame(proto::Heartbeat{realtime_ns()})) link->outbox.push_heartbeat(*f);
    if (auto m = handler_.metrics())
      if (auto f = make_frame(*m)) link->outbox.push(*f);
  }
}

bool AgentSession::dispatch(proto::Message& m) {
  if (auto* p = std::get_if<proto::SwitchOrder>(&m)) {
    schedule_switch(*p);
  } else if (auto* a = std::get_if<proto::JobAssign>(&m)) {
    handler_.job_assigned(*a);
  } else if (auto* rel = std::get_if<proto::JobRelease>(&m)) {
    handler_.job_released(*rel);
  } else if (auto* req = std::get_if<proto::NodeRequest>(&m)) {
    handler_.node_request_async(*req, [self = shared_from_this(), l = link_,
                                       id = req->request](Result<std::string> r) {
      asio::post(self->ex_, [l, id, r = std::move(r)] {
        if (!l || !l->up) return;
        if (auto f = make_frame(proto::NodeReply{id, r.has_value(), r ? *r : r.error().message()}))
          l->outbox.push(*f);
      });
    });
  } else if (auto* q = std::get_if<proto::SetQuantum>(&m)) {
    handler_.quantum_changed(q->quantum_ns);
  } else if (std::holds_alternative<proto::Heartbeat>(m)) {
    // last_heard_ is all a heartbeat is for
  } else if (auto* e = std::get_if<proto::ErrorMsg>(&m)) {
    log("gangd reports: " + e->message, log::Level::error);
  } else {
    return false;
  }
  return true;
}

void AgentSession::schedule_switch(const proto::SwitchOrder& order) {
  proto::SwitchAck ack{order.round, true, realtime_ns(), 0, 0, {}, 0, 0, {}};
  if (pending_)
    log("round " + std::to_string(pending_->order.round) + " abandoned for round " +
            std::to_string(order.round) + " before its deadline",
        log::Level::warning);
  auto t0 = steady::now();
  auto r = handler_.prepare(order);
  ack.prepare_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - t0).count());
  if (!r) ack.prepare_error = r.error().message();
  pending_ = Pending{order, std::move(ack), link_};
  auto now = realtime_ns();
  if (order.deadline_ns <= now) {
    carry_out(order.round);
    return;
  }
  // One timer a session (not a coroutine a round): 10,000 simulated agents arm it in
  // every round of the coordinator benchmark.
  switch_timer_.expires_after(
      std::chrono::nanoseconds(static_cast<std::int64_t>(order.deadline_ns - now)));
  switch_timer_.async_wait([self = shared_from_this(), round = order.round](const error_code& ec) {
    if (!ec) self->carry_out(round);
  });
}

void AgentSession::carry_out(std::uint64_t round) {
  if (!pending_ || pending_->order.round != round) return;  // abandoned
  Pending p = std::move(*pending_);
  pending_.reset();
  p.ack.switched_ns = realtime_ns();
  auto t0 = steady::now();
  auto r = handler_.switch_now(p.order);
  p.ack.duration_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - t0).count());
  p.ack.running_ns = handler_.last_running_ns();
  if (p.ack.running_ns == 0) p.ack.running_ns = p.ack.switched_ns + p.ack.duration_ns;
  if (!r) {
    p.ack.ok = false;
    p.ack.error = r.error().message();
  } else {
    ++rounds_switched_;
  }
  if (p.link && p.link->up)
    if (auto f = make_frame(p.ack)) p.link->outbox.push(*f);
}

}  // namespace dynamos::gang
