#include "mend/core/classifier.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <new>

namespace mend {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct ErrnoName {
  std::string_view name;
  std::errc value;
};
constexpr std::array<ErrnoName, 24> kErrnoNames = {{
    {"ETIMEDOUT", std::errc::timed_out},
    {"ECONNRESET", std::errc::connection_reset},
    {"ECONNREFUSED", std::errc::connection_refused},
    {"ECONNABORTED", std::errc::connection_aborted},
    {"EPIPE", std::errc::broken_pipe},
    {"ENOTCONN", std::errc::not_connected},
    {"ENETUNREACH", std::errc::network_unreachable},
    {"EHOSTUNREACH", std::errc::host_unreachable},
    {"ENETDOWN", std::errc::network_down},
    {"ENETRESET", std::errc::network_reset},
    {"ENOMEM", std::errc::not_enough_memory},
    {"ENOSPC", std::errc::no_space_on_device},
    {"EMFILE", std::errc::too_many_files_open},
    {"ENFILE", std::errc::too_many_files_open_in_system},
    {"EAGAIN", std::errc::resource_unavailable_try_again},
    {"EWOULDBLOCK", std::errc::operation_would_block},
    {"EACCES", std::errc::permission_denied},
    {"EPERM", std::errc::operation_not_permitted},
    {"EINTR", std::errc::interrupted},
    {"EIO", std::errc::io_error},
    {"EBUSY", std::errc::device_or_resource_busy},
    {"ECANCELED", std::errc::operation_canceled},
    {"EADDRINUSE", std::errc::address_in_use},
    {"EADDRNOTAVAIL", std::errc::address_not_available},
}};

Error config_error(std::string message) {
  return Error::classified_as(ErrorType::configuration_error, Severity::high,
                              "classifier rule: " + std::move(message));
}

std::string all_type_names() {
  std::string out;
  for (int i = 0; i < kErrorTypeCount; ++i) {
    if (i) out += ", ";
    out += to_string(static_cast<ErrorType>(i));
  }
  return out;
}

std::string code_text(int kind, int value) {
  if (kind == 1) return " status " + std::to_string(value);
  if (kind == 2) {
    for (const auto& e : kErrnoNames) {
      if (static_cast<int>(e.value) == value) return " errno " + std::string(e.name);
    }
    return " errno " + std::to_string(value);
  }
  return {};
}

}  // namespace

std::optional<std::errc> parse_errno_name(std::string_view name) noexcept {
  for (const auto& e : kErrnoNames) {
    if (e.name == name) return e.value;
  }
  return std::nullopt;
}

Classifier::Classifier() {
  name_exception<std::exception>("std::exception");
  name_exception<std::bad_alloc>("std::bad_alloc");
  name_exception<std::system_error>("std::system_error");
  name_exception<std::runtime_error>("std::runtime_error");
  name_exception<std::logic_error>("std::logic_error");
  name_exception<std::invalid_argument>("std::invalid_argument");
  name_exception<std::out_of_range>("std::out_of_range");
  name_exception<std::length_error>("std::length_error");
  name_exception<std::domain_error>("std::domain_error");
  name_exception<std::range_error>("std::range_error");
  name_exception<std::overflow_error>("std::overflow_error");
  name_exception<mend::Exception>("mend::Exception");
}

Classifier Classifier::standard() {
  Classifier c;
  c.add_standard_rules();
  return c;
}

