#include "core/relocator.hpp"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <cstdio>

#include "core/x86_writer.hpp"

namespace dynamos::core {
namespace {

struct Decoded {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

const ZydisDecoder& decoder() {
  static const ZydisDecoder d = [] {
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    return dec;
  }();
  return d;
}

bool decode(std::span<const std::uint8_t> code, std::size_t offset, Decoded& out) {
  if (offset >= code.size()) return false;
  return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder(), code.data() + offset, code.size() - offset,
                                             &out.insn, out.ops));
}

bool is_relative_branch(const Decoded& d) {
  return (d.insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && d.insn.raw.imm[0].is_relative;
}

std::uintptr_t branch_target(const Decoded& d, std::uintptr_t at) {
  return at + d.insn.length + static_cast<std::int64_t>(d.insn.raw.imm[0].value.s);
}

// Instructions after which control never falls through to the next byte.
bool is_terminator(const Decoded& d) {
  switch (d.insn.mnemonic) {
    case ZYDIS_MNEMONIC_RET:
    case ZYDIS_MNEMONIC_JMP:
    case ZYDIS_MNEMONIC_UD2:
    case ZYDIS_MNEMONIC_HLT:
    case ZYDIS_MNEMONIC_INT3:
      return true;
    default:
      return false;
  }
}

bool is_padding(const Decoded& d) {
  return d.insn.mnemonic == ZYDIS_MNEMONIC_NOP || d.insn.mnemonic == ZYDIS_MNEMONIC_INT3;
}

const ZydisDecodedOperand* rip_relative_operand(const Decoded& d) {
  for (std::uint8_t i = 0; i < d.insn.operand_count_visible; ++i) {
    const auto& op = d.ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.base == ZYDIS_REGISTER_RIP) return &op;
  }
  return nullptr;
}

// The condition code nibble of a jcc, from its opcode (7x rel8 or 0F 8x rel32).
std::uint8_t condition_code(const Decoded& d) {
  return d.insn.opcode & 0x0F;
}

// What relocating an instruction takes; one rewrite (or refusal) per class.
enum class InsnClass {
  plain,           // position-independent: copied as it is
  jump,            // jmp or jcc rel8/rel32
  call,            // call rel32
  rip_relative,    // a [rip+disp32] memory operand
  no_rel32_form,   // loop, loope, loopne, jrcxz, jecxz: refused
  other_relative,  // any other relative form: refused
};

bool has_no_rel32_form(ZydisMnemonic mn) {
  return mn == ZYDIS_MNEMONIC_JRCXZ || mn == ZYDIS_MNEMONIC_JECXZ || mn == ZYDIS_MNEMONIC_LOOP ||
         mn == ZYDIS_MNEMONIC_LOOPE || mn == ZYDIS_MNEMONIC_LOOPNE;
}

InsnClass classify(const Decoded& d) {
  const auto mn = d.insn.mnemonic;
  if (is_relative_branch(d)) {
    if (has_no_rel32_form(mn)) return InsnClass::no_rel32_form;
    if (mn == ZYDIS_MNEMONIC_JMP || d.insn.meta.category == ZYDIS_CATEGORY_COND_BR)
      return InsnClass::jump;
    if (mn == ZYDIS_MNEMONIC_CALL) return InsnClass::call;
    return InsnClass::other_relative;
  }
  if (rip_relative_operand(d)) return InsnClass::rip_relative;
  if (d.insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE) return InsnClass::other_relative;
  return InsnClass::plain;
}

// One instruction of the prologue, as read.
struct ReadInsn {
  std::size_t offset = 0;  // in the source
  Decoded d;
};

// The whole instructions the entry jump displaces.
struct Prologue {
  std::vector<ReadInsn> insns;
  std::size_t relocated = 0;  // bytes of whole instructions
  bool falls_through = true;  // false when the last one is a terminator
};

Error too_short(const RelocationRequest& req, std::size_t bytes, const char* why) {
  return Error{Errc::refused, 0,
               "function at " + hex(req.source) + " is too short (" + std::to_string(bytes) +
                   " bytes) to hold a " + std::to_string(req.min_bytes) + "-byte jump" + why};
}

Result<Decoded> read_one(const RelocationRequest& req, std::size_t offset) {
  Decoded d;
  if (!decode(req.code, offset, d))
    return fail(Errc::refused,
                "undecodable instruction at +" + std::to_string(offset) + " of " + hex(req.source));
  return d;
}

// A function that ends before the jump fits is patchable only when padding (which
// nothing executes), not the start of another function, fills the rest.
Result<void> check_padding(const RelocationRequest& req, std::size_t function_end) {
  for (std::size_t pad = function_end; pad < req.min_bytes;) {
    Decoded p;
    if (!decode(req.code, pad, p) || !is_padding(p))
      return std::unexpected(too_short(req, function_end, " and is not followed by padding"));
    pad += p.insn.length;
  }
  return {};
}

// Phase 1: whole instructions covering min_bytes, or up to the function's end.
Result<Prologue> read_prologue(const RelocationRequest& req) {
  Prologue out;
  while (out.relocated < req.min_bytes) {
    auto d = read_one(req, out.relocated);
    if (!d) return std::unexpected(d.error());
    out.insns.push_back({out.relocated, *d});
    out.relocated += d->insn.length;
    if (!is_terminator(*d)) continue;
    out.falls_through = false;
    if (auto r = check_padding(req, out.relocated); !r) return std::unexpected(r.error());
    break;
  }
  if (out.falls_through && req.function_size && req.function_size < out.relocated)
    return std::unexpected(too_short(req, req.function_size, ""));
  return out;
}

// Phases 2 and 3: writes each instruction at the clone, then the jump back. A branch
// to an instruction of the prologue aims at that instruction's label in the clone.
class PrologueWriter {
 public:
  PrologueWriter(const RelocationRequest& req, const Prologue& prologue)
      : req_(req), w_(req.destination) {
    out_.relocated = prologue.relocated;
    out_.overwritten = std::max(prologue.relocated, req.min_bytes);
    out_.falls_through = prologue.falls_through;
  }

