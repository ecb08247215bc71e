// Node-side files and descriptors (docs/security.md): what root does with paths that
// other users control. Each test names the attack; each runs as root (under CI=true a
// run without root fails instead of skipping).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>

#include "base/file.hpp"
#include "core/extension_host.hpp"
#include "core/remote_update.hpp"
#include "kernelside/spawn.hpp"
#include "tests/kernelside/support.hpp"

using namespace dynamos;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr uid_t kNobody = 65534;

// A scratch directory of root's, mode 0755, removed with everything in it.
class Scratch {
 public:
  Scratch() {
    char tmpl[] = "/tmp/dynamos-security-XXXXXX";
    path_ = ::mkdtemp(tmpl) ? tmpl : "";
    ::chmod(path_.c_str(), 0755);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void make_dir(const std::string& path, mode_t mode, uid_t owner = 0) {
  ASSERT_EQ(::mkdir(path.c_str(), mode), 0) << path;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
  ASSERT_EQ(::chown(path.c_str(), owner, owner), 0);
}

void copy(const std::string& from, const std::string& to, uid_t owner = 0) {
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  ASSERT_EQ(::chown(to.c_str(), owner, owner), 0);
  ASSERT_EQ(::chmod(to.c_str(), 0755), 0);
}

std::string contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos ? "" : "'" + part + "' not in: " + text;
}

// Runs f on a thread; false when it has not returned within `limit` (it is left blocked).
template <class F>
bool returns_within(F f, std::chrono::milliseconds limit) {
  auto done = std::async(std::launch::async, std::move(f)).share();
  auto ok = done.wait_for(limit) == std::future_status::ready;
  if (!ok) std::thread([done] { done.wait(); }).detach();  // a blocked thread stays blocked
  return ok;
}

}  // namespace

// ---- Patch objects and staging ----

TEST(NodeFiles, FifoAsPatchObjectIsRefusedWithoutBlockingTheReader) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  const std::string fifo = s / "patch.so";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0666), 0);
  Result<std::string> r = fail(Errc::state, "not run");
  // Before: an ifstream open of a FIFO with no writer blocks forever.
  ASSERT_TRUE(returns_within([&] { r = core::read_patch_object(fifo); }, 3000ms))
      << "reading a FIFO as a patch object blocked";
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_EQ(contains(r.error().message(), fifo + " is a FIFO, not a regular file"), "");
}

TEST(NodeFiles, SymlinkAsPatchObjectIsRefusedNamingIt) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  const std::string link = s / "patch.so";
  ASSERT_EQ(::symlink("/etc/shadow", link.c_str()), 0);
  auto r = core::read_patch_object(link);
  ASSERT_FALSE(r);
  EXPECT_EQ(contains(r.error().message(), link + " is a symbolic link"), "");
}

TEST(NodeFiles, RootStagesPatchObjectsInItsOwnDirectoryAndRemovesThemAfterUse) {
  KERNELSIDE_REQUIRE_ROOT();
  auto bytes = core::read_patch_object(PATCH_SO);
  ASSERT_TRUE(bytes) << bytes.error().message();
  auto a = core::stage_patch_object(PATCH_SO, *bytes);
  ASSERT_TRUE(a) << a.error().message();
  auto b = core::stage_patch_object(PATCH_SO, *bytes);  // the same build: the same copy
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(fs::path(*a).parent_path(), core::kRootStagingDir);
  struct stat dir {
  }, file{};
  ASSERT_EQ(::lstat(core::kRootStagingDir, &dir), 0);
  EXPECT_EQ(dir.st_uid, 0u);
  EXPECT_EQ(dir.st_mode & 07777, 0711u) << "others may only pass through, never list or write";
  ASSERT_EQ(::lstat(a->c_str(), &file), 0);
  EXPECT_TRUE(S_ISREG(file.st_mode));
  EXPECT_EQ(file.st_uid, 0u);
  EXPECT_EQ(file.st_mode & 07777, 0444u);
  core::release_staged_object(*a);
  EXPECT_TRUE(fs::exists(*b)) << "removed while a second use still holds it";
  core::release_staged_object(*b);
  EXPECT_FALSE(fs::exists(*a)) << "a staged copy outlived its last use";
}

