// What dynamosd --follow slurm reads: the SPANK plugin's job records (hostile ones
// refused) and a Slurm job's processes under its slurmstepd, stopped or running.
#include "gang/dynamosd/follow_scan.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "kernelside/spawn.hpp"
#include "tests/gang/test_util.hpp"

namespace fs = std::filesystem;
using namespace dynamos::gang::follow;
using dynamos::gang::test::eventually;

namespace {

TEST(FollowRecord, ParsesWhatThePluginWrites) {
  auto r = parse_record("42", "job=42\nuid=1000\npaging=adaptive\nguest=1\n");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->job, 42u);
  EXPECT_EQ(r->uid, 1000u);
  EXPECT_EQ(r->paging, "adaptive");
  EXPECT_TRUE(r->guest);
}

TEST(FollowRecord, RefusesMalformedRecordsNamingWhatIsWrong) {
  struct Case {
    const char *name, *text, *says;
  } cases[] = {
      {"42", "job=43\npaging=demand\n", "does not match its name"},
      {"42", "job=42\npaging=sometimes\n", "unknown paging policy 'sometimes'"},
      {"42", "job=42\nguest=2\n", "guest must be 0 or 1"},
      {"42", "job=42\nshell=/bin/sh\n", "unknown key 'shell'"},
      {"42", "paging=demand\n", "no job= line"},
      {"42", "job=42\nnot a pair\n", "is not key=value"},
      {"../42", "job=42\n", "is not a job id"},
      {"42", "job=42\nuid=99999999999\n", "bad uid"},
  };
  for (const auto& c : cases) {
    auto r = parse_record(c.name, c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_NE(r.error().message().find(c.says), std::string::npos) << r.error().message();
  }
}

TEST(FollowRecord, StepdCommandLineGivesTheJob) {
  EXPECT_EQ(parse_stepd_cmdline("slurmstepd: [42.0] "), 42u);
  EXPECT_EQ(parse_stepd_cmdline("slurmstepd: [7.batch]"), 7u);
  EXPECT_EQ(parse_stepd_cmdline("slurmstepd: [7.extern]"), 7u);
  EXPECT_FALSE(parse_stepd_cmdline("slurmstepd"));
  EXPECT_FALSE(parse_stepd_cmdline("slurmstepd: [x.0]"));
  EXPECT_FALSE(parse_stepd_cmdline("sleep 30"));
}

class RecordDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("follow-records-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directory(dir_);
    ::chmod(dir_.c_str(), 0755);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text, mode_t mode = 0644) {
    std::ofstream(dir_ / name) << text;
    ::chmod((dir_ / name).c_str(), mode);
  }
  fs::path dir_;
};

TEST_F(RecordDir, ReadsRootsRecordsAndIgnoresHostileOnesSymlinkOthersWritable) {
  GANG_REQUIRE_ROOT();
  write("5", "job=5\nuid=0\npaging=selective\nguest=0\n");
  write("6", "job=6\nuid=0\npaging=aggressive\nguest=0\n", 0666);  // writable by others
  write("7", "job=7\nuid=0\npaging=adaptive\nguest=0\n");
  ::chown((dir_ / "7").c_str(), 65534, 65534);  // someone else's
  write("victim", "job=8\nuid=0\npaging=adaptive\nguest=0\n");
  fs::create_symlink(dir_ / "victim", dir_ / "8");  // a link to a valid-looking record
  write("notes.txt", "not a record");
  std::map<std::string, std::string> bad;
  auto r = read_records(dir_, &bad);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(r->at(5).paging, "selective");
  EXPECT_EQ(bad.size(), 3u);
  EXPECT_NE(bad["6"].find("writable by group or others"), std::string::npos) << bad["6"];
  EXPECT_NE(bad["7"].find("not root's"), std::string::npos) << bad["7"];
  EXPECT_NE(bad["8"].find("open"), std::string::npos) << bad["8"];
}

TEST_F(RecordDir, RefusesADirectoryWritableByOthersAndAcceptsAMissingOne) {
  ::chmod(dir_.c_str(), 0777);
  auto r = read_records(dir_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("writable by group or others"), std::string::npos);
  auto missing = read_records((dir_ / "none").string());
  ASSERT_TRUE(missing) << missing.error().message();
  EXPECT_TRUE(missing->empty());
}

