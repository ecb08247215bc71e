#include "base/file.hpp"

#include <fstream>
#include <sstream>

namespace dynamos {

Result<std::string> read_whole_file(const std::string& path, std::string_view what) {
  const std::string named = std::string(what) + " " + path;
  std::ifstream in(path);
  if (!in) return fail_errno("open " + named);
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return fail_errno("read " + named);
  return text.str();
}

}  // namespace dynamos