TEST(NodeFiles, UserStagesInAFreshPrivateDirectoryNotAGuessableOne) {
  KERNELSIDE_REQUIRE_ROOT();
  auto bytes = core::read_patch_object(PATCH_SO);
  ASSERT_TRUE(bytes);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t pid = ::fork();
  if (pid == 0) {  // as nobody: what `dynamos patch PID` does for a user
    ::close(pipefd[0]);
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(2);
    auto c = core::stage_patch_object(PATCH_SO, *bytes);
    std::string line = c ? *c : "ERR " + c.error().message();
    struct stat st {};
    if (c && ::lstat(fs::path(*c).parent_path().c_str(), &st) == 0)
      line += " " + std::to_string(st.st_uid) + " " + std::to_string(st.st_mode & 07777);
    if (c) core::release_staged_object(*c);
    line += c && !fs::exists(fs::path(*c).parent_path()) ? " gone" : " left";
    (void)!::write(pipefd[1], line.data(), line.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char buf[512] = {};
  ssize_t n = ::read(pipefd[0], buf, sizeof buf - 1);
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_GT(n, 0);
  const std::string line(buf, static_cast<std::size_t>(n));
  EXPECT_EQ(line.rfind("/tmp/dynamos-patches-", 0), 0u) << line;
  EXPECT_EQ(line.find("/tmp/dynamos-patches-65534/"), std::string::npos) << line;
  EXPECT_EQ(contains(line, " 65534 448 gone"), "") << "(448 = 0700)";
}

TEST(NodeFiles, DirectoryAnotherUserCreatedFirstIsRefusedNamingIt) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  make_dir(s / "patches", 0777, kNobody);  // the attacker's, waiting for root
  auto r = make_private_dir(s / "patches", 0711);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_permitted);
  EXPECT_EQ(contains(r.error().message(), s / "patches belongs to uid 65534"), "");
}

TEST(NodeFiles, LinkPlantedInPlaceOfAPrivateDirectoryIsRefused) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  make_dir(s / "elsewhere", 0700);
  ASSERT_EQ(::symlink((s / "elsewhere").c_str(), (s / "patches").c_str()), 0);
  auto r = make_private_dir(s / "patches", 0711);
  ASSERT_FALSE(r);
  EXPECT_EQ(contains(r.error().message(), s / "patches is a symbolic link"), "");
}

TEST(NodeFiles, WritableParentOfAPrivateDirectoryIsRefused) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  make_dir(s / "open", 0777);  // not sticky: anyone may rename what root puts there
  auto r = make_private_dir(s / "open/patches", 0700);
  ASSERT_FALSE(r);
  EXPECT_EQ(contains(r.error().message(), s / "open is writable by others"), "");
}

TEST(NodeFiles, NewFileIsNeverWrittenThroughAPlantedLink) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  { std::ofstream(s / "victim") << "keep"; }
  ASSERT_EQ(::symlink((s / "victim").c_str(), (s / "copy.so").c_str()), 0);
  auto r = write_new_file(s / "copy.so", "evil", 0444);
  ASSERT_FALSE(r);
  std::ifstream in(s / "victim");
  std::string text;
  in >> text;
  EXPECT_EQ(text, "keep") << "root wrote through a link";
}