  Result<void> write_one(const ReadInsn& r) {
    at_ = req_.source + r.offset;
    out_.map.push_back({static_cast<std::uint8_t>(r.offset), static_cast<std::uint8_t>(w_.size())});
    out_.disassembly.push_back(disassemble_one(req_.code.subspan(r.offset), at_));
    w_.put_label(at_);
    switch (classify(r.d)) {
      case InsnClass::plain:
        w_.raw(req_.code.data() + r.offset, r.d.insn.length);
        return {};
      case InsnClass::jump:
        return rewrite_jump(r.d);
      case InsnClass::call:
        return rewrite_call(r.d);
      case InsnClass::rip_relative:
        return rewrite_rip_relative(r);
      case InsnClass::no_rel32_form:
        return refuse("cannot be relocated (no rel32 form)");
      case InsnClass::other_relative:
        break;
    }
    return refuse("cannot be relocated (a relative form with no rewrite)");
  }

  Result<Relocation> finish() {
    if (out_.falls_through) w_.jmp(req_.source + out_.relocated);
    if (auto missing = w_.flush())
      return fail(Errc::refused, "branch into the middle of a relocated instruction at " +
                                     hex(static_cast<Address>(*missing)));
    out_.clone = w_.take();
    return std::move(out_);
  }

 private:
  using Address = std::uintptr_t;

  bool inside_prologue(Address target) const {
    return target >= req_.source && target < req_.source + out_.relocated;
  }

  Result<void> refuse(const std::string& why) const {
    return fail(Errc::refused,
                "instruction '" + out_.disassembly.back() + "' at " + hex(at_) + " " + why);
  }

