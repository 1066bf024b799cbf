// File: examples/agent/chaos.h
//
// The sample agent's chaos knobs: which failures it injects into its answers to POST /task, how
// often, and what state it pretends to be in (hung, database down, pool exhausted, unhealthy).
// Set at start by flags and at run time by POST /admin/chaos with a JSON object:
//
//   ChaosKnobs knobs;
//   std::deque<FailNext> queue;
//   auto ok = apply_chaos_json(nlohmann::json::parse(R"({"fail": {"503": 0.3},
//                                  "fail_next": [{"kind": "reset", "count": 2}]})"),
//                              knobs, queue);
//   if (!ok.ok()) answer_400(ok.error().message);     // nothing was changed
//   std::optional<FailureKind> f = choose_failure(knobs, queue, random.next_unit());
//
// Pure values and functions: no I/O, no clock, no locking; the agent guards them with its mutex.
#ifndef MEND_EXAMPLES_AGENT_CHAOS_H_
#define MEND_EXAMPLES_AGENT_CHAOS_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "mend/core/result.h"

namespace mend::sample_agent {

// A failure the agent can inject into a task's answer. The names are what flags and JSON use.
enum class FailureKind {
  kTimeout,      // "timeout": answers only after timeout_delay (504), so the caller times out
  kReset,        // "reset": closes the connection with a reset, no answer
  kRateLimited,  // "429": rate_limit_exceeded, with Retry-After
  kUnavailable,  // "503": temporary_unavailable
  kLogic,        // "500": processing_failed (a logic error: not retried)
  kDatabase,     // "database": 500 database_error (a system error: self-healing)
  kExternal,     // "external": 503 external_service_down
  kCritical,     // "critical": 500 data_corruption with severity critical
};

inline constexpr std::array<FailureKind, 8> kAllFailureKinds = {
    FailureKind::kTimeout,     FailureKind::kReset,   FailureKind::kRateLimited,
    FailureKind::kUnavailable, FailureKind::kLogic,   FailureKind::kDatabase,
    FailureKind::kExternal,    FailureKind::kCritical};

std::string_view to_string(FailureKind kind) noexcept;
std::optional<FailureKind> parse_failure_kind(std::string_view name) noexcept;
// "timeout, reset, 429, 503, 500, database, external, critical": for error messages.
std::string failure_kind_names();

// The next `count` tasks fail with `kind`, before any random draw.
struct FailNext {
  FailureKind kind = FailureKind::kUnavailable;
  int count = 1;
};

struct ChaosKnobs {
  // Probability in [0, 1] that a task fails with each kind; one draw per task picks at most one
  // kind (the rates are stacked in kAllFailureKinds order, so they should sum to <= 1).
  std::map<FailureKind, double> fail_rates;
  // Added before every answer to a task, failures included. Default 0.
  std::chrono::milliseconds latency{0};
  // Tasks are never answered (until the client gives up). Default false.
  bool hang = false;
  // The process exits with status 1 right after answering this many more tasks; 0: never.
  std::int64_t crash_countdown = 0;
  // Each task grows the agent's cache by this much; /admin/clear-caches frees it. Default 0.
  std::size_t memory_growth_kib = 0;
  // GET /health says unhealthy (503). Default false.
  bool unhealthy = false;
  // Every task fails with database_error and /health says unhealthy, until
  // /admin/reconnect-database. Default false.
  bool database_down = false;
  // The connection pool reads as full: /health says degraded with pool_in_use = pool_size, tasks
  // fail with 503 connection_pool_exhausted, until /admin/reset-connections. Default false.
  bool pool_exhausted = false;
  // The Retry-After (header and body) of 429 answers, in seconds. Default 1.
  double retry_after_seconds = 1.0;
  // How long a "timeout" failure waits before answering 504. Default 60 s: longer than mend's
  // 30 s task timeout.
  std::chrono::milliseconds timeout_delay{60'000};
  // Admin hooks that answer this status instead of working (e.g. {"restart": 500}).
  std::map<std::string, int> admin_fail;
};

// Parses a --fail flag value, "KIND=RATE" (RATE in [0, 1]). Error kind "validation".
Result<std::pair<FailureKind, double>> parse_fail_flag(std::string_view text);

// Applies the members of a POST /admin/chaos body (an object) to `knobs` and `queue`, all or
// nothing. Members (each optional):
//   "reset": true          first restore `defaults` and empty the queue
//   "fail": {KIND: RATE}   replaces the whole rate table ({} clears it)
//   "fail_next": [{"kind": KIND, "count": N}]  appended to the queue (count >= 1, default 1)
//   "latency_ms", "timeout_delay_ms" (>= 0), "retry_after" (seconds >= 0),
//   "memory_growth_kib" (>= 0), "crash_after" (tasks from now, >= 0; 0 = never),
//   "hang", "unhealthy", "database_down", "pool_exhausted" (booleans),
//   "admin_fail": {HOOK: STATUS}  replaces the table (STATUS 400..599)
// An unknown member, a wrong type or a value out of range is an error (kind "validation") whose
// message names the member.
Result<void> apply_chaos_json(const nlohmann::json& body, const ChaosKnobs& defaults,
                              ChaosKnobs& knobs, std::deque<FailNext>& queue);

// The knobs as apply_chaos_json reads them (crash_after is the countdown), plus the queue.
nlohmann::json chaos_to_json(const ChaosKnobs& knobs, const std::deque<FailNext>& queue);

// The failure for the next task: the queue's head first (consumed), else the rates against
// `draw`, a uniform number in [0, 1). nullopt: the task succeeds.
std::optional<FailureKind> choose_failure(const ChaosKnobs& knobs, std::deque<FailNext>& queue,
                                          double draw);

}  // namespace mend::sample_agent

#endif  // MEND_EXAMPLES_AGENT_CHAOS_H_
