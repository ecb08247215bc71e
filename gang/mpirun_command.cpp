#include "gang/mpirun_command.hpp"

#include <algorithm>

namespace dynamos::gang {
namespace {

std::string_view name_of(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// What of the submitter's environment must not reach mpirun:
// - SLURM_*: a submitter's step or another allocation would mislead Open MPI's Slurm
//   launcher (slurm mode takes the allocation from the launcher's own environment), and
//   on the virtual cluster any SLURM_JOB_ID would make mpirun use srun instead of vrsh;
// - OMPI_* other than OMPI_MCA_* (settings stay), PMIX_*, PMI_*: the wiring of an MPI job
//   the submitter may itself run in; mpirun sets its own for the ranks;
// - DYNAMOS_NODE: dynamos-rank's node, which dynamos-vrsh sets per node.
bool must_not_pass(std::string_view name) {
  if (starts_with(name, "OMPI_")) return !starts_with(name, "OMPI_MCA_");
  return starts_with(name, "SLURM_") || starts_with(name, "PMIX_") || starts_with(name, "PMI_") ||
         name == "DYNAMOS_NODE";
}

void set(std::vector<std::string>& env, std::string_view name, const std::string& value) {
  auto entry = std::string(name) + "=" + value;
  for (auto& e : env)
    if (name_of(e) == name) {
      e = entry;
      return;
    }
  env.push_back(std::move(entry));
}

}  // namespace

std::vector<std::string> mpirun_command(const MpirunPlan& plan) {
  std::vector<std::string> cmd = {plan.mpirun, "--hostfile", plan.hostfile, "-np",
                                  std::to_string(plan.ranks)};
  if (plan.as_root) cmd.push_back("--allow-run-as-root");
  if (plan.mode == "virtual") {
    for (const char* a : {"--mca", "plm_rsh_agent", "", "--mca", "btl", "self,tcp", "--mca",
                          "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"})
      cmd.push_back(*a ? a : plan.bindir + "/dynamos-vrsh");
  } else if (plan.mode == "slurm") {
    // Slurm's launcher or nothing: never a fallback to ssh.
    for (const char* a : {"--mca", "plm", "slurm"})
      cmd.push_back(a);
  }
  cmd.insert(cmd.end(), plan.cluster_args.begin(), plan.cluster_args.end());
  cmd.insert(cmd.end(), plan.job_args.begin(), plan.job_args.end());
  for (const auto& a :
       {plan.bindir + "/dynamos-rank", std::string("--job"), std::to_string(plan.job),
        std::string("--run-dir"), plan.run_dir, std::string("--")})
    cmd.push_back(a);
  cmd.insert(cmd.end(), plan.program.begin(), plan.program.end());
  return cmd;
}

Result<std::vector<std::string>> split_words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quote) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && quote == '"' && i + 1 < text.size() &&
                 (text[i + 1] == '"' || text[i + 1] == '\\')) {
        word += text[++i];
      } else {
        word += c;
      }
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      in_word = true;
      if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '\\' && i + 1 < text.size()) {
        word += text[++i];
      } else {
        word += c;
      }
    }
  }
  if (quote)
    return fail(Errc::invalid_argument,
                std::string("unterminated ") + quote + " in '" + std::string(text) + "'");
  if (in_word) words.push_back(std::move(word));
  return words;
}

std::vector<std::string> rank_environment(const std::vector<std::string>& submitted,
                                          const std::vector<std::string>& own,
                                          const std::string& mode, const RankUser& user) {
  std::vector<std::string> env;
  for (const auto& e : submitted)
    if (e.find('=') != std::string::npos && !must_not_pass(name_of(e))) env.push_back(e);
  if (submitted.empty()) set(env, "PATH", "/usr/local/bin:/usr/bin:/bin");
  // Slurm mode: the allocation mpirun launches in is the one gangd runs in. srun refuses
  // a second step while the agents' step holds every CPU unless it may overlap.
  if (mode == "slurm") {
    for (const auto& e : own)
      if (starts_with(e, "SLURM_")) set(env, name_of(e), e.substr(e.find('=') + 1));
    set(env, "SLURM_OVERLAP", "1");
  }
  // The job runs as its owner: their identity, whoever submitted.
  set(env, "HOME", user.home);
  if (!user.name.empty()) {
    set(env, "USER", user.name);
    set(env, "LOGNAME", user.name);
  }
  if (user.uid == 0) {
    set(env, "OMPI_ALLOW_RUN_AS_ROOT", "1");
    set(env, "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
  }
  std::sort(env.begin(), env.end());
  return env;
}

}  // namespace dynamos::gang
