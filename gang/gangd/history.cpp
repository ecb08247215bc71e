#include "gang/gangd/history.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

namespace dynamos::gang {

namespace {

using json = nlohmann::json;

// A protocol struct to and from JSON through its wire field list (one place per
// field: protocol.hpp).
struct ToJson {
  json& j;
  template <class T>
  void operator()(const T& field, const char* name) {
    j[name] = field;
  }
};
struct FromJson {
  const json& j;
  template <class T>
  void operator()(T& field, const char* name) {
    if (auto it = j.find(name); it != j.end()) field = it->get<T>();
  }
};
template <class T>
json to_json(const T& m) {
  json j = json::object();
  ToJson v{j};
  m.wire_fields(v);
  return j;
}
template <class T>
T from_json(const json& j) {
  T m;
  FromJson v{j};
  m.wire_fields(v);
  return m;
}

json queued_json(const QueuedJob& q) {
  return {{"k", "queued"},       {"id", q.id},     {"uid", q.uid},
          {"t", q.submitted_ns}, {"held", q.held}, {"req", to_json(q.req)}};
}

json started_json(std::uint64_t id, std::uint64_t t) {
  return {{"k", "started"}, {"id", id}, {"t", t}};
}
json ended_json(const proto::JobInfo& info) {
  return {{"k", "ended"}, {"job", to_json(info)}};
}
json node_json(const std::string& name, const NodeAdminState& s) {
  return {{"k", "node"}, {"name", name}, {"drained", s.drained}, {"reason", s.reason}};
}

void trim_history(SchedState& state, std::size_t limit) {
  while (state.history.size() > limit) {
    state.requeueable.erase(state.history.front().job);
    state.history.pop_front();
  }
}

void apply_ended(proto::JobInfo info, SchedState& state) {
  auto id = info.job;
  QueuedJob q;
  bool known = false;
  for (auto* m : {&state.pending, &state.running})
    if (auto it = m->find(id); it != m->end()) {
      q = std::move(it->second);
      known = true;
      m->erase(it);
    }
  if (known && info.state != "done") state.requeueable[id] = std::move(q);
  state.history.push_back(std::move(info));
}

// Applies one line to the state; throws (nlohmann) on a malformed one.
void apply_record(const json& j, SchedState& state) {
  const std::string k = j.at("k").get<std::string>();
  std::uint64_t id = j.contains("id") ? j.at("id").get<std::uint64_t>() : 0;
  if (k == "queued") {
    QueuedJob q{id, j.at("uid").get<std::uint32_t>(), j.at("t").get<std::uint64_t>(),
                0,  j.at("held").get<bool>(),         from_json<proto::JobSubmit>(j.at("req"))};
    state.pending[id] = std::move(q);
  } else if (k == "started") {
    if (auto it = state.pending.find(id); it != state.pending.end()) {
      it->second.started_ns = j.at("t").get<std::uint64_t>();
      state.running[id] = std::move(it->second);
      state.pending.erase(it);
    }
  } else if (k == "held") {
    if (auto it = state.pending.find(id); it != state.pending.end())
      it->second.held = j.at("held").get<bool>();
  } else if (k == "ended") {
    auto info = from_json<proto::JobInfo>(j.at("job"));
    id = info.job;
    apply_ended(std::move(info), state);
  } else if (k == "node") {
    NodeAdminState s{j.at("drained").get<bool>(), j.at("reason").get<std::string>()};
    auto name = j.at("name").get<std::string>();
    if (s.drained)
      state.nodes[name] = s;
    else
      state.nodes.erase(name);
  } else {
    throw std::runtime_error("unknown record kind '" + k + "'");
  }
  state.max_id = std::max(state.max_id, id);
}

Result<std::string> read_all(int fd, const std::string& path) {
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read " + path);
    if (n == 0) return text;
    text.append(buf, static_cast<std::size_t>(n));
  }
}

Result<void> write_all(int fd, const std::string& bytes, const std::string& path) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("write " + path);
    done += static_cast<std::size_t>(n);
  }
  return {};
}

// Replays `text`; the length of its good prefix (a torn last line is cut off).
Result<std::size_t> replay(const std::string& text, const std::string& path, SchedState& state,
                           std::size_t& records) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    bool last = nl == std::string::npos || nl + 1 == text.size();
    try {
      if (nl == std::string::npos) throw std::runtime_error("no end of line");
      apply_record(json::parse(text.substr(pos, nl - pos)), state);
    } catch (const std::exception& e) {
      if (!last)
        return fail(Errc::protocol, path + ": damaged record at byte " + std::to_string(pos) +
                                        " (" + e.what() + "); not replaying a damaged journal");
      state.warnings.push_back(path + ": a torn last record was cut off (" + e.what() + ")");
      return pos;
    }
    ++records;
    pos = nl + 1;
  }
  return pos;
}

}  // namespace

