#include "core/tunables.hpp"
#include "base/names.hpp"

#include "base/file.hpp"
#include "base/text.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace dynamos::core {

namespace {

using text::lower;
using text::quoted;
using text::trim;

bool is_lower_ident(std::string_view name, bool underscores) {
  if (name.empty() || name.size() > 64) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  return std::all_of(name.begin(), name.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (underscores && c == '_');
  });
}

// The words for each type, in the order of TunableType.
struct TypeWords {
  TunableType type;
  std::uint32_t abi;    // its DYNAMOS_TUNABLE_* in extension descriptors
  const char* name;     // tunable_type_name
  const char* article;  // "expected an integer"
  const char* example;  // shown with a parse error
};
constexpr TypeWords kTypeWords[] = {
    {TunableType::integer, DYNAMOS_TUNABLE_INTEGER, "integer", "an integer", "e.g. 42, -7, 0x40"},
    {TunableType::floating, DYNAMOS_TUNABLE_FLOAT, "float", "a number", "e.g. 0.25, 1e-3"},
    {TunableType::duration, DYNAMOS_TUNABLE_DURATION, "duration", "a duration",
     "e.g. 250ms, 1.5s, 2min"},
    {TunableType::size, DYNAMOS_TUNABLE_SIZE, "size", "a size", "e.g. 4096, 64K, 64M, 2GiB"},
    {TunableType::enumeration, DYNAMOS_TUNABLE_ENUM, "enum", "a choice", ""},
    {TunableType::boolean, DYNAMOS_TUNABLE_BOOLEAN, "boolean", "a boolean",
     "true/false, yes/no, on/off, 1/0"},
};
static_assert(std::size(kTypeWords) == static_cast<std::size_t>(TunableType::boolean) + 1);

const TypeWords* words_of(TunableType type) {
  for (const auto& w : kTypeWords)
    if (w.type == type) return &w;
  return nullptr;
}

const char* example_of(TunableType type) {
  const TypeWords* w = words_of(type);
  return w ? w->example : "";
}

const char* article_type(TunableType type) {
  const TypeWords* w = words_of(type);
  return w ? w->article : "a value";
}

// The value of a type stored as a whole number (all but float).
TunableValue whole(std::int64_t n) {
  return {n, static_cast<double>(n)};
}
Result<TunableValue> whole(const Result<std::int64_t>& r) {
  if (!r) return std::unexpected(r.error());
  return whole(*r);
}

// Parses text as the type alone, without the range.
Result<TunableValue> parse_as(const TunableSpec& spec, std::string_view text) {
  switch (spec.type) {
    case TunableType::integer:
      return whole(parse_integer(text));
    case TunableType::floating: {
      auto r = parse_float(text);
      if (!r) return std::unexpected(r.error());
      return TunableValue{static_cast<std::int64_t>(*r), *r};
    }
    case TunableType::duration: {
      // base/units reads a bare number as seconds; a tunable keeps "a unit is
      // required" (docs/extensions.md): "5" for a period in ms is likelier a mistake.
      std::string_view t = trim(text);
      if (t != "0" && !t.empty() && t.find_first_not_of("0123456789.") == std::string_view::npos)
        return fail(Errc::invalid_argument,
                    "'" + std::string(t) + "' needs a unit (ns, us, ms, s, min, h, d)");
      return whole(parse_duration_ns(text));
    }
    case TunableType::size:
      return whole(parse_size_bytes(text));
    case TunableType::boolean: {
      auto r = parse_boolean(text);
      if (!r) return std::unexpected(r.error());
      return whole(*r ? 1 : 0);
    }
    case TunableType::enumeration: {
      std::string_view t = trim(text);
      for (std::size_t i = 0; i < spec.choices.size(); ++i)
        if (spec.choices[i] == t) return whole(static_cast<std::int64_t>(i));
      return fail(Errc::invalid_argument, quoted(t) + " is not one of the choices");
    }
  }
  return fail(Errc::invalid_argument, "unknown tunable type");
}

int compare(TunableType type, const TunableValue& a, const TunableValue& b) {
  if (type == TunableType::floating) return a.real < b.real ? -1 : (a.real > b.real ? 1 : 0);
  return a.integer < b.integer ? -1 : (a.integer > b.integer ? 1 : 0);
}

}  // namespace

const char* tunable_type_name(TunableType type) {
  const TypeWords* w = words_of(type);
  return w ? w->name : "unknown";
}

const char* value_source_name(ValueSource source) {
  static constexpr const char* kNames[] = {"default", "config", "environment",
                                           "runtime"};  // in enum order
  return enum_name(kNames, source, "unknown");
}

bool is_tunable_name(std::string_view name) {
  return is_lower_ident(name, true);
}
bool is_extension_name(std::string_view name) {
  return is_lower_ident(name, false);
}

