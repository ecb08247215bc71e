// Calling an extension's hooks: always through the stubs of its dispatch points, so
// that a call takes whichever build the slot leads to (the gate during an upgrade).
#include <ctime>

#include "core/extension_build.hpp"
#include "core/extension_host.hpp"

namespace dynamos::core {

using namespace exthost;

namespace {

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

Result<std::string> ExtensionHost::call_hook(std::string_view extension, Hook hook,
                                             const Subject& subject) {
  const auto h = static_cast<std::size_t>(hook);
  if (h >= kCallHook)
    return fail(Errc::invalid_argument, "call_hook: use call() for the call hook");
  Address stub = 0;
  {
    std::shared_lock lock(table_);
    auto it = extensions_.find(extension);
    if (it == extensions_.end())
      return fail(Errc::not_found, std::string(extension) + "." + hook_name(hook) + ": not loaded");
    const Build& b = *it->second->build;
    if (!hook_code(b.desc, h))
      return fail(Errc::unsupported, std::string(extension) + "." + hook_name(hook) +
                                         ": not implemented by " + b.name + " " + b.version);
    stub = registry().slots[it->second->slot].stub[h];
  }
  std::vector<dynamos_ext_attr> attrs;
  attrs.reserve(subject.attrs.size());
  for (const auto& [k, v] : subject.attrs)
    attrs.push_back({k.c_str(), v.c_str()});
  dynamos_ext_subject s{};
  s.size = sizeof s;
  s.kind = static_cast<std::uint32_t>(subject.kind);
  s.id = subject.id;
  s.name = subject.name.c_str();
  s.cgroup = subject.cgroup.c_str();
  s.pids = subject.pids.data();
  s.pid_count = subject.pids.size();
  s.policy = subject.policy.c_str();
  s.attrs = attrs.data();
  s.attr_count = attrs.size();
  s.now_ns = monotonic_ns();
  dynamos_ext_buffer report;
  clear_error();
  int rc = reinterpret_cast<dynamos_subject_hook>(stub)(&s, &report);
  if (rc != 0)
    return fail(Errc::refused,
                std::string(extension) + "." + hook_name(hook) + ": " + take_error(rc));
  return std::move(report.bytes);
}

Result<std::string> ExtensionHost::call(std::string_view extension, std::string_view op,
                                        std::string_view args) {
  Address stub = 0;
  {
    std::shared_lock lock(table_);
    auto it = extensions_.find(extension);
    if (it == extensions_.end())
      return fail(Errc::not_found, std::string(extension) + ".call: not loaded");
    const Build& b = *it->second->build;
    if (!b.desc->call)
      return fail(Errc::unsupported,
                  std::string(extension) + ".call: not implemented by " + b.name + " " + b.version);
    stub = registry().slots[it->second->slot].stub[kCallHook];
  }
  const std::string op_text(op), args_text(args);
  dynamos_ext_buffer reply;
  clear_error();
  int rc = reinterpret_cast<dynamos_call_hook>(stub)(op_text.c_str(), args_text.c_str(), &reply);
  if (rc != 0)
    return fail(Errc::refused, std::string(extension) + ".call " + op_text + ": " + take_error(rc));
  return std::move(reply.bytes);
}

Result<ExtensionHooks> ExtensionHost::hooks(std::string_view extension) const {
  std::shared_lock lock(table_);
  auto it = extensions_.find(extension);
  if (it == extensions_.end())
    return fail(Errc::not_found, "extension " + std::string(extension) + ": not loaded");
  const Slot& slot = registry().slots[it->second->slot];
  ExtensionHooks hooks;
  hooks.attach = reinterpret_cast<dynamos_subject_hook>(slot.stub[0]);
  hooks.detach = reinterpret_cast<dynamos_subject_hook>(slot.stub[1]);
  hooks.switch_out = reinterpret_cast<dynamos_subject_hook>(slot.stub[2]);
  hooks.switch_in = reinterpret_cast<dynamos_subject_hook>(slot.stub[3]);
  hooks.tick = reinterpret_cast<dynamos_subject_hook>(slot.stub[4]);
  hooks.call = reinterpret_cast<dynamos_call_hook>(slot.stub[kCallHook]);
  return hooks;
}

Result<PatchPointId> ExtensionHost::dispatch_point(std::string_view extension, Hook hook) const {
  std::shared_lock lock(table_);
  auto it = extensions_.find(extension);
  if (it == extensions_.end())
    return fail(Errc::not_found, "extension " + std::string(extension) + ": not loaded");
  return registry().slots[it->second->slot].point[static_cast<std::size_t>(hook)];
}

std::string ExtensionHost::last_error() {
  return exthost::last_error();
}

}  // namespace dynamos::core
