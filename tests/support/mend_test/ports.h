// Loopback ports that misbehave on purpose, for tests of what mend does with agents and daemons
// it cannot reach: RefusingPort refuses every connection, SilentPort accepts (into the kernel's
// backlog) and never answers. Each holds its port while it lives, so nothing else takes it.
// Thread-safety: url() may be read from any thread.
#ifndef MEND_TESTS_SUPPORT_PORTS_H_
#define MEND_TESTS_SUPPORT_PORTS_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace mend::testing {

// A socket listening on a free loopback port, for servers a test writes by hand; fd is -1 (and
// port 0) when none could be had.
struct LoopbackListener {
  int fd = -1;
  unsigned short port = 0;
};
inline LoopbackListener listen_on_loopback(int backlog) {
  LoopbackListener l;
  l.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (l.fd < 0 || ::bind(l.fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(l.fd, backlog) != 0 ||
      ::getsockname(l.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (l.fd >= 0) ::close(l.fd);
    return {};
  }
  l.port = ntohs(addr.sin_port);
  return l;
}

// A port that refuses connections: bound, never listening.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      if (fd_ >= 0) ::close(fd_);
      throw std::runtime_error("cannot bind a loopback port");
    }
    socklen_t length = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &length);
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 protected:
  int fd_ = -1;
  int port_ = 0;
};

// A port that takes connections (the kernel's backlog) and never answers.
class SilentPort : public RefusingPort {
 public:
  SilentPort() { ::listen(fd_, 16); }
};

}  // namespace mend::testing

#endif  // MEND_TESTS_SUPPORT_PORTS_H_