Classifier& Classifier::add_standard_rules() {
  using T = ErrorType;
  using S = Severity;
  Classifier& c = *this;
  // C++ exceptions.
  c.on_exception<std::bad_alloc>(T::memory_exhausted, S::high);
  c.on_exception<std::invalid_argument>(T::validation_failed, S::medium);
  // Error kinds: the specification's exception classes, as kinds that non-C++ errors can carry.
  c.on_kind("timeout", T::network_timeout, S::medium);
  c.on_kind("connect", T::connection_reset, S::medium);
  c.on_kind("queue_full", T::connection_pool_exhausted, S::medium);
  c.on_kind("memory", T::memory_exhausted, S::high);
  c.on_kind("database", T::database_error, S::high);
  c.on_kind("authentication", T::authentication_failed, S::high);
  c.on_kind("authorization", T::authorization_failed, S::high);
  // The runtime's HTTP client: a certificate that does not verify is a security matter, not a
  // glitch to retry; a URL, header or CA file that cannot be used is mend's configuration.
  c.on_kind("tls", T::security_error, S::high);
  c.on_kind("configuration", T::configuration_error, S::high);
  // HTTP status codes, whatever raised them.
  c.on_status(400, T::validation_failed, S::low);
  c.on_status(401, T::authentication_failed, S::high);
  c.on_status(403, T::authorization_failed, S::high);
  c.on_status(408, T::network_timeout, S::medium);
  c.on_status(413, T::validation_failed, S::low);
  c.on_status(422, T::validation_failed, S::low);
  c.on_status(429, T::rate_limit_exceeded, S::low);
  c.on_status(500, T::processing_failed, S::medium);
  c.on_status(502, T::temporary_unavailable, S::medium);
  c.on_status(503, T::temporary_unavailable, S::medium);
  c.on_status(504, T::network_timeout, S::medium);
  c.on_status(507, T::disk_full, S::high);
  // errno, from std::system_error or set on the error directly.
  c.on_errc(std::errc::timed_out, T::network_timeout, S::medium);
  for (std::errc e :
       {std::errc::connection_reset, std::errc::connection_refused, std::errc::connection_aborted,
        std::errc::broken_pipe, std::errc::not_connected, std::errc::network_unreachable,
        std::errc::host_unreachable, std::errc::network_down, std::errc::network_reset}) {
    c.on_errc(e, T::connection_reset, S::medium);
  }
  c.on_errc(std::errc::not_enough_memory, T::memory_exhausted, S::high);
  c.on_errc(std::errc::no_space_on_device, T::disk_full, S::high);
  c.on_errc(std::errc::too_many_files_open, T::connection_pool_exhausted, S::medium);
  c.on_errc(std::errc::too_many_files_open_in_system, T::connection_pool_exhausted, S::medium);
  c.on_errc(std::errc::resource_unavailable_try_again, T::temporary_unavailable, S::medium);
  c.on_errc(std::errc::permission_denied, T::security_error, S::high);
  c.on_errc(std::errc::operation_not_permitted, T::security_error, S::high);
  // The specification's message keywords, in its order.
  c.on_keywords({"timeout", "timed out"}, T::network_timeout, S::medium);
  c.on_keywords({"memory", "out of memory"}, T::memory_exhausted, S::high);
  c.on_keywords({"connection", "connect"}, T::connection_reset, S::medium);
  return c;
}

Classifier& Classifier::add_rule(Rule rule) {
  std::string d;
  switch (rule.subject) {
    case Rule::Subject::exception:
      d = "exception " + rule.exception.name;
      break;
    case Rule::Subject::kind:
      d = "kind " + rule.kind;
      break;
    case Rule::Subject::any:
      d = "any";
      break;
    case Rule::Subject::keywords:
      d = "keywords";
      for (const auto& k : rule.keywords) d += " '" + k + "'";
      break;
    case Rule::Subject::predicate:
      d = "predicate " + rule.kind;
      break;
  }
  d += code_text(static_cast<int>(rule.code.kind), rule.code.value);
  rule.description = std::make_shared<const std::string>(std::move(d));
  rule.result.rule = *rule.description;
  rules_.push_back(std::move(rule));
  return *this;
}

Classifier& Classifier::add_exception_rule(ExceptionMatcher matcher, Code code, ErrorType type,
                                           Severity severity) {
  // Prefer the registered name over the mangled one in descriptions.
  for (const auto& [name, m] : exception_names_) {
    if (m.type == matcher.type) matcher.name = name;
  }
  Rule r;
  r.subject = Rule::Subject::exception;
  r.exception = std::move(matcher);
  r.code = code;
  r.result = {type, severity};
  return add_rule(std::move(r));
}

Classifier& Classifier::add_kind_rule(std::string kind, Code code, ErrorType type,
                                      Severity severity) {
  Rule r;
  r.subject = Rule::Subject::kind;
  r.kind = std::move(kind);
  r.code = code;
  r.result = {type, severity};
  return add_rule(std::move(r));
}

