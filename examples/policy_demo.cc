// policy_demo: mend's policies at work on a small, simulated ecosystem of agents.
//
// 400 tasks go to three agents of the specification (error-handling-and-recovery-workflows.md),
// each with a failure script over simulated time:
//   senior-backend-developer       healthy: now and then a 503 or a timeout (retried), and a
//                                  malformed task (std::invalid_argument, raised at once)
//   senior-ai-engineer             rate-limits with 429 + Retry-After during two quota storms, and
//                                  sometimes answers 500 (not retryable); its pipeline also has a
//                                  client-side rate limiter, which a burst of work runs into (with
//                                  some seeds a storm trips its breaker: 429s count as failures)
//   ollama-integration-specialist  hard down (connection refused) for two minutes, then back: its
//                                  circuit breaker opens, rejects, half-opens, fails a probe,
//                                  re-opens, half-opens again and closes
// Each agent's pipeline is retry (the specification's defaults: 3 retries, 1 s base, x2, +-25 %
// jitter, 60 s cap) -> [rate limiter] -> circuit breaker (the specification's defaults: 5
// consecutive failures, 60 s, 3 probes), and all retries draw on one shared retry budget (the
// agents sit behind one gateway).
// Calls use both of mend's APIs: execute() (mend's exceptions, or the original one for an error
// that is not retryable) and try_execute() (a mend::Result; nothing thrown).
//
// Time is simulated: a ManualClock, a ManualSleeper that advances it instead of sleeping, and a
// SeededRandom for jitter and for the scripts, so a run takes milliseconds and is the same for the
// same seed. Usage: policy_demo [seed]   (default 42)
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "mend/core/circuit_breaker.h"
#include "mend/core/clock.h"
#include "mend/core/env.h"
#include "mend/core/error.h"
#include "mend/core/events.h"
#include "mend/core/pipeline.h"
#include "mend/core/random.h"
#include "mend/core/rate_limiter.h"
#include "mend/core/result.h"
#include "mend/core/retry.h"
#include "mend/core/retry_budget.h"

namespace {

constexpr int kTasks = 400;
constexpr const char* kBackend = "senior-backend-developer";
constexpr const char* kAi = "senior-ai-engineer";
constexpr const char* kOllama = "ollama-integration-specialist";

// The scripts' timeline, in simulated seconds since the start.
constexpr double kQuotaStorm1[2] = {60, 120};
constexpr double kQuotaStorm2[2] = {330, 360};
constexpr double kAiBurst[2] = {200, 230};  // most tasks go to the AI engineer
constexpr double kOllamaDown[2] = {150, 270};

bool within(double t, const double (&window)[2]) {
  return t >= window[0] && t < window[1];
}

// The stop reasons a task can end with here, in report order.
constexpr std::array<mend::StopReason, 4> kStops = {
    mend::StopReason::non_retryable, mend::StopReason::retries_exhausted,
    mend::StopReason::retry_budget_exhausted, mend::StopReason::circuit_open};

// Prints notable events as they happen and tallies all of them. Successes emit nothing.
class DemoSink final : public mend::EventSink {
 public:
  struct Tally {
    int retries = 0;
    mend::Duration backoff{};
    int transitions = 0, circuit_rejections = 0, limiter_refusals = 0;
    int rejections_while_open = 0;  // since the last transition
  };
  static constexpr int kRetryLinesPerAgent = 12;
  static constexpr int kRejectionLinesPerOpen = 2;
  static constexpr int kLimiterLines = 4;

  explicit DemoSink(mend::TimePoint start) : start_(start) {}

  void begin_task(int id) {
    task_ = id;
    task_retries_ = 0;
  }
  int task_retries() const { return task_retries_; }
  double seconds(mend::TimePoint t) const { return mend::to_seconds(t - start_); }

  void emit(const mend::Event& e) noexcept override {
    try {
      handle(e);
    } catch (...) {  // a sink must not throw; losing a line of the demo's log is fine
    }
  }

  std::map<std::string, Tally, std::less<>> tallies;
  std::map<std::pair<mend::ErrorType, mend::Severity>, int> classes;  // every failed attempt
  int hidden_retries = 0;
  int lines = 0;

 private:
  void print(const mend::Event& e, const std::string& what) {
    std::printf("[%7.2fs] #%03d %-29s %s\n", seconds(e.at), task_, e.source.c_str(), what.c_str());
    ++lines;
  }
  static std::string kind_of(const mend::Event& e) {
    return std::string(mend::to_string(e.error_type)) + "/" +
           std::string(mend::to_string(e.severity));
  }

