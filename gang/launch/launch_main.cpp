// dynamos-launch: the supervisor of one job's mpirun, started by gangd for every job it
// places. It detaches from gangd (a restarted gangd does not take its jobs with it),
// runs mpirun as the job's owner over a hostfile of the job's nodes, with every rank
// started through dynamos-rank (which joins the job's group before the program runs),
// and reports the exit status to gangd (JobExited), retrying while gangd is away.
//
//   dynamos-launch --job ID --hosts n1:2,n2:2 --uid U --gid G --cwd DIR --output FILE
//                  --control-socket PATH [--mode virtual|ssh|slurm] [--run-dir DIR]
//                  [--mpirun-args ARGS] [--mpi-args ARGS] [--env-file FILE] -- PROGRAM [ARGS...]
//
// mpirun's command line and environment come from gang/mpirun_command.hpp: the
// submitter's environment (--env-file, removed once read) less what must not pass.
//
// Exit status of this process: 0 once the supervisor is running in the background, 2
// for bad arguments; the job's own status goes to gangd. Files: <run-dir>/launch/job<ID>.pid
// (the supervisor, for `dynamos cluster down`) and job<ID>.hosts (mpirun's hostfile),
// both removed when the job ends.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "gang/client/control.hpp"
#include "gang/hostfile.hpp"
#include "gang/launch/options.hpp"
#include "gang/launch_path.hpp"
#include "gang/mpirun_command.hpp"
#include "kernelside/spawn.hpp"

extern char** environ;

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::gang;

