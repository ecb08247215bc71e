// Remote live update through the CLI (dynamos patch | revert | updates) and the
// library, against real running processes: PIE and non-PIE, stripped, C and C++,
// 16 busy threads, every rank of an MPI job; refusals that leave the target
// unharmed; a tool killed at random moments; 1,000 patch/revert cycles.
#include <gtest/gtest.h>
#include <pwd.h>

#include <fstream>
#include <functional>
#include <random>
#include <regex>

#include "core/engine.hpp"
#include "core/remote.hpp"
#include "core/remote_state.hpp"
#include "core/symbols.hpp"
#include "testkit/process.hpp"
#include "testkit/reachable.hpp"

using namespace remote_test;
using namespace dynamos;
using namespace dynamos::core;
using namespace std::chrono_literals;

namespace {

const std::string kCli = DYNAMOS_CLI;
const std::string kPatch = PATCH_SO;

Output cli(std::vector<std::string> args) {
  args.insert(args.begin(), kCli);
  return run(std::move(args));
}

std::string pid_of(const Program& t) {
  return std::to_string(t.pid());
}

// The id printed on the last line, "update ID".
unsigned long update_id(const Output& o) {
  std::smatch m;
  static const std::regex re("update ([0-9]+)\\s*$");
  return std::regex_search(o.out, m, re) ? std::stoul(m[1]) : 0;
}

char proc_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(in, s);
  const auto close = s.rfind(')');
  return close == std::string::npos || close + 2 >= s.size() ? '?' : s[close + 2];
}

std::string tracer_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("TracerPid:", 0) == 0) return line.substr(10);
  return "?";
}

#define EXPECT_RUNS_ON(t)                  \
  do {                                     \
    std::string why;                       \
    EXPECT_TRUE((t).runs_on(&why)) << why; \
  } while (0)

void patch_and_revert(Program& t, const std::string& expect_before) {
  ASSERT_TRUE(t.wait_for(expect_before)) << "target output: " << t.last_line();
  auto p = cli({"patch", pid_of(t), "--replace", "compute=" + kPatch});
  ASSERT_EQ(p.status, 0) << p.err;
  const auto id = update_id(p);
  ASSERT_GT(id, 0u) << "no 'update ID' line in: " << p.out;
  EXPECT_NE(p.out.find("target stopped for"), std::string::npos) << p.out;
  EXPECT_TRUE(t.wait_for("result 1014")) << "patch did not take effect: " << t.last_line();

  auto u = cli({"updates", pid_of(t)});
  ASSERT_EQ(u.status, 0) << u.err;
  EXPECT_NE(u.out.find("compute: original -> libremote_patch.so:compute"), std::string::npos)
      << u.out;
  EXPECT_NE(u.out.find("applied"), std::string::npos) << u.out;

  auto r = cli({"revert", pid_of(t), std::to_string(id)});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(t.wait_for(expect_before)) << "revert did not take effect: " << t.last_line();
  EXPECT_NE(cli({"updates", pid_of(t)}).out.find("reverted"), std::string::npos);
  EXPECT_RUNS_ON(t);
  EXPECT_EQ(tracer_of(t.pid()), "\t0") << "the target is still traced after the tool exited";
}

}  // namespace

TEST(RemotePatch, PieTargetPatchUpdatesRevert) {
  Program t({TARGET_PIE, "4"});
  patch_and_revert(t, "result 14 ");
}

TEST(RemotePatch, NonPieTarget) {
  Program t({TARGET_NOPIE, "4"});
  patch_and_revert(t, "result 14 ");
}

TEST(RemotePatch, CxxTargetWithExceptionsInFlight) {
  Program t({TARGET_CXX, "4"});
  ASSERT_TRUE(t.wait_for("result 14 "));
  auto p = cli({"patch", pid_of(t), "--replace", std::string("_ZN3app7computeEi=") + PATCH_CXX_SO});
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_TRUE(t.wait_for("result 1014")) << t.last_line();
  // Exceptions keep being thrown through the redirected function and caught.
  std::smatch m;
  auto caught = [&] {
    const std::string l = t.last_line();
    return std::regex_search(l, m, std::regex("caught ([0-9]+)")) ? std::stol(m[1]) : -1L;
  };
  const long before = caught();
  std::this_thread::sleep_for(200ms);
  EXPECT_GT(caught(), before) << "no exceptions caught after the patch: " << t.last_line();
  EXPECT_RUNS_ON(t);
}

