// The HttpResponder the HTTP server's asynchronous handler is handed (http_server_impl.h): the
// handler's side of an Exchange, from any thread.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "http_server_impl.h"
#include "mend/runtime/http.h"
#include "mend/runtime/http_server.h"

namespace mend::runtime_detail {
namespace {

// A streamed body with more than this waiting unsent belongs to a client that does not keep up:
// the stream is ended rather than buffered without bound.
constexpr std::size_t kMaxStreamBacklog = std::size_t{1} << 20;

// What the asynchronous handler is handed.
class Responder final : public HttpResponder {
 public:
  explicit Responder(std::shared_ptr<Exchange> exchange) : exchange_(std::move(exchange)) {}
  ~Responder() override {
    Exchange& x = *exchange_;
    MutexLock lock(x.mu);
    if (x.phase == Exchange::Phase::kPending) {
      x.phase = Exchange::Phase::kDropped;
      x.wake_locked();
    } else if (x.phase == Exchange::Phase::kStreaming && !x.end_requested) {
      x.end_requested = true;  // a stream nobody can feed any more: end it
      x.wake_locked();
    }
  }
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  void respond(HttpResponse response) override {
    Exchange& x = *exchange_;
    MutexLock lock(x.mu);
    if (x.closed || x.phase != Exchange::Phase::kPending) return;
    x.answer = std::move(response);
    x.phase = Exchange::Phase::kAnswered;
    x.wake_locked();
  }

  bool start_stream(int status, std::vector<HttpHeader> headers) override {
    Exchange& x = *exchange_;
    MutexLock lock(x.mu);
    if (x.closed || x.phase != Exchange::Phase::kPending) return false;
    std::string why = stream_header_problem(status, headers);
    if (!why.empty()) {
      x.answer = json_error(500, "processing_failed", why);
      x.phase = Exchange::Phase::kAnswered;
      x.wake_locked();
      return false;
    }
    x.stream_status = status;
    x.stream_headers = std::move(headers);
    x.phase = Exchange::Phase::kStreaming;
    x.wake_locked();
    return true;
  }

  bool send(std::string piece) override {
    Exchange& x = *exchange_;
    MutexLock lock(x.mu);
    if (x.closed || x.phase != Exchange::Phase::kStreaming || x.end_requested) return false;
    if (x.unsent + piece.size() > kMaxStreamBacklog) {
      x.overflowed = true;
      x.end_requested = true;
      x.wake_locked();
      return false;
    }
    if (piece.empty()) return true;
    x.unsent += piece.size();
    x.queued += piece;
    x.wake_locked();
    return true;
  }

  void end_stream() override {
    Exchange& x = *exchange_;
    MutexLock lock(x.mu);
    if (x.closed || x.phase != Exchange::Phase::kStreaming || x.end_requested) return;
    x.end_requested = true;
    x.wake_locked();
  }

  void abort() override {
    Exchange& x = *exchange_;
    MutexLock lock(x.mu);
    if (x.closed) return;
    if (x.phase == Exchange::Phase::kPending || x.phase == Exchange::Phase::kStreaming) {
      x.phase = Exchange::Phase::kAborted;
      x.wake_locked();
    }
  }

  bool closed() const override {
    MutexLock lock(exchange_->mu);
    return exchange_->closed;
  }

  const std::string& target() const override { return exchange_->target; }

 private:
  // Why status and headers cannot start a stream, or "".
  static std::string stream_header_problem(int status, const std::vector<HttpHeader>& headers) {
    // 1xx, 204 and 304 have no body to stream.
    if (status < 200 || status > 999 || status == 204 || status == 304) {
      return "the handler started a stream with the invalid status " + std::to_string(status);
    }
    for (const HttpHeader& h : headers) {
      if (!is_http_token(h.name) || !is_valid_header_value(h.value)) {
        return "the handler started a stream with an invalid header";
      }
    }
    return {};
  }

  std::shared_ptr<Exchange> exchange_;
};

}  // namespace

std::shared_ptr<HttpResponder> make_responder(std::shared_ptr<Exchange> exchange) {
  return std::make_shared<Responder>(std::move(exchange));
}

}  // namespace mend::runtime_detail
