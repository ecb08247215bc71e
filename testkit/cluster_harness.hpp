// An in-process gang cluster for tests and benchmarks: one gangd Coordinator and N
// simulated agents (AgentSession + a recording SwitchHandler) on loopback TCP, with
// every Asio object living on one background io_context thread.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "gang/agent_session.hpp"
#include "gang/gangd/coordinator.hpp"

namespace dynamos::gang::test {

// Records what gangd asked of one node.
class RecordingNode : public SwitchHandler {
 public:
  struct Switch {
    std::uint64_t round;
    std::vector<JobId> outgoing, incoming;
  };
  void job_assigned(const proto::JobAssign& a) override {
    std::lock_guard l(mu);
    assigned.push_back(a);
  }
  void job_released(const proto::JobRelease& r) override {
    std::lock_guard l(mu);
    released.push_back(r.job);
  }
  // Fails every prepare with this message when set (the switch still follows).
  Result<void> prepare(const proto::SwitchOrder&) override {
    std::lock_guard l(mu);
    if (prepare_error.empty()) return {};
    return fail(Errc::state, prepare_error);
  }
  Result<void> switch_now(const proto::SwitchOrder& p) override {
    std::lock_guard l(mu);
    switches.push_back({p.round, p.outgoing, p.incoming});
    return {};
  }
  void coordinator_lost() override { ++lost; }
  std::optional<proto::MetricsReport> metrics() override {
    std::lock_guard l(mu);
    return report;
  }
  void set_report(proto::MetricsReport r) {
    std::lock_guard l(mu);
    report = std::move(r);
  }

  std::mutex mu;
  std::vector<proto::JobAssign> assigned;
  std::vector<JobId> released;
  std::vector<Switch> switches;
  std::optional<proto::MetricsReport> report;
  std::string prepare_error;
  std::atomic<int> lost{0};

  std::vector<Switch> switches_copy() {
    std::lock_guard l(mu);
    return switches;
  }
  std::vector<proto::JobAssign> assigned_copy() {
    std::lock_guard l(mu);
    return assigned;
  }
};

class Cluster {
 public:
  // With `agents_on_own_thread`, agents run on a second io_context thread, as they would
  // on other hosts: their work is then not charged to the coordinator's thread.
  explicit Cluster(bool agents_on_own_thread = false)
      : work_(boost::asio::make_work_guard(io)),
        agent_work_(boost::asio::make_work_guard(agent_io)) {
    thread_ = std::thread([this] { io.run(); });
    if (agents_on_own_thread) agent_thread_ = std::thread([this] { agent_io.run(); });
  }
  ~Cluster() { shutdown(); }

  // Runs f on the coordinator's io thread and returns its result.
  template <class F>
  auto call(F f) -> decltype(f()) {
    return run_on(io, std::move(f));
  }

  // Runs a coroutine of the coordinator on its io thread and waits for its result.
  template <class T>
  T await(boost::asio::awaitable<T> a) {
    return boost::asio::co_spawn(io, std::move(a), boost::asio::use_future).get();
  }

  Result<void> start_coordinator(CoordinatorConfig cfg) {
    if (!cfg.log) cfg.log = [this](const std::string& line) { log_line(line); };
    frame_auth = cfg.frame_auth;
    return call([&]() -> Result<void> {
      auto c = Coordinator::create(io, std::move(cfg));
      if (!c) return std::unexpected(c.error());
      coordinator = *c;
      coordinator->start();
      return {};
    });
  }

  void stop_coordinator() {
    call([&] {
      if (coordinator) coordinator->stop();
      coordinator.reset();
    });
  }

