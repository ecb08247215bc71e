// Broad relocation: clone every function symbol of libm (and a sample of libc's
// pure functions) without touching the originals, then call the math functions
// through their clones over many inputs: the results must be bit-identical. Prints
// how many functions were cloned and how many refused, by reason.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <regex>

#include "core/near_memory.hpp"
#include "core/patch_point.hpp"
#include "core/symbols.hpp"
#include "core/target.hpp"

using namespace dynamos;
using namespace dynamos::core;

namespace {

struct Cloner {
  std::unique_ptr<Target> target = make_local_target();
  NearMemory near{*target};

  // The clone of the function at `entry`: calling it runs the original behaviour.
  Result<Address> clone(Address entry, std::size_t size, const std::string& name) {
    auto p = prepare_hijack(*target, near, {entry, size, name}, false);
    if (!p) return std::unexpected(p.error());
    return p->clone;
  }
};

// The reason of a refusal without addresses, names and counts, for grouping.
std::string reason_of(const Error& e) {
  std::string r = e.what;
  if (auto colon = r.find(": "); colon != std::string::npos) r = r.substr(colon + 2);
  r = std::regex_replace(r, std::regex("0x[0-9a-f]+"), "ADDR");
  r = std::regex_replace(r, std::regex("\\([0-9]+ bytes\\)"), "(N bytes)");
  r = std::regex_replace(r, std::regex("'[^']*'"), "'INSN'");
  return r;
}

bool same_bits(double a, double b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof a) == 0;
}

void* libm() {
  static void* h = dlopen("libm.so.6", RTLD_NOW | RTLD_NOLOAD);
  return h ? h : dlopen("libm.so.6", RTLD_NOW);
}

std::vector<double> inputs() {
  std::vector<double> v = {0.0,    -0.0,  0.5,   1.0,      -1.0,  2.0,      3.14159,   10.0,
                           1e-300, 1e300, -7.25, 0.999999, 100.5, INFINITY, -INFINITY, NAN};
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> small(-4.0, 4.0), big(-1e6, 1e6);
  for (int i = 0; i < 400; ++i)
    v.push_back(i % 2 ? small(rng) : big(rng));
  return v;
}

}  // namespace

// Clones every function symbol of the mapped object whose path contains `object`;
// returns {functions, cloned} and prints the refusals grouped by reason.
std::pair<std::size_t, int> clone_all(const char* object) {
  Cloner c;
  auto syms = Symbols::load(*c.target);
  EXPECT_TRUE(syms) << syms.error().message();
  if (!syms) return {0, 0};
  const LoadedObject* m = nullptr;
  for (const auto& o : syms->objects())
    if (o.path.find(object) != std::string::npos) m = &o;
  EXPECT_NE(m, nullptr) << object << " is not mapped";
  if (!m) return {0, 0};

  std::map<Address, const Symbol*> unique;
  for (const auto& s : m->functions)
    unique.emplace(s.address, &s);
  int cloned = 0, refused = 0;
  std::map<std::string, int> reasons;
  for (const auto& [address, s] : unique) {
    auto r = c.clone(address, s->size, s->name);
    if (r) {
      ++cloned;
    } else {
      ++refused;
      ++reasons[reason_of(r.error())];
      EXPECT_EQ(r.error().code, Errc::refused) << s->name << ": " << r.error().message();
    }
  }
  std::printf("%s: %zu functions, %d cloned, %d refused\n", m->path.c_str(), unique.size(), cloned,
              refused);
  for (const auto& [reason, n] : reasons)
    std::printf("  refused %4d: %s\n", n, reason.c_str());
  return {unique.size(), cloned};
}

TEST(BroadRelocation, EveryLibmFunctionClonedOrRefusedWithAReason) {
  ASSERT_NE(libm(), nullptr) << dlerror();
  auto [functions, cloned] = clone_all("/libm.so");
  EXPECT_GT(functions, 300u);
  EXPECT_GT(cloned, static_cast<int>(functions * 9 / 10)) << "too many refusals";
}

TEST(BroadRelocation, EveryLibcFunctionClonedOrRefusedWithAReason) {
  auto [functions, cloned] = clone_all("/libc.so");
  EXPECT_GT(functions, 1000u);
  EXPECT_GT(cloned, static_cast<int>(functions * 8 / 10)) << "too many refusals";
}

