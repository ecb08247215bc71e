// The job and node commands of a gang-scheduled cluster: dynamos jobs, nodes, wait,
// cancel, policy, set. Each is one request to gangd's control socket (cli/control.hpp).
#include <pwd.h>

#include <boost/program_options.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/units.hpp"
#include "cli/command.hpp"
#include "gang/client/control.hpp"

namespace po = boost::program_options;
using namespace dynamos;
namespace proto = dynamos::gang::proto;

namespace {

std::string user_name(std::uint32_t uid) {
  const passwd* pw = ::getpwuid(uid);
  return pw ? pw->pw_name : std::to_string(uid);
}

std::string join(const std::vector<std::string>& v, const char* sep = ",") {
  std::string s;
  for (const auto& x : v)
    s += (s.empty() ? "" : sep) + x;
  return s;
}

std::string mib(std::uint64_t bytes) {
  return std::to_string(bytes >> 20) + "M";
}

Result<std::uint64_t> job_id(const std::string& text) {
  std::uint64_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id == 0)
    return fail(Errc::invalid_argument, "'" + text + "' is not a job id");
  return id;
}

// Parses a command that takes --socket (and --json when `json` is given).
std::optional<int> parse(const char* name, std::span<const std::string> args,
                         po::options_description& desc, std::vector<std::string>& positional,
                         po::variables_map& vm) {
  desc.add_options()("help,h", "show this help");
  cli::add_socket_option(desc);
  return cli::parse_options(name, args, desc, positional, vm);
}

nlohmann::ordered_json job_json(const proto::JobInfo& j) {
  return {{"id", j.job},
          {"name", j.name},
          {"uid", j.uid},
          {"state", j.state},
          {"slot", j.slot},
          {"nodes", j.nodes},
          {"paging", j.paging},
          {"switches", j.switches},
          {"cpu_s", std::round(static_cast<double>(j.cpu_ns) / 1e6) / 1e3},
          {"exit_code", j.ended_ns ? nlohmann::ordered_json(j.exit_code) : nullptr},
          {"reason", j.reason},
          {"submitted_ns", j.submitted_ns},
          {"ended_ns", j.ended_ns},
          {"major_faults", j.major_faults}};
}

// A JSON array, one element a line.
template <class T, class F>
std::string json_lines_array(const std::vector<T>& items, F element) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i)
    out += (i ? ",\n " : "") + element(items[i]).dump();
  return out + "]\n";
}

// A listing command's options (jobs, nodes): --json and --socket, no arguments.
struct Listing {
  bool json = false;
  std::string socket;
};
std::optional<int> parse_listing(const char* name, const char* usage,
                                 std::span<const std::string> args, Listing& out) {
  po::options_description desc(usage);
  desc.add_options()("json", po::bool_switch(&out.json), "a JSON array instead of a table");
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = parse(name, args, desc, positional, vm)) return s;
  if (!positional.empty()) return cli::error(name, "unexpected '" + positional[0] + "'", 2);
  out.socket = cli::socket_path(vm);
  return std::nullopt;
}

// A listing command (jobs, nodes): asks gangd with `request` and prints the reply's
// `items` as a JSON array (`element` of each) or a table (`print_table`).
template <class Reply, class Request, class Item, class Element, class Table>
int run_listing(const char* name, const char* usage, std::span<const std::string> args,
                Request request, std::vector<Item> Reply::*items, Element element,
                Table print_table) {
  Listing l;
  if (auto s = parse_listing(name, usage, args, l)) return *s;
  auto list = cli::ask_for<Reply>(l.socket, request);
  if (!list) return cli::error(name, list.error().message());
  const std::vector<Item>& v = (*list).*items;
  if (l.json) {
    std::cout << json_lines_array(v, element);
    return 0;
  }
  print_table(v);
  return 0;
}

void print_jobs_table(const std::vector<proto::JobInfo>& jobs) {
  std::printf("%-5s %-16s %-8s %-8s %-4s %-16s %-10s %8s %9s %5s %s\n", "ID", "NAME", "USER",
              "STATE", "SLOT", "NODES", "PAGING", "SWITCHES", "CPU_S", "EXIT", "REASON");
  for (const auto& j : jobs)
    std::printf("%-5llu %-16s %-8s %-8s %-4u %-16s %-10s %8llu %9.2f %5s %s\n",
                static_cast<unsigned long long>(j.job), j.name.c_str(), user_name(j.uid).c_str(),
                j.state.c_str(), j.slot, join(j.nodes).c_str(), j.paging.c_str(),
                static_cast<unsigned long long>(j.switches), static_cast<double>(j.cpu_ns) / 1e9,
                j.ended_ns ? std::to_string(j.exit_code).c_str() : "-", j.reason.c_str());
}