  void handle(const mend::Event& e) {
    Tally& s = tallies[e.source];
    char buf[256];
    switch (e.kind) {
      case mend::EventKind::retry_scheduled:
        ++s.retries;
        s.backoff += e.delay;
        ++task_retries_;
        ++classes[{e.error_type, e.severity}];
        if (s.retries > kRetryLinesPerAgent) {
          ++hidden_retries;
          return;
        }
        std::snprintf(buf, sizeof buf, "retry %d in %.2fs after %s: %s", e.attempt + 1,
                      mend::to_seconds(e.delay), kind_of(e).c_str(), e.detail.c_str());
        return print(e, buf);
      case mend::EventKind::gave_up:
        ++classes[{e.error_type, e.severity}];
        if (e.stop == mend::StopReason::circuit_open) return;  // the rejection was shown
        std::snprintf(buf, sizeof buf, "GAVE UP (%s) after %d attempt%s: %s: %s",
                      std::string(mend::to_string(e.stop)).c_str(), e.attempt + 1,
                      e.attempt == 0 ? "" : "s", kind_of(e).c_str(), e.detail.c_str());
        return print(e, buf);
      case mend::EventKind::circuit_transition: {
        ++s.transitions;
        std::string what = "BREAKER " + std::string(mend::to_string(e.from)) + " -> " +
                           std::string(mend::to_string(e.to)) + " (" + e.detail;
        const int hidden = s.rejections_while_open - kRejectionLinesPerOpen;
        if (hidden > 0) what += "; " + std::to_string(hidden) + " more calls rejected meanwhile";
        s.rejections_while_open = 0;
        return print(e, what + ")");
      }
      case mend::EventKind::circuit_rejected:
        ++s.circuit_rejections;
        if (++s.rejections_while_open > kRejectionLinesPerOpen) return;
        std::snprintf(buf, sizeof buf, "rejected: circuit %s, probe allowed in %.1fs",
                      std::string(mend::to_string(e.from)).c_str(), mend::to_seconds(e.delay));
        return print(e, buf);
      case mend::EventKind::rate_limited:
        ++s.limiter_refusals;
        if (s.limiter_refusals > kLimiterLines) return;
        std::snprintf(buf, sizeof buf, "rate limiter refused the call; token in %.2fs",
                      mend::to_seconds(e.delay));
        return print(e, buf);
      case mend::EventKind::bulkhead_rejected:
        return print(e, "bulkhead full");
      default:
        return;  // the workflow's events: this demo drives single pipelines, not the workflow
    }
  }

