// The daemon's HTTP API (docs/api.md): tasks, agents and circuits, tickets and incidents,
// health, metrics and the event stream.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <nlohmann/json.hpp>
#include <set>

#include "daemon_impl.h"
#include "mend/async_workflow.h"
#include "mend/journal.h"

namespace mend::server_detail {
namespace {

namespace net = boost::asio;
using nlohmann::json;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

HttpResponse json_response(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.headers.push_back({"Content-Type", "application/json"});
  r.body = dump(body);
  return r;
}

HttpResponse raw_json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers.push_back({"Content-Type", "application/json"});
  r.body = std::move(body);
  return r;
}

HttpResponse error_response(int status, ErrorType type, const std::string& message) {
  return json_response(status, {{"error", {{"type", to_string(type)}, {"message", message}}}});
}

// The target split into path segments and query parameters (percent-decoded).
struct Target {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
  std::string path;
};

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int value = 0;
      auto [p, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
      if (ec == std::errc() && p == in.data() + i + 3) {
        out.push_back(static_cast<char>(value));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i] == '+' ? ' ' : in[i]);
  }
  return out;
}

Target parse_target(std::string_view target) {
  Target t;
  std::string_view path = target;
  if (std::size_t q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
      std::size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      std::size_t eq = pair.find('=');
      std::string key = percent_decode(pair.substr(0, eq));
      std::string value = eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1));
      if (!key.empty()) t.query[key] = value;
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  t.path = std::string(path);
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    std::size_t slash = path.find('/');
    t.segments.push_back(percent_decode(path.substr(0, slash)));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return t;
}

// A non-negative number of seconds from a query parameter; nullopt when absent, an error
// message when malformed.
std::optional<double> parse_seconds(const std::map<std::string, std::string>& query,
                                    const std::string& name, std::string* error) {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  double value = 0;
  auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), value);
  if (ec != std::errc() || p != it->second.data() + it->second.size() || value < 0 ||
      !(value < 1e9)) {
    *error =
        "query parameter '" + name + "' must be a number of seconds >= 0, not '" + it->second + "'";
    return std::nullopt;
  }
  return value;
}

