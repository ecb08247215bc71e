// Live updates of another process, one call each: what `dynamos patch PID` does, and
// what the node agent does for every rank of a job (`dynamos patch --job`). The engine
// runs over a RemoteTarget (core/remote.hpp); patch objects are loaded with a remote
// dlopen; the target is detached when a call returns, whatever happened.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "core/engine.hpp"
#include "core/remote_identity.hpp"

namespace dynamos::core {

// One function to replace: SYM=PATCH.so[:NEWSYM] on the command line.
struct Replacement {
  std::string symbol;      // the function in the target
  std::string object;      // the patch object, as the operator named it
  std::string new_symbol;  // the new version in the object (parse: defaults to symbol)
  std::string staged;      // the content-named copy that is loaded ("": stage `object`)
};

// "SYM=PATCH.so[:NEWSYM]"; a colon after the last ".so" starts NEWSYM.
Result<Replacement> parse_replacement(std::string_view spec);
// Back to "SYM=PATCH.so:NEWSYM" (the staged copy is not part of it).
std::string format_replacement(const Replacement& r);

// The largest patch object read (a guard against /dev/zero-like files).
inline constexpr std::size_t kMaxPatchObject = std::size_t{1} << 30;
// Where a process running as root stages patch objects: root's, mode 0711 (a target,
// running as its user, opens its copy by exact name with its own dlopen; nobody but
// root can list or write there). Its parent and every directory above are checked.
inline constexpr const char* kRootStagingDir = "/run/dynamos/patches";

// Reads a patch object and checks it is an ELF shared object (not an executable). It
// is opened O_NONBLOCK|O_NOFOLLOW and must be a regular file (base/file.hpp): a FIFO
// cannot block the reader. Errc::not_found "no such file: PATH", Errc::invalid_argument
// naming what it is not.
Result<std::string> read_patch_object(const std::string& path);
// Checks bytes read from `path` as read_patch_object does.
Result<void> check_patch_object(const std::string& path, std::string_view bytes);
// Stores bytes as a content-named copy, STEM-HASH.pPID.so, and returns its path: in
// kRootStagingDir when running as root, else in a fresh private directory
// ($TMPDIR/dynamos-patches-XXXXXX, 0700). The copy is created O_EXCL|O_NOFOLLOW, mode
// 0444; every directory on the way is checked (owner, no foreign write permission),
// and a directory someone else created first is refused, naming it. The dynamic linker
// hands out the already loaded object for a path it has seen, even when the file was
// rebuilt since; a name per distinct build loads each build, and the same build again
// reuses its copy. Each successful call must be paired with release_staged_object.
Result<std::string> stage_patch_object(const std::string& path, std::string_view bytes);
// read_patch_object + stage_patch_object.
Result<std::string> stage_patch_object(const std::string& path);
// One use of a staged copy is over; the last removes it (and its private directory).
// A target that loaded the copy keeps its mapping: the file is not needed after.
void release_staged_object(const std::string& staged);

struct RemotePatchRequest {
  std::vector<Replacement> replacements;  // all switch in one update, or none do
  SafetyMode mode = SafetyMode::drain;
  std::chrono::milliseconds timeout{2000};       // quiescent mode: give up after this
  std::chrono::milliseconds stop_timeout{1000};  // for each stop of all threads
  std::optional<Requester> requester;            // for whom (unset: the tool's own ids)
};

struct RemoteUpdateResult {
  UpdateId id = 0;
  std::chrono::nanoseconds stopped{0};  // the target's threads stopped by the switch
  std::chrono::nanoseconds took{0};     // the whole call: attach, load, switch, detach
};

// The engine over process `pid` (seized, not stopped), with the state it carries.
// Attached for `requester` (unset: the tool's own ids; see RemoteTarget::attach).
Result<std::unique_ptr<Engine>> attach_remote_engine(
    pid_t pid, std::chrono::milliseconds stop_timeout = std::chrono::milliseconds(1000),
    std::optional<Requester> requester = std::nullopt);

// Loads each replacement's object into `pid` and applies one update redirecting every
// symbol to its new version (named "OBJECT-FILE:NEWSYM"). Errors name what failed:
// the process, a symbol, an object, the safety check. Replacements with no staged copy
// are staged first and released when the call returns.
Result<RemoteUpdateResult> patch_process(pid_t pid, const RemotePatchRequest& request);

// Reverts update `id` of process `pid`.
Result<RemoteUpdateResult> revert_process_update(
    pid_t pid, UpdateId id, SafetyMode mode = SafetyMode::drain,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(2000),
    std::chrono::milliseconds stop_timeout = std::chrono::milliseconds(1000),
    std::optional<Requester> requester = std::nullopt);

}  // namespace dynamos::core
