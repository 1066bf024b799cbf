// `mend demo`: see demo.h. The run has four phases:
//   1. set-up: a fresh directory, a loopback webhook receiver, mend.yaml with the specification's
//      eight agents (supervised mend-sample-agent processes), the daemon started in this process,
//      and a wait until every agent is ready;
//   2. the run: submitter threads send the four task types at a steady rate over the task API
//      (real HTTP, `?wait=`), a thread follows the event stream, and this thread fires the chaos
//      timeline through the agents' /admin/chaos, samples GET /v1/agents twice a second and draws
//      the live view;
//   3. the drain: no new tasks; the ones in flight finish; pending notifications are delivered;
//   4. the report: built from what the demo saw (tasks, samples, events, webhook deliveries) and
//      what mend says (records, /metrics), printed and written as HTML and JSON.
#include "demo.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api_client.h"
#include "demo_observations.h"
#include "demo_report.h"
#include "demo_script.h"
#include "demo_view.h"
#include "mend/core/clock.h"
#include "mend/runtime/http_server.h"
#include "mend/server/config.h"
#include "mend/server/daemon.h"
#include "table.h"

namespace mend::app {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// SIGINT/SIGTERM end the run early (the report is still written) or, with --keep-running, end
// the wait afterwards. Signals are blocked in every thread and taken by one waiter.
class SignalWatch {
 public:
  SignalWatch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &previous_);
    thread_ = std::thread([this] {
      for (;;) {
        timespec tick{0, 100'000'000};
        int signal = sigtimedwait(&set_, nullptr, &tick);
        if (signal == SIGINT || signal == SIGTERM) {
          std::lock_guard lock(mu_);
          // The first signal ends the run in order (the drain, the report, the shutdown); a
          // second one is the user who will not wait: leave now, as the default action would.
          if (signalled_) ::_exit(128 + signal);
          signalled_ = true;
          cv_.notify_all();
        }
        if (quit_.load()) return;
      }
    });
  }
  ~SignalWatch() {
    quit_ = true;
    thread_.join();
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  bool signalled() const {
    std::lock_guard lock(mu_);
    return signalled_;
  }
  // Waits until a signal or `timeout`; true when signalled.
  bool wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return signalled_; });
  }
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return signalled_; });
  }

 private:
  sigset_t set_{};
  sigset_t previous_{};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool signalled_ = false;
  std::atomic<bool> quit_{false};
  std::thread thread_;
};

bool stdout_is_terminal() {
  return ::isatty(STDOUT_FILENO) == 1;
}

// The terminal's width (table.h), or 100 columns when it cannot be told.
int live_width() {
  const std::size_t width = terminal_width();
  return width == 0 ? 100 : static_cast<int>(std::min<std::size_t>(width, 1000));
}

// --- The run -----------------------------------------------------------------------------------

class DemoRun {
 public:
  explicit DemoRun(const DemoOptions& options) : options_(options) {}

  int run() {
    SignalWatch signals;
    if (int status = set_up(signals); status != 0) return status;
    live_ = options_.live == "always" || (options_.live == "auto" && stdout_is_terminal());
    say("mend demo: " + std::to_string(std::size(kAgents)) + " agents ready at " +
        daemon_->base_url() + "; " + std::to_string(static_cast<int>(options_.duration_seconds)) +
        " s of tasks with chaos. Directory: " + directory_);

    observations_.start_clock();
    started_wall_ = std::chrono::system_clock::now();
    std::thread events([this] { follow_events(); });
    start_submitters();
    drive(signals);
    stop_submitting_ = true;
    drain(signals);
    for (std::thread& t : submitters_) t.join();

    json report = build_report();
    std::cout << render_demo_text_report(report, live_) << std::flush;
    const bool written = write_outputs(report);

    if (options_.keep_running && !signals.signalled()) {
      print_how_to_explore(report);
      signals.wait();
      say("mend demo: stopping");
    }
    stop_events_ = true;
    daemon_->stop();
    const int status = daemon_->wait();
    events.join();
    webhook_->stop();
    return status == 0 && written ? 0 : 1;
  }

 private:
  void say(const std::string& line) { std::cout << line << std::endl; }

