#include "core/x86_writer.hpp"

#include <limits>

namespace dynamos::core {

std::optional<std::int32_t> X86Writer::rel32_to(std::uintptr_t target, std::size_t length) const {
  const auto next = static_cast<std::int64_t>(pc() + length);
  const std::int64_t delta = static_cast<std::int64_t>(target) - next;
  if (delta < std::numeric_limits<std::int32_t>::min() ||
      delta > std::numeric_limits<std::int32_t>::max())
    return std::nullopt;
  return static_cast<std::int32_t>(delta);
}

void X86Writer::u32(std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    bytes_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void X86Writer::u64(std::uint64_t v) {
  for (int i = 0; i < 8; ++i)
    bytes_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

bool X86Writer::jmp_rel32(std::uintptr_t target) {
  auto rel = rel32_to(target, 5);
  if (!rel) return false;
  u8(0xE9);
  u32(static_cast<std::uint32_t>(*rel));
  return true;
}

void X86Writer::jmp_abs(std::uintptr_t target) {
  // jmp qword ptr [rip+0]; the 8-byte target follows the instruction.
  const std::uint8_t op[] = {0xFF, 0x25, 0, 0, 0, 0};
  raw(op, sizeof op);
  u64(target);
}

void X86Writer::jmp(std::uintptr_t target) {
  if (!jmp_rel32(target)) jmp_abs(target);
}

bool X86Writer::jcc_rel32(std::uint8_t cc, std::uintptr_t target) {
  auto rel = rel32_to(target, 6);
  if (!rel) return false;
  u8(0x0F);
  u8(static_cast<std::uint8_t>(0x80 | (cc & 0x0F)));
  u32(static_cast<std::uint32_t>(*rel));
  return true;
}

void X86Writer::jcc(std::uint8_t cc, std::uintptr_t target) {
  if (jcc_rel32(cc, target)) return;
  // Inverted condition skips the absolute jump: j!cc +14; jmp [rip+0]; imm64.
  u8(static_cast<std::uint8_t>(0x70 | ((cc & 0x0F) ^ 1)));
  u8(static_cast<std::uint8_t>(kJmpAbsSize));
  jmp_abs(target);
}

bool X86Writer::jmp_rip_indirect(std::uintptr_t slot) {
  auto rel = rel32_to(slot, 6);
  if (!rel) return false;
  u8(0xFF);
  u8(0x25);
  u32(static_cast<std::uint32_t>(*rel));
  return true;
}

bool X86Writer::lock_inc_rip(std::uintptr_t counter) {
  auto rel = rel32_to(counter, 8);
  if (!rel) return false;
  const std::uint8_t op[] = {0xF0, 0x48, 0xFF, 0x05};
  raw(op, sizeof op);
  u32(static_cast<std::uint32_t>(*rel));
  return true;
}

void X86Writer::push_u64(std::uint64_t value) {
  // push imm32 sign-extends; the upper half is then stored over it. Flags untouched.
  u8(0x68);
  u32(static_cast<std::uint32_t>(value));
  const std::uint8_t mov_hi[] = {0xC7, 0x44, 0x24, 0x04};
  raw(mov_hi, sizeof mov_hi);
  u32(static_cast<std::uint32_t>(value >> 32));
}

std::vector<std::uint8_t> entry_jump(std::uintptr_t from, std::uintptr_t to) {
  X86Writer w(from);
  w.jmp(to);
  return w.take();
}

}  // namespace dynamos::core
