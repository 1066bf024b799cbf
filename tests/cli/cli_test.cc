// The operator's commands (`mend agents`, `circuits`, `tickets`, `incidents`, `ack`, `resolve`,
// `submit`, `events`, `check-config`) run as the real `mend` binary, in child processes, against
// a `mend serve` the test starts with supervised sample agents: their human tables and their
// --json output, their exit statuses, the refused token and the unreachable daemon.
//
// One daemon serves every test of CliTest (SetUpTestSuite): each test sets up the state it reads
// (chaos, records) and puts back what it changes (a forced circuit), so that the tests hold in
// any order, together or one by one (ctest runs each in its own process, with its own daemon).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mend_test/ports.h"
#include "mend_test/posix_regex.h"
#include "serve_fixture.h"

extern char** environ;

namespace mend::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

// --- Running `mend`
// -------------------------------------------------------------------------------

struct MendRun {
  int exit_code = -1;  // 128 + signal when killed
  bool timed_out = false;
  std::string out;
  std::string err;

  std::vector<std::string> out_lines() const {
    std::vector<std::string> lines;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  json out_json() const { return json::parse(out, nullptr, false); }
  // For failure messages.
  std::string describe() const {
    return "exit " + std::to_string(exit_code) + (timed_out ? " (timed out)" : "") +
           "\n--- stdout:\n" + out + "--- stderr:\n" + err;
  }
};

// Environment changes for a run: a value sets the variable, nullopt removes it.
using EnvChanges = std::map<std::string, std::optional<std::string>>;

// `mend ARGS...` as a child process: stdout and stderr collected whole, the exit status, all
// within a time bound (the process is killed when it runs over). The test process's own
// MEND_ADDRESS, MEND_API_TOKEN and COLUMNS are not passed on unless given in `env`.
class MendProcess {
 public:
  explicit MendProcess(const std::vector<std::string>& args, const EnvChanges& env = {}) {
    // Everything the child needs is built before fork(): the test process has threads.
    std::vector<std::string> argv_storage = {kMendBinary};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    EnvChanges changes = {{"MEND_ADDRESS", std::nullopt},
                          {"MEND_API_TOKEN", std::nullopt},
                          {"COLUMNS", std::nullopt},
                          {"MEND_BROKEN_YAML_UNSET_TOKEN", std::nullopt}};
    for (const auto& [name, value] : env) changes[name] = value;
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry(*e);
      if (!changes.count(entry.substr(0, entry.find('=')))) env_storage.push_back(entry);
    }
    for (const auto& [name, value] : changes) {
      if (value) env_storage.push_back(name + "=" + *value);
    }
    std::vector<char*> argv;
    for (std::string& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (std::string& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);

    int out[2];
    int err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe2 failed");
    }
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  ~MendProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (out_ >= 0) ::close(out_);
    if (err_ >= 0) ::close(err_);
  }
  MendProcess(const MendProcess&) = delete;
  MendProcess& operator=(const MendProcess&) = delete;

  // True once the process has exited (it is reaped then; finish() still collects its output).
  bool exited() {
    if (!reaped_ && ::waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    return reaped_;
  }

  // Collects the output until the process has closed both pipes and exited, or `limit` passes
  // (then it is killed and the run marked timed out).
  MendRun finish(std::chrono::milliseconds limit = 20s) {
    MendRun run;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    auto left_ms = [&] {
      return static_cast<int>(std::max<std::int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                   std::chrono::steady_clock::now())
                 .count()));
    };
    bool out_open = true;
    bool err_open = true;
    while ((out_open || err_open) && left_ms() > 0) {
      pollfd fds[2] = {{out_open ? out_ : -1, POLLIN, 0}, {err_open ? err_ : -1, POLLIN, 0}};
      if (::poll(fds, 2, left_ms()) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].revents == 0) continue;
        char chunk[4096];
        const ssize_t n = ::read(i == 0 ? out_ : err_, chunk, sizeof chunk);
        if (n > 0) {
          (i == 0 ? run.out : run.err).append(chunk, static_cast<std::size_t>(n));
        } else {
          (i == 0 ? out_open : err_open) = false;
        }
      }
    }
    while (!exited()) {
      if (left_ms() == 0) {
        run.timed_out = true;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status_, 0);
        reaped_ = true;
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    run.exit_code = WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
    return run;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  int out_ = -1;
  int err_ = -1;
};

MendRun mend(const std::vector<std::string>& args, const EnvChanges& env = {}) {
  return MendProcess(args, env).finish();
}

// A human table's lines split into cells: columns are separated by two spaces or more.
std::vector<std::vector<std::string>> table_rows(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    line.erase(0, line.find_first_not_of(' '));
    std::vector<std::string> cells;
    std::size_t begin = 0;
    for (std::size_t gap = line.find("  "); gap != std::string::npos;
         gap = line.find("  ", begin)) {
      cells.push_back(line.substr(begin, gap - begin));
      begin = line.find_first_not_of(' ', gap);
      if (begin == std::string::npos) break;
    }
    if (begin != std::string::npos) cells.push_back(line.substr(begin));
    rows.push_back(std::move(cells));
  }
  return rows;
}

// The row of `rows` whose first cell is `key` (an empty row when none is).
std::vector<std::string> row_of(const std::vector<std::vector<std::string>>& rows,
                                const std::string& key) {
  for (const auto& row : rows) {
    if (!row.empty() && row[0] == key) return row;
  }
  return {};
}

