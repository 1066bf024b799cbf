// The configuration loader's machinery, shared by its files (config.cc: the whole file, server and
// store; config_policies.cc: policies and classifier rules; config_agents.cc: agents, degradation,
// escalation, supervision; config_checker.cc: scalars, words, sections). Private to src/server.
//
// A Checker walks the YAML tree once: each section reader takes what is valid into the Config
// and records a ConfigProblem (file, line, column, key path, message) for everything that is
// not, so that one run shows every mistake. A Section is one mapping with known keys: what it was
// not asked for is reported as unknown, with a suggestion. A former name of a key or value is
// still read, with a warning (ConfigLoad::warnings) that gives its new name.
//
// Thread-safety: a Checker is used by one thread, for one file.
#ifndef MEND_SRC_SERVER_CONFIG_CHECKER_H_
#define MEND_SRC_SERVER_CONFIG_CHECKER_H_

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "mend/core/text.h"
#include "mend/server/config.h"

namespace mend::config_detail {

namespace fs = std::filesystem;

// The longest duration a configuration may give, and the largest file it may be.
inline constexpr Duration kMaxDuration = std::chrono::hours(24 * 365);  // one year
inline constexpr std::size_t kMaxConfigBytes = std::size_t{16} << 20;

// --- Words: suggestions and quoting ------------------------------------------------------------

std::size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `word`, when it is close enough to be a likely typo.
std::optional<std::string> closest(std::string_view word,
                                   const std::vector<std::string>& candidates);
std::string join(const std::vector<std::string>& words);
// 'text', shortened and with control characters escaped: user input inside a message.
std::string in_quotes(std::string_view text);
// "unknown X 'y' (did you mean 'z'?)" or "(expected one of: ...)".
std::string unknown_name(std::string_view what, std::string_view word,
                         const std::vector<std::string>& known);
std::vector<std::string> error_type_names();
int line_of(const YAML::Mark& mark);

// --- The checker --------------------------------------------------------------------------------

// One place in the document: a value, where to point at it, and its dotted key path.
struct Item {
  YAML::Node value;
  YAML::Mark mark;  // the key of a mapping entry, the element of a list
  std::string path;
};

inline std::string child_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

enum class DurationRule : std::uint8_t { positive, non_negative };

struct IntRange {
  long long min;
  long long max = std::numeric_limits<long long>::max();
};

struct RealRange {
  double min;
  double max;
  bool min_inclusive = true;
  bool max_inclusive = true;
  std::string note = {};  // appended to the range message
};

class Checker;

// A mapping with known keys. get() hands out the value of a key and records the key as known;
// finish() then reports every other key as unknown. A null value (a key with nothing after it,
// everything below commented out) is an empty mapping.
class Section {
 public:
  // `what` names the expected mapping in messages. A list element ("an agent (a mapping)") may
  // not be null: "- " with nothing after it is a mistake, not an empty agent.
  Section(Checker& checker, Item item, std::string_view what = "a mapping",
          bool null_is_empty = true);
  bool ok() const noexcept { return ok_; }
  const Item& item() const noexcept { return item_; }
  std::optional<Item> get(std::string_view key);
  // As get(), for a key's former name: known, but never offered as a suggestion.
  std::optional<Item> get_former(std::string_view key);
  bool has(std::string_view key) const;
  void finish();

