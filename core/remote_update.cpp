#include "core/remote_update.hpp"

#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "base/file.hpp"
#include "core/remote.hpp"
#include "core/scope_guard.hpp"
#include "core/symbols.hpp"

namespace dynamos::core {

using Clock = std::chrono::steady_clock;

Result<Replacement> parse_replacement(std::string_view spec) {
  const auto eq = spec.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size())
    return fail(Errc::invalid_argument,
                "--replace '" + std::string(spec) + "' is not SYM=PATCH.so[:NEWSYM]");
  Replacement r;
  r.symbol = spec.substr(0, eq);
  const std::string_view rest = spec.substr(eq + 1);
  const auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && rest.find(".so", colon) == std::string_view::npos) {
    r.object = rest.substr(0, colon);
    r.new_symbol = rest.substr(colon + 1);
  } else {
    r.object = rest;
  }
  if (r.new_symbol.empty()) r.new_symbol = r.symbol;
  return r;
}

std::string format_replacement(const Replacement& r) {
  return r.symbol + "=" + r.object + ":" + (r.new_symbol.empty() ? r.symbol : r.new_symbol);
}

Result<void> check_patch_object(const std::string& path, std::string_view bytes) {
  Elf64_Ehdr h{};
  if (bytes.size() < sizeof h) return fail(Errc::invalid_argument, path + " is not an ELF file");
  std::memcpy(&h, bytes.data(), sizeof h);
  if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0)
    return fail(Errc::invalid_argument, path + " is not an ELF file");
  if (h.e_type != ET_DYN)
    return fail(Errc::invalid_argument, path + " is not an ELF shared object");
  // A position-independent executable is ET_DYN too; it asks for an interpreter.
  for (std::size_t i = 0; i < h.e_phnum; ++i) {
    const std::size_t at = h.e_phoff + i * h.e_phentsize;
    Elf64_Phdr ph{};
    if (h.e_phoff > bytes.size() || at > bytes.size() || bytes.size() - at < sizeof ph) break;
    std::memcpy(&ph, bytes.data() + at, sizeof ph);
    if (ph.p_type == PT_INTERP)
      return fail(Errc::invalid_argument, path + " is an executable, not an ELF shared object");
  }
  return {};
}

Result<std::string> read_patch_object(const std::string& path) {
  auto bytes = read_regular_file(path, kMaxPatchObject);
  if (!bytes) return std::unexpected(bytes.error());
  if (auto ok = check_patch_object(path, *bytes); !ok) return std::unexpected(ok.error());
  return bytes;
}

namespace {

// Staged copies of this process and how many calls use each (two node agents in one
// process may stage the same build at once; the copy goes when the last is done).
std::mutex staged_mu;
std::map<std::string, int> staged_uses;

// Where copies are staged: root's own directory, or a fresh private one for a user.
Result<std::string> staging_dir() {
  if (::geteuid() != 0) return make_temp_dir("dynamos-patches");
  auto dir = make_root_run_dir(std::filesystem::path(kRootStagingDir).filename().string(), 0711);
  if (!dir) return std::unexpected(with_context(dir.error(), "stage a patch object"));
  return dir;
}

}  // namespace

Result<std::string> stage_patch_object(const std::string& path, std::string_view bytes) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : bytes)
    h = (h ^ c) * 1099511628211ull;
  auto dir = staging_dir();
  if (!dir) return std::unexpected(dir.error());
  char name[64];
  std::snprintf(name, sizeof name, "-%016lx.p%d.so", static_cast<unsigned long>(h),
                static_cast<int>(::getpid()));
  const std::string copy = *dir + "/" + std::filesystem::path(path).stem().string() + name;
  std::lock_guard lock(staged_mu);
  if (staged_uses[copy]++ > 0) return copy;  // the same build, staged by this process
  if (auto ok = write_new_file(copy, bytes, 0444); !ok) {
    // Left by a process with our pid that died before it removed it: only root (or, in
    // a private directory, this user) writes here, so it is replaced, not trusted.
    ::unlink(copy.c_str());
    ok = write_new_file(copy, bytes, 0444);
    if (!ok) {
      staged_uses.erase(copy);
      return std::unexpected(ok.error());
    }
  }
  return copy;
}

