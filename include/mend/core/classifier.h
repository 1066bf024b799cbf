// File: mend/core/classifier.h
//
// The classifier turns what was observed into one of the 20 error types and a severity, by
// ordered rules. The first stage that matches wins; within a stage, the rule added first wins:
//
//   0. custom predicates (they see the error and the call's context)
//   1. exact subject and code: (exception type or kind, HTTP status or errno)
//   2. exact subject alone
//   3. base subject and code: a registered exception type also matches its subclasses, a kind
//      matches the kinds declared as its children
//   4. base subject alone
//   5. code alone: HTTP status (429, 503, ...) or errno (ETIMEDOUT, ECONNRESET, ...), whatever
//      raised it
//   6. message keywords, case-insensitive ("timeout", "timed out", "memory", "connection", ...)
//   7. the default: processing_failed / medium
//
// `Classifier::standard()` holds the specification's table and the usual C++ and HTTP mappings:
//
//   mend::Classifier c = mend::Classifier::standard();
//   c.on_exception<MyDbError>(mend::ErrorType::database_error, mend::Severity::high);
//   c.on_status(418, mend::ErrorType::validation_failed, mend::Severity::low);
//   mend::Classification k = c.classify(mend::Error::http(429));  // rate_limit_exceeded/low
//
// Rules can also be described as data (`RuleSpec`, what a config file holds); `add()` checks a
// description and says precisely what is wrong with it.
//
// Thread-safety: build a classifier on one thread, then share it; const methods are safe to call
// from many threads at once. Adding rules while others classify is not.
#ifndef MEND_CORE_CLASSIFIER_H_
#define MEND_CORE_CLASSIFIER_H_

#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <typeindex>
#include <typeinfo>
#include <vector>

#include "mend/core/error.h"
#include "mend/core/result.h"

namespace mend {

// Key/value facts about the call (agent, task type, tenant, ...), for predicate rules.
using Context = std::map<std::string, std::string, std::less<>>;

struct Classification {
  ErrorType type = ErrorType::processing_failed;
  Severity severity = Severity::medium;
  // Which rule decided, for "why was this classified so?": its description, or "default".
  std::string_view rule = "default";
};

// A rule as data. Exactly one way to match must be given: an exception name or a kind (each
// optionally with a status or an errno), a status alone, an errno alone, or keywords.
struct RuleSpec {
  std::string exception;      // a name registered with name_exception(), e.g. "std::bad_alloc"
  std::string kind;           // a plain error kind, e.g. "database"
  std::optional<int> status;  // 100..599
  std::string errno_name;     // e.g. "ETIMEDOUT"
  std::vector<std::string> keywords;
  std::string type;      // one of the 20 type names
  std::string severity;  // low, medium, high, critical
};

class Classifier {
 public:
  using Predicate = std::function<bool(const Error&, const Context&)>;

  // No rules but the default. Standard exception names are registered for RuleSpecs.
  Classifier();
  // The specification's rules plus the usual C++, errno and HTTP mappings (docs/classification.md).
  static Classifier standard();
  // Appends standard()'s rules after the rules already added, so that those win within each
  // stage: how a config file's rules take precedence over the standard table.
  Classifier& add_standard_rules();

  // Adding rules. Each returns *this so rules can be chained.
  template <class E>
  Classifier& on_exception(ErrorType type, Severity severity) {
    return add_exception_rule(exception_matcher<E>(), Code{}, type, severity);
  }
  template <class E>
  Classifier& on_exception(int status, ErrorType type, Severity severity) {
    return add_exception_rule(exception_matcher<E>(), Code::http(status), type, severity);
  }
  template <class E>
  Classifier& on_exception(std::errc errc, ErrorType type, Severity severity) {
    return add_exception_rule(exception_matcher<E>(), Code::errc(errc), type, severity);
  }
  Classifier& on_kind(std::string kind, ErrorType type, Severity severity);
  Classifier& on_kind(std::string kind, int status, ErrorType type, Severity severity);
  // Declares `child` a kind of `parent`: rules for the parent then match the child (stage 3/4).
  Classifier& declare_kind(std::string child, std::string parent);
  Classifier& on_status(int status, ErrorType type, Severity severity);
  Classifier& on_errc(std::errc errc, ErrorType type, Severity severity);
  Classifier& on_keywords(std::vector<std::string> keywords, ErrorType type, Severity severity);
  Classifier& on_predicate(std::string name, Predicate predicate, ErrorType type,
                           Severity severity);
  Classifier& set_default(ErrorType type, Severity severity);

