// The daemon's HTTP API (docs/api.md): its routes (on api_router.h), authorization, health and
// agents. Tasks are
// in api_tasks.cc, tickets and incidents in api_records.cc.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <algorithm>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "api_codec.h"
#include "api_router.h"
#include "daemon_impl.h"

namespace mend::server_detail {

namespace net = boost::asio;
using nlohmann::json;

bool DaemonCore::authorized(const HttpRequest& request) const {
  const std::string& token = boot_config_.server.token;
  if (token.empty()) return true;
  const std::string value = request.header("Authorization");
  std::string_view header = value;
  // The scheme is case-insensitive (RFC 9110 section 11.1); one or more spaces follow it.
  constexpr std::string_view kBearer = "bearer";
  if (header.size() <= kBearer.size() || !http_detail::iequals(header.substr(0, 6), kBearer) ||
      header[kBearer.size()] != ' ') {
    return false;
  }
  header.remove_prefix(kBearer.size());
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  return equal_constant_time(std::string(header), token);
}

HttpResponse DaemonCore::unauthorized() {
  HttpResponse r = error_response(401, ErrorType::authentication_failed,
                                  "this call needs the header 'Authorization: Bearer <token>' "
                                  "with the daemon's token (server.token)");
  r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"mend\""});
  return r;
}

std::optional<HttpResponse> DaemonCore::screen(const HttpRequest& head) const {
  // Before the body: a client without the token costs a header, not max_body_bytes.
  if (head.method == "POST" && !authorized(head)) return unauthorized();
  return std::nullopt;
}

void DaemonCore::register_routes() {
  auto reply = [](const Route& r, HttpResponse response) {
    r.responder->respond(std::move(response));
  };
  router_.add("GET", "/healthz", [reply](const Route& r) {
    reply(r, json_response(200, {{"status", "ok"}}));
  });
  router_.add("GET", "/readyz", [this](const Route& r) { api_readyz(r.responder); });
  router_.add("GET", "/metrics", [this, reply](const Route& r) {
    HttpResponse response;
    response.headers.push_back({"Content-Type", "text/plain; version=0.0.4; charset=utf-8"});
    m_.in_flight->with({}).set(static_cast<double>(tasks_.in_flight()));
    response.body = metrics.render();
    reply(r, std::move(response));
  });
  router_.add("GET", "/v1/tasks", [this](const Route& r) { api_tasks(r.responder); });
  router_.add("POST", "/v1/tasks", [this](const Route& r) { api_submit(r.request, r.responder); });
  router_.add("GET", "/v1/tasks/{id}", [this, reply](const Route& r) {
    std::string error;
    std::optional<double> wait = parse_seconds(r.target.query, "wait", &error);
    if (!error.empty()) return reply(r, error_response(400, ErrorType::validation_failed, error));
    api_task(r.params[0], wait.value_or(0), r.responder);
  });
  router_.add("GET", "/v1/events", [this, reply](const Route& r) {
    std::string error;
    std::optional<double> replay = parse_seconds(r.target.query, "replay", &error);
    if (!error.empty()) return reply(r, error_response(400, ErrorType::validation_failed, error));
    events_.subscribe(r.responder, static_cast<std::size_t>(std::min(replay.value_or(0), 256.0)));
  });
  router_.add("POST", "/v1/reload", [this](const Route& r) {
    net::post(*blocking_, [this, responder = r.responder] {
      Result<void> reloaded = detail::guarded([&] { return reload(""); });
      if (reloaded.ok()) {
        responder->respond(json_response(200, {{"status", "reloaded"}}));
      } else {
        responder->respond(
            error_response(422, ErrorType::configuration_error, reloaded.error().message));
      }
    });
  });
  router_.add("GET", "/v1/agents", [this](const Route& r) { api_agents("", r.responder); });
  router_.add("GET", "/v1/agents/{agent}",
              [this](const Route& r) { api_agents(r.params[0], r.responder); });
  router_.add("POST", "/v1/agents/{agent}/circuit",
              [this](const Route& r) { api_circuit(r.params[0], r.request, r.responder); });
  router_.add("POST", "/v1/agents/{agent}/restart", [this, reply](const Route& r) {
    const std::string& agent = r.params[0];
    if (current()->agents.find(agent) == nullptr) {
      return reply(
          r, error_response(404, ErrorType::validation_failed, "unknown agent '" + agent + "'"));
    }
    net::post(*blocking_, [this, agent, responder = r.responder] {
      std::optional<Result<void>> restarted = restart_agent(agent, /*graceful=*/true, "api");
      if (restarted && restarted->ok()) {
        responder->respond(json_response(202, {{"agent", agent}, {"status", "restarted"}}));
      } else if (restarted) {
        responder->respond(
            error_response(500, ErrorType::processing_failed, restarted->error().message));
      } else {
        responder->respond(error_response(409, ErrorType::validation_failed,
                                          "agent '" + agent +
                                              "' is not supervised by mend: it cannot be "
                                              "restarted from here"));
      }
    });
  });
  // Tickets, incidents, and escalations (either kind).
  const std::pair<const char*, std::optional<RecordKind>> collections[] = {
      {"tickets", RecordKind::ticket}, {"incidents", RecordKind::incident}, {"escalations", {}}};
  for (const auto& [name, kind] : collections) {
    const std::string base = std::string("/v1/") + name;
    router_.add("GET", base, [this, kind = kind](const Route& r) {
      auto status = r.target.query.find("status");
      api_records(kind, status == r.target.query.end() ? "" : status->second, r.responder);
    });
    router_.add("GET", base + "/{id}", [this, kind = kind](const Route& r) {
      api_record(kind, r.params[0], "", r.request, r.responder);
    });
    for (const char* action : {"acknowledge", "resolve"}) {
      router_.add("POST", base + "/{id}/" + action, [this, kind = kind, action](const Route& r) {
        api_record(kind, r.params[0], action, r.request, r.responder);
      });
    }
  }
}

