// Issue 17: the records of what the cycle-stealing extension changed (raised host CPU
// weights, the guest class), which the next load restores after a crash
// (extensions/cyclesteal/records.hpp). Root reads them, so each is treated as hostile:
// a planted link, a file of another user or open to others, garbage, an overlong file
// are refused, named, and nothing is restored from them.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/file.hpp"
#include "extensions/cyclesteal/records.hpp"
#include "kernelside/procfs.hpp"
#include "tests/kernelside/support.hpp"

using namespace dynamos;
using namespace dynamos::cyclesteal;
namespace fs = std::filesystem;

namespace {

constexpr uid_t kNobody = 65534;

std::string contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos ? "" : "'" + part + "' not in: " + text;
}

// A private scratch directory (0700, root's when run as root), removed at the end.
struct Dir {
  std::string path = *make_temp_dir("dynamos-records-test");
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void write(const std::string& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

const std::string kHead = "dynamos-cyclesteal-records 1\n";

}  // namespace

TEST(CycleStealRecords, WhatIsWrittenReadsBackAndEmptyRemovesTheFile) {
  Dir d;
  auto f = ASSERT_OK(RecordFile::in(d.path));
  Records r;
  r.weights = {{"dynamos/n0/job7", 250}, {"dynamos/n0/job8", 100}};
  r.class_path = "dynamos/n0/guests";
  r.class_created = false;
  ASSERT_TRUE(f.write(r));
  auto back = read_record_file(f.path());
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, r);
  // The name carries the process's start time: a later process with the same pid is
  // not taken for this one.
  auto st = kernelside::read_stat(::getpid());
  ASSERT_TRUE(st);
  EXPECT_EQ(fs::path(f.path()).filename().string(),
            std::to_string(::getpid()) + "-" + std::to_string(st->starttime_ticks) + ".records");
  struct stat s {};
  ASSERT_EQ(::stat(f.path().c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 0777, 0600u);
  ASSERT_TRUE(f.write(Records{}));
  EXPECT_FALSE(fs::exists(f.path())) << "an empty record is no file";
  EXPECT_TRUE(fs::is_empty(d.path)) << "no temporary file left";
}

TEST(CycleStealRecords, GarbageAndOutOfRangeLinesAreRefusedNamingTheLine) {
  struct Case {
    std::string text, why;
  } cases[] = {
      {"", "empty"},
      {"hello\n", "not a record file of this format"},
      {kHead + "weight 250 dynamos/job", "no newline at the end"},
      {kHead + "weight 0 dynamos/job\n", "weight not in 1..10000"},
      {kHead + "weight 10001 dynamos/job\n", "weight not in 1..10000"},
      {kHead + "weight -5 dynamos/job\n", "weight not in 1..10000"},
      {kHead + "weight 99999999999999999999 dynamos/job\n", "weight not in 1..10000"},
      {kHead + "weight 250 /sys/fs/cgroup/x\n", "not a relative cgroup path"},
      {kHead + "weight 250 dynamos/../../etc\n", "not a relative cgroup path"},
      {kHead + "weight 250 a//b\n", "not a relative cgroup path"},
      {kHead + "weight 250 a/b c\n", "not a relative cgroup path"},
      {kHead + "weight 250 " + std::string(600, 'a') + "\n", "not a relative cgroup path"},
      {kHead + "weight 250 a\nweight 300 a\n", "repeated"},
      {kHead + "class 2 a\n", "class flag not 0 or 1"},
      {kHead + "class 1 a\nclass 1 b\n", "a second class record"},
      {kHead + "exec 1 bin/sh\n", "unknown record 'exec'"},
      {kHead + "weight\n", "expected 'KIND VALUE PATH'"},
      {kHead + std::string(3, '\0') + "\n", "expected 'KIND VALUE PATH'"},
  };
  for (const auto& c : cases) {
    auto r = parse_records(c.text, "REC");
    ASSERT_FALSE(r) << "accepted: " << c.text;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_EQ(contains(r.error().message(), "REC line"), "");
    EXPECT_EQ(contains(r.error().message(), c.why), "");
  }
  auto ok = parse_records(kHead + "weight 1 a.b/c-d_e@f:g+h\nclass 1 x\n", "REC");
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->weights.at("a.b/c-d_e@f:g+h"), 1u);
}

