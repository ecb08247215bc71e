#include "core/elf_slack.hpp"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <string>

namespace dynamos::core {

namespace {

// Raises `best` to the slack of mapping `m` (of file `fd`) when larger.
void scan_mapping(int fd, const Mapping& m, Slack& best) {
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
  std::size_t n = 0;
  if (elf && elf_getphdrnum(elf, &n) == 0) {
    for (std::size_t i = 0; i < n; ++i) {
      GElf_Phdr ph;
      if (!gelf_getphdr(elf, static_cast<int>(i), &ph) || ph.p_type != PT_LOAD) continue;
      if (!(ph.p_flags & PF_X)) continue;
      // The mapping of this segment: file offset range matches m.offset.
      const Address seg_file_begin = ph.p_offset & ~Address{4095};
      if (seg_file_begin != m.offset) continue;
      const Address bias = m.begin - (ph.p_vaddr & ~Address{4095});
      const Address seg_end = bias + ph.p_vaddr + ph.p_filesz;
      if (seg_end < m.end && m.end - seg_end > best.size) {
        best.at = (seg_end + 15) & ~Address{15};
        best.size = m.end - best.at;
      }
    }
  }
  if (elf) elf_end(elf);
}

}  // namespace

Slack find_elf_slack(pid_t pid, const std::vector<Mapping>& maps) {
  Slack best;
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  for (const auto& m : maps) {
    if (!m.executable() || m.path.empty() || m.path[0] != '/') continue;
    int fd = open((root + m.path).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    scan_mapping(fd, m, best);
    close(fd);
    if (best.size >= 1024) break;
  }
  return best;
}

}  // namespace dynamos::core
