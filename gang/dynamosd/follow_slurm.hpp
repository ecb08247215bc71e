// dynamosd --follow slurm: a site service on each node of a Slurm cluster that keeps
// Slurm's own gang scheduler (PreemptMode=GANG) and adds DynAMOS's paging at its
// switches. No gangd, no cgroups of its own: Slurm suspends and resumes the jobs;
// dynamosd watches and pages.
//
//   every --follow-rescan (250 ms): the jobs on this node (their slurmstepd's
//     descendants, follow_scan.hpp) and the SPANK plugin's records (--follow-dir):
//     a job's paging policy (demand when it gave none) and guest flag; guest jobs'
//     threads get SCHED_IDLE (the cycle-stealing guest class without a cgroup)
//   every --follow-poll (10 ms): each job's processes' states. All stopped (Slurm's
//     SIGTSTP/SIGSTOP without cgroups, as on the test bed) or in a frozen freezer cgroup
//     (proctrack/cgroup, v1 or v2): the job was suspended -> the paging extension's switch_out
//     (records its working set). Running again: resumed -> switch_in with the job's
//     policy (page-out of the suspended job as far as the policy says, prefetch of
//     the resumed one's working set). Slurm may resume the incoming job a poll before
//     the outgoing one stops: a resume waits (--follow-settle, 100 ms at most) until no
//     other job runs, so that its switch_in knows the outgoing job
//   every --tick (100 ms, its own thread): the extension's tick on the running jobs
//     (background write-out of the suspended job's dirty pages, working-set samples)
//
// Each switch is a JSON line in --follow-log: time (Unix seconds), job, event
// (suspend, resume, adopt-suspended, end), policy, processes, detect_ms (the time since
// the last poll that still saw the old state: the detection latency is at most this),
// poll_ms (the cost of that poll), settle_ms (how long a resume waited for the outgoing
// job), queue_ms (how long it waited behind earlier events' hooks), hook_ms (the
// extension's call), paging (its report), error. The hooks run on a thread of their own,
// in order, so a long page-out never delays the detection of the next suspend.
//
// dynamosd never stops or freezes a Slurm job, so whatever happens to it no job stays
// stopped that Slurm resumed. Restarted, it adopts every job where it is: a job found
// suspended gets its working set recorded (event adopt-suspended) and its next resume
// is paged in with its policy (the records live in --follow-dir, not in dynamosd).
#pragma once

#include <boost/program_options.hpp>
#include <string>

#include "core/extension_host.hpp"

namespace dynamos::gang::follow {

// The options of follow mode, added to dynamosd's.
void add_options(boost::program_options::options_description& opts);

// Runs follow mode until SIGTERM/SIGINT; the exit status. `paging` is the name of the
// loaded paging extension ("" when none: switches are recorded without paging).
int run(const boost::program_options::variables_map& vm, core::ExtensionHost* host,
        const std::string& paging);

}  // namespace dynamos::gang::follow
