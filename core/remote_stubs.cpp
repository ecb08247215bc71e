#include "core/remote_stubs.hpp"

#include <cpuid.h>

#include <cstddef>

#include "core/x86_writer.hpp"

namespace dynamos::core::remote {

namespace {

enum Reg { RAX = 0, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

// Size of the XSAVE area for the features the OS enabled (CPUID leaf 0xD).
std::size_t xsave_size() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(0xD, 0, &a, &b, &c, &d) || b == 0) return 4096;
  return (b + 63) & ~std::size_t{63};
}

// movabs reg, imm64: REX.W(+B) B8+r imm64
void movabs(X86Writer& w, int reg, std::uint64_t imm) {
  w.u8(reg < 8 ? 0x48 : 0x49);
  w.u8(static_cast<std::uint8_t>(0xB8 + (reg & 7)));
  w.u64(imm);
}

void save_all(X86Writer& w) {
  const std::uint8_t prologue[] = {
      0x48, 0x8D, 0x64, 0x24, 0x80,                    // lea rsp, [rsp-128]   (skip the red zone)
      0x9C,                                            // pushfq
      0x50, 0x51, 0x52, 0x53, 0x55, 0x56, 0x57,        // rax rcx rdx rbx rbp rsi rdi
      0x41, 0x50, 0x41, 0x51, 0x41, 0x52, 0x41, 0x53,  // r8-r11
      0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57,  // r12-r15
      0x48, 0x89, 0xE5,                                // mov rbp, rsp
      0x48, 0x83, 0xE4, 0xC0,                          // and rsp, -64
  };
  w.raw(prologue, sizeof prologue);
  const auto size = static_cast<std::uint32_t>(xsave_size());
  w.u8(0x48), w.u8(0x81), w.u8(0xEC), w.u32(size);  // sub rsp, size
  // XRSTOR faults unless the XSAVE header's reserved bytes are zero, and XSAVE
  // writes only XSTATE_BV there: clear the 64-byte header (offset 512) first.
  w.u8(0x31), w.u8(0xC0);  // xor eax, eax
  for (std::uint32_t off = 512; off < 576; off += 8) {
    w.u8(0x48), w.u8(0x89), w.u8(0x84), w.u8(0x24), w.u32(off);  // mov [rsp+off], rax
  }
  const std::uint8_t xsave[] = {0xB8, 0xFF, 0xFF, 0xFF, 0xFF,   // mov eax, -1
                                0xBA, 0xFF, 0xFF, 0xFF, 0xFF,   // mov edx, -1
                                0x48, 0x0F, 0xAE, 0x24, 0x24};  // xsave64 [rsp]
  w.raw(xsave, sizeof xsave);
}

void restore_all_and_jump(X86Writer& w, Address resume) {
  const std::uint8_t epilogue[] = {
      0xB8, 0xFF, 0xFF, 0xFF, 0xFF,                    // mov eax, -1
      0xBA, 0xFF, 0xFF, 0xFF, 0xFF,                    // mov edx, -1
      0x48, 0x0F, 0xAE, 0x2C, 0x24,                    // xrstor64 [rsp]
      0x48, 0x89, 0xEC,                                // mov rsp, rbp
      0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C,  // r15-r12
      0x41, 0x5B, 0x41, 0x5A, 0x41, 0x59, 0x41, 0x58,  // r11-r8
      0x5F, 0x5E, 0x5D, 0x5B, 0x5A, 0x59, 0x58,        // rdi rsi rbp rbx rdx rcx rax
      0x9D,                                            // popfq
      0x48, 0x8D, 0xA4, 0x24, 0x80, 0x00, 0x00, 0x00,  // lea rsp, [rsp+128]
  };
  w.raw(epilogue, sizeof epilogue);
  w.jmp_abs(resume);
}

// mov [rbx+disp8], rax
void store_rax(X86Writer& w, std::uint8_t disp) {
  w.u8(0x48), w.u8(0x89), w.u8(0x43), w.u8(disp);
}
// mov qword [rbx+disp8], 1
void store_done(X86Writer& w, std::uint8_t disp) {
  w.u8(0x48), w.u8(0xC7), w.u8(0x43), w.u8(disp), w.u32(1);
}

void load_arg(X86Writer& w, int reg, const Arg& a) {
  if (!a.from_result) return movabs(w, reg, a.value);
  // mov reg, [rbx + 16 + 8*index]
  const auto disp = static_cast<std::uint8_t>(offsetof(Mailbox, results) + 8 * a.value);
  w.u8(reg < 8 ? 0x48 : 0x4C), w.u8(0x8B), w.u8(static_cast<std::uint8_t>(0x43 | ((reg & 7) << 3))),
      w.u8(disp);
}

}  // namespace

// rbx holds the mailbox throughout (syscall clobbers only rcx and r11).
std::vector<std::uint8_t> syscall_stub(Address at, Address mailbox,
                                       const std::vector<SyscallStep>& steps, Address resume) {
  X86Writer w(at);
  save_all(w);
  movabs(w, RBX, mailbox);
  const int regs[6] = {RDI, RSI, RDX, R10, R8, R9};
  for (std::size_t i = 0; i < steps.size(); ++i) {
    for (int a = 0; a < 6; ++a)
      load_arg(w, regs[a], steps[i].args[a]);
    movabs(w, RAX, static_cast<std::uint64_t>(steps[i].nr));
    w.u8(0x0F), w.u8(0x05);  // syscall
    store_rax(w, static_cast<std::uint8_t>(offsetof(Mailbox, results) + 8 * i));
  }
  store_done(w, offsetof(Mailbox, done));
  restore_all_and_jump(w, resume);
  return w.take();
}

// rsp is 64-byte aligned after save_all, as the call needs.
std::vector<std::uint8_t> call_stub(Address at, Address mailbox, Address fn,
                                    const std::vector<std::uint64_t>& args, Address resume) {
  X86Writer w(at);
  save_all(w);
  const int regs[6] = {RDI, RSI, RDX, RCX, R8, R9};
  for (std::size_t i = 0; i < args.size() && i < 6; ++i)
    movabs(w, regs[i], args[i]);
  movabs(w, RAX, fn);
  w.u8(0xFF), w.u8(0xD0);  // call rax
  movabs(w, RBX, mailbox);
  store_rax(w, offsetof(Mailbox, result));
  store_done(w, offsetof(Mailbox, done));
  restore_all_and_jump(w, resume);
  return w.take();
}

}  // namespace dynamos::core::remote
