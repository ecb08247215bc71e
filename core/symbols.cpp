#include "core/symbols.hpp"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

namespace dynamos::core {
namespace {

struct ElfFile {
  int fd = -1;
  Elf* elf = nullptr;
  ~ElfFile() {
    if (elf) elf_end(elf);
    if (fd >= 0) close(fd);
  }
};

}  // namespace

Result<LoadedObject> read_elf_functions(const std::string& path) {
  static const bool ready = elf_version(EV_CURRENT) != EV_NONE;
  if (!ready) return fail(Errc::unsupported, "libelf initialisation failed");
  ElfFile f;
  f.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) return fail_errno("open " + path);
  f.elf = elf_begin(f.fd, ELF_C_READ, nullptr);
  if (!f.elf || elf_kind(f.elf) != ELF_K_ELF)
    return fail(Errc::invalid_argument, path + " is not an ELF file");

  LoadedObject obj;
  obj.path = path;
  Elf_Scn* scn = nullptr;
  while ((scn = elf_nextscn(f.elf, scn)) != nullptr) {
    GElf_Shdr shdr;
    if (!gelf_getshdr(scn, &shdr)) continue;
    if (shdr.sh_type != SHT_SYMTAB && shdr.sh_type != SHT_DYNSYM) continue;
    const bool symtab = shdr.sh_type == SHT_SYMTAB;
    obj.has_symtab |= symtab;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data || shdr.sh_entsize == 0) continue;
    const std::size_t count = shdr.sh_size / shdr.sh_entsize;
    for (std::size_t i = 0; i < count; ++i) {
      GElf_Sym sym;
      if (!gelf_getsym(data, static_cast<int>(i), &sym)) continue;
      const int type = GELF_ST_TYPE(sym.st_info);
      if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF ||
          sym.st_value == 0)
        continue;
      const char* name = elf_strptr(f.elf, shdr.sh_link, sym.st_name);
      if (!name || !*name) continue;
      Symbol s;
      s.name = name;
      s.address = sym.st_value;
      s.size = sym.st_size;
      s.object = path;
      s.local = GELF_ST_BIND(sym.st_info) == STB_LOCAL;
      s.ifunc = type == STT_GNU_IFUNC;
      s.from_symtab = symtab;
      obj.functions.push_back(std::move(s));
    }
  }
  // .symtab repeats .dynsym's globals: keep one entry per (name, address).
  std::sort(obj.functions.begin(), obj.functions.end(), [](const Symbol& a, const Symbol& b) {
    return std::tie(a.address, a.name, b.from_symtab) < std::tie(b.address, b.name, a.from_symtab);
  });
  obj.functions.erase(std::unique(obj.functions.begin(), obj.functions.end(),
                                  [](const Symbol& a, const Symbol& b) {
                                    return a.address == b.address && a.name == b.name;
                                  }),
                      obj.functions.end());
  return obj;
}

namespace {

// Link-time address of the segment mapped at file offset 0 (0 for PIE and .so).
Result<Address> first_load_vaddr(const std::string& path) {
  ElfFile f;
  f.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) return fail_errno("open " + path);
  f.elf = elf_begin(f.fd, ELF_C_READ, nullptr);
  if (!f.elf) return fail(Errc::invalid_argument, path + " is not an ELF file");
  std::size_t n = 0;
  if (elf_getphdrnum(f.elf, &n) != 0)
    return fail(Errc::invalid_argument, path + ": no program headers");
  for (std::size_t i = 0; i < n; ++i) {
    GElf_Phdr ph;
    if (gelf_getphdr(f.elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD)
      return static_cast<Address>(ph.p_vaddr - ph.p_offset);
  }
  return fail(Errc::invalid_argument, path + ": no loadable segment");
}

}  // namespace

Result<Symbols> Symbols::load(Target& target) {
  auto maps = target.mappings();
  if (!maps) return std::unexpected(maps.error());
  // The lowest mapping of each file is its offset-0 mapping: the load base.
  std::map<std::string, Address> base;
  std::vector<std::string> order;
  std::map<std::string, bool> has_exec;
  for (const auto& m : *maps) {
    if (m.path.empty() || m.path[0] != '/') continue;
    if (!base.count(m.path)) {
      if (m.offset != 0) continue;
      base[m.path] = m.begin;
      order.push_back(m.path);
    }
    if (m.executable()) has_exec[m.path] = true;
  }
  Symbols out;
  const std::string root = "/proc/" + std::to_string(target.pid()) + "/root";
  const std::string map_files = "/proc/" + std::to_string(target.pid()) + "/map_files/";
  for (const auto& path : order) {
    if (!has_exec[path]) continue;
    // Through the target's root, so a target in another mount namespace works too;
    // a file deleted or replaced since it was mapped is read through map_files.
    std::string file = root + path;
    const std::string deleted = " (deleted)";
    if (path.ends_with(deleted) || access(file.c_str(), R_OK) != 0) {
      char range[64];
      std::snprintf(range, sizeof range, "%lx-", static_cast<unsigned long>(base[path]));
      file = path;
      for (const auto& m : *maps)
        if (m.path == path && m.begin == base[path]) {
          std::snprintf(range, sizeof range, "%lx-%lx", static_cast<unsigned long>(m.begin),
                        static_cast<unsigned long>(m.end));
          file = map_files + range;
        }
    }
    auto obj = read_elf_functions(file);
    if (!obj) continue;  // a non-ELF executable mapping (JIT file, deleted file): skip
    auto vaddr = first_load_vaddr(file);
    if (!vaddr) continue;
    obj->path = path;
    obj->bias = base[path] - *vaddr;
    for (auto& s : obj->functions) {
      s.address += obj->bias;
      s.object = path;
    }
    out.objects_.push_back(std::move(*obj));
  }
  return out;
}

Result<Symbol> Symbols::find(std::string_view name, std::string_view object) const {
  const Symbol* best = nullptr;
  for (const auto& obj : objects_) {
    if (!object.empty() && obj.path.find(object) == std::string::npos) continue;
    for (const auto& s : obj.functions) {
      if (s.name != name) continue;
      if (!best || (best->size == 0 && s.size != 0)) best = &s;
    }
    if (best && best->size != 0) break;  // objects are in load order: first wins
  }
  if (!best)
    return fail(Errc::not_found, "no function named '" + std::string(name) + "'" +
                                     (object.empty() ? "" : " in " + std::string(object)));
  return *best;
}

std::optional<Symbol> Symbols::containing(Address address) const {
  for (const auto& obj : objects_) {
    for (const auto& s : obj.functions) {
      if (address >= s.address && address < s.address + std::max<std::size_t>(s.size, 1)) return s;
    }
  }
  return std::nullopt;
}

}  // namespace dynamos::core
