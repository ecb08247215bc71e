// What the compare tests expect of a report (dynamos-compare's JSON): the fields of
// every run.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace dynamos::compare::test {

inline constexpr const char* kRunFields[] = {"workload",      "policy",        "cyclesteal",
                                             "repeat",        "makespan_s",    "lost_s_per_switch",
                                             "lost_s",        "switch_rounds", "switch_ms_median",
                                             "switch_ms_max", "major_faults",  "pages_out",
                                             "pages_in",      "guest_cpu_s",   "guest_work",
                                             "host_slowdown", "verified",      "oom_kills",
                                             "error",         "retried_after", "jobs"};

// Expects `run` (one element of the report's "runs") to have every run field.
inline void expect_run_fields(const nlohmann::json& run) {
  for (const char* k : kRunFields)
    EXPECT_TRUE(run.contains(k)) << k;
}

}  // namespace dynamos::compare::test
