#include "mend/runtime/notifier.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

namespace mend {
namespace {

using nlohmann::json;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<json> parse_payload(std::string_view payload) {
  json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("event") || !j["event"].is_string()) {
    return Error::classified_as(ErrorType::validation_failed, Severity::low,
                                "notification payload is not mend's notification JSON");
  }
  return j;
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string();
}

Result<void> post_json(HttpClient& http, const std::string& url, std::vector<HttpHeader> headers,
                       std::string body, Duration timeout) {
  headers.push_back({"Content-Type", "application/json"});
  Result<HttpResponse> r =
      http.request_sync("POST", url, std::move(headers), std::move(body), timeout);
  // A receiver's URL is a secret (a Slack or webhook URL's path is its key): errors, which land
  // in the outbox's last_error and in logs, name only its origin.
  const std::string shown = url_origin(url).empty() ? "the receiver" : url_origin(url) + "/...";
  if (!r.ok()) {
    Error error = std::move(r).error();
    for (const std::string& secret : {url, without_credentials(url)}) {
      for (std::size_t at = error.message.find(secret); at != std::string::npos;
           at = error.message.find(secret, at + shown.size())) {
        error.message.replace(at, secret.size(), shown);
      }
    }
    return error;
  }
  if (r->status < 200 || r->status >= 300) {
    std::optional<Duration> retry_after;
    const std::string ra = r->header("Retry-After");
    if (!ra.empty() && ra.find_first_not_of("0123456789") == std::string::npos && ra.size() < 7) {
      retry_after = std::chrono::seconds(std::stoi(ra));
    }
    return Error::http(r->status, "POST " + shown + " answered " + std::to_string(r->status),
                       retry_after);
  }
  return {};
}

// Delivery failures worth another try: the network, the receiver's own trouble, throttling.
bool delivery_retryable(const Error& e) {
  if (e.classified &&
      (e.category() == ErrorCategory::logic || e.type == ErrorType::configuration_error)) {
    return false;  // mend's own mistake: sending it again will not mend it
  }
  if (e.kind == "configuration") return false;  // a receiver URL that does not parse
  if (!e.status) return true;
  return *e.status >= 500 || *e.status == 429 || *e.status == 408;
}

}  // namespace

std::string_view pagerduty_severity(Severity level) noexcept {
  switch (level) {
    case Severity::critical:
      return "critical";
    case Severity::high:
      return "error";
    case Severity::medium:
      return "warning";
    case Severity::low:
      return "info";
  }
  return "warning";
}

Result<std::string> slack_body(std::string_view payload) {
  Result<json> p = parse_payload(payload);
  if (!p.ok()) return std::move(p).error();
  const json& j = *p;
  const std::string event = str(j, "event");
  const std::string record = str(j, "record");
  std::string headline;
  if (event == "trigger") {
    headline = ":rotating_light: " + record + " opened: " + str(j, "title");
  } else if (event == "reescalate") {
    headline = ":arrow_double_up: " + record + " re-escalated to " + str(j, "level") +
               " (SLA passed unacknowledged): " + str(j, "title");
  } else if (event == "acknowledge") {
    headline = ":eyes: " + record + " acknowledged by " + str(j, "actor");
  } else if (event == "resolve") {
    headline = ":white_check_mark: " + record + " resolved by " + str(j, "actor");
  } else {
    headline = record + " " + event;
  }
  std::string details = "*Level:* " + str(j, "level") + "   *Agent:* " + str(j, "agent") +
                        "   *Task type:* " + str(j, "task_type") + "\n*Error:* " +
                        str(j, "error_type") + " - " + str(j, "description") + "\n*SLA due:* " +
                        str(j, "sla_due");
  if (auto it = j.find("occurrences"); it != j.end() && it->is_number_integer()) {
    details += "   *Occurrences:* " + std::to_string(it->get<std::int64_t>());
  }
  if (!str(j, "assignee").empty()) details += "   *Assignee:* " + str(j, "assignee");
  if (!str(j, "war_room_url").empty()) {
    details += "\n*War room:* <" + str(j, "war_room_url") + ">";
  }
  json body = {
      {"text", headline},
      {"blocks",
       json::array({{{"type", "section"}, {"text", {{"type", "mrkdwn"}, {"text", headline}}}},
                    {{"type", "section"}, {"text", {{"type", "mrkdwn"}, {"text", details}}}}})}};
  return dump(body);
}

