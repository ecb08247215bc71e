// Loads hello.so through DynAMOS's extension host, sets its tunable and calls it:
//   hello-host PATH/hello.so   prints "hi, world"
#include <cstdio>

#include "core/extension_host.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: hello-host PATH/hello.so\n");
    return 2;
  }
  auto host = dynamos::core::ExtensionHost::create();
  if (!host) return std::fprintf(stderr, "%s\n", host.error().message().c_str()), 1;
  auto info = (*host)->load(argv[1]);
  if (!info) return std::fprintf(stderr, "load: %s\n", info.error().message().c_str()), 1;
  auto set = (*host)->set("hello.greeting=hi");
  if (!set) return std::fprintf(stderr, "set: %s\n", set.error().message().c_str()), 1;
  auto reply = (*host)->call("hello", "greet", "world");
  if (!reply) return std::fprintf(stderr, "call: %s\n", reply.error().message().c_str()), 1;
  std::printf("%s\n", reply->c_str());
  return 0;
}
