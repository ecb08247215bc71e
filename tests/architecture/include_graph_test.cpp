// The folders stack (docs/architecture.md): each top-level folder includes only from
// the folders below it. This test reads every source file's #include "..." lines and
// fails on an include that points up the stack or sideways between parts that must
// stay apart, naming the file, the line and the rule it breaks.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

// The stack, lowest first. A part is a top-level folder, or a folder inside one where
// the two halves must not see each other. The longest matching prefix names a file's part.
struct Part {
  const char* prefix;
  int level;
};
constexpr Part kParts[] = {
    {"base/", 0},
    {"core/", 1},
    {"kernelside/", 2},
    {"extensions/", 3},  // what both extensions share (ABI glue, name tables)
    {"extensions/paging/", 3},
    {"extensions/cyclesteal/", 3},
    {"gang/", 4},  // protocol, auth, hostfiles, the agent's session: shared by what follows
    {"gang/client/", 5},
    {"gang/launch/", 5},
    {"gang/gangd/", 5},
    {"gang/dynamosd/", 5},
    {"gang/slurm/", 5},
    {"testkit/", 6},
    {"bench/", 7},
    {"cli/", 8},
    {"tests/", 9},
};

const Part* part_of(const std::string& path) {
  const Part* best = nullptr;
  for (const Part& p : kParts)
    if (path.rfind(p.prefix, 0) == 0 &&
        (!best || std::string(p.prefix).size() > std::string(best->prefix).size()))
      best = &p;
  return best;
}

// Parts on one level may not include each other (the two extensions, gangd and
// dynamosd), except where named here: who may use whom on the same level.
bool allowed_sideways(const std::string& from, const std::string& to) {
  static const std::multimap<std::string, std::string> ok = {
      {"extensions/paging/", "extensions/"}, {"extensions/cyclesteal/", "extensions/"},
      {"gang/launch/", "gang/client/"},  // dynamos-launch reports a job's exit to gangd
      {"gang/gangd/", "gang/client/"},   // the client's request types
      {"gang/dynamosd/", "gang/client/"},    {"gang/slurm/", "gang/client/"},
  };
  auto [a, b] = ok.equal_range(from);
  for (auto it = a; it != b; ++it)
    if (it->second == to) return true;
  return false;
}

// Includes that the levels allow but the design does not: the programs above gang/ talk
// to gangd through gang/client, never by linking its server in (testkit builds an
// in-process coordinator on purpose).
bool forbidden(const std::string& from, const std::string& to) {
  static const std::multimap<std::string, std::string> never = {
      {"bench/", "gang/gangd/"}, {"cli/", "gang/gangd/"}, {"bench/", "gang/dynamosd/"}};
  auto [a, b] = never.equal_range(from);
  for (auto it = a; it != b; ++it)
    if (it->second == to) return true;
  return false;
}

// gangd's scheduling decision is pure code (no sockets, no server): the queue pass and
// the placement matrix. bench/ measures it directly at scale (bench_gang_queue_pass).
bool pure_scheduling(const std::string& target) {
  return target == "gang/gangd/queue.hpp" || target == "gang/gangd/matrix.hpp";
}

std::vector<std::string> violations() {
  const fs::path root = DYNAMOS_SOURCE_DIR;
  const std::regex include_line(R"(^\s*#\s*include\s*"([^"]+)\")");
  std::vector<std::string> found;
  for (const Part& top : kParts) {
    std::string dir(top.prefix);
    if (dir.find('/') != dir.size() - 1) continue;  // walk each top-level folder once
    if (!fs::exists(root / dir)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / dir)) {
      if (!entry.is_regular_file()) continue;
      const std::string ext = entry.path().extension();
      if (ext != ".cpp" && ext != ".hpp" && ext != ".h" && ext != ".c") continue;
      const std::string rel = fs::relative(entry.path(), root).string();
      if (rel.rfind("kernelside/module/", 0) == 0) continue;  // kernel C, its own world
      const Part* from = part_of(rel);
      std::ifstream in(entry.path());
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        std::smatch m;
        if (!std::regex_search(line, m, include_line)) continue;
        const std::string target = m[1];
        const Part* to = part_of(target);
        if (!from || !to || from == to) continue;
        const std::string top_from = rel.substr(0, rel.find('/') + 1);
        if (forbidden(top_from, to->prefix) && !pure_scheduling(target)) {
          found.push_back(rel + ":" + std::to_string(n) + " includes " + target + ": " + top_from +
                          " talks to gangd through gang/client, not " + to->prefix);
          continue;
        }
        if (to->level < from->level) continue;
        if (to->level == from->level && allowed_sideways(from->prefix, to->prefix)) continue;
        found.push_back(rel + ":" + std::to_string(n) + " includes " + target + ": " +
                        from->prefix + " (level " + std::to_string(from->level) + ") may not use " +
                        to->prefix + " (level " + std::to_string(to->level) + ")");
      }
    }
  }
  return found;
}

TEST(Architecture, NoIncludePointsUpTheStack) {
  auto found = violations();
  std::string all;
  for (const auto& v : found)
    all += "  " + v + "\n";
  EXPECT_TRUE(found.empty()) << found.size() << " include(s) against docs/architecture.md:\n"
                             << all;
}

TEST(Architecture, TheRuleSeesAnUpwardInclude) {
  // The rule itself: a lower folder naming a higher one is refused, the other way is not.
  ASSERT_NE(part_of("kernelside/cgroup.cpp"), nullptr);
  EXPECT_LT(part_of("core/engine.hpp")->level, part_of("kernelside/fs.hpp")->level);
  EXPECT_LT(part_of("gang/protocol.hpp")->level, part_of("gang/gangd/coordinator.hpp")->level);
  EXPECT_EQ(part_of("gang/gangd/x.hpp")->level, part_of("gang/dynamosd/y.hpp")->level);
  EXPECT_FALSE(allowed_sideways("gang/gangd/", "gang/dynamosd/"));
  EXPECT_LT(part_of("bench/compare/harness.cpp")->level, part_of("cli/main.cpp")->level);
  EXPECT_TRUE(forbidden("bench/", "gang/gangd/"));
  EXPECT_FALSE(forbidden("testkit/", "gang/gangd/"));
  EXPECT_TRUE(pure_scheduling("gang/gangd/queue.hpp"));
  EXPECT_FALSE(pure_scheduling("gang/gangd/coordinator.hpp"));
}

}  // namespace
