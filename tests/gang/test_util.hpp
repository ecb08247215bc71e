// Helpers for the gang tests: a temporary directory removed on every path out, the
// privileged-test rule (under CI=true a test that needs root must fail, not skip), and
// the daemons (gangd, dynamosd) a test starts and always stops.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

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

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// In a forked child: stdout and stderr to these files (created or truncated).
inline void redirect_output(const std::string& out_path, const std::string& err_path) {
  int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ::dup2(out, 1);
  ::dup2(err, 2);
}

// In a forked child: execs `prog` with `args`; exits 127 if that fails.
[[noreturn]] inline void exec_or_exit(const std::string& prog, std::vector<std::string>& args) {
  std::vector<char*> argv{const_cast<char*>(prog.c_str())};
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(prog.c_str(), argv.data());
  ::_exit(127);
}

// Starts `prog` with `args`; stdout and stderr go to <dir>/<tag>.out and .err.
inline pid_t spawn(const std::string& prog, std::vector<std::string> args, const std::string& dir,
                   const std::string& tag) {
  pid_t pid = ::fork();
  if (pid == 0) {
    redirect_output(dir + "/" + tag + ".out", dir + "/" + tag + ".err");
    exec_or_exit(prog, args);
  }
  return pid;
}

// A daemon a test started: killed and reaped if the test fails half-way.
struct Daemon {
  pid_t pid = -1;
  ~Daemon() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  // SIGTERM and wait: its wait status (0 when it was not running).
  int stop() {
    if (pid <= 0) return 0;
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return status;
  }
};

// Polls pred every `poll` until it holds or `until` passes; whether it held.
inline bool eventually(std::chrono::steady_clock::time_point until,
                       const std::function<bool()>& pred,
                       std::chrono::milliseconds poll = std::chrono::milliseconds(50)) {
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(poll);
  }
}
inline bool eventually(std::chrono::milliseconds within, const std::function<bool()>& pred,
                       std::chrono::milliseconds poll = std::chrono::milliseconds(50)) {
  return eventually(std::chrono::steady_clock::now() + within, pred, poll);
}

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
