// dynamos patch | revert | updates: live updates of another running process, or of
// every rank of a gang-scheduled job (--job: through gangd and the node agents).
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "cli/command.hpp"
#include "core/engine.hpp"
#include "core/remote_update.hpp"
#include "gang/client/control.hpp"
#include "gang/job_patch.hpp"
#include "gang/node_ops.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::core;
using dynamos::gang::proto::JobId;

namespace {

using Clock = std::chrono::steady_clock;
namespace jp = gang::jobpatch;

Result<pid_t> parse_pid(const std::string& s) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v <= 0 || v > 1 << 22)
    return fail(Errc::invalid_argument, "'" + s + "' is not a process id");
  return static_cast<pid_t>(v);
}

Result<std::unique_ptr<Engine>> attach_engine(pid_t pid, std::chrono::milliseconds timeout) {
  return attach_remote_engine(pid, timeout);
}

double ms_of(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// --- a whole job, through gangd and its node agents (gang/job_patch.hpp) -------------

// One node operation on a job's nodes, sent again to the nodes where the job is frozen
// (not its time slice) until it runs there or `deadline` passes. Returns every node's
// final answer. With `stop_on_failure`, a node failing for another reason ends the
// retries (the nodes still frozen keep their refusal as their answer).
Result<std::vector<gang::proto::NodeResult>> until_running(
    const std::string& command, const std::string& socket, std::vector<std::string> nodes,
    const std::string& op, const std::vector<std::string>& args, Clock::time_point deadline,
    bool stop_on_failure) {
  std::vector<gang::proto::NodeResult> final;
  auto pause = std::chrono::milliseconds(10);
  bool told = false;
  for (;;) {
    auto res = cli::node_command(socket, nodes, op, args, std::chrono::seconds(30));
    if (!res) return std::unexpected(res.error());
    std::vector<gang::proto::NodeResult> frozen;
    bool failed = false;
    for (auto& n : res->results) {
      if (!n.ok && jp::is_frozen_refusal(n.output))
        frozen.push_back(std::move(n));
      else {
        failed = failed || !n.ok;
        final.push_back(std::move(n));
      }
    }
    if (frozen.empty() || (failed && stop_on_failure) || Clock::now() + pause > deadline) {
      for (auto& n : frozen)
        final.push_back(std::move(n));
      return final;
    }
    if (!told) {
      std::fprintf(stderr, "dynamos %s: %s; waiting for its time slice\n", command.c_str(),
                   frozen.front().output.c_str());
      told = true;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, std::chrono::milliseconds(200));
    nodes.clear();
    for (const auto& n : frozen)
      nodes.push_back(n.node);
  }
}

std::string revert_token(const std::string& node, const jp::RankUpdate& r) {
  return node + ":" + std::to_string(r.pid) + ":" + std::to_string(r.update);
}

// Takes an update back out of the ranks that took it (all or none). Returns "" when
// every one was reverted, else what is left and why.
std::string roll_back(const std::string& socket, JobId job, SafetyMode mode,
                      const std::map<std::string, jp::NodeUpdates>& done,
                      std::chrono::seconds wait) {
  std::string left;
  const auto deadline = Clock::now() + std::max(wait, std::chrono::seconds(10));
  for (const auto& [node, u] : done) {
    jp::RevertArgs ra{job, mode, {}};
    for (const auto& r : u.ranks)
      ra.targets.push_back({r.pid, r.update});
    auto res = until_running("patch", socket, {node}, std::string(gang::ops::revert),
                             jp::to_args(ra), deadline, true);
    std::string why;
    if (!res)
      why = res.error().message();
    else if (res->size() != 1 || !res->front().ok)
      why = res->empty() ? "no answer" : res->front().output;
    if (why.empty()) continue;
    for (const auto& r : u.ranks)
      left += " " + revert_token(node, r);
    left += " (" + why + ")";
  }
  return left;
}

// patch --job's result: the command that reverts every rank it patched.
std::string revert_command(JobId job, const std::map<std::string, jp::NodeUpdates>& done) {
  std::set<core::UpdateId> ids;
  std::string tokens;
  for (const auto& [node, u] : done)
    for (const auto& r : u.ranks) {
      ids.insert(r.update);
      tokens += " " + revert_token(node, r);
    }
  return "dynamos revert --job " + std::to_string(job) +
         (ids.size() == 1 ? " " + std::to_string(*ids.begin()) : tokens);
}

void print_patched_job(JobId job, SafetyMode mode,
                       const std::map<std::string, jp::NodeUpdates>& done, Clock::duration took,
                       bool json) {
  std::size_t ranks = 0;
  auto list = nlohmann::ordered_json::array();
  for (const auto& [node, u] : done)
    for (const auto& r : u.ranks) {
      ++ranks;
      list.push_back({{"node", node},
                      {"pid", r.pid},
                      {"update", r.update},
                      {"stopped_ms", r.stopped_ms},
                      {"took_ms", r.took_ms}});
    }
  if (json) {
    cli::print_json({{"job", job},
                     {"mode", safety_mode_name(mode)},
                     {"nodes", done.size()},
                     {"took_ms", ms_of(took)},
                     {"ranks", std::move(list)},
                     {"revert", revert_command(job, done)}});
    return;
  }
  std::printf("patched job %lu: %zu rank%s on %zu node%s in %.1f ms (%s mode)\n",
              static_cast<unsigned long>(job), ranks, ranks == 1 ? "" : "s", done.size(),
              done.size() == 1 ? "" : "s", ms_of(took), safety_mode_name(mode));
  for (const auto& [node, u] : done)
    for (const auto& r : u.ranks)
      std::printf("  node %s rank %d: update %lu (stopped %.3f ms, %.1f ms)\n", node.c_str(), r.pid,
                  static_cast<unsigned long>(r.update), r.stopped_ms, r.took_ms);
  std::printf("revert with: %s\n", revert_command(job, done).c_str());
}

int run_patch_job(const std::string& socket, JobId job, std::vector<Replacement> plan,
                  SafetyMode mode, std::chrono::milliseconds timeout, std::chrono::seconds wait,
                  bool json) {
  jp::PatchArgs pa{job, std::move(plan), mode, timeout};
  const auto t0 = Clock::now();
  std::map<std::string, jp::NodeUpdates> done;
  std::vector<std::string> failures;
  auto res = until_running("patch", socket, {}, std::string(gang::ops::patch), jp::to_args(pa),
                           t0 + wait, true);
  if (!res) return cli::error("patch", res.error().message());
  if (res->empty()) return cli::error("patch", "job " + std::to_string(job) + " has no nodes");
  for (const auto& n : *res) {
    if (!n.ok) {
      failures.push_back(jp::is_frozen_refusal(n.output)
                             ? n.output + ": still after " + std::to_string(wait.count()) + " s"
                             : "node " + n.node + ": " + n.output);
      continue;
    }
    auto u = jp::parse_node_updates(n.output);
    if (!u) {
      failures.push_back("node " + n.node + ": " + u.error().message());
      continue;
    }
    done[n.node] = std::move(*u);
  }
  const auto took = Clock::now() - t0;
  if (!failures.empty()) {
    // All or none: the nodes that were patched are reverted before saying why not.
    std::string left = roll_back(socket, job, mode, done, wait);
    std::string msg = "job " + std::to_string(job) + " not patched: " + failures.front();
    for (std::size_t i = 1; i < failures.size(); ++i)
      msg += "; " + failures[i];
    if (!left.empty())
      msg +=
          "; COULD NOT REVERT the ranks already patched, revert them with: dynamos revert "
          "--job " +
          std::to_string(job) + left;
    else if (!done.empty())
      msg += " (reverted on the nodes that had taken it)";
    return cli::error("patch", msg);
  }
  print_patched_job(job, mode, done, took, json);
  return 0;
}

Result<JobId> parse_job(const std::string& s) {
  char* end = nullptr;
  unsigned long v = std::strtoul(s.c_str(), &end, 10);
  if (s.empty() || *end || v == 0 || s[0] == '-')
    return fail(Errc::invalid_argument, "'" + s + "' is not a job id");
  return static_cast<JobId>(v);
}

int run_patch(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos patch PID --replace SYM=PATCH.so[:NEWSYM] [--replace ...] [options]\n"
      "       dynamos patch --job ID --replace SYM=PATCH.so[:NEWSYM] [--replace ...] [options]\n\n"
      "Loads each PATCH.so into the running process PID (a remote dlopen) and redirects\n"
      "every SYM to NEWSYM (default: SYM) in one update: all switch or none do. SYM is a\n"
      "function of the executable (static ones too when it has a symbol table) or of any\n"
      "loaded library. The process keeps running; its threads are stopped only while the\n"
      "entry jumps and version slots are written. Prints 'update ID' last.\n\n"
      "With --job, the same update goes to every rank of a gang-scheduled job, on every\n"
      "node of the job (through gangd and the node agents), all or none: if one rank\n"
      "fails, the ranks already patched are reverted and the command fails naming the\n"
      "node, the rank and why. While the job is frozen (not its time slice) the command\n"
      "waits for it to run. Prints each rank's update id and the command that reverts\n"
      "them all.\n\n"
      "--json prints {\"pid\", \"update\", \"mode\", \"functions\", \"stopped_ms\", \"took_ms\"};\n"
      "with --job {\"job\", \"mode\", \"nodes\", \"took_ms\", \"ranks\": [{\"node\", \"pid\",\n"
      "\"update\", \"stopped_ms\", \"took_ms\"}], \"revert\"}.\n\noptions");
  std::vector<std::string> replaces;
  std::string mode = "drain";
  long timeout_ms = 2000;
  std::string job_arg;
  long wait_s = 120;
  bool json = false;
  desc.add_options()("help,h", "show this help")("replace", po::value(&replaces)->composing(),
                                                 "SYM=PATCH.so[:NEWSYM], repeatable")(
      "mode", po::value(&mode)->default_value("drain"),
      "drain: switch now, running calls finish on the old code; quiescent: switch only when no "
      "thread is inside any of the functions")(
      "timeout-ms", po::value(&timeout_ms)->default_value(2000),
      "quiescent mode: give up after this long and name the blocking thread (with --job: per "
      "rank, at most 500, default 500)")("job", po::value(&job_arg),
                                         "patch every rank of this job instead of one process")(
      "wait", po::value(&wait_s)->default_value(120),
      "with --job: seconds to wait for the job's time slice while it is frozen");
  cli::add_json_option(desc, json);
  cli::add_socket_option(desc);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto status = cli::parse_options("patch", args, desc, positional, vm)) return *status;
  const bool by_job = vm.count("job") > 0;
  if (by_job && !positional.empty())
    return cli::error("patch", "give either a PID or --job ID, not both", 2);
  if (positional.size() > 1)
    return cli::error("patch", "unexpected argument '" + positional[1] + "'", 2);
  const std::string pid_arg = positional.empty() ? "" : positional[0];
  if (!by_job && pid_arg.empty()) return cli::error("patch", "missing PID (try --help)", 2);
  if (replaces.empty()) return cli::error("patch", "nothing to do: give at least one --replace", 2);
  auto safety = parse_safety_mode(mode);
  if (!safety) return cli::error("patch", safety.error().message(), 2);
  if (timeout_ms <= 0) return cli::error("patch", "--timeout-ms must be positive", 2);
  std::vector<Replacement> plan;
  for (const auto& spec : replaces) {
    auto r = parse_replacement(spec);
    if (!r) return cli::error("patch", r.error().message(), 2);
    plan.push_back(*r);
  }

  if (by_job) {
    auto job = parse_job(job_arg);
    if (!job) return cli::error("patch", job.error().message(), 2);
    if (vm["timeout-ms"].defaulted()) timeout_ms = jp::kMaxRankTimeout.count();
    if (timeout_ms > jp::kMaxRankTimeout.count())
      return cli::error("patch",
                        "--timeout-ms is at most " + std::to_string(jp::kMaxRankTimeout.count()) +
                            " with --job (a node cannot switch jobs while it patches)",
                        2);
    if (wait_s < 0) return cli::error("patch", "--wait must not be negative", 2);
    // The agents open the objects by absolute path (on a shared file system across
    // hosts); they are checked here first, so that a typo fails before any node acts.
    for (auto& r : plan) {
      if (auto ok = read_patch_object(r.object); !ok)
        return cli::error("patch", ok.error().message());
      r.object = std::filesystem::absolute(r.object).lexically_normal().string();
    }
    return run_patch_job(cli::socket_path(vm), *job, std::move(plan), *safety,
                         std::chrono::milliseconds(timeout_ms), std::chrono::seconds(wait_s), json);
  }

  auto pid = parse_pid(pid_arg);
  if (!pid) return cli::error("patch", pid.error().message(), 2);
  RemotePatchRequest req;
  req.mode = *safety;
  req.timeout = std::chrono::milliseconds(timeout_ms);
  req.replacements = plan;  // patch_process stages the objects and removes the copies
  cli::prefer_realtime();
  auto res = patch_process(*pid, req);
  if (!res) return cli::error("patch", res.error().message());
  if (json) {
    cli::print_json({{"pid", *pid},
                     {"update", res->id},
                     {"mode", safety_mode_name(*safety)},
                     {"functions", plan.size()},
                     {"stopped_ms", ms_of(res->stopped)},
                     {"took_ms", ms_of(res->took)}});
    return 0;
  }
  std::printf("patched %zu function%s in process %d (%s mode)\n", plan.size(),
              plan.size() == 1 ? "" : "s", *pid, safety_mode_name(*safety));
  std::printf("target stopped for %.3f ms; command took %.1f ms\n", ms_of(res->stopped),
              ms_of(res->took));
  std::printf("update %lu\n", static_cast<unsigned long>(res->id));
  return 0;
}

