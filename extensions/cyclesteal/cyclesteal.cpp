// The cycle-stealing extension: the ABI boundary (descriptor, tunables, hooks) and the
// per-sample control loop. Guests are attached with kind GUEST, host jobs with kind JOB;
// tick(node) samples host activity at most once per `interval` and reacts according to
// the policy; call("report") returns the figures. See docs/cyclesteal.md.
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

#include "core/extension_abi.h"
#include "extensions/cyclesteal/guest_class.hpp"
#include "extensions/cyclesteal/host_monitor.hpp"
#include "extensions/cyclesteal/json.hpp"
#include "extensions/cyclesteal/policy.hpp"
#include "kernelside/memory.hpp"
#include "kernelside/procfs.hpp"

namespace dynamos::cyclesteal {
namespace {

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
  uint64_t last_guest_cpu_ns = 0;  // the class's cumulative usage at the last sample
  uint64_t pages_out = 0, short_of_bound = 0, killed = 0;
  std::deque<Reaction> recent;
  std::map<std::string, KindStats> kinds;
  std::deque<std::string> errors;
  // Host job groups whose CPU weight the extension raised: relative path -> the weight
  // they had before; and the weight they were given.
  std::map<std::string, unsigned> boosted;
  unsigned boosted_to = 0;
};

State* state = nullptr;

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

int64_t tunable(Tunable t) {
  return state->host->get_integer(state->host, t);
}
double tunable_f(Tunable t) {
  return state->host->get_float(state->host, t);
}

void log(int level, const std::string& msg) {
  state->host->log(state->host, level, msg.c_str());
}

void note_error(const std::string& msg) {
  log(DYNAMOS_LOG_WARNING, msg);
  state->errors.push_back(msg);
  if (state->errors.size() > 8) state->errors.pop_front();
}

int refuse(const std::string& msg) {
  state->host->set_error(state->host, msg.c_str());
  return 1;
}

int append(dynamos_ext_buffer* out, const std::string& text) {
  if (!out) return 0;
  return state->host->append(out, text.data(), text.size());
}

void record(Reaction r) {
  KindStats& k = state->kinds[r.kind];
  ++k.count;
  k.latencies.push_back(r.latency_ms);
  if (k.latencies.size() > 256) k.latencies.erase(k.latencies.begin());
  state->recent.push_back(r);
  if (state->recent.size() > 32) state->recent.pop_front();
}

Policy effective(const GuestInfo& g) {
  return g.policy.value_or(state->policy);
}

// The guest class exists while some guest is managed under a policy other than off.
Result<void> ensure_class() {
  if (state->cls) return {};
  auto c = GuestClass::create(*state->layout, state->class_path, state->force_sched_idle);
  if (!c) return std::unexpected(c.error());
  state->cls.emplace(std::move(*c));
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
  }
  for (auto& [path, weight] : want) {
    if (state->boosted.contains(path) && state->boosted_to == weight) continue;  // holds it
    auto g = open(path);
    if (!g) continue;  // no cpu controller there: nothing to weigh
    auto now = g->cpu_weight();
    if (!now) continue;
    if (*now == weight) continue;
    if (auto r = g->set_cpu_weight(weight); !r) {
      note_error("raise the CPU weight of host job group " + path + ": " + r.error().message());
      continue;
    }
    state->boosted.try_emplace(path, *now);  // the first weight seen is the original
  }
  state->boosted_to = target;
}

// One sample and the reactions to it. Called with the lock held.
std::string sample_and_react() {
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
    return JsonObject().add("error", reading.error().message()).str();
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

  JsonObject out;
  out.add("host_busy", reading->cpu_busy).add("busy", verdict.busy);
  std::string acts;
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
        if (!acts.empty()) acts += ',';
        acts += JsonObject()
                    .add("kind", r.kind)
                    .add("guest", r.guest)
                    .add("latency_ms", r.latency_ms)
                    .str();
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
    if (state->cls->bound()) out.add("guest_bound", *state->cls->bound());
  }
  sync_host_weights(static_cast<unsigned>(tunable(HOST_WEIGHT)));
  out.add_raw("reactions", "[" + acts + "]");
  return out.str();
}