TEST(BroadRelocation, MathFunctionsGiveIdenticalResultsThroughTheirClones) {
  ASSERT_NE(libm(), nullptr) << dlerror();
  Cloner c;
  const char* unary[] = {
      "sin",       "cos",   "tan",  "asin",   "acos",   "atan",  "sinh", "cosh",  "tanh",  "asinh",
      "acosh",     "atanh", "exp",  "exp2",   "expm1",  "log",   "log2", "log10", "log1p", "sqrt",
      "cbrt",      "erf",   "erfc", "tgamma", "lgamma", "floor", "ceil", "trunc", "round", "rint",
      "nearbyint", "fabs",  "logb", "j0",     "j1",     "y0",    "y1"};
  const char* binary[] = {"pow",  "atan2",    "fmod",      "hypot",     "fmin",
                          "fmax", "copysign", "remainder", "nextafter", "fdim"};
  const auto xs = inputs();
  int checked = 0;
  for (const char* name : unary) {
    auto fn = reinterpret_cast<double (*)(double)>(dlsym(libm(), name));
    ASSERT_NE(fn, nullptr) << name;
    auto clone = c.clone(reinterpret_cast<Address>(fn), 0, name);
    if (!clone) {
      std::printf("  %s refused: %s\n", name, clone.error().message().c_str());
      continue;
    }
    auto cl = reinterpret_cast<double (*)(double)>(*clone);
    for (double x : xs) {
      ASSERT_TRUE(same_bits(fn(x), cl(x))) << name << "(" << x << "): " << fn(x) << " vs " << cl(x);
      ++checked;
    }
  }
  for (const char* name : binary) {
    auto fn = reinterpret_cast<double (*)(double, double)>(dlsym(libm(), name));
    ASSERT_NE(fn, nullptr) << name;
    auto clone = c.clone(reinterpret_cast<Address>(fn), 0, name);
    if (!clone) {
      std::printf("  %s refused: %s\n", name, clone.error().message().c_str());
      continue;
    }
    auto cl = reinterpret_cast<double (*)(double, double)>(*clone);
    for (std::size_t i = 0; i + 1 < xs.size(); ++i) {
      ASSERT_TRUE(same_bits(fn(xs[i], xs[i + 1]), cl(xs[i], xs[i + 1])))
          << name << "(" << xs[i] << ", " << xs[i + 1] << ")";
      ++checked;
    }
  }
  std::printf("math: %d calls compared through clones\n", checked);
  EXPECT_GT(checked, 15000);
}

TEST(BroadRelocation, LibcPureFunctionsGiveIdenticalResultsThroughTheirClones) {
  Cloner c;
  const char* words[] = {
      "", "a", "hello", "hello world", "Zeta-42", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxy"};
  auto clone_of = [&](const char* name) -> void* {
    void* fn = dlsym(RTLD_DEFAULT, name);  // the IFUNC's choice for this CPU
    EXPECT_NE(fn, nullptr) << name;
    auto cl = c.clone(reinterpret_cast<Address>(fn), 0, name);
    if (!cl) {
      std::printf("  %s refused: %s\n", name, cl.error().message().c_str());
      return nullptr;
    }
    return reinterpret_cast<void*>(*cl);
  };
  int checked = 0;
  if (auto cl = reinterpret_cast<std::size_t (*)(const char*)>(clone_of("strlen")))
    for (const char* w : words) {
      EXPECT_EQ(cl(w), std::strlen(w));
      ++checked;
    }
  if (auto cl = reinterpret_cast<int (*)(const char*, const char*)>(clone_of("strcmp")))
    for (const char* a : words)
      for (const char* b : words) {
        EXPECT_EQ(cl(a, b) < 0, std::strcmp(a, b) < 0);
        ++checked;
      }
  if (auto cl = reinterpret_cast<const char* (*)(const char*, int)>(clone_of("strchr")))
    for (const char* w : words) {
      EXPECT_EQ(cl(w, 'o'), std::strchr(w, 'o'));
      ++checked;
    }
  if (auto cl = reinterpret_cast<int (*)(int)>(clone_of("abs")))
    for (int x : {0, 1, -1, 42, -100000}) {
      EXPECT_EQ(cl(x), std::abs(x));
      ++checked;
    }
  if (auto cl = reinterpret_cast<int (*)(int)>(clone_of("toupper")))
    for (int ch = 0; ch < 256; ++ch) {
      EXPECT_EQ(cl(ch), std::toupper(ch));
      ++checked;
    }
  if (auto cl = reinterpret_cast<int (*)(const char*)>(clone_of("atoi")))
    for (const char* s : {"0", "42", "-17", "  99x", "abc"}) {
      EXPECT_EQ(cl(s), std::atoi(s));
      ++checked;
    }
  std::printf("libc: %d calls compared through clones\n", checked);
  EXPECT_GT(checked, 250);
}