// dynamos revert --job ID UPDATE|NODE:PID:UPDATE... [--mode M] [--wait S] [--socket P]
int run_revert_job(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos revert --job ID UPDATE|NODE:PID:UPDATE... [options]\n\n"
      "Reverts updates of a job's ranks (dynamos patch --job prints the line to use): a\n"
      "bare UPDATE in every rank of the job, NODE:PID:UPDATE in that rank. While the job\n"
      "is frozen (not its time slice) the command waits for it to run. --json prints\n"
      "{\"job\", \"ranks\": [{\"node\", \"pid\", \"update\", \"stopped_ms\"}]} (the ranks\n"
      "reverted; failures on standard error).\n\noptions");
  std::string job_arg, mode = "drain";
  long wait_s = 120;
  bool json = false;
  desc.add_options()("help,h", "show this help")("job", po::value(&job_arg), "the job")(
      "mode", po::value(&mode)->default_value("drain"), "drain or quiescent")(
      "wait", po::value(&wait_s)->default_value(120),
      "seconds to wait for the job's time slice while it is frozen");
  cli::add_json_option(desc, json);
  cli::add_socket_option(desc);
  std::vector<std::string> tokens;
  po::variables_map vm;
  if (auto status = cli::parse_options("revert", args, desc, tokens, vm)) return *status;
  auto job = parse_job(job_arg);
  if (!job) return cli::error("revert", job.error().message(), 2);
  auto m = parse_safety_mode(mode);
  if (!m) return cli::error("revert", m.error().message(), 2);
  if (tokens.empty()) return cli::error("revert", "no update id given (try --help)", 2);
  if (wait_s < 0) return cli::error("revert", "--wait must not be negative", 2);
  // Bare ids go to every node of the job; NODE:PID:UPDATE to that node only.
  std::map<std::string, jp::RevertArgs> per_node;  // "" = every node of the job
  for (const auto& t : tokens) {
    auto last = t.rfind(':');
    auto mid = last == std::string::npos || last == 0 ? std::string::npos : t.rfind(':', last - 1);
    if (last != std::string::npos && (mid == std::string::npos || mid == 0))
      return cli::error("revert", "'" + t + "' is not UPDATE or NODE:PID:UPDATE", 2);
    const std::string node = last == std::string::npos ? "" : t.substr(0, mid);
    auto target = jp::parse_revert_target(node.empty() ? t : t.substr(mid + 1));
    if (!target) return cli::error("revert", target.error().message(), 2);
    auto& ra = per_node[node];
    ra.job = *job;
    ra.mode = *m;
    ra.targets.push_back(*target);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(wait_s);
  int status = 0;
  auto reverted = nlohmann::ordered_json::array();
  for (const auto& [node, ra] : per_node) {
    std::vector<std::string> nodes;
    if (!node.empty()) nodes.push_back(node);
    auto res = until_running("revert", cli::socket_path(vm), nodes, std::string(gang::ops::revert),
                             jp::to_args(ra), deadline, false);
    if (!res) return cli::error("revert", res.error().message());
    for (const auto& n : *res) {
      if (!n.ok) {
        status = cli::error("revert", "node " + n.node + ": " + n.output);
        continue;
      }
      auto u = jp::parse_node_updates(n.output);
      if (!u) {
        status = cli::error("revert", "node " + n.node + ": " + u.error().message());
        continue;
      }
      for (const auto& r : u->ranks) {
        reverted.push_back(
            {{"node", n.node}, {"pid", r.pid}, {"update", r.update}, {"stopped_ms", r.stopped_ms}});
        if (!json)
          std::printf("reverted update %lu in rank %d on node %s; stopped for %.3f ms\n",
                      static_cast<unsigned long>(r.update), r.pid, n.node.c_str(), r.stopped_ms);
      }
    }
  }
  if (json) cli::print_json({{"job", *job}, {"ranks", std::move(reverted)}});
  return status;
}

