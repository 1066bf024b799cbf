// Relay::Connection (relay_internal.h), first part: its lifetime, the sweep's and stop's hooks,
// and the first phase of a request: reading and checking the client's request, or refusing it.
#include <boost/asio/write.hpp>
#include <boost/beast/http/status.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "relay_internal.h"

namespace mend::server_detail {
namespace {

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace

Relay::Connection::Connection(Worker& worker, Socket socket, net::ip::address client)
    : w_(worker), socket_(std::move(socket)), client_(client) {
  ++w_.per_client[client_];
  index_ = w_.connections.size();
  w_.connections.push_back(this);
  w_.open.fetch_add(1, std::memory_order_relaxed);
}
Relay::Connection::~Connection() {
  // Ended mid-call (mend stopping): the breaker hears nothing of it, the budget gets its token.
  settle_ignored();
  give_back_token();
  if (slot_ != nullptr) w_.release_slot(slot_);
  if (up_) close_upstream();
  w_.connections[index_] = w_.connections.back();
  w_.connections[index_]->index_ = index_;
  w_.connections.pop_back();
  if (auto c = w_.per_client.find(client_); c != w_.per_client.end() && --c->second == 0) {
    w_.per_client.erase(c);
  }
  w_.open.fetch_sub(1, std::memory_order_relaxed);
}

void Relay::Connection::start() {
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  begin_request();
}

// From the sweep: close what outstayed its time.
void Relay::Connection::sweep(TimePoint now) {
  if ((!in_exchange_ || writing_) && now >= read_deadline_) {
    error_code ignored;
    socket_.close(ignored);
  }
  for (Upstream* up : {up_.get(), hedge_.up.get()}) {
    if (up != nullptr && now >= up->deadline) {
      up->timed_out = true;
      error_code ignored;
      up->socket.close(ignored);
    }
  }
}
void Relay::Connection::close_if_idle() {
  if (!in_exchange_ && parsed_ == 0 && in_.size() == 0) {
    error_code ignored;
    socket_.close(ignored);
  }
}
void Relay::Connection::close() {
  error_code ignored;
  socket_.close(ignored);
  if (up_) up_->socket.close(ignored);
  if (hedge_.up) hedge_.up->socket.close(ignored);
  if (delay_) delay_->cancel();
  if (hedge_timer_) hedge_timer_->cancel();
}

// --- The client's request ------------------------------------------------------------------------

void Relay::Connection::begin_request() {
  request_.emplace();
  request_->header_limit(kHeaderLimit);
  request_->body_limit(options().max_request_bytes);
  request_->eager(true);
  parsed_ = 0;
  continue_sent_ = false;
  read_deadline_ = w_.clock().coarse_now() + options().idle_timeout;
  if (in_.size() > 0) {
    parse_request();
  } else {
    read_request();
  }
}

void Relay::Connection::read_request() {
  socket_.async_read_some(in_.prepare(kReadChunk),
                          [self = shared_from_this()](const error_code& ec, std::size_t n) {
                            self->on_request_bytes(ec, n);
                          });
}

void Relay::Connection::on_request_bytes(const error_code& ec, std::size_t n) {
  if (ec) return;  // closed, reset, or swept: the connection ends with its last handler
  in_.commit(n);
  parse_request();
}

void Relay::Connection::parse_request() {
  error_code ec;
  const auto bytes = in_.data();
  parsed_ += request_->put(
      net::const_buffer(static_cast<const char*>(bytes.data()) + parsed_, bytes.size() - parsed_),
      ec);
  if (ec == http::error::need_more) {
    read_request();
    return;
  }
  if (ec) {
    if (ec == http::error::body_limit) {
      reject(413, "the request body is larger than server.max_body_bytes");
    } else if (ec == http::error::header_limit) {
      reject(431, "the request header is larger than 16 KiB");
    } else {
      reject(400, "malformed HTTP request: " + ec.message());
    }
    return;
  }
  if (!request_->is_done()) {
    if (request_->is_header_done() && request_->expect_continue && !continue_sent_) {
      // The client holds its body back until told to go on; the agent's own 100 comes too
      // late (mend calls it with the whole request) and is dropped.
      continue_sent_ = true;
      net::async_write(socket_, net::buffer(kContinue.data(), kContinue.size()),
                       [self = shared_from_this()](const error_code& written, std::size_t) {
                         if (!written) self->read_request();
                       });
      return;
    }
    read_request();
    return;
  }
  if (request_->upgrade()) {
    reject(501, "the relay does not pass protocol upgrades (WebSocket)");
    return;
  }
  if (!request_->unsafe_target.empty()) {
    reject(400, request_->unsafe_target);
    return;
  }
  if (request_->admin && !options().pass_admin) {
    reject(403,
           "the relay does not pass requests for /admin/ (an agent's admin hooks are "
           "mend's to call; relays[].pass_admin: true passes them)");
    return;
  }
  begin_exchange();
}

// Answers the client from mend itself and closes: after a framing error the rest of the
// stream cannot be trusted.
void Relay::Connection::reject(int status, const std::string& why) {
  ++w_.outcomes[static_cast<std::size_t>(RelayOutcome::rejected)];
  const std::string body = nlohmann::json({{"error", why}}).dump();
  own_answer_ =
      "HTTP/1.1 " + std::to_string(status) + " " +
      std::string(http::obsolete_reason(static_cast<http::status>(status))) +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  keep_client_ = false;
  in_exchange_ = true;
  w_.active.fetch_add(1, std::memory_order_relaxed);
  start_writing();
  net::async_write(socket_, net::buffer(own_answer_),
                   [self = shared_from_this()](const error_code&, std::size_t) {
                     self->w_.active.fetch_sub(1, std::memory_order_relaxed);
                     error_code ignored;
                     self->socket_.shutdown(tcp::socket::shutdown_send, ignored);
                     // What the client still sends is read and dropped for up to a second:
                     // closing with unread bytes would reset the connection, and the reset
                     // can destroy the answer before the client reads it.
                     self->in_exchange_ = false;
                     self->writing_ = false;
                     self->read_deadline_ = self->w_.clock().coarse_now() + std::chrono::seconds(1);
                     self->in_.clear();
                     self->drain();
                   });
}

void Relay::Connection::drain() {
  socket_.async_read_some(in_.prepare(kReadChunk),
                          [self = shared_from_this()](const error_code& ec, std::size_t) {
                            if (ec) {
                              error_code ignored;
                              self->socket_.close(ignored);
                              return;
                            }
                            self->drain();
                          });
}

}  // namespace mend::server_detail
