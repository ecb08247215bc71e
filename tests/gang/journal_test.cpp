// gangd's journal: what was written is what a restart recovers; a torn last record
// (a crash mid-write) is cut off with a warning; damage before the end is an error.
#include "gang/gangd/journal.hpp"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::gang;

namespace {
JournalJob job(std::uint64_t id, std::string name) {
  return JournalJob{id,     1000, std::move(name),       8, 2, "adaptive", {"./a.out", "-x"},
                    "/tmp", 1,    {{"n0", 4}, {"n1", 4}}};
}

// A journal with jobs 1 and 2, closed.
void write_two_jobs(const std::string& path) {
  JournalState st;
  auto j = Journal::open(path, st);
  ASSERT_TRUE(j.has_value()) << j.error().message();
  ASSERT_TRUE(j->job_added(job(1, "lu")));
  ASSERT_TRUE(j->job_added(job(2, "cg")));
}
}  // namespace

TEST(Journal, RecoversWhatWasWritten) {
  test::TempDir dir;
  auto path = dir / "journal";
  {
    JournalState st;
    auto j = Journal::open(path, st);
    ASSERT_TRUE(j.has_value()) << j.error().message();
    EXPECT_TRUE(st.jobs.empty());
    ASSERT_TRUE(j->job_added(job(1, "lu")));
    ASSERT_TRUE(j->job_added(job(2, "cg")));
    ASSERT_TRUE(j->job_added(job(3, "ft")));
    ASSERT_TRUE(j->job_removed(2, "cancelled"));
    ASSERT_TRUE(j->paging_set(3, "demand"));
    ASSERT_TRUE(j->quantum_set(500'000'000));
  }
  struct stat sb {};
  ASSERT_EQ(::stat(path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 077, 0u) << "the journal must not be readable by others";

  JournalState st;
  auto j = Journal::open(path, st);
  ASSERT_TRUE(j.has_value()) << j.error().message();
  EXPECT_TRUE(st.warnings.empty());
  ASSERT_EQ(st.jobs.size(), 2u);
  EXPECT_EQ(st.jobs.at(1).name, "lu");
  EXPECT_EQ(st.jobs.at(1).argv, (std::vector<std::string>{"./a.out", "-x"}));
  EXPECT_EQ(st.jobs.at(1).cells.at(1).first, "n1");
  EXPECT_EQ(st.jobs.at(3).paging, "demand");
  EXPECT_EQ(st.quantum_ns, 500'000'000u);
  EXPECT_EQ(st.next_id, 4u) << "ids of removed jobs must not be reused";

  // Compaction keeps the state, including the id counter.
  st.jobs.erase(3);
  ASSERT_TRUE(j->compact(st));
  JournalState after;
  ASSERT_TRUE(Journal::open(path, after).has_value());
  EXPECT_EQ(after.jobs.size(), 1u);
  EXPECT_EQ(after.next_id, 4u);
  EXPECT_EQ(after.quantum_ns, 500'000'000u);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Journal, TornTailIsCutOffWithAWarning) {
  test::TempDir dir;
  auto path = dir / "journal";
  write_two_jobs(path);
  auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 5);  // the crash case
  JournalState st;
  auto j = Journal::open(path, st);
  ASSERT_TRUE(j.has_value()) << j.error().message();
  ASSERT_EQ(st.warnings.size(), 1u);
  EXPECT_NE(st.warnings[0].find("torn"), std::string::npos) << st.warnings[0];
  EXPECT_EQ(st.jobs.size(), 1u);
  // Appending after the cut works and the file is clean again.
  ASSERT_TRUE(j->job_added(job(5, "mg")));
  JournalState again;
  ASSERT_TRUE(Journal::open(path, again).has_value());
  EXPECT_TRUE(again.warnings.empty());
  EXPECT_EQ(again.jobs.size(), 2u);
}

TEST(Journal, DamageBeforeTheEndIsAnError) {
  test::TempDir dir;
  auto path = dir / "journal";
  write_two_jobs(path);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x55');
  }
  JournalState st;
  auto j = Journal::open(path, st);
  ASSERT_FALSE(j) << "a corrupt record in the middle was accepted";
  // The first record follows the 8-byte file header.
  EXPECT_NE(j.error().message().find("offset 8"), std::string::npos) << j.error().message();
  EXPECT_NE(j.error().message().find("corrupt"), std::string::npos) << j.error().message();
}