TEST(CycleStealRecords, OverlongFileIsRefusedWithoutReadingItAll) {
  Dir d;
  std::string text = kHead;
  while (text.size() <= kMaxRecordBytes)
    text += "weight 250 dynamos/n0/job" + std::to_string(text.size()) + "\n";
  write(d / "1-999999999999.records", text);
  auto r = read_record_file(d / "1-999999999999.records");
  ASSERT_FALSE(r);
  EXPECT_EQ(contains(r.error().message(), "is larger than"), "");
}

TEST(CycleStealRecords, PlantedLinkFifoOtherUsersAndWritableFilesAreRefused) {
  KERNELSIDE_REQUIRE_ROOT();
  Dir d;
  write(d / "target", kHead + "weight 250 dynamos/job\n");
  ASSERT_EQ(::symlink((d / "target").c_str(), (d / "link.records").c_str()), 0);
  auto link = read_record_file(d / "link.records");
  ASSERT_FALSE(link);
  EXPECT_EQ(contains(link.error().message(), "is a symbolic link"), "");

  ASSERT_EQ(::mkfifo((d / "fifo.records").c_str(), 0600), 0);
  auto fifo = read_record_file(d / "fifo.records");  // must not block
  ASSERT_FALSE(fifo);
  EXPECT_EQ(contains(fifo.error().message(), "is a FIFO"), "");

  write(d / "theirs.records", kHead + "weight 250 dynamos/job\n");
  ASSERT_EQ(::chown((d / "theirs.records").c_str(), kNobody, kNobody), 0);
  auto theirs = read_record_file(d / "theirs.records");
  ASSERT_FALSE(theirs);
  EXPECT_EQ(contains(theirs.error().message(), "belongs to uid 65534"), "");

  write(d / "open.records", kHead + "weight 250 dynamos/job\n", 0666);
  auto open = read_record_file(d / "open.records");
  ASSERT_FALSE(open);
  EXPECT_EQ(contains(open.error().message(), "writable by group or others"), "");

  write(d / "one.records", kHead + "weight 250 dynamos/job\n");
  ASSERT_EQ(::link((d / "one.records").c_str(), (d / "two.records").c_str()), 0);
  auto linked = read_record_file(d / "one.records");
  ASSERT_FALSE(linked);
  EXPECT_EQ(contains(linked.error().message(), "has 2 links"), "");
}

// A dead holder's hostile file is refused and left; a live holder's file is not
// touched; a dead holder's good file is restored (its group gone: dropped) and removed.
TEST(CycleStealRecords, RestoreTouchesOnlyFilesOfProcessesThatAreGoneAndRefusesHostileOnes) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = ASSERT_OK(kernelside::Layout::detect());
  Dir d;
  auto mine = ASSERT_OK(RecordFile::in(d.path));
  Records live;
  live.weights["dynamos-records-test-gone/job1"] = 250;
  ASSERT_TRUE(mine.write(live));
  // pid 1's start time is never 1: a holder that is gone.
  write(d / "1-999999999999.records", kHead + "weight 300 dynamos-records-test-gone/job2\n");
  write(d / "1-2.records", kHead + "weight 300 ../../../etc\n");
  ASSERT_EQ(::symlink("/etc/passwd", (d / "1-3.records").c_str()), 0);
  write(d / "garbage", "x");
  write(d / ".1-4.records.tmp", kHead);
  RestoreReport rep = restore_orphans(layout, d.path);
  EXPECT_TRUE(fs::exists(mine.path())) << "a live process's record was taken";
  EXPECT_FALSE(fs::exists(d / "1-999999999999.records"))
      << "a dead holder's record stays after restore";
  EXPECT_FALSE(fs::exists(d / ".1-4.records.tmp"));
  EXPECT_TRUE(fs::exists(d / "1-2.records")) << "a refused file is left for the operator";
  EXPECT_TRUE(fs::is_symlink(d / "1-3.records"));
  EXPECT_EQ(rep.dropped, std::vector<std::string>{"dynamos-records-test-gone/job2"});
  EXPECT_TRUE(rep.restored.empty());
  std::string errors;
  for (auto& e : rep.errors)
    errors += e + "\n";
  EXPECT_EQ(contains(errors, d / "1-2.records line 2: not a relative cgroup path"), "");
  EXPECT_EQ(contains(errors, d / "1-3.records is a symbolic link"), "");
  EXPECT_EQ(contains(errors, d / "garbage: not a record file name"), "");
  EXPECT_EQ(rep.errors.size(), 3u) << errors;
}
