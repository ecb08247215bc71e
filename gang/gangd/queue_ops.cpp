// gangd's scheduler requests (issue 21): the pending queue (queue.hpp decides, this
// file carries the decisions out), memory requests, time limits, the history journal
// (history.hpp), held jobs, requeue and drained nodes.
#include <algorithm>

#include "base/units.hpp"
#include "gang/gangd/coordinator_core.hpp"
#include "gang/hostfile.hpp"

namespace dynamos::gang {

namespace {
std::string id_text(JobId id) {
  return "job " + std::to_string(id);
}

// The record of a job that never ran (or, "pending", of one waiting).
proto::JobInfo ended_info(JobId id, const QueuedJob& q, const std::string& state) {
  proto::JobInfo info;
  info.job = id;
  info.name = q.req.name;
  info.uid = q.uid;
  info.state = state;
  info.paging = q.req.paging;
  info.submitted_ns = q.submitted_ns;
  info.ended_ns = realtime_ns();
  info.ranks = q.req.ranks;
  info.time_limit_s = q.req.time_limit_s;
  return info;
}
}  // namespace

Request CoordinatorCore::request_of(const proto::JobSubmit& req) const {
  std::uint64_t mem = req.mem_per_rank ? req.mem_per_rank : config_.default_mem_per_rank;
  double factor = req.paging == "demand" ? config_.overcommit_demand : config_.overcommit;
  return Request{static_cast<int>(req.ranks), static_cast<int>(req.nodes), mem, factor};
}

// --- recovery --------------------------------------------------------------------------

Result<void> CoordinatorCore::recover_sched() {
  auto path = config_.sched_journal_path;
  if (path.empty() && !config_.journal_path.empty()) path = config_.journal_path + ".sched";
  sched_journal_ = SchedJournal::in_memory(config_.history_limit);
  if (!path.empty()) {
    auto j = SchedJournal::open(path, config_.history_limit, sched_);
    if (!j) return std::unexpected(j.error());
    sched_journal_ = std::move(*j);
    for (auto& w : sched_.warnings)
      warnings_.push_back(w);
  }
  next_id_ = std::max(next_id_, sched_.max_id + 1);
  // A crash between the two journals: started in the main one, still pending here.
  std::vector<JobId> moved;
  for (const auto& [id, q] : sched_.pending)
    if (jobs_.contains(id)) moved.push_back(id);
  for (JobId id : moved)
    if (auto ok = sched_journal_.started(id, realtime_ns(), sched_); !ok) return ok;
  // Ended here, not yet removed from the main journal.
  for (const auto& info : sched_.history)
    if (jobs_.contains(info.job)) {
      (void)journal([&](Journal& j) { return j.job_removed(info.job, info.state); });
      (void)matrix_.remove(info.job);
      jobs_.erase(info.job);
    }
  // Running jobs get their memory back in the matrix and their submission time.
  for (const auto& [id, q] : sched_.running) {
    auto it = jobs_.find(id);
    const Placement* p = matrix_.find(id);
    if (it == jobs_.end() || !p) continue;
    it->second.submitted_ns = q.submitted_ns;
    Placement with_mem = *p;
    with_mem.mem_per_rank = request_of(q.req).mem_per_rank;
    (void)matrix_.remove(id);
    if (!matrix_.restore(with_mem)) (void)matrix_.restore(*p);
  }
  sync_nodes();
  return {};
}

// --- the queue -------------------------------------------------------------------------

void CoordinatorCore::sync_nodes() {
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    matrix_.set_node_open(
        n, !sched_.nodes.contains(nodes_[n].name) && !removed_nodes_.contains(nodes_[n].name));
    matrix_.set_node_memory(n, nodes_[n].metrics ? nodes_[n].metrics->mem_total : 0);
  }
}