std::string stats_json(const KindStats& k) {
  std::vector<double> l = k.latencies;
  std::sort(l.begin(), l.end());
  JsonObject o;
  o.add("count", k.count);
  if (l.empty()) return o.add_null("latency_ms_median").add_null("latency_ms_max").str();
  return o.add("latency_ms_median", l[l.size() / 2]).add("latency_ms_max", l.back()).str();
}

std::string report_json() {
  JsonObject o;
  o.add("policy", policy_name(state->policy));
  o.add("interval_ms", static_cast<double>(tunable(INTERVAL)) * 1e-6);
  o.add("cpu_priority", state->cls ? cpu_priority_name(state->cls->priority()) : "none");
  o.add("guest_class", state->cls ? state->cls->path() : std::string());
  o.add("samples", state->samples).add("wall_s", state->wall_s);
  o.add("host_cpu_s", state->host_cpu_s).add("guest_cpu_s", state->guest_cpu_s);
  o.add("idle_cpu_s", state->idle_cpu_s);
  o.add("guest_idle_share", state->idle_cpu_s > 0 ? state->guest_cpu_s / state->idle_cpu_s : 0.0);
  o.add("host_source", state->monitor->jobs() ? "jobs" : "system");
  o.add("host_jobs_weighted", static_cast<uint64_t>(state->boosted.size()));
  o.add("host_busy", state->last.cpu_busy).add("host_is_busy", state->activity.busy());
  o.add("host_memory_bytes", state->last.host_memory).add("memory_psi", state->last.memory_psi);
  o.add("admit", state->admit);
  std::string guests;
  for (auto& [id, g] : state->guests) {
    JsonObject j;
    j.add("id", id).add("name", g.name).add("policy", policy_name(effective(g)));
    bool managed = state->cls && state->cls->has(id);
    j.add("managed", managed).add("frozen", managed && state->cls->frozen(id));
    size_t n = 0;
    if (managed)
      if (auto p = state->cls->pids(id)) n = p->size();
    j.add("processes", static_cast<uint64_t>(n));
    if (!guests.empty()) guests += ',';
    guests += j.str();
  }
  o.add_raw("guests", "[" + guests + "]");
  uint64_t mem = 0;
  if (state->cls)
    if (auto m = state->cls->memory_bytes()) mem = *m;
  o.add("guest_memory_bytes", mem);
  if (state->cls && state->cls->bound())
    o.add("guest_memory_bound", *state->cls->bound());
  else
    o.add_null("guest_memory_bound");
  o.add("guest_pages_out", state->pages_out).add("bound_shortfalls", state->short_of_bound);
  o.add("processes_evicted", state->killed);
  JsonObject kinds;
  for (const char* k : {"pause", "thaw", "evict", "shrink"})
    kinds.add_raw(k, stats_json(state->kinds[k]));
  o.add_raw("reactions", kinds.str());
  std::string recent;
  for (const Reaction& r : state->recent) {
    if (!recent.empty()) recent += ',';
    recent += JsonObject()
                  .add("kind", r.kind)
                  .add("guest", r.guest)
                  .add("at_ns", r.at_ns)
                  .add("latency_ms", r.latency_ms)
                  .add("act_ms", r.act_ms)
                  .add("pages", r.pages)
                  .str();
  }
  o.add_raw("recent_reactions", "[" + recent + "]");
  std::string errs;
  for (const std::string& e : state->errors) {
    if (!errs.empty()) errs += ',';
    errs += "\"";
    for (char c : e)
      errs += (c == '"' || c == '\\') ? ' ' : c;
    errs += "\"";
  }
  o.add_raw("errors", "[" + errs + "]");
  return o.str();
}

std::string attr(const dynamos_ext_subject* s, std::string_view key) {
  for (size_t i = 0; i < s->attr_count; ++i)
    if (key == s->attrs[i].key) return s->attrs[i].value;
  return {};
}

// ---- state handover (upgrade in place) ----
// Text, one record a line, tagged CYCLESTEAL1. The new build takes over the cgroups,
// frozen guests and bound the old one left; the old build's fini(UPGRADED) leaves them.

constexpr const char* kStateTag = "CYCLESTEAL1";