// A stand-in slurmstepd (a copy of sh named so, its argv0 Slurm's) with a job of two
// processes: a shell that waits (as mpirun does) and its child, the "rank".
class FakeStepd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("follow-stepd-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    stepd_ = (dir_ / "slurmstepd").string();
    fs::copy_file("/bin/sh", stepd_, fs::copy_options::overwrite_existing);
    ::chmod(stepd_.c_str(), 0755);
    dynamos::kernelside::SpawnOptions o;
    o.argv = {"/bin/bash", "-c",
              "exec -a 'slurmstepd: [4242.0]' \"$0\" -c 'sh -c \"sleep 30 & wait\" & wait'",
              stepd_};
    auto pid = dynamos::kernelside::spawn(o);
    ASSERT_TRUE(pid) << pid.error().message();
    pid_ = *pid;
  }
  void TearDown() override {
    if (child_ > 0) ::kill(child_, SIGKILL);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }
  fs::path dir_;
  std::string stepd_;
  pid_t pid_ = -1, child_ = -1;
};

TEST_F(FakeStepd, FindsTheJobsProcessesOnlyUnderTheRealProgramAndSeesThemStopped) {
  GANG_REQUIRE_ROOT();
  JobProcesses found;
  ASSERT_TRUE(eventually(std::chrono::seconds(5), [&] {
    found = scan_jobs(stepd_);
    return found.jobs.count(4242) && found.jobs[4242].size() == 2;
  })) << "no job 4242 with two processes under the stand-in slurmstepd";
  child_ = found.jobs[4242][1];  // the grandchild, the "rank"
  EXPECT_GT(found.processes_seen, 1u);
  // the same process under the name of the real slurmstepd: no job
  EXPECT_EQ(scan_jobs("/usr/sbin/slurmstepd").jobs.count(4242), 0u);

  std::size_t live = 0;
  EXPECT_FALSE(job_suspended(found.jobs[4242], &live));
  EXPECT_EQ(live, 2u);
  // only the rank stops (mpirun catches SIGTSTP, passes it on and waits): suspended
  ASSERT_EQ(::kill(child_, SIGSTOP), 0);
  EXPECT_TRUE(eventually(std::chrono::seconds(2), [&] { return job_suspended(found.jobs[4242]); }));
  ASSERT_EQ(::kill(child_, SIGCONT), 0);
  EXPECT_TRUE(
      eventually(std::chrono::seconds(2), [&] { return !job_suspended(found.jobs[4242]); }));
  EXPECT_FALSE(job_suspended({}));  // no process: not suspended
}

// proctrack/cgroup: Slurm freezes the job's cgroup instead of signalling it.
TEST_F(FakeStepd, SeesAJobWhoseFreezerCgroupIsFrozenAsSuspended) {
  GANG_REQUIRE_ROOT();
  auto layout = dynamos::kernelside::Layout::detect();
  ASSERT_TRUE(layout) << layout.error().message();
  auto group = dynamos::kernelside::Group::create(
      *layout, "dynamos-test-follow-" + std::to_string(::getpid()),
      {dynamos::kernelside::Controller::freezer});
  ASSERT_TRUE(group) << group.error().message();
  struct Cleanup {  // whatever fails below: thawed, emptied, removed
    dynamos::kernelside::Group& g;
    ~Cleanup() { (void)g.remove(dynamos::kernelside::Evict::kill); }
  } cleanup{*group};
  JobProcesses found;
  ASSERT_TRUE(eventually(std::chrono::seconds(5), [&] {
    found = scan_jobs(stepd_);
    return found.jobs.count(4242) && found.jobs[4242].size() == 2;
  }));
  auto pids = found.jobs[4242];
  child_ = pids[1];
  ASSERT_TRUE(group->attach(child_));
  Freezers freezers;
  freezers.learn(pids);
  EXPECT_FALSE(job_suspended(pids, nullptr, &freezers));
  ASSERT_TRUE(group->freeze());
  EXPECT_TRUE(job_suspended(pids, nullptr, &freezers)) << "a frozen job is suspended";
  EXPECT_FALSE(job_suspended(pids)) << "without the freezers its task is not in state T";
  EXPECT_TRUE(eventually(std::chrono::seconds(2), [&] {
    return job_suspended(pids, nullptr, &freezers);
  })) << "still suspended";
  ASSERT_TRUE(group->thaw());
  EXPECT_FALSE(job_suspended(pids, nullptr, &freezers));
}

}  // namespace