Result<SchedJournal> SchedJournal::open(const std::string& path, std::size_t history_limit,
                                        SchedState& state) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail_errno("open scheduler journal " + path);
  SchedJournal j(path, fd, 0, history_limit);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno("stat " + path);
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid())
    return fail(Errc::not_permitted,
                path + " is not a regular file of gangd's user; not using it as a journal");
  auto text = read_all(fd, path);
  if (!text) return std::unexpected(text.error());
  auto good = replay(*text, path, state, j.records_);
  if (!good) return std::unexpected(good.error());
  if (*good < text->size() && ::ftruncate(fd, static_cast<off_t>(*good)) != 0)
    return fail_errno("truncate " + path);
  trim_history(state, history_limit);
  if (auto ok = j.compact(state); !ok) return std::unexpected(ok.error());
  return j;
}

SchedJournal::SchedJournal(SchedJournal&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(std::exchange(o.fd_, -1)),
      records_(o.records_),
      limit_(o.limit_) {}

SchedJournal& SchedJournal::operator=(SchedJournal&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    records_ = o.records_;
    limit_ = o.limit_;
  }
  return *this;
}

SchedJournal::~SchedJournal() {
  if (fd_ >= 0) ::close(fd_);
}

Result<void> SchedJournal::append(const std::string& line) {
  if (fd_ < 0) return {};  // in memory only
  if (auto ok = write_all(fd_, line + "\n", path_); !ok) return ok;
  if (::fdatasync(fd_) != 0) return fail_errno("fdatasync " + path_);
  ++records_;
  return {};
}

Result<void> SchedJournal::queued(const QueuedJob& job, SchedState& state) {
  if (auto ok = append(queued_json(job).dump()); !ok) return ok;
  state.pending[job.id] = job;
  state.max_id = std::max(state.max_id, job.id);
  return {};
}

Result<void> SchedJournal::started(std::uint64_t id, std::uint64_t started_ns, SchedState& state) {
  if (auto ok = append(started_json(id, started_ns).dump()); !ok) return ok;
  apply_record(started_json(id, started_ns), state);
  return {};
}

Result<void> SchedJournal::held(std::uint64_t id, bool held, SchedState& state) {
  json j{{"k", "held"}, {"id", id}, {"held", held}};
  if (auto ok = append(j.dump()); !ok) return ok;
  apply_record(j, state);
  return {};
}

Result<void> SchedJournal::ended(const proto::JobInfo& info, SchedState& state) {
  if (auto ok = append(ended_json(info).dump()); !ok) return ok;
  apply_ended(info, state);
  trim_history(state, limit_);
  std::size_t live = 2 * state.running.size() + state.pending.size() + state.history.size() +
                     state.requeueable.size() + state.nodes.size();
  if (records_ > 2 * live + 64) return compact(state);
  return {};
}

Result<void> SchedJournal::node_admin(const std::string& node, const NodeAdminState& s,
                                      SchedState& state) {
  if (auto ok = append(node_json(node, s).dump()); !ok) return ok;
  apply_record(node_json(node, s), state);
  return {};
}

Result<void> SchedJournal::compact(const SchedState& state) {
  if (fd_ < 0) return {};
  std::string text;
  std::size_t lines = 0;
  auto line = [&](const json& j) {
    text += j.dump() + "\n";
    ++lines;
  };
  for (const auto& info : state.history) {
    if (auto it = state.requeueable.find(info.job); it != state.requeueable.end())
      line(queued_json(it->second));
    line(ended_json(info));
  }
  for (const auto& [id, q] : state.running) {
    line(queued_json(q));
    line(started_json(id, q.started_ns));
  }
  for (const auto& [id, q] : state.pending)
    line(queued_json(q));
  for (const auto& [name, s] : state.nodes)
    line(node_json(name, s));
  std::string tmp = path_ + ".new";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail_errno("create " + tmp);
  auto ok = write_all(fd, text, tmp);
  if (ok && ::fsync(fd) != 0) ok = fail_errno("fsync " + tmp);
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path_.c_str()) != 0) ok = fail_errno("rename " + tmp);
  if (!ok) {
    ::unlink(tmp.c_str());
    return ok;
  }
  int nfd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
  if (nfd < 0) return fail_errno("reopen " + path_);
  ::close(fd_);
  fd_ = nfd;
  records_ = lines;
  return {};
}

}  // namespace dynamos::gang
