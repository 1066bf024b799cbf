#include "mend/core/degradation.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace mend {
namespace {

using nlohmann::json;

CodeChecks check(std::string_view code) {
  return check_code(code, 50000);
}

// --- check_code: syntax ---------------------------------------------------------------------

TEST(CheckCode, BalancedCodeIsValid) {
  const CodeChecks c = check(
      "int main() {\n"
      "  std::vector<int> v{1, 2, 3};\n"
      "  return v[0] + f((1), [2]);\n"
      "}\n");
  EXPECT_TRUE(c.syntax_valid);
  EXPECT_EQ(c.syntax_problem, "");
}

TEST(CheckCode, EmptyInput) {
  const CodeChecks c = check("");
  EXPECT_TRUE(c.syntax_valid);
  EXPECT_TRUE(c.file_size_ok);
  EXPECT_EQ(c.size_bytes, 0u);
  EXPECT_EQ(c.line_count, 0u);
}

TEST(CheckCode, UnclosedParenReportsItsLine) {
  const CodeChecks c = check("def f():\n    pass\nprint(f(\n    1)\nx = 2\n");
  EXPECT_FALSE(c.syntax_valid);
  EXPECT_EQ(c.syntax_problem, "unclosed '(' opened at line 3");
}

TEST(CheckCode, InnermostUnclosedBracketIsReported) {
  EXPECT_EQ(check("{\n  [\n    (\n").syntax_problem, "unclosed '(' opened at line 3");
  EXPECT_EQ(check("{\n  [ ]\n").syntax_problem, "unclosed '{' opened at line 1");
}

TEST(CheckCode, UnexpectedCloserReportsItsLine) {
  EXPECT_EQ(check("a\nb\n}\n").syntax_problem, "unexpected '}' at line 3");
  EXPECT_EQ(check(")").syntax_problem, "unexpected ')' at line 1");
}

TEST(CheckCode, MismatchedCloserNamesBothEnds) {
  EXPECT_EQ(check("x = [\n  f(1\n]\n").syntax_problem,
            "unexpected ']' at line 3 (expected ')' for '(' opened at line 2)");
}

TEST(CheckCode, BracketsInsideStringsAreIgnored) {
  EXPECT_TRUE(check(R"(s = "(((" + '}}' + `[[`;)").syntax_valid);
  EXPECT_TRUE(check("log(\"unbalanced ) in a string\")").syntax_valid);
}

TEST(CheckCode, BracketsInsideCommentsAreIgnored) {
  EXPECT_TRUE(check("f(1) // ) ) )\nx = 1\n").syntax_valid);
  EXPECT_TRUE(check("f(1) # } } }\n").syntax_valid);
  EXPECT_TRUE(check("#include <x> (\nint y;\n").syntax_valid);
  EXPECT_TRUE(check("a /* ( [ {\n still ' \" comment */ b").syntax_valid);
  // Quotes inside comments do not open strings.
  EXPECT_TRUE(check("// don't\nx = 1\n").syntax_valid);
}

TEST(CheckCode, CommentMarkersInsideStringsAreText) {
  EXPECT_TRUE(check(R"(url = "http://example.com/*"; f(1))").syntax_valid);
  EXPECT_EQ(check("s = \"# not a comment\" )").syntax_problem, "unexpected ')' at line 1");
}

TEST(CheckCode, HashIsACommentOnlyAfterWhitespace) {
  // JavaScript private fields and shell's $# are code, so the ')' counts.
  EXPECT_TRUE(check("f(this.#count)").syntax_valid);
  EXPECT_TRUE(check("echo $(($# + 1))").syntax_valid);
}

TEST(CheckCode, UnterminatedStringReportsItsLine) {
  EXPECT_EQ(check("a = 1\nb = 2\nc = \"oops\nd = 4\n").syntax_problem,
            "unterminated string at line 3");
  EXPECT_EQ(check("x = 'abc").syntax_problem, "unterminated string at line 1");
  EXPECT_EQ(check("x = `abc\n\ndef").syntax_problem, "unterminated string at line 1");
}

TEST(CheckCode, EscapedQuotesDoNotCloseStrings) {
  EXPECT_TRUE(check(R"(s = "say \"hi\" (" ; t = 'it\'s')").syntax_valid);
  EXPECT_TRUE(check(R"(s = "back\\"; f(s))").syntax_valid);  // escaped backslash, then close
  EXPECT_EQ(check(R"(s = "end\")").syntax_problem, "unterminated string at line 1");
}

TEST(CheckCode, BackslashNewlineContinuesAString) {
  const CodeChecks c = check("s = \"one \\\ntwo\"\n)");
  EXPECT_EQ(c.syntax_problem, "unexpected ')' at line 3");
}

TEST(CheckCode, MultiLineStrings) {
  EXPECT_TRUE(check("doc = \"\"\"\nIt's a ( docstring\n\"\"\"\nf()\n").syntax_valid);
  EXPECT_TRUE(check("t = '''\n[\n'''").syntax_valid);
  EXPECT_TRUE(check("html = `\n<div>{</div>\n`;").syntax_valid);
  EXPECT_EQ(check("x = \"\"\"\nnever closed\n").syntax_problem, "unterminated string at line 1");
  // Lines inside multi-line strings still count.
  EXPECT_EQ(check("`a\nb\nc`\n)").syntax_problem, "unexpected ')' at line 4");
}

TEST(CheckCode, EmptyStrings) {
  EXPECT_TRUE(check(R"(f("", '', ``))").syntax_valid);
}

TEST(CheckCode, UnterminatedBlockComment) {
  EXPECT_EQ(check("int x;\n/* start\n( still comment\n").syntax_problem,
            "unterminated block comment opened at line 2");
}

TEST(CheckCode, DigitSeparatorIsNotAQuote) {
  EXPECT_TRUE(check("auto n = f(1'000'000);").syntax_valid);
}

TEST(CheckCode, LinesCountedAfterCommentsAndStrings) {
  EXPECT_EQ(check("/* a\nb */\n// c\n'd'\n}").syntax_problem, "unexpected '}' at line 5");
}

TEST(CheckCode, DeepNestingDoesNotCrash) {
  const std::string deep = std::string(100000, '(') + std::string(100000, ')');
  EXPECT_TRUE(check_code(deep, 1000000).syntax_valid);
  EXPECT_EQ(check_code(std::string(100000, '['), 1000000).syntax_problem,
            "unclosed '[' opened at line 1");
}

TEST(CheckCode, BinaryInputDoesNotCrash) {
  std::string bytes;
  for (int i = 0; i < 4096; ++i) bytes.push_back(static_cast<char>((i * 37) & 0xff));
  const CodeChecks c = check(bytes);
  EXPECT_EQ(c.size_bytes, bytes.size());
  EXPECT_EQ(c.syntax_valid, c.syntax_problem.empty());
}

// --- check_code: size and lines ------------------------------------------------------------

TEST(CheckCode, SizeLimitBoundary) {
  EXPECT_TRUE(check(std::string(49999, 'x')).file_size_ok);
  EXPECT_FALSE(check(std::string(50000, 'x')).file_size_ok);
  EXPECT_EQ(check(std::string(50000, 'x')).size_bytes, 50000u);
  EXPECT_FALSE(check_code("", 0).file_size_ok);  // a zero limit admits nothing
}

TEST(CheckCode, LineCounts) {
  EXPECT_EQ(check("a").line_count, 1u);
  EXPECT_EQ(check("a\n").line_count, 1u);
  EXPECT_EQ(check("a\nb").line_count, 2u);
  EXPECT_EQ(check("a\nb\n").line_count, 2u);
  EXPECT_EQ(check("a\n\n").line_count, 2u);
  EXPECT_EQ(check("\n").line_count, 1u);
  EXPECT_EQ(check("a\r\nb\r\n").line_count, 2u);
}

// --- DegradedService ------------------------------------------------------------------------

TEST(DegradedService, DefaultAnswerForUnknownTypes) {
  DegradedService service;
  EXPECT_FALSE(service.has_handler("translation"));
  const DegradedAnswer a = service.answer("translation", {});
  EXPECT_EQ(a.task_type, "translation");
  EXPECT_EQ(a.status, "degraded");
  EXPECT_EQ(a.message, "Service temporarily unavailable. Please try again later.");
  EXPECT_EQ(a.estimated_recovery, "5-10 minutes");
  EXPECT_EQ(a.alternatives, (std::vector<std::string>{"Use manual process", "Try again later",
                                                      "Check system status"}));
  EXPECT_FALSE(a.basic_checks.has_value());

  const json j = json::parse(a.to_json());
  EXPECT_EQ(j, json::parse(R"({"task_type":"translation","status":"degraded",
      "message":"Service temporarily unavailable. Please try again later.",
      "estimated_recovery":"5-10 minutes",
      "alternatives":["Use manual process","Try again later","Check system status"]})"));
}

TEST(DegradedService, CodeReviewRunsBasicChecks) {
  DegradedService service;
  ASSERT_TRUE(service.has_handler("code_review"));
  const DegradedAnswer a = service.answer("code_review", {{"content", "f(\n1\n"}});
  EXPECT_EQ(a.status, "degraded");
  EXPECT_EQ(a.message, "Full AI review unavailable. Basic checks completed.");
  EXPECT_EQ(a.recommendation, "Manual review recommended");
  ASSERT_TRUE(a.basic_checks.has_value());
  EXPECT_FALSE(a.basic_checks->syntax_valid);
  EXPECT_EQ(a.basic_checks->syntax_problem, "unclosed '(' opened at line 1");
  EXPECT_TRUE(a.basic_checks->file_size_ok);
  EXPECT_EQ(a.basic_checks->line_count, 2u);

  const json j = json::parse(a.to_json());
  EXPECT_EQ(j["basic_checks"], json::parse(R"({"syntax_valid":false,"file_size_ok":true,
      "line_count":2,"size_bytes":5,"syntax_problem":"unclosed '(' opened at line 1"})"));
  EXPECT_FALSE(j.contains("alternatives"));
  EXPECT_FALSE(j.contains("manual_steps"));
}

TEST(DegradedService, CodeReviewWithoutContentChecksEmptyText) {
  DegradedService service;
  const DegradedAnswer a = service.answer("code_review", {{"language", "python"}});
  ASSERT_TRUE(a.basic_checks.has_value());
  EXPECT_TRUE(a.basic_checks->syntax_valid);
  EXPECT_EQ(a.basic_checks->line_count, 0u);
  const json j = json::parse(a.to_json());
  EXPECT_FALSE(j["basic_checks"].contains("syntax_problem"));
  EXPECT_EQ(j["basic_checks"]["syntax_valid"], true);
}

TEST(DegradedService, CodeReviewSizeLimitFromTexts) {
  DegradationTexts texts;
  texts.code_review_size_limit = 10;
  DegradedService service(texts);
  EXPECT_TRUE(service.answer("code_review", {{"content", "123456789"}}).basic_checks->file_size_ok);
  EXPECT_FALSE(
      service.answer("code_review", {{"content", "1234567890"}}).basic_checks->file_size_ok);
}

TEST(DegradedService, DeploymentGivesManualSteps) {
  DegradedService service;
  const DegradedAnswer a = service.answer("deployment", {});
  EXPECT_EQ(a.message, "Automated deployment unavailable");
  EXPECT_EQ(
      a.manual_steps,
      (std::vector<std::string>{
          "1. Run tests manually: pytest", "2. Build image: docker build -t app:latest .",
          "3. Deploy: docker-compose up -d", "4. Verify: curl http://localhost:8000/health"}));
  EXPECT_EQ(a.monitoring, "Manual monitoring required");
  const json j = json::parse(a.to_json());
  EXPECT_EQ(j["manual_steps"].size(), 4u);
  EXPECT_EQ(j["monitoring"], "Manual monitoring required");
  EXPECT_EQ(j["status"], "degraded");
}

TEST(DegradedService, AiAnalysisSaysNothingWasAnalysed) {
  DegradedService service;
  ASSERT_TRUE(service.has_handler("ai_analysis"));
  const DegradedAnswer a = service.answer("ai_analysis", {});
  EXPECT_EQ(a.status, "degraded");
  EXPECT_NE(a.message.find("No analysis was performed"), std::string::npos);
  EXPECT_EQ(a.alternatives.size(), 3u);
  EXPECT_NE(a.recommendation.find("Do not act"), std::string::npos);
  EXPECT_EQ(a.estimated_recovery, "5-10 minutes");
  EXPECT_TRUE(json::accept(a.to_json()));
}

TEST(DegradedService, SecurityScanBlocksUntilScanned) {
  DegradedService service;
  ASSERT_TRUE(service.has_handler("security_scan"));
  const DegradedAnswer a = service.answer("security_scan", {{"content", "x"}});
  EXPECT_NE(a.message.find("NOT been scanned"), std::string::npos);
  EXPECT_EQ(a.recommendation, "Block the merge or deployment until a security scan has run");
  EXPECT_EQ(a.manual_steps.size(), 4u);
  const json j = json::parse(a.to_json());
  EXPECT_EQ(j["task_type"], "security_scan");
  EXPECT_FALSE(j.contains("basic_checks"));
}

TEST(DegradedService, CustomTexts) {
  DegradationTexts texts;
  texts.default_message = "Wartung";
  texts.default_estimated_recovery = "1 hour";
  texts.default_alternatives = {"Call Bob"};
  texts.deployment_steps = {"make deploy"};
  texts.code_review_recommendation = "Ask a colleague";
  DegradedService service(texts);
  const DegradedAnswer d = service.answer("other", {});
  EXPECT_EQ(d.message, "Wartung");
  EXPECT_EQ(d.estimated_recovery, "1 hour");
  EXPECT_EQ(d.alternatives, std::vector<std::string>{"Call Bob"});
  EXPECT_EQ(service.answer("deployment", {}).manual_steps, std::vector<std::string>{"make deploy"});
  EXPECT_EQ(service.answer("code_review", {}).recommendation, "Ask a colleague");
  EXPECT_EQ(service.texts().default_message, "Wartung");
}

TEST(DegradedService, HandlerOverrideAndAddition) {
  DegradedService service;
  service.set_handler("deployment", [](std::string_view type, const DegradedService::Fields& f) {
    DegradedAnswer a;
    a.message = std::string(type) + " paused for " + f.at("service");
    return a;
  });
  service.set_handler("translation", [](std::string_view, const DegradedService::Fields&) {
    DegradedAnswer a;
    a.task_type = "translation/v2";
    a.status = "partial";
    a.message = "dictionary lookup only";
    return a;
  });
  const DegradedAnswer d = service.answer("deployment", {{"service", "billing"}});
  EXPECT_EQ(d.message, "deployment paused for billing");
  EXPECT_EQ(d.task_type, "deployment");  // filled in
  EXPECT_TRUE(d.manual_steps.empty());
  const DegradedAnswer t = service.answer("translation", {});
  EXPECT_EQ(t.task_type, "translation/v2");  // the handler's own kept
  EXPECT_EQ(t.status, "partial");

  service.set_handler("translation", nullptr);  // removed: back to the default answer
  EXPECT_FALSE(service.has_handler("translation"));
  EXPECT_EQ(service.answer("translation", {}).estimated_recovery, "5-10 minutes");
}

TEST(DegradedService, CopiesKeepWorking) {
  DegradationTexts texts;
  texts.deployment_message = "copied";
  std::optional<DegradedService> original(std::in_place, texts);
  DegradedService copy = *original;
  original.reset();
  EXPECT_EQ(copy.answer("deployment", {}).message, "copied");
}

TEST(DegradedAnswerJson, OnlyNonEmptyFieldsAndEscaping) {
  DegradedAnswer a;
  a.task_type = "x";
  a.message = "quote \" newline \n bad \xFF";
  const std::string text = a.to_json();
  const json j = json::parse(text);
  EXPECT_EQ(j.size(), 3u);  // task_type, status, message
  EXPECT_EQ(j["message"], "quote \" newline \n bad \xEF\xBF\xBD");

  DegradedAnswer empty;
  empty.status.clear();
  EXPECT_EQ(empty.to_json(), "{}");
}

}  // namespace
}  // namespace mend