Result<std::int64_t> parse_integer(std::string_view text) {
  std::string_view s = trim(text);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  if (s.empty() || s[0] == '+' || s[0] == '-')
    return fail(Errc::invalid_argument, quoted(trim(text)) + " is not an integer");
  std::uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), magnitude, base);
  if (ec == std::errc::result_out_of_range)
    return fail(Errc::invalid_argument, quoted(trim(text)) + " does not fit in 64 bits");
  if (ec != std::errc{} || end != s.data() + s.size())
    return fail(Errc::invalid_argument, quoted(trim(text)) + " is not an integer");
  constexpr std::uint64_t max = std::numeric_limits<std::int64_t>::max();
  if (magnitude > max + (negative ? 1 : 0))
    return fail(Errc::invalid_argument, quoted(trim(text)) + " does not fit in 64 bits");
  if (negative) return static_cast<std::int64_t>(0 - magnitude);
  return static_cast<std::int64_t>(magnitude);
}

Result<double> parse_float(std::string_view text) {
  std::string_view s = trim(text);
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size())
    return fail(Errc::invalid_argument, quoted(trim(text)) + " is not a number");
  if (!std::isfinite(v))
    return fail(Errc::invalid_argument, quoted(trim(text)) + " is not a finite number");
  return v;
}

Result<bool> parse_boolean(std::string_view text) {
  std::string t = lower(trim(text));
  if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
  if (t == "false" || t == "no" || t == "off" || t == "0") return false;
  return fail(Errc::invalid_argument,
              quoted(trim(text)) + " is not a boolean (true/false, yes/no, on/off, 1/0)");
}

Result<TunableSpec> TunableSpec::from_abi(const dynamos_tunable& t) {
  TunableSpec spec;
  if (!t.name) return fail(Errc::invalid_argument, "a tunable has no name");
  spec.name = t.name;
  auto bad = [&](std::string why) {
    return fail(Errc::invalid_argument, "tunable '" + spec.name + "': " + why);
  };
  if (!is_tunable_name(spec.name))
    return bad("the name must be lower case letters, digits and '_', starting with a letter");
  auto words = std::find_if(std::begin(kTypeWords), std::end(kTypeWords),
                            [&](const TypeWords& w) { return w.abi == t.type; });
  if (words == std::end(kTypeWords)) return bad("unknown type " + std::to_string(t.type));
  spec.type = words->type;
  if (t.flags & ~DYNAMOS_TUNABLE_RUNTIME) return bad("unknown flags " + std::to_string(t.flags));
  spec.runtime = (t.flags & DYNAMOS_TUNABLE_RUNTIME) != 0;
  if (!t.help || !*t.help) return bad("no help text");
  spec.help = t.help;

  const bool numeric = spec.type != TunableType::enumeration && spec.type != TunableType::boolean;
  if (spec.type == TunableType::enumeration) {
    if (!t.choices || !t.choices[0]) return bad("an enum needs at least one choice");
    for (const char* const* c = t.choices; *c; ++c) {
      std::string_view choice = *c;
      if (choice.empty() || choice != trim(choice) || choice.find(',') != choice.npos)
        return bad("choice '" + std::string(choice) + "' is empty or has spaces or commas");
      if (std::find(spec.choices.begin(), spec.choices.end(), choice) != spec.choices.end())
        return bad("choice '" + std::string(choice) + "' is listed twice");
      spec.choices.emplace_back(choice);
    }
  } else if (t.choices) {
    return bad("only an enum has choices");
  }
  if (!numeric && (t.min || t.max)) return bad("only numeric tunables have a range");
  if (t.min) {
    auto v = parse_as(spec, t.min);
    if (!v) return bad("minimum: " + v.error().what);
    spec.min = *v;
  }
  if (t.max) {
    auto v = parse_as(spec, t.max);
    if (!v) return bad("maximum: " + v.error().what);
    spec.max = *v;
  }
  if (spec.min && spec.max && compare(spec.type, *spec.min, *spec.max) > 0)
    return bad("minimum " + std::string(t.min) + " is above maximum " + std::string(t.max));
  if (!t.default_value) return bad("no default value");
  auto d = spec.parse(t.default_value);
  if (!d) return bad("default: " + d.error().what);
  spec.default_value = *d;
  return spec;
}

std::string TunableSpec::describe_range() const {
  switch (type) {
    case TunableType::enumeration: {
      std::string out = "one of ";
      for (std::size_t i = 0; i < choices.size(); ++i)
        out += (i ? ", " : "") + choices[i];
      return out;
    }
    case TunableType::boolean:
      return "true or false";
    default:
      break;
  }
  if (min && max) return "[" + format(*min) + ", " + format(*max) + "]";
  if (min) return ">= " + format(*min);
  if (max) return "<= " + format(*max);
  return std::string("any ") + tunable_type_name(type);
}

Result<void> TunableSpec::check(const TunableValue& value) const {
  if (type == TunableType::enumeration) {
    if (value.integer < 0 || static_cast<std::size_t>(value.integer) >= choices.size())
      return fail(Errc::invalid_argument, "choice " + std::to_string(value.integer) +
                                              " does not exist (" + describe_range() + ")");
    return {};
  }
  if (type == TunableType::boolean) {
    if (value.integer != 0 && value.integer != 1)
      return fail(Errc::invalid_argument, "a boolean is 0 or 1");
    return {};
  }
  if ((min && compare(type, value, *min) < 0) || (max && compare(type, value, *max) > 0))
    return fail(Errc::invalid_argument, format(value) + " is out of range " + describe_range());
  return {};
}

