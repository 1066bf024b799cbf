#include "chaos.h"

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>

namespace mend::sample_agent {
namespace {

using nlohmann::json;

Error invalid(std::string message) {
  return Error::of_kind("validation", std::move(message));
}

std::string number_text(double d) {
  std::ostringstream out;
  out << d;  // 0, 1, 0.5: not nlohmann's 0.0
  return out.str();
}

// A finite number >= minimum (and <= maximum), or an error naming `what`.
Result<double> number_in(const json& value, std::string_view what, double minimum,
                         double maximum = HUGE_VAL) {
  if (!value.is_number()) return invalid(std::string(what) + " must be a number");
  double d = value.get<double>();
  if (!std::isfinite(d) || d < minimum || d > maximum) {
    std::string range = maximum == HUGE_VAL
                            ? ">= " + number_text(minimum)
                            : "between " + number_text(minimum) + " and " + number_text(maximum);
    return invalid(std::string(what) + " must be " + range + ", not " + value.dump());
  }
  return d;
}

// A whole number >= minimum that fits in int64, or an error naming `what`.
Result<std::int64_t> whole_number(const json& value, std::string_view what, double minimum,
                                  double maximum = 9.0e15) {
  Result<double> d = number_in(value, what, minimum, maximum);
  if (!d.ok()) return std::move(d).error();
  if (std::floor(*d) != *d) {
    return invalid(std::string(what) + " must be a whole number, not " + value.dump());
  }
  return static_cast<std::int64_t>(*d);
}

Result<bool> boolean(const json& value, std::string_view what) {
  if (!value.is_boolean()) return invalid(std::string(what) + " must be true or false");
  return value.get<bool>();
}

Result<FailureKind> kind_named(const json& value, std::string_view what) {
  if (!value.is_string()) return invalid(std::string(what) + " must be a string");
  auto kind = parse_failure_kind(value.get<std::string>());
  if (!kind) {
    return invalid(std::string(what) + " '" + value.get<std::string>() +
                   "' is not a failure kind (" + failure_kind_names() + ")");
  }
  return *kind;
}

std::chrono::milliseconds to_ms(double ms) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

}  // namespace

std::string_view to_string(FailureKind kind) noexcept {
  switch (kind) {
    case FailureKind::kTimeout:
      return "timeout";
    case FailureKind::kReset:
      return "reset";
    case FailureKind::kRateLimited:
      return "429";
    case FailureKind::kUnavailable:
      return "503";
    case FailureKind::kLogic:
      return "500";
    case FailureKind::kDatabase:
      return "database";
    case FailureKind::kExternal:
      return "external";
    case FailureKind::kCritical:
      return "critical";
  }
  return "unknown";
}

std::optional<FailureKind> parse_failure_kind(std::string_view name) noexcept {
  for (FailureKind kind : kAllFailureKinds) {
    if (to_string(kind) == name) return kind;
  }
  return std::nullopt;
}

std::string failure_kind_names() {
  std::string out;
  for (FailureKind kind : kAllFailureKinds) {
    if (!out.empty()) out += ", ";
    out += to_string(kind);
  }
  return out;
}

Result<std::pair<FailureKind, double>> parse_fail_flag(std::string_view text) {
  std::size_t eq = text.find('=');
  if (eq == std::string_view::npos) {
    return invalid("--fail takes KIND=RATE (e.g. 503=0.2), not '" + std::string(text) + "'");
  }
  auto kind = parse_failure_kind(text.substr(0, eq));
  if (!kind) {
    return invalid("--fail: '" + std::string(text.substr(0, eq)) + "' is not a failure kind (" +
                   failure_kind_names() + ")");
  }
  std::string rate_text(text.substr(eq + 1));
  char* end = nullptr;
  double rate = std::strtod(rate_text.c_str(), &end);
  if (rate_text.empty() || end != rate_text.c_str() + rate_text.size() || !std::isfinite(rate) ||
      rate < 0.0 || rate > 1.0) {
    return invalid("--fail " + std::string(text) + ": the rate must be a number between 0 and 1");
  }
  return std::make_pair(*kind, rate);
}

Result<void> apply_chaos_json(const json& body, const ChaosKnobs& defaults, ChaosKnobs& knobs,
                              std::deque<FailNext>& queue) {
  if (!body.is_object()) return invalid("the chaos settings must be a JSON object");
  // Worked on copies: a bad member leaves everything as it was.
  ChaosKnobs next = knobs;
  std::deque<FailNext> next_queue = queue;
  if (auto it = body.find("reset"); it != body.end()) {
    Result<bool> reset = boolean(*it, "reset");
    if (!reset.ok()) return std::move(reset).error();
    if (*reset) {
      next = defaults;
      next_queue.clear();
    }
  }
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& key = it.key();
    const json& value = it.value();
    if (key == "reset") continue;
    if (key == "fail") {
      if (!value.is_object()) return invalid("fail must be an object of KIND: RATE");
      next.fail_rates.clear();
      for (auto f = value.begin(); f != value.end(); ++f) {
        Result<FailureKind> kind = kind_named(json(f.key()), "fail: kind");
        if (!kind.ok()) return std::move(kind).error();
        Result<double> rate = number_in(f.value(), "fail: the rate of " + f.key(), 0.0, 1.0);
        if (!rate.ok()) return std::move(rate).error();
        if (*rate > 0.0) next.fail_rates[*kind] = *rate;
      }
    } else if (key == "fail_next") {
      if (!value.is_array()) return invalid("fail_next must be an array of {kind, count}");
      for (const json& entry : value) {
        if (!entry.is_object()) return invalid("fail_next: each entry must be {kind, count}");
        FailNext f;
        auto kind_it = entry.find("kind");
        if (kind_it == entry.end()) return invalid("fail_next: an entry has no kind");
        Result<FailureKind> kind = kind_named(*kind_it, "fail_next: kind");
        if (!kind.ok()) return std::move(kind).error();
        f.kind = *kind;
        if (auto count = entry.find("count"); count != entry.end()) {
          Result<std::int64_t> n = whole_number(*count, "fail_next: count", 1, 1e6);
          if (!n.ok()) return std::move(n).error();
          f.count = static_cast<int>(*n);
        }
        for (auto m = entry.begin(); m != entry.end(); ++m) {
          if (m.key() != "kind" && m.key() != "count") {
            return invalid("fail_next: unknown member '" + m.key() + "' (kind, count)");
          }
        }
        next_queue.push_back(f);
      }
    } else if (key == "latency_ms" || key == "timeout_delay_ms") {
      Result<double> ms = number_in(value, key, 0.0, 86'400'000.0);
      if (!ms.ok()) return std::move(ms).error();
      (key == "latency_ms" ? next.latency : next.timeout_delay) = to_ms(*ms);
    } else if (key == "retry_after") {
      Result<double> seconds = number_in(value, key, 0.0, 86'400.0);
      if (!seconds.ok()) return std::move(seconds).error();
      next.retry_after_seconds = *seconds;
    } else if (key == "memory_growth_kib") {
      Result<std::int64_t> kib = whole_number(value, key, 0, 1 << 20);
      if (!kib.ok()) return std::move(kib).error();
      next.memory_growth_kib = static_cast<std::size_t>(*kib);
    } else if (key == "crash_after") {
      Result<std::int64_t> n = whole_number(value, key, 0);
      if (!n.ok()) return std::move(n).error();
      next.crash_countdown = *n;
    } else if (key == "hang" || key == "unhealthy" || key == "database_down" ||
               key == "pool_exhausted") {
      Result<bool> flag = boolean(value, key);
      if (!flag.ok()) return std::move(flag).error();
      bool& target = key == "hang"            ? next.hang
                     : key == "unhealthy"     ? next.unhealthy
                     : key == "database_down" ? next.database_down
                                              : next.pool_exhausted;
      target = *flag;
    } else if (key == "admin_fail") {
      if (!value.is_object()) return invalid("admin_fail must be an object of HOOK: STATUS");
      next.admin_fail.clear();
      for (auto h = value.begin(); h != value.end(); ++h) {
        Result<std::int64_t> status =
            whole_number(h.value(), "admin_fail: the status of " + h.key(), 400, 599);
        if (!status.ok()) return std::move(status).error();
        next.admin_fail[h.key()] = static_cast<int>(*status);
      }
    } else {
      return invalid(
          "unknown chaos knob '" + key +
          "' (reset, fail, fail_next, latency_ms, timeout_delay_ms, retry_after, "
          "memory_growth_kib, crash_after, hang, unhealthy, database_down, pool_exhausted, "
          "admin_fail)");
    }
  }
  knobs = std::move(next);
  queue = std::move(next_queue);
  return {};
}

json chaos_to_json(const ChaosKnobs& knobs, const std::deque<FailNext>& queue) {
  json fail = json::object();
  for (const auto& [kind, rate] : knobs.fail_rates) fail[std::string(to_string(kind))] = rate;
  json next = json::array();
  for (const FailNext& f : queue) {
    next.push_back({{"kind", std::string(to_string(f.kind))}, {"count", f.count}});
  }
  json admin_fail = json::object();
  for (const auto& [hook, status] : knobs.admin_fail) admin_fail[hook] = status;
  return {{"fail", fail},
          {"fail_next", next},
          {"latency_ms", knobs.latency.count()},
          {"timeout_delay_ms", knobs.timeout_delay.count()},
          {"retry_after", knobs.retry_after_seconds},
          {"memory_growth_kib", knobs.memory_growth_kib},
          {"crash_after", knobs.crash_countdown},
          {"hang", knobs.hang},
          {"unhealthy", knobs.unhealthy},
          {"database_down", knobs.database_down},
          {"pool_exhausted", knobs.pool_exhausted},
          {"admin_fail", admin_fail}};
}

std::optional<FailureKind> choose_failure(const ChaosKnobs& knobs, std::deque<FailNext>& queue,
                                          double draw) {
  if (!queue.empty()) {
    FailureKind kind = queue.front().kind;
    if (--queue.front().count <= 0) queue.pop_front();
    return kind;
  }
  double stacked = 0.0;
  for (FailureKind kind : kAllFailureKinds) {
    auto it = knobs.fail_rates.find(kind);
    if (it == knobs.fail_rates.end()) continue;
    stacked += it->second;
    if (draw < stacked) return kind;
  }
  return std::nullopt;
}

}  // namespace mend::sample_agent
