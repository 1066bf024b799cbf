// mend_scale_bench: how mend's recovery workflow scales (issue 6, part 3 "Scale").
//
// The real workflow (mend::Workflow) driven by the real async driver (mend::async_run_workflow)
// on an Asio io_context, started per task as the daemon starts a submitted task. The agents
// are IN-PROCESS: an AsyncAgentInvoker answering from memory (co_return at once), so the figures
// are the workflow machinery's (driver, state machine, registry, breakers, retry policy and
// budget, outcome), not HTTP's. No journal, no escalation sink, no healer: escalations are
// decided (the Outcome holds the planned one) but not carried out; they are counted.
//
// 1. Memory while waiting in backoff: N tasks (100000, and N/10 to show it is linear) on one
//    io_context. `primary` fails each first attempt with what an agent's 503 becomes
//    (Error::http(503), classified temporary_unavailable by the workflow: retryable). Its retry:
//    error_scaled backoff, base 10 min, cap 1 h, so every task sits in its backoff timer; a
//    RetryBudget that never refuses (ratio 1000). Breaker: consecutive, threshold 2^28:
//    never opens. Once the agents have seen N calls and no handler is ready, every task is parked
//    on its timer: heap in use (mallinfo2: uordblks + hblkhd) and RSS (/proc/self/statm) then,
//    minus before the spawn, over N. Then io_context.stop() and its destruction destroy the parked
//    coroutines; the heap left over is reported. Each measurement runs in a forked child, so
//    that each starts from the same heap. Target: <= 2 KiB of heap per waiting task.
// 2. Throughput, half the tasks on a fallback chain: `primary` and `backup`, chain
//    primary -> [backup] (AgentRegistry::set_chains, as the daemon's `fallbacks:`). Odd tasks:
//    primary fails with Error::http(500) (processing_failed, logic: no retry, fall back), backup
//    answers; even tasks: primary answers. Primary's breaker is failure-rate (window 100, minimum
//    100 calls, threshold 80 %): 50 % failures never open it. Retry: the defaults, a RetryBudget
//    with its defaults per agent (as the daemon). M tasks, at most K in flight (each completion
//    spawns the next), on 1 and 2 io threads. The split must be exactly half succeeded, half
//    fallback.
//
// Usage: mend_scale_bench [--tasks M=200000] [--reps R=3] [--json FILE] [--backoff-tasks N=100000]
//                         [--in-flight K=1000]
// Every measurement runs R times, alternated; medians. --json also writes the JSON to FILE.
// stdout: one JSON object; stderr: a human table. Exit 0 when every run checked out (the memory
// target's PASS/MISS does not change it), 1 otherwise, 2 on bad usage.
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "mend/core/agents.h"
#include "mend/core/retry_budget.h"
#include "mend/core/workflow.h"
#include "mend/runtime/agent_client.h"
#include "mend/runtime/async_workflow.h"