constexpr const char* kJobsUsage =
    "usage: dynamos jobs [--all] [--json]\n\n"
    "The jobs gangd knows: yours (root sees every job), pending (waiting for room, with\n"
    "the reason), running, frozen (waiting for their time slot) and ended (done or\n"
    "failed, with exit code and reason). --all adds every ended job of the history.\n\n"
    "options";

int run_jobs(std::span<const std::string> args) {
  // --all: the ended jobs of gangd's history journal too (they survive its restart).
  std::vector<std::string> rest;
  bool all = false;
  for (const auto& a : args) {
    if (a == "--all")
      all = true;
    else
      rest.push_back(a);
  }
  return run_listing("jobs", kJobsUsage, rest, proto::ListJobs{all}, &proto::JobList::jobs,
                     job_json, print_jobs_table);
}

// The guest policy a node shows: off when it has none.
std::string guest_policy(const proto::NodeInfo& n) {
  return n.guest_policy.empty() ? std::string("off") : n.guest_policy;
}

nlohmann::ordered_json node_json(const proto::NodeInfo& n) {
  return {{"name", n.name},
          {"state", n.state},
          {"slots", n.slots},
          {"jobs", n.jobs},
          {"mem_total", n.mem_total},
          {"mem_available", n.mem_available},
          {"guest_policy", guest_policy(n)},
          {"mem_committed", n.mem_committed},
          {"quantum_ns", n.quantum_ns},
          {"reason", n.reason}};
}

void print_nodes_table(const std::vector<proto::NodeInfo>& nodes) {
  std::printf("%-12s %-5s %5s %-16s %9s %9s %s\n", "NODE", "STATE", "SLOTS", "JOBS", "MEM",
              "MEM_FREE", "GUESTS");
  for (const auto& n : nodes) {
    std::string jobs;
    for (auto j : n.jobs)
      jobs += (jobs.empty() ? "" : ",") + std::to_string(j);
    std::printf("%-12s %-5s %5u %-16s %9s %9s %s\n", n.name.c_str(), n.state.c_str(), n.slots,
                jobs.empty() ? "-" : jobs.c_str(), n.mem_total ? mib(n.mem_total).c_str() : "-",
                n.mem_total ? mib(n.mem_available).c_str() : "-", guest_policy(n).c_str());
  }
}

constexpr const char* kNodesUsage =
    "usage: dynamos nodes [--json]\n\n"
    "The cluster's nodes: whether their agent is up, the jobs placed on them (yours, or\n"
    "all for root), their memory and the cycle-stealing guest policy. With --json each\n"
    "node also says the quantum its agent last reported (quantum_ns, 0 until its first\n"
    "report): after `dynamos set quantum=` it shows the new one once the agents have it.\n\n"
    "options";

int run_nodes(std::span<const std::string> args) {
  return run_listing("nodes", kNodesUsage, args, proto::ListNodes{}, &proto::NodeList::nodes,
                     node_json, print_nodes_table);
}

int run_wait(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos wait ID [--timeout S] [--json]\n\n"
      "Waits until job ID ends and exits with its exit code (128+N when mpirun was killed\n"
      "by signal N). Exits 124 when the timeout passes first, 1 on an error (unknown job,\n"
      "gangd unreachable), with a message. --json prints the ended job as 'dynamos jobs\n"
      "--json' shows it (id, state, exit_code, reason, ...); the exit status is the same.\n\n"
      "options");
  double timeout = 0;
  bool json = false;
  desc.add_options()("timeout", po::value(&timeout), "give up after S seconds (default: never)");
  cli::add_json_option(desc, json);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = parse("wait", args, desc, positional, vm)) return *s;
  if (positional.size() != 1) return cli::error("wait", "give one job id (try --help)", 2);
  auto id = job_id(positional[0]);
  if (!id) return cli::error("wait", id.error().message(), 2);
  if (timeout < 0) return cli::error("wait", "--timeout must not be negative", 2);
  auto socket = cli::socket_path(vm);
  auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::milliseconds(20);
  int unreachable = 0;
  for (;;) {
    auto list = cli::ask_for<proto::JobList>(socket, proto::ListJobs{true});  // + history
    if (!list) {
      // gangd restarting: its journal brings the job back; give it a moment.
      if (++unreachable > 50) return cli::error("wait", list.error().message());
    } else {
      unreachable = 0;
      const proto::JobInfo* job = nullptr;
      for (const auto& j : list->jobs)
        if (j.job == *id) job = &j;
      if (!job) return cli::error("wait", "no job " + positional[0] + " (or not yours)");
      if (job->ended_ns) {
        if (json) cli::print_json(job_json(*job));
        if (!job->reason.empty())
          std::fprintf(stderr, "dynamos wait: job %s %s: %s\n", positional[0].c_str(),
                       job->state.c_str(), job->reason.c_str());
        else if (job->exit_code != 0)
          std::fprintf(stderr, "dynamos wait: job %s %s: exit code %d\n", positional[0].c_str(),
                       job->state.c_str(), job->exit_code);
        return job->exit_code;
      }
    }
    if (timeout > 0 &&
        std::chrono::steady_clock::now() - start > std::chrono::duration<double>(timeout)) {
      std::fprintf(stderr, "dynamos wait: job %s still runs after %gs\n", positional[0].c_str(),
                   timeout);
      return 124;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(200));
  }
}

