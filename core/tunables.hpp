// Tunables of extensions: their types, the text syntax of their values, and where a
// value comes from.
//
// A tunable is registered by an extension in its descriptor (core/extension_abi.h).
// Values are text for people and numbers for the extension; this file converts and
// validates in both directions, so every extension gets the same syntax and the same
// error messages. The extension host (core/extension_host.hpp) stores the values.
//
// Where a value comes from, highest precedence first:
//   runtime      set while the extension runs (ExtensionHost::set, `dynamos ext set`)
//   environment  DYNAMOS_<EXT>_<KEY>, upper case: DYNAMOS_PAGING_PREFETCH_BUDGET=256M
//   config       a line `ext.key = value` of the host's config file
//   default      the extension's own default
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "base/units.hpp"
#include "core/extension_abi.h"

namespace dynamos::core {

enum class TunableType { integer, floating, duration, size, enumeration, boolean };
// "integer", "float", "duration", "size", "enum", "boolean"
const char* tunable_type_name(TunableType type);

struct TunableValue {
  // integer, duration (ns), size (bytes), enum (choice index), boolean (0 or 1)
  std::int64_t integer = 0;
  // float; the other types converted to double
  double real = 0;
  bool operator==(const TunableValue&) const = default;
};

// A tunable as the host understands it: the checked form of a dynamos_tunable.
struct TunableSpec {
  std::string name;
  TunableType type = TunableType::integer;
  bool runtime = false;  // may change while the extension runs
  std::string help;
  std::optional<TunableValue> min, max;  // inclusive; numeric types only
  std::vector<std::string> choices;      // enum only
  TunableValue default_value;

  // Checks one entry of a descriptor: name, type, flags, help, bounds, choices, and a
  // default that parses and lies within the bounds.
  static Result<TunableSpec> from_abi(const dynamos_tunable& tunable);

  // Parses a value typed by a person and checks it against the type and range. The
  // message says what was wrong and what is accepted, e.g. "'2x' is not a size
  // (expected a size in [4KiB, 1GiB], e.g. 4096, 64K, 64M, 2GiB)".
  Result<TunableValue> parse(std::string_view text) const;
  // Checks a value already in numeric form (e.g. carried over from an older build).
  Result<void> check(const TunableValue& value) const;
  // The canonical text of a value; parse(format(v)) == v.
  std::string format(const TunableValue& value) const;
  // "[0, 100]", ">= 1ms", "one of demand, selective", "true or false", "any integer".
  std::string describe_range() const;
};

// The value syntaxes, usable on their own. Each refuses trailing garbage.
Result<std::int64_t> parse_integer(std::string_view text);
Result<double> parse_float(std::string_view text);
// Durations and sizes: base/units.hpp (parse_duration_ns, parse_size_bytes).
Result<bool> parse_boolean(std::string_view text);

enum class ValueSource { default_value, config_file, environment, runtime };
// "default", "config", "environment", "runtime"
const char* value_source_name(ValueSource source);

// The environment variable of a tunable: DYNAMOS_ + EXT + _ + KEY, upper case.
// Extension names have no '_' (see extension_abi.h), so the split is unambiguous.
std::string environment_variable(std::string_view extension, std::string_view key);

// Reads the environment; tests substitute their own.
using EnvironmentLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvironmentLookup process_environment();

// The host's config file: one `extension.key = value` a line; '#' starts a comment;
// blank lines are ignored; a key given twice is an error naming both lines.
struct ConfigFile {
  struct Entry {
    std::string value;
    int line = 0;
  };
  std::string path;                      // for messages; empty when parsed from text
  std::map<std::string, Entry> entries;  // key: "extension.key"

  static Result<ConfigFile> load(const std::string& path);
  static Result<ConfigFile> parse(std::string_view text, std::string path = {});
  const Entry* find(std::string_view extension, std::string_view key) const;
  // The keys of one extension ("key" without the prefix), for spotting misspellings.
  std::vector<std::string> keys_of(std::string_view extension) const;
  // "path:line" or "line N" when there is no path.
  std::string where(const Entry& entry) const;
};

struct ResolvedValue {
  TunableValue value;
  ValueSource source = ValueSource::default_value;
  std::string origin;  // "DYNAMOS_PAGING_BATCH", "/etc/dynamos.conf:12", or ""
};

// The value of a tunable at load: environment, then config file, then default. A
// malformed or out-of-range value from the environment or the file is an error that
// names the variable or file and line, never silently replaced by the default.
Result<ResolvedValue> resolve_tunable(const TunableSpec& spec, std::string_view extension,
                                      const ConfigFile* config, const EnvironmentLookup& env);

// [a-z][a-z0-9_]*, at most 64 characters (tunable keys); extension names use
// is_extension_name ([a-z][a-z0-9]*).
bool is_tunable_name(std::string_view name);
bool is_extension_name(std::string_view name);

}  // namespace dynamos::core
