#include "core/probe.hpp"

#include <x86intrin.h>

#include <chrono>
#include <thread>

#include "core/x86_writer.hpp"

namespace dynamos::core {
namespace {

constexpr std::uint32_t kFrame = 0x168;  // keeps the callee's stack 16-byte aligned
constexpr std::uint32_t kArgSlots = 32;  // stack-argument slots copied for the callee
constexpr std::uint32_t kSaveRax = 0x100, kSaveRdx = 0x108, kStart = 0x110;

// Emits an instruction with a RIP-relative operand: prefix bytes, disp32, then imm.
bool rip_op(X86Writer& w, std::initializer_list<std::uint8_t> prefix, Address target,
            std::initializer_list<std::uint8_t> imm = {}) {
  auto rel = w.rel32_to(target, prefix.size() + 4 + imm.size());
  if (!rel) return false;
  for (auto b : prefix)
    w.u8(b);
  w.u32(static_cast<std::uint32_t>(*rel));
  for (auto b : imm)
    w.u8(b);
  return true;
}

void rsp_op(X86Writer& w, std::initializer_list<std::uint8_t> prefix, std::uint32_t disp) {
  for (auto b : prefix)
    w.u8(b);
  w.u32(disp);
}

void uleb(std::vector<std::uint8_t>& out, std::uint64_t v) {
  do {
    std::uint8_t b = v & 0x7f;
    v >>= 7;
    out.push_back(v ? (b | 0x80) : b);
  } while (v);
}

void put32(std::vector<std::uint8_t>& out, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// .eh_frame data for the timed path [begin, end): the frame is set up by its first
// instruction (sub rsp, kFrame, 7 bytes) and the CFA is rsp + kFrame + 8 after it.
std::vector<std::uint8_t> eh_frame(Address begin, Address end) {
  std::vector<std::uint8_t> out;
  // CIE
  out.insert(out.end(), {0, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0});
  uleb(out, 1);                               // code alignment
  out.push_back(0x78);                        // data alignment -8
  uleb(out, 16);                              // return address column (rip)
  uleb(out, 1);                               // augmentation data length
  out.push_back(0x00);                        // FDE pointers: absolute 8-byte addresses
  out.insert(out.end(), {0x0c, 0x07, 0x08});  // def_cfa rsp+8
  out.insert(out.end(), {0x90, 0x01});        // rip saved at cfa-8
  while ((out.size() - 4) % 8)
    out.push_back(0);  // DW_CFA_nop padding
  put32(out, 0, static_cast<std::uint32_t>(out.size() - 4));
  // FDE
  const std::size_t fde = out.size();
  out.insert(out.end(), {0, 0, 0, 0});
  const std::uint32_t cie_ptr = static_cast<std::uint32_t>(out.size());  // distance back to the CIE
  out.insert(out.end(), {0, 0, 0, 0});
  put32(out, out.size() - 4, cie_ptr);
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<std::uint8_t>(begin >> (8 * i)));
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<std::uint8_t>((end - begin) >> (8 * i)));
  uleb(out, 0);             // no augmentation data
  out.push_back(0x40 | 7);  // advance_loc 7: after sub rsp, kFrame
  out.push_back(0x0e);      // def_cfa_offset
  uleb(out, kFrame + 8);
  while ((out.size() - fde - 4) % 8)
    out.push_back(0);
  put32(out, fde, static_cast<std::uint32_t>(out.size() - fde - 4));
  out.insert(out.end(), {0, 0, 0, 0});  // terminator
  return out;
}

}  // namespace

