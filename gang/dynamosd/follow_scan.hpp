// What dynamosd in follow mode (`--follow slurm`, follow_slurm.hpp) reads: the job
// records dynamos_spank.so writes (gang/slurm/spank/), and the processes of each
// Slurm job on this node, found from its slurmstepd processes.
//
// Everything here is read as root from places a user may influence, so each read is
// checked: a record must be a regular file owned by root and writable by nobody else,
// in a root-owned directory writable by nobody else, opened with O_NOFOLLOW, at most
// 4 KiB, with known keys and a job id that matches its name; a slurmstepd counts only
// when /proc/PID/exe is the slurmstepd program and the process runs as root (a user's
// process that calls itself "slurmstepd: [42.0]" is not one).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "kernelside/cgroup.hpp"

namespace dynamos::gang::follow {

// A job's choice, as the SPANK plugin recorded it.
struct JobRecord {
  std::uint64_t job = 0;
  std::uint32_t uid = 0;
  std::string paging = "demand";  // demand, selective, aggressive, adaptive
  bool guest = false;
};

// "job=42\nuid=1000\npaging=adaptive\nguest=0\n" named `name` ("42").
Result<JobRecord> parse_record(std::string_view name, std::string_view text);

// Every record in `dir` (names that are not job ids are skipped). A bad record is
// reported in `bad` (name -> why) and left out; an unusable directory is an error.
// A directory that does not exist yet gives no records.
Result<std::map<std::uint64_t, JobRecord>> read_records(
    const std::string& dir, std::map<std::string, std::string>* bad = nullptr);

// "slurmstepd: [42.0]" or "slurmstepd: [42.batch]" (the cmdline, NULs as spaces) -> 42.
std::optional<std::uint64_t> parse_stepd_cmdline(std::string_view cmdline);

// One process of /proc: its parent and state (the letter of /proc/PID/stat).
struct ProcEntry {
  pid_t ppid = 0;
  char state = '?';
};

// The Slurm jobs of this node and their processes (every descendant of the job's
// slurmstepd processes, which themselves are left out), from one walk of /proc.
// `slurmstepd` is the program a slurmstepd must run (/proc/PID/exe).
struct JobProcesses {
  std::map<std::uint64_t, std::vector<pid_t>> jobs;
  std::size_t processes_seen = 0;
};
JobProcesses scan_jobs(const std::string& slurmstepd);

// The freezer cgroups of a node's job processes: with proctrack/cgroup Slurm suspends a
// job by freezing its cgroup (v1 freezer.state FROZEN, v2 cgroup.events frozen 1; the
// tasks then show state D, not T). learn() at each rescan; processes in the root cgroup
// are left out (nobody freezes it).
class Freezers {
 public:
  Freezers();  // detects the cgroup layout; without one, nothing is ever frozen
  void learn(const std::vector<pid_t>& pids);
  void forget_all() { group_of_.clear(); }
  // Whether the process's freezer cgroup is frozen; `cache` holds the answers of one poll.
  bool frozen(pid_t pid, std::map<std::string, bool>& cache) const;
  // The memory cgroup of a process, relative to the hierarchy's root ("" for the root):
  // the node's memory the paging extension plans with (the test bed's --limit-memory
  // group, or the Slurm job's own cgroup; an unlimited one counts the machine's memory).
  std::string memory_cgroup(pid_t pid) const;

 private:
  std::optional<kernelside::Layout> layout_;
  std::map<pid_t, std::string> group_of_;  // pid -> its freezer cgroup's path
};

// Whether the job is suspended: some of its processes stopped (state T: Slurm's suspend
// without cgroups, SIGTSTP then SIGSTOP; or in a frozen freezer cgroup, `freezers` when
// given) and none runnable (R, D). The rest may sleep: mpirun catches Slurm's SIGTSTP,
// passes it to its ranks and waits, so counting only the stopped ones would see the
// suspend 2 s late, at the SIGSTOP. Zombies and processes that have gone do not count;
// with no live process the answer is "not suspended". `live` gets the number of live
// processes.
bool job_suspended(const std::vector<pid_t>& pids, std::size_t* live = nullptr,
                   const Freezers* freezers = nullptr);

}  // namespace dynamos::gang::follow
