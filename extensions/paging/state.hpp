// What the paging extension knows between hooks: the jobs it has seen (with the working
// set each left behind at its last switch-out), the switch records, the switch under
// way and the background write-out. And its hand-over to a new build of the extension
// (upgrade in place): the whole state as one JSON document, tagged with its format.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "extensions/paging/switch_record.hpp"
#include "extensions/paging/working_set.hpp"

namespace dynamos::paging {

struct Job {
  uint64_t id = 0;
  std::string name, cgroup;
  std::vector<pid_t> pids;
  WorkingSet ws;  // recorded at its last switch-out, most recent first
  bool ws_recorded = false;
  WorkingSet sample;  // taken during its quantum
  uint64_t sample_ns = 0;
  bool running = false;
  uint64_t resumed_ns = 0;
  uint64_t majflt_at_resume = 0;
  std::optional<double> work_at_resume;
  uint64_t record = 0;  // number of the switch that brought it in
  // adaptive: the rest of its working set, prefetched on ticks as room appears
  std::deque<WorkingSet> prefetch_rest;
};

// Everything but the lock and the host: what an upgrade hands over.
struct PagingState {
  std::map<uint64_t, Job> jobs;
  std::deque<SwitchRecord> history;  // the last kHistory switches
  uint64_t switches = 0;
  uint64_t pending_out = 0;  // switch_out seen, switch_in not yet
  bool has_pending_out = false;
  uint64_t pending_start_ns = 0;
  uint64_t background_job = 0;  // written out during the quantum (0: none)
  uint64_t background_last_ns = 0;
  double background_credit = 0;  // bytes allowed but not yet written
};
inline constexpr std::size_t kHistory = 256;

// The format tag first: a build that does not know the tag refuses the state.
inline constexpr const char* kStateFormat = "dynamos-paging-state/1";
std::string export_state(const PagingState& state);
Result<PagingState> import_state(std::string_view text);

}  // namespace dynamos::paging