Result<std::string> stage_patch_object(const std::string& path) {
  auto bytes = read_patch_object(path);
  if (!bytes) return std::unexpected(bytes.error());
  return stage_patch_object(path, *bytes);
}

void release_staged_object(const std::string& staged) {
  std::lock_guard lock(staged_mu);
  auto it = staged_uses.find(staged);
  if (it == staged_uses.end() || --it->second > 0) return;
  staged_uses.erase(it);
  ::unlink(staged.c_str());
  const std::string dir = std::filesystem::path(staged).parent_path().string();
  if (dir != kRootStagingDir) ::rmdir(dir.c_str());  // a private directory of one copy
}

Result<std::unique_ptr<Engine>> attach_remote_engine(pid_t pid,
                                                     std::chrono::milliseconds stop_timeout,
                                                     std::optional<Requester> requester) {
  AttachOptions opts;
  opts.stop_timeout = stop_timeout;
  opts.requester = requester;
  auto target = RemoteTarget::attach(pid, opts);
  if (!target) return std::unexpected(target.error());
  return Engine::over(std::move(*target));
}

Result<RemoteUpdateResult> patch_process(pid_t pid, const RemotePatchRequest& request) {
  if (request.replacements.empty())
    return fail(Errc::invalid_argument, "nothing to do: no replacement given");
  std::vector<Replacement> plan = request.replacements;
  std::vector<std::string> ours;  // staged here: released when the call ends
  ScopeGuard release([&ours] {
    for (const auto& c : ours)
      release_staged_object(c);
  });
  for (auto& r : plan)
    if (r.staged.empty()) {
      auto copy = stage_patch_object(r.object);
      if (!copy) return std::unexpected(copy.error());
      r.staged = *copy;
      ours.push_back(*copy);
    }
  const auto t0 = Clock::now();
  auto engine = attach_remote_engine(pid, request.stop_timeout, request.requester);
  if (!engine) return std::unexpected(engine.error());
  auto& remote = dynamic_cast<RemoteTarget&>((*engine)->target());
  auto failed = [&remote](Error e) { return std::unexpected(remote.explain(std::move(e))); };

  std::map<std::string, bool> loaded;
  for (const auto& r : plan) {
    if (loaded[r.staged]) continue;
    auto h = remote.load_library(r.staged);
    if (!h) return failed(h.error());
    loaded[r.staged] = true;
  }
  auto syms = Symbols::load(remote);
  if (!syms) return failed(syms.error());
  UpdateRequest req;
  req.mode = request.mode;
  req.timeout = request.timeout;
  for (const auto& r : plan) {
    auto code = syms->find(r.new_symbol, r.staged);
    if (!code)
      return fail(Errc::not_found, "no function named '" + r.new_symbol + "' in " + r.staged);
    const std::string version =
        std::filesystem::path(r.object).filename().string() + ":" + r.new_symbol;
    req.redirects.push_back({r.symbol, 0, code->address, version});
  }
  auto id = (*engine)->apply(req);
  if (!id) return failed(id.error());
  RemoteUpdateResult out;
  out.id = *id;
  out.stopped = (*engine)->last_stop();
  engine->reset();  // detach before measuring: the call is over when the target is free
  out.took = Clock::now() - t0;
  return out;
}

Result<RemoteUpdateResult> revert_process_update(pid_t pid, UpdateId id, SafetyMode mode,
                                                 std::chrono::milliseconds timeout,
                                                 std::chrono::milliseconds stop_timeout,
                                                 std::optional<Requester> requester) {
  const auto t0 = Clock::now();
  auto engine = attach_remote_engine(pid, stop_timeout, requester);
  if (!engine) return std::unexpected(engine.error());
  if (auto r = (*engine)->revert(id, mode, timeout); !r)
    return std::unexpected(dynamic_cast<RemoteTarget&>((*engine)->target()).explain(r.error()));
  RemoteUpdateResult out;
  out.id = id;
  out.stopped = (*engine)->last_stop();
  engine->reset();
  out.took = Clock::now() - t0;
  return out;
}

}  // namespace dynamos::core