  // rel8/rel32 jmp and jcc: rel32 forms (or an absolute jump when out of range).
  Result<void> rewrite_jump(const Decoded& d) {
    const Address target = branch_target(d, at_);
    const bool cond = d.insn.mnemonic != ZYDIS_MNEMONIC_JMP;
    if (inside_prologue(target)) {
      if (cond)
        w_.jcc_near_label(condition_code(d), target);
      else
        w_.jmp_near_label(target);
    } else if (cond) {
      w_.jcc(condition_code(d), target);
    } else {
      w_.jmp(target);
    }
    return {};
  }

  // call rel32: push the original return address and jump, so the callee returns
  // into the original function and unwinding sees the original frame.
  Result<void> rewrite_call(const Decoded& d) {
    const Address ret = at_ + d.insn.length;
    if (ret < req_.source + out_.overwritten)
      return fail(Errc::refused,
                  "call at " + hex(at_) + " returns into the bytes the entry jump overwrites");
    w_.push_u64(ret);
    w_.jmp(branch_target(d, at_));
    return {};
  }

  // A RIP-relative operand keeps addressing the same byte from the clone.
  Result<void> rewrite_rip_relative(const ReadInsn& r) {
    std::uint64_t target = 0;
    if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&r.d.insn, rip_relative_operand(r.d), at_, &target)))
      return fail(Errc::refused, "cannot compute the RIP-relative operand at " + hex(at_));
    if (inside_prologue(target))
      return fail(Errc::refused,
                  "instruction at " + hex(at_) + " reads or writes the relocated bytes themselves");
    const auto insn = req_.code.subspan(r.offset, r.d.insn.length);
    if (r.d.insn.raw.disp.size != 32 ||
        !w_.rip_relative_copy(insn, r.d.insn.raw.disp.offset, target))
      return fail(Errc::refused, "RIP-relative operand of '" + out_.disassembly.back() + "' at " +
                                     hex(at_) + " is out of range of the clone");
    return {};
  }

  const RelocationRequest& req_;
  X86Writer w_;
  Relocation out_;
  Address at_ = 0;  // source address of the instruction being written
};

}  // namespace

std::string disassemble_one(std::span<const std::uint8_t> code, std::uintptr_t address) {
  ZydisDisassembledInstruction insn;
  if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, address, code.data(),
                                          code.size(), &insn)))
    return "(undecodable)";
  return insn.text;
}

Result<Relocation> relocate_prologue(const RelocationRequest& req) {
  auto prologue = read_prologue(req);
  if (!prologue) return std::unexpected(prologue.error());
  PrologueWriter writer(req, *prologue);
  for (const auto& insn : prologue->insns)
    if (auto r = writer.write_one(insn); !r) return std::unexpected(r.error());
  return writer.finish();
}

Result<void> check_no_branch_into(std::span<const std::uint8_t> code, std::uintptr_t source,
                                  std::size_t function_size, std::size_t overwritten) {
  const std::size_t limit = function_size ? std::min(function_size, code.size()) : code.size();
  std::size_t offset = 0;
  std::uintptr_t furthest = source;  // furthest forward branch target seen so far
  while (offset < limit) {
    Decoded d;
    if (!decode(code, offset, d)) {
      if (function_size) return fail(Errc::refused, "undecodable bytes at " + hex(source + offset));
      break;  // unknown size: stop at data or the end of what was read
    }
    const std::uintptr_t at = source + offset;
    if (is_relative_branch(d)) {
      const std::uintptr_t target = branch_target(d, at);
      if (target > source && target < source + overwritten)
        return fail(Errc::refused, "branch at " + hex(at) + " targets " + hex(target) +
                                       ", inside the bytes the entry jump overwrites");
      if (target > furthest) furthest = target;
    }
    offset += d.insn.length;
    // Without a size, the function ends at a terminator no branch jumps past.
    if (!function_size && is_terminator(d) && source + offset > furthest) break;
  }
  return {};
}

}  // namespace dynamos::core
