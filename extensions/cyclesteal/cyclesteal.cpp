// The cycle-stealing extension: the ABI boundary (descriptor, tunables, hooks) and the
// per-sample control loop. Guests are attached with kind GUEST, host jobs with kind JOB;
// tick(node) samples host activity at most once per `interval` and reacts according to
// the policy; call("report") returns the figures (report.cpp). The state handed over at
// an upgrade in place is handover.cpp's. See docs/cyclesteal.md.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "base/file.hpp"
#include "core/extension_abi.h"
#include "extensions/cyclesteal/ext_state.hpp"
#include "extensions/cyclesteal/guest_class.hpp"
#include "extensions/cyclesteal/host_monitor.hpp"
#include "extensions/cyclesteal/policy.hpp"
#include "extensions/extension_glue.hpp"
#include "kernelside/memory.hpp"
#include "kernelside/procfs.hpp"

namespace dynamos::cyclesteal::ext {

State* state = nullptr;

namespace {

const dynamos_tunable kTunables[TUNABLE_COUNT] = {
    {"policy", DYNAMOS_TUNABLE_ENUM, DYNAMOS_TUNABLE_RUNTIME, "linger", nullptr, nullptr,
     kPolicyNames,
     "linger: guests run at idle priority; pause: frozen while the host is busy; evict: killed "
     "when the host turns busy; off: released"},
    {"interval", DYNAMOS_TUNABLE_DURATION, DYNAMOS_TUNABLE_RUNTIME, "100ms", "10ms", "10s", nullptr,
     "how often tick(node) samples host activity"},
    {"busy_threshold", DYNAMOS_TUNABLE_FLOAT, DYNAMOS_TUNABLE_RUNTIME, "0.3", "0.01", "1", nullptr,
     "host CPU use, as a share of the node's CPUs, above which the host counts as busy"},
    {"idle_period", DYNAMOS_TUNABLE_DURATION, DYNAMOS_TUNABLE_RUNTIME, "1s", "0s", "1h", nullptr,
     "how long the host must stay below busy_threshold before paused guests thaw (pause) or "
     "new guests are admitted (evict)"},
    {"headroom", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "256M", "0", "1T", nullptr,
     "memory kept free above the host's working set: guests get node memory - host - headroom"},
    {"guest_floor", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "64M", "4K", "1T", nullptr,
     "the guests' memory bound never goes below this (bytes)"},
    {"node_memory", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "0", "0", "64T", nullptr,
     "memory of the node shared by host and guests; 0 = MemTotal"},
    {"psi_threshold", DYNAMOS_TUNABLE_FLOAT, DYNAMOS_TUNABLE_RUNTIME, "0.05", "0", "1", nullptr,
     "memory PSI (share of an interval with some task waiting on memory) above which the "
     "guests shrink by headroom at once"},
    {"host_weight", DYNAMOS_TUNABLE_INTEGER, DYNAMOS_TUNABLE_RUNTIME, "10000", "0", "10000",
     nullptr,
     "CPU weight (1..10000, as cgroup v2 cpu.weight) given to host job groups beside the guest "
     "class while it has guests, so that the scheduler rarely picks an idle-class guest over "
     "a runnable host thread; 0 = leave host jobs' weight alone"},
};

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

void record(Reaction r) {
  KindStats& k = state->kinds[r.kind];
  ++k.count;
  k.latencies.push_back(r.latency_ms);
  if (k.latencies.size() > 256) k.latencies.erase(k.latencies.begin());
  state->recent.push_back(r);
  if (state->recent.size() > 32) state->recent.pop_front();
}

// The guest class exists while some guest is managed under a policy other than off.
Result<void> ensure_class() {
  if (state->cls) return {};
  // Recorded first (as not created by us, so that a restore never removes a group the
  // extension did not make), then made, then recorded as it is.
  if (state->records) {
    Records before{state->boosted, state->class_path, false};
    if (auto r = state->records->write(before); !r)
      return std::unexpected(with_context(r.error(), "record the guest class before making it"));
  } else {
    return fail(Errc::unsupported, "no record file for the guest class: " + state->records_error);
  }
  auto c = GuestClass::create(*state->layout, state->class_path, state->force_sched_idle);
  if (!c) return std::unexpected(c.error());
  state->cls.emplace(std::move(*c));
  if (auto r = persist(state->boosted); !r)
    note_error("record the guest class: " + r.error().message());
  auto usage = state->cls->cpu_usage_ns();
  state->last_guest_cpu_ns = usage ? *usage : 0;
  return {};
}

void sync_host_weights(unsigned target);

// Everything back as it was: guests running, unbounded, in their own cgroups, and host
// jobs at their own CPU weight.
Result<void> release_class() {
  if (!state->cls) return {};
  for (auto& [id, g] : state->guests)
    if (auto p = state->cls->pids(id)) g.pids = *p;  // forks included, for re-adoption
  auto r = state->cls->release_all();
  state->cls.reset();
  sync_host_weights(0);
  return r;
}

Result<void> adopt(uint64_t id, GuestInfo& g, const std::string& own_cgroup) {
  if (auto r = ensure_class(); !r) return r;
  std::vector<pid_t> alive;
  for (pid_t p : g.pids)
    if (::kill(p, 0) == 0) alive.push_back(p);
  return state->cls->add(id, own_cgroup, alive);
}

Result<void> apply_policy(Policy p) {
  Policy old = state->policy;
  state->policy = p;
  if (p == Policy::off) return release_class();
  if (old == Policy::off)
    for (auto& [id, g] : state->guests)
      if (auto r = adopt(id, g, ""); !r) return r;
  state->admit = true;
  return {};
}

void reset_totals() {
  // A fresh start: the next sample opens a new interval, and the reaction latencies
  // never span the pause before the reset.
  state->last_sample.reset();
  state->monitor->restart();
  state->samples = 0;
  state->host_cpu_s = state->guest_cpu_s = state->idle_cpu_s = state->wall_s = 0;
  state->host_cpu_guest_s = state->host_wait_guest_s = 0;
  state->pages_out = state->short_of_bound = state->killed = 0;
  state->recent.clear();
  state->kinds.clear();
  state->errors.clear();
}

uint64_t node_memory() {
  int64_t v = tunable(NODE_MEMORY);
  if (v > 0) return static_cast<uint64_t>(v);
  auto m = kernelside::read_meminfo();
  return m ? (*m)["MemTotal"] : 0;
}

// The directory part of a relative cgroup path ("" at the root).
std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

// Host jobs' CPU weight against the guest class. An idle-class entity (weight 3) is
// still picked now and then: EEVDF runs it once its virtual deadline, which lies
// 1024/3 slices ahead, comes before the host's, and then for up to a tick. How often
// that happens scales with the host's weight, so host job groups that compete with the
// class directly (its siblings) get host_weight while the class has guests; everything
// goes back as it was when the class goes, the job detaches, or host_weight is 0.
// Called with the lock held.
void sync_host_weights(unsigned target) {
  std::map<std::string, unsigned> want;  // path -> weight to hold
  if (target > 0 && state->cls && state->policy != Policy::off)
    for (auto& j : state->monitor->records())
      if (!j.cgroup.empty() && parent_of(j.cgroup) == parent_of(state->cls->path()))
        want[j.cgroup] = target;
  auto open = [](const std::string& path) {
    return kernelside::Group::open(*state->layout, path, {kernelside::Controller::cpu});
  };
  bool restored = false;
  for (auto it = state->boosted.begin(); it != state->boosted.end();) {
    if (want.contains(it->first)) {
      ++it;
      continue;
    }
    if (auto g = open(it->first)) {  // a job group that is gone has nothing to restore
      if (auto r = g->set_cpu_weight(it->second); !r)
        note_error("restore the CPU weight of host job group " + it->first + ": " +
                   r.error().message());
    }
    it = state->boosted.erase(it);
    restored = true;
  }
  if (restored)
    if (auto r = persist(state->boosted); !r)
      note_error("record the weights: " + r.error().message());
  for (auto& [path, weight] : want) {
    if (state->boosted.contains(path) && state->boosted_to == weight) continue;  // holds it
    auto g = open(path);
    if (!g) continue;  // no cpu controller there: nothing to weigh
    auto now = g->cpu_weight();
    if (!now) continue;
    if (*now == weight) continue;
    if (!state->boosted.contains(path)) {
      // The original weight (the first seen) is recorded before the raise: a crash after
      // it leaves the record, and the next load gives the weight back (records.hpp).
      auto next = state->boosted;
      next.emplace(path, *now);
      if (auto r = persist(next); !r) {
        note_error("record the CPU weight of host job group " + path +
                   " before raising it (left as it is): " + r.error().message());
        continue;
      }
      state->boosted.emplace(path, *now);
    }
    if (auto r = g->set_cpu_weight(weight); !r) {
      note_error("raise the CPU weight of host job group " + path + ": " + r.error().message());
      continue;  // recorded: given back like the others
    }
  }
  state->boosted_to = target;
}

// Whether some guest is in the class and not frozen: running as far as the policy goes,
// even when its idle priority leaves it no CPU time on a busy node.
bool guests_running() {
  if (!state->cls) return false;
  for (const auto& [id, g] : state->guests)
    if (state->cls->has(id) && !state->cls->frozen(id)) return true;
  return false;
}

// One sample and the reactions to it. Called with the lock held.
Json sample_and_react() {
  auto start = Clock::now();
  auto prev = state->last_sample;
  uint64_t guest_cpu = 0, guest_mem = 0;
  if (state->cls) {
    if (auto u = state->cls->cpu_usage_ns()) guest_cpu = *u;
    if (auto m = state->cls->memory_bytes()) guest_mem = *m;
  }
  auto reading = state->monitor->read(guest_cpu, guest_mem);
  if (!reading) {
    note_error("sample host activity: " + reading.error().message());
    return Json{{"error", reading.error().message()}};
  }
  state->last_sample = start;
  state->last = *reading;
  double interval_s = std::chrono::duration<double>(reading->interval).count();
  double host_s = std::chrono::duration<double>(reading->host_cpu).count();
  double guest_s = guest_cpu > state->last_guest_cpu_ns
                       ? static_cast<double>(guest_cpu - state->last_guest_cpu_ns) * 1e-9
                       : 0;
  state->last_guest_cpu_ns = guest_cpu;
  if (interval_s > 0) {
    ++state->samples;
    state->wall_s += interval_s;
    state->host_cpu_s += host_s;
    state->guest_cpu_s += guest_s;
    state->idle_cpu_s += std::max(0.0, interval_s * state->monitor->cpus() - host_s);
    if (guest_s > 0 || guests_running()) {
      state->host_cpu_guest_s += host_s;
      state->host_wait_guest_s += std::chrono::duration<double>(reading->host_wait).count();
    }
  }

  ActivityRules rules{tunable_f(BUSY_THRESHOLD), std::chrono::nanoseconds(tunable(IDLE_PERIOD))};
  auto verdict = state->activity.update({reading->cpu_busy, reading->memory_psi}, start, rules);
  state->admit = verdict.settled;
  // How long the change may have gone unseen: since the previous sample (at most two
  // intervals: a longer gap means nobody ticked, not that the change was seen late).
  double interval_ms = static_cast<double>(tunable(INTERVAL)) * 1e-6;
  double detect_ms =
      prev ? std::min(2 * interval_ms,
                      std::chrono::duration<double, std::milli>(start - *prev).count())
           : 0;

  Json out = {{"host_busy", reading->cpu_busy}, {"busy", verdict.busy}};
  Json acts = Json::array();
  if (state->cls) {
    for (uint64_t id : state->cls->ids()) {
      auto it = state->guests.find(id);
      if (it == state->guests.end()) continue;
      Action a = decide(effective(it->second), verdict, state->cls->frozen(id));
      auto t0 = Clock::now();
      Reaction r{nullptr, id, mono_ns(), 0, 0, 0};
      if (a == Action::freeze) {
        if (auto e = state->cls->freeze(id); !e)
          note_error("pause guest: " + e.error().message());
        else
          r.kind = "pause";
      } else if (a == Action::thaw) {
        if (auto e = state->cls->thaw(id); !e)
          note_error("thaw guest: " + e.error().message());
        else
          r.kind = "thaw";
      } else if (a == Action::kill) {
        auto pids = state->cls->pids(id);
        if (pids && !pids->empty()) {
          if (auto k = state->cls->kill(id); !k)
            note_error("evict guest: " + k.error().message());
          else {
            r.kind = "evict";
            state->killed += *k;
          }
        }
      }
      if (r.kind) {
        r.act_ms = ms_since(t0);
        // A thaw is due after the idle period by design; its latency is the act alone.
        r.latency_ms = r.act_ms + (a == Action::thaw ? 0 : detect_ms);
        record(r);
        acts.push_back({{"kind", r.kind}, {"guest", r.guest}, {"latency_ms", r.latency_ms}});
      }
    }

    // The memory bound follows the host's working set, at once when it shrinks.
    uint64_t node = node_memory();
    uint64_t headroom = static_cast<uint64_t>(tunable(HEADROOM));
    uint64_t floor = static_cast<uint64_t>(tunable(GUEST_FLOOR));
    uint64_t bound = guest_memory_bound(node, reading->host_memory, headroom, floor);
    if (reading->memory_psi > tunable_f(PSI_THRESHOLD) && guest_mem > floor + headroom)
      bound = std::min(bound, guest_mem - headroom);
    auto current = state->cls->bound();
    bool shrink = current && bound < *current;
    if (!current || shrink || bound > *current + headroom / 4 + kernelside::page_size()) {
      auto t0 = Clock::now();
      auto s = state->cls->set_bound(bound);
      if (!s) {
        note_error("bound the guests' memory to " + std::to_string(bound) +
                   " bytes: " + s.error().message());
      } else {
        uint64_t pages = s->paged_out / kernelside::page_size();
        state->pages_out += pages;
        if (s->short_of_bound) ++state->short_of_bound;
        if (s->before > bound) {  // the guests had to give memory back
          double act = ms_since(t0);
          record({"shrink", 0, mono_ns(), act + detect_ms, act, pages});
        }
      }
    }
    if (auto n = state->cls->enforce_sched_idle(); !n) note_error(n.error().message());
    state->cls->finish_freezing();
    if (state->cls->bound()) out["guest_bound"] = *state->cls->bound();
  }
  sync_host_weights(static_cast<unsigned>(tunable(HOST_WEIGHT)));
  out["reactions"] = std::move(acts);
  return out;
}

std::string attr(const dynamos_ext_subject* s, std::string_view key) {
  for (size_t i = 0; i < s->attr_count; ++i)
    if (key == s->attrs[i].key) return s->attrs[i].value;
  return {};
}

// ---- hooks ----

// Gives back what processes that are gone left changed (records.hpp), and opens this
// process's record file.
void open_records(State& st) {
  auto say = [&](int level, const std::string& line) {
    st.host->log(st.host, level, line.c_str());
  };
  auto dir = make_run_dir("cyclesteal");
  if (!dir) {
    st.records_error = dir.error().message();
    say(DYNAMOS_LOG_WARNING,
        "no record directory: host weights stay as they are and no guest "
        "class is made: " +
            st.records_error);
    return;
  }
  RestoreReport rep = restore_orphans(*st.layout, *dir);
  for (auto& line : rep.restored)
    say(DYNAMOS_LOG_INFO, "left by a process that is gone, restored: " + line);
  for (auto& line : rep.dropped)
    say(DYNAMOS_LOG_INFO, "left by a process that is gone, no longer there: " + line);
  for (auto& line : rep.errors)
    say(DYNAMOS_LOG_WARNING, "restore: " + line);
  auto file = RecordFile::in(*dir);
  if (!file) {
    st.records_error = file.error().message();
    return;
  }
  st.records.emplace(std::move(*file));
}

int init(const dynamos_ext_host* host) {
  try {
    auto st = std::make_unique<State>();
    st->host = host;
    auto layout = kernelside::Layout::detect();
    if (!layout) {
      host->set_error(host, ("detect the cgroup layout: " + layout.error().message()).c_str());
      return 1;
    }
    st->layout.emplace(std::move(*layout));
    auto mon = HostMonitor::create(*st->layout);
    if (!mon) {
      host->set_error(host, mon.error().message().c_str());
      return 1;
    }
    st->monitor.emplace(std::move(*mon));
    open_records(*st);
    st->class_path = "dynamos-guests-" + std::to_string(getpid());
    st->policy = static_cast<Policy>(host->get_integer(host, POLICY));
    state = st.release();
    return 0;
  } catch (const std::exception& e) {
    host->set_error(host, e.what());
    return 1;
  }
}

void fini(uint32_t reason) {
  if (!state) return;
  if (reason == DYNAMOS_FINI_UNLOAD) {
    std::lock_guard lock(state->mu);
    if (auto r = release_class(); !r)
      log(DYNAMOS_LOG_ERROR, "release the guests at unload: " + r.error().message());
  }
  delete state;
  state = nullptr;
}

int on_tunable(uint32_t index, const dynamos_tunable_value* value) {
  try {
    std::lock_guard lock(state->mu);
    if (index == POLICY) {
      auto r = apply_policy(static_cast<Policy>(value->integer));
      if (!r)
        return refuse("switch to policy " + std::string(value->text) + ": " + r.error().message());
      sync_host_weights(static_cast<unsigned>(tunable(HOST_WEIGHT)));
    }
    if (index == HOST_WEIGHT) sync_host_weights(static_cast<unsigned>(value->integer));
    if (index == NODE_MEMORY && value->integer != 0) {
      uint64_t need = static_cast<uint64_t>(tunable(HEADROOM) + tunable(GUEST_FLOOR));
      if (static_cast<uint64_t>(value->integer) <= need)
        return refuse("node_memory " + std::string(value->text) +
                      " leaves nothing to share: it must exceed headroom + guest_floor (" +
                      std::to_string(need) + " bytes)");
    }
    return 0;
  } catch (const std::exception& e) {
    return refuse(e.what());
  }
}

int attach(const dynamos_ext_subject* s, dynamos_ext_buffer* report) {
  try {
    std::lock_guard lock(state->mu);
    std::vector<pid_t> pids(s->pids, s->pids + s->pid_count);
    std::string what = (s->kind == DYNAMOS_SUBJECT_GUEST ? "attach guest " : "attach host job ") +
                       std::to_string(s->id);
    if (s->kind == DYNAMOS_SUBJECT_JOB) {
      auto r = state->monitor->add(s->id, s->cgroup, pids);
      if (!r) return refuse(what + ": " + r.error().message());
      sync_host_weights(static_cast<unsigned>(tunable(HOST_WEIGHT)));
      return append(report, Json{{"host_job", s->id}});
    }
    if (s->kind != DYNAMOS_SUBJECT_GUEST)
      return refuse(what + ": only guests and host jobs attach");
    if (state->guests.contains(s->id)) return refuse(what + ": attached already");
    GuestInfo g{s->name, std::nullopt, pids};
    if (s->policy && *s->policy) {
      auto p = parse_policy(s->policy);
      if (!p || *p == Policy::off)
        return refuse(what + ": unknown guest policy '" + s->policy +
                      "' (linger, pause or evict; detach a guest to let it go)");
      g.policy = p;
    }
    if (std::string c = attr(s, "class"); !c.empty()) {
      if (state->cls && state->cls->path() != c)
        return refuse(what + ": the guest class is " + state->cls->path() + " already, not " + c);
      state->class_path = c;
    }
    if (std::string prio = attr(s, "cpu_priority"); !prio.empty()) {
      if (prio != "cpu.idle" && prio != "SCHED_IDLE")
        return refuse(what + ": unknown cpu_priority '" + prio + "' (cpu.idle or SCHED_IDLE)");
      bool force = prio == "SCHED_IDLE";
      if (state->cls && force != (state->cls->priority() == CpuPriority::sched_idle))
        return refuse(what + ": the guest class runs at " +
                      cpu_priority_name(state->cls->priority()) + " already");
      state->force_sched_idle = force;
    }
    if (state->policy != Policy::off) {
      if (auto r = adopt(s->id, g, s->cgroup); !r) return refuse(what + ": " + r.error().message());
    }
    auto [it, ok] = state->guests.emplace(s->id, std::move(g));
    sync_host_weights(static_cast<unsigned>(tunable(HOST_WEIGHT)));
    return append(report, Json{{"guest", s->id},
                               {"policy", policy_name(effective(it->second))},
                               {"managed", state->cls && state->cls->has(s->id)},
                               {"cpu_priority",
                                state->cls ? cpu_priority_name(state->cls->priority()) : "none"}});
  } catch (const std::exception& e) {
    return refuse(e.what());
  }
}

int detach(const dynamos_ext_subject* s, dynamos_ext_buffer* report) {
  try {
    std::lock_guard lock(state->mu);
    if (s->kind == DYNAMOS_SUBJECT_JOB) {
      state->monitor->remove(s->id);
      sync_host_weights(static_cast<unsigned>(tunable(HOST_WEIGHT)));
      return append(report, Json{{"host_job", s->id}});
    }
    auto it = state->guests.find(s->id);
    if (it == state->guests.end())
      return refuse("detach guest " + std::to_string(s->id) + ": not attached");
    if (state->cls && state->cls->has(s->id)) {
      if (auto r = state->cls->release(s->id); !r)
        return refuse("detach guest " + std::to_string(s->id) + ": " + r.error().message());
    }
    state->guests.erase(it);
    if (state->guests.empty()) {
      if (auto r = release_class(); !r)
        return refuse("remove the guest class: " + r.error().message());
    }
    return append(report, Json{{"guest", s->id}, {"released", true}});
  } catch (const std::exception& e) {
    return refuse(e.what());
  }
}

int tick(const dynamos_ext_subject*, dynamos_ext_buffer* report) {
  try {
    std::lock_guard lock(state->mu);
    if (state->policy == Policy::off && !state->cls) return append(report, Json{{"policy", "off"}});
    auto interval = std::chrono::nanoseconds(tunable(INTERVAL));
    // Ticks may come faster than the interval; sample at most once per interval (with
    // a little slack for timer jitter).
    if (state->last_sample && Clock::now() - *state->last_sample < interval * 9 / 10)
      return append(report, Json{{"sampled", false}});
    return append(report, sample_and_react());
  } catch (const std::exception& e) {
    return refuse(e.what());
  }
}

int call(const char* op, const char* args, dynamos_ext_buffer* reply) {
  try {
    std::lock_guard lock(state->mu);
    std::string o = op;
    if (o == "report") return append(reply, report_json());
    if (o == "sample") return append(reply, sample_and_react());
    if (o == "reset") {
      reset_totals();
      return append(reply, Json{{"reset", true}});
    }
    if (o == "status")
      return append(reply, Json{{"policy", policy_name(state->policy)},
                                {"host_is_busy", state->activity.busy()},
                                {"admit", state->admit},
                                {"guests", state->guests.size()}});
    (void)args;
    return refuse("call " + o + ": unknown operation (report, status, sample, reset)");
  } catch (const std::exception& e) {
    return refuse(e.what());
  }
}

const dynamos_extension kDescriptor = DYNAMOS_EXTENSION_DESCRIPTOR(
    "cyclesteal", "1.0.0",
    "cycle stealing: guests at idle priority, memory bounded by the host's working set", kTunables,
    TUNABLE_COUNT, nullptr, nullptr);

}  // namespace
}  // namespace dynamos::cyclesteal::ext

DYNAMOS_EXTENSION_DEFINE(dynamos::cyclesteal::ext::kDescriptor)