// Parses an API request body: an object, at most kMaxJsonDepth deep. Empty body: {}.
Result<json> parse_body(const std::string& body) {
  if (body.empty()) return json::object();
  if (!json_nesting_within(body)) {
    return Error::classified_as(
        ErrorType::validation_failed, Severity::low,
        "the request body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Parse again with exceptions for the position of the mistake.
    try {
      json discarded = json::parse(body);
      (void)discarded;
    } catch (const json::parse_error& e) {
      return Error::classified_as(ErrorType::validation_failed, Severity::low,
                                  std::string("malformed JSON: ") + e.what());
    }
    return Error::classified_as(ErrorType::validation_failed, Severity::low, "malformed JSON");
  }
  if (!j.is_object()) {
    return Error::classified_as(ErrorType::validation_failed, Severity::low,
                                "the request body must be a JSON object");
  }
  return j;
}

std::string iso(WallTime t) {
  return to_iso8601(t);
}

json record_json(const EscalationRecord& r) {
  json j = {{"id", r.display_id()},
            {"number", r.id},
            {"kind", to_string(r.kind)},
            {"status", to_string(r.status)},
            {"level", to_string(r.level)},
            {"tier", r.tier},
            {"priority", r.priority},
            {"title", r.title},
            {"description", r.description},
            {"agent", r.agent},
            {"task_type", r.task_type},
            {"error_type", to_string(r.error_type)},
            {"channel", r.channel},
            {"occurrences", r.occurrences},
            {"created_at", iso(r.created_at)},
            {"last_seen_at", iso(r.last_seen_at)},
            {"sla_due", iso(r.sla_due)}};
  if (!r.assignee.empty()) j["assignee"] = r.assignee;
  if (r.review_at) j["review_at"] = iso(*r.review_at);
  if (r.acknowledged_at) {
    j["acknowledged_at"] = iso(*r.acknowledged_at);
    j["acknowledged_by"] = r.acknowledged_by;
  }
  if (r.resolved_at) {
    j["resolved_at"] = iso(*r.resolved_at);
    j["resolved_by"] = r.resolved_by;
  }
  if (!r.war_room_url.empty()) j["war_room_url"] = r.war_room_url;
  return j;
}

// "TKT-3", "INC-7" or "3": the record number, and the kind the prefix names.
std::optional<std::pair<std::int64_t, std::optional<RecordKind>>> parse_record_id(
    const std::string& text) {
  std::string_view digits = text;
  std::optional<RecordKind> kind;
  if (text.rfind("TKT-", 0) == 0) {
    kind = RecordKind::ticket;
    digits.remove_prefix(4);
  } else if (text.rfind("INC-", 0) == 0) {
    kind = RecordKind::incident;
    digits.remove_prefix(4);
  }
  std::int64_t id = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (ec != std::errc() || p != digits.data() + digits.size() || id <= 0) return std::nullopt;
  return std::make_pair(id, kind);
}

bool equal_constant_time(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string sha256_hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof digest);
  for (unsigned char c : digest) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

// Limits on what clients name things with: ids travel in URLs and logs, names in logs and records.
constexpr std::size_t kMaxTaskIdBytes = 128;
constexpr std::size_t kMaxIdempotencyKeyBytes = 256;
constexpr std::size_t kMaxActorBytes = 200;

// Visible ASCII but for what a URL path segment or a log line would misread.
bool is_plain_id(std::string_view id) {
  return std::all_of(id.begin(), id.end(), [](char c) {
    return c > ' ' && c < 0x7f && c != '/' && c != '?' && c != '#' && c != '%' && c != '"' &&
           c != '\\';
  });
}

// No control characters (a newline would forge a log line); UTF-8 otherwise welcome.
bool is_printable_text(std::string_view text) {
  return std::none_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

bool idempotent_type(const TasksConfig& tasks, const std::string& type) {
  return std::find(tasks.idempotent_types.begin(), tasks.idempotent_types.end(), type) !=
         tasks.idempotent_types.end();
}

// The task as the store keeps it to run it again: what the API parsed, not the client's bytes.
std::string task_request_json(const Task& task) {
  json j = {{"type", task.type}, {"agent", task.agent}, {"capabilities", task.capabilities}};
  j["payload"] = json::parse(task.payload, nullptr, false);
  if (task.attempt_timeout) j["attempt_timeout"] = to_seconds(*task.attempt_timeout);
  return dump(j);
}

StoredTask stored_running_task(const Task& task, const std::string& key, const std::string& digest,
                               WallTime now) {
  StoredTask t;
  t.id = task.id;
  t.idempotency_key = key;
  t.request_digest = digest;
  t.type = task.type;
  t.agent = task.agent;
  t.request_json = task_request_json(task);
  t.call_in_flight = true;  // until a backoff wait says otherwise
  t.submitted_at = now;
  if (task.deadline) {
    t.deadline_at = now + std::chrono::duration_cast<WallTime::duration>(*task.deadline);
  }
  return t;
}

// A stored running task to run again, or an error saying why it cannot be.
Result<Task> task_from_stored(const StoredTask& stored) {
  json j = json::parse(stored.request_json, nullptr, false);
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return Error::classified_as(ErrorType::data_corruption, Severity::medium,
                                "its stored request is unreadable");
  }
  Task task;
  task.id = stored.id;
  task.type = j["type"].get<std::string>();
  task.agent = j.value("agent", std::string());
  if (j.contains("capabilities") && j["capabilities"].is_array()) {
    for (const json& c : j["capabilities"]) {
      if (c.is_string()) task.capabilities.push_back(c.get<std::string>());
    }
  }
  if (j.contains("payload") && !j["payload"].is_discarded()) task.payload = dump(j["payload"]);
  if (j.contains("attempt_timeout") && j["attempt_timeout"].is_number()) {
    task.attempt_timeout = from_seconds(j["attempt_timeout"].get<double>());
  }
  (void)fill_task_fields(task);
  // A call that may have been in flight counts: sent again, it is a retry.
  task.prior_attempts = stored.attempts + (stored.call_in_flight ? 1 : 0);
  return task;
}

// The write that ends a task: its outcome, and (when the task is known) its journal entry, which
// the store writes in the same transaction.
TaskWrite finish_write(const std::string& id, const Task* task, const Outcome& outcome,
                       int attempts, WallTime now) {
  TaskWrite write{TaskWrite::Kind::finish, {}, std::nullopt};
  write.task.id = id;
  write.task.done = true;
  write.task.status = std::string(to_string(outcome.status));
  write.task.outcome_json = outcome.to_json();
  write.task.attempts = attempts;
  write.task.finished_at = now;
  if (task != nullptr) write.journal = journal_entry(*task, outcome, now);
  return write;
}

// The final outcome of a task mend did not run again after a restart.
Outcome interrupted_outcome(const StoredTask& stored, const std::string& why) {
  Outcome outcome;
  outcome.task_id = stored.id;
  outcome.task_type = stored.type;
  outcome.primary_agent = stored.agent;
  outcome.status = OutcomeStatus::interrupted;
  outcome.error = Error::classified_as(ErrorType::service_unavailable, Severity::medium, why);
  return outcome;
}

}  // namespace

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
      m_.in_flight->with({}).set(static_cast<double>(in_flight_.load()));
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
  {
    std::lock_guard<std::mutex> lock(replicas_mu_);
    std::map<std::string, int> count;
    for (const Replica& r : replicas_) count[r.agent] += r.health.is_ready() ? 1 : 0;
    for (const auto& [agent, n] : count) {
      agents[agent] = n;
      if (n == 0) ready = false;
    }
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

void DaemonCore::api_submit(const HttpRequest& request,
                            const std::shared_ptr<HttpResponder>& responder) {
  auto reply = [&](HttpResponse r) { responder->respond(std::move(r)); };
  const Target t = parse_target(request.target);
  std::string error;
  std::optional<double> wait = parse_seconds(t.query, "wait", &error);
  if (!error.empty()) return reply(error_response(400, ErrorType::validation_failed, error));
  if (stopping_.load()) {
    HttpResponse r = error_response(503, ErrorType::service_unavailable,
                                    "mend is shutting down and takes no new tasks");
    return reply(std::move(r));
  }
  Result<json> parsed = parse_body(request.body);
  if (!parsed.ok())
    return reply(error_response(400, ErrorType::validation_failed, parsed.error().message));
  const json& body = *parsed;
  static const std::set<std::string> kKnown = {
      "id", "type", "agent", "capabilities", "payload", "deadline", "attempt_timeout"};
  for (const auto& [key, value] : body.items()) {
    if (!kKnown.count(key)) {
      return reply(error_response(400, ErrorType::validation_failed,
                                  "unknown field '" + key +
                                      "' (a task has: id, type, agent, capabilities, payload, "
                                      "deadline, attempt_timeout)"));
    }
  }
  auto string_field = [&](const char* name, bool required, std::string* out) -> bool {
    auto it = body.find(name);
    if (it == body.end()) {
      if (!required) return true;
      reply(error_response(400, ErrorType::validation_failed,
                           std::string("the field '") + name + "' is required"));
      return false;
    }
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      reply(error_response(400, ErrorType::validation_failed,
                           std::string("the field '") + name + "' must be a non-empty string"));
      return false;
    }
    *out = it->get<std::string>();
    return true;
  };
  auto seconds_field = [&](const char* name, std::optional<Duration>* out) -> bool {
    auto it = body.find(name);
    if (it == body.end()) return true;
    if (!it->is_number() || it->get<double>() <= 0 || it->get<double>() > 86400 * 7) {
      reply(error_response(
          400, ErrorType::validation_failed,
          std::string("the field '") + name + "' must be a number of seconds in (0, 604800]"));
      return false;
    }
    *out = from_seconds(it->get<double>());
    return true;
  };

  Task task;
  if (!string_field("type", true, &task.type) || !string_field("agent", false, &task.agent) ||
      !string_field("id", false, &task.id) || !seconds_field("deadline", &task.deadline) ||
      !seconds_field("attempt_timeout", &task.attempt_timeout)) {
    return;
  }
  if (!task.id.empty() && (task.id.size() > kMaxTaskIdBytes || !is_plain_id(task.id))) {
    return reply(error_response(400, ErrorType::validation_failed,
                                "the field 'id' must be at most " +
                                    std::to_string(kMaxTaskIdBytes) +
                                    " visible ASCII characters without / ? # % \" or \\"));
  }
  if (auto it = body.find("capabilities"); it != body.end()) {
    bool ok = it->is_array();
    for (const json& c : ok ? *it : json::array()) ok = ok && c.is_string();
    if (!ok) {
      return reply(error_response(400, ErrorType::validation_failed,
                                  "the field 'capabilities' must be an array of strings"));
    }
    task.capabilities = it->get<std::vector<std::string>>();
  }
  if (task.agent.empty() && task.capabilities.empty()) {
    return reply(error_response(400, ErrorType::validation_failed,
                                "a task needs an 'agent', or 'capabilities' to choose one by"));
  }
  std::shared_ptr<Generation> g = current();
  if (!task.agent.empty() && g->agents.find(task.agent) == nullptr) {
    std::string known;
    for (const std::string& n : g->agents.names()) known += (known.empty() ? "" : ", ") + n;
    return reply(error_response(404, ErrorType::validation_failed,
                                "unknown agent '" + task.agent + "' (known: " + known + ")"));
  }
  if (auto it = body.find("payload"); it != body.end()) task.payload = dump(*it);
  (void)fill_task_fields(task);  // a payload that is not an object simply has no fields
  if (!task.deadline) task.deadline = boot_config_.server.task_deadline;

  const std::string key = request.header("Idempotency-Key");
  if (key.size() > kMaxIdempotencyKeyBytes || !is_plain_id(key)) {
    return reply(error_response(400, ErrorType::validation_failed,
                                "the header Idempotency-Key must be at most " +
                                    std::to_string(kMaxIdempotencyKeyBytes) +
                                    " visible ASCII characters without / ? # % \" or \\"));
  }
  const double wait_seconds =
      std::min(wait.value_or(0), static_cast<double>(boot_config_.server.max_wait_seconds));
  const std::string digest = sha256_hex(request.body);
  const WallTime now = clock_.wall_now();
  std::string id;
  StoredTask stored;
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    if (stopping_.load()) {
      return reply(error_response(503, ErrorType::service_unavailable,
                                  "mend is shutting down and takes no new tasks"));
    }
    if (!key.empty()) {
      if (auto it = idempotency_.find(key); it != idempotency_.end()) {
        auto existing = tasks_.find(it->second);
        if (existing != tasks_.end()) {
          if (existing->second.request_digest != digest) {
            return reply(error_response(409, ErrorType::validation_failed,
                                        "Idempotency-Key '" + key +
                                            "' was used for a different task (" + it->second +
                                            "); use a new key for a new task"));
          }
          id = it->second;
        }
      }
    }
    if (id.empty()) {
      if (in_flight_.load() >= boot_config_.server.max_tasks_in_flight) {
        HttpResponse r =
            error_response(503, ErrorType::temporary_unavailable,
                           "too many tasks in flight (limit " +
                               std::to_string(boot_config_.server.max_tasks_in_flight) + ")");
        r.headers.push_back({"Retry-After", "1"});
        return reply(std::move(r));
      }
      if (task.id.empty()) {
        // A client may have chosen an id of this form already. The store's counter is raised in
        // the transaction that stores the task: no generated id is handed out twice, restarts
        // included.
        do {
          task.id = "task-" + std::to_string(next_task_number_++);
        } while (tasks_.count(task.id));
        task_writer_->raise_task_number(static_cast<std::int64_t>(next_task_number_));
      } else if (tasks_.count(task.id)) {
        return reply(error_response(409, ErrorType::validation_failed,
                                    "a task with id '" + task.id + "' exists already"));
      }
      id = task.id;
      TaskEntry& entry = tasks_[id];
      entry.task = task;
      entry.idempotency_key = key;
      entry.request_digest = digest;
      entry.submitted_at = now;
      entry.started = clock_.now();
      entry.status = "running";
      entry.idempotent = idempotent_type(g->config.tasks, task.type);
      if (!key.empty()) idempotency_[key] = id;
      in_flight_.fetch_add(1);
      stored = stored_running_task(task, key, digest, now);
    }
  }
  if (stored.id.empty()) {
    // A replay of an idempotent submission: the same task, as it stands.
    return wait_for_task(id, wait_seconds, responder, 200, true);
  }
  // Written before anything runs or anyone hears of it; the answer and the start follow from the
  // writer's thread, outside tasks_mu_ (wait_for_task() and the task's completion take it).
  auto accepted = [this, id, task, g, wait_seconds, responder, key](TaskWriter::Result result,
                                                                    const std::string& why) {
    if (result == TaskWriter::Result::written) {
      std::vector<TaskEntry::Waiter> told_when_stored;
      TaskEntry running;
      {
        std::lock_guard<std::mutex> lock(tasks_mu_);
        if (auto it = tasks_.find(id); it != tasks_.end()) {
          it->second.stored = true;
          running.task.id = id;
          running.submitted_at = it->second.submitted_at;
          auto& waiters = it->second.waiters;
          for (auto w = waiters.begin(); w != waiters.end();) {
            if (w->until_stored) {
              told_when_stored.push_back(std::move(*w));
              w = waiters.erase(w);
            } else {
              ++w;
            }
          }
        }
      }
      for (TaskEntry::Waiter& w : told_when_stored) {
        w.timer->cancel();
        respond_task(w.responder, running, 202, w.replayed);
      }
      start_task(id, task, g);
      if (wait_seconds <= 0) {
        return responder->respond(
            json_response(202, {{"id", id}, {"state", "running"}, {"href", "/v1/tasks/" + id}}));
      }
      return wait_for_task(id, wait_seconds, responder, 200, false);
    }
    HttpResponse refusal =
        result == TaskWriter::Result::refused
            ? error_response(409, ErrorType::validation_failed,
                             key.empty() ? "a task with id '" + id + "' exists already"
                                         : "a task with id '" + id + "' or Idempotency-Key '" +
                                               key + "' exists already")
            : error_response(503, ErrorType::database_error,
                             "the task could not be stored, so it was not run: " + why);
    if (result != TaskWriter::Result::refused) refusal.headers.push_back({"Retry-After", "1"});
    forget_unstored_task(id, refusal);
    responder->respond(std::move(refusal));
  };
  if (!task_writer_->submit({TaskWrite::Kind::accept, std::move(stored), std::nullopt},
                            std::move(accepted))) {
    HttpResponse r = error_response(503, ErrorType::temporary_unavailable,
                                    "too many tasks wait to be stored; try again");
    r.headers.push_back({"Retry-After", "1"});
    forget_unstored_task(id, r);
    return reply(std::move(r));
  }
}

