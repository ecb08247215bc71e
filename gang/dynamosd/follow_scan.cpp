#include "gang/dynamosd/follow_scan.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <deque>

#include "kernelside/fs.hpp"
#include "kernelside/procfs.hpp"

namespace dynamos::gang::follow {

namespace {

using kernelside::UniqueFd;
constexpr std::size_t kMaxRecord = 4096;

std::optional<std::uint64_t> parse_id(std::string_view text) {
  std::uint64_t v = 0;
  if (text.empty() || text.size() > 19) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

bool valid_policy(std::string_view p) {
  return p == "demand" || p == "selective" || p == "aggressive" || p == "adaptive";
}

// Root's, and writable by nobody else.
bool root_only(const struct stat& st) {
  return st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

Result<JobRecord> read_record_at(int dir, const std::string& name) {
  UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) return fail_errno("open");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno("fstat");
  if (!S_ISREG(st.st_mode)) return fail(Errc::not_permitted, "not a regular file");
  if (!root_only(st))
    return fail(Errc::not_permitted, "not root's, or writable by group or others");
  if (st.st_size > static_cast<off_t>(kMaxRecord))
    return fail(Errc::invalid_argument, "larger than 4 KiB");
  std::string text(kMaxRecord, '\0');
  ssize_t n = ::read(fd.get(), text.data(), text.size());
  if (n < 0) return fail_errno("read");
  text.resize(static_cast<std::size_t>(n));
  return parse_record(name, text);
}

}  // namespace

Result<JobRecord> parse_record(std::string_view name, std::string_view text) {
  auto id = parse_id(name);
  if (!id) return fail(Errc::invalid_argument, "name '" + std::string(name) + "' is not a job id");
  JobRecord r;
  bool have_job = false;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty()) continue;
    auto eq = line.find('=');
    if (eq == std::string_view::npos)
      return fail(Errc::invalid_argument, "line '" + std::string(line) + "' is not key=value");
    auto key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "job") {
      auto j = parse_id(value);
      if (!j || *j != *id)
        return fail(Errc::invalid_argument,
                    "job=" + std::string(value) + " does not match its name");
      have_job = true;
    } else if (key == "uid") {
      auto u = parse_id(value);
      if (!u || *u > UINT32_MAX)
        return fail(Errc::invalid_argument, "bad uid '" + std::string(value) + "'");
      r.uid = static_cast<std::uint32_t>(*u);
    } else if (key == "paging") {
      if (!valid_policy(value))
        return fail(Errc::invalid_argument, "unknown paging policy '" + std::string(value) + "'");
      r.paging = std::string(value);
    } else if (key == "guest") {
      if (value != "0" && value != "1")
        return fail(Errc::invalid_argument,
                    "guest must be 0 or 1, got '" + std::string(value) + "'");
      r.guest = value == "1";
    } else {
      return fail(Errc::invalid_argument, "unknown key '" + std::string(key) + "'");
    }
  }
  if (!have_job) return fail(Errc::invalid_argument, "no job= line");
  r.job = *id;
  return r;
}

Result<std::map<std::uint64_t, JobRecord>> read_records(const std::string& dir,
                                                        std::map<std::string, std::string>* bad) {
  std::map<std::uint64_t, JobRecord> out;
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return out;
    return fail_errno("job records " + dir);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno("job records " + dir);
  if (!root_only(st))
    return fail(Errc::not_permitted,
                "job records " + dir + ": not root's, or writable by group or others");
  auto names = kernelside::list_dir("/proc/self/fd/" + std::to_string(fd.get()));
  if (!names) return std::unexpected(with_context(names.error(), "job records " + dir));
  for (const auto& name : *names) {
    if (!parse_id(name)) continue;
    auto r = read_record_at(fd.get(), name);
    if (r)
      out[r->job] = *r;
    else if (bad)
      (*bad)[name] = r.error().message();
  }
  return out;
}

std::optional<std::uint64_t> parse_stepd_cmdline(std::string_view cmdline) {
  constexpr std::string_view prefix = "slurmstepd: [";
  if (!cmdline.starts_with(prefix)) return std::nullopt;
  cmdline.remove_prefix(prefix.size());
  auto dot = cmdline.find('.');
  auto close = cmdline.find(']');
  if (close == std::string_view::npos) return std::nullopt;
  auto end = std::min(dot, close);
  return parse_id(cmdline.substr(0, end));
}

