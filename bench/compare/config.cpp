#include "bench/compare/config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>

namespace dynamos::compare {

namespace {

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    auto p = s.find(sep, start);
    out.push_back(trim(s.substr(start, p == std::string_view::npos ? p : p - start)));
    if (p == std::string_view::npos) break;
    start = p + 1;
  }
  return out;
}

// Splits an external command's text at white space; single and double quotes group.
Result<std::vector<std::string>> split_words(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (char c : s) {
    if (quote) {
      if (c == quote)
        quote = 0;
      else
        cur += c;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (quote) return fail(Errc::invalid_argument, "unterminated quote in '" + std::string(s) + "'");
  if (in_word) out.push_back(std::move(cur));
  return out;
}

}  // namespace

Result<WorkloadSpec> parse_workload(std::string_view spec) {
  std::string s = trim(spec);
  if (s.starts_with("cmd:")) {
    auto words = split_words(std::string_view(s).substr(4));
    if (!words) return std::unexpected(words.error());
    if (words->empty())
      return fail(Errc::invalid_argument, "workload 'cmd:' names no program (cmd:/path/prog args)");
    WorkloadSpec w;
    w.builtin = false;
    w.program = (*words)[0];
    w.args.assign(words->begin() + 1, words->end());
    w.name = "cmd:" + std::filesystem::path(w.program).filename().string();
    return w;
  }
  const auto& known = builtin_workloads();
  if (std::find(known.begin(), known.end(), s) == known.end())
    return fail(Errc::invalid_argument,
                "unknown workload '" + s + "' (stencil, cg, ft, is, or cmd:/path/to/prog args)");
  WorkloadSpec w;
  w.name = s;
  w.program = "dynamos-mpi-" + s;
  w.power_of_two_ranks = s == "ft";
  return w;
}

Result<std::vector<WorkloadSpec>> parse_workloads(const std::vector<std::string>& values) {
  std::vector<WorkloadSpec> out;
  for (const auto& v : values) {
    std::vector<std::string> items;
    if (trim(v).starts_with("cmd:"))
      items.push_back(v);
    else
      items = split(v, ',');
    for (const auto& item : items) {
      if (item.empty()) return fail(Errc::invalid_argument, "empty workload in '" + v + "'");
      auto w = parse_workload(item);
      if (!w) return std::unexpected(w.error());
      for (const auto& o : out)
        if (o.name == w->name && o.args == w->args)
          return fail(Errc::invalid_argument, "workload '" + w->name + "' given twice");
      out.push_back(std::move(*w));
    }
  }
  if (out.empty()) return fail(Errc::invalid_argument, "no workload given");
  return out;
}

Result<std::vector<std::string>> parse_policies(std::string_view list) {
  std::vector<std::string> out;
  for (const auto& p : split(list, ',')) {
    const auto& known = paging::policy_names();
    if (p != kSequential && std::find(known.begin(), known.end(), p) == known.end())
      return fail(Errc::invalid_argument, "unknown paging policy '" + p +
                                              "' (demand, selective, aggressive, adaptive, or "
                                              "sequential: the jobs one after the other)");
    if (std::find(out.begin(), out.end(), p) != out.end())
      return fail(Errc::invalid_argument, "paging policy '" + p + "' given twice");
    out.push_back(p);
  }
  return out;
}

Result<std::vector<std::string>> parse_schedulers(std::string_view list) {
  std::vector<std::string> out;
  for (const auto& s : split(list, ',')) {
    if (s != kSchedulerDynamos && s != kSchedulerSlurm && s != kSchedulerSlurmFollow)
      return fail(Errc::invalid_argument,
                  "unknown scheduler '" + s + "' (slurm, slurm+dynamos, dynamos)");
    if (std::find(out.begin(), out.end(), s) != out.end())
      return fail(Errc::invalid_argument, "scheduler '" + s + "' given twice");
    out.push_back(s);
  }
  return out;
}

bool on_slurm(const CompareConfig& c) {
  return c.schedulers.size() != 1 || c.schedulers.front() != kSchedulerDynamos;
}

std::vector<std::string> builtin_argv(const std::string& bin_dir, const WorkloadSpec& w,
                                      std::uint64_t footprint, const std::string& progress,
                                      std::optional<double> seconds, std::uint64_t iterations) {
  std::vector<std::string> a{(std::filesystem::path(bin_dir) / w.program).string(),
                             "--mem",
                             std::to_string(footprint >> 20) + "M",
                             "--progress-file",
                             progress,
                             "-q"};
  if (seconds) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", *seconds);
    a.insert(a.end(), {"--seconds", buf});
  } else if (iterations) {
    a.insert(a.end(), {"--iterations", std::to_string(iterations)});
  }
  return a;
}

