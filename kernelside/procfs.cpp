#include "kernelside/procfs.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "kernelside/fs.hpp"

namespace dynamos::kernelside {

namespace {

std::string proc(pid_t pid, const char* file) {
  return "/proc/" + std::to_string(pid) + "/" + file;
}

Result<uint64_t> parse_hex(std::string_view s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size())
    return fail(Errc::protocol, "expected a hex number, got '" + std::string(s) + "'");
  return v;
}

std::chrono::nanoseconds ticks_to_ns(uint64_t ticks) {
  static const long hz = ::sysconf(_SC_CLK_TCK);
  return std::chrono::nanoseconds(ticks * (1000000000 / static_cast<uint64_t>(hz)));
}

// A maps header line: "start-end perms offset dev inode [path]". Returns false (no
// error) when the line is not a header, which smaps needs to tell entries apart.
Result<bool> parse_mapping_line(std::string_view line, Mapping& m) {
  auto words = split_words(line);
  if (words.size() < 5) return false;
  size_t dash = words[0].find('-');
  if (dash == std::string_view::npos || words[1].size() != 4) return false;
  auto start = parse_hex(words[0].substr(0, dash));
  auto end = parse_hex(words[0].substr(dash + 1));
  auto offset = parse_hex(words[2]);
  auto inode = parse_u64(words[4]);
  if (!start || !end || !offset || !inode)
    return fail(Errc::protocol, "malformed maps line '" + std::string(line) + "'");
  m.start = *start;
  m.end = *end;
  m.read = words[1][0] == 'r';
  m.write = words[1][1] == 'w';
  m.exec = words[1][2] == 'x';
  m.shared = words[1][3] == 's';
  m.offset = *offset;
  m.dev = std::string(words[3]);
  m.inode = *inode;
  m.path.clear();
  if (words.size() > 5) {
    // The path is the rest of the line and may contain blanks.
    size_t at = static_cast<size_t>(words[5].data() - line.data());
    m.path = std::string(line.substr(at));
  }
  return true;
}

}  // namespace

bool Mapping::anonymous() const {
  if (shared || inode != 0) return false;
  return path.empty() || path == "[heap]" || path == "[stack]" || path.starts_with("[anon:") ||
         path.starts_with("[stack:");
}

bool Mapping::special() const {
  return path == "[vdso]" || path == "[vvar]" || path == "[vsyscall]" || path == "[vvar_vclock]" ||
         path == "[uprobes]";
}

