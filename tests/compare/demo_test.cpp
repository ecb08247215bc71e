// dynamos demo --quick end to end: at most 90 s, every step shown, nothing left behind.
// Root (cgroups, swap); fails instead of skipping under CI=true.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "bench/compare/process.hpp"
#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::compare;
namespace fs = std::filesystem;
using dynamos::gang::test::TempDir;

TEST(Demo, QuickTourWithinNinetySeconds) {
  GANG_REQUIRE_ROOT();
  TempDir dir;
  const std::string out = dir / "out";
  const std::string state = dir / "state";
  const auto start = std::chrono::steady_clock::now();
  auto r = run_command({std::string(DYNAMOS_BIN_DIR) + "/dynamos", "demo", "--quick", "--out", out,
                        "--socket", state + "/gangd.sock"},
                       std::chrono::seconds(150));
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_FALSE(r->timed_out) << r->err << r->out;
  EXPECT_EQ(r->exit_code, 0) << r->err << r->out;
  EXPECT_LE(took, 90) << r->err;
  // Every step of the tour, in order.
  std::size_t at = 0;
  for (const char* step :
       {"1. virtual cluster", "2. cycle stealing on the idle node", "3. probe injected",
        "4. paging extension upgraded", "5. cycle stealing off", "6. comparison"}) {
    auto p = r->err.find(step, at);
    EXPECT_NE(p, std::string::npos) << "missing step '" << step << "' in:\n" << r->err;
    if (p != std::string::npos) at = p;
  }
  // The probe's counts of the rank's halo exchange, and the table.
  EXPECT_NE(r->err.find("MPI_Sendrecv"), std::string::npos) << r->err;
  EXPECT_NE(r->out.find("| stencil | demand |"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("| stencil | adaptive |"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("paging extension upgraded in place: yes"), std::string::npos) << r->out;
  std::ifstream f(out + "/results.json");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto j = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  ASSERT_EQ(j["runs"].size(), 2u);
  // Adaptive paging's run verified; demand paging's verified too, or one of its ranks
  // killed by the kernel's OOM killer, which the demo says.
  for (const auto& run : j["runs"]) {
    if (run["verified"].get<bool>()) continue;
    EXPECT_EQ(run["policy"].get<std::string>(), "demand") << run["error"].get<std::string>();
    EXPECT_NE(run["error"].get<std::string>().find("exit code 137"), std::string::npos)
        << run["error"].get<std::string>();
    EXPECT_NE(r->out.find("killed by the kernel"), std::string::npos) << r->out;
  }
  // Torn down: no cluster state, no gangd socket.
  EXPECT_FALSE(fs::exists(state + "/cluster.conf"));
  EXPECT_FALSE(fs::exists(state + "/gangd.sock"));
}
