#include "gang/dynamosd/node_agent.hpp"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include "base/units.hpp"
#include "core/extension_host.hpp"

#include "gang/node_ops.hpp"

namespace dynamos::gang {

namespace ks = kernelside;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kGuests = "guests";

std::string ids(const std::vector<JobId>& jobs) {
  std::string s;
  for (auto j : jobs)
    s += (s.empty() ? "" : ",") + std::to_string(j);
  return s.empty() ? "-" : s;
}

// While it lives, the calling thread runs at the normal policy if it ran at a real-time
// one (dynamosd's io thread runs at SCHED_FIFO to meet the deadline). After the thaw, the
// rest of a switch (the paging bookkeeping, the ack) must not keep a CPU from the
// incoming ranks: at SCHED_FIFO it ran ahead of them, delaying their first run.
class NormalPriorityWhile {
 public:
  explicit NormalPriorityWhile(bool wanted) {
    if (!wanted || ::pthread_getschedparam(::pthread_self(), &policy_, &param_) != 0) return;
    if (policy_ != SCHED_FIFO && policy_ != SCHED_RR) return;
    sched_param normal{};
    lowered_ = ::pthread_setschedparam(::pthread_self(), SCHED_OTHER, &normal) == 0;
  }
  ~NormalPriorityWhile() {
    if (lowered_) (void)::pthread_setschedparam(::pthread_self(), policy_, &param_);
  }
  NormalPriorityWhile(const NormalPriorityWhile&) = delete;
  NormalPriorityWhile& operator=(const NormalPriorityWhile&) = delete;

 private:
  int policy_ = SCHED_OTHER;
  sched_param param_{};
  bool lowered_ = false;
};

}  // namespace

std::string NodeAgent::job_group_name(JobId job) {
  return "job" + std::to_string(job);
}

std::optional<JobId> NodeAgent::parse_job_group_name(const std::string& name) {
  if (!name.starts_with("job") || name.size() == 3) return std::nullopt;
  JobId id = 0;
  auto [end, ec] = std::from_chars(name.data() + 3, name.data() + name.size(), id);
  if (ec != std::errc{} || end != name.data() + name.size()) return std::nullopt;
  return id;
}

NodeAgent::NodeAgent(NodeAgentConfig config, ks::Group node, ks::Group guests)
    : config_(std::move(config)),
      node_path_(node.path()),
      node_(std::move(node)),
      guests_(std::move(guests)) {}

Result<std::unique_ptr<NodeAgent>> NodeAgent::create(NodeAgentConfig config) {
  if (config.node.empty() || config.node.find('/') != std::string::npos || config.node == "." ||
      config.node == "..")
    return fail(Errc::invalid_argument, "node agent: invalid node name '" + config.node + "'");
  if (!config.layout) {
    auto layout = ks::Layout::detect();
    if (!layout) return std::unexpected(with_context(layout.error(), "node agent: cgroup layout"));
    config.layout = std::move(*layout);
  }
  std::string path =
      config.cgroup_parent.empty() ? config.node : config.cgroup_parent + "/" + config.node;
  // A node that fails to set up leaves behind only what was there before.
  bool parent_existed =
      config.cgroup_parent.empty() || ks::Group::exists(*config.layout, config.cgroup_parent);
  bool node_existed = ks::Group::exists(*config.layout, path);
  auto node = ks::Group::create(*config.layout, path);
  if (!node) return std::unexpected(with_context(node.error(), "node agent: node group"));
  auto undo = [&](Error e) -> std::unexpected<Error> {
    if (!node_existed) (void)node->remove_tree(ks::Evict::none);
    if (!parent_existed)
      if (auto p = ks::Group::open(*config.layout, config.cgroup_parent)) (void)p->remove();
    return std::unexpected(std::move(e));
  };
  if (!config.cpus.empty())
    if (auto r = node->set_cpus(config.cpus); !r)
      return undo(with_context(r.error(), "node agent: node " + config.node + " cpus"));
  if (config.memory_max)
    if (auto r = node->set_memory_max(config.memory_max); !r)
      return undo(with_context(r.error(), "node agent: node " + config.node + " memory limit"));
  auto guests = node->create_child(kGuests);
  if (!guests) return undo(with_context(guests.error(), "node agent: guests group"));

  std::unique_ptr<NodeAgent> agent(
      new NodeAgent(std::move(config), std::move(*node), std::move(*guests)));
  // Adopt the jobs of a previous agent: their groups and frozen state stay as they
  // are until gangd's job_assign (sent on every connect) says which ones run.
  auto children = agent->node_.children();
  if (!children)
    return std::unexpected(with_context(children.error(), "node agent: listing " + path));
  for (const auto& name : *children) {
    auto id = parse_job_group_name(name);
    if (!id) continue;
    auto group = ks::Group::open(*agent->config_.layout, path + "/" + name);
    if (!group) return std::unexpected(with_context(group.error(), "node agent: adopting " + name));
    auto frozen = group->frozen();
    agent->jobs_.emplace(*id,
                         Job{std::move(*group), "", "", !frozen.value_or(false), std::nullopt});
    agent->log("adopted job " + std::to_string(*id) + " from " + path + "/" + name);
  }
  return agent;
}