// --- Without a daemon
// -----------------------------------------------------------------------------

TEST(CliHelp, TopLevelHelpListsEveryCommandAndTheExitStatuses) {
  MendRun help = mend({"--help"});
  ASSERT_EQ(help.exit_code, 0) << help.describe();
  for (const char* command : {"serve", "demo", "agents", "circuits", "tickets", "incidents", "ack",
                              "resolve", "submit", "events", "check-config"}) {
    EXPECT_THAT(help.out, MatchesRegex("(.|\n)*\n  " + std::string(command) + " +[^ ](.|\n)*"))
        << command;
  }
  EXPECT_THAT(help.out, HasSubstr("Exit status:"));
  EXPECT_THAT(help.out, HasSubstr("3  the daemon could not be reached"));
  EXPECT_THAT(help.out, HasSubstr("4  the daemon refused the token"));
  EXPECT_THAT(help.out, HasSubstr("MEND_ADDRESS"));
}

TEST(CliHelp, EachCommandHelpShowsItsOptions) {
  MendRun submit = mend({"submit", "--help"});
  ASSERT_EQ(submit.exit_code, 0) << submit.describe();
  for (const char* option :
       {"--type", "--agent", "--capability", "--payload", "--id", "--deadline", "--wait",
        "--address", "--token", "--json", "--timeout", "MEND_ADDRESS", "MEND_API_TOKEN"}) {
    EXPECT_THAT(submit.out, HasSubstr(option));
  }
  MendRun events = mend({"events", "--help"});
  ASSERT_EQ(events.exit_code, 0) << events.describe();
  for (const char* option : {"--replay", "--count", "--for", "--kind", "--json"}) {
    EXPECT_THAT(events.out, HasSubstr(option));
  }
  MendRun circuits = mend({"circuits", "--help"});
  ASSERT_EQ(circuits.exit_code, 0);
  EXPECT_THAT(circuits.out, HasSubstr("open|close NAME"));
  MendRun ack = mend({"ack", "--help"});
  ASSERT_EQ(ack.exit_code, 0);
  EXPECT_THAT(ack.out, HasSubstr("--by"));
  EXPECT_THAT(ack.out, HasSubstr("TKT-3, INC-7"));
}

TEST(CliHelp, AWrongCommandLineExitsTwo) {
  EXPECT_EQ(mend({}).exit_code, 2);
  EXPECT_EQ(mend({"nonsense"}).exit_code, 2);
  MendRun bogus = mend({"agents", "--bogus"});
  EXPECT_EQ(bogus.exit_code, 2);
  EXPECT_THAT(bogus.err, HasSubstr("--bogus"));
  EXPECT_EQ(mend({"tickets", "--status", "sideways"}).exit_code, 2);
  EXPECT_EQ(mend({"events", "--replay", "300"}).exit_code, 2);
  EXPECT_EQ(mend({"circuits", "toggle", "reviewer"}).exit_code, 2);
  EXPECT_EQ(mend({"submit", "--agent", "reviewer"}).exit_code, 2);  // no --type
  EXPECT_EQ(mend({"ack"}).exit_code, 2);                            // no id
  EXPECT_EQ(mend({"agents", "--timeout", "-1"}).exit_code, 2);
}

TEST(CliUnreachable, EveryCommandSaysTheDaemonCannotBeReachedAndExitsThree) {
  RefusingPort nobody;
  const std::vector<std::vector<std::string>> commands = {
      {"agents"},
      {"agents", "reviewer", "--json"},
      {"circuits"},
      {"circuits", "open", "reviewer"},
      {"tickets"},
      {"incidents", "--json"},
      {"ack", "TKT-1"},
      {"resolve", "INC-1"},
      {"submit", "--type", "code_review", "--agent", "reviewer"},
      {"events", "--count", "1"}};
  for (std::vector<std::string> args : commands) {
    args.insert(args.end(), {"--address", nobody.url()});
    MendRun run = mend(args);
    const std::string what = args[0] + " " + args[1];
    EXPECT_EQ(run.exit_code, 3) << what << ": " << run.describe();
    EXPECT_THAT(run.out, IsEmpty()) << what;
    EXPECT_THAT(run.err, StartsWith("mend: cannot reach mend at " + nobody.url() + ": ")) << what;
    EXPECT_THAT(run.err, HasSubstr("onnection refused")) << what;
    EXPECT_THAT(run.err, HasSubstr("is `mend serve` running there?")) << what;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << what << ": one line";
  }
  // The address from the environment.
  MendRun env = mend({"agents"}, {{"MEND_ADDRESS", nobody.url()}});
  EXPECT_EQ(env.exit_code, 3);
  EXPECT_THAT(env.err, HasSubstr(nobody.url()));
}

TEST(CliUnreachable, ADaemonThatNeverAnswersTimesOutWithExitThree) {
  SilentPort silent;
  for (std::vector<std::string> args :
       {std::vector<std::string>{"agents"}, std::vector<std::string>{"events", "--count", "1"}}) {
    args.insert(args.end(), {"--address", silent.url(), "--timeout", "0.5"});
    const auto started = std::chrono::steady_clock::now();
    MendRun run = mend(args);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    EXPECT_EQ(run.exit_code, 3) << args[0] << ": " << run.describe();
    EXPECT_THAT(run.err, StartsWith("mend: cannot reach mend at " + silent.url()));
    EXPECT_LT(took, 5.0) << args[0];
  }
}

