// Open MPI hostfiles: what mpirun accepts parses the same, mistakes are named by line.
#include "gang/hostfile.hpp"

#include <gtest/gtest.h>

#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::gang;

TEST(Hostfile, ParsesOpenMpiSyntax) {
  auto r = parse_hostfile(
      "# cluster\n"
      "node01 slots=4\n"
      "\n"
      "node02 slots=2 max_slots=4   # comment\n"
      "node03\n"
      "node01 slots=2\n",
      "hosts");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].name, "node01");
  EXPECT_EQ((*r)[0].slots, 6) << "a repeated host adds its slots, as mpirun does";
  EXPECT_EQ((*r)[1].max_slots, 4);
  EXPECT_EQ((*r)[2].slots, 1) << "slots defaults to 1";
  auto again = parse_hostfile(format_hostfile(*r), "formatted");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->size(), 3u);
}

TEST(Hostfile, ErrorsNameTheLine) {
  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"a slots=4\nb slots=zero\n", "hosts line 2: slots must be a positive integer, got 'zero'"},
      {"a slots=0\n", "hosts line 1: slots must be a positive integer"},
      {"a slots=4 cpus=2\n", "hosts line 1: unknown option 'cpus'"},
      {"a 4\n", "hosts line 1: expected key=value, got '4'"},
      {"a/b slots=1\n", "hosts line 1: 'a/b' is not a host name"},
      {"a slots=4 max_slots=2\n", "hosts line 1: max_slots=2 is below slots=4"},
      {"# nothing\n\n", "hosts: no hosts"},
  };
  for (const auto& c : cases) {
    auto r = parse_hostfile(c.text, "hosts");
    ASSERT_FALSE(r) << "accepted: " << c.text;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_NE(r.error().message().find(c.expect), std::string::npos)
        << "for '" << c.text << "' got: " << r.error().message();
  }
}

TEST(Hostfile, ReadsFileAndReportsMissing) {
  test::TempDir dir;
  auto r = read_hostfile(dir / "nope");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("open hostfile"), std::string::npos);
}
