// The gangd program: --help, one-line errors for bad input, and a real run on a
// temporary control socket and journal that survives a restart.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "gang/client/control.hpp"
#include "gang/gangd/coordinator.hpp"
#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace std::chrono_literals;

using dynamos::gang::test::Daemon;
using dynamos::gang::test::exit_code;
using dynamos::gang::test::slurp;

namespace {

struct Run {
  int status = -1;
  std::string out, err;
};

// Starts gangd with `args`; stderr and stdout go to files in `dir`. With `soft_nofile`,
// gangd starts with that soft limit on open descriptors.
pid_t spawn(const std::vector<std::string>& args, const test::TempDir& dir,
            rlim_t soft_nofile = 0) {
  pid_t pid = ::fork();
  if (pid == 0) {
    rlimit r{};
    if (soft_nofile && ::getrlimit(RLIMIT_NOFILE, &r) == 0) {
      r.rlim_cur = soft_nofile;
      ::setrlimit(RLIMIT_NOFILE, &r);
    }
    int out = ::open((dir / "stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open((dir / "stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> argv;
    std::string prog = GANGD_PATH;
    argv.push_back(prog.data());
    for (auto& a : const_cast<std::vector<std::string>&>(args))
      argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(prog.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

Run run(const std::vector<std::string>& args) {
  test::TempDir dir;
  pid_t pid = spawn(args, dir);
  Run r;
  ::waitpid(pid, &r.status, 0);
  r.out = slurp(dir / "stdout");
  r.err = slurp(dir / "stderr");
  return r;
}

// Waits until gangd answers on its control socket.
bool wait_for_file(const std::string& path) {
  for (int i = 0; i < 500; ++i) {
    if (std::filesystem::exists(path) && control_request(path, proto::ListNodes{})) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

}  // namespace

TEST(Gangd, HelpAndOneLineErrors) {
  auto help = run({"--help"});
  EXPECT_EQ(exit_code(help.status), 0);
  EXPECT_NE(help.out.find("usage: gangd"), std::string::npos) << help.out;

  auto none = run({});
  EXPECT_EQ(exit_code(none.status), 1);
  EXPECT_EQ(none.err, "gangd: --hostfile is required (try --help)\n");

  test::TempDir dir;
  { std::ofstream(dir / "hosts") << "n0 slots=two\n"; }
  auto bad = run({"--hostfile", dir / "hosts", "--secret", dir / "secret"});
  EXPECT_EQ(exit_code(bad.status), 1);
  EXPECT_NE(bad.err.find("line 1: slots must be a positive integer"), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;

  { std::ofstream(dir / "hosts") << "n0 slots=2\n"; }
  ASSERT_TRUE(Secret::create(dir / "secret"));
  ::chmod((dir / "secret").c_str(), 0644);
  auto open = run({"--hostfile", dir / "hosts", "--secret", dir / "secret"});
  EXPECT_EQ(exit_code(open.status), 1);
  EXPECT_NE(open.err.find("mode 0644"), std::string::npos) << open.err;

  auto quantum =
      run({"--hostfile", dir / "hosts", "--secret", dir / "secret", "--quantum", "3 weeks"});
  EXPECT_EQ(exit_code(quantum.status), 1);
}

// "Max open files  <soft>  <hard>  files" of /proc/PID/limits.
static std::pair<std::string, std::string> open_files_limits(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream words(line.substr(14));
      std::string soft, hard;
      words >> soft >> hard;
      return {soft, hard};
    }
  return {};
}

// A soft limit of 256 descriptors would stop gangd at about 250 nodes: it raises the soft
// limit to the hard one at start and says so.
TEST(Gangd, RaisesItsDescriptorSoftLimitToTheHardLimitAndSaysSo) {
  rlimit r{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &r), 0);
  if (r.rlim_max <= 256) GTEST_SKIP() << "the hard limit is 256 or less: nothing to raise";
  test::TempDir dir;
  {
    std::ofstream hosts(dir / "hosts");
    for (int i = 0; i < 1000; ++i)
      hosts << "n" << i << " slots=1\n";
  }
  Daemon d{spawn({"--launch", "none", "--hostfile", dir / "hosts", "--secret", dir / "secret",
                  "--create-secret", "--listen", "127.0.0.1:0", "--control-socket",
                  dir / "gangd.sock", "--journal", ""},
                 dir, 256)};
  ASSERT_TRUE(wait_for_file(dir / "gangd.sock")) << slurp(dir / "stderr");
  auto [soft, hard] = open_files_limits(d.pid);
  EXPECT_EQ(soft, hard);
  EXPECT_EQ(soft, r.rlim_max == RLIM_INFINITY ? "unlimited" : std::to_string(r.rlim_max));
  auto log = slurp(dir / "stderr");
  EXPECT_NE(log.find("open files: soft limit raised from 256 to the hard limit"), std::string::npos)
      << log;
  EXPECT_EQ(exit_code(d.stop()), 0);
}

TEST(Gangd, ServesTheControlSocketAndRecoversAfterRestart) {
  test::TempDir dir;
  { std::ofstream(dir / "hosts") << "n0 slots=2\nn1 slots=2\n"; }
  std::vector<std::string> args = {"--launch",
                                   "none",
                                   "--hostfile",
                                   dir / "hosts",
                                   "--secret",
                                   dir / "secret",
                                   "--create-secret",
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--control-socket",
                                   dir / "gangd.sock",
                                   "--journal",
                                   dir / "journal",
                                   "--quantum",
                                   "200ms"};
  JobId id = 0;
  {
    Daemon d{spawn(args, dir)};
    ASSERT_TRUE(wait_for_file(dir / "gangd.sock")) << slurp(dir / "stderr");
    struct stat st {};
    ASSERT_EQ(::stat((dir / "secret").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "the created secret is not private";
    auto nodes = control_request(dir / "gangd.sock", proto::ListNodes{});
    ASSERT_TRUE(nodes) << nodes.error().message();
    ASSERT_EQ(std::get<proto::NodeList>(*nodes).nodes.size(), 2u);
    EXPECT_EQ(std::get<proto::NodeList>(*nodes).nodes[0].state, "down");
    auto sub = control_request(dir / "gangd.sock",
                               proto::JobSubmit{"lu", 4, 0, "adaptive", {"./lu"}, "/", ""});
    ASSERT_TRUE(sub) << sub.error().message();
    id = std::get<proto::JobSubmitted>(*sub).job;
    auto bad = control_request(dir / "gangd.sock",
                               proto::JobSubmit{"x", 1, 0, "nosuch", {"./x"}, "/", ""});
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message().find("unknown paging policy"), std::string::npos);
    EXPECT_EQ(exit_code(d.stop()), 0);
    EXPECT_FALSE(std::filesystem::exists(dir / "gangd.sock")) << "control socket left behind";
  }
  Daemon d{spawn(args, dir)};
  ASSERT_TRUE(wait_for_file(dir / "gangd.sock")) << slurp(dir / "stderr");
  auto jobs = control_request(dir / "gangd.sock", proto::ListJobs{});
  ASSERT_TRUE(jobs) << jobs.error().message();
  ASSERT_EQ(std::get<proto::JobList>(*jobs).jobs.size(), 1u) << "the job was not recovered";
  EXPECT_EQ(std::get<proto::JobList>(*jobs).jobs[0].job, id);
  EXPECT_EQ(std::get<proto::JobList>(*jobs).jobs[0].paging, "adaptive");
  EXPECT_EQ(exit_code(d.stop()), 0);
}
