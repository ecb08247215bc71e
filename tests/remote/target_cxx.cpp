// A C++ target: a mangled function called from threads, with exceptions in flight.
#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

namespace app {
__attribute__((noinline)) int compute(int x) {
  if (x < 0) throw std::runtime_error("negative");
  return x * 2;
}
}  // namespace app

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 4;
  std::atomic<long> calls{0}, caught{0};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i)
    pool.emplace_back([&] {
      int (*volatile fn)(int) = app::compute;
      for (long n = 0;; ++n) {
        try {
          fn(n % 7 == 0 ? -1 : static_cast<int>(n & 1023));
        } catch (const std::exception&) {
          ++caught;
        }
        ++calls;
      }
    });
  int (*volatile fn)(int) = app::compute;
  for (;;) {
    std::printf("result %d hidden 0 lib 0 calls %ld caught %ld\n", fn(7), calls.load(),
                caught.load());
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}
