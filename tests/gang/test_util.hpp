// Helpers for the gang tests: a temporary directory removed on every path out, and
// the privileged-test rule (under CI=true a test that needs root must fail, not skip).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace dynamos::gang::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dynamos-gang-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

}  // namespace dynamos::gang::test

// Use at the top of a test that needs root.
#define GANG_REQUIRE_ROOT()                                                           \
  do {                                                                                \
    if (::geteuid() != 0) {                                                           \
      if (::dynamos::gang::test::in_ci()) FAIL() << "this test needs root (CI=true)"; \
      GTEST_SKIP() << "needs root";                                                   \
    }                                                                                 \
  } while (0)