  // Adds a simulated agent for `node`; returns its index in `agents`.
  std::size_t add_agent(const std::string& node, const Secret& secret,
                        std::chrono::nanoseconds coordinator_timeout = {}, bool reconnect = true) {
    auto handler = std::make_unique<RecordingNode>();
    auto* h = handler.get();
    handlers.push_back(std::move(handler));
    AgentConfig cfg;
    cfg.coordinator_port = call([&] { return coordinator->port(); });
    cfg.node = node;
    cfg.secret = secret;
    cfg.frame_auth = frame_auth;
    cfg.coordinator_timeout = coordinator_timeout;
    cfg.reconnect = reconnect;
    cfg.reconnect_min = std::chrono::milliseconds(20);
    cfg.reconnect_max = std::chrono::milliseconds(200);
    cfg.log = [this](const std::string& line) { log_line(line); };
    auto& aio = agent_thread_.joinable() ? agent_io : io;
    run_on(aio, [&] {
      agents.push_back(AgentSession::create(aio.get_executor(), cfg, *h));
      agents.back()->start();
    });
    return agents.size() - 1;
  }

  // Polls `pred` on the coordinator's thread until true or the timeout passes.
  template <class P>
  bool wait_for(P pred, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (call([&] { return static_cast<bool>(pred()); })) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  void shutdown() {
    if (!thread_.joinable()) return;
    run_on(agent_thread_.joinable() ? agent_io : io, [&] {
      for (auto& a : agents)
        a->stop();
    });
    call([&] {
      if (coordinator) coordinator->stop();
    });
    work_.reset();
    agent_work_.reset();
    // Everything ends once its sockets and timers are closed; do not wait forever.
    join(thread_, io);
    if (agent_thread_.joinable()) join(agent_thread_, agent_io);
    agents.clear();
    coordinator.reset();
  }

  std::vector<std::string> log_lines() {
    std::lock_guard l(log_mu_);
    return log_;
  }

  // One thread each: the concurrency hint 1 lets Asio skip its internal locking.
  boost::asio::io_context io{1};
  boost::asio::io_context agent_io{1};
  std::shared_ptr<Coordinator> coordinator;
  std::vector<std::shared_ptr<AgentSession>> agents;
  std::vector<std::unique_ptr<RecordingNode>> handlers;
  bool frame_auth = true;  // what the coordinator was started with; agents follow it

 private:
  template <class F>
  static auto run_on(boost::asio::io_context& ctx, F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    boost::asio::post(ctx, [&task] { task(); });
    return fut.get();
  }
  static void join(std::thread& t, boost::asio::io_context& ctx) {
    auto done = std::async(std::launch::async, [&t] { t.join(); });
    if (done.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      ctx.stop();
      done.wait();
    }
  }
  void log_line(const std::string& line) {
    std::lock_guard l(log_mu_);
    log_.push_back(line);
  }
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> agent_work_;
  std::thread thread_;
  std::thread agent_thread_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

// A real node's agent session (its handler a NodeAgent, say) on an io thread of its own,
// at SCHED_FIFO 10 as dynamosd runs it by default (--rt-priority 10): the switch must
// not wait behind the ranks for a CPU. Stopped on destruction.
class AgentThread {
 public:
  AgentThread(std::uint16_t port, const std::string& node, const Secret& secret,
              SwitchHandler& handler) {
    AgentConfig ac;
    ac.coordinator_port = port;
    ac.node = node;
    ac.secret = secret;
    ac.log = [](const std::string&) {};
    session_ = AgentSession::create(io_.get_executor(), ac, handler);
    thread_ = std::thread([this] {
      sched_param sp{};
      sp.sched_priority = 10;
      (void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
      auto work = boost::asio::make_work_guard(io_);
      session_->start();
      io_.run();
    });
  }
  AgentThread(const AgentThread&) = delete;
  AgentThread& operator=(const AgentThread&) = delete;
  ~AgentThread() { stop(); }

  // Runs f() on the agent's thread (where gangd's requests run) and returns its result.
  template <typename F>
  auto call(F&& f) {
    std::promise<decltype(f())> p;
    boost::asio::post(io_, [&] { p.set_value(f()); });
    return p.get_future().get();
  }

  // Stops the session on its own thread, then the thread.
  void stop() {
    if (!thread_.joinable()) return;
    std::promise<void> stopped;
    boost::asio::post(io_, [&] {
      session_->stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
    io_.stop();
    thread_.join();
  }

 private:
  boost::asio::io_context io_{1};
  std::shared_ptr<AgentSession> session_;
  std::thread thread_;  // last: started once the rest exists
};

}  // namespace dynamos::gang::test