void NodeAgent::log(const std::string& line, log::Level level) const {
  if (config_.log)
    config_.log(level, line);
  else
    log::write(level, "node " + config_.node + ": " + line);
}

Result<NodeAgent::Job*> NodeAgent::job_locked(JobId job) {
  if (auto it = jobs_.find(job); it != jobs_.end()) return &it->second;
  auto group = node_.create_child(job_group_name(job));
  if (!group)
    return std::unexpected(
        with_context(group.error(), "creating the group of job " + std::to_string(job)));
  auto [it, _] = jobs_.emplace(job, Job{std::move(*group), "", "", true, std::nullopt});
  return &it->second;
}

Result<ks::Group> NodeAgent::job_group(JobId job) {
  std::lock_guard l(mu_);
  auto j = job_locked(job);
  if (!j) return std::unexpected(j.error());
  return (*j)->group;
}

Result<void> NodeAgent::attach(JobId job, pid_t pid) {
  std::lock_guard l(mu_);
  auto j = job_locked(job);
  if (!j) return std::unexpected(j.error());
  if (auto r = (*j)->group.attach(pid); !r) return r;
  if ((*j)->running) return {};
  if (auto r = (*j)->group.freeze(config_.freeze_timeout); !r)
    return std::unexpected(with_context(
        r.error(), "freezing process " + std::to_string(pid) + " of job " + std::to_string(job)));
  return {};
}

Result<void> NodeAgent::attach_rank(JobId job, pid_t pid, uid_t uid) {
  {
    std::lock_guard l(mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end() || !it->second.uid)
      return fail(Errc::busy,
                  "job " + std::to_string(job) + " is not assigned to node " + config_.node);
    if (uid != 0 && uid != *it->second.uid)
      return fail(Errc::not_permitted, "job " + std::to_string(job) + " belongs to uid " +
                                           std::to_string(*it->second.uid) + ", not " +
                                           std::to_string(uid));
  }
  return attach(job, pid);
}

Result<void> NodeAgent::assign(const proto::JobAssign& a) {
  std::lock_guard l(mu_);
  auto j = job_locked(a.job);
  if (!j) return std::unexpected(j.error());
  (*j)->name = a.name;
  (*j)->paging = a.paging;
  (*j)->running = a.running;
  (*j)->uid = a.uid;
  // The job's running state in the current slot: a job that is not running is held
  // frozen, so that ranks launched between two switches do not run out of turn.
  shield(a.job, **j, a.running);
  auto r = a.running ? (*j)->group.thaw() : (*j)->group.freeze(config_.freeze_timeout);
  if (!r)
    return std::unexpected(with_context(r.error(), std::string(a.running ? "thawing" : "freezing") +
                                                       " job " + std::to_string(a.job)));
  return {};
}

