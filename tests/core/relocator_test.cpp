// The relocation corpus. Part one feeds byte arrays to the relocator and checks the
// bytes that come out (disassembly in the comments). Part two hijacks the
// hand-written functions of functions.S in this process and checks that the clone
// behaves exactly as the original and that refused functions are left untouched.
#include "core/relocator.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/engine.hpp"
#include "core/x86_writer.hpp"

using namespace dynamos;
using namespace dynamos::core;
using Bytes = std::vector<std::uint8_t>;

namespace {

constexpr Address kSrc = 0x401000;
constexpr Address kDst = 0x402000;  // within rel32 reach of kSrc

Relocation relocate_ok(const Bytes& code, std::size_t size = 0) {
  auto r = relocate_prologue({code, kSrc, kDst, 5, size});
  EXPECT_TRUE(r) << r.error().message();
  return r ? *r : Relocation{};
}

Bytes le32(std::int64_t v) {
  auto u = static_cast<std::uint32_t>(static_cast<std::int32_t>(v));
  return {static_cast<std::uint8_t>(u), static_cast<std::uint8_t>(u >> 8),
          static_cast<std::uint8_t>(u >> 16), static_cast<std::uint8_t>(u >> 24)};
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts)
    out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

TEST(RelocatorBytes, CopiesPositionIndependentInstructionsAndJumpsBack) {
  const Bytes code = {
      0x55,              // push rbp
      0x48, 0x89, 0xe5,  // mov rbp, rsp
      0x89, 0x7d, 0xfc,  // mov [rbp-4], edi
      0xc3,              // ret
  };
  auto r = relocate_ok(code);
  EXPECT_EQ(r.overwritten, 7u);
  EXPECT_TRUE(r.falls_through);
  // The 7 bytes verbatim, then jmp rel32 back to kSrc+7.
  Bytes want =
      cat({{0x55, 0x48, 0x89, 0xe5, 0x89, 0x7d, 0xfc}, {0xe9}, le32(kSrc + 7 - (kDst + 12))});
  EXPECT_EQ(r.clone, want);
}

TEST(RelocatorBytes, WidensJccRel8ToRel32) {
  const Bytes code = {
      0x85, 0xff,                    // test edi, edi
      0x7e, 0x06,                    // jle +6         -> kSrc+10
      0xb8, 0x01, 0x00, 0x00, 0x00,  // mov eax, 1
      0xc3,                          // ret
  };
  auto r = relocate_ok(code);
  EXPECT_EQ(r.overwritten, 9u);
  Bytes want = cat({{0x85, 0xff},
                    {0x0f, 0x8e},
                    le32(kSrc + 10 - (kDst + 8)),  // jle rel32 -> kSrc+10
                    {0xb8, 0x01, 0x00, 0x00, 0x00},
                    {0xe9},
                    le32(kSrc + 9 - (kDst + 18))});  // jmp kSrc+9
  EXPECT_EQ(r.clone, want);
}

TEST(RelocatorBytes, RewritesRipRelativeDisplacement) {
  const Bytes code = {
      0x8b, 0x05, 0x10, 0x00, 0x00, 0x00,  // mov eax, [rip+0x10]   -> kSrc+0x16
      0xc3,                                // ret
  };
  auto r = relocate_ok(code);
  // The operand still reads kSrc+0x16: new disp = kSrc+0x16 - (kDst+6).
  Bytes want =
      cat({{0x8b, 0x05}, le32(kSrc + 0x16 - (kDst + 6)), {0xe9}, le32(kSrc + 6 - (kDst + 11))});
  EXPECT_EQ(r.clone, want);
}

TEST(RelocatorBytes, CallBecomesPushOfOriginalReturnAndJump) {
  const Bytes code = cat({{0xe8}, le32(0x100), {0xc3}});  // call kSrc+0x105; ret
  auto r = relocate_ok(code);
  const Address ret = kSrc + 5;
  Bytes want = cat({{0x68},
                    le32(static_cast<std::int64_t>(ret & 0xffffffff)),  // push imm32
                    {0xc7, 0x44, 0x24, 0x04},
                    le32(static_cast<std::int64_t>(ret >> 32)),  // mov [rsp+4], hi
                    {0xe9},
                    le32(kSrc + 0x105 - (kDst + 18)),  // jmp callee
                    {0xe9},
                    le32(kSrc + 5 - (kDst + 23))});  // jmp back
  EXPECT_EQ(r.clone, want);
}

TEST(RelocatorBytes, KeepsEndbr64AndFarTargetsUseAbsoluteJumps) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,  // endbr64
      0xeb, 0x10,              // jmp +0x10 -> kSrc+0x16
  };
  const Address far = kSrc + (Address{8} << 30);  // 8 GiB away: no rel32
  auto r = relocate_prologue({code, kSrc, far, 5, 0});
  ASSERT_TRUE(r) << r.error().message();
  Bytes want = {0xf3, 0x0f, 0x1e, 0xfa, 0xff, 0x25, 0, 0, 0, 0};  // endbr64; jmp [rip+0]
  for (int i = 0; i < 8; ++i)
    want.push_back(static_cast<std::uint8_t>((kSrc + 0x16) >> (8 * i)));
  EXPECT_EQ(r->clone, want);
  EXPECT_FALSE(r->falls_through) << "an unconditional jmp ends the prologue";
}

