// gangd's scheduler journal (issue 21): what the queue and the history must remember
// across a gangd restart, beside the main journal (journal.hpp, running jobs):
// pending jobs with their whole submission, holds, the ended jobs' records (exit code,
// reason, times, CPU, switches, major faults) and the nodes an operator drained.
//
// One JSON object a line, appended with one write() and fdatasync() each, so a crash
// loses at most the line being written; on open a torn last line is cut off (a
// warning), a damaged line before the end is an error. The history is bounded: only
// the newest `history_limit` ended jobs are kept, and the file is compacted (rewritten
// to the live state and renamed over the old one) when it holds more than twice the
// live records.
//
// Every change is applied to the SchedState passed in as it is journaled: the state is
// the file's replay, always.
//
// Order with the main journal: a job moves from pending here to running there with
// job_added() first and started() second; a job ends here (ended()) before the main
// journal removes it. Recovery resolves the overlaps: a job in both pending and the main
// journal is running; a running job with an ended record has ended.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "gang/protocol.hpp"

namespace dynamos::gang {

struct QueuedJob {
  std::uint64_t id = 0;
  std::uint32_t uid = 0;
  std::uint64_t submitted_ns = 0;
  std::uint64_t started_ns = 0;  // 0 while pending
  bool held = false;
  proto::JobSubmit req;
};

struct NodeAdminState {
  bool drained = false;
  std::string reason;
};

struct SchedState {
  std::map<std::uint64_t, QueuedJob> pending;  // by id = submission order
  std::map<std::uint64_t, QueuedJob> running;  // started (and in the main journal)
  std::deque<proto::JobInfo> history;          // oldest first
  // The submissions of ended jobs that did not succeed, for requeue (bounded with the
  // history they belong to).
  std::map<std::uint64_t, QueuedJob> requeueable;
  std::map<std::string, NodeAdminState> nodes;  // by node name; drained ones only
  std::uint64_t max_id = 0;                     // the highest job id seen
  std::vector<std::string> warnings;
};

class SchedJournal {
 public:
  // Opens (creating, mode 0600, refusing a symlink) and replays the file at `path`.
  static Result<SchedJournal> open(const std::string& path, std::size_t history_limit,
                                   SchedState& state);
  // Without a file (gangd without --journal): the same state, nothing survives.
  static SchedJournal in_memory(std::size_t history_limit) { return {{}, -1, 0, history_limit}; }
  SchedJournal(SchedJournal&& other) noexcept;
  SchedJournal& operator=(SchedJournal&& other) noexcept;
  ~SchedJournal();

  Result<void> started(std::uint64_t id, std::uint64_t started_ns, SchedState& state);
  Result<void> held(std::uint64_t id, bool held, SchedState& state);
  // Also keeps `state` bounded and compacts the file when it has grown.
  Result<void> ended(const proto::JobInfo& info, SchedState& state);
  Result<void> node_admin(const std::string& node, const NodeAdminState& s, SchedState& state);
  Result<void> queued(const QueuedJob& job, SchedState& state);
  Result<void> compact(const SchedState& state);

  std::size_t records() const { return records_; }

 private:
  SchedJournal(std::string path, int fd, std::size_t records, std::size_t limit)
      : path_(std::move(path)), fd_(fd), records_(records), limit_(limit) {}
  Result<void> append(const std::string& line);

  std::string path_;
  int fd_ = -1;
  std::size_t records_ = 0;
  std::size_t limit_ = 10'000;
};

}  // namespace dynamos::gang
