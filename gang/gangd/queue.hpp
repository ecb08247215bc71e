// gangd's pending queue and its scheduling pass: which waiting jobs start now.
//
// Jobs wait in submission order. A pass walks the queue: while every job so far has
// started, the next one is placed if it fits (Matrix::place: slots in a time slot and
// memory on its nodes). The first job that does not fit is the head. The head gets a
// reservation (EASY backfill): the matrix as it will be when enough running jobs have
// reached their time limits for the head to fit, in order of their ends; that moment is
// the head's shadow time. When some running job that the head needs has no time limit,
// the reservation is taken on the matrix with every running job gone (the head must
// fit there whatever ends first). A later job is started now (backfilled) only if it
// fits now and either ends by its own time limit before the shadow time, or fits in
// the reservation beside the head (and is then added to it, so later backfills see it).
// Hence a backfilled job never delays the head. Held jobs are skipped; a job that
// could never fit (Errc::invalid_argument from the matrix) is refused.
//
// Pure code: no clocks, no I/O. gangd (control.cpp, queue_ops.cpp) calls pass() after
// every change that can make room and starts what it returns.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gang/gangd/matrix.hpp"

namespace dynamos::gang {

struct PendingJob {
  JobId id = 0;
  Request req;
  std::int64_t limit_s = 0;  // time limit in seconds, 0: none
  bool held = false;
};

struct QueueOptions {
  // Jobs after the head considered for backfill in one pass (Slurm's bf_max_job_test).
  std::size_t max_backfill = 100'000;
};

struct PassResult {
  std::vector<Placement> started;        // in queue order; placed in the matrix
  std::map<JobId, std::string> refused;  // can never fit: why
  std::map<JobId, std::string> reasons;  // still pending: why
  JobId head = 0;                        // the job holding the reservation, or 0
  std::int64_t shadow_s = -1;            // the head's expected start, -1: unknown
  std::size_t backfilled = 0;            // of `started`, those behind the head
};

// One scheduling pass. `queue` in submission order; `ends` maps running (placed) jobs
// to the time their limit ends them (seconds, same clock as `now_s`); a placed job
// absent from `ends` has no limit. Places every started job in `m`.
PassResult schedule_pass(Matrix& m, const std::vector<PendingJob>& queue,
                         const std::map<JobId, std::int64_t>& ends, std::int64_t now_s,
                         const QueueOptions& options = {});

}  // namespace dynamos::gang
