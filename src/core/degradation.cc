#include "mend/core/degradation.h"

#include <cstdint>
#include <utility>

#include "json_writer.h"

namespace mend {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

char closer_of(char opener) {
  switch (opener) {
    case '(':
      return ')';
    case '[':
      return ']';
    default:
      return '}';
  }
}

std::string quoted(char c) {
  return std::string("'") + c + "'";
}

// Lines as an editor shows them: a trailing newline ends the last line, it does not start one.
std::size_t count_lines(std::string_view s) {
  if (s.empty()) return 0;
  std::size_t newlines = 0;
  for (char c : s) newlines += (c == '\n');
  return newlines + (s.back() == '\n' ? 0 : 1);
}

// Scans the text once, tracking the line, skipping strings and comments, and keeping a stack of
// open brackets. Returns the first problem, or an empty string.
class SyntaxScanner {
 public:
  explicit SyntaxScanner(std::string_view s) : s_(s) {}

  std::string run() {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '\n') {
        ++line_;
        ++i_;
      } else if (c == '/' && peek(1) == '/') {
        skip_to_end_of_line();
      } else if (c == '#' && (i_ == 0 || is_space(s_[i_ - 1]))) {
        skip_to_end_of_line();
      } else if (c == '/' && peek(1) == '*') {
        if (!skip_block_comment()) return problem_;
      } else if (c == '\'' && i_ > 0 && is_digit(s_[i_ - 1])) {
        ++i_;  // a digit separator: 1'000'000
      } else if (c == '"' || c == '\'') {
        const bool triple = peek(1) == c && peek(2) == c;
        if (!skip_string(c, triple ? 3 : 1, /*multiline=*/triple)) return problem_;
      } else if (c == '`') {
        if (!skip_string(c, 1, /*multiline=*/true)) return problem_;
      } else if (c == '(' || c == '[' || c == '{') {
        open_.push_back({c, line_});
        ++i_;
      } else if (c == ')' || c == ']' || c == '}') {
        if (open_.empty()) return "unexpected " + quoted(c) + " at line " + std::to_string(line_);
        const Open top = open_.back();
        if (closer_of(top.bracket) != c) {
          return "unexpected " + quoted(c) + " at line " + std::to_string(line_) + " (expected " +
                 quoted(closer_of(top.bracket)) + " for " + quoted(top.bracket) +
                 " opened at line " + std::to_string(top.line) + ")";
        }
        open_.pop_back();
        ++i_;
      } else {
        ++i_;
      }
    }
    if (!open_.empty()) {
      const Open& top = open_.back();  // the innermost: the nearest to the missing closer
      return "unclosed " + quoted(top.bracket) + " opened at line " + std::to_string(top.line);
    }
    return {};
  }

 private:
  struct Open {
    char bracket;
    std::size_t line;
  };

  char peek(std::size_t ahead) const { return i_ + ahead < s_.size() ? s_[i_ + ahead] : '\0'; }

  // Leaves the newline to the main loop, which counts it.
  void skip_to_end_of_line() {
    while (i_ < s_.size() && s_[i_] != '\n') ++i_;
  }

  bool skip_block_comment() {
    const std::size_t opened_at = line_;
    i_ += 2;
    while (i_ < s_.size()) {
      if (s_[i_] == '*' && peek(1) == '/') {
        i_ += 2;
        return true;
      }
      if (s_[i_] == '\n') ++line_;
      ++i_;
    }
    problem_ = "unterminated block comment opened at line " + std::to_string(opened_at);
    return false;
  }

  // A string opened by `quote_count` `quote`s at i_ and closed by as many. Backslash escapes
  // the next character (an escaped newline continues even a one-line string).
  bool skip_string(char quote, std::size_t quote_count, bool multiline) {
    const std::size_t opened_at = line_;
    i_ += quote_count;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '\\') {
        if (peek(1) == '\n') ++line_;
        i_ += 2;
        continue;
      }
      if (c == '\n') {
        if (!multiline) break;
        ++line_;
      } else if (c == quote && closes(quote, quote_count)) {
        i_ += quote_count;
        return true;
      }
      ++i_;
    }
    problem_ = "unterminated string at line " + std::to_string(opened_at);
    return false;
  }

  bool closes(char quote, std::size_t quote_count) const {
    for (std::size_t k = 0; k < quote_count; ++k) {
      if (peek(k) != quote) return false;
    }
    return true;
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::size_t line_ = 1;
  std::vector<Open> open_;
  std::string problem_;
};

