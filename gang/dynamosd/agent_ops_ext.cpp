// Node operations on the extensions loaded in dynamosd, through core::ExtensionHost:
//   ext-list [json|text]     every extension: name, version, path, builds, tunables
//   ext-set EXT.KEY=VALUE    a runtime tunable (the host's refusal message as is)
//   ext-upgrade EXT PATH.so  a new build in place: state handed over, calls go on
// The node agent calls the paging extension by name at every switch, and the host's
// dispatch points outlive builds, so switches go on across an upgrade (see
// core/extension_host.hpp and NodeAgent::switch_now).
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>
#include "core/extension_host.hpp"

#include "gang/dynamosd/agent_ops.hpp"
#include "gang/node_ops.hpp"

namespace dynamos::gang {

namespace {

std::string node_name(const NodeAgent& agent) {
  const auto& p = agent.node_path();
  return p.substr(p.rfind('/') + 1);
}

// A table for people, one block per extension.
std::string list_text(const std::string& node, const std::vector<core::ExtensionInfo>& list) {
  std::string out;
  char line[512];
  for (const auto& e : list) {
    std::snprintf(line, sizeof line, "%s: %s %s (%s, build %u)\n", node.c_str(), e.name.c_str(),
                  e.version.c_str(), e.path.c_str(), e.builds);
    out += line;
    for (const auto& t : e.tunables) {
      std::snprintf(line, sizeof line, "  %-22s %-10s %-9s default %-8s %-9s %s\n",
                    (e.name + "." + t.spec.name).c_str(), t.text.c_str(),
                    core::tunable_type_name(t.spec.type),
                    t.spec.format(t.spec.default_value).c_str(), core::value_source_name(t.source),
                    t.spec.describe_range().c_str());
      out += line;
      out += "      " + t.spec.help + "\n";
    }
  }
  if (list.empty()) out = node + ": no extension loaded\n";
  return out;
}

Result<std::string> ext_list(const AgentOpsContext& ctx, const proto::NodeRequest& r) {
  std::string format = r.args.empty() ? "json" : r.args[0];
  if (r.args.size() > 1 || (format != "json" && format != "text"))
    return fail(Errc::invalid_argument, "ext-list takes no argument but 'json' or 'text'");
  std::vector<core::ExtensionInfo> list;
  if (ctx.extensions) list = ctx.extensions->list();
  std::string node = node_name(ctx.agent);
  if (format == "text") return list_text(node, list);
  std::string out;
  for (const auto& e : list) {  // {"node":"n0", then the extension's own fields
    nlohmann::ordered_json j = {{"node", node}};
    const auto fields = nlohmann::ordered_json::parse(core::to_json(e));
    for (auto it = fields.begin(); it != fields.end(); ++it)
      j[it.key()] = *it;
    out += dump(j) + "\n";
  }
  return out;
}

Result<std::string> ext_set(const AgentOpsContext& ctx, const proto::NodeRequest& r) {
  if (r.args.size() != 1 || r.args[0].find('=') == std::string::npos)
    return fail(Errc::invalid_argument, "ext-set takes one EXT.KEY=VALUE");
  if (!ctx.extensions)
    return fail(Errc::not_found, "node " + node_name(ctx.agent) + " has no extension loaded");
  auto t = ctx.extensions->set(r.args[0]);
  if (!t) return std::unexpected(t.error());
  auto name = r.args[0].substr(0, r.args[0].find('.'));
  if (ctx.log) ctx.log("ext-set " + name + "." + t->spec.name + "=" + t->text);
  return core::to_json(*t);
}

Result<std::string> ext_upgrade(const AgentOpsContext& ctx, const proto::NodeRequest& r) {
  if (r.args.size() != 2) return fail(Errc::invalid_argument, "ext-upgrade takes EXT PATH.so");
  const auto& name = r.args[0];
  const auto& path = r.args[1];
  if (!path.starts_with('/'))
    return fail(Errc::invalid_argument, "ext-upgrade: the path '" + path + "' is not absolute");
  if (!ctx.extensions)
    return fail(Errc::not_found, "node " + node_name(ctx.agent) + " has no extension loaded");
  auto up = ctx.extensions->upgrade(name, path);
  if (!up) return std::unexpected(with_context(up.error(), "ext-upgrade " + name));
  if (ctx.log)
    ctx.log("ext-upgrade " + name + " " + up->old_version + " -> " + up->new_version + " from " +
            path + " (state " + std::to_string(up->state_bytes) + " bytes)");
  return dump({{"name", up->name},
               {"old_version", up->old_version},
               {"new_version", up->new_version},
               {"path", path},
               {"state_carried", up->state_carried},
               {"state_bytes", up->state_bytes},
               {"held_us", up->held.count()},
               {"total_us", up->total.count()}});
}

}  // namespace

void add_extension_ops(AgentOpsContext& ctx) {
  // A copy: the ops outlive the caller's context (the agent and the host must not).
  auto c = std::make_shared<const AgentOpsContext>(ctx);
  ctx.agent.add_op(std::string(ops::ext_list),
                   [c](const proto::NodeRequest& r) { return ext_list(*c, r); });
  ctx.agent.add_op(std::string(ops::ext_set),
                   [c](const proto::NodeRequest& r) { return ext_set(*c, r); });
  ctx.agent.add_op(std::string(ops::ext_upgrade),
                   [c](const proto::NodeRequest& r) { return ext_upgrade(*c, r); });
}

}  // namespace dynamos::gang
