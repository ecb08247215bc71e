// gangd's control API (Slurm's proc_req.c): the local control socket, whose callers
// are identified by SO_PEERCRED, and the requests it serves: submit, cancel, job
// lists, node lists, the quantum, paging policies, a job's end, node commands.
#include <sys/socket.h>

#include <algorithm>
#include <charconv>

#include "base/file.hpp"
#include "extensions/paging/policy.hpp"
#include "gang/gangd/coordinator_core.hpp"
#include "gang/node_ops.hpp"

namespace dynamos::gang {

using unix_socket = asio::local::stream_protocol;

namespace {
// A known paging policy, else an error that lists the known ones.
Result<void> check_policy(const std::string& p) {
  const auto& all = paging::policy_names();  // the extension's tunable choices
  if (std::find(all.begin(), all.end(), p) != all.end()) return {};
  std::string known;
  for (const auto& k : all)
    known += (known.empty() ? "" : ", ") + k;
  return fail(Errc::invalid_argument, "unknown paging policy '" + p + "' (known: " + known + ")");
}
}  // namespace

class CoordinatorCore::ControlConn : public std::enable_shared_from_this<ControlConn> {
 public:
  ControlConn(std::shared_ptr<CoordinatorCore> c, unix_socket::socket s)
      : c_(std::move(c)), socket_(std::move(s)), idle_(socket_.get_executor()) {}
  void start() {
    auto self = shared_from_this();
    idle_.expires_after(c_->config_.control_idle_timeout);
    asio::co_spawn(
        socket_.get_executor(), [self]() { return self->serve(); }, asio::detached);
    asio::co_spawn(
        socket_.get_executor(), [self]() { return self->idle_watch(); }, asio::detached);
  }
  void close() {
    error_code ec;
    socket_.close(ec);
    idle_.cancel();
  }

 private:
  asio::awaitable<void> serve() {
    auto self = shared_from_this();
    struct ucred cred {};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      c_->config_.log.warning("control socket: cannot read the caller's credentials, closing");
      co_await reply(proto::error_message(fail_errno("SO_PEERCRED").error()));
    } else {
      FrameReader buf;
      for (;;) {
        // A caller that sends nothing (or half a frame) for the idle timeout is closed.
        idle_.expires_after(c_->config_.control_idle_timeout);
        auto req = co_await buf.next(socket_);
        idle_.expires_at(steady::time_point::max());  // a request is being served
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

  // Closes the connection when the idle timer expires; re-armed for every request.
  asio::awaitable<void> idle_watch() {
    auto self = shared_from_this();
    while (socket_.is_open()) {
      error_code ec;
      co_await idle_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!socket_.is_open()) break;
      if (!ec && idle_.expiry() <= steady::now()) {
        c_->config_.log("control socket: a caller was idle for " +
                        format_duration(c_->config_.control_idle_timeout) + ", closing");
        error_code ignored;
        socket_.close(ignored);
        break;
      }
    }
  }

  std::shared_ptr<CoordinatorCore> c_;
  unix_socket::socket socket_;
  asio::steady_timer idle_;
};

asio::awaitable<void> CoordinatorCore::accept_control() {
  control_accept_.emplace(io_);
  (void)set_close_on_exec(control_->native_handle());
  while (!stopped_) {
    error_code ec;
    unix_socket::socket s =
        co_await control_->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (stopped_ || ec == asio::error::operation_aborted) break;
      co_await control_accept_->failed("control accept", ec, config_.log);
      continue;
    }
    control_accept_->accepted();
    if (controls_.size() >= config_.max_control_connections) {
      control_accept_->note("refusing a control connection: " + std::to_string(controls_.size()) +
                                " open (limit " + std::to_string(config_.max_control_connections) +
                                ")",
                            config_.log);
      error_code ignored;
      s.close(ignored);
      continue;
    }
    (void)set_close_on_exec(s.native_handle());  // no child of gangd inherits it
    auto conn = std::make_shared<ControlConn>(shared_from_this(), std::move(s));
    controls_.insert(conn);
    conn->start();
  }
}

void CoordinatorCore::close_controls() {
  auto controls = controls_;
  for (auto& c : controls)
    c->close();
}

proto::Message CoordinatorCore::handle_control(std::uint32_t uid, const proto::Message& request) {
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
          return list_jobs(uid, m.all);
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
        } else if (auto answer = sched_control(uid, request)) {
          return std::move(*answer);
        } else {
          return proto::error_message(
              Error{Errc::protocol, 0,
                    std::string(proto::msg_type_name(proto::type_of(request))) +
                        " is not a control request"});
        }
      },
      request);
}

