// What the cycle-stealing extension changed in the kernel that would outlive its process
// (kill -9, a crash): the CPU weight it raised on host job groups, and the guest class
// (cpu.idle, its memory bound, frozen guest groups). Each change is recorded before it is
// made, in a file of the process's own in a root-owned private directory
// (/run/dynamos/cyclesteal for root: base/file make_run_dir); when the extension loads it
// restores what processes that are gone left recorded, then removes their files.
//
// A file is named PID-STARTTIME.records (the start time from /proc/PID/stat, so a pid
// used again is never taken for the holder), one record a line after a format line:
//   dynamos-cyclesteal-records 1
//   weight ORIGINAL PATH     a host job group (relative cgroup path) and its weight before
//   class CREATED PATH       the guest class; CREATED 1 when the extension created it
// It is rewritten whole (a new file renamed over the old) and removed when empty. Files
// are read as hostile: O_NOFOLLOW|O_NONBLOCK, a regular file of the caller, writable by
// nobody else, one link, at most kMaxRecordBytes, every line checked; anything else is
// refused, named, and left for the operator.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "kernelside/cgroup.hpp"

namespace dynamos::cyclesteal {

inline constexpr std::size_t kMaxRecordBytes = 256 * 1024;
inline constexpr std::size_t kMaxRecordPath = 512;

struct Records {
  std::map<std::string, unsigned> weights;  // host job group -> weight before the raise
  std::optional<std::string> class_path;    // the guest class
  bool class_created = false;
  bool empty() const { return weights.empty() && !class_path; }
  bool operator==(const Records&) const = default;
};

std::string format_records(const Records& r);
// Strict: Errc::invalid_argument naming `name`, the line and what is wrong.
Result<Records> parse_records(std::string_view text, const std::string& name);
// Opens and checks a record file as described above, then parses it.
Result<Records> read_record_file(const std::string& path);

// This process's record file.
class RecordFile {
 public:
  // In `dir` (the caller checked it), named after this process.
  static Result<RecordFile> in(const std::string& dir);
  // Replaces the file's contents with `r` (removes it when `r` is empty).
  Result<void> write(const Records& r);
  const std::string& path() const { return path_; }

 private:
  explicit RecordFile(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// What restore_orphans did, for the log.
struct RestoreReport {
  std::vector<std::string> restored;  // "PATH weight W"
  std::vector<std::string> dropped;   // groups that are gone
  std::vector<std::string> errors;    // refused files, failed writes
};

// For every record file in `dir` whose process is gone: gives each recorded host job
// group that still exists its weight back, thaws the recorded class's guest groups and
// removes the empty ones, lifts the class's bound and idle flag (removes it when it
// created it) once no guest is left in it, then removes the file. Files of live
// processes are left alone.
RestoreReport restore_orphans(const kernelside::Layout& layout, const std::string& dir);

}  // namespace dynamos::cyclesteal