void DaemonCore::handle(HttpRequest request, std::shared_ptr<HttpResponder> responder) {
  const Target target = parse_target(request.target);
  if (request.method == "POST" && !authorized(request)) return responder->respond(unauthorized());
  try {
    if (router_.dispatch(request, target, responder)) return;
    const bool outside_v1 = target.segments.empty() || target.segments[0] != "v1";
    responder->respond(error_response(
        404, ErrorType::validation_failed,
        "no such endpoint: " + request.method + " " + target.path +
            (outside_v1 ? " (the API lives under /v1; see docs/api.md)" : " (see docs/api.md)")));
  } catch (const std::exception& e) {
    log("error", "API " + request.method + " " + target.path + ": " + e.what());
    responder->respond(error_response(500, ErrorType::processing_failed, e.what()));
  }
}

void DaemonCore::api_readyz(const std::shared_ptr<HttpResponder>& responder) {
  json agents = json::object();
  const bool store_failing = store_failing_.load();
  bool ready = !stopping_.load() && !store_failing;
  for (const auto& [agent, n] : replicas_.ready_counts()) {
    agents[agent] = n;
    if (n == 0) ready = false;
  }
  json body = {{"status", stopping_.load() ? "stopping" : (ready ? "ready" : "not_ready")},
               {"ready_replicas", agents}};
  if (store_failing) {
    const TaskWriter::Health h = task_writer_->health();
    const EscalationBacklog::Stats e = escalation_backlog_->stats();
    body["store"] = {{"failing", true},
                     {"error", h.last_error.empty() ? e.last_error : h.last_error},
                     {"writes_pending_retry", h.retry_pending},
                     {"escalations_pending_retry", e.pending_occurrences}};
  }
  responder->respond(json_response(ready ? 200 : 503, body));
}

namespace {

// What the agent's balancer (mend/core/replica_balancer.h) knows of one replica.
json balancer_json(const ReplicaSnapshot& b, TimePoint now) {
  json j = {{"outstanding", b.outstanding},
            {"calls", b.calls},
            {"failures", b.failures},
            {"slow_calls", b.slow_calls},
            {"ejected", b.ejected},
            {"ejections", b.ejections},
            {"ejection_multiplier", b.ejection_multiplier},
            {"consecutive_failures", b.consecutive_failures},
            {"window_calls", b.window_calls},
            {"window_failures", b.window_failures},
            {"average_latency_seconds", seconds(b.average_latency)}};
  // Relative, as the circuit's probe_in_seconds: the balancer's time is the daemon's clock, not
  // the wall clock.
  if (b.ejected) j["ejected_for_seconds"] = std::max(0.0, seconds(b.ejected_until - now));
  return j;
}

}  // namespace

