#include "mend/core/boxed.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>

namespace mend {
namespace {

TEST(BoxedTest, IsOnePointerWideAndEmptyByDefault) {
  static_assert(sizeof(Boxed<std::string>) == sizeof(void*));
  Boxed<std::string> box;
  EXPECT_FALSE(box.has_value());
  EXPECT_FALSE(box);
  EXPECT_THROW((void)box.value(), std::bad_optional_access);
}

TEST(BoxedTest, HoldsAssignsAndResetsAValueAsAnOptionalDoes) {
  Boxed<std::string> box = std::string("first");
  ASSERT_TRUE(box);
  EXPECT_EQ(*box, "first");
  EXPECT_EQ(box->size(), 5u);
  box = std::string("second");  // assigned into the existing value
  EXPECT_EQ(box.value(), "second");
  box = std::nullopt;
  EXPECT_FALSE(box.has_value());
  box.emplace(3, 'x');
  EXPECT_EQ(*box, "xxx");
  box.reset();
  EXPECT_FALSE(box);
}

TEST(BoxedTest, CopiesAreDeepAndMovesLeaveTheSourceEmpty) {
  Boxed<std::string> a = std::string("value");
  Boxed<std::string> b = a;
  ASSERT_TRUE(b);
  *b = "changed";
  EXPECT_EQ(*a, "value");  // not shared
  b = a;
  EXPECT_EQ(*b, "value");
  Boxed<std::string> empty;
  b = empty;
  EXPECT_FALSE(b);

  const Boxed<std::string>& same = a;
  a = same;  // self-assignment keeps the value
  EXPECT_EQ(*a, "value");

  Boxed<std::string> moved = std::move(a);
  EXPECT_EQ(*moved, "value");
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): documented: a moved-from box is empty
  std::string taken = std::move(moved).value();
  EXPECT_EQ(taken, "value");
}

}  // namespace
}  // namespace mend
