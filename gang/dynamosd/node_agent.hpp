// The node agent's kernel side: a SwitchHandler that carries out gangd's switch rounds
// on this node's cgroups, and runs the paging extension at every switch.
//
// Cgroup tree of one (virtual) node, relative to each hierarchy's root:
//   <parent>/<node>/           the node: cpuset (its CPUs) and memory limit (its RAM)
//   <parent>/<node>/job<ID>/   one per job with ranks here (freezer, memory, cpu...)
//   <parent>/<node>/guests/    cycle-stealing guests (managed by that extension)
//
// A switch (switch_now, at the common deadline): freeze the outgoing jobs and wait
// until every task is frozen, the paging extension's switch_out on each (it needs
// them frozen), its switch_in on each incoming job (the page-out / prefetch policy of
// the incoming job runs here, before the thaw), then thaw the incoming jobs. Incoming
// jobs that all page on demand need nothing before they run: they are thawed right
// after the outgoing freezers are written, overlapping the wait for the last outgoing
// task to stop. The incoming jobs are thawed even when freezing or paging failed: a
// paging error costs speed, never a job left frozen.
//
// Node operations (gang/node_ops.hpp) registered with add_op run on a worker thread of
// the agent, one at a time in arrival order, never on the session's io thread: a patch,
// an extension upgrade or a guest start (or a FIFO given as a path) must not stop the
// heartbeats and switches of every job on the node. An op that acts on a job's ranks
// holds the job (hold_job): switches leave its freezer alone until the hold goes (a
// frozen task never reaches a ptrace stop), then the job gets the state they wanted.
//
// Threading: every member may be called from any thread (one mutex). The AgentSession
// calls the handler on its io thread and the switch runs there, synchronously, on
// purpose: the SwitchAck must report the switch's outcome and duration, and
// SwitchHandler has no asynchronous completion. Without memory pressure a switch is
// a freeze plus a thaw (well under a millisecond per job, see docs/gang.md). With a
// paging policy switch_in may page out and prefetch for as long as the extension's
// budget allows (tunable `budget`); meanwhile the session sends no heartbeat, so keep
// that budget well under gangd's node timeout (three heartbeats at least).
//
// Jobs outlive the agent: the destructor leaves the cgroups (and any frozen state)
// as they are, so that a restarted agent adopts them (create() finds the job<ID>
// groups) and gangd's job_assign after reconnecting sets their running state.
// remove_all() tears the node's tree down (cluster down).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "base/log.hpp"
#include "gang/agent_session.hpp"
#include "gang/protocol.hpp"
#include "kernelside/cgroup.hpp"

namespace dynamos::core {
class ExtensionHost;
struct Subject;
}  // namespace dynamos::core

namespace dynamos::gang {

using proto::JobId;

struct NodeAgentConfig {
  std::string node;  // this node's name: the group <parent>/<node>
  std::string cgroup_parent = "dynamos";
  std::string cpus;                         // the node's CPU list ("0-1"); "" = inherit
  std::optional<std::uint64_t> memory_max;  // the node's memory limit; nullopt = none
  // Extensions (optional, not owned, must outlive the agent). The paging extension is
  // called at switches when loaded in it under `paging_extension`.
  core::ExtensionHost* extensions = nullptr;
  std::string paging_extension = "paging";
  std::chrono::milliseconds freeze_timeout{2000};
  // The cgroup layout; nullopt: Layout::detect().
  std::optional<kernelside::Layout> layout;
  log::Logger log;  // empty: standard error
};

// What the last switch on this node did, for metrics, tests and benchmarks.
struct SwitchRecord {
  std::uint64_t round = 0;
  std::vector<JobId> outgoing, incoming;  // the ones with a group on this node
  std::chrono::nanoseconds freeze{0};     // freezing the outgoing jobs
  std::chrono::nanoseconds paging{0};     // switch_out + switch_in
  std::chrono::nanoseconds thaw{0};       // thawing the incoming jobs
  std::chrono::nanoseconds total{0};
  std::string paging_report;  // what switch_in returned (JSON), "" when none
  std::string error;          // "" when all went well
};

class NodeAgent : public SwitchHandler {
 public:
  // Creates (or takes over) the node's group, sets its CPUs and memory limit, creates
  // the guests group and adopts the job<ID> groups found under the node.
  static Result<std::unique_ptr<NodeAgent>> create(NodeAgentConfig config);
  ~NodeAgent() override;  // stops the op worker (queued ops are answered with an error)

  // SwitchHandler
  void welcomed(const proto::Welcome& w) override;
  void quantum_changed(std::uint64_t quantum_ns) override;
  void job_assigned(const proto::JobAssign& a) override;
  void job_released(const proto::JobRelease& r) override;
  Result<void> switch_now(const proto::SwitchOrder& round) override;
  void coordinator_lost() override;
  std::optional<proto::MetricsReport> metrics() override;
  std::uint64_t last_running_ns() const override { return last_running_ns_; }
  // Operations gangd forwards (gang/node_ops.hpp). The agent itself answers job-pids;
  // the program running it registers the others (dynamosd: cycle stealing, guests,
  // extensions, patching), each in its own file. An op runs on the agent's op worker.
  using Op = std::function<Result<std::string>(const proto::NodeRequest&)>;
  void add_op(std::string name, Op op);
  Result<std::string> node_request(const proto::NodeRequest& r) override;
  // job-pids and switches at once; the ops of add_op on the worker.
  void node_request_async(const proto::NodeRequest& r, NodeReplyFn done) override;

