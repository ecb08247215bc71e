#include "kernelside/sched.hpp"

#include <sched.h>
#include <sys/resource.h>

#include <array>
#include <set>

#include "kernelside/procfs.hpp"
#include "kernelside/topology.hpp"

namespace dynamos::kernelside {

namespace {
// Name and kernel constant of each Policy, in the order of enum class Policy.
struct PolicyInfo {
  const char* name;
  int native;
};
constexpr std::array<PolicyInfo, 3> kPolicies = {{
    {"SCHED_OTHER", SCHED_OTHER},
    {"SCHED_BATCH", SCHED_BATCH},
    {"SCHED_IDLE", SCHED_IDLE},
}};

const PolicyInfo* policy_info(Policy p) {
  auto i = static_cast<size_t>(p);
  return i < kPolicies.size() ? &kPolicies[i] : nullptr;
}

int native(Policy p) {
  const PolicyInfo* info = policy_info(p);
  return info ? info->native : SCHED_OTHER;
}
}  // namespace

const char* policy_name(Policy p) {
  const PolicyInfo* info = policy_info(p);
  return info ? info->name : "?";
}

Result<void> set_thread_policy(pid_t tid, Policy policy) {
  sched_param param{};
  if (::sched_setscheduler(tid, native(policy), &param) != 0)
    return fail_errno(std::string("sched_setscheduler ") + policy_name(policy) + " tid " +
                      std::to_string(tid));
  return {};
}

Result<void> set_thread_nice(pid_t tid, int nice) {
  if (nice < -20 || nice > 19)
    return fail(Errc::invalid_argument, "nice " + std::to_string(nice) + " out of range -20..19");
  // On Linux PRIO_PROCESS with a thread id acts on that one thread.
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), nice) != 0)
    return fail_errno("setpriority nice " + std::to_string(nice) + " tid " + std::to_string(tid));
  return {};
}

Result<ThreadSched> thread_sched(pid_t tid) {
  int p = ::sched_getscheduler(tid);
  if (p < 0) return fail_errno("sched_getscheduler tid " + std::to_string(tid));
  ThreadSched s;
  p &= ~SCHED_RESET_ON_FORK;
  if (p == SCHED_BATCH)
    s.policy = Policy::batch;
  else if (p == SCHED_IDLE)
    s.policy = Policy::idle;
  else if (p == SCHED_OTHER)
    s.policy = Policy::other;
  else
    return fail(Errc::unsupported, "tid " + std::to_string(tid) + " runs a real-time policy (" +
                                       std::to_string(p) + ")");
  errno = 0;
  int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  if (nice == -1 && errno != 0) return fail_errno("getpriority tid " + std::to_string(tid));
  s.nice = nice;
  return s;
}

Result<ProcessSchedReport> set_process_policy(pid_t pid, Policy policy, std::optional<int> nice) {
  ProcessSchedReport report;
  std::set<pid_t> done;
  for (;;) {
    auto tids = list_threads(pid);
    if (!tids) return std::unexpected(tids.error());
    bool new_thread = false;
    for (pid_t tid : *tids) {
      if (done.contains(tid)) continue;
      new_thread = true;
      done.insert(tid);
      auto r = set_thread_policy(tid, policy);
      if (r && nice) r = set_thread_nice(tid, *nice);
      if (!r) {
        if (r.error().sys_errno == ESRCH) {
          ++report.threads_gone;
          continue;
        }
        return std::unexpected(with_context(r.error(), "set policy of pid " + std::to_string(pid)));
      }
      ++report.threads_set;
    }
    if (!new_thread) return report;
  }
}

Result<void> set_thread_affinity(pid_t tid, const std::string& cpu_list) {
  auto cpus = parse_cpu_list(cpu_list);
  if (!cpus) return std::unexpected(cpus.error());
  cpu_set_t set;
  CPU_ZERO(&set);
  for (unsigned c : *cpus) {
    if (c >= CPU_SETSIZE)
      return fail(Errc::invalid_argument, "cpu " + std::to_string(c) + " beyond CPU_SETSIZE");
    CPU_SET(c, &set);
  }
  if (::sched_setaffinity(tid, sizeof set, &set) != 0)
    return fail_errno("sched_setaffinity " + cpu_list + " tid " + std::to_string(tid));
  return {};
}

}  // namespace dynamos::kernelside