Result<std::vector<Mapping>> parse_maps(std::string_view text) {
  std::vector<Mapping> out;
  for (auto line : split_lines(text)) {
    if (line.empty()) continue;
    Mapping m;
    auto ok = parse_mapping_line(line, m);
    if (!ok) return std::unexpected(ok.error());
    if (!*ok) return fail(Errc::protocol, "malformed maps line '" + std::string(line) + "'");
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<Mapping>> read_maps(pid_t pid) {
  auto text = read_text(proc(pid, "maps"));
  if (!text) return std::unexpected(text.error());
  auto maps = parse_maps(*text);
  if (!maps) return std::unexpected(with_context(maps.error(), "parse " + proc(pid, "maps")));
  return maps;
}

uint64_t SmapsEntry::get(const std::string& key) const {
  auto it = fields.find(key);
  return it == fields.end() ? 0 : it->second;
}

bool SmapsEntry::locked() const {
  auto w = split_words(vm_flags);
  return std::find(w.begin(), w.end(), "lo") != w.end();
}

Result<std::vector<SmapsEntry>> parse_smaps(std::string_view text) {
  std::vector<SmapsEntry> out;
  for (auto line : split_lines(text)) {
    if (line.empty()) continue;
    Mapping m;
    // Field lines start with "Name:", which never parses as a header.
    bool field_line = false;
    auto first = split_words(line);
    if (!first.empty() && first[0].back() == ':') field_line = true;
    if (!field_line) {
      auto ok = parse_mapping_line(line, m);
      if (!ok) return std::unexpected(ok.error());
      if (!*ok) return fail(Errc::protocol, "malformed smaps line '" + std::string(line) + "'");
      out.push_back(SmapsEntry{std::move(m), {}, {}});
      continue;
    }
    if (out.empty())
      return fail(Errc::protocol, "smaps field before any mapping: '" + std::string(line) + "'");
    if (first[0] == "VmFlags:") {
      size_t colon = line.find(':');
      out.back().vm_flags = std::string(line.substr(colon + 1));
      auto w = split_words(out.back().vm_flags);
      std::string joined;
      for (auto f : w)
        joined += (joined.empty() ? "" : " ") + std::string(f);
      out.back().vm_flags = joined;
      continue;
    }
    auto kv = parse_colon_keyed(line);
    if (!kv) return std::unexpected(kv.error());
    out.back().fields.merge(*kv);
  }
  return out;
}

Result<std::vector<SmapsEntry>> read_smaps(pid_t pid) {
  auto text = read_text(proc(pid, "smaps"));
  if (!text) return std::unexpected(text.error());
  auto entries = parse_smaps(*text);
  if (!entries)
    return std::unexpected(with_context(entries.error(), "parse " + proc(pid, "smaps")));
  return entries;
}

Result<std::map<std::string, uint64_t>> read_smaps_rollup(pid_t pid) {
  auto text = read_text(proc(pid, "smaps_rollup"));
  if (!text) return std::unexpected(text.error());
  // The first line is a pseudo mapping header; the rest are fields.
  std::string_view body = *text;
  size_t nl = body.find('\n');
  body = nl == std::string_view::npos ? std::string_view() : body.substr(nl + 1);
  auto kv = parse_colon_keyed(body);
  if (!kv) return std::unexpected(with_context(kv.error(), "parse " + proc(pid, "smaps_rollup")));
  return kv;
}

Result<ProcStat> parse_stat(std::string_view text) {
  // "pid (comm) state ppid ...": comm may hold blanks and parentheses, so it runs
  // from the first '(' to the last ')'.
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return fail(Errc::protocol, "malformed stat line (no comm in parentheses)");
  ProcStat s;
  auto pid = parse_u64(text.substr(0, open));
  if (!pid) return fail(Errc::protocol, "malformed stat line (pid)");
  s.pid = static_cast<pid_t>(*pid);
  s.comm = std::string(text.substr(open + 1, close - open - 1));
  auto f = split_words(text.substr(close + 1));
  // f[0] is field 3 (state); field N is f[N - 3].
  if (f.size() < 39)
    return fail(Errc::protocol,
                "stat line has " + std::to_string(f.size() + 2) + " fields, expected at least 41");
  auto num = [&](int field) -> Result<uint64_t> {
    return parse_u64(f[static_cast<size_t>(field - 3)]);
  };
  auto snum = [&](int field) -> int {
    int v = 0;
    auto w = f[static_cast<size_t>(field - 3)];
    std::from_chars(w.data(), w.data() + w.size(), v);
    return v;
  };
  s.state = f[0].empty() ? '?' : f[0][0];
  s.ppid = snum(4);
  auto minflt = num(10), majflt = num(12), utime = num(14), stime = num(15), threads = num(20),
       start = num(22), rss = num(24), policy = num(41);
  for (auto* r : {&minflt, &majflt, &utime, &stime, &threads, &start, &rss, &policy})
    if (!*r) return fail(Errc::protocol, "malformed number in stat line");
  s.minflt = *minflt;
  s.majflt = *majflt;
  s.utime = ticks_to_ns(*utime);
  s.stime = ticks_to_ns(*stime);
  s.priority = snum(18);
  s.nice = snum(19);
  s.num_threads = static_cast<unsigned>(*threads);
  s.starttime_ticks = *start;
  s.rss_pages = *rss;
  s.processor = snum(39);
  s.policy = static_cast<unsigned>(*policy);
  return s;
}

Result<ProcStat> read_stat(pid_t pid) {
  auto text = read_text(proc(pid, "stat"));
  if (!text) return std::unexpected(text.error());
  auto s = parse_stat(*text);
  if (!s) return std::unexpected(with_context(s.error(), "parse " + proc(pid, "stat")));
  return s;
}

Result<ProcStat> read_thread_stat(pid_t pid, pid_t tid) {
  std::string path = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat";
  auto text = read_text(path);
  if (!text) return std::unexpected(text.error());
  auto s = parse_stat(*text);
  if (!s) return std::unexpected(with_context(s.error(), "parse " + path));
  return s;
}

Result<SchedStat> parse_schedstat(std::string_view text) {
  auto w = split_words(text);
  if (w.size() < 3)
    return fail(Errc::protocol,
                "schedstat has " + std::to_string(w.size()) + " fields, expected 3");
  auto run = parse_u64(w[0]), wait = parse_u64(w[1]), slices = parse_u64(w[2]);
  if (!run || !wait || !slices)
    return fail(Errc::protocol, "malformed schedstat '" + std::string(text) + "'");
  return SchedStat{std::chrono::nanoseconds(*run), std::chrono::nanoseconds(*wait), *slices};
}

namespace {
Result<SchedStat> read_schedstat_file(const std::string& path) {
  return read_parsed(path, parse_schedstat, "parse");
}
}  // namespace

Result<SchedStat> read_schedstat(pid_t pid) {
  return read_schedstat_file(proc(pid, "schedstat"));
}

Result<SchedStat> read_thread_schedstat(pid_t pid, pid_t tid) {
  return read_schedstat_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) +
                             "/schedstat");
}