TEST(RelocatorBytes, RefusesTooShortWithoutPadding) {
  const Bytes code = {0x31, 0xc0, 0xc3, 0xb8, 0x01, 0x00, 0x00, 0x00};  // xor; ret; <next fn>
  auto r = relocate_prologue({code, kSrc, kDst, 5, 3});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::refused);
  EXPECT_NE(r.error().what.find("too short"), std::string::npos) << r.error().what;
}

TEST(RelocatorBytes, AcceptsShortFunctionFollowedByPadding) {
  const Bytes code = {0x8d, 0x04, 0x3f, 0xc3, 0xcc, 0xcc, 0xcc, 0xcc};  // lea; ret; int3...
  auto r = relocate_ok(code, 4);
  EXPECT_EQ(r.overwritten, 5u);
  EXPECT_FALSE(r.falls_through);
  EXPECT_EQ(r.clone, (Bytes{0x8d, 0x04, 0x3f, 0xc3}));
}

TEST(RelocatorBytes, RefusesBranchIntoOverwrittenBytes) {
  const Bytes code = {0x31, 0xc0, 0x01, 0xf8, 0xff, 0xcf, 0x75, 0xfa, 0xc3};
  auto r = check_no_branch_into(code, kSrc, code.size(), 6);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("inside the bytes the entry jump overwrites"), std::string::npos);
}

TEST(RelocatorBytes, RefusesJrcxz) {
  const Bytes code = {0x89, 0xf9, 0xe3, 0x06, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3};
  auto r = relocate_prologue({code, kSrc, kDst, 5, 0});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("cannot be relocated"), std::string::npos) << r.error().what;
}

TEST(RelocatorBytes, InternalForwardJccAimsAtTheCopiedInstruction) {
  const Bytes code = {
      0x74, 0x01,  // je +1          -> kSrc+3 (the xor, relocated too)
      0x90,        // nop
      0x31, 0xc0,  // xor eax, eax
  };
  auto r = relocate_ok(code);
  Bytes want = cat({{0x0f, 0x84},
                    le32(1),  // je rel32 -> clone+7 (the copied xor)
                    {0x90},
                    {0x31, 0xc0},
                    {0xe9},
                    le32(kSrc + 5 - (kDst + 14))});  // jmp kSrc+5
  EXPECT_EQ(r.clone, want);
}

TEST(RelocatorBytes, InternalBackwardJccAimsAtTheCopiedInstruction) {
  // (check_no_branch_into refuses this function; the relocator alone still maps it.)
  const Bytes code = {
      0x31, 0xc0,  // xor eax, eax
      0xff, 0xc0,  // inc eax        <- kSrc+2
      0x75, 0xfc,  // jne -4         -> kSrc+2
  };
  auto r = relocate_ok(code);
  Bytes want = cat({{0x31, 0xc0},
                    {0xff, 0xc0},
                    {0x0f, 0x85},
                    le32(2 - 10),  // jne rel32 -> clone+2 (the copied inc)
                    {0xe9},
                    le32(kSrc + 6 - (kDst + 15))});  // jmp kSrc+6
  EXPECT_EQ(r.clone, want);
}

TEST(RelocatorBytes, InternalJmpRel8EndsTheCloneWithoutAJumpBack) {
  const Bytes code = {
      0x31, 0xc0,  // xor eax, eax   <- kSrc
      0x90,        // nop
      0x90,        // nop
      0xeb, 0xfa,  // jmp -6         -> kSrc
      0xcc, 0xcc,  // int3 padding
  };
  auto r = relocate_ok(code);
  EXPECT_FALSE(r.falls_through);
  Bytes want = cat({{0x31, 0xc0, 0x90, 0x90}, {0xe9}, le32(0 - 9)});  // jmp rel32 -> clone+0
  EXPECT_EQ(r.clone, want);
}