Result<std::string> pagerduty_body(std::string_view payload, const std::string& routing_key) {
  Result<json> p = parse_payload(payload);
  if (!p.ok()) return std::move(p).error();
  const json& j = *p;
  const std::string event = str(j, "event");
  std::string action = "trigger";  // trigger and reescalate
  if (event == "acknowledge") action = "acknowledge";
  if (event == "resolve") action = "resolve";
  std::int64_t record_id = 0;
  if (auto it = j.find("record_id"); it != j.end() && it->is_number_integer()) {
    record_id = it->get<std::int64_t>();
  }
  json body = {{"routing_key", routing_key},
               {"event_action", action},
               {"dedup_key", "mend-" + str(j, "fingerprint") + "-" + std::to_string(record_id)}};
  if (action == "trigger") {
    const Severity level = parse_severity(str(j, "level")).value_or(Severity::medium);
    std::string summary = "[" + str(j, "record") + "] " + str(j, "title");
    if (summary.size() > 1024) summary.resize(1024);  // PagerDuty's limit
    body["payload"] = {{"summary", summary},
                       {"source", str(j, "agent").empty() ? "mend" : str(j, "agent")},
                       {"severity", std::string(pagerduty_severity(level))},
                       {"component", str(j, "agent")},
                       {"group", str(j, "task_type")},
                       {"class", str(j, "error_type")},
                       {"custom_details", j}};
    if (!str(j, "war_room_url").empty()) {
      body["links"] = json::array({{{"href", str(j, "war_room_url")}, {"text", "War room"}}});
    }
  }
  return dump(body);
}

WebhookReceiver::WebhookReceiver(std::string name, HttpClient& http, std::string url,
                                 std::vector<HttpHeader> headers, Duration timeout)
    : NotificationReceiver(std::move(name)),
      http_(http),
      url_(std::move(url)),
      headers_(std::move(headers)),
      timeout_(timeout) {}

Result<void> WebhookReceiver::deliver(const OutboxMessage& message) {
  std::vector<HttpHeader> headers = headers_;
  headers.push_back({"Idempotency-Key", name() + ":" + message.dedup_key});
  headers.push_back({"X-Mend-Event", message.event});
  return post_json(http_, url_, std::move(headers), message.payload, timeout_);
}

SlackReceiver::SlackReceiver(std::string name, HttpClient& http, std::string webhook_url,
                             Duration timeout)
    : NotificationReceiver(std::move(name)),
      http_(http),
      url_(std::move(webhook_url)),
      timeout_(timeout) {}

Result<void> SlackReceiver::deliver(const OutboxMessage& message) {
  Result<std::string> body = slack_body(message.payload);
  if (!body.ok()) return std::move(body).error();
  return post_json(http_, url_, {}, std::move(*body), timeout_);
}

PagerDutyReceiver::PagerDutyReceiver(std::string name, HttpClient& http, std::string routing_key,
                                     std::string url, Duration timeout)
    : NotificationReceiver(std::move(name)),
      http_(http),
      routing_key_(std::move(routing_key)),
      url_(std::move(url)),
      timeout_(timeout) {}

Result<void> PagerDutyReceiver::deliver(const OutboxMessage& message) {
  Result<std::string> body = pagerduty_body(message.payload, routing_key_);
  if (!body.ok()) return std::move(body).error();
  return post_json(http_, url_, {}, std::move(*body), timeout_);
}

FileReceiver::FileReceiver(std::string name, std::string path)
    : NotificationReceiver(std::move(name)), path_(std::move(path)) {}

FileReceiver::~FileReceiver() {
  if (file_ != nullptr && file_ != stderr) std::fclose(file_);
}