int run_revert(std::span<const std::string> all) {
  for (const auto& a : all)
    if (a == "--job" || a.starts_with("--job=")) return run_revert_job(all);
  std::vector<std::string> args(all.begin(), all.end());
  const bool json = cli::take_json_flag(args);
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "usage: dynamos revert PID ID [--mode drain|quiescent] [--json]\n"
                 "       dynamos revert --job ID UPDATE|NODE:PID:UPDATE... (see --job --help)\n\n"
                 "Reverts update ID of process PID: the functions it switched go back to the\n"
                 "versions they had before. Refused while a newer update on the same function\n"
                 "is applied (revert that first). --json prints {\"pid\", \"update\", \"mode\",\n"
                 "\"stopped_ms\", \"took_ms\"}.\n";
    return 0;
  }
  if (args.size() != 2 && args.size() != 4)
    return cli::error("revert", "usage: dynamos revert PID ID [--mode drain|quiescent]", 2);
  auto pid = parse_pid(args[0]);
  if (!pid) return cli::error("revert", pid.error().message(), 2);
  char* end = nullptr;
  const unsigned long id = std::strtoul(args[1].c_str(), &end, 10);
  if (args[1].empty() || *end || id == 0)
    return cli::error("revert", "'" + args[1] + "' is not an update id", 2);
  SafetyMode mode = SafetyMode::drain;
  if (args.size() == 4) {
    if (args[2] != "--mode") return cli::error("revert", "unknown option '" + args[2] + "'", 2);
    auto m = parse_safety_mode(args[3]);
    if (!m) return cli::error("revert", m.error().message(), 2);
    mode = *m;
  }
  cli::prefer_realtime();
  auto r = revert_process_update(*pid, id, mode);
  if (!r) return cli::error("revert", r.error().message());
  if (json) {
    cli::print_json({{"pid", *pid},
                     {"update", id},
                     {"mode", safety_mode_name(mode)},
                     {"stopped_ms", ms_of(r->stopped)},
                     {"took_ms", ms_of(r->took)}});
    return 0;
  }
  std::printf("reverted update %lu in process %d; target stopped for %.3f ms\n", id, *pid,
              ms_of(r->stopped));
  return 0;
}