Result<void> CoordinatorCore::journal(const std::function<Result<void>(Journal&)>& write) {
  if (!journal_) return {};
  return write(*journal_);
}

Result<JobId> CoordinatorCore::submit(std::uint32_t uid, const proto::JobSubmit& req) {
  if (req.argv.empty() || req.argv[0].empty())
    return fail(Errc::invalid_argument, "no program given");
  if (req.ranks == 0 || req.ranks > 1'000'000)
    return fail(Errc::invalid_argument,
                "ranks must be between 1 and 1000000, got " + std::to_string(req.ranks));
  if (auto ok = check_policy(req.paging); !ok) return std::unexpected(ok.error());
  std::string name = req.name;
  if (name.empty()) {
    name = req.argv[0].substr(req.argv[0].rfind('/') + 1);
  }
  if (name.size() > 255) return fail(Errc::invalid_argument, "job name longer than 255 bytes");
  for (char ch : name)
    if (static_cast<unsigned char>(ch) < 0x20)
      return fail(Errc::invalid_argument, "job name contains a control character");

  return enqueue(uid, req, name);
}

// Starts a job the queue placed (queue_ops.cpp): the main journal, the agents, the
// launcher. An error leaves nothing of the job in the matrix.
Result<void> CoordinatorCore::start_job(JobId id, std::uint32_t uid, const std::string& name,
                                        const proto::JobSubmit& req, const Placement& placed) {
  const Placement* p = &placed;
  JournalJob rec{id,        uid,       name,
                 req.ranks, req.nodes, req.paging,
                 req.argv,  req.cwd,   static_cast<std::uint32_t>(p->row),
                 {}};
  for (const auto& c : p->cells)
    rec.cells.emplace_back(nodes_[c.node].name, static_cast<std::uint32_t>(c.ranks));
  if (auto ok = journal([&](Journal& j) { return j.job_added(rec); }); !ok) {
    (void)matrix_.remove(id);
    return std::unexpected(with_context(ok.error(), "job not started"));
  }
  auto& job = jobs_[id] = Job{rec};
  job.submitted_ns = realtime_ns();
  // Agents learn of the job frozen; the next round (replan) lets it run. Ranks that
  // start before then are frozen as they join the job's group.
  for (const auto& c : p->cells) {
    auto a = assign_message(job, c.node);
    a.running = false;
    send_to(c.node, a);
  }
  if (config_.launch) {
    if (auto ok = config_.launch(rec, req); !ok) {
      (void)journal([&](Journal& j) { return j.job_removed(id, "launch failed"); });
      for (const auto& c : p->cells)
        send_to(c.node, proto::JobRelease{id, "launch failed"});
      (void)matrix_.remove(id);
      jobs_.erase(id);
      return std::unexpected(with_context(ok.error(), "job not started"));
    }
  }
  config_.log("job " + std::to_string(id) + " (" + name + ", uid " + std::to_string(uid) + ", " +
              std::to_string(req.ranks) + " ranks) placed in slot " + std::to_string(p->row));
  replan();
  return {};
}

Result<void> CoordinatorCore::cancel(std::uint32_t uid, JobId id) {
  if (sched_.pending.contains(id)) return cancel_pending(uid, id);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return fail(Errc::not_found, "no job " + std::to_string(id));
  if (!may_act(uid, it->second))
    return fail(Errc::not_permitted, "job " + std::to_string(id) + " belongs to another user");
  return end_job(id, "cancelled", 128 + 15, "cancelled", "cancelled");
}

namespace {
// Bytes `info` adds to a JobList on the wire, by the protocol's own encoder.
std::size_t wire_size(const proto::JobInfo& info) {
  static const std::size_t empty = proto::encode(proto::Message{proto::JobList{}})->size();
  proto::JobList one;
  one.jobs.push_back(info);
  auto frame = proto::encode(proto::Message{std::move(one)});
  return frame ? frame->size() - empty : SIZE_MAX;
}
}  // namespace

proto::JobInfo CoordinatorCore::job_info(JobId id, const Job& job) const {
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
  describe_running(id, info);
  return info;
}

