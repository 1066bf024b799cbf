#include "agent.h"

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>

#include "mend/runtime/agent_client.h"

namespace mend::sample_agent {
namespace {

namespace net = boost::asio;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr std::size_t kMaxHung = 10'000;  // hung tasks kept; more are reset

HttpResponse json_answer(int status, const json& body, std::vector<HttpHeader> extra = {}) {
  HttpResponse r;
  r.status = status;
  r.headers.push_back({"Content-Type", "application/json"});
  for (HttpHeader& h : extra) r.headers.push_back(std::move(h));
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

// The protocol's error answer: {"error": {"type", "message", ["severity"], ["retry_after"]}}.
HttpResponse error_answer(int status, std::string_view type, std::string message,
                          std::string_view severity = {}, std::optional<double> retry_after = {}) {
  json error = {{"type", type}, {"message", std::move(message)}};
  if (!severity.empty()) error["severity"] = severity;
  std::vector<HttpHeader> headers;
  if (retry_after) {
    error["retry_after"] = *retry_after;
    std::ostringstream text;
    text << *retry_after;  // delta-seconds; "1.5" is read by mend too
    headers.push_back({"Retry-After", text.str()});
  }
  return json_answer(status, {{"error", error}}, std::move(headers));
}

// Parses a request body as JSON, bounded in depth; an empty body is {}.
std::optional<json> parse_body(const std::string& body) {
  if (body.empty()) return json::object();
  if (!json_nesting_within(body)) return std::nullopt;
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

std::string string_member(const json& object, const char* name, std::string fallback = {}) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}

std::size_t count_lines(const std::string& text) {
  if (text.empty()) return 0;
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) +
         (text.back() == '\n' ? 0 : 1);
}

std::size_t count_words(const std::string& text) {
  std::istringstream in(text);
  std::size_t n = 0;
  for (std::string word; in >> word;) ++n;
  return n;
}

// A plausible result for each task type the specification names; anything else is echoed.
json task_result(const std::string& type, const json& payload) {
  const json object = payload.is_object() ? payload : json::object();
  if (type == "code_review") {
    std::string content = string_member(object, "content");
    json issues = json::array();
    if (content.find("TODO") != std::string::npos) issues.push_back("unresolved TODO");
    if (content.find("goto ") != std::string::npos) issues.push_back("goto used");
    return {{"review", issues.empty() ? "looks fine" : "changes requested"},
            {"lines", count_lines(content)},
            {"issues", issues}};
  }
  if (type == "deployment") {
    return {{"status", "deployed"},
            {"environment", string_member(object, "environment", "staging")},
            {"version", string_member(object, "version", "latest")}};
  }
  if (type == "ai_analysis") {
    std::string text = string_member(object, "text", string_member(object, "content"));
    return {
        {"summary", text.substr(0, 80)}, {"words", count_words(text)}, {"sentiment", "neutral"}};
  }
  if (type == "security_scan") {
    return {{"target", string_member(object, "target", "unspecified")},
            {"vulnerabilities", json::array()},
            {"risk", "low"}};
  }
  return {{"status", "done"}, {"echo", payload}};
}

void default_exit(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

}  // namespace

SampleAgent::SampleAgent(AgentOptions options, ChaosKnobs startup)
    : options_(std::move(options)),
      startup_(startup),
      knobs_(std::move(startup)),
      random_(options_.seed != 0 ? options_.seed : std::random_device{}()),
      pool_size_(std::max(options_.pool_size, 1)),
      work_(net::make_work_guard(io_)),
      timer_thread_([this] { io_.run(); }) {}

SampleAgent::~SampleAgent() {
  work_.reset();
  io_.stop();
  timer_thread_.join();
}

void SampleAgent::handle(HttpRequest request, std::shared_ptr<HttpResponder> responder) {
  if (!options_.bearer_token.empty() &&
      request.header("Authorization") != "Bearer " + options_.bearer_token) {
    return responder->respond(
        error_answer(401, "authentication_failed", "missing or wrong bearer token"));
  }
  std::string path = request.target.substr(0, request.target.find('?'));
  const std::string& method = request.method;
  auto only = [&](std::string_view allowed) {
    if (method == allowed || (allowed == "GET" && method == "HEAD")) return true;
    HttpResponse r = error_answer(405, "validation_failed", method + " is not allowed on " + path);
    r.headers.push_back({"Allow", std::string(allowed)});
    responder->respond(std::move(r));
    return false;
  };
  if (path == "/task") {
    if (only("POST")) on_task(request, responder);
  } else if (path == "/health") {
    if (only("GET")) responder->respond(health());
  } else if (path == "/stats") {
    if (only("GET")) responder->respond(stats());
  } else if (path == "/admin/chaos") {
    if (method == "POST") {
      responder->respond(set_chaos(request));
    } else if (method == "GET" || method == "HEAD") {
      responder->respond(chaos_state());
    } else {
      HttpResponse r =
          error_answer(405, "validation_failed", method + " is not allowed on " + path);
      r.headers.push_back({"Allow", "GET, POST"});
      responder->respond(std::move(r));
    }
  } else if (path.rfind("/admin/", 0) == 0) {
    if (only("POST")) on_admin(path.substr(7), request, responder);
  } else {
    responder->respond(error_answer(404, "validation_failed", "no route " + path));
  }
}

void SampleAgent::on_task(const HttpRequest& request, std::shared_ptr<HttpResponder> responder) {
  std::optional<json> task = parse_body(request.body);
  if (!task || !task->is_object()) {
    return responder->respond(
        error_answer(400, "validation_failed", "the task is not a JSON object"));
  }
  auto id = task->find("id");
  auto type = task->find("type");
  if (id == task->end() || !id->is_string() || type == task->end() || !type->is_string()) {
    return responder->respond(
        error_answer(400, "validation_failed", "the task needs string members id and type"));
  }
  json payload = task->value("payload", json::object());
  json attempt = task->value("attempt", json(0));

  Plan plan;
  std::optional<FailureKind> failure;
  std::string failed_as;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.received;
    if (knobs_.hang) {
      ++counters_.hung;
      std::erase_if(hung_, [](const auto& r) { return r->closed(); });
      if (hung_.size() >= kMaxHung) {
        failure = FailureKind::kReset;  // a bound on what a hang may hold
      } else {
        hung_.push_back(std::move(responder));
        return;
      }
    }
    if (!failure) {
      if (knobs_.database_down) {
        failure = FailureKind::kDatabase;
      } else {
        failure = choose_failure(knobs_, fail_next_, random_.next_unit());
      }
    }
    plan.delay = knobs_.latency;
    if (failure) {
      failed_as = std::string(to_string(*failure));
      plan.failed = true;
      switch (*failure) {
        case FailureKind::kTimeout:
          plan.delay += knobs_.timeout_delay;
          plan.answer = error_answer(504, "network_timeout", "chaos: the task timed out");
          break;
        case FailureKind::kReset:
          plan.abort = true;
          break;
        case FailureKind::kRateLimited:
          plan.answer = error_answer(429, "rate_limit_exceeded", "chaos: too many requests", {},
                                     knobs_.retry_after_seconds);
          break;
        case FailureKind::kUnavailable:
          plan.answer =
              error_answer(503, "temporary_unavailable", "chaos: temporarily unavailable");
          break;
        case FailureKind::kLogic:
          plan.answer = error_answer(500, "processing_failed", "chaos: the task cannot be done");
          break;
        case FailureKind::kDatabase:
          plan.answer = error_answer(500, "database_error", "chaos: database connection lost");
          break;
        case FailureKind::kExternal:
          plan.answer =
              error_answer(503, "external_service_down", "chaos: an upstream service is down");
          break;
        case FailureKind::kCritical:
          plan.answer = error_answer(500, "data_corruption", "chaos: the agent's data is corrupt",
                                     "critical");
          break;
      }
    } else if (knobs_.pool_exhausted) {
      failed_as = "pool_exhausted";
      plan.failed = true;
      plan.answer =
          error_answer(503, "connection_pool_exhausted", "chaos: no free connection in the pool");
    } else {
      std::size_t grow = knobs_.memory_growth_kib * 1024;
      if (grow > 0 && cache_bytes_ + grow > options_.memory_limit_bytes) {
        failed_as = "memory_exhausted";
        plan.failed = true;
        plan.answer = error_answer(
            500, "memory_exhausted",
            "out of memory: the cache holds " + std::to_string(cache_bytes_ >> 20) + " MiB");
      } else if (grow > 0) {
        cache_.emplace_back(grow, 'm');  // written, so really resident
        cache_bytes_ += grow;
      }
    }
    if (plan.failed) ++counters_.failed[failed_as];
    ++in_flight_;
  }
  if (!plan.failed) {
    plan.answer = json_answer(200, {{"agent", options_.name},
                                    {"task_id", id->get<std::string>()},
                                    {"type", type->get<std::string>()},
                                    {"attempt", attempt},
                                    {"result", task_result(type->get<std::string>(), payload)}});
  }
  if (plan.delay <= milliseconds(0)) return finish_task(responder, std::move(plan));
  auto timer = std::make_shared<net::steady_timer>(io_, plan.delay);
  timer->async_wait(
      [this, timer, responder, plan = std::move(plan)](boost::system::error_code) mutable {
        finish_task(responder, std::move(plan));
      });
}

void SampleAgent::finish_task(const std::shared_ptr<HttpResponder>& responder, Plan plan) {
  bool crash = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    if (!plan.abort && !responder->closed()) {
      ++counters_.answered;
      if (!plan.failed) ++counters_.succeeded;
      crash = knobs_.crash_countdown > 0 && --knobs_.crash_countdown == 0;
    }
  }
  if (plan.abort) return responder->abort();
  responder->respond(std::move(plan.answer));
  if (crash) exit_after_answer(responder, 1, "crash_after: exiting with status 1 as asked");
}

