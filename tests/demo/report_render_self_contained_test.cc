// The `mend demo` HTML report as text, no browser needed: the page loads nothing from outside,
// and its embedded data round-trips and cannot close its script.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <string>

#include "demo_report.h"
#include "report_render_test_support.h"

namespace mend::testing {
namespace {

using nlohmann::json;
using report_render_test_support::count;
using report_render_test_support::realistic_report;
using report_render_test_support::ReportRenderHtml;
using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(ReportRenderHtml, PageLoadsNothingFromOutside) {
  for (const json& report : {realistic_report(), json::object()}) {
    std::string html = app::render_demo_html(report);
    std::transform(html.begin(), html.end(), html.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const char* loader : {"src=", "href=", "<link", "@import", "url(", "<iframe", "<object",
                               "<embed", "<img", "fetch(", "xmlhttprequest", "import("}) {
      EXPECT_THAT(html, Not(HasSubstr(loader)));
    }
    EXPECT_EQ(count(html, "<script"), 3u);
    EXPECT_THAT(html, HasSubstr("content=\"default-src 'none'"));
  }
}

TEST_F(ReportRenderHtml, EmbeddedDataRoundTripsAndCannotCloseItsScript) {
  json report = realistic_report();
  report["title"] = "a </SCRIPT > b <!-- c & d ]]> \u2028 \"quoted\"";
  report["records"][0]["title"] = std::string("bad utf-8: \xff\xfe end");
  const std::string html = app::render_demo_html(report);
  const std::string open = "<script type=\"application/json\" id=\"report-data\">";
  std::size_t begin = html.find(open);
  ASSERT_NE(begin, std::string::npos);
  begin += open.size();
  const std::string data = html.substr(begin, html.find("</script>", begin) - begin);
  EXPECT_THAT(data, Not(HasSubstr("<")));
  EXPECT_THAT(data, Not(HasSubstr(">")));
  EXPECT_THAT(data, Not(HasSubstr("&")));
  json parsed = json::parse(data);
  EXPECT_EQ(parsed["title"], report["title"]);
  EXPECT_EQ(parsed["tasks"], report["tasks"]);
  EXPECT_EQ(parsed["records"][0]["title"], "bad utf-8: \xef\xbf\xbd\xef\xbf\xbd end");
}

}  // namespace
}  // namespace mend::testing
