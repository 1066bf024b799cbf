// Tests of HttpServer's asynchronous handler: answers given later from other threads, streams,
// clients that leave or do not read, abort(), and stop() with answers still pending. Over real
// loopback sockets, with mend::HttpClient or a raw socket where the bytes on the wire matter.
// Every wait is bounded.
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
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "mend/runtime/http_client.h"
#include "mend/runtime/http_server.h"
#include "mend_test/eventually.h"
#include "mend_test/io_loop.h"
#include "mend_test/raw_connection.h"
#include "test_tls.h"

namespace mend {
namespace {

namespace net = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

using ClientLoop = mend::testing::IoLoop;
using mend::testing::eventually;
using mend::testing::RawConnection;

// Where the handler leaves its responders for the test to take, from any thread.
class Responders {
 public:
  void put(std::shared_ptr<HttpResponder> responder) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(responder));
    cv_.notify_all();
  }
  // The next responder, or nullptr after 5 s.
  std::shared_ptr<HttpResponder> take() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, seconds(5), [&] { return !queue_.empty(); })) return nullptr;
    auto r = std::move(queue_.front());
    queue_.pop_front();
    return r;
  }
  HttpServer::AsyncHandler handler() {
    return [this](HttpRequest, std::shared_ptr<HttpResponder> responder) {
      put(std::move(responder));
    };
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<HttpResponder>> queue_;
};

// Decodes a chunked body ("5\r\nhello\r\n0\r\n\r\n"); false when the framing is wrong or the
// last chunk is missing.
bool decode_chunked(std::string_view wire, std::string* body) {
  body->clear();
  for (;;) {
    std::size_t line_end = wire.find("\r\n");
    if (line_end == std::string_view::npos) return false;
    std::size_t size = std::stoul(std::string(wire.substr(0, line_end)), nullptr, 16);
    wire.remove_prefix(line_end + 2);
    if (size == 0) return wire == "\r\n";
    if (wire.size() < size + 2 || wire.substr(size, 2) != "\r\n") return false;
    body->append(wire.substr(0, size));
    wire.remove_prefix(size + 2);
  }
}

HttpResponse json_ok(std::string body) {
  return HttpResponse{200, {{"Content-Type", "application/json"}}, std::move(body)};
}

// --- Answers
// --------------------------------------------------------------------------------------