  int set_up(SignalWatch& signals) {
    directory_ = make_directory(options_.directory);
    if (directory_.empty()) {
      std::cerr << "mend demo: cannot create the directory '" << options_.directory << "'\n";
      return 1;
    }
    const std::string agent = find_sample_agent(options_.agent_command);
    if (agent.empty()) {
      std::cerr << "mend demo: cannot find mend-sample-agent (built with mend: put it next to "
                   "mend or on PATH, set MEND_SAMPLE_AGENT, or pass --agent-command)\n";
      return 1;
    }
    webhook_ = std::make_unique<HttpServer>(HttpServerOptions{}, [this](const HttpRequest& r) {
      json body = json::parse(r.body, nullptr, false);
      if (!body.is_object()) return HttpResponse{400, {}, "not JSON"};
      observations_.add_notification(body);
      return HttpResponse{200, {}, "ok"};
    });
    if (auto started = webhook_->start(); !started.ok()) {
      std::cerr << "mend demo: cannot start the webhook receiver: " << started.error().message
                << "\n";
      return 1;
    }
    const std::string config_path = directory_ + "/mend.yaml";
    {
      std::ofstream out(config_path);
      out << demo_config_yaml(agent, webhook_->base_url() + "/notifications",
                              options_.duration_seconds);
      if (!out) {
        std::cerr << "mend demo: cannot write " << config_path << "\n";
        return 1;
      }
    }
    ConfigLoad load = load_config_file(config_path);
    if (!load.ok()) {
      for (const ConfigProblem& p : load.problems) std::cerr << p.to_string() << "\n";
      std::cerr << "mend demo: the demo's configuration is invalid (a bug: please report it)\n";
      return 1;
    }
    log_ = std::make_shared<std::ofstream>(directory_ + "/mend.log", std::ios::app);
    DaemonOptions daemon_options;
    daemon_options.handle_signals = false;  // SignalWatch takes them
    daemon_options.log = [log = log_, mu = std::make_shared<std::mutex>()](std::string_view level,
                                                                           std::string_view line) {
      std::lock_guard lock(*mu);
      *log << to_iso8601(std::chrono::system_clock::now()) << " " << level << " " << line << "\n";
      log->flush();
    };
    daemon_ = std::make_unique<Daemon>(std::move(*load.config), std::move(daemon_options));
    if (auto started = daemon_->start(); !started.ok()) {
      std::cerr << "mend demo: mend could not start: " << started.error().message << " (see "
                << directory_ << "/mend.log)\n";
      return 1;
    }
    api_ = std::make_unique<ApiClient>(daemon_->base_url(), "", std::chrono::seconds(90));
    say("mend demo: mend is starting the agents (" + agent_names_csv() + ")");
    // Every agent ready, or the demo would begin with failures the timeline did not cause.
    const auto deadline = SteadyClock::now() + std::chrono::seconds(60);
    while (SteadyClock::now() < deadline) {
      Result<ApiResponse> ready = api_->get("/readyz");
      if (ready.ok() && ready->status == 200) return 0;
      if (signals.wait_for(std::chrono::milliseconds(100))) {
        std::cerr << "mend demo: interrupted while the agents were starting\n";
        return 1;
      }
    }
    std::cerr << "mend demo: the agents did not become ready within 60 s (see " << directory_
              << "/mend.log)\n";
    return 1;
  }