// The list always fits one message (proto::kMaxPayload): pending and live jobs first,
// then ended ones, newest first, as far as room is left (with `all`, the history
// journal's too); ended jobs are listed oldest first.
proto::JobList CoordinatorCore::list_jobs(std::uint32_t uid, bool all) const {
  std::size_t room = proto::kMaxPayload - 4;  // the list's count
  auto fits = [&room](const proto::JobInfo& info) {
    std::size_t size = wire_size(info);
    if (size > room) return false;
    room -= size;
    return true;
  };
  proto::JobList live;
  list_queue(uid, /*all=*/false, live);
  for (const auto& [id, job] : jobs_)
    if (may_act(uid, job)) live.jobs.push_back(job_info(id, job));
  proto::JobList out;
  for (auto& info : live.jobs) {
    if (!fits(info)) break;
    out.jobs.push_back(std::move(info));
  }
  std::vector<const proto::JobInfo*> ended;
  for (auto it = ended_.rbegin(); it != ended_.rend(); ++it) {
    if (uid != 0 && uid != it->second.uid) continue;
    if (!fits(it->second)) break;
    ended.push_back(&it->second);
  }
  if (all)
    for (auto it = sched_.history.rbegin(); it != sched_.history.rend(); ++it) {
      if ((uid != 0 && uid != it->uid) || ended_.contains(it->job)) continue;
      if (!fits(*it)) break;
      ended.push_back(&*it);
    }
  std::reverse(ended.begin(), ended.end());  // oldest first, also where times are equal
  std::stable_sort(ended.begin(), ended.end(),
                   [](const auto* a, const auto* b) { return a->ended_ns < b->ended_ns; });
  std::vector<proto::JobInfo> list;
  for (const auto* info : ended)
    list.push_back(*info);
  for (auto& info : out.jobs)
    list.push_back(std::move(info));
  out.jobs = std::move(list);
  return out;
}

proto::NodeList CoordinatorCore::list_nodes(std::uint32_t uid) const {
  proto::NodeList out;
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    proto::NodeInfo info;
    info.name = nodes_[n].name;
    info.state = nodes_[n].conn ? "up" : "down";
    info.guest_policy = nodes_[n].guest_policy;
    describe_node(n, info);
    info.slots = static_cast<std::uint32_t>(nodes_[n].slots);
    for (JobId j : matrix_.jobs_on(n))
      if (auto it = jobs_.find(j); it != jobs_.end() && may_act(uid, it->second))
        info.jobs.push_back(j);
    if (nodes_[n].metrics) {
      info.mem_total = nodes_[n].metrics->mem_total;
      info.mem_available = nodes_[n].metrics->mem_available;
      info.quantum_ns = nodes_[n].metrics->quantum_ns;
    }
    out.nodes.push_back(std::move(info));
  }
  return out;
}

Result<void> CoordinatorCore::set_quantum(std::uint32_t uid, Nanos q) {
  if (uid != 0) return fail(Errc::not_permitted, "only root may change the quantum");
  if (q < 1ms || q > 24h)
    return fail(Errc::invalid_argument, "quantum " + format_duration(q) + " is outside 1ms..24h");
  auto ns = static_cast<std::uint64_t>(q.count());
  if (auto ok = journal([&](Journal& j) { return j.quantum_set(ns); }); !ok) return ok;
  quantum_ = q;
  quantum_timer_.cancel();  // the loop re-arms with the new quantum
  // The agents plan their paging within the quantum; one that is away now hears it in
  // its next Welcome.
  for (std::size_t n = 0; n < nodes_.size(); ++n)
    send_to(n, proto::SetQuantum{ns});
  return {};
}

Result<void> CoordinatorCore::set_paging(std::uint32_t uid, JobId id, const std::string& policy) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return fail(Errc::not_found, "no job " + std::to_string(id));
  if (!may_act(uid, it->second))
    return fail(Errc::not_permitted, "job " + std::to_string(id) + " belongs to another user");
  if (auto ok = check_policy(policy); !ok) return ok;
  if (auto ok = journal([&](Journal& j) { return j.paging_set(id, policy); }); !ok) return ok;
  it->second.rec.paging = policy;
  // A JobAssign for a known job updates it on the agent.
  if (const auto* p = matrix_.find(id))
    for (const auto& c : p->cells)
      send_to(c.node, assign_message(it->second, c.node));
  return {};
}

void CoordinatorCore::record_end(JobId id, const std::string& state, std::int32_t exit_code,
                                 const std::string& reason) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  auto info = job_info(id, it->second);
  info.state = state;
  info.exit_code = exit_code;
  // A reason is for people: 1 KiB says what happened, and keeps 1,000 ended jobs in
  // one job list (list_jobs) with room to spare.
  constexpr std::size_t kMaxReason = 1024;
  info.reason = reason.size() > kMaxReason ? reason.substr(0, kMaxReason) + "... (cut)" : reason;
  info.ended_ns = realtime_ns();
  ended_[id] = std::move(info);
  if (ended_.size() > 1000) ended_.erase(ended_.begin());  // keep the newest
}