Classifier& Classifier::on_kind(std::string kind, ErrorType type, Severity severity) {
  return add_kind_rule(std::move(kind), Code{}, type, severity);
}

Classifier& Classifier::on_kind(std::string kind, int status, ErrorType type, Severity severity) {
  return add_kind_rule(std::move(kind), Code::http(status), type, severity);
}

Classifier& Classifier::declare_kind(std::string child, std::string parent) {
  kind_parents_[std::move(child)] = std::move(parent);
  return *this;
}

Classifier& Classifier::add_code_rule(Code code, ErrorType type, Severity severity) {
  Rule r;  // subject any: the code decides, whatever raised it
  r.code = code;
  r.result = {type, severity};
  return add_rule(std::move(r));
}

Classifier& Classifier::on_status(int status, ErrorType type, Severity severity) {
  return add_code_rule(Code::http(status), type, severity);
}

Classifier& Classifier::on_errc(std::errc errc, ErrorType type, Severity severity) {
  return add_code_rule(Code::errc(errc), type, severity);
}

Classifier& Classifier::on_keywords(std::vector<std::string> keywords, ErrorType type,
                                    Severity severity) {
  Rule r;
  r.subject = Rule::Subject::keywords;
  for (auto& k : keywords) r.keywords.push_back(lower(k));
  r.result = {type, severity};
  return add_rule(std::move(r));
}

Classifier& Classifier::on_predicate(std::string name, Predicate predicate, ErrorType type,
                                     Severity severity) {
  Rule r;
  r.subject = Rule::Subject::predicate;
  r.kind = std::move(name);
  r.predicate = std::move(predicate);
  r.result = {type, severity};
  return add_rule(std::move(r));
}

Classifier& Classifier::set_default(ErrorType type, Severity severity) {
  default_ = {type, severity, "default"};
  return *this;
}

Result<void> Classifier::add(const RuleSpec& spec) {
  if (spec.type.empty()) return config_error("field 'type' is required");
  auto type = parse_error_type(spec.type);
  if (!type) {
    return config_error("field 'type': unknown error type \"" + spec.type +
                        "\" (expected one of: " + all_type_names() + ")");
  }
  if (spec.severity.empty()) return config_error("field 'severity' is required");
  auto severity = parse_severity(spec.severity);
  if (!severity) {
    return config_error("field 'severity': unknown severity \"" + spec.severity +
                        "\" (expected one of: low, medium, high, critical)");
  }
  if (!spec.exception.empty() && !spec.kind.empty()) {
    return config_error("fields 'exception' and 'kind' exclude each other");
  }
  if (spec.status && !spec.errno_name.empty()) {
    return config_error("fields 'status' and 'errno' exclude each other");
  }
  if (!spec.keywords.empty() &&
      (!spec.exception.empty() || !spec.kind.empty() || spec.status || !spec.errno_name.empty())) {
    return config_error(
        "field 'keywords' cannot be combined with exception, kind, status or errno");
  }
  Code code;
  if (spec.status) {
    if (*spec.status < 100 || *spec.status > 599) {
      return config_error("field 'status': " + std::to_string(*spec.status) +
                          " is not an HTTP status code (100 to 599)");
    }
    code = Code::http(*spec.status);
  }
  if (!spec.errno_name.empty()) {
    auto e = parse_errno_name(spec.errno_name);
    if (!e) {
      std::string known;
      for (const auto& n : kErrnoNames) known += (known.empty() ? "" : ", ") + std::string(n.name);
      return config_error("field 'errno': unknown errno name \"" + spec.errno_name +
                          "\" (known: " + known + ")");
    }
    code = Code::errc(*e);
  }
  if (!spec.exception.empty()) {
    auto it = exception_names_.find(spec.exception);
    if (it == exception_names_.end()) {
      std::string known;
      for (const auto& [name, m] : exception_names_) known += (known.empty() ? "" : ", ") + name;
      return config_error("field 'exception': unknown exception \"" + spec.exception +
                          "\" (registered: " + known + ")");
    }
    add_exception_rule(it->second, code, *type, *severity);
    return {};
  }
  if (!spec.kind.empty()) {
    add_kind_rule(spec.kind, code, *type, *severity);
    return {};
  }
  if (!spec.keywords.empty()) {
    for (const auto& k : spec.keywords) {
      if (k.empty()) return config_error("field 'keywords': a keyword is empty");
    }
    on_keywords(spec.keywords, *type, *severity);
    return {};
  }
  if (code.kind == Code::Kind::none) {
    return config_error("a rule needs one of: exception, kind, status, errno, keywords");
  }
  add_code_rule(code, *type, *severity);
  return {};
}

