// dynamos cluster up --slurm: DynAMOS inside a Slurm allocation (cli/cmd_cluster_slurm.cpp).
#pragma once

#include <optional>
#include <span>
#include <string>

namespace dynamos::cli {

// Runs `dynamos cluster ARGS` when they are Slurm's to handle (up --slurm, and the
// internal slurm-node and slurm-watch); nullopt for every other cluster command.
std::optional<int> run_cluster_slurm(std::span<const std::string> args);

}  // namespace dynamos::cli