TEST(RemotePatch, StaticFunctionAndLibraryFunctionInOneUpdate) {
  Program t({TARGET_PIE, "4"});
  ASSERT_TRUE(t.wait_for("hidden 107 lib 57"));
  auto p = cli({"patch", pid_of(t), "--replace", "hidden_compute=" + kPatch + ":hidden_v2",
                "--replace", "lib_compute=" + kPatch + ":lib_v2", "--mode", "quiescent"});
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_TRUE(t.wait_for("hidden 207 lib 507")) << t.last_line();
  EXPECT_RUNS_ON(t);
}

TEST(RemotePatch, StrippedExecutableOwnSymbolsNotFoundLibrariesWork) {
  Program t({TARGET_STRIPPED, "4"});
  ASSERT_TRUE(t.wait_for("lib 57"));
  auto own = cli({"patch", pid_of(t), "--replace", "hidden_compute=" + kPatch + ":hidden_v2"});
  EXPECT_NE(own.status, 0);
  EXPECT_NE(own.err.find("no function named 'hidden_compute'"), std::string::npos) << own.err;
  auto lib = cli({"patch", pid_of(t), "--replace", "lib_compute=" + kPatch + ":lib_v2"});
  ASSERT_EQ(lib.status, 0) << lib.err;
  EXPECT_TRUE(t.wait_for("lib 507")) << t.last_line();
  EXPECT_RUNS_ON(t);
}

TEST(RemotePatch, SixteenBusyThreads) {
  Program t({TARGET_PIE, "16"});
  patch_and_revert(t, "result 14 ");
}

TEST(RemoteProbe, CountsAndTimesCallsThenRemovesItself) {
  Program t({TARGET_PIE, "4"});
  ASSERT_TRUE(t.wait_for("result 14 "));
  auto o = cli({"probe", pid_of(t), "compute", "lib_compute", "--seconds", "1", "--json"});
  ASSERT_EQ(o.status, 0) << o.err;
  std::smatch m;
  const std::regex line(
      "\\{\"function\":\"([a-z_]+)\",\"calls\":([0-9]+),\"calls_per_s\":[0-9.]+,"
      "\"mean_ns\":([0-9.]+),\"timed_calls\":([0-9]+)");
  int seen = 0;
  for (auto it = std::sregex_iterator(o.out.begin(), o.out.end(), line);
       it != std::sregex_iterator(); ++it) {
    ++seen;
    const auto& r = *it;
    EXPECT_GT(std::stoul(r[2]), 1000u) << r[1] << " was hardly called: " << o.out;
    EXPECT_GT(std::stod(r[3]), 0.0) << r[1] << " has no mean time: " << o.out;
    EXPECT_GT(std::stoul(r[4]), 0u) << r[1] << " had no timed calls: " << o.out;
  }
  EXPECT_EQ(seen, 2) << "one JSON line per function expected: " << o.out;
  // The probes are gone and the functions behave as before.
  EXPECT_TRUE(t.wait_for("result 14 ")) << t.last_line();
  EXPECT_NE(cli({"updates", pid_of(t)}).out.find("reverted"), std::string::npos);
  EXPECT_RUNS_ON(t);
  auto bad = cli({"probe", pid_of(t), "no_such_function", "--seconds", "1"});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("no function named 'no_such_function'"), std::string::npos) << bad.err;
}

// The first patch of a process bootstraps the engine there (several calls in a row
// on one thread): twenty fresh busy processes must all survive it.
TEST(RemotePatch, FirstPatchOfTwentyFreshProcesses) {
  for (int i = 0; i < 20; ++i) {
    Program t({TARGET_PIE, "8"});
    ASSERT_TRUE(t.wait_for("result 14 ")) << "run " << i;
    auto p = cli({"patch", pid_of(t), "--replace", "compute=" + kPatch});
    ASSERT_EQ(p.status, 0) << "run " << i << ": " << p.err;
    ASSERT_TRUE(t.wait_for("result 1014")) << "run " << i << ": " << t.last_line();
    std::string why;
    ASSERT_TRUE(t.runs_on(&why)) << "run " << i << ": " << why;
  }
}

