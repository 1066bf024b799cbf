// ProcessSupervisor's thread (supervisor_impl.h): the loop that polls output pipes and pidfds,
// reaps exits, carries out queued requests, runs crash-loop restarts and stop timeouts, and
// delivers what each turn has to tell to the sinks.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <variant>

#include "mend/core/text.h"
#include "mend/runtime/supervisor.h"
#include "supervisor_impl.h"

namespace mend {
namespace {

using namespace std::chrono_literals;

// Where no pidfd can watch a child (kernels before 5.3, seccomp), exits are polled this often.
constexpr Duration kReapPollInterval = 20ms;
// Timer deadlines are re-checked at least this often, so that a manual clock advanced by a test
// is noticed without a wake-up of its own.
constexpr Duration kMaxDeadlineWait = 100ms;
// After its process exited, a pipe still held open by an escaped grandchild is read this long
// more, then closed.
constexpr Duration kOutputLinger = 1s;

}  // namespace

using runtime_detail::describe_wait_status;
using runtime_detail::usage_error;

void ProcessSupervisor::Impl::run() {
  MutexLock lock(mu_);
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({wake_read_.get(), POLLIN, 0});
    for (const auto& s : streams_) fds.push_back({s->fd.get(), POLLIN, 0});
    for (const auto& p : processes_) {
      if (p->pid > 0 && p->pidfd.valid()) fds.push_back({p->pidfd.get(), POLLIN, 0});
    }
    const Duration wait = next_wait_locked(clock_.now());
    int timeout_ms = -1;
    if (wait != Duration::max()) {
      timeout_ms = static_cast<int>(
          std::chrono::ceil<std::chrono::milliseconds>(std::max(wait, Duration::zero())).count());
    }
    lock.unlock();
    ::poll(fds.data(), fds.size(), timeout_ms);
    lock.lock();

    char drain[256];
    while (::read(wake_read_.get(), drain, sizeof drain) > 0) {
    }
    if (quitting_) break;

    Outbox out;
    // Streams were not added or removed since the poll set was built: the loop alone does that.
    for (std::size_t i = 0; i < streams_.size(); ++i) {
      if (fds[i + 1].revents != 0) streams_[i]->read_available(out);
    }
    reap_locked(out);
    while (!commands_.empty()) {
      Command command = std::move(commands_.front());
      commands_.pop_front();
      execute_locked(command, out);
    }
    run_timers_locked(out);
    std::erase_if(streams_, [](const auto& s) { return s->at_eof; });

    if (!out.messages.empty()) {
      lock.unlock();
      deliver(out);
      lock.lock();
    }
    if (!out.completions.empty()) {
      for (auto& [completion, result] : out.completions) {
        completion->result = std::move(result);
        completion->done = true;
      }
      done_cv_.notify_all();
    }
  }
  shut_down_locked();
}

void ProcessSupervisor::Impl::shut_down_locked() {
  const Error gone = usage_error("the supervisor is shutting down");
  for (Command& command : commands_) {
    if (command.completion) {
      command.completion->result = gone;
      command.completion->done = true;
    }
  }
  commands_.clear();
  for (auto& p : processes_) {
    for (CompletionPtr& c : p->waiters) {
      c->result = gone;
      c->done = true;
    }
    p->waiters.clear();
  }
  streams_.clear();
  loop_ended_ = true;
  done_cv_.notify_all();
}

Duration ProcessSupervisor::Impl::next_wait_locked(TimePoint now) const {
  Duration wait = Duration::max();
  auto until = [&](std::optional<TimePoint> deadline) {
    if (deadline) wait = std::min(wait, std::min(*deadline - now, kMaxDeadlineWait));
  };
  for (const auto& p : processes_) {
    if (p->pid > 0 && !p->pidfd.valid()) wait = std::min(wait, kReapPollInterval);
    until(p->next_start);
    until(p->kill_at);
  }
  for (const auto& s : streams_) until(s->close_by);
  return wait;
}

void ProcessSupervisor::Impl::deliver(Outbox& out) {
  for (auto& message : out.messages) {
    try {
      if (auto* line = std::get_if<LogLine>(&message)) {
        if (log_) log_(line->name, line->is_stderr, line->line);
      } else if (events_) {
        events_(std::get<ProcessEvent>(message));
      }
    } catch (...) {
      // A sink's failure must not stop supervision.
    }
  }
}