namespace {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr double kTargetBytesPerTask = 2048;

std::int64_t heap_in_use() {
  struct mallinfo2 m = mallinfo2();
  return static_cast<std::int64_t>(m.uordblks + m.hblkhd);
}

std::int64_t rss_bytes() {
  std::int64_t size = 0, resident = 0;  // in pages
  std::ifstream("/proc/self/statm") >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The in-process agents. Backoff mode: primary fails every first attempt as an agent's 503 would
// (interpret_task_response makes it Error::http(503); the workflow classifies it). Fallback
// mode: primary fails odd tasks as an agent's 500 would. Everything else is answered.
struct InProcessAgents final : mend::AsyncAgentInvoker {
  explicit InProcessAgents(bool backoff_mode) : backoff(backoff_mode) {}
  net::awaitable<mend::Result<std::string>> invoke_async(const mend::AgentInfo& agent, int,
                                                         const mend::Task& task,
                                                         int attempt) override {
    if (backoff) {  // counted in backoff mode only: no shared write in the throughput runs
      calls.fetch_add(1, std::memory_order_relaxed);
      if (attempt > 0) later_attempts.fetch_add(1, std::memory_order_relaxed);
    }
    if (agent.name == "primary") {
      if (backoff && attempt == 0) co_return mend::Error::http(503, "answered 503");
      const bool odd = !task.id.empty() && (task.id.back() - '0') % 2 == 1;
      if (!backoff && odd) co_return mend::Error::http(500, "answered 500");
    }
    co_return std::string(R"({"ok":true})");
  }
  const bool backoff;
  std::atomic<std::int64_t> calls{0};
  std::atomic<std::int64_t> later_attempts{0};
};

// Agents primary and backup, chain primary -> [backup], and the workflow over them.
struct Setup {
  explicit Setup(bool backoff) : invoker(backoff) {
    mend::AgentInfo primary{.name = "primary", .capabilities = {"code_review"}};
    if (backoff) {
      primary.breaker.failure_threshold = 1 << 28;  // consecutive; never reached
    } else {
      primary.breaker = mend::CircuitBreakerOptions::failure_rate();
      primary.breaker.failure_rate_threshold = 0.8;  // the 50 % failure rate never opens it
    }
    if (!agents.add(primary).ok() ||
        !agents.add({.name = "backup", .capabilities = {"code_review"}}).ok()) {
      std::fprintf(stderr, "the registry refused the agents\n");
      std::exit(1);
    }
    agents.set_chains({{"primary", {"backup"}}});
    mend::WorkflowOptions options;
    for (const char* name : {"primary", "backup"}) {
      mend::RetryOptions retry;         // defaults: 3 retries, base 1 s, cap 60 s
      mend::RetryBudgetOptions budget;  // the defaults
      if (backoff) {
        retry.backoff.base = std::chrono::minutes(10);
        retry.backoff.cap = std::chrono::hours(1);
        budget.ratio = 1000;  // never refuses: every task waits in its backoff
      }
      retry.budget = std::make_shared<mend::RetryBudget>(budget);
      options.agent_retry[name] = retry;
    }
    workflow = std::make_unique<mend::Workflow>(agents, std::move(options));
  }
  mend::AgentRegistry agents;
  std::unique_ptr<mend::Workflow> workflow;
  InProcessAgents invoker;
  net::thread_pool blocking{1};  // the driver's blocking executor: unused (no sink, journal)
};

mend::Task make_task(std::int64_t i) {
  return {.id = "t-" + std::to_string(i), .type = "code_review", .agent = "primary"};
}

// --- 1. memory per task waiting in backoff ---------------------------------------------------

// Plain data: the forked child hands it back through a pipe as bytes.
struct MemoryResult {
  double heap_per_task = 0;  // (heap in use when parked - before the spawn) / tasks
  double rss_per_task = 0;
  double heap_left = 0;  // heap in use after destroying the io_context - before the spawn
  double seconds_to_park = 0;
  char problem[120] = {};  // empty: the run checked out
};
static_assert(std::is_trivially_copyable_v<MemoryResult> && sizeof(MemoryResult) <= PIPE_BUF);

MemoryResult measure_backoff(std::int64_t n) {
  MemoryResult r;
  Setup setup(/*backoff=*/true);
  auto io = std::make_unique<net::io_context>(1);
  std::atomic<std::int64_t> finished{0};
  const std::int64_t heap0 = heap_in_use();
  const std::int64_t rss0 = rss_bytes();
  const auto start = Clock::now();
  for (std::int64_t i = 0; i < n; ++i) {
    mend::async_run_workflow(*setup.workflow, make_task(i), setup.invoker, nullptr,
                             io->get_executor(), setup.blocking.get_executor(),
                             [&finished](std::exception_ptr, mend::Outcome) {
                               finished.fetch_add(1, std::memory_order_relaxed);
                             });
  }
  while (setup.invoker.calls.load() < n && Clock::now() < start + std::chrono::seconds(120)) {
    io->run_one_for(std::chrono::milliseconds(100));
  }
  while (io->poll() > 0) {
  }
  r.seconds_to_park = seconds_since(start);
  r.heap_per_task = static_cast<double>(heap_in_use() - heap0) / static_cast<double>(n);
  r.rss_per_task = static_cast<double>(rss_bytes() - rss0) / static_cast<double>(n);
  const char* problem = nullptr;
  if (setup.invoker.calls.load() != n) {
    problem = "the agents did not see one call per task";
  } else if (setup.invoker.later_attempts.load() != 0 || finished.load() != 0) {
    problem = "a task left its backoff wait during the run";
  } else if (setup.agents.find("primary")->breaker.state() != mend::CircuitState::closed) {
    problem = "primary's circuit opened";
  }
  if (problem != nullptr) std::snprintf(r.problem, sizeof r.problem, "%s", problem);
  io->stop();
  io.reset();  // destroys the parked coroutines
  r.heap_left = static_cast<double>(heap_in_use() - heap0);
  return r;
}

// Runs measure_backoff in a forked child (the parent has no threads yet).
MemoryResult measure_backoff_isolated(std::int64_t n) {
  MemoryResult r;
  int fds[2];
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = pipe(fds) == 0 ? fork() : -1;
  if (pid < 0) {
    std::snprintf(r.problem, sizeof r.problem, "pipe() or fork() failed");
    return r;
  }
  if (pid == 0) {
    close(fds[0]);
    const MemoryResult c = measure_backoff(n);
    const bool sent = write(fds[1], &c, sizeof c) == static_cast<ssize_t>(sizeof c);
    close(fds[1]);
    std::exit(sent ? 0 : 3);  // exit(), not _exit(): LeakSanitizer checks at exit (ASan build)
  }
  close(fds[1]);
  const ssize_t got = read(fds[0], &r, sizeof r);  // a pipe delivers <= PIPE_BUF bytes whole
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got != static_cast<ssize_t>(sizeof r) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    r = MemoryResult{};
    std::snprintf(r.problem, sizeof r.problem, "the measuring child failed (status %d)", status);
  }
  return r;
}

// --- 2. throughput, half the tasks on the fallback chain -------------------------------------

// Outcome counters; the first five in OutcomeStatus's order.
// clang-format off
enum Count { kSucceeded, kAfterRetry, kFallback, kDegraded, kFailed, kByBackup, kSkips,
             kEscalations, kThrew, kCounts };
constexpr const char* kCountNames[kCounts] = {
    "succeeded", "succeeded_after_retry", "fallback", "degraded", "failed",
    "answered_by_backup", "tasks_with_skips", "escalations_planned", "exceptions"};
// clang-format on
static_assert(static_cast<int>(mend::OutcomeStatus::failed) == kFailed);

struct ThroughputResult {
  double tasks_per_second = 0;
  std::int64_t counts[kCounts] = {};
  std::string problem;  // empty: the run checked out
};

struct ThroughputRun {
  net::io_context& io;
  Setup& setup;
  const std::int64_t tasks;
  std::atomic<std::int64_t> next{0};
  std::atomic<std::int64_t> counts[kCounts] = {};