Result<TunableValue> TunableSpec::parse(std::string_view text) const {
  auto v = parse_as(*this, text);
  if (!v) {
    std::string expected = "expected ";
    if (type == TunableType::enumeration) {
      expected += describe_range();
    } else {
      expected += std::string(article_type(type));
      if (min || max) expected += " in " + describe_range();
      expected += std::string(", ") + example_of(type);
    }
    return fail(Errc::invalid_argument, v.error().what + " (" + expected + ")");
  }
  if (auto ok = check(*v); !ok) return std::unexpected(ok.error());
  return v;
}

std::string TunableSpec::format(const TunableValue& value) const {
  switch (type) {
    case TunableType::integer:
      return std::to_string(value.integer);
    case TunableType::floating: {
      char buf[64];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value.real);
      return ec == std::errc{} ? std::string(buf, end) : std::string("?");
    }
    case TunableType::duration:
      return format_duration_ns(value.integer);
    case TunableType::size:
      return format_size_bytes(value.integer);
    case TunableType::boolean:
      return value.integer ? "true" : "false";
    case TunableType::enumeration:
      if (value.integer >= 0 && static_cast<std::size_t>(value.integer) < choices.size())
        return choices[static_cast<std::size_t>(value.integer)];
      return "?";
  }
  return "?";
}

std::string environment_variable(std::string_view extension, std::string_view key) {
  std::string name = "DYNAMOS_";
  for (char c : extension)
    name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  name += '_';
  for (char c : key)
    name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

EnvironmentLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    // getenv is safe against concurrent getenv; the host never calls setenv.
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

Result<ConfigFile> ConfigFile::load(const std::string& path) {
  auto text = read_whole_file(path, "config file");
  if (!text) return std::unexpected(text.error());
  return parse(*text, path);
}

Result<ConfigFile> ConfigFile::parse(std::string_view text, std::string path) {
  ConfigFile config;
  config.path = std::move(path);
  int number = 0;
  while (!text.empty()) {
    ++number;
    std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == text.npos ? text.size() : eol + 1);
    if (auto hash = line.find('#'); hash != line.npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    Entry probe{{}, number};
    auto bad = [&](std::string why) {
      return fail(Errc::invalid_argument, config.where(probe) + ": " + why);
    };
    std::size_t eq = line.find('=');
    if (eq == line.npos) return bad("expected 'extension.key = value'");
    std::string_view key = trim(line.substr(0, eq));
    std::string_view value = trim(line.substr(eq + 1));
    std::size_t dot = key.find('.');
    if (dot == key.npos || !is_extension_name(key.substr(0, dot)) ||
        !is_tunable_name(key.substr(dot + 1)))
      return bad("'" + std::string(key) +
                 "' is not 'extension.key' (lower case; the extension name without '_')");
    if (value.empty()) return bad("no value for " + std::string(key));
    auto [it, inserted] =
        config.entries.emplace(std::string(key), Entry{std::string(value), number});
    if (!inserted)
      return bad(std::string(key) + " is already set on line " + std::to_string(it->second.line));
  }
  return config;
}

const ConfigFile::Entry* ConfigFile::find(std::string_view extension, std::string_view key) const {
  auto it = entries.find(std::string(extension) + "." + std::string(key));
  return it == entries.end() ? nullptr : &it->second;
}

std::vector<std::string> ConfigFile::keys_of(std::string_view extension) const {
  std::vector<std::string> keys;
  std::string prefix = std::string(extension) + ".";
  for (const auto& [key, entry] : entries)
    if (key.starts_with(prefix)) keys.push_back(key.substr(prefix.size()));
  return keys;
}

std::string ConfigFile::where(const Entry& entry) const {
  if (path.empty()) return "config line " + std::to_string(entry.line);
  return path + ":" + std::to_string(entry.line);
}

Result<ResolvedValue> resolve_tunable(const TunableSpec& spec, std::string_view extension,
                                      const ConfigFile* config, const EnvironmentLookup& env) {
  const std::string full = std::string(extension) + "." + spec.name;
  std::string var = environment_variable(extension, spec.name);
  if (env) {
    if (auto text = env(var)) {
      auto v = spec.parse(*text);
      if (!v)
        return fail(Errc::invalid_argument,
                    full + " from environment variable " + var + ": " + v.error().what);
      return ResolvedValue{*v, ValueSource::environment, var};
    }
  }
  if (config) {
    if (const auto* entry = config->find(extension, spec.name)) {
      auto v = spec.parse(entry->value);
      if (!v)
        return fail(Errc::invalid_argument,
                    full + " from " + config->where(*entry) + ": " + v.error().what);
      return ResolvedValue{*v, ValueSource::config_file, config->where(*entry)};
    }
  }
  return ResolvedValue{spec.default_value, ValueSource::default_value, ""};
}

}  // namespace dynamos::core
