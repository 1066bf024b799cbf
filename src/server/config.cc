// The configuration loader: walks the whole YAML tree once, fills a Config with what is valid and
// records a ConfigProblem for everything that is not, so that one run of `mend check-config`
// shows every mistake at once. Nothing here throws out of the public functions.
#include "mend/config.h"

#include <arpa/inet.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "mend/http_client.h"  // parse_url
#include "mend/text.h"

namespace mend {

namespace fs = std::filesystem;

// --- Scalars: durations and sizes ---------------------------------------------------------------

namespace {

constexpr Duration kMaxDuration = std::chrono::hours(24 * 365);  // one year
constexpr std::size_t kMaxConfigBytes = std::size_t{16} << 20;

// Reads a non-negative decimal number ("12", "1.5") at the front of `text`; advances it.
std::optional<double> take_decimal(std::string_view& text) {
  std::size_t n = 0;
  bool digits = false;
  while (n < text.size() && text[n] >= '0' && text[n] <= '9') ++n, digits = true;
  if (n < text.size() && text[n] == '.') {
    ++n;
    bool fraction = false;
    while (n < text.size() && text[n] >= '0' && text[n] <= '9') ++n, fraction = true;
    if (!fraction) return std::nullopt;
  }
  if (!digits) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + n, value);
  if (ec != std::errc() || end != text.data() + n) return std::nullopt;
  text.remove_prefix(n);
  return value;
}


}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::string_view rest = text;
  long double seconds = 0;
  if (auto bare = take_decimal(rest); bare && rest.empty()) {
    seconds = *bare;
  } else {
    rest = text;
    while (!rest.empty()) {
      std::optional<double> value = take_decimal(rest);
      if (!value) return std::nullopt;
      std::size_t unit_length = 0;
      while (unit_length < rest.size() &&
             std::isalpha(static_cast<unsigned char>(rest[unit_length])))
        ++unit_length;
      std::string_view unit = rest.substr(0, unit_length);
      rest.remove_prefix(unit_length);
      long double scale = 0;
      if (unit == "ms") {
        scale = 1e-3L;
      } else if (unit == "s") {
        scale = 1;
      } else if (unit == "m") {
        scale = 60;
      } else if (unit == "h") {
        scale = 3600;
      } else if (unit == "d") {
        scale = 86400;
      } else {
        return std::nullopt;
      }
      seconds += static_cast<long double>(*value) * scale;
    }
  }
  const long double nanos = std::round(seconds * 1e9L);
  if (!(nanos <= static_cast<long double>(std::numeric_limits<std::int64_t>::max() / 2))) {
    return std::nullopt;
  }
  return Duration(static_cast<std::int64_t>(nanos));
}

std::optional<std::size_t> parse_size(std::string_view text) {
  std::string_view rest = text;
  std::optional<double> value = take_decimal(rest);
  if (!value) return std::nullopt;
  const std::string unit = ascii_lower(rest);
  long double scale = 0;
  static constexpr std::pair<const char*, long double> kUnits[] = {
      {"", 1},
      {"b", 1},
      {"kb", 1e3L},
      {"mb", 1e6L},
      {"gb", 1e9L},
      {"tb", 1e12L},
      {"kib", 1024.0L},
      {"mib", 1024.0L * 1024},
      {"gib", 1024.0L * 1024 * 1024},
      {"tib", 1024.0L * 1024 * 1024 * 1024},
  };
  for (const auto& [name, factor] : kUnits) {
    if (unit == name) scale = factor;
  }
  if (scale == 0) return std::nullopt;
  const long double bytes = std::round(static_cast<long double>(*value) * scale);
  if (!(bytes <= static_cast<long double>(std::size_t{1} << 62))) return std::nullopt;
  return static_cast<std::size_t>(bytes);
}

// --- Config, ConfigProblem ---------------------------------------------------------------------

const AgentConfig* Config::agent(std::string_view name) const {
  for (const AgentConfig& a : agents) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::string ConfigProblem::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += (out.empty() ? "" : ":") + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  if (!out.empty()) out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

namespace {

// --- Words: suggestions and quoting ------------------------------------------------------------

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate closest to `word`, when it is close enough to be a likely typo.
std::optional<std::string> closest(std::string_view word,
                                   const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  const std::string lowered = ascii_lower(word);
  for (const std::string& c : candidates) {
    const std::size_t d = edit_distance(lowered, ascii_lower(c));
    if (d < best_distance) best_distance = d, best = c;
  }
  const std::size_t allowed = std::clamp<std::size_t>(word.size() / 3, 1, 3);
  // A one-letter name is "close" to every other one: a guess needs something in common.
  if (best && best_distance <= allowed && best_distance < word.size()) return best;
  return std::nullopt;
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : ", ") + w;
  return out;
}

// 'text', shortened and with control characters escaped: user input inside a message.
std::string in_quotes(std::string_view text) {
  std::string out = "'";
  std::size_t shown = 0;
  for (char c : text) {
    if (++shown > 60) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", u);
      out += buffer;
    } else {
      out += c;
    }
  }
  return out + "'";
}

// "unknown X 'y' (did you mean 'z'?)" or "(expected one of: ...)".
std::string unknown_name(std::string_view what, std::string_view word,
                         const std::vector<std::string>& known) {
  std::string message = "unknown " + std::string(what) + " " + in_quotes(word);
  if (auto guess = closest(word, known)) return message + " (did you mean '" + *guess + "'?)";
  return message + " (expected one of: " + join(known) + ")";
}

std::vector<std::string> error_type_names() {
  std::vector<std::string> names;
  for (int i = 0; i < kErrorTypeCount; ++i) {
    names.emplace_back(to_string(static_cast<ErrorType>(i)));
  }
  return names;
}

int line_of(const YAML::Mark& mark) {
  return mark.is_null() ? 0 : mark.line + 1;
}

// --- The checker --------------------------------------------------------------------------------

