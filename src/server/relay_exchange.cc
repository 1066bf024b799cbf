// Relay::Connection (relay_internal.h), second part: the exchange. The request goes along the
// route's chain of agents, on a pooled or new connection to one replica at a time, with the
// breaker's admission, classified failures, retries with backoff and fallbacks.
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "relay_internal.h"

namespace mend::server_detail {
namespace {

constexpr auto kPeekAfter = std::chrono::milliseconds(2);  // idle this long: checked at reuse

const std::string kNoBase;

}  // namespace

// A failed call's transport error as mend's Error, for the classifier.
Error transport_error(const error_code& ec) {
  if (ec == net::error::eof) {
    return Error::from_code(std::make_error_code(std::errc::connection_reset),
                            "the agent closed the connection before it answered");
  }
  if (ec.category() == boost::system::system_category()) {
    return Error::from_code(std::error_code(ec.value(), std::system_category()),
                            "relay call: " + ec.message());
  }
  return Error::classified_as(ErrorType::processing_failed, Severity::medium,
                              "the agent's answer is not valid HTTP: " + ec.message());
}

// --- The exchange: calls along the chain until one answers ---------------------------------------

void Relay::Connection::begin_exchange() {
  in_exchange_ = true;
  w_.active.fetch_add(1, std::memory_order_relaxed);
  keep_client_ = request_->keep_alive();
  slot_ = w_.acquire_slot();
  target_ = 0;
  attempt_ = 0;
  calls_ = 0;
  previous_delay_ = {};
  task_type_.reset();
  answered_by_hedge_ = false;
  next_target();
}

// Tries targets from target_ on; the first one that admits a call gets it.
void Relay::Connection::next_target() {
  const Clock& clock = w_.clock();
  for (; slot_->route != nullptr && target_ < slot_->route->chain.size(); ++target_) {
    const RelayTarget& t = target();
    if (t.endpoints.empty()) continue;
    if (t.entry->health.load(std::memory_order_relaxed) == HealthState::unhealthy) continue;
    const AttemptPolicy::Admission admission = attempts().admit(clock);
    permit_ = admission.permit;
    if (!admission.allowed()) continue;
    admitted(admission);
    permit_held_ = true;
    attempt_ = 0;
    previous_delay_ = {};
    failed_replicas_.clear();
    hedgeable_ = hedged_request();
    call();
    return;
  }
  answer_degraded();
}

void Relay::Connection::call() {
  const RelayTarget& t = target();
  const TimePoint now = w_.clock().coarse_now();
  if (t.balanced) {
    // The less busy of two replicas that are not ejected, away from those this request failed on.
    picked_ = t.entry->balancer.pick(now, w_.random, failed_replicas_);
    replica_ = static_cast<std::size_t>(picked_);
  } else {
    replica_ = w_.round_robin++ % t.endpoints.size();
  }
  call_started_ = w_.clock().now();  // precise: the balancer compares replicas' latencies
  const tcp::endpoint& endpoint = t.endpoints[replica_];
  const std::size_t slot = w_.endpoint_slot(endpoint);
  ++calls_;
  if (std::unique_ptr<Upstream> idle = take_pooled(slot, now)) {
    up_ = std::move(idle);
    up_->serial = ++serial_;
    arm_hedge();
    send_request();
    return;
  }
  up_ = std::make_unique<Upstream>(w_.io.get_executor(), slot);
  up_->serial = ++serial_;
  up_->deadline = w_.clock().coarse_now() + call_time_limit_;
  arm_hedge();
  up_->socket.async_connect(
      endpoint, [self = shared_from_this(), serial = up_->serial](const error_code& ec) {
        if (!self->current(serial)) return;  // cancelled: the hedge answered first
        if (ec) {
          self->call_failed(ec);
          return;
        }
        boost::system::error_code ignored;
        self->up_->socket.set_option(tcp::no_delay(true), ignored);
        self->send_request();
      });
}

std::unique_ptr<Upstream> Relay::Connection::take_pooled(std::size_t slot, TimePoint now) {
  auto& pool = w_.idle[slot];
  while (!pool.empty()) {
    std::unique_ptr<Upstream> idle = std::move(pool.back());
    pool.pop_back();
    // Checked only after a pause: a connection in steady use is not stale, and the check
    // costs a system call.
    if (now - idle->pooled_at >= kPeekAfter && !still_open(*idle)) continue;
    idle->reused = true;
    return idle;
  }
  return nullptr;
}

// A fresh parser for the agent's next answer (a HEAD's answer has no body).
void Relay::Connection::begin_response(Upstream& up) {
  up.parser.emplace();
  up.parser->header_limit(kHeaderLimit);
  up.parser->body_limit(options().max_response_bytes);
  up.parser->eager(true);
  up.parser->skip(request_->head_request);
  up.parsed = 0;
}

// The request as it came, but for the replica's base path before its target (origin form only:
// "/x" goes to "/base/x"); three buffers, nothing copied.
std::array<net::const_buffer, 3> Relay::Connection::request_for(std::size_t replica) const {
  const char* bytes = static_cast<const char*>(in_.data().data());
  const std::string_view request(bytes, parsed_);
  const RelayTarget& t = target();
  const std::string& base = replica < t.base_paths.size() ? t.base_paths[replica] : kNoBase;
  const std::size_t space = request.find(' ');
  std::size_t split = parsed_;
  if (!base.empty() && space != std::string_view::npos && space + 1 < request.size() &&
      request[space + 1] == '/') {
    split = space + 1;
  }
  return {net::buffer(bytes, split), net::buffer(base.data(), split == parsed_ ? 0 : base.size()),
          net::buffer(bytes + split, parsed_ - split)};
}

void Relay::Connection::send_request() {
  up_->deadline = w_.clock().coarse_now() + call_time_limit_;
  up_->timed_out = false;
  begin_response(*up_);
  net::async_write(
      up_->socket, request_for(replica_),
      [self = shared_from_this(), serial = up_->serial](const error_code& ec, std::size_t) {
        if (!self->current(serial)) return;
        if (ec) {
          self->call_failed(ec);
          return;
        }
        self->read_response();
      });
}

void Relay::Connection::read_response() {
  up_->socket.async_read_some(
      up_->buffer.prepare(kReadChunk),
      [self = shared_from_this(), serial = up_->serial](const error_code& ec, std::size_t n) {
        if (!self->current(serial)) return;
        self->on_response_bytes(ec, n);
      });
}

Relay::Connection::Parsed Relay::Connection::take_answer(Upstream& up, error_code& ec,
                                                         std::size_t n) {
  if (ec == net::error::eof && up.parser->is_header_done() && up.parser->need_eof()) {
    up.parser->put_eof(ec);  // a body delimited by the close
    if (!ec) return Parsed::complete;
  }
  if (ec) return Parsed::failed;
  up.buffer.commit(n);
  const auto bytes = up.buffer.data();
  up.parsed += up.parser->put(net::const_buffer(static_cast<const char*>(bytes.data()) + up.parsed,
                                                bytes.size() - up.parsed),
                              ec);
  if (ec == http::error::need_more || (!ec && !up.parser->is_done())) {
    ec = {};
    return Parsed::more;
  }
  if (ec) return Parsed::failed;
  if (up.parser->status >= 100 && up.parser->status < 200 && up.parser->status != 101) {
    // An interim answer (100 Continue): the real one follows.
    up.buffer.consume(up.parsed);
    begin_response(up);
    if (up.buffer.size() > 0) return take_answer(up, ec, 0);
    return Parsed::more;
  }
  return Parsed::complete;
}

void Relay::Connection::on_response_bytes(error_code ec, std::size_t n) {
  switch (take_answer(*up_, ec, n)) {
    case Parsed::more:
      read_response();
      return;
    case Parsed::failed:
      call_failed(ec);
      return;
    case Parsed::complete:
      response_complete();
      return;
  }
}

void Relay::Connection::response_complete() {
  up_->deadline = TimePoint::max();  // answered: the call timeout no longer applies
  stop_hedge_timer();
  const int status = up_->parser->status;
  if (status == 101) {  // never asked for: the relay refuses upgrades
    failed(Error::classified_as(ErrorType::processing_failed, Severity::medium,
                                "the agent switched protocols unasked (101)"));
    return;
  }
  // The agent's failures (5xx, 429) are mend's business; any other answer is the client's.
  if (status >= 500 || status == 429) {
    failed(Error::http(status, "the agent answered " + std::to_string(status),
                       up_->parser->retry_after));
    return;
  }
  // The first call answered while the hedge was out: the hedge lost.
  if (hedge_.up) cancel_hedge(HedgeResult::lost);
  if (const RelayTarget& t = target(); t.hedging) {
    const TimePoint now = w_.clock().coarse_now();
    t.hedging->record(now - call_started_, now);
  }
  permit_held_ = false;
  attempts().succeeded(permit_, w_.clock(), /*retry=*/attempt_ > 0);
  report_replica(ReplicaCallResult::succeeded);
  give_back_token();
  RelayOutcome outcome = target_ > 0          ? RelayOutcome::fallback
                         : answered_by_hedge_ ? RelayOutcome::hedged
                         : calls_ > 1         ? RelayOutcome::succeeded_after_retry
                                              : RelayOutcome::succeeded;
  ++delta().successes;
  if (outcome == RelayOutcome::fallback) ++delta().fallbacks;
  finish(outcome);
}

void Relay::Connection::call_failed(const error_code& ec) {
  if (w_.stopping) {
    abandon();
    return;
  }
  if (up_ && up_->reused && !up_->timed_out && up_->parsed == 0 && up_->buffer.size() == 0 &&
      request_->idempotent &&
      (ec == net::error::eof || ec == net::error::connection_reset ||
       ec == net::error::broken_pipe)) {
    // The agent closed an idle keep-alive connection as the request went out: not a failure
    // of the agent. An idempotent request goes again on a fresh connection, uncounted; any
    // other may have been acted on, and takes the policies' way.
    close_upstream();
    --calls_;
    report_replica(ReplicaCallResult::ignored);
    call();
    return;
  }
  failed(up_ && up_->timed_out
             ? Error::classified_as(ErrorType::network_timeout, Severity::medium,
                                    "the agent did not answer within its call timeout")
             : transport_error(ec));
}

// The call failed: the breaker hears of it, then retry, next target, or degraded.
void Relay::Connection::failed(Error error) {
  if (w_.stopping) {
    abandon();
    return;
  }
  stop_hedge_timer();
  if (hedge_.up) {  // the hedge may still answer: the request fails only if it fails too
    first_failed(std::move(error));
    return;
  }
  release_upstream();
  give_back_token();
  ++delta().failures;
  const Clock& clock = w_.clock();
  slot_->generation->classifier.classify_in_place(error);
  const int failed_on = picked_;
  report_replica(ReplicaBalancer::result_of(error));
  const bool replicated = failed_on >= 0 && target().entry->balancer.replicas() > 1;
  if (replicated && std::find(failed_replicas_.begin(), failed_replicas_.end(), failed_on) ==
                        failed_replicas_.end()) {
    failed_replicas_.push_back(failed_on);
  }
  // A replica this request has not failed on, in service: where a retry goes, cheaply.
  const bool other_replica =
      replicated && target().entry->balancer.has_untried(clock.coarse_now(), failed_replicas_);
  permit_held_ = false;
  const AttemptDecision d = attempts().failed(
      permit_, error,
      {.attempt = attempt_, .previous = previous_delay_, .other_replica = other_replica}, clock,
      w_.random);
  if (d.token != nullptr) token_held_ = d.token;  // given back when the retry has answered
  if (!d.retry) {
    // As a task does (mend/core/workflow.h): a replica out of resources sends the request to
    // another replica it has not failed on, when one is in service, before the next agent.
    if (other_replica && error.category() == ErrorCategory::resource) {
      attempt_ = 0;
      previous_delay_ = {};
      next_replica();
      return;
    }
    ++target_;
    next_target();
    return;
  }
  ++delta().retries;
  ++attempt_;
  previous_delay_ = d.delay;
  if (d.delay <= Duration::zero()) {
    retry_now();
    return;
  }
  if (!delay_) delay_.emplace(w_.io.get_executor());
  delay_->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(d.delay));
  delay_->async_wait([self = shared_from_this()](const error_code& ec) {
    if (ec || !self->socket_.is_open() || self->w_.stopping) {
      self->abandon();  // mend is stopping
      return;
    }
    self->retry_now();
  });
}

