// Relay::Connection (relay_internal.h), last part: the answer. The agent's answer passed on as
// it came (with Mend-Outcome when it took more than one plain call), or the degraded answer;
// then the agent's connection back to the pool and the client's on to its next request.
#include <array>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "relay_internal.h"

namespace mend::server_detail {
namespace {

constexpr auto kPoolIdle = std::chrono::seconds(30);  // an unused agent connection is closed

std::string_view view(const beast::flat_buffer& b, std::size_t from, std::size_t to) {
  return {static_cast<const char*>(b.data().data()) + from, to - from};
}

}  // namespace

// --- Answers -------------------------------------------------------------------------------------

// Passes the agent's answer on as it came, with Mend-Outcome (and Mend-Agent) after its
// status line when it took more than one plain call.
void Relay::Connection::finish(RelayOutcome outcome) {
  ++w_.outcomes[static_cast<std::size_t>(outcome)];
  Upstream& up = *up_;
  keep_client_ = keep_client_ && up.parser->keep_alive();
  const std::string_view raw = view(up.buffer, 0, up.parsed);
  if (outcome == RelayOutcome::succeeded) {
    start_writing();
    net::async_write(
        socket_, net::buffer(raw.data(), raw.size()),
        [self = shared_from_this()](const error_code& ec, std::size_t) { self->answered(ec); });
    return;
  }
  const std::size_t crlf = raw.find("\r\n");
  const std::size_t line_end = crlf == std::string_view::npos ? 0 : crlf + 2;
  own_answer_ =
      "Mend-Outcome: " + std::string(kOutcomeNames[static_cast<std::size_t>(outcome)]) + "\r\n";
  if (outcome == RelayOutcome::fallback) own_answer_ += "Mend-Agent: " + target().agent + "\r\n";
  const std::array<net::const_buffer, 3> parts = {
      net::buffer(raw.data(), line_end), net::buffer(own_answer_),
      net::buffer(raw.data() + line_end, raw.size() - line_end)};
  start_writing();
  net::async_write(socket_, parts, [self = shared_from_this()](const error_code& ec, std::size_t) {
    self->answered(ec);
  });
}

// No agent could answer: the degraded service's answer for the request's task type (the
// agent protocol's "type", when the body is such a task), as a task would get.
void Relay::Connection::answer_degraded() {
  ++w_.outcomes[static_cast<std::size_t>(RelayOutcome::degraded)];
  std::string type;
  DegradedService::Fields fields;
  const std::string_view raw = view(in_, 0, parsed_);
  if (const std::size_t body = raw.find("\r\n\r\n"); body != std::string_view::npos) {
    nlohmann::json j = nlohmann::json::parse(raw.substr(body + 4), nullptr, false);
    if (j.is_object()) {
      if (auto it = j.find("type"); it != j.end() && it->is_string()) type = *it;
      const nlohmann::json& payload = j.contains("payload") ? j["payload"] : j;
      if (payload.is_object()) {
        for (const auto& [k, v] : payload.items()) {
          if (v.is_string()) fields[k] = v.get<std::string>();
        }
      }
    }
  }
  std::string body = "{}";
  if (slot_->generation && slot_->generation->degraded) {
    body = slot_->generation->degraded->answer(type, fields).to_json();
  }
  own_answer_ =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMend-Outcome: degraded\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n" + (keep_client_ ? "" : "Connection: close\r\n") +
      "\r\n" + (request_->head_request ? std::string() : body);
  start_writing();
  net::async_write(
      socket_, net::buffer(own_answer_),
      [self = shared_from_this()](const error_code& ec, std::size_t) { self->answered(ec); });
}

void Relay::Connection::answered(const error_code& ec) {
  writing_ = false;
  release_upstream();
  end_exchange();
  if (ec || !keep_client_ || !w_.accepting.load(std::memory_order_relaxed)) {
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    socket_.close(ignored);
    return;
  }
  in_.consume(parsed_);
  begin_request();
}

void Relay::Connection::end_exchange() {
  if (!in_exchange_) return;
  in_exchange_ = false;
  w_.release_slot(slot_);
  slot_ = nullptr;
  w_.active.fetch_sub(1, std::memory_order_relaxed);
}

// Back to the pool when its answer ended cleanly and nothing else came with it; else closed.
void Relay::Connection::release_upstream() {
  release(up_);
}

void Relay::Connection::release(std::unique_ptr<Upstream>& connection) {
  if (!connection) return;
  Upstream& up = *connection;
  if (!up.timed_out && up.parser && up.parser->is_done() && up.parser->keep_alive() &&
      request_->keep_alive() && up.buffer.size() == up.parsed &&
      w_.accepting.load(std::memory_order_relaxed)) {
    up.buffer.consume(up.parsed);
    up.parsed = 0;
    up.pooled_at = w_.clock().coarse_now();
    up.deadline = up.pooled_at + kPoolIdle;
    w_.idle[up.slot].push_back(std::move(connection));
    return;
  }
  error_code ignored;
  up.socket.close(ignored);
  connection.reset();
}

// Before each write to the client: a client that stops reading is closed by the sweep.
void Relay::Connection::start_writing() {
  writing_ = true;
  read_deadline_ = w_.clock().coarse_now() + options().idle_timeout;
}

void Relay::Connection::close_upstream() {
  error_code ignored;
  up_->socket.close(ignored);
  up_.reset();
}

}  // namespace mend::server_detail
