// base/log: levels, the threshold, ISO times off systemd and journal prefixes under it.
#include "base/log.hpp"

#include <gtest/gtest.h>

#include <regex>

namespace dynamos::log {
namespace {

TEST(Log, LinesCarryTimeProgramAndLevel) {
  set_program("gangd");
  auto line = format(Level::warning, "node n1 is late\nby 3 ms");
  EXPECT_TRUE(std::regex_match(
      line,
      std::regex(
          R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z gangd warning: node n1 is late by 3 ms\n)")))
      << line;
}

TEST(Log, ThresholdDropsLowerLevels) {
  set_level(Level::warning);
  EXPECT_TRUE(enabled(Level::error));
  EXPECT_TRUE(enabled(Level::warning));
  EXPECT_FALSE(enabled(Level::info));
  set_level(Level::info);
  EXPECT_TRUE(enabled(Level::info));
  EXPECT_FALSE(enabled(Level::debug));
}

TEST(Log, LevelsParseAndBadOnesAreRefused) {
  EXPECT_EQ(*parse_level("debug"), Level::debug);
  EXPECT_EQ(*parse_level("warn"), Level::warning);
  auto bad = parse_level("loud");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("'loud'"), std::string::npos);
}

}  // namespace
}  // namespace dynamos::log