// The breaker is asked again: it may have opened while the call waited. An agent its probes
// marked unhealthy meanwhile is not called again either (as the workflow's retries do).
void Relay::Connection::retry_now() {
  const AttemptPolicy::Admission admission = attempts().admit(
      w_.clock(),
      {.retrying = true, .health = target().entry->health.load(std::memory_order_relaxed)});
  permit_ = admission.permit;
  permit_held_ = admission.allowed();
  if (!admission.allowed()) {
    give_back_token();
    ++target_;
    next_target();
    return;
  }
  admitted(admission);
  call();
}

// Another replica of the same agent, as a fresh first call: the breaker is asked again.
void Relay::Connection::next_replica() {
  const AttemptPolicy::Admission admission = attempts().admit(w_.clock());
  permit_ = admission.permit;
  permit_held_ = admission.allowed();
  if (!admission.allowed()) {
    ++target_;
    next_target();
    return;
  }
  admitted(admission);
  call();
}

void Relay::Connection::report_replica(ReplicaCallResult result) {
  if (picked_ < 0) return;
  const TimePoint now = w_.clock().now();
  target().entry->balancer.report(std::exchange(picked_, -1), result, now, now - call_started_);
  AgentDelta& d = delta();
  ++d.ended;
  d.latency_ns += (now - call_started_).count();
}

