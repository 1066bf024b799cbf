// Tests of HttpClient and HttpServer together, over real loopback sockets: servers the tests
// start, raw sockets where a misbehaving peer is needed, and test certificates generated on the
// spot. Every wait is bounded. The streaming call is tested in http_client_stream_test.cc.
#include "http_client_test_support.h"

namespace mend {
namespace {

using namespace mend::http_test;  // NOLINT: the tests' shared pieces
namespace net = boost::asio;
using std::chrono::milliseconds;
using std::chrono::seconds;

// --- parse_url -----------------------------------------------------------------------------------

TEST(ParseUrl, TakesApartHttpAndHttpsUrls) {
  auto a = parse_url("http://127.0.0.1:8080/task");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->scheme, "http");
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, "8080");
  EXPECT_EQ(a->target, "/task");

  auto b = parse_url("HTTPS://Agents.Example.COM");
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->scheme, "https");
  EXPECT_EQ(b->host, "agents.example.com");
  EXPECT_EQ(b->port, "443");
  EXPECT_EQ(b->target, "/");

  auto c = parse_url("http://[::1]:9000/a/b?x=1&y=2#fragment");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, "9000");
  EXPECT_EQ(c->target, "/a/b?x=1&y=2");

  auto d = parse_url("http://agent?x=1");
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->port, "80");
  EXPECT_EQ(d->target, "/?x=1");

  auto e = parse_url("http://[::1]/");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->port, "80");
}

TEST(ParseUrl, RejectsBadUrlsWithAClearConfigurationError) {
  struct Case {
    const char* url;
    const char* says;
  };
  const Case cases[] = {
      {"", "empty"},
      {"127.0.0.1:8080/task", "no scheme"},
      {"ftp://host/file", "unsupported scheme \"ftp\""},
      {"http://", "no host"},
      {"http:///path", "no host"},
      {"http://:8080/", "no host"},
      {"http://host:0/", "port \"0\""},
      {"http://host:65536/", "port \"65536\""},
      {"http://host:80a/", "port \"80a\""},
      {"http://user:secret@host/", "passwords"},
      {"http://[::1/", "unterminated"},
      {"http://[not-v6]/", "not an IPv6 address"},
      {"http://[::1]x/", "after the IPv6 literal"},
      {"http://::1/", "in brackets"},
      {"http://ho st/", "space"},
      {"http://host/\r\nX-Injected: 1", "control character"},
      {"http://ho$t/", "invalid character"},
  };
  for (const Case& c : cases) {
    auto r = parse_url(c.url);
    ASSERT_FALSE(r.ok()) << c.url;
    EXPECT_EQ(r.error().kind, "configuration") << c.url;
    EXPECT_NE(r.error().message.find("invalid URL"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(c.says), std::string::npos)
        << c.url << " -> " << r.error().message;
  }
}

// --- client and server ---------------------------------------------------------------------------

TEST(HttpClientServer, GetAndPostRoundTripWithHeadersAndBody) {
  HttpServer server({}, echo);
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());

  auto get = client.request_sync("GET", server.base_url() + "/agents?name=a", {{"X-Test", "one"}});
  ASSERT_TRUE(get.ok()) << get.error().describe();
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->header("x-method"), "GET");
  EXPECT_EQ(get->header("X-TARGET"), "/agents?name=a");
  EXPECT_EQ(get->header("X-Test-Echo"), "one");
  EXPECT_EQ(get->header("absent"), "");
  EXPECT_EQ(get->body, "");

  std::string payload = R"({"task":"review","lines":[1,2,3]})";
  auto post =
      client.request_sync("POST", server.base_url() + "/task",
                          {{"Content-Type", "application/json"}, {"X-Test", "two"}}, payload);
  ASSERT_TRUE(post.ok()) << post.error().describe();
  EXPECT_EQ(post->status, 200);
  EXPECT_EQ(post->header("X-Method"), "POST");
  EXPECT_EQ(post->header("X-Test-Echo"), "two");
  EXPECT_EQ(post->body, payload);

  // No limit at all is a deadline far away, not an overflow into the past.
  auto unlimited = client.request_sync("GET", server.base_url() + "/", {}, {}, Duration::max());
  ASSERT_TRUE(unlimited.ok()) << unlimited.error().describe();

  // An error status is an answer, not a transport error.
  auto unavailable = client.request_sync("GET", server.base_url() + "/status/503");
  ASSERT_TRUE(unavailable.ok()) << unavailable.error().describe();
  EXPECT_EQ(unavailable->status, 503);

  // From a coroutine, on the client's executor.
  auto future = net::co_spawn(
      loop.executor(),
      [&]() -> net::awaitable<int> {
        auto r = co_await client.request("PUT", server.base_url() + "/x", {}, "abc");
        co_return r.ok() && r->body == "abc" && r->header("X-Method") == "PUT" ? r->status : -1;
      },
      net::use_future);
  ASSERT_EQ(future.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_EQ(future.get(), 200);
}