  // Makes an exception type usable by name in RuleSpecs.
  template <class E>
  Classifier& name_exception(std::string name) {
    exception_names_[std::move(name)] = exception_matcher<E>();
    return *this;
  }

  // Adds a rule described as data, or explains what is wrong with it (error type
  // configuration_error, message naming the field). Adds nothing on error.
  Result<void> add(const RuleSpec& spec);

  // Classifies an error that is not (or not only) a live exception. An Error that is already
  // classified keeps its classification. A stored exception_ptr is inspected (one rethrow).
  Classification classify(const Error& error, const Context& context = {}) const;
  // Classifies with the live exception at hand (no rethrow): what the executor does inside its
  // catch block.
  Classification classify(const Error& error, const std::exception* live,
                          const Context& context) const;
  // Sets error.type, severity and classified, unless it is classified already.
  void classify_in_place(Error& error, const Context& context = {}) const;
  void classify_in_place(Error& error, const std::exception* live, const Context& context) const;

  std::size_t rule_count() const noexcept { return rules_.size(); }

 private:
  struct ExceptionMatcher {
    std::type_index type = typeid(void);
    bool (*is_a)(const std::exception*) = nullptr;
    std::string name;
  };
  struct Code {
    enum class Kind : std::uint8_t { none, http, errc } kind = Kind::none;
    int value = 0;
    static Code http(int status) { return {Kind::http, status}; }
    static Code errc(std::errc e) { return {Kind::errc, static_cast<int>(e)}; }
  };
  struct Rule {
    enum class Subject : std::uint8_t { any, exception, kind, keywords, predicate };
    Subject subject = Subject::any;
    ExceptionMatcher exception;
    std::string kind;
    Code code;
    std::vector<std::string> keywords;  // lower case
    Predicate predicate;
    Classification result;
    std::shared_ptr<const std::string> description;  // stable storage for Classification::rule
  };

  template <class E>
  static ExceptionMatcher exception_matcher() {
    static_assert(std::is_base_of_v<std::exception, E>,
                  "classifier rules match exceptions derived from std::exception");
    return {typeid(E), [](const std::exception* e) { return dynamic_cast<const E*>(e) != nullptr; },
            typeid(E).name()};
  }
  Classifier& add_exception_rule(ExceptionMatcher matcher, Code code, ErrorType type,
                                 Severity severity);
  Classifier& add_kind_rule(std::string kind, Code code, ErrorType type, Severity severity);
  Classifier& add_code_rule(Code code, ErrorType type, Severity severity);
  Classifier& add_rule(Rule rule);
  int stage_of(const Rule& rule, const Error& error, const std::exception* live,
               const Context& context, const std::string& lowered_message) const;
  bool kind_is_a(std::string_view kind, std::string_view ancestor) const;
  static bool code_matches(const Code& code, const Error& error);

  std::vector<Rule> rules_;
  Classification default_;
  std::map<std::string, std::string, std::less<>> kind_parents_;
  std::map<std::string, ExceptionMatcher, std::less<>> exception_names_;
};

// errno names known to RuleSpec ("ETIMEDOUT" -> std::errc::timed_out), or nullopt.
std::optional<std::errc> parse_errno_name(std::string_view name) noexcept;

}  // namespace mend

#endif  // MEND_CORE_CLASSIFIER_H_
