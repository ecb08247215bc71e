// Logging with levels and timestamps, one line a message on standard error.
//
// Under systemd (JOURNAL_STREAM names our standard error) a line starts with the
// journal's priority prefix, "<3>" .. "<7>", and carries no time (the journal adds
// it); elsewhere it starts with an ISO 8601 UTC time, the program and the level:
//   2026-12-03T14:45:01.123Z gangd info: node n1 joined
// Messages below the threshold (set_level, from --log-level) are dropped.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "base/error.hpp"

namespace dynamos::log {

// syslog's priorities, which the journal's prefixes use.
enum class Level { error = 3, warning = 4, notice = 5, info = 6, debug = 7 };

// "error", "warning" (or "warn"), "notice", "info", "debug".
Result<Level> parse_level(std::string_view text);
const char* level_name(Level level);

void set_program(std::string name);
void set_level(Level threshold);
Level level();
bool enabled(Level level);

// The line as it would be written (for tests), and writing it.
std::string format(Level level, std::string_view message);
void write(Level level, std::string_view message);

inline void error(std::string_view m) {
  write(Level::error, m);
}
inline void warning(std::string_view m) {
  write(Level::warning, m);
}
inline void notice(std::string_view m) {
  write(Level::notice, m);
}
inline void info(std::string_view m) {
  write(Level::info, m);
}
inline void debug(std::string_view m) {
  write(Level::debug, m);
}

// A component's log hook (gangd's coordinator, the agent's session and node agent, the
// agent's operations): each line with its level. Called with a line alone it logs at
// info; empty, it drops the line. A callback that takes only the line (a test that
// captures lines) is accepted too and gets every line whatever its level.
class Logger {
 public:
  using Fn = std::function<void(Level, const std::string&)>;
  Logger() = default;
  template <class F>
  requires std::is_invocable_v<F&, Level, const std::string&> Logger(F f)
      : fn_(std::move(f)) {}  // NOLINT: implicit, as a std::function would be
  template <class F>
  requires(std::is_invocable_v<F&, const std::string&> &&
           !std::is_invocable_v<F&, Level, const std::string&>) Logger(F f)  // NOLINT
      : fn_([f = std::move(f)](Level, const std::string& line) mutable { f(line); }) {}

  explicit operator bool() const { return static_cast<bool>(fn_); }
  void operator()(Level level, const std::string& line) const {
    if (fn_) fn_(level, line);
  }
  void operator()(const std::string& line) const { (*this)(Level::info, line); }
  void error(const std::string& line) const { (*this)(Level::error, line); }
  void warning(const std::string& line) const { (*this)(Level::warning, line); }
  void notice(const std::string& line) const { (*this)(Level::notice, line); }
  void debug(const std::string& line) const { (*this)(Level::debug, line); }

 private:
  Fn fn_;
};

// A Logger that writes each line at its level through write() (--log-level applies).
// With `prefix`, every line starts with it ("node n1: ").
Logger sink(std::string prefix = "");

}  // namespace dynamos::log