Result<ProbeCode> make_probe(Target& target, NearMemory& near, Address near_to, Address wrapped) {
  auto block = near.allocate(near_to, 1024, 256);
  if (!block) return std::unexpected(block.error());
  const Address calls = block->data, timed = calls + 8, ticks = calls + 16, code_word = calls + 24;
  const Address eh = calls + 64;

  X86Writer w(block->code);
  bool ok = true;
  // Fast path: count, and every 64th call take the timed path.
  w.u8(0x41), w.u8(0xBB), w.u32(1);                        // mov r11d, 1
  ok &= rip_op(w, {0xF0, 0x4C, 0x0F, 0xC1, 0x1D}, calls);  // lock xadd [calls], r11
  w.u8(0x41), w.u8(0xF6), w.u8(0xC3), w.u8(0x3F);          // test r11b, 63
  const std::size_t jz_at = w.size();
  w.u8(0x0F), w.u8(0x84), w.u32(0);          // jz timed (patched below)
  ok &= rip_op(w, {0xFF, 0x25}, code_word);  // jmp [wrapped]
  // Timed path.
  const Address timed_begin = w.pc();
  const auto jz_rel = static_cast<std::uint32_t>(w.size() - (jz_at + 6));
  rsp_op(w, {0x48, 0x81, 0xEC}, kFrame);                      // sub rsp, kFrame
  rsp_op(w, {0x48, 0x89, 0x84, 0x24}, kSaveRax);              // mov [rsp+save_rax], rax
  rsp_op(w, {0x48, 0x89, 0x94, 0x24}, kSaveRdx);              // mov [rsp+save_rdx], rdx
  w.u8(0x0F), w.u8(0x31);                                     // rdtsc
  w.u8(0x48), w.u8(0xC1), w.u8(0xE2), w.u8(0x20);             // shl rdx, 32
  w.u8(0x48), w.u8(0x09), w.u8(0xD0);                         // or rax, rdx
  rsp_op(w, {0x48, 0x89, 0x84, 0x24}, kStart);                // mov [rsp+start], rax
  for (std::uint32_t i = 0; i < kArgSlots; ++i) {             // the caller's stack arguments
    rsp_op(w, {0x4C, 0x8B, 0x9C, 0x24}, kFrame + 8 + 8 * i);  // mov r11, [rsp+frame+8+8i]
    rsp_op(w, {0x4C, 0x89, 0x9C, 0x24}, 8 * i);               // mov [rsp+8i], r11
  }
  rsp_op(w, {0x48, 0x8B, 0x84, 0x24}, kSaveRax);  // mov rax, [rsp+save_rax]
  rsp_op(w, {0x48, 0x8B, 0x94, 0x24}, kSaveRdx);  // mov rdx, [rsp+save_rdx]
  ok &= rip_op(w, {0xFF, 0x15}, code_word);       // call [wrapped]
  rsp_op(w, {0x48, 0x89, 0x84, 0x24}, kSaveRax);  // keep the return value (rax:rdx)
  rsp_op(w, {0x48, 0x89, 0x94, 0x24}, kSaveRdx);
  w.u8(0x0F), w.u8(0x31);                            // rdtsc
  w.u8(0x48), w.u8(0xC1), w.u8(0xE2), w.u8(0x20);    // shl rdx, 32
  w.u8(0x48), w.u8(0x09), w.u8(0xD0);                // or rax, rdx
  rsp_op(w, {0x48, 0x2B, 0x84, 0x24}, kStart);       // sub rax, [rsp+start]
  ok &= rip_op(w, {0xF0, 0x48, 0x01, 0x05}, ticks);  // lock add [ticks], rax
  ok &= w.lock_inc_rip(timed);                       // lock inc [timed]
  rsp_op(w, {0x48, 0x8B, 0x84, 0x24}, kSaveRax);
  rsp_op(w, {0x48, 0x8B, 0x94, 0x24}, kSaveRdx);
  const Address timed_end = w.pc();
  rsp_op(w, {0x48, 0x81, 0xC4}, kFrame);  // add rsp, kFrame
  w.u8(0xC3);                             // ret
  if (!ok) return fail(Errc::refused, "probe counters out of reach of the probe code");
  auto bytes = w.take();
  put32(bytes, jz_at + 2, jz_rel);

  const auto frame = eh_frame(timed_begin, timed_end);
  if (frame.size() + 64 > 256) return fail(Errc::state, "probe unwind information too large");
  if (auto r = target.store_word(code_word, wrapped); !r) return std::unexpected(r.error());
  if (auto r = target.write(eh, frame); !r) return std::unexpected(r.error());
  if (auto r = target.write(block->code, bytes); !r) return std::unexpected(r.error());
  // Unwinding through the timed path needs the unwinder to know its frame; a
  // target without an unwinder loaded (a C program) has no exceptions to unwind.
  (void)target.register_unwind_info(eh);
  return ProbeCode{block->code, calls, eh, bytes.size()};
}

Result<ProbeCounts> read_probe(Target& target, Address counters) {
  ProbeCounts c;
  auto a = target.load_word(counters);
  auto b = target.load_word(counters + 8);
  auto d = target.load_word(counters + 16);
  if (!a || !b || !d) return fail(Errc::system, "reading probe counters");
  c.calls = *a;
  c.timed = *b;
  c.ticks = *d;
  return c;
}

double tsc_hz() {
  static const double hz = [] {
    const auto t0 = std::chrono::steady_clock::now();
    const auto c0 = __rdtsc();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto c1 = __rdtsc();
    const auto t1 = std::chrono::steady_clock::now();
    return static_cast<double>(c1 - c0) / std::chrono::duration<double>(t1 - t0).count();
  }();
  return hz;
}

}  // namespace dynamos::core
