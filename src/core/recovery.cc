#include "mend/core/recovery.h"

#include <cmath>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <utility>

#include "json_writer.h"

namespace mend {
namespace {

// Above this many agents, heal() forgets the intensity state of agents with no recent attempt,
// so that a stream of distinct names cannot grow the map without bound.
constexpr std::size_t kIntensityPruneThreshold = 1024;

std::optional<double> metric(const Symptoms& s, std::string_view name) {
  auto it = s.metrics.find(std::string(name));
  if (it == s.metrics.end() || std::isnan(it->second)) return std::nullopt;
  return it->second;
}

std::optional<double> pool_use(const Symptoms& s) {
  if (auto use = metric(s, kMetricPoolUse)) return use;
  auto in_use = metric(s, kMetricPoolInUse);
  auto size = metric(s, kMetricPoolSize);
  if (in_use && size && *size > 0) return *in_use / *size;
  return std::nullopt;
}

std::string message_of(const Error& e) {
  return e.message.empty() ? e.describe() : e.message;
}

// One strategy run: calls operations in order, recording each in the steps, and turns a
// failure (an error or an exception) into the result's error.
class StrategyRun {
 public:
  StrategyRun(const RecoveryContext& ctx, AgentOperations& ops, std::string action)
      : ctx_(ctx), ops_(ops) {
    result_.action = std::move(action);
  }

  template <class Call>
  bool step(std::string name, Call&& call) {
    result_.steps.push_back(std::move(name));
    try {
      Result<void> r = call(ops_, ctx_.agent);
      if (r.ok()) return true;
      result_.error = message_of(r.error());
    } catch (const std::exception& e) {
      result_.error = e.what();
    } catch (...) {
      result_.error = "unknown exception";
    }
    return false;
  }

  void set_action(std::string action) { result_.action = std::move(action); }

  RecoveryResult succeeded() {
    result_.success = true;
    result_.reason.clear();
    return std::move(result_);
  }
  RecoveryResult failed() {
    result_.success = false;
    result_.reason = "action_failed";
    return std::move(result_);
  }

