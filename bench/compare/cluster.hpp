// The harness's view of a gang cluster: the dynamos CLI's commands for what sets the
// cluster up or changes its nodes (cluster up/down, cycle stealing, guests, extension
// upgrades), run as child processes so that the harness does what an operator would
// type, and gangd's control socket for jobs (submit, cancel, list), nodes and node ops.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "bench/compare/process.hpp"
#include "gang/protocol.hpp"

namespace dynamos::compare {

struct SubmitRequest {
  std::string name;
  unsigned ranks = 1;
  unsigned nodes = 0;
  std::string paging = "demand";
  std::string output;  // file for the job's standard output and error
  std::string cwd;     // its working directory; "" = this process's
  std::vector<std::string> argv;
};

class Cluster {
 public:
  // `dynamos`: the CLI program; `socket`: gangd's control socket ("" = the CLI's default,
  // $DYNAMOS_SOCKET or /run/dynamos/gangd.sock).
  Cluster(std::string dynamos, std::string socket);

  const std::string& socket() const { return socket_; }
  // The state folder a cluster started here uses: the socket's folder when the socket
  // is <dir>/gangd.sock and not the default ("" = cluster up's default).
  std::string state_dir() const;
  // Whether gangd answers on the socket.
  bool reachable() const;

  // `dynamos cluster up`; slots 0: the CLI's default.
  Result<void> up(unsigned nodes, std::uint64_t mem_per_node, std::chrono::nanoseconds quantum,
                  unsigned slots = 0);
  Result<void> down();
  Result<void> set_quantum(std::chrono::nanoseconds quantum);

  Result<std::vector<gang::proto::NodeInfo>> nodes() const;
  Result<std::vector<gang::proto::JobInfo>> jobs() const;

  Result<gang::proto::JobId> submit(const SubmitRequest& r);
  Result<void> cancel(gang::proto::JobId job);

  // The agents' switch records on `nodes` (each a JSON object: node, round, outgoing,
  // incoming, freeze_ms, paging_ms, thaw_ms, total_ms, paging [...], error).
  Result<std::vector<nlohmann::json>> switches(const std::vector<std::string>& nodes) const;
  // The pids in a job's group on a node.
  Result<std::vector<pid_t>> job_pids(gang::proto::JobId job, const std::string& node) const;

  Result<void> cyclesteal(const std::string& node, bool on, const std::string& policy);
  // Starts a guest on the node; its pid.
  // A guest started in `cwd` (its output file, dynamos-guest-<node>-<pid>.out, goes there).
  Result<pid_t> guest_run(const std::string& node, const std::vector<std::string>& argv,
                          const std::string& cwd);
  // Upgrades a loaded extension in place on every node (node "" ) or one; the CLI's output.
  Result<std::string> ext_upgrade(const std::string& ext, const std::string& path,
                                  const std::string& node = "");

  // OOM kills the memory controller counted for the nodes: on cgroup v2 the nodes'
  // memory.events oom_kill, summed (a kill counts in every group above the victim). On
  // v1 a kill counts only in the victim's own memory cgroup, the job's, which goes with
  // the job; there the machine's count (/proc/vmstat oom_kill) stands in, see
  // oom_scope(). Only for a cluster started by up() here, whose cgroups are known.
  Result<std::uint64_t> oom_kills(const std::vector<std::string>& nodes) const;
  // Where oom_kills counts, in words: "the nodes' memory cgroups" or "this machine".
  static std::string oom_scope();
  // The OOM kills of the whole machine since boot (/proc/vmstat oom_kill).
  static Result<std::uint64_t> machine_oom_kills();

  // Runs `dynamos ARGS...` with this cluster's socket; fails with the command's own
  // error line when it exits non-zero.
  Result<Finished> cli(const std::vector<std::string>& args,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;

 private:
  Result<gang::proto::Message> ask(
      const gang::proto::Message& m,
      std::chrono::nanoseconds timeout = std::chrono::seconds(10)) const;
  std::string dynamos_;
  std::string socket_;
  std::string cgroup_parent_;  // of a cluster up() started ("" otherwise)
};

}  // namespace dynamos::compare