bool Classifier::code_matches(const Code& code, const Error& error) {
  switch (code.kind) {
    case Code::Kind::none:
      return true;
    case Code::Kind::http:
      return error.status && *error.status == code.value;
    case Code::Kind::errc:
      // Compares through error_condition, so system_category errnos match std::errc values.
      return error.code && error.code == static_cast<std::errc>(code.value);
  }
  return false;
}

bool Classifier::kind_is_a(std::string_view kind, std::string_view ancestor) const {
  // Bounded walk: a cycle in declared parents must not hang classification.
  for (int depth = 0; depth < 32; ++depth) {
    auto it = kind_parents_.find(kind);
    if (it == kind_parents_.end()) return false;
    kind = it->second;
    if (kind == ancestor) return true;
  }
  return false;
}

int Classifier::stage_of(const Rule& rule, const Error& error, const std::exception* live,
                         const Context& context, const std::string& lowered_message) const {
  constexpr int kNoMatch = -1;
  auto subject_stage = [&](bool exact, bool base) {
    if (!exact && !base) return kNoMatch;
    if (rule.code.kind != Code::Kind::none) {
      if (!code_matches(rule.code, error)) return kNoMatch;
      return exact ? 1 : 3;
    }
    return exact ? 2 : 4;
  };
  switch (rule.subject) {
    case Rule::Subject::predicate:
      return rule.predicate(error, context) ? 0 : kNoMatch;
    case Rule::Subject::exception: {
      if (live == nullptr) return kNoMatch;
      bool exact = std::type_index(typeid(*live)) == rule.exception.type;
      return subject_stage(exact, !exact && rule.exception.is_a(live));
    }
    case Rule::Subject::kind: {
      if (error.kind.empty()) return kNoMatch;
      bool exact = error.kind == rule.kind;
      return subject_stage(exact, !exact && kind_is_a(error.kind, rule.kind));
    }
    case Rule::Subject::any:
      return code_matches(rule.code, error) ? 5 : kNoMatch;
    case Rule::Subject::keywords:
      for (const auto& k : rule.keywords) {
        if (lowered_message.find(k) != std::string::npos) return 6;
      }
      return kNoMatch;
  }
  return kNoMatch;
}

Classification Classifier::classify(const Error& error, const std::exception* live,
                                    const Context& context) const {
  if (error.classified) return {error.type, error.severity, "preclassified"};
  const std::string lowered = lower(error.message);
  const Rule* best = nullptr;
  int best_stage = 7;
  for (const Rule& rule : rules_) {
    int stage = stage_of(rule, error, live, context, lowered);
    if (stage >= 0 && stage < best_stage) {
      best = &rule;
      best_stage = stage;
      if (stage == 0) break;
    }
  }
  return best ? best->result : default_;
}

Classification Classifier::classify(const Error& error, const Context& context) const {
  if (!error.classified && error.exception) {
    try {
      std::rethrow_exception(error.exception);
    } catch (const std::exception& live) {
      return classify(error, &live, context);
    } catch (...) {
    }
  }
  return classify(error, nullptr, context);
}

void Classifier::classify_in_place(Error& error, const Context& context) const {
  if (error.classified) return;
  Classification c = classify(error, context);
  error.type = c.type;
  error.severity = c.severity;
  error.classified = true;
}

void Classifier::classify_in_place(Error& error, const std::exception* live,
                                   const Context& context) const {
  if (error.classified) return;
  Classification c = classify(error, live, context);
  error.type = c.type;
  error.severity = c.severity;
  error.classified = true;
}

}  // namespace mend
