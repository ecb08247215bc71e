#include "core/engine.hpp"

#include <gtest/gtest.h>

#include "tests/core/functions.hpp"

using namespace dynamos;
using namespace dynamos::core;

namespace {

Address addr(auto* fn) {
  return reinterpret_cast<Address>(fn);
}

// Calls through a volatile pointer so the compiler cannot fold the call away.
template <class Fn>
Fn* opaque(Fn* fn) {
  Fn* volatile p = fn;
  return p;
}

}  // namespace

TEST(Engine, RedirectsByNameAndRevertsAndKeepsOriginalCallable) {
  auto& engine = Engine::self();
  ASSERT_EQ(opaque(dyn_add)(2, 3), 5);
  UpdateRequest req;
  req.redirects.push_back({"dyn_add", 0, addr(dyn_add_v2), "v2"});
  auto id = engine.apply(req);
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(opaque(dyn_add)(2, 3), 1005) << "calls must reach the new version";

  auto point = engine.find(addr(dyn_add));
  ASSERT_TRUE(point);
  auto original = engine.original<int(int, int)>(*point);
  ASSERT_NE(original, nullptr);
  EXPECT_EQ(original(2, 3), 5) << "the clone must behave as the original";

  ASSERT_TRUE(engine.revert(*id));
  EXPECT_EQ(opaque(dyn_add)(2, 3), 5) << "revert must restore the original";
}