// One place in the document: a value, where to point at it, and its dotted key path.
struct Item {
  YAML::Node value;
  YAML::Mark mark;  // the key of a mapping entry, the element of a list
  std::string path;
};

std::string child_path(const std::string& parent, std::string_view key) {
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
};

class Checker {
 public:
  Checker(std::string file, fs::path base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  void problem(const YAML::Mark& mark, std::string key, std::string message) {
    ConfigProblem p;
    p.file = file_;
    if (!mark.is_null()) {
      p.line = mark.line + 1;
      p.column = mark.column + 1;
    }
    p.key = std::move(key);
    p.message = std::move(message);
    problems_.push_back(std::move(p));
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

  Config run(const YAML::Node& root);
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
  void read_classifier(const Item& item, std::vector<RuleSpec>& rules);
  void read_agents(const Item& item, const PolicyConfig& global, std::vector<AgentConfig>& agents);
  void read_agent(const Item& item, const PolicyConfig& global, AgentConfig& agent);
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
  std::string file_;
  fs::path base_dir_;
  std::vector<ConfigProblem> problems_;
  std::set<std::string> agent_names_;     // valid agent names, for chains
  std::set<std::string> receiver_names_;  // valid receiver names, for routes
};

Section::Section(Checker& checker, Item item, std::string_view what, bool null_is_empty)
    : checker_(checker), item_(std::move(item)) {
  const YAML::Node& node = item_.value;
  if ((!node.IsDefined() || node.IsNull()) && null_is_empty) {
    ok_ = true;
    return;
  }
  if (!node.IsMap()) {
    checker_.at_value(item_, "expected " + std::string(what) + ", got " + Checker::found(node));
    return;
  }
  ok_ = true;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;  // a copy: the iterator hands out a temporary pair
    if (!key.IsScalar()) {
      checker_.problem(key.Mark(), item_.path, "expected a key name, got " + Checker::found(key));
      continue;
    }
    const std::string& name = key.Scalar();
    auto same = std::find_if(entries_.begin(), entries_.end(),
                             [&](const Entry& e) { return e.key == name; });
    if (same != entries_.end()) {
      checker_.problem(key.Mark(), child_path(item_.path, name),
                       "duplicate key " + in_quotes(name) + " (first at line " +
                           std::to_string(line_of(same->item.mark)) + ")");
      continue;
    }
    entries_.push_back({name, Item{it->second, key.Mark(), child_path(item_.path, name)}});
  }
}

std::optional<Item> Section::get(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
  for (const Entry& e : entries_) {
    if (e.key == key) return e.item;
  }
  return std::nullopt;
}

bool Section::has(std::string_view key) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return e.key == key; });
}

void Section::finish() {
  for (const Entry& e : entries_) {
    if (std::find(known_.begin(), known_.end(), e.key) != known_.end()) continue;
    std::string message = "unknown key " + in_quotes(e.key);
    if (auto guess = closest(e.key, known_)) {
      message += " (did you mean '" + *guess + "'?)";
    } else {
      message += " (known keys: " + join(known_) + ")";
    }
    checker_.at_key(e.item, std::move(message));
  }
}

// --- server, store -------------------------------------------------------------------------------

void Checker::read_server(const Item& item, ServerConfig& server) {
  Section s(*this, item);
  if (!s.ok()) return;
  if (auto address = s.get("address")) read_address(*address, server.address);
  set_integer(s, "port", server.port, {0, 65535});
  auto token = s.get("token");
  auto token_env = s.get("token_env");
  if (token && token_env) {
    at_key(*token_env, "give either token or token_env, not both");
  } else if (token) {
    set_string(s, "token", server.token);
    server.token_inline = !server.token.empty();
  } else if (token_env) {
    if (auto value = from_environment(*token_env)) server.token = *value;
  }
  if (!server.token.empty() && std::any_of(server.token.begin(), server.token.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
      })) {
    at_value(token ? *token : *token_env,
             "the token must not contain spaces or control characters");
    server.token.clear();
  }
  set_size(s, "max_body_bytes", server.max_body_bytes, 1);
  set_duration(s, "read_timeout", server.read_timeout, DurationRule::positive);
  set_integer(s, "max_connections", server.max_connections, {1, 1'000'000});
  set_integer(s, "max_connections_per_client", server.max_connections_per_client,
              {0, 1'000'000});
  set_integer(s, "threads", server.threads, {1, 256});
  set_integer(s, "max_tasks_in_flight", server.max_tasks_in_flight, {1, 100'000'000});
  set_duration(s, "task_deadline", server.task_deadline, DurationRule::positive);
  set_duration(s, "drain_timeout", server.drain_timeout, DurationRule::non_negative);
  set_integer(s, "max_wait_seconds", server.max_wait_seconds, {0, 86400});
  s.finish();
}

bool Checker::read_address(const Item& item, std::string& out) {
  auto text = string(item);
  if (!text) return false;
  unsigned char buffer[sizeof(in6_addr)];
  if (inet_pton(AF_INET, text->c_str(), buffer) == 1 ||
      inet_pton(AF_INET6, text->c_str(), buffer) == 1) {
    out = *text;
    return true;
  }
  at_value(item,
           "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1 (not a host name), got " +
               in_quotes(*text));
  return false;
}

