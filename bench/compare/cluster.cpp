#include "bench/compare/cluster.hpp"

#include <unistd.h>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "bench/compare/config.hpp"
#include "bench/workload/size.hpp"
#include "gang/client/control.hpp"
#include "kernelside/cgroup.hpp"
#include "kernelside/fs.hpp"

namespace dynamos::compare {

namespace proto = gang::proto;

namespace {

std::string effective_socket(std::string socket) {
  if (!socket.empty()) return socket;
  if (const char* env = std::getenv("DYNAMOS_SOCKET"); env && *env) return env;
  return cli::kDefaultSocket;
}

// The last non-empty line of a command's error output: its one-line error.
std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of("\n ");
  if (end == std::string::npos) return "";
  auto start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

}  // namespace

Cluster::Cluster(std::string dynamos, std::string socket)
    : dynamos_(std::move(dynamos)), socket_(effective_socket(std::move(socket))) {}

Result<proto::Message> Cluster::ask(const proto::Message& m,
                                    std::chrono::nanoseconds timeout) const {
  auto r = cli::ask(socket_, m, timeout);
  if (!r && r.error().code == Errc::not_found && r.error().sys_errno == 0)
    return fail(Errc::not_found, "gangd is not running at " + socket_);
  return r;
}

std::string Cluster::state_dir() const {
  // `cluster up` puts gangd's socket at <state-dir>/gangd.sock.
  if (socket_ == cli::kDefaultSocket) return "";
  std::filesystem::path p(socket_);
  return p.filename() == "gangd.sock" ? p.parent_path().string() : "";
}

bool Cluster::reachable() const {
  auto r = ask(proto::ListNodes{}, std::chrono::seconds(3));
  return r && std::holds_alternative<proto::NodeList>(*r);
}

Result<Finished> Cluster::cli(const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv{dynamos_};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_command(argv, timeout, {"DYNAMOS_SOCKET=" + socket_});
  if (!r) return r;
  const std::string what = "dynamos " + (args.empty() ? std::string() : args[0]) +
                           (args.size() > 1 ? " " + args[1] : std::string());
  if (r->timed_out)
    return fail(Errc::timed_out,
                what + " did not finish within " + std::to_string(timeout.count() / 1000) + " s");
  if (r->exit_code != 0) {
    auto line = last_line(r->err);
    if (line.empty()) line = last_line(r->out);
    return fail(Errc::state, what + " failed (exit " + std::to_string(r->exit_code) + ")" +
                                 (line.empty() ? "" : ": " + line));
  }
  return r;
}

Result<void> Cluster::up(unsigned nodes, std::uint64_t mem_per_node,
                         std::chrono::nanoseconds quantum, unsigned slots) {
  std::vector<std::string> args{"cluster",        "up",
                                "--nodes",        std::to_string(nodes),
                                "--mem-per-node", std::to_string(mem_per_node >> 20) + "M",
                                "--quantum",      format_duration(quantum)};
  if (slots) {
    args.push_back("--slots");
    args.push_back(std::to_string(slots));
  }
  if (!state_dir().empty()) {
    args.push_back("--state-dir");
    args.push_back(state_dir());
  }
  // Groups of its own: another virtual cluster on this machine (a test's, an operator's)
  // must not share, or take down, this one's.
  const std::string parent = "dynamos-compare-" + std::to_string(::getpid());
  args.push_back("--cgroup-parent");
  args.push_back(parent);
  auto r = cli(args, std::chrono::seconds(180));
  if (!r) return std::unexpected(r.error());
  cgroup_parent_ = parent;
  return {};
}

Result<std::uint64_t> Cluster::oom_kills(const std::vector<std::string>& nodes) const {
  if (cgroup_parent_.empty())
    return fail(Errc::state, "the nodes' cgroups are unknown (a cluster started elsewhere)");
  auto layout = kernelside::Layout::detect();
  if (!layout) return std::unexpected(layout.error());
  if (layout->serving(kernelside::Controller::memory) != kernelside::CgroupVersion::v2)
    return machine_oom_kills();
  std::uint64_t kills = 0;
  for (const auto& node : nodes) {
    auto g = kernelside::Group::open(*layout, cgroup_parent_ + "/" + node,
                                     {kernelside::Controller::memory});
    if (!g) return std::unexpected(with_context(g.error(), "node " + node));
    auto ev = g->memory_events();
    if (!ev) return std::unexpected(with_context(ev.error(), "node " + node));
    kills += ev->oom_kills;
  }
  return kills;
}

Result<std::uint64_t> Cluster::machine_oom_kills() {
  auto vm = kernelside::read_flat_keyed("/proc/vmstat");
  if (!vm) return std::unexpected(vm.error());
  if (!vm->contains("oom_kill")) return fail(Errc::unsupported, "/proc/vmstat has no oom_kill");
  return vm->at("oom_kill");
}

std::string Cluster::oom_scope() {
  auto layout = kernelside::Layout::detect();
  bool v2 =
      layout && layout->serving(kernelside::Controller::memory) == kernelside::CgroupVersion::v2;
  return v2 ? "the nodes' memory cgroups" : "this machine (/proc/vmstat; cgroup v1)";
}

Result<void> Cluster::down() {
  std::vector<std::string> args{"cluster", "down"};
  if (!state_dir().empty()) {
    args.push_back("--state-dir");
    args.push_back(state_dir());
  }
  auto r = cli(args, std::chrono::seconds(120));
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<void> Cluster::set_quantum(std::chrono::nanoseconds quantum) {
  auto r = ask(proto::SetQuantum{static_cast<std::uint64_t>(quantum.count())});
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<std::vector<proto::NodeInfo>> Cluster::nodes() const {
  auto r = ask(proto::ListNodes{});
  if (!r) return std::unexpected(r.error());
  if (auto* l = std::get_if<proto::NodeList>(&*r)) return l->nodes;
  return fail(Errc::protocol, "gangd did not answer list_nodes with a node list");
}

Result<std::vector<proto::JobInfo>> Cluster::jobs() const {
  auto r = ask(proto::ListJobs{});
  if (!r) return std::unexpected(r.error());
  if (auto* l = std::get_if<proto::JobList>(&*r)) return l->jobs;
  return fail(Errc::protocol, "gangd did not answer list_jobs with a job list");
}

Result<proto::JobId> Cluster::submit(const SubmitRequest& s) {
  std::error_code ec;
  proto::JobSubmit m;
  m.name = s.name;
  m.ranks = s.ranks;
  m.nodes = s.nodes;
  m.paging = s.paging;
  m.argv = s.argv;
  m.cwd = s.cwd.empty() ? std::filesystem::current_path(ec).string() : s.cwd;
  m.output = s.output;
  auto r = ask(m);
  if (!r) return std::unexpected(with_context(r.error(), "submitting " + s.name));
  if (auto* ok = std::get_if<proto::JobSubmitted>(&*r)) return ok->job;
  return fail(Errc::protocol, "gangd did not answer job_submit with a job id");
}

Result<void> Cluster::cancel(proto::JobId job) {
  auto r = ask(proto::JobCancel{job});
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<std::vector<nlohmann::json>> Cluster::switches(const std::vector<std::string>& nodes) const {
  auto r =
      ask(proto::NodeCommand{nodes, "switches", {}, 20'000'000'000ull}, std::chrono::seconds(25));
  if (!r) return std::unexpected(r.error());
  auto* res = std::get_if<proto::NodeCommandResult>(&*r);
  if (!res) return fail(Errc::protocol, "gangd did not answer the switches op with node results");
  std::vector<nlohmann::json> out;
  for (const auto& n : res->results) {
    if (!n.ok) return fail(Errc::state, "switches on node " + n.node + ": " + n.output);
    std::istringstream lines(n.output);
    for (std::string line; std::getline(lines, line);) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto record = nlohmann::json::parse(line, nullptr, false);
      if (record.is_discarded())
        return fail(Errc::protocol, "switches of node " + n.node + ": not JSON: " + line);
      out.push_back(std::move(record));
    }
  }
  return out;
}

Result<std::vector<pid_t>> Cluster::job_pids(proto::JobId job, const std::string& node) const {
  auto r = ask(proto::NodeCommand{{node}, "job-pids", {std::to_string(job)}, 10'000'000'000ull},
               std::chrono::seconds(15));
  if (!r) return std::unexpected(r.error());
  auto* res = std::get_if<proto::NodeCommandResult>(&*r);
  if (!res || res->results.empty())
    return fail(Errc::protocol, "gangd did not answer job-pids with node results");
  const auto& n = res->results.front();
  if (!n.ok) return fail(Errc::state, "job-pids on node " + n.node + ": " + n.output);
  std::vector<pid_t> pids;
  const char* p = n.output.data();
  const char* end = p + n.output.size();
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\n'))
      ++p;
    if (p >= end) break;
    pid_t pid = 0;
    auto [next, ec] = std::from_chars(p, end, pid);
    if (ec != std::errc{}) return fail(Errc::protocol, "job-pids printed '" + n.output + "'");
    pids.push_back(pid);
    p = next;
  }
  return pids;
}

Result<void> Cluster::cyclesteal(const std::string& node, bool on, const std::string& policy) {
  std::vector<std::string> args{"cyclesteal", on ? "on" : "off", "--node", node};
  if (on) {
    args.push_back("--policy");
    args.push_back(policy);
  }
  auto r = cli(args);
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<pid_t> Cluster::guest_run(const std::string& node, const std::vector<std::string>& argv,
                                 const std::string& cwd) {
  // The guest runs in the CLI's working directory: start the CLI there (env --chdir).
  std::vector<std::string> cmd{"/usr/bin/env",
                               "--chdir=" + cwd,
                               "DYNAMOS_SOCKET=" + socket_,
                               dynamos_,
                               "guest",
                               "run",
                               "--node",
                               node,
                               "--"};
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  auto r = run_command(cmd, std::chrono::seconds(30), {});
  if (!r) return std::unexpected(r.error());
  if (r->timed_out || r->exit_code != 0)
    return fail(Errc::state, "dynamos guest run failed: " +
                                 (r->timed_out ? std::string("timed out") : last_line(r->err)));
  auto line = last_line(r->out);
  // The pid is the last number on the last line ("1234", "pid 1234", "guest 1234 on n1"...).
  pid_t pid = 0;
  for (std::size_t i = 0; i < line.size();) {
    if (std::isdigit(static_cast<unsigned char>(line[i]))) {
      std::size_t j = i;
      while (j < line.size() && std::isdigit(static_cast<unsigned char>(line[j])))
        ++j;
      pid_t v = 0;
      std::from_chars(line.data() + i, line.data() + j, v);
      if (v > 0 && (j == line.size() || line[j] == ' ')) pid = v;
      i = j;
    } else {
      ++i;
    }
  }
  if (pid <= 0) return fail(Errc::protocol, "dynamos guest run printed no pid ('" + line + "')");
  return pid;
}

Result<std::string> Cluster::ext_upgrade(const std::string& ext, const std::string& path,
                                         const std::string& node) {
  std::vector<std::string> args{"ext", "upgrade", ext, path};
  if (!node.empty()) {
    args.push_back("--node");
    args.push_back(node);
  }
  auto r = cli(args);
  if (!r) return std::unexpected(r.error());
  return r->out;
}

}  // namespace dynamos::compare
