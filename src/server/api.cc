// The daemon's HTTP API (docs/api.md): the router, authorization, health and agents. Tasks are
// in api_tasks.cc, tickets and incidents in api_records.cc.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "api_codec.h"
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

void DaemonCore::handle(HttpRequest request, std::shared_ptr<HttpResponder> responder) {
  const Target t = parse_target(request.target);
  const std::vector<std::string>& s = t.segments;
  const std::string& method = request.method;
  const bool get = method == "GET" || method == "HEAD";
  const bool post = method == "POST";
  auto reply = [&](HttpResponse r) { responder->respond(std::move(r)); };
  auto not_allowed = [&](const char* allowed) {
    HttpResponse r =
        error_response(405, ErrorType::validation_failed,
                       method + " is not allowed on " + t.path + " (allowed: " + allowed + ")");
    r.headers.push_back({"Allow", allowed});
    reply(std::move(r));
  };

  if (post && !authorized(request)) return reply(unauthorized());

  try {
    if (s.size() == 1 && s[0] == "healthz") {
      if (!get) return not_allowed("GET");
      return reply(json_response(200, {{"status", "ok"}}));
    }
    if (s.size() == 1 && s[0] == "readyz") {
      if (!get) return not_allowed("GET");
      return api_readyz(responder);
    }
    if (s.size() == 1 && s[0] == "metrics") {
      if (!get) return not_allowed("GET");
      HttpResponse r;
      r.headers.push_back({"Content-Type", "text/plain; version=0.0.4; charset=utf-8"});
      m_.in_flight->with({}).set(static_cast<double>(tasks_.in_flight()));
      r.body = metrics.render();
      return reply(std::move(r));
    }
    if (s.empty() || s[0] != "v1") {
      return reply(error_response(404, ErrorType::validation_failed,
                                  "no such endpoint: " + method + " " + t.path +
                                      " (the API lives under /v1; see docs/api.md)"));
    }
    if (s.size() < 2) {
      return reply(
          error_response(404, ErrorType::validation_failed,
                         "no such endpoint: " + method + " " + t.path + " (see docs/api.md)"));
    }
    std::string error;
    if (s.size() == 2 && s[1] == "tasks") {
      if (post) return api_submit(request, responder);
      if (get) return api_tasks(responder);
      return not_allowed("GET, POST");
    }
    if (s.size() == 3 && s[1] == "tasks") {
      if (!get) return not_allowed("GET");
      std::optional<double> wait = parse_seconds(t.query, "wait", &error);
      if (!error.empty()) return reply(error_response(400, ErrorType::validation_failed, error));
      return api_task(s[2], wait.value_or(0), responder);
    }
    if (s.size() == 2 && s[1] == "events") {
      if (!get) return not_allowed("GET");
      std::optional<double> replay = parse_seconds(t.query, "replay", &error);
      if (!error.empty()) return reply(error_response(400, ErrorType::validation_failed, error));
      events_.subscribe(responder, static_cast<std::size_t>(std::min(replay.value_or(0), 256.0)));
      return;
    }
    if (s.size() == 2 && s[1] == "reload") {
      if (!post) return not_allowed("POST");
      net::post(*blocking_, [this, responder] {
        Result<void> r = detail::guarded([&] { return reload(""); });
        if (r.ok()) {
          responder->respond(json_response(200, {{"status", "reloaded"}}));
        } else {
          responder->respond(
              error_response(422, ErrorType::configuration_error, r.error().message));
        }
      });
      return;
    }
    if (s[1] == "agents" && (s.size() == 2 || s.size() == 3)) {
      if (!get) return not_allowed("GET");
      return api_agents(s.size() == 3 ? s[2] : "", responder);
    }
    if (s[1] == "agents" && s.size() == 4 && s[3] == "circuit") {
      if (!post) return not_allowed("POST");
      return api_circuit(s[2], request, responder);
    }
    if (s[1] == "agents" && s.size() == 4 && s[3] == "restart") {
      if (!post) return not_allowed("POST");
      std::shared_ptr<Generation> g = current();
      if (g->agents.find(s[2]) == nullptr) {
        return reply(
            error_response(404, ErrorType::validation_failed, "unknown agent '" + s[2] + "'"));
      }
      std::string agent = s[2];
      net::post(*blocking_, [this, agent, responder] {
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
      return;
    }
    std::optional<RecordKind> kind;
    bool records = false;
    if (s[1] == "tickets") {
      kind = RecordKind::ticket;
      records = true;
    } else if (s[1] == "incidents") {
      kind = RecordKind::incident;
      records = true;
    } else if (s[1] == "escalations") {
      records = true;
    }
    if (records && s.size() == 2) {
      if (!get) return not_allowed("GET");
      std::string status = t.query.count("status") ? t.query.at("status") : "";
      return api_records(kind, status, responder);
    }
    if (records && s.size() == 3) {
      if (!get) return not_allowed("GET");
      return api_record(kind, s[2], "", request, responder);
    }
    if (records && s.size() == 4 && (s[3] == "acknowledge" || s[3] == "resolve")) {
      if (!post) return not_allowed("POST");
      return api_record(kind, s[2], s[3], request, responder);
    }
    return reply(
        error_response(404, ErrorType::validation_failed,
                       "no such endpoint: " + method + " " + t.path + " (see docs/api.md)"));
  } catch (const std::exception& e) {
    log("error", "API " + method + " " + t.path + ": " + e.what());
    return reply(error_response(500, ErrorType::processing_failed, e.what()));
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

void DaemonCore::api_agents(const std::string& only,
                            const std::shared_ptr<HttpResponder>& responder) {
  std::shared_ptr<Generation> g = current();
  if (!only.empty() && g->agents.find(only) == nullptr) {
    return responder->respond(
        error_response(404, ErrorType::validation_failed, "unknown agent '" + only + "'"));
  }
  std::map<std::string, json> replicas;
  {
    for (const Replica& r : replicas_.snapshot()) {
      json j = {{"index", r.index},
                {"url", r.url},
                {"ready", r.health.is_ready()},
                {"started", r.health.is_started()}};
      if (!r.last_probe.empty()) j["last_probe"] = r.last_probe;
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