void NodeAgent::job_assigned(const proto::JobAssign& a) {
  if (auto r = assign(a); !r)
    log("job_assign " + std::to_string(a.job) + ": " + r.error().message(), log::Level::error);
}

void NodeAgent::job_released(const proto::JobRelease& r) {
  std::unique_lock l(mu_);
  auto it = jobs_.find(r.job);
  if (it == jobs_.end()) return;
  ks::Group group = std::move(it->second.group);
  jobs_.erase(it);
  l.unlock();
  if (config_.extensions && !config_.paging_extension.empty()) {
    core::Subject s;
    s.id = r.job;
    s.cgroup = group.path();
    (void)config_.extensions->detach(config_.paging_extension, s);  // it may never have seen it
  }
  // Whatever still runs of a released job has no business on the node any more.
  if (auto rm = group.remove_tree(ks::Evict::kill); !rm)
    log("releasing job " + std::to_string(r.job) + " (" + r.reason + "): " + rm.error().message(),
        log::Level::error);
}

Result<void> NodeAgent::switch_now(const proto::SwitchOrder& round) {
  auto start = Clock::now();
  std::lock_guard l(mu_);
  SwitchRecord rec;
  rec.round = round.round;
  std::optional<Error> first;
  auto note = [&](Error e) {
    if (!first) first = e;
    log("round " + std::to_string(round.round) + ": " + e.message(), log::Level::error);
  };

  // A held job (hold_job) only records what is wanted; its hold's end applies it.
  std::vector<Job*> out, in;
  for (auto id : round.outgoing)
    if (auto it = jobs_.find(id); it != jobs_.end()) {
      it->second.running = false;
      if (it->second.holds > 0) continue;
      out.push_back(&it->second);
      rec.outgoing.push_back(id);
    }
  for (auto id : round.incoming)
    if (auto it = jobs_.find(id); it != jobs_.end()) {
      it->second.running = true;
      if (it->second.holds > 0) continue;
      in.push_back(&it->second);
      rec.incoming.push_back(id);
    }

  auto thaw_incoming = [&] {
    auto t0 = Clock::now();
    for (std::size_t i = 0; i < in.size(); ++i)
      shield(rec.incoming[i], *in[i], true);
    for (std::size_t i = 0; i < in.size(); ++i)
      if (auto r = in[i]->group.thaw(); !r)
        note(with_context(r.error(), "thawing job " + std::to_string(rec.incoming[i])));
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    last_running_ns_ = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
                       static_cast<std::uint64_t>(ts.tv_nsec);
    rec.thaw = Clock::now() - t0;
  };
  // Incoming jobs under demand paging need nothing before they run ("stop and
  // continue"): they are thawed as soon as every outgoing task has stopped, never before,
  // so that the two jobs never run on the node at once. Under the other policies the
  // incoming job runs only after its paging (page-out of the outgoing job, prefetch) in
  // switch_in.
  bool demand_only =
      std::all_of(in.begin(), in.end(), [](const Job* j) { return j->paging == "demand"; });
  for (std::size_t i = 0; i < out.size(); ++i)
    shield(rec.outgoing[i], *out[i], false);
  for (std::size_t i = 0; i < out.size(); ++i)
    if (auto r = out[i]->group.start_freeze(); !r)
      note(with_context(r.error(), "freezing job " + std::to_string(rec.outgoing[i])));
  bool all_frozen = true;
  for (std::size_t i = 0; i < out.size(); ++i)
    if (auto r = out[i]->group.wait_frozen(config_.freeze_timeout); !r) {
      all_frozen = false;
      note(with_context(r.error(), "freezing job " + std::to_string(rec.outgoing[i])));
    }
  auto frozen_at = Clock::now();
  rec.freeze = frozen_at - start;
  if (demand_only) thaw_incoming();

  core::ExtensionHost* ext = config_.extensions;
  NormalPriorityWhile after_thaw(demand_only);  // the incoming ranks run first
  if (ext && !config_.paging_extension.empty()) {
    auto subject = [&](JobId id, const Job& j) { return subject_locked(id, j); };
    // switch_out records a working set and must see the job frozen: skip it otherwise.
    if (all_frozen)
      for (std::size_t i = 0; i < out.size(); ++i)
        if (auto r = ext->switch_out(config_.paging_extension, subject(rec.outgoing[i], *out[i]));
            !r)
          note(with_context(r.error(),
                            "paging switch_out of job " + std::to_string(rec.outgoing[i])));
    for (std::size_t i = 0; i < in.size(); ++i) {
      auto r = ext->switch_in(config_.paging_extension, subject(rec.incoming[i], *in[i]));
      if (!r)
        note(with_context(r.error(), "paging switch_in of job " + std::to_string(rec.incoming[i])));
      else if (!r->empty())
        rec.paging_report += (rec.paging_report.empty() ? "" : "\n") + *r;
    }
  }
  rec.paging = Clock::now() - frozen_at - rec.thaw;
  if (!demand_only) thaw_incoming();
  rec.total = Clock::now() - start;
  if (first) rec.error = first->message();
  history_.push_back(rec);
  if (history_.size() > kSwitchHistory) history_.pop_front();
  if (first)
    return std::unexpected(with_context(*first, "switch round " + std::to_string(round.round) +
                                                    " (out " + ids(round.outgoing) + ", in " +
                                                    ids(round.incoming) + ")"));
  return {};
}