void DaemonCore::forget_unstored_task(const std::string& id, const HttpResponse& answer) {
  std::vector<TaskEntry::Waiter> waiters;
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    auto it = tasks_.find(id);
    if (it == tasks_.end() || it->second.stored) return;
    if (!it->second.idempotency_key.empty()) idempotency_.erase(it->second.idempotency_key);
    waiters.swap(it->second.waiters);
    tasks_.erase(it);
    in_flight_.fetch_sub(1);
  }
  drained_cv_.notify_all();
  // Replays that joined while it was being stored hear what its first client hears.
  for (TaskEntry::Waiter& w : waiters) {
    w.timer->cancel();
    w.responder->respond(answer);
  }
}

void DaemonCore::start_task(const std::string& id, Task task, std::shared_ptr<Generation> g) {
  Workflow& workflow = *g->workflow;
  DaemonInvoker& invoker = *g->invoker;
  DaemonAgentOperations* operations = g->operations.get();
  async_run_workflow(
      workflow, std::move(task), invoker, operations, io_->get_executor(),
      blocking_->get_executor(), [this, id, g](std::exception_ptr e, Outcome outcome) {
        if (e) {
          outcome.task_id = id;
          outcome.status = OutcomeStatus::failed;
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            outcome.error =
                Error::classified_as(ErrorType::processing_failed, Severity::high, ex.what());
          } catch (...) {
            outcome.error = Error::classified_as(ErrorType::processing_failed, Severity::high,
                                                 "unknown exception");
          }
        }
        finish_task(id, outcome);
      });
}

