#include "bench/compare/staging.hpp"

#include <fstream>
#include <regex>

#include "bench/compare/config.hpp"

namespace dynamos::compare {

namespace fs = std::filesystem;

Result<std::string> stage_job_folder(const fs::path& dir, const std::vector<std::string>& files) {
  std::error_code ec;
  const fs::path abs = fs::absolute(dir, ec);
  if (ec) return fail(Errc::system, "job folder " + dir.string() + ": " + ec.message());
  // A symlink planted in its place is removed, not followed (remove_all does not follow).
  fs::remove_all(abs, ec);
  if (ec)
    return fail(Errc::system, "emptying the job folder " + abs.string() + ": " + ec.message());
  if (!fs::create_directories(abs, ec) || ec)
    return fail(Errc::system, "making the job folder " + abs.string() + ": " + ec.message());
  fs::permissions(abs, fs::perms(0755), ec);
  for (const auto& f : files) {
    const fs::path to = abs / fs::path(f).filename();
    if (!fs::copy_file(f, to, fs::copy_options::overwrite_existing, ec) || ec)
      return fail(Errc::system, "staging " + f + " into " + abs.string() + ": " + ec.message());
  }
  return abs.string();
}

Result<void> check_pass_if(const std::string& dir, const std::string& pass_if) {
  auto p = parse_pass_if(pass_if);
  if (!p) return std::unexpected(p.error());
  const std::string path = (fs::path(dir) / p->file).string();
  std::ifstream in(path);
  if (!in) return fail(Errc::not_found, "no " + p->file + " in the job's folder " + dir);
  const std::regex re(p->regex);
  for (std::string line; std::getline(in, line);)
    if (std::regex_search(line, re)) return {};
  return fail(Errc::state, p->file + " has no line matching '" + p->regex + "' (" + path + ")");
}

}  // namespace dynamos::compare