namespace {

// The job of a slurmstepd process, or nullopt when `pid` is not one (checked by its
// program and owner, not by its name alone).
std::optional<std::uint64_t> stepd_job(pid_t pid, const std::string& slurmstepd) {
  std::string base = "/proc/" + std::to_string(pid);
  char exe[PATH_MAX];
  ssize_t n = ::readlink((base + "/exe").c_str(), exe, sizeof exe - 1);
  if (n <= 0 || std::string_view(exe, static_cast<std::size_t>(n)) != slurmstepd)
    return std::nullopt;
  struct stat st {};
  if (::stat(base.c_str(), &st) != 0 || st.st_uid != 0) return std::nullopt;
  auto cmd = kernelside::read_text(base + "/cmdline");
  if (!cmd) return std::nullopt;
  for (char& c : *cmd)
    if (c == '\0') c = ' ';
  return parse_stepd_cmdline(*cmd);
}

}  // namespace

JobProcesses scan_jobs(const std::string& slurmstepd) {
  JobProcesses out;
  std::map<pid_t, std::vector<pid_t>> children;
  std::vector<std::pair<pid_t, std::string>> stepds;  // pid, comm
  auto entries = kernelside::list_dir("/proc");
  if (!entries) return out;
  for (const auto& e : *entries) {
    auto id = parse_id(e);
    if (!id || *id > INT_MAX) continue;
    pid_t pid = static_cast<pid_t>(*id);
    auto st = kernelside::read_stat(pid);
    if (!st) continue;
    ++out.processes_seen;
    children[st->ppid].push_back(pid);
    if (st->comm == "slurmstepd") stepds.emplace_back(pid, st->comm);
  }
  for (const auto& [stepd, comm] : stepds) {
    auto job = stepd_job(stepd, slurmstepd);
    if (!job) continue;
    auto& pids = out.jobs[*job];
    std::deque<pid_t> todo(children[stepd].begin(), children[stepd].end());
    while (!todo.empty()) {
      pid_t p = todo.front();
      todo.pop_front();
      pids.push_back(p);
      for (pid_t c : children[p])
        todo.push_back(c);
    }
  }
  return out;
}

Freezers::Freezers() {
  if (auto l = kernelside::Layout::detect()) layout_ = *l;
}

void Freezers::learn(const std::vector<pid_t>& pids) {
  if (!layout_ || !layout_->serving(kernelside::Controller::freezer)) return;
  for (pid_t p : pids) {
    auto path = kernelside::process_cgroup(*layout_, p, kernelside::Controller::freezer);
    if (path && *path != "/")
      group_of_[p] = path->substr(1);  // Group::open takes it relative to the root
    else
      group_of_.erase(p);
  }
}

std::string Freezers::memory_cgroup(pid_t pid) const {
  if (!layout_) return "";
  auto path = kernelside::process_cgroup(*layout_, pid, kernelside::Controller::memory);
  if (!path || *path == "/") return "";
  // the paging extension reads an unlimited group's free memory from /proc/meminfo and
  // lets it swap
  return path->substr(1);
}

bool Freezers::frozen(pid_t pid, std::map<std::string, bool>& cache) const {
  auto it = group_of_.find(pid);
  if (it == group_of_.end()) return false;
  if (auto c = cache.find(it->second); c != cache.end()) return c->second;
  bool f = false;
  if (auto g = kernelside::Group::open(*layout_, it->second, {kernelside::Controller::freezer}))
    f = g->frozen().value_or(false);
  cache[it->second] = f;
  return f;
}

bool job_suspended(const std::vector<pid_t>& pids, std::size_t* live, const Freezers* freezers) {
  std::size_t n = 0, stopped = 0, runnable = 0;
  std::map<std::string, bool> cache;
  for (pid_t p : pids) {
    auto st = kernelside::read_stat(p);
    if (!st || st->state == 'Z' || st->state == 'X') continue;
    ++n;
    if (st->state == 'T' || (freezers && freezers->frozen(p, cache)))
      ++stopped;
    else if (st->state == 'R' || st->state == 'D')
      ++runnable;
  }
  if (live) *live = n;
  return stopped > 0 && runnable == 0;
}

}  // namespace dynamos::gang::follow
