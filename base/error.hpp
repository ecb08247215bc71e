// Errors as values: every fallible call in DynAMOS returns Result<T>, an
// std::expected whose error says what was attempted, on what, and why it failed.
//
// Convention (stated once, as hwloc does): a function returning Result<T> never
// throws for an expected failure and never fails silently. The Error carries a
// code (what kind of failure, for callers that branch on it), the errno of the
// failing system call when there was one (0 otherwise), and a sentence naming the
// operation and its object, e.g. "open /sys/fs/cgroup/memory/x/memory.max: No such
// file or directory".
#pragma once

#include <cerrno>
#include <cstdint>
#include <expected>
#include <string>
#include <utility>

namespace dynamos {

enum class Errc {
  ok = 0,
  system,            // a system call failed; sys_errno says why
  invalid_argument,  // the caller passed something malformed
  not_found,         // no such symbol, process, file, update, extension...
  not_permitted,     // the caller may not act on that object
  refused,           // the engine will not do it safely (reason in the message)
  busy,              // a lock or activation blocks it now; retrying may succeed
  timed_out,         // a deadline passed
  unsupported,       // the kernel or target lacks what this needs
  version_mismatch,  // ABI or protocol version does not match
  state,             // the object is not in a state that allows it
  protocol,          // a peer sent something malformed
};

const char* errc_name(Errc code);

struct Error {
  Errc code = Errc::ok;
  int sys_errno = 0;
  std::string what;

  // "what" plus, for system errors, the strerror text. One line, no newline.
  std::string message() const;
};

template <class T = void>
using Result = std::expected<T, Error>;

// An error of the given kind with a message.
inline std::unexpected<Error> fail(Errc code, std::string what) {
  return std::unexpected(Error{code, 0, std::move(what)});
}

// A failed system call: captures errno now, so call it straight after the call.
// ENOENT, EPERM/EACCES and ETIMEDOUT map to their own codes.
std::unexpected<Error> fail_errno(std::string what);
std::unexpected<Error> fail_errno(int err, std::string what);

// An address or value as 0x..., for messages.
std::string hex(std::uintptr_t value);

// Adds context in front of an error's message: "loading x: <old message>".
inline Error with_context(Error e, const std::string& context) {
  e.what = context + ": " + e.what;
  return e;
}

}  // namespace dynamos
