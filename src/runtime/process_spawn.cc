// Starting a supervised process (process_spawn.h): command lookup, pipes, fork and exec, what the
// child does until exec, and ProcessSupervisor::Impl::spawn_locked(), which puts them together.
#include "process_spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string_view>
#include <system_error>
#include <vector>

#include "supervisor_impl.h"

extern char** environ;  // NOLINT: POSIX declares it nowhere in a header

namespace mend {

using runtime_detail::errno_text;
using runtime_detail::Fd;
using runtime_detail::os_error;

namespace {

// File descriptors the parent hands to a child are lifted at least this high, so that the
// child's dup2() onto 0..3 can never overwrite one it still has to move.
constexpr int kLowestHandedFd = 10;

std::string signal_text(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  std::string text = "signal " + std::to_string(sig);
  if (abbrev != nullptr) text += std::string(" (SIG") + abbrev + ")";
  return text;
}

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

}  // namespace

namespace runtime_detail {

std::string errno_text(int err) {
  return std::error_code(err, std::system_category()).message();
}

Error config_error(std::string message) {
  return Error::classified_as(ErrorType::configuration_error, Severity::high, std::move(message));
}

Error os_error(int err, const std::string& what) {
  return Error::from_code(std::error_code(err, std::system_category()),
                          what + ": " + errno_text(err));
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

int max_fd_to_close() {
  const long limit = ::sysconf(_SC_OPEN_MAX);
  if (limit <= 0) return 1024;
  return static_cast<int>(std::min<long>(limit, 1 << 16));
}

}  // namespace runtime_detail

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

}  // namespace mend