TEST(HttpServerAsync, AnswersLaterFromAnotherThread) {
  HttpServerOptions options;
  options.read_timeout = milliseconds(100);  // does not run while the answer is awaited
  std::vector<std::thread> workers;
  std::mutex workers_mu;
  HttpServer server(options, [&](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
    EXPECT_EQ(responder->target(), "POST /task");
    EXPECT_FALSE(responder->closed());
    std::lock_guard<std::mutex> lock(workers_mu);
    workers.emplace_back([request = std::move(request), responder] {
      std::this_thread::sleep_for(milliseconds(300));
      responder->respond(json_ok(R"({"echo":)" + request.body + "}"));
      responder->respond(json_ok("second answers are ignored"));
    });
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto start = SteadyClock::now();
  auto r = client.request_sync("POST", server.base_url() + "/task", {}, "[1,2]", seconds(5));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_GE(SteadyClock::now() - start, milliseconds(290));
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("Content-Type"), "application/json");
  EXPECT_EQ(r->body, R"({"echo":[1,2]})");
  EXPECT_EQ(server.requests_served(), 1u);
  std::vector<std::thread> started;
  {
    std::lock_guard<std::mutex> lock(workers_mu);
    started.swap(workers);
  }
  for (std::thread& t : started) t.join();
}

TEST(HttpServerAsync, KeepAliveCarriesOnAfterAnAsyncAnswer) {
  std::atomic<int> calls{0};
  HttpServer server({}, [&](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
    ++calls;
    std::thread([request = std::move(request), responder] {
      responder->respond(HttpResponse{200, {}, request.target});
    }).detach();
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  for (std::string path : {"/1", "/2", "/3"}) {
    auto r = client.request_sync("GET", server.base_url() + path);
    ASSERT_TRUE(r.ok()) << r.error().describe();
    EXPECT_EQ(r->body, path);
  }
  EXPECT_EQ(server.connections_accepted(), 1u);
  EXPECT_EQ(calls.load(), 3);

  // Pipelined: the second request arrives while the first waits for its answer; it is kept and
  // answered after the first, in order, on the same connection.
  RawConnection raw(server.port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.send_all("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string wire = raw.read("/b");
  std::size_t a = wire.find("\r\n\r\n/a");
  std::size_t b = wire.find("\r\n\r\n/b");
  ASSERT_NE(a, std::string::npos) << wire;
  ASSERT_NE(b, std::string::npos) << wire;
  EXPECT_LT(a, b);
  EXPECT_EQ(server.connections_accepted(), 2u);
}

TEST(HttpServerAsync, ADroppedResponderIsAnswered500) {
  HttpServer server({}, [](HttpRequest, std::shared_ptr<HttpResponder>) {});
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto r = client.request_sync("GET", server.base_url() + "/");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 500);
  auto body = nlohmann::json::parse(r->body);
  EXPECT_EQ(body["error"]["type"], "processing_failed");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("dropped its responder"),
            std::string::npos);
  // The connection stays usable.
  ASSERT_TRUE(client.request_sync("GET", server.base_url() + "/").ok());
  EXPECT_EQ(server.connections_accepted(), 1u);
}

TEST(HttpServerAsync, AHandlerThatThrowsIsAnswered500AndAnInvalidAnswerToo) {
  HttpServer server({}, [](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
    if (request.target == "/throw") throw std::runtime_error("no such queue");
    if (request.target == "/bad-status") return responder->respond(HttpResponse{42, {}, ""});
    // A stream that cannot start: 204 has no body.
    EXPECT_FALSE(responder->start_stream(204, {}));
    EXPECT_FALSE(responder->send("x"));
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto thrown = client.request_sync("GET", server.base_url() + "/throw");
  ASSERT_TRUE(thrown.ok()) << thrown.error().describe();
  EXPECT_EQ(thrown->status, 500);
  EXPECT_EQ(nlohmann::json::parse(thrown->body)["error"]["message"], "no such queue");
  auto bad = client.request_sync("GET", server.base_url() + "/bad-status");
  ASSERT_TRUE(bad.ok()) << bad.error().describe();
  EXPECT_EQ(bad->status, 500);
  EXPECT_NE(bad->body.find("invalid status 42"), std::string::npos) << bad->body;
  auto stream = client.request_sync("GET", server.base_url() + "/stream");
  ASSERT_TRUE(stream.ok()) << stream.error().describe();
  EXPECT_EQ(stream->status, 500);
  EXPECT_NE(stream->body.find("invalid status 204"), std::string::npos) << stream->body;
}

TEST(HttpServerAsync, HeadGetsTheLengthAndNoBody) {
  HttpServer server({}, [](HttpRequest, std::shared_ptr<HttpResponder> responder) {
    responder->respond(HttpResponse{200, {}, "hello"});
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto head = client.request_sync("HEAD", server.base_url() + "/");
  ASSERT_TRUE(head.ok()) << head.error().describe();
  EXPECT_EQ(head->header("Content-Length"), "5");
  EXPECT_EQ(head->body, "");
  auto get = client.request_sync("GET", server.base_url() + "/");
  ASSERT_TRUE(get.ok()) << get.error().describe();
  EXPECT_EQ(get->body, "hello");
  EXPECT_EQ(server.connections_accepted(), 1u);
}

TEST(HttpServerAsync, ManyPendingRequestsAnsweredFromAThreadPool) {
  constexpr int kRequests = 200;
  HttpServerOptions options;
  options.threads = 2;
  Responders responders;
  HttpServer server(options, responders.handler());
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop(2);
  HttpClient client(loop.executor());
  std::vector<std::future<bool>> done;
  for (int i = 0; i < kRequests; ++i) {
    done.push_back(net::co_spawn(
        loop.executor(),
        [&client, &server, i]() -> net::awaitable<bool> {
          std::string path = "/t/" + std::to_string(i);
          auto r = co_await client.request("POST", server.base_url() + path, {}, "", seconds(20));
          co_return r.ok() && r->status == 200 && r->body == "POST " + path;
        },
        net::use_future));
  }
  // Every request is pending before any is answered: 200 connections wait, no thread held.
  std::vector<std::shared_ptr<HttpResponder>> pending;
  for (int i = 0; i < kRequests; ++i) {
    auto r = responders.take();
    ASSERT_NE(r, nullptr) << "only " << i << " requests reached the handler";
    pending.push_back(std::move(r));
  }
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t) {
    pool.emplace_back([&] {
      for (std::size_t i; (i = next.fetch_add(1)) < pending.size();) {
        pending[i]->respond(HttpResponse{200, {}, pending[i]->target()});
      }
    });
  }
  for (std::thread& t : pool) t.join();
  int ok = 0;
  for (auto& f : done) {
    ASSERT_EQ(f.wait_for(seconds(20)), std::future_status::ready);
    ok += f.get() ? 1 : 0;
  }
  EXPECT_EQ(ok, kRequests);
  EXPECT_EQ(server.requests_served(), static_cast<std::size_t>(kRequests));
}

TEST(HttpServerAsync, WorksOverTls) {
  auto certs = testing::TestCertificates::generate();
  HttpServerOptions options;
  options.tls_cert_pem = certs->cert_pem;
  options.tls_key_pem = certs->key_pem;
  HttpServer server(options, [](HttpRequest request, std::shared_ptr<HttpResponder> responder) {
    std::thread([request = std::move(request), responder] {
      std::this_thread::sleep_for(milliseconds(50));
      responder->respond(HttpResponse{200, {}, request.body});
    }).detach();
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClientOptions client_options;
  client_options.ca_file = certs->ca_file;
  HttpClient client(loop.executor(), client_options);
  for (std::string body : {"one", "two"}) {
    auto r = client.request_sync("POST", server.base_url() + "/", {}, body);
    ASSERT_TRUE(r.ok()) << r.error().describe();
    EXPECT_EQ(r->body, body);
  }
  EXPECT_EQ(server.connections_accepted(), 1u);
}

// --- Streams
// --------------------------------------------------------------------------------------

TEST(HttpServerAsync, StreamsThreeServerSentEventsInChunks) {
  Responders responders;
  HttpServer server({}, responders.handler());
  ASSERT_TRUE(server.start().ok());
  RawConnection raw(server.port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.send_all("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto responder = responders.take();
  ASSERT_NE(responder, nullptr);
  ASSERT_TRUE(responder->start_stream(
      200, {{"Content-Type", "text/event-stream"}, {"Content-Length", "99"}}));
  EXPECT_FALSE(responder->start_stream(200, {}));  // once only
  std::string header = raw.read("\r\n\r\n");
  EXPECT_EQ(header.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << header;
  EXPECT_NE(header.find("Content-Type: text/event-stream\r\n"), std::string::npos) << header;
  EXPECT_NE(header.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << header;
  EXPECT_NE(header.find("Connection: close\r\n"), std::string::npos) << header;
  EXPECT_EQ(header.find("Content-Length"), std::string::npos) << header;  // framing is ours

  std::string expected;
  for (int i = 1; i <= 3; ++i) {
    std::string event =
        "id: " + std::to_string(i) + "\ndata: {\"n\":" + std::to_string(i) + "}\n\n";
    expected += event;
    EXPECT_TRUE(responder->send(event));
    // Each event reaches the client as it is sent, not at the end.
    std::string got = raw.read(event);
    EXPECT_NE(got.find(event), std::string::npos) << got;
    header += got;
  }
  EXPECT_FALSE(responder->closed());
  responder->end_stream();
  EXPECT_FALSE(responder->send("late"));
  header += raw.read();  // to the close
  EXPECT_TRUE(raw.peer_closed());
  std::string body;
  ASSERT_TRUE(decode_chunked(header.substr(header.find("\r\n\r\n") + 4), &body)) << header;
  EXPECT_EQ(body, expected);
  EXPECT_TRUE(eventually([&] { return responder->closed(); }));
}

TEST(HttpServerAsync, AStreamIsReadWholeByHttpClient) {
  HttpServer server({}, [](HttpRequest, std::shared_ptr<HttpResponder> responder) {
    responder->start_stream(200, {{"Content-Type", "text/plain"}});
    std::thread([responder] {
      for (const char* piece : {"one ", "two ", "three"}) {
        responder->send(piece);
        std::this_thread::sleep_for(milliseconds(10));
      }
      // Dropping the responder ends the stream.
    }).detach();
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto r = client.request_sync("GET", server.base_url() + "/");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "one two three");
  auto head = client.request_sync("HEAD", server.base_url() + "/");
  ASSERT_TRUE(head.ok()) << head.error().describe();
  EXPECT_EQ(head->body, "");
}

TEST(HttpServerAsync, AStreamToAnHttp10ClientRunsToTheClose) {
  Responders responders;
  HttpServer server({}, responders.handler());
  ASSERT_TRUE(server.start().ok());
  RawConnection raw(server.port());
  ASSERT_TRUE(raw.send_all("GET /events HTTP/1.0\r\n\r\n"));
  auto responder = responders.take();
  ASSERT_NE(responder, nullptr);
  ASSERT_TRUE(responder->start_stream(200, {}));
  EXPECT_TRUE(responder->send("abc"));
  EXPECT_TRUE(responder->send("def"));
  responder->end_stream();
  std::string wire = raw.read();
  EXPECT_TRUE(raw.peer_closed());
  EXPECT_EQ(wire.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << wire;
  EXPECT_EQ(wire.find("chunked"), std::string::npos) << wire;
  EXPECT_EQ(wire.substr(wire.find("\r\n\r\n") + 4), "abcdef");
}

TEST(HttpServerAsync, AClientThatLeavesClosesItsResponder) {
  Responders responders;
  HttpServer server({}, responders.handler());
  ASSERT_TRUE(server.start().ok());

  // Streaming.
  RawConnection streamed(server.port());
  ASSERT_TRUE(streamed.send_all("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto stream = responders.take();
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(stream->start_stream(200, {{"Content-Type", "text/event-stream"}}));
  ASSERT_TRUE(stream->send("data: 1\n\n"));
  ASSERT_NE(streamed.read("data: 1").find("data: 1"), std::string::npos);
  streamed.close();
  EXPECT_TRUE(eventually([&] { return stream->closed(); }));
  EXPECT_FALSE(stream->send("data: 2\n\n"));

  // Waiting for its answer.
  RawConnection waiting(server.port());
  ASSERT_TRUE(waiting.send_all("POST /task HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"));
  auto pending = responders.take();
  ASSERT_NE(pending, nullptr);
  EXPECT_FALSE(pending->closed());
  waiting.close();
  EXPECT_TRUE(eventually([&] { return pending->closed(); }));
  pending->respond(HttpResponse{200, {}, "nobody listens"});  // does nothing
  EXPECT_EQ(server.requests_served(), 1u);                    // the stream only
}

TEST(HttpServerAsync, AClientThatDoesNotReadEndsItsStreamPastOneMiB) {
  Responders responders;
  HttpServer server({}, responders.handler());
  ASSERT_TRUE(server.start().ok());
  const std::string piece(64 * 1024, 'x');

  // A client that reads keeps up with a paced stream: nothing is refused.
  RawConnection reader(server.port());
  ASSERT_TRUE(reader.send_all("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto followed = responders.take();
  ASSERT_NE(followed, nullptr);
  ASSERT_TRUE(followed->start_stream(200, {}));
  std::size_t received = 0;
  std::thread read_all([&] {
    while (!reader.peer_closed()) received += reader.read({}, milliseconds(5000)).size();
  });
  for (int i = 0; i < 64; ++i) {  // 4 MiB
    EXPECT_TRUE(followed->send(piece)) << "refused at piece " << i;
    std::this_thread::sleep_for(milliseconds(2));
  }
  followed->end_stream();
  read_all.join();
  EXPECT_GT(received, std::size_t{4} << 20);

  // One that never reads: the kernel's socket buffers fill first, then 1 MiB waits in the
  // server, and the stream is ended.
  RawConnection raw(server.port());
  ASSERT_TRUE(raw.send_all("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto responder = responders.take();
  ASSERT_NE(responder, nullptr);
  ASSERT_TRUE(responder->start_stream(200, {}));
  std::size_t accepted = 0;
  auto deadline = SteadyClock::now() + seconds(10);
  while (SteadyClock::now() < deadline && responder->send(piece)) {
    accepted += piece.size();
    ASSERT_LT(accepted, std::size_t{512} << 20) << "send() never refused";
    std::this_thread::sleep_for(milliseconds(1));  // lets the server fill the socket first
  }
  EXPECT_GT(accepted, std::size_t{1} << 20);
  EXPECT_LT(SteadyClock::now(), deadline);
  EXPECT_FALSE(responder->send("x"));
  EXPECT_TRUE(eventually([&] { return responder->closed(); }));
  RecordProperty("accepted_bytes", std::to_string(accepted));
}

TEST(HttpServerAsync, AbortClosesTheConnectionWithoutAnAnswer) {
  std::atomic<int> calls{0};
  std::atomic<int> closed_after_abort{0};
  std::mutex workers_mu;
  std::vector<std::thread> workers;
  HttpServer server({}, [&](HttpRequest, std::shared_ptr<HttpResponder> responder) {
    ++calls;
    std::lock_guard<std::mutex> lock(workers_mu);
    workers.emplace_back([&, responder] {
      std::this_thread::sleep_for(milliseconds(20));
      responder->abort();
      responder->respond(HttpResponse{200, {}, "too late"});
      if (eventually([&] { return responder->closed(); })) ++closed_after_abort;
    });
  });
  ASSERT_TRUE(server.start().ok());
  RawConnection raw(server.port());
  ASSERT_TRUE(raw.send_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(raw.read(), "");
  EXPECT_TRUE(raw.peer_closed());

  ClientLoop loop;
  HttpClient client(loop.executor());
  auto r = client.request_sync("GET", server.base_url() + "/", {}, {}, seconds(5));
  ASSERT_FALSE(r.ok()) << r->status;
  EXPECT_EQ(r.error().kind, "connect") << r.error().describe();
  EXPECT_EQ(server.requests_served(), 0u);
  EXPECT_EQ(calls.load(), 2);
  std::vector<std::thread> started;
  {
    std::lock_guard<std::mutex> lock(workers_mu);
    started.swap(workers);
  }
  for (std::thread& t : started) t.join();
  EXPECT_EQ(closed_after_abort.load(), 2);
}

// --- stop()
// ---------------------------------------------------------------------------------------

TEST(HttpServerAsync, StopClosesPendingAndStreamingConnectionsPromptly) {
  Responders responders;
  std::shared_ptr<HttpResponder> pending;
  std::shared_ptr<HttpResponder> stream;
  {
    HttpServer server({}, responders.handler());
    ASSERT_TRUE(server.start().ok());
    RawConnection waiting(server.port());
    ASSERT_TRUE(waiting.send_all("GET /task HTTP/1.1\r\nHost: x\r\n\r\n"));
    pending = responders.take();
    ASSERT_NE(pending, nullptr);
    RawConnection streamed(server.port());
    ASSERT_TRUE(streamed.send_all("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
    stream = responders.take();
    ASSERT_NE(stream, nullptr);
    ASSERT_TRUE(stream->start_stream(200, {}));
    ASSERT_TRUE(stream->send("data: 1\n\n"));
    ASSERT_NE(streamed.read("data: 1").find("data: 1"), std::string::npos);

    auto start = SteadyClock::now();
    server.stop();
    EXPECT_LT(SteadyClock::now() - start, seconds(2));
    EXPECT_TRUE(pending->closed());
    EXPECT_TRUE(stream->closed());
    pending->respond(HttpResponse{200, {}, "after stop"});
    EXPECT_FALSE(stream->send("data: 2\n\n"));
    EXPECT_EQ(waiting.read(), "");  // closed without an answer
    EXPECT_TRUE(waiting.peer_closed());
    streamed.read();
    EXPECT_TRUE(streamed.peer_closed());
  }
  // The responders outlive the server: their calls still do nothing.
  pending->respond(HttpResponse{200, {}, "after destruction"});
  EXPECT_FALSE(stream->send("data: 3\n\n"));
  stream->end_stream();
  stream->abort();
  EXPECT_TRUE(pending->closed());
  EXPECT_EQ(pending->target(), "GET /task");
}

TEST(HttpServerAsync, RespondersRacingStopAndDestructionAreSafe) {
  // Answers, streams and drops from other threads while the server stops and is destroyed; run
  // under TSan this shows the locking, and without it that nothing crashes or hangs.
  for (int round = 0; round < 5; ++round) {
    Responders responders;
    auto server = std::make_unique<HttpServer>(HttpServerOptions{}, responders.handler());
    ASSERT_TRUE(server->start().ok());
    std::vector<std::unique_ptr<RawConnection>> clients;
    std::vector<std::shared_ptr<HttpResponder>> taken;
    for (int i = 0; i < 6; ++i) {
      clients.push_back(std::make_unique<RawConnection>(server->port()));
      ASSERT_TRUE(clients.back()->send_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      auto r = responders.take();
      ASSERT_NE(r, nullptr);
      taken.push_back(std::move(r));
    }
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < 6; ++i) {
      threads.emplace_back([&, i, r = std::move(taken[static_cast<std::size_t>(i)])]() mutable {
        while (!go.load()) std::this_thread::yield();
        if (i % 3 == 0) r->respond(HttpResponse{200, {}, "ok"});
        if (i % 3 == 1 && r->start_stream(200, {})) {
          for (int n = 0; n < 50 && r->send("data: x\n\n"); ++n) {
          }
        }
        r.reset();  // i % 3 == 2: dropped
      });
    }
    go.store(true);
    auto start = SteadyClock::now();
    server.reset();
    EXPECT_LT(SteadyClock::now() - start, seconds(2));
    for (std::thread& t : threads) t.join();
  }
}

}  // namespace
}  // namespace mend