 private:
  struct Entry {
    std::string key;
    Item item;
  };
  Checker& checker_;
  Item item_;
  bool ok_ = false;
  std::vector<Entry> entries_;
  std::vector<std::string> known_;
  std::vector<std::string> former_;  // former names read by get_former()
};

class Checker {
 public:
  Checker(std::string file, fs::path base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  void problem(const YAML::Mark& mark, std::string key, std::string message) {
    problems_.push_back(placed(mark, std::move(key), std::move(message)));
  }
  // At the key (or list element) that holds the value: for problems with the entry as a whole.
  void at_key(const Item& item, std::string message) {
    problem(item.mark, item.path, std::move(message));
  }
  // At the value itself; a null value has no reliable place of its own (yaml-cpp marks the next
  // token), so its key stands in.
  void at_value(const Item& item, std::string message) {
    const bool own_place =
        item.value.IsDefined() && !item.value.IsNull() && !item.value.Mark().is_null();
    problem(own_place ? item.value.Mark() : item.mark, item.path, std::move(message));
  }

  // Valid, but worth changing (a former name): said, not refused. Placed as a problem is.
  void warning(const YAML::Mark& mark, std::string key, std::string message) {
    warnings_.push_back(placed(mark, std::move(key), std::move(message)));
  }

  Config run(const YAML::Node& root);
  std::vector<std::string> take_warnings() {
    std::stable_sort(warnings_.begin(), warnings_.end(),
                     [](const ConfigProblem& a, const ConfigProblem& b) {
                       return std::pair(a.line, a.column) < std::pair(b.line, b.column);
                     });
    std::vector<std::string> out;
    for (const ConfigProblem& w : warnings_) out.push_back(w.to_string());
    warnings_.clear();
    return out;
  }
  std::vector<ConfigProblem> take_problems() {
    std::stable_sort(problems_.begin(), problems_.end(),
                     [](const ConfigProblem& a, const ConfigProblem& b) {
                       return std::pair(a.line, a.column) < std::pair(b.line, b.column);
                     });
    return std::move(problems_);
  }

  // --- Typed values. Each reports what it expected and what it found, and returns nullopt. --

  static std::string found(const YAML::Node& value) {
    if (!value.IsDefined() || value.IsNull()) return "an empty value";
    if (value.IsSequence()) return "a list";
    if (value.IsMap()) return "a mapping";
    if (value.Tag() == "!") return "the quoted string " + in_quotes(value.Scalar());
    return in_quotes(value.Scalar());
  }

  // A scalar written without quotes, for numbers and booleans: "7070" in quotes is a string.
  std::optional<std::string> plain(const Item& item, std::string_view expected) {
    if (!item.value.IsScalar() || item.value.Tag() == "!") {
      std::string message = "expected " + std::string(expected) + ", got " + found(item.value);
      if (item.value.IsScalar()) message += " (numbers and booleans are written without quotes)";
      at_value(item, std::move(message));
      return std::nullopt;
    }
    return item.value.Scalar();
  }

  std::optional<long long> integer(const Item& item, IntRange range) {
    auto text = plain(item, "an integer");
    if (!text) return std::nullopt;
    std::string_view digits = *text;
    if (digits.size() > 1 && digits[0] == '+' && digits[1] != '-') digits.remove_prefix(1);
    long long value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec == std::errc::invalid_argument ||
        end != digits.data() + digits.size()) {
      at_value(item, "expected an integer, got " + found(item.value));
      return std::nullopt;
    }
    if (ec == std::errc::result_out_of_range || value < range.min || value > range.max) {
      std::string message = range.max == std::numeric_limits<long long>::max()
                                ? "must be at least " + std::to_string(range.min)
                                : "must be between " + std::to_string(range.min) + " and " +
                                      std::to_string(range.max);
      at_value(item, message + ", got " + *text);
      return std::nullopt;
    }
    return value;
  }

