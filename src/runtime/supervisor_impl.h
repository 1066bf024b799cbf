// Internal to mend::runtime: ProcessSupervisor's implementation (mend/runtime/supervisor.h), shared
// by the files that define it: supervisor.cc (the callers' side: requests, status, the public
// face), supervisor_loop.cc (the supervisor's thread: poll, reap, timers, crashes, stops) and
// process_spawn.cc (fork and exec).
#ifndef MEND_SRC_RUNTIME_SUPERVISOR_IMPL_H_
#define MEND_SRC_RUNTIME_SUPERVISOR_IMPL_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/crash_loop.h"
#include "mend/core/result.h"
#include "mend/core/thread_annotations.h"
#include "mend/runtime/supervisor.h"
#include "process_output.h"
#include "process_spawn.h"
#include "supervisor_outbox.h"

namespace mend {

namespace runtime_detail {

// A request the supervisor cannot carry out as asked: unknown name, already running, shutting down.
Error usage_error(std::string message);

}  // namespace runtime_detail

class ProcessSupervisor::Impl {
 public:
  Impl(CrashLoopOptions crash_loop, LogSink log, EventSink events, const Clock& clock);
  ~Impl();

  Result<void> add(ProcessSpec spec);
  Result<void> stop(const std::string& name) { return request(Op::stop, name); }
  Result<void> remove(const std::string& name);
  Result<void> start(const std::string& name);
  Result<void> restart(const std::string& name, bool graceful) {
    return request(graceful ? Op::restart_graceful : Op::restart_now, name);
  }
  Result<void> kill(const std::string& name, int signal);
  std::optional<ProcessStatus> status(const std::string& name) const;
  std::vector<ProcessStatus> statuses() const;
  void stop_all();

 private:
  using Completion = runtime_detail::Completion;
  using CompletionPtr = runtime_detail::CompletionPtr;
  using Fd = runtime_detail::Fd;
  using LogLine = runtime_detail::LogLine;
  using Outbox = runtime_detail::Outbox;
  using OutputStream = runtime_detail::OutputStream;

  enum class Op { add, start, stop, restart_graceful, restart_now };
  struct Command {
    Op op;
    std::string name;
    CompletionPtr completion;  // null when the caller does not wait (a sink's request)
  };

  struct Process {
    explicit Process(ProcessSpec s, std::string exe, const CrashLoopOptions& options)
        : spec(std::move(s)), executable(std::move(exe)), backoff(options) {}
    ProcessSpec spec;
    std::string executable;  // resolved when added
    ProcessState state = ProcessState::stopped;
    int pid = 0;
    Fd pidfd;
    std::uint64_t instance = 0;
    TimePoint started_at{};
    WallTime started_wall{};
    int restarts = 0;
    int crashes = 0;
    std::string last_exit;
    std::optional<TimePoint> next_start;  // backoff
    std::optional<TimePoint> kill_at;     // stopping: SIGKILL then
    bool sigkilled = false;               // stopping: SIGKILL already sent
    bool killed_by_timeout = false;       // ... because the stop timeout ran out
    bool start_again = false;             // stopping for a restart
    std::vector<CompletionPtr> waiters;   // stop()/restart() callers waiting for the exit
    CrashLoopBackoff backoff;
  };

  bool on_loop_thread() const { return std::this_thread::get_id() == thread_id_; }
  // The *_locked members are called with mu_ held.
  Process* find_locked(const std::string& name) const MEND_REQUIRES(mu_);
  ProcessStatus status_locked(const Process& p) const MEND_REQUIRES(mu_);
  Result<void> request(Op op, const std::string& name);
  // Queues `command`; waits for its completion unless called from the loop thread (`lock` holds
  // mu_, and holds it again when it returns).
  Result<void> submit_locked(MutexLock& lock, Op op, const std::string& name) MEND_REQUIRES(mu_);
  void wake();

  // The supervisor's thread (supervisor_loop.cc).
  void run();
  Duration next_wait_locked(TimePoint now) const MEND_REQUIRES(mu_);
  void execute_locked(const Command& command, Outbox& out) MEND_REQUIRES(mu_);
  void reap_locked(Outbox& out) MEND_REQUIRES(mu_);
  void run_timers_locked(Outbox& out) MEND_REQUIRES(mu_);
  void begin_stop_locked(Process& p, bool graceful, bool start_again, const CompletionPtr& c,
                         Outbox& out) MEND_REQUIRES(mu_);
  void on_exit_locked(Process& p, const std::string& description, Outbox& out) MEND_REQUIRES(mu_);
  void crash_locked(Process& p, int pid, const std::string& description, Outbox& out)
      MEND_REQUIRES(mu_);
  // Starts `p`; on failure, when `failure_is_crash`, handles it as a crash (backoff).
  Result<void> start_locked(Process& p, const std::string& description, bool failure_is_crash,
                            Outbox& out) MEND_REQUIRES(mu_);
  // Forks and execs `p` (process_spawn.cc).
  Result<void> spawn_locked(Process& p) MEND_REQUIRES(mu_);
  void signal_group_locked(const Process& p, int sig) const MEND_REQUIRES(mu_);
  void close_streams_of_locked(std::uint64_t instance, Outbox& out, TimePoint now)
      MEND_REQUIRES(mu_);
  void deliver(Outbox& out) MEND_EXCLUDES(mu_);
  void shut_down_locked() MEND_REQUIRES(mu_);

  const CrashLoopOptions crash_loop_;
  const LogSink log_;
  const EventSink events_;
  const Clock& clock_;
  const int max_fd_ = runtime_detail::max_fd_to_close();
  Fd wake_read_;
  Fd wake_write_;

  mutable Mutex mu_;
  std::condition_variable done_cv_;
  std::vector<std::unique_ptr<Process>> processes_ MEND_GUARDED_BY(mu_);  // add order
  std::deque<Command> commands_ MEND_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<OutputStream>> streams_ MEND_GUARDED_BY(mu_);  // the loop's alone
  std::uint64_t next_instance_ MEND_GUARDED_BY(mu_) = 1;
  bool quitting_ MEND_GUARDED_BY(mu_) = false;
  bool loop_ended_ MEND_GUARDED_BY(mu_) = false;

  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace mend

#endif  // MEND_SRC_RUNTIME_SUPERVISOR_IMPL_H_
