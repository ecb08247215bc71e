#include "extensions/cyclesteal/host_monitor.hpp"

#include <unistd.h>

#include "kernelside/memory.hpp"

namespace dynamos::cyclesteal {

using namespace kernelside;

Result<HostMonitor> HostMonitor::create(const Layout& layout) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  HostMonitor m(layout, n > 0 ? static_cast<unsigned>(n) : 1u);
  if (psi_available())
    if (auto s = PressureSampler::open(Resource::memory)) m.psi_.emplace(std::move(*s));
  return m;
}

Result<void> HostMonitor::add(uint64_t id, const std::string& cgroup, std::span<const pid_t> pids) {
  Job job;
  job.cgroup = cgroup;
  if (!cgroup.empty()) {
    auto g = Group::open(layout_, cgroup, {Controller::cpuacct, Controller::memory});
    if (!g) return std::unexpected(with_context(g.error(), "host job " + std::to_string(id)));
    job.group.emplace(std::move(*g));
  }
  job.pids.assign(pids.begin(), pids.end());
  if (!job.group && job.pids.empty())
    return fail(Errc::invalid_argument,
                "host job " + std::to_string(id) + " has neither a cgroup nor processes");
  job_cpu_delta(job);  // start counting now
  jobs_[id] = std::move(job);
  return {};
}

void HostMonitor::remove(uint64_t id) {
  jobs_.erase(id);
}

std::vector<HostMonitor::JobRecord> HostMonitor::records() const {
  std::vector<JobRecord> out;
  for (auto& [id, j] : jobs_)
    out.push_back({id, j.cgroup, j.pids});
  return out;
}

std::vector<Group*> HostMonitor::groups() {
  std::vector<Group*> out;
  for (auto& [id, j] : jobs_)
    if (j.group) out.push_back(&*j.group);
  return out;
}

std::pair<uint64_t, uint64_t> HostMonitor::job_cpu_delta(Job& job) {
  std::vector<pid_t> pids = job.pids;
  if (job.group)
    if (auto p = job.group->pids_recursive()) pids = *p;
  uint64_t cpu = 0, wait = 0;
  auto advance = [](uint64_t now, uint64_t& last) {
    uint64_t d = now > last ? now - last : 0;
    last = now;
    return d;
  };
  // Per thread: /proc/PID/schedstat covers the main thread only.
  for (pid_t pid : pids) {
    auto tids = list_threads(pid);
    if (!tids) continue;  // exited: its time up to the last reading was counted
    for (pid_t tid : *tids) {
      auto s = read_thread_schedstat(pid, tid);
      if (!s) continue;
      cpu += advance(static_cast<uint64_t>(s->on_cpu.count()), job.last_cpu[tid]);
      wait += advance(static_cast<uint64_t>(s->waiting.count()), job.last_wait[tid]);
    }
  }
  if (job.group) {
    // The group's own counter is exact for processes that came and went between readings.
    if (auto u = job.group->cpu_usage()) {
      uint64_t now = static_cast<uint64_t>(u->count());
      cpu = now > job.last_group_cpu ? now - job.last_group_cpu : 0;
      job.last_group_cpu = now;
    }
  }
  return {cpu, wait};
}

uint64_t HostMonitor::job_memory(const Job& job) {
  if (job.group)
    if (auto m = job.group->memory_current()) return *m;
  uint64_t bytes = 0;
  for (pid_t pid : job.pids)
    if (auto s = read_stat(pid)) bytes += s->rss_pages * page_size();
  return bytes;
}

Result<HostReading> HostMonitor::read(uint64_t guest_cpu_ns, uint64_t guest_memory) {
  auto now = std::chrono::steady_clock::now();
  HostReading r;
  r.interval = primed_ ? now - last_ : std::chrono::nanoseconds(0);
  r.system_wide = jobs_.empty();
  uint64_t wait = 0;  // host time runnable but waiting for a CPU (jobs only)
  if (r.system_wide) {
    auto sys = read_system_cpu();
    if (!sys) return std::unexpected(sys.error());
    uint64_t busy = static_cast<uint64_t>((sys->busy() - last_system_.busy()).count());
    uint64_t guest = guest_cpu_ns > last_guest_cpu_ ? guest_cpu_ns - last_guest_cpu_ : 0;
    if (primed_) r.host_cpu = std::chrono::nanoseconds(busy > guest ? busy - guest : 0);
    last_system_ = *sys;
    auto mem = read_meminfo();
    if (!mem) return std::unexpected(mem.error());
    uint64_t used = (*mem)["MemTotal"] - std::min((*mem)["MemTotal"], (*mem)["MemAvailable"]);
    r.host_memory = used > guest_memory ? used - guest_memory : 0;
  } else {
    uint64_t cpu = 0;
    for (auto& [id, job] : jobs_) {
      auto [c, w] = job_cpu_delta(job);
      cpu += c;
      wait += w;
      r.host_memory += job_memory(job);
    }
    r.host_cpu = std::chrono::nanoseconds(primed_ ? cpu : 0);
    if (!primed_) wait = 0;
    r.host_wait = std::chrono::nanoseconds(wait);
  }
  last_guest_cpu_ = guest_cpu_ns;
  if (psi_)
    if (auto s = psi_->sample()) r.memory_psi = s->some;
  if (r.interval.count() > 0)
    r.cpu_busy = static_cast<double>(r.host_cpu.count() + wait) /
                 (static_cast<double>(r.interval.count()) * cpus_);
  last_ = now;
  primed_ = true;
  return r;
}

}  // namespace dynamos::cyclesteal
