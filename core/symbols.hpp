// Function symbols of a target: the .symtab (static functions included, when the
// object was not stripped) and .dynsym of the executable and of every mapped
// shared object, read from the files with libelf and placed at their load address.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "core/target.hpp"

namespace dynamos::core {

struct Symbol {
  std::string name;
  Address address = 0;
  std::size_t size = 0;
  std::string object;  // path of the file that defines it
  bool local = false;  // STB_LOCAL: a static function
  bool ifunc = false;  // STT_GNU_IFUNC: `address` is the resolver, not the function
  bool from_symtab = false;
};

struct LoadedObject {
  std::string path;
  Address bias = 0;         // run-time address minus link-time address
  bool has_symtab = false;  // false for a stripped object
  std::vector<Symbol> functions;
};

class Symbols {
 public:
  // Reads every file-backed executable object mapped into the target.
  static Result<Symbols> load(Target& target);

  // By name: the executable first, then libraries in load order; a sized
  // definition is preferred over a zero-sized one. `object` narrows the search to
  // objects whose path contains it.
  Result<Symbol> find(std::string_view name, std::string_view object = {}) const;
  // The function containing `address`, if any.
  std::optional<Symbol> containing(Address address) const;

  const std::vector<LoadedObject>& objects() const { return objects_; }

 private:
  std::vector<LoadedObject> objects_;
};

// Reads one ELF file's function symbols (link-time addresses; bias 0).
Result<LoadedObject> read_elf_functions(const std::string& path);

}  // namespace dynamos::core
