// What the extension host tells about loaded extensions (list, info, JSON) and their
// tunables at runtime (get, set, reset).
#include <nlohmann/json.hpp>

#include "core/extension_build.hpp"
#include "core/extension_host.hpp"

namespace dynamos::core {

using namespace exthost;

TunableInfo ExtensionHost::describe_tunable(const Build& build, std::size_t i) const {
  TunableInfo t;
  t.spec = build.specs[i];
  t.value = build.load(i);
  t.text = t.spec.format(t.value);
  t.source = build.values[i].source;
  t.origin = build.values[i].origin;
  t.environment = environment_variable(build.name, t.spec.name);
  return t;
}

ExtensionInfo ExtensionHost::describe(const Loaded& loaded) const {
  const Build& b = *loaded.build;
  ExtensionInfo info;
  info.name = b.name;
  info.version = b.version;
  info.description = b.description;
  info.path = b.path;
  for (std::size_t h = 0; h < kHookCount; ++h)
    if (hook_code(b.desc, h)) info.hooks.push_back(static_cast<Hook>(h));
  info.exports_state = b.desc->export_state != nullptr;
  info.imports_state = b.desc->import_state != nullptr;
  for (std::size_t i = 0; i < b.specs.size(); ++i)
    info.tunables.push_back(describe_tunable(b, i));
  info.builds = loaded.builds;
  return info;
}

std::vector<ExtensionInfo> ExtensionHost::list() const {
  std::shared_lock lock(table_);
  std::vector<ExtensionInfo> out;
  for (const auto& [name, loaded] : extensions_)
    out.push_back(describe(*loaded));
  return out;
}

Result<ExtensionInfo> ExtensionHost::info(std::string_view name) const {
  std::shared_lock lock(table_);
  auto it = extensions_.find(name);
  if (it == extensions_.end())
    return fail(Errc::not_found, "extension " + std::string(name) + ": not loaded");
  return describe(*it->second);
}

Result<std::pair<ExtensionHost::Loaded*, std::size_t>> ExtensionHost::find_tunable(
    std::string_view extension, std::string_view key) const {
  auto it = extensions_.find(extension);
  if (it == extensions_.end())
    return fail(Errc::not_found, "extension " + std::string(extension) + ": not loaded");
  const Build& b = *it->second->build;
  auto i = b.index_of(key);
  if (!i) {
    std::string known;
    for (const auto& s : b.specs)
      known += (known.empty() ? "" : ", ") + s.name;
    return fail(Errc::not_found, std::string(extension) + " has no tunable '" + std::string(key) +
                                     "' (it has: " + (known.empty() ? "none" : known) + ")");
  }
  return std::pair{it->second.get(), *i};
}

Result<ExtensionHost::TunableToChange> ExtensionHost::tunable_to_change(
    std::string_view extension, std::string_view key, std::string_view verb) const {
  const std::string full = std::string(extension) + "." + std::string(key);
  std::shared_lock lock(table_);
  auto found = find_tunable(extension, key);
  if (!found) return std::unexpected(with_context(found.error(), std::string(verb) + " " + full));
  return TunableToChange{*found->first->build, found->second, full};
}

Result<TunableInfo> ExtensionHost::get(std::string_view extension, std::string_view key) const {
  std::shared_lock lock(table_);
  auto found = find_tunable(extension, key);
  if (!found) return std::unexpected(found.error());
  return describe_tunable(*found->first->build, found->second);
}

Result<void> ExtensionHost::offer_tunable(const Build& b, std::size_t i, const TunableValue& v,
                                          const std::string& text) {
  if (!b.desc->on_tunable) return {};
  dynamos_tunable_value proposed{v.integer, v.real, text.c_str()};
  clear_error();
  if (int rc = b.desc->on_tunable(static_cast<std::uint32_t>(i), &proposed); rc != 0)
    return fail(Errc::refused, "refused by " + b.name + ": " + take_error(rc));
  return {};
}

Result<TunableInfo> ExtensionHost::change_tunable(Build& b, std::size_t i, const TunableValue& v,
                                                  ValueSource source, std::string origin,
                                                  const std::string& what) {
  const std::string text = b.specs[i].format(v);
  if (auto ok = offer_tunable(b, i, v, text); !ok)
    return std::unexpected(with_context(ok.error(), what + text));
  std::unique_lock lock(table_);
  b.store(i, v);
  b.values[i].source = source;
  b.values[i].origin = std::move(origin);
  return describe_tunable(b, i);
}

Result<TunableInfo> ExtensionHost::set(std::string_view extension, std::string_view key,
                                       std::string_view value) {
  std::lock_guard ops(ops_);
  auto found = tunable_to_change(extension, key, "set");
  if (!found) return std::unexpected(found.error());
  auto& [b, i, full] = *found;
  const TunableSpec& spec = b.specs[i];
  if (!spec.runtime)
    return fail(Errc::refused, "set " + full + ": fixed at load, not changeable at runtime (set " +
                                   environment_variable(b.name, spec.name) +
                                   " or the config file before loading)");
  auto v = spec.parse(value);
  if (!v)
    return fail(Errc::invalid_argument,
                "set " + full + " = " + std::string(value) + ": " + v.error().what);
  return change_tunable(b, i, *v, ValueSource::runtime, "", "set " + full + " = ");
}

Result<TunableInfo> ExtensionHost::set(std::string_view assignment) {
  auto eq = assignment.find('=');
  auto dot = assignment.find('.');
  if (eq == assignment.npos || dot == assignment.npos || dot > eq)
    return fail(Errc::invalid_argument,
                "set '" + std::string(assignment) + "': expected EXTENSION.KEY=VALUE");
  auto strip = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ')
      s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ')
      s.remove_suffix(1);
    return s;
  };
  return set(strip(assignment.substr(0, dot)), strip(assignment.substr(dot + 1, eq - dot - 1)),
             strip(assignment.substr(eq + 1)));
}