void NodeAgent::shield(JobId id, Job& j, bool on) {
  auto r = j.group.set_reclaim_protected(on);
  if (r || shield_warned_) return;
  shield_warned_ = true;  // the same cause would fail every switch
  log("job " + std::to_string(id) + ": the running job's memory is not shielded from reclaim " +
          "(once per agent): " + r.error().message(),
      r.error().code == Errc::unsupported ? log::Level::info : log::Level::warning);
}

core::Subject NodeAgent::subject_locked(JobId id, const Job& j) const {
  core::Subject s;
  s.kind = DYNAMOS_SUBJECT_JOB;
  s.id = id;
  s.name = j.name;
  s.cgroup = j.group.path();
  if (auto pids = j.group.pids_recursive()) s.pids.assign(pids->begin(), pids->end());
  s.policy = j.paging;
  s.attrs.emplace_back("node_cgroup", node_path_);
  if (auto q = quantum_ns_.load(); q > 0)
    s.attrs.emplace_back("quantum_s", std::to_string(q / 1e9));
  return s;
}

Result<std::string> NodeAgent::tick() {
  core::ExtensionHost* ext = config_.extensions;
  if (!ext || config_.paging_extension.empty()) return std::string();
  std::vector<core::Subject> running;
  {
    std::lock_guard l(mu_);
    for (auto& [id, j] : jobs_)
      if (j.running) running.push_back(subject_locked(id, j));
  }
  std::string reports;
  std::optional<Error> first;
  for (const auto& s : running) {
    auto r = ext->tick(config_.paging_extension, s);
    if (!r) {
      if (!first) first = with_context(r.error(), "paging tick of job " + std::to_string(s.id));
    } else if (!r->empty()) {
      reports += (reports.empty() ? "" : "\n") + *r;
    }
  }
  if (first) return std::unexpected(*first);
  return reports;
}

Result<void> NodeAgent::thaw_all() {
  std::lock_guard l(mu_);
  std::optional<Error> first;
  for (auto& [id, j] : jobs_) {
    j.running = true;
    shield(id, j, false);  // all run: none is preferred
    if (auto r = j.group.thaw(); !r && !first)
      first = with_context(r.error(), "thawing job " + std::to_string(id));
  }
  if (first) return std::unexpected(*first);
  return {};
}

void NodeAgent::welcomed(const proto::Welcome& w) {
  quantum_changed(w.quantum_ns);
}

void NodeAgent::quantum_changed(std::uint64_t quantum_ns) {
  if (quantum_ns == 0 || quantum_ns_.exchange(quantum_ns) == quantum_ns) return;
  log("quantum " + format_duration(std::chrono::nanoseconds(quantum_ns)));
}

