#include "mend/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <variant>

#include "mend/text.h"

extern char** environ;  // NOLINT: POSIX declares it nowhere in a header

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
// File descriptors the parent hands to a child are lifted at least this high, so that the
// child's dup2() onto 0..3 can never overwrite one it still has to move.
constexpr int kLowestHandedFd = 10;

std::string errno_text(int err) {
  return std::error_code(err, std::system_category()).message();
}

Error usage_error(std::string message) {
  return Error::classified_as(ErrorType::validation_failed, Severity::low, std::move(message));
}

Error config_error(std::string message) {
  return Error::classified_as(ErrorType::configuration_error, Severity::high, std::move(message));
}

Error os_error(int err, const std::string& what) {
  return Error::from_code(std::error_code(err, std::system_category()),
                          what + ": " + errno_text(err));
}

std::string signal_text(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  std::string text = "signal " + std::to_string(sig);
  if (abbrev != nullptr) text += std::string(" (SIG") + abbrev + ")";
  return text;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    std::string text = "killed by " + signal_text(WTERMSIG(status));
    if (WCOREDUMP(status)) text += ", core dumped";
    return text;
  }
  return "ended with wait status " + std::to_string(status);
}

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Moves `fd` to a close-on-exec descriptor >= kLowestHandedFd.
Result<Fd> lifted(int fd, const char* what) {
  Fd original(fd);
  if (fd >= kLowestHandedFd) return original;
  const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, kLowestHandedFd);
  if (high < 0) return os_error(errno, what);
  return Fd(high);
}

struct Pipe {
  Fd read;
  Fd write;
};

Result<Pipe> make_pipe(const char* what) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return os_error(errno, what);
  Result<Fd> read_end = lifted(fds[0], what);
  Result<Fd> write_end = lifted(fds[1], what);
  if (!read_end.ok()) return std::move(read_end).error();
  if (!write_end.ok()) return std::move(write_end).error();
  return Pipe{std::move(*read_end), std::move(*write_end)};
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::string joined(const std::string& dir, const std::string& name) {
  if (dir.empty() || name.starts_with('/')) return name;
  return dir.ends_with('/') ? dir + name : dir + "/" + name;
}

// The file execvp would run for `command` in a child whose working directory is `working_dir`
// and whose PATH is `path`.
Result<std::string> resolve_command(const std::string& command, const std::string& working_dir,
                                    const std::string& path) {
  if (command.empty()) return config_error("the command is empty");
  if (command.find('\0') != std::string::npos) return config_error("the command contains NUL");
  if (command.find('/') != std::string::npos) {
    std::string file = joined(working_dir, command);
    if (::access(file.c_str(), F_OK) != 0) {
      return config_error("command '" + command + "' not found (" + file + ")");
    }
    if (!is_executable_file(file)) {
      return config_error("command '" + command + "' is not an executable file (" + file + ")");
    }
    return file;
  }
  std::size_t begin = 0;
  while (begin <= path.size()) {
    std::size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(begin, end - begin);
    if (dir.empty()) dir = ".";  // as execvp: an empty entry is the working directory
    std::string file = joined(working_dir, joined(dir, command));
    if (is_executable_file(file)) return file;
    begin = end + 1;
  }
  return config_error("command '" + command + "' not found in PATH (" + path + ")");
}

std::uint64_t read_rss_bytes(int pid) {
  const std::string file = "/proc/" + std::to_string(pid) + "/status";
  std::FILE* f = std::fopen(file.c_str(), "re");
  if (f == nullptr) return 0;
  std::uint64_t bytes = 0;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long long kib = 0;
    if (std::sscanf(line, "VmRSS: %llu kB", &kib) == 1) {
      bytes = static_cast<std::uint64_t>(kib) * 1024;
      break;
    }
  }
  std::fclose(f);
  return bytes;
}

// What the child reports through its close-on-exec pipe when it cannot exec.
struct ChildFailure {
  int stage = 0;  // kStageSetup, kStageChdir, kStageExec
  int err = 0;
};
constexpr int kStageSetup = 1;
constexpr int kStageChdir = 2;
constexpr int kStageExec = 3;

// Everything the child needs, prepared before fork: after it, only async-signal-safe calls.
struct ChildPlan {
  const char* executable = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* working_dir = nullptr;  // null: stay where mend is
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  int report_fd = -1;
  pid_t parent = 0;
  int max_fd = 0;
};

[[noreturn]] void report_and_exit(int report_fd, int stage, int err) {
  ChildFailure failure{stage, err};
  ssize_t ignored = ::write(report_fd, &failure, sizeof failure);
  (void)ignored;
  ::_exit(127);
}

