#include "gang/gangd/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>

#include "gang/protocol.hpp"

namespace dynamos::gang {
namespace {

enum Kind : std::uint8_t {
  kJobAdded = 1,
  kJobRemoved = 2,
  kPagingSet = 3,
  kQuantumSet = 4,
  kNextId = 5,
};

constexpr std::size_t kRecordHeader = 8;

// The file header: magic "DYGJ" and the format version. A file without it is a journal
// from before version 1 (the same records from offset 0); compaction upgrades it.
constexpr std::uint32_t kJournalMagic = 0x4459474a;
constexpr std::uint32_t kJournalVersion = 1;
constexpr std::size_t kFileHeader = 8;

std::vector<std::uint8_t> file_header() {
  proto::Writer w;
  w.u32(kJournalMagic);
  w.u32(kJournalVersion);
  return std::move(w.buffer());
}

// The directory holding `path` synced, so that a create or rename survives a crash.
Result<void> sync_dir(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) return fail_errno("open directory " + dir + " to sync it");
  int rc = ::fsync(d);
  auto err = errno;
  ::close(d);
  if (rc != 0) {
    errno = err;
    return fail_errno("sync directory " + dir);
  }
  return {};
}

void put_job(proto::Writer& w, const JournalJob& j) {
  w.u8(kJobAdded);
  w.u64(j.id);
  w.u32(j.uid);
  w.str(j.name);
  w.u32(j.ranks);
  w.u32(j.nodes);
  w.str(j.paging);
  w.u32(static_cast<std::uint32_t>(j.argv.size()));
  for (const auto& a : j.argv)
    w.str(a);
  w.str(j.cwd);
  w.u32(j.row);
  w.u32(static_cast<std::uint32_t>(j.cells.size()));
  for (const auto& [node, ranks] : j.cells) {
    w.str(node);
    w.u32(ranks);
  }
}

// A record of one kind, one u64 and, when given, one string.
std::vector<std::uint8_t> small_record(Kind kind, std::uint64_t value,
                                       const std::string* text = nullptr) {
  proto::Writer w;
  w.u8(kind);
  w.u64(value);
  if (text) w.str(*text);
  return std::move(w.buffer());
}

// Applies one record to the state; the error names what is wrong with it.
Result<void> apply_record(std::span<const std::uint8_t> payload, JournalState& state) {
  proto::Reader r(payload, "journal record");
  std::uint8_t kind = r.u8();
  switch (kind) {
    case kJobAdded: {
      JournalJob j;
      j.id = r.u64();
      j.uid = r.u32();
      j.name = r.str("name");
      j.ranks = r.u32();
      j.nodes = r.u32();
      j.paging = r.str("paging");
      for (std::uint32_t n = r.count("argv", 4), i = 0; i < n && !r.failed(); ++i)
        j.argv.push_back(r.str("argv"));
      j.cwd = r.str("cwd");
      j.row = r.u32();
      for (std::uint32_t n = r.count("cells", 8), i = 0; i < n && !r.failed(); ++i) {
        auto node = r.str("cells");
        j.cells.emplace_back(std::move(node), r.u32());
      }
      if (auto ok = r.finish(); !ok) return ok;
      state.next_id = std::max(state.next_id, j.id + 1);
      state.jobs[j.id] = std::move(j);
      return {};
    }
    case kJobRemoved: {
      std::uint64_t id = r.u64();
      r.str("reason");
      if (auto ok = r.finish(); !ok) return ok;
      state.jobs.erase(id);
      return {};
    }
    case kPagingSet: {
      std::uint64_t id = r.u64();
      auto policy = r.str("policy");
      if (auto ok = r.finish(); !ok) return ok;
      if (auto it = state.jobs.find(id); it != state.jobs.end()) it->second.paging = policy;
      return {};
    }
    case kQuantumSet: {
      std::uint64_t q = r.u64();
      if (auto ok = r.finish(); !ok) return ok;
      state.quantum_ns = q;
      return {};
    }
    case kNextId: {
      std::uint64_t id = r.u64();
      if (auto ok = r.finish(); !ok) return ok;
      state.next_id = std::max(state.next_id, id);
      return {};
    }
    default:
      return fail(Errc::protocol, "journal record of unknown kind " + std::to_string(kind));
  }
}

std::vector<std::uint8_t> framed(const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> rec;
  rec.reserve(kRecordHeader + payload.size());
  proto::Writer w;
  w.u32(static_cast<std::uint32_t>(payload.size()));
  w.u32(crc32(payload.data(), payload.size()));
  rec = std::move(w.buffer());
  rec.insert(rec.end(), payload.begin(), payload.end());
  return rec;
}

Result<void> write_all(int fd, const std::vector<std::uint8_t>& bytes, const std::string& path) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("write journal " + path);
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

}  // namespace

std::uint32_t crc32(const std::uint8_t* data, std::size_t size) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k)
        c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < size; ++i)
    c = table[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

Journal::Journal(std::string path, int fd, std::size_t records)
    : path_(std::move(path)), fd_(fd), records_(records) {}
Journal::Journal(Journal&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), records_(o.records_) {}
Journal& Journal::operator=(Journal&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    records_ = o.records_;
  }
  return *this;
}
Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

