// Tests of HttpClient's streaming call (request_stream) over real loopback sockets against
// servers the tests start: pieces in order as they arrive, stops, silence and deadlines, error
// answers, cut and broken streams, limits, TLS. Every wait is bounded.
#include "http_client_test_support.h"

namespace mend {
namespace {

using namespace mend::http_test;  // NOLINT: the tests' shared pieces
namespace net = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(HttpClientStream, HandsOverPiecesInOrderAsTheyArrive) {
  ResponderInbox inbox;
  HttpServer server({}, inbox.handler());
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  StreamLog log;
  HttpStreamLimits limits;
  limits.max_body_bytes = HttpStreamLimits::kUnlimited;
  limits.max_piece_bytes = 1024;
  std::future<HttpStreamResult> done = net::co_spawn(
      loop.executor(),
      client.request_stream("GET", server.base_url() + "/events", {{"Accept", "text/event-stream"}},
                            {}, log.handlers(), limits),
      net::use_future);

  std::shared_ptr<HttpResponder> stream = inbox.take();
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(stream->start_stream(200, {{"Content-Type", "text/event-stream"}}));
  ASSERT_TRUE(mend::testing::eventually([&] { return log.heads() == 1; }));
  EXPECT_EQ(log.status(), 200);
  EXPECT_EQ(log.content_type(), "text/event-stream");
  std::string sent;
  for (int i = 0; i < 3; ++i) {
    const std::string piece = "data: " + std::to_string(i) + "\n\n";
    ASSERT_TRUE(stream->send(piece));
    sent += piece;
    // Each piece is handed over while the stream goes on, not at its end.
    ASSERT_TRUE(mend::testing::eventually([&] { return log.body() == sent; })) << log.body();
    EXPECT_NE(done.wait_for(milliseconds(0)), std::future_status::ready);
  }
  // A piece larger than max_piece_bytes comes in pieces of at most that.
  const std::string big(5000, 'b');
  ASSERT_TRUE(stream->send(big));
  sent += big;
  stream->end_stream();

  ASSERT_EQ(done.wait_for(seconds(5)), std::future_status::ready);
  HttpStreamResult r = done.get();
  ASSERT_TRUE(r.ok()) << r.error->describe();
  EXPECT_EQ(r.end, HttpStreamEnd::complete);
  EXPECT_EQ(r.failure, HttpStreamFailure::none);
  EXPECT_EQ(log.body(), sent);
  for (const std::string& piece : log.pieces()) {
    EXPECT_FALSE(piece.empty());
    EXPECT_LE(piece.size(), 1024u);
  }
  EXPECT_GE(log.pieces().size(), 8u);  // 3, then 5000 bytes in pieces of 1024 at most
  EXPECT_EQ(log.heads(), 1);
  EXPECT_EQ(client.idle_connections(), 0u);  // a stream is Connection: close
}

TEST(HttpClientStream, AHandlerThatReturnsFalseStopsTheStream) {
  ResponderInbox inbox;
  HttpServer server({}, inbox.handler());
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  std::thread script([&] {
    std::shared_ptr<HttpResponder> stream = inbox.take();
    if (stream == nullptr || !stream->start_stream(200, {})) return;
    PacedSender endless(stream, "tick\n", milliseconds(5));
    // The client's leaving is seen by the server: the stream closes.
    mend::testing::eventually([&] { return stream->closed(); });
  });
  StreamLog log(/*stop_after=*/3);
  HttpStreamLimits limits;
  limits.max_body_bytes = HttpStreamLimits::kUnlimited;
  limits.deadline = seconds(10);
  const auto start = std::chrono::steady_clock::now();
  HttpStreamResult r = client.request_stream_sync("GET", server.base_url() + "/ticks", {}, {},
                                                  log.handlers(), limits);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
  script.join();
  ASSERT_TRUE(r.ok()) << r.error->describe();
  EXPECT_EQ(r.end, HttpStreamEnd::stopped);
  EXPECT_EQ(log.pieces().size(), 3u);
  EXPECT_EQ(client.idle_connections(), 0u);

  // Stopping at the head: the body is not read.
  HttpServer answering({}, [](const HttpRequest&) { return HttpResponse{403, {}, "no"}; });
  ASSERT_TRUE(answering.start().ok());
  HttpStreamHandlers at_head;
  bool body_called = false;
  at_head.on_head = [](const HttpResponse& head) { return head.status == 200; };
  at_head.on_body = [&](std::string_view) { return body_called = true; };
  HttpStreamResult refused =
      client.request_stream_sync("GET", answering.base_url() + "/", {}, {}, at_head);
  EXPECT_EQ(refused.end, HttpStreamEnd::stopped);
  EXPECT_FALSE(body_called);
}

TEST(HttpClientStream, ASilentStreamFailsAfterTheSilenceTimeout) {
  ResponderInbox inbox;
  HttpServer server({}, inbox.handler());
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  std::shared_ptr<HttpResponder> stream;
  std::thread script([&] {
    stream = inbox.take();
    if (stream != nullptr && stream->start_stream(200, {})) stream->send("one\n");
    // and then nothing
  });
  StreamLog log;
  HttpStreamLimits limits;
  limits.max_body_bytes = HttpStreamLimits::kUnlimited;
  limits.silence_timeout = milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  HttpStreamResult r = client.request_stream_sync("GET", server.base_url() + "/quiet", {}, {},
                                                  log.handlers(), limits);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  script.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.end, HttpStreamEnd::failed);
  EXPECT_EQ(r.failure, HttpStreamFailure::silence);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->kind, "timeout");
  EXPECT_EQ(r.error->code, std::errc::timed_out);
  EXPECT_NE(r.error->message.find("no data for 300 ms"), std::string::npos) << r.error->message;
  EXPECT_EQ(r.reason, "no data for 300 ms");
  EXPECT_EQ(log.body(), "one\n");
  EXPECT_GE(elapsed, milliseconds(290));
  EXPECT_LT(elapsed, seconds(3));
}