void DaemonCore::task_waiting(const std::string& id) {
  TaskWrite write{TaskWrite::Kind::progress, {}, std::nullopt};
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    auto it = tasks_.find(id);
    if (it == tasks_.end() || it->second.done || !it->second.stored) return;
    it->second.call_in_flight = false;
    write.task.id = id;
    write.task.call_in_flight = false;
    write.task.attempts = it->second.attempts;
  }
  // Not waited for: a store that still says "calling" is only more careful.
  task_writer_->submit(std::move(write), {});
}

net::awaitable<void> DaemonCore::before_call(const Task& task) {
  TaskWrite write{TaskWrite::Kind::progress, {}, std::nullopt};
  bool must_be_stored = false;
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    auto it = tasks_.find(task.id);
    if (it == tasks_.end() || it->second.done) co_return;
    TaskEntry& entry = it->second;
    ++entry.attempts;
    if (entry.call_in_flight) co_return;  // the store says "calling" already
    entry.call_in_flight = true;
    write.task.id = task.id;
    write.task.call_in_flight = true;
    write.task.attempts = entry.attempts;
    must_be_stored = !entry.idempotent;
  }
  if (!must_be_stored) {
    task_writer_->submit(std::move(write), {});
    co_return;
  }
  // A call that must not be sent twice goes out only once the store says a call may be out: a
  // crash from here on ends the task `interrupted` instead of sending it again. When the store
  // fails, the call goes out anyway (the writer retries, /readyz says not ready): an agent's
  // answer now is worth more than protection against a crash during a store outage.
  auto executor = co_await net::this_coro::executor;
  co_await net::async_initiate<decltype(net::use_awaitable), void()>(
      [this, &write, executor](auto handler) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        task_writer_->submit(std::move(write),
                             [shared, executor](TaskWriter::Result, const std::string&) {
                               net::post(executor, [shared] { (*shared)(); });
                             });
      },
      net::use_awaitable);
}

