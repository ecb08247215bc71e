#include "gang/gangd/launch.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

namespace dynamos::gang {

namespace {

// The submitter's environment for dynamos-launch (see launch.hpp), readable by root only.
Result<void> write_env_file(const std::string& path, const std::vector<std::string>& env) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return fail_errno("create " + path);
  std::string data;
  for (const auto& e : env)
    data.append(e).push_back('\0');
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      return fail_errno(e, "write " + path);
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return {};
}

}  // namespace

Result<void> launch_job(const LaunchConfig& config, const JournalJob& job,
                        const proto::JobSubmit& request) {
  const std::string& output = request.output;
  if (auto words = split_words(request.mpi_args); !words)
    return fail(Errc::invalid_argument, "--mpi-args: " + words.error().message());
  const passwd* pw = ::getpwuid(job.uid);
  if (!pw) return fail(Errc::invalid_argument, "uid " + std::to_string(job.uid) + " has no user");
  struct stat st {};
  if (job.cwd.empty() || job.cwd[0] != '/' || ::stat(job.cwd.c_str(), &st) != 0 ||
      !S_ISDIR(st.st_mode))
    return fail(Errc::invalid_argument, "working directory '" + job.cwd + "' is not a directory");
  if (job.cells.empty()) return fail(Errc::invalid_argument, "job has no nodes");
  std::string hosts;
  for (const auto& [node, ranks] : job.cells)
    hosts += (hosts.empty() ? "" : ",") + node + ":" + std::to_string(ranks);

  std::vector<std::string> args = {config.launcher,
                                   "--job",
                                   std::to_string(job.id),
                                   "--hosts",
                                   hosts,
                                   "--uid",
                                   std::to_string(job.uid),
                                   "--gid",
                                   std::to_string(pw->pw_gid),
                                   "--cwd",
                                   job.cwd,
                                   "--control-socket",
                                   config.control_socket,
                                   "--mode",
                                   config.mode,
                                   "--run-dir",
                                   config.run_dir,
                                   "--mpirun",
                                   config.mpirun,
                                   "--mpirun-args",
                                   config.mpirun_args};
  if (!request.mpi_args.empty()) {
    args.push_back("--mpi-args");
    args.push_back(request.mpi_args);
  }
  if (!output.empty()) {
    args.push_back("--output");
    args.push_back(output[0] == '/' ? output : job.cwd + "/" + output);
  }
  args.push_back("--");
  for (const auto& a : job.argv)
    args.push_back(a);
  ::mkdir(config.run_dir.c_str(), 0755);
  std::string launch_dir = config.run_dir + "/launch";
  ::mkdir(launch_dir.c_str(), 0755);
  std::string log = launch_dir + "/job" + std::to_string(job.id) + ".log";
  if (!request.env.empty()) {
    std::string env_file = launch_dir + "/job" + std::to_string(job.id) + ".env";
    if (auto r = write_env_file(env_file, request.env); !r) return r;
    // "--" and the program follow; the option goes before them.
    args.insert(args.end() - static_cast<std::ptrdiff_t>(job.argv.size()) - 1,
                {"--env-file", env_file});
  }
  // dynamos-launch detaches by itself: this first process exits once it has.
  auto pid = spawn_program(args, log, false, false);
  if (!pid) {
    ::unlink((launch_dir + "/job" + std::to_string(job.id) + ".env").c_str());
    return std::unexpected(pid.error());
  }
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};  // it owns the env file now
  ::unlink((launch_dir + "/job" + std::to_string(job.id) + ".env").c_str());
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return fail(Errc::refused, "the launcher failed (" + log + "): " + last);
}

}  // namespace dynamos::gang
