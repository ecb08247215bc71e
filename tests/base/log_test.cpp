// base/log: levels, the threshold, ISO times off systemd and journal prefixes under it.
#include "base/log.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <regex>
#include <vector>

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

// What `f` writes on standard error.
template <class F>
std::string stderr_of(F f) {
  std::FILE* tmp = std::tmpfile();
  int saved = ::dup(STDERR_FILENO);
  ::dup2(::fileno(tmp), STDERR_FILENO);
  f();
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  std::string out(4096, '\0');
  std::rewind(tmp);
  out.resize(std::fread(out.data(), 1, out.size(), tmp));
  std::fclose(tmp);
  return out;
}

// A component's warnings and errors come out as such, and --log-level filters them.
TEST(Log, ComponentLinesKeepTheirLevelAndTheThresholdFiltersThem) {
  set_program("dynamosd");
  Logger component = sink("node n1: ");
  set_level(Level::info);
  auto all = stderr_of([&] {
    component.warning("coordinator silent");
    component.error("cannot thaw job 3");
    component("job 3 adopted");
    component.debug("tick");
  });
  EXPECT_NE(all.find("dynamosd warning: node n1: coordinator silent\n"), std::string::npos) << all;
  EXPECT_NE(all.find("dynamosd error: node n1: cannot thaw job 3\n"), std::string::npos) << all;
  EXPECT_NE(all.find("dynamosd info: node n1: job 3 adopted\n"), std::string::npos) << all;
  EXPECT_EQ(all.find("tick"), std::string::npos) << all;
  set_level(Level::error);
  auto errors = stderr_of([&] {
    component.warning("coordinator silent");
    component.error("cannot thaw job 3");
  });
  set_level(Level::info);
  EXPECT_EQ(errors.find("coordinator silent"), std::string::npos) << errors;
  EXPECT_NE(errors.find("error: node n1: cannot thaw job 3"), std::string::npos) << errors;
}

TEST(Log, ALoggerTakesLevelledAndPlainCallbacksAndAnEmptyOneDrops) {
  std::vector<std::pair<Level, std::string>> seen;
  Logger levelled = [&](Level l, const std::string& line) { seen.emplace_back(l, line); };
  levelled.warning("w");
  levelled("i");
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::make_pair(Level::warning, std::string("w")));
  EXPECT_EQ(seen[1], std::make_pair(Level::info, std::string("i")));
  std::vector<std::string> lines;
  Logger plain = [&](const std::string& line) { lines.push_back(line); };
  plain.error("e");
  EXPECT_EQ(lines, std::vector<std::string>{"e"});
  Logger empty;
  EXPECT_FALSE(empty);
  EXPECT_TRUE(stderr_of([&] { empty.error("dropped"); }).empty());
}

}  // namespace
}  // namespace dynamos::log
