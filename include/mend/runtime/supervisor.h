// File: mend/runtime/supervisor.h
//
// Starts the command agents that `mend serve` supervises, captures their output, restarts them
// when they crash and stops them on request. POSIX (Linux) only.
//
//   mend::ProcessSupervisor supervisor(
//       mend::CrashLoopOptions{},
//       [](const std::string& name, bool is_stderr, std::string_view line) {
//         log->info("[{}] {}", name, line);
//       },
//       [](const mend::ProcessEvent& e) { log->info("{} {}: {}", e.name, to_string(e.kind),
//                                                    e.description); });
//   mend::ProcessSpec spec{.name = "reviewer#0", .command = "python3",
//                          .args = {"agent.py"}, .env = {{"PORT", "8101"}}};
//   if (auto added = supervisor.add(spec); !added.ok()) fail(added.error().message);
//   supervisor.restart("reviewer#0", /*graceful=*/true);   // self-healing
//   supervisor.stop_all();                                  // reverse add order
//
// Processes. Each is started with fork + execve, in a process group of its own (signals go to
// the whole group, so `sh -c` scripts and their children stop together), with stdin from
// /dev/null, no file descriptor of mend's but its stdout and stderr pipes, the environment of
// mend plus spec.env, working directory spec.working_dir, and SIGKILL as parent-death signal:
// if mend dies, its agents die with it. The fork happens on the supervisor's own thread, which
// lives as long as the supervisor (the parent-death signal fires when the forking *thread*
// exits). When a process's leader exits, what is left of its group is killed.
//
// Output. Every line a process writes to stdout or stderr goes to the LogSink with the process's
// name; lines longer than kMaxLogLineBytes are cut into pieces of that size; a last line without
// a newline is passed on when the pipe closes.
//
// Crashes. An exit nobody asked for (any status, any signal, kill() included) is a crash: the
// process is restarted per CrashLoopBackoff (at once, then 1 s doubling to 5 min by default),
// with events exited, restart_scheduled (delay) and started; intensity_exceeded when it crashes
// more often than the restart intensity allows (restarts go on). A start that fails (exec or
// fork failure) counts as a crash too.
//
// Stopping. stop() and a graceful restart() send SIGTERM to the group, wait up to
// spec.stop_timeout, then send SIGKILL. A stopped process is not restarted until start().
//
// Thread-safety: every public method may be called from any thread. The sinks are called on the
// supervisor's thread, one call at a time, never with the supervisor's lock held; they should be
// quick (a slow sink delays output capture and restarts). From a sink, add(), start(), stop(),
// restart() and kill() may be called: they then only queue the request, which is carried out
// once the sink has returned, and their result reports only what could be checked at once
// (unknown name, command not found). stop_all() called from a sink queues stops without waiting
// for them. The destructor must not run on the supervisor's thread (from a sink).
//
// Reaping: children are reaped with waitpid on their pid (watched through a pidfd, or polled
// every 20 ms where pidfds are not available). No signal handler is installed. A host program
// that reaps with waitpid(-1, ...) elsewhere would steal the supervisor's children: don't.
#ifndef MEND_RUNTIME_SUPERVISOR_H_
#define MEND_RUNTIME_SUPERVISOR_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/crash_loop.h"
#include "mend/core/result.h"
#include "mend/core/system_clock.h"

