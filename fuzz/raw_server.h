// For the fuzz targets that play a server: a loopback TCP server on a thread of its own that
// answers every connection with the bytes it is given (the fuzz input) and closes it.
#ifndef MEND_FUZZ_RAW_SERVER_H_
#define MEND_FUZZ_RAW_SERVER_H_

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "mend_test/ports.h"

namespace mend::fuzzing {

class RawServer {
 public:
  RawServer() {
    const mend::testing::LoopbackListener listener = mend::testing::listen_on_loopback(64);
    fd_ = listener.fd;
    if (fd_ < 0) __builtin_trap();
    port_ = listener.port;
    thread_ = std::thread([this] { serve(); });
  }
  ~RawServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void answer_with(std::string bytes) {
    std::lock_guard lock(mu_);
    answer_ = std::move(bytes);
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      // The request's header, then the answer, whatever the request was.
      std::string request;
      char chunk[4096];
      while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
        pollfd c{client, POLLIN, 0};
        if (::poll(&c, 1, 200) <= 0) break;
        const ssize_t n = ::recv(client, chunk, sizeof chunk, 0);
        if (n <= 0) break;
        request.append(chunk, static_cast<std::size_t>(n));
      }
      std::string answer;
      {
        std::lock_guard lock(mu_);
        answer = answer_;
      }
      std::size_t sent = 0;
      while (sent < answer.size()) {
        const ssize_t n = ::send(client, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
      }
      ::shutdown(client, SHUT_WR);
      ::close(client);
    }
  }

  int fd_ = -1;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string answer_;
  std::thread thread_;
};

}  // namespace mend::fuzzing

#endif  // MEND_FUZZ_RAW_SERVER_H_
