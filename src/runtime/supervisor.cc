// ProcessSupervisor (mend/runtime/supervisor.h), the callers' side: its public members, the checks
// made before a request is queued for the supervisor's thread, and status. The thread itself is in
// supervisor_loop.cc, starting a process in process_spawn.cc.
#include "mend/runtime/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <system_error>
#include <utility>

#include "proc_status.h"
#include "supervisor_impl.h"

namespace mend {

using runtime_detail::config_error;
using runtime_detail::os_error;
using runtime_detail::read_rss_bytes;
using runtime_detail::resolve_command;
using runtime_detail::usage_error;

namespace runtime_detail {

Error usage_error(std::string message) {
  return Error::classified_as(ErrorType::validation_failed, Severity::low, std::move(message));
}

}  // namespace runtime_detail

std::string_view to_string(ProcessState state) noexcept {
  switch (state) {
    case ProcessState::running:
      return "running";
    case ProcessState::stopping:
      return "stopping";
    case ProcessState::backoff:
      return "backoff";
    case ProcessState::stopped:
      return "stopped";
  }
  return "unknown";
}

std::string_view to_string(ProcessEvent::Kind kind) noexcept {
  switch (kind) {
    case ProcessEvent::Kind::started:
      return "started";
    case ProcessEvent::Kind::exited:
      return "exited";
    case ProcessEvent::Kind::restart_scheduled:
      return "restart_scheduled";
    case ProcessEvent::Kind::intensity_exceeded:
      return "intensity_exceeded";
    case ProcessEvent::Kind::stopped:
      return "stopped";
  }
  return "unknown";
}
ProcessSupervisor::Impl::Impl(CrashLoopOptions crash_loop, LogSink log, EventSink events,
                              const Clock& clock)
    : crash_loop_(crash_loop), log_(std::move(log)), events_(std::move(events)), clock_(clock) {
  CrashLoopBackoff validate(crash_loop_);  // throws std::invalid_argument for bad options
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw std::system_error(errno, std::system_category(), "supervisor wake-up pipe");
  }
  wake_read_.reset(fds[0]);
  wake_write_.reset(fds[1]);
  MutexLock lock(mu_);
  thread_ = std::thread([this] { run(); });
  thread_id_ = thread_.get_id();
}

ProcessSupervisor::Impl::~Impl() {
  if (on_loop_thread()) {
    // Joining itself would hang forever; this is a contract violation, not a runtime error.
    std::fprintf(stderr, "mend: ProcessSupervisor destroyed from its own sink\n");
    std::terminate();
  }
  stop_all();
  {
    MutexLock lock(mu_);
    quitting_ = true;
  }
  wake();
  thread_.join();
  // Whatever was added while stop_all() ran, or could not be stopped.
  for (auto& p : processes_) {
    if (p->pid > 0) {
      ::kill(-p->pid, SIGKILL);
      ::waitpid(p->pid, nullptr, 0);
    }
  }
}

void ProcessSupervisor::Impl::wake() {
  const char byte = 1;
  ssize_t ignored = ::write(wake_write_.get(), &byte, 1);  // full pipe: a wake-up is pending
  (void)ignored;
}

ProcessSupervisor::Impl::Process* ProcessSupervisor::Impl::find_locked(
    const std::string& name) const {
  for (const auto& p : processes_) {
    if (p->spec.name == name) return p.get();
  }
  return nullptr;
}

Result<void> ProcessSupervisor::Impl::add(ProcessSpec spec) {
  if (spec.name.empty()) return usage_error("a process needs a name");
  if (spec.stop_timeout < Duration::zero()) {
    return usage_error("process '" + spec.name + "': stop_timeout must not be negative");
  }
  for (const auto& [key, value] : spec.env) {
    if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos ||
        value.find('\0') != std::string::npos) {
      return config_error("process '" + spec.name + "': invalid environment variable '" + key +
                          "'");
    }
  }
  for (const std::string& arg : spec.args) {
    if (arg.find('\0') != std::string::npos) {
      return config_error("process '" + spec.name + "': an argument contains NUL");
    }
  }
  if (!spec.working_dir.empty()) {
    struct stat st {};
    if (::stat(spec.working_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return config_error("process '" + spec.name + "': working_dir '" + spec.working_dir +
                          "' is not a directory");
    }
  }
  std::string path;
  if (auto it = spec.env.find("PATH"); it != spec.env.end()) {
    path = it->second;
  } else if (const char* inherited = std::getenv("PATH"); inherited != nullptr) {
    path = inherited;
  } else {
    path = "/usr/local/bin:/usr/bin:/bin";
  }
  Result<std::string> executable = resolve_command(spec.command, spec.working_dir, path);
  if (!executable.ok()) {
    Error e = std::move(executable).error();
    e.message = "process '" + spec.name + "': " + e.message;
    return e;
  }

  MutexLock lock(mu_);
  if (quitting_) return usage_error("the supervisor is shutting down");
  if (find_locked(spec.name) != nullptr) {
    return usage_error("a process named '" + spec.name + "' already exists");
  }
  const std::string name = spec.name;
  processes_.push_back(
      std::make_unique<Process>(std::move(spec), std::move(*executable), crash_loop_));
  return submit_locked(lock, Op::add, name);
}

