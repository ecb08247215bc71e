#include "gang/hostfile.hpp"

#include "base/file.hpp"

#include <charconv>

#include "gang/hostlist.hpp"

namespace dynamos::gang {
namespace {

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
      ++i;
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
      ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == ':';
    if (!ok) return false;
  }
  return true;
}

// A host listed twice adds its slots, as mpirun does.
void add_host(std::vector<HostEntry>& hosts, const HostEntry& e) {
  for (auto& h : hosts) {
    if (h.name == e.name) {
      h.slots += e.slots;
      if (e.max_slots) h.max_slots += e.max_slots;
      return;
    }
  }
  hosts.push_back(e);
}

}  // namespace

Result<std::vector<HostEntry>> parse_hostfile(std::string_view text, const std::string& origin) {
  std::vector<HostEntry> hosts;
  int lineno = 0;
  while (!text.empty()) {
    ++lineno;
    std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    auto w = words(line);
    if (w.empty()) continue;
    auto where = origin + " line " + std::to_string(lineno);
    // A Slurm hostlist (n[1-4]) stands for several hosts with the same options.
    std::vector<std::string> names{std::string(w[0])};
    if (is_hostlist(w[0])) {
      auto expanded = expand_hostlist(w[0]);
      if (!expanded) return fail(Errc::invalid_argument, where + ": " + expanded.error().message());
      names = std::move(*expanded);
    } else if (!valid_host(w[0])) {
      return fail(Errc::invalid_argument,
                  where + ": '" + std::string(w[0]) + "' is not a host name");
    }
    HostEntry e{"", 1, 0};
    for (std::size_t i = 1; i < w.size(); ++i) {
      auto eq = w[i].find('=');
      if (eq == std::string_view::npos)
        return fail(Errc::invalid_argument,
                    where + ": expected key=value, got '" + std::string(w[i]) + "'");
      auto key = w[i].substr(0, eq), value = w[i].substr(eq + 1);
      int n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      bool number = ec == std::errc() && end == value.data() + value.size() && n > 0;
      if (key == "slots" || key == "max_slots" || key == "max-slots") {
        if (!number)
          return fail(Errc::invalid_argument, where + ": " + std::string(key) +
                                                  " must be a positive integer, got '" +
                                                  std::string(value) + "'");
        (key == "slots" ? e.slots : e.max_slots) = n;
      } else {
        return fail(Errc::invalid_argument, where + ": unknown option '" + std::string(key) +
                                                "' (known: slots, max_slots)");
      }
    }
    if (e.max_slots != 0 && e.max_slots < e.slots)
      return fail(Errc::invalid_argument, where + ": max_slots=" + std::to_string(e.max_slots) +
                                              " is below slots=" + std::to_string(e.slots));
    for (auto& name : names) {
      e.name = std::move(name);
      add_host(hosts, e);
    }
  }
  if (hosts.empty()) return fail(Errc::invalid_argument, origin + ": no hosts");
  return hosts;
}

Result<std::vector<HostEntry>> read_hostfile(const std::string& path) {
  auto text = read_whole_file(path, "hostfile");
  if (!text) return std::unexpected(text.error());
  return parse_hostfile(*text, path);
}

std::string format_hostfile(const std::vector<HostEntry>& hosts) {
  std::string out;
  for (const auto& h : hosts) {
    out += h.name + " slots=" + std::to_string(h.slots);
    if (h.max_slots) out += " max_slots=" + std::to_string(h.max_slots);
    out += "\n";
  }
  return out;
}

}  // namespace dynamos::gang