std::string_view field(const DegradedService::Fields& fields, const std::string& name) {
  auto it = fields.find(name);
  return it == fields.end() ? std::string_view() : std::string_view(it->second);
}

DegradedAnswer default_answer(const DegradationTexts& t) {
  DegradedAnswer a;
  a.message = t.default_message;
  a.estimated_recovery = t.default_estimated_recovery;
  a.alternatives = t.default_alternatives;
  return a;
}

}  // namespace

CodeChecks check_code(std::string_view content, std::size_t size_limit) {
  CodeChecks checks;
  checks.size_bytes = content.size();
  checks.file_size_ok = content.size() < size_limit;
  checks.line_count = count_lines(content);
  checks.syntax_problem = SyntaxScanner(content).run();
  checks.syntax_valid = checks.syntax_problem.empty();
  return checks;
}

std::string DegradedAnswer::to_json() const {
  detail::JsonWriter w;
  w.begin_object();
  auto text = [&w](std::string_view name, const std::string& value) {
    if (!value.empty()) w.key(name).string(value);
  };
  auto list = [&w](std::string_view name, const std::vector<std::string>& values) {
    if (!values.empty()) w.key(name).string_array(values);
  };
  text("task_type", task_type);
  text("status", status);
  text("message", message);
  text("estimated_recovery", estimated_recovery);
  list("alternatives", alternatives);
  list("manual_steps", manual_steps);
  text("monitoring", monitoring);
  text("recommendation", recommendation);
  if (basic_checks) {
    w.key("basic_checks").begin_object();
    w.key("syntax_valid").boolean(basic_checks->syntax_valid);
    w.key("file_size_ok").boolean(basic_checks->file_size_ok);
    w.key("line_count").number(static_cast<std::int64_t>(basic_checks->line_count));
    w.key("size_bytes").number(static_cast<std::int64_t>(basic_checks->size_bytes));
    if (!basic_checks->syntax_problem.empty()) {
      w.key("syntax_problem").string(basic_checks->syntax_problem);
    }
    w.end_object();
  }
  w.end_object();
  return std::move(w).str();
}

DegradedService::DegradedService(DegradationTexts texts)
    : texts_(std::make_shared<const DegradationTexts>(std::move(texts))) {
  // The built-in handlers hold the texts by shared pointer, so copies of the service stay valid.
  std::shared_ptr<const DegradationTexts> t = texts_;
  handlers_["code_review"] = [t](std::string_view, const Fields& fields) {
    DegradedAnswer a;
    a.basic_checks = check_code(field(fields, "content"), t->code_review_size_limit);
    a.message = t->code_review_message;
    a.recommendation = t->code_review_recommendation;
    return a;
  };
  handlers_["deployment"] = [t](std::string_view, const Fields&) {
    DegradedAnswer a;
    a.message = t->deployment_message;
    a.manual_steps = t->deployment_steps;
    a.monitoring = t->deployment_monitoring;
    return a;
  };
  handlers_["ai_analysis"] = [t](std::string_view, const Fields&) {
    DegradedAnswer a;
    a.message = t->ai_analysis_message;
    a.estimated_recovery = t->default_estimated_recovery;
    a.alternatives = t->ai_analysis_alternatives;
    a.recommendation = t->ai_analysis_recommendation;
    return a;
  };
  handlers_["security_scan"] = [t](std::string_view, const Fields&) {
    DegradedAnswer a;
    a.message = t->security_scan_message;
    a.estimated_recovery = t->default_estimated_recovery;
    a.manual_steps = t->security_scan_steps;
    a.recommendation = t->security_scan_recommendation;
    return a;
  };
}

void DegradedService::set_handler(std::string task_type, Handler handler) {
  if (!handler) {
    handlers_.erase(task_type);
    return;
  }
  handlers_[std::move(task_type)] = std::move(handler);
}

bool DegradedService::has_handler(std::string_view task_type) const {
  return handlers_.find(task_type) != handlers_.end();
}

DegradedAnswer DegradedService::answer(std::string_view task_type, const Fields& fields) const {
  auto it = handlers_.find(task_type);
  DegradedAnswer a =
      it != handlers_.end() ? it->second(task_type, fields) : default_answer(*texts_);
  if (a.task_type.empty()) a.task_type = std::string(task_type);
  return a;
}

}  // namespace mend
