// The configuration loader: the policies (retry, backoff, breaker, budgets, bulkheads, rate
// limits, timeouts) and the classifier's rules (config_checker.h).
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

#include "config_checker.h"
#include "mend/core/text.h"
#include "mend/runtime/http_client.h"  // parse_url

namespace mend::config_detail {

// --- policies ----------------------------------------------------------------------------------

void Checker::read_backoff(const Item& item, BackoffOptions& backoff) {
  Section s(*this, item);
  if (!s.ok()) return;
  if (auto kind = s.get("kind")) {
    static const std::vector<std::string> kNames = {
        "error_scaled",        "constant", "linear", "exponential", "full_jitter", "equal_jitter",
        "decorrelated_jitter", "full",     "equal",  "decorrelated"};
    std::optional<std::string> name;
    if (kind->value.IsScalar() && kind->value.Scalar() == "seed") {  // its former name
      warning(kind->value.Mark(), kind->path,
              "backoff kind 'seed' is deprecated: it is now called 'error_scaled'");
      name = "error_scaled";
    } else {
      name = choice(*kind, "backoff kind", kNames);
    }
    if (name) {
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
  set_real(s, "retry_after_jitter", retry.retry_after_jitter,
           {0, 1, true, true, " (0.2: up to 20 % more than the agent asked)"});
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

void Checker::read_replica_balancing(const Item& item, ReplicaBalancerOptions& balancing) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_integer(s, "consecutive_failures", balancing.consecutive_failures,
              {0, 1'000'000});  // 0: never ejected on this count
  set_real(s, "failure_rate_threshold", balancing.failure_rate_threshold,
           {0, 1, false, true, " (a fraction: 0.5 is 50 %)"});
  set_integer(s, "failure_rate_minimum_calls", balancing.failure_rate_minimum_calls,
              {0, 1'000'000});  // 0: never ejected on the share
  set_duration(s, "failure_rate_window", balancing.failure_rate_window, DurationRule::positive);
  set_duration(s, "base_ejection_time", balancing.base_ejection_time, DurationRule::positive);
  set_duration(s, "max_ejection_time", balancing.max_ejection_time, DurationRule::positive);
  set_integer(s, "max_ejection_percent", balancing.max_ejection_percent, {0, 100});
  set_real(s, "slow_call_factor", balancing.slow_call_factor,
           {0, 1000, true, true, " (0: off; else at least 1)"});
  set_duration(s, "slow_call_minimum", balancing.slow_call_minimum, DurationRule::non_negative);
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
  if (auto balancing = s.get("replica_balancing")) {
    read_replica_balancing(*balancing, out.replica_balancing);
    // Built for two replicas: what the constructor checks of the options holds for any count.
    check(
        *balancing, [](const ReplicaBalancerOptions& o) { ReplicaBalancer probe(2, o); },
        out.replica_balancing, &base.replica_balancing);
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
        set_real(sub, "ratio", o.ratio, {0, 1000});
        set_real(sub, "min_retries_per_second", o.min_retries_per_second, {0, 1e6});
        if (auto window = sub.get("window")) {
          if (auto d = duration(*window, DurationRule::positive)) {
            if (*d < std::chrono::milliseconds(10) || *d > std::chrono::hours(1)) {
              at_value(*window, "must be between 10ms and 1h, got " + found(window->value));
            } else {
              o.window = *d;
            }
          }
        }
        set_real(sub, "other_replica_cost", o.other_replica_cost, {0, 1000});
        set_real(sub, "plain_cost", o.plain_cost, {0, 1000});
        set_real(sub, "overload_cost", o.overload_cost, {0, 1000});
        set_real(sub, "overload_failure_share", o.overload_failure_share,
                 {0, 1, false, true, " (a fraction: 0.5 is 50 %)"});
        set_integer(sub, "overload_minimum_calls", o.overload_minimum_calls, {0, 1'000'000});
        set_integer(sub, "min_retries_in_flight", o.min_retries_in_flight, {0, 1'000'000});
        // The former token bucket's keys (gRPC's): read, with a warning, and unused.
        for (const char* former : {"max_tokens", "token_ratio"}) {
          if (auto old = sub.get_former(former)) {
            warning(old->mark, old->path,
                    "key " + in_quotes(former) +
                        " is no longer used: the retry budget is a window of retry costs now "
                        "(ratio, min_retries_per_second; docs/policies.md)");
          }
        }
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
  // hedging: {delay: 50ms | p95, min_delay, max_delay, task_types, window, min_samples}
  optional_policy(
      "hedging", out.hedging, [](const PolicyConfig& p) { return p.hedging; },
      [&](Section& sub, HedgingOptions& o) {
        if (auto delay = sub.get("delay")) {
          // A duration, or "pNN": the agent's observed NNth percentile (p95, p99, p99.9).
          const std::string text = delay->value.IsScalar() ? delay->value.Scalar() : std::string();
          if (!text.empty() && (text[0] == 'p' || text[0] == 'P')) {
            double percent = 0;
            const char* end = text.data() + text.size();
            const auto [ptr, ec] = std::from_chars(text.data() + 1, end, percent);
            if (ec != std::errc() || ptr != end || !(percent > 0 && percent < 100)) {
              at_value(*delay,
                       "expected a duration (50ms) or a percentile of the agent's latency "
                       "(p95: above 0, below 100), got " +
                           found(delay->value));
            } else {
              o.delay.reset();
              o.quantile = percent / 100;
            }
          } else if (auto d = duration(*delay, DurationRule::positive)) {
            o.delay = *d;
          }
        }
        set_duration(sub, "min_delay", o.min_delay, DurationRule::non_negative);
        set_duration(sub, "max_delay", o.max_delay, DurationRule::positive);
        if (auto types = sub.get("task_types")) {
          if (auto list = strings(*types)) o.task_types = *list;
        }
        set_duration(sub, "window", o.window, DurationRule::positive);
        set_integer(sub, "min_samples", o.min_samples, {1, 1'000'000});
      },
      [](const HedgingOptions& o) { HedgingPolicy probe(o); });
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

}  // namespace mend::config_detail