void SampleAgent::exit_after_answer(std::shared_ptr<HttpResponder> responder, int code,
                                    std::string why) {
  // The process ends here; a thread of its own is the simplest way to wait for the answer.
  std::thread([this, responder = std::move(responder), code, why = std::move(why)] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!responder->closed() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(2));
    }
    std::fprintf(stderr, "%s: %s\n", options_.name.c_str(), why.c_str());
    (options_.exit_process ? options_.exit_process : default_exit)(code);
  }).detach();
}

double SampleAgent::memory_percent_locked() const {
  double percent = 100.0 * static_cast<double>(cache_bytes_) /
                   static_cast<double>(std::max<std::size_t>(options_.memory_limit_bytes, 1));
  return std::round(percent * 10.0) / 10.0;
}

int SampleAgent::pool_in_use_locked() const {
  return knobs_.pool_exhausted ? pool_size_ : std::min(in_flight_, pool_size_);
}

json SampleAgent::counters_locked() const {
  json failed = json::object();
  std::int64_t failed_total = 0;
  for (const auto& [kind, n] : counters_.failed) {
    failed[kind] = n;
    failed_total += n;
  }
  return {{"tasks_received", counters_.received},   {"tasks_answered", counters_.answered},
          {"tasks_succeeded", counters_.succeeded}, {"tasks_failed", failed_total},
          {"tasks_hung", counters_.hung},           {"failed", failed}};
}

