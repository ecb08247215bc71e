// Emits x86-64 machine code one instruction per call, into a byte buffer that will
// be placed at a known address (so rel32 forms can be computed). The writer knows
// nothing of functions or versions; the relocator and patch points use it. It owns
// every opcode: callers say which instruction, never which bytes.
//
// Labels (as frida-gum's gumx86writer): a branch may aim at a label that is placed
// later (or earlier) with put_label; its displacement is left zero until flush()
// resolves every reference. A label is any id the caller chooses (the relocator
// uses the source address of the instruction the label marks).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
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

  // A copy of an instruction whose disp32 (at disp_offset in `insn`) is rewritten so
  // that the operand still addresses `target` from pc(). False when out of reach.
  bool rip_relative_copy(std::span<const std::uint8_t> insn, std::size_t disp_offset,
                         std::uintptr_t target);

  // ---- Labels ----
  using Label = std::uint64_t;
  void put_label(Label id);                         // binds `id` to pc()
  void jmp_near_label(Label id);                    // E9 rel32 (5)
  void jmp_short_label(Label id);                   // EB rel8 (2)
  void jcc_near_label(std::uint8_t cc, Label id);   // 0F 8x rel32 (6)
  void jcc_short_label(std::uint8_t cc, Label id);  // 7x rel8 (2)
  // Writes every label reference's displacement. Returns the first label that could
  // not be resolved (never placed, or out of a short branch's reach); nullopt when
  // all were. The bytes are final only after a successful flush.
  [[nodiscard]] std::optional<Label> flush();

  static constexpr std::size_t kJmpRel32Size = 5;
  static constexpr std::size_t kJmpAbsSize = 14;
  static constexpr std::uint8_t kEndbr64[4] = {0xF3, 0x0F, 0x1E, 0xFA};

 private:
  struct LabelRef {
    Label id;
    std::size_t field;  // offset of the displacement in bytes_
    std::size_t end;    // offset just past the referencing instruction
    std::size_t width;  // 1 (rel8) or 4 (rel32)
  };
  void label_ref(Label id, std::size_t width);
  const std::size_t* label_position(Label id) const;

  std::uintptr_t base_;
  std::vector<std::uint8_t> bytes_;
  std::vector<std::pair<Label, std::size_t>> labels_;  // id, offset it was placed at
  std::vector<LabelRef> refs_;
};

// A jump written over a function entry: rel32 when `to` is within +-2 GiB of `from`.
std::vector<std::uint8_t> entry_jump(std::uintptr_t from, std::uintptr_t to);

}  // namespace dynamos::core
