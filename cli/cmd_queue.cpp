// The scheduler's commands (issue 21): hold, release and requeue a job, the history of
// ended jobs (sacct's habits), drain and resume a node, reconfigure. Each is one request
// to gangd's control socket; each prints one line, or JSON with --json.
#include <pwd.h>

#include <charconv>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/units.hpp"
#include "cli/command.hpp"
#include "gang/client/control.hpp"

namespace po = boost::program_options;
using namespace dynamos;
namespace proto = dynamos::gang::proto;

namespace {

Result<std::uint64_t> job_id(const std::string& text) {
  std::uint64_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id == 0)
    return fail(Errc::invalid_argument, "'" + text + "' is not a job id");
  return id;
}

struct Args {
  std::vector<std::string> positional;
  bool json = false;
  std::string socket;
};

// --help, --json, --socket and the command's own options; an exit status to stop with.
std::optional<int> parse(const char* name, std::span<const std::string> args,
                         po::options_description& desc, Args& out) {
  desc.add_options()("help,h", "show this help")("json", po::bool_switch(&out.json),
                                                 "print JSON instead of text");
  cli::add_socket_option(desc);
  po::variables_map vm;
  if (auto s = cli::parse_options(name, args, desc, out.positional, vm)) return s;
  out.socket = cli::socket_path(vm);
  return std::nullopt;
}

// Prints gangd's answer to a request that answers Ok: its text, or {"ok":..,"message":..}.
int print_ok(const char* name, const Args& a, const Result<proto::Ok>& r) {
  if (!r) {
    if (a.json)
      std::cout << nlohmann::json{{"ok", false}, {"error", r.error().message()}}.dump() << "\n";
    return cli::error(name, r.error().message());
  }
  if (a.json)
    std::cout << nlohmann::json{{"ok", true}, {"message", r->message}}.dump() << "\n";
  else
    std::cout << r->message << "\n";
  return 0;
}

// hold, release, requeue: one job id.
int job_action(const char* name, const char* usage, std::span<const std::string> args) {
  po::options_description desc(usage);
  Args a;
  if (auto s = parse(name, args, desc, a)) return *s;
  if (a.positional.size() != 1) return cli::error(name, "give one job id (try --help)", 2);
  auto id = job_id(a.positional[0]);
  if (!id) return cli::error(name, id.error().message(), 2);
  proto::JobControl req{*id, name};
  if (std::string(name) != "requeue")
    return print_ok(name, a, cli::ask_for<proto::Ok>(a.socket, req));
  auto r = cli::ask_for<proto::JobSubmitted>(a.socket, req);
  if (!r) return cli::error(name, r.error().message());
  if (a.json)
    std::cout << nlohmann::json{{"ok", true}, {"job", r->job}, {"requeued", *id}}.dump() << "\n";
  else
    std::cout << "job " << *id << " requeued as job " << r->job << "\n";
  return 0;
}

int run_hold(std::span<const std::string> args) {
  return job_action("hold",
                    "usage: dynamos hold ID [--json]\n\nKeeps pending job ID from "
                    "starting until 'dynamos release ID'.\n\noptions",
                    args);
}
int run_release(std::span<const std::string> args) {
  return job_action("release",
                    "usage: dynamos release ID [--json]\n\nLets held job ID start "
                    "when its turn in the queue comes.\n\noptions",
                    args);
}
int run_requeue(std::span<const std::string> args) {
  return job_action("requeue",
                    "usage: dynamos requeue ID [--json]\n\nSubmits ended job ID again (failed, "
                    "cancelled or timed out) under a new id, as it was submitted.\n\noptions",
                    args);
}