HttpResponse SampleAgent::health() {
  std::lock_guard<std::mutex> lock(mu_);
  double memory = memory_percent_locked();
  int in_use = pool_in_use_locked();
  std::string status = "healthy";
  std::vector<std::string> reasons;
  if (knobs_.unhealthy) reasons.push_back("unhealthy (chaos)");
  if (knobs_.database_down) reasons.push_back("database connection lost");
  if (!reasons.empty()) status = "unhealthy";
  if (memory >= 90.0) reasons.push_back("memory at " + json(memory).dump() + " %");
  if (static_cast<double>(in_use) >= 0.95 * pool_size_) reasons.push_back("connection pool full");
  if (status == "healthy" && !reasons.empty()) status = "degraded";
  std::string detail;
  for (const std::string& r : reasons) detail += (detail.empty() ? "" : "; ") + r;
  json body = {{"status", status},
               {"metrics",
                {{"memory_percent", memory},
                 {"pool_in_use", in_use},
                 {"pool_size", pool_size_},
                 {"cache_bytes", cache_bytes_},
                 {"tasks_in_flight", in_flight_},
                 {"database_connected", knobs_.database_down ? 0 : 1}}},
               {"database", knobs_.database_down ? "down" : "connected"},
               {"detail", detail.empty() ? "ok" : detail}};
  return json_answer(status == "unhealthy" ? 503 : 200, body);
}

