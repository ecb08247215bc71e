// dynamos-vrsh: Open MPI's remote shell agent on a virtual cluster (mpirun --mca
// plm_rsh_agent dynamos-vrsh). Every virtual node is this host, so "remote" commands
// run here, with DYNAMOS_NODE set to the node's name for the ranks' wrapper:
//
//   dynamos-vrsh NODE COMMAND...     runs COMMAND (a shell command line) with DYNAMOS_NODE=NODE
//
// Open MPI names its session directory after the host name, so the daemons of several
// virtual nodes (and mpirun) on one host would create the same /tmp/ompi.HOST.UID/jf.N at
// once: its mkdir races ("File exists", orte_init fails, exit 213) and hwloc's shared
// topology file is written by two daemons (segfault in hwloc_shmem_topology_write). Each
// virtual node's daemon therefore gets its own base (OMPI_MCA_orte_tmpdir_base), made by
// and for the caller, mode 0700: /run/dynamos/vnodes/NODE for root, else
// $TMPDIR/dynamos-vnode-UID-NODE (TMPDIR defaults to /tmp). A directory of that name that
// someone else created first, or one others can write, is refused, naming it
// (base/file.hpp make_private_dir): Open MPI's session files are not put where another
// user could swap them.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/file.hpp"

namespace {

// The private session base of `node`, created when missing.
dynamos::Result<std::string> session_base(const std::string& node) {
  if (::getuid() == 0) {
    auto vnodes = dynamos::make_root_run_dir("vnodes", 0755);
    if (!vnodes) return std::unexpected(vnodes.error());
    const std::string base = *vnodes + "/" + node;
    if (auto ok = dynamos::make_private_dir(base, 0700); !ok) return std::unexpected(ok.error());
    return base;
  }
  const char* env = std::getenv("TMPDIR");
  const std::string tmp = env && *env == '/' ? env : "/tmp";
  const std::string base = tmp + "/dynamos-vnode-" + std::to_string(::getuid()) + "-" + node;
  if (auto ok = dynamos::make_private_dir(base, 0700); !ok) return std::unexpected(ok.error());
  return base;
}

}  // namespace

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
  const std::string node = argv[1];
  if (node.find('/') == std::string::npos && node != "." && node != "..") {
    auto base = session_base(node);
    if (!base) {
      std::fprintf(stderr, "dynamos-vrsh: %s\n", base.error().message().c_str());
      return 1;
    }
    if (::setenv("OMPI_MCA_orte_tmpdir_base", base->c_str(), 1) != 0) {
      std::perror("dynamos-vrsh: setenv");
      return 1;
    }
  }
  ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
  std::fprintf(stderr, "dynamos-vrsh: cannot run /bin/sh: %s\n", std::strerror(errno));
  return 127;
}
