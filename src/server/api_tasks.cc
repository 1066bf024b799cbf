// The daemon's tasks API (docs/api.md): submit, read and wait for tasks, each stored before it
// runs or is acknowledged, through the task registry (task_registry.h).

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "api_codec.h"
#include "daemon_impl.h"
#include "mend/runtime/async_workflow.h"
#include "task_rows.h"

namespace mend::server_detail {

namespace net = boost::asio;
using nlohmann::json;

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
  TaskRegistry::Admission admission =
      tasks_.admit(task, key, digest, idempotent_type(g->config.tasks, task.type));
  const std::string& id = admission.id;
  switch (admission.result) {
    case TaskRegistry::Admit::stopping:
      return reply(error_response(503, ErrorType::service_unavailable,
                                  "mend is shutting down and takes no new tasks"));
    case TaskRegistry::Admit::key_conflict:
      return reply(error_response(409, ErrorType::validation_failed,
                                  "Idempotency-Key '" + key + "' was used for a different task (" +
                                      id + "); use a new key for a new task"));
    case TaskRegistry::Admit::replay:
      // A replay of an idempotent submission: the same task, as it stands.
      return wait_for_task(id, wait_seconds, responder, 200, true);
    case TaskRegistry::Admit::full: {
      HttpResponse r =
          error_response(503, ErrorType::temporary_unavailable,
                         "too many tasks in flight (limit " +
                             std::to_string(boot_config_.server.max_tasks_in_flight) + ")");
      r.headers.push_back({"Retry-After", "1"});
      return reply(std::move(r));
    }
    case TaskRegistry::Admit::id_taken:
      return reply(error_response(409, ErrorType::validation_failed,
                                  "a task with id '" + id + "' exists already"));
    case TaskRegistry::Admit::accepted:
      break;
  }
  task_writer_->raise_task_number(static_cast<std::int64_t>(admission.next_task_number));
  StoredTask stored = stored_running_task(task, key, digest, admission.submitted_at);
  // Written before anything runs or anyone hears of it; the answer and the start follow from the
  // writer's thread.
  auto accepted = [this, id, task, g, wait_seconds, responder, key](TaskWriter::Result result,
                                                                    const std::string& why) {
    if (result == TaskWriter::Result::written) {
      TaskView running;
      for (TaskWaiter& w : tasks_.mark_stored(id, &running)) {
        w.cancel();
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
  // Replays that joined while it was being stored hear what its first client hears.
  for (TaskWaiter& w : tasks_.forget_unstored(id)) {
    w.cancel();
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
  std::optional<TaskRegistry::Progress> progress = tasks_.backoff_began(id);
  if (!progress) return;
  TaskWrite write{TaskWrite::Kind::progress, {}, std::nullopt};
  write.task.id = id;
  write.task.call_in_flight = false;
  write.task.attempts = progress->attempts;
  // Not waited for: a store that still says "calling" is only more careful.
  task_writer_->submit(std::move(write), {});
}

net::awaitable<void> DaemonCore::before_call(const Task& task) {
  std::optional<TaskRegistry::Progress> progress = tasks_.call_starting(task.id);
  if (!progress) co_return;
  TaskWrite write{TaskWrite::Kind::progress, {}, std::nullopt};
  write.task.id = task.id;
  write.task.call_in_flight = true;
  write.task.attempts = progress->attempts;
  const bool must_be_stored = progress->must_be_stored;
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
  std::optional<std::pair<Task, int>> running = tasks_.running(id);
  TaskWrite write = running ? finish_write(id, &running->first, outcome, running->second, now)
                            : finish_write(id, nullptr, outcome, 0, now);
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
  TaskRegistry::Finished finished = tasks_.finish(id, status, outcome_json, stored);
  if (finished.ran_for) {
    m_.latency->with({status}).observe(std::chrono::duration<double>(*finished.ran_for).count());
  }
  std::vector<TaskWaiter>& waiters = finished.waiters;
  if (!waiters.empty()) {
    // Registered before the task counts as finished: shutdown, once drained, waits for these
    // answers to be written before it closes the connections.
    MutexLock lock(answered_mu_);
    std::erase_if(answered_, [](const std::shared_ptr<HttpResponder>& r) { return r->closed(); });
    for (const TaskWaiter& w : waiters) answered_.push_back(w.responder);
  }
  for (TaskWaiter& w : waiters) {
    w.cancel();
    respond_task(w.responder, finished.view, 200, false);
  }
  tasks_.release();
}

void DaemonCore::respond_task(const std::shared_ptr<HttpResponder>& responder, const TaskView& task,
                              int status, bool replayed) {
  if (task.done && task.outcome_in_store && task.outcome_json.empty()) {
    // A large outcome of a retained task: read from the store, off the I/O threads.
    net::post(*blocking_, [this, responder, summary = task, status, replayed]() mutable {
      try {
        std::optional<StoredTask> stored = store_->stored_task(summary.id);
        summary.outcome_json =
            stored && !stored->outcome_json.empty() ? stored->outcome_json : std::string("null");
      } catch (const std::exception& e) {
        log("error", "reading task " + summary.id + " from the store: " + e.what());
        return responder->respond(error_response(500, ErrorType::database_error, e.what()));
      }
      summary.outcome_in_store = false;
      respond_task(responder, summary, status, replayed);
    });
    return;
  }
  std::string body = "{\"id\":" + dump(task.id) +
                     ",\"state\":" + (task.done ? "\"done\"" : "\"running\"") +
                     ",\"submitted_at\":" + dump(iso(task.submitted_at));
  if (task.done) body += ",\"status\":" + dump(task.status) + ",\"outcome\":" + task.outcome_json;
  body += "}";
  HttpResponse r = raw_json_response(task.done ? status : 202, std::move(body));
  if (replayed) r.headers.push_back({"Idempotent-Replayed", "true"});
  responder->respond(std::move(r));
}

void DaemonCore::wait_for_task(const std::string& id, double wait_seconds,
                               const std::shared_ptr<HttpResponder>& responder,
                               int status_when_done, bool replayed) {
  auto make_waiter = [&](bool until_stored, const TaskView& running) {
    // A waiter until stored has a timer too, in case the store takes its time: then "running".
    auto timer = std::make_shared<net::steady_timer>(
        *io_, until_stored ? std::chrono::seconds(30) : from_seconds(wait_seconds));
    timer->async_wait([this, id, responder, running, replayed](boost::system::error_code ec) {
      if (ec) return;  // cancelled: the task finished and answered
      tasks_.remove_waiter(id, responder);
      respond_task(responder, running, 202, replayed);
    });
    return TaskWaiter{responder, [timer] { timer->cancel(); }, until_stored, replayed};
  };
  TaskRegistry::Lookup found = tasks_.wait(id, wait_seconds > 0, stopping_.load(), make_waiter);
  if (found.kind == TaskRegistry::Lookup::Kind::unknown) {
    responder->respond(error_response(404, ErrorType::validation_failed,
                                      "no task '" + id + "' (finished tasks are kept for the " +
                                          std::to_string(boot_config_.tasks.retained) +
                                          " most recent: tasks.retained)"));
  } else if (found.kind == TaskRegistry::Lookup::Kind::answer_now) {
    respond_task(responder, found.view, status_when_done, replayed);
  }
}

void DaemonCore::api_task(const std::string& id, double wait_seconds,
                          const std::shared_ptr<HttpResponder>& responder) {
  wait_for_task(id,
                std::min(wait_seconds, static_cast<double>(boot_config_.server.max_wait_seconds)),
                responder, 200, false);
}

void DaemonCore::api_tasks(const std::shared_ptr<HttpResponder>& responder) {
  json list = json::array();
  for (const TaskListing& task : tasks_.list()) {
    list.push_back({{"id", task.id},
                    {"type", task.type},
                    {"agent", task.agent},
                    {"state", task.done ? "done" : "running"},
                    {"status", task.status},
                    {"submitted_at", iso(task.submitted_at)}});
  }
  responder->respond(json_response(200, {{"tasks", list}, {"in_flight", tasks_.in_flight()}}));
}

}  // namespace mend::server_detail
