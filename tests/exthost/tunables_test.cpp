// The tunable syntaxes, range checks, config file and source precedence, without any
// extension loaded.
#include "core/tunables.hpp"

#include <gtest/gtest.h>

#include <map>

namespace dynamos::core {
namespace {

TunableSpec spec_of(const dynamos_tunable& t) {
  auto s = TunableSpec::from_abi(t);
  EXPECT_TRUE(s) << (s ? "" : s.error().message());
  return s ? *s : TunableSpec{};
}

TEST(ExtTunables, IntegersFloatsBooleans) {
  EXPECT_EQ(*parse_integer("42"), 42);
  EXPECT_EQ(*parse_integer("-7"), -7);
  EXPECT_EQ(*parse_integer("0x40"), 64);
  EXPECT_EQ(*parse_integer("-9223372036854775808"), INT64_MIN);
  EXPECT_FALSE(parse_integer("9223372036854775808"));
  EXPECT_FALSE(parse_integer("1.5"));
  EXPECT_FALSE(parse_integer("12abc"));
  EXPECT_FALSE(parse_integer("--1"));
  EXPECT_DOUBLE_EQ(*parse_float("0.25"), 0.25);
  EXPECT_DOUBLE_EQ(*parse_float("1e-3"), 0.001);
  EXPECT_FALSE(parse_float("nan"));
  EXPECT_FALSE(parse_float("inf"));
  EXPECT_FALSE(parse_float("1,5"));
  for (const char* yes : {"true", "YES", "on", "1"})
    EXPECT_TRUE(*parse_boolean(yes)) << yes;
  for (const char* no : {"false", "No", "off", "0"})
    EXPECT_FALSE(*parse_boolean(no)) << no;
  EXPECT_FALSE(parse_boolean("maybe"));
}

TEST(ExtTunables, FormatRoundTrips) {
  EXPECT_EQ(format_duration_ns(1'500'000'000), "1500ms");
  EXPECT_EQ(format_duration_ns(120'000'000'000), "2min");
  EXPECT_EQ(format_duration_ns(7), "7ns");
  EXPECT_EQ(format_size_bytes(64LL << 20), "64MiB");
  EXPECT_EQ(format_size_bytes(1'000'000), "1000000B");
  for (std::int64_t ns : {0LL, 1LL, 999LL, 1'000'000LL, 90'000'000'000LL, 3'600'000'000'001LL})
    EXPECT_EQ(*parse_duration_ns(format_duration_ns(ns)), ns) << format_duration_ns(ns);
  for (std::int64_t b : {0LL, 1LL, 1023LL, 1024LL, 1536LL, 3LL << 40})
    EXPECT_EQ(*parse_size_bytes(format_size_bytes(b)), b) << format_size_bytes(b);
}

TEST(ExtTunables, RangeAndTypeErrorsNameTheRange) {
  auto budget = spec_of({"budget", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "64M", "4K", "1G",
                         nullptr, "prefetch budget"});
  auto too_big = budget.parse("2G");
  ASSERT_FALSE(too_big);
  EXPECT_NE(too_big.error().what.find("out of range [4KiB, 1GiB]"), std::string::npos)
      << too_big.error().what;
  auto wrong_type = budget.parse("lots");
  ASSERT_FALSE(wrong_type);
  EXPECT_NE(wrong_type.error().what.find("expected a size in [4KiB, 1GiB]"), std::string::npos)
      << wrong_type.error().what;
  EXPECT_EQ(budget.parse("1G")->integer, 1LL << 30);  // bounds are inclusive

  static const char* const choices[] = {"demand", "adaptive", nullptr};
  auto policy = spec_of(
      {"policy", DYNAMOS_TUNABLE_ENUM, 0, "demand", nullptr, nullptr, choices, "paging policy"});
  EXPECT_EQ(policy.parse("adaptive")->integer, 1);
  auto unknown = policy.parse("lazy");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().what.find("one of demand, adaptive"), std::string::npos)
      << unknown.error().what;
}

TEST(ExtTunables, BrokenDescriptorsAreRefused) {
  static const char* const none[] = {nullptr};
  static const char* const twice[] = {"a", "a", nullptr};
  const dynamos_tunable bad[] = {
      {"Budget", DYNAMOS_TUNABLE_SIZE, 0, "1M", nullptr, nullptr, nullptr, "upper case name"},
      {"budget", 99, 0, "1M", nullptr, nullptr, nullptr, "unknown type"},
      {"budget", DYNAMOS_TUNABLE_SIZE, 0, "2G", "0", "1G", nullptr, "default out of range"},
      {"budget", DYNAMOS_TUNABLE_SIZE, 0, "1M", "1G", "0", nullptr, "min above max"},
      {"budget", DYNAMOS_TUNABLE_SIZE, 0, "1M", nullptr, nullptr, nullptr, nullptr},
      {"budget", DYNAMOS_TUNABLE_SIZE, 8, "1M", nullptr, nullptr, nullptr, "unknown flag"},
      {"policy", DYNAMOS_TUNABLE_ENUM, 0, "a", nullptr, nullptr, none, "no choices"},
      {"policy", DYNAMOS_TUNABLE_ENUM, 0, "a", nullptr, nullptr, twice, "a choice twice"},
      {"flag", DYNAMOS_TUNABLE_BOOLEAN, 0, "true", "0", "1", nullptr, "range on a boolean"},
      {"budget", DYNAMOS_TUNABLE_SIZE, 0, nullptr, nullptr, nullptr, nullptr, "no default"},
  };
  for (const auto& t : bad) {
    auto s = TunableSpec::from_abi(t);
    EXPECT_FALSE(s) << "accepted: " << (t.help ? t.help : "(no help)");
  }
}

TEST(ExtTunables, ConfigFileSyntax) {
  auto c = ConfigFile::parse(
      "# comment\n"
      "paging.prefetch_budget = 256M   # trailing comment\n"
      "\n"
      "  cyclesteal.policy=linger\n",
      "/etc/dynamos.conf");
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_NE(c->find("paging", "prefetch_budget"), nullptr);
  EXPECT_EQ(c->find("paging", "prefetch_budget")->value, "256M");
  EXPECT_EQ(c->where(*c->find("cyclesteal", "policy")), "/etc/dynamos.conf:4");
  EXPECT_EQ(c->find("paging", "policy"), nullptr);

  auto dup = ConfigFile::parse("a.b = 1\na.b = 2\n", "x.conf");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().what.find("x.conf:2: a.b is already set on line 1"), std::string::npos)
      << dup.error().what;
  EXPECT_FALSE(ConfigFile::parse("just words\n"));
  EXPECT_FALSE(ConfigFile::parse("noext = 1\n"));
  EXPECT_FALSE(ConfigFile::parse("a.b =\n"));
  EXPECT_FALSE(ConfigFile::load("/nonexistent/dynamos.conf"));
}

TEST(ExtTunables, PrecedenceEnvironmentThenConfigThenDefault) {
  auto level = spec_of({"level", DYNAMOS_TUNABLE_INTEGER, DYNAMOS_TUNABLE_RUNTIME, "10", "0", "100",
                        nullptr, "level"});
  std::map<std::string, std::string> env;
  EnvironmentLookup lookup = [&](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  EXPECT_EQ(environment_variable("every", "level"), "DYNAMOS_EVERY_LEVEL");
  auto config = *ConfigFile::parse("every.level = 30\n", "test.conf");

  auto r = resolve_tunable(level, "every", nullptr, lookup);
  EXPECT_EQ(r->source, ValueSource::default_value);
  EXPECT_EQ(r->value.integer, 10);
  r = resolve_tunable(level, "every", &config, lookup);
  EXPECT_EQ(r->source, ValueSource::config_file);
  EXPECT_EQ(r->origin, "test.conf:1");
  EXPECT_EQ(r->value.integer, 30);
  env["DYNAMOS_EVERY_LEVEL"] = "20";
  r = resolve_tunable(level, "every", &config, lookup);
  EXPECT_EQ(r->source, ValueSource::environment);
  EXPECT_EQ(r->origin, "DYNAMOS_EVERY_LEVEL");
  EXPECT_EQ(r->value.integer, 20);
  // A bad value is an error naming where it came from, never replaced by the default.
  env["DYNAMOS_EVERY_LEVEL"] = "200";
  r = resolve_tunable(level, "every", &config, lookup);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("DYNAMOS_EVERY_LEVEL"), std::string::npos) << r.error().what;
  EXPECT_NE(r.error().what.find("[0, 100]"), std::string::npos) << r.error().what;
}

}  // namespace
}  // namespace dynamos::core
