// dynamos-rank: the exec wrapper mpirun starts for every rank of a gang-scheduled job.
//
//   dynamos-rank --job ID [--node NAME] [--run-dir DIR] [--timeout 30s] -- PROGRAM [ARGS...]
//
// It asks its node's agent (dynamosd's local socket <run-dir>/agent-<node>.sock) to put
// it into the job's group, and only then execs PROGRAM: a rank is frozen there at once
// when its job is not in the current time slot, so it never runs out of turn, and every
// process it creates is in the job's group too. The node is --node, else $DYNAMOS_NODE
// (set by dynamos-vrsh on a virtual cluster), else $SLURMD_NODENAME (in a Slurm step), else
// this host's short name.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "base/units.hpp"
#include "gang/client/control.hpp"
#include "gang/launch/options.hpp"
#include "gang/launch_path.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::gang;

namespace {

int die(int status, const std::string& message) {
  std::fprintf(stderr, "dynamos-rank: %s\n", message.c_str());
  return status;
}

std::string short_hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  std::string h = buf;
  return h.substr(0, h.find('.'));
}

}  // namespace

int main(int argc, char** argv) {
  // Everything after "--" is the program; options come before it.
  const int split = dashes_index(argc, argv);  // the program follows "--"
  po::options_description opts(
      "usage: dynamos-rank --job ID [options] -- PROGRAM [ARGS...]\n\n"
      "Joins the job's group on this node (through the node agent), then runs PROGRAM.\n"
      "mpirun starts it for every rank of a job that gangd launched.\n\noptions");
  // clang-format off
  opts.add_options()
      ("help,h", "print this help and exit")
      ("job", po::value<std::uint64_t>(), "the job's id")
      ("node", po::value<std::string>(), "this rank's node (default $DYNAMOS_NODE, $SLURMD_NODENAME, else the host name)")
      ("run-dir", po::value<std::string>()->default_value("/run/dynamos"), "where the agents' sockets are")
      ("timeout", po::value<std::string>()->default_value("30s"),
       "how long to wait for the agent to know the job");
  // clang-format on
  po::variables_map vm;
  if (auto status = parse_launch_options("dynamos-rank", split, argv, opts, vm)) return *status;
  if (!vm.count("job")) return die(2, "--job is required (try --help)");
  if (split >= argc - 1) return die(2, "no program given after --");
  std::string node;
  if (vm.count("node"))
    node = vm["node"].as<std::string>();
  else if (const char* env = std::getenv("DYNAMOS_NODE"); env && *env)
    node = env;
  else if (const char* slurm = std::getenv("SLURMD_NODENAME"); slurm && *slurm)
    node = slurm;  // a Slurm step's node, as the allocation names it
  else
    node = short_hostname();
  auto timeout = parse_duration(vm["timeout"].as<std::string>());
  if (!timeout) return die(2, "--timeout: " + timeout.error().message());
  auto job = vm["job"].as<std::uint64_t>();
  auto socket = rank_socket_path(vm["run-dir"].as<std::string>(), node);

  // The agent may not have heard of the job yet (gangd's job_assign and mpirun race):
  // retry while it says busy, or while the socket is not there yet.
  auto deadline = std::chrono::steady_clock::now() + *timeout;
  auto pause = std::chrono::milliseconds(10);
  for (;;) {
    auto r = control_request(socket, proto::RankAttach{job}, *timeout);
    if (r) break;
    // Busy: the agent has not been told of the job yet; no socket: the agent is starting.
    bool again = (r.error().code == Errc::busy && r.error().sys_errno == 0) ||
                 r.error().sys_errno == ENOENT || r.error().sys_errno == ECONNREFUSED;
    if (!again || std::chrono::steady_clock::now() + pause > deadline)
      return die(126, "job " + std::to_string(job) + " on node " + node + " (" + socket +
                          "): " + r.error().message());
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(500));
  }
  ::execvp(argv[split + 1], argv + split + 1);
  return die(127, std::string("cannot run ") + argv[split + 1] + ": " + std::strerror(errno));
}
