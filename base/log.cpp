#include "base/log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <utility>

namespace dynamos::log {

namespace {

std::atomic<Level> g_threshold{Level::info};
std::mutex g_mutex;
std::string g_program = "dynamos";

// JOURNAL_STREAM is "DEV:INO" of the stream systemd connected; it counts only when
// our standard error is still that stream (a child may have redirected it).
bool stderr_is_journal() {
  static const bool journal = [] {
    const char* env = std::getenv("JOURNAL_STREAM");
    if (!env) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) return false;
    return st.st_dev == dev && st.st_ino == ino;
  }();
  return journal;
}

std::string iso_now() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms.count()));
  return buf;
}

}  // namespace

// Each level's name, one table for reading and writing them.
constexpr std::pair<Level, const char*> kLevels[] = {
    {Level::error, "error"}, {Level::warning, "warning"}, {Level::notice, "notice"},
    {Level::info, "info"},   {Level::debug, "debug"},
};

Result<Level> parse_level(std::string_view text) {
  if (text == "warn") return Level::warning;
  for (const auto& [level, name] : kLevels)
    if (text == name) return level;
  return fail(Errc::invalid_argument, "log level '" + std::string(text) +
                                          "' is not one of error, warning, notice, info, debug");
}

const char* level_name(Level level) {
  for (const auto& [l, name] : kLevels)
    if (l == level) return name;
  return "info";
}

void set_program(std::string name) {
  std::lock_guard lock(g_mutex);
  g_program = std::move(name);
}
void set_level(Level threshold) {
  g_threshold = threshold;
}
Level level() {
  return g_threshold;
}
bool enabled(Level l) {
  return static_cast<int>(l) <= static_cast<int>(g_threshold.load());
}

std::string format(Level l, std::string_view message) {
  // One line: a message's own newlines would split a journal entry.
  std::string text(message);
  for (char& c : text)
    if (c == '\n') c = ' ';
  if (stderr_is_journal()) return "<" + std::to_string(static_cast<int>(l)) + ">" + text + "\n";
  std::lock_guard lock(g_mutex);
  return iso_now() + " " + g_program + " " + level_name(l) + ": " + text + "\n";
}

void write(Level l, std::string_view message) {
  if (!enabled(l)) return;
  std::string line = format(l, message);
  // One write a line, so that lines of several threads do not interleave.
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

Logger sink(std::string prefix) {
  if (prefix.empty()) return Logger([](Level l, const std::string& line) { write(l, line); });
  return Logger([prefix = std::move(prefix)](Level l, const std::string& line) {
    if (enabled(l)) write(l, prefix + line);
  });
}

}  // namespace dynamos::log