int run_cancel(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos cancel ID [--json]\n\n"
      "Cancels job ID: its ranks are killed on every node and its groups removed.\n"
      "--json prints {\"job\", \"cancelled\": true, \"message\"}.\n\noptions");
  bool json = false;
  cli::add_json_option(desc, json);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = parse("cancel", args, desc, positional, vm)) return *s;
  if (positional.size() != 1) return cli::error("cancel", "give one job id (try --help)", 2);
  auto id = job_id(positional[0]);
  if (!id) return cli::error("cancel", id.error().message(), 2);
  auto r = cli::ask_for<proto::Ok>(cli::socket_path(vm), proto::JobCancel{*id});
  if (!r) return cli::error("cancel", r.error().message());
  if (json) {
    cli::print_json({{"job", *id}, {"cancelled", true}, {"message", r->message}});
    return 0;
  }
  std::cout << r->message << "\n";
  return 0;
}

int run_policy(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos policy paging POLICY --job ID [--json]\n\n"
      "Changes the paging policy of a running job; its next switches use it. Policies:\n"
      "demand (stop and continue only), selective, aggressive, adaptive (docs/paging.md).\n"
      "--json prints {\"job\", \"paging\"}.\n\noptions");
  std::string job;
  bool json = false;
  desc.add_options()("job", po::value(&job), "the job");
  cli::add_json_option(desc, json);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = parse("policy", args, desc, positional, vm)) return *s;
  if (positional.size() != 2 || positional[0] != "paging")
    return cli::error("policy", "usage: dynamos policy paging POLICY --job ID", 2);
  if (job.empty()) return cli::error("policy", "--job is required", 2);
  auto id = job_id(job);
  if (!id) return cli::error("policy", id.error().message(), 2);
  auto r = cli::ask_for<proto::Ok>(cli::socket_path(vm), proto::SetPaging{*id, positional[1]});
  if (!r) return cli::error("policy", r.error().message());
  if (json) {
    cli::print_json({{"job", *id}, {"paging", positional[1]}});
    return 0;
  }
  std::cout << "job " << *id << ": paging policy " << positional[1] << "\n";
  return 0;
}

int run_set(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos set quantum=DURATION [--json]\n\n"
      "Changes a setting of the running cluster (root only). quantum: the time slice,\n"
      "e.g. 30s, 500ms; the next slice uses it and gangd's journal keeps it. --json\n"
      "prints {\"setting\": \"quantum\", \"value\": \"500ms\", \"quantum_ns\"}.\n\noptions");
  bool json = false;
  cli::add_json_option(desc, json);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = parse("set", args, desc, positional, vm)) return *s;
  if (positional.size() != 1) return cli::error("set", "give one KEY=VALUE (try --help)", 2);
  auto eq = positional[0].find('=');
  if (eq == std::string::npos)
    return cli::error("set", "'" + positional[0] + "' is not KEY=VALUE", 2);
  auto key = positional[0].substr(0, eq), value = positional[0].substr(eq + 1);
  if (key != "quantum")
    return cli::error("set", "unknown setting '" + key + "' (known: quantum)", 2);
  auto q = parse_duration(value);
  if (!q) return cli::error("set", "quantum: " + q.error().message(), 2);
  auto r = cli::ask_for<proto::Ok>(cli::socket_path(vm),
                                   proto::SetQuantum{static_cast<std::uint64_t>(q->count())});
  if (!r) return cli::error("set", r.error().message());
  if (json) {
    cli::print_json({{"setting", key}, {"value", format_duration(*q)}, {"quantum_ns", q->count()}});
    return 0;
  }
  std::cout << "quantum " << format_duration(*q) << "\n";
  return 0;
}

}  // namespace

DYNAMOS_COMMAND(jobs, "jobs", "list the cluster's jobs", run_jobs);
DYNAMOS_COMMAND(nodes, "nodes", "list the cluster's nodes", run_nodes);
DYNAMOS_COMMAND(wait, "wait", "wait for a job and exit with its exit code", run_wait);
DYNAMOS_COMMAND(cancel, "cancel", "cancel a job", run_cancel);
DYNAMOS_COMMAND(policy, "policy", "change a job's paging policy at runtime", run_policy);
DYNAMOS_COMMAND(set, "set", "change a cluster setting (quantum)", run_set);