TEST(CliCheckConfig, TheExampleIsValidInTextAndJson) {
  const std::string example = std::string(kSourceDir) + "/examples/mend.yaml";
  MendRun human = mend({"check-config", example});
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  std::optional<std::vector<std::string>> m =
      regex_search(human.out, ": valid \\(([0-9]+) agents, ([0-9]+) supervised\\)");
  ASSERT_TRUE(m) << human.out;
  EXPECT_THAT(human.out, StartsWith(example));

  MendRun js = mend({"check-config", example, "--json"});
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const json report = js.out_json();
  ASSERT_TRUE(report.is_object()) << js.out;
  EXPECT_EQ(report["valid"], true);
  EXPECT_EQ(report["file"], example);
  EXPECT_EQ(report["agents"].get<int>(), std::stoi((*m)[1]));
  EXPECT_EQ(report["supervised"].get<int>(), std::stoi((*m)[2]));
  EXPECT_GT(report["agents"].get<int>(), 0);
}

TEST(CliCheckConfig, ABrokenFileListsEveryProblemInTextAndJsonAndExitsOne) {
  const std::string broken = std::string(kSourceDir) + "/tests/serve/data/broken.yaml";
  const std::vector<std::string> expected = expected_broken_problems(broken);
  ASSERT_GE(expected.size(), 10u);

  MendRun human = mend({"check-config", broken});
  EXPECT_EQ(human.exit_code, 1);
  EXPECT_THAT(human.out, IsEmpty());
  for (const std::string& problem : expected)
    EXPECT_THAT(human.err, HasSubstr(broken + ":" + problem));
  EXPECT_THAT(human.err, HasSubstr(std::to_string(expected.size()) + " problems"));

  MendRun js = mend({"check-config", broken, "--json"});
  EXPECT_EQ(js.exit_code, 1);
  const json report = js.out_json();
  ASSERT_TRUE(report.is_object()) << js.out;
  EXPECT_EQ(report["valid"], false);
  ASSERT_EQ(report["problems"].size(), expected.size()) << js.out;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const json& p = report["problems"][i];
    EXPECT_EQ(std::to_string(p["line"].get<int>()) + ":" + std::to_string(p["column"].get<int>()) +
                  ": " + p["key"].get<std::string>() + ": " + p["message"].get<std::string>(),
              expected[i]);
  }
}

// --- Against a daemon
// -----------------------------------------------------------------------------

// The daemon every CliTest shares: ServeTest's fixture used as a plain object.
class SharedDaemon : public ServeTest {
 public:
  void TestBody() override {}
  void start() {
    std::string yaml = config_yaml(
        agent_yaml("reviewer") + agent_yaml("backup") + agent_yaml("pager", "", "paging"),
        "fallback_chains: {reviewer: [backup]}\n");
    // A medium SLA short enough to see it breached; SLA checks (which would re-escalate the
    // breached ticket) far apart.
    const std::string check = "  sla_check_interval: 1s\n";
    const std::size_t at = yaml.find(check);
    if (at == std::string::npos) {
      ADD_FAILURE() << "config_yaml() no longer sets sla_check_interval: 1s:\n" << yaml;
      return;
    }
    yaml.replace(at, check.size(), "  sla_check_interval: 1h\n  slas: {medium: 3s}\n");
    start_daemon(yaml);
  }
  using ServeTest::agent;
  using ServeTest::agent_stats;
  using ServeTest::base_;
  using ServeTest::chaos;
  using ServeTest::get;
  using ServeTest::kToken;
  using ServeTest::log;
  using ServeTest::metrics;
  using ServeTest::post;
  using ServeTest::wait_until;
};

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new SharedDaemon();
    daemon_->start();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override {
    ASSERT_FALSE(daemon_->base_.empty()) << "mend serve did not start:\n" << daemon_->log();
  }

  SharedDaemon& daemon() { return *daemon_; }
  std::string address() const { return daemon_->base_; }
  // `mend ARGS... --address <the daemon>`, with the token unless `with_token` is false.
  MendRun run(std::vector<std::string> args, bool with_token = true, EnvChanges env = {}) {
    args.insert(args.end(), {"--address", address()});
    if (with_token) env.emplace("MEND_API_TOKEN", SharedDaemon::kToken);
    return mend(args, env);
  }

  static SharedDaemon* daemon_;
  static int next_event_task_;
};

SharedDaemon* CliTest::daemon_ = nullptr;
int CliTest::next_event_task_ = 1;

