#include "mend/runtime/agent_client.h"

#include <nlohmann/json.hpp>

namespace mend {
namespace {

using nlohmann::json;

std::vector<HttpHeader> json_headers(const AgentClientOptions& options) {
  std::vector<HttpHeader> h{{"Content-Type", "application/json"}, {"Accept", "application/json"}};
  if (!options.bearer_token.empty()) {
    h.push_back({"Authorization", "Bearer " + options.bearer_token});
  }
  return h;
}

std::string endpoint_of(const AgentInfo& agent, int replica) {
  if (agent.endpoints.empty()) return {};
  const auto i = static_cast<std::size_t>(replica) % agent.endpoints.size();
  std::string base = agent.endpoints[i];
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base;
}

Error no_endpoint(const AgentInfo& agent) {
  return Error::classified_as(ErrorType::configuration_error, Severity::high,
                              "agent '" + agent.name + "' has no endpoint");
}

std::optional<Duration> retry_after_header(const HttpResponse& response) {
  const std::string v = response.header("Retry-After");
  if (v.empty()) return std::nullopt;
  // Delta-seconds only; an HTTP date is rare from agents and is ignored rather than misread.
  std::size_t used = 0;
  try {
    const double seconds = std::stod(v, &used);
    if (used == v.size() && seconds >= 0) return from_seconds(seconds);
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace

bool json_nesting_within(std::string_view text, int max_depth) noexcept {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

namespace {

// Parses untrusted JSON: discarded when it is not JSON or nests deeper than kMaxJsonDepth.
json parse_untrusted(std::string_view text) {
  if (!json_nesting_within(text, kMaxJsonDepth)) return json(json::value_t::discarded);
  return json::parse(text, nullptr, /*allow_exceptions=*/false);
}

std::string shorten(std::string_view text, std::size_t limit = 200) {
  if (text.size() <= limit) return std::string(text);
  return std::string(text.substr(0, limit)) + "...";
}

}  // namespace

Result<std::string> task_request_body(const Task& task, int attempt) {
  json payload = parse_untrusted(task.payload.empty() ? std::string_view("{}") : task.payload);
  if (payload.is_discarded()) {
    Error e = Error::classified_as(ErrorType::validation_failed, Severity::low,
                                   "task " + task.id +
                                       ": payload is not valid JSON (or nests deeper than " +
                                       std::to_string(kMaxJsonDepth) + " levels)");
    e.kind = std::string(kInvalidTaskKind);
    return e;
  }
  json body = {
      {"id", task.id}, {"type", task.type}, {"attempt", attempt}, {"payload", std::move(payload)}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> interpret_task_response(const HttpResponse& response,
                                            const std::string& agent) {
  json body = parse_untrusted(response.body);
  if (response.status >= 200 && response.status < 300) {
    if (body.is_discarded()) {
      return Error::classified_as(ErrorType::processing_failed, Severity::medium,
                                  "agent '" + agent + "' answered " +
                                      std::to_string(response.status) +
                                      " with a body that is not "
                                      "JSON: " +
                                      shorten(response.body));
    }
    return body.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  // The agent's name stays out of the message: the classifier's keyword rules read it, and an
  // agent called "db-connector" must not make every 404 a connection error.
  (void)agent;
  std::string message = "answered " + std::to_string(response.status);
  std::optional<Duration> retry_after = retry_after_header(response);
  std::optional<ErrorType> type;
  std::optional<Severity> severity;
  if (!body.is_discarded() && body.is_object() && body.contains("error") &&
      body["error"].is_object()) {
    const json& e = body["error"];
    if (auto it = e.find("message"); it != e.end() && it->is_string()) {
      message += ": " + shorten(it->get<std::string>(), 1000);
    }
    if (auto it = e.find("type"); it != e.end() && it->is_string()) {
      type = parse_error_type(it->get<std::string>());
      if (!type) message += " (unknown error type '" + shorten(it->get<std::string>(), 60) + "')";
    }
    if (auto it = e.find("severity"); it != e.end() && it->is_string()) {
      severity = parse_severity(it->get<std::string>());
    }
    if (auto it = e.find("retry_after");
        it != e.end() && it->is_number() && it->get<double>() >= 0) {
      retry_after = from_seconds(it->get<double>());
    }
  } else if (!response.body.empty()) {
    message += ": " + shorten(response.body);
  }
  Error error = Error::http(response.status, std::move(message), retry_after);
  if (type) {
    // The agent knows best what went wrong; the status alone would only say "500".
    error.type = *type;
    error.severity = severity.value_or(default_severity(*type));
    error.classified = true;
  }
  return error;
}

ProbeResult interpret_health_response(const HttpResponse& response) {
  ProbeResult r;
  if (response.status != 200 && response.status != 503) {
    r.detail = "health answered " + std::to_string(response.status);
    return r;
  }
  json body = parse_untrusted(response.body);
  r.answered = true;
  std::optional<HealthState> state;
  if (!body.is_discarded() && body.is_object() && body.contains("status") &&
      body["status"].is_string()) {
    state = parse_health_state(body["status"].get<std::string>());
    if (!state) {
      r.detail =
          "health status '" + shorten(body["status"].get<std::string>(), 40) + "' is unknown";
    }
  } else {
    r.detail = "health answer has no \"status\"";
  }
  // As a k8s HTTP probe: without a status it says, 200 passes and 503 fails.
  r.reported =
      state.value_or(response.status == 200 ? HealthState::unknown : HealthState::unhealthy);
  if (!body.is_object()) return r;
  if (auto it = body.find("metrics"); it != body.end() && it->is_object()) {
    for (auto m = it->begin(); m != it->end(); ++m) {
      if (m.value().is_number()) r.metrics[m.key()] = m.value().get<double>();
    }
  }
  if (auto it = body.find("detail"); it != body.end() && it->is_string()) {
    r.detail = shorten(it->get<std::string>());
  }
  return r;
}

HttpAgentInvoker::HttpAgentInvoker(HttpClient& http, AgentClientOptions options)
    : http_(http), options_(std::move(options)) {}

Result<std::string> HttpAgentInvoker::invoke(const AgentInfo& agent, int replica, const Task& task,
                                             int attempt) {
  const std::string base = endpoint_of(agent, replica);
  if (base.empty()) return no_endpoint(agent);
  Result<std::string> body = task_request_body(task, attempt);
  if (!body.ok()) return std::move(body).error();
  Result<HttpResponse> r =
      http_.request_sync("POST", base + "/task", json_headers(options_), std::move(*body),
                         task.attempt_timeout.value_or(options_.task_timeout));
  if (!r.ok()) return std::move(r).error();
  return interpret_task_response(*r, agent.name);
}

boost::asio::awaitable<Result<std::string>> HttpAgentInvoker::invoke_async(const AgentInfo& agent,
                                                                           int replica,
                                                                           const Task& task,
                                                                           int attempt) {
  return invoke_async(agent, replica, task, attempt, nullptr);
}

boost::asio::awaitable<Result<std::string>> HttpAgentInvoker::invoke_async(
    const AgentInfo& agent, int replica, const Task& task, int attempt,
    std::shared_ptr<CallCancel> cancel) {
  const std::string base = endpoint_of(agent, replica);
  if (base.empty()) co_return no_endpoint(agent);
  Result<std::string> body = task_request_body(task, attempt);
  if (!body.ok()) co_return std::move(body).error();
  // Named, not a temporary next to co_await: GCC 12 destroys such temporaries twice.
  auto request =
      http_.request("POST", base + "/task", json_headers(options_), std::move(*body),
                    task.attempt_timeout.value_or(options_.task_timeout), std::move(cancel));
  Result<HttpResponse> r = co_await std::move(request);
  if (!r.ok()) co_return std::move(r).error();
  co_return interpret_task_response(*r, agent.name);
}

HttpAgentOperations::HttpAgentOperations(HttpClient& http, AgentRegistry& agents,
                                         const Clock& clock, Sleeper& sleeper,
                                         AgentClientOptions options)
    : http_(http),
      agents_(agents),
      clock_(clock),
      sleeper_(sleeper),
      options_(std::move(options)) {}

ProbeResult HttpAgentOperations::probe(const std::string& agent) {
  const AgentRegistry::Entry* entry = agents_.find(agent);
  ProbeResult best;
  if (entry == nullptr || entry->info.endpoints.empty()) {
    best.detail = "agent '" + agent + "' is unknown or has no endpoint";
    return best;
  }
  best.detail = "no replica answered";
  // One reading of an answer everywhere: observed_health() (mend/core/health.h).
  auto rank = [](const ProbeResult& p) {
    if (!p.answered) return 0;
    switch (observed_health(p)) {
      case HealthState::healthy:
        return 3;
      case HealthState::degraded:
        return 2;
      default:
        return 1;
    }
  };
  for (int i = 0; i < entry->info.replicas(); ++i) {
    Result<HttpResponse> r = http_.request_sync("GET", endpoint_of(entry->info, i) + "/health",
                                                json_headers(options_), {}, options_.probe_timeout);
    ProbeResult p;
    if (r.ok()) {
      p = interpret_health_response(*r);
    } else {
      p.detail = r.error().message;
    }
    if (rank(p) > rank(best)) best = std::move(p);
  }
  return best;
}

Result<void> HttpAgentOperations::admin(const std::string& agent, const std::string& hook,
                                        std::string body) {
  const AgentRegistry::Entry* entry = agents_.find(agent);
  if (entry == nullptr || entry->info.endpoints.empty()) {
    return Error::classified_as(ErrorType::configuration_error, Severity::high,
                                "agent '" + agent + "' is unknown or has no endpoint");
  }
  for (int i = 0; i < entry->info.replicas(); ++i) {
    const std::string url = endpoint_of(entry->info, i) + "/admin/" + hook;
    Result<HttpResponse> r =
        http_.request_sync("POST", url, json_headers(options_), body, options_.admin_timeout);
    if (!r.ok()) return std::move(r).error();
    if (r->status == 404) {
      return Error::classified_as(ErrorType::configuration_error, Severity::high,
                                  "agent '" + agent + "' has no admin hook " + hook);
    }
    if (r->status < 200 || r->status >= 300) {
      return Error::http(r->status, "POST " + url + " answered " + std::to_string(r->status));
    }
  }
  return {};
}

Result<void> HttpAgentOperations::clear_caches(const std::string& agent) {
  return admin(agent, "clear-caches", "{}");
}
Result<void> HttpAgentOperations::reset_connection_pools(const std::string& agent) {
  return admin(agent, "reset-connections", "{}");
}
Result<void> HttpAgentOperations::increase_connection_limits(const std::string& agent) {
  return admin(agent, "increase-limits", "{}");
}
Result<void> HttpAgentOperations::reconnect_database(const std::string& agent) {
  return admin(agent, "reconnect-database", "{}");
}
Result<void> HttpAgentOperations::restart(const std::string& agent, bool graceful) {
  return admin(agent, "restart", graceful ? R"({"graceful":true})" : R"({"graceful":false})");
}

Result<void> HttpAgentOperations::wait_until_ready(const std::string& agent, Duration timeout) {
  const TimePoint until = clock_.now() + timeout;
  // Bounded by the timeout on the clock, and by a count so that a clock that does not move
  // (a manual clock with a sleeper that does not advance it) cannot spin forever.
  const auto max_polls = static_cast<std::int64_t>(
      timeout / std::max(options_.ready_poll_interval, Duration(std::chrono::milliseconds(1))) + 2);
  std::string last;
  for (std::int64_t i = 0; i < max_polls; ++i) {
    ProbeResult p = probe(agent);
    if (observed_health(p) != HealthState::unhealthy) return {};
    last = p.detail;
    if (clock_.now() >= until) break;
    sleeper_.sleep_for(std::min(options_.ready_poll_interval, until - clock_.now()), {});
  }
  return Error::classified_as(ErrorType::service_unavailable, Severity::high,
                              "agent '" + agent + "' not ready after " +
                                  std::to_string(to_seconds(timeout)) + " s: " + last);
}

Result<void> fill_task_fields(Task& task) {
  json payload = parse_untrusted(task.payload.empty() ? std::string_view("{}") : task.payload);
  if (payload.is_discarded() || !payload.is_object()) {
    Error e = Error::classified_as(ErrorType::validation_failed, Severity::low,
                                   "task " + task.id + ": payload is not a JSON object");
    e.kind = std::string(kInvalidTaskKind);
    return e;
  }
  for (auto it = payload.begin(); it != payload.end(); ++it) {
    if (it.value().is_string()) task.fields.try_emplace(it.key(), it.value().get<std::string>());
  }
  return {};
}

}  // namespace mend