void DaemonCore::finish_task(const std::string& id, const Outcome& outcome) {
  const WallTime now = clock_.wall_now();
  TaskWrite write;
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    auto it = tasks_.find(id);
    write = it != tasks_.end()
                ? finish_write(id, &it->second.task, outcome, it->second.attempts, now)
                : finish_write(id, nullptr, outcome, 0, now);
  }
  std::string outcome_json = write.task.outcome_json;
  // The outcome is answered once it is in the store (with its journal entry), so that a client
  // that heard it reads the same after a crash. A store that fails delays nobody: the writer
  // keeps the write and retries it, and the answer goes out from memory.
  task_writer_->submit(std::move(write), [this, id, outcome, outcome_json](
                                             TaskWriter::Result result, const std::string&) {
    on_task_finished_stored(id, outcome, outcome_json, result == TaskWriter::Result::written);
  });
}

void DaemonCore::on_task_finished_stored(const std::string& id, const Outcome& outcome,
                                         const std::string& outcome_json, bool stored) {
  const std::string status(to_string(outcome.status));
  m_.tasks->with({status}).inc();
  if (outcome.status == OutcomeStatus::degraded) {
    m_.degraded->with({outcome.task_type}).inc();
  }
  if (outcome.escalation && outcome.escalation->record_id != 0) {
    m_.escalations->with({std::string(to_string(outcome.escalation->level))}).inc();
  }
  std::vector<TaskEntry::Waiter> waiters;
  TaskEntry copy;
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    auto it = tasks_.find(id);
    if (it != tasks_.end()) {
      TaskEntry& entry = it->second;
      entry.done = true;
      entry.status = status;
      // The summary a retained task keeps: its request goes, a large outcome is read back from
      // the store (unless the store failed to take it: then memory is all there is).
      // Moved out and dropped, not assigned over: a string assigned a short value keeps the
      // capacity of its long one, and the payload's 60 KB would stay.
      Task summary;
      summary.id = entry.task.id;
      summary.type = entry.task.type;
      summary.agent = entry.task.agent;
      (void)std::exchange(entry.task, std::move(summary));
      entry.outcome_in_store = stored && outcome_json.size() > kInlineOutcomeBytes;
      entry.outcome_json = entry.outcome_in_store ? std::string() : outcome_json;
      m_.latency->with({status}).observe(
          std::chrono::duration<double>(clock_.now() - entry.started).count());
      waiters.swap(entry.waiters);
      copy.task.id = entry.task.id;
      copy.done = true;
      copy.status = entry.status;
      copy.outcome_json = outcome_json;
      copy.submitted_at = entry.submitted_at;
      finished_order_.push_back(id);
      while (finished_order_.size() > boot_config_.tasks.retained) {
        auto old = tasks_.find(finished_order_.front());
        if (old != tasks_.end()) {
          if (!old->second.idempotency_key.empty()) idempotency_.erase(old->second.idempotency_key);
          tasks_.erase(old);
        }
        finished_order_.pop_front();
      }
    }
  }
  if (!waiters.empty()) {
    // Registered before the task counts as finished: shutdown, once drained, waits for these
    // answers to be written before it closes the connections.
    std::lock_guard<std::mutex> lock(answered_mu_);
    std::erase_if(answered_, [](const std::shared_ptr<HttpResponder>& r) { return r->closed(); });
    for (const TaskEntry::Waiter& w : waiters) answered_.push_back(w.responder);
  }
  for (TaskEntry::Waiter& w : waiters) {
    w.timer->cancel();
    respond_task(w.responder, copy, 200, false);
  }
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    in_flight_.fetch_sub(1);
  }
  drained_cv_.notify_all();
}

