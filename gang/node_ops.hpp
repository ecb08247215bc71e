// Operations on a node that the CLI asks for through gangd (NodeCommand), which gangd
// forwards to the node's agent (NodeRequest) once it has checked that the caller may:
//
//   op            args                        who may          what the agent does
//   cyclesteal    on POLICY | off             root             cycle stealing extension
//   guest-run     CWD PROGRAM [ARGS...]       anyone           starts a guest as the caller
//   ext-list      [json|text]                 anyone           extensions and tunables
//   ext-set       EXT.KEY=VALUE               root             sets a tunable
//   ext-upgrade   EXT PATH.so                 root             loads a new build in place
//   job-pids      JOB                         the job's owner  the pids in the job's group
//   patch         JOB [patch options...]      the job's owner  remote update of every rank
//   revert        JOB UPDATE [UPDATE...]      the job's owner  reverts updates of its ranks
//   switches      [N]                         anyone           the last N switches (JSON lines)
//
// An agent answers an op it does not implement with an error naming it.
#pragma once

#include <optional>
#include <string_view>

// The policy names the ops take (cyclesteal on POLICY, a job's paging policy): the
// extensions' tunable choices are the one list (cyclesteal::kPolicyNames,
// paging::kPolicyNames).
#include "extensions/cyclesteal/policy.hpp"
#include "extensions/paging/policy.hpp"

namespace dynamos::gang::ops {

inline constexpr std::string_view cyclesteal = "cyclesteal";
inline constexpr std::string_view guest_run = "guest-run";
inline constexpr std::string_view ext_list = "ext-list";
inline constexpr std::string_view ext_set = "ext-set";
inline constexpr std::string_view ext_upgrade = "ext-upgrade";
inline constexpr std::string_view job_pids = "job-pids";
inline constexpr std::string_view patch = "patch";
inline constexpr std::string_view revert = "revert";
inline constexpr std::string_view switches = "switches";

enum class Who {
  root,       // only root
  anyone,     // any user; the agent acts with the caller's uid where it matters
  job_owner,  // args[0] is a job id; its owner or root, and only on the job's nodes
};

inline std::optional<Who> who_may(std::string_view op) {
  if (op == cyclesteal || op == ext_set || op == ext_upgrade) return Who::root;
  if (op == guest_run || op == ext_list || op == switches) return Who::anyone;
  if (op == job_pids || op == patch || op == revert) return Who::job_owner;
  return std::nullopt;
}

}  // namespace dynamos::gang::ops