HttpResponse SampleAgent::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  auto uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_);
  std::erase_if(hung_, [](const auto& r) { return r->closed(); });
  json admin = json::object();
  for (const auto& [hook, n] : counters_.admin_calls) admin[hook] = n;
  return json_answer(200, {{"agent", options_.name},
                           {"uptime_seconds", std::round(uptime.count() * 1000.0) / 1000.0},
                           {"counters", counters_locked()},
                           {"tasks_in_flight", in_flight_},
                           {"tasks_hung_now", hung_.size()},
                           {"cache_bytes", cache_bytes_},
                           {"memory_percent", memory_percent_locked()},
                           {"pool_in_use", pool_in_use_locked()},
                           {"pool_size", pool_size_},
                           {"admin_calls", admin}});
}

HttpResponse SampleAgent::chaos_state() {
  std::lock_guard<std::mutex> lock(mu_);
  return json_answer(
      200, {{"knobs", chaos_to_json(knobs_, fail_next_)}, {"counters", counters_locked()}});
}

HttpResponse SampleAgent::set_chaos(const HttpRequest& request) {
  std::optional<json> body = parse_body(request.body);
  if (!body) {
    return error_answer(400, "validation_failed", "the chaos settings are not valid JSON");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    Result<void> applied = apply_chaos_json(*body, startup_, knobs_, fail_next_);
    if (!applied.ok()) return error_answer(400, "validation_failed", applied.error().message);
  }
  return chaos_state();
}

void SampleAgent::on_admin(const std::string& hook, const HttpRequest& request,
                           const std::shared_ptr<HttpResponder>& responder) {
  static const std::vector<std::string> kHooks = {
      "clear-caches", "reset-connections", "increase-limits", "reconnect-database", "restart"};
  if (std::find(kHooks.begin(), kHooks.end(), hook) == kHooks.end()) {
    return responder->respond(error_answer(404, "validation_failed", "no admin hook " + hook));
  }
  std::optional<json> body = parse_body(request.body);
  if (!body || !body->is_object()) {
    return responder->respond(
        error_answer(400, "validation_failed", "the body of an admin hook must be a JSON object"));
  }
  std::vector<std::shared_ptr<HttpResponder>> dropped;
  HttpResponse answer;
  bool exit_now = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.admin_calls[hook];
    if (auto it = knobs_.admin_fail.find(hook); it != knobs_.admin_fail.end()) {
      answer =
          error_answer(it->second, "processing_failed", "chaos: admin hook " + hook + " fails");
    } else if (hook == "clear-caches") {
      std::size_t freed = cache_bytes_;
      cache_.clear();
      cache_.shrink_to_fit();
      cache_bytes_ = 0;
      answer = json_answer(200, {{"ok", true}, {"freed_bytes", freed}});
    } else if (hook == "reset-connections") {
      knobs_.pool_exhausted = false;
      answer = json_answer(200, {{"ok", true}});
    } else if (hook == "increase-limits") {
      pool_size_ = std::min(pool_size_ * 2, 4096);
      answer = json_answer(200, {{"ok", true}, {"pool_size", pool_size_}});
    } else if (hook == "reconnect-database") {
      knobs_.database_down = false;
      answer = json_answer(200, {{"ok", true}});
    } else {  // restart
      bool graceful = !body->contains("graceful") || !(*body)["graceful"].is_boolean() ||
                      (*body)["graceful"].get<bool>();
      if (options_.restart_exits) {
        exit_now = true;
        answer = json_answer(202, {{"restarting", true}, {"graceful", graceful}});
      } else {
        // As a fresh process would start: the command line's knobs, nothing cached, connected.
        knobs_ = startup_;
        fail_next_.clear();
        cache_.clear();
        cache_.shrink_to_fit();
        cache_bytes_ = 0;
        pool_size_ = std::max(options_.pool_size, 1);
        dropped.swap(hung_);
        answer = json_answer(200, {{"restarted", true}, {"graceful", graceful}});
      }
    }
  }
  for (const auto& r : dropped) r->abort();  // what a restart does to work in flight
  responder->respond(std::move(answer));
  if (exit_now) exit_after_answer(responder, 0, "restart: exiting with status 0 as asked");
}

}  // namespace mend::sample_agent