void DaemonCore::api_agents(const std::string& only,
                            const std::shared_ptr<HttpResponder>& responder) {
  std::shared_ptr<Generation> g = current();
  if (!only.empty() && g->agents.find(only) == nullptr) {
    return responder->respond(
        error_response(404, ErrorType::validation_failed, "unknown agent '" + only + "'"));
  }
  const TimePoint now = clock_.now();
  std::map<std::string, json> replicas;
  std::map<std::string, std::vector<ReplicaSnapshot>> balanced;  // by agent, taken once each
  {
    for (const Replica& r : replicas_.snapshot()) {
      json j = {{"index", r.index},
                {"url", r.url},
                {"ready", r.health.is_ready()},
                {"started", r.health.is_started()}};
      if (!r.last_probe.empty()) j["last_probe"] = r.last_probe;
      // The balancer's replica i is the agent's endpoint i: found by URL, since the endpoints
      // are the replicas in service only (a scaled agent's starting or retiring replica has
      // none, and shifts the indices of those after it).
      if (const AgentRegistry::Entry* e = g->agents.find(r.agent)) {
        auto [it, fresh] = balanced.try_emplace(r.agent);
        if (fresh) it->second = e->balancer.snapshot(now);
        const std::vector<std::string>& urls = e->info.endpoints;
        const auto at = std::find(urls.begin(), urls.end(), r.url);
        const auto i = static_cast<std::size_t>(at - urls.begin());
        j["in_service"] = at != urls.end();
        if (at != urls.end() && i < it->second.size()) {
          j["balancer"] = balancer_json(it->second[i], now);
        }
      }
      if (!r.process.empty()) {
        j["process"] = r.process;
        if (std::optional<ProcessStatus> st = supervisor_->status(r.process)) {
          // The process whose start mend has taken in (what "ready" is about), not a newer one
          // the supervisor may have spawned a moment ago.
          j["pid"] = r.pid;
          j["running"] = st->running;
          j["restarts"] = st->restarts;
          j["rss_bytes"] = st->rss_bytes;
          if (!st->last_exit.empty()) j["last_exit"] = st->last_exit;
        }
      }
      replicas[r.agent].push_back(std::move(j));
    }
  }
  json list = json::array();
  for (const std::string& name : g->agents.names()) {
    if (!only.empty() && name != only) continue;
    const AgentRegistry::Entry* e = g->agents.find(name);
    const AgentConfig* config = g->config.agent(name);
    CircuitSnapshot snap = e->breaker.snapshot(clock_);
    AgentCounters& c = counters(name);
    json circuit = {{"state", to_string(snap.state)},
                    {"failure_count", snap.failure_count},
                    {"transitions", snap.transitions}};
    if (snap.state == CircuitState::open) {
      circuit["probe_in_seconds"] =
          std::max(0.0, std::chrono::duration<double>(snap.probe_at - clock_.now()).count());
    }
    json agent = {{"name", name},
                  {"supervised", config != nullptr && config->supervised()},
                  {"health", to_string(e->health.load())},
                  {"circuit", circuit},
                  {"in_flight", e->in_flight.load()},
                  {"max_concurrent", e->info.max_concurrent},
                  {"capabilities", e->info.capabilities},
                  {"generalist", e->info.generalist},
                  {"counters",
                   {{"calls", c.calls.load()},
                    {"failures", c.failures.load()},
                    {"retries", c.retries.load()},
                    {"answered_as_fallback", c.answered_as_fallback.load()},
                    {"restarts", c.restarts.load()}}},
                  {"replicas", replicas.count(name) ? replicas[name] : json::array()}};
    if (!only.empty()) return responder->respond(json_response(200, agent));
    list.push_back(std::move(agent));
  }
  responder->respond(json_response(200, {{"agents", list}}));
}

void DaemonCore::api_circuit(const std::string& agent, const HttpRequest& request,
                             const std::shared_ptr<HttpResponder>& responder) {
  std::shared_ptr<Generation> g = current();
  AgentRegistry::Entry* e = g->agents.find(agent);
  if (e == nullptr) {
    return responder->respond(
        error_response(404, ErrorType::validation_failed, "unknown agent '" + agent + "'"));
  }
  Result<json> body = parse_body(request.body);
  if (!body.ok()) {
    return responder->respond(
        error_response(400, ErrorType::validation_failed, body.error().message));
  }
  auto state = body->find("state");
  if (state == body->end() || !state->is_string() || (*state != "open" && *state != "closed")) {
    return responder->respond(error_response(
        400, ErrorType::validation_failed,
        "the body must be {\"state\": \"open\"} (hold the circuit open until closed) or "
        "{\"state\": \"closed\"} (close it and forget its counts)"));
  }
  if (*state == "open") {
    e->breaker.isolate(clock_);
  } else {
    e->breaker.reset(clock_);
  }
  log("info", "circuit of " + agent + " forced " + state->get<std::string>() + " through the API");
  responder->respond(json_response(
      200, {{"agent", agent}, {"circuit", {{"state", to_string(e->breaker.state())}}}}));
}
}  // namespace mend::server_detail
