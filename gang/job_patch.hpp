// The `patch` and `revert` node operations (gang/node_ops.hpp): their arguments and
// replies, shared by the CLI (`dynamos patch --job`, `dynamos revert --job`) and the
// node agent (gang/dynamosd/agent_ops_patch.cpp).
//
//   patch   JOB [--mode drain|quiescent] [--timeout-ms N] --replace SYM=/ABS/PATCH.so:NEWSYM...
//   revert  JOB [--mode drain|quiescent] UPDATE|PID:UPDATE...
//
// A bare UPDATE reverts that update in every rank of the job on the node; PID:UPDATE
// in that rank only. Both answer with the node's ranks as one JSON object:
//   {"node":"n0","job":7,"took_ms":21.4,
//    "ranks":[{"pid":1234,"update":3,"stopped_ms":0.41,"took_ms":10.2},...]}
//
// While the job is frozen on a node (not its time slice) its ranks cannot be stopped
// with ptrace; the agent refuses with frozen_refusal() and the CLI retries once the
// job runs again.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/remote_update.hpp"
#include "gang/protocol.hpp"

namespace dynamos::gang::jobpatch {

using proto::JobId;

// The agent cannot switch jobs while it patches (both run on its session's thread), so
// a rank's quiescent wait is bounded by this much.
inline constexpr std::chrono::milliseconds kMaxRankTimeout{500};

struct PatchArgs {
  JobId job = 0;
  std::vector<core::Replacement> replacements;  // objects as absolute paths
  core::SafetyMode mode = core::SafetyMode::drain;
  std::chrono::milliseconds timeout{kMaxRankTimeout};  // quiescent mode, per rank
};
std::vector<std::string> to_args(const PatchArgs& a);
Result<PatchArgs> parse_patch_args(std::span<const std::string> args);

struct RevertTarget {
  pid_t pid = 0;  // 0: every rank of the job on the node
  core::UpdateId update = 0;
};
struct RevertArgs {
  JobId job = 0;
  core::SafetyMode mode = core::SafetyMode::drain;
  std::vector<RevertTarget> targets;
};
std::vector<std::string> to_args(const RevertArgs& a);
Result<RevertArgs> parse_revert_args(std::span<const std::string> args);
// "UPDATE" or "PID:UPDATE".
Result<RevertTarget> parse_revert_target(std::string_view token);

struct RankUpdate {
  pid_t pid = 0;
  core::UpdateId update = 0;
  double stopped_ms = 0;  // the rank's threads stopped
  double took_ms = 0;     // attach to detach
};
struct NodeUpdates {
  std::string node;
  JobId job = 0;
  double took_ms = 0;
  std::vector<RankUpdate> ranks;
};
std::string to_json(const NodeUpdates& u);
Result<NodeUpdates> parse_node_updates(std::string_view json);

// "job N is frozen on node X (not its time slice)", and whether a node's error is it.
std::string frozen_refusal(JobId job, const std::string& node);
bool is_frozen_refusal(std::string_view message);

}  // namespace dynamos::gang::jobpatch
