// Programs for a second user. A test that runs something as another user must give it
// what it runs in a place that user can reach: a clone in a 0700 home directory (where
// a new user clones the project) cannot be entered by anyone else. reachable(path)
// returns `path` when every directory above it lets others through, and otherwise the
// same file in a mirror of the build tree's bin/, lib/ and tests/ under /tmp (mode
// 0755, hard links where the file system allows, else copies), made once per test
// process and removed when it exits.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>

namespace dynamos::testkit {

namespace reachable_detail {

namespace fs = std::filesystem;

// Every directory from `path`'s parent up to / is searchable by others.
inline bool others_can_reach(const fs::path& path) {
  for (fs::path dir = path.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !(st.st_mode & S_IXOTH)) return false;
    if (dir == dir.root_path()) break;
  }
  return true;
}

inline void mirror(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to, ec);
  fs::permissions(to, fs::perms(0755), ec);
  for (auto it = fs::recursive_directory_iterator(from, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_directory() && it->path().filename() == "CMakeFiles") {
      it.disable_recursion_pending();
      continue;
    }
    fs::path target = to / fs::relative(it->path(), from);
    if (it->is_directory()) {
      fs::create_directories(target, ec);
      fs::permissions(target, fs::perms(0755), ec);
    } else if (it->is_regular_file()) {
      fs::create_hard_link(it->path(), target, ec);
      if (ec) fs::copy_file(it->path(), target, fs::copy_options::overwrite_existing, ec);
    }
  }
}

struct Mirror {
  fs::path root;
  ~Mirror() {
    std::error_code ec;
    if (!root.empty()) fs::remove_all(root, ec);
  }
};

inline const fs::path& mirrored_build() {
  static Mirror m;
  static std::once_flag once;
  std::call_once(once, [] {
    char tmpl[] = "/tmp/dynamos-reachable-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp for a second user's programs failed");
    m.root = tmpl;
    std::error_code ec;
    fs::permissions(m.root, fs::perms(0755), ec);
    for (const char* sub : {"bin", "lib", "tests"})
      if (fs::exists(fs::path(DYNAMOS_BUILD_ROOT) / sub))
        mirror(fs::path(DYNAMOS_BUILD_ROOT) / sub, m.root / sub);
  });
  return m.root;
}

}  // namespace reachable_detail

inline std::string reachable(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p = fs::absolute(path);
  if (reachable_detail::others_can_reach(p)) return path;
  const fs::path build = fs::absolute(DYNAMOS_BUILD_ROOT);
  auto rel = fs::relative(p, build);
  if (rel.empty() || rel.native().rfind("..", 0) == 0)
    throw std::runtime_error(path + " is outside the build tree and others cannot reach it");
  return (reachable_detail::mirrored_build() / rel).string();
}

}  // namespace dynamos::testkit
