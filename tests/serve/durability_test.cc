// Durable tasks: `mend serve` killed with SIGKILL while tasks run, wait in backoff or call an
// agent, and started again on the same store. The agent is a server in this test process (it
// outlives every daemon) that records each call it took, so that the audit can tell a task that
// an agent ran twice from one retried after a 503.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "mend/store/sqlite_store.h"
#include "mend_test/write_lock_holder.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using ::testing::HasSubstr;

// An agent that answers each call after `latency`, with 503 for the calls `fails` picks (by task
// id and attempt, so the same call fails the same way in every run) and for every call of a task
// whose id starts with "doomed-" (it escalates), and counts the calls it answered 200: a task it
// answered twice, it ran twice.
class RecordingAgent {
 public:
  RecordingAgent() {
    HttpServerOptions options;
    options.threads = 8;  // calls wait out their latency on the server's threads
    server_ = std::make_unique<HttpServer>(options, [this](const HttpRequest& r) {
      if (r.target == "/health") return HttpResponse{200, {}, R"({"status":"healthy"})"};
      json body = json::parse(r.body, nullptr, false);
      const std::string id = body.value("id", std::string());
      const int attempt = body.value("attempt", 0);
      const auto latency = latency_.load();
      received_.fetch_add(1);
      std::this_thread::sleep_for(latency);
      if (id.rfind("doomed-", 0) == 0 ||
          (fail_every_.load() > 0 &&
           std::hash<std::string>{}(id + "#" + std::to_string(attempt)) % fail_every_.load() ==
               0)) {
        return HttpResponse{503,
                            {{"Content-Type", "application/json"}},
                            R"({"error":{"type":"temporary_unavailable","message":"busy"}})"};
      }
      {
        std::lock_guard lock(mu_);
        ++ran_[id];
      }
      return HttpResponse{200,
                          {{"Content-Type", "application/json"}},
                          json({{"task_id", id}, {"result", {{"ok", true}}}}).dump()};
    });
    Result<void> started = server_->start();
    if (!started.ok()) throw std::runtime_error(started.error().describe());
  }
  ~RecordingAgent() { server_->stop(); }
  std::string url() const { return server_->base_url(); }
  void set(Duration latency, int fail_every) {
    latency_ = std::chrono::duration_cast<std::chrono::milliseconds>(latency);
    fail_every_ = fail_every;
  }
  int received() const { return received_.load(); }
  std::map<std::string, int> ran() const {
    std::lock_guard lock(mu_);
    return ran_;
  }

 private:
  std::atomic<std::chrono::milliseconds> latency_{std::chrono::milliseconds(0)};
  std::atomic<int> fail_every_{0};
  std::atomic<int> received_{0};
  mutable std::mutex mu_;
  std::map<std::string, int> ran_;
  std::unique_ptr<HttpServer> server_;
};

class DurabilityTest : public ServeTest {
 protected:
  // One URL agent for every type; code_review is idempotent (may be sent again after a crash),
  // deployment is not.
  std::string durable_config(const std::string& backoff = "{base: 50ms, cap: 200ms}") const {
    return config_yaml("  - name: worker\n    url: " + agent_.url() +
                           "\n    capabilities: [code_review, deployment]\n"
                           "    policies: {retry: {max_retries: 3, backoff: " +
                           backoff + "}, breaker: {failure_threshold: 100000}}\n",
                       "tasks:\n  idempotent_types: [code_review]\n  retained: 1000000\n");
  }

  // A submission as a client sees it; status 0 when the connection failed (the daemon died).
  Reply try_post(const json& task, const std::string& key = "") {
    std::vector<HttpHeader> headers = {{"Authorization", std::string("Bearer ") + kToken},
                                       {"Content-Type", "application/json"}};
    if (!key.empty()) headers.push_back({"Idempotency-Key", key});
    Result<HttpResponse> r =
        http_.request_sync("POST", base_ + "/v1/tasks", headers, task.dump(), 5s);
    Reply reply;
    if (!r.ok()) return reply;
    reply.status = r->status;
    reply.text = r->body;
    reply.body = json::parse(r->body, nullptr, false);
    return reply;
  }