Result<Journal> Journal::open(const std::string& path, JournalState& state) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_APPEND, 0600);
  if (fd < 0) return fail_errno("open journal " + path);
  Journal j(path, fd, 0);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno("stat journal " + path);
  std::vector<std::uint8_t> data(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read journal " + path);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  data.resize(got);

  std::size_t pos = 0;
  if (data.empty()) {
    // A new journal: its header first, durable with the file's name.
    auto ok = write_all(fd, file_header(), path);
    if (ok && ::fdatasync(fd) != 0) ok = fail_errno("sync journal " + path);
    if (ok) ok = sync_dir(path);
    if (!ok) return std::unexpected(ok.error());
    pos = data.size();
  } else if (data.size() >= 4 && data[0] == 'D' && data[1] == 'Y' && data[2] == 'G' &&
             data[3] == 'J') {
    if (data.size() < kFileHeader)
      return fail(Errc::protocol, "journal " + path + ": file header cut short");
    proto::Reader h(std::span<const std::uint8_t>(data).first(kFileHeader), "journal header");
    h.u32();
    std::uint32_t version = h.u32();
    if (version != kJournalVersion)
      return fail(Errc::version_mismatch, "journal " + path + " has format version " +
                                              std::to_string(version) + "; this gangd reads " +
                                              std::to_string(kJournalVersion));
    pos = kFileHeader;
  }
  while (pos < data.size()) {
    auto where = "journal " + path + ": record at offset " + std::to_string(pos);
    std::string problem;
    std::size_t length = 0;
    if (data.size() - pos < kRecordHeader) {
      problem = "header cut short";
    } else {
      proto::Reader h(std::span<const std::uint8_t>(data).subspan(pos, kRecordHeader),
                      "journal record header");
      length = h.u32();
      std::uint32_t crc = h.u32();
      if (length > Journal::kMaxRecord) {
        problem = "length " + std::to_string(length) + " exceeds the limit";
      } else if (data.size() - pos - kRecordHeader < length) {
        problem = "cut short";
      } else if (crc32(data.data() + pos + kRecordHeader, length) != crc) {
        problem = "checksum mismatch";
      }
    }
    if (!problem.empty()) {
      // Only the tail may be torn: a crash during the last append.
      // A record that ends before the file does is damage, whatever its length says.
      bool is_tail =
          data.size() - pos < kRecordHeader || pos + kRecordHeader + length >= data.size();
      if (!is_tail) return fail(Errc::protocol, where + " is corrupt (" + problem + ")");
      if (::ftruncate(fd, static_cast<off_t>(pos)) != 0)
        return fail_errno("truncate journal " + path + " after a torn record");
      state.warnings.push_back(where + " was torn (" + problem + ") and has been cut off");
      break;
    }
    auto payload = std::span<const std::uint8_t>(data).subspan(pos + kRecordHeader, length);
    if (auto ok = apply_record(payload, state); !ok)
      return std::unexpected(with_context(ok.error(), where));
    ++state.records;
    pos += kRecordHeader + length;
  }
  j.records_ = state.records;
  return j;
}

Result<void> Journal::append(const std::vector<std::uint8_t>& payload) {
  if (payload.size() > kMaxRecord)
    return fail(Errc::invalid_argument, "journal record of " + std::to_string(payload.size()) +
                                            " bytes exceeds the " + std::to_string(kMaxRecord) +
                                            "-byte limit");
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return fail_errno("stat journal " + path_);
  auto rec = framed(payload);
  auto ok = write_all(fd_, rec, path_);
  if (ok && ::fdatasync(fd_) != 0) ok = fail_errno("sync journal " + path_);
  if (!ok) {
    // Nothing half-written may stay: a later record after it would make the journal
    // unreadable. The change is reported as failed, so it must not replay either.
    if (::ftruncate(fd_, st.st_size) == 0) (void)::fdatasync(fd_);
    return ok;
  }
  ++records_;
  return {};
}

Result<void> Journal::job_added(const JournalJob& job) {
  proto::Writer w;
  put_job(w, job);
  return append(w.buffer());
}

Result<void> Journal::job_removed(std::uint64_t id, const std::string& reason) {
  return append(small_record(kJobRemoved, id, &reason));
}

Result<void> Journal::paging_set(std::uint64_t id, const std::string& policy) {
  return append(small_record(kPagingSet, id, &policy));
}

Result<void> Journal::quantum_set(std::uint64_t quantum_ns) {
  return append(small_record(kQuantumSet, quantum_ns));
}

Result<void> Journal::compact(const JournalState& state) {
  std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail_errno("create " + tmp);
  std::vector<std::uint8_t> all = file_header();
  std::size_t n = 0;
  auto add = [&](const std::vector<std::uint8_t>& payload) {
    auto rec = framed(payload);
    all.insert(all.end(), rec.begin(), rec.end());
    ++n;
  };
  if (state.quantum_ns) add(small_record(kQuantumSet, *state.quantum_ns));
  // Ids of removed jobs are never reused, even after compaction drops them.
  add(small_record(kNextId, state.next_id));
  for (const auto& [id, job] : state.jobs) {
    proto::Writer w;
    put_job(w, job);
    add(w.buffer());
  }
  auto ok = write_all(fd, all, tmp);
  if (ok && ::fsync(fd) != 0) ok = fail_errno("sync " + tmp);
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path_.c_str()) != 0)
    ok = fail_errno("rename " + tmp + " to " + path_);
  if (ok) ok = sync_dir(path_);  // the rename itself must survive a crash
  if (!ok) {
    ::unlink(tmp.c_str());
    return ok;
  }
  int nfd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC | O_APPEND);
  if (nfd < 0) return fail_errno("reopen journal " + path_);
  ::close(fd_);
  fd_ = nfd;
  records_ = n;
  return {};
}

}  // namespace dynamos::gang
