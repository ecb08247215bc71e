// The one process spawner (kernelside/spawn): only descriptors 0-2 reach the program,
// identity drop, cgroup join before exec, exec failures reported to the parent, output
// files, the soft descriptor limit a daemon raised not passed on. The identity and
// cgroup cases need root; under CI=true they fail without it.
#include "kernelside/spawn.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "kernelside/limits.hpp"
#include "support.hpp"

namespace ks = dynamos::kernelside;
using namespace ks::test;

namespace {

struct Ran {
  int status = -1;
  std::string out;
};

// Spawns with standard output into a pipe, reads it to EOF, reaps the child.
dynamos::Result<Ran> run(ks::SpawnOptions o) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return dynamos::fail_errno("pipe");
  o.out = ks::Redirect::from_fd(p[1]);
  auto pid = ks::spawn(o);
  ::close(p[1]);
  if (!pid) {
    ::close(p[0]);
    return std::unexpected(pid.error());
  }
  Ran r;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0)
    r.out.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  ::waitpid(*pid, &r.status, 0);
  return r;
}

std::string temp_dir() {
  std::string d = "/tmp/dynamos-spawn-test-" + std::to_string(::getpid());
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace

TEST(Spawn, ChildGetsOnlyStdDescriptors) {
  // Descriptors the parent holds without close-on-exec: a file and a pipe, high up.
  int leaky = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leaky, 0);
  ASSERT_EQ(::dup2(leaky, 57), 57);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ks::SpawnOptions o;
  o.argv = {"/bin/ls", "/proc/self/fd"};
  auto r = run(o);
  for (int fd : {leaky, 57, p[0], p[1]})
    ::close(fd);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 0);
  // ls's own directory descriptor is the lowest free one: 3.
  EXPECT_EQ(r->out, "0\n1\n2\n3\n") << "the program saw more than its standard descriptors";
}

TEST(Spawn, ReportsExecFailure) {
  ks::SpawnOptions o;
  o.argv = {"/nonexistent/dynamos-no-such-program"};
  auto pid = ks::spawn(o);
  ASSERT_FALSE(pid) << "spawned a program that does not exist";
  EXPECT_EQ(pid.error().sys_errno, ENOENT);
  EXPECT_NE(pid.error().message().find("exec /nonexistent/dynamos-no-such-program"),
            std::string::npos)
      << pid.error().message();

  o.argv = {"/bin/true"};
  o.cwd = "/nonexistent-dir";
  auto cd = ks::spawn(o);
  ASSERT_FALSE(cd);
  EXPECT_NE(cd.error().message().find("chdir /nonexistent-dir"), std::string::npos)
      << cd.error().message();
}

TEST(Spawn, LooksUpNamesInPathAndPassesTheEnvironment) {
  ks::SpawnOptions o;
  o.argv = {"sh", "-c", "echo $DYNAMOS_SPAWN_TEST; pwd"};
  o.env = std::vector<std::string>{"PATH=/usr/bin:/bin"};
  o.extra_env = {"DYNAMOS_SPAWN_TEST=hello"};
  o.cwd = "/tmp";
  auto r = run(o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->out, "hello\n/tmp\n");
}

TEST(Spawn, WritesOutputFilesNamedAfterThePidAndRefusesSymlinks) {
  std::string dir = temp_dir();
  ks::SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "echo out; echo err >&2"};
  o.out = ks::Redirect::file(dir + "/out-{pid}.txt");
  o.err_to_out = true;
  auto pid = ks::spawn(o);
  ASSERT_TRUE(pid) << pid.error().message();
  ::waitpid(*pid, nullptr, 0);
  std::ifstream in(dir + "/out-" + std::to_string(*pid) + ".txt");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "out\nerr\n");

  // A symlink planted where the output goes is not followed.
  std::filesystem::create_symlink("/etc/passwd", dir + "/link");
  o.out = ks::Redirect::file(dir + "/link");
  auto refused = ks::spawn(o);
  ASSERT_FALSE(refused) << "followed a symlink for the output";
  EXPECT_EQ(refused.error().sys_errno, ELOOP) << refused.error().message();
  // ... unless the caller accepts /dev/null instead.
  o.out = ks::Redirect::file(dir + "/link", false, /*or_dev_null=*/true);
  auto fallback = ks::spawn(o);
  ASSERT_TRUE(fallback) << fallback.error().message();
  ::waitpid(*fallback, nullptr, 0);
  std::filesystem::remove_all(dir);
}