TEST(HttpClientStream, TheDeadlineEndsAStreamThatKeepsTalking) {
  ResponderInbox inbox;
  HttpServer server({}, inbox.handler());
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  std::thread script([&] {
    std::shared_ptr<HttpResponder> stream = inbox.take();
    if (stream == nullptr || !stream->start_stream(200, {})) return;
    PacedSender talker(stream, ": keep-alive\n", milliseconds(20));
    mend::testing::eventually([&] { return stream->closed(); });
  });
  StreamLog log;
  HttpStreamLimits limits;
  limits.max_body_bytes = HttpStreamLimits::kUnlimited;
  limits.deadline = milliseconds(400);
  limits.silence_timeout = milliseconds(300);  // never reached: a piece comes every 20 ms
  const auto start = std::chrono::steady_clock::now();
  HttpStreamResult r = client.request_stream_sync("GET", server.base_url() + "/talk", {}, {},
                                                  log.handlers(), limits);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  script.join();
  ASSERT_TRUE(r.ok()) << r.error->describe();
  EXPECT_EQ(r.end, HttpStreamEnd::deadline);
  EXPECT_GE(log.pieces().size(), 2u);
  EXPECT_GE(elapsed, milliseconds(390));
  EXPECT_LT(elapsed, seconds(3));

  // A deadline that passes before the head is a failure: no answer came.
  ResponderInbox mute_inbox;
  HttpServer mute({}, mute_inbox.handler());  // never answers
  ASSERT_TRUE(mute.start().ok());
  HttpStreamLimits short_limits;
  short_limits.deadline = milliseconds(200);
  HttpStreamResult early =
      client.request_stream_sync("GET", mute.base_url() + "/", {}, {}, {}, short_limits);
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.failure, HttpStreamFailure::head_timeout);
  EXPECT_EQ(early.error->kind, "timeout");
  EXPECT_NE(early.error->message.find("timed out after 200 ms"), std::string::npos)
      << early.error->message;
}