void Checker::read_relays(const Item& item, const ServerConfig& server,
                          std::vector<RelayConfig>& relays) {
  auto elements = list(item, "a list of relays");
  if (!elements) return;
  std::map<unsigned short, int> first_line;  // fixed ports, to catch two relays on one
  for (const Item& element : *elements) {
    Section s(*this, element, "a relay (a mapping)", false);
    if (!s.ok()) continue;
    RelayConfig relay;
    relay.address = server.address;
    if (auto agent = s.get("agent")) {
      if (auto name = string(*agent)) {
        if (agent_names_.contains(*name)) {
          relay.agent = *name;
        } else {
          const std::vector<std::string> known(agent_names_.begin(), agent_names_.end());
          at_value(*agent, unknown_name("agent", *name, known));
        }
      }
    } else {
      at_key(element, "missing key 'agent' (the agent the relay passes requests to)");
    }
    if (auto address = s.get("address")) read_address(*address, relay.address);
    if (!s.has("port")) at_key(element, "missing key 'port' (0 for any free port)");
    set_integer(s, "port", relay.port, {0, 65535});
    set_integer(s, "threads", relay.threads, {1, 256});
    set_size(s, "max_response_bytes", relay.max_response_bytes, 1);
    set_bool(s, "pass_admin", relay.pass_admin);
    s.finish();
    if (relay.port != 0) {
      if (relay.port == server.port) {
        at_value(*s.get("port"), "port " + std::to_string(relay.port) + " is server.port");
      }
      auto [first, fresh] = first_line.emplace(relay.port, line_of(element.mark));
      if (!fresh) {
        at_value(*s.get("port"), "port " + std::to_string(relay.port) +
                                     " is taken by the relay at line " +
                                     std::to_string(first->second));
      }
    }
    if (!relay.agent.empty()) relays.push_back(std::move(relay));
  }
}

void Checker::read_tasks(const Item& item, TasksConfig& tasks) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_strings(s, "idempotent_types", tasks.idempotent_types);
  set_integer(s, "retained", tasks.retained, {1, 10'000'000});
  s.finish();
}

void Checker::read_store(const Item& item, StoreConfig& store) {
  Section s(*this, item);
  if (!s.ok()) return;
  if (auto path = s.get("path")) {
    if (auto text = string(*path)) store.path = *text;
  }
  set_duration(s, "busy_timeout", store.busy_timeout, DurationRule::positive);
  s.finish();
}

// --- policies ----------------------------------------------------------------------------------

void Checker::read_backoff(const Item& item, BackoffOptions& backoff) {
  Section s(*this, item);
  if (!s.ok()) return;
  if (auto kind = s.get("kind")) {
    static const std::vector<std::string> kNames = {"seed",
                                                    "constant",
                                                    "linear",
                                                    "exponential",
                                                    "full_jitter",
                                                    "equal_jitter",
                                                    "decorrelated_jitter",
                                                    "full",
                                                    "equal",
                                                    "decorrelated"};
    if (auto name = choice(*kind, "backoff kind", kNames)) {
      std::string canonical = *name;
      if (canonical == "full" || canonical == "equal" || canonical == "decorrelated") {
        canonical += "_jitter";
      }
      backoff.kind = *parse_backoff_kind(canonical);
    }
  }
  set_duration(s, "base", backoff.base, DurationRule::non_negative);
  set_duration(s, "cap", backoff.cap, DurationRule::non_negative);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  set_real(s, "multiplier", backoff.multiplier, {1, 100});
  set_real(s, "jitter", backoff.jitter, {0, 1, true, true, " (0.25 is +-25 %)"});
  set_real(s, "rate_limit_factor", backoff.rate_limit_factor, {0, kInf, false});
  set_real(s, "timeout_factor", backoff.timeout_factor, {0, kInf, false});
  set_real(s, "high_factor", backoff.high_factor, {0, kInf, false});
  set_real(s, "critical_factor", backoff.critical_factor, {0, kInf, false});
  s.finish();
}

void Checker::read_retry(const Item& item, RetryOptions& retry) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_integer(s, "max_retries", retry.max_retries, {0, 1000});
  if (auto backoff = s.get("backoff")) read_backoff(*backoff, retry.backoff);
  if (auto retryable = s.get("retryable")) {
    if (auto set = error_types(*retryable)) retry.retryable = *set;
  }
  set_bool(s, "honor_retry_after", retry.honor_retry_after);
  s.finish();
}

void Checker::read_breaker(const Item& item, CircuitBreakerOptions& breaker) {
  Section s(*this, item);
  if (!s.ok()) return;
  if (auto mode = s.get("mode")) {
    if (auto name = choice(*mode, "breaker mode", {"consecutive", "failure_rate"})) {
      breaker.mode = *name == "consecutive" ? BreakerMode::consecutive : BreakerMode::failure_rate;
    }
  }
  set_integer(s, "failure_threshold", breaker.failure_threshold, {1, 1'000'000});
  set_duration(s, "recovery_timeout", breaker.recovery_timeout, DurationRule::non_negative);
  set_integer(s, "success_threshold", breaker.success_threshold, {1, 1'000'000});
  set_integer(s, "half_open_calls", breaker.half_open_calls, {1, 1'000'000});
  const std::string fraction = " (a fraction: 0.5 is 50 %)";
  set_real(s, "failure_rate_threshold", breaker.failure_rate_threshold,
           {0, 1, false, true, fraction});
  if (auto window = s.get("window")) {
    if (auto name = choice(*window, "window kind", {"count", "time"})) {
      breaker.window = *name == "count" ? WindowKind::count : WindowKind::time;
    }
  }
  set_integer(s, "window_size", breaker.window_size, {1, 1'000'000});
  set_duration(s, "window_duration", breaker.window_duration, DurationRule::positive);
  set_integer(s, "window_buckets", breaker.window_buckets, {1, 3600});
  set_integer(s, "minimum_calls", breaker.minimum_calls, {1, 1'000'000});
  set_duration(s, "slow_call_threshold", breaker.slow_call_threshold, DurationRule::positive);
  set_real(s, "slow_call_rate_threshold", breaker.slow_call_rate_threshold,
           {0, 1, false, true, fraction});
  if (auto ignored = s.get("ignored")) {
    if (auto set = error_types(*ignored)) breaker.ignored = *set;
  }
  s.finish();
}

