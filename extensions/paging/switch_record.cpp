#include "extensions/paging/switch_record.hpp"

#include <cstdio>

namespace dynamos::paging {

std::string to_json(const SwitchRecord& r) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "{\"switch\":%llu,\"out_job\":%llu,\"in_job\":%llu,\"policy\":\"%s\","
                "\"effective_policy\":\"%s\",\"switch_s\":%.6f,\"pageout_s\":%.6f,"
                "\"prefetch_s\":%.6f,\"free_bytes\":%llu,\"ws_recorded\":%s,\"ws_pages\":%llu,"
                "\"pages_out\":%llu,\"pages_in\":%llu,\"background_pages_out\":%llu,"
                "\"background_pages_in\":%llu,"
                "\"majflt_first_s\":%lld,\"lost_s\":%.6f,\"quantum_s\":%.6f,"
                "\"processes_gone\":%llu,",
                (unsigned long long)r.number, (unsigned long long)r.out_job,
                (unsigned long long)r.in_job, json_escape(r.policy).c_str(),
                json_escape(r.effective).c_str(), r.switch_s, r.pageout_s, r.prefetch_s,
                (unsigned long long)r.free_bytes, r.ws_recorded ? "true" : "false",
                (unsigned long long)r.ws_pages, (unsigned long long)r.pages_out,
                (unsigned long long)r.pages_in, (unsigned long long)r.background_pages_out,
                (unsigned long long)r.background_pages_in, (long long)r.majflt_first_s, r.lost_s,
                r.quantum_s, (unsigned long long)r.processes_gone);
  return std::string(buf) + "\"warning\":\"" + json_escape(r.warning) + "\"}";
}

}  // namespace dynamos::paging