 private:
  const RecoveryContext& ctx_;
  AgentOperations& ops_;
  RecoveryResult result_;
};

Result<void> clear_caches(AgentOperations& o, const std::string& a) {
  return o.clear_caches(a);
}
Result<void> graceful_restart(AgentOperations& o, const std::string& a) {
  return o.restart(a, /*graceful=*/true);
}
Result<void> force_restart(AgentOperations& o, const std::string& a) {
  return o.restart(a, /*graceful=*/false);
}
Result<void> reset_pools(AgentOperations& o, const std::string& a) {
  return o.reset_connection_pools(a);
}
Result<void> increase_limits(AgentOperations& o, const std::string& a) {
  return o.increase_connection_limits(a);
}
Result<void> reconnect(AgentOperations& o, const std::string& a) {
  return o.reconnect_database(a);
}

RecoveryResult recover_memory(const RecoveryContext& ctx, AgentOperations& ops) {
  StrategyRun run(ctx, ops, "memory_cleanup");
  auto wait = [&ctx](AgentOperations& o, const std::string& a) {
    return o.wait_until_ready(a, ctx.ready_timeout);
  };
  if (!run.step("clear_caches", clear_caches)) return run.failed();
  if (!run.step("restart(graceful)", graceful_restart)) return run.failed();
  if (!run.step("wait_until_ready", wait)) return run.failed();
  return run.succeeded();
}

RecoveryResult recover_connections(const RecoveryContext& ctx, AgentOperations& ops) {
  StrategyRun run(ctx, ops, "connection_recovery");
  if (!run.step("reset_connection_pools", reset_pools)) return run.failed();
  if (!run.step("increase_connection_limits", increase_limits)) return run.failed();
  return run.succeeded();
}

RecoveryResult recover_service(const RecoveryContext& ctx, AgentOperations& ops) {
  StrategyRun run(ctx, ops, "service_restart");
  auto wait = [&ctx](AgentOperations& o, const std::string& a) {
    return o.wait_until_ready(a, ctx.ready_timeout);
  };
  if (run.step("restart(graceful)", graceful_restart) && run.step("wait_until_ready", wait)) {
    return run.succeeded();
  }
  // The graceful path failed or the agent never became ready: kill it and start it again.
  run.set_action("service_force_restart");
  if (!run.step("restart(force)", force_restart)) return run.failed();
  return run.succeeded();
}

RecoveryResult recover_database(const RecoveryContext& ctx, AgentOperations& ops) {
  StrategyRun run(ctx, ops, "database_reconnect");
  if (!run.step("reconnect_database", reconnect)) return run.failed();
  return run.succeeded();
}

}  // namespace

std::optional<std::string> diagnose(const Symptoms& s, const DiagnosisOptions& o) {
  auto is = [&s](ErrorType t) { return s.error_type == t; };
  auto memory = metric(s, kMetricMemoryPercent);
  if (is(ErrorType::memory_exhausted) || (memory && *memory >= o.memory_percent_threshold)) {
    return std::string(kHighMemoryUsage);
  }
  auto pool = pool_use(s);
  if (is(ErrorType::connection_pool_exhausted) || (pool && *pool >= o.pool_use_threshold)) {
    return std::string(kConnectionPoolExhausted);
  }
  if (is(ErrorType::database_error)) return std::string(kDatabaseConnectionLost);
  if (is(ErrorType::service_unavailable) || s.health == HealthState::unhealthy) {
    return std::string(kServiceUnresponsive);
  }
  return std::nullopt;
}

RecoveryStrategies RecoveryStrategies::standard() {
  RecoveryStrategies s;
  s.add(std::string(kHighMemoryUsage), recover_memory);
  s.add(std::string(kConnectionPoolExhausted), recover_connections);
  s.add(std::string(kServiceUnresponsive), recover_service);
  s.add(std::string(kDatabaseConnectionLost), recover_database);
  return s;
}

void RecoveryStrategies::add(std::string issue, Strategy strategy) {
  if (!strategy) {
    strategies_.erase(issue);
    return;
  }
  strategies_[std::move(issue)] = std::move(strategy);
}

bool RecoveryStrategies::has(std::string_view issue) const {
  return strategies_.find(issue) != strategies_.end();
}

RecoveryResult RecoveryStrategies::attempt(const RecoveryContext& ctx, AgentOperations& ops) const {
  auto it = strategies_.find(ctx.issue);
  if (it == strategies_.end()) {
    RecoveryResult r;
    r.reason = "no_strategy";
    r.error = "no recovery strategy for issue '" + ctx.issue + "'";
    return r;
  }
  try {
    return it->second(ctx, ops);
  } catch (const std::exception& e) {
    RecoveryResult r;
    r.reason = "strategy_threw";
    r.error = e.what();
    return r;
  } catch (...) {
    RecoveryResult r;
    r.reason = "strategy_threw";
    r.error = "unknown exception";
    return r;
  }
}

RestartIntensity::RestartIntensity(RestartIntensityOptions options) : options_(options) {
  if (options_.max_restarts < 0) {
    throw std::invalid_argument("RestartIntensityOptions.max_restarts must not be negative");
  }
  if (options_.period <= Duration::zero()) {
    throw std::invalid_argument("RestartIntensityOptions.period must be positive");
  }
}

void RestartIntensity::forget_before(TimePoint now) {
  while (!restarts_.empty() && now - restarts_.front() > options_.period) restarts_.pop_front();
}

bool RestartIntensity::try_record(TimePoint now) {
  forget_before(now);
  if (static_cast<int>(restarts_.size()) >= options_.max_restarts) return false;
  restarts_.push_back(now);
  return true;
}

int RestartIntensity::recent(TimePoint now) const {
  int n = 0;
  for (TimePoint t : restarts_) n += (now - t <= options_.period);
  return n;
}

std::string HealingReport::to_json() const {
  detail::JsonWriter w;
  w.begin_object();
  w.key("agent").string(agent);
  w.key("issue");
  if (issue) {
    w.string(*issue);
  } else {
    w.null();
  }
  w.key("recovery").begin_object();
  w.key("success").boolean(recovery.success);
  if (!recovery.action.empty()) w.key("action").string(recovery.action);
  if (!recovery.reason.empty()) w.key("reason").string(recovery.reason);
  if (!recovery.error.empty()) w.key("error").string(recovery.error);
  w.key("steps").string_array(recovery.steps);
  w.end_object();
  w.key("health_after").string(to_string(health_after));
  w.key("recovered").boolean(recovered);
  w.key("escalate").boolean(escalate);
  w.end_object();
  return std::move(w).str();
}

SelfHealer::SelfHealer(SelfHealingOptions options, RecoveryStrategies strategies)
    : options_(std::move(options)), strategies_(std::move(strategies)) {
  RestartIntensity validate(options_.intensity);  // throws for bad options now, not in heal()
}

HealingReport SelfHealer::heal(const std::string& agent, const Symptoms& symptoms,
                               AgentOperations& ops, TimePoint now) {
  HealingReport report;
  report.agent = agent;
  report.health_after = symptoms.health;
  report.issue = diagnose(symptoms, options_.diagnosis);
  if (!report.issue || !strategies_.has(*report.issue)) {
    report.recovery.reason = "no_strategy";
    report.recovery.error = report.issue ? "no recovery strategy for issue '" + *report.issue + "'"
                                         : "the symptoms match no known issue";
    report.escalate = true;
    return report;
  }

  {
    MutexLock lock(mu_);
    if (intensity_.size() > kIntensityPruneThreshold) {
      std::erase_if(intensity_, [now](const auto& entry) { return entry.second.recent(now) == 0; });
    }
    auto it = intensity_.try_emplace(agent, options_.intensity).first;
    if (!it->second.try_record(now)) {
      report.recovery.reason = "restart_intensity_exceeded";
      char period[32];
      std::snprintf(period, sizeof period, "%g", to_seconds(options_.intensity.period));
      report.recovery.error = "more than " + std::to_string(options_.intensity.max_restarts) +
                              " recovery attempt(s) within " + period + " s";
      report.escalate = true;
      return report;
    }
  }

  RecoveryContext ctx;
  ctx.agent = agent;
  ctx.issue = *report.issue;
  ctx.symptoms = symptoms;
  ctx.ready_timeout = options_.ready_timeout;
  report.recovery = strategies_.attempt(ctx, ops);

  // Re-check even after a failed strategy: the report's health_after is worth having either way.
  report.recovery.steps.emplace_back("probe");
  ProbeResult probe;
  try {
    probe = ops.probe(agent);
  } catch (const std::exception& e) {
    probe = ProbeResult{};
    probe.detail = e.what();
  } catch (...) {
    probe = ProbeResult{};
    probe.detail = "unknown exception";
  }
  report.health_after = observed_health(probe);
  report.recovered = report.recovery.success && report.health_after != HealthState::unhealthy;
  if (report.recovery.success && !report.recovered) {
    report.recovery.reason = "still_unhealthy";
    if (!probe.detail.empty()) {
      report.recovery.error = probe.detail;
    } else {
      report.recovery.error = probe.answered ? "the agent reports unhealthy"
                                             : "the agent did not answer the health probe";
    }
  }
  report.escalate = !report.recovered;
  return report;
}

int SelfHealer::recent_attempts(const std::string& agent, TimePoint now) const {
  MutexLock lock(mu_);
  auto it = intensity_.find(agent);
  return it == intensity_.end() ? 0 : it->second.recent(now);
}

}  // namespace mend