Result<void> FileReceiver::deliver(const OutboxMessage& message) {
  MutexLock lock(mu_);
  if (file_ == nullptr) {
    if (path_ == "-") {
      file_ = stderr;
    } else {
      // Created readable by its owner only: notifications name agents, errors and war rooms.
      const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
      file_ = fd < 0 ? nullptr : ::fdopen(fd, "a");
      if (file_ == nullptr && fd >= 0) ::close(fd);
    }
    if (file_ == nullptr) {
      return Error::classified_as(ErrorType::disk_full, Severity::high,
                                  "cannot open notification file " + path_);
    }
  }
  json line = {{"receiver", name()}, {"delivery_key", message.dedup_key}, {"event", message.event}};
  json payload = json::parse(message.payload, nullptr, false);
  line["notification"] = payload.is_discarded() ? json(message.payload) : payload;
  const std::string text = dump(line) + "\n";
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0) {
    return Error::classified_as(ErrorType::disk_full, Severity::high,
                                "cannot write notification file " + path_);
  }
  return {};
}

NotificationDispatcher::NotificationDispatcher(Store& store, const Clock& clock,
                                               RandomSource& random, DispatcherOptions options)
    : store_(store),
      clock_(clock),
      random_(random),
      options_(std::move(options)),
      retry_(options_.retry) {
  if (options_.owner.empty()) options_.owner = process_owner_id();
}

const std::string& process_owner_id() {
  static const std::string id = [] {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    std::random_device device;
    const std::uint64_t draw = (std::uint64_t{device()} << 32) | device();
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, ":%ld:%016llx", static_cast<long>(::getpid()),
                  static_cast<unsigned long long>(draw));
    return std::string(host[0] != '\0' ? host : "mend") + suffix;
  }();
  return id;
}

void NotificationDispatcher::add_receiver(std::unique_ptr<NotificationReceiver> receiver) {
  std::string name = receiver->name();
  receivers_[std::move(name)] = std::move(receiver);
}

bool NotificationDispatcher::has_receiver(std::string_view name) const {
  return receivers_.find(name) != receivers_.end();
}

DeliveryReport NotificationDispatcher::deliver_due() {
  DeliveryReport report;
  auto completed = [&](bool kept) {
    if (!kept) ++report.lease_lost;  // another owner claimed it since: its state stands
    return kept;
  };
  for (const OutboxMessage& m :
       store_.claim_due(clock_.wall_now(), options_.batch, options_.owner, options_.lease)) {
    auto it = receivers_.find(m.receiver);
    if (it == receivers_.end()) {
      if (completed(store_.mark_failed(m.id, m.fence, m.attempts, clock_.wall_now(),
                                       "no receiver named '" + m.receiver + "' is configured",
                                       /*dead=*/true))) {
        ++report.dead;
      }
      continue;
    }
    if (store_.has_older_pending(m)) {
      ++report.held_back;  // its predecessor for this receiver and record goes first
      continue;
    }
    if (clock_.wall_now() >= m.lease_until) {
      // Earlier deliveries of this pass outlasted the claim: another node may hold it by now.
      // Not sent; the next claim (this node's or another's) takes it with a new fence.
      ++report.lease_lost;
      continue;
    }
    // A receiver that throws fails this delivery, not the pass.
    Result<void> sent = detail::guarded([&]() -> Result<void> { return it->second->deliver(m); });
    const WallTime now = clock_.wall_now();
    if (sent.ok()) {
      if (completed(store_.mark_delivered(m.id, m.fence, now))) ++report.delivered;
      continue;
    }
    const Error& error = sent.error();
    RetryDecision d;
    if (delivery_retryable(error)) {
      // Decided by mend's retry policy, as a transient failure of the receiver.
      Error transient = error;
      transient.type = ErrorType::temporary_unavailable;
      transient.severity = Severity::medium;
      transient.classified = true;
      d = retry_.decide(m.attempts, transient, clock_.now(), std::nullopt, Duration{},
                        random_.next_unit());
    }
    const int attempts = m.attempts + 1;
    if (d.retry) {
      if (completed(store_.mark_failed(
              m.id, m.fence, attempts,
              now + std::chrono::duration_cast<WallTime::duration>(d.delay), error.describe(),
              /*dead=*/false))) {
        ++report.retry_scheduled;
      }
    } else if (completed(
                   store_.mark_failed(m.id, m.fence, attempts, now, error.describe(), true))) {
      ++report.dead;
    }
  }
  return report;
}

}  // namespace mend