  // The task as the daemon's store holds it, read from the file as another program would.
  std::optional<StoredTask> stored_task(const std::string& id,
                                        const std::string& path_of_store = "") {
    Result<std::unique_ptr<SqliteStore>> store =
        SqliteStore::open(path_of_store.empty() ? dir_.file("mend.db") : path_of_store);
    if (!store.ok()) {
      ADD_FAILURE() << store.error().describe();
      return std::nullopt;
    }
    return (*store)->stored_task(id);
  }

  void kill_daemon() {
    daemon_->signal(SIGKILL);
    daemon_.reset();  // waits for the process to be gone
  }

  json task_of(const std::string& type) const {
    return {{"type", type}, {"agent", "worker"}, {"payload", {{"content", "x"}}}};
  }

  RecordingAgent agent_;
};

// A task waiting in backoff at the kill resumes after the restart with the retries it had left;
// a deployment whose call was out ends interrupted, not sent again; a code review whose call was
// out is sent again (its type is idempotent). Generated ids go on from where they were.
TEST_F(DurabilityTest, AfterAKillWaitingTasksResumeAndCallsInFlightEndAsTheirTypeAllows) {
  agent_.set(1500ms, 0);
  start_daemon(durable_config("{base: 30s, cap: 30s}"));
  ASSERT_FALSE(HasFatalFailure());
  Reply deploy = try_post(task_of("deployment"));
  Reply review = try_post(task_of("code_review"));
  ASSERT_EQ(deploy.status, 202) << deploy.text;
  ASSERT_EQ(review.status, 202) << review.text;
  EXPECT_EQ(deploy.body["id"], "task-1");
  EXPECT_EQ(review.body["id"], "task-2");
  wait_until([&] { return agent_.received() == 2; }, 10s, "both calls to reach the agent");
  // A third task fails its first call at once and then waits 30 s in backoff.
  agent_.set(0ms, 1);
  Reply waiting = try_post(task_of("deployment"), "deploy-v3");
  ASSERT_EQ(waiting.status, 202) << waiting.text;
  // The store says it waits (no call out) once the writer has written that.
  const std::string waiting_id = waiting.body["id"];
  wait_until(
      [&] {
        std::optional<StoredTask> t = stored_task(waiting_id);
        return t && !t->call_in_flight;
      },
      10s, "the store to say the third task waits in backoff");
  ASSERT_FALSE(HasFatalFailure());
  kill_daemon();

  agent_.set(0ms, 0);
  start_daemon(durable_config("{base: 50ms, cap: 50ms}"));
  ASSERT_FALSE(HasFatalFailure());
  Reply d = get("/v1/tasks/task-1?wait=10");
  ASSERT_EQ(d.status, 200) << d.text;
  EXPECT_EQ(d.body["outcome"]["status"], "interrupted");
  EXPECT_THAT(d.body["outcome"]["error"]["message"].get<std::string>(),
              HasSubstr("the agent may have run it"));
  Reply r = get("/v1/tasks/task-2?wait=10");
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["outcome"]["status"], "succeeded_after_retry") << "its call was sent again";
  Reply w = get("/v1/tasks/" + waiting.body["id"].get<std::string>() + "?wait=10");
  ASSERT_EQ(w.status, 200) << w.text;
  EXPECT_EQ(w.body["outcome"]["status"], "succeeded_after_retry") << w.text;
  // The agent ran the deployment at most once (its first call may have finished after the kill),
  // and the waiting one once, after the restart.
  EXPECT_LE(agent_.ran()["task-1"], 1);
  EXPECT_EQ(agent_.ran()[w.body["id"].get<std::string>()], 1);

  // The key survived: the same submission is the same task, not a second deployment.
  Reply again = try_post(task_of("deployment"), "deploy-v3");
  EXPECT_EQ(again.status, 200) << again.text;
  EXPECT_EQ(again.body["id"], waiting.body["id"]);
  Reply fresh = try_post(task_of("code_review"));
  ASSERT_EQ(fresh.status, 202) << fresh.text;
  EXPECT_EQ(fresh.body["id"], "task-4") << "ids go on after a restart";
}

