#include "support.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "kernelside/fs.hpp"
#include "kernelside/procfs.hpp"

namespace dynamos::cyclesteal::test {

using namespace kernelside;

Shared* make_shared_page() {
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return new (p) Shared;
}

void spin() {
  volatile unsigned long x = 0;
  while (true)
    x = x + 1;
}

std::string thread_cgroup(pid_t pid, pid_t tid, const std::string& controller) {
  auto text =
      read_text("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/cgroup");
  if (!text) return "?";
  for (auto line : split_lines(*text)) {
    // "7:memory:/path" (v1) or "0::/path" (v2)
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string_view::npos || b == std::string_view::npos) continue;
    std::string_view ctrls = line.substr(a + 1, b - a - 1);
    size_t pos = 0;
    while (pos <= ctrls.size()) {
      size_t comma = ctrls.find(',', pos);
      if (ctrls.substr(pos, comma - pos) == controller) return std::string(line.substr(b + 1));
      if (comma == std::string_view::npos) break;
      pos = comma + 1;
    }
  }
  return "?";
}

double cpu_seconds(pid_t pid) {
  auto s = read_schedstat(pid);
  return s ? std::chrono::duration<double>(s->on_cpu).count() : -1;
}

void sweep_classes(const Layout& layout, bool own_too) {
  const std::string prefix = "dynamos-guests-";
  for (unsigned i = 0; i < kControllerCount; ++i) {
    auto c = static_cast<Controller>(i);
    std::string root = layout.root_of(c);
    if (root.empty()) continue;
    auto names = list_dir(root);
    if (!names) continue;
    for (auto& name : *names) {
      if (!name.starts_with(prefix)) continue;
      pid_t owner = std::atoi(name.c_str() + prefix.size());
      bool own = owner == ::getpid();
      if (!(own && own_too) && owner > 0 && (::kill(owner, 0) == 0 || errno != ESRCH)) continue;
      if (auto g = Group::open(layout, name, {c})) {
        (void)g->thaw();
        (void)g->remove_tree(Evict::kill);
      }
    }
  }
}

Loaded::Loaded() {
  auto host = core::ExtensionHost::create({});
  if (!host) {
    error = host.error().message();
    return;
  }
  host_ = std::move(*host);
  if (auto r = host_->load(CYCLESTEAL_EXTENSION); !r) error = r.error().message();
}

Loaded::~Loaded() {
  if (host_) (void)host_->unload("cyclesteal");
  if (auto layout = Layout::detect()) sweep_classes(*layout, true);
}

std::string Loaded::report() {
  auto r = host_->call("cyclesteal", "report", "");
  EXPECT_TRUE(r.has_value()) << "call report: " << r.error().message();
  return r ? *r : std::string();
}

double json_number(const std::string& json, const std::string& key) {
  auto pos = json.find("\"" + key + "\":");
  if (pos == std::string::npos) return NAN;
  return std::strtod(json.c_str() + pos + key.size() + 3, nullptr);
}

bool json_true(const std::string& json, const std::string& key) {
  return json.find("\"" + key + "\":true") != std::string::npos;
}

}  // namespace dynamos::cyclesteal::test