Result<std::vector<pid_t>> list_threads(pid_t pid) {
  auto names = list_dir(proc(pid, "task"));
  if (!names) return std::unexpected(names.error());
  std::vector<pid_t> tids;
  for (auto& n : *names)
    if (auto v = parse_u64(n)) tids.push_back(static_cast<pid_t>(*v));
  std::sort(tids.begin(), tids.end());
  return tids;
}

Result<std::map<std::string, uint64_t>> read_meminfo() {
  auto text = read_text("/proc/meminfo");
  if (!text) return std::unexpected(text.error());
  auto kv = parse_colon_keyed(*text);
  if (!kv) return std::unexpected(with_context(kv.error(), "parse /proc/meminfo"));
  return kv;
}

Result<SystemCpu> parse_system_cpu(std::string_view proc_stat) {
  auto lines = split_lines(proc_stat);
  if (lines.empty()) return fail(Errc::protocol, "empty /proc/stat");
  auto w = split_words(lines[0]);
  if (w.size() < 9 || w[0] != "cpu")
    return fail(Errc::protocol, "first line of /proc/stat is not 'cpu ...'");
  uint64_t v[8];
  for (int i = 0; i < 8; ++i) {
    auto n = parse_u64(w[static_cast<size_t>(i + 1)]);
    if (!n) return fail(Errc::protocol, "malformed number in /proc/stat cpu line");
    v[i] = *n;
  }
  SystemCpu c;
  c.user = ticks_to_ns(v[0]);
  c.nice = ticks_to_ns(v[1]);
  c.system = ticks_to_ns(v[2]);
  c.idle = ticks_to_ns(v[3]);
  c.iowait = ticks_to_ns(v[4]);
  c.irq = ticks_to_ns(v[5]);
  c.softirq = ticks_to_ns(v[6]);
  c.steal = ticks_to_ns(v[7]);
  return c;
}

Result<SystemCpu> read_system_cpu() {
  auto text = read_text("/proc/stat");
  if (!text) return std::unexpected(text.error());
  return parse_system_cpu(*text);
}

}  // namespace dynamos::kernelside