TEST(RemoteRefusals, ClearErrorsAndTheTargetUnharmed) {
  Program t({TARGET_PIE, "4"});
  ASSERT_TRUE(t.wait_for("result 14 "));
  const std::string pid = pid_of(t);
  struct Case {
    std::vector<std::string> args;
    const char* message;
  };
  const Case cases[] = {
      {{"patch", "999999", "--replace", "compute=" + kPatch}, "no such process 999999"},
      {{"patch", pid, "--replace", "no_such_function=" + kPatch},
       "no function named 'no_such_function'"},
      {{"patch", pid, "--replace", "compute=/nonexistent/patch.so"}, "no such file"},
      {{"patch", pid, "--replace", "compute=/etc/hostname"}, "not an ELF file"},
      {{"patch", pid, "--replace", "compute=" + std::string(TARGET_PIE)},
       "not an ELF shared object"},
      {{"patch", pid, "--replace", "compute=" + kPatch + ":no_such_new"},
       "no function named 'no_such_new'"},
      {{"patch", pid, "--replace", "tiny=" + kPatch + ":compute_v3"}, "too short"},
      {{"patch", pid, "--replace", "unrelocatable=" + kPatch + ":compute_v3"},
       "cannot be relocated"},
      {{"patch", pid, "--replace", "compute=" + kPatch, "--mode", "eventually"},
       "unknown safety mode"},
      {{"revert", pid, "12345"}, "no update 12345"},
      {{"patch", "not-a-pid", "--replace", "compute=" + kPatch}, "is not a process id"},
  };
  for (const auto& c : cases) {
    auto o = cli(c.args);
    EXPECT_NE(o.status, 0) << c.args[0] << " " << c.args.back() << " succeeded";
    EXPECT_NE(o.err.find(c.message), std::string::npos)
        << "expected '" << c.message << "' in: " << o.err;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "not one line: " << o.err;
  }
  EXPECT_TRUE(t.wait_for("result 14 ")) << "a refused patch changed the target: " << t.last_line();
  EXPECT_RUNS_ON(t);
  EXPECT_EQ(tracer_of(t.pid()), "\t0");
}

TEST(RemoteRefusals, AnotherUsersProcessIsNotPermitted) {
  const char* user = "dynamos-test";
  if (!getpwnam(user)) {
    auto r = run({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user});
    ASSERT_EQ(r.status, 0) << "cannot create test user: " << r.err;
  }
  struct Cleanup {
    ~Cleanup() { run({"userdel", "dynamos-test"}); }
  } cleanup;
  Program t({TARGET_PIE, "2"});
  ASSERT_TRUE(t.wait_for("result 14 "));
  // The user runs the CLI from where it can reach it (testkit/reachable.hpp): refused for
  // the target's owner, not for the path.
  auto o = run({"runuser", "-u", user, "--", dynamos::testkit::reachable(kCli), "patch", pid_of(t),
                "--replace", "compute=" + dynamos::testkit::reachable(kPatch)});
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.err.find("not permitted"), std::string::npos) << o.err;
  EXPECT_RUNS_ON(t);
}

namespace {

// The state region of a process the engine has patched, found in its maps.
Address state_region_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line))
    if (line.find("/memfd:dynamos-state") != std::string::npos)
      return std::stoull(line.substr(0, line.find('-')), nullptr, 16);
  return 0;
}

bool poke(pid_t pid, Address at, const void* data, std::size_t size) {
  std::fstream mem("/proc/" + std::to_string(pid) + "/mem",
                   std::ios::in | std::ios::out | std::ios::binary);
  mem.seekp(static_cast<std::streamoff>(at));
  mem.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  return static_cast<bool>(mem.flush());
}

bool peek(pid_t pid, Address at, void* data, std::size_t size) {
  std::ifstream mem("/proc/" + std::to_string(pid) + "/mem", std::ios::binary);
  mem.seekg(static_cast<std::streamoff>(at));
  mem.read(static_cast<char*>(data), static_cast<std::streamsize>(size));
  return static_cast<bool>(mem);
}

}  // namespace

