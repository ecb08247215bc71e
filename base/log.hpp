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

// A callback for the components' `log` hooks, writing at `level`.
std::function<void(const std::string&)> sink(Level level = Level::info);

}  // namespace dynamos::log