std::string join_pids(const std::vector<pid_t>& pids) {
  std::string out;
  for (pid_t p : pids)
    out += (out.empty() ? "" : ",") + std::to_string(p);
  return out.empty() ? "-" : out;
}

std::vector<pid_t> split_pids(const std::string& text) {
  std::vector<pid_t> out;
  if (text == "-") return out;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    out.push_back(static_cast<pid_t>(std::stol(item)));
  return out;
}

std::string export_text() {
  std::ostringstream out;
  out << kStateTag << "\n";
  if (state->cls) {
    auto b = state->cls->bound();
    out << "class " << state->cls->created() << " "
        << (state->cls->priority() == CpuPriority::sched_idle) << " "
        << (b ? std::to_string(*b) : "-") << " " << state->cls->path() << "\n";
    for (const GuestRecord& r : state->cls->records()) {
      std::string origin;
      for (auto& [root, rel] : r.origin)
        origin += (origin.empty() ? "" : ";") + root + "=" + rel;
      out << "record " << r.id << " " << r.created << " " << r.frozen << " "
          << (origin.empty() ? "-" : origin) << " " << r.path << "\n";
    }
  }
  out << "path " << state->force_sched_idle << " " << state->class_path << "\n";
  for (auto& [id, g] : state->guests) {
    std::string name = g.name;
    std::replace(name.begin(), name.end(), '\n', ' ');
    out << "guest " << id << " " << (g.policy ? static_cast<int>(*g.policy) : -1) << " "
        << join_pids(g.pids) << " " << name << "\n";
  }
  for (auto& j : state->monitor->records())
    out << "job " << j.id << " " << join_pids(j.pids) << " " << (j.cgroup.empty() ? "-" : j.cgroup)
        << "\n";
  for (auto& [path, weight] : state->boosted)
    out << "boost " << weight << " " << path << "\n";
  out << "totals " << state->samples << " " << state->wall_s << " " << state->host_cpu_s << " "
      << state->guest_cpu_s << " " << state->idle_cpu_s << " " << state->pages_out << " "
      << state->killed << " " << state->short_of_bound << "\n";
  return out.str();
}

Result<void> import_text(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kStateTag)
    return fail(Errc::version_mismatch, "state is not " + std::string(kStateTag) + " (starts '" +
                                            line.substr(0, 16) + "')");
  std::vector<GuestRecord> records;
  std::optional<std::tuple<bool, bool, std::optional<uint64_t>, std::string>> cls;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string kind;
    l >> kind;
    if (kind == "class") {
      int created, sched;
      std::string bound, path;
      l >> created >> sched >> bound >> path;
      cls.emplace(created, sched, bound == "-" ? std::nullopt : std::optional(std::stoull(bound)),
                  path);
    } else if (kind == "record") {
      GuestRecord r;
      int created, frozen;
      std::string origin;
      l >> r.id >> created >> frozen >> origin >> r.path;
      r.created = created;
      r.frozen = frozen;
      if (origin != "-") {
        std::istringstream o(origin);
        std::string kv;
        while (std::getline(o, kv, ';'))
          if (auto eq = kv.find('='); eq != std::string::npos)
            r.origin[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      records.push_back(std::move(r));
    } else if (kind == "path") {
      int force;
      l >> force >> state->class_path;
      state->force_sched_idle = force;
    } else if (kind == "guest") {
      uint64_t id;
      int policy;
      std::string pids, name;
      l >> id >> policy >> pids;
      std::getline(l >> std::ws, name);
      GuestInfo g{name, std::nullopt, split_pids(pids)};
      if (policy >= 0) g.policy = static_cast<Policy>(policy);
      state->guests[id] = std::move(g);
    } else if (kind == "job") {
      uint64_t id;
      std::string pids, cgroup;
      l >> id >> pids >> cgroup;
      auto p = split_pids(pids);
      if (auto r = state->monitor->add(id, cgroup == "-" ? "" : cgroup, p); !r) return r;
    } else if (kind == "boost") {
      unsigned weight;
      std::string path;
      l >> weight >> path;
      state->boosted[path] = weight;
    } else if (kind == "totals") {
      l >> state->samples >> state->wall_s >> state->host_cpu_s >> state->guest_cpu_s >>
          state->idle_cpu_s >> state->pages_out >> state->killed >> state->short_of_bound;
    } else if (!kind.empty()) {
      return fail(Errc::protocol, "unknown state record '" + kind + "'");
    }
  }
  if (cls) {
    auto& [created, sched, bound, path] = *cls;
    auto c = GuestClass::adopt(*state->layout, path, created,
                               sched ? CpuPriority::sched_idle : CpuPriority::cgroup_idle, bound);
    if (!c) return std::unexpected(c.error());
    for (const GuestRecord& r : records)
      if (auto ok = c->restore(r); !ok) return ok;
    state->cls.emplace(std::move(*c));
    if (auto u = state->cls->cpu_usage_ns()) state->last_guest_cpu_ns = *u;
  }
  return {};
}