PolicyConfig Checker::read_policies(const Item& item, const PolicyConfig& base) {
  PolicyConfig out = base;
  Section s(*this, item);
  if (!s.ok()) return out;

  // Each sub-policy is built once from the merged options, as the daemon will, so that what
  // only the constructors check (minimum_calls <= window_size, ...) is reported here too.
  // What the constructor says of `options`, or "" when it accepts them.
  auto failure = [](auto&& build, const auto& options) -> std::string {
    try {
      build(options);
      return "";
    } catch (const std::exception& e) {
      return e.what();
    }
  };
  // Reports what the constructor says of the merged options, unless the options an agent's
  // override starts from fail the same way: that was reported at the global policy already.
  auto check = [&](const Item& where, auto&& build, const auto& merged, const auto* from) {
    std::string why = failure(build, merged);
    if (!why.empty() && (from == nullptr || failure(build, *from) != why)) at_key(where, why);
  };

  if (auto retry = s.get("retry")) {
    read_retry(*retry, out.retry);
    auto build = [](const RetryOptions& o) {
      if (o.backoff.base > o.backoff.cap) {
        throw std::invalid_argument("backoff base (" + duration_text(o.backoff.base) +
                                    ") is above its cap (" + duration_text(o.backoff.cap) + ")");
      }
      RetryPolicy policy(o);
    };
    check(*retry, build, out.retry, &base.retry);
  }
  if (auto breaker = s.get("breaker")) {
    read_breaker(*breaker, out.breaker);
    check(
        *breaker,
        [](const CircuitBreakerOptions& o) {
          if (o.mode == BreakerMode::failure_rate && o.window == WindowKind::count &&
              o.minimum_calls > o.window_size) {
            throw std::invalid_argument("minimum_calls (" + std::to_string(o.minimum_calls) +
                                        ") must not exceed window_size (" +
                                        std::to_string(o.window_size) +
                                        "), or the circuit could never open");
          }
          CircuitBreaker probe("config", o);
        },
        out.breaker, &base.breaker);
  }
  // The optional policies: a mapping turns one on (over the global one's fields, for an agent),
  // `false` turns it off.
  auto optional_policy = [&](std::string_view key, auto& target, auto&& base_of, auto&& read,
                             auto&& build) {
    auto entry = s.get(key);
    if (!entry) return;
    if (entry->value.IsScalar() && entry->value.Tag() != "!") {
      const std::string word = ascii_lower(entry->value.Scalar());
      if (word == "false" || word == "off" || word == "no") {
        target.reset();
        return;
      }
    }
    if (!entry->value.IsDefined() || entry->value.IsNull() || entry->value.IsMap()) {
      if (!target) target.emplace();
      Section sub(*this, *entry);
      read(sub, *target);
      sub.finish();
      auto from = base_of(base);
      check(*entry, build, *target, from ? &*from : nullptr);
    } else {
      at_value(*entry, "expected a mapping (or false for none), got " + found(entry->value));
    }
  };
  optional_policy(
      "retry_budget", out.retry_budget, [](const PolicyConfig& p) { return p.retry_budget; },
      [&](Section& sub, RetryBudgetOptions& o) {
        set_real(sub, "max_tokens", o.max_tokens, {0, 1e6, false, true});
        set_real(sub, "token_ratio", o.token_ratio, {0, 1e6});
        set_integer(sub, "min_retries_in_flight", o.min_retries_in_flight, {0, 1'000'000});
      },
      [](const RetryBudgetOptions& o) { RetryBudget probe(o); });
  optional_policy(
      "bulkhead", out.bulkhead, [](const PolicyConfig& p) { return p.bulkhead; },
      [&](Section& sub, BulkheadOptions& o) {
        set_integer(sub, "max_concurrent", o.max_concurrent, {1, 1'000'000});
        set_integer(sub, "max_queue", o.max_queue, {0, 1'000'000});
        set_duration(sub, "max_wait", o.max_wait, DurationRule::non_negative);
      },
      [](const BulkheadOptions& o) { Bulkhead probe("config", o); });
  optional_policy(
      "rate_limit", out.rate_limit, [](const PolicyConfig& p) { return p.rate_limit; },
      [&](Section& sub, RateLimiterOptions& o) {
        constexpr double kInf = std::numeric_limits<double>::infinity();
        set_real(sub, "rate_per_second", o.rate_per_second, {0, kInf, false});
        set_real(sub, "burst", o.burst, {1, kInf});
      },
      [](const RateLimiterOptions& o) { RateLimiter probe("config", o); });
  set_duration(s, "call_timeout", out.call_timeout, DurationRule::positive);
  s.finish();
  return out;
}

// --- classifier ----------------------------------------------------------------------------------

void Checker::read_classifier(const Item& item, std::vector<RuleSpec>& rules) {
  Section s(*this, item);
  if (!s.ok()) return;
  auto rule_items = s.get("rules");
  s.finish();
  if (!rule_items) return;
  auto elements = list(*rule_items, "a list of rules");
  if (!elements) return;
  Classifier scratch;  // checks each rule as the daemon's classifier will
  for (const Item& element : *elements) {
    Section r(*this, element, "a rule (a mapping)", false);
    if (!r.ok()) continue;
    RuleSpec spec;
    bool valid = true;
    auto keep = [&](bool ok) { valid = valid && ok; };
    std::map<std::string, Item> fields;
    auto field = [&](std::string_view key) {
      auto entry = r.get(key);
      if (entry) fields.emplace(std::string(key), *entry);
      return entry;
    };
    auto text_field = [&](std::string_view key, std::string& out) {
      if (auto e = field(key)) {
        auto text = string(*e);
        keep(text.has_value());
        if (text) out = *text;
      }
    };
    text_field("kind", spec.kind);
    text_field("exception", spec.exception);
    text_field("errno", spec.errno_name);
    if (auto e = field("status")) {
      auto status = integer(*e, {100, 599});
      keep(status.has_value());
      if (status) spec.status = static_cast<int>(*status);
    }
    if (auto e = field("keywords")) {
      auto words = strings(*e);
      keep(words.has_value());
      if (words && words->empty()) {
        at_value(*e, "expected at least one keyword");
        valid = false;
      } else if (words) {
        spec.keywords = *words;
      }
    }
    auto type = field("type");
    if (!type) {
      at_key(element, "missing key 'type' (the error type the rule gives)");
      valid = false;
    } else if (auto name = choice(*type, "error type", error_type_names())) {
      spec.type = *name;
    } else {
      valid = false;
    }
    if (auto severity = field("severity")) {
      auto name = choice(*severity, "severity", {"low", "medium", "high", "critical"});
      keep(name.has_value());
      if (name) spec.severity = *name;
    } else if (!spec.type.empty()) {
      spec.severity = std::string(to_string(default_severity(*parse_error_type(spec.type))));
    }
    r.finish();
    if (!valid) continue;
    if (spec.kind.empty() && spec.exception.empty() && !spec.status && spec.errno_name.empty() &&
        spec.keywords.empty()) {
      at_key(element,
             "a rule needs something to match: kind, exception, status, errno or "
             "keywords");
      continue;
    }
    Result<void> added = scratch.add(spec);
    if (!added.ok()) {
      // The classifier's message names the field ("field 'errno': ..."): point at it.
      std::string message = added.error().message;
      const Item* where = &element;
      if (std::size_t at = message.find("field '"); at != std::string::npos) {
        const std::string name = message.substr(at + 7, message.find('\'', at + 7) - at - 7);
        if (auto it = fields.find(name); it != fields.end()) {
          where = &it->second;
          // The key path names the field: keep what the classifier says of it.
          message = message.substr(message.find('\'', at + 7) + 1);
          if (message.rfind(": ", 0) == 0 || message.rfind(" ", 0) == 0) {
            message = message.substr(message.find(' ') + 1);
          }
        }
      }
      if (where == &element) {
        at_key(*where, message);
      } else {
        at_value(*where, message);
      }
      continue;
    }
    rules.push_back(std::move(spec));
  }
}

