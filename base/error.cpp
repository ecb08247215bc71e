#include "base/error.hpp"

#include "base/names.hpp"

#include <cstdio>
#include <cstring>

namespace dynamos {

const char* errc_name(Errc code) {
  static constexpr const char* kNames[] = {
      "ok",      "system",  "invalid_argument", "not_found",   "not_permitted",
      "refused", "busy",    "timed_out",        "unsupported", "version_mismatch",
      "state",   "protocol"};  // in enum order
  return enum_name(kNames, code, "unknown");
}

std::string Error::message() const {
  if (sys_errno == 0) return what;
  char buf[128];
  // GNU strerror_r returns the message pointer, which may not be buf.
  const char* text = strerror_r(sys_errno, buf, sizeof buf);
  return what + ": " + text;
}

std::unexpected<Error> fail_errno(int err, std::string what) {
  // The errno values that have a code of their own; every other one is Errc::system.
  static constexpr struct {
    int err;
    Errc code;
  } kCodes[] = {{ENOENT, Errc::not_found},    {ESRCH, Errc::not_found},
                {EPERM, Errc::not_permitted}, {EACCES, Errc::not_permitted},
                {ETIMEDOUT, Errc::timed_out}, {EBUSY, Errc::busy},
                {EAGAIN, Errc::busy}};
  Errc code = Errc::system;
  for (const auto& c : kCodes)
    if (c.err == err) code = c.code;
  return std::unexpected(Error{code, err, std::move(what)});
}

std::string hex(std::uintptr_t value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(value));
  return buf;
}

std::unexpected<Error> fail_errno(std::string what) {
  return fail_errno(errno, std::move(what));
}

}  // namespace dynamos