// The engine's state lives in the target's memory, which the target may overwrite.
// A corrupted header or state is refused with a clear one-line error, the target
// runs on untraced, and once the region is repaired the engine works again.
TEST(RemoteRefusals, CorruptedStateRegionIsRefusedClearly) {
  Program t({TARGET_PIE, "4"});
  ASSERT_TRUE(t.wait_for("result 14 "));
  auto p = cli({"patch", pid_of(t), "--replace", "compute=" + kPatch});
  ASSERT_EQ(p.status, 0) << p.err;
  ASSERT_TRUE(t.wait_for("result 1014"));
  const Address region = state_region_of(t.pid());
  ASSERT_NE(region, 0u) << "no dynamos-state mapping in the patched process";
  remote::StateHeader good{};
  ASSERT_TRUE(peek(t.pid(), region, &good, sizeof good));

  struct Case {
    const char* what;
    std::function<void(remote::StateHeader&)> corrupt;
    const char* message;
  };
  const Case cases[] = {
      {"blob offset", [](auto& h) { h.blob_offset = 0x12345; }, "state blob offset 0x12345"},
      {"blob length", [](auto& h) { h.blob_length = ~0ull; }, "state blob length"},
      {"call area", [](auto& h) { h.call_area = 0x1000; }, "call area 0x1000"},
      {"magic", [](auto& h) { h.magic[0] = 'X'; }, "has an unknown format"},
  };
  for (const auto& c : cases) {
    remote::StateHeader bad = good;
    c.corrupt(bad);
    ASSERT_TRUE(poke(t.pid(), region, &bad, sizeof bad)) << c.what;
    auto o = cli({"updates", pid_of(t)});
    EXPECT_NE(o.status, 0) << c.what << ": accepted";
    EXPECT_NE(o.err.find(c.message), std::string::npos)
        << c.what << ": expected '" << c.message << "' in: " << o.err;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "not one line: " << o.err;
    EXPECT_RUNS_ON(t);
    EXPECT_EQ(tracer_of(t.pid()), "\t0");
  }
  ASSERT_TRUE(poke(t.pid(), region, &good, sizeof good));

  // The state text itself (parsed by the engine) overwritten with garbage.
  std::string blob(good.blob_length, '\0');
  ASSERT_TRUE(peek(t.pid(), region + good.blob_offset, blob.data(), blob.size()));
  const std::string garbage = "garbage\x01\xff\n";
  ASSERT_TRUE(poke(t.pid(), region + good.blob_offset, garbage.data(), garbage.size()));
  auto o = cli({"updates", pid_of(t)});
  EXPECT_NE(o.status, 0) << "garbage state accepted";
  EXPECT_NE(o.err.find("engine state"), std::string::npos) << o.err;
  EXPECT_RUNS_ON(t);
  ASSERT_TRUE(poke(t.pid(), region + good.blob_offset, blob.data(), blob.size()));

  // State whose ids and counts point outside what it holds: ids are bounds-checked
  // before anything is indexed with them (the tool runs as root; the text is the target's).
  struct Edit {
    const char* what;
    const char* from;  // a regular expression over the state text
    const char* to;
    const char* message;
  };
  const Edit edits[] = {
      {"update switch point id",
       "(\nupdate [0-9]+ [a-z]+ [a-z]+ 1 )[0-9]+:", "$01999:", "point id 999 in update"},
      {"version point id", "\nversion 0 ", "\nversion 77 ", "names point 77, out of range"},
      {"active version", "(\npoint 0( [0-9]+){10}) [0-9]+ ", "$01 4000000000 ",
       "active version 4000000000 of point 0 out of range"},
      {"instruction map count", "(\npoint 0( [^ ]+){14}) [0-9]+", "$01 99999999999",
       "instruction map out of range"},
      {"code bytes", "(\npoint 0( [^ ]+){13}) [^ ]+", "$01 zz", "code bytes that are not hex"},
  };
  for (const auto& e : edits) {
    const std::string edited =
        std::regex_replace(blob, std::regex(e.from), e.to, std::regex_constants::format_first_only);
    ASSERT_NE(edited, blob) << e.what << ": the edit did not apply to the state:\n" << blob;
    remote::StateHeader h = good;
    h.blob_length = edited.size();
    ASSERT_TRUE(poke(t.pid(), region + good.blob_offset, edited.data(), edited.size()));
    ASSERT_TRUE(poke(t.pid(), region, &h, sizeof h));
    auto e_out = cli({"updates", pid_of(t)});
    EXPECT_NE(e_out.status, 0) << e.what << ": accepted";
    EXPECT_NE(e_out.err.find(e.message), std::string::npos)
        << e.what << ": expected '" << e.message << "' in: " << e_out.err;
    EXPECT_EQ(std::count(e_out.err.begin(), e_out.err.end(), '\n'), 1) << e_out.err;
    EXPECT_RUNS_ON(t);
    EXPECT_EQ(tracer_of(t.pid()), "\t0");
    ASSERT_TRUE(poke(t.pid(), region + good.blob_offset, blob.data(), blob.size()));
    ASSERT_TRUE(poke(t.pid(), region, &good, sizeof good));
  }

  auto u = cli({"updates", pid_of(t)});
  EXPECT_EQ(u.status, 0) << "repaired region refused: " << u.err;
  EXPECT_NE(u.out.find("applied"), std::string::npos) << u.out;
  EXPECT_TRUE(t.wait_for("result 1014")) << t.last_line();
}