  // Follows the event stream until mend stops (which ends it). A lost connection is followed
  // again with the events mend kept meanwhile (?replay), skipping those already seen by id.
  void follow_events() {
    long long last_id = -1;
    while (!stop_events_.load()) {
      const std::string path = last_id < 0 ? "/v1/events" : "/v1/events?replay=256";
      Result<void> followed = api_->follow_events(path, [&](const ServerEvent& e) {
        const long long id = std::atoll(e.id.c_str());
        if (id > last_id) {
          last_id = id;
          observations_.add_event(e);
        }
        return !stop_events_.load();
      });
      if (stop_events_.load()) return;
      if (followed.ok()) return;  // mend ended the stream: it is stopping
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  void start_submitters() {
    int weights = 0;
    for (const TaskKind& k : kWorkload) weights += k.weight;
    // Enough threads that tasks waiting out a hung agent do not slow the others' rate.
    const int threads = std::clamp(static_cast<int>(options_.tasks_per_second * 6), 8, 64);
    for (int i = 0; i < threads; ++i) {
      submitters_.emplace_back([this, weights] {
        for (;;) {
          const int n = next_task_.fetch_add(1);
          const double due = n / options_.tasks_per_second;
          // Sleep until the task is due (in small steps, so that the end is noticed).
          while (!stop_submitting_.load() && observations_.now_s() < due) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
          if (stop_submitting_.load()) return;
          submit(n, pick(n, weights));
        }
      });
    }
  }

  // The task kind of the n-th task: a seeded draw, so a run with the same seed sends the same
  // sequence.
  const TaskKind& pick(int n, int weights) const {
    std::mt19937 draw(options_.seed * 7919u + static_cast<unsigned>(n));
    int x = static_cast<int>(draw() % static_cast<unsigned>(weights));
    for (const TaskKind& k : kWorkload) {
      if (x < k.weight) return k;
      x -= k.weight;
    }
    return kWorkload[0];
  }

  void submit(int n, const TaskKind& kind) {
    const std::string id = "demo-" + std::to_string(n + 1);
    json payload;
    if (std::string(kind.type) == "code_review") {
      payload = {{"content", "def handler(event):\n    # TODO: validate\n    return event\n"}};
    } else if (std::string(kind.type) == "deployment") {
      payload = {{"environment", "staging"}, {"version", "1." + std::to_string(n % 40)}};
    } else if (std::string(kind.type) == "ai_analysis") {
      payload = {{"text", "Customers report slow checkout after the last release."}};
    } else {
      payload = {{"target", "api-gateway"}};
    }
    json task = {{"id", id}, {"type", kind.type}, {"agent", kind.primary}, {"payload", payload}};
    const double submitted_s = observations_.now_s();
    observations_.task_submitted();
    Result<ApiResponse> r = api_->post("/v1/tasks?wait=60", task);
    // 202: the task is still running after the wait; ask again.
    for (int polls = 0; r.ok() && r->status == 202 && polls < 5; ++polls) {
      r = api_->get("/v1/tasks/" + id + "?wait=60");
    }
    json answer = r.ok() ? r->json() : json();
    const double finished_s = observations_.now_s();
    json record;
    try {
      record = task_record(answer, kind, id, submitted_s, finished_s);
    } catch (const json::exception&) {  // an outcome of an unexpected shape: kept as an error
      record = task_record(json(), kind, id, submitted_s, finished_s);
    }
    observations_.task_done(std::move(record));
  }

  // Fires the chaos timeline and draws the view until the run's time is up.
  void drive(SignalWatch& signals) {
    std::size_t next_step = 0;
    auto next_frame = SteadyClock::now();
    auto next_line = SteadyClock::now() + std::chrono::seconds(10);
    int frame_lines = 0;
    for (;;) {
      const double t = observations_.now_s();
      if (t >= options_.duration_seconds || signals.signalled()) break;
      while (next_step < std::size(kTimeline) &&
             t >= kTimeline[next_step].at * options_.duration_seconds) {
        inject(kTimeline[next_step], t);
        ++next_step;
      }
      if (SteadyClock::now() >= next_frame) {
        next_frame += std::chrono::milliseconds(500);
        sample(t);
        LiveView v = observations_.view();
        v.elapsed_s = t;
        v.duration_s = options_.duration_seconds;
        v.base_url = daemon_->base_url();
        if (live_) {
          std::string frame = render_live_frame(v, live_width(), /*color=*/true);
          // Redraw over the previous frame.
          if (frame_lines > 0) std::cout << "\x1b[" << frame_lines << "F";
          std::cout << frame << "\x1b[J" << std::flush;
          observations_.take_new_lines();  // shown in the frame; not kept for line output
          frame_lines = static_cast<int>(std::count(frame.begin(), frame.end(), '\n'));
        } else {
          for (const std::string& line : observations_.take_new_lines()) say(line);
          if (SteadyClock::now() >= next_line) {
            next_line += std::chrono::seconds(10);
            say(render_progress_line(v));
          }
        }
      }
      signals.wait_for(std::chrono::milliseconds(50));
    }
    if (!live_) {
      for (const std::string& line : observations_.take_new_lines()) say(line);
    }
  }

  void sample(double t) {
    Result<ApiResponse> agents = api_->get("/v1/agents");
    if (!agents.ok() || agents->status != 200) return;
    json j = agents->json();
    if (j.is_object() && j.contains("agents")) j = j["agents"];
    if (j.is_array()) {
      last_agents_ = j;
      observations_.add_sample(t, j);
    }
  }

  void inject(const ChaosStep& step, double t) {
    json record = {
        {"t", t}, {"agent", step.agent}, {"action", step.action}, {"detail", step.detail}};
    std::string url;
    for (const json& a : last_agents_) {
      if (!a.is_object() || a.value("name", "") != step.agent) continue;
      if (auto r = a.find("replicas"); r != a.end() && r->is_array() && !r->empty()) {
        url = (*r)[0].value("url", std::string());
      }
    }
    if (url.empty()) {
      record["error"] = "the agent's address is not known";
    } else {
      ApiClient agent(url, "", std::chrono::seconds(5));
      const json knobs = *step.knobs ? json::parse(step.knobs) : memory_leak_knobs();
      record["knobs"] = knobs;
      Result<ApiResponse> r = agent.post("/admin/chaos", knobs);
      if (!r.ok()) {
        record["error"] = r.error().message;
      } else if (r->status != 200) {
        record["error"] =
            "the agent answered " + std::to_string(r->status) + ": " + r->error_message();
      }
    }
    observations_.add_chaos(std::move(record));
  }

  // Enough growth per task that the leaking agent passes its 160 MiB limit about 12 % of the run
  // after the leak begins, at the workload's rate (code-generation-improver gets 12 % of tasks).
  json memory_leak_knobs() const {
    const double tasks_to_limit =
        std::max(1.0, 0.12 * options_.duration_seconds * options_.tasks_per_second * 0.12);
    const double kib = std::clamp(160.0 * 1024.0 / tasks_to_limit, 4096.0, 96.0 * 1024.0);
    return {{"memory_growth_kib", static_cast<int>(kib)}};
  }

  // No new tasks: the ones in flight get up to 45 s (a task's deadline is 30 s), then pending
  // notifications a moment to be delivered.
  void drain(SignalWatch& signals) {
    const auto deadline = SteadyClock::now() + std::chrono::seconds(45);
    bool announced = false;
    while (SteadyClock::now() < deadline && observations_.done() < observations_.submitted()) {
      if (!announced && !live_) {
        say("mend demo: the workload is over; waiting for " +
            std::to_string(observations_.submitted() - observations_.done()) + " tasks in flight");
        announced = true;
      }
      if (signals.wait_for(std::chrono::milliseconds(100))) break;
    }
    sample(observations_.now_s());
    // Notifications go out every 250 ms; give the last ones time to arrive.
    signals.wait_for(std::chrono::milliseconds(1500));
    if (!live_) {
      for (const std::string& line : observations_.take_new_lines()) say(line);
    } else {
      std::cout << "\n";
    }
  }

  json build_report() {
    json report = {{"title", "mend demo"},
                   {"version", "0.1.0"},
                   {"started_at", to_iso8601(started_wall_)},
                   {"duration_s", observations_.now_s()},
                   {"base_url", daemon_->base_url()},
                   {"directory", directory_}};
    json agents = json::array();
    for (const DemoAgent& a : kAgents) agents.push_back(a.name);
    report["agents"] = agents;
    report["chains"] = {
        {"senior-frontend-developer",
         {"senior-full-stack-developer", "code-generation-improver", "agentzero-coordinator"}},
        {"senior-backend-developer",
         {"senior-full-stack-developer", "senior-ai-engineer", "agentzero-coordinator"}},
        {"ollama-integration-specialist",
         {"senior-ai-engineer", "infrastructure-devops-manager", "agentzero-coordinator"}}};
    report["task_types"] = {"code_review", "deployment", "ai_analysis", "security_scan"};
    // mend's counters first: a notification delivered after them is received in what follows,
    // never counted as sent and missing.
    std::string metrics;
    if (Result<ApiResponse> m = api_->get("/metrics"); m.ok() && m->status == 200) {
      metrics = m->body;
    }
    observations_.fill_report(report);

    json records = json::array();
    for (const char* collection : {"incidents", "tickets"}) {
      Result<ApiResponse> r = api_->get(std::string("/v1/") + collection);
      if (!r.ok() || r->status != 200) continue;
      json j = r->json();
      if (j.is_object() && j.contains("records")) j = j["records"];
      if (!j.is_array()) continue;
      for (const json& rec : j) records.push_back(rec);
    }
    report["records"] = records;

    const json& tasks = report["tasks"];
    int attempts = 0, retries = 0, failed = 0;
    for (const json& t : tasks) {
      attempts += t.value("attempts", 0);
      retries += t.value("retries", 0);
      failed += t.value("status", "") == "failed" || t.value("status", "") == "error" ? 1 : 0;
    }
    const json& outcomes = report["outcomes"];
    report["totals"] = {
        {"tasks", tasks.size()},
        {"submitted", observations_.submitted()},  // tasks still unanswered: the difference
        {"attempts", attempts},
        {"retries", retries},
        {"fallbacks", outcomes.value("fallback", 0)},
        {"degraded", outcomes.value("degraded", 0)},
        {"failed", failed},
        {"circuit_transitions", report["circuit_transitions"].size()},
        {"restarts", report["restarts"].size()},
        {"self_healing", report["healing"].size()},
        {"notifications_sent",
         metric_sum(metrics, "mend_notifications_total", "result=\"delivered\"")},
        {"notifications_received", report["notifications"].size()},
        // mend's own counts, to set beside what the demo saw.
        {"mend_retries", metric_sum(metrics, "mend_retries_total")},
        {"mend_restarts", metric_sum(metrics, "mend_agent_restarts_total")},
        {"mend_circuit_transitions", metric_sum(metrics, "mend_circuit_transitions_total")}};
    return report;
  }

  bool write_outputs(const json& report) {
    const std::string html_path =
        options_.html_path.empty() ? directory_ + "/mend-demo-report.html" : options_.html_path;
    const std::string json_path =
        options_.json_path.empty() ? directory_ + "/mend-demo-report.json" : options_.json_path;
    std::ofstream html(html_path);
    html << render_demo_html(report);
    std::ofstream out(json_path);
    // Replace, not throw: the directory name and agents' messages need not be UTF-8.
    out << report.dump(1, ' ', false, json::error_handler_t::replace) << "\n";
    if (!html || !out) {
      std::cerr << "mend demo: cannot write the report to " << html_path << " / " << json_path
                << "\n";
      return false;
    }
    say("Report: " + html_path + " (open it in a browser), data: " + json_path);
    say("Files:  " + directory_ +
        "/mend.yaml (the configuration), mend.log (mend's log, the "
        "agents' output), mend.db (tickets, incidents, the task journal)");
    return true;
  }

  void print_how_to_explore(const json& report) {
    const std::string a = daemon_->base_url();
    std::string record = "INC-1";  // the first incident of the run, else its first ticket
    for (const json& r : report["records"]) {
      if (!r.is_object()) continue;
      if (r.value("kind", "") == "incident") {
        record = r.value("id", record);
        break;
      }
      if (r.value("kind", "") == "ticket") record = r.value("id", record);
    }
    say("");
    say("mend is still running at " + a + " with its eight agents. Explore it:");
    say("  export MEND_ADDRESS=" + a);
    say("  mend agents                 # health, circuits, replicas");
    say("  mend incidents; mend tickets");
    say("  mend ack " + record + " --by you; mend resolve " + record + " --by you");
    say("  mend submit --type code_review --agent senior-backend-developer");
    say("  mend events                 # follow every decision as it is taken");
    say("  curl -s " + a + "/metrics | grep ^mend_");
    say("Ctrl-C stops mend and its agents.");
  }

  const DemoOptions& options_;
  Observations observations_;  // before the servers whose handlers write to it
  std::chrono::system_clock::time_point started_wall_ = std::chrono::system_clock::now();
  std::string directory_;
  std::shared_ptr<std::ofstream> log_;
  std::unique_ptr<HttpServer> webhook_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<ApiClient> api_;
  json last_agents_ = json::array();
  bool live_ = false;
  std::atomic<int> next_task_{0};
  std::atomic<bool> stop_submitting_{false};
  std::atomic<bool> stop_events_{false};
  std::vector<std::thread> submitters_;
};

}  // namespace

CLI::App* add_demo_command(CLI::App& app, DemoOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "demo", "Run eight sample agents under mend with scripted chaos: a live view, a report");
  cmd->footer(
      "A workload of the four task types while a timeline injects a crash, a rate limit, a hang, "
      "a memory leak, a lost database, corrupt data and two outages; the report is printed and "
      "written as HTML (charts) and JSON. `make demo` runs it.");
  cmd->add_option("--duration", options.duration_seconds, "Seconds of workload and chaos")
      ->check(CLI::Range(10.0, 3600.0))
      ->capture_default_str();
  cmd->add_option("--rate", options.tasks_per_second, "Tasks submitted per second")
      ->check(CLI::Range(0.5, 200.0))
      ->capture_default_str();
  cmd->add_option("--dir", options.directory,
                  "Directory for mend.yaml, mend.db, mend.log and the report (default: a fresh "
                  "one under $TMPDIR)");
  cmd->add_option("--report-html", options.html_path, "Where to write the HTML report");
  cmd->add_option("--report-json", options.json_path, "Where to write the report's data (JSON)");
  cmd->add_option("--agent-command", options.agent_command,
                  "The sample agent binary (default: $MEND_SAMPLE_AGENT, else mend-sample-agent "
                  "next to mend, in the build tree beside it, or on PATH)");
  cmd->add_flag("--keep-running", options.keep_running,
                "Leave mend and the agents running after the report, until Ctrl-C");
  cmd->add_option("--live", options.live,
                  "The live view: auto (when stdout is a terminal), always, never (one line per "
                  "event)")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  cmd->add_option("--seed", options.seed, "Seeds the workload's sequence of tasks")
      ->capture_default_str();
  return cmd;
}

int run_demo(const DemoOptions& options) {
  DemoRun run(options);
  return run.run();
}

}  // namespace mend::app