void DaemonCore::respond_task(const std::shared_ptr<HttpResponder>& responder,
                              const TaskEntry& entry, int status, bool replayed) {
  if (entry.done && entry.outcome_in_store && entry.outcome_json.empty()) {
    // A large outcome of a retained task: read from the store, off the I/O threads.
    TaskEntry summary;
    summary.task.id = entry.task.id;
    summary.done = true;
    summary.status = entry.status;
    summary.submitted_at = entry.submitted_at;
    net::post(*blocking_, [this, responder, summary, status, replayed]() mutable {
      try {
        std::optional<StoredTask> stored = store_->stored_task(summary.task.id);
        summary.outcome_json =
            stored && !stored->outcome_json.empty() ? stored->outcome_json : std::string("null");
      } catch (const std::exception& e) {
        log("error", "reading task " + summary.task.id + " from the store: " + e.what());
        return responder->respond(error_response(500, ErrorType::database_error, e.what()));
      }
      respond_task(responder, summary, status, replayed);
    });
    return;
  }
  std::string body = "{\"id\":" + dump(entry.task.id) +
                     ",\"state\":" + (entry.done ? "\"done\"" : "\"running\"") +
                     ",\"submitted_at\":" + dump(iso(entry.submitted_at));
  if (entry.done)
    body += ",\"status\":" + dump(entry.status) + ",\"outcome\":" + entry.outcome_json;
  body += "}";
  HttpResponse r = raw_json_response(entry.done ? status : 202, std::move(body));
  if (replayed) r.headers.push_back({"Idempotent-Replayed", "true"});
  responder->respond(std::move(r));
}

void DaemonCore::wait_for_task(const std::string& id, double wait_seconds,
                               const std::shared_ptr<HttpResponder>& responder,
                               int status_when_done, bool replayed) {
  std::unique_lock<std::mutex> lock(tasks_mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) {
    lock.unlock();
    responder->respond(error_response(404, ErrorType::validation_failed,
                                      "no task '" + id + "' (finished tasks are kept for the " +
                                          std::to_string(boot_config_.tasks.retained) +
                                          " most recent: tasks.retained)"));
    return;
  }
  TaskEntry& entry = it->second;
  // Not stored yet: its client has not heard "accepted" either, and it may still be refused.
  const bool until_stored = !entry.stored && !entry.done && (wait_seconds <= 0 || stopping_.load());
  if (!until_stored && (entry.done || wait_seconds <= 0 || stopping_.load())) {
    TaskEntry copy;
    copy.task.id = entry.task.id;
    copy.done = entry.done;
    copy.status = entry.status;
    copy.outcome_json = entry.outcome_json;
    copy.outcome_in_store = entry.outcome_in_store;
    copy.submitted_at = entry.submitted_at;
    lock.unlock();
    respond_task(responder, copy, status_when_done, replayed);
    return;
  }
  // A waiter until stored has a timer too, in case the store takes its time: then "running".
  auto timer = std::make_shared<net::steady_timer>(
      *io_, until_stored ? std::chrono::seconds(30) : from_seconds(wait_seconds));
  entry.waiters.push_back({responder, timer, until_stored, replayed});
  TaskEntry running;
  running.task.id = id;
  running.submitted_at = entry.submitted_at;
  timer->async_wait([this, id, responder, running, replayed](boost::system::error_code ec) {
    if (ec) return;  // cancelled: the task finished and answered
    {
      std::lock_guard<std::mutex> guard(tasks_mu_);
      auto found = tasks_.find(id);
      if (found != tasks_.end()) {
        std::erase_if(found->second.waiters,
                      [&](const TaskEntry::Waiter& w) { return w.responder == responder; });
      }
    }
    respond_task(responder, running, 202, replayed);
  });
}

// --- Recovery: what a restart finds in the store ------------------------------------------------

bool DaemonCore::every_agent_ready() {
  std::lock_guard<std::mutex> lock(replicas_mu_);
  std::map<std::string, int> ready;
  for (const Replica& r : replicas_) ready[r.agent] += r.health.is_ready() ? 1 : 0;
  return std::all_of(ready.begin(), ready.end(), [](const auto& a) { return a.second > 0; });
}