TEST(RemoteRobustness, ToolKilledAtRandomMomentsNeverLeavesTheTargetStopped) {
  Program t({TARGET_PIE, "8"});
  ASSERT_TRUE(t.wait_for("result 14 "));
  std::mt19937 rng(1234);
  int completed = 0;
  for (int i = 0; i < 30; ++i) {
    std::vector<std::string> args = {
        kCli, "patch", pid_of(t), "--replace",
        (i % 2 ? "compute=" + kPatch : "compute=" + kPatch + ":compute_v3")};
    pid_t tool = fork();
    if (tool == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      auto v = argv_of(args);
      execv(v[0], v.data());
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 120'000));
    kill(tool, SIGKILL);
    int status = 0;
    waitpid(tool, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ++completed;
    // The kernel detached the dead tool: the target runs, untraced, with a valid version.
    std::this_thread::sleep_for(30ms);
    ASSERT_NE(proc_state(t.pid()), 't') << "iteration " << i << ": target left in a ptrace stop";
    ASSERT_NE(proc_state(t.pid()), 'T') << "iteration " << i << ": target left stopped";
    std::string why;
    ASSERT_TRUE(t.runs_on(&why)) << "iteration " << i << ": " << why;
    const std::string l = t.last_line();
    EXPECT_TRUE(l.find("result 14 ") != std::string::npos ||
                l.find("result 1014") != std::string::npos ||
                l.find("result 3014") != std::string::npos)
        << "iteration " << i << ": invalid result " << l;
  }
  std::printf("tool killed 30 times; %d runs had completed before the kill\n", completed);
  // The state kept in the target is still readable and usable.
  auto u = cli({"updates", pid_of(t)});
  EXPECT_EQ(u.status, 0) << u.err;
  auto p = cli({"patch", pid_of(t), "--replace", "compute=" + kPatch + ":compute_v3"});
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_TRUE(t.wait_for("result 3014")) << t.last_line();
}

namespace {
std::size_t mapped_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  std::size_t total = 0;
  while (std::getline(in, line)) {
    unsigned long a = 0, b = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &a, &b) == 2) total += b - a;
  }
  return total;
}
}  // namespace

TEST(RemoteRobustness, ThousandPatchRevertCyclesOnSixteenThreadsLeakNothing) {
  Program t({TARGET_PIE, "16"});
  ASSERT_TRUE(t.wait_for("result 14 "));
  auto target = RemoteTarget::attach(t.pid());
  ASSERT_TRUE(target) << target.error().message();
  auto& remote = **target;
  auto engine = Engine::over(std::move(*target));
  ASSERT_TRUE(engine) << engine.error().message();
  auto handle = remote.load_library(kPatch);
  ASSERT_TRUE(handle) << handle.error().message();
  auto syms = Symbols::load(remote);
  ASSERT_TRUE(syms);
  auto v3 = syms->find("compute_v3", "remote_patch.so");
  ASSERT_TRUE(v3) << v3.error().message();

  std::size_t after_first = 0;
  double worst_stop_ms = 0;
  for (int i = 0; i < 1000; ++i) {
    auto id = (*engine)->apply(redirect_update("compute", v3->address, "v3"));
    ASSERT_TRUE(id) << "cycle " << i << ": " << id.error().message();
    worst_stop_ms = std::max(
        worst_stop_ms, std::chrono::duration<double, std::milli>((*engine)->last_stop()).count());
    ASSERT_TRUE((*engine)->revert(*id)) << "cycle " << i;
    if (i == 0) after_first = mapped_bytes(t.pid());
  }
  EXPECT_EQ(mapped_bytes(t.pid()), after_first) << "mapped memory grew over 1000 cycles";
  std::printf("1000 patch/revert cycles on 16 busy threads; worst stop %.2f ms\n", worst_stop_ms);
  engine->reset();
  EXPECT_TRUE(t.wait_for("result 14 ")) << t.last_line();
  EXPECT_RUNS_ON(t);
}

TEST(RemotePatch, EveryRankOfAFourRankMpiJob) {
  Program job({MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "4", TARGET_MPI});
  std::set<std::string> pids;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (pids.size() < 4 && std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    const std::string l = job.last_line();
    if (std::regex_search(l, m, std::regex("pid ([0-9]+)"))) pids.insert(m[1]);
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(pids.size(), 4u) << "did not see 4 ranks start: " << job.last_line();
  for (const auto& pid : pids) {
    auto p = cli({"patch", pid, "--replace", "compute=" + kPatch});
    ASSERT_EQ(p.status, 0) << "rank pid " << pid << ": " << p.err;
  }
  // All four ranks now contribute 1014: the allreduce sum is 4056.
  EXPECT_TRUE(job.wait_for("sum 4056", 10s)) << job.last_line();
}