TEST(HttpClientStream, AnErrorStatusIsDeliveredWithItsBody) {
  const std::string body = R"({"error":{"type":"authentication_failed","message":"bad token"}})";
  HttpServer server({}, [&](const HttpRequest& request) {
    if (request.header("Authorization") == "Bearer good") return HttpResponse{200, {}, "ok"};
    return HttpResponse{401, {{"Content-Type", "application/json"}}, body};
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  StreamLog log;
  HttpStreamResult r =
      client.request_stream_sync("GET", server.base_url() + "/v1/events",
                                 {{"Authorization", "Bearer bad"}}, {}, log.handlers());
  ASSERT_TRUE(r.ok()) << r.error->describe();
  EXPECT_EQ(r.end, HttpStreamEnd::complete);
  EXPECT_EQ(log.status(), 401);
  EXPECT_EQ(log.content_type(), "application/json");
  EXPECT_EQ(log.body(), body);
  // Read to its end on a keep-alive connection: the connection is pooled, and used again.
  EXPECT_EQ(client.idle_connections(), 1u);
  auto again =
      client.request_sync("GET", server.base_url() + "/", {{"Authorization", "Bearer good"}});
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_EQ(again->body, "ok");
  EXPECT_EQ(server.connections_accepted(), 1u);
}

TEST(HttpClientStream, AStreamCutMidChunkIsAnErrorNotAnEnd) {
  OneAnswerServer cut(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
      "6\r\nhello\n\r\n8\r\nwor");
  ClientLoop loop;
  HttpClient client(loop.executor());
  StreamLog log;
  HttpStreamLimits limits;
  limits.max_body_bytes = HttpStreamLimits::kUnlimited;
  HttpStreamResult r = client.request_stream_sync("GET", cut.url(), {}, {}, log.handlers(), limits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure, HttpStreamFailure::cut_off);
  EXPECT_EQ(r.error->kind, "connect");
  EXPECT_EQ(r.error->code, std::errc::connection_reset);
  EXPECT_NE(r.error->message.find("before the end of the body"), std::string::npos)
      << r.error->message;
  EXPECT_EQ(log.body(), "hello\nwor");  // what came is handed over

  // Short of its Content-Length: cut off too.
  OneAnswerServer short_body("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  HttpStreamResult s = client.request_stream_sync("GET", short_body.url(), {}, {}, {}, limits);
  EXPECT_EQ(s.failure, HttpStreamFailure::cut_off);

  // A body that runs to the close ends cleanly there.
  OneAnswerServer to_close("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it");
  StreamLog whole;
  HttpStreamResult c =
      client.request_stream_sync("GET", to_close.url(), {}, {}, whole.handlers(), limits);
  ASSERT_TRUE(c.ok()) << c.error->describe();
  EXPECT_EQ(c.end, HttpStreamEnd::complete);
  EXPECT_EQ(whole.body(), "all of it");
}

TEST(HttpClientStream, BoundsAndBrokenAnswersAreFailuresOfTheirStep) {
  ClientLoop loop;
  HttpClient client(loop.executor());
  HttpStreamLimits unlimited;
  unlimited.max_body_bytes = HttpStreamLimits::kUnlimited;

  // Headers over the limit.
  OneAnswerServer huge_head("HTTP/1.1 200 OK\r\nX-Big: " + std::string(2000, 'h') + "\r\n\r\n");
  HttpStreamLimits small_head = unlimited;
  small_head.max_header_bytes = 1024;
  HttpStreamResult head =
      client.request_stream_sync("GET", huge_head.url(), {}, {}, {}, small_head);
  EXPECT_EQ(head.failure, HttpStreamFailure::head_too_large);
  EXPECT_EQ(head.error->kind, "response_too_large");

  // Unlimited still takes a Content-Length (Beast 1.74 refuses one under body_limit(none)).
  OneAnswerServer sized("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfive!");
  StreamLog log;
  HttpStreamResult ok =
      client.request_stream_sync("GET", sized.url(), {}, {}, log.handlers(), unlimited);
  ASSERT_TRUE(ok.ok()) << ok.error->describe();
  EXPECT_EQ(ok.end, HttpStreamEnd::complete);
  EXPECT_EQ(log.body(), "five!");

  // Without kUnlimited the body has options.max_response_bytes, or max_body_bytes.
  OneAnswerServer chunky("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" +
                         std::string(1024, 'x') + "\r\n0\r\n\r\n");
  HttpStreamLimits small_body;
  small_body.max_body_bytes = 100;
  HttpStreamResult big = client.request_stream_sync("GET", chunky.url(), {}, {}, {}, small_body);
  EXPECT_EQ(big.failure, HttpStreamFailure::body_too_large);
  EXPECT_EQ(big.error->kind, "response_too_large");

  // Bad chunk framing, a head that is not HTTP, a close before the head.
  OneAnswerServer bad_chunk("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  EXPECT_EQ(client.request_stream_sync("GET", bad_chunk.url(), {}, {}, {}, unlimited).failure,
            HttpStreamFailure::malformed_body);
  OneAnswerServer garbage("SSH-2.0-OpenSSH_9.0\r\n\r\n");
  HttpStreamResult g = client.request_stream_sync("GET", garbage.url(), {}, {}, {}, unlimited);
  EXPECT_EQ(g.failure, HttpStreamFailure::malformed_head);
  EXPECT_EQ(g.error->kind, "protocol");
  OneAnswerServer closing("");
  HttpStreamResult closed = client.request_stream_sync("GET", closing.url(), {}, {}, {}, unlimited);
  EXPECT_EQ(closed.failure, HttpStreamFailure::closed_before_head);
  EXPECT_EQ(closed.reason, "the server closed the connection");

  // Nothing listens.
  unsigned short port = 0;
  {
    net::io_context io;
    net::ip::tcp::acceptor acceptor(io, {net::ip::make_address("127.0.0.1"), 0});
    port = acceptor.local_endpoint().port();
  }
  HttpStreamResult refused = client.request_stream_sync(
      "GET", "http://127.0.0.1:" + std::to_string(port) + "/", {}, {}, {}, unlimited);
  EXPECT_EQ(refused.failure, HttpStreamFailure::connect);
  EXPECT_EQ(refused.error->code, std::errc::connection_refused);
  EXPECT_NE(refused.reason.find("onnection refused"), std::string::npos) << refused.reason;

  // What cannot be asked.
  HttpStreamResult bad_url = client.request_stream_sync("GET", "localhost:1", {}, {}, {});
  EXPECT_EQ(bad_url.failure, HttpStreamFailure::invalid_request);
  EXPECT_EQ(bad_url.error->kind, "configuration");
  HttpStreamLimits no_silence;
  no_silence.silence_timeout = Duration::zero();
  EXPECT_EQ(
      client.request_stream_sync("GET", "http://127.0.0.1:1/", {}, {}, {}, no_silence).failure,
      HttpStreamFailure::invalid_request);
}

TEST(HttpClientStream, AHandlersExceptionComesOutOfTheSyncCall) {
  HttpServer server({}, [](const HttpRequest&) { return HttpResponse{200, {}, "body"}; });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  HttpStreamHandlers throwing;
  throwing.on_body = [](std::string_view) -> bool { throw std::runtime_error("handler broke"); };
  EXPECT_THROW(client.request_stream_sync("GET", server.base_url() + "/", {}, {}, throwing),
               std::runtime_error);
  // The client goes on.
  auto r = client.request_sync("GET", server.base_url() + "/");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->body, "body");
}

TEST_F(Https, StreamsOverTls) {
  ResponderInbox inbox;
  HttpServerOptions server_options = tls_options();
  HttpServer server(server_options, inbox.handler());
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClientOptions options;
  options.ca_file = certs_->ca_file;
  HttpClient client(loop.executor(), options);
  std::thread script([&] {
    std::shared_ptr<HttpResponder> stream = inbox.take();
    if (stream == nullptr || !stream->start_stream(200, {{"Content-Type", "text/event-stream"}})) {
      return;
    }
    for (int i = 0; i < 3; ++i) stream->send("data: " + std::to_string(i) + "\n\n");
    stream->end_stream();
  });
  StreamLog log;
  HttpStreamLimits limits;
  limits.max_body_bytes = HttpStreamLimits::kUnlimited;
  HttpStreamResult r = client.request_stream_sync("GET", server.base_url() + "/events", {}, {},
                                                  log.handlers(), limits);
  script.join();
  ASSERT_TRUE(r.ok()) << r.error->describe();
  EXPECT_EQ(r.end, HttpStreamEnd::complete);
  EXPECT_EQ(log.status(), 200);
  EXPECT_EQ(log.body(), "data: 0\n\ndata: 1\n\ndata: 2\n\n");

  // An untrusted certificate fails the connecting step.
  HttpClient untrusting(loop.executor());
  HttpStreamResult tls = untrusting.request_stream_sync("GET", server.base_url() + "/", {}, {}, {});
  EXPECT_EQ(tls.failure, HttpStreamFailure::tls);
  EXPECT_EQ(tls.error->kind, "tls");
}

}  // namespace
}  // namespace mend
