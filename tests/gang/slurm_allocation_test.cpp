// A Slurm allocation as salloc/sbatch/srun describe it in the environment, and the Slurm
// job's cgroup as /proc/self/cgroup shows it inside a step.
#include "gang/slurm/allocation.hpp"

#include <gtest/gtest.h>

#include <map>

using namespace dynamos;
using namespace dynamos::gang::slurm;

namespace {

Getenv env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

}  // namespace

TEST(SlurmAllocation, ReadsTheEnvironment) {
  auto a = allocation_from_env(env({{"SLURM_JOB_ID", "42"},
                                    {"SLURM_JOB_NODELIST", "n[1-3],gpu01"},
                                    {"SLURM_JOB_CPUS_PER_NODE", "2(x3),8"},
                                    {"SLURM_MEM_PER_NODE", "1024"}}));
  ASSERT_TRUE(a.has_value()) << a.error().message();
  EXPECT_EQ(a->job_id, "42");
  EXPECT_EQ(a->nodes, (std::vector<std::string>{"n1", "n2", "n3", "gpu01"}));
  EXPECT_EQ(a->cpus, (std::vector<unsigned>{2, 2, 2, 8}));
  EXPECT_EQ(a->mem_per_node, 1024ull << 20);
  auto no_mem = allocation_from_env(
      env({{"SLURM_JOB_ID", "7"}, {"SLURM_JOB_NODELIST", "n1"}, {"SLURM_JOB_CPUS_PER_NODE", "4"}}));
  ASSERT_TRUE(no_mem.has_value()) << no_mem.error().message();
  EXPECT_EQ(no_mem->mem_per_node, 0u);
}

TEST(SlurmAllocation, OutsideAnAllocationSaysSo) {
  auto a = allocation_from_env(env({}));
  ASSERT_FALSE(a.has_value());
  EXPECT_NE(a.error().message().find("not inside a Slurm allocation"), std::string::npos);
}

TEST(SlurmAllocation, CpusPerNode) {
  EXPECT_EQ(*expand_cpus_per_node("2(x3)", 3), (std::vector<unsigned>{2, 2, 2}));
  EXPECT_EQ(*expand_cpus_per_node("4,2(x2),1", 4), (std::vector<unsigned>{4, 2, 2, 1}));
  for (auto [text, nodes, expect] :
       {std::tuple{"2(x3)", 2, "does not give one count for each of the 2 nodes"},
        std::tuple{"2", 3, "does not give one count"}, std::tuple{"2(3)", 1, "is not N or N(xM)"},
        std::tuple{"2(x0)", 1, "is not N or N(xM)"}, std::tuple{"0", 1, "positive CPU count"},
        std::tuple{"two", 1, "positive CPU count"}, std::tuple{"", 1, "positive CPU count"}}) {
    auto r = expand_cpus_per_node(text, static_cast<std::size_t>(nodes));
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_NE(r.error().message().find(expect), std::string::npos)
        << text << ": " << r.error().message();
  }
}

TEST(SlurmAllocation, JobCgroupV2AndV1) {
  EXPECT_EQ(job_cgroup("0::/system.slice/slurmstepd.scope/job_42/step_0/user/task_0\n", "42"),
            "/system.slice/slurmstepd.scope/job_42");
  EXPECT_EQ(job_cgroup("12:pids:/\n4:memory:/slurm/uid_0/job_42/step_1/task_0\n", "42"),
            "/slurm/uid_0/job_42");
  EXPECT_EQ(job_cgroup("0::/system.slice/slurmstepd.scope/job_420/step_0\n", "42"), "")
      << "job_420 is not job_42";
  EXPECT_EQ(job_cgroup("0::/user.slice/session-3.scope\n", "42"), "");
  EXPECT_EQ(cgroup_parent("0::/system.slice/slurmstepd.scope/job_42/step_0\n", "42"),
            "system.slice/slurmstepd.scope/job_42/dynamos");
  EXPECT_EQ(cgroup_parent("0::/\n", "42"), "dynamos-slurm-42")
      << "no Slurm cgroup (proctrack/linuxproc): a dynamos cgroup named after the job";
}
