// New version of app::compute for the C++ target (same mangled name).
#include <stdexcept>
namespace app {
__attribute__((noinline)) int compute(int x) {
  if (x < 0) throw std::runtime_error("negative (patched)");
  return x * 2 + 1000;
}
}  // namespace app