TEST(NodeFiles, SessionDirectoryOfAVirtualNodeCreatedFirstByAnotherUserIsRefused) {
  KERNELSIDE_REQUIRE_ROOT();
  // vrsh runs as the job's user (here nobody); root plays the other user and creates the
  // session base first, open to all.
  const std::string node = "sec" + std::to_string(::getpid());
  const std::string base = "/tmp/dynamos-vnode-65534-" + node;
  std::error_code ec;
  fs::remove_all(base, ec);
  make_dir(base, 0777, 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    std::string err = "/tmp/dynamos-vnode-test-" + node + ".err";
    int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(e, 2);
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(2);
    ::unsetenv("TMPDIR");
    ::execl(VRSH_PATH, "dynamos-vrsh", node.c_str(), "true", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string err_file = "/tmp/dynamos-vnode-test-" + node + ".err";
  std::ifstream in(err_file);
  std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ::unlink(err_file.c_str());
  fs::remove_all(base, ec);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << err;
  EXPECT_EQ(contains(err, base + " belongs to uid 0"), "");
}

// ---- Extensions loaded into root ----

TEST(NodeFiles, ExtensionInAWorldWritableDirectoryIsRefusedInARootProcess) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  make_dir(s / "open", 0777);
  copy(EXT_EVERY, s / "open/ext_every.so");
  auto host = core::ExtensionHost::create();
  ASSERT_TRUE(host);
  auto r = (*host)->load(s / "open/ext_every.so");
  ASSERT_FALSE(r) << "loaded code that anyone could have replaced";
  EXPECT_EQ(r.error().code, Errc::not_permitted);
  EXPECT_EQ(contains(r.error().message(), s / "open is writable by others"), "");
}

TEST(NodeFiles, ExtensionOwnedByAUserIsRefusedInARootProcess) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  copy(EXT_EVERY, s / "ext_every.so", kNobody);
  auto host = core::ExtensionHost::create();
  ASSERT_TRUE(host);
  auto r = (*host)->load(s / "ext_every.so");
  ASSERT_FALSE(r);
  EXPECT_EQ(contains(r.error().message(), s / "ext_every.so is owned by uid 65534, not root"), "");
}

TEST(NodeFiles, ExtensionThroughALinkFromAWritableDirectoryIsRefused) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  make_dir(s / "open", 0777);
  copy(EXT_EVERY, s / "open/real.so");
  ASSERT_EQ(::symlink((s / "open/real.so").c_str(), (s / "ext.so").c_str()), 0);
  auto host = core::ExtensionHost::create();
  ASSERT_TRUE(host);
  auto r = (*host)->load(s / "ext.so");  // the link is root's; what it points to is not safe
  ASSERT_FALSE(r);
  EXPECT_EQ(contains(r.error().message(), s / "open is writable by others"), "");
}

TEST(NodeFiles, ExtensionOnARootOnlyPathStillLoads) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;  // root's 0755 directory under the sticky /tmp
  copy(EXT_EVERY, s / "ext_every.so");
  auto host = core::ExtensionHost::create();
  ASSERT_TRUE(host);
  auto r = (*host)->load(s / "ext_every.so");
  ASSERT_TRUE(r) << r.error().message();
}

// ---- Output files of children ----

TEST(NodeFiles, FifoAsAChildsOutputFileIsRefusedNotWaitedOn) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  const std::string fifo = s / "out";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0666), 0);
  kernelside::SpawnOptions o;
  o.argv = {"/bin/true"};
  o.out = kernelside::Redirect::file(fifo, false, /*or_dev_null=*/true);
  Result<pid_t> r = fail(Errc::state, "not run");
  ASSERT_TRUE(returns_within([&] { r = kernelside::spawn(o); }, 3000ms));
  ASSERT_FALSE(r) << "a FIFO planted as the output file was accepted (or sent to /dev/null)";
  EXPECT_EQ(r.error().sys_errno, ENXIO) << r.error().message();

  // A FIFO with a reader opens at once: it is refused by its type, not by the open.
  int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  r = kernelside::spawn(o);
  ::close(reader);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno, ENXIO) << r.error().message();
}

TEST(NodeFiles, OutputFileHelperTakesRegularFilesAndRefusesTheRest) {
  KERNELSIDE_REQUIRE_ROOT();
  Scratch s;
  auto made = open_output_file(s / "new.out", 0600);
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_NE(::fcntl(made->get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(::fcntl(made->get(), F_GETFL) & O_NONBLOCK, 0);
  ASSERT_EQ(::mkfifo((s / "fifo").c_str(), 0666), 0);
  auto fifo = open_output_file(s / "fifo", 0600);
  ASSERT_FALSE(fifo);
  EXPECT_EQ(contains(fifo.error().message(), s / "fifo is a FIFO"), "");
  auto dev = read_regular_file("/dev/zero", 1 << 20);
  ASSERT_FALSE(dev);
  EXPECT_EQ(contains(dev.error().message(), "/dev/zero is a character device"), "");
}