void NodeAgent::coordinator_lost() {
  log("coordinator lost: thawing every job", log::Level::warning);
  if (auto r = thaw_all(); !r) log("coordinator lost: " + r.error().message(), log::Level::error);
}

std::optional<proto::MetricsReport> NodeAgent::metrics() {
  std::lock_guard l(mu_);
  proto::MetricsReport m;
  m.time_ns = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
  m.quantum_ns = quantum_ns_;
  if (auto max = node_.memory_max(); max && *max) m.mem_total = **max;
  if (auto cur = node_.memory_current(); cur && m.mem_total > *cur)
    m.mem_available = m.mem_total - *cur;
  for (auto& [id, j] : jobs_) {
    proto::JobMetrics jm;
    jm.job = id;
    if (auto cpu = j.group.cpu_usage()) jm.cpu_ns = static_cast<std::uint64_t>(cpu->count());
    if (auto st = j.group.memory_stat()) {
      if (auto it = st->find("anon"); it != st->end()) jm.rss_bytes = it->second;
      if (auto it = st->find("pgmajfault"); it != st->end()) jm.major_faults = it->second;
    }
    m.jobs.push_back(jm);
  }
  return m;
}

Result<void> NodeAgent::remove_all() {
  std::lock_guard l(mu_);
  jobs_.clear();
  if (auto r = node_.remove_tree(ks::Evict::kill); !r)
    return std::unexpected(with_context(r.error(), "removing node " + config_.node));
  // The parent ("dynamos") is shared with the other nodes of this host: remove it only
  // when it is left empty, and quietly leave it otherwise.
  if (!config_.cgroup_parent.empty())
    if (auto parent = ks::Group::open(*config_.layout, config_.cgroup_parent))
      if (auto kids = parent->children(); kids && kids->empty()) (void)parent->remove();
  return {};
}

std::vector<JobId> NodeAgent::jobs() const {
  std::lock_guard l(mu_);
  std::vector<JobId> v;
  for (auto& [id, _] : jobs_)
    v.push_back(id);
  return v;
}

Result<bool> NodeAgent::frozen(JobId job) const {
  std::lock_guard l(mu_);
  auto it = jobs_.find(job);
  if (it == jobs_.end())
    return fail(Errc::not_found, "no job " + std::to_string(job) + " on node " + config_.node);
  return it->second.group.frozen();
}

std::optional<SwitchRecord> NodeAgent::last_switch() const {
  std::lock_guard l(mu_);
  if (history_.empty()) return std::nullopt;
  return history_.back();
}

std::vector<SwitchRecord> NodeAgent::switch_history() const {
  std::lock_guard l(mu_);
  return {history_.begin(), history_.end()};
}

