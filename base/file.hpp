// Reading a whole file, with errors that name it.
#pragma once

#include <string>
#include <string_view>

#include "base/error.hpp"

namespace dynamos {

// The contents of the file at `path`. `what` names it in errors ("config file":
// "open config file PATH: No such file or directory").
Result<std::string> read_whole_file(const std::string& path, std::string_view what);

}  // namespace dynamos
