// What the HttpClient tests share (http_client_test.cc, http_client_stream_test.cc): an echoing
// handler, the HTTPS fixture with its generated certificates, and the pieces that drive a
// streamed answer from the test (an inbox of responders, a paced sender, a one-answer raw server,
// a log of what the client handed over).
#ifndef MEND_SRC_RUNTIME_HTTP_CLIENT_TEST_SUPPORT_H_
#define MEND_SRC_RUNTIME_HTTP_CLIENT_TEST_SUPPORT_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mend/core/classifier.h"
#include "mend/runtime/http_client.h"
#include "mend/runtime/http_server.h"
#include "mend_test/eventually.h"
#include "mend_test/io_loop.h"
#include "mend_test/ports.h"
#include "mend_test/raw_connection.h"
#include "test_tls.h"

namespace mend::http_test {

namespace net = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ClientLoop = mend::testing::IoLoop;
using mend::testing::RawConnection;

// Answers with what it received: method, target and the X-Test header in headers, the body as
// the body. "/status/N" answers status N.
inline HttpResponse echo(const HttpRequest& request) {
  HttpResponse response;
  if (request.target.rfind("/status/", 0) == 0)
    response.status = std::stoi(request.target.substr(8));
  response.headers = {{"X-Method", request.method},
                      {"X-Target", request.target},
                      {"X-Test-Echo", request.header("x-test")},
                      {"Content-Type", "text/plain"}};
  response.body = request.body;
  return response;
}

class Https : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = testing::TestCertificates::generate().release(); }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  static HttpServerOptions tls_options() {
    HttpServerOptions options;
    options.tls_cert_pem = certs_->cert_pem;
    options.tls_key_pem = certs_->key_pem;
    return options;
  }
  inline static testing::TestCertificates* certs_ = nullptr;
};

// Where an asynchronous handler leaves the responders of streamed requests, for the test to drive.
class ResponderInbox {
 public:
  HttpServer::AsyncHandler handler() {
    return [this](HttpRequest, std::shared_ptr<HttpResponder> responder) {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(responder));
      cv_.notify_all();
    };
  }
  // The next responder, or nullptr after 5 s.
  std::shared_ptr<HttpResponder> take() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, seconds(5), [&] { return !queue_.empty(); })) return nullptr;
    auto r = std::move(queue_.front());
    queue_.pop_front();
    return r;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<HttpResponder>> queue_;
};

// Sends `piece` on a stream every `interval` until the stream is gone or the object is.
class PacedSender {
 public:
  PacedSender(std::shared_ptr<HttpResponder> responder, std::string piece, milliseconds interval)
      : thread_([this, responder = std::move(responder), piece = std::move(piece), interval] {
          while (!stop_.load() && responder->send(piece)) std::this_thread::sleep_for(interval);
        }) {}
  ~PacedSender() {
    stop_ = true;
    thread_.join();
  }
  PacedSender(const PacedSender&) = delete;
  PacedSender& operator=(const PacedSender&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Answers one connection with fixed bytes (after the request's header), then closes it: a server
// that misbehaves exactly so.
class OneAnswerServer {
 public:
  explicit OneAnswerServer(std::string answer) : answer_(std::move(answer)) {
    const mend::testing::LoopbackListener listener = mend::testing::listen_on_loopback(4);
    fd_ = listener.fd;
    if (fd_ < 0) return;
    port_ = listener.port;
    thread_ = std::thread([this] { serve(); });
  }
  ~OneAnswerServer() {
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  OneAnswerServer(const OneAnswerServer&) = delete;
  OneAnswerServer& operator=(const OneAnswerServer&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/stream"; }

 private:
  void serve() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return;  // bounded: a test that never connects still ends
    const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    std::string request;
    char chunk[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      pollfd c{client, POLLIN, 0};
      if (::poll(&c, 1, 5000) <= 0) break;
      const ssize_t n = ::recv(client, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      request.append(chunk, static_cast<std::size_t>(n));
    }
    std::string_view rest = answer_;
    while (!rest.empty()) {
      const ssize_t n = ::send(client, rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    ::shutdown(client, SHUT_WR);  // a clean close (FIN), not a reset
    ::close(client);
  }

  std::string answer_;
  int fd_ = -1;
  unsigned short port_ = 0;
  std::thread thread_;
};

// What a stream's handlers were given, from the client's threads; `stop_after` pieces (0: none)
// make on_body say stop.
class StreamLog {
 public:
  explicit StreamLog(std::size_t stop_after = 0) : stop_after_(stop_after) {}
  HttpStreamHandlers handlers() {
    HttpStreamHandlers h;
    h.on_head = [this](const HttpResponse& head) {
      std::lock_guard<std::mutex> lock(mu_);
      ++heads_;
      status_ = head.status;
      content_type_ = head.header("Content-Type");
      return true;
    };
    h.on_body = [this](std::string_view piece) {
      std::lock_guard<std::mutex> lock(mu_);
      pieces_.emplace_back(piece);
      return stop_after_ == 0 || pieces_.size() < stop_after_;
    };
    return h;
  }
  int heads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return heads_;
  }
  int status() const {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  std::string content_type() const {
    std::lock_guard<std::mutex> lock(mu_);
    return content_type_;
  }
  std::vector<std::string> pieces() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pieces_;
  }
  std::string body() const {
    std::string all;
    for (const std::string& p : pieces()) all += p;
    return all;
  }

 private:
  const std::size_t stop_after_;
  mutable std::mutex mu_;
  int heads_ = 0;
  int status_ = 0;
  std::string content_type_;
  std::vector<std::string> pieces_;
};

}  // namespace mend::http_test

#endif  // MEND_SRC_RUNTIME_HTTP_CLIENT_TEST_SUPPORT_H_
