#include "tests/mpi/command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

extern char** environ;

namespace dynamos::test {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Ends a command's process group. mpirun puts each rank in a process group of its own,
// so it gets SIGTERM first and a moment to end its ranks; then the group gets SIGKILL.
void terminate_group(pid_t pid, int* status) {
  kill(-pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid, status, WNOHANG) == pid) {
      kill(-pid, SIGKILL);
      return;
    }
    usleep(30000);
  }
  kill(-pid, SIGKILL);
  waitpid(pid, status, 0);
}

}  // namespace

BackgroundCommand::BackgroundCommand(const std::vector<std::string>& argv,
                                     const std::vector<std::string>& env) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e)
    envs.emplace_back(*e);
  for (const auto& e : env)
    envs.push_back(e);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv)
    cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : envs)
    cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, cargv[0], &fa, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    throw std::runtime_error("spawn " + argv[0] + ": " + std::strerror(rc));
  }
  pid_ = pid;
  out_fd_ = out[0];
  err_fd_ = err[0];
}

BackgroundCommand::~BackgroundCommand() {
  if (pid_ > 0) {
    int status = 0;
    terminate_group(pid_, &status);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

CommandResult BackgroundCommand::wait(double timeout_s) {
  CommandResult r;
  double deadline = now() + timeout_s;
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    double left = deadline - now();
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    int n = poll(fds, 2, static_cast<int>(left * 1000) + 1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got <= 0) {
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      r.output.append(buf, static_cast<std::size_t>(got));
      if (i == 0) r.stdout_text.append(buf, static_cast<std::size_t>(got));
    }
  }
  int status = 0;
  if (r.timed_out)
    terminate_group(pid_, &status);
  else
    waitpid(pid_, &status, 0);
  // The group may still hold helpers (mpirun's daemons): end them too.
  kill(-pid_, SIGKILL);
  pid_ = -1;
  if (!r.timed_out && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

CommandResult run_command(const std::vector<std::string>& argv, double timeout_s,
                          const std::vector<std::string>& env) {
  BackgroundCommand c(argv, env);
  return c.wait(timeout_s);
}

std::vector<std::string> mpirun(int ranks) {
  return {"mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
          "-np",    std::to_string(ranks)};
}

std::vector<std::string> mpi_env() {
  return {"ASAN_OPTIONS=detect_leaks=0", "OMPI_MCA_btl=self,vader",
          "OMPI_MCA_btl_vader_single_copy_mechanism=none"};
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "dynamos-mpitest-XXXXXX").string();
  if (!mkdtemp(tmpl.data()))
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

}  // namespace dynamos::test