// --- agents --------------------------------------------------------------------------------------

bool valid_agent_name(std::string_view name) {
  return !name.empty() && name.size() <= 100 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  });
}

void Checker::read_probe(const Item& item, ProbeOptions& probe) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_duration(s, "period", probe.period, DurationRule::positive);
  set_duration(s, "timeout", probe.timeout, DurationRule::positive);
  set_integer(s, "failure_threshold", probe.failure_threshold, {1, 1'000'000});
  set_integer(s, "success_threshold", probe.success_threshold, {1, 1'000'000});
  set_duration(s, "initial_delay", probe.initial_delay, DurationRule::non_negative);
  s.finish();
}

void Checker::read_probes(const Item& item, ProbesConfig& probes) {
  Section s(*this, item);
  if (!s.ok()) return;
  if (auto path = s.get("path")) {
    if (auto text = string(*path)) {
      if (text->front() == '/' && std::none_of(text->begin(), text->end(), [](char c) {
            return static_cast<unsigned char>(c) <= 0x20;
          })) {
        probes.path = *text;
      } else {
        at_value(*path,
                 "expected a path that starts with '/', such as /health, got " + in_quotes(*text));
      }
    }
  }
  if (auto p = s.get("startup")) read_probe(*p, probes.startup);
  if (auto p = s.get("readiness")) read_probe(*p, probes.readiness);
  if (auto p = s.get("liveness")) read_probe(*p, probes.liveness);
  s.finish();
}

void Checker::read_agent(const Item& item, const PolicyConfig& global, AgentConfig& agent) {
  Section s(*this, item, "an agent (a mapping)", false);
  if (!s.ok()) return;
  if (auto name = s.get("name")) {
    if (auto text = string(*name)) {
      if (valid_agent_name(*text)) {
        agent.name = *text;
      } else {
        at_value(*name,
                 "an agent name is 1 to 100 characters from a-z, 0-9, '-', '_' and '.', "
                 "got " +
                     in_quotes(*text));
      }
    }
  } else {
    at_key(item, "missing key 'name' (every agent needs a name)");
  }

  auto url = s.get("url");
  auto urls = s.get("urls");
  auto command = s.get("command");
  const int ways = (url ? 1 : 0) + (urls ? 1 : 0) + (command ? 1 : 0);
  if (ways == 0) {
    at_key(item,
           "an agent needs one of url, urls (an agent mend reaches) or command (one mend "
           "starts)");
  } else if (ways > 1) {
    at_key(command ? *command : *urls, "give only one of url, urls and command");
  }
  auto check_url = [&](const Item& where, const std::string& text) {
    Result<UrlParts> parts = parse_url(text);
    if (!parts.ok()) {
      at_value(where, parts.error().message);
      return false;
    }
    return true;
  };
  std::size_t urls_written = 0;  // valid or not: replicas is checked against what was written
  if (url) {
    urls_written = 1;
    if (auto text = string(*url); text && check_url(*url, *text)) agent.urls = {*text};
  }
  if (urls) {
    if (auto elements = list(*urls, "a list of URLs")) {
      urls_written = elements->size();
      if (elements->empty()) at_value(*urls, "expected at least one URL");
      for (const Item& e : *elements) {
        if (auto text = string(e); text && check_url(e, *text)) agent.urls.push_back(*text);
      }
    }
  }
  if (command) {
    if (auto text = string(*command)) {
      if (text->find('/') == std::string::npos) {
        agent.command = *text;  // looked up on PATH when started, as execvp does
      } else {
        const std::string path = resolve(*text);
        std::error_code ec;
        if (!fs::is_regular_file(path, ec) || ::access(path.c_str(), X_OK) != 0) {
          at_value(*command, "no executable file at " + path);
        } else {
          agent.command = path;
        }
      }
    }
  }
  // Keys that make sense only for a process mend starts.
  for (std::string_view key : {"args", "env", "working_dir", "memory_limit", "stop_timeout"}) {
    auto entry = s.get(key);
    if (entry && !command) {
      at_key(*entry, "'" + std::string(key) +
                         "' applies only to an agent that mend starts (with a command)");
    }
  }
  if (command) {
    set_strings(s, "args", agent.args);
    if (auto env = s.get("env")) {
      if (auto pairs = entries(*env)) {
        for (const auto& [key, value] : *pairs) {
          auto text = string(value, /*allow_empty=*/true);
          if (!valid_env_name(key)) {
            at_key(value, "an environment variable name is letters, digits and '_', got " +
                              in_quotes(key));
          } else if (key == "PORT") {
            at_key(value, "PORT is set by mend: it is the port mend assigns to each replica");
          } else if (text) {
            agent.env[key] = *text;
          }
        }
      }
    }
    agent.working_dir = base_dir_.lexically_normal().string();
    if (auto dir = s.get("working_dir")) {
      if (auto text = string(*dir)) {
        const std::string path = resolve(*text);
        std::error_code ec;
        if (fs::is_directory(path, ec)) {
          agent.working_dir = path;
        } else {
          at_value(*dir, "no directory at " + path);
        }
      }
    }
    set_size(s, "memory_limit", agent.memory_limit_bytes, std::size_t{1} << 20);
    set_duration(s, "stop_timeout", agent.stop_timeout, DurationRule::positive);
  }
  set_strings(s, "capabilities", agent.capabilities);
  set_bool(s, "generalist", agent.generalist);
  if (auto replicas = s.get("replicas")) {
    if (auto n = integer(*replicas, {1, 1000})) {
      agent.replicas = static_cast<int>(*n);
      if (urls_written > 0 && static_cast<std::size_t>(*n) != urls_written) {
        at_value(*replicas, "must equal the number of URLs (" + std::to_string(urls_written) +
                                ") for an agent reached by URL, got " + std::to_string(*n) +
                                " (or leave replicas out)");
      }
    }
  } else if (!agent.urls.empty()) {
    agent.replicas = static_cast<int>(agent.urls.size());
  }
  set_integer(s, "max_concurrent", agent.max_concurrent, {0, 1'000'000});
  if (auto probes = s.get("probes")) read_probes(*probes, agent.probes);
  agent.policies = global;
  if (auto policies = s.get("policies")) {
    agent.policies = read_policies(*policies, global);
  }
  s.finish();
}

