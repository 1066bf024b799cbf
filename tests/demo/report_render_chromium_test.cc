// The headless-Chromium harness the report tests use (chromium.h): a screenshot writes a PNG of
// the size asked, a missing browser is a clear error, a hung one is killed with its children.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "chromium.h"
#include "demo_report.h"
#include "mend_test/temp_dir.h"
#include "report_render_test_support.h"

namespace mend::testing {
namespace {

using report_render_test_support::realistic_report;
using report_render_test_support::ReportRenderChromium;
using report_render_test_support::write_page;
using ::testing::HasSubstr;

TEST_F(ReportRenderChromium, ScreenshotWritesAPng) {
  const std::string page = write_page(dir_, "report.html", realistic_report());
  const std::string png = dir_.file("report.png");
  auto start = std::chrono::steady_clock::now();
  RenderedPage shot = screenshot(page, png, 1280, 2200);
  ASSERT_TRUE(shot.ok) << shot.error;
  std::cout << "[ chromium ] screenshot in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count()
            << " ms\n";
  std::ifstream in(png, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GE(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  auto be32 = [&](std::size_t at) {
    return (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at])) << 24) |
           (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
           (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
           static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 1280u);  // IHDR width and height
  EXPECT_EQ(be32(20), 2200u);
  EXPECT_GT(bytes.size(), 60u * 1024) << "a page of charts compresses to more than this";
}

TEST(ReportRenderChromiumSupport, MissingBrowserIsAClearError) {
  const char* saved = std::getenv("MEND_CHROMIUM");
  std::string restore = saved != nullptr ? saved : "";
  ::setenv("MEND_CHROMIUM", "/nonexistent/chromium", 1);
  EXPECT_EQ(find_chromium(), "");
  RenderedPage page = render_dom("/nonexistent.html");
  EXPECT_FALSE(page.ok);
  EXPECT_THAT(page.error, HasSubstr("scripts/setup.sh"));
  if (saved != nullptr) {
    ::setenv("MEND_CHROMIUM", restore.c_str(), 1);
  } else {
    ::unsetenv("MEND_CHROMIUM");
  }
}

// A browser that hangs is killed at the timeout, with the processes it started.
TEST(ReportRenderChromiumSupport, AHungBrowserIsKilledWithItsChildrenAtTheTimeout) {
  TempDir dir("mend-chromium-hang");
  const std::string fake = dir.file("fake-chromium"), pid_file = dir.file("child.pid");
  std::ofstream(fake) << "#!/bin/sh\nsleep 60 &\necho $! > " << pid_file << "\nwait\n";
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  const char* saved = std::getenv("MEND_CHROMIUM");
  std::string restore = saved != nullptr ? saved : "";
  ::setenv("MEND_CHROMIUM", fake.c_str(), 1);
  auto start = std::chrono::steady_clock::now();
  // 2 s: time enough under load for the fake to start its child and write the pid.
  RenderedPage page = render_dom(dir.file("page.html"), std::chrono::milliseconds(2000));
  auto elapsed = std::chrono::steady_clock::now() - start;
  if (saved != nullptr) {
    ::setenv("MEND_CHROMIUM", restore.c_str(), 1);
  } else {
    ::unsetenv("MEND_CHROMIUM");
  }
  EXPECT_FALSE(page.ok);
  EXPECT_THAT(page.error, HasSubstr("no result after 2000 ms"));
  EXPECT_LT(elapsed, std::chrono::seconds(8));
  int child = 0;
  std::ifstream(pid_file) >> child;
  ASSERT_GT(child, 0);
  // Gone, or a zombie waiting for init to reap it.
  auto gone = [child] {
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string pid, comm, state;
    return !(stat >> pid >> comm >> state) || state == "Z";
  };
  for (int i = 0; i < 100 && !gone(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(gone()) << "the fake browser's child " << child << " survived";
}

}  // namespace
}  // namespace mend::testing
