// File: mend/runtime/notifier.h
//
// Delivery of the notification outbox (mend/core/store.h) to the receivers people watch: a generic
// webhook, Slack incoming webhooks, PagerDuty Events API v2, and a JSON-lines file (or stderr).
//
//   mend::NotificationDispatcher dispatcher(store, clock, random);
//   dispatcher.add_receiver(std::make_unique<mend::SlackReceiver>("slack", http, slack_url));
//   dispatcher.add_receiver(std::make_unique<mend::PagerDutyReceiver>("pagerduty", http, key));
//   mend::DeliveryReport r = dispatcher.deliver_due();   // the daemon calls it every second
//
// The Escalator writes messages; the dispatcher sends what is due, marks each delivered, or
// schedules its next attempt with mend's own retry policy (backoff with jitter, Retry-After
// honoured) until it gives up and marks it dead. Transport errors, 5xx, 408 and 429 are retried;
// other statuses are final (a 400 will not get better), and so are errors of mend's own making
// (a payload a receiver cannot format, a missing CA file). Because a message is marked delivered
// only after the receiver accepted it, a crash between the two sends it again on restart:
// delivery is at least once, and every receiver gets a key to drop the repeat (the webhook's
// Idempotency-Key header, PagerDuty's dedup_key, the file line's "delivery_key").
//
// Payloads: docs/notifications.md documents the neutral JSON body (the webhook's) and how it
// maps onto Slack's and PagerDuty's formats.
//
// Thread-safety: receivers are safe to call from many threads. deliver_due() may run on several
// threads, but each message could then be sent twice; run one dispatcher loop per store.
#ifndef MEND_RUNTIME_NOTIFIER_H_
#define MEND_RUNTIME_NOTIFIER_H_

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/random.h"
#include "mend/core/result.h"
#include "mend/core/retry.h"
#include "mend/core/store.h"
#include "mend/core/thread_annotations.h"
#include "mend/runtime/http_client.h"

namespace mend {

class NotificationReceiver {
 public:
  explicit NotificationReceiver(std::string name) : name_(std::move(name)) {}
  virtual ~NotificationReceiver() = default;
  const std::string& name() const noexcept { return name_; }
  // Sends one message; blocking. An Error with a status (HTTP) or without (transport) on failure.
  virtual Result<void> deliver(const OutboxMessage& message) = 0;

 private:
  std::string name_;
};

// PagerDuty severities for mend's levels: critical -> critical, high -> error, medium ->
// warning, low -> info.
std::string_view pagerduty_severity(Severity level) noexcept;
// The bodies each receiver sends for a neutral payload. Errors: the payload is not the neutral
// JSON (validation_failed).
Result<std::string> slack_body(std::string_view payload);
Result<std::string> pagerduty_body(std::string_view payload, const std::string& routing_key);

// POSTs the neutral JSON as is, with Idempotency-Key and X-Mend-Event headers.
class WebhookReceiver final : public NotificationReceiver {
 public:
  WebhookReceiver(std::string name, HttpClient& http, std::string url,
                  std::vector<HttpHeader> headers = {},
                  Duration timeout = std::chrono::seconds(10));
  Result<void> deliver(const OutboxMessage& message) override;

 private:
  HttpClient& http_;
  std::string url_;
  std::vector<HttpHeader> headers_;
  Duration timeout_;
};

// Slack incoming webhook: {"text": ..., "blocks": [...]}.
class SlackReceiver final : public NotificationReceiver {
 public:
  SlackReceiver(std::string name, HttpClient& http, std::string webhook_url,
                Duration timeout = std::chrono::seconds(10));
  Result<void> deliver(const OutboxMessage& message) override;

 private:
  HttpClient& http_;
  std::string url_;
  Duration timeout_;
};

// PagerDuty Events API v2: trigger / acknowledge / resolve with dedup_key = the record's
// fingerprint and id, so PagerDuty keeps one alert per mend record. A re-escalation is sent as a
// trigger of the same dedup_key (PagerDuty updates the alert; its own escalation policy pages).
class PagerDutyReceiver final : public NotificationReceiver {
 public:
  static constexpr const char* kEventsUrl = "https://events.pagerduty.com/v2/enqueue";
  PagerDutyReceiver(std::string name, HttpClient& http, std::string routing_key,
                    std::string url = kEventsUrl, Duration timeout = std::chrono::seconds(10));
  Result<void> deliver(const OutboxMessage& message) override;

 private:
  HttpClient& http_;
  std::string routing_key_;
  std::string url_;
  Duration timeout_;
};

// Appends one JSON line per message to a file ("-": standard error), flushed at once.
class FileReceiver final : public NotificationReceiver {
 public:
  FileReceiver(std::string name, std::string path);
  ~FileReceiver() override;
  Result<void> deliver(const OutboxMessage& message) override;

 private:
  Mutex mu_;
  std::string path_;
  std::FILE* file_ MEND_GUARDED_BY(mu_) = nullptr;
};

struct DispatcherOptions {
  // Backoff between delivery attempts: base 1 s doubling to a 5 min cap, +-25 % jitter, 10
  // retries (811 s, about 13.5 minutes, of waiting in all) before a message is dead.
  RetryOptions retry = [] {
    RetryOptions r;
    r.name = "notifications";
    r.max_retries = 10;
    r.backoff.cap = std::chrono::minutes(5);
    return r;
  }();
  std::size_t batch = 100;  // messages per deliver_due() pass
  // Each pass claims its batch under a lease in the store's name of `owner` (empty: this
  // process's random id, process_owner_id()), so that nodes sharing one store never deliver the
  // same message at once. What a dead node held is claimable again once its lease expired:
  // within twice the lease of its last claim (30 s at the default 15 s).
  std::string owner;
  Duration lease = std::chrono::seconds(15);
};

struct DeliveryReport {
  int delivered = 0;
  int retry_scheduled = 0;
  int dead = 0;       // gave up, or no receiver of that name is configured
  int held_back = 0;  // due, but an older message for the same receiver and record is pending
  // Claimed, but the lease was lost: it expired before the message's turn in the pass (not sent),
  // or another owner claimed the message during its delivery (the store kept the other owner's
  // completion). Either way this owner does not deliver it again.
  int lease_lost = 0;
};

// "<host>:<pid>:<random hex>", drawn once per process: the dispatcher's default lease owner.
const std::string& process_owner_id();

class NotificationDispatcher {
 public:
  NotificationDispatcher(Store& store, const Clock& clock, RandomSource& random,
                         DispatcherOptions options = {});
  void add_receiver(std::unique_ptr<NotificationReceiver> receiver);
  bool has_receiver(std::string_view name) const;

  // One pass over the due messages: claims a batch (Store::claim_due), delivers each, and
  // completes it with the claim's fence.
  DeliveryReport deliver_due();
  const std::string& owner() const noexcept { return options_.owner; }

 private:
  Store& store_;
  const Clock& clock_;
  RandomSource& random_;
  DispatcherOptions options_;
  RetryPolicy retry_;
  std::map<std::string, std::unique_ptr<NotificationReceiver>, std::less<>> receivers_;
};

}  // namespace mend

#endif  // MEND_RUNTIME_NOTIFIER_H_
