// What dynamos-launch runs for a job (gang/mpirun_command.hpp): the mpirun command
// line per launch mode with the cluster's and the job's options, and the environment the
// ranks get (the submitter's, like Slurm's --export=ALL, less what must not pass).
#include "gang/mpirun_command.hpp"

#include <gtest/gtest.h>

#include <algorithm>

using namespace dynamos;
using namespace dynamos::gang;

namespace {

using Words = std::vector<std::string>;

MpirunPlan plan(const std::string& mode) {
  MpirunPlan p;
  p.mode = mode;
  p.bindir = "/opt/dynamos/bin";
  p.run_dir = "/run/dynamos";
  p.hostfile = "/run/dynamos/launch/job7.hosts";
  p.job = 7;
  p.ranks = 3;
  p.cluster_args = *split_words(kDefaultMpirunArgs);
  p.program = {"/bin/prog", "-x", "1"};
  return p;
}

std::string joined(const Words& w) {
  std::string s;
  for (const auto& x : w)
    s += (s.empty() ? "" : " ") + x;
  return s;
}

bool has(const Words& env, const std::string& entry) {
  return std::find(env.begin(), env.end(), entry) != env.end();
}

bool has_name(const Words& env, const std::string& name) {
  return std::any_of(env.begin(), env.end(),
                     [&](const std::string& e) { return e.substr(0, e.find('=')) == name; });
}

}  // namespace

TEST(LaunchCommand, VirtualUsesVrshOverLoopback) {
  EXPECT_EQ(joined(mpirun_command(plan("virtual"))),
            "mpirun --hostfile /run/dynamos/launch/job7.hosts -np 3 --mca plm_rsh_agent "
            "/opt/dynamos/bin/dynamos-vrsh --mca btl self,tcp --mca btl_tcp_if_include lo "
            "--mca oob_tcp_if_include lo --oversubscribe --bind-to none "
            "/opt/dynamos/bin/dynamos-rank --job 7 --run-dir /run/dynamos -- /bin/prog -x 1");
}

TEST(LaunchCommand, SlurmUsesSlurmsLauncherNeverSsh) {
  auto p = plan("slurm");
  p.as_root = true;
  auto cmd = joined(mpirun_command(p));
  EXPECT_EQ(cmd,
            "mpirun --hostfile /run/dynamos/launch/job7.hosts -np 3 --allow-run-as-root "
            "--mca plm slurm --oversubscribe --bind-to none "
            "/opt/dynamos/bin/dynamos-rank --job 7 --run-dir /run/dynamos -- /bin/prog -x 1");
  EXPECT_EQ(cmd.find("rsh"), std::string::npos);
}

TEST(LaunchCommand, ClusterSettingThenJobArgsReplaceTheOldHardCodedOptions) {
  auto p = plan("ssh");
  p.cluster_args = *split_words("--bind-to core --map-by ppr:1:node");
  p.job_args = *split_words("--mca btl 'self,tcp' -x \"FOO=a b\"");
  EXPECT_EQ(joined(mpirun_command(p)),
            "mpirun --hostfile /run/dynamos/launch/job7.hosts -np 3 --bind-to core --map-by "
            "ppr:1:node --mca btl self,tcp -x FOO=a b /opt/dynamos/bin/dynamos-rank --job 7 "
            "--run-dir /run/dynamos -- /bin/prog -x 1");
  auto cmd = mpirun_command(p);
  EXPECT_EQ(std::count(cmd.begin(), cmd.end(), "--oversubscribe"), 0)
      << "the cluster's setting replaces the default, it does not add to it";
}

TEST(LaunchCommand, SplitWordsQuotesLikeAShell) {
  EXPECT_EQ(*split_words(""), Words{});
  EXPECT_EQ(*split_words("  a  b\tc "), Words({"a", "b", "c"}));
  EXPECT_EQ(*split_words(R"(-x 'A=1 2' "B=\"q\"" C\ D '')"),
            Words({"-x", "A=1 2", "B=\"q\"", "C D", ""}));
  auto open = split_words("--mca btl 'self");
  ASSERT_FALSE(open.has_value());
  EXPECT_NE(open.error().message().find("unterminated '"), std::string::npos);
}

