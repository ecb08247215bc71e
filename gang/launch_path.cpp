#include "gang/launch_path.hpp"

#include <unistd.h>

#include <cstring>

namespace dynamos::gang {

std::string sibling_program(const std::string& name) {
  char self[4096] = {};
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return name;
  std::string dir(self, static_cast<std::size_t>(n));
  return dir.substr(0, dir.rfind('/') + 1) + name;
}

int dashes_index(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--") == 0) return i;
  return argc;
}

}  // namespace dynamos::gang