  void add(Count c) { counts[c].fetch_add(1, std::memory_order_relaxed); }
  // Spawns the next task, if any is left; its completion spawns the one after.
  void spawn_next() {
    const std::int64_t i = next.fetch_add(1, std::memory_order_relaxed);
    if (i >= tasks) return;
    mend::async_run_workflow(*setup.workflow, make_task(i), setup.invoker, nullptr,
                             io.get_executor(), setup.blocking.get_executor(),
                             [this](std::exception_ptr e, mend::Outcome outcome) {
                               if (e) {
                                 add(kThrew);
                               } else {
                                 add(static_cast<Count>(outcome.status));
                                 if (outcome.answered_by == "backup") add(kByBackup);
                                 if (!outcome.skipped.empty()) add(kSkips);
                                 if (outcome.escalation && outcome.escalation->action != "logged")
                                   add(kEscalations);
                               }
                               spawn_next();
                             });
  }
};

ThroughputResult measure_throughput(std::int64_t m, int in_flight, int threads) {
  ThroughputResult r;
  Setup setup(/*backoff=*/false);
  net::io_context io(threads);
  ThroughputRun run{io, setup, m};
  const auto start = Clock::now();
  for (int k = 0; k < in_flight; ++k) run.spawn_next();
  std::vector<std::thread> extra;
  for (int t = 1; t < threads; ++t) extra.emplace_back([&io] { io.run(); });
  io.run();
  for (std::thread& t : extra) t.join();
  r.tasks_per_second = static_cast<double>(m) / seconds_since(start);
  for (int c = 0; c < kCounts; ++c) r.counts[c] = run.counts[c].load();
  // Even tasks succeed on primary, odd ones fall back to backup: exactly, unless a circuit
  // opened or something failed (then the other counters are not all zero either).
  const std::int64_t odd = m / 2;
  if (r.counts[kSucceeded] != m - odd || r.counts[kFallback] != odd || r.counts[kByBackup] != odd ||
      r.counts[kSkips] != 0) {
    r.problem = "outcomes are not exactly half succeeded, half fallback to backup";
  }
  return r;
}

// --- main ------------------------------------------------------------------------------------

struct Args {
  std::int64_t tasks = 200000;
  std::int64_t reps = 3;
  std::int64_t backoff_tasks = 100000;
  std::int64_t in_flight = 1000;
  std::string json_path;
};

bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--json") {
      a.json_path = argv[i + 1];
      continue;
    }
    std::int64_t* slot = flag == "--tasks"           ? &a.tasks
                         : flag == "--reps"          ? &a.reps
                         : flag == "--backoff-tasks" ? &a.backoff_tasks
                         : flag == "--in-flight"     ? &a.in_flight
                                                     : nullptr;
    char* end = nullptr;
    const long long v = std::strtoll(argv[i + 1], &end, 10);
    if (slot == nullptr || end == argv[i + 1] || *end != '\0' || v < 1 || v > 1'000'000'000) {
      return false;
    }
    *slot = v;
  }
  return argc % 2 == 1 && a.backoff_tasks >= 10 && a.reps <= 1000 && a.in_flight <= 1'000'000;
}