Result<void> CoordinatorCore::job_exited(std::uint32_t uid, const proto::JobExited& m) {
  auto it = jobs_.find(m.job);
  if (it == jobs_.end()) {
    if (ended_.count(m.job)) return {};  // reported twice (the launcher retried)
    return fail(Errc::not_found, "no job " + std::to_string(m.job));
  }
  if (!may_act(uid, it->second))
    return fail(Errc::not_permitted, "job " + std::to_string(m.job) + " belongs to another user");
  std::string why = m.reason.empty() ? "exited " + std::to_string(m.exit_code) : m.reason;
  auto state = m.exit_code == 0 && m.reason.empty() ? "done" : "failed";
  if (auto ok = end_job(m.job, state, m.exit_code, m.reason, why); !ok) return ok;
  config_.log("job " + std::to_string(m.job) + " ended: " + why);
  return {};
}

Result<void> CoordinatorCore::end_job(JobId id, const std::string& state, std::int32_t exit_code,
                                      const std::string& reason, const std::string& why) {
  if (auto ok = history_end(id, state, exit_code, reason); !ok) return ok;
  if (auto ok = journal([&](Journal& j) { return j.job_removed(id, why); }); !ok) return ok;
  record_end(id, state, exit_code, reason);
  if (const auto* p = matrix_.find(id))
    for (const auto& c : p->cells) {
      if (nodes_[c.node].conn)
        send_to(c.node, proto::JobRelease{id, why});
      else
        nodes_[c.node].owed_releases.push_back(proto::JobRelease{id, why});
    }
  (void)matrix_.remove(id);
  jobs_.erase(id);
  replan();
  schedule();  // its room may let pending jobs start
  return {};
}

// The nodes a NodeCommand goes to, once the caller may send it: the nodes named
// (for a job owner's operation, nodes of that job only), else every node that is up
// (a job owner's: every node of the job).
Result<std::vector<std::size_t>> CoordinatorCore::command_targets(std::uint32_t uid,
                                                                  const proto::NodeCommand& cmd) {
  auto who = ops::who_may(cmd.op);
  if (!who) return fail(Errc::invalid_argument, "unknown node operation '" + cmd.op + "'");
  if (*who == ops::Who::root && uid != 0)
    return fail(Errc::not_permitted, "only root may " + cmd.op);
  std::vector<std::size_t> targets;
  for (const auto& name : cmd.nodes) {
    auto n = node_for(name);
    if (!n) return std::unexpected(n.error());
    if (std::find(targets.begin(), targets.end(), *n) == targets.end()) targets.push_back(*n);
  }
  if (*who == ops::Who::job_owner) {
    JobId id = 0;
    const char* first = cmd.args.empty() ? nullptr : cmd.args[0].c_str();
    auto [end, ec] = first ? std::from_chars(first, first + cmd.args[0].size(), id)
                           : std::from_chars_result{nullptr, std::errc::invalid_argument};
    if (!first || ec != std::errc() || end != first + cmd.args[0].size())
      return fail(Errc::invalid_argument, cmd.op + ": the first argument must be a job id");
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return fail(Errc::not_found, "no job " + std::to_string(id));
    if (!may_act(uid, it->second))
      return fail(Errc::not_permitted, "job " + std::to_string(id) + " belongs to another user");
    const auto* p = matrix_.find(id);
    std::vector<std::size_t> job_nodes;
    if (p)
      for (const auto& c : p->cells)
        job_nodes.push_back(c.node);
    for (std::size_t n : targets)
      if (std::find(job_nodes.begin(), job_nodes.end(), n) == job_nodes.end())
        return fail(Errc::invalid_argument,
                    "job " + std::to_string(id) + " has no ranks on node " + nodes_[n].name);
    if (targets.empty()) targets = job_nodes;
  } else if (targets.empty()) {
    for (std::size_t n = 0; n < nodes_.size(); ++n)
      if (nodes_[n].conn) targets.push_back(n);
  }
  return targets;
}

asio::awaitable<proto::Message> CoordinatorCore::node_command(std::uint32_t uid,
                                                              proto::NodeCommand cmd) {
  auto checked = command_targets(uid, cmd);
  if (!checked) co_return proto::error_message(checked.error());
  const auto& targets = *checked;
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

void CoordinatorCore::on_node_reply(std::size_t node, const proto::NodeReply& m) {
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

void CoordinatorCore::commands_lost_node(std::size_t node) {
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
}

}  // namespace dynamos::gang