TEST_F(CliTest, AgentsListsEveryAgentAsTheApiSeesIt) {
  MendRun human = run({"agents"}, false);
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  const json api = daemon().get("/v1/agents").body;
  const auto rows = table_rows(human.out);
  ASSERT_EQ(rows.size(), 4u) << human.out;
  EXPECT_THAT(rows[0], ElementsAre("NAME", "HEALTH", "CIRCUIT", "IN FLIGHT", "READY", "CALLS",
                                   "FAILURES", "RETRIES", "RESTARTS"));
  for (const json& a : api["agents"]) {
    const std::string name = a["name"];
    const auto row = row_of(rows, name);
    ASSERT_EQ(row.size(), 9u) << name << " in\n" << human.out;
    EXPECT_EQ(row[1], a["health"]) << name;
    EXPECT_EQ(row[2], a["circuit"]["state"]) << name;
    EXPECT_THAT(row[3], MatchesRegex("[0-9]+/-")) << name;  // no concurrency limit configured
    EXPECT_EQ(row[4], "1/1") << name;
    EXPECT_EQ(row[8], std::to_string(a["counters"]["restarts"].get<int>())) << name;
  }

  MendRun js = run({"agents", "--json"}, false);
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const json listed = js.out_json();
  ASSERT_TRUE(listed.is_object()) << js.out;
  std::vector<std::string> names;
  for (const json& a : listed["agents"]) names.push_back(a["name"]);
  EXPECT_THAT(names, ElementsAre("reviewer", "backup", "pager"));
  EXPECT_EQ(listed["agents"][0]["replicas"][0]["pid"], api["agents"][0]["replicas"][0]["pid"]);
}

TEST_F(CliTest, AgentsNameShowsOneAgentWithItsReplicas) {
  const json api = daemon().agent("reviewer");
  const int pid = api["replicas"][0]["pid"].get<int>();
  ASSERT_GT(pid, 0);
  MendRun human = run({"agents", "reviewer"}, false);
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  EXPECT_THAT(human.out, MatchesRegex("agent +reviewer\n(.|\n)*"));
  EXPECT_THAT(human.out, MatchesRegex("(.|\n)*\nsupervised +yes\n(.|\n)*"));
  EXPECT_THAT(human.out, MatchesRegex("(.|\n)*\ncapabilities +code_review\n(.|\n)*"));
  const auto rows = table_rows(human.out.substr(human.out.find("REPLICA")));
  ASSERT_GE(rows.size(), 2u) << human.out;
  EXPECT_THAT(rows[0], ElementsAre("REPLICA", "URL", "READY", "PID", "RSS", "RESTARTS", "LAST EXIT",
                                   "LAST PROBE"));
  EXPECT_EQ(rows[1][0], "0");
  EXPECT_EQ(rows[1][1], api["replicas"][0]["url"]);
  EXPECT_EQ(rows[1][2], "yes");
  EXPECT_EQ(rows[1][3], std::to_string(pid));
  EXPECT_THAT(rows[1][4], MatchesRegex("[0-9.]+ (KiB|MiB|GiB)"));

  MendRun js = run({"agents", "reviewer", "--json"}, false);
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  EXPECT_EQ(js.out_json()["name"], "reviewer");
  EXPECT_EQ(js.out_json()["replicas"][0]["pid"], pid);

  MendRun unknown = run({"agents", "nobody"}, false);
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.out, IsEmpty());
  EXPECT_THAT(unknown.err, HasSubstr("unknown agent 'nobody'"));
  EXPECT_EQ(run({"agents", "nobody", "--json"}, false).exit_code, 1);
}

