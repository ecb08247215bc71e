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

std::string sibling_program(const std::string& name) {
  char self[4096] = {};
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return name;
  std::string dir(self, static_cast<std::size_t>(n));
  return dir.substr(0, dir.rfind('/') + 1) + name;
}

int dashes_index(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--") == 0) return i;
  return argc;
}

Result<void> launch_job(const LaunchConfig& config, const JournalJob& job,
                        const std::string& output) {
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
                                   config.mpirun};
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
  // dynamos-launch detaches by itself: this first process exits once it has.
  auto pid = spawn_program(args, log, false, false);
  if (!pid) return std::unexpected(pid.error());
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return fail(Errc::refused, "the launcher failed (" + log + "): " + last);
}

}  // namespace dynamos::gang