void Relay::Connection::admitted(const AttemptPolicy::Admission& admission) {
  // A request has no deadline of its own, so the limit is the agent's call timeout; the
  // configuration's when the agent has none (the daemon sets every agent's).
  call_time_limit_ = admission.time_limit.value_or(slot_->generation->config.policies.call_timeout);
}

// A pooled connection the agent closed, or wrote to unasked (a 408 before closing), is of no
// use: its next bytes would be taken for the answer to a request it never saw.
bool Relay::Connection::still_open(Upstream& up) {
  char byte;
  const ssize_t n = ::recv(up.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void Relay::Connection::settle_ignored() {
  if (slot_ == nullptr || slot_->route == nullptr) return;
  drop_hedge();
  if (picked_ >= 0) target().entry->balancer.abandon(std::exchange(picked_, -1));
  if (!permit_held_) return;
  permit_held_ = false;
  target().entry->breaker.on_ignored(permit_);
}

// mend is stopping: the call's end says nothing of the agent; no retry, no fallback.
void Relay::Connection::abandon() {
  stop_hedge_timer();
  settle_ignored();
  give_back_token();
  if (up_) close_upstream();
  end_exchange();
  error_code ignored;
  socket_.close(ignored);
}

void Relay::Connection::give_back_token() {
  if (token_held_ != nullptr) std::exchange(token_held_, nullptr)->release_retry();
}

}  // namespace mend::server_detail
