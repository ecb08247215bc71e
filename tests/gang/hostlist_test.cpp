// Slurm hostlists (SLURM_JOB_NODELIST, hostfiles, --node): what Slurm expands expands
// the same here; malformed input is named with its position; the expansion is bounded.
#include "gang/hostlist.hpp"

#include <gtest/gtest.h>

#include "gang/hostfile.hpp"

using namespace dynamos;
using namespace dynamos::gang;

namespace {

std::vector<std::string> expand(std::string_view text) {
  auto r = expand_hostlist(text);
  EXPECT_TRUE(r.has_value()) << text << ": " << r.error().message();
  return r ? *r : std::vector<std::string>{};
}

using Names = std::vector<std::string>;

}  // namespace

TEST(Hostlist, ExpandsSlurmSyntax) {
  EXPECT_EQ(expand("n1"), Names({"n1"}));
  EXPECT_EQ(expand("n1,n2,m7"), Names({"n1", "n2", "m7"}));
  EXPECT_EQ(expand("n[1-4,7]"), Names({"n1", "n2", "n3", "n4", "n7"}));
  EXPECT_EQ(expand("n[8-11]"), Names({"n8", "n9", "n10", "n11"}));
  EXPECT_EQ(expand("node-ib.[3]"), Names({"node-ib.3"}));
}

TEST(Hostlist, KeepsZeroPaddingOfTheLowerBound) {
  EXPECT_EQ(expand("n[01-03]"), Names({"n01", "n02", "n03"}));
  EXPECT_EQ(expand("n[098-101]"), Names({"n098", "n099", "n100", "n101"}));
  EXPECT_EQ(expand("n[9-10,011]"), Names({"n9", "n10", "n011"}));
}

TEST(Hostlist, SeveralBracketsGiveEveryCombinationLastFastest) {
  EXPECT_EQ(expand("r[1-2]n[3-4]"), Names({"r1n3", "r1n4", "r2n3", "r2n4"}));
  EXPECT_EQ(expand("r[1-2]n[3]-ib"), Names({"r1n3-ib", "r2n3-ib"}));
}

TEST(Hostlist, SeveralGroupsKeepOrderAndDuplicates) {
  EXPECT_EQ(expand("n1,m[2-3]"), Names({"n1", "m2", "m3"}));
  EXPECT_EQ(expand("gpu[1-2],n[1,3],gpu1"), Names({"gpu1", "gpu2", "n1", "n3", "gpu1"}));
}

TEST(Hostlist, MalformedInputIsNamed) {
  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"", "hostlist is empty"},
      {"n[1-3", "hostlist 'n[1-3': '[' without ']' (at character 2)"},
      {"n1-3]", "']' without '['"},
      {"n[1-[2]]", "brackets cannot nest"},
      {"n[3-1]", "range 3-1 runs backwards"},
      {"n[a-c]", "'a-c' is not a number or a range like 1-4 in brackets"},
      {"n[]", "'' is not a number"},
      {"n[1,]", "'' is not a number"},
      {"n[1-2-3]", "'1-2-3' is not a number"},
      {"n1,,n2", "empty host name (at character 4)"},
      {"n1,", "empty host name"},
      {"n 1", "' ' cannot be part of a host name"},
      {"n/1", "'/' cannot be part of a host name"},
  };
  for (const auto& c : cases) {
    auto r = expand_hostlist(c.text);
    ASSERT_FALSE(r.has_value()) << "'" << c.text << "' expanded";
    EXPECT_NE(r.error().message().find(c.expect), std::string::npos)
        << "'" << c.text << "': " << r.error().message();
  }
}

TEST(Hostlist, ExpansionIsBounded) {
  auto big = expand_hostlist("n[1-999999999]");
  ASSERT_FALSE(big.has_value());
  EXPECT_NE(big.error().message().find("more than 65536 hosts"), std::string::npos)
      << big.error().message();
  auto product = expand_hostlist("a[1-300]b[1-300]");  // 90000 from two small brackets
  ASSERT_FALSE(product.has_value());
  EXPECT_NE(product.error().message().find("more than"), std::string::npos);
  auto groups = expand_hostlist("a[1-3],b[1-3]", 5);  // the bound counts every group
  ASSERT_FALSE(groups.has_value());
  EXPECT_EQ(expand_hostlist("a[1-3],b[1-2]", 5)->size(), 5u);
}

TEST(Hostlist, HostfilesAcceptHostlists) {
  auto r = parse_hostfile("n[1-3] slots=2\nn2 slots=1\ngpu[01-02],x\n", "hosts");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), 6u);
  EXPECT_EQ((*r)[0].name, "n1");
  EXPECT_EQ((*r)[1].slots, 3) << "n2 listed twice adds its slots";
  EXPECT_EQ((*r)[3].name, "gpu01");
  EXPECT_EQ((*r)[5].name, "x");
  auto bad = parse_hostfile("ok\nn[2-1] slots=1\n", "hosts");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("hosts line 2: hostlist 'n[2-1]': range 2-1 runs backwards"),
            std::string::npos)
      << bad.error().message();
}