std::string fmt(double v, int decimals = 0) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Every run's `field`, as a vector and as JSON ("[1,2,3]").
template <class R>
std::vector<double> runs(const std::vector<R>& results, double R::*field) {
  std::vector<double> out;
  for (const R& r : results) out.push_back(r.*field);
  return out;
}
std::string list(const std::vector<double>& v, int decimals) {
  std::string out;
  for (double x : v) {
    out += out.empty() ? '[' : ',';
    out += fmt(x, decimals);
  }
  return out.empty() ? "[]" : out + "]";
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!parse_args(argc, argv, args)) {
    std::fprintf(stderr,
                 "usage: %s [--tasks M] [--reps R] [--json FILE] [--backoff-tasks N] "
                 "[--in-flight K]\n",
                 argv[0]);
    return 2;
  }
  std::vector<std::string> problems;
  std::ostringstream js;  // the human table goes to stderr as it comes
  js << "{\"program\":\"mend_scale_bench\",\"agents\":\"in-process (AsyncAgentInvoker answering "
        "from memory, no HTTP)\",\"escalation_sink\":null,\"journal\":null,\"reps\":"
     << args.reps << ",\"memory\":[";
  std::fprintf(stderr,
               "mend_scale_bench: real workflow + async driver, in-process agents (no "
               "HTTP), no journal, no escalation sink; medians of %" PRId64
               " runs\n\n"
               "Memory per task waiting in backoff (primary: 503 -> temporary_unavailable, "
               "backoff base 10 min; consecutive breaker, threshold 2^28; budget 1e6 tokens)\n"
               "  tasks     heap B/task   RSS B/task   heap left after teardown B   park s\n",
               args.reps);

  // 1. Memory: N/10 and N, alternated, R times each, each in a fresh child process.
  const std::int64_t sizes[2] = {args.backoff_tasks / 10, args.backoff_tasks};
  std::vector<MemoryResult> mem[2];
  for (std::int64_t rep = 0; rep < args.reps; ++rep) {
    for (int s = 0; s < 2; ++s) {
      mem[s].push_back(measure_backoff_isolated(sizes[s]));
      if (mem[s].back().problem[0] != '\0') {
        problems.push_back("memory, " + std::to_string(sizes[s]) +
                           " tasks: " + mem[s].back().problem);
      }
    }
  }
  double heap_big = 0;  // the larger size's: the target's
  for (int s = 0; s < 2; ++s) {
    const std::vector<double> heap = runs(mem[s], &MemoryResult::heap_per_task);
    const double rss = median(runs(mem[s], &MemoryResult::rss_per_task));
    const double left = median(runs(mem[s], &MemoryResult::heap_left));
    const double park = median(runs(mem[s], &MemoryResult::seconds_to_park));
    heap_big = median(heap);
    js << (s ? "," : "") << "{\"tasks\":" << sizes[s]
       << ",\"heap_bytes_per_task\":" << fmt(heap_big, 1)
       << ",\"rss_bytes_per_task\":" << fmt(rss, 1)
       << ",\"heap_left_after_teardown_bytes\":" << fmt(left)
       << ",\"seconds_to_park\":" << fmt(park, 3)
       << ",\"runs_heap_bytes_per_task\":" << list(heap, 1) << "}";
    std::fprintf(stderr, "  %-8" PRId64 "  %11.1f  %11.1f  %27.0f  %7.3f\n", sizes[s], heap_big,
                 rss, left, park);
  }
  // mallinfo2() reads nothing under a sanitizer's allocator: no verdict then.
  const char* verdict = heap_big <= 0                     ? "UNMEASURED"
                        : heap_big <= kTargetBytesPerTask ? "PASS"
                                                          : "MISS";
  js << "],\"memory_target_bytes_per_task\":" << fmt(kTargetBytesPerTask) << ",\"memory_target\":\""
     << verdict << "\",\"throughput\":[";
  std::fprintf(stderr,
               "  target: <= %.0f B of heap per waiting task at %" PRId64
               " tasks: %s "
               "(%.1f)\n\nThroughput, half the tasks fall back primary -> backup (primary: 500 "
               "-> processing_failed; failure-rate breaker at 80 %%), %" PRId64 " tasks, %" PRId64
               " in flight\n  threads   tasks/s   succeeded   fallback   other   "
               "escalations(planned)\n",
               kTargetBytesPerTask, sizes[1], verdict, heap_big, args.tasks, args.in_flight);

  // 2. Throughput: 1 and 2 io threads, alternated, R times each.
  std::vector<ThroughputResult> thr[2];
  for (std::int64_t rep = 0; rep < args.reps; ++rep) {
    for (int t = 0; t < 2; ++t) {
      thr[t].push_back(measure_throughput(args.tasks, static_cast<int>(args.in_flight), t + 1));
      if (!thr[t].back().problem.empty()) {
        problems.push_back("throughput, " + std::to_string(t + 1) +
                           " thread(s): " + thr[t].back().problem);
      }
    }
  }
  double tps_median[2] = {};
  for (int t = 0; t < 2; ++t) {
    const std::vector<double> tps = runs(thr[t], &ThroughputResult::tasks_per_second);
    tps_median[t] = median(tps);
    const std::int64_t* c = thr[t].back().counts;
    js << (t ? "," : "") << "{\"threads\":" << t + 1 << ",\"tasks\":" << args.tasks
       << ",\"in_flight\":" << args.in_flight << ",\"tasks_per_second\":" << fmt(tps_median[t])
       << ",\"runs_tasks_per_second\":" << list(tps, 0) << ",\"last_run\":{";
    for (int k = 0; k < kCounts; ++k) js << (k ? ",\"" : "\"") << kCountNames[k] << "\":" << c[k];
    js << "}}";
    std::fprintf(stderr,
                 "  %-7d  %8.0f  %10" PRId64 "  %9" PRId64 "  %6" PRId64 "  %20" PRId64 "\n", t + 1,
                 tps_median[t], c[kSucceeded], c[kFallback],
                 c[kAfterRetry] + c[kDegraded] + c[kFailed] + c[kThrew], c[kEscalations]);
  }
  const double scaling = tps_median[0] > 0 ? tps_median[1] / tps_median[0] : 0;
  js << "],\"throughput_2_over_1\":" << fmt(scaling, 2)
     << ",\"ok\":" << (problems.empty() ? "true" : "false") << ",\"problems\":[";
  for (std::size_t i = 0; i < problems.size(); ++i) js << (i ? ",\"" : "\"") << problems[i] << '"';
  js << "]}\n";
  std::fprintf(stderr, "  2 threads / 1 thread: %.2fx\n", scaling);
  for (const std::string& p : problems) std::fprintf(stderr, "PROBLEM: %s\n", p.c_str());

  std::fputs(js.str().c_str(), stdout);
  if (!args.json_path.empty() && !(std::ofstream(args.json_path) << js.str())) {
    std::fprintf(stderr, "cannot write %s\n", args.json_path.c_str());
    return 1;
  }
  return problems.empty() ? 0 : 1;
}