TEST(RelocatorBytes, FarJccBecomesInvertedJccOverAbsoluteJump) {
  const Bytes code = {
      0x74, 0x10,        // je +0x10      -> kSrc+0x12
      0x90, 0x90, 0x90,  // nop x3
  };
  const Address far = kSrc + (Address{8} << 30);
  auto r = relocate_prologue({code, kSrc, far, 5, 0});
  ASSERT_TRUE(r) << r.error().message();
  auto abs_jump = [](Address to) {  // jmp [rip+0]; imm64
    Bytes b = {0xff, 0x25, 0, 0, 0, 0};
    for (int i = 0; i < 8; ++i)
      b.push_back(static_cast<std::uint8_t>(to >> (8 * i)));
    return b;
  };
  Bytes want = cat({{0x75, 0x0e},  // jne +14 (over the absolute jump)
                    abs_jump(kSrc + 0x12),
                    {0x90, 0x90, 0x90},
                    abs_jump(kSrc + 5)});  // back to the original
  EXPECT_EQ(r->clone, want);
}

TEST(RelocatorBytes, RefusesBranchIntoTheMiddleOfARelocatedInstruction) {
  const Bytes code = {
      0x74, 0x01,                    // je +1         -> kSrc+3, inside the mov
      0xb8, 0x01, 0x00, 0x00, 0x00,  // mov eax, 1
  };
  auto r = relocate_prologue({code, kSrc, kDst, 5, 0});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::refused);
  EXPECT_NE(r.error().what.find("middle of a relocated instruction at " + hex(kSrc + 3)),
            std::string::npos)
      << r.error().what;
}

TEST(RelocatorBytes, RefusesRipRelativeOperandOutOfTheClonesReach) {
  const Bytes code = {
      0x8b, 0x05, 0x10, 0x00, 0x00, 0x00,  // mov eax, [rip+0x10]
      0xc3,                                // ret
  };
  const Address far = kSrc + (Address{8} << 30);
  auto r = relocate_prologue({code, kSrc, far, 5, 0});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("out of range of the clone"), std::string::npos) << r.error().what;
}

TEST(RelocatorBytes, RefusesRipRelativeOperandOnTheRelocatedBytes) {
  const Bytes code = {
      0x8b, 0x05, 0xfa, 0xff, 0xff, 0xff,  // mov eax, [rip-6]   -> kSrc itself
      0xc3,                                // ret
  };
  auto r = relocate_prologue({code, kSrc, kDst, 5, 0});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("relocated bytes themselves"), std::string::npos) << r.error().what;
}

TEST(RelocatorBytes, RefusesCallReturningIntoTheOverwrittenBytes) {
  // A 14-byte absolute entry jump covers the return address kSrc+5.
  const Bytes code = cat({{0xe8}, le32(0x100), Bytes(9, 0x90)});  // call; nop x9
  auto r = relocate_prologue({code, kSrc, kDst, 14, 0});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("returns into the bytes the entry jump overwrites"),
            std::string::npos)
      << r.error().what;
}

TEST(X86WriterLabels, ResolvesForwardAndBackwardReferencesAtFlush) {
  X86Writer w(kDst);
  w.put_label(1);
  w.jcc_short_label(0x4, 2);  // je short L2
  w.jmp_near_label(1);        // jmp L1
  w.put_label(2);
  w.int3();
  ASSERT_EQ(w.flush(), std::nullopt);
  EXPECT_EQ(w.bytes(), (Bytes{0x74, 0x05, 0xe9, 0xf9, 0xff, 0xff, 0xff, 0xcc}));
}

TEST(X86WriterLabels, FlushNamesALabelNeverPlaced) {
  X86Writer w(kDst);
  w.jmp_near_label(7);
  EXPECT_EQ(w.flush(), std::optional<X86Writer::Label>(7));
}

// ---- Part two: the corpus in functions.S, hijacked in this process ----

extern "C" {
int reloc_jcc8(int);
int reloc_jmp32(int);
int reloc_call(int);
int reloc_rip_load(int);
int reloc_rip_lea(int);
int reloc_rip_store(int);
int reloc_endbr(int);
int reloc_loop_entry(int);
int reloc_jmp8_pad(int);
int reloc_short_padded(int);
int reloc_short(int);
int reloc_branch_into(int);
int reloc_jrcxz(int);
int reloc_negate(int);
extern int reloc_store;
}

