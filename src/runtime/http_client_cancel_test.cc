// HttpClient::request() with a CallCancel (mend/runtime/call_cancel.h), over real loopback
// sockets: a server that holds the request sees its connection closed the moment the call is
// cancelled, the call ends at once with the cancelled error, and nothing is pooled. Every wait is
// bounded; nothing sleeps.
#include <boost/asio/detached.hpp>

#include "http_client_test_support.h"
#include "mend_test/ports.h"

namespace mend {
namespace {

using namespace mend::http_test;  // NOLINT: the tests' shared pieces
namespace net = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Accepts connections and reads their requests, never answering (or answering `answer` when one
// is set, keeping the connection open); tells when a request arrived and when its connection
// closed.
class HoldingServer {
 public:
  explicit HoldingServer(std::string answer = {}) : answer_(std::move(answer)) {
    const mend::testing::LoopbackListener listener = mend::testing::listen_on_loopback(4);
    fd_ = listener.fd;
    if (fd_ < 0) return;
    port_ = listener.port;
    thread_ = std::thread([this] { serve(); });
  }
  ~HoldingServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  HoldingServer(const HoldingServer&) = delete;
  HoldingServer& operator=(const HoldingServer&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/task"; }
  std::future<void> request_arrived() { return arrived_.get_future(); }
  std::future<void> connection_closed() { return closed_.get_future(); }
  int accepted() const { return accepted_.load(); }

 private:
  // Bounded: every poll wakes up to see whether the test is over.
  bool wait_readable(int fd) {
    for (;;) {
      if (stop_) return false;
      pollfd p{fd, POLLIN, 0};
      const int n = ::poll(&p, 1, 50);
      if (n > 0) return true;
      if (n < 0) return false;
    }
  }
  void serve() {
    if (!wait_readable(fd_)) return;
    const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    ++accepted_;
    std::string request;
    char chunk[4096];
    bool arrived = false;
    while (wait_readable(client)) {
      const ssize_t n = ::recv(client, chunk, sizeof chunk, 0);
      if (n <= 0) {  // the client closed its end (or reset it)
        closed_.set_value();
        break;
      }
      request.append(chunk, static_cast<std::size_t>(n));
      if (!arrived && request.find("\r\n\r\n") != std::string::npos) {
        arrived = true;
        if (!answer_.empty()) {
          (void)::send(client, answer_.data(), answer_.size(), MSG_NOSIGNAL);
        }
        arrived_.set_value();
      }
    }
    ::close(client);
  }

  std::string answer_;
  int fd_ = -1;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::promise<void> arrived_;
  std::promise<void> closed_;
  std::thread thread_;
};

std::future<Result<HttpResponse>> start_request(ClientLoop& loop, HttpClient& client,
                                                const std::string& url,
                                                std::shared_ptr<CallCancel> cancel) {
  auto done = std::make_shared<std::promise<Result<HttpResponse>>>();
  std::future<Result<HttpResponse>> f = done->get_future();
  net::co_spawn(
      loop.executor(),
      [&client, url, cancel, done]() -> net::awaitable<void> {
        // Named, not a temporary next to co_await: GCC 12 destroys such temporaries twice.
        auto call = client.request("POST", url, {}, R"({"id":"t"})", seconds(30), cancel);
        done->set_value(co_await std::move(call));
      },
      net::detached);
  return f;
}

TEST(HttpClientCancel, ACancelledCallClosesItsConnectionAndEndsAtOnce) {
  HoldingServer server;
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto cancel = std::make_shared<CallCancel>();
  std::future<void> arrived = server.request_arrived();
  std::future<void> closed = server.connection_closed();
  std::future<Result<HttpResponse>> call = start_request(loop, client, server.url(), cancel);
  ASSERT_EQ(arrived.wait_for(seconds(10)), std::future_status::ready);
  EXPECT_EQ(call.wait_for(milliseconds(0)), std::future_status::timeout);  // held

  cancel->cancel();
  // Promptly: the call's own timeout is 30 s.
  ASSERT_EQ(call.wait_for(seconds(10)), std::future_status::ready);
  Result<HttpResponse> r = call.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "cancelled");
  EXPECT_EQ(r.error().stop, StopReason::cancelled);
  EXPECT_EQ(r.error().code, std::make_error_code(std::errc::operation_canceled));
  EXPECT_THAT(r.error().message, ::testing::HasSubstr("was cancelled"));
  ASSERT_EQ(closed.wait_for(seconds(10)), std::future_status::ready);  // the server saw the close
  EXPECT_EQ(client.idle_connections(), 0u);
  EXPECT_TRUE(cancel->cancelled());
}

TEST(HttpClientCancel, ACallCancelledBeforeItStartsFailsWithoutAConnection) {
  HoldingServer server;
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto cancel = std::make_shared<CallCancel>();
  cancel->cancel();
  std::future<Result<HttpResponse>> call = start_request(loop, client, server.url(), cancel);
  ASSERT_EQ(call.wait_for(seconds(10)), std::future_status::ready);
  Result<HttpResponse> r = call.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "cancelled");
  EXPECT_EQ(server.accepted(), 0);
  EXPECT_EQ(client.idle_connections(), 0u);
}

TEST(HttpClientCancel, AnAnsweredCallWhoseHandleWasNotCancelledIsPooledAsEver) {
  HoldingServer server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto cancel = std::make_shared<CallCancel>();
  std::future<Result<HttpResponse>> call = start_request(loop, client, server.url(), cancel);
  ASSERT_EQ(call.wait_for(seconds(10)), std::future_status::ready);
  Result<HttpResponse> r = call.get();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->body, "ok");
  EXPECT_EQ(client.idle_connections(), 1u);
  // A cancel after the call's end touches nothing: the pooled connection stays.
  cancel->cancel();
  EXPECT_EQ(client.idle_connections(), 1u);
}

TEST(CallCancel, RunsItsHookOnceAndRefusesHooksOnceCancelled) {
  CallCancel cancel;
  int runs = 0;
  EXPECT_TRUE(cancel.set_hook([&] { ++runs; }));
  EXPECT_TRUE(cancel.clear_hook());  // the call ended first: the hook is dropped
  cancel.cancel();
  EXPECT_EQ(runs, 0);
  CallCancel second;
  EXPECT_TRUE(second.set_hook([&] { ++runs; }));
  second.cancel();
  second.cancel();
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(second.set_hook([&] { ++runs; }));
  EXPECT_FALSE(second.clear_hook());
  EXPECT_EQ(runs, 1);
}

}  // namespace
}  // namespace mend
