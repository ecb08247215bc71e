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

bool X86Writer::rip_relative_copy(std::span<const std::uint8_t> insn, std::size_t disp_offset,
                                  std::uintptr_t target) {
  if (disp_offset + 4 > insn.size()) return false;
  auto rel = rel32_to(target, insn.size());
  if (!rel) return false;
  const std::size_t at = bytes_.size();
  raw(insn.data(), insn.size());
  for (int i = 0; i < 4; ++i)
    bytes_[at + disp_offset + i] =
        static_cast<std::uint8_t>(static_cast<std::uint32_t>(*rel) >> (8 * i));
  return true;
}

void X86Writer::put_label(Label id) {
  labels_.emplace_back(id, bytes_.size());
}

void X86Writer::label_ref(Label id, std::size_t width) {
  refs_.push_back({id, bytes_.size(), bytes_.size() + width, width});
  for (std::size_t i = 0; i < width; ++i)
    u8(0);
}

void X86Writer::jmp_near_label(Label id) {
  u8(0xE9);
  label_ref(id, 4);
}

void X86Writer::jmp_short_label(Label id) {
  u8(0xEB);
  label_ref(id, 1);
}

void X86Writer::jcc_near_label(std::uint8_t cc, Label id) {
  u8(0x0F);
  u8(static_cast<std::uint8_t>(0x80 | (cc & 0x0F)));
  label_ref(id, 4);
}

void X86Writer::jcc_short_label(std::uint8_t cc, Label id) {
  u8(static_cast<std::uint8_t>(0x70 | (cc & 0x0F)));
  label_ref(id, 1);
}

const std::size_t* X86Writer::label_position(Label id) const {
  for (const auto& [label, at] : labels_)
    if (label == id) return &at;
  return nullptr;
}

std::optional<X86Writer::Label> X86Writer::flush() {
  for (const auto& ref : refs_) {
    const std::size_t* at = label_position(ref.id);
    if (!at) return ref.id;
    const std::int64_t rel = static_cast<std::int64_t>(*at) - static_cast<std::int64_t>(ref.end);
    if (ref.width == 1 && (rel < INT8_MIN || rel > INT8_MAX)) return ref.id;
    const auto v = static_cast<std::uint32_t>(static_cast<std::int32_t>(rel));
    for (std::size_t i = 0; i < ref.width; ++i)
      bytes_[ref.field + i] = static_cast<std::uint8_t>(v >> (8 * i));
  }
  refs_.clear();
  return std::nullopt;
}

std::vector<std::uint8_t> entry_jump(std::uintptr_t from, std::uintptr_t to) {
  X86Writer w(from);
  w.jmp(to);
  return w.take();
}

}  // namespace dynamos::core
