#include "core/patch_point.hpp"

#include <algorithm>
#include <cstdio>

#include "core/x86_writer.hpp"

namespace dynamos::core {
namespace {

// Where the bytes we may read end: the function's mapping.
Result<std::size_t> readable_bytes(Target& target, Address at, std::size_t want) {
  auto maps = target.mappings();
  if (!maps) return std::unexpected(maps.error());
  for (const auto& m : *maps)
    if (at >= m.begin && at < m.end) {
      if (!m.executable())
        return fail(Errc::refused, hex(at) + " is not in executable memory (" + m.perms + ")");
      return std::min<std::size_t>(want, m.end - at);
    }
  return fail(Errc::not_found, "no mapping contains " + hex(at));
}

// The dispatch stub: jmp [rip+slot], padded to kStubSize.
Result<void> write_stub(Target& target, const PatchPoint& p) {
  X86Writer stub(p.stub);
  if (!stub.jmp_rip_indirect(p.slot)) return fail(Errc::refused, "slot out of the stub's reach");
  while (stub.size() < kStubSize)
    stub.int3();
  return target.write(p.stub, stub.bytes());
}

}  // namespace

std::vector<AddressRange> PatchPoint::ranges_of(VersionId v) const {
  std::vector<AddressRange> out;
  const Version& ver = version(v);
  if (v == 0 && entry) {
    out.push_back(function.end > function.begin ? function
                                                : AddressRange{entry, entry + overwritten});
    out.push_back(clone_range());
  } else if (ver.range.end > ver.range.begin) {
    out.push_back(ver.range);
  } else {
    out.push_back({ver.code, ver.code + 1});
  }
  if (ver.trampoline) out.push_back(ver.trampoline_range());
  out.push_back(stub_range());
  return out;
}

Result<PatchPoint> prepare_hijack(Target& target, NearMemory& near, const FunctionTarget& fn,
                                  bool counted) {
  // Enough of the function for the branch scan: all of it when sized, else a window.
  const std::size_t want = fn.size ? std::max<std::size_t>(fn.size, 32) + 16 : 1024;
  auto avail = readable_bytes(target, fn.entry, std::min<std::size_t>(want, 1 << 20));
  if (!avail) return std::unexpected(avail.error());
  std::vector<std::uint8_t> code(*avail);
  if (auto r = target.read(fn.entry, code); !r) return std::unexpected(r.error());

  // The near block first: its distance decides between a 5- and a 14-byte entry jump.
  auto block = near.allocate(fn.entry, kStubSize + kCloneCapacity, 64);
  if (!block) return std::unexpected(block.error());

  PatchPoint p;
  p.name = fn.name;
  p.entry = fn.entry;
  p.function = fn.size ? AddressRange{fn.entry, fn.entry + fn.size} : AddressRange{};
  p.stub = block->code;
  p.clone = block->code + kStubSize;
  p.slot = block->data;
  p.counted = counted;

  p.entry_bytes = entry_jump(fn.entry, p.stub);
  RelocationRequest req{code, fn.entry, p.clone, p.entry_bytes.size(), fn.size};
  auto reloc = relocate_prologue(req);
  if (!reloc) return std::unexpected(with_context(reloc.error(), "cannot patch " + fn.name));
  if (reloc->clone.size() > kCloneCapacity)
    return fail(Errc::refused, "cannot patch " + fn.name + ": relocated prologue too large");
  if (auto r = check_no_branch_into(code, fn.entry, fn.size, reloc->overwritten); !r)
    return std::unexpected(with_context(r.error(), "cannot patch " + fn.name));

  p.overwritten = reloc->overwritten;
  p.clone_size = reloc->clone.size();
  p.map = reloc->map;
  p.saved_bytes.assign(code.begin(), code.begin() + p.entry_bytes.size());

  if (auto r = write_stub(target, p); !r) return std::unexpected(r.error());
  if (auto r = target.write(p.clone, reloc->clone); !r) return std::unexpected(r.error());

  Version original;
  original.id = 0;
  original.name = "original";
  original.code = p.clone;
  original.range = p.function;
  p.versions.push_back(original);
  if (counted) {
    // Version 0's trampoline, built like any other version's.
    p.versions.clear();
    auto v0 = add_version(target, near, p, p.clone, "original", p.function);
    if (!v0) return std::unexpected(v0.error());
  }
  if (auto r = target.store_word(p.slot, p.versions[0].slot_value()); !r)
    return std::unexpected(r.error());
  return p;
}

Result<PatchPoint> prepare_dispatch(Target& target, NearMemory& near, Address initial,
                                    bool counted) {
  auto block = near.allocate(initial, kStubSize, 64);
  if (!block) return std::unexpected(block.error());
  PatchPoint p;
  p.stub = block->code;
  p.slot = block->data;
  p.counted = counted;
  p.installed = true;  // nothing to install: callers call the stub
  if (auto r = write_stub(target, p); !r) return std::unexpected(r.error());
  return p;
}

Result<VersionId> add_version(Target& target, NearMemory& near, PatchPoint& point, Address code,
                              std::string name, AddressRange range) {
  // The same code again (a patch applied, reverted and applied again) reuses its
  // version, so repeated updates do not grow the point or its memory.
  // A new object loaded where an unloaded one was gets the same addresses: the
  // reused version takes the new name and extent.
  for (auto& existing : point.versions)
    if (existing.code == code && !existing.probe) {
      existing.name = std::move(name);
      if (range.end > range.begin) existing.range = range;
      return existing.id;
    }
  Version v;
  v.id = static_cast<VersionId>(point.versions.size());
  v.name = std::move(name);
  v.code = code;
  v.range = range;
  if (point.counted) {
    auto block = near.allocate(point.stub, kTrampolineSize, 16);
    if (!block) return std::unexpected(block.error());
    v.trampoline = block->code;
    v.counter = block->data;
    const Address target_word = block->data + 8;
    X86Writer w(v.trampoline);
    if (!w.lock_inc_rip(v.counter) || !w.jmp_rip_indirect(target_word))
      return fail(Errc::refused, "counter out of the trampoline's reach");
    while (w.size() < kTrampolineSize)
      w.int3();
    if (auto r = target.store_word(target_word, code); !r) return std::unexpected(r.error());
    if (auto r = target.write(v.trampoline, w.bytes()); !r) return std::unexpected(r.error());
  }
  point.versions.push_back(std::move(v));
  return point.versions.back().id;
}

Result<void> make_counted(Target& target, NearMemory& near, PatchPoint& point) {
  if (point.counted) return {};
  std::vector<Version> old = std::move(point.versions);
  point.versions.clear();
  point.counted = true;
  for (const auto& v : old) {
    auto id = add_version(target, near, point, v.code, v.name, v.range);
    if (!id) {
      point.versions = std::move(old);
      point.counted = false;
      return std::unexpected(id.error());
    }
  }
  return store_slot(target, point, point.active);
}

Result<void> install_entry(Target& target, StoppedWorld& world, PatchPoint& point) {
  if (point.installed) return {};
  const AddressRange replaced{point.entry, point.entry + point.overwritten};
  const auto threads = world.threads();
  for (std::size_t i = 0; i < threads.size(); ++i) {
    const Address ip = threads[i].ip;
    if (!replaced.contains(ip)) continue;
    const auto off = static_cast<std::uint8_t>(ip - point.entry);
    auto it = std::find_if(point.map.begin(), point.map.end(),
                           [&](const InstructionMap& m) { return m.source_offset == off; });
    if (it == point.map.end())
      return fail(Errc::refused, "thread " + std::to_string(threads[i].tid) + " stopped at " +
                                     hex(ip) + ", not at an instruction of " + point.name);
    world.set_ip(i, point.clone + it->clone_offset);
  }
  if (auto r = target.write(point.entry, point.entry_bytes); !r) return r;
  point.installed = true;
  return {};
}

Result<void> store_slot(Target& target, PatchPoint& point, VersionId v) {
  if (v >= point.versions.size())
    return fail(Errc::not_found,
                "patch point " + point.name + " has no version " + std::to_string(v));
  if (auto r = target.store_word(point.slot, point.versions[v].slot_value()); !r) return r;
  point.active = v;
  return {};
}

std::uint64_t version_calls(Target& target, const Version& v) {
  if (!v.counter) return 0;
  auto n = target.load_word(v.counter);
  return n ? *n : 0;
}

}  // namespace dynamos::core
