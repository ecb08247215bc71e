// One gang switch as the paging extension saw it, and its JSON form (the report of
// switch_in, completed by the ticks of the quantum that follows; see docs/paging.md).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace dynamos::paging {

struct SwitchRecord {
  uint64_t number = 0;   // switches seen by this extension, from 1
  uint64_t out_job = 0;  // 0: none (the first job of the node)
  uint64_t in_job = 0;
  std::string policy;     // what the incoming job asked for
  std::string effective;  // what was done (demand without swap)
  uint64_t start_ns = 0;  // switch start: now_ns of switch_out (of switch_in if none)
  double switch_s = 0;    // switch start to the end of switch_in (the job resumes next)
  double pageout_s = 0, prefetch_s = 0;
  uint64_t free_bytes = 0;  // node memory free when switch_in planned
  uint64_t ws_pages = 0;    // the incoming job's recorded working set
  bool ws_recorded = false;
  uint64_t pages_out = 0;             // at the switch
  uint64_t pages_in = 0;              // prefetched at the switch
  uint64_t background_pages_out = 0;  // during the quantum that followed
  uint64_t background_pages_in = 0;   // prefetched during the quantum that followed
  int64_t majflt_first_s =
      -1;                // major faults of the incoming job in its first second; -1: not yet known
  double lost_s = -1;    // Q - W/r0 so far in the quantum; -1 without r0 and work attrs
  double quantum_s = 0;  // time since the job resumed, at the last tick
  uint64_t processes_gone = 0;  // processes of either job that exited during the switch
  std::string warning;          // "" or one sentence
};

// The record as one JSON object (the fields in the order written here), and back (the
// hand-over of an upgrade in place).
nlohmann::ordered_json to_json_value(const SwitchRecord& r);
std::string to_json(const SwitchRecord& r);
SwitchRecord switch_record_from(const nlohmann::ordered_json& j);

}  // namespace dynamos::paging
