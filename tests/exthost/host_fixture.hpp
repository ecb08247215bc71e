// Shared by the extension host tests: a host with a private environment and a log that
// the test can read.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/extension_host.hpp"

namespace dynamos::core::testing {

struct HostFixture : ::testing::Test {
  std::map<std::string, std::string> env;
  std::mutex log_mutex;
  std::vector<std::string> log_lines;
  std::string config_path;
  std::unique_ptr<ExtensionHost> host;

  HostOptions options() {
    HostOptions o;
    o.environment = [this](const std::string& name) -> std::optional<std::string> {
      auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    o.log = [this](int level, std::string_view ext, std::string_view message) {
      std::lock_guard lock(log_mutex);
      log_lines.push_back(std::to_string(level) + " [" + std::string(ext) + "] " +
                          std::string(message));
    };
    o.config_path = config_path;
    return o;
  }

  void make_host() { make_host(options()); }
  void make_host(HostOptions o) {
    auto h = ExtensionHost::create(std::move(o));
    ASSERT_TRUE(h) << h.error().message();
    host = std::move(*h);
  }

  // A config file unique to this test, removed afterwards.
  void write_config(const std::string& text) {
    config_path = ::testing::TempDir() + "/dynamos-exthost-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".conf";
    std::ofstream(config_path) << text;
  }

  bool logged(const std::string& needle) {
    std::lock_guard lock(log_mutex);
    for (const auto& l : log_lines)
      if (l.find(needle) != std::string::npos) return true;
    return false;
  }

  std::string log_text() {
    std::lock_guard lock(log_mutex);
    std::string all;
    for (const auto& l : log_lines)
      all += l + "\n";
    return all;
  }

  void TearDown() override {
    host.reset();  // unloads what the test left loaded
    if (!config_path.empty()) std::remove(config_path.c_str());
  }
};

// Whether a file is mapped into this process (an extension build still loaded).
inline bool mapped(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find(path) != std::string::npos) return true;
  return false;
}

// Expects `error` to carry `code` and each of `parts` in its message.
inline void expect_error(const Error& error, Errc code,
                         std::initializer_list<std::string_view> parts) {
  EXPECT_EQ(error.code, code);
  for (auto part : parts)
    EXPECT_NE(error.message().find(part), std::string::npos) << error.message();
}

}  // namespace dynamos::core::testing