Result<void> ProcessSupervisor::Impl::start(const std::string& name) {
  MutexLock lock(mu_);
  Process* p = find_locked(name);
  if (p == nullptr) return usage_error("no process named '" + name + "'");
  if (p->state == ProcessState::running || p->state == ProcessState::stopping) {
    return usage_error("process '" + name + "' is already running");
  }
  return submit_locked(lock, Op::start, name);
}

Result<void> ProcessSupervisor::Impl::request(Op op, const std::string& name) {
  MutexLock lock(mu_);
  if (find_locked(name) == nullptr) return usage_error("no process named '" + name + "'");
  return submit_locked(lock, op, name);
}

Result<void> ProcessSupervisor::Impl::submit_locked(MutexLock& lock, Op op,
                                                    const std::string& name) {
  if (quitting_) return usage_error("the supervisor is shutting down");
  const bool wait = !on_loop_thread();
  CompletionPtr completion = wait ? std::make_shared<Completion>() : nullptr;
  commands_.push_back(Command{op, name, completion});
  wake();
  if (!wait) return {};
  done_cv_.wait(lock.native(), [&] { return completion->done; });
  return std::move(completion->result);
}

Result<void> ProcessSupervisor::Impl::kill(const std::string& name, int signal) {
  if (signal <= 0 || signal >= NSIG) return usage_error("invalid signal " + std::to_string(signal));
  MutexLock lock(mu_);
  Process* p = find_locked(name);
  if (p == nullptr) return usage_error("no process named '" + name + "'");
  if (p->pid <= 0) return usage_error("process '" + name + "' is not running");
  // The leader is reaped only under mu_, so its pid (the group's id) cannot have been reused.
  if (::kill(-p->pid, signal) != 0 && errno != ESRCH) {
    return os_error(errno, "signalling process '" + name + "'");
  }
  return {};
}

ProcessStatus ProcessSupervisor::Impl::status_locked(const Process& p) const {
  ProcessStatus s;
  s.name = p.spec.name;
  s.pid = p.pid;
  s.state = p.state;
  s.running = p.state == ProcessState::running || p.state == ProcessState::stopping;
  s.restarts = p.restarts;
  s.crashes = p.crashes;
  s.started_at = p.started_at;
  s.started_wall = p.started_wall;
  s.last_exit = p.last_exit;
  s.next_start = p.next_start;
  s.rss_bytes = p.pid > 0 ? read_rss_bytes(p.pid) : 0;
  return s;
}

std::optional<ProcessStatus> ProcessSupervisor::Impl::status(const std::string& name) const {
  MutexLock lock(mu_);
  const Process* p = find_locked(name);
  if (p == nullptr) return std::nullopt;
  return status_locked(*p);
}

std::vector<ProcessStatus> ProcessSupervisor::Impl::statuses() const {
  MutexLock lock(mu_);
  std::vector<ProcessStatus> all;
  all.reserve(processes_.size());
  for (const auto& p : processes_) all.push_back(status_locked(*p));
  return all;
}

Result<void> ProcessSupervisor::Impl::remove(const std::string& name) {
  if (on_loop_thread()) return usage_error("remove() cannot be called from a sink");
  if (Result<void> stopped = stop(name); !stopped.ok()) return stopped;
  MutexLock lock(mu_);
  Process* p = find_locked(name);
  if (p == nullptr) return {};
  if (p->pid > 0) return usage_error("process '" + name + "' was started again before removal");
  std::erase_if(processes_, [&](const auto& q) { return q.get() == p; });
  return {};
}

void ProcessSupervisor::Impl::stop_all() {
  std::vector<std::string> names;
  {
    MutexLock lock(mu_);
    for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) {
      names.push_back((*it)->spec.name);
    }
  }
  for (const std::string& name : names) (void)stop(name);
}

// --- The public face ------------------------------------------------------------------------

ProcessSupervisor::ProcessSupervisor(CrashLoopOptions crash_loop, LogSink log, EventSink events,
                                     const Clock& clock)
    : impl_(std::make_unique<Impl>(crash_loop, std::move(log), std::move(events), clock)) {}

ProcessSupervisor::~ProcessSupervisor() = default;

Result<void> ProcessSupervisor::add(ProcessSpec spec) {
  return impl_->add(std::move(spec));
}
Result<void> ProcessSupervisor::stop(const std::string& name) {
  return impl_->stop(name);
}
Result<void> ProcessSupervisor::remove(const std::string& name) {
  return impl_->remove(name);
}
Result<void> ProcessSupervisor::start(const std::string& name) {
  return impl_->start(name);
}
Result<void> ProcessSupervisor::restart(const std::string& name, bool graceful) {
  return impl_->restart(name, graceful);
}
Result<void> ProcessSupervisor::kill(const std::string& name, int signal) {
  return impl_->kill(name, signal);
}
std::optional<ProcessStatus> ProcessSupervisor::status(const std::string& name) const {
  return impl_->status(name);
}
std::vector<ProcessStatus> ProcessSupervisor::statuses() const {
  return impl_->statuses();
}
void ProcessSupervisor::stop_all() {
  impl_->stop_all();
}

}  // namespace mend
