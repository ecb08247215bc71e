// Attaching for a user (core/remote_identity.hpp): the process is checked again once
// seized, and every exec while attached detaches it. Each test is named after the
// attack it stops. The targets run as `nobody`, copied into a directory the test makes
// (that user may not reach the build tree).
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/remote.hpp"
#include "core/remote_identity.hpp"
#include "core/remote_lock.hpp"
#include "core/remote_update.hpp"
#include "testkit/process.hpp"

using namespace remote_test;
using namespace dynamos;
using namespace dynamos::core;
using namespace std::chrono_literals;

namespace {

constexpr uid_t kNobody = 65534;

#define REQUIRE_ROOT()                                                                 \
  do {                                                                                 \
    if (geteuid() != 0) {                                                              \
      const char* ci = std::getenv("CI");                                              \
      if (ci && std::string(ci) == "true") FAIL() << "this test needs root (CI=true)"; \
      GTEST_SKIP() << "needs root";                                                    \
    }                                                                                  \
  } while (0)

// A directory every user may enter, holding copies of the exec target, removed at the end.
class Dir {
 public:
  Dir() {
    char tmpl[] = "/tmp/dynamos-attach-test-XXXXXX";
    path_ = mkdtemp(tmpl) ? tmpl : "";
    chmod(path_.c_str(), 0755);
  }
  ~Dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  // A root-owned copy of the exec target with `mode` (04755: setuid root).
  std::string copy(const std::string& name, mode_t mode) const {
    const std::string to = path_ + "/" + name;
    std::filesystem::copy_file(EXEC_TARGET, to);
    chown(to.c_str(), 0, 0);
    chmod(to.c_str(), mode);
    return to;
  }
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::string> as_nobody(std::vector<std::string> args) {
  args.insert(args.begin(),
              {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"});
  return args;
}

std::string tracer_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("TracerPid:", 0) == 0) return line.substr(10);
  return "?";
}

AttachOptions for_nobody() {
  AttachOptions o;
  o.requester = Requester{kNobody, std::nullopt};
  return o;
}

#define EXPECT_REFUSED(result, text)                                                       \
  do {                                                                                     \
    auto&& r_ = (result);                                                                  \
    ASSERT_FALSE(r_) << "attach was allowed";                                              \
    EXPECT_EQ(r_.error().code, Errc::not_permitted) << r_.error().message();               \
    EXPECT_NE(r_.error().message().find(text), std::string::npos) << r_.error().message(); \
  } while (0)

#define EXPECT_RUNS_UNTRACED(t)                                             \
  do {                                                                      \
    std::string why;                                                        \
    EXPECT_TRUE((t).runs_on(&why)) << why;                                  \
    EXPECT_EQ(tracer_of((t).pid()), "\t0") << "the target is still traced"; \
  } while (0)

}  // namespace

// The owner check passes; then the user's process executes a setuid-root program and
// the tool, root, would write the user's code into a root process.
TEST(RemoteAttach, TargetThatExecsSetuidRootBetweenCheckAndAttachIsRefused) {
  REQUIRE_ROOT();
  Dir dir;
  ASSERT_TRUE(dir.ok());
  const std::string plain = dir.copy("target", 0755);
  const std::string suid = dir.copy("target-suid", 04755);
  Program t(as_nobody({plain, "exec-on-usr1", suid}));
  ASSERT_TRUE(t.wait_for("ready")) << t.last_line();
  auto checked = read_process_identity(t.pid());
  ASSERT_TRUE(checked) << checked.error().message();
  ASSERT_TRUE(check_may_attach(t.pid(), *checked, {kNobody, std::nullopt}))
      << "the owner check refuses the user's own process";

  kill(t.pid(), SIGUSR1);
  ASSERT_TRUE(t.wait_for("held euid 0")) << "the setuid program did not run: " << t.last_line();

  AttachOptions o = for_nobody();
  o.expect = *checked;
  EXPECT_REFUSED(RemoteTarget::attach(t.pid(), o), "executed another program");
  // Without the caller's earlier check, the rights of the process itself refuse it.
  EXPECT_REFUSED(RemoteTarget::attach(t.pid(), for_nobody()), "setuid");
  EXPECT_RUNS_UNTRACED(t);
}

TEST(RemoteAttach, ProcessWhosePidWasReusedSinceTheCheckIsRefused) {
  REQUIRE_ROOT();
  Program t({EXEC_TARGET, "exec-on-usr1", "/nonexistent"});
  ASSERT_TRUE(t.wait_for("ready"));
  auto checked = read_process_identity(t.pid());
  ASSERT_TRUE(checked);
  // Another process under the same pid: the start time differs from the check's.
  checked->start_time -= 1;
  AttachOptions o;
  o.expect = *checked;
  EXPECT_REFUSED(RemoteTarget::attach(t.pid(), o), "pid was reused");
  EXPECT_RUNS_UNTRACED(t);
}

TEST(RemoteAttach, NonDumpableTargetIsRefusedForANonRootRequester) {
  REQUIRE_ROOT();
  Dir dir;
  ASSERT_TRUE(dir.ok());
  const std::string bin = dir.copy("target", 0755);
  Program plain(as_nobody({bin, "exec-on-usr1", "/nonexistent"}));
  Program closed(as_nobody({bin, "nondumpable"}));
  ASSERT_TRUE(plain.wait_for("ready"));
  ASSERT_TRUE(closed.wait_for("ready"));
  {
    auto own = RemoteTarget::attach(plain.pid(), for_nobody());
    ASSERT_TRUE(own) << "the user's own dumpable process refused: " << own.error().message();
  }
  EXPECT_REFUSED(RemoteTarget::attach(closed.pid(), for_nobody()), "not dumpable");
  {
    auto root = RemoteTarget::attach(closed.pid());  // as the kernel allows root
    ASSERT_TRUE(root) << root.error().message();
  }
  EXPECT_RUNS_UNTRACED(plain);
  EXPECT_RUNS_UNTRACED(closed);
}

// A program with file capabilities run by the user: the kernel lets only a tracer
// holding those capabilities attach.
TEST(RemoteAttach, FileCapabilityTargetIsRefusedForANonRootRequester) {
  REQUIRE_ROOT();
  Dir dir;
  ASSERT_TRUE(dir.ok());
  const std::string bin = dir.copy("target-caps", 0755);
  vfs_cap_data caps{};
  caps.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE;
  caps.data[0].permitted = 1u << CAP_NET_BIND_SERVICE;
  ASSERT_EQ(setxattr(bin.c_str(), "security.capability", &caps, sizeof caps, 0), 0)
      << "setting file capabilities: " << std::strerror(errno);
  Program t(as_nobody({bin, "exec-on-usr1", "/nonexistent"}));
  ASSERT_TRUE(t.wait_for("ready"));
  EXPECT_REFUSED(RemoteTarget::attach(t.pid(), for_nobody()), "holds capabilities");
  EXPECT_RUNS_UNTRACED(t);
}

// The target executes another program while the patch is under way (here: as soon as it
// sees itself traced). The tool must not write into the new program, nor leave it stopped.
TEST(RemoteAttach, TargetThatExecsDuringThePatchIsDetachedAndLeftRunning) {
  REQUIRE_ROOT();
  Program t({EXEC_TARGET, "exec-when-traced", "/bin/sh"});
  ASSERT_TRUE(t.wait_for("ready"));
  RemotePatchRequest req;
  auto rep = parse_replacement(std::string("compute=") + PATCH_SO);
  ASSERT_TRUE(rep);
  req.replacements.push_back(*rep);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = patch_process(t.pid(), req);
  ASSERT_FALSE(r) << "the patch went into a process that executed another program";
  EXPECT_EQ(r.error().code, Errc::not_permitted) << r.error().message();
  EXPECT_NE(r.error().message().find("program"), std::string::npos) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s) << "the refusal waited for a timeout";
  EXPECT_TRUE(t.wait_for("held")) << "the new program does not run: " << t.last_line();
  EXPECT_RUNS_UNTRACED(t);
}

