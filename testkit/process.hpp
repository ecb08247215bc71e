// Child processes for the remote tests: a target whose output lines are watched,
// and a command run to completion with its output and exit status.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace remote_test {

inline std::vector<char*> argv_of(std::vector<std::string>& args) {
  std::vector<char*> v;
  for (auto& a : args)
    v.push_back(a.data());
  v.push_back(nullptr);
  return v;
}

// A running program (the target). Its stdout lines are collected by a reader thread.
class Program {
 public:
  explicit Program(std::vector<std::string> args) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      setpgid(0, 0);
      auto v = argv_of(args);
      execv(v[0], v.data());
      _exit(127);
    }
    close(fds[1]);
    fd_ = fds[0];
    reader_ = std::thread([this] { read_lines(); });
  }
  ~Program() {
    if (pid_ > 0) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
    if (fd_ >= 0) close(fd_);
  }
  pid_t pid() const { return pid_; }

  std::string last_line() {
    std::lock_guard l(mu_);
    return last_;
  }
  std::size_t lines() {
    std::lock_guard l(mu_);
    return count_;
  }
  // Waits until a line after now contains `text`.
  bool wait_for(const std::string& text,
                std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const std::size_t from = lines();
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard l(mu_);
        for (std::size_t i = from; i < all_.size(); ++i)
          if (all_[i].find(text) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  // True when the target still runs: alive, not stopped, and printing.
  bool runs_on(std::string* why = nullptr) {
    const std::size_t before = lines();
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      if (why) *why = "target exited (status " + std::to_string(status) + ")";
      pid_ = -1;
      return false;
    }
    if (lines() <= before) {
      if (why) *why = "target printed nothing for 120 ms (stopped?)";
      return false;
    }
    return true;
  }

 private:
  void read_lines() {
    std::string partial;
    char buf[4096];
    for (;;) {
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return;
      partial.append(buf, static_cast<std::size_t>(n));
      std::size_t nl;
      while ((nl = partial.find('\n')) != std::string::npos) {
        std::lock_guard l(mu_);
        last_ = partial.substr(0, nl);
        all_.push_back(last_);
        if (all_.size() > 20000) all_.erase(all_.begin(), all_.begin() + 10000);
        ++count_;
        partial.erase(0, nl + 1);
      }
    }
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::string last_;
  std::vector<std::string> all_;
  std::size_t count_ = 0;
};

struct Output {
  int status = -1;  // exit code, or -signal
  std::string out, err;
};

// Runs a command to completion (optionally as another user via runuser).
inline Output run(std::vector<std::string> args) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    auto v = argv_of(args);
    execvp(v[0], v.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  Output o;
  pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open = 2;
  char buf[4096];
  while (open > 0) {
    if (poll(p, 2, -1) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(p[i].fd);
        p[i].fd = -1;
        --open;
      } else {
        (i == 0 ? o.out : o.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  o.status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return o;
}

}  // namespace remote_test
