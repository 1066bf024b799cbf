// HttpServer's public members (mend/runtime/http_server.h): start() (the options' checks, the TLS
// context, binding and the threads), stop() and the accessors. Connections are served in
// http_server.cc.
#include "mend/runtime/http_server.h"

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "http_server_impl.h"

namespace mend {
namespace {

namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

// How long stop() lets connections wind down before stopping the threads' loop regardless.
constexpr Duration kStopGrace = std::chrono::seconds(5);

Error configuration_error(std::string message) {
  return Error::of_kind("configuration", std::move(message));
}

std::error_code to_std(const boost::system::error_code& ec) {
  if (ec.category() == boost::system::system_category() ||
      ec.category() == boost::system::generic_category()) {
    return {ec.value(), std::system_category()};
  }
  return {};
}

}  // namespace

using runtime_detail::Session;

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::HttpServer(HttpServerOptions options, AsyncHandler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
  stop();
}

Result<void> HttpServer::start() {
  Impl& s = *impl_;
  MutexLock lifecycle(s.lifecycle_mu);
  if (s.started) return configuration_error("the HTTP server was started already");
  if (s.stopped) return configuration_error("a stopped HTTP server cannot be started again");
  if (!s.handler && !s.async_handler) {
    return configuration_error("the HTTP server has no handler");
  }
  const HttpServerOptions& o = s.options;

  if (o.tls_cert_pem.empty() != o.tls_key_pem.empty()) {
    return configuration_error("tls_cert_pem and tls_key_pem must be given together");
  }
  std::unique_ptr<ssl::context> tls;
  if (!o.tls_cert_pem.empty()) {
    tls = std::make_unique<ssl::context>(ssl::context::tls_server);
    SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION);
    boost::system::error_code ec;
    tls->use_certificate_chain(net::buffer(o.tls_cert_pem), ec);
    if (ec) return configuration_error("tls_cert_pem is not a usable certificate: " + ec.message());
    tls->use_private_key(net::buffer(o.tls_key_pem), ssl::context::pem, ec);
    if (ec) return configuration_error("tls_key_pem is not a usable private key: " + ec.message());
    if (SSL_CTX_check_private_key(tls->native_handle()) != 1) {
      return configuration_error("tls_key_pem does not match the certificate in tls_cert_pem");
    }
  }

  boost::system::error_code ec;
  net::ip::address address = net::ip::make_address(o.bind_address, ec);
  if (ec) {
    return configuration_error("bind_address \"" + o.bind_address +
                               "\" is not an IPv4 or IPv6 address");
  }
  tcp::endpoint endpoint(address, o.port);
  std::string where = (address.is_v6() ? "[" + o.bind_address + "]" : o.bind_address) + ":" +
                      std::to_string(o.port);

  auto io =
      std::make_unique<net::io_context>(static_cast<int>(std::max<std::size_t>(o.threads, 1)));
  auto acceptor = std::make_unique<tcp::acceptor>(net::make_strand(*io));
  auto fail = [&](std::string_view doing) -> Error {
    Error e = Error::from_code(to_std(ec),
                               "cannot " + std::string(doing) + " " + where + ": " + ec.message());
    e.kind = "configuration";
    return e;
  };
  acceptor->open(endpoint.protocol(), ec);
  if (ec) return fail("open a socket for");
  acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (ec) return fail("set SO_REUSEADDR on");
  acceptor->bind(endpoint, ec);
  if (ec) return fail("listen on");
  acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on");
  unsigned short bound = acceptor->local_endpoint(ec).port();
  if (ec) return fail("read the port of");

  s.tls = std::move(tls);
  s.io = std::move(io);
  s.acceptor = std::move(acceptor);
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  {
    MutexLock lock(s.url_mu);
    s.base_url = std::string(s.tls ? "https" : "http") + "://" + host + ":" + std::to_string(bound);
  }
  s.port.store(bound);
  {
    MutexLock lock(s.mu);
    s.accepting = true;
  }
  net::co_spawn(s.acceptor->get_executor(), s.accept_loop(), net::detached);
  for (std::size_t i = 0; i < std::max<std::size_t>(o.threads, 1); ++i) {
    s.threads.emplace_back([&s] {
      for (;;) {
        try {
          s.io->run();
          return;
        } catch (...) {
          // A completion handler threw: keep serving the other connections.
        }
      }
    });
  }
  s.started = true;
  return {};
}

void HttpServer::stop() {
  Impl& s = *impl_;
  MutexLock lifecycle(s.lifecycle_mu);
  if (s.stopped) return;
  s.stopped = true;
  if (!s.started) return;
  s.stopping.store(true);
  net::post(s.acceptor->get_executor(), [&s] {
    boost::system::error_code ignored;
    s.acceptor->close(ignored);
  });
  {
    MutexLock lock(s.mu);
    for (const std::shared_ptr<Session>& session : s.sessions) {
      // Responders learn at once that it is over, and post nothing to a context about to go.
      if (session->exchange) session->exchange->close();
      net::post(session->executor, [session] { session->abort(); });
    }
    s.cv.wait_for(lock.native(), kStopGrace,
                  [&s]() MEND_REQUIRES(s.mu) { return s.sessions.empty() && !s.accepting; });
  }
  s.io->stop();
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
}

unsigned short HttpServer::port() const {
  return impl_->port.load();
}

std::string HttpServer::base_url() const {
  MutexLock lock(impl_->url_mu);
  return impl_->base_url;
}

std::size_t HttpServer::requests_served() const {
  return impl_->served.load(std::memory_order_relaxed);
}

std::size_t HttpServer::connections_accepted() const {
  return impl_->accepted.load(std::memory_order_relaxed);
}

}  // namespace mend