Result<JobId> CoordinatorCore::enqueue(std::uint32_t uid, const proto::JobSubmit& req,
                                       const std::string& name) {
  // Refuse now what could never fit (checked on an empty matrix of these nodes).
  sync_nodes();
  Matrix empty(matrix_.nodes(), config_.max_rows);
  for (std::size_t n = 0; n < nodes_.size(); ++n)
    empty.set_node_open(n, true);
  if (auto fits = empty.place(0, request_of(req)); !fits && fits.error().code != Errc::busy)
    return std::unexpected(with_context(fits.error(), "job not accepted"));
  JobId id = next_id_;
  QueuedJob q{id, uid, realtime_ns(), 0, req.hold, req};
  q.req.name = name;
  if (auto ok = sched_journal_.queued(q, sched_); !ok)
    return std::unexpected(with_context(ok.error(), "job not accepted"));
  ++next_id_;
  auto failed = schedule();
  if (auto it = failed.find(id); it != failed.end()) return std::unexpected(it->second);
  if (sched_.pending.contains(id))
    config_.log(id_text(id) + " (" + name + ", uid " + std::to_string(uid) +
                ") pending: " + pending_reason_[id]);
  return id;
}

std::map<JobId, Error> CoordinatorCore::schedule() {
  std::map<JobId, Error> failed;
  if (sched_.pending.empty()) return failed;
  sync_nodes();
  std::vector<PendingJob> queue;
  queue.reserve(sched_.pending.size());
  for (const auto& [id, q] : sched_.pending)
    queue.push_back(
        PendingJob{id, request_of(q.req), static_cast<std::int64_t>(q.req.time_limit_s), q.held});
  std::map<JobId, std::int64_t> ends;
  for (const auto& [id, q] : sched_.running)
    if (q.req.time_limit_s)
      ends[id] = static_cast<std::int64_t>(q.started_ns / 1'000'000'000 + q.req.time_limit_s);
  auto now_s = static_cast<std::int64_t>(realtime_ns() / 1'000'000'000);
  auto pass = schedule_pass(matrix_, queue, ends, now_s);
  pending_reason_ = std::move(pass.reasons);
  for (const auto& p : pass.started) {
    QueuedJob q = sched_.pending.at(p.job);
    auto ok = start_job(p.job, q.uid, q.req.name, q.req, p);
    if (ok) ok = sched_journal_.started(p.job, realtime_ns(), sched_);
    if (!ok) {
      failed.emplace(p.job, ok.error());
      (void)matrix_.remove(p.job);
      auto info = ended_info(p.job, q, "failed");
      info.reason = ok.error().message();
      (void)sched_journal_.ended(info, sched_);
      continue;
    }
    jobs_[p.job].submitted_ns = q.submitted_ns;
  }
  for (const auto& [id, why] : pass.refused) {
    auto info = ended_info(id, sched_.pending.at(id), "failed");
    info.reason = "can never fit: " + why;
    (void)sched_journal_.ended(info, sched_);
  }
  return failed;
}

asio::awaitable<void> CoordinatorCore::queue_loop() {
  while (!stopped_) {
    queue_timer_.expires_after(config_.queue_interval);
    error_code ec;
    co_await queue_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    end_timed_out();
    schedule();
  }
}

void CoordinatorCore::end_timed_out() {
  auto now = realtime_ns();
  std::vector<JobId> due;
  for (const auto& [id, q] : sched_.running)
    if (q.req.time_limit_s && jobs_.contains(id) &&
        now >= q.started_ns + q.req.time_limit_s * 1'000'000'000)
      due.push_back(id);
  for (JobId id : due) {
    auto limit =
        format_time_limit_s(static_cast<std::int64_t>(sched_.running[id].req.time_limit_s));
    config_.log(id_text(id) + " reached its time limit " + limit);
    if (auto ok = end_job(id, "timeout", 128 + 15, "time limit " + limit, "time limit reached");
        !ok)
      config_.log(id_text(id) + ": " + ok.error().message());
  }
}

Result<void> CoordinatorCore::cancel_pending(std::uint32_t uid, JobId id) {
  const QueuedJob& q = sched_.pending.at(id);
  if (uid != 0 && uid != q.uid)
    return fail(Errc::not_permitted, id_text(id) + " belongs to another user");
  auto info = ended_info(id, q, "cancelled");
  info.exit_code = 128 + 15;
  info.reason = "cancelled while pending";
  if (auto ok = sched_journal_.ended(info, sched_); !ok) return ok;
  pending_reason_.erase(id);
  ended_[id] = info;
  schedule();  // the head may have changed
  return {};
}

// --- history ---------------------------------------------------------------------------

Result<void> CoordinatorCore::history_end(JobId id, const std::string& state,
                                          std::int32_t exit_code, const std::string& reason) {
  proto::JobInfo info;
  for (auto& j : list_jobs(0).jobs)
    if (j.job == id) info = std::move(j);
  info.job = id;
  info.state = state;
  info.exit_code = exit_code;
  info.reason = reason;
  info.ended_ns = realtime_ns();
  return sched_journal_.ended(info, sched_);
}

void CoordinatorCore::describe_running(JobId id, proto::JobInfo& info) const {
  auto it = sched_.running.find(id);
  if (it == sched_.running.end()) return;
  info.started_ns = it->second.started_ns;
  info.ranks = it->second.req.ranks;
  info.mem_per_rank = request_of(it->second.req).mem_per_rank;
  info.time_limit_s = it->second.req.time_limit_s;
}

void CoordinatorCore::list_queue(std::uint32_t uid, bool all, proto::JobList& out) const {
  if (all)
    for (const auto& info : sched_.history)
      if ((uid == 0 || uid == info.uid) && !ended_.contains(info.job)) out.jobs.push_back(info);
  for (const auto& [id, q] : sched_.pending) {
    if (uid != 0 && uid != q.uid) continue;
    auto info = ended_info(id, q, "pending");
    info.ended_ns = 0;
    auto why = pending_reason_.find(id);
    info.reason = q.held ? "held" : why != pending_reason_.end() ? why->second : "not yet tried";
    info.mem_per_rank = request_of(q.req).mem_per_rank;
    info.time_limit_s = q.req.time_limit_s;
    out.jobs.push_back(std::move(info));
  }
}

proto::JobList CoordinatorCore::list_history(std::uint32_t uid, std::uint64_t since_ns) const {
  proto::JobList out;
  for (const auto& info : sched_.history)
    if ((uid == 0 || uid == info.uid) && info.ended_ns >= since_ns) out.jobs.push_back(info);
  return out;
}

// --- job control -----------------------------------------------------------------------

Result<void> CoordinatorCore::hold(std::uint32_t uid, JobId id, bool held) {
  auto it = sched_.pending.find(id);
  if (it == sched_.pending.end())
    return fail(jobs_.contains(id) ? Errc::invalid_argument : Errc::not_found,
                jobs_.contains(id) ? id_text(id) + " is not pending (only a pending job is " +
                                         (held ? "held)" : "released)")
                                   : "no pending " + id_text(id));
  if (uid != 0 && uid != it->second.uid)
    return fail(Errc::not_permitted, id_text(id) + " belongs to another user");
  if (it->second.held == held)
    return fail(Errc::invalid_argument, id_text(id) + (held ? " is already held" : " is not held"));
  if (auto ok = sched_journal_.held(id, held, sched_); !ok) return ok;
  schedule();
  return {};
}

Result<JobId> CoordinatorCore::requeue(std::uint32_t uid, JobId id) {
  auto it = sched_.requeueable.find(id);
  if (it == sched_.requeueable.end()) {
    bool live = jobs_.contains(id) || sched_.pending.contains(id);
    return fail(live ? Errc::invalid_argument : Errc::not_found,
                live ? id_text(id) + " has not ended (requeue takes a failed job)"
                     : "no failed " + id_text(id) + " in the history to requeue");
  }
  if (uid != 0 && uid != it->second.uid)
    return fail(Errc::not_permitted, id_text(id) + " belongs to another user");
  auto req = it->second.req;
  req.hold = false;
  return enqueue(it->second.uid, req, req.name);
}

Result<void> CoordinatorCore::node_admin(std::uint32_t uid, const proto::NodeAdmin& m) {
  if (uid != 0) return fail(Errc::not_permitted, "only root may " + m.action + " a node");
  auto n = node_for(m.node);
  if (!n) return std::unexpected(n.error());
  if (m.action != "drain" && m.action != "resume")
    return fail(Errc::invalid_argument, "unknown node action '" + m.action + "' (drain, resume)");
  bool drain = m.action == "drain";
  if (drain == sched_.nodes.contains(m.node))
    return fail(Errc::invalid_argument,
                "node " + m.node + (drain ? " is already drained" : " is not drained"));
  NodeAdminState s{drain, drain ? (m.reason.empty() ? "drained by root" : m.reason) : ""};
  if (auto ok = sched_journal_.node_admin(m.node, s, sched_); !ok) return ok;
  config_.log("node " + m.node + (drain ? " drained: " + s.reason : " resumed"));
  schedule();
  return {};
}

Result<std::string> CoordinatorCore::reconfigure(std::uint32_t uid) {
  if (uid != 0) return fail(Errc::not_permitted, "only root may reconfigure gangd");
  if (config_.hostfile_path.empty())
    return fail(Errc::invalid_argument, "gangd was started without a hostfile to reread");
  auto hosts = read_hostfile(config_.hostfile_path);
  if (!hosts) return std::unexpected(with_context(hosts.error(), "reconfigure"));
  if (hosts->empty())
    return fail(Errc::invalid_argument, config_.hostfile_path + " lists no node; nothing changed");
  std::set<std::string> listed;
  std::string added, removed, back;
  for (const auto& h : *hosts) {
    listed.insert(h.name);
    if (auto n = node_for(h.name); n) {
      if (removed_nodes_.erase(h.name)) back += " " + h.name;
      if (h.slots != nodes_[*n].slots)
        warnings_.push_back("reconfigure: node " + h.name + " has " + std::to_string(h.slots) +
                            " slots in the hostfile, " + std::to_string(nodes_[*n].slots) +
                            " in gangd until it restarts");
      continue;
    }
    Node node;
    node.name = h.name;
    node.slots = h.slots;
    node.down_since = steady::now();
    nodes_.push_back(std::move(node));
    matrix_.add_node({h.name, h.slots, 0, true});
    added += " " + h.name;
  }
  for (const auto& n : nodes_)
    if (!listed.contains(n.name) && removed_nodes_.insert(n.name).second) removed += " " + n.name;
  std::string what = "reconfigured from " + config_.hostfile_path + ":" +
                     (added.empty() ? "" : " added" + added + ";") +
                     (back.empty() ? "" : " back" + back + ";") +
                     (removed.empty() ? "" : " removed (their jobs finish)" + removed + ";") +
                     (added.empty() && back.empty() && removed.empty() ? " no change" : "");
  config_.log(what);
  schedule();
  return what;
}

void CoordinatorCore::describe_node(std::size_t n, proto::NodeInfo& info) const {
  info.mem_committed = matrix_.committed(n);
  if (removed_nodes_.contains(nodes_[n].name)) {
    info.state = "removed";
    info.reason = "no longer in the hostfile";
    return;
  }
  auto it = sched_.nodes.find(nodes_[n].name);
  if (it == sched_.nodes.end()) return;
  // Slurm's words: draining while jobs still run there, drained once they are gone.
  bool busy = !matrix_.jobs_on(n).empty();
  bool down = info.state == "down";
  info.state = busy ? "draining" : "drained";
  info.reason = it->second.reason + (down ? " (and its agent is down)" : "");
}

std::optional<proto::Message> CoordinatorCore::sched_control(std::uint32_t uid,
                                                             const proto::Message& m) {
  auto ok_or = [](const Result<void>& r, std::string text) -> proto::Message {
    if (!r) return proto::error_message(r.error());
    return proto::Ok{std::move(text)};
  };
  if (const auto* c = std::get_if<proto::JobControl>(&m)) {
    if (c->action == "hold" || c->action == "release")
      return ok_or(hold(uid, c->job, c->action == "hold"),
                   id_text(c->job) + (c->action == "hold" ? " held" : " released"));
    if (c->action == "requeue") {
      auto id = requeue(uid, c->job);
      if (!id) return proto::error_message(id.error());
      return proto::JobSubmitted{*id};
    }
    return proto::error_message(
        Error{Errc::invalid_argument, 0,
              "unknown job action '" + c->action + "' (hold, release, requeue)"});
  }
  if (const auto* a = std::get_if<proto::NodeAdmin>(&m))
    return ok_or(node_admin(uid, *a),
                 "node " + a->node + " " + (a->action == "drain" ? "drained" : "resumed"));
  if (const auto* h = std::get_if<proto::ListHistory>(&m)) return list_history(uid, h->since_ns);
  if (std::holds_alternative<proto::Reconfigure>(m)) {
    auto what = reconfigure(uid);
    if (!what) return proto::error_message(what.error());
    return proto::Ok{*what};
  }
  return std::nullopt;
}

}  // namespace dynamos::gang