Result<TunableInfo> ExtensionHost::reset(std::string_view extension, std::string_view key) {
  std::lock_guard ops(ops_);
  auto found = tunable_to_change(extension, key, "reset");
  if (!found) return std::unexpected(found.error());
  auto& [b, i, full] = *found;
  if (b.values[i].source != ValueSource::runtime) return describe_tunable(b, i);
  auto r = resolve_tunable(b.specs[i], b.name, config_.get(), options_.environment);
  if (!r) return std::unexpected(with_context(r.error(), "reset " + full));
  return change_tunable(b, i, r->value, r->source, r->origin, "reset " + full + " to ");
}

// ---- JSON ----

namespace {

using Json = nlohmann::ordered_json;  // fields in the order users and tests know

Json json_of(const TunableInfo& t) {
  Json j = {{"name", t.spec.name},
            {"type", tunable_type_name(t.spec.type)},
            {"value", t.text},
            {"default", t.spec.format(t.spec.default_value)},
            {"range", t.spec.describe_range()}};
  if (!t.spec.choices.empty()) j["choices"] = t.spec.choices;
  j["runtime"] = t.spec.runtime;
  j["source"] = value_source_name(t.source);
  j["origin"] = t.origin;
  j["environment"] = t.environment;
  j["help"] = t.spec.help;
  return j;
}

std::string dump(const Json& j) {
  // Text from extensions need not be UTF-8: replace what is not, never throw.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

std::string to_json(const TunableInfo& t) {
  return dump(json_of(t));
}

std::string to_json(const ExtensionInfo& e) {
  Json hooks = Json::array();
  for (Hook h : e.hooks)
    hooks.push_back(hook_name(h));
  Json tunables = Json::array();
  for (const auto& t : e.tunables)
    tunables.push_back(json_of(t));
  Json j = {{"name", e.name},
            {"version", e.version},
            {"description", e.description},
            {"path", e.path},
            {"builds", e.builds},
            {"hooks", std::move(hooks)},
            {"exports_state", e.exports_state},
            {"imports_state", e.imports_state},
            {"tunables", std::move(tunables)}};
  return dump(j);
}

}  // namespace dynamos::core
