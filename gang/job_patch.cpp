#include "gang/job_patch.hpp"

#include <charconv>
#include <cmath>

#include <nlohmann/json.hpp>

namespace dynamos::gang::jobpatch {

namespace {

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc{} && end == s.data() + s.size();
}

Result<JobId> parse_job(std::string_view op, std::span<const std::string> args) {
  JobId job = 0;
  if (args.empty() || !parse_number(args[0], job) || job == 0)
    return fail(Errc::invalid_argument,
                std::string(op) + ": the first argument must be a job id" +
                    (args.empty() ? std::string() : ", not '" + args[0] + "'"));
  return job;
}

// Milliseconds to the microsecond: what the report is precise to.
double ms3(double v) {
  return std::round(v * 1000) / 1000;
}

}  // namespace

std::vector<std::string> to_args(const PatchArgs& a) {
  std::vector<std::string> v{std::to_string(a.job), "--mode", core::safety_mode_name(a.mode),
                             "--timeout-ms", std::to_string(a.timeout.count())};
  for (const auto& r : a.replacements) {
    v.push_back("--replace");
    v.push_back(core::format_replacement(r));
  }
  return v;
}

Result<PatchArgs> parse_patch_args(std::span<const std::string> args) {
  auto job = parse_job("patch", args);
  if (!job) return std::unexpected(job.error());
  PatchArgs a;
  a.job = *job;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& opt = args[i];
    if (opt != "--mode" && opt != "--timeout-ms" && opt != "--replace")
      return fail(Errc::invalid_argument, "patch: unknown argument '" + opt + "'");
    if (i + 1 == args.size())
      return fail(Errc::invalid_argument, "patch: " + opt + " needs a value");
    const std::string& value = args[++i];
    if (opt == "--mode") {
      auto m = core::parse_safety_mode(value);
      if (!m) return std::unexpected(m.error());
      a.mode = *m;
    } else if (opt == "--timeout-ms") {
      long ms = 0;
      if (!parse_number(value, ms) || ms <= 0)
        return fail(Errc::invalid_argument, "--timeout-ms must be positive, not '" + value + "'");
      if (ms > kMaxRankTimeout.count())
        return fail(Errc::invalid_argument,
                    "--timeout-ms is at most " + std::to_string(kMaxRankTimeout.count()) +
                        " for a job (the node cannot switch jobs while it patches)");
      a.timeout = std::chrono::milliseconds(ms);
    } else {
      auto r = core::parse_replacement(value);
      if (!r) return std::unexpected(r.error());
      if (!r->object.starts_with("/"))
        return fail(Errc::invalid_argument,
                    "patch: the patch object must be an absolute path, not '" + r->object + "'");
      a.replacements.push_back(std::move(*r));
    }
  }
  if (a.replacements.empty())
    return fail(Errc::invalid_argument, "nothing to do: give at least one --replace");
  return a;
}

std::vector<std::string> to_args(const RevertArgs& a) {
  std::vector<std::string> v{std::to_string(a.job), "--mode", core::safety_mode_name(a.mode)};
  for (const auto& t : a.targets)
    v.push_back(t.pid ? std::to_string(t.pid) + ":" + std::to_string(t.update)
                      : std::to_string(t.update));
  return v;
}

Result<RevertTarget> parse_revert_target(std::string_view token) {
  RevertTarget t;
  auto colon = token.find(':');
  bool ok = colon == std::string_view::npos
                ? parse_number(token, t.update)
                : parse_number(token.substr(0, colon), t.pid) &&
                      parse_number(token.substr(colon + 1), t.update) && t.pid > 0;
  if (!ok || t.update == 0)
    return fail(Errc::invalid_argument,
                "'" + std::string(token) + "' is not an update id (UPDATE or PID:UPDATE)");
  return t;
}

Result<RevertArgs> parse_revert_args(std::span<const std::string> args) {
  auto job = parse_job("revert", args);
  if (!job) return std::unexpected(job.error());
  RevertArgs a;
  a.job = *job;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--mode") {
      if (i + 1 == args.size()) return fail(Errc::invalid_argument, "revert: --mode needs a value");
      auto m = core::parse_safety_mode(args[++i]);
      if (!m) return std::unexpected(m.error());
      a.mode = *m;
      continue;
    }
    auto t = parse_revert_target(args[i]);
    if (!t) return std::unexpected(t.error());
    a.targets.push_back(*t);
  }
  if (a.targets.empty()) return fail(Errc::invalid_argument, "revert: no update id given");
  return a;
}

std::string to_json(const NodeUpdates& u) {
  auto ranks = nlohmann::ordered_json::array();
  for (const auto& r : u.ranks)
    ranks.push_back({{"pid", r.pid},
                     {"update", r.update},
                     {"stopped_ms", ms3(r.stopped_ms)},
                     {"took_ms", ms3(r.took_ms)}});
  nlohmann::ordered_json j = {
      {"node", u.node}, {"job", u.job}, {"took_ms", ms3(u.took_ms)}, {"ranks", std::move(ranks)}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<NodeUpdates> parse_node_updates(std::string_view json) {
  auto bad = [&] {
    return fail(Errc::protocol,
                "not a node's update report: '" + std::string(json.substr(0, 200)) + "'");
  };
  try {
    auto j = nlohmann::json::parse(json);
    if (!j.is_object()) return bad();
    NodeUpdates u;
    u.node = j.value("node", std::string());
    j.at("job").get_to(u.job);
    j.at("took_ms").get_to(u.took_ms);
    for (const auto& r : j.at("ranks"))
      u.ranks.push_back({r.at("pid").get<pid_t>(), r.at("update").get<core::UpdateId>(),
                         r.at("stopped_ms").get<double>(), r.at("took_ms").get<double>()});
    return u;
  } catch (const nlohmann::json::exception&) {
    return bad();
  }
}

std::string frozen_refusal(JobId job, const std::string& node) {
  return "job " + std::to_string(job) + " is frozen on node " + node + " (not its time slice)";
}

bool is_frozen_refusal(std::string_view message) {
  return message.starts_with("job ") &&
         message.find(" is frozen on node ") != std::string_view::npos &&
         message.ends_with("(not its time slice)");
}

}  // namespace dynamos::gang::jobpatch