// About 15 s: twelve daemons started and killed with SIGKILL under load. The audit afterwards:
// every task a client heard accepted has a final outcome, no generated id was handed out twice, no
// non-idempotent task was run twice by the agent, and no record was lost.
TEST_F(DurabilityTest, TwelveKillsUnderLoadLoseNoAcceptedTaskAndRepeatNoId) {
  constexpr int kKills = 12;
  std::mt19937 random(20261207);
  agent_.set(20ms, 4);  // a quarter of the calls answer 503: tasks wait in backoff at each kill
  std::map<std::string, std::string> accepted;  // id -> type
  std::multiset<std::string> generated;
  std::set<std::int64_t> records_seen;
  int refused = 0;
  for (int cycle = 0; cycle <= kKills; ++cycle) {
    start_daemon(durable_config());
    ASSERT_FALSE(HasFatalFailure());
    Reply records = get("/v1/escalations");
    ASSERT_EQ(records.status, 200);
    std::set<std::int64_t> now_there;
    for (const json& r : records.body["records"]) now_there.insert(r["number"].get<std::int64_t>());
    for (std::int64_t seen : records_seen) EXPECT_TRUE(now_there.count(seen)) << "record " << seen;
    records_seen = now_there;
    if (cycle == kKills) break;

    // Submissions from two clients until the kill, which lands at a random moment.
    std::atomic<bool> killed{false};
    std::mutex mu;
    auto client = [&](int which) {
      for (int n = 0; !killed.load(); ++n) {
        const std::string type = n % 2 == 0 ? "deployment" : "code_review";
        json task = task_of(type);
        if (which == 0) {
          // Every eighth task of this client fails every attempt and escalates.
          task["id"] = std::string(n % 8 == 7 ? "doomed-" : "") + "c" + std::to_string(cycle) +
                       "-" + std::to_string(n);
        }
        Reply r = try_post(task);
        // About 100 tasks a second per client: what the agent (8 calls at once, 20 ms each)
        // keeps up with, so that outcomes are answers, not overload.
        std::this_thread::sleep_for(10ms);
        std::lock_guard lock(mu);
        if (r.status == 202) {
          accepted[r.body["id"].get<std::string>()] = type;
          if (which == 1) generated.insert(r.body["id"].get<std::string>());
        } else if (r.status != 0) {
          ++refused;
        }
      }
    };
    std::thread a(client, 0);
    std::thread b(client, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(200 + random() % 400));
    // An operator resolves what is open just before the kill: its notifications are in the outbox
    // at the kill, and the next failures open records (and notify) of their own.
    const Reply active = get("/v1/escalations?status=active");
    for (const json& r : active.body["records"]) {
      Reply resolved =
          post("/v1/escalations/" + std::to_string(r["number"].get<std::int64_t>()) + "/resolve",
               {{"by", "audit"}});
      EXPECT_EQ(resolved.status, 200) << resolved.text;
    }
    kill_daemon();
    killed = true;
    a.join();
    b.join();
  }

  // The last daemon runs what was left: every accepted task ends.
  ASSERT_GT(accepted.size(), 100u);
  std::map<std::string, int> statuses;
  std::set<std::string> records_told;  // records named in outcomes
  for (const auto& [id, type] : accepted) {
    Reply r = get("/v1/tasks/" + id + "?wait=20");
    ASSERT_EQ(r.status, 200) << id << ": " << r.text;
    ASSERT_EQ(r.body["state"], "done") << id;
    ++statuses[r.body["status"].get<std::string>()];
    const json& escalation = r.body["outcome"]["escalation"];
    if (escalation.is_object() && escalation.contains("record")) {
      records_told.insert(escalation["record"].get<std::string>());
    }
  }

  // Records and notifications: every record an outcome named exists, and every record's
  // notifications (opened, and resolved when it was) reach the receiver, at least once: a kill
  // between a delivery and its mark sends it again, counted here as duplicated.
  std::map<std::string, json> records;
  Reply all_records = get("/v1/escalations");
  ASSERT_EQ(all_records.status, 200) << all_records.text;
  for (const json& r : all_records.body["records"]) records[r["id"].get<std::string>()] = r;
  for (const std::string& told : records_told) EXPECT_TRUE(records.count(told)) << told;
  std::set<std::pair<std::int64_t, std::string>> expected;
  for (const auto& [name, r] : records) {
    expected.insert({r["number"].get<std::int64_t>(), "trigger"});
    if (r["status"] == "resolved") expected.insert({r["number"].get<std::int64_t>(), "resolve"});
  }
  std::map<std::pair<std::int64_t, std::string>, int> delivered;
  auto every_notification_delivered = [&] {
    delivered.clear();
    for (const json& n : webhook_.received()) {
      ++delivered[{n.value("record_id", std::int64_t{0}), n.value("event", std::string())}];
    }
    return std::all_of(expected.begin(), expected.end(),
                       [&](const auto& e) { return delivered.count(e) > 0; });
  };
  wait_until(every_notification_delivered, 20s, "every record's notifications");
  int notifications_duplicated = 0;
  for (const auto& [key, times] : delivered) notifications_duplicated += times - 1;
  // A record opens in most cycles (when a doomed task ends before the kill): 14 in a typical run.
  EXPECT_GE(records.size(), static_cast<std::size_t>(kKills / 2)) << "cycles opened records";
  for (const std::string& id : generated) EXPECT_EQ(generated.count(id), 1u) << id;
  int run_twice = 0;
  int idempotent_again = 0;
  for (const auto& [id, times] : agent_.ran()) {
    if (times < 2) continue;
    if (accepted.count(id) && accepted[id] == "deployment") ++run_twice;
    if (accepted.count(id) && accepted[id] == "code_review") ++idempotent_again;
  }
  EXPECT_EQ(run_twice, 0) << "a deployment was sent again after a crash";
  EXPECT_EQ(refused, 0) << "nothing was refused: the only failures were the kills";
  std::string summary;
  for (const auto& [status, n] : statuses) summary += status + "=" + std::to_string(n) + " ";
  std::cout << "[ audit ] " << kKills << " kills, " << accepted.size() << " accepted, "
            << generated.size() << " generated ids, all final: " << summary
            << "; code reviews sent again after a kill: " << idempotent_again << "; records "
            << records.size() << " (named in outcomes " << records_told.size()
            << ", all there), notifications expected " << expected.size()
            << ", all delivered, duplicated " << notifications_duplicated << "\n";
}

