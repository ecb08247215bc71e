#include "extensions/cyclesteal/records.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

#include "base/file.hpp"
#include "extensions/cyclesteal/guest_class.hpp"
#include "kernelside/procfs.hpp"

namespace dynamos::cyclesteal {

namespace {

using kernelside::Group;

constexpr std::string_view kFormat = "dynamos-cyclesteal-records 1";
constexpr std::string_view kSuffix = ".records";
constexpr std::size_t kMaxWeights = 4096;

// A relative cgroup path as the extension writes one: components of [A-Za-z0-9._@:+-],
// none empty, "." or "..".
bool valid_group_path(std::string_view p) {
  if (p.empty() || p.size() > kMaxRecordPath || p.front() == '/' || p.back() == '/') return false;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= p.size(); ++i) {
    if (i < p.size() && p[i] != '/') {
      char c = p[i];
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '@' || c == ':' || c == '+' || c == '-';
      if (!ok) return false;
      continue;
    }
    std::string_view part = p.substr(start, i - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = i + 1;
  }
  return true;
}

template <typename T>
bool parse_number(std::string_view text, T& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// "PID-STARTTIME" of a record file name (without the suffix).
bool parse_holder(std::string_view stem, pid_t& pid, uint64_t& start) {
  auto dash = stem.find('-');
  return dash != std::string_view::npos && parse_number(stem.substr(0, dash), pid) && pid > 0 &&
         parse_number(stem.substr(dash + 1), start);
}

bool holder_alive(pid_t pid, uint64_t start) {
  auto st = kernelside::read_stat(pid);
  return st && st->starttime_ticks == start;
}

Result<std::string> own_stem() {
  auto st = kernelside::read_stat(::getpid());
  if (!st) return std::unexpected(with_context(st.error(), "this process's start time"));
  return std::to_string(::getpid()) + "-" + std::to_string(st->starttime_ticks);
}

// Gives the guest class a dead process left its guests back: every guest group thawed
// and, when empty, removed; once no guest is left, the bound lifted and the class removed
// (created by the extension) or made a normal group again (adopted).
void restore_class(const kernelside::Layout& layout, const std::string& path, bool created,
                   RestoreReport& report) {
  const auto ctl = class_controllers(layout);
  if (!Group::exists(layout, path, ctl)) {
    report.dropped.push_back("guest class " + path);
    return;
  }
  auto cls = Group::open(layout, path, ctl);
  if (!cls) {
    report.errors.push_back("guest class " + path + ": " + cls.error().message());
    return;
  }
  bool guests_left = false;
  for (const auto& child : cls->children().value_or(std::vector<std::string>{})) {
    auto g = Group::open(layout, path + "/" + child, ctl);
    if (!g) continue;
    if (auto t = g->thaw(); !t)
      report.errors.push_back("thaw guest group " + g->path() + ": " + t.error().message());
    auto pids = g->pids_recursive();
    if (pids && pids->empty() && g->remove(kernelside::Evict::none)) continue;
    guests_left = true;
  }
  if (auto p = cls->pids(); guests_left || !p || !p->empty()) {
    // Guests outlived the agent: they stay at idle priority and bounded, now running.
    report.restored.push_back("guest class " + path + " thawed, guests left in it");
    return;
  }
  (void)cls->set_memory_max(std::nullopt);
  Result<void> r = created                                ? cls->remove(kernelside::Evict::none)
                   : ctl.has(kernelside::Controller::cpu) ? cls->set_cpu_idle(false)
                                                          : Result<void>{};
  if (!r)
    report.errors.push_back("guest class " + path + ": " + r.error().message());
  else
    report.restored.push_back("guest class " + path + (created ? " removed" : " released"));
}

void restore_file(const kernelside::Layout& layout, const std::string& file,
                  RestoreReport& report) {
  auto records = read_record_file(file);
  if (!records) {
    report.errors.push_back("refused " + records.error().message() + " (left for the operator)");
    return;
  }
  bool failed = false;
  for (const auto& [path, weight] : records->weights) {
    auto g = Group::open(layout, path, {kernelside::Controller::cpu});
    if (!g) {
      report.dropped.push_back(path);  // the job ended: nothing to give back
      continue;
    }
    if (auto r = g->set_cpu_weight(weight); !r) {
      report.errors.push_back("restore the CPU weight of " + path + ": " + r.error().message());
      failed = true;
      continue;
    }
    report.restored.push_back(path + " weight " + std::to_string(weight));
  }
  if (records->class_path)
    restore_class(layout, *records->class_path, records->class_created, report);
  if (!failed) ::unlink(file.c_str());
}

}  // namespace

std::string format_records(const Records& r) {
  std::string out = std::string(kFormat) + "\n";
  for (const auto& [path, weight] : r.weights)
    out += "weight " + std::to_string(weight) + " " + path + "\n";
  if (r.class_path)
    out += "class " + std::string(r.class_created ? "1" : "0") + " " + *r.class_path + "\n";
  return out;
}

Result<Records> parse_records(std::string_view text, const std::string& name) {
  auto bad = [&](std::size_t line, const std::string& why) {
    return fail(Errc::invalid_argument, name + " line " + std::to_string(line) + ": " + why);
  };
  if (text.size() > kMaxRecordBytes)
    return fail(Errc::invalid_argument,
                name + " is larger than " + std::to_string(kMaxRecordBytes) + " bytes");
  if (!text.empty() && text.back() != '\n') return bad(0, "no newline at the end (torn write)");
  Records out;
  std::size_t at = 0, n = 0;
  while (at < text.size()) {
    std::size_t nl = text.find('\n', at);
    std::string_view line = text.substr(at, nl - at);
    at = nl + 1;
    ++n;
    if (n == 1) {
      if (line != kFormat)
        return bad(n,
                   "not a record file of this format ('" + std::string(line.substr(0, 40)) + "')");
      continue;
    }
    auto s1 = line.find(' '), s2 = s1 == std::string_view::npos ? s1 : line.find(' ', s1 + 1);
    if (s2 == std::string_view::npos) return bad(n, "expected 'KIND VALUE PATH'");
    std::string_view kind = line.substr(0, s1), value = line.substr(s1 + 1, s2 - s1 - 1),
                     path = line.substr(s2 + 1);
    if (!valid_group_path(path)) return bad(n, "not a relative cgroup path");
    unsigned v = 0;
    if (kind == "weight") {
      if (!parse_number(value, v) || v < 1 || v > 10000) return bad(n, "weight not in 1..10000");
      if (out.weights.size() >= kMaxWeights || !out.weights.emplace(path, v).second)
        return bad(n, "too many or repeated weight records");
    } else if (kind == "class") {
      if (value != "0" && value != "1") return bad(n, "class flag not 0 or 1");
      if (out.class_path) return bad(n, "a second class record");
      out.class_path = std::string(path);
      out.class_created = value == "1";
    } else {
      return bad(n, "unknown record '" + std::string(kind.substr(0, 20)) + "'");
    }
  }
  if (n == 0) return bad(0, "empty");
  return out;
}

Result<Records> read_record_file(const std::string& path) {
  auto fd = open_regular_file(path);  // O_NOFOLLOW|O_NONBLOCK, a regular file
  if (!fd) return std::unexpected(fd.error());
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return fail_errno("stat " + path);
  if (st.st_uid != ::geteuid())
    return fail(Errc::not_permitted, path + " belongs to uid " + std::to_string(st.st_uid) +
                                         ", not to uid " + std::to_string(::geteuid()));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return fail(Errc::not_permitted, path + " is writable by group or others");
  if (st.st_nlink != 1)
    return fail(Errc::not_permitted, path + " has " + std::to_string(st.st_nlink) + " links");
  auto text = read_fd(fd->get(), path, kMaxRecordBytes);
  if (!text) return std::unexpected(text.error());
  return parse_records(*text, path);
}

Result<RecordFile> RecordFile::in(const std::string& dir) {
  auto stem = own_stem();
  if (!stem) return std::unexpected(stem.error());
  return RecordFile(dir + "/" + *stem + std::string(kSuffix));
}

Result<void> RecordFile::write(const Records& r) {
  if (r.empty()) {
    if (::unlink(path_.c_str()) != 0 && errno != ENOENT) return fail_errno("remove " + path_);
    return {};
  }
  const auto slash = path_.rfind('/');
  const std::string tmp = path_.substr(0, slash + 1) + "." + path_.substr(slash + 1) + ".tmp";
  ::unlink(tmp.c_str());  // left by a write this process did not finish
  if (auto ok = write_new_file(tmp, format_records(r), 0600); !ok) return ok;
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    auto e = fail_errno("rename " + tmp + " to " + path_);
    ::unlink(tmp.c_str());
    return e;
  }
  return {};
}

RestoreReport restore_orphans(const kernelside::Layout& layout, const std::string& dir) {
  RestoreReport report;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    report.errors.push_back("read " + dir + ": " + std::strerror(errno));
    return report;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d.get()))
    names.emplace_back(e->d_name);
  for (const std::string& name : names) {
    if (name == "." || name == "..") continue;
    std::string_view stem = name;
    bool tmp = stem.starts_with('.') && stem.ends_with(".tmp");
    if (tmp) stem = stem.substr(1, stem.size() - 5);
    pid_t pid = 0;
    uint64_t start = 0;
    if (!stem.ends_with(kSuffix) ||
        !parse_holder(stem.substr(0, stem.size() - kSuffix.size()), pid, start)) {
      report.errors.push_back("refused " + dir + "/" + name +
                              ": not a record file name (left for the operator)");
      continue;
    }
    if (holder_alive(pid, start)) continue;  // its process keeps it up to date
    if (tmp)
      ::unlink((dir + "/" + name).c_str());  // a rewrite the holder did not finish
    else
      restore_file(layout, dir + "/" + name, report);
  }
  return report;
}

}  // namespace dynamos::cyclesteal