TEST(HttpClientServer, HeadGetsTheLengthAndNoBody) {
  HttpServer server({}, [](const HttpRequest&) { return HttpResponse{200, {}, "hello"}; });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto head = client.request_sync("HEAD", server.base_url() + "/");
  ASSERT_TRUE(head.ok()) << head.error().describe();
  EXPECT_EQ(head->header("Content-Length"), "5");
  EXPECT_EQ(head->body, "");
  // The connection is still in step: the next answer on it is read correctly.
  auto get = client.request_sync("GET", server.base_url() + "/");
  ASSERT_TRUE(get.ok()) << get.error().describe();
  EXPECT_EQ(get->body, "hello");
  EXPECT_EQ(server.connections_accepted(), 1u);
}

TEST(HttpClientServer, KeepAliveReusesOneConnection) {
  HttpServer server({}, echo);
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  EXPECT_EQ(client.idle_connections(), 0u);
  ASSERT_TRUE(client.request_sync("GET", server.base_url() + "/1").ok());
  ASSERT_TRUE(client.request_sync("GET", server.base_url() + "/2").ok());
  EXPECT_EQ(client.idle_connections(), 1u);
  EXPECT_EQ(server.connections_accepted(), 1u);
  EXPECT_EQ(server.requests_served(), 2u);

  // A response with Connection: close is not pooled.
  ASSERT_TRUE(client.request_sync("GET", server.base_url() + "/3", {{"Connection", "close"}}).ok());
  EXPECT_EQ(client.idle_connections(), 0u);
}

TEST(HttpClientServer, RetriesOnAFreshConnectionWhenThePooledOneWasClosed) {
  ClientLoop loop;
  HttpClient client(loop.executor());
  HttpServer first({}, echo);
  ASSERT_TRUE(first.start().ok());
  const unsigned short port = first.port();
  ASSERT_TRUE(client.request_sync("GET", first.base_url() + "/").ok());
  ASSERT_EQ(client.idle_connections(), 1u);
  first.stop();  // closes the connection the client keeps in its pool
  first.stop();  // idempotent

  HttpServerOptions options;
  options.port = port;
  HttpServer second(options, echo);
  ASSERT_TRUE(second.start().ok());
  auto r = client.request_sync("POST", second.base_url() + "/again", {}, "body");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "body");
  EXPECT_EQ(second.connections_accepted(), 1u);
  EXPECT_EQ(second.requests_served(), 1u);
  EXPECT_EQ(client.idle_connections(), 1u);
}

TEST(HttpClientServer, ConnectionRefusedIsClassifiedConnectionReset) {
  unsigned short port = 0;
  {
    net::io_context io;
    net::ip::tcp::acceptor acceptor(io, {net::ip::make_address("127.0.0.1"), 0});
    port = acceptor.local_endpoint().port();
  }  // closed: nothing listens on the port any more
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto r = client.request_sync("GET", "http://127.0.0.1:" + std::to_string(port) + "/");
  ASSERT_FALSE(r.ok());
  Error e = r.error();
  EXPECT_EQ(e.kind, "connect");
  EXPECT_EQ(e.code, std::errc::connection_refused) << e.message;
  EXPECT_NE(e.message.find(std::to_string(port)), std::string::npos) << e.message;
  EXPECT_FALSE(e.classified);
  Classifier::standard().classify_in_place(e);
  EXPECT_EQ(to_string(e.type), "connection_reset");
  EXPECT_EQ(to_string(e.severity), "medium");
}

