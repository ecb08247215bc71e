#include "gang/gangd/queue.hpp"

#include <algorithm>
#include <optional>

namespace dynamos::gang {

namespace {

// The head's reservation: the matrix once enough running jobs have ended for the head
// to fit, with the head placed in it, and when that is (-1: not known, some job the
// head needs has no limit). nullopt when the head fits nowhere even then.
struct Reservation {
  Matrix matrix;
  std::int64_t shadow_s = -1;
};

std::optional<Reservation> reserve(const Matrix& m, const PendingJob& head,
                                   const std::map<JobId, std::int64_t>& ends) {
  std::vector<std::pair<std::int64_t, JobId>> by_end;
  for (const auto& [id, end] : ends)
    if (m.find(id)) by_end.emplace_back(end, id);
  std::sort(by_end.begin(), by_end.end());
  // The matrix once the first k jobs (by end) are gone, the head placed if it fits.
  auto after = [&](std::size_t k) {
    Reservation r{m, k ? by_end[k - 1].first : -1};
    for (std::size_t i = 0; i < k; ++i)
      (void)r.matrix.remove(by_end[i].second);
    bool fits = r.matrix.place(head.id, head.req).has_value();
    return std::pair{std::move(r), fits};
  };
  // Removing jobs only makes room: the fewest ends after which the head fits, by
  // bisection (a pass with thousands of running jobs tries a dozen matrices, not all).
  if (auto [r, fits] = after(by_end.size()); fits) {
    std::size_t lo = 1, hi = by_end.size();  // the head fits after hi, not after lo - 1
    while (lo < hi) {
      std::size_t mid = lo + (hi - lo) / 2;
      if (after(mid).second)
        hi = mid;
      else
        lo = mid + 1;
    }
    return after(hi).first;
  }
  // Some job without a limit must end first: reserve on the matrix with none running.
  Reservation r{m, -1};
  for (JobId id : r.matrix.placed_jobs())
    (void)r.matrix.remove(id);
  if (!r.matrix.place(head.id, head.req)) return std::nullopt;
  return r;
}

}  // namespace

PassResult schedule_pass(Matrix& m, const std::vector<PendingJob>& queue,
                         const std::map<JobId, std::int64_t>& ends, std::int64_t now_s,
                         const QueueOptions& options) {
  PassResult out;
  std::optional<Reservation> reservation;
  auto until = ends;  // jobs started by this pass end by their limits too
  std::size_t tested = 0;
  std::string behind;
  for (const PendingJob& job : queue) {
    if (job.held) {
      out.reasons[job.id] = "held";
      continue;
    }
    if (out.head != 0 && ++tested > options.max_backfill) {
      out.reasons[job.id] = behind;
      continue;
    }
    auto placed = m.place(job.id, job.req);
    if (!placed) {
      if (placed.error().code == Errc::invalid_argument) {
        out.refused[job.id] = placed.error().message();
      } else if (out.head == 0) {
        out.head = job.id;
        out.reasons[job.id] = m.why_not(job.id, job.req);
        behind = "waiting behind job " + std::to_string(job.id) + " (queue order)";
        reservation = reserve(m, job, until);
        if (reservation) out.shadow_s = reservation->shadow_s;
      } else {
        out.reasons[job.id] = behind + "; no room for it now either";
      }
      continue;
    }
    if (out.head != 0 && reservation) {
      // Backfill: gone before the head may start, or compatible with its reservation.
      bool gone_first = job.limit_s > 0 && reservation->shadow_s >= 0 &&
                        now_s + job.limit_s <= reservation->shadow_s;
      if (!gone_first && !reservation->matrix.place_at(*placed, job.req)) {
        (void)m.remove(job.id);
        out.reasons[job.id] =
            behind + "; starting now would delay it" +
            (job.limit_s > 0 ? "" : " (a shorter --time could let it start before)");
        continue;
      }
    }
    if (out.head != 0) ++out.backfilled;
    if (job.limit_s > 0) until[job.id] = now_s + job.limit_s;
    out.started.push_back(*placed);
  }
  return out;
}

}  // namespace dynamos::gang
