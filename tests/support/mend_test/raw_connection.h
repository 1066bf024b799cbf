// Test support: a blocking TCP client with deadlines, for playing a misbehaving client and reading
// the bytes on the wire exactly as a server wrote them.
//
//   RawConnection raw(server.port());
//   ASSERT_TRUE(raw.send_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
//   EXPECT_THAT(raw.read("\r\n\r\n"), StartsWith("HTTP/1.1 200"));
#ifndef MEND_TESTS_SUPPORT_RAW_CONNECTION_H_
#define MEND_TESTS_SUPPORT_RAW_CONNECTION_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>

namespace mend::testing {

class RawConnection {
 public:
  // Connects to 127.0.0.1:port, from `from` (another loopback address, "127.0.0.2", plays another
  // client; empty: the system's choice); connected() says whether that worked.
  explicit RawConnection(unsigned short port, const char* from = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ >= 0 && *from != '\0') {
      sockaddr_in source{};
      source.sin_family = AF_INET;
      if (::inet_pton(AF_INET, from, &source.sin_addr) != 1 ||
          ::bind(fd_, reinterpret_cast<sockaddr*>(&source), sizeof source) != 0) {
        return;
      }
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConnection() { close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send_all(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Reads until `until` appears, the peer closes (then peer_closed() is true), or `limit` passes.
  std::string read(std::string_view until = {},
                   std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      if (!until.empty() && out.find(until) != std::string::npos) return out;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return out;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out;
      char chunk[4096];
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) {
        peer_closed_ = true;
        return out;
      }
      out.append(chunk, static_cast<std::size_t>(n));
    }
  }
  bool peer_closed() const { return peer_closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool peer_closed_ = false;
};

}  // namespace mend::testing

#endif  // MEND_TESTS_SUPPORT_RAW_CONNECTION_H_