TEST(HttpClientServer, TimeoutIsClassifiedNetworkTimeout) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  HttpServer server({}, [released](const HttpRequest&) {
    released.wait_for(seconds(5));  // bounded even if the test fails before releasing
    return HttpResponse{200, {}, "late"};
  });
  ASSERT_TRUE(server.start().ok());
  struct Release {
    std::promise<void>& p;
    ~Release() { p.set_value(); }
  } release_on_exit{release};  // destroyed before the server, so stop() never waits 5 s

  ClientLoop loop;
  HttpClient client(loop.executor());
  auto start = std::chrono::steady_clock::now();
  auto r = client.request_sync("GET", server.base_url() + "/slow", {}, {}, milliseconds(200));
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  Error e = r.error();
  EXPECT_EQ(e.kind, "timeout");
  EXPECT_EQ(e.code, std::errc::timed_out);
  EXPECT_NE(e.message.find("GET " + server.base_url() + "/slow timed out after 200 ms"),
            std::string::npos)
      << e.message;
  EXPECT_GE(elapsed, milliseconds(190));
  EXPECT_LT(elapsed, seconds(2));
  Classifier::standard().classify_in_place(e);
  EXPECT_EQ(to_string(e.type), "network_timeout");
  EXPECT_EQ(client.idle_connections(), 0u);  // a timed-out connection is never reused
}

TEST(HttpClientServer, OversizedResponseIsAnError) {
  HttpServer server({}, [](const HttpRequest&) {
    return HttpResponse{200, {}, std::string(4096, 'x')};
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClientOptions options;
  options.max_response_bytes = 1024;
  HttpClient client(loop.executor(), options);
  auto r = client.request_sync("GET", server.base_url() + "/big");
  ASSERT_FALSE(r.ok()) << r->status;
  EXPECT_EQ(r.error().kind, "response_too_large");
  EXPECT_NE(r.error().message.find("1024 bytes"), std::string::npos) << r.error().message;
}

TEST(HttpClientServer, OversizedRequestIsAnswered413) {
  HttpServerOptions options;
  options.max_body_bytes = 1024;
  std::atomic<int> handled{0};
  HttpServer server(options, [&](const HttpRequest& request) {
    ++handled;
    return echo(request);
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto r =
      client.request_sync("POST", server.base_url() + "/task", {}, std::string(64 * 1024, 'a'));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 413);
  auto body = nlohmann::json::parse(r->body);
  EXPECT_EQ(body["error"]["type"], "validation_failed");
  EXPECT_EQ(handled.load(), 0);
  // A body within the limit still goes through.
  auto ok = client.request_sync("POST", server.base_url() + "/task", {}, std::string(1024, 'a'));
  ASSERT_TRUE(ok.ok()) << ok.error().describe();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(handled.load(), 1);
}

TEST(HttpClientServer, GarbageBytesAreAnswered400AndTheServerKeepsServing) {
  HttpServer server({}, echo);
  ASSERT_TRUE(server.start().ok());
  {
    RawConnection raw(server.port());
    ASSERT_TRUE(raw.connected());
    ASSERT_TRUE(raw.send_all(std::string("\x16\x03\x01 garbage \x00\x01 bytes\r\n\r\n", 24)));
    std::string answer = raw.read();
    EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
    EXPECT_NE(answer.find("validation_failed"), std::string::npos) << answer;
  }
  {
    std::mt19937 random(42);
    std::string noise(4096, '\0');
    for (char& c : noise) c = static_cast<char>(random() & 0xff);
    RawConnection raw(server.port());
    ASSERT_TRUE(raw.connected());
    raw.send_all(noise);  // the server may close before taking it all
    std::string answer = raw.read();
    EXPECT_TRUE(answer.empty() || answer.rfind("HTTP/1.1 400", 0) == 0) << answer;
  }
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto r = client.request_sync("GET", server.base_url() + "/after");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 200);
}

TEST(HttpClientServer, AStalledRequestIsClosedAfterTheReadTimeout) {
  HttpServerOptions options;
  options.read_timeout = milliseconds(100);
  HttpServer server(options, echo);
  ASSERT_TRUE(server.start().ok());
  RawConnection raw(server.port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.send_all("GET / HTTP/1.1\r\nHost: x\r\n"));  // and never the blank line
  auto start = std::chrono::steady_clock::now();
  std::string answer = raw.read({}, milliseconds(3000));  // returns when the server closes
  EXPECT_EQ(answer, "");
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));
}