Result<void> DaemonCore::recover_tasks(const Config& config,
                                       std::vector<std::pair<std::string, Task>>* resume) {
  std::vector<StoredTask> stored;
  std::int64_t next = 1;
  try {
    next = store_->next_task_number();
    stored = store_->load_tasks(config.tasks.retained);
  } catch (const std::exception& e) {
    return Error::classified_as(ErrorType::database_error, Severity::high,
                                std::string("reading the stored tasks: ") + e.what());
  }
  const WallTime now = clock_.wall_now();
  std::vector<TaskWrite> endings;
  std::size_t kept = 0;
  // Finished ones in the order they finished, as finished_order_ evicts them and the store prunes
  // them; running ones after them, as they will finish after them.
  std::stable_sort(stored.begin(), stored.end(), [](const StoredTask& a, const StoredTask& b) {
    if (a.done != b.done) return a.done;
    return a.done && a.finished_at.value_or(WallTime{}) < b.finished_at.value_or(WallTime{});
  });
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    next_task_number_ = static_cast<std::uint64_t>(std::max<std::int64_t>(next, 1));
    for (StoredTask& t : stored) {
      TaskEntry& entry = tasks_[t.id];
      entry.task.id = t.id;
      entry.task.type = t.type;
      entry.task.agent = t.agent;
      entry.idempotency_key = t.idempotency_key;
      entry.request_digest = t.request_digest;
      entry.submitted_at = t.submitted_at;
      entry.started = clock_.now();
      entry.stored = true;
      entry.attempts = t.attempts;
      entry.call_in_flight = t.call_in_flight;
      if (!t.idempotency_key.empty()) idempotency_[t.idempotency_key] = t.id;
      if (t.done) {
        entry.done = true;
        entry.status = t.status;
        entry.outcome_in_store = t.outcome_json.size() > kInlineOutcomeBytes;
        if (!entry.outcome_in_store) entry.outcome_json = std::move(t.outcome_json);
        finished_order_.push_back(t.id);
        ++kept;
        continue;
      }
      entry.idempotent = idempotent_type(config.tasks, t.type);
      std::string why;
      if (t.deadline_at && now >= *t.deadline_at) {
        why = "mend restarted after the task's deadline had passed; it was not run again";
      } else if (t.call_in_flight && !entry.idempotent) {
        why = "mend stopped while a call to " +
              (t.agent.empty() ? std::string("an agent") : "agent '" + t.agent + "'") +
              " may have been in flight: the agent may have run it, and the task type '" + t.type +
              "' is not in tasks.idempotent_types, so mend did not send it again";
      }
      Result<Task> task = Error::classified_as(ErrorType::processing_failed, Severity::low, why);
      if (why.empty()) {
        task = task_from_stored(t);
        if (!task.ok())
          why = "mend restarted and could not run the task again: " + task.error().message;
      }
      if (!why.empty()) {
        TaskWrite write =
            finish_write(t.id, &entry.task, interrupted_outcome(t, why), t.attempts, now);
        entry.done = true;
        entry.status = write.task.status;
        entry.outcome_json = write.task.outcome_json;
        finished_order_.push_back(t.id);
        endings.push_back(std::move(write));
        continue;
      }
      // The rest of its deadline, and the retries it had left.
      if (t.deadline_at) {
        task->deadline = std::chrono::duration_cast<Duration>(*t.deadline_at - now);
      }
      entry.task = *task;
      entry.status = "running";
      in_flight_.fetch_add(1);
      resume->emplace_back(t.id, std::move(*task));
    }
  }
  task_writer_->raise_task_number(next);
  for (TaskWrite& w : endings) {
    m_.tasks->with({std::string(to_string(OutcomeStatus::interrupted))}).inc();
    task_writer_->submit(std::move(w), {});
  }
  task_writer_->flush();
  if (!stored.empty()) {
    log("info", "tasks from the store: " + std::to_string(kept) + " finished kept, " +
                    std::to_string(resume->size()) + " resumed, " + std::to_string(endings.size()) +
                    " ended interrupted");
  }
  return {};
}