namespace {

volatile std::sig_atomic_t g_terminate = 0;
pid_t g_mpirun = -1;

void on_terminate(int) {
  g_terminate = 1;
  if (g_mpirun > 0) ::kill(-g_mpirun, SIGTERM);  // mpirun's process group
}

int die(int status, const std::string& message) {
  std::fprintf(stderr, "dynamos-launch: %s\n", message.c_str());
  return status;
}

void log(const std::string& line) {
  std::fprintf(stderr, "dynamos-launch[%d]: %s\n", static_cast<int>(::getpid()), line.c_str());
  std::fflush(stderr);
}

Result<std::vector<HostEntry>> parse_hosts(const std::string& text) {
  std::vector<HostEntry> hosts;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    auto item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto colon = item.rfind(':');
    if (item.empty() || colon == std::string::npos || colon == 0)
      return fail(Errc::invalid_argument, "--hosts: '" + item + "' is not NODE:RANKS");
    int ranks = 0;
    try {
      ranks = std::stoi(item.substr(colon + 1));
    } catch (const std::exception&) {
      ranks = 0;
    }
    if (ranks <= 0)
      return fail(Errc::invalid_argument, "--hosts: bad rank count in '" + item + "'");
    hosts.push_back({item.substr(0, colon), ranks, 0});
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return hosts;
}

std::size_t env_count() {
  std::size_t n = 0;
  while (environ[n])
    ++n;
  return n;
}

// The submitter's environment gangd wrote (gang/gangd/launch.hpp); the file goes once read.
Result<std::vector<std::string>> read_env_file(const std::string& path) {
  std::vector<std::string> env;
  if (path.empty()) return env;
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail_errno("open --env-file " + path);
  std::string entry;
  while (std::getline(in, entry, '\0'))
    if (!entry.empty()) env.push_back(entry);
  ::unlink(path.c_str());
  return env;
}

// Starts mpirun through the one spawner (kernelside/spawn.hpp): as the job's owner with
// its groups, in its directory and process group, with the job's environment (mpirun
// is looked up in the job's PATH: module load openmpi), its output appended to the
// job's file (/dev/null when that cannot be opened), and only descriptors 0-2 open.
Result<pid_t> start_mpirun(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env, uid_t uid, gid_t gid,
                           const std::string& cwd, const std::string& output) {
  kernelside::SpawnOptions o;
  o.argv = argv;
  o.env = env;
  o.cwd = cwd;
  if (uid != 0) {
    kernelside::User user{uid, gid, {gid}, "", ""};
    if (auto u = kernelside::user_of(uid)) {
      user.groups = u->groups;
      user.name = u->name;
      user.home = u->home;
    }
    o.user = user;
  }
  o.new_process_group = true;
  o.out = kernelside::Redirect::file(output, /*append=*/true, /*or_dev_null=*/true);
  o.err_to_out = true;
  return kernelside::spawn(o);
}

// Reports the job's end; gangd may be restarting: retry for a while.
void report(const std::string& socket, const proto::JobExited& m) {
  auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  for (;;) {
    auto r = control_request(socket, m, std::chrono::seconds(10));
    if (r) return;
    if (r.error().code == Errc::not_found || r.error().code == Errc::not_permitted) {
      log("gangd: " + r.error().message());  // cancelled, or gangd lost the job
      return;
    }
    if (g_terminate || std::chrono::steady_clock::now() > give_up) {
      log("could not report job " + std::to_string(m.job) + "'s exit: " + r.error().message());
      return;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

// One job's mpirun, ready to run.
struct Supervised {
  std::uint64_t job = 0;
  std::vector<std::string> cmd, env;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string cwd, output;
  std::string base;  // <run-dir>/launch/job<ID>: .pid and .hosts
  std::string control_socket;
  bool foreground = false;
};

// Detaches (unless in the foreground), runs mpirun, reports its exit to gangd, and
// removes the job's launch files.
int supervise(const Supervised& s) {
  if (!s.foreground) {
    // Detach: gangd waits for this first process only; the supervisor lives on in a
    // session of its own.
    pid_t child = ::fork();
    if (child < 0) return die(1, std::string("fork: ") + std::strerror(errno));
    if (child > 0) return 0;
    ::setsid();
  }
  {
    std::ofstream pidf(s.base + ".pid", std::ios::trunc);
    pidf << ::getpid() << "\n";
  }
  struct sigaction sa {};
  sa.sa_handler = on_terminate;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGHUP, SIG_IGN);

  std::string line;
  for (const auto& a : s.cmd)
    line += (line.empty() ? "" : " ") + a;
  log("job " + std::to_string(s.job) + ": " + line);
  auto started = start_mpirun(s.cmd, s.env, s.uid, s.gid, s.cwd, s.output);
  if (!started) {
    log("job " + std::to_string(s.job) + ": " + started.error().message());
    report(s.control_socket,
           proto::JobExited{s.job, 127, "mpirun did not start: " + started.error().message()});
    ::unlink((s.base + ".hosts").c_str());
    ::unlink((s.base + ".pid").c_str());
    return 0;
  }
  const pid_t pid = *started;
  g_mpirun = pid;
  if (g_terminate) ::kill(-pid, SIGTERM);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  proto::JobExited m{s.job, 0, ""};
  if (WIFEXITED(status)) {
    m.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    m.exit_code = 128 + WTERMSIG(status);
    m.reason = std::string("mpirun killed by signal ") + strsignal(WTERMSIG(status));
  }
  if (g_terminate && m.reason.empty()) m.reason = "terminated";
  log("job " + std::to_string(s.job) + " ended with status " + std::to_string(m.exit_code));
  report(s.control_socket, m);
  ::unlink((s.base + ".hosts").c_str());
  ::unlink((s.base + ".pid").c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int split = dashes_index(argc, argv);  // the program follows "--"
  po::options_description opts(
      "usage: dynamos-launch --job ID --hosts NODE:RANKS,... --control-socket PATH [options]\n"
      "                      -- PROGRAM [ARGS...]\n\n"
      "Supervises one job's mpirun for gangd (which starts it): runs mpirun as the job's\n"
      "owner over a hostfile of the job's nodes, every rank through dynamos-rank, and\n"
      "reports the exit status to gangd.\n\noptions");
  // clang-format off
  opts.add_options()
      ("help,h", "print this help and exit")
      ("job", po::value<std::uint64_t>(), "the job's id")
      ("hosts", po::value<std::string>(), "the job's nodes and ranks per node, in order: n1:2,n2:2")
      ("uid", po::value<unsigned>()->default_value(0), "the job's owner")
      ("gid", po::value<unsigned>()->default_value(0), "the owner's group")
      ("cwd", po::value<std::string>()->default_value("/"), "the job's working directory")
      ("output", po::value<std::string>(), "the job's output file (default <cwd>/dynamos-job<ID>.out)")
      ("control-socket", po::value<std::string>(), "gangd's control socket, for the exit report")
      ("mode", po::value<std::string>()->default_value("virtual"),
       "virtual: every node is this host (dynamos-vrsh, MPI over loopback TCP); ssh: real hosts")
      ("run-dir", po::value<std::string>()->default_value("/run/dynamos"), "the agents' sockets and launch files")
      ("mpirun", po::value<std::string>()->default_value("mpirun"), "the mpirun to use")
      ("mpirun-args", po::value<std::string>()->default_value(kDefaultMpirunArgs),
       "the cluster's mpirun options")
      ("mpi-args", po::value<std::string>()->default_value(""), "the job's own mpirun options")
      ("env-file", po::value<std::string>(), "the job's environment (NUL-separated; removed)")
      ("foreground", po::bool_switch(), "do not detach (tests)");
  // clang-format on
  po::variables_map vm;
  if (auto status = parse_launch_options("dynamos-launch", split, argv, opts, vm)) return *status;
  for (auto required : {"job", "hosts", "control-socket"})
    if (!vm.count(required)) return die(2, std::string("--") + required + " is required");
  if (split >= argc - 1) return die(2, "no program given after --");
  auto job = vm["job"].as<std::uint64_t>();
  auto hosts = parse_hosts(vm["hosts"].as<std::string>());
  if (!hosts) return die(2, hosts.error().message());
  auto mode = vm["mode"].as<std::string>();
  if (mode != "virtual" && mode != "ssh" && mode != "slurm")
    return die(2, "--mode must be virtual, ssh or slurm");
  auto run_dir = vm["run-dir"].as<std::string>();
  auto cwd = vm["cwd"].as<std::string>();
  auto output = vm.count("output") ? vm["output"].as<std::string>()
                                   : cwd + "/dynamos-job" + std::to_string(job) + ".out";
  uid_t uid = vm["uid"].as<unsigned>();
  gid_t gid = vm["gid"].as<unsigned>();

  // This program's directory holds dynamos-rank and dynamos-vrsh.
  char self[4096] = {};
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return die(1, std::string("readlink /proc/self/exe: ") + std::strerror(errno));
  std::string bindir(self, static_cast<std::size_t>(n));
  bindir = bindir.substr(0, bindir.rfind('/'));

  std::string launch_dir = run_dir + "/launch";
  ::mkdir(run_dir.c_str(), 0755);
  ::mkdir(launch_dir.c_str(), 0755);
  std::string base = launch_dir + "/job" + std::to_string(job);
  std::string hostfile = base + ".hosts";
  {
    std::ofstream f(hostfile, std::ios::trunc);
    f << format_hostfile(*hosts);
    if (!f) return die(1, "cannot write " + hostfile);
  }
  ::chmod(hostfile.c_str(), 0644);
  int ranks = 0;
  for (const auto& h : *hosts)
    ranks += h.slots;

  MpirunPlan plan{
      vm["mpirun"].as<std::string>(), mode, bindir, run_dir, hostfile, job, ranks, uid == 0, {}, {},
      {argv + split + 1, argv + argc}};
  auto cluster_args = split_words(vm["mpirun-args"].as<std::string>());
  if (!cluster_args) return die(2, "--mpirun-args: " + cluster_args.error().message());
  auto job_args = split_words(vm["mpi-args"].as<std::string>());
  if (!job_args) return die(2, "--mpi-args: " + job_args.error().message());
  plan.cluster_args = std::move(*cluster_args);
  plan.job_args = std::move(*job_args);
  auto cmd = mpirun_command(plan);
  auto submitted = read_env_file(vm.count("env-file") ? vm["env-file"].as<std::string>() : "");
  if (!submitted) return die(1, submitted.error().message());
  std::vector<std::string> own(environ, environ + env_count());
  const passwd* pw = ::getpwuid(uid);
  auto env =
      rank_environment(*submitted, own, mode, {uid, pw ? pw->pw_name : "", pw ? pw->pw_dir : "/"});

  return supervise({job, std::move(cmd), std::move(env), uid, gid, cwd, output, base,
                    vm["control-socket"].as<std::string>(), vm["foreground"].as<bool>()});
}
