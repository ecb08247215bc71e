// The paging extension: adaptive paging at gang switches (Ryu, Pachapurkar and Fong,
// IPDPS 2004) on today's kernel interfaces. Loaded by core's extension host; the node
// agent calls switch_out(outgoing job) after freezing it, switch_in(incoming job)
// before thawing it, and tick(running job) during the quantum. See docs/paging.md.
//
// The policy of a switch is the incoming job's (subject->policy at switch_in, else
// the `policy` tunable): every page-out and prefetch happens in switch_in, when both
// jobs are known; switch_out only records the outgoing job's working set.
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/extension_abi.h"
#include "extensions/paging/policy.hpp"
#include "extensions/paging/switch_record.hpp"
#include "extensions/paging/working_set.hpp"
#include "kernelside/cgroup.hpp"
#include "kernelside/fs.hpp"
#include "kernelside/procfs.hpp"

namespace {

using namespace dynamos;
using namespace dynamos::paging;
using kernelside::Advice;

enum Tunable : uint32_t {
  kPolicy,
  kPrefetchBudget,
  kPageoutBatch,
  kBackgroundWriteRate,
  kWsSamplePeriod,
  kReserve,
  kTunableCount
};
const char* const kPolicyChoices[] = {"demand", "selective", "aggressive", "adaptive", nullptr};
const dynamos_tunable kTunables[kTunableCount] = {
    {"policy", DYNAMOS_TUNABLE_ENUM, DYNAMOS_TUNABLE_RUNTIME, "adaptive", nullptr, nullptr,
     kPolicyChoices, "policy of a switch whose incoming job names none"},
    {"prefetch_budget", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "1GiB", "0", "1TiB", nullptr,
     "adaptive: bytes of the incoming working set prefetched during the switch; the rest follows "
     "during the quantum"},
    {"pageout_batch", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "32MiB", "4KiB", "4GiB",
     nullptr, "bytes advised per process_madvise batch (page-out and prefetch)"},
    {"background_write_rate", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "512MiB", "0", "64GiB",
     nullptr,
     "adaptive: bytes per second of the outgoing job written out during the quantum; 0 = off"},
    {"ws_sample_period", DYNAMOS_TUNABLE_DURATION, DYNAMOS_TUNABLE_RUNTIME, "1s", "0", "1h",
     nullptr, "working-set sampling on ticks, for most-recent-first order; 0 = at switch-out only"},
    {"reserve", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "32MiB", "0", "16GiB", nullptr,
     "node memory kept free beyond the incoming working set by selective and adaptive"},
};

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

struct State {
  std::mutex mutex;
  const dynamos_ext_host* host = nullptr;
  std::optional<kernelside::Layout> layout;
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
constexpr size_t kHistory = 256;
State state;

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int64_t tunable(Tunable t) {
  return state.host->get_integer(state.host, t);
}

int failure(const std::string& message) {
  state.host->set_error(state.host, message.c_str());
  return 1;
}

void log(int level, const std::string& message) {
  state.host->log(state.host, level, message.c_str());
}

int append(dynamos_ext_buffer* out, const std::string& text) {
  if (!out) return 0;
  return state.host->append(out, text.data(), text.size()) == 0 ? 0 : failure("out of memory");
}

const char* attr(const dynamos_ext_subject* s, const char* key) {
  for (size_t i = 0; i < s->attr_count; ++i)
    if (std::string(s->attrs[i].key) == key) return s->attrs[i].value;
  return nullptr;
}

std::optional<double> attr_number(const dynamos_ext_subject* s, const char* key) {
  const char* v = attr(s, key);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  double d = std::strtod(v, &end);
  if (*end != '\0') return std::nullopt;
  return d;
}

uint64_t event_ns(const dynamos_ext_subject* s) {
  return s->now_ns ? s->now_ns : monotonic_ns();
}

// The job of a subject, created on first sight (attach is optional), its pids refreshed.
Job& job_of(const dynamos_ext_subject* s) {
  Job& job = state.jobs[s->id];
  job.id = s->id;
  job.name = s->name ? s->name : "";
  job.cgroup = s->cgroup ? s->cgroup : "";
  if (s->pid_count > 0) {
    job.pids.assign(s->pids, s->pids + s->pid_count);
  } else if (!job.cgroup.empty() && state.layout) {
    if (auto g =
            kernelside::Group::open(*state.layout, job.cgroup, {kernelside::Controller::memory}))
      if (auto pids = g->pids()) job.pids = *pids;
  }
  return job;
}

// The node's memory cgroup: attr node_cgroup, else the parent of the job's cgroup.
std::optional<kernelside::Group> node_group(const dynamos_ext_subject* s) {
  std::string node;
  if (const char* n = attr(s, "node_cgroup")) {
    node = n;
  } else if (s->cgroup && *s->cgroup) {
    std::string c = s->cgroup;
    if (auto slash = c.rfind('/'); slash != std::string::npos) node = c.substr(0, slash);
  }
  if (node.empty() || !state.layout) return std::nullopt;
  auto g = kernelside::Group::open(*state.layout, node, {kernelside::Controller::memory});
  if (!g) return std::nullopt;
  return std::move(*g);
}

// Free memory of the node: its memory cgroup when it has a limit, else the machine's
// MemAvailable.
uint64_t node_free(const std::optional<kernelside::Group>& node) {
  if (node) {
    auto max = node->memory_max();
    auto current = node->memory_current();
    if (max && *max && current) return **max > *current ? **max - *current : 0;
  }
  if (auto m = kernelside::read_meminfo())
    if (auto it = m->find("MemAvailable"); it != m->end()) return it->second;
  return 0;
}

// Whether the node may swap: swap is active, and the node's cgroup does not forbid it
// (v1 memory.memsw.limit_in_bytes equal to the memory limit, v2 memory.swap.max 0).
bool node_swap(const std::optional<kernelside::Group>& node) {
  auto swap = kernelside::swap_info();
  if (!swap || !swap->present) return false;
  if (!node) return true;
  std::string dir = node->dir(kernelside::Controller::memory);
  if (auto v2 = kernelside::read_text(dir + "/memory.swap.max")) return v2->rfind("0", 0) != 0;
  auto memsw = kernelside::read_u64(dir + "/memory.memsw.limit_in_bytes");
  auto mem = kernelside::read_u64(dir + "/memory.limit_in_bytes");
  return !(memsw && mem && *memsw <= *mem);
}

SwitchRecord* record(uint64_t number) {
  for (auto& r : state.history)
    if (r.number == number) return &r;
  return nullptr;
}

// ---- hooks ----

int init(const dynamos_ext_host* host) {
  state.host = host;
  if (auto l = kernelside::Layout::detect())
    state.layout = std::move(*l);
  else
    log(DYNAMOS_LOG_WARNING, "no cgroup layout (" + l.error().message() +
                                 "): node free memory is read from /proc/meminfo");
  return 0;
}

void fini(uint32_t) {
  std::lock_guard lock(state.mutex);
  state.jobs.clear();
  state.history.clear();
  state.has_pending_out = false;
  state.background_job = 0;
}

int attach(const dynamos_ext_subject* s, dynamos_ext_buffer* report) try {
  std::lock_guard lock(state.mutex);
  Job& job = job_of(s);
  return append(report, "{\"job\":" + std::to_string(job.id) + ",\"attached\":true,\"processes\":" +
                            std::to_string(job.pids.size()) + "}");
} catch (const std::exception& e) {
  return failure(std::string("attach: ") + e.what());
}

int detach(const dynamos_ext_subject* s, dynamos_ext_buffer* report) try {
  std::lock_guard lock(state.mutex);
  bool known = state.jobs.erase(s->id) > 0;
  if (state.background_job == s->id) state.background_job = 0;
  if (state.has_pending_out && state.pending_out == s->id) state.pending_out = 0;
  return append(report, "{\"job\":" + std::to_string(s->id) +
                            ",\"detached\":" + (known ? "true" : "false") + "}");
} catch (const std::exception& e) {
  return failure(std::string("detach: ") + e.what());
}

int switch_out(const dynamos_ext_subject* s, dynamos_ext_buffer* report) try {
  std::lock_guard lock(state.mutex);
  Job& job = job_of(s);
  job.running = false;
  size_t gone = 0;
  auto resident = resident_set(job.pids, &gone);
  if (!resident)
    return failure("switch_out job " + std::to_string(job.id) + ": " + resident.error().message());
  bool fresh_sample = job.sample_ns > job.resumed_ns && !job.sample.empty();
  job.ws = order_by_recency(*resident, fresh_sample ? &job.sample : nullptr);
  job.ws_recorded = true;
  job.sample = {};
  if (state.background_job == job.id) state.background_job = 0;
  state.pending_out = job.id;
  state.has_pending_out = true;
  state.pending_start_ns = event_ns(s);
  return append(report, "{\"job\":" + std::to_string(job.id) +
                            ",\"ws_pages\":" + std::to_string(job.ws.pages()) +
                            ",\"recency\":" + (fresh_sample ? "true" : "false") +
                            ",\"processes_gone\":" + std::to_string(gone) + "}");
} catch (const std::exception& e) {
  return failure(std::string("switch_out: ") + e.what());
}

int switch_in(const dynamos_ext_subject* s, dynamos_ext_buffer* report) try {
  std::lock_guard lock(state.mutex);
  Policy policy = static_cast<Policy>(tunable(kPolicy));
  if (s->policy && *s->policy) {
    auto p = parse_policy(s->policy);
    if (!p)
      return failure(std::string("switch_in job ") + std::to_string(s->id) + ": unknown policy '" +
                     s->policy + "' (demand, selective, aggressive, adaptive)");
    policy = *p;
  }
  Job& in = job_of(s);
  Job* out = nullptr;
  if (state.has_pending_out && state.pending_out != in.id) {
    auto it = state.jobs.find(state.pending_out);
    if (it != state.jobs.end()) out = &it->second;
  }
  const uint64_t page = kernelside::page_size();
  const uint64_t batch = static_cast<uint64_t>(tunable(kPageoutBatch));

  SwitchRecord r;
  r.number = ++state.switches;
  r.out_job = out ? out->id : 0;
  r.in_job = in.id;
  r.policy = policy_name(policy);
  r.start_ns = state.has_pending_out ? state.pending_start_ns : event_ns(s);
  r.ws_recorded = in.ws_recorded;
  r.ws_pages = in.ws.pages();
  state.has_pending_out = false;

  auto node = node_group(s);
  bool have_swap = node_swap(node);
  if (!have_swap && policy != Policy::demand) {
    r.warning = std::string("no swap for this node: policy ") + policy_name(policy) +
                " acts as demand (nothing can be paged out)";
    log(DYNAMOS_LOG_WARNING, r.warning);
  } else if (!in.ws_recorded && policy == Policy::adaptive) {
    r.warning =
        "no working set recorded yet for job " + std::to_string(in.id) + ": nothing to prefetch";
  }

  size_t gone = 0;
  WorkingSet incoming_swapped;
  if (in.ws_recorded && have_swap) {
    auto sw = swapped_part(in.ws, &gone);
    if (!sw) return failure("switch_in job " + std::to_string(in.id) + ": " + sw.error().message());
    incoming_swapped = std::move(*sw);
  }
  WorkingSet outgoing_lru;
  if (out && have_swap && policy != Policy::demand) {
    auto res = resident_part(reversed(out->ws), &gone);
    if (!res)
      return failure("switch_in: outgoing job " + std::to_string(out->id) + ": " +
                     res.error().message());
    outgoing_lru = std::move(*res);
  }

  PlanInput input;
  input.free_bytes = node_free(node);
  input.incoming_ws_bytes = in.ws.bytes();
  input.incoming_swapped_bytes = incoming_swapped.bytes();
  input.outgoing_resident_bytes = outgoing_lru.bytes();
  input.prefetch_budget = static_cast<uint64_t>(tunable(kPrefetchBudget));
  input.reserve_bytes = static_cast<uint64_t>(tunable(kReserve));
  input.swap = have_swap;
  SwitchPlan plan = plan_switch(policy, input);
  r.effective = policy_name(plan.effective);
  r.free_bytes = input.free_bytes;

  // Page-out and prefetch overlap (zram compresses and decompresses on the CPU: two
  // cores do both at once). The prefetch takes batch after batch as the page-out makes
  // room, never pushing the node into its limit, where reclaim would evict what was
  // just prefetched.
  uint64_t t0 = monotonic_ns();
  std::atomic<bool> pageout_done{!(plan.pageout_all || plan.pageout_bytes > 0)};
  std::atomic<uint64_t> pageout_end{t0};
  Result<MoveReport> out_moved = MoveReport{};
  std::thread pager;
  if (!pageout_done) {
    pager = std::thread([&] {
      out_moved = advise(outgoing_lru, Advice::pageout,
                         plan.pageout_all ? UINT64_MAX : plan.pageout_bytes, batch);
      pageout_end = monotonic_ns();
      pageout_done = true;
    });
  }
  Result<MoveReport> in_moved = MoveReport{};
  if (plan.prefetch_bytes > 0) {
    const uint64_t reserve = static_cast<uint64_t>(tunable(kReserve));
    for (const WorkingSet& chunk : split(incoming_swapped, batch, plan.prefetch_bytes)) {
      // (split() below hands the rest to the background prefetch)
      while (!pageout_done && node_free(node) < chunk.bytes() + reserve)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      auto m = advise(chunk, Advice::willneed, UINT64_MAX, batch);
      if (!m) {
        in_moved = std::unexpected(m.error());
        break;
      }
      in_moved->bytes += m->bytes;
      in_moved->calls += m->calls;
      in_moved->processes_gone += m->processes_gone;
    }
  }
  uint64_t t_prefetch = monotonic_ns();
  if (pager.joinable()) pager.join();
  uint64_t t2 = monotonic_ns();
  if (!out_moved)
    return failure("switch_in: page-out of job " + std::to_string(r.out_job) + ": " +
                   out_moved.error().message());
  if (!in_moved)
    return failure("switch_in: prefetch of job " + std::to_string(in.id) + ": " +
                   in_moved.error().message());
  r.pages_out = out_moved->bytes / page;
  r.pages_in = in_moved->bytes / page;
  gone += out_moved->processes_gone + in_moved->processes_gone;
  r.pageout_s = (pageout_end - t0) / 1e9;
  r.prefetch_s = (t_prefetch - t0) / 1e9;
  r.processes_gone = gone;

  state.background_job = plan.background_write && out ? out->id : 0;
  state.background_last_ns = t2;
  state.background_credit = 0;

  in.running = true;
  in.resumed_ns = t2;
  in.majflt_at_resume = major_faults(in.pids);
  in.work_at_resume = attr_number(s, "work");
  in.record = r.number;
  in.sample = {};
  in.prefetch_rest.clear();
  if (plan.background_write && in_moved->bytes < incoming_swapped.bytes()) {
    // Adaptive page-in goes on during the quantum: what the budget left out follows,
    // batch by batch, as background page-out of the outgoing job makes room.
    auto chunks = split(incoming_swapped, batch, UINT64_MAX);
    uint64_t skip = in_moved->bytes, skipped = 0;
    for (auto& c : chunks) {
      if (skipped >= skip)
        in.prefetch_rest.push_back(std::move(c));
      else
        skipped += c.bytes();
    }
  }
  r.switch_s = t2 > r.start_ns ? (t2 - r.start_ns) / 1e9 : 0;
  if (state.history.size() >= kHistory) state.history.pop_front();
  state.history.push_back(r);
  return append(report, to_json(r));
} catch (const std::exception& e) {
  return failure(std::string("switch_in: ") + e.what());
}

int tick(const dynamos_ext_subject* s, dynamos_ext_buffer* report) try {
  std::lock_guard lock(state.mutex);
  if (s->kind == DYNAMOS_SUBJECT_NODE) return append(report, "{}");
  Job& job = job_of(s);
  uint64_t now = monotonic_ns();
  SwitchRecord* r = job.running ? record(job.record) : nullptr;
  if (r) {
    double elapsed = (now - job.resumed_ns) / 1e9;
    r->quantum_s = elapsed;
    if (r->majflt_first_s < 0 && elapsed >= 1.0)
      r->majflt_first_s = static_cast<int64_t>(major_faults(job.pids) - job.majflt_at_resume);
    auto r0 = attr_number(s, "r0");
    auto work = attr_number(s, "work");
    if (r0 && *r0 > 0 && work && job.work_at_resume)
      r->lost_s = elapsed - (*work - *job.work_at_resume) / *r0;
  }
  // Working-set sampling, for the recency order at the next switch-out.
  bool sampled = false;
  int64_t period = tunable(kWsSamplePeriod);
  if (job.running && period > 0 &&
      now - std::max(job.sample_ns, job.resumed_ns) >= uint64_t(period)) {
    if (auto ws = resident_set(job.pids)) {
      job.sample = std::move(*ws);
      job.sample_ns = now;
      sampled = true;
    }
  }
  // Background write-out of the job that went out, rate-limited.
  uint64_t written = 0;
  int64_t rate = tunable(kBackgroundWriteRate);
  if (state.background_job && state.background_job != job.id && rate > 0) {
    state.background_credit += rate * ((now - state.background_last_ns) / 1e9);
    state.background_last_ns = now;
    uint64_t batch = static_cast<uint64_t>(tunable(kPageoutBatch));
    uint64_t chunk = std::min<uint64_t>(batch, 4ull << 20);
    auto it = state.jobs.find(state.background_job);
    if (it == state.jobs.end()) {
      state.background_job = 0;
    } else if (state.background_credit >= static_cast<double>(chunk)) {
      auto res = resident_part(reversed(it->second.ws));
      if (res && res->empty()) {
        state.background_job = 0;  // all out
      } else if (res) {
        uint64_t want = static_cast<uint64_t>(state.background_credit);
        if (auto moved = advise(*res, Advice::pageout, want, batch)) {
          written = moved->bytes;
          state.background_credit -= static_cast<double>(moved->bytes);
          if (moved->bytes == 0) state.background_job = 0;
        }
      }
      // Credit does not pile up while there is nothing to write.
      state.background_credit = std::min(state.background_credit, static_cast<double>(batch));
    }
    if (r) r->background_pages_out += written / kernelside::page_size();
  }
  // Background prefetch of the running job's remaining working set, while the node has
  // room for it beyond the reserve (a few batches per tick at most).
  uint64_t prefetched = 0;
  if (job.running && !job.prefetch_rest.empty()) {
    auto node = node_group(s);
    const uint64_t reserve = static_cast<uint64_t>(tunable(kReserve));
    uint64_t free = node_free(node);
    for (int n = 0; n < 4 && !job.prefetch_rest.empty(); ++n) {
      const WorkingSet& chunk = job.prefetch_rest.front();
      // Only what is still swapped: the job may have faulted some of it in meanwhile.
      auto still = swapped_part(chunk);
      if (!still) {
        job.prefetch_rest.clear();
        break;
      }
      if (free < still->bytes() + reserve) break;
      if (auto m = advise(*still, Advice::willneed, UINT64_MAX, still->bytes() + 1)) {
        prefetched += m->bytes;
        free -= std::min(free, m->bytes);
      }
      job.prefetch_rest.pop_front();
    }
    if (r) r->background_pages_in += prefetched / kernelside::page_size();
  }
  return append(
      report,
      "{\"job\":" + std::to_string(job.id) + ",\"sampled\":" + (sampled ? "true" : "false") +
          ",\"background_pages_out\":" + std::to_string(written / kernelside::page_size()) +
          ",\"background_pages_in\":" + std::to_string(prefetched / kernelside::page_size()) + "}");
} catch (const std::exception& e) {
  return failure(std::string("tick: ") + e.what());
}

// Operations: "switches" [job id]: the switch records, one JSON object per line (the
// last 256); "last" <job id>: the latest record whose incoming job is that job;
// "status": the jobs known and swap.
int call(const char* op, const char* args, dynamos_ext_buffer* reply) try {
  std::lock_guard lock(state.mutex);
  std::string o = op ? op : "";
  std::string a = args ? args : "";
  if (o == "switches" || o == "last") {
    std::optional<uint64_t> id;
    if (!a.empty()) {
      char* end = nullptr;
      unsigned long long v = std::strtoull(a.c_str(), &end, 10);
      if (*end != '\0') return failure(o + ": '" + a + "' is not a job id");
      id = v;
    } else if (o == "last") {
      return failure("last: needs a job id");
    }
    std::string out;
    const SwitchRecord* last = nullptr;
    for (const auto& r : state.history) {
      if (id && r.in_job != *id) continue;
      last = &r;
      if (o == "switches") out += to_json(r) + "\n";
    }
    if (o == "last") {
      if (!last) return failure("last: no switch to job " + a + " recorded");
      out = to_json(*last);
    }
    return append(reply, out);
  }
  if (o == "status") {
    auto swap = kernelside::swap_info();
    std::string out = "{\"swap\":" + std::string(swap && swap->present ? "true" : "false") +
                      ",\"switches\":" + std::to_string(state.switches) + ",\"jobs\":[";
    bool first = true;
    for (const auto& [id, job] : state.jobs) {
      out += (first ? "" : ",") + std::string("{\"id\":") + std::to_string(id) + ",\"name\":\"" +
             json_escape(job.name) + "\",\"processes\":" + std::to_string(job.pids.size()) +
             ",\"running\":" + (job.running ? "true" : "false") +
             ",\"ws_recorded\":" + (job.ws_recorded ? "true" : "false") +
             ",\"ws_pages\":" + std::to_string(job.ws.pages()) + "}";
      first = false;
    }
    return append(reply, out + "]}");
  }
  return failure("unknown operation '" + o + "' (switches, last, status)");
} catch (const std::exception& e) {
  return failure(std::string("call: ") + e.what());
}

int on_tunable(uint32_t, const dynamos_tunable_value*) {
  return 0;
}

const dynamos_extension kDescriptor = {
    .abi = DYNAMOS_EXTENSION_ABI,
    .size = sizeof(dynamos_extension),
    .name = "paging",
    .version = "1.0.0",
    .description = "adaptive paging at gang switches: demand, selective, aggressive, adaptive",
    .tunables = kTunables,
    .tunable_count = kTunableCount,
    .reserved = 0,
    .init = init,
    .fini = fini,
    .export_state = nullptr,
    .import_state = nullptr,
    .on_tunable = on_tunable,
    .attach = attach,
    .detach = detach,
    .switch_out = switch_out,
    .switch_in = switch_in,
    .tick = tick,
    .call = call,
};

}  // namespace

DYNAMOS_EXTENSION_DEFINE(kDescriptor)