void Checker::read_agents(const Item& item, const PolicyConfig& global,
                          std::vector<AgentConfig>& agents) {
  auto elements = list(item, "a list of agents");
  if (!elements) return;
  if (elements->empty()) {
    at_key(item, "no agents configured (at least one is needed)");
    return;
  }
  std::map<std::string, int> first_line;
  for (const Item& element : *elements) {
    AgentConfig agent;
    read_agent(element, global, agent);
    if (agent.name.empty()) continue;
    auto [first, fresh] = first_line.emplace(agent.name, line_of(element.mark));
    if (!fresh) {
      at_key(element, "duplicate agent name " + in_quotes(agent.name) + " (first at line " +
                          std::to_string(first->second) + ")");
      continue;
    }
    agent_names_.insert(agent.name);
    agents.push_back(std::move(agent));
  }
}

void Checker::read_chains(const Item& item,
                          std::map<std::string, std::vector<std::string>>& chains) {
  auto pairs = entries(item);
  if (!pairs) return;
  const std::vector<std::string> known(agent_names_.begin(), agent_names_.end());
  for (const auto& [primary, chain_item] : *pairs) {
    if (!agent_names_.contains(primary)) {
      at_key(chain_item, unknown_name("agent", primary, known));
    }
    auto members = list(chain_item, "a list of agent names");
    if (!members) continue;
    std::vector<std::string> chain;
    for (const Item& m : *members) {
      auto name = string(m);
      if (!name) continue;
      if (*name == primary) {
        at_value(m, "an agent cannot be its own fallback");
      } else if (!agent_names_.contains(*name)) {
        at_value(m, unknown_name("agent", *name, known));
      } else if (std::find(chain.begin(), chain.end(), *name) != chain.end()) {
        at_value(m, in_quotes(*name) + " is already in this chain");
      } else {
        chain.push_back(*name);
      }
    }
    chains[primary] = std::move(chain);
  }
}

// --- degradation, escalation, supervision -------------------------------------------------------

void Checker::read_degradation(const Item& item, DegradationTexts& t) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_string(s, "default_message", t.default_message);
  set_string(s, "default_estimated_recovery", t.default_estimated_recovery);
  set_strings(s, "default_alternatives", t.default_alternatives);
  set_string(s, "code_review_message", t.code_review_message);
  set_string(s, "code_review_recommendation", t.code_review_recommendation);
  set_size(s, "code_review_size_limit", t.code_review_size_limit, 1);
  set_string(s, "deployment_message", t.deployment_message);
  set_strings(s, "deployment_steps", t.deployment_steps);
  set_string(s, "deployment_monitoring", t.deployment_monitoring);
  set_string(s, "ai_analysis_message", t.ai_analysis_message);
  set_strings(s, "ai_analysis_alternatives", t.ai_analysis_alternatives);
  set_string(s, "ai_analysis_recommendation", t.ai_analysis_recommendation);
  set_string(s, "security_scan_message", t.security_scan_message);
  set_strings(s, "security_scan_steps", t.security_scan_steps);
  set_string(s, "security_scan_recommendation", t.security_scan_recommendation);
  s.finish();
}