namespace mend {

// Longer lines reach the LogSink in pieces of this size.
inline constexpr std::size_t kMaxLogLineBytes = 16 * 1024;

struct ProcessSpec {
  // Unique within a supervisor: "reviewer#0".
  std::string name;
  // Resolved as execvp would: with a '/', a path (relative to working_dir); without, looked up
  // in the PATH of the child's environment (spec.env's PATH, else mend's).
  std::string command;
  std::vector<std::string> args;  // without argv[0], which is `command`
  // Set in the child's environment, over mend's own variables.
  std::map<std::string, std::string> env;
  // The child's working directory; empty: mend's.
  std::string working_dir;
  // How long a graceful stop waits after SIGTERM before SIGKILL. 10 s.
  Duration stop_timeout = std::chrono::seconds(10);
};

enum class ProcessState : std::uint8_t {
  running,   // started and not yet exited
  stopping,  // signalled by stop() or restart(), waiting for it to exit
  backoff,   // crashed, waiting out the crash-loop delay before the next start
  stopped,   // stopped on request; started again only by start() or restart()
};
std::string_view to_string(ProcessState state) noexcept;

struct ProcessStatus {
  std::string name;
  int pid = 0;  // 0 when no process is running
  ProcessState state = ProcessState::stopped;
  bool running = false;     // state is running or stopping
  int restarts = 0;         // automatic and requested restarts
  int crashes = 0;          // exits nobody asked for, and failed starts
  TimePoint started_at{};   // the current (or last) process's start, on the supervisor's clock
  WallTime started_wall{};  // the same as calendar time
  std::string
      last_exit;  // "exited with status 1", "killed by signal 9 (SIGKILL)", "exec failed: ..."
  std::optional<TimePoint> next_start;  // when waiting in crash backoff
  std::uint64_t rss_bytes = 0;  // resident memory of the group's leader process, 0 if not running
};

struct ProcessEvent {
  enum class Kind : std::uint8_t {
    started,             // a process was started: pid, description "started" / "restarted ..."
    exited,              // it exited without being asked to: description as last_exit
    restart_scheduled,   // after a crash: the next start in `delay` (zero for the first crash)
    intensity_exceeded,  // more restarts within the period than allowed: escalate
    stopped,             // it exited (or left backoff) because stop()/restart() asked
  };
  Kind kind = Kind::started;
  std::string name;
  int pid = 0;
  std::string description;
  Duration delay{};  // restart_scheduled only
};
std::string_view to_string(ProcessEvent::Kind kind) noexcept;

class ProcessSupervisor {
 public:
  using LogSink =
      std::function<void(const std::string& name, bool is_stderr, std::string_view line)>;
  using EventSink = std::function<void(const ProcessEvent&)>;

  // Throws std::invalid_argument for invalid crash-loop options (see CrashLoopBackoff), and
  // std::system_error when the supervisor's thread or wake-up pipe cannot be created. `clock`
  // times the backoff and stop timeouts; it must outlive the supervisor.
  ProcessSupervisor(CrashLoopOptions crash_loop, LogSink log, EventSink events = {},
                    const Clock& clock = SystemClock::instance());
  // stop_all(), then ends the supervisor's thread; kills whatever is still left.
  ~ProcessSupervisor();
  ProcessSupervisor(const ProcessSupervisor&) = delete;
  ProcessSupervisor& operator=(const ProcessSupervisor&) = delete;

  // Registers the process and starts it; returns once it is started. Errors: an empty or
  // duplicate name, a working_dir that is not a directory, a command that is not found or not
  // executable (checked before forking), a negative stop_timeout, a failed fork or exec (the
  // process is then not registered).
  Result<void> add(ProcessSpec spec);
  // Stops the process gracefully and returns once it has exited; it is not restarted
  // automatically afterwards. Stopping a stopped process does nothing. Error: unknown name.
  Result<void> stop(const std::string& name);
  // Stops the process gracefully, as stop(), and forgets it: its name may be added again (how
  // the daemon replaces an agent whose command changed on reload). Errors: unknown name; called
  // from a sink.
  Result<void> remove(const std::string& name);
  // Starts a stopped process (or one waiting in backoff, at once), with a fresh crash-loop
  // history. Errors: unknown name, already running, the start failed.
  Result<void> start(const std::string& name);
  // Stops the process (graceful: SIGTERM, stop_timeout, SIGKILL; otherwise SIGKILL at once) and
  // starts it again at once; returns once it has started. Counted in restarts. A process that is
  // not running is just started. Errors: unknown name, the start failed.
  Result<void> restart(const std::string& name, bool graceful);
  // Delivers `signal` to the process's group. An exit it causes is a crash, restarted as any.
  // Errors: unknown name, not running, invalid signal.
  Result<void> kill(const std::string& name, int signal);

  std::optional<ProcessStatus> status(const std::string& name) const;
  std::vector<ProcessStatus> statuses() const;  // in add order

  // Stops every process gracefully, one after the other in reverse add order (the last added
  // first), each waited for. Idempotent; processes stay registered.
  void stop_all();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mend

#endif  // MEND_RUNTIME_SUPERVISOR_H_