namespace {
// Milliseconds, to the microsecond.
double ms(std::chrono::nanoseconds d) {
  return std::round(static_cast<double>(d.count()) / 1e3) / 1e3;
}
// The paging extension's reports of a round, one JSON object a line: an array of them
// (a line that is not JSON is kept as a string).
nlohmann::ordered_json report_lines(const std::string& text) {
  auto lines = nlohmann::ordered_json::array();
  std::size_t start = 0;
  while (start < text.size()) {
    auto nl = text.find('\n', start);
    auto line = text.substr(start, nl == std::string::npos ? nl : nl - start);
    if (!line.empty()) {
      auto j = nlohmann::ordered_json::parse(line, nullptr, false);
      lines.push_back(j.is_discarded() ? nlohmann::ordered_json(line) : std::move(j));
    }
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return lines;
}
}  // namespace

Result<std::string> NodeAgent::switches_json(const std::string& last) const {
  std::size_t n = kSwitchHistory;
  if (!last.empty()) {
    auto [end, ec] = std::from_chars(last.data(), last.data() + last.size(), n);
    if (ec != std::errc{} || end != last.data() + last.size())
      return fail(Errc::invalid_argument, "switches: '" + last + "' is not a count");
  }
  auto all = switch_history();
  std::string out;
  for (std::size_t i = all.size() > n ? all.size() - n : 0; i < all.size(); ++i) {
    const auto& r = all[i];
    nlohmann::ordered_json j = {{"node", config_.node},
                                {"round", r.round},
                                {"outgoing", r.outgoing},
                                {"incoming", r.incoming},
                                {"freeze_ms", ms(r.freeze)},
                                {"paging_ms", ms(r.paging)},
                                {"thaw_ms", ms(r.thaw)},
                                {"total_ms", ms(r.total)},
                                {"paging", report_lines(r.paging_report)},
                                {"error", r.error}};
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  return out;
}

// --- node operations -----------------------------------------------------------------

void NodeAgent::add_op(std::string name, Op op) {
  ops_[std::move(name)] = std::move(op);
}

Result<std::string> NodeAgent::node_request(const proto::NodeRequest& r) {
  if (r.op == ops::job_pids) {
    if (r.args.size() != 1) return fail(Errc::invalid_argument, "job-pids takes one job id");
    JobId id = 0;
    const auto& a = r.args[0];
    auto [end, ec] = std::from_chars(a.data(), a.data() + a.size(), id);
    if (ec != std::errc{} || end != a.data() + a.size())
      return fail(Errc::invalid_argument, "job-pids: '" + a + "' is not a job id");
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end())
      return fail(Errc::not_found, "job " + a + " has no group on node " + config_.node);
    auto pids = it->second.group.pids_recursive();
    if (!pids) return std::unexpected(pids.error());
    std::string out;
    for (pid_t p : *pids)
      out += (out.empty() ? "" : " ") + std::to_string(p);
    return out;
  }
  if (r.op == ops::switches) return switches_json(r.args.empty() ? "" : r.args[0]);
  auto it = ops_.find(r.op);
  if (it == ops_.end())
    return fail(Errc::unsupported, "node " + config_.node + " does not support '" + r.op + "'");
  return it->second(r);
}

void NodeAgent::node_request_async(const proto::NodeRequest& r, NodeReplyFn done) {
  if (!ops_.contains(r.op)) return done(node_request(r));  // job-pids, switches: quick
  std::lock_guard l(work_mu_);
  if (work_stop_) return done(fail(Errc::state, "node " + config_.node + " is stopping"));
  work_.push_back([this, r, done = std::move(done)] { done(node_request(r)); });
  if (!worker_.joinable()) worker_ = std::thread([this] { run_ops(); });
  work_cv_.notify_one();
}

void NodeAgent::run_ops() {
  std::unique_lock l(work_mu_);
  for (;;) {
    work_cv_.wait(l, [&] { return work_stop_ || !work_.empty(); });
    if (work_stop_) return;
    auto op = std::move(work_.front());
    work_.pop_front();
    l.unlock();
    op();
    l.lock();
  }
}

NodeAgent::~NodeAgent() {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard l(work_mu_);
    work_stop_ = true;
    dropped.swap(work_);
  }
  work_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  // Queued ops are not run: their replies would act on an agent being destroyed.
}

Result<NodeAgent::JobHold> NodeAgent::hold_job(JobId job) {
  std::lock_guard l(mu_);
  auto it = jobs_.find(job);  // never creates the job's group (job_locked would)
  if (it == jobs_.end())
    return fail(Errc::not_found,
                "job " + std::to_string(job) + " has no group on node " + config_.node);
  ++it->second.holds;
  return JobHold(this, job);
}

void NodeAgent::release_job(JobId job) {
  std::lock_guard l(mu_);
  auto it = jobs_.find(job);
  if (it == jobs_.end() || --it->second.holds > 0) return;
  // The state the switches wanted meanwhile (a thaw of a running job changes nothing).
  Job& j = it->second;
  shield(job, j, j.running);
  if (auto r = j.running ? j.group.thaw() : j.group.start_freeze(); !r)
    log(std::string(j.running ? "thawing" : "freezing") + " job " + std::to_string(job) +
        " after an operation: " + r.error().message());
}

}  // namespace dynamos::gang