void ProcessSupervisor::Impl::execute_locked(const Command& command, Outbox& out) {
  Process* p = find_locked(command.name);
  if (p == nullptr) {
    out.complete(command.completion, usage_error("no process named '" + command.name + "'"));
    return;
  }
  switch (command.op) {
    case Op::add: {
      // A caller who waits learns of a failed first start and the process is not registered; a
      // sink's add goes through the crash loop like any failed start.
      Result<void> r = start_locked(*p, "started", /*failure_is_crash=*/!command.completion, out);
      if (!r.ok() && command.completion) {
        std::erase_if(processes_, [&](const auto& q) { return q.get() == p; });
      }
      out.complete(command.completion, std::move(r));
      return;
    }
    case Op::start:
      if (p->state == ProcessState::running || p->state == ProcessState::stopping) {
        out.complete(command.completion,
                     usage_error("process '" + command.name + "' is already running"));
        return;
      }
      p->backoff.reset();
      p->next_start.reset();
      out.complete(command.completion, start_locked(*p, "started", true, out));
      return;
    case Op::stop:
      begin_stop_locked(*p, /*graceful=*/true, /*start_again=*/false, command.completion, out);
      return;
    case Op::restart_graceful:
    case Op::restart_now:
      begin_stop_locked(*p, command.op == Op::restart_graceful, /*start_again=*/true,
                        command.completion, out);
      return;
  }
}

void ProcessSupervisor::Impl::begin_stop_locked(Process& p, bool graceful, bool start_again,
                                                const CompletionPtr& c, Outbox& out) {
  switch (p.state) {
    case ProcessState::running:
      p.state = ProcessState::stopping;
      p.killed_by_timeout = false;
      if (graceful) {
        signal_group_locked(p, SIGTERM);
        p.kill_at = clock_.now() + p.spec.stop_timeout;
        p.sigkilled = false;
      } else {
        signal_group_locked(p, SIGKILL);
        p.kill_at.reset();
        p.sigkilled = true;
      }
      break;
    case ProcessState::stopping:
      if (!graceful && !p.sigkilled) {
        signal_group_locked(p, SIGKILL);
        p.kill_at.reset();
        p.sigkilled = true;
      }
      break;
    case ProcessState::backoff:
    case ProcessState::stopped: {
      if (p.state == ProcessState::backoff) {
        out.event(ProcessEvent::Kind::stopped, p.spec.name, 0, "stopped while waiting to restart");
      }
      p.state = ProcessState::stopped;
      p.next_start.reset();
      if (start_again) {
        ++p.restarts;
        out.complete(c, start_locked(p, "restarted on request", true, out));
      } else {
        out.complete(c, {});
      }
      return;
    }
  }
  // The latest request decides whether it starts again once it has exited.
  p.start_again = start_again;
  if (c) p.waiters.push_back(c);
}

void ProcessSupervisor::Impl::signal_group_locked(const Process& p, int sig) const {
  if (p.pid > 0) ::kill(-p.pid, sig);
}