  std::optional<double> real(const Item& item, const RealRange& range) {
    auto text = plain(item, "a number");
    if (!text) return std::nullopt;
    std::string_view digits = *text;
    if (digits.size() > 1 && digits[0] == '+' && digits[1] != '-') digits.remove_prefix(1);
    double value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value,
                                     std::chars_format::general);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
        !std::isfinite(value)) {
      at_value(item, "expected a number, got " + found(item.value));
      return std::nullopt;
    }
    const bool above_min = range.min_inclusive ? value >= range.min : value > range.min;
    const bool below_max = range.max_inclusive ? value <= range.max : value < range.max;
    if (!above_min || !below_max) {
      std::ostringstream message;
      if (range.max == std::numeric_limits<double>::infinity()) {
        message << "must be " << (range.min_inclusive ? "at least " : "greater than ") << range.min;
      } else {
        message << "must be in " << (range.min_inclusive ? "[" : "(") << range.min << ", "
                << range.max << (range.max_inclusive ? "]" : ")");
      }
      message << range.note << ", got " << *text;
      at_value(item, message.str());
      return std::nullopt;
    }
    return value;
  }

  std::optional<bool> boolean(const Item& item) {
    auto text = plain(item, "true or false");
    if (!text) return std::nullopt;
    const std::string word = ascii_lower(*text);
    if (word == "true" || word == "yes" || word == "on") return true;
    if (word == "false" || word == "no" || word == "off") return false;
    at_value(item, "expected true or false, got " + found(item.value));
    return std::nullopt;
  }

  std::optional<std::string> string(const Item& item, bool allow_empty = false) {
    if (!item.value.IsScalar()) {
      at_value(item, "expected a string, got " + found(item.value));
      return std::nullopt;
    }
    if (!allow_empty && item.value.Scalar().empty()) {
      at_value(item, "expected a non-empty string, got ''");
      return std::nullopt;
    }
    return item.value.Scalar();
  }

  std::optional<Duration> duration(const Item& item, DurationRule rule) {
    static constexpr const char* kExpected =
        "expected a duration such as 250ms, 1.5s, 10m, 2h, 1d or a number of seconds";
    if (!item.value.IsScalar() || item.value.Scalar().empty()) {
      at_value(item, std::string(kExpected) + ", got " + found(item.value));
      return std::nullopt;
    }
    const std::string& text = item.value.Scalar();
    if (text.front() == '-' && parse_duration(std::string_view(text).substr(1))) {
      at_value(item, "must not be negative, got " + text);
      return std::nullopt;
    }
    std::optional<Duration> d = parse_duration(text);
    if (!d) {
      at_value(item, std::string(kExpected) + ", got " + found(item.value));
      return std::nullopt;
    }
    if (rule == DurationRule::positive && *d <= Duration::zero()) {
      at_value(item, "must be greater than zero, got " + text);
      return std::nullopt;
    }
    if (*d > kMaxDuration) {
      at_value(item, "must be at most 365d (one year), got " + text);
      return std::nullopt;
    }
    return d;
  }

  std::optional<std::size_t> size(const Item& item, std::size_t min) {
    static constexpr const char* kExpected =
        "expected a size such as 512MiB, 64KiB, 1GB or a number of bytes";
    if (!item.value.IsScalar()) {
      at_value(item, std::string(kExpected) + ", got " + found(item.value));
      return std::nullopt;
    }
    std::optional<std::size_t> bytes = parse_size(item.value.Scalar());
    if (!bytes) {
      at_value(item, std::string(kExpected) + ", got " + found(item.value));
      return std::nullopt;
    }
    if (*bytes < min) {
      at_value(item,
               "must be at least " + std::to_string(min) + " bytes, got " + item.value.Scalar());
      return std::nullopt;
    }
    return bytes;
  }

  // The elements of a list, each an Item with path "key[i]". Null: an empty list.
  std::optional<std::vector<Item>> list(const Item& item, std::string_view expected = "a list") {
    if (!item.value.IsDefined() || item.value.IsNull()) return std::vector<Item>{};
    if (!item.value.IsSequence()) {
      at_value(item, "expected " + std::string(expected) + ", got " + found(item.value));
      return std::nullopt;
    }
    std::vector<Item> elements;
    std::size_t i = 0;
    for (const YAML::Node& element : item.value) {
      YAML::Mark mark = element.Mark();
      if (element.IsNull() || mark.is_null()) mark = item.mark;
      elements.push_back({element, mark, item.path + "[" + std::to_string(i++) + "]"});
    }
    return elements;
  }

  std::optional<std::vector<std::string>> strings(const Item& item) {
    auto elements = list(item, "a list of strings");
    if (!elements) return std::nullopt;
    std::vector<std::string> out;
    bool all = true;
    for (const Item& e : *elements) {
      if (auto s = string(e)) {
        out.push_back(*s);
      } else {
        all = false;
      }
    }
    if (!all) return std::nullopt;
    return out;
  }

  // A mapping whose keys are the user's (env, headers, chains, routes), in file order.
  std::optional<std::vector<std::pair<std::string, Item>>> entries(const Item& item) {
    if (!item.value.IsDefined() || item.value.IsNull()) {
      return std::vector<std::pair<std::string, Item>>{};
    }
    if (!item.value.IsMap()) {
      at_value(item, "expected a mapping, got " + found(item.value));
      return std::nullopt;
    }
    std::vector<std::pair<std::string, Item>> out;
    std::map<std::string, int> seen;
    for (auto it = item.value.begin(); it != item.value.end(); ++it) {
      const YAML::Node key = it->first;  // a copy: the iterator hands out a temporary pair
      if (!key.IsScalar()) {
        problem(key.Mark(), item.path, "expected a key name, got " + found(key));
        continue;
      }
      const std::string path = child_path(item.path, key.Scalar());
      auto [first, fresh] = seen.emplace(key.Scalar(), line_of(key.Mark()));
      if (!fresh) {
        problem(key.Mark(), path,
                "duplicate key " + in_quotes(key.Scalar()) + " (first at line " +
                    std::to_string(first->second) + ")");
        continue;
      }
      out.emplace_back(key.Scalar(), Item{it->second, key.Mark(), path});
    }
    return out;
  }

  std::optional<std::map<std::string, std::string>> string_map(const Item& item) {
    auto pairs = entries(item);
    if (!pairs) return std::nullopt;
    std::map<std::string, std::string> out;
    bool all = true;
    for (const auto& [key, value] : *pairs) {
      if (auto s = string(value, /*allow_empty=*/true)) {
        out[key] = *s;
      } else {
        all = false;
      }
    }
    if (!all) return std::nullopt;
    return out;
  }

  std::optional<std::string> choice(const Item& item, std::string_view what,
                                    const std::vector<std::string>& names) {
    auto s = string(item);
    if (!s) return std::nullopt;
    if (std::find(names.begin(), names.end(), *s) == names.end()) {
      at_value(item, unknown_name(what, *s, names));
      return std::nullopt;
    }
    return s;
  }

  std::optional<ErrorTypeSet> error_types(const Item& item) {
    auto elements = list(item, "a list of error type names");
    if (!elements) return std::nullopt;
    ErrorTypeSet set;
    bool all = true;
    for (const Item& e : *elements) {
      auto name = choice(e, "error type", error_type_names());
      if (name) {
        set.add(*parse_error_type(*name));
      } else {
        all = false;
      }
    }
    if (!all) return std::nullopt;
    return set;
  }

  // The entry of `key`, or of `former`, its former name, with a warning. Both at once is a
  // problem (and nullopt).
  std::optional<Item> renamed(Section& s, std::string_view key, std::string_view former) {
    std::optional<Item> current = s.get(key);
    std::optional<Item> old = s.get_former(former);
    if (current && old) {
      at_key(*old, "give either " + std::string(key) + " or " + std::string(former) +
                       " (its former name), not both");
      return std::nullopt;
    }
    if (old) {
      warning(old->mark, old->path,
              "key " + in_quotes(former) + " is deprecated: it is now called " + in_quotes(key));
      return old;
    }
    return current;
  }

  // --- Setting fields from a section: absent keys keep the default. ----------------------------

  template <class T>
  void set_integer(Section& s, std::string_view key, T& out, IntRange range) {
    if (auto item = s.get(key)) {
      if (auto v = integer(*item, range)) out = static_cast<T>(*v);
    }
  }
  void set_real(Section& s, std::string_view key, double& out, const RealRange& range) {
    if (auto item = s.get(key)) {
      if (auto v = real(*item, range)) out = *v;
    }
  }
  void set_bool(Section& s, std::string_view key, bool& out) {
    if (auto item = s.get(key)) {
      if (auto v = boolean(*item)) out = *v;
    }
  }
  void set_string(Section& s, std::string_view key, std::string& out, bool allow_empty = false) {
    if (auto item = s.get(key)) {
      if (auto v = string(*item, allow_empty)) out = *v;
    }
  }
  void set_strings(Section& s, std::string_view key, std::vector<std::string>& out) {
    if (auto item = s.get(key)) {
      if (auto v = strings(*item)) out = *v;
    }
  }
  void set_duration(Section& s, std::string_view key, Duration& out, DurationRule rule) {
    if (auto item = s.get(key)) {
      if (auto v = duration(*item, rule)) out = *v;
    }
  }
  void set_size(Section& s, std::string_view key, std::size_t& out, std::size_t min) {
    if (auto item = s.get(key)) {
      if (auto v = size(*item, min)) out = *v;
    }
  }

  // A path from the file, made absolute against the config file's directory.
  std::string resolve(const std::string& path) const {
    fs::path p(path);
    if (p.is_absolute()) return p.lexically_normal().string();
    return (base_dir_ / p).lexically_normal().string();
  }

  // --- Sections -----------------------------------------------------------------------------

  void read_server(const Item& item, ServerConfig& server);
  void read_store(const Item& item, StoreConfig& store);
  PolicyConfig read_policies(const Item& item, const PolicyConfig& base);
  void read_retry(const Item& item, RetryOptions& retry);
  void read_backoff(const Item& item, BackoffOptions& backoff);
  void read_breaker(const Item& item, CircuitBreakerOptions& breaker);
  void read_replica_balancing(const Item& item, ReplicaBalancerOptions& balancing);
  void read_classifier(const Item& item, std::vector<RuleSpec>& rules);
  void read_agents(const Item& item, const PolicyConfig& global, std::vector<AgentConfig>& agents);
  void read_agent(const Item& item, const PolicyConfig& global, AgentConfig& agent);
  void read_replica_range(const Item& item, AgentConfig& agent);
  void read_scaling(const Item& item, ScalingConfig& scaling);
  void read_probes(const Item& item, ProbesConfig& probes);
  void read_probe(const Item& item, ProbeOptions& probe);
  void read_chains(const Item& item, std::map<std::string, std::vector<std::string>>& chains);
  void read_relays(const Item& item, const ServerConfig& server, std::vector<RelayConfig>& relays);
  bool read_address(const Item& item, std::string& out);
  void read_degradation(const Item& item, DegradationTexts& texts);
  void read_escalation(const Item& item, EscalationConfig& escalation);
  void read_receiver(const Item& item, ReceiverConfig& receiver);
  void read_routes(const Item& item, const EscalationConfig& escalation,
                   std::map<std::string, std::vector<std::string>>& routes);
  void read_supervision(const Item& item, SupervisionConfig& supervision);
  void read_tasks(const Item& item, TasksConfig& tasks);

  // The value of the environment variable that `item` names, or nullopt (reported).
  std::optional<std::string> from_environment(const Item& item) {
    auto name = string(item);
    if (!name) return std::nullopt;
    if (!valid_env_name(*name)) {
      at_value(item, "expected an environment variable name (letters, digits, _), got " +
                         in_quotes(*name));
      return std::nullopt;
    }
    const char* value = std::getenv(name->c_str());
    if (value == nullptr || *value == '\0') {
      at_value(item, "the environment variable " + *name + " is not set (or is empty)");
      return std::nullopt;
    }
    return std::string(value);
  }

  static bool valid_env_name(std::string_view name) {
    if (name.empty() || (name.front() >= '0' && name.front() <= '9')) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
  }

 private:
  ConfigProblem placed(const YAML::Mark& mark, std::string key, std::string message) const {
    ConfigProblem p;
    p.file = file_;
    if (!mark.is_null()) {
      p.line = mark.line + 1;
      p.column = mark.column + 1;
    }
    p.key = std::move(key);
    p.message = std::move(message);
    return p;
  }

  std::string file_;
  fs::path base_dir_;
  std::vector<ConfigProblem> problems_;
  std::vector<ConfigProblem> warnings_;
  std::set<std::string> agent_names_;     // valid agent names, for chains
  std::set<std::string> receiver_names_;  // valid receiver names, for routes
};

// The whole document (config.cc).
ConfigLoad check(std::string_view yaml, const std::string& source_name, fs::path base_dir);

}  // namespace mend::config_detail

#endif  // MEND_SRC_SERVER_CONFIG_CHECKER_H_
