// Small file helpers for /proc, /sys and cgroup files. Each call is one open and
// one read or write, and every failure says which file and which value.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "base/file.hpp"

namespace dynamos::kernelside {

using dynamos::UniqueFd;  // base/file.hpp

// The whole file as text. Kernel files report size 0, so this reads until EOF.
Result<std::string> read_text(const std::string& path);

// Writes value with a single write(2): cgroup and sysfs files take one value per
// write, and a short write is an error there.
Result<void> write_text(const std::string& path, std::string_view value);

// A file holding one unsigned number (optionally "max", returned as UINT64_MAX).
Result<uint64_t> read_u64(const std::string& path);

// The file read whole and given to parse(std::string_view); a parse error gets
// "<verb> <path>" as context.
template <class Parse>
auto read_parsed(const std::string& path, Parse parse, std::string_view verb)
    -> decltype(parse(std::string_view{})) {
  auto text = read_text(path);
  if (!text) return std::unexpected(text.error());
  auto v = parse(*text);
  if (!v) return std::unexpected(with_context(v.error(), std::string(verb) + " " + path));
  return v;
}

// A file of "key value" lines (see parse_flat_keyed).
Result<std::map<std::string, uint64_t>> read_flat_keyed(const std::string& path);

// The names in a directory, without "." and "..".
Result<std::vector<std::string>> list_dir(const std::string& path);
// The subdirectories of a directory, by the entries' d_type (stat only where the file
// system leaves it unknown): one getdents per call on cgroupfs and procfs, not a stat
// per file.
Result<std::vector<std::string>> list_subdirs(const std::string& path);

bool path_exists(const std::string& path);

// ---- parsers (pure, unit-tested) ----

// An unsigned decimal number, or "max" (UINT64_MAX). Surrounding blanks allowed.
Result<uint64_t> parse_u64(std::string_view text);

// "key value" lines, as in memory.stat, cpu.stat and cgroup.events. Lines that do
// not end in a number are an error naming the line.
Result<std::map<std::string, uint64_t>> parse_flat_keyed(std::string_view text);

// "Key:   value [kB]" lines, as in /proc/meminfo and smaps; kB values become bytes.
Result<std::map<std::string, uint64_t>> parse_colon_keyed(std::string_view text);

// The lines of text, without their newline; no empty trailing line.
std::vector<std::string_view> split_lines(std::string_view text);

// Whitespace separated words.
std::vector<std::string_view> split_words(std::string_view text);

}  // namespace dynamos::kernelside