[[noreturn]] void run_child(const ChildPlan& plan) {
  // Dispositions set to SIG_IGN survive exec (a host that ignores SIGPIPE would hand that on);
  // the signal mask does too.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &default_action, nullptr);
  sigset_t empty;
  ::sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);

  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != plan.parent) ::_exit(127);  // mend died before prctl took effect

  constexpr int kReportFd = 3;
  if (::dup2(plan.stdin_fd, 0) < 0 || ::dup2(plan.stdout_fd, 1) < 0 ||
      ::dup2(plan.stderr_fd, 2) < 0 || ::dup2(plan.report_fd, kReportFd) < 0 ||
      ::fcntl(kReportFd, F_SETFD, FD_CLOEXEC) < 0) {
    report_and_exit(plan.report_fd, kStageSetup, errno);
  }
  bool closed = false;
#ifdef SYS_close_range
  closed = ::syscall(SYS_close_range, kReportFd + 1, ~0u, 0) == 0;
#endif
  if (!closed) {
    for (int fd = kReportFd + 1; fd < plan.max_fd; ++fd) ::close(fd);
  }
  if (plan.working_dir != nullptr && ::chdir(plan.working_dir) != 0) {
    report_and_exit(kReportFd, kStageChdir, errno);
  }
  ::execve(plan.executable, plan.argv, plan.envp);
  report_and_exit(kReportFd, kStageExec, errno);
}

std::vector<std::string> child_environment(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view var(*entry);
    const std::size_t eq = var.find('=');
    if (eq != std::string_view::npos && overrides.count(std::string(var.substr(0, eq))) != 0) {
      continue;
    }
    env.emplace_back(var);
  }
  for (const auto& [key, value] : overrides) env.push_back(key + "=" + value);
  return env;
}

std::vector<char*> pointers_to(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

int max_fd_to_close() {
  const long limit = ::sysconf(_SC_OPEN_MAX);
  if (limit <= 0) return 1024;
  return static_cast<int>(std::min<long>(limit, 1 << 16));
}

// The pidfd of `pid`, or an invalid Fd where the kernel has none (exits are then polled).
Fd open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
    return Fd(static_cast<int>(fd));
  }
#else
  (void)pid;
#endif
  return Fd();
}

struct Completion {
  bool done = false;
  Result<void> result;
};
using CompletionPtr = std::shared_ptr<Completion>;

struct LogLine {
  std::string name;
  bool is_stderr = false;
  std::string line;
};

// What one turn of the supervisor's loop has to tell, delivered after its lock is released, in
// order: output lines and events; then the callers waiting for their request are released.
struct Outbox {
  std::vector<std::variant<LogLine, ProcessEvent>> messages;
  std::vector<std::pair<CompletionPtr, Result<void>>> completions;

  void event(ProcessEvent::Kind kind, const std::string& name, int pid, std::string description,
             Duration delay = {}) {
    messages.emplace_back(ProcessEvent{kind, name, pid, std::move(description), delay});
  }
  void complete(const CompletionPtr& c, Result<void> result) {
    if (c) completions.emplace_back(c, std::move(result));
  }
};

// One pipe from a child (stdout or stderr), split into lines.
struct OutputStream {
  std::string name;
  bool is_stderr = false;
  std::uint64_t instance = 0;  // which start of the process wrote it
  Fd fd;
  std::string pending;  // bytes after the last complete line
  std::optional<TimePoint> close_by;
  bool at_eof = false;