namespace {

struct CorpusCase {
  const char* name;
  int (*fn)(int);
  bool positive_only = false;  // reloc_loop_entry counts its argument down to zero
};

class Corpus : public ::testing::TestWithParam<CorpusCase> {};

int call(int (*fn)(int), int x) {
  int (*volatile p)(int) = fn;
  return p(x);
}

}  // namespace

TEST_P(Corpus, CloneBehavesAsOriginalAndVersionsSwitch) {
  const auto c = GetParam();
  std::vector<int> inputs = {1, 2, 3, 17, 1000};
  if (!c.positive_only) inputs.insert(inputs.end(), {-7, -1, 0});
  std::vector<int> before;
  for (int x : inputs)
    before.push_back(call(c.fn, x));

  auto& engine = Engine::self();
  UpdateRequest req;
  req.redirects.push_back({c.name, 0, reinterpret_cast<Address>(reloc_negate), "negate"});
  auto id = engine.apply(req);
  ASSERT_TRUE(id) << id.error().message();
  auto point = engine.find(reinterpret_cast<Address>(c.fn));
  ASSERT_TRUE(point);
  auto clone = engine.original<int(int)>(*point);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(call(c.fn, inputs[i]), -inputs[i]) << c.name << " must reach the new version";
    EXPECT_EQ(call(clone, inputs[i]), before[i]) << c.name << "'s clone differs from the original";
  }
  ASSERT_TRUE(engine.revert(*id));
  for (std::size_t i = 0; i < inputs.size(); ++i)
    EXPECT_EQ(call(c.fn, inputs[i]), before[i]) << c.name << " after revert";
}

INSTANTIATE_TEST_SUITE_P(Functions, Corpus,
                         ::testing::Values(CorpusCase{"reloc_jcc8", reloc_jcc8},
                                           CorpusCase{"reloc_jmp32", reloc_jmp32},
                                           CorpusCase{"reloc_call", reloc_call},
                                           CorpusCase{"reloc_rip_load", reloc_rip_load},
                                           CorpusCase{"reloc_rip_lea", reloc_rip_lea},
                                           CorpusCase{"reloc_rip_store", reloc_rip_store},
                                           CorpusCase{"reloc_endbr", reloc_endbr},
                                           CorpusCase{"reloc_loop_entry", reloc_loop_entry, true},
                                           CorpusCase{"reloc_jmp8_pad", reloc_jmp8_pad},
                                           CorpusCase{"reloc_short_padded", reloc_short_padded}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(CorpusStore, CloneStoresToTheOriginalVariable) {
  auto& engine = Engine::self();
  auto point = engine.hijack("reloc_rip_store");
  ASSERT_TRUE(point) << point.error().message();
  auto clone = engine.original<int(int)>(*point);
  EXPECT_EQ(call(clone, 41), 42);
  EXPECT_EQ(reloc_store, 41) << "the relocated store must write the same variable";
}

TEST(CorpusRefusals, RefusedFunctionsAreLeftUntouched) {
  struct Refusal {
    const char* name;
    int (*fn)(int);
    const char* reason;
  };
  const Refusal cases[] = {
      {"reloc_short", reloc_short, "too short"},
      {"reloc_branch_into", reloc_branch_into, "inside the bytes the entry jump overwrites"},
      {"reloc_jrcxz", reloc_jrcxz, "cannot be relocated"},
  };
  for (const auto& c : cases) {
    std::uint8_t before[16];
    std::memcpy(before, reinterpret_cast<const void*>(c.fn), sizeof before);
    auto r = Engine::self().hijack(c.name);
    ASSERT_FALSE(r) << c.name << " must be refused";
    EXPECT_EQ(r.error().code, Errc::refused) << r.error().message();
    EXPECT_NE(r.error().what.find(c.reason), std::string::npos) << r.error().what;
    EXPECT_EQ(std::memcmp(before, reinterpret_cast<const void*>(c.fn), sizeof before), 0)
        << c.name << " was modified although refused";
  }
  EXPECT_EQ(call(reloc_branch_into, 3), 6);
  EXPECT_EQ(call(reloc_jrcxz, 0), 0);
}

TEST(CorpusRefusals, UnknownSymbolIsNotFound) {
  auto r = Engine::self().hijack("no_such_function_anywhere");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_found);
}
