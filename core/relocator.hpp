// Reads the first instructions of a function and rewrites them to run at another
// address (the clone), one instruction at a time, with Zydis decoding (read_one, then
// write_one with one rewrite per instruction class; the X86Writer emits every
// opcode and resolves branches between relocated instructions through labels):
//   - position-independent instructions are copied as they are;
//   - rel8/rel32 jmp and jcc become rel32 forms (or an absolute jump when out of
//     range); a target inside the relocated bytes maps to its copy in the clone;
//   - call rel32 becomes "push original return address; jmp target", so the callee
//     returns into the original function and unwinding sees the original frame;
//   - RIP-relative memory operands get a new displacement (refused if out of range).
// Anything that cannot be moved safely is refused with a reason, never guessed.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"

namespace dynamos::core {

struct RelocationRequest {
  std::span<const std::uint8_t> code;  // bytes at `source`: the function and a little beyond
  std::uintptr_t source = 0;           // run-time address of code[0]
  std::uintptr_t destination = 0;      // run-time address the clone will have
  std::size_t min_bytes = 5;           // bytes the entry jump will overwrite
  std::size_t function_size = 0;       // from the symbol table; 0 when unknown
};

struct InstructionMap {
  std::uint8_t source_offset;  // instruction start in the original
  std::uint8_t clone_offset;   // where its copy starts in the clone
};

struct Relocation {
  std::vector<std::uint8_t> clone;       // relocated instructions, then the jump back
  std::size_t overwritten = 0;           // original bytes replaced by the entry jump
  std::size_t relocated = 0;             // original bytes copied (whole instructions)
  bool falls_through = true;             // false when the copy ends in ret/jmp
  std::vector<InstructionMap> map;       // one entry per relocated instruction
  std::vector<std::string> disassembly;  // one line per relocated instruction, for logs
};

// Relocates whole instructions covering at least min_bytes. Refuses (Errc::refused)
// with the reason: function too short with no padding, an instruction that cannot be
// relocated (loop/jrcxz, a RIP-relative operand out of range, a call returning into
// the overwritten bytes), undecodable bytes.
Result<Relocation> relocate_prologue(const RelocationRequest& request);

// Decodes the whole function (function_size bytes, or up to its last reachable
// terminator when the size is unknown) and refuses when any relative branch targets
// the bytes (source, source + overwritten): they would land inside the entry jump.
Result<void> check_no_branch_into(std::span<const std::uint8_t> code, std::uintptr_t source,
                                  std::size_t function_size, std::size_t overwritten);

// One line of Intel-syntax disassembly, for messages and tests.
std::string disassemble_one(std::span<const std::uint8_t> code, std::uintptr_t address);

}  // namespace dynamos::core