net::awaitable<void> DaemonCore::resume_tasks(std::vector<std::pair<std::string, Task>> tasks) {
  // Resumed tasks wait for the agents to be ready (their startup probes), at most kResumeGrace:
  // started at once, they would find every supervised agent still starting and end degraded.
  net::steady_timer timer(co_await net::this_coro::executor);
  const TimePoint until = clock_.now() + kResumeGrace;
  while (!stopping_.load() && !every_agent_ready() && clock_.now() < until) {
    timer.expires_after(std::chrono::milliseconds(20));
    boost::system::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  std::shared_ptr<Generation> g = current();
  for (auto& [id, task] : tasks) start_task(id, std::move(task), g);
}

void DaemonCore::api_task(const std::string& id, double wait_seconds,
                          const std::shared_ptr<HttpResponder>& responder) {
  wait_for_task(id,
                std::min(wait_seconds, static_cast<double>(boot_config_.server.max_wait_seconds)),
                responder, 200, false);
}

void DaemonCore::api_tasks(const std::shared_ptr<HttpResponder>& responder) {
  json list = json::array();
  {
    std::lock_guard<std::mutex> lock(tasks_mu_);
    for (const auto& [id, entry] : tasks_) {
      list.push_back({{"id", id},
                      {"type", entry.task.type},
                      {"agent", entry.task.agent},
                      {"state", entry.done ? "done" : "running"},
                      {"status", entry.status},
                      {"submitted_at", iso(entry.submitted_at)}});
    }
  }
  responder->respond(json_response(200, {{"tasks", list}, {"in_flight", in_flight_.load()}}));
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
    std::lock_guard<std::mutex> lock(replicas_mu_);
    for (const Replica& r : replicas_) {
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

void DaemonCore::api_records(std::optional<RecordKind> kind, const std::string& status,
                             const std::shared_ptr<HttpResponder>& responder) {
  RecordFilter filter;
  filter.kind = kind;
  if (status == "active") {
    filter.active_only = true;
  } else if (!status.empty()) {
    filter.status = parse_record_status(status);
    if (!filter.status) {
      return responder->respond(error_response(
          400, ErrorType::validation_failed,
          "status must be open, acknowledged, resolved or active, not '" + status + "'"));
    }
  }
  net::post(*blocking_, [this, filter, responder] {
    try {
      json list = json::array();
      for (const EscalationRecord& r : store_->records(filter)) list.push_back(record_json(r));
      responder->respond(json_response(200, {{"records", list}}));
    } catch (const std::exception& e) {
      log("error", std::string("listing records: ") + e.what());
      responder->respond(error_response(500, ErrorType::database_error, e.what()));
    }
  });
}

void DaemonCore::api_record(std::optional<RecordKind> kind, const std::string& id_text,
                            const std::string& action, const HttpRequest& request,
                            const std::shared_ptr<HttpResponder>& responder) {
  auto id = parse_record_id(id_text);
  if (!id || (kind && id->second && *kind != *id->second)) {
    return responder->respond(error_response(
        404, ErrorType::validation_failed,
        "no such record '" + id_text + "' (ids look like TKT-3 or INC-7, or a number)"));
  }
  std::string who = "api";
  if (!action.empty()) {
    Result<json> body = parse_body(request.body);
    if (!body.ok()) {
      return responder->respond(
          error_response(400, ErrorType::validation_failed, body.error().message));
    }
    if (auto by = body->find("by"); by != body->end()) {
      if (!by->is_string() || by->get_ref<const std::string&>().empty() ||
          by->get_ref<const std::string&>().size() > kMaxActorBytes ||
          !is_printable_text(by->get_ref<const std::string&>())) {
        return responder->respond(error_response(400, ErrorType::validation_failed,
                                                 "'by' must be a non-empty string of at most " +
                                                     std::to_string(kMaxActorBytes) +
                                                     " bytes without control characters"));
      }
      who = by->get<std::string>();
    }
  }
  const std::int64_t number = id->first;
  const std::optional<RecordKind> wanted = kind ? kind : id->second;
  net::post(*blocking_, [this, number, wanted, action, who, id_text, responder] {
    try {
      record_action(number, wanted, action, who, id_text, responder);
    } catch (const std::exception& e) {
      log("error", "record " + id_text + ": " + e.what());
      responder->respond(error_response(500, ErrorType::database_error, e.what()));
    }
  });
}

void DaemonCore::record_action(std::int64_t number, std::optional<RecordKind> wanted,
                               const std::string& action, const std::string& who,
                               const std::string& id_text,
                               const std::shared_ptr<HttpResponder>& responder) {
  {
    std::optional<EscalationRecord> record = store_->record(number);
    if (!record || (wanted && record->kind != *wanted)) {
      return responder->respond(
          error_response(404, ErrorType::validation_failed, "no such record '" + id_text + "'"));
    }
    if (action.empty()) {
      json j = record_json(*record);
      json timeline = json::array();
      for (const TimelineEntry& t : store_->timeline(number)) {
        timeline.push_back(
            {{"at", iso(t.at)}, {"event", t.event}, {"actor", t.actor}, {"detail", t.detail}});
      }
      j["timeline"] = timeline;
      return responder->respond(json_response(200, j));
    }
    std::shared_ptr<Generation> g = current();
    Result<EscalationRecord> changed = action == "acknowledge"
                                           ? g->escalator->acknowledge(number, who)
                                           : g->escalator->resolve(number, who);
    if (!changed.ok()) {
      return responder->respond(error_response(409, changed.error().type, changed.error().message));
    }
    log("info", record->display_id() + " " + action + "d by " + who);
    const std::string kind = action == "acknowledge" ? "acknowledged" : "resolved";
    publish(kind, dump({{"kind", kind},
                        {"at", iso(clock_.wall_now())},
                        {"source", who},
                        {"record", changed->display_id()}}));
    responder->respond(json_response(200, record_json(*changed)));
  }
}

}  // namespace mend::server_detail