TEST(HttpClientServer, HandlerExceptionIsAnswered500WithAJsonError) {
  HttpServer server({}, [](const HttpRequest&) -> HttpResponse {
    throw std::runtime_error("agent table \"x\" is corrupt");
  });
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto r = client.request_sync("GET", server.base_url() + "/");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->header("Content-Type"), "application/json");
  auto body = nlohmann::json::parse(r->body);
  EXPECT_EQ(body["error"]["type"], "processing_failed");
  EXPECT_EQ(body["error"]["message"], "agent table \"x\" is corrupt");
}

TEST(HttpClientServer, ConnectionsOverTheLimitAreAnswered503) {
  HttpServerOptions options;
  options.max_connections = 1;
  HttpServer server(options, echo);
  ASSERT_TRUE(server.start().ok());
  RawConnection holder(server.port());  // takes the only slot and keeps it
  ASSERT_TRUE(holder.send_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_EQ(holder.read("\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);

  ClientLoop loop;
  HttpClient client(loop.executor());
  auto r = client.request_sync("GET", server.base_url() + "/");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(nlohmann::json::parse(r->body)["error"]["type"], "temporary_unavailable");
}

TEST(HttpClientServer, InvalidMethodOrHeaderIsAConfigurationError) {
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto method = client.request_sync("GET /x", "http://127.0.0.1:1/");
  ASSERT_FALSE(method.ok());
  EXPECT_EQ(method.error().kind, "configuration");
  auto header = client.request_sync("GET", "http://127.0.0.1:1/", {{"X-A", "1\r\nX-B: 2"}});
  ASSERT_FALSE(header.ok());
  EXPECT_EQ(header.error().kind, "configuration");
  EXPECT_NE(header.error().message.find("invalid header"), std::string::npos);
  auto url = client.request_sync("GET", "localhost:8080");
  ASSERT_FALSE(url.ok());
  EXPECT_EQ(url.error().kind, "configuration");
}

TEST(HttpClientServer, StartFailsClearlyWhenThePortIsTaken) {
  HttpServer first({}, echo);
  ASSERT_TRUE(first.start().ok());
  HttpServerOptions options;
  options.port = first.port();
  HttpServer second(options, echo);
  auto started = second.start();
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().code, std::errc::address_in_use) << started.error().message;
  EXPECT_NE(started.error().message.find("127.0.0.1:" + std::to_string(first.port())),
            std::string::npos)
      << started.error().message;

  HttpServerOptions bad_address;
  bad_address.bind_address = "localhost";
  auto not_an_ip = HttpServer(bad_address, echo).start();
  ASSERT_FALSE(not_an_ip.ok());
  EXPECT_NE(not_an_ip.error().message.find("not an IPv4 or IPv6 address"), std::string::npos);
}

TEST(HttpClientServer, Ipv6LoopbackRoundTrip) {
  HttpServerOptions options;
  options.bind_address = "::1";
  HttpServer server(options, echo);
  if (!server.start().ok()) GTEST_SKIP() << "cannot bind ::1 on this machine";
  EXPECT_EQ(server.base_url().rfind("http://[::1]:", 0), 0u) << server.base_url();
  ClientLoop loop;
  HttpClient client(loop.executor());
  auto r = client.request_sync("POST", server.base_url() + "/v6", {}, "six");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "six");
}

TEST(HttpClientServer, ConcurrentCoroutinesShareOneClient) {
  HttpServerOptions options;
  options.threads = 2;
  HttpServer server(options, echo);
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop(2);
  HttpClient client(loop.executor());
  constexpr int kCoroutines = 8;
  constexpr int kRequestsEach = 25;
  std::vector<std::future<int>> done;
  for (int c = 0; c < kCoroutines; ++c) {
    done.push_back(net::co_spawn(
        loop.executor(),
        [&client, &server, c]() -> net::awaitable<int> {
          int ok = 0;
          for (int i = 0; i < kRequestsEach; ++i) {
            std::string body = std::to_string(c) + "/" + std::to_string(i);
            auto r = co_await client.request("POST", server.base_url() + "/c", {}, body);
            if (r.ok() && r->status == 200 && r->body == body) ++ok;
          }
          co_return ok;
        },
        net::use_future));
  }
  int ok = 0;
  for (auto& f : done) {
    ASSERT_EQ(f.wait_for(seconds(10)), std::future_status::ready);
    ok += f.get();
  }
  EXPECT_EQ(ok, kCoroutines * kRequestsEach);
  EXPECT_EQ(server.requests_served(), static_cast<std::size_t>(kCoroutines * kRequestsEach));
  EXPECT_LE(server.connections_accepted(), static_cast<std::size_t>(kCoroutines));
  EXPECT_LE(client.idle_connections(), static_cast<std::size_t>(kCoroutines));
}

// --- HTTPS ---------------------------------------------------------------------------------------
TEST_F(Https, SucceedsWithTheTestCaAndReusesTheConnection) {
  HttpServer server(tls_options(), echo);
  ASSERT_TRUE(server.start().ok());
  EXPECT_EQ(server.base_url().rfind("https://127.0.0.1:", 0), 0u) << server.base_url();
  ClientLoop loop;
  HttpClientOptions options;
  options.ca_file = certs_->ca_file;
  HttpClient client(loop.executor(), options);
  auto r = client.request_sync("POST", server.base_url() + "/secure", {}, "secret");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "secret");
  auto again = client.request_sync("GET", server.base_url() + "/secure");
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_EQ(server.connections_accepted(), 1u);
  EXPECT_EQ(client.idle_connections(), 1u);

  // By name too: the certificate names localhost.
  auto by_name =
      client.request_sync("GET", "https://localhost:" + std::to_string(server.port()) + "/name");
  ASSERT_TRUE(by_name.ok()) << by_name.error().describe();
  EXPECT_EQ(by_name->status, 200);
}