TEST(Journal, StartsWithAVersionedHeaderAndRefusesAnUnknownVersion) {
  test::TempDir dir;
  auto path = dir / "journal";
  write_two_jobs(path);
  std::ifstream in(path, std::ios::binary);
  char head[8];
  in.read(head, 8);
  EXPECT_EQ(std::string(head, 4), "DYGJ");
  EXPECT_EQ(head[7], 1) << "format version 1";
  in.close();
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(7);
    f.put('\x09');
  }
  JournalState st;
  auto j = Journal::open(path, st);
  ASSERT_FALSE(j) << "a journal of an unknown format version was replayed";
  EXPECT_NE(j.error().message().find("format version 9"), std::string::npos) << j.error().message();
}

TEST(Journal, JournalWithoutHeaderFromBeforeVersion1StillReplays) {
  test::TempDir dir;
  auto path = dir / "journal";
  write_two_jobs(path);
  // Drop the header: what an older gangd wrote.
  std::ifstream in(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  std::ofstream(path, std::ios::binary | std::ios::trunc) << all.substr(8);
  JournalState st;
  auto j = Journal::open(path, st);
  ASSERT_TRUE(j.has_value()) << j.error().message();
  EXPECT_EQ(st.jobs.size(), 2u);
  EXPECT_TRUE(st.warnings.empty());
}

TEST(Journal, OversizedRecordIsRefusedAndLaterRecordsAreNotLost) {
  test::TempDir dir;
  auto path = dir / "journal";
  JournalState st;
  auto j = Journal::open(path, st);
  ASSERT_TRUE(j.has_value()) << j.error().message();
  ASSERT_TRUE(j->job_added(job(1, "before")));
  // A job whose record is over the limit (argv alone is 1.05 MiB).
  auto big = job(2, "big");
  big.argv.assign(18, std::string(60 * 1024, 'a'));
  auto refused = j->job_added(big);
  ASSERT_FALSE(refused) << "a record over the limit was written";
  EXPECT_NE(refused.error().message().find("exceeds"), std::string::npos)
      << refused.error().message();
  ASSERT_TRUE(j->job_added(job(3, "after")));
  JournalState again;
  ASSERT_TRUE(Journal::open(path, again).has_value());
  EXPECT_TRUE(again.warnings.empty()) << again.warnings[0];
  EXPECT_EQ(again.jobs.size(), 2u) << "records after the refused one were dropped";
  EXPECT_TRUE(again.jobs.count(3));
}

TEST(Journal, FullDiskFailsTheChangeAndLeavesTheJournalReadable) {
  GANG_REQUIRE_ROOT();
  test::TempDir dir;
  auto mnt = dir / "small";
  ASSERT_TRUE(std::filesystem::create_directory(mnt));
  ASSERT_EQ(::mount("tmpfs", mnt.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0700"), 0)
      << "mount a 64 KiB tmpfs: " << std::strerror(errno);
  struct Unmount {
    std::string at;
    ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
  } unmount{mnt};
  auto path = mnt + "/journal";
  JournalState st;
  auto j = Journal::open(path, st);
  ASSERT_TRUE(j.has_value()) << j.error().message();
  // Jobs of about 3 KiB each until the file system is full.
  std::size_t ok = 0;
  Result<void> last;
  for (std::uint64_t id = 1; id < 100; ++id) {
    auto jb = job(id, "fill");
    jb.argv.push_back(std::string(3000, 'x'));
    last = j->job_added(jb);
    if (!last) break;
    ++ok;
  }
  ASSERT_FALSE(last) << "64 KiB never filled up";
  EXPECT_NE(last.error().message().find("No space left"), std::string::npos)
      << last.error().message();
  EXPECT_GT(ok, 5u);
  // A small record may still fit where the big one did not; either way the file holds
  // exactly the changes that were reported done.
  auto removed = j->job_removed(1, "cancelled");
  JournalState again;
  auto reopened = Journal::open(path, again);
  ASSERT_TRUE(reopened.has_value()) << reopened.error().message();
  EXPECT_TRUE(again.warnings.empty()) << again.warnings[0];
  EXPECT_EQ(again.jobs.size(), ok - (removed ? 1 : 0));
}
