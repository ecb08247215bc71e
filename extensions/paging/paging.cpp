// The paging extension: adaptive paging at gang switches (Ryu, Pachapurkar and Fong,
// IPDPS 2004) on today's kernel interfaces. Loaded by core's extension host; the node
// agent calls switch_out(outgoing job) after freezing it, switch_in(incoming job)
// before thawing it, and tick(running job) during the quantum. See docs/paging.md.
//
// The policy of a switch is the incoming job's (subject->policy at switch_in, else
// the `policy` tunable): every page-out and prefetch happens in switch_in, when both
// jobs are known; switch_out only records the outgoing job's working set.
#include <time.h>

#include <nlohmann/json.hpp>

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
#include "extensions/extension_glue.hpp"
#include "extensions/paging/policy.hpp"
#include "extensions/paging/state.hpp"
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
const dynamos_tunable kTunables[kTunableCount] = {
    {"policy", DYNAMOS_TUNABLE_ENUM, DYNAMOS_TUNABLE_RUNTIME, "adaptive", nullptr, nullptr,
     kPolicyNames, "policy of a switch whose incoming job names none"},
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

// The extension's state, one per loaded build (an upgrade hands it over: export_state).
struct State : PagingState {
  std::mutex mutex;
  const dynamos_ext_host* host = nullptr;
  std::optional<kernelside::Layout> layout;
};
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

// A report or reply object, as one line of JSON.
int append(dynamos_ext_buffer* out, const nlohmann::ordered_json& j) {
  return append(out, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
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
// (v2 memory.swap.max 0; v1 memory.memsw.limit_in_bytes no higher than a memory limit:
// policy.hpp). A group whose memory is unlimited may swap.
bool node_swap(const std::optional<kernelside::Group>& node) {
  auto swap = kernelside::swap_info();
  if (!swap || !swap->present) return false;
  if (!node) return true;
  std::string dir = node->dir(kernelside::Controller::memory);
  if (auto v2 = kernelside::read_text(dir + "/memory.swap.max")) return v2_swap_allowed(*v2);
  auto memsw = kernelside::read_u64(dir + "/memory.memsw.limit_in_bytes");
  auto mem = node->memory_max();
  if (!mem) return true;  // unreadable: nothing says the group forbids swap
  return v1_swap_allowed(*mem, memsw ? std::optional<uint64_t>(*memsw) : std::nullopt);
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
  static_cast<PagingState&>(state) = PagingState{};
}

// Upgrade in place: the recorded working sets (and everything else) go to the new build,
// so that its first switch_in prefetches what this build recorded.
int export_state(dynamos_ext_buffer* out) try {
  std::lock_guard lock(state.mutex);
  return append(out, paging::export_state(state));
} catch (const std::exception& e) {
  return failure(std::string("export_state: ") + e.what());
}

int import_state(const void* data, size_t size) try {
  std::lock_guard lock(state.mutex);
  auto imported = paging::import_state(std::string_view(static_cast<const char*>(data), size));
  if (!imported) return failure(imported.error().message());
  static_cast<PagingState&>(state) = std::move(*imported);
  return 0;
} catch (const std::exception& e) {
  return failure(std::string("import_state: ") + e.what());
}

int attach(const dynamos_ext_subject* s, dynamos_ext_buffer* report) try {
  std::lock_guard lock(state.mutex);
  Job& job = job_of(s);
  return append(report, {{"job", job.id}, {"attached", true}, {"processes", job.pids.size()}});
} catch (const std::exception& e) {
  return failure(std::string("attach: ") + e.what());
}

int detach(const dynamos_ext_subject* s, dynamos_ext_buffer* report) try {
  std::lock_guard lock(state.mutex);
  bool known = state.jobs.erase(s->id) > 0;
  if (state.background_job == s->id) state.background_job = 0;
  if (state.has_pending_out && state.pending_out == s->id) state.pending_out = 0;
  return append(report, {{"job", s->id}, {"detached", known}});
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
  return append(report, {{"job", job.id},
                         {"ws_pages", job.ws.pages()},
                         {"recency", fresh_sample},
                         {"processes_gone", gone}});
} catch (const std::exception& e) {
  return failure(std::string("switch_out: ") + e.what());
}

// ---- switch_in, in phases: policy, record, measure, plan, move, resume ----

// The policy of the switch: the incoming job's, else the `policy` tunable.
Result<Policy> switch_policy(const dynamos_ext_subject* s) {
  if (!s->policy || !*s->policy) return static_cast<Policy>(tunable(kPolicy));
  auto p = parse_policy(s->policy);
  if (!p)
    return fail(Errc::invalid_argument, "switch_in job " + std::to_string(s->id) +
                                            ": unknown policy '" + s->policy +
                                            "' (demand, selective, aggressive, adaptive)");
  return *p;
}

// The switch's record, opened: which jobs, which policy, since when.
SwitchRecord open_record(Policy policy, const Job& in, const Job* out,
                         const dynamos_ext_subject* s) {
  SwitchRecord r;
  r.number = ++state.switches;
  r.out_job = out ? out->id : 0;
  r.in_job = in.id;
  r.policy = policy_name(policy);
  r.start_ns = state.has_pending_out ? state.pending_start_ns : event_ns(s);
  r.ws_recorded = in.ws_recorded;
  r.ws_pages = in.ws.pages();
  state.has_pending_out = false;
  return r;
}

// What the plan works from: the incoming working set's swapped part, and the outgoing
// job's resident pages least recently used first.
struct SwitchSets {
  WorkingSet incoming_swapped, outgoing_lru;
  size_t gone = 0;
};

Result<SwitchSets> measure(const Job& in, const Job* out, bool have_swap, Policy policy) {
  SwitchSets sets;
  if (in.ws_recorded && have_swap) {
    auto sw = swapped_part(in.ws, &sets.gone);
    if (!sw)
      return fail(sw.error().code,
                  "switch_in job " + std::to_string(in.id) + ": " + sw.error().message());
    sets.incoming_swapped = std::move(*sw);
  }
  if (out && have_swap && policy != Policy::demand) {
    auto res = resident_part(reversed(out->ws), &sets.gone);
    if (!res)
      return fail(res.error().code, "switch_in: outgoing job " + std::to_string(out->id) + ": " +
                                        res.error().message());
    sets.outgoing_lru = std::move(*res);
  }
  return sets;
}

struct Moved {
  MoveReport out, in;
  uint64_t start_ns = 0, pageout_end_ns = 0, prefetch_end_ns = 0, end_ns = 0;
};

// Page-out and prefetch overlap (zram compresses and decompresses on the CPU: two cores
// do both at once). The prefetch takes batch after batch as the page-out makes room,
// never pushing the node into its limit, where reclaim would evict what was just
// prefetched.
Result<Moved> move_pages(const SwitchPlan& plan, const SwitchSets& sets,
                         const std::optional<kernelside::Group>& node, const SwitchRecord& r) {
  const uint64_t batch = static_cast<uint64_t>(tunable(kPageoutBatch));
  const uint64_t reserve = static_cast<uint64_t>(tunable(kReserve));
  Moved m;
  m.start_ns = monotonic_ns();
  std::atomic<bool> pageout_done{!(plan.pageout_all || plan.pageout_bytes > 0)};
  std::atomic<uint64_t> pageout_end{m.start_ns};
  Result<MoveReport> out_moved = MoveReport{};
  std::thread pager;
  if (!pageout_done) {
    pager = std::thread([&] {
      out_moved = advise(sets.outgoing_lru, Advice::pageout,
                         plan.pageout_all ? UINT64_MAX : plan.pageout_bytes, batch);
      pageout_end = monotonic_ns();
      pageout_done = true;
    });
  }
  Result<MoveReport> in_moved = MoveReport{};
  if (plan.prefetch_bytes > 0) {
    for (const WorkingSet& chunk : split(sets.incoming_swapped, batch, plan.prefetch_bytes)) {
      while (!pageout_done && !room_for(node_free(node), chunk.bytes(), reserve))
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      auto moved = advise(chunk, Advice::willneed, UINT64_MAX, batch);
      if (!moved) {
        in_moved = std::unexpected(moved.error());
        break;
      }
      in_moved->bytes += moved->bytes;
      in_moved->calls += moved->calls;
      in_moved->processes_gone += moved->processes_gone;
    }
  }
  m.prefetch_end_ns = monotonic_ns();
  if (pager.joinable()) pager.join();
  m.end_ns = monotonic_ns();
  m.pageout_end_ns = pageout_end;
  if (!out_moved)
    return fail(out_moved.error().code, "switch_in: page-out of job " + std::to_string(r.out_job) +
                                            ": " + out_moved.error().message());
  if (!in_moved)
    return fail(in_moved.error().code, "switch_in: prefetch of job " + std::to_string(r.in_job) +
                                           ": " + in_moved.error().message());
  m.out = *out_moved;
  m.in = *in_moved;
  return m;
}

// The incoming job resumes: its fault and progress baselines, and (adaptive) what the
// budget left out of the prefetch, for the ticks of its quantum.
void resume(Job& in, const dynamos_ext_subject* s, const SwitchPlan& plan, const SwitchSets& sets,
            const Moved& m, uint64_t record) {
  in.running = true;
  in.resumed_ns = m.end_ns;
  in.majflt_at_resume = major_faults(in.pids);
  in.work_at_resume = attr_number(s, "work");
  in.record = record;
  in.sample = {};
  in.prefetch_rest.clear();
  if (!plan.background_write || m.in.bytes >= sets.incoming_swapped.bytes()) return;
  // Adaptive page-in goes on during the quantum: what the budget left out follows,
  // batch by batch, as background page-out of the outgoing job makes room.
  auto chunks =
      split(sets.incoming_swapped, static_cast<uint64_t>(tunable(kPageoutBatch)), UINT64_MAX);
  std::vector<uint64_t> sizes;
  for (const auto& c : chunks)
    sizes.push_back(c.bytes());
  for (size_t i = chunks_prefetched(sizes, m.in.bytes); i < chunks.size(); ++i)
    in.prefetch_rest.push_back(std::move(chunks[i]));
}

int switch_in(const dynamos_ext_subject* s, dynamos_ext_buffer* report) try {
  std::lock_guard lock(state.mutex);
  auto policy = switch_policy(s);
  if (!policy) return failure(policy.error().message());
  Job& in = job_of(s);
  Job* out = nullptr;
  if (state.has_pending_out && state.pending_out != in.id)
    if (auto it = state.jobs.find(state.pending_out); it != state.jobs.end()) out = &it->second;
  SwitchRecord r = open_record(*policy, in, out, s);

  auto node = node_group(s);
  bool have_swap = node_swap(node);
  if (!have_swap && *policy != Policy::demand) {
    r.warning = std::string("no swap for this node: policy ") + policy_name(*policy) +
                " acts as demand (nothing can be paged out)";
    log(DYNAMOS_LOG_WARNING, r.warning);
  } else if (!in.ws_recorded && *policy == Policy::adaptive) {
    r.warning =
        "no working set recorded yet for job " + std::to_string(in.id) + ": nothing to prefetch";
  }
  auto sets = measure(in, out, have_swap, *policy);
  if (!sets) return failure(sets.error().message());

  PlanInput input;
  input.free_bytes = node_free(node);
  input.incoming_ws_bytes = in.ws.bytes();
  input.incoming_swapped_bytes = sets->incoming_swapped.bytes();
  input.outgoing_resident_bytes = sets->outgoing_lru.bytes();
  input.prefetch_budget = static_cast<uint64_t>(tunable(kPrefetchBudget));
  input.reserve_bytes = static_cast<uint64_t>(tunable(kReserve));
  input.swap = have_swap;
  SwitchPlan plan = plan_switch(*policy, input);
  r.effective = policy_name(plan.effective);
  r.free_bytes = input.free_bytes;

  auto moved = move_pages(plan, *sets, node, r);
  if (!moved) return failure(moved.error().message());
  const uint64_t page = kernelside::page_size();
  r.pages_out = moved->out.bytes / page;
  r.pages_in = moved->in.bytes / page;
  r.pageout_s = seconds_between(moved->start_ns, moved->pageout_end_ns);
  r.prefetch_s = seconds_between(moved->start_ns, moved->prefetch_end_ns);
  r.processes_gone = sets->gone + moved->out.processes_gone + moved->in.processes_gone;
  state.background_job = plan.background_write && out ? out->id : 0;
  state.background_last_ns = moved->end_ns;
  state.background_credit = 0;
  resume(in, s, plan, *sets, *moved, r.number);
  r.switch_s = seconds_between(r.start_ns, moved->end_ns);
  if (state.history.size() >= kHistory) state.history.pop_front();
  state.history.push_back(r);
  return append(report, to_json(r));
} catch (const std::exception& e) {
  return failure(std::string("switch_in: ") + e.what());
}

int tick(const dynamos_ext_subject* s, dynamos_ext_buffer* report) try {
  std::lock_guard lock(state.mutex);
  if (s->kind == DYNAMOS_SUBJECT_NODE) return append(report, std::string("{}"));
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
    state.background_credit = accrue_credit(state.background_credit, static_cast<uint64_t>(rate),
                                            now - state.background_last_ns);
    state.background_last_ns = now;
    uint64_t batch = static_cast<uint64_t>(tunable(kPageoutBatch));
    uint64_t chunk = background_chunk(batch);
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
      state.background_credit = cap_credit(state.background_credit, batch);
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
      if (!room_for(free, still->bytes(), reserve)) break;
      if (auto m = advise(*still, Advice::willneed, UINT64_MAX, still->bytes() + 1)) {
        prefetched += m->bytes;
        free -= std::min(free, m->bytes);
      }
      job.prefetch_rest.pop_front();
    }
    if (r) r->background_pages_in += prefetched / kernelside::page_size();
  }
  return append(report, {{"job", job.id},
                         {"sampled", sampled},
                         {"background_pages_out", written / kernelside::page_size()},
                         {"background_pages_in", prefetched / kernelside::page_size()}});
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
    auto jobs = nlohmann::ordered_json::array();
    for (const auto& [id, job] : state.jobs)
      jobs.push_back({{"id", id},
                      {"name", job.name},
                      {"processes", job.pids.size()},
                      {"running", job.running},
                      {"ws_recorded", job.ws_recorded},
                      {"ws_pages", job.ws.pages()}});
    return append(
        reply,
        {{"swap", swap && swap->present}, {"switches", state.switches}, {"jobs", std::move(jobs)}});
  }
  return failure("unknown operation '" + o + "' (switches, last, status)");
} catch (const std::exception& e) {
  return failure(std::string("call: ") + e.what());
}

int on_tunable(uint32_t, const dynamos_tunable_value*) {
  return 0;
}

const dynamos_extension kDescriptor = DYNAMOS_EXTENSION_DESCRIPTOR(
    "paging", "1.0.0", "adaptive paging at gang switches: demand, selective, aggressive, adaptive",
    kTunables, kTunableCount, switch_out, switch_in);

}  // namespace

DYNAMOS_EXTENSION_DEFINE(kDescriptor)