Result<std::vector<bool>> parse_cyclesteal(std::string_view mode) {
  if (mode == "off") return std::vector<bool>{false};
  if (mode == "on") return std::vector<bool>{true};
  if (mode == "both") return std::vector<bool>{false, true};
  return fail(Errc::invalid_argument,
              "--cyclesteal takes on, off or both, not '" + std::string(mode) + "'");
}

Result<PassIf> parse_pass_if(const std::string& spec) {
  auto colon = spec.find(':');
  if (colon == 0 || colon == std::string::npos || colon + 1 == spec.size())
    return fail(Errc::invalid_argument,
                "--pass-if '" + spec + "' is not FILE:REGEX (e.g. 'hpccoutf.txt:^Success=1$')");
  PassIf p{spec.substr(0, colon), spec.substr(colon + 1)};
  if (p.file.find('/') != std::string::npos || p.file == "." || p.file == "..")
    return fail(Errc::invalid_argument,
                "--pass-if: '" + p.file + "' must name a file in the job's folder, no path");
  try {
    std::regex check(p.regex);
  } catch (const std::regex_error& e) {
    return fail(Errc::invalid_argument, "--pass-if: bad regex '" + p.regex + "': " + e.what());
  }
  return p;
}

// Staged files exist and are regular files with distinct names; --pass-if parses.
Result<void> validate_staging(const CompareConfig& c) {
  std::vector<std::string> names;
  for (const auto& f : c.stage) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(f, ec))
      return fail(Errc::invalid_argument, "--stage: '" + f + "' is not a regular file");
    auto name = std::filesystem::path(f).filename().string();
    if (std::find(names.begin(), names.end(), name) != names.end())
      return fail(Errc::invalid_argument, "--stage: two files named '" + name + "'");
    names.push_back(name);
  }
  if (!c.pass_if.empty())
    if (auto p = parse_pass_if(c.pass_if); !p) return std::unexpected(p.error());
  return {};
}

Result<void> validate(const CompareConfig& c, unsigned cluster_nodes) {
  if (c.workloads.empty()) return fail(Errc::invalid_argument, "no workload given");
  if (c.policies.empty()) return fail(Errc::invalid_argument, "no paging policy given");
  if (c.repeat < 1 || c.repeat > 100)
    return fail(Errc::invalid_argument, "--repeat must be between 1 and 100");
  if (!(c.overcommit >= 0.1 && c.overcommit <= 4))
    return fail(Errc::invalid_argument,
                "--overcommit must be between 0.1 and 4 (1.5: the two "
                "jobs need 1.5 times a node's memory)");
  if (c.quantum < std::chrono::milliseconds(100) || c.quantum > std::chrono::minutes(10))
    return fail(Errc::invalid_argument, "--quantum must be between 100ms and 10m");
  if (c.ranks_per_node < 1 || c.ranks_per_node > 64)
    return fail(Errc::invalid_argument, "--ranks-per-node must be between 1 and 64");
  if (!(c.work_s > 0 && c.work_s <= 3600))
    return fail(Errc::invalid_argument, "--work must be between 0 and 3600 seconds");
  if (cluster_nodes < 1) return fail(Errc::invalid_argument, "the cluster has no node");
  if (auto r = validate_staging(c); !r) return r;
  const unsigned jn = c.job_nodes ? c.job_nodes : cluster_nodes;
  if (jn > cluster_nodes)
    return fail(Errc::invalid_argument, "--job-nodes " + std::to_string(jn) +
                                            " but the cluster has " +
                                            std::to_string(cluster_nodes) + " nodes");
  const unsigned ranks = jn * c.ranks_per_node;
  for (const auto& w : c.workloads)
    if (w.power_of_two_ranks && (ranks & (ranks - 1)) != 0)
      return fail(Errc::invalid_argument,
                  "workload ft needs a power-of-two number of ranks; "
                  "jobs here have " +
                      std::to_string(ranks) + " (nodes x ranks per node)");
  return {};
}

std::uint64_t footprint_per_rank(const CompareConfig& c, std::uint64_t node_memory) {
  double per_node_per_job = c.overcommit * static_cast<double>(node_memory) / 2.0;
  double per_rank = per_node_per_job / c.ranks_per_node;
  // Whole MiB: the workloads size their arrays from it.
  auto mib = static_cast<std::uint64_t>(per_rank / (1 << 20));
  return std::max<std::uint64_t>(mib, 1) << 20;
}

}  // namespace dynamos::compare