// About 2 s. Another program holds the database's write lock (as a full disk would, every write
// fails): a new task is refused with 503 and never run, /readyz says why, a running task still
// answers from memory, and once the store takes writes again what it missed is written.
TEST_F(DurabilityTest, WhileTheStoreRefusesWritesNothingIsLostOrSilent) {
  agent_.set(400ms, 0);
  std::string yaml = durable_config();
  const std::string store = "store:\n  path: mend.db\n";
  yaml.replace(yaml.find(store), store.size(), store + "  busy_timeout: 100ms\n");
  start_daemon(yaml);
  ASSERT_FALSE(HasFatalFailure());
  Reply running = try_post(task_of("deployment"));
  ASSERT_EQ(running.status, 202) << running.text;
  const std::string id = running.body["id"];
  wait_until([&] { return agent_.received() == 1; }, 10s, "the call to reach the agent");

  auto lock = std::make_unique<WriteLockHolder>(dir_.file("mend.db"));

  Reply refused = try_post(task_of("code_review"));
  EXPECT_EQ(refused.status, 503) << refused.text;
  EXPECT_EQ(refused.body["error"]["type"], "database_error") << refused.text;
  EXPECT_THAT(refused.text, HasSubstr("not run"));
  Reply ready = get("/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body["store"]["failing"], true) << ready.text;
  // The running task ends meanwhile: its answer comes from memory, its outcome waits to be
  // written.
  Reply done = get("/v1/tasks/" + id + "?wait=10");
  EXPECT_EQ(done.status, 200) << done.text;
  EXPECT_EQ(done.body["status"], "succeeded") << done.text;
  EXPECT_THAT(log(), HasSubstr("the store refuses writes"));

  lock->release();
  wait_until([&] { return get("/readyz").status == 200; }, 10s, "the store to take writes again");
  ASSERT_FALSE(HasFatalFailure());
  std::optional<StoredTask> stored = stored_task(id);
  ASSERT_TRUE(stored);
  EXPECT_TRUE(stored->done) << "the outcome kept in memory was written";
  EXPECT_EQ(stored->status, "succeeded");
  EXPECT_THAT(log(), HasSubstr("the store takes writes again"));
  EXPECT_THAT(metrics(), ::testing::ContainsRegex(
                             "mend_store_task_writes_total\\{result=\"failed\"\\} [1-9]"));
  Reply after = try_post(task_of("code_review"));
  EXPECT_EQ(after.status, 202) << after.text;
}

// Fills the filesystem at `path` with one file until a write fails; returns the errno of that
// failure (ENOSPC when the disk is full).
int fill(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  const std::string chunk(64 * 1024, 'x');
  int error = 0;
  for (int i = 0; i < 100000 && error == 0; ++i) {
    if (::write(fd, chunk.data(), chunk.size()) < 0) error = errno;
  }
  // A partial write leaves the last few bytes: fill them one at a time.
  for (int i = 0; i < 65536 && error == ENOSPC; ++i) {
    if (::write(fd, "x", 1) < 0 && errno != ENOSPC) break;
  }
  ::close(fd);
  return error;
}

// About 4 s. A real full disk: mend's store lives on a 4 MiB tmpfs that only its process sees
// (a private mount namespace made by unshare; the test reaches the files through /proc/PID/root),
// and the test fills it while ten tasks of ten types run towards their escalations. Every
// escalation waits in memory (pending in the task's outcome, counted, /readyz not ready), no task
// or notification is lost, and once there is room again the ten tickets open, with the time of
// their failure, their notifications are delivered and every outcome is in the store.
TEST_F(DurabilityTest, OnAFullDiskEscalationsWaitInMemoryAndAreWrittenOnceThereIsRoom) {
  const std::string disk = dir_.file("disk");
  std::filesystem::create_directory(disk);
  launcher_ = {"/usr/bin/unshare", "--mount", "--propagation", "private"};
  if (::geteuid() != 0) {
    // Without root, a user namespace gives the right to mount in the mount namespace it owns.
    launcher_.insert(launcher_.begin() + 1, {"--user", "--map-root-user"});
  }
  std::string probe;
  for (const std::string& a : launcher_) probe += a + " ";
  probe += "/bin/sh -c 'mount -t tmpfs tmpfs \"$0\"' " + disk + " 2>/dev/null";
  if (std::system(probe.c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs in a private mount namespace here (" << probe << ")";
  }
  launcher_.insert(
      launcher_.end(),
      {"/bin/sh", "-c", "mount -t tmpfs -o size=4m,mode=0700 tmpfs \"$0\" && exec \"$@\"", disk});

  agent_.set(100ms, 1);  // every call answers 503: each task fails after its retries, escalating
  std::string types;
  for (int i = 0; i < 10; ++i) types += std::string(i ? ", " : "") + "type-" + std::to_string(i);
  std::string yaml =
      config_yaml("  - name: worker\n    url: " + agent_.url() + "\n    capabilities: [" + types +
                  "]\n    policies: {retry: {max_retries: 2, backoff: {base: 300ms, "
                  "cap: 300ms}}, breaker: {failure_threshold: 100000}}\n");
  const std::string store = "store:\n  path: mend.db\n";
  yaml.replace(yaml.find(store), store.size(), "store:\n  path: disk/mend.db\n");
  start_daemon(yaml);
  ASSERT_FALSE(HasFatalFailure());
  const std::string inside = "/proc/" + std::to_string(daemon_->pid()) + "/root" + disk;
  ASSERT_TRUE(std::filesystem::exists(inside + "/mend.db")) << "the store is on the tmpfs";

  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    Reply r =
        try_post({{"type", "type-" + std::to_string(i)}, {"agent", "worker"}, {"payload", {}}});
    ASSERT_EQ(r.status, 202) << r.text;
    ids.push_back(r.body["id"]);
  }
  ASSERT_EQ(fill(inside + "/filler"), ENOSPC);

  // Full: a new task is refused (never run); the running ones end and escalate into memory.
  Reply refused = try_post(task_of("type-0"));
  EXPECT_EQ(refused.status, 503) << refused.text;
  for (const std::string& id : ids) {
    Reply r = get("/v1/tasks/" + id + "?wait=20");
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.body["status"], "degraded") << r.text;
    EXPECT_EQ(r.body["outcome"]["escalation"]["pending"], true) << r.text;
  }
  Reply ready = get("/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body["store"]["escalations_pending_retry"], 10) << ready.text;
  EXPECT_THAT(ready.body["store"]["error"].get<std::string>(), HasSubstr("full")) << ready.text;
  EXPECT_THAT(metrics(), HasSubstr("mend_store_escalation_writes_total{result=\"deferred\"} 10"));
  EXPECT_THAT(get("/v1/escalations").body["records"], ::testing::IsEmpty());
  EXPECT_TRUE(webhook_.received().empty());
  EXPECT_THAT(log(), HasSubstr("the store refuses writes"));

  // Room again.
  ASSERT_TRUE(std::filesystem::remove(inside + "/filler"));
  wait_until([&] { return get("/readyz").status == 200; }, 15s, "the store to take writes again");
  ASSERT_FALSE(HasFatalFailure());
  Reply records = get("/v1/escalations");
  ASSERT_EQ(records.body["records"].size(), 10u) << records.text;
  for (const json& r : records.body["records"]) EXPECT_EQ(r["occurrences"], 1) << r.dump();
  wait_until([&] { return webhook_.received().size() >= 10; }, 15s,
             "the ten tickets' notifications");
  EXPECT_EQ(webhook_.received().size(), 10u);
  // SQLite resolves symbolic links in a database's path, /proc/PID/root included, so the store
  // is read from a copy (the daemon is idle: every task has ended and every write is in).
  const std::string copy = dir_.file("copy.db");
  std::filesystem::copy_file(inside + "/mend.db", copy);
  if (std::filesystem::exists(inside + "/mend.db-wal")) {
    std::filesystem::copy_file(inside + "/mend.db-wal", copy + "-wal");
  }
  for (const std::string& id : ids) {
    std::optional<StoredTask> stored = stored_task(id, copy);
    ASSERT_TRUE(stored) << id;
    EXPECT_TRUE(stored->done) << id;
    EXPECT_EQ(stored->status, "degraded") << id;
  }
  EXPECT_THAT(log(), HasSubstr("wrote 10 escalations kept while the store refused writes"));
  EXPECT_THAT(metrics(),
              HasSubstr("mend_store_escalation_writes_total{result=\"written_late\"} 10"));
  Reply after = try_post(task_of("type-1"));
  EXPECT_EQ(after.status, 202) << after.text;
}

}  // namespace
}  // namespace mend::testing