void Checker::read_receiver(const Item& item, ReceiverConfig& receiver) {
  Section s(*this, item, "a receiver (a mapping)", false);
  if (!s.ok()) return;
  if (auto name = s.get("name")) {
    if (auto text = string(*name)) receiver.name = *text;
  } else {
    at_key(item, "missing key 'name' (routes refer to receivers by name)");
  }
  auto kind = s.get("kind");
  if (!kind) {
    at_key(item, "missing key 'kind' (webhook, slack, pagerduty or file)");
  } else if (auto k = choice(*kind, "receiver kind", {"webhook", "slack", "pagerduty", "file"})) {
    receiver.kind = *k;
  }
  const std::string& k = receiver.kind;
  // Which keys each kind takes; a key given to another kind is a mistake worth naming.
  const std::map<std::string, std::vector<std::string>> kUses = {
      {"url", {"webhook", "slack", "pagerduty"}},
      {"headers", {"webhook"}},
      {"routing_key", {"pagerduty"}},
      {"routing_key_env", {"pagerduty"}},
      {"path", {"file"}},
  };
  for (const auto& [key, kinds] : kUses) {
    if (!k.empty() && s.has(key) && std::find(kinds.begin(), kinds.end(), k) == kinds.end()) {
      at_key(*s.get(key),
             "'" + key + "' does not apply to a " + k + " receiver (only to " + join(kinds) + ")");
    }
  }
  auto url = s.get("url");
  if (url && k != "file") {
    if (auto text = string(*url)) {
      if (Result<UrlParts> parts = parse_url(*text); parts.ok()) {
        receiver.url = *text;
      } else {
        at_value(*url, parts.error().message);
      }
    }
  } else if (!url && (k == "webhook" || k == "slack")) {
    at_key(item, "missing key 'url' (a " + k + " receiver posts to it)");
  }
  if (k == "webhook") {
    if (auto headers = s.get("headers")) {
      if (auto pairs = entries(*headers)) {
        for (const auto& [name, value] : *pairs) {
          const bool token = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) ||
                   (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
          });
          auto text = string(value, /*allow_empty=*/true);
          if (!token) {
            at_key(value, "invalid header name " + in_quotes(name));
          } else if (text && text->find_first_of("\r\n") != std::string::npos) {
            at_value(value, "a header value cannot contain a line break");
          } else if (text) {
            receiver.headers[name] = *text;
          }
        }
      }
    }
  }
  if (k == "pagerduty") {
    auto key = s.get("routing_key");
    auto key_env = s.get("routing_key_env");
    if (key && key_env) {
      at_key(*key_env, "give either routing_key or routing_key_env, not both");
    } else if (key) {
      set_string(s, "routing_key", receiver.routing_key);
    } else if (key_env) {
      if (auto value = from_environment(*key_env)) receiver.routing_key = *value;
    } else {
      at_key(item, "missing key 'routing_key' or 'routing_key_env' (PagerDuty's integration key)");
    }
  }
  if (k == "file") {
    if (auto path = s.get("path")) {
      if (auto text = string(*path)) receiver.path = *text == "-" ? *text : resolve(*text);
    } else {
      at_key(item, "missing key 'path' (the file to append to, or - for standard error)");
    }
  }
  // Mark the remaining keys known: those that do not apply were reported above.
  for (const auto& [key, kinds] : kUses) (void)s.get(key);
  s.finish();
}

void Checker::read_routes(const Item& item, const EscalationConfig& escalation,
                          std::map<std::string, std::vector<std::string>>& routes) {
  auto pairs = entries(item);
  if (!pairs) return;
  const EscalationOptions& p = escalation.policy;
  const std::vector<std::string> channels = {p.team_channel, p.oncall_channel, p.emergency_channel};
  const std::vector<std::string> known(receiver_names_.begin(), receiver_names_.end());
  for (const auto& [channel, receivers] : *pairs) {
    if (std::find(channels.begin(), channels.end(), channel) == channels.end()) {
      at_key(receivers, unknown_name("channel", channel, channels) +
                            "; channels are set under escalation.channels");
    }
    auto names = list(receivers, "a list of receiver names");
    if (!names) continue;
    std::vector<std::string> route;
    for (const Item& n : *names) {
      auto name = string(n);
      if (!name) continue;
      if (!receiver_names_.contains(*name)) {
        at_value(n, known.empty() ? "unknown receiver " + in_quotes(*name) +
                                        " (no receivers are defined under escalation.receivers)"
                                  : unknown_name("receiver", *name, known));
      } else {
        route.push_back(*name);
      }
    }
    routes[channel] = std::move(route);
  }
}

void Checker::read_escalation(const Item& item, EscalationConfig& escalation) {
  Section s(*this, item);
  if (!s.ok()) return;
  EscalationOptions& p = escalation.policy;
  if (auto channels = s.get("channels")) {
    Section c(*this, *channels);
    if (c.ok()) {
      set_string(c, "team", p.team_channel);
      set_string(c, "oncall", p.oncall_channel);
      set_string(c, "emergency", p.emergency_channel);
      c.finish();
    }
  }
  if (auto slas = s.get("slas")) {
    Section c(*this, *slas);
    if (c.ok()) {
      set_duration(c, "medium", p.medium_sla, DurationRule::positive);
      set_duration(c, "high", p.high_sla, DurationRule::positive);
      set_duration(c, "critical", p.critical_sla, DurationRule::positive);
      c.finish();
    }
  }
  set_duration(s, "review_after", p.review_after, DurationRule::positive);
  set_string(s, "oncall_assignee", p.oncall_assignee);
  set_string(s, "war_room_url_template", p.war_room_url_template);
  set_strings(s, "fingerprint_labels", p.fingerprint_labels);
  set_bool(s, "reescalate", p.reescalate);
  set_integer(s, "max_tiers", p.max_tiers, {0, 100});
  if (auto receivers = s.get("receivers")) {
    if (auto elements = list(*receivers, "a list of receivers")) {
      std::map<std::string, int> first_line;
      for (const Item& element : *elements) {
        ReceiverConfig receiver;
        read_receiver(element, receiver);
        if (receiver.name.empty()) continue;
        auto [first, fresh] = first_line.emplace(receiver.name, line_of(element.mark));
        if (!fresh) {
          at_key(element, "duplicate receiver name " + in_quotes(receiver.name) +
                              " (first at line " + std::to_string(first->second) + ")");
          continue;
        }
        receiver_names_.insert(receiver.name);
        escalation.receivers.push_back(std::move(receiver));
      }
    }
  }
  if (auto routes = s.get("routes")) read_routes(*routes, escalation, escalation.routes);
  set_duration(s, "delivery_interval", escalation.delivery_interval, DurationRule::positive);
  set_duration(s, "sla_check_interval", escalation.sla_check_interval, DurationRule::positive);
  s.finish();
}