// The per-target lock file lived at /tmp/dynamos-PID.lock, where any user could plant a
// symbolic link before root's tool opened it.
TEST(RemoteLock, LinkPlantedAtTheOldSharedLockPathIsNeverFollowed) {
  REQUIRE_ROOT();
  Program t({EXEC_TARGET, "exec-on-usr1", "/nonexistent"});
  ASSERT_TRUE(t.wait_for("ready"));
  const std::string planted = "/tmp/dynamos-" + std::to_string(t.pid()) + ".lock";
  const std::string victim = "/tmp/dynamos-lock-victim-" + std::to_string(t.pid());
  ASSERT_EQ(symlink(victim.c_str(), planted.c_str()), 0);
  {
    auto target = RemoteTarget::attach(t.pid());
    ASSERT_TRUE(target) << target.error().message();
    struct stat st {};
    const std::string lock = "/run/dynamos/locks/" + std::to_string(t.pid()) + ".lock";
    ASSERT_EQ(lstat(lock.c_str(), &st), 0) << "no lock file at " << lock;
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(lstat("/run/dynamos/locks", &st), 0);
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_mode & 0777, 0700u) << "the lock directory is open to others";
    auto second = RemoteTarget::attach(t.pid());
    ASSERT_FALSE(second) << "two tools on one target";
    EXPECT_EQ(second.error().code, Errc::busy) << second.error().message();
  }
  EXPECT_NE(access(victim.c_str(), F_OK), 0) << "root created a file through the planted link";
  unlink(planted.c_str());
  EXPECT_RUNS_UNTRACED(t);
}

TEST(RemoteLock, LockDirectoryOwnedByAnotherUserOrOpenToOthersIsRefused) {
  REQUIRE_ROOT();
  Dir dir;
  ASSERT_TRUE(dir.ok());
  const std::string theirs = dir.path() + "/theirs", open_dir = dir.path() + "/open",
                    link = dir.path() + "/link";
  ASSERT_EQ(mkdir(theirs.c_str(), 0700), 0);
  ASSERT_EQ(chown(theirs.c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(mkdir(open_dir.c_str(), 0700), 0);
  ASSERT_EQ(chmod(open_dir.c_str(), 0777), 0);
  ASSERT_EQ(symlink(open_dir.c_str(), link.c_str()), 0);
  auto a = remote::TargetLock::take_in(theirs, 12345);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message().find("belongs to uid 65534"), std::string::npos)
      << a.error().message();
  auto b = remote::TargetLock::take_in(open_dir, 12345);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message().find("open to group or others"), std::string::npos)
      << b.error().message();
  auto c = remote::TargetLock::take_in(link, 12345);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("not a directory"), std::string::npos) << c.error().message();
}
