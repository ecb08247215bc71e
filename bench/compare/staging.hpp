// A job's own folder for external programs that read their input from, and write their
// output into, their working directory (HPCC: hpccinf.txt in, hpccoutf.txt out), and the
// check of such an output against --pass-if.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.hpp"

namespace dynamos::compare {

// Empties or makes `dir` (mode 0755) and copies each of `files` into it under its own
// name: every run starts from the staged input alone, never from an earlier run's output.
// Returns the folder's absolute path.
Result<std::string> stage_job_folder(const std::filesystem::path& dir,
                                     const std::vector<std::string>& files);

// "FILE:REGEX": whether FILE in `dir` has a line matching REGEX (ECMAScript, searched in
// each line). The error says what is missing: the file, or a matching line.
Result<void> check_pass_if(const std::string& dir, const std::string& pass_if);

}  // namespace dynamos::compare