TEST(Spawn, HookRunsBeforeExecAndItsFailureKillsTheChild) {
  std::string dir = temp_dir();
  ks::SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "echo ran > " + dir + "/ran"};
  pid_t seen = -1;
  o.before_exec = [&](pid_t pid) -> dynamos::Result<void> {
    seen = pid;
    return dynamos::fail(dynamos::Errc::refused, "the hook said no");
  };
  auto pid = ks::spawn(o);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().message(), "the hook said no");
  EXPECT_GT(seen, 0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/ran")) << "the program ran although the hook failed";
  EXPECT_NE(::kill(seen, 0), 0) << "the child was left behind";
  std::filesystem::remove_all(dir);
}

TEST(Spawn, RefusesRootWhenAsked) {
  ks::SpawnOptions o;
  o.argv = {"/bin/true"};
  o.user = ks::User{};  // uid 0
  o.refuse_root = true;
  auto pid = ks::spawn(o);
  ASSERT_FALSE(pid);
  EXPECT_EQ(pid.error().code, dynamos::Errc::refused);
}

TEST(Spawn, DropsToTheGivenUser) {
  KERNELSIDE_REQUIRE_ROOT();
  auto nobody = ks::user_of(65534);
  ASSERT_TRUE(nobody) << nobody.error().message();
  ks::SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "id -u; id -g; id -G"};
  o.user = *nobody;
  o.refuse_root = true;
  auto r = run(o);
  ASSERT_TRUE(r) << r.error().message();
  std::string gid = std::to_string(nobody->gid);
  std::string groups;
  for (gid_t g : nobody->groups)
    groups += (groups.empty() ? "" : " ") + std::to_string(g);
  EXPECT_EQ(r->out, "65534\n" + gid + "\n" + (groups.empty() ? gid : groups) + "\n");
}

TEST(Spawn, JoinsTheCgroupBeforeExec) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = ks::Layout::detect();
  ASSERT_TRUE(layout) << layout.error().message();
  sweep_stale_groups(*layout);
  ScopedGroup group(ASSERT_OK(ks::Group::create(*layout, unique_group_name())));
  ks::SpawnOptions o;
  // The program's first look at its own cgroups already finds it in the group.
  o.argv = {"/bin/cat", "/proc/self/cgroup"};
  o.cgroups = group->dirs();
  auto r = run(o);
  ASSERT_TRUE(r) << r.error().message();
  std::istringstream lines(r->out);
  std::string line;
  int in_group = 0, lines_seen = 0;
  while (std::getline(lines, line)) {
    ++lines_seen;
    if (line.ends_with("/" + group->path())) ++in_group;
  }
  EXPECT_GE(in_group, 1) << r->out;
  EXPECT_EQ(in_group, static_cast<int>(o.cgroups.size())) << r->out;

  o.cgroups = {"/nonexistent-cgroup"};
  auto refused = ks::spawn(o);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("joining cgroup /nonexistent-cgroup"), std::string::npos)
      << refused.error().message();
}

// A daemon raises its own soft limit on descriptors (gangd: one a node); the programs it
// starts get back the one it started with.
TEST(Spawn, ChildGetsTheSoftDescriptorLimitTheParentStartedWith) {
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  ASSERT_GT(before.rlim_max, 600u) << "the hard limit leaves no room to raise the soft one";
  rlimit low = before;
  low.rlim_cur = 512;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  auto raised = ks::raise_open_files();
  ASSERT_TRUE(raised) << raised.error().message();
  EXPECT_EQ(raised->soft_before, 512u);
  EXPECT_EQ(raised->soft, static_cast<std::uint64_t>(before.rlim_max));

  ks::SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "ulimit -Sn; ulimit -Hn"};
  auto r = run(o);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &before), 0);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->out, "512\n" + std::to_string(before.rlim_max) + "\n")
      << "the child inherited the daemon's raised soft limit (or lost its hard one)";
}