void Checker::read_supervision(const Item& item, SupervisionConfig& sup) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_duration(s, "restart_backoff_initial", sup.restart_backoff_initial, DurationRule::positive);
  set_duration(s, "restart_backoff_max", sup.restart_backoff_max, DurationRule::positive);
  set_duration(s, "restart_backoff_reset", sup.restart_backoff_reset, DurationRule::positive);
  set_integer(s, "intensity_max_restarts", sup.intensity_max_restarts, {1, 1'000'000});
  set_duration(s, "intensity_period", sup.intensity_period, DurationRule::positive);
  set_duration(s, "ready_timeout", sup.ready_timeout, DurationRule::positive);
  if (sup.restart_backoff_max < sup.restart_backoff_initial) {
    at_key(s.has("restart_backoff_max") ? *s.get("restart_backoff_max") : item,
           "restart_backoff_max (" + duration_text(sup.restart_backoff_max) +
               ") is below restart_backoff_initial (" +
               duration_text(sup.restart_backoff_initial) + ")");
  }
  s.finish();
}

// --- The whole file ---------------------------------------------------------------------------

Config Checker::run(const YAML::Node& root) {
  Config config;
  Item top{root, root.Mark(), ""};
  Section s(*this, top, "a mapping of sections (server, agents, ...)");
  if (!s.ok()) return config;
  if (auto item = s.get("server")) read_server(*item, config.server);
  if (auto item = s.get("store")) read_store(*item, config.store);
  if (config.store.path != ":memory:") config.store.path = resolve(config.store.path);
  if (auto item = s.get("tasks")) read_tasks(*item, config.tasks);
  if (auto item = s.get("policies")) {
    config.policies = read_policies(*item, PolicyConfig{});
  }
  if (auto item = s.get("classifier")) read_classifier(*item, config.classifier_rules);
  if (auto item = s.get("agents")) {
    read_agents(*item, config.policies, config.agents);
  } else {
    problem(YAML::Mark::null_mark(), "agents", "no agents configured (at least one is needed)");
  }
  if (auto item = s.get("fallback_chains")) read_chains(*item, config.fallback_chains);
  set_bool(s, "seed_fallback_chains", config.seed_fallback_chains);
  if (auto item = s.get("degradation")) read_degradation(*item, config.degradation);
  if (auto item = s.get("escalation")) read_escalation(*item, config.escalation);
  if (auto item = s.get("supervision")) read_supervision(*item, config.supervision);
  if (auto item = s.get("relays")) read_relays(*item, config.server, config.relays);
  s.finish();
  return config;
}

// Whether line `line` (0-based) is indented with a tab: yaml-cpp's message then says only
// "illegal map value" or the like.
bool tab_indented(std::string_view text, int line) {
  for (int i = 0; i < line; ++i) {
    std::size_t end = text.find('\n');
    if (end == std::string_view::npos) return false;
    text.remove_prefix(end + 1);
  }
  for (char c : text) {
    if (c == '\t') return true;
    if (c != ' ') return false;
  }
  return false;
}

ConfigLoad check(std::string_view yaml, const std::string& source_name, fs::path base_dir) {
  ConfigLoad load;
  auto whole_file = [&](int line, int column, std::string message) {
    load.problems.push_back({source_name, line, column, "", std::move(message)});
  };
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    Checker checker(source_name, std::move(base_dir));
    Config config = checker.run(root);
    config.source_path = source_name;
    load.problems = checker.take_problems();
    if (load.problems.empty()) load.config = std::move(config);
  } catch (const YAML::DeepRecursion& e) {
    load.problems.clear();
    whole_file(line_of(e.mark), e.mark.is_null() ? 0 : e.mark.column + 1,
               "invalid YAML: nested " + std::to_string(e.depth()) + " levels deep or more");
  } catch (const YAML::ParserException& e) {
    load.problems.clear();
    std::string message = "invalid YAML: " + e.msg;
    if (!e.mark.is_null() && tab_indented(yaml, e.mark.line)) {
      message += " (YAML does not allow tabs for indentation)";
    }
    whole_file(line_of(e.mark), e.mark.is_null() ? 0 : e.mark.column + 1, std::move(message));
  } catch (const YAML::Exception& e) {
    load.problems.clear();
    whole_file(0, 0, "invalid YAML: " + e.msg);
  } catch (const std::exception& e) {
    load.problems.clear();
    whole_file(0, 0, std::string("cannot check the file: ") + e.what());
  }
  return load;
}

}  // namespace

ConfigLoad parse_config(std::string_view yaml, std::string source_name, std::string base_dir) {
  try {
    fs::path base = base_dir.empty() ? fs::current_path() : fs::absolute(base_dir);
    return check(yaml, source_name, base);
  } catch (const std::exception& e) {
    ConfigLoad load;
    load.problems.push_back({source_name, 0, 0, "", std::string("cannot check: ") + e.what()});
    return load;
  }
}

ConfigLoad load_config_file(const std::string& path) {
  ConfigLoad load;
  auto unreadable = [&](const std::string& why) {
    load.problems.push_back({path, 0, 0, "", "cannot read the configuration: " + why});
    return load;
  };
  try {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return unreadable("it is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) return unreadable(std::strerror(errno));
    std::string text;
    char buffer[65536];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
      text.append(buffer, static_cast<std::size_t>(in.gcount()));
      if (text.size() > kMaxConfigBytes) {
        return unreadable("it is larger than " + std::to_string(kMaxConfigBytes >> 20) + " MiB");
      }
    }
    if (in.bad()) return unreadable(std::strerror(errno));
    ConfigLoad load_result = check(text, path, fs::absolute(path).parent_path());
    if (load_result.ok() && load_result.config->server.token_inline) {
      const fs::perms mode = fs::status(path, ec).permissions();
      if (!ec && (mode & (fs::perms::group_read | fs::perms::others_read)) != fs::perms::none) {
        load_result.warnings.push_back(
            path + ": others may read this file, and it holds server.token inline: chmod 600 "
                   "it, or give the token by server.token_env");
      }
    }
    return load_result;
  } catch (const std::exception& e) {
    return unreadable(e.what());
  }
}

}  // namespace mend