std::string when(std::uint64_t ns) {
  if (ns == 0) return "-";
  std::time_t t = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

std::string user_name(std::uint32_t uid) {
  const passwd* pw = ::getpwuid(uid);
  return pw ? pw->pw_name : std::to_string(uid);
}

// A job of the history as sacct's fields name them.
nlohmann::ordered_json history_json(const proto::JobInfo& j) {
  auto elapsed = j.started_ns && j.ended_ns > j.started_ns ? (j.ended_ns - j.started_ns) / 1e9 : 0;
  return {{"id", j.job},
          {"name", j.name},
          {"user", user_name(j.uid)},
          {"state", j.state},
          {"exit_code", j.exit_code},
          {"reason", j.reason},
          {"submit_ns", j.submitted_ns},
          {"start_ns", j.started_ns},
          {"end_ns", j.ended_ns},
          {"elapsed_s", elapsed},
          {"cpu_s", static_cast<double>(j.cpu_ns) / 1e9},
          {"switches", j.switches},
          {"major_faults", j.major_faults},
          {"ranks", j.ranks},
          {"mem_per_rank", j.mem_per_rank},
          {"time_limit", format_time_limit_s(static_cast<std::int64_t>(j.time_limit_s))},
          {"nodes", j.nodes},
          {"paging", j.paging}};
}

int run_history(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos history [--since T] [--json]\n\n"
      "Ended jobs from gangd's history journal (it survives gangd's restarts), oldest\n"
      "first: state, exit code, reason, submit/start/end times, CPU time, switches and\n"
      "major faults. --since takes a duration back from now (\"2h\", \"30min\") or a\n"
      "date YYYY-MM-DD[THH:MM[:SS]] in local time.\n\noptions");
  std::string since;
  desc.add_options()("since", po::value(&since), "only jobs that ended after T");
  Args a;
  if (auto s = parse("history", args, desc, a)) return *s;
  if (!a.positional.empty())
    return cli::error("history", "unexpected '" + a.positional[0] + "'", 2);
  std::uint64_t since_ns = 0;
  if (!since.empty()) {
    std::tm tm{};
    tm.tm_isdst = -1;
    const char* end = ::strptime(since.c_str(), "%Y-%m-%d", &tm);
    if (end && *end == 'T') end = ::strptime(end + 1, "%H:%M", &tm);
    if (end && *end == ':') end = ::strptime(end + 1, "%S", &tm);
    if (end && *end == '\0') {
      since_ns = static_cast<std::uint64_t>(std::mktime(&tm)) * 1'000'000'000;
    } else {
      auto back = parse_duration_ns(since);
      if (!back)
        return cli::error("history",
                          "--since '" + since +
                              "' is neither a duration (2h, 30min) nor a date YYYY-MM-DD[THH:MM]",
                          2);
      auto now = static_cast<std::uint64_t>(std::time(nullptr)) * 1'000'000'000;
      since_ns = now > static_cast<std::uint64_t>(*back) ? now - *back : 0;
    }
  }
  auto list = cli::ask_for<proto::JobList>(a.socket, proto::ListHistory{since_ns});
  if (!list) return cli::error("history", list.error().message());
  if (a.json) {
    auto arr = nlohmann::ordered_json::array();
    for (const auto& j : list->jobs)
      arr.push_back(history_json(j));
    std::cout << arr.dump(1) << "\n";
    return 0;
  }
  std::printf("%-6s %-14s %-8s %-9s %4s %-19s %-19s %-19s %9s %8s %8s %s\n", "JOBID", "NAME",
              "USER", "STATE", "EXIT", "SUBMIT", "START", "END", "CPU_S", "SWITCHES", "MAJFLT",
              "REASON");
  for (const auto& j : list->jobs)
    std::printf("%-6llu %-14s %-8s %-9s %4d %-19s %-19s %-19s %9.2f %8llu %8llu %s\n",
                static_cast<unsigned long long>(j.job), j.name.c_str(), user_name(j.uid).c_str(),
                j.state.c_str(), j.exit_code, when(j.submitted_ns).c_str(),
                when(j.started_ns).c_str(), when(j.ended_ns).c_str(),
                static_cast<double>(j.cpu_ns) / 1e9, static_cast<unsigned long long>(j.switches),
                static_cast<unsigned long long>(j.major_faults), j.reason.c_str());
  return 0;
}

int run_node(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos node drain NODE [--reason R] [--json]\n"
      "       dynamos node resume NODE [--json]\n\n"
      "drain: the node takes no new job, the jobs on it finish (state draining, then\n"
      "drained in 'dynamos nodes'); resume: it takes jobs again. Root only; survives\n"
      "gangd's restart.\n\noptions");
  std::string reason;
  desc.add_options()("reason", po::value(&reason), "why (shown in 'dynamos nodes')");
  Args a;
  if (auto s = parse("node", args, desc, a)) return *s;
  if (a.positional.size() != 2 || (a.positional[0] != "drain" && a.positional[0] != "resume"))
    return cli::error("node", "usage: dynamos node drain|resume NODE (try --help)", 2);
  if (a.positional[0] == "resume" && !reason.empty())
    return cli::error("node", "--reason goes with drain", 2);
  return print_ok("node", a,
                  cli::ask_for<proto::Ok>(
                      a.socket, proto::NodeAdmin{a.positional[1], a.positional[0], reason}));
}

int run_reconfigure(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos reconfigure [--json]\n\n"
      "gangd rereads its hostfile (as on SIGHUP): nodes added join the cluster, nodes no\n"
      "longer listed take no new job while their jobs finish (state removed). Root only.\n\n"
      "options");
  Args a;
  if (auto s = parse("reconfigure", args, desc, a)) return *s;
  if (!a.positional.empty())
    return cli::error("reconfigure", "unexpected '" + a.positional[0] + "'", 2);
  return print_ok("reconfigure", a, cli::ask_for<proto::Ok>(a.socket, proto::Reconfigure{}));
}

}  // namespace

DYNAMOS_COMMAND(reconfigure, "reconfigure", "reread gangd's hostfile: add or remove nodes",
                run_reconfigure);
DYNAMOS_COMMAND(hold, "hold", "keep a pending job from starting", run_hold);
DYNAMOS_COMMAND(release, "release", "let a held job start", run_release);
DYNAMOS_COMMAND(requeue, "requeue", "submit an ended job again", run_requeue);
DYNAMOS_COMMAND(history, "history", "ended jobs: exit codes, times, CPU, faults", run_history);
DYNAMOS_COMMAND(node, "node", "drain or resume a node", run_node);