  mend::TimePoint start_;
  int task_ = 0;
  int task_retries_ = 0;
};

struct Agent {
  Agent(std::string n, std::shared_ptr<mend::CircuitBreaker> b, mend::Pipeline p)
      : name(std::move(n)), breaker(std::move(b)), pipeline(std::move(p)) {}
  std::string name;
  std::shared_ptr<mend::CircuitBreaker> breaker;
  mend::Pipeline pipeline;
  int tasks = 0, first_try = 0, after_retry = 0;
  std::map<mend::StopReason, int> failed;
  int calls = 0;  // attempts that reached the agent
};

// --- The agents' failure scripts: t is simulated seconds, u a uniform draw ---------------------

// Healthy. HTTP errors come back as values; timeouts and malformed tasks are thrown.
mend::Result<std::string> backend_call(double u) {
  if (u < 0.05) return mend::Error::http(503, "backend overloaded");
  if (u < 0.08) throw std::system_error(std::make_error_code(std::errc::timed_out), "git push");
  if (u < 0.10) throw std::invalid_argument("task spec has no 'repository'");
  return std::string("patch");
}

// Rate-limited during quota storms; the Result API only (nothing is thrown).
mend::Result<std::string> ai_call(double t, double u, double v) {
  const double p429 = within(t, kQuotaStorm1) || within(t, kQuotaStorm2) ? 0.5 : 0.02;
  if (u < p429) {
    const auto retry_after = std::chrono::seconds(1 + static_cast<int>(v * 4));  // Retry-After: 1-4
    return mend::Error::http(429, "model quota exceeded", retry_after);
  }
  if (u < p429 + 0.02) return mend::Error::http(500, "model returned malformed JSON");
  return std::string("review");
}

// Hard down for a while: connection refused. Otherwise an occasional timeout.
std::string ollama_call(double t, double u) {
  if (within(t, kOllamaDown)) {
    throw std::system_error(std::make_error_code(std::errc::connection_refused), "ollama:11434");
  }
  if (u < 0.03) throw std::system_error(std::make_error_code(std::errc::timed_out), "generate");
  return "completion";
}

void print_rule() {
  std::printf("%s\n", std::string(100, '-').c_str());
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t seed = 42;
  if (argc > 1) {
    char* end = nullptr;
    seed = std::strtoull(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0') {
      std::fprintf(stderr, "usage: %s [seed]\n", argv[0]);
      return 2;
    }
  }

  mend::ManualClock clock;
  mend::ManualSleeper sleeper(clock);
  mend::SeededRandom jitter(seed);                         // the policies' draws
  mend::SeededRandom world(seed ^ 0x9E3779B97F4A7C15ull);  // the scripts' draws
  const mend::TimePoint start = clock.now();
  DemoSink sink(start);

  mend::Env env;
  env.clock = &clock;
  env.sleeper = &sleeper;
  env.random = &jitter;
  env.events = &sink;

  // One budget for the whole ecosystem, small enough for an outage to drain it: retries may cost
  // a fifth of the requests of the last 10 s plus 0.5 a second (an outage's retries cost 5 each).
  auto budget = std::make_shared<mend::RetryBudget>(
      mend::RetryBudgetOptions{.ratio = 0.2, .min_retries_per_second = 0.5});
  auto limiter = std::make_shared<mend::RateLimiter>(
      kAi, mend::RateLimiterOptions{.rate_per_second = 0.5, .burst = 3});

  std::vector<Agent> agents;
  for (const char* name : {kBackend, kAi, kOllama}) {
    auto breaker =
        std::make_shared<mend::CircuitBreaker>(name, mend::CircuitBreakerOptions::consecutive());
    mend::forward_transitions(*breaker, sink);
    mend::RetryOptions retry;  // the specification's defaults
    retry.name = name;
    retry.budget = budget;
    mend::Pipeline::Builder builder;
    builder.env(env).retry(retry);
    // The AI engineer's limiter sits inside retry, so a refusal is retried once a token is due.
    if (std::string_view(name) == kAi) builder.rate_limiter(limiter);
    agents.emplace_back(name, breaker, builder.circuit_breaker(breaker).build());
  }
  Agent& backend = agents[0];
  Agent& ai = agents[1];
  Agent& ollama = agents[2];

  std::printf("mend policy demo: %d tasks, seed %llu, simulated time\n", kTasks,
              static_cast<unsigned long long>(seed));
  std::printf("notable events (successes are silent; retries: first %d per agent shown)\n",
              DemoSink::kRetryLinesPerAgent);
  print_rule();

  int announced = 0;  // outage markers printed
  for (int id = 1; id <= kTasks; ++id) {
    clock.advance(mend::from_seconds(0.5 + 1.5 * world.next_unit()));  // the next arrival
    const double now = sink.seconds(clock.now());
    if (announced < 2 && now >= kOllamaDown[announced]) {
      std::printf("[%7.2fs] ---- %s %s ----\n", kOllamaDown[announced], kOllama,
                  announced == 0 ? "goes down (connection refused)" : "is back");
      ++announced;
    }

    const double pick = world.next_unit();
    const double ai_share = within(now, kAiBurst) ? 0.8 : 1.0 / 3;
    Agent& agent = pick < ai_share ? ai : (pick < (1 + ai_share) / 2 ? backend : ollama);
    ++agent.tasks;
    sink.begin_task(id);

    auto attempt_time = [&] { return sink.seconds(clock.now()); };
    std::optional<mend::StopReason> failure;
    if (&agent == &ai) {
      // The Result API: try_execute() never throws for a failed call.
      mend::Result<std::string> r = agent.pipeline.try_execute([&]() -> mend::Result<std::string> {
        ++agent.calls;
        const double u = world.next_unit();
        return ai_call(attempt_time(), u, world.next_unit());
      });
      if (!r.ok()) failure = r.error().stop;
    } else {
      // The throwing API: mend's exceptions for its own verdicts, the original otherwise.
      try {
        if (&agent == &backend) {
          (void)agent.pipeline.execute([&]() -> mend::Result<std::string> {
            ++agent.calls;
            return backend_call(world.next_unit());
          });
        } else {
          (void)agent.pipeline.execute([&] {
            ++agent.calls;
            return ollama_call(attempt_time(), world.next_unit());
          });
        }
      } catch (const mend::RetryExhaustedError& e) {  // retries_exhausted or retry_budget_exhausted
        failure = e.last_error().stop;
      } catch (const mend::CircuitOpenError& e) {
        failure = e.error().stop;
      } catch (const mend::Exception& e) {  // an error value mend passed on (HTTP 500, ...)
        failure = e.error().stop;
      } catch (const std::exception&) {  // the caller's own exception: not retryable
        failure = mend::StopReason::non_retryable;
      }
    }
    if (!failure) {
      ++(sink.task_retries() == 0 ? agent.first_try : agent.after_retry);
    } else {
      ++agent.failed[*failure];
    }
  }
  if (sink.hidden_retries > 0) std::printf("(%d further retries not shown)\n", sink.hidden_retries);

  // --- The report ------------------------------------------------------------------------------
  const double total_seconds = sink.seconds(clock.now());
  std::printf("\n");
  print_rule();
  std::printf("report: %d tasks over %.1f simulated seconds (seed %llu; %d event lines above)\n",
              kTasks, total_seconds, static_cast<unsigned long long>(seed), sink.lines);
  print_rule();
  std::printf("%-30s %5s %7s %8s %6s %7s %9s %6s  %s\n", "agent", "tasks", "ok 1st", "ok retry",
              "failed", "retries", "backoff", "trans.", "breaker now");
  int total_tasks = 0, total_accounted = 0;
  for (const Agent& a : agents) {
    const DemoSink::Tally& t = sink.tallies[a.name];
    int failed = 0;
    for (const auto& [stop, n] : a.failed) failed += n;
    std::printf("%-30s %5d %7d %8d %6d %7d %8.1fs %6d  %s\n", a.name.c_str(), a.tasks, a.first_try,
                a.after_retry, failed, t.retries, mend::to_seconds(t.backoff), t.transitions,
                std::string(mend::to_string(a.breaker->state())).c_str());
    total_tasks += a.tasks;
    total_accounted += a.first_try + a.after_retry + failed;
  }

  std::printf("\nfailed tasks by stop reason\n%-30s", "agent");
  for (mend::StopReason s : kStops) std::printf(" %22s", std::string(mend::to_string(s)).c_str());
  std::printf("\n");
  for (const Agent& a : agents) {
    std::printf("%-30s", a.name.c_str());
    for (mend::StopReason s : kStops) std::printf(" %22d", a.failed.count(s) ? a.failed.at(s) : 0);
    std::printf("\n");
  }

  std::printf("\nother policy activity\n");
  for (const Agent& a : agents) {
    const DemoSink::Tally& t = sink.tallies[a.name];
    std::printf(
        "  %-30s %4d calls reached the agent, %3d circuit rejections, %3d limiter refusals\n",
        a.name.c_str(), a.calls, t.circuit_rejections, t.limiter_refusals);
  }
  const mend::RetryBudget::Reading window = budget->reading(clock.now());
  std::printf(
      "  shared retry budget, last 10 s: %.1f spent of %.1f allowed on %llu requests; "
      "success %.0f %% per attempt, %.0f %% per request\n",
      window.spent, window.allowance, static_cast<unsigned long long>(window.requests()),
      100 * window.actual_success(), 100 * window.effective_success());

  // Every failed attempt, as the classifier saw it (and mend's own refusals).
  std::printf("\nfailed attempts by classification\n%-28s %-10s %-9s %6s\n", "error type",
              "category", "severity", "count");
  std::array<int, mend::kSeverityCount> by_severity{};
  int attempts_failed = 0;
  for (const auto& [key, n] : sink.classes) {
    std::printf("%-28s %-10s %-9s %6d\n", std::string(mend::to_string(key.first)).c_str(),
                std::string(mend::to_string(mend::category_of(key.first))).c_str(),
                std::string(mend::to_string(key.second)).c_str(), n);
    by_severity[static_cast<std::size_t>(key.second)] += n;
    attempts_failed += n;
  }
  std::printf("%-28s %-10s %-9s %6d\nby severity:", "total", "", "", attempts_failed);
  for (std::size_t i = 0; i < by_severity.size(); ++i) {
    std::printf(" %s %d", std::string(mend::to_string(static_cast<mend::Severity>(i))).c_str(),
                by_severity[i]);
  }
  std::printf("\n");

  if (total_tasks != kTasks || total_accounted != kTasks) {
    std::fprintf(stderr, "accounting mismatch: %d tasks assigned, %d accounted for\n", total_tasks,
                 total_accounted);
    return 1;
  }
  return 0;
}
