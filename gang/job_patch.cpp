#include "gang/job_patch.hpp"

#include <charconv>
#include <cstdio>

#include "base/json.hpp"

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

std::string fixed3(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

// The value after "key": in `obj` (numbers and strings of this file's own JSON).
std::string_view field(std::string_view obj, std::string_view key) {
  const std::string pat = "\"" + std::string(key) + "\":";
  auto at = obj.find(pat);
  if (at == std::string_view::npos) return {};
  auto v = obj.substr(at + pat.size());
  std::size_t end = 0;
  if (!v.empty() && v[0] == '"') {
    for (end = 1; end < v.size() && v[end] != '"'; ++end)
      if (v[end] == '\\') ++end;
    return v.substr(0, std::min(end + 1, v.size()));
  }
  while (end < v.size() && v[end] != ',' && v[end] != '}' && v[end] != ']')
    ++end;
  return v.substr(0, end);
}

std::string unquote(std::string_view s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return std::string(s);
  std::string out;
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    if (s[i] == '\\' && i + 2 < s.size()) ++i;
    out += s[i];
  }
  return out;
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
  std::string s = "{\"node\":\"" + json_escape(u.node) + "\",\"job\":" + std::to_string(u.job) +
                  ",\"took_ms\":" + fixed3(u.took_ms) + ",\"ranks\":[";
  for (std::size_t i = 0; i < u.ranks.size(); ++i) {
    const auto& r = u.ranks[i];
    s += std::string(i ? "," : "") + "{\"pid\":" + std::to_string(r.pid) +
         ",\"update\":" + std::to_string(r.update) + ",\"stopped_ms\":" + fixed3(r.stopped_ms) +
         ",\"took_ms\":" + fixed3(r.took_ms) + "}";
  }
  return s + "]}";
}

Result<NodeUpdates> parse_node_updates(std::string_view json) {
  auto bad = [&] {
    return fail(Errc::protocol,
                "not a node's update report: '" + std::string(json.substr(0, 200)) + "'");
  };
  auto ranks_at = json.find("\"ranks\":[");
  if (json.empty() || json.front() != '{' || ranks_at == std::string_view::npos) return bad();
  NodeUpdates u;
  const auto head = json.substr(0, ranks_at);
  u.node = unquote(field(head, "node"));
  if (!parse_number(field(head, "job"), u.job) || !parse_number(field(head, "took_ms"), u.took_ms))
    return bad();
  auto rest = json.substr(ranks_at + 9);
  while (!rest.empty() && rest.front() == '{') {
    auto close = rest.find('}');
    if (close == std::string_view::npos) return bad();
    auto obj = rest.substr(0, close + 1);
    RankUpdate r;
    if (!parse_number(field(obj, "pid"), r.pid) || !parse_number(field(obj, "update"), r.update) ||
        !parse_number(field(obj, "stopped_ms"), r.stopped_ms) ||
        !parse_number(field(obj, "took_ms"), r.took_ms))
      return bad();
    u.ranks.push_back(r);
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest.front() == ',') rest = rest.substr(1);
  }
  if (rest.empty() || rest.front() != ']') return bad();
  return u;
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