void ProcessSupervisor::Impl::reap_locked(Outbox& out) {
  for (std::size_t i = 0; i < processes_.size(); ++i) {
    Process& p = *processes_[i];
    if (p.pid <= 0) continue;
    siginfo_t info{};
    // Peek first: while the exited leader is a zombie its pid cannot be reused, so the rest of
    // its group can be killed safely before it is reaped.
    if (::waitid(P_PID, static_cast<id_t>(p.pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      // ECHILD: someone else reaped it (a waitpid(-1) elsewhere in the host program).
      on_exit_locked(p, "exited (reaped elsewhere: status unknown)", out);
      continue;
    }
    if (info.si_pid == 0) continue;  // still running
    ::kill(-p.pid, SIGKILL);
    int status = 0;
    while (::waitpid(p.pid, &status, 0) < 0 && errno == EINTR) {
    }
    on_exit_locked(p, describe_wait_status(status), out);
  }
}

void ProcessSupervisor::Impl::close_streams_of_locked(std::uint64_t instance, Outbox& out,
                                                      TimePoint now) {
  for (auto& s : streams_) {
    if (s->instance != instance || s->at_eof) continue;
    s->read_available(out);  // its last words come before the exit event
    if (!s->at_eof && !s->close_by) s->close_by = now + kOutputLinger;
  }
}

void ProcessSupervisor::Impl::on_exit_locked(Process& p, const std::string& description,
                                             Outbox& out) {
  const TimePoint now = clock_.now();
  const int pid = p.pid;
  close_streams_of_locked(p.instance, out, now);
  p.pid = 0;
  p.pidfd.reset();
  p.last_exit = description;

  if (p.state != ProcessState::stopping) {
    crash_locked(p, pid, description, out);
    return;
  }
  p.backoff.record_stop(now);
  std::string stopped = description;
  if (p.killed_by_timeout)
    stopped += " after the " + duration_text(p.spec.stop_timeout) + " stop timeout";
  out.event(ProcessEvent::Kind::stopped, p.spec.name, pid, std::move(stopped));
  p.kill_at.reset();
  p.sigkilled = false;
  p.killed_by_timeout = false;
  std::vector<CompletionPtr> waiters = std::move(p.waiters);
  p.waiters.clear();
  Result<void> result;
  p.state = ProcessState::stopped;
  if (p.start_again) {
    p.start_again = false;
    ++p.restarts;
    result = start_locked(p, "restarted on request", true, out);
  }
  for (const CompletionPtr& c : waiters) out.complete(c, result);
}

void ProcessSupervisor::Impl::crash_locked(Process& p, int pid, const std::string& description,
                                           Outbox& out) {
  const TimePoint now = clock_.now();
  ++p.crashes;
  out.event(ProcessEvent::Kind::exited, p.spec.name, pid, description);
  const CrashLoopDecision d = p.backoff.on_exit(now);
  out.event(ProcessEvent::Kind::restart_scheduled, p.spec.name, pid,
            (d.delay == Duration::zero() ? std::string("restart at once")
                                         : "restart in " + seconds_text(to_seconds(d.delay))) +
                " (crash " + std::to_string(d.crash_streak) + " in a row)",
            d.delay);
  if (d.intensity_newly_exceeded) {
    out.event(ProcessEvent::Kind::intensity_exceeded, p.spec.name, pid,
              std::to_string(d.restarts_in_period) + " restarts within " +
                  duration_text(crash_loop_.intensity_period) + " (at most " +
                  std::to_string(crash_loop_.intensity_max_restarts) + " allowed)");
  }
  // Even an immediate restart goes through the timers, in this same turn of the loop: a start
  // that fails at once then waits for the next turn instead of recursing.
  p.state = ProcessState::backoff;
  p.next_start = now + d.delay;
}

void ProcessSupervisor::Impl::run_timers_locked(Outbox& out) {
  const TimePoint now = clock_.now();
  for (std::size_t i = 0; i < processes_.size(); ++i) {
    Process& p = *processes_[i];
    if (p.state == ProcessState::stopping && p.kill_at && now >= *p.kill_at) {
      signal_group_locked(p, SIGKILL);
      p.kill_at.reset();
      p.sigkilled = true;
      p.killed_by_timeout = true;
    }
    if (p.state == ProcessState::backoff && p.next_start && now >= *p.next_start) {
      p.next_start.reset();
      ++p.restarts;
      (void)start_locked(p, "restarted after a crash", true, out);
    }
  }
  for (auto& s : streams_) {
    if (s->close_by && now >= *s->close_by && !s->at_eof) {
      s->read_available(out);
      if (!s->at_eof) s->finish(out);
    }
  }
}

Result<void> ProcessSupervisor::Impl::start_locked(Process& p, const std::string& description,
                                                   bool failure_is_crash, Outbox& out) {
  const TimePoint now = clock_.now();
  p.backoff.record_start(now);
  p.started_at = now;
  p.started_wall = clock_.wall_now();
  Result<void> spawned = spawn_locked(p);
  if (!spawned.ok()) {
    p.last_exit = spawned.error().message;
    if (failure_is_crash) crash_locked(p, 0, p.last_exit, out);
    return spawned;
  }
  p.state = ProcessState::running;
  out.event(ProcessEvent::Kind::started, p.spec.name, p.pid, description);
  return {};
}

}  // namespace mend
