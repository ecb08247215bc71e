// The node operations dynamosd adds to its NodeAgent (gang/node_ops.hpp lists them
// all). Each group lives in its own file and registers its ops with NodeAgent::add_op.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "gang/dynamosd/metrics.hpp"
#include "gang/dynamosd/node_agent.hpp"

namespace dynamos::core {
class ExtensionHost;
}

namespace dynamos::gang {

// An op's reply object as one line of JSON (bytes that are not UTF-8 replaced).
inline std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct AgentOpsContext {
  NodeAgent& agent;
  core::ExtensionHost* extensions = nullptr;  // may be null: no extension loaded
  std::string paging_extension;               // its name in the host, "" when not loaded
  std::string cyclesteal_extension;           // likewise
  log::Logger log;
  LiveUpdateCounts* updates = nullptr;  // the patch ops count here when given
};

// patch, revert: the remote live update of every rank of a job (agent_ops_patch.cpp).
void add_patch_ops(AgentOpsContext& ctx);
// The op groups (one file each: gang/agent_ops_<group>.cpp).
void add_cyclesteal_ops(AgentOpsContext& ctx);  // cyclesteal, guest-run
void add_extension_ops(AgentOpsContext& ctx);   // ext-list, ext-set, ext-upgrade

}  // namespace dynamos::gang
