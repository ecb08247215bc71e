// The cycle-stealing extension's state and the small helpers every part of it uses:
// cyclesteal.cpp (tunables, hooks, sampling and the policy's actions), report.cpp (the
// report and status replies), handover.cpp (the state handed to a new build at an
// upgrade in place). One State per loaded build, reached through `state`.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/extension_abi.h"
#include "extensions/cyclesteal/guest_class.hpp"
#include "extensions/cyclesteal/host_monitor.hpp"
#include "extensions/cyclesteal/policy.hpp"
#include "extensions/cyclesteal/records.hpp"

namespace dynamos::cyclesteal::ext {

using Json = nlohmann::ordered_json;

enum Tunable : uint32_t {
  POLICY,
  INTERVAL,
  BUSY_THRESHOLD,
  IDLE_PERIOD,
  HEADROOM,
  GUEST_FLOOR,
  NODE_MEMORY,
  PSI_THRESHOLD,
  HOST_WEIGHT,
  TUNABLE_COUNT
};

struct GuestInfo {
  std::string name;
  std::optional<Policy> policy;  // the guest's own, from attach; else the node's
  std::vector<pid_t> pids;       // as attached (re-adopted when the policy leaves off)
};

struct Reaction {
  const char* kind;  // pause, thaw, evict, shrink
  uint64_t guest = 0;
  uint64_t at_ns = 0;     // CLOCK_MONOTONIC
  double latency_ms = 0;  // from the sample before the change was seen until done
  double act_ms = 0;      // the action itself
  uint64_t pages = 0;     // shrink: pages paged out
};

struct KindStats {
  uint64_t count = 0;
  std::vector<double> latencies;  // last 256
};

struct State {
  std::mutex mu;
  const dynamos_ext_host* host = nullptr;
  std::optional<kernelside::Layout> layout;
  std::optional<HostMonitor> monitor;
  std::optional<GuestClass> cls;
  std::string class_path;
  bool force_sched_idle = false;  // attach attribute cpu_priority=SCHED_IDLE
  std::map<uint64_t, GuestInfo> guests;
  Policy policy = Policy::linger;
  Activity activity;
  std::optional<Clock::time_point> last_sample;
  HostReading last;
  bool admit = true;
  // Totals since init or reset.
  uint64_t samples = 0;
  double host_cpu_s = 0, guest_cpu_s = 0, idle_cpu_s = 0, wall_s = 0;
  // Over the intervals in which a guest ran (used CPU time, or was in the class and not
  // frozen): the host jobs' CPU time and their time runnable but waiting for a CPU.
  double host_cpu_guest_s = 0, host_wait_guest_s = 0;
  uint64_t last_guest_cpu_ns = 0;  // the class's cumulative usage at the last sample
  uint64_t pages_out = 0, short_of_bound = 0, killed = 0;
  std::deque<Reaction> recent;
  std::map<std::string, KindStats> kinds;
  std::deque<std::string> errors;
  // Host job groups whose CPU weight the extension raised: relative path -> the weight
  // they had before; and the weight they were given.
  std::map<std::string, unsigned> boosted;
  unsigned boosted_to = 0;
  // Where the changes that would outlive this process are recorded before they are made
  // (records.hpp); unset, with the reason, when no record directory could be had: then
  // no weight is raised and no class is made.
  std::optional<RecordFile> records;
  std::string records_error;
};

extern State* state;

inline int64_t tunable(Tunable t) {
  return state->host->get_integer(state->host, t);
}
inline double tunable_f(Tunable t) {
  return state->host->get_float(state->host, t);
}

inline void log(int level, const std::string& msg) {
  state->host->log(state->host, level, msg.c_str());
}

inline void note_error(const std::string& msg) {
  log(DYNAMOS_LOG_WARNING, msg);
  state->errors.push_back(msg);
  if (state->errors.size() > 8) state->errors.pop_front();
}

inline int refuse(const std::string& msg) {
  state->host->set_error(state->host, msg.c_str());
  return 1;
}

inline int append(dynamos_ext_buffer* out, const std::string& text) {
  if (!out) return 0;
  return state->host->append(out, text.data(), text.size());
}

// A report or reply object as one line of JSON.
inline int append(dynamos_ext_buffer* out, const Json& j) {
  return append(out, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

inline Policy effective(const GuestInfo& g) {
  return g.policy.value_or(state->policy);
}

// Records `weights` as the raised host weights and the class as it is now (records.hpp).
inline Result<void> persist(const std::map<std::string, unsigned>& weights) {
  if (!state->records)
    return fail(Errc::unsupported, "no record file for changes (" + state->records_error + ")");
  Records r;
  r.weights = weights;
  if (state->cls) {
    r.class_path = state->cls->path();
    r.class_created = state->cls->created();
  }
  return state->records->write(r);
}

// report.cpp: the whole picture (call "report").
Json report_json();

// handover.cpp: the export_state and import_state hooks.
int export_state(dynamos_ext_buffer* out);
int import_state(const void* data, size_t size);

}  // namespace dynamos::cyclesteal::ext
