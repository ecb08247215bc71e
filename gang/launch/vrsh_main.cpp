// dynamos-vrsh: Open MPI's remote shell agent on a virtual cluster (mpirun --mca
// plm_rsh_agent dynamos-vrsh). Every virtual node is this host, so "remote" commands
// run here, with DYNAMOS_NODE set to the node's name for the ranks' wrapper:
//
//   dynamos-vrsh NODE COMMAND...     runs COMMAND (a shell command line) with DYNAMOS_NODE=NODE
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  if (argc >= 2 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0)) {
    std::printf(
        "usage: dynamos-vrsh NODE COMMAND...\n\n"
        "Open MPI's remote shell on a virtual cluster: runs COMMAND on this host with\n"
        "DYNAMOS_NODE=NODE, so that dynamos-rank joins the job's group on that node.\n");
    return 0;
  }
  if (argc < 3) {
    std::fprintf(stderr, "dynamos-vrsh: usage: dynamos-vrsh NODE COMMAND... (try --help)\n");
    return 2;
  }
  std::string command;
  for (int i = 2; i < argc; ++i)
    command += (i > 2 ? " " : "") + std::string(argv[i]);
  if (::setenv("DYNAMOS_NODE", argv[1], 1) != 0) {
    std::perror("dynamos-vrsh: setenv");
    return 1;
  }
  ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
  std::fprintf(stderr, "dynamos-vrsh: cannot run /bin/sh: %s\n", std::strerror(errno));
  return 127;
}
