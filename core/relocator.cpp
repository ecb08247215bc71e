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

}  // namespace

std::string disassemble_one(std::span<const std::uint8_t> code, std::uintptr_t address) {
  ZydisDisassembledInstruction insn;
  if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, address, code.data(),
                                          code.size(), &insn)))
    return "(undecodable)";
  return insn.text;
}

Result<Relocation> relocate_prologue(const RelocationRequest& req) {
  Relocation out;
  X86Writer w(req.destination);

  // Pass 1: choose the instructions to relocate.
  std::vector<std::pair<std::size_t, Decoded>> insns;
  std::size_t offset = 0;
  while (offset < req.min_bytes) {
    Decoded d;
    if (!decode(req.code, offset, d))
      return fail(Errc::refused, "undecodable instruction at +" + std::to_string(offset) + " of " +
                                     hex(req.source));
    insns.emplace_back(offset, d);
    offset += d.insn.length;
    if (!is_terminator(d)) continue;
    out.falls_through = false;
    // The function ends before the jump fits: the rest must be padding (which
    // nothing executes), not the start of another function.
    std::size_t pad = offset;
    while (pad < req.min_bytes) {
      Decoded p;
      if (!decode(req.code, pad, p) || !is_padding(p))
        return fail(Errc::refused, "function at " + hex(req.source) + " is too short (" +
                                       std::to_string(offset) + " bytes) to hold a " +
                                       std::to_string(req.min_bytes) +
                                       "-byte jump and is not followed by padding");
      pad += p.insn.length;
    }
    break;
  }
  out.relocated = offset;
  out.overwritten = std::max(offset, req.min_bytes);
  if (out.falls_through && req.function_size && req.function_size < offset)
    return fail(Errc::refused, "function at " + hex(req.source) + " is too short (" +
                                   std::to_string(req.function_size) + " bytes) to hold a " +
                                   std::to_string(req.min_bytes) + "-byte jump");
  const std::uintptr_t reloc_end = req.source + out.relocated;

  // Pass 2: emit. Branches into the relocated range are resolved in a fixup pass.
  struct Fixup {
    std::size_t at;          // offset of the rel32 field in the clone
    std::size_t insn_end;    // clone offset just past the instruction
    std::size_t target_src;  // source offset the branch aimed at
  };
  std::vector<Fixup> fixups;
  for (auto& [src_off, d] : insns) {
    const std::uintptr_t at = req.source + src_off;
    out.map.push_back({static_cast<std::uint8_t>(src_off), static_cast<std::uint8_t>(w.size())});
    out.disassembly.push_back(disassemble_one(req.code.subspan(src_off), at));
    const auto mn = d.insn.mnemonic;

    if (is_relative_branch(d)) {
      const std::uintptr_t target = branch_target(d, at);
      const bool internal = target >= req.source && target < reloc_end;
      if (mn == ZYDIS_MNEMONIC_JMP || d.insn.meta.category == ZYDIS_CATEGORY_COND_BR) {
        if (mn == ZYDIS_MNEMONIC_JRCXZ || mn == ZYDIS_MNEMONIC_JECXZ || mn == ZYDIS_MNEMONIC_LOOP ||
            mn == ZYDIS_MNEMONIC_LOOPE || mn == ZYDIS_MNEMONIC_LOOPNE)
          return fail(Errc::refused, "instruction '" + out.disassembly.back() + "' at " + hex(at) +
                                         " cannot be relocated (no rel32 form)");
        const bool cond = mn != ZYDIS_MNEMONIC_JMP;
        if (internal) {
          if (cond) {
            w.u8(0x0F);
            w.u8(static_cast<std::uint8_t>(0x80 | condition_code(d)));
          } else {
            w.u8(0xE9);
          }
          fixups.push_back({w.size(), w.size() + 4, target - req.source});
          w.u32(0);
        } else if (cond) {
          w.jcc(condition_code(d), target);
        } else {
          w.jmp(target);
        }
        continue;
      }
      if (mn == ZYDIS_MNEMONIC_CALL) {
        const std::uintptr_t ret = at + d.insn.length;
        if (ret < req.source + out.overwritten)
          return fail(Errc::refused,
                      "call at " + hex(at) + " returns into the bytes the entry jump overwrites");
        w.push_u64(ret);
        w.jmp(target);
        continue;
      }
      return fail(Errc::refused, "relative instruction '" + out.disassembly.back() + "' at " +
                                     hex(at) + " cannot be relocated");
    }

    if (const auto* op = rip_relative_operand(d)) {
      std::uint64_t target = 0;
      if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&d.insn, op, at, &target)))
        return fail(Errc::refused, "cannot compute the RIP-relative operand at " + hex(at));
      if (target >= req.source && target < reloc_end)
        return fail(Errc::refused, "instruction at " + hex(at) +
                                       " reads or writes the relocated bytes themselves");
      const std::int64_t disp =
          static_cast<std::int64_t>(target) - static_cast<std::int64_t>(w.pc() + d.insn.length);
      if (d.insn.raw.disp.size != 32 || disp < INT32_MIN || disp > INT32_MAX)
        return fail(Errc::refused, "RIP-relative operand of '" + out.disassembly.back() + "' at " +
                                       hex(at) + " is out of range of the clone");
      std::vector<std::uint8_t> bytes(req.code.begin() + src_off,
                                      req.code.begin() + src_off + d.insn.length);
      const auto d32 = static_cast<std::uint32_t>(static_cast<std::int32_t>(disp));
      for (int i = 0; i < 4; ++i)
        bytes[d.insn.raw.disp.offset + i] = static_cast<std::uint8_t>(d32 >> (8 * i));
      w.raw(bytes.data(), bytes.size());
      continue;
    }

    if (d.insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE)
      return fail(Errc::refused, "relative instruction '" + out.disassembly.back() + "' at " +
                                     hex(at) + " cannot be relocated");
    w.raw(req.code.data() + src_off, d.insn.length);
  }

  if (out.falls_through) w.jmp(reloc_end);

  auto clone = w.take();
  for (const auto& f : fixups) {
    auto it = std::find_if(out.map.begin(), out.map.end(), [&](const InstructionMap& m) {
      return m.source_offset == f.target_src;
    });
    if (it == out.map.end())
      return fail(Errc::refused, "branch into the middle of a relocated instruction at " +
                                     hex(req.source + f.target_src));
    const auto rel =
        static_cast<std::int32_t>(it->clone_offset) - static_cast<std::int32_t>(f.insn_end);
    for (int i = 0; i < 4; ++i)
      clone[f.at + i] = static_cast<std::uint8_t>(static_cast<std::uint32_t>(rel) >> (8 * i));
  }
  out.clone = std::move(clone);
  return out;
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