  // While a JobHold lives, switches neither freeze nor thaw the job; when the last hold
  // of a job goes, the job is frozen or thawed as the last switch wanted.
  class JobHold {
   public:
    JobHold(NodeAgent* agent, JobId job) : agent_(agent), job_(job) {}
    JobHold(JobHold&& o) noexcept : agent_(std::exchange(o.agent_, nullptr)), job_(o.job_) {}
    JobHold& operator=(JobHold&&) = delete;
    ~JobHold() {
      if (agent_) agent_->release_job(job_);
    }

   private:
    NodeAgent* agent_;
    JobId job_;
  };
  Result<JobHold> hold_job(JobId job);
  // The last `last` switches ("" = all kept), one JSON object a line: node, round,
  // outgoing, incoming, freeze_ms, paging_ms, thaw_ms, total_ms, paging (the paging
  // extension's reports), error.
  Result<std::string> switches_json(const std::string& last) const;

  // The job's group, created when missing (the launch path attaches ranks here).
  Result<kernelside::Group> job_group(JobId job);
  // Moves a process into the job's group; into a job that is not running, it is
  // frozen before this returns (a v1 group reports FREEZING until the newcomer stops).
  Result<void> attach(JobId job, pid_t pid);
  // A rank asking to join its job (dynamosd's local socket, credentials from
  // SO_PEERCRED): the job must have been assigned to this node by gangd (Errc::busy
  // until then: the rank retries), and the caller must be the job's owner or root.
  Result<void> attach_rank(JobId job, pid_t pid, uid_t uid);
  // Applies a job_assign (the errors job_assigned only logs).
  Result<void> assign(const proto::JobAssign& a);
  // One paging tick: the extension's `tick` on every running job (completes switch
  // records, samples working sets, background write-out). Called every ~100 ms by
  // dynamosd from its own thread, outside the agent's lock, so a slow tick never
  // delays a switch. Returns the reports, one line per job.
  Result<std::string> tick();
  // Thaws every job; the first error, after trying all.
  Result<void> thaw_all();
  // Removes the node's whole tree, killing what still runs in it.
  Result<void> remove_all();

  std::vector<JobId> jobs() const;
  Result<bool> frozen(JobId job) const;
  std::optional<SwitchRecord> last_switch() const;
  // The latest switches, oldest first (at most kSwitchHistory).
  std::vector<SwitchRecord> switch_history() const;
  static constexpr std::size_t kSwitchHistory = 256;
  const std::string& node_path() const { return node_path_; }  // "<parent>/<node>"
  // gangd's quantum as this node last heard it (0 before the first Welcome). Extensions
  // see it as the subject attribute `quantum_s`; metrics report it to gangd.
  std::uint64_t quantum_ns() const { return quantum_ns_; }
  const kernelside::Group& node_group() const { return node_; }
  const kernelside::Group& guests_group() const { return guests_; }

  // The group name of a job ("job7") and back.
  static std::string job_group_name(JobId job);
  static std::optional<JobId> parse_job_group_name(const std::string& name);

 private:
  struct Job {
    kernelside::Group group;
    std::string name;
    std::string paging;                // policy; "" = the extension's default
    bool running = true;               // what the node wants: thawed (true) or frozen
    std::optional<std::uint32_t> uid;  // the owner, once gangd has assigned the job
    int holds = 0;                     // ops acting on its ranks (hold_job)
  };
  // The running job's memory shielded from the reclaim that the node's limit triggers,
  // the frozen one's not (Group::set_reclaim_protected); best effort, logged once.
  void shield(JobId id, Job& j, bool on);
  void release_job(JobId job);
  void run_ops();  // the op worker's loop
  NodeAgent(NodeAgentConfig config, kernelside::Group node, kernelside::Group guests);
  Result<Job*> job_locked(JobId job);
  core::Subject subject_locked(JobId id, const Job& j) const;
  void log(const std::string& line, log::Level level = log::Level::info) const;

  NodeAgentConfig config_;
  std::string node_path_;
  kernelside::Group node_;
  kernelside::Group guests_;
  mutable std::mutex mu_;
  std::map<JobId, Job> jobs_;
  bool shield_warned_ = false;  // a failed shield was logged (under mu_)
  std::deque<SwitchRecord> history_;
  std::map<std::string, Op, std::less<>> ops_;  // set up before the session starts
  std::mutex work_mu_;
  std::condition_variable work_cv_;
  std::deque<std::function<void()>> work_;  // queued ops (under work_mu_)
  bool work_stop_ = false;
  std::thread worker_;                             // started at the first op
  std::atomic<std::uint64_t> last_running_ns_{0};  // when the last switch thawed its jobs
  std::atomic<std::uint64_t> quantum_ns_{0};
};

}  // namespace dynamos::gang
