// File: mend/core/degradation.h
//
// Degraded service: what mend answers for a task when every agent in its fallback chain failed.
// Rather than a bare error, the caller gets a useful answer for the task's type, as the user's
// specification has it:
//
//   code_review    basic checks done locally (a real bracket/string/comment check, the file
//                  size against a limit, the line count) and "Manual review recommended"
//   deployment     the manual steps (run the tests, build, deploy, verify), "Manual monitoring
//                  required"
//   ai_analysis    no result, the alternatives, and a warning not to act on a missing analysis
//   security_scan  no scan ran: block the merge or deployment until one has, and the manual tools
//   anything else  status "degraded", "Service temporarily unavailable. Please try again later.",
//                  estimated recovery "5-10 minutes", three alternatives
//
// Every text is configurable (DegradationTexts, whose defaults are the specification's), and
// handlers can be replaced or added per task type.
//
//   mend::DegradedService degraded;
//   mend::DegradedAnswer a = degraded.answer("code_review", {{"content", source}});
//   if (a.basic_checks && !a.basic_checks->syntax_valid) log(a.basic_checks->syntax_problem);
//   respond(a.to_json());   // {"task_type":"code_review","status":"degraded",...}
//
// Thread-safety: check_code is pure. DegradedService's const methods are safe from many threads
// at once; set_handler is not, and is for setting the service up before it is shared.
// Handlers run on the caller's thread; an exception thrown by a user handler reaches the caller.
#ifndef MEND_CORE_DEGRADATION_H_
#define MEND_CORE_DEGRADATION_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mend {

// The code_review basic checks.
struct CodeChecks {
  // Brackets (), [], {} balance, and every string literal and block comment is closed.
  bool syntax_valid = false;
  // The first problem found, empty when syntax_valid: "unclosed '(' opened at line 3",
  // "unterminated string at line 7", "unexpected '}' at line 9",
  // "unexpected ']' at line 4 (expected ')' for '(' opened at line 2)",
  // "unterminated block comment opened at line 5".
  std::string syntax_problem;
  // size_bytes < the size limit (the specification: len(content) < 50000).
  bool file_size_ok = false;
  std::size_t size_bytes = 0;
  // Lines as an editor shows them: "" has 0, "a" has 1, "a\n" has 1, "a\nb" has 2, "a\n\n" has
  // 2. A trailing newline ends the last line rather than starting an empty one. (The specification
  // counts '\n' characters, which says 0 for a one-line file without a final newline.)
  std::size_t line_count = 0;
};

// Checks `content` without knowing its language, so the syntax check is a heuristic that holds
// for the C family, JavaScript/TypeScript, Java, Go, Rust, Python, shell and the like:
// - brackets (), [], {} must balance and nest; the innermost unclosed one is reported;
// - '...' and "..." strings end on their line (a backslash escapes the next character, a
//   newline included); `...`, '''...''' and """...""" strings may span lines;
// - // and # start line comments, /* */ block comments: brackets and quotes inside strings and
//   comments do not count. '#' starts a comment only at the start of the text or after
//   whitespace, so that "this.#field" and "$#" are code;
// - a digit directly before ' is a digit separator (C++14 1'000'000), not a quote.
// Known limits: Python's // operator, JavaScript regex literals and Rust lifetimes ('a) can be
// misread. It is a basic check for a degraded answer, not a parser.
CodeChecks check_code(std::string_view content, std::size_t size_limit);

// A degraded answer. to_json() writes only the non-empty fields.
struct DegradedAnswer {
  std::string task_type;
  std::string status = "degraded";
  std::string message;
  std::string estimated_recovery;
  std::vector<std::string> alternatives;
  std::vector<std::string> manual_steps;
  std::string monitoring;
  std::string recommendation;
  // As the specification's object: syntax_valid, file_size_ok, line_count, size_bytes, and
  // syntax_problem when there is one.
  std::optional<CodeChecks> basic_checks;

  std::string to_json() const;
};

// Every text of the degraded answers; the defaults are the specification's (ai_analysis and
// security_scan, which the specification names without a body, are mend's).
struct DegradationTexts {
  // Unknown task types.
  std::string default_message = "Service temporarily unavailable. Please try again later.";
  std::string default_estimated_recovery = "5-10 minutes";
  std::vector<std::string> default_alternatives = {"Use manual process", "Try again later",
                                                   "Check system status"};

  // code_review: checks the task's "content" field.
  std::string code_review_message = "Full AI review unavailable. Basic checks completed.";
  std::string code_review_recommendation = "Manual review recommended";
  std::size_t code_review_size_limit = 50000;  // bytes; at or above it file_size_ok is false

  // deployment
  std::string deployment_message = "Automated deployment unavailable";
  std::vector<std::string> deployment_steps = {
      "1. Run tests manually: pytest", "2. Build image: docker build -t app:latest .",
      "3. Deploy: docker-compose up -d", "4. Verify: curl http://localhost:8000/health"};
  std::string deployment_monitoring = "Manual monitoring required";

  // ai_analysis: nothing can stand in for the analysis, so say so and what else there is.
  std::string ai_analysis_message = "AI analysis unavailable. No analysis was performed.";
  std::vector<std::string> ai_analysis_alternatives = {
      "Resubmit the analysis when the AI agents have recovered",
      "Use rule-based or static analysis tools for a first look",
      "Ask a domain expert for a manual analysis"};
  std::string ai_analysis_recommendation =
      "Do not act on this result: no analysis backs it. Queue the task for reanalysis.";

  // security_scan: a missing scan must not read as a clean one.
  std::string security_scan_message =
      "Automated security scan unavailable. The code has NOT been scanned.";
  std::vector<std::string> security_scan_steps = {
      "1. Audit dependencies for known vulnerabilities: pip-audit, npm audit or osv-scanner",
      "2. Run a static security analyzer: semgrep --config auto, or bandit -r . for Python",
      "3. Scan for committed secrets: gitleaks detect",
      "4. Have a second reviewer check security-sensitive changes"};
  std::string security_scan_recommendation =
      "Block the merge or deployment until a security scan has run";
};

class DegradedService {
 public:
  // The task's top-level string fields, e.g. "content" for code_review.
  using Fields = std::map<std::string, std::string>;
  using Handler = std::function<DegradedAnswer(std::string_view task_type, const Fields&)>;

  // Installs the handlers for code_review, deployment, ai_analysis and security_scan.
  explicit DegradedService(DegradationTexts texts = {});

  // Replaces the handler of `task_type`, or adds one. An empty handler removes it (the type
  // then gets the default answer).
  void set_handler(std::string task_type, Handler handler);
  bool has_handler(std::string_view task_type) const;

  // The handler's answer, or the default answer for a type without one. task_type is filled
  // in when the handler left it empty.
  DegradedAnswer answer(std::string_view task_type, const Fields& fields) const;

  const DegradationTexts& texts() const noexcept { return *texts_; }

 private:
  std::shared_ptr<const DegradationTexts> texts_;  // shared with the built-in handlers
  std::map<std::string, Handler, std::less<>> handlers_;
};

}  // namespace mend

#endif  // MEND_CORE_DEGRADATION_H_
