// Internal to mend::runtime: the POSIX side of ProcessSupervisor (mend/runtime/supervisor.h) that
// its files share: owned file descriptors, command lookup, wait statuses and the errors they end
// in. process_spawn.cc defines these, and ProcessSupervisor::Impl::spawn_locked(), which forks and
// execs a child with them.
#ifndef MEND_SRC_RUNTIME_PROCESS_SPAWN_H_
#define MEND_SRC_RUNTIME_PROCESS_SPAWN_H_

#include <unistd.h>

#include <string>
#include <utility>

#include "mend/core/result.h"

namespace mend::runtime_detail {

std::string errno_text(int err);

// A process spec that cannot run (bad command, environment, working directory).
Error config_error(std::string message);

// A failed system call: `what`, then the errno's text; the errno as the error's code.
Error os_error(int err, const std::string& what);

// "exited with status 1", "killed by signal 9 (SIGKILL)": a waitpid() status as last_exit says it.
std::string describe_wait_status(int status);

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

// The file execvp would run for `command` in a child whose working directory is `working_dir`
// and whose PATH is `path`.
Result<std::string> resolve_command(const std::string& command, const std::string& working_dir,
                                    const std::string& path);

// The descriptors a child closes before exec when close_range() is not available: those below it.
int max_fd_to_close();

}  // namespace mend::runtime_detail

#endif  // MEND_SRC_RUNTIME_PROCESS_SPAWN_H_