template <class Points, class Updates>
nlohmann::ordered_json updates_json(const Points& points, const Updates& updates) {
  auto list = nlohmann::ordered_json::array();
  for (const auto& u : updates) {
    auto switches = nlohmann::ordered_json::array();
    for (const auto& s : u.switches) {
      if (s.point >= points.size()) continue;
      const auto& p = points[s.point];
      switches.push_back({{"function", p.name},
                          {"from", p.versions.at(s.from).name},
                          {"to", p.versions.at(s.to).name}});
    }
    list.push_back({{"id", u.id},
                    {"mode", safety_mode_name(u.mode)},
                    {"state", u.state == UpdateState::applied ? "applied" : "reverted"},
                    {"switches", std::move(switches)}});
  }
  return list;
}

int run_updates(std::span<const std::string> all) {
  std::vector<std::string> args(all.begin(), all.end());
  const bool json = cli::take_json_flag(args);
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::cout
        << "usage: dynamos updates PID [--json]\n\n"
           "Lists the updates applied to process PID, newest last: id, mode, state, and\n"
           "for each function the version it left and the version it took. The list is\n"
           "kept in the process itself, so any later invocation sees it. --json prints an\n"
           "array, one {\"id\", \"mode\", \"state\", \"switches\": [{\"function\", \"from\",\n"
           "\"to\"}]} an update ([] when there is none).\n";
    return 0;
  }
  if (args.size() != 1) return cli::error("updates", "usage: dynamos updates PID", 2);
  auto pid = parse_pid(args[0]);
  if (!pid) return cli::error("updates", pid.error().message(), 2);
  cli::prefer_realtime();
  auto engine = attach_engine(*pid, std::chrono::milliseconds(1000));
  if (!engine) return cli::error("updates", engine.error().message());
  const auto points = (*engine)->patch_points();
  const auto updates = (*engine)->updates();
  if (json) {
    cli::print_json(updates_json(points, updates));
    return 0;
  }
  if (updates.empty()) {
    std::printf("no updates in process %d\n", *pid);
    return 0;
  }
  std::printf("%-6s %-10s %-9s %s\n", "ID", "MODE", "STATE", "FUNCTION: FROM -> TO");
  for (const auto& u : updates) {
    std::string changes;
    for (const auto& s : u.switches) {
      if (s.point >= points.size()) continue;
      const auto& p = points[s.point];
      if (!changes.empty()) changes += ", ";
      changes += p.name + ": " + p.versions.at(s.from).name + " -> " + p.versions.at(s.to).name;
    }
    std::printf("%-6lu %-10s %-9s %s\n", static_cast<unsigned long>(u.id), safety_mode_name(u.mode),
                u.state == UpdateState::applied ? "applied" : "reverted", changes.c_str());
  }
  return 0;
}

}  // namespace

DYNAMOS_COMMAND(patch, "patch", "live-patch functions of a running process from a shared object",
                run_patch);
DYNAMOS_COMMAND(revert, "revert", "revert an update of a running process", run_revert);
DYNAMOS_COMMAND(updates, "updates", "list the updates applied to a running process", run_updates);