TEST_F(Https, AnUntrustedCertificateIsATlsError) {
  HttpServer server(tls_options(), echo);
  ASSERT_TRUE(server.start().ok());
  ClientLoop loop;
  HttpClient client(loop.executor());  // system CAs only: the test CA is unknown
  auto r = client.request_sync("GET", server.base_url() + "/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "tls");
  EXPECT_NE(r.error().message.find("certificate verification failed"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(client.idle_connections(), 0u);

  // Verification off: the same server is reached.
  HttpClientOptions unverified;
  unverified.verify_peer = false;
  HttpClient trusting(loop.executor(), unverified);
  auto ok = trusting.request_sync("GET", server.base_url() + "/");
  ASSERT_TRUE(ok.ok()) << ok.error().describe();
  EXPECT_EQ(ok->status, 200);
}

TEST_F(Https, ACertificateForAnotherAddressIsATlsError) {
  HttpServerOptions options = tls_options();
  options.bind_address = "127.0.0.2";  // loopback, but not an address the certificate names
  HttpServer server(options, echo);
  if (!server.start().ok()) GTEST_SKIP() << "cannot bind 127.0.0.2 on this machine";
  ClientLoop loop;
  HttpClientOptions client_options;
  client_options.ca_file = certs_->ca_file;
  HttpClient client(loop.executor(), client_options);
  auto r = client.request_sync("GET", server.base_url() + "/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "tls");
  EXPECT_NE(r.error().message.find("IP address mismatch"), std::string::npos) << r.error().message;
}

TEST_F(Https, AMissingCaFileIsAConfigurationError) {
  ClientLoop loop;
  HttpClientOptions options;
  options.ca_file = "/nonexistent/mend-ca.pem";
  HttpClient client(loop.executor(), options);
  auto r = client.request_sync("GET", "https://127.0.0.1:1/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, "configuration");
  EXPECT_NE(r.error().message.find("/nonexistent/mend-ca.pem"), std::string::npos);
}

TEST_F(Https, ServerRejectsAKeyThatDoesNotMatchTheCertificate) {
  auto other = testing::TestCertificates::generate();
  HttpServerOptions options = tls_options();
  options.tls_key_pem = other->key_pem;
  auto started = HttpServer(options, echo).start();
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().kind, "configuration");
  EXPECT_NE(started.error().message.find("tls_key_pem"), std::string::npos)
      << started.error().message;
}

}  // namespace
}  // namespace mend
