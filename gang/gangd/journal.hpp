// gangd's journal: what it must remember across its own restart (jobs, their
// placements and policies, the quantum), as an append-only file of records.
//
//   file   = "DYGJ" | u32 format version (1) | record...
//   record = u32 length | u32 crc32(payload) | payload (protocol Writer encoding)
//
// Each change is one write() followed by fdatasync(), so a crash loses at most the
// record being written. A write or sync that fails (ENOSPC, EIO) is cut off again and
// the change reported as failed, so the journal stays readable and says only what the
// callers were told succeeded. A record is at most kMaxRecord bytes, the protocol's
// payload limit (a job's record holds what one submit message carried). On open, the records are
// replayed; a torn or corrupt *last* record (the crash case) is cut off and reported as a warning,
// a corrupt record before the end is an error (the file was damaged; recovering silently would lose
// jobs). compact() rewrites the live state into a new file and renames it over the
// old one, atomically.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "gang/protocol.hpp"

namespace dynamos::gang {

struct JournalJob {
  std::uint64_t id = 0;
  std::uint32_t uid = 0;
  std::string name;
  std::uint32_t ranks = 0;
  std::uint32_t nodes = 0;  // as requested; 0 = packed
  std::string paging;
  std::vector<std::string> argv;
  std::string cwd;
  std::uint32_t row = 0;
  std::vector<std::pair<std::string, std::uint32_t>> cells;  // node name, ranks
};

struct JournalState {
  std::map<std::uint64_t, JournalJob> jobs;
  std::optional<std::uint64_t> quantum_ns;
  std::uint64_t next_id = 1;
  std::size_t records = 0;
  std::vector<std::string> warnings;  // e.g. a torn last record that was cut off
};

class Journal {
 public:
  static constexpr std::size_t kMaxRecord = proto::kMaxPayload;

  // Opens (creating if needed, mode 0600) and replays the journal at `path`.
  static Result<Journal> open(const std::string& path, JournalState& state);

  Journal(Journal&& other) noexcept;
  Journal& operator=(Journal&& other) noexcept;
  ~Journal();

  Result<void> job_added(const JournalJob& job);
  Result<void> job_removed(std::uint64_t id, const std::string& reason);
  Result<void> paging_set(std::uint64_t id, const std::string& policy);
  Result<void> quantum_set(std::uint64_t quantum_ns);
  // Rewrites the file to hold only `state`.
  Result<void> compact(const JournalState& state);

  const std::string& path() const { return path_; }
  std::size_t records() const { return records_; }

 private:
  Journal(std::string path, int fd, std::size_t records);
  Result<void> append(const std::vector<std::uint8_t>& payload);

  std::string path_;
  int fd_ = -1;
  std::size_t records_ = 0;
};

std::uint32_t crc32(const std::uint8_t* data, std::size_t size);

}  // namespace dynamos::gang