  void emit(Outbox& out, std::string_view piece) {
    out.messages.emplace_back(LogLine{name, is_stderr, std::string(piece)});
  }
  // A whole line (its newline, or EOF, seen): without a trailing CR, in pieces of at most
  // kMaxLogLineBytes. A line of exactly that length stays whole.
  void emit_line(Outbox& out, std::string_view line) {
    if (line.ends_with('\r')) line.remove_suffix(1);
    while (line.size() > kMaxLogLineBytes) {
      emit(out, line.substr(0, kMaxLogLineBytes));
      line.remove_prefix(kMaxLogLineBytes);
    }
    emit(out, line);
  }
  void take(Outbox& out, const char* data, std::size_t size) {
    pending.append(data, size);
    std::size_t begin = 0;
    for (;;) {
      const std::size_t newline = pending.find('\n', begin);
      if (newline == std::string::npos) break;
      emit_line(out, std::string_view(pending).substr(begin, newline - begin));
      begin = newline + 1;
    }
    // Without a newline in sight, cut only when more than a full line is waiting, so that the
    // pieces are the same however the reads split the output.
    while (pending.size() - begin > kMaxLogLineBytes) {
      emit(out, std::string_view(pending).substr(begin, kMaxLogLineBytes));
      begin += kMaxLogLineBytes;
    }
    pending.erase(0, begin);
  }
  void finish(Outbox& out) {
    if (!pending.empty()) emit_line(out, pending);
    pending.clear();
    at_eof = true;
    fd.reset();
  }
  // Reads what is there now (a bounded amount, so that one chatty process cannot starve the
  // others); at EOF or on an error, passes on the last partial line and closes.
  void read_available(Outbox& out) {
    char buffer[64 * 1024];
    for (int round = 0; round < 16 && !at_eof; ++round) {
      const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
      if (n > 0) {
        take(out, buffer, static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
      } else {
        finish(out);
      }
    }
  }
};

}  // namespace

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
  Process* find_locked(const std::string& name) const;
  ProcessStatus status_locked(const Process& p) const;
  Result<void> request(Op op, const std::string& name);
  // Queues `command`; waits for its completion unless called from the loop thread.
  Result<void> submit_locked(std::unique_lock<std::mutex>& lock, Op op, const std::string& name);
  void wake();

  void run();
  Duration next_wait_locked(TimePoint now) const;
  void execute_locked(const Command& command, Outbox& out);
  void reap_locked(Outbox& out);
  void run_timers_locked(Outbox& out);
  void begin_stop_locked(Process& p, bool graceful, bool start_again, const CompletionPtr& c,
                         Outbox& out);
  void on_exit_locked(Process& p, const std::string& description, Outbox& out);
  void crash_locked(Process& p, int pid, const std::string& description, Outbox& out);
  // Starts `p`; on failure, when `failure_is_crash`, handles it as a crash (backoff).
  Result<void> start_locked(Process& p, const std::string& description, bool failure_is_crash,
                            Outbox& out);
  Result<void> spawn_locked(Process& p);
  void signal_group_locked(const Process& p, int sig) const;
  void close_streams_of_locked(std::uint64_t instance, Outbox& out, TimePoint now);
  void deliver(Outbox& out);
  void shut_down_locked();

  const CrashLoopOptions crash_loop_;
  const LogSink log_;
  const EventSink events_;
  const Clock& clock_;
  const int max_fd_ = max_fd_to_close();
  Fd wake_read_;
  Fd wake_write_;

  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  std::vector<std::unique_ptr<Process>> processes_;     // guarded by mu_; add order
  std::deque<Command> commands_;                        // guarded by mu_
  std::vector<std::unique_ptr<OutputStream>> streams_;  // guarded by mu_ (the loop's alone)
  std::uint64_t next_instance_ = 1;                     // guarded by mu_
  bool quitting_ = false;                               // guarded by mu_
  bool loop_ended_ = false;                             // guarded by mu_

  std::thread thread_;
  std::thread::id thread_id_;
};

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
  std::unique_lock lock(mu_);
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
    std::lock_guard lock(mu_);
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

  std::unique_lock lock(mu_);
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
  std::unique_lock lock(mu_);
  Process* p = find_locked(name);
  if (p == nullptr) return usage_error("no process named '" + name + "'");
  if (p->state == ProcessState::running || p->state == ProcessState::stopping) {
    return usage_error("process '" + name + "' is already running");
  }
  return submit_locked(lock, Op::start, name);
}

Result<void> ProcessSupervisor::Impl::request(Op op, const std::string& name) {
  std::unique_lock lock(mu_);
  if (find_locked(name) == nullptr) return usage_error("no process named '" + name + "'");
  return submit_locked(lock, op, name);
}

Result<void> ProcessSupervisor::Impl::submit_locked(std::unique_lock<std::mutex>& lock, Op op,
                                                    const std::string& name) {
  if (quitting_) return usage_error("the supervisor is shutting down");
  const bool wait = !on_loop_thread();
  CompletionPtr completion = wait ? std::make_shared<Completion>() : nullptr;
  commands_.push_back(Command{op, name, completion});
  wake();
  if (!wait) return {};
  done_cv_.wait(lock, [&] { return completion->done; });
  return std::move(completion->result);
}

Result<void> ProcessSupervisor::Impl::kill(const std::string& name, int signal) {
  if (signal <= 0 || signal >= NSIG) return usage_error("invalid signal " + std::to_string(signal));
  std::lock_guard lock(mu_);
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
  std::lock_guard lock(mu_);
  const Process* p = find_locked(name);
  if (p == nullptr) return std::nullopt;
  return status_locked(*p);
}

