#include "mend/core/text.h"

#include <gtest/gtest.h>

namespace mend {
namespace {

using namespace std::chrono_literals;

TEST(Text, AsciiLowerLeavesOtherBytesAlone) {
  EXPECT_EQ(ascii_lower("Bearer TOKEN-1"), "bearer token-1");
  EXPECT_EQ(ascii_lower("\xC3\x89t\xC3\xA9"), "\xC3\x89t\xC3\xA9");  // UTF-8 passes unchanged
  EXPECT_EQ(ascii_lower(""), "");
}

TEST(Text, DurationsAreWrittenAsTheConfigurationSpellsThem) {
  EXPECT_EQ(duration_text(0s), "0s");
  EXPECT_EQ(duration_text(48h), "2d");
  EXPECT_EQ(duration_text(2h), "2h");
  EXPECT_EQ(duration_text(90min), "90m");
  EXPECT_EQ(duration_text(90s), "90s");
  EXPECT_EQ(duration_text(250ms), "250ms");
  EXPECT_EQ(duration_text(1500us), "0.0015s");
}

TEST(Text, MeasuredSecondsReadAtAGlance) {
  EXPECT_EQ(seconds_text(0.0004), "0.4 ms");
  EXPECT_EQ(seconds_text(0.0417), "42 ms");
  EXPECT_EQ(seconds_text(1.5), "1.50 s");
  EXPECT_EQ(seconds_text(41.73), "41.7 s");
}

}  // namespace
}  // namespace mend