int export_state(dynamos_ext_buffer* out) {
  try {
    std::lock_guard lock(state->mu);
    return append(out, export_text());
  } catch (const std::exception& e) {
    return refuse(std::string("export the state: ") + e.what());
  }
}

int import_state(const void* data, size_t size) {
  try {
    std::lock_guard lock(state->mu);
    auto r = import_text(std::string(static_cast<const char*>(data), size));
    if (!r) {
      // Refused: the old build keeps serving; forget what was half taken over.
      state->cls.reset();
      state->guests.clear();
      state->boosted.clear();
      for (auto& j : state->monitor->records())
        state->monitor->remove(j.id);
      return refuse("import the state: " + r.error().message());
    }
    return 0;
  } catch (const std::exception& e) {
    state->cls.reset();
    state->guests.clear();
    state->boosted.clear();
    return refuse(std::string("import the state: ") + e.what());
  }
}

// ---- hooks ----

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
      return append(report, JsonObject().add("host_job", s->id).str());
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
    JsonObject o;
    o.add("guest", s->id).add("policy", policy_name(effective(it->second)));
    o.add("managed", state->cls && state->cls->has(s->id));
    o.add("cpu_priority", state->cls ? cpu_priority_name(state->cls->priority()) : "none");
    return append(report, o.str());
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
      return append(report, JsonObject().add("host_job", s->id).str());
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
    return append(report, JsonObject().add("guest", s->id).add("released", true).str());
  } catch (const std::exception& e) {
    return refuse(e.what());
  }
}

int tick(const dynamos_ext_subject*, dynamos_ext_buffer* report) {
  try {
    std::lock_guard lock(state->mu);
    if (state->policy == Policy::off && !state->cls) return append(report, "{\"policy\":\"off\"}");
    auto interval = std::chrono::nanoseconds(tunable(INTERVAL));
    // Ticks may come faster than the interval; sample at most once per interval (with
    // a little slack for timer jitter).
    if (state->last_sample && Clock::now() - *state->last_sample < interval * 9 / 10)
      return append(report, "{\"sampled\":false}");
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
      return append(reply, "{\"reset\":true}");
    }
    if (o == "status")
      return append(reply, JsonObject()
                               .add("policy", policy_name(state->policy))
                               .add("host_is_busy", state->activity.busy())
                               .add("admit", state->admit)
                               .add("guests", static_cast<uint64_t>(state->guests.size()))
                               .str());
    (void)args;
    return refuse("call " + o + ": unknown operation (report, status, sample, reset)");
  } catch (const std::exception& e) {
    return refuse(e.what());
  }
}

const dynamos_extension kDescriptor = {
    .abi = DYNAMOS_EXTENSION_ABI,
    .size = sizeof(dynamos_extension),
    .name = "cyclesteal",
    .version = "1.0.0",
    .description =
        "cycle stealing: guests at idle priority, memory bounded by the host's working set",
    .tunables = kTunables,
    .tunable_count = TUNABLE_COUNT,
    .reserved = 0,
    .init = init,
    .fini = fini,
    .export_state = export_state,
    .import_state = import_state,
    .on_tunable = on_tunable,
    .attach = attach,
    .detach = detach,
    .switch_out = nullptr,
    .switch_in = nullptr,
    .tick = tick,
    .call = call,
};

}  // namespace
}  // namespace dynamos::cyclesteal

DYNAMOS_EXTENSION_DEFINE(dynamos::cyclesteal::kDescriptor)
