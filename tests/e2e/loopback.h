// Test support for the end-to-end tests: agents and notification receivers served over real
// loopback HTTP by mend's own HttpServer, and a fixture that wires a whole mend (registry,
// workflow, SQLite store, escalator, outbox dispatcher) to them on a manual clock.
#ifndef MEND_TESTS_E2E_LOOPBACK_H_
#define MEND_TESTS_E2E_LOOPBACK_H_

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "mend/core/workflow.h"
#include "mend/runtime/agent_client.h"
#include "mend/runtime/http_server.h"
#include "mend/runtime/notifier.h"
#include "mend/store/escalator.h"
#include "mend/store/sqlite_store.h"
#include "mend_test/io_loop.h"
#include "mend_test/temp_dir.h"

namespace mend::e2e {

inline HttpResponse json_response(int status, const nlohmann::json& body) {
  return {status, {{"Content-Type", "application/json"}}, body.dump()};
}

// The agent protocol's error answer (docs/agent-protocol.md).
inline HttpResponse agent_error(int status, const std::string& type, const std::string& message,
                                std::optional<double> retry_after = std::nullopt,
                                std::optional<std::string> severity = std::nullopt) {
  nlohmann::json e = {{"type", type}, {"message", message}};
  if (retry_after) e["retry_after"] = *retry_after;
  if (severity) e["severity"] = *severity;
  return json_response(status, {{"error", e}});
}

// An agent that speaks the protocol on a loopback port. What POST /task answers is a function of
// the call number (0-based) that the test sets; /health answers `health`; admin hooks are
// recorded and may run a reaction (a database reconnect that makes the agent well again).
class TestAgent {
 public:
  using TaskBehaviour = std::function<HttpResponse(int call)>;

  explicit TestAgent(std::string name) : name_(std::move(name)) {
    HttpServerOptions o;
    o.threads = 2;
    server_ = std::make_unique<HttpServer>(o, [this](const HttpRequest& r) { return handle(r); });
    Result<void> started = server_->start();
    if (!started.ok()) throw std::runtime_error(started.error().describe());
  }

  void on_task(TaskBehaviour behaviour) {
    std::lock_guard lock(mu_);
    behaviour_ = std::move(behaviour);
  }
  void on_admin(std::string hook, std::function<void()> reaction) {
    std::lock_guard lock(mu_);
    reactions_[std::move(hook)] = std::move(reaction);
  }
  void set_health(std::string status) {
    std::lock_guard lock(mu_);
    health_ = std::move(status);
  }
  std::vector<std::string> admin_calls() const {
    std::lock_guard lock(mu_);
    return admin_calls_;
  }
  int task_calls() const { return task_calls_.load(); }
  std::string url() const { return server_->base_url(); }
  const std::string& name() const { return name_; }

 private:
  HttpResponse handle(const HttpRequest& r) {
    if (r.method == "POST" && r.target == "/task") {
      nlohmann::json task = nlohmann::json::parse(r.body, nullptr, false);
      if (task.is_discarded() || !task.contains("id")) {
        return agent_error(400, "validation_failed", "task is not the protocol's JSON");
      }
      const int call = task_calls_.fetch_add(1);
      TaskBehaviour behaviour;
      {
        std::lock_guard lock(mu_);
        behaviour = behaviour_;
      }
      if (behaviour) return behaviour(call);
      return json_response(200, {{"agent", name_}, {"task", task["id"]}, {"result", "done"}});
    }
    if (r.method == "GET" && r.target == "/health") {
      std::lock_guard lock(mu_);
      return json_response(health_ == "unhealthy" ? 503 : 200, {{"status", health_}});
    }
    if (r.method == "POST" && r.target.rfind("/admin/", 0) == 0) {
      const std::string hook = r.target.substr(7);
      std::function<void()> reaction;
      {
        std::lock_guard lock(mu_);
        admin_calls_.push_back(hook);
        if (auto it = reactions_.find(hook); it != reactions_.end()) reaction = it->second;
      }
      if (reaction) reaction();
      return json_response(200, {{"ok", true}});
    }
    return json_response(404,
                         {{"error", {{"type", "validation_failed"}, {"message", "no route"}}}});
  }

  std::string name_;
  std::unique_ptr<HttpServer> server_;
  mutable std::mutex mu_;
  TaskBehaviour behaviour_;
  std::string health_ = "healthy";
  std::map<std::string, std::function<void()>> reactions_;
  std::vector<std::string> admin_calls_;
  std::atomic<int> task_calls_{0};
};

// Receives notifications (webhook, Slack, PagerDuty paths) and keeps every request.
class NotificationSink {
 public:
  struct Received {
    std::string path;
    std::string idempotency_key;
    nlohmann::json body;
  };

  // With a certificate and key (PEM), the sink speaks HTTPS only.
  explicit NotificationSink(std::string tls_cert_pem = {}, std::string tls_key_pem = {}) {
    HttpServerOptions options;
    options.tls_cert_pem = std::move(tls_cert_pem);
    options.tls_key_pem = std::move(tls_key_pem);
    server_ = std::make_unique<HttpServer>(options, [this](const HttpRequest& r) {
      std::lock_guard lock(mu_);
      if (fail_next_ > 0) {
        --fail_next_;
        return HttpResponse{503, {}, "try later"};
      }
      received_.push_back(
          {r.target, r.header("Idempotency-Key"), nlohmann::json::parse(r.body, nullptr, false)});
      return HttpResponse{r.target == "/pagerduty" ? 202 : 200, {}, "ok"};
    });
    Result<void> started = server_->start();
    if (!started.ok()) throw std::runtime_error(started.error().describe());
  }
  std::vector<Received> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }
  std::vector<Received> at(const std::string& path) const {
    std::vector<Received> out;
    for (auto& r : received()) {
      if (r.path == path) out.push_back(r);
    }
    return out;
  }
  void fail_next(int n) {
    std::lock_guard lock(mu_);
    fail_next_ = n;
  }
  std::string url(const std::string& path) const { return server_->base_url() + path; }

 private:
  std::unique_ptr<HttpServer> server_;
  mutable std::mutex mu_;
  std::vector<Received> received_;
  int fail_next_ = 0;
};

using mend::testing::TempDir;

// An io_context on its own thread, for the HTTP client.
using IoThread = mend::testing::IoLoop;

// Routes of every test: the team channel to the webhook, on-call adds Slack, emergency adds
// PagerDuty.
inline EscalatorOptions test_escalator_options() {
  EscalatorOptions o;
  o.policy.war_room_url_template = "https://war-room.test/{id}";
  o.routes = {{"engineering", {"webhook"}},
              {"on-call", {"webhook", "slack"}},
              {"emergency", {"webhook", "pagerduty"}}};
  return o;
}

inline void add_receivers(NotificationDispatcher& d, HttpClient& http, const NotificationSink& s) {
  d.add_receiver(std::make_unique<WebhookReceiver>("webhook", http, s.url("/webhook")));
  d.add_receiver(std::make_unique<SlackReceiver>("slack", http, s.url("/slack")));
  d.add_receiver(std::make_unique<PagerDutyReceiver>("pagerduty", http, "test-routing-key",
                                                     s.url("/pagerduty")));
}

inline std::unique_ptr<SqliteStore> open_store(const std::string& path) {
  auto opened = SqliteStore::open(path);
  if (!opened.ok()) throw std::runtime_error(opened.error().describe());
  return std::move(*opened);
}

}  // namespace mend::e2e

#endif  // MEND_TESTS_E2E_LOOPBACK_H_