TEST_F(CliTest, ACircuitOpenedByTheOperatorIsSkippedUntilClosed) {
  // Mutations need the token: none, or a wrong one, is refused with exit 4 and changes nothing.
  MendRun refused = run({"circuits", "open", "reviewer"}, false);
  EXPECT_EQ(refused.exit_code, 4) << refused.describe();
  EXPECT_THAT(refused.err, HasSubstr("the daemon wants a token and none was given (401)"));
  MendRun wrong = run({"circuits", "open", "reviewer", "--token", "wrong"}, false);
  EXPECT_EQ(wrong.exit_code, 4) << wrong.describe();
  EXPECT_THAT(wrong.err, HasSubstr("the daemon refused the token (401)"));
  EXPECT_THAT(wrong.err, HasSubstr("--token or MEND_API_TOKEN"));
  EXPECT_EQ(daemon().agent("reviewer")["circuit"]["state"], "closed");

  // A flag wins over the environment.
  MendRun opened = run({"circuits", "open", "reviewer", "--token", SharedDaemon::kToken}, false,
                       {{"MEND_API_TOKEN", "wrong"}});
  ASSERT_EQ(opened.exit_code, 0) << opened.describe();
  EXPECT_THAT(opened.out, StartsWith("reviewer: circuit isolated"));
  EXPECT_EQ(daemon().agent("reviewer")["circuit"]["state"], "isolated");

  MendRun human = run({"circuits"}, false);
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  const auto rows = table_rows(human.out);
  EXPECT_THAT(rows[0], ElementsAre("AGENT", "STATE", "FAILURES", "TRANSITIONS", "PROBE IN"));
  EXPECT_EQ(row_of(rows, "reviewer").at(1), "isolated");
  EXPECT_EQ(row_of(rows, "backup").at(1), "closed");
  EXPECT_EQ(row_of(rows, "pager").at(1), "closed");
  MendRun js = run({"circuits", "--json"}, false);
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const json circuits = js.out_json()["circuits"];
  ASSERT_EQ(circuits.size(), 3u) << js.out;
  EXPECT_EQ(circuits[0]["agent"], "reviewer");
  EXPECT_EQ(circuits[0]["state"], "isolated");

  // A task for the reviewer goes to its chain without reaching it.
  const int calls_before = daemon().agent_stats("reviewer")["tasks_received"].get<int>();
  MendRun task = run({"submit", "--type", "code_review", "--agent", "reviewer", "--payload",
                      R"({"content": "int main() {}\n"})"});
  ASSERT_EQ(task.exit_code, 0) << task.describe();
  EXPECT_THAT(task.out, MatchesRegex("task task-[0-9]+: fallback, answered by backup (.|\n)*"));
  EXPECT_THAT(task.out, HasSubstr("skipped: reviewer (primary: circuit_open)"));
  EXPECT_EQ(daemon().agent_stats("reviewer")["tasks_received"].get<int>(), calls_before);

  MendRun closed = run({"circuits", "close", "reviewer", "--json"});
  ASSERT_EQ(closed.exit_code, 0) << closed.describe();
  EXPECT_EQ(closed.out_json()["circuit"]["state"], "closed");
  EXPECT_EQ(daemon().agent("reviewer")["circuit"]["state"], "closed");
  MendRun again = run({"submit", "--type", "code_review", "--agent", "reviewer", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(again.out_json()["outcome"]["answered_by"], "reviewer");

  MendRun unknown = run({"circuits", "open", "nobody"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("unknown agent 'nobody'"));
  MendRun nameless = run({"circuits", "open"});
  EXPECT_EQ(nameless.exit_code, 2);
  EXPECT_THAT(nameless.err, HasSubstr("which agent?"));
}

// About 3 s: it waits out a ticket's 3 s SLA in real time to see it shown breached (the daemon
// runs on the system clock).
TEST_F(CliTest, TicketsAndIncidentsAreListedAcknowledgedAndResolved) {
  // The pager has no chain and no peer: its failures are its tasks' last word. A processing
  // failure opens a ticket (medium), data corruption an incident (critical).
  daemon().chaos("pager", {{"fail_next", {{{"kind", "500"}}, {{"kind", "critical"}}}}});
  MendRun ticket_task = run({"submit", "--type", "code_review", "--agent", "pager"});
  ASSERT_EQ(ticket_task.exit_code, 0) << ticket_task.describe();  // degraded is an answer
  EXPECT_THAT(ticket_task.out, HasSubstr(": degraded, answered by degraded_service"));
  std::optional<std::vector<std::string>> m =
      regex_search(ticket_task.out, "escalation: notified_and_ticketed \\(medium\\) (TKT-[0-9]+)");
  ASSERT_TRUE(m) << ticket_task.out;
  const std::string ticket = (*m)[1];
  MendRun incident_task = run({"submit", "--type", "deployment", "--agent", "pager", "--json"});
  ASSERT_EQ(incident_task.exit_code, 0) << incident_task.describe();
  const json outcome = incident_task.out_json()["outcome"];
  EXPECT_EQ(outcome["status"], "degraded");
  EXPECT_EQ(outcome["escalation"]["action"], "critical_incident");
  const std::string incident = outcome["escalation"]["record"];
  ASSERT_THAT(incident, StartsWith("INC-"));

  // Listed, human and JSON.
  MendRun tickets = run({"tickets", "--status", "open"}, false);
  ASSERT_EQ(tickets.exit_code, 0) << tickets.describe();
  auto rows = table_rows(tickets.out);
  EXPECT_THAT(rows[0],
              ElementsAre("ID", "LEVEL", "STATUS", "AGE", "SLA", "OCCURRENCES", "AGENT", "TITLE"));
  auto row = row_of(rows, ticket);
  ASSERT_EQ(row.size(), 8u) << tickets.out;
  EXPECT_EQ(row[1], "medium");
  EXPECT_EQ(row[2], "open");
  EXPECT_THAT(row[3], MatchesRegex("[0-9]+s"));
  EXPECT_THAT(row[4], MatchesRegex("in [0-9]+s|BREACHED [0-9]+s ago"));  // a 3 s SLA
  EXPECT_EQ(row[5], "1");
  EXPECT_EQ(row[6], "pager");
  EXPECT_THAT(row[7], HasSubstr("processing_failed on pager"));
  MendRun tickets_json = run({"tickets", "--json"}, false);
  ASSERT_EQ(tickets_json.exit_code, 0) << tickets_json.describe();
  bool found = false;
  const json listed = tickets_json.out_json();
  for (const json& r : listed["records"]) {
    if (r["id"] == ticket) {
      found = true;
      EXPECT_EQ(r["status"], "open");
      EXPECT_EQ(r["agent"], "pager");
    }
  }
  EXPECT_TRUE(found) << tickets_json.out;

  // Past its SLA, unacknowledged: BREACHED.
  daemon().wait_until(
      [&] {
        auto r = row_of(table_rows(run({"tickets", "--status", "open"}, false).out), ticket);
        return r.size() == 8 && r[4].rfind("BREACHED", 0) == 0;
      },
      10s, "the ticket's SLA to be shown breached");

  // On a narrow terminal ($COLUMNS) the title gives way, cut with "...".
  MendRun narrow = run({"tickets", "--status", "open"}, false, {{"COLUMNS", "80"}});
  ASSERT_EQ(narrow.exit_code, 0) << narrow.describe();
  for (const std::string& line : narrow.out_lines()) EXPECT_LE(line.size(), 80u) << line;
  row = row_of(table_rows(narrow.out), ticket);
  ASSERT_EQ(row.size(), 8u) << narrow.out;
  EXPECT_THAT(row[7], MatchesRegex("Medium.*\\.\\.\\."));
  EXPECT_THAT(narrow.out, Not(HasSubstr("processing_failed on pager")));

  MendRun incidents = run({"incidents"}, false);
  ASSERT_EQ(incidents.exit_code, 0) << incidents.describe();
  row = row_of(table_rows(incidents.out), incident);
  ASSERT_EQ(row.size(), 8u) << incidents.out;
  EXPECT_EQ(row[1], "critical");
  EXPECT_EQ(row[2], "open");
  EXPECT_THAT(row[4], MatchesRegex("in 1[45]m[0-9]+s"));  // the default 15 min
  EXPECT_THAT(row[7], HasSubstr("data_corruption on pager"));
  MendRun incidents_json = run({"incidents", "--status", "open", "--json"}, false);
  ASSERT_EQ(incidents_json.exit_code, 0);
  const json open_incidents = incidents_json.out_json();
  ASSERT_FALSE(open_incidents["records"].empty()) << incidents_json.out;
  for (const json& r : open_incidents["records"]) EXPECT_EQ(r["kind"], "incident");

  // Acknowledge and resolve the ticket; a resolved record cannot be acknowledged again.
  EXPECT_EQ(run({"ack", ticket, "--by", "alice"}, false).exit_code, 4);  // no token
  MendRun acked = run({"ack", ticket, "--by", "alice"});
  ASSERT_EQ(acked.exit_code, 0) << acked.describe();
  EXPECT_THAT(acked.out, StartsWith(ticket + " acknowledged by alice"));
  row = row_of(table_rows(run({"tickets", "--status", "acknowledged"}, false).out), ticket);
  ASSERT_EQ(row.size(), 8u);
  EXPECT_EQ(row[2], "acknowledged");
  EXPECT_EQ(row[4], "missed");  // acknowledged after its 3 s
  EXPECT_THAT(row_of(table_rows(run({"tickets", "--status", "open"}, false).out), ticket),
              IsEmpty());
  MendRun resolved = run({"resolve", ticket, "--by", "bob", "--json"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved.describe();
  EXPECT_EQ(resolved.out_json()["status"], "resolved");
  EXPECT_EQ(resolved.out_json()["resolved_by"], "bob");
  MendRun late = run({"ack", ticket});
  EXPECT_EQ(late.exit_code, 1) << late.describe();
  EXPECT_THAT(late.err, HasSubstr("already resolved"));
  EXPECT_THAT(late.out, IsEmpty());

  // The incident, acknowledged in time by $USER.
  MendRun inc_ack = run({"ack", incident, "--json"}, true, {{"USER", "carol"}});
  ASSERT_EQ(inc_ack.exit_code, 0) << inc_ack.describe();
  EXPECT_EQ(inc_ack.out_json()["acknowledged_by"], "carol");
  row = row_of(table_rows(run({"incidents", "--status", "acknowledged"}, false).out), incident);
  ASSERT_EQ(row.size(), 8u);
  EXPECT_EQ(row[4], "met");
  MendRun inc_resolved = run({"resolve", incident}, true, {{"USER", "carol"}});
  ASSERT_EQ(inc_resolved.exit_code, 0) << inc_resolved.describe();
  EXPECT_THAT(inc_resolved.out, StartsWith(incident + " resolved by carol"));

  MendRun missing = run({"ack", "TKT-99999"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("no such record"));
  MendRun not_an_id = run({"resolve", "yesterday"});
  EXPECT_EQ(not_an_id.exit_code, 2);
  EXPECT_THAT(not_an_id.err, HasSubstr("not a record id"));
}

TEST_F(CliTest, SubmitPrintsTheOutcomeWithItsAttempts) {
  daemon().chaos("reviewer", {{"fail_next", {{{"kind", "503"}, {"count", 1}}}}});
  MendRun human = run({"submit", "--type", "code_review", "--agent", "reviewer", "--payload",
                       R"({"content": "int main() {}\n"})"});
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  EXPECT_THAT(human.out, MatchesRegex("task task-[0-9]+: succeeded_after_retry, answered by "
                                      "reviewer \\([0-9.]+ m?s\\)\n(.|\n)*"));
  const std::string table = human.out.substr(human.out.find("attempts:\n") + 10);
  const auto rows = table_rows(table);
  ASSERT_GE(rows.size(), 3u) << human.out;
  EXPECT_THAT(rows[0], ElementsAre("AGENT", "REPLICA", "ATTEMPT", "RESULT", "HTTP", "DECISION",
                                   "DELAY", "MESSAGE"));
  EXPECT_EQ(rows[1][0], "reviewer");
  EXPECT_EQ(rows[1][2], "0");
  EXPECT_EQ(rows[1][3], "temporary_unavailable/medium");
  EXPECT_EQ(rows[1][4], "503");
  EXPECT_EQ(rows[1][5], "retry");
  EXPECT_EQ(rows[2][2], "1");
  EXPECT_EQ(rows[2][3], "ok");
  EXPECT_THAT(human.out, HasSubstr("\nanswer: {\"agent\":\"reviewer\""));

  // --json, the payload from a file, a chosen id.
  TempDir dir("mend-cli");
  std::ofstream(dir.file("payload.json")) << R"({"content": "line one\nline two\n"})";
  MendRun js = run({"submit", "--type", "code_review", "--agent", "reviewer", "--payload",
                    "@" + dir.file("payload.json"), "--id", "cli-json-1", "--json"});
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const json body = js.out_json();
  EXPECT_EQ(body["id"], "cli-json-1");
  EXPECT_EQ(body["state"], "done");
  EXPECT_EQ(body["outcome"]["status"], "succeeded");
  EXPECT_EQ(body["outcome"]["answer"]["result"]["lines"], 2) << js.out;
  MendRun taken =
      run({"submit", "--type", "code_review", "--agent", "reviewer", "--id", "cli-json-1"});
  EXPECT_EQ(taken.exit_code, 1);
  EXPECT_THAT(taken.err, HasSubstr("exists already"));

  // By capability, without an agent.
  MendRun planned = run({"submit", "--type", "code_review", "--capability", "paging", "--json"});
  ASSERT_EQ(planned.exit_code, 0) << planned.describe();
  EXPECT_EQ(planned.out_json()["outcome"]["answered_by"], "pager");

  // Mistakes.
  MendRun bad_payload = run({"submit", "--type", "x", "--agent", "reviewer", "--payload", "{bad"});
  EXPECT_EQ(bad_payload.exit_code, 2);
  EXPECT_THAT(bad_payload.err, HasSubstr("--payload is not JSON"));
  EXPECT_EQ(
      run({"submit", "--type", "x", "--agent", "reviewer", "--payload", "@/nonexistent"}).exit_code,
      2);
  EXPECT_EQ(run({"submit", "--type", "x"}).exit_code, 2);  // neither agent nor capability
  MendRun unknown = run({"submit", "--type", "x", "--agent", "nobody"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("unknown agent 'nobody'"));
  EXPECT_EQ(run({"submit", "--type", "x", "--agent", "reviewer"}, false).exit_code, 4);
}

TEST_F(CliTest, SubmitWithoutWaitingPrintsTheTaskIdAndARunOutWaitExitsSix) {
  MendRun async = run({"submit", "--type", "code_review", "--agent", "reviewer", "--wait", "0",
                       "--id", "cli-async-1"});
  ASSERT_EQ(async.exit_code, 0) << async.describe();
  EXPECT_EQ(async.out, "cli-async-1\n");
  Reply done = daemon().get("/v1/tasks/cli-async-1?wait=10");
  EXPECT_EQ(done.body["state"], "done") << done.text;
  MendRun unnamed = run({"submit", "--type", "code_review", "--agent", "reviewer", "--wait", "0"});
  ASSERT_EQ(unnamed.exit_code, 0) << unnamed.describe();
  EXPECT_THAT(unnamed.out, MatchesRegex("task-[0-9]+\n"));
  EXPECT_EQ(daemon().get("/v1/tasks/" + unnamed.out_lines().at(0) + "?wait=10").body["state"],
            "done");
  MendRun async_json =
      run({"submit", "--type", "code_review", "--agent", "reviewer", "--wait", "0", "--json"});
  ASSERT_EQ(async_json.exit_code, 0) << async_json.describe();
  EXPECT_EQ(async_json.out_json()["state"], "running");
  EXPECT_EQ(daemon()
                .get("/v1/tasks/" + async_json.out_json()["id"].get<std::string>() + "?wait=10")
                .body["state"],
            "done");

  // The backup answers after 1.5 s; waiting 0.3 s runs out.
  daemon().chaos("backup", {{"latency_ms", 1500}});
  MendRun slow = run({"submit", "--type", "code_review", "--agent", "backup", "--wait", "0.3",
                      "--id", "cli-slow-1"});
  EXPECT_EQ(slow.exit_code, 6) << slow.describe();
  EXPECT_THAT(slow.err, HasSubstr("cli-slow-1 is still running"));
  MendRun slow_json =
      run({"submit", "--type", "code_review", "--agent", "backup", "--wait", "0.3", "--json"});
  EXPECT_EQ(slow_json.exit_code, 6) << slow_json.describe();
  EXPECT_EQ(slow_json.out_json()["state"], "running");
  daemon().chaos("backup", {{"latency_ms", 0}});
  // Both end before the next test, which follows the events of its own tasks.
  EXPECT_EQ(daemon().get("/v1/tasks/cli-slow-1?wait=10").body["state"], "done");
  const std::string second = slow_json.out_json()["id"];
  EXPECT_EQ(daemon().get("/v1/tasks/" + second + "?wait=10").body["state"], "done");
}

TEST_F(CliTest, EventsReplaysAndStopsAfterCount) {
  // The daemon's start alone published more than three events (agents started, ready).
  MendRun human = run({"events", "--replay", "256", "--count", "3"}, false);
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  const std::vector<std::string> lines = human.out_lines();
  ASSERT_EQ(lines.size(), 3u) << human.out;
  for (const std::string& line : lines) {
    EXPECT_THAT(line, MatchesRegex("[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}  [a-z_]+ +[a-z-]+.*"));
  }
  MendRun js = run({"events", "--replay", "256", "--count", "3", "--json"}, false);
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  const std::vector<std::string> objects = js.out_lines();
  ASSERT_EQ(objects.size(), 3u) << js.out;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const json event = json::parse(objects[i], nullptr, false);
    ASSERT_TRUE(event.is_object()) << objects[i];
    // The human lines name the same events, in the same order.
    EXPECT_THAT(lines[i], HasSubstr("  " + event["kind"].get<std::string>() + " "));
    EXPECT_THAT(lines[i], HasSubstr(event["at"].get<std::string>().substr(11, 12)));
  }

  // --for ends a quiet stream in time, exit 0.
  const auto started = std::chrono::steady_clock::now();
  MendRun quiet = run({"events", "--for", "1", "--kind", "no_such_kind"}, false);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(quiet.exit_code, 0) << quiet.describe();
  EXPECT_THAT(quiet.out, IsEmpty());
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 5.0);
}

TEST_F(CliTest, EventsFollowsTasksAsTheyRun) {
  // When the follower's subscription is in place is not visible from here: tasks are submitted
  // one after the other until it has seen what it waits for, live (it asks for no replay).
  auto follow_until_done = [&](MendProcess& follower, const json& chaos_each) {
    std::vector<std::string> ids;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (!follower.exited() && std::chrono::steady_clock::now() < deadline) {
      if (!chaos_each.is_null()) daemon().chaos("reviewer", chaos_each);
      const std::string id = "cli-event-" + std::to_string(next_event_task_++);
      Reply task = daemon().post("/v1/tasks?wait=10",
                                 {{"type", "code_review"}, {"agent", "reviewer"}, {"id", id}});
      EXPECT_EQ(task.status, 200) << task.text;
      ids.push_back(id);
      std::this_thread::sleep_for(100ms);
    }
    return ids;
  };

  MendProcess follower_json({"events", "--kind", "task_finished", "--count", "1", "--for", "20",
                             "--json", "--address", address()});
  std::vector<std::string> ids = follow_until_done(follower_json, json());
  MendRun js = follower_json.finish();
  ASSERT_EQ(js.exit_code, 0) << js.describe();
  ASSERT_EQ(js.out_lines().size(), 1u) << js.out;
  const json finished = json::parse(js.out_lines()[0], nullptr, false);
  EXPECT_EQ(finished["kind"], "task_finished");
  EXPECT_THAT(ids, ::testing::Contains(finished["task_id"].get<std::string>()));
  EXPECT_EQ(finished["source"], "reviewer");
  EXPECT_EQ(finished["detail"], "succeeded");

  // Human lines; each task is retried once.
  MendProcess follower({"events", "--kind", "retry_scheduled", "--kind", "task_finished", "--count",
                        "2", "--for", "20", "--address", address()});
  ids = follow_until_done(follower, {{"fail_next", {{{"kind", "503"}, {"count", 1}}}}});
  MendRun human = follower.finish();
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  const std::vector<std::string> lines = human.out_lines();
  ASSERT_EQ(lines.size(), 2u) << human.out;
  const std::string retry =
      "[0-9:.]{12}  retry_scheduled +reviewer +task=(cli-event-[0-9]+) attempt=0 "
      "error_type=temporary_unavailable severity=medium delay=[0-9.]+m?s  answered 503: .*";
  const std::string done =
      "[0-9:.]{12}  task_finished +reviewer +task=(cli-event-[0-9]+)  "
      "succeeded_after_retry";
  // The follower may have come in between a task's retry and its end: then it saw that end
  // and the next task's retry.
  const std::size_t retry_line = regex_full_match(lines[0], retry) ? 0 : 1;
  std::optional<std::vector<std::string>> m = regex_full_match(lines[retry_line], retry);
  ASSERT_TRUE(m) << human.out;
  EXPECT_THAT(ids, ::testing::Contains((*m)[1]));
  m = regex_full_match(lines[1 - retry_line], done);
  ASSERT_TRUE(m) << human.out;
  EXPECT_THAT(ids, ::testing::Contains((*m)[1]));
}

// A daemon of its own, to be stopped.
using CliStoppingDaemonTest = ServeTest;

TEST_F(CliStoppingDaemonTest, EventsEndsWhenTheDaemonStops) {
  start_daemon(config_yaml(agent_yaml("reviewer")));
  ASSERT_FALSE(HasFatalFailure());
  MendProcess open_ended({"events", "--address", base_});
  MendProcess counting({"events", "--count", "1000", "--address", base_});
  wait_until([&] { return metrics().find("mend_event_stream_clients 2\n") != std::string::npos; },
             10s, "both followers to subscribe");
  daemon_->signal(SIGTERM);
  MendRun ended = open_ended.finish();
  EXPECT_EQ(ended.exit_code, 0) << ended.describe();
  EXPECT_THAT(ended.err, HasSubstr("the event stream ended (is mend stopping?)"));
  MendRun short_of_count = counting.finish();
  EXPECT_EQ(short_of_count.exit_code, 1) << short_of_count.describe();
  EXPECT_THAT(short_of_count.err, MatchesRegex("mend events: the event stream ended after [0-9]+ "
                                               "of 1000 events \\(is mend stopping\\?\\)\n"));
  ASSERT_TRUE(daemon_->wait_exit(20s).has_value());
}

// A daemon killed outright ends the stream without its last chunk: not a stop, a lost daemon.
TEST_F(CliStoppingDaemonTest, EventsSaysSoWhenTheDaemonDies) {
  start_daemon(config_yaml(agent_yaml("reviewer")));
  ASSERT_FALSE(HasFatalFailure());
  MendProcess follower({"events", "--address", base_});
  wait_until([&] { return metrics().find("mend_event_stream_clients 1\n") != std::string::npos; },
             10s, "the follower to subscribe");
  daemon_->signal(SIGKILL);
  MendRun cut = follower.finish();
  EXPECT_EQ(cut.exit_code, 3) << cut.describe();
  EXPECT_THAT(cut.err, HasSubstr("the event stream was cut off"));
  ASSERT_TRUE(daemon_->wait_exit(20s).has_value());
}

}  // namespace
}  // namespace mend::testing
