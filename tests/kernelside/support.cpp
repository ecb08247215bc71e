#include "support.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "kernelside/fs.hpp"

namespace dynamos::kernelside::test {

namespace {
constexpr const char* kPrefix = "dynamos-test-kernelside-";

std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return "popen failed";
  char buf[512];
  while (fgets(buf, sizeof buf, p))
    out += buf;
  int status = ::pclose(p);
  if (status != 0) out += "(exit status " + std::to_string(status) + ")";
  return out;
}
}  // namespace

bool under_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

std::string unique_group_name() {
  static std::atomic<int> n{0};
  return kPrefix + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

void sweep_stale_groups(const Layout& layout) {
  for (unsigned i = 0; i < kControllerCount; ++i) {
    std::string root = layout.root_of(static_cast<Controller>(i));
    if (root.empty()) continue;
    auto names = list_dir(root);
    if (!names) continue;
    for (auto& name : *names) {
      if (!name.starts_with(kPrefix)) continue;
      pid_t owner = std::atoi(name.c_str() + std::string(kPrefix).size());
      if (owner > 0 && (::kill(owner, 0) == 0 || errno != ESRCH)) continue;
      Controllers one{static_cast<Controller>(i)};
      if (auto g = Group::open(layout, name, one)) (void)g->remove_tree(Evict::kill);
    }
  }
}

void sweep_stale_swap() {
  // 'down' for a pid that holds nothing forgets dead holders and removes the swap only
  // when the script created it and no holder is left.
  if (!path_exists("/run/dynamos/zram-swap/device")) return;
  std::string script = std::string(DYNAMOS_SOURCE_DIR) + "/scripts/zram-swap.sh";
  std::printf("%s", run(script + " down --holder " + std::to_string(::getpid())).c_str());
}

ScopedGroup::~ScopedGroup() {
  auto r = group_.remove_tree(Evict::kill);
  EXPECT_TRUE(r.has_value()) << "cleanup of cgroup " << group_.path()
                             << " failed: " << r.error().message();
}

SharedMemory::SharedMemory() {
  void* p =
      ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
  shared_ = new (p) Shared();
}

SharedMemory::~SharedMemory() {
  ::munmap(shared_, sizeof(Shared));
}

Child::Child(std::function<void()> body) {
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // Dies with the test even when the test is killed before its cleanup runs.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    body();
    ::_exit(0);
  }
}

Child::~Child() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

int Child::wait() {
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return status;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

SwapGuard::SwapGuard() {
  std::string script = std::string(DYNAMOS_SOURCE_DIR) + "/scripts/zram-swap.sh";
  output_ = run(script + " up --size 2G --holder " + std::to_string(::getpid()));
  ok_ = output_.find("exit status") == std::string::npos;
  std::printf("%s", output_.c_str());
}

SwapGuard::~SwapGuard() {
  std::string script = std::string(DYNAMOS_SOURCE_DIR) + "/scripts/zram-swap.sh";
  std::printf("%s", run(script + " down --holder " + std::to_string(::getpid())).c_str());
}

}  // namespace dynamos::kernelside::test