std::vector<ProcessStatus> ProcessSupervisor::Impl::statuses() const {
  std::lock_guard lock(mu_);
  std::vector<ProcessStatus> all;
  all.reserve(processes_.size());
  for (const auto& p : processes_) all.push_back(status_locked(*p));
  return all;
}

Result<void> ProcessSupervisor::Impl::remove(const std::string& name) {
  if (on_loop_thread()) return usage_error("remove() cannot be called from a sink");
  if (Result<void> stopped = stop(name); !stopped.ok()) return stopped;
  std::lock_guard lock(mu_);
  Process* p = find_locked(name);
  if (p == nullptr) return {};
  if (p->pid > 0) return usage_error("process '" + name + "' was started again before removal");
  std::erase_if(processes_, [&](const auto& q) { return q.get() == p; });
  return {};
}

void ProcessSupervisor::Impl::stop_all() {
  std::vector<std::string> names;
  {
    std::lock_guard lock(mu_);
    for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) {
      names.push_back((*it)->spec.name);
    }
  }
  for (const std::string& name : names) (void)stop(name);
}

// --- The supervisor's thread -----------------------------------------------------------------

void ProcessSupervisor::Impl::run() {
  std::unique_lock lock(mu_);
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

Result<void> ProcessSupervisor::Impl::spawn_locked(Process& p) {
  Result<Pipe> out_pipe = make_pipe("stdout pipe");
  if (!out_pipe.ok()) return std::move(out_pipe).error();
  Result<Pipe> err_pipe = make_pipe("stderr pipe");
  if (!err_pipe.ok()) return std::move(err_pipe).error();
  Result<Pipe> report = make_pipe("exec report pipe");
  if (!report.ok()) return std::move(report).error();
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return os_error(errno, "opening /dev/null");
  Result<Fd> dev_null = lifted(null_fd, "opening /dev/null");
  if (!dev_null.ok()) return std::move(dev_null).error();
  for (const Fd* fd : {&out_pipe->read, &err_pipe->read}) {
    ::fcntl(fd->get(), F_SETFL, ::fcntl(fd->get(), F_GETFL) | O_NONBLOCK);
  }

  std::vector<std::string> args;
  args.reserve(p.spec.args.size() + 1);
  args.push_back(p.spec.command);
  args.insert(args.end(), p.spec.args.begin(), p.spec.args.end());
  std::vector<char*> argv = pointers_to(args);
  std::vector<std::string> env = child_environment(p.spec.env);
  std::vector<char*> envp = pointers_to(env);

  ChildPlan plan;
  plan.executable = p.executable.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.working_dir = p.spec.working_dir.empty() ? nullptr : p.spec.working_dir.c_str();
  plan.stdin_fd = dev_null->get();
  plan.stdout_fd = out_pipe->write.get();
  plan.stderr_fd = err_pipe->write.get();
  plan.report_fd = report->write.get();
  plan.parent = ::getpid();
  plan.max_fd = max_fd_;

  const pid_t pid = ::fork();
  if (pid < 0) return os_error(errno, "starting process '" + p.spec.name + "': fork failed");
  if (pid == 0) run_child(plan);

  ::setpgid(pid, pid);  // as the child does: whichever runs first, signals reach the group
  out_pipe->write.reset();
  err_pipe->write.reset();
  report->write.reset();
  dev_null->reset();

  ChildFailure failure;
  ssize_t n;
  while ((n = ::read(report->read.get(), &failure, sizeof failure)) < 0 && errno == EINTR) {
  }
  if (n == static_cast<ssize_t>(sizeof failure)) {
    // The child reported its failure and _exit()s: it is reaped here, not by the loop.
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    std::string what = failure.stage == kStageChdir ? "chdir to '" + p.spec.working_dir + "' failed"
                       : failure.stage == kStageExec ? "exec failed"
                                                     : "child setup failed";
    return Error::from_code(std::error_code(failure.err, std::system_category()),
                            what + ": " + errno_text(failure.err));
  }

  p.pid = pid;
  p.pidfd = open_pidfd(pid);
  p.instance = next_instance_++;
  for (auto [pipe, is_stderr] : {std::pair{&*out_pipe, false}, std::pair{&*err_pipe, true}}) {
    auto stream = std::make_unique<OutputStream>();
    stream->name = p.spec.name;
    stream->is_stderr = is_stderr;
    stream->instance = p.instance;
    stream->fd = std::move(pipe->read);
    streams_.push_back(std::move(stream));
  }
  return {};
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
