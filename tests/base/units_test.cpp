// base/units: the one parser of durations and sizes that every command line, config
// file and tunable uses.
#include "base/units.hpp"

#include <gtest/gtest.h>

namespace dynamos {
namespace {

TEST(Units, DurationsParseWithUnitsOrAsSeconds) {
  EXPECT_EQ(*parse_duration_ns("250ms"), 250'000'000);
  EXPECT_EQ(*parse_duration_ns("1.5s"), 1'500'000'000);
  EXPECT_EQ(*parse_duration_ns("2min"), 120'000'000'000);
  EXPECT_EQ(*parse_duration_ns("1h30m"), 5'400'000'000'000);
  EXPECT_EQ(*parse_duration_ns(" 10us "), 10'000);
  EXPECT_EQ(*parse_duration_ns("0"), 0);
  EXPECT_EQ(*parse_duration_ns("0.1s"), 100'000'000);
  // A bare number is seconds (command lines have always taken "--quantum 2").
  EXPECT_EQ(*parse_duration_ns("250"), 250'000'000'000);
  EXPECT_EQ(*parse_duration_ns("1.5"), 1'500'000'000);
  EXPECT_EQ(parse_duration("1.5s")->count(), 1'500'000'000);
  for (const char* bad : {"", "1h30", "ms", "5 parsecs", "-1s", "1.5ns", "300000d", "2s3"}) {
    auto r = parse_duration_ns(bad);
    EXPECT_FALSE(r) << "'" << bad << "' was accepted as " << (r ? *r : 0) << " ns";
  }
  EXPECT_NE(parse_duration_ns("1h30").error().what.find("needs a unit"), std::string::npos);
}

TEST(Units, SizesParseBinaryAndDecimalUnits) {
  EXPECT_EQ(*parse_size_bytes("4096"), 4096);
  EXPECT_EQ(*parse_size_bytes("512B"), 512);
  EXPECT_EQ(*parse_size_bytes("64K"), 64 * 1024);
  EXPECT_EQ(*parse_size_bytes("64M"), 64LL << 20);
  EXPECT_EQ(*parse_size_bytes("64MiB"), 64LL << 20);
  EXPECT_EQ(*parse_size_bytes("2GiB"), 2LL << 30);
  EXPECT_EQ(*parse_size_bytes("1.5M"), 1536 * 1024);
  EXPECT_EQ(*parse_size_bytes("1GB"), 1'000'000'000);
  EXPECT_EQ(*parse_size_bytes("1kB"), 1000);
  EXPECT_EQ(*parse_size_bytes("2 g"), 2LL << 30);
  for (const char* bad : {"", "M", "-1K", "0.3B", "12 parsecs", "9E", "99999999999P"}) {
    auto r = parse_size_bytes(bad);
    EXPECT_FALSE(r) << "'" << bad << "' was accepted as " << (r ? *r : 0) << " bytes";
  }
}

TEST(Units, TimeLimitsReadSlurmForms) {
  EXPECT_EQ(*parse_time_limit_s("30"), 30 * 60);
  EXPECT_EQ(*parse_time_limit_s("5:30"), 5 * 60 + 30);
  EXPECT_EQ(*parse_time_limit_s("1:02:03"), 3723);
  EXPECT_EQ(*parse_time_limit_s("2-0"), 2 * 86'400);
  EXPECT_EQ(*parse_time_limit_s("1-2:30"), 86'400 + 2 * 3600 + 30 * 60);
  EXPECT_EQ(*parse_time_limit_s("1-00:00:10"), 86'410);
  EXPECT_EQ(*parse_time_limit_s("UNLIMITED"), 0);
  EXPECT_EQ(*parse_time_limit_s("infinite"), 0);
  for (const char* bad : {"", "0", "0:00", "-5", "1:2:3:4", "1-", "-1:00", "a", "5m", "1.5",
                          "1-2-3", "1::2", "9999999999"}) {
    auto r = parse_time_limit_s(bad);
    EXPECT_FALSE(r) << "'" << bad << "' was accepted as " << (r ? *r : 0) << " s";
  }
  EXPECT_NE(parse_time_limit_s("5m").error().message().find("MM:SS"), std::string::npos);
  EXPECT_EQ(format_time_limit_s(3723), "01:02:03");
  EXPECT_EQ(format_time_limit_s(86'410), "1-00:00:10");
  EXPECT_EQ(format_time_limit_s(0), "UNLIMITED");
  for (std::int64_t s : {60LL, 3723LL, 90'061LL})
    EXPECT_EQ(*parse_time_limit_s(format_time_limit_s(s)), s);
}

TEST(Units, FormatsReadBack) {
  for (std::int64_t ns : {0LL, 1LL, 1'500'000'000LL, 120'000'000'000LL, 250'000LL})
    EXPECT_EQ(*parse_duration_ns(format_duration_ns(ns)), ns);
  for (std::int64_t b : {0LL, 1LL, 4096LL, 3LL << 30, 1'000'000LL})
    EXPECT_EQ(*parse_size_bytes(format_size_bytes(b)), b);
  EXPECT_EQ(format_duration(std::chrono::milliseconds(1500)), "1.5s");
  EXPECT_EQ(format_duration(std::chrono::milliseconds(500)), "500ms");
}

}  // namespace
}  // namespace dynamos
