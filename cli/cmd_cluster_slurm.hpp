// dynamos cluster up --slurm: DynAMOS inside a Slurm allocation (cli/cmd_cluster_slurm.cpp).
#pragma once

#include <boost/program_options.hpp>
#include <optional>
#include <span>
#include <string>

namespace dynamos::cli {

// Runs `dynamos cluster ARGS` when they are Slurm's to handle (up --slurm, and the
// internal slurm-node and slurm-watch); nullopt for every other cluster command.
std::optional<int> run_cluster_slurm(std::span<const std::string> args);

// The options of a cluster command that needs only the cluster's state directory:
// --help and --state-dir (into `dir`).
inline void add_state_dir_options(boost::program_options::options_description& desc,
                                  std::string& dir) {
  desc.add_options()("help,h", "show this help")(
      "state-dir", boost::program_options::value(&dir)->default_value("/run/dynamos"),
      "the cluster's state directory");
}

}  // namespace dynamos::cli
