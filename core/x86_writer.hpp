// Emits x86-64 machine code one instruction per call, into a byte buffer that will
// be placed at a known address (so rel32 forms can be computed). The writer knows
// nothing of functions or versions; the relocator and patch points use it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace dynamos::core {

class X86Writer {
 public:
  // `base` is the address the first emitted byte will have at run time.
  explicit X86Writer(std::uintptr_t base) : base_(base) {}

  std::uintptr_t pc() const { return base_ + bytes_.size(); }
  std::size_t size() const { return bytes_.size(); }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }
  std::vector<std::uint8_t> take() { return std::move(bytes_); }

  // rel32 displacement from the end of an instruction of `length` bytes at pc().
  std::optional<std::int32_t> rel32_to(std::uintptr_t target, std::size_t length) const;

  void raw(const std::uint8_t* data, std::size_t n) { bytes_.insert(bytes_.end(), data, data + n); }
  void u8(std::uint8_t v) { bytes_.push_back(v); }
  void u32(std::uint32_t v);
  void u64(std::uint64_t v);

  bool jmp_rel32(std::uintptr_t target);                   // E9 rel32 (5 bytes)
  void jmp_abs(std::uintptr_t target);                     // FF 25 00000000, imm64 (14)
  void jmp(std::uintptr_t target);                         // rel32 when in range, else abs
  bool jcc_rel32(std::uint8_t cc, std::uintptr_t target);  // 0F 8x rel32 (6)
  void jcc(std::uint8_t cc, std::uintptr_t target);        // rel32, else inverted jcc over abs
  bool jmp_rip_indirect(std::uintptr_t slot);              // FF 25 disp32: jmp [slot] (6)
  bool lock_inc_rip(std::uintptr_t counter);               // F0 48 FF 05 disp32 (8)
  void push_u64(std::uint64_t value);                      // 68 imm32; C7 44 24 04 imm32
  void int3() { u8(0xCC); }
  void endbr64() { raw(kEndbr64, 4); }

  static constexpr std::size_t kJmpRel32Size = 5;
  static constexpr std::size_t kJmpAbsSize = 14;
  static constexpr std::uint8_t kEndbr64[4] = {0xF3, 0x0F, 0x1E, 0xFA};

 private:
  std::uintptr_t base_;
  std::vector<std::uint8_t> bytes_;
};

// A jump written over a function entry: rel32 when `to` is within +-2 GiB of `from`.
std::vector<std::uint8_t> entry_jump(std::uintptr_t from, std::uintptr_t to);

}  // namespace dynamos::core
