// The dynamosd program: --help, one-line errors, and a real run against a real gangd:
// it connects, creates a job's cgroup on job_assign, and on SIGTERM thaws and (with
// --remove-on-exit) removes its cgroups.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "gang/client/control.hpp"
#include "gang/dynamosd/node_agent.hpp"
#include "gang/gangd/coordinator.hpp"
#include "tests/gang/test_util.hpp"
#include "tests/kernelside/support.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace dynamos::kernelside;
using namespace std::chrono_literals;
namespace kt = dynamos::kernelside::test;
namespace gt = dynamos::gang::test;

using dynamos::gang::test::Daemon;
using dynamos::gang::test::exit_code;
using dynamos::gang::test::slurp;
using dynamos::gang::test::spawn;

namespace {

struct Run {
  int code;
  std::string out, err;
};
Run run(std::vector<std::string> args) {
  gt::TempDir dir;
  Daemon d{spawn(DYNAMOSD_PATH, std::move(args), dir.path(), "d")};
  int status = 0;
  ::waitpid(d.pid, &status, 0);
  d.pid = -1;
  return {exit_code(status), slurp(dir / "d.out"), slurp(dir / "d.err")};
}

TEST(Dynamosd, HelpAndOneLineErrors) {
  auto help = run({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("usage: dynamosd"), std::string::npos) << help.out;
  auto none = run({});
  EXPECT_EQ(none.code, 1);
  EXPECT_EQ(none.err, "dynamosd: --node is required (try --help)\n");
  gt::TempDir dir;
  auto nosecret = run({"--node", "n0", "--secret", dir / "missing"});
  EXPECT_EQ(nosecret.code, 1);
  EXPECT_NE(nosecret.err.find(dir / "missing"), std::string::npos) << nosecret.err;
  EXPECT_EQ(std::count(nosecret.err.begin(), nosecret.err.end(), '\n'), 1) << nosecret.err;
  ASSERT_TRUE(Secret::create(dir / "secret"));
  auto port = run({"--node", "n0", "--secret", dir / "secret", "--coordinator", "x:y"});
  EXPECT_EQ(port.code, 1);
  EXPECT_EQ(port.err, "dynamosd: --coordinator: 'y' is not a port number\n");
  auto mem = run({"--node", "n0", "--secret", dir / "secret", "--memory", "lots"});
  EXPECT_EQ(mem.code, 1);
  EXPECT_NE(mem.err.find("--memory"), std::string::npos) << mem.err;
  auto ext = run({"--node", "n0", "--secret", dir / "secret", "--paging-extension", dir / "no.so"});
  EXPECT_EQ(ext.code, 1);
  EXPECT_NE(ext.err.find("--paging-extension"), std::string::npos) << ext.err;
  EXPECT_EQ(std::count(ext.err.begin(), ext.err.end(), '\n'), 1) << ext.err;
}

TEST(Dynamosd, ConnectsToGangdCarriesOutJobsAndCleansUp) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = ASSERT_OK(Layout::detect());
  kt::sweep_stale_groups(layout);
  std::string parent = kt::unique_group_name();
  gt::TempDir dir;
  { std::ofstream(dir / "hosts") << "n0 slots=1\n"; }
  Daemon gangd{
      spawn(GANGD_PATH,
            {"--launch", "none", "--hostfile", dir / "hosts", "--secret", dir / "secret",
             "--create-secret", "--listen", "127.0.0.1:0", "--control-socket", dir / "gangd.sock",
             "--journal", "", "--quantum", "200ms", "--heartbeat", "200ms"},
            dir.path(), "gangd")};
  std::smatch m;
  std::string err;
  std::regex listening("port ([0-9]+)");
  ASSERT_TRUE(kt::wait_until(
      [&] {
        err = slurp(dir / "gangd.err");
        return std::regex_search(err, m, listening);
      },
      5000ms))
      << err;
  std::string port = m[1];

  struct Cleanup {
    Layout layout;
    std::string parent;
    ~Cleanup() {
      if (Group::exists(layout, parent))
        if (auto g = Group::open(layout, parent)) (void)g->remove_tree(Evict::kill);
    }
  } cleanup{layout, parent};
  std::vector<std::string> agent_args = {"--node",
                                         "n0",
                                         "--coordinator",
                                         "127.0.0.1:" + port,
                                         "--secret",
                                         dir / "secret",
                                         "--cgroup-parent",
                                         parent,
                                         "--memory",
                                         "256M",
                                         "--paging-extension",
                                         DYNAMOS_LIB_DIR "/libdynamos_ext_paging.so",
                                         "--remove-on-exit"};
  Daemon agent{spawn(DYNAMOSD_PATH, agent_args, dir.path(), "agent")};
  auto node_up = [&] {
    auto r = control_request(dir / "gangd.sock", proto::ListNodes{});
    return r && std::get<proto::NodeList>(*r).nodes.size() == 1 &&
           std::get<proto::NodeList>(*r).nodes[0].state == "up";
  };
  ASSERT_TRUE(kt::wait_until(node_up, 5000ms)) << slurp(dir / "agent.err");
  auto node_group = ASSERT_OK(Group::open(layout, parent + "/n0"));
  EXPECT_EQ(ASSERT_OK(node_group.memory_max()), std::optional<uint64_t>(256ull << 20));

  auto sub = control_request(dir / "gangd.sock",
                             proto::JobSubmit{"j", 1, 0, "demand", {"/bin/true"}, "/", ""});
  ASSERT_TRUE(sub) << sub.error().message();
  JobId id = std::get<proto::JobSubmitted>(*sub).job;
  std::string job_path = parent + "/n0/" + NodeAgent::job_group_name(id);
  ASSERT_TRUE(kt::wait_until([&] { return Group::exists(layout, job_path); }, 5000ms))
      << "no cgroup for job " << id << ": " << slurp(dir / "agent.err");

  // kill -9: the job's group stays; the next dynamosd adopts it and reconnects.
  ::kill(agent.pid, SIGKILL);
  ::waitpid(agent.pid, nullptr, 0);
  agent.pid = -1;
  EXPECT_TRUE(Group::exists(layout, job_path)) << "the job's group went with the agent";
  ASSERT_TRUE(kt::wait_until([&] { return !node_up(); }, 5000ms)) << "gangd did not notice";
  agent.pid = spawn(DYNAMOSD_PATH, agent_args, dir.path(), "agent2");
  ASSERT_TRUE(kt::wait_until(node_up, 5000ms)) << slurp(dir / "agent2.err");
  EXPECT_NE(slurp(dir / "agent2.err").find("1 jobs adopted"), std::string::npos)
      << slurp(dir / "agent2.err");
  EXPECT_TRUE(Group::exists(layout, job_path));

  EXPECT_EQ(exit_code(agent.stop()), 0) << slurp(dir / "agent2.err");
  EXPECT_FALSE(Group::exists(layout, parent)) << "dynamosd --remove-on-exit left its cgroups";
  EXPECT_EQ(exit_code(gangd.stop()), 0);
}

}  // namespace
