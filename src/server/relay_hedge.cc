// Relay::Connection (relay_internal.h), the exchange's hedging: a second call to another replica
// when the first is slow (docs/relay.md, "Hedging"; the policy is mend/core/hedging.h).
#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "relay_internal.h"

namespace mend::server_detail {

// --- Hedging: a second call to another replica when the first is slow ---------------------------
//
// The first call goes on as ever; after the target's hedging delay without its answer, the same
// request goes to another replica the balancer picks (away from the first one and those the
// request failed on), paid for from the retry budget at a retry's cheapest price. The first
// complete answer that is not a failure wins: the other call is closed (never pooled). A first call
// that lost counts against its replica as a slow call would; a hedge that lost is abandoned (it
// started late). A call that fails while the other is out is counted (its replica, the budget) and
// the other is waited for; when both fail, the later failure takes the failure's way (retry, next
// target) once. The breaker hears one result per call it admitted: the winner's, or that failure.

// The agent protocol's task type: "type" of a JSON object body ("" for any other body).
namespace {
std::string task_type_of(std::string_view request) {
  const std::size_t body = request.find("\r\n\r\n");
  if (body == std::string_view::npos) return "";
  const nlohmann::json j = nlohmann::json::parse(request.substr(body + 4), nullptr, false);
  if (!j.is_object()) return "";
  const auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
}  // namespace

bool Relay::Connection::hedged_request() {
  const RelayTarget& t = target();
  if (!t.hedging || !t.balanced || t.endpoints.size() < 2) return false;
  if (t.hedging->hedges("")) return true;  // "*": every request, its body unread
  if (!task_type_) {
    task_type_ =
        task_type_of(std::string_view(static_cast<const char*>(in_.data().data()), parsed_));
  }
  return !task_type_->empty() && t.hedging->hedges(*task_type_);
}

// Starts the hedge's clock for the call just started (up_).
void Relay::Connection::arm_hedge() {
  hedge_for_ = 0;
  if (!hedgeable_ || hedge_.up) return;
  const std::optional<Duration> delay = target().hedging->delay(w_.clock().coarse_now());
  if (!delay) return;  // the agent as a whole is slow: a hedge would only add load
  if (!hedge_timer_) hedge_timer_.emplace(w_.io.get_executor());
  hedge_for_ = up_->serial;
  hedge_timer_->expires_after(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(*delay));
  hedge_timer_->async_wait([self = shared_from_this(), serial = up_->serial](const error_code& ec) {
    if (ec || self->hedge_for_ != serial || self->w_.stopping) return;
    self->launch_hedge();
  });
}

void Relay::Connection::stop_hedge_timer() {
  if (hedge_for_ == 0) return;
  hedge_for_ = 0;
  if (hedge_timer_) hedge_timer_->cancel();
}

void Relay::Connection::launch_hedge() {
  hedge_for_ = 0;
  const RelayTarget& t = target();
  const TimePoint now = w_.clock().coarse_now();
  std::vector<int> avoid = failed_replicas_;
  avoid.push_back(picked_);
  RetryBudget* b = budget();
  bool sent = picked_ >= 0 && t.entry->balancer.has_untried(now, avoid) &&
              (b == nullptr || b->try_acquire_retry(RetryCost::other_replica, now));
  // A call the agent's rate limit counts, as the task API's hedges are (WorkflowRun::start_hedge).
  if (sent && t.entry->rate_limiter != nullptr &&
      !t.entry->rate_limiter->try_acquire(now).allowed) {
    if (b != nullptr) b->release_retry();
    sent = false;
  }
  if (!sent) {
    ++w_.hedges[static_cast<std::size_t>(HedgeResult::refused)];
    return;
  }
  hedge_.token = b;
  hedge_.picked = t.entry->balancer.pick(now, w_.random, avoid);
  hedge_.replica = static_cast<std::size_t>(hedge_.picked);
  hedge_.started = now;
  open_hedge(/*pooled=*/true);
}

void Relay::Connection::open_hedge(bool pooled) {
  const RelayTarget& t = target();
  const TimePoint now = w_.clock().coarse_now();
  const tcp::endpoint& endpoint = t.endpoints[hedge_.replica];
  const std::size_t slot = w_.endpoint_slot(endpoint);
  if (pooled) {
    if (std::unique_ptr<Upstream> idle = take_pooled(slot, now)) {
      hedge_.up = std::move(idle);
      hedge_.up->serial = ++serial_;
      hedge_send();
      return;
    }
  }
  hedge_.up = std::make_unique<Upstream>(w_.io.get_executor(), slot);
  hedge_.up->serial = ++serial_;
  hedge_.up->deadline = now + call_time_limit_;
  hedge_.up->socket.async_connect(
      endpoint, [self = shared_from_this(), serial = hedge_.up->serial](const error_code& ec) {
        if (!self->hedge_current(serial)) return;
        if (ec) {
          self->hedge_call_failed(ec);
          return;
        }
        boost::system::error_code ignored;
        self->hedge_.up->socket.set_option(tcp::no_delay(true), ignored);
        self->hedge_send();
      });
}

void Relay::Connection::hedge_send() {
  Upstream& up = *hedge_.up;
  up.deadline = w_.clock().coarse_now() + call_time_limit_;
  up.timed_out = false;
  begin_response(up);
  net::async_write(
      up.socket, request_for(hedge_.replica),
      [self = shared_from_this(), serial = up.serial](const error_code& ec, std::size_t) {
        if (!self->hedge_current(serial)) return;
        if (ec) {
          self->hedge_call_failed(ec);
          return;
        }
        self->hedge_read();
      });
}

void Relay::Connection::hedge_read() {
  Upstream& up = *hedge_.up;
  up.socket.async_read_some(
      up.buffer.prepare(kReadChunk),
      [self = shared_from_this(), serial = up.serial](const error_code& ec, std::size_t n) {
        if (!self->hedge_current(serial)) return;
        self->on_hedge_bytes(ec, n);
      });
}

void Relay::Connection::on_hedge_bytes(error_code ec, std::size_t n) {
  switch (take_answer(*hedge_.up, ec, n)) {
    case Parsed::more:
      hedge_read();
      return;
    case Parsed::failed:
      hedge_call_failed(ec);
      return;
    case Parsed::complete:
      hedge_answered();
      return;
  }
}

void Relay::Connection::hedge_call_failed(const error_code& ec) {
  if (w_.stopping) {
    abandon();
    return;
  }
  Upstream& up = *hedge_.up;
  if (up.reused && !up.timed_out && up.parsed == 0 && up.buffer.size() == 0 &&
      request_->idempotent &&
      (ec == net::error::eof || ec == net::error::connection_reset ||
       ec == net::error::broken_pipe)) {
    // An idle keep-alive connection the agent had closed (as in call_failed): again, on a
    // fresh connection.
    error_code ignored;
    up.socket.close(ignored);
    hedge_.up.reset();
    open_hedge(/*pooled=*/false);
    return;
  }
  hedge_failed(up.timed_out ? Error::classified_as(ErrorType::network_timeout, Severity::medium,
                                                   "the agent did not answer within its call "
                                                   "timeout")
                            : transport_error(ec));
}

void Relay::Connection::hedge_failed(Error error) {
  if (w_.stopping) {
    abandon();
    return;
  }
  ++w_.hedges[static_cast<std::size_t>(HedgeResult::failed)];
  if (first_failure_) {
    // Both calls failed: the request's failure, once, as the later call's.
    first_failure_.reset();
    adopt_hedge();
    failed(std::move(error));
    return;
  }
  // The first call is still out: this failure is counted, and the first call goes on.
  ++delta().failures;
  slot_->generation->classifier.classify_in_place(error);
  const TimePoint now = w_.clock().coarse_now();
  const int failed_on = std::exchange(hedge_.picked, -1);
  target().entry->balancer.report(failed_on, ReplicaBalancer::result_of(error), now,
                                  now - hedge_.started);
  if (std::find(failed_replicas_.begin(), failed_replicas_.end(), failed_on) ==
      failed_replicas_.end()) {
    failed_replicas_.push_back(failed_on);
  }
  if (RetryBudget* b = budget()) b->record_failure(/*retry=*/true);
  release(hedge_.up);
  if (hedge_.token != nullptr) std::exchange(hedge_.token, nullptr)->release_retry();
}

void Relay::Connection::hedge_answered() {
  Upstream& up = *hedge_.up;
  up.deadline = TimePoint::max();
  const int status = up.parser->status;
  if (status == 101) {
    hedge_failed(Error::classified_as(ErrorType::processing_failed, Severity::medium,
                                      "the agent switched protocols unasked (101)"));
    return;
  }
  if (status >= 500 || status == 429) {
    hedge_failed(Error::http(status, "the agent answered " + std::to_string(status),
                             up.parser->retry_after));
    return;
  }
  ++w_.hedges[static_cast<std::size_t>(HedgeResult::won)];
  if (first_failure_) {
    first_failure_.reset();  // counted when it failed
  } else {
    cancel_first();
  }
  adopt_hedge();
  answered_by_hedge_ = true;
  response_complete();
}

void Relay::Connection::first_failed(Error error) {
  ++delta().failures;
  slot_->generation->classifier.classify_in_place(error);
  const int failed_on = picked_;
  report_replica(ReplicaBalancer::result_of(error));
  if (failed_on >= 0 && std::find(failed_replicas_.begin(), failed_replicas_.end(), failed_on) ==
                            failed_replicas_.end()) {
    failed_replicas_.push_back(failed_on);
  }
  if (RetryBudget* b = budget()) b->record_failure(/*retry=*/attempt_ > 0);
  release_upstream();
  give_back_token();
  first_failure_ = std::move(error);
}

void Relay::Connection::adopt_hedge() {
  if (up_) close_upstream();
  up_ = std::move(hedge_.up);
  picked_ = std::exchange(hedge_.picked, -1);
  replica_ = hedge_.replica;
  call_started_ = hedge_.started;
  if (hedge_.token != nullptr) std::exchange(hedge_.token, nullptr)->release_retry();
}

void Relay::Connection::cancel_first() {
  // Closed, never pooled: its answer may still come on it. Its handlers find up_ replaced.
  if (up_) close_upstream();
  if (picked_ >= 0) {
    // Slower than a call sent to another replica after it: its replica hears of it as of a slow
    // call (a failure of the replica), so that a replica that is slow without failing is ejected
    // even though hedges rescue its calls (Envoy's outlier detection counts a per-try timeout).
    const TimePoint now = w_.clock().coarse_now();
    target().entry->balancer.report(std::exchange(picked_, -1), ReplicaCallResult::failed, now,
                                    now - call_started_);
  }
  // Counted as a call that did not fail (the budget measures the agent, and the agent answered),
  // and not as a request: the winner's call, recorded when its answer is passed on, counts the
  // request once (the budget's requests are its calls less its retry calls).
  if (RetryBudget* b = budget()) b->record_success(/*retry=*/true);
}

void Relay::Connection::cancel_hedge(HedgeResult result) {
  ++w_.hedges[static_cast<std::size_t>(result)];
  if (RetryBudget* b = budget()) b->record_success(/*retry=*/true);
  drop_hedge();
}

void Relay::Connection::drop_hedge() {
  first_failure_.reset();
  if (hedge_.picked >= 0) target().entry->balancer.abandon(std::exchange(hedge_.picked, -1));
  if (hedge_.up) {
    error_code ignored;
    hedge_.up->socket.close(ignored);
    hedge_.up.reset();
  }
  if (hedge_.token != nullptr) std::exchange(hedge_.token, nullptr)->release_retry();
}

}  // namespace mend::server_detail