TEST(LaunchCommand, RanksGetTheSubmittersEnvironment) {
  Words submitted = {"PATH=/opt/spack/view/bin:/usr/bin",
                     "LD_LIBRARY_PATH=/opt/spack/view/lib",
                     "MODULEPATH=/etc/modules",
                     "LOADEDMODULES=openmpi/4.1",
                     "OMPI_MCA_btl_tcp_if_include=10.0.0.0/8",
                     "HOME=/home/other",
                     "USER=other"};
  auto env = rank_environment(submitted, {}, "virtual", {1000, "alice", "/home/alice"});
  for (const auto& e : {"PATH=/opt/spack/view/bin:/usr/bin", "LD_LIBRARY_PATH=/opt/spack/view/lib",
                        "MODULEPATH=/etc/modules", "LOADEDMODULES=openmpi/4.1",
                        "OMPI_MCA_btl_tcp_if_include=10.0.0.0/8"})
    EXPECT_TRUE(has(env, e)) << e << " must reach the ranks";
  EXPECT_TRUE(has(env, "HOME=/home/alice")) << "the job's owner's identity is set";
  EXPECT_TRUE(has(env, "USER=alice"));
  EXPECT_TRUE(has(env, "LOGNAME=alice"));
  EXPECT_FALSE(has(env, "HOME=/home/other"));
  EXPECT_FALSE(has_name(env, "OMPI_ALLOW_RUN_AS_ROOT")) << "not root";
}

TEST(LaunchCommand, WhatMustNotPassDoesNot) {
  Words submitted = {
      "PATH=/usr/bin",          "SLURM_JOB_ID=99", "SLURM_STEP_ID=3", "OMPI_COMM_WORLD_RANK=2",
      "OMPI_MCA_plm=rsh",       "PMIX_RANK=2",     "PMI_FD=5",        "DYNAMOS_NODE=n9",
      "DYNAMOS_SOCKET=/x.sock", "not-an-entry"};
  auto env = rank_environment(submitted, {"SLURM_JOB_ID=42", "TERM=xterm"}, "virtual",
                              {0, "root", "/root"});
  for (const auto& name : {"SLURM_JOB_ID", "SLURM_STEP_ID", "OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                           "PMI_FD", "DYNAMOS_NODE", "TERM"})
    EXPECT_FALSE(has_name(env, name)) << name << " must not reach mpirun on a virtual cluster";
  EXPECT_TRUE(has(env, "OMPI_MCA_plm=rsh")) << "MCA settings are the user's to make";
  EXPECT_TRUE(has(env, "DYNAMOS_SOCKET=/x.sock"));
  EXPECT_TRUE(has(env, "OMPI_ALLOW_RUN_AS_ROOT=1"));
  EXPECT_TRUE(has(env, "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"));
}

TEST(LaunchCommand, SlurmModeTakesTheAllocationFromTheLauncher) {
  Words submitted = {"PATH=/usr/bin", "SLURM_JOB_ID=99", "SLURM_STEP_ID=3"};
  Words own = {"SLURM_JOB_ID=42", "SLURM_JOB_NODELIST=n[1-3]", "SLURM_JOB_CPUS_PER_NODE=2(x3)",
               "HOSTNAME=login"};
  auto env = rank_environment(submitted, own, "slurm", {0, "root", "/root"});
  EXPECT_TRUE(has(env, "SLURM_JOB_ID=42"));
  EXPECT_TRUE(has(env, "SLURM_JOB_NODELIST=n[1-3]"));
  EXPECT_TRUE(has(env, "SLURM_JOB_CPUS_PER_NODE=2(x3)"));
  EXPECT_FALSE(has_name(env, "SLURM_STEP_ID")) << "the submitter's step is not the launcher's";
  EXPECT_TRUE(has(env, "SLURM_OVERLAP=1")) << "orted's step overlaps the agents' step";
  EXPECT_FALSE(has_name(env, "HOSTNAME")) << "only the allocation comes from the launcher";
}

TEST(LaunchCommand, NoEnvironmentSentGivesTheMinimalOne) {
  auto env = rank_environment({}, {"PATH=/weird", "FOO=1"}, "virtual", {1000, "bob", "/home/bob"});
  EXPECT_EQ(env, Words({"HOME=/home/bob", "LOGNAME=bob", "PATH=/usr/local/bin:/usr/bin:/bin",
                        "USER=bob"}));
}
