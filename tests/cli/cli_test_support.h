// Test support for the operator's commands (cli_*_test.cc): `mend` run as a child process, its
// output collected within a time bound; human tables split into cells; and CliTest, whose tests
// share one daemon.
//
// One daemon serves every test of CliTest (SetUpTestSuite): each test sets up the state it reads
// (chaos, records) and puts back what it changes (a forced circuit), so that the tests hold in
// any order, together or one by one (ctest runs each in its own process, with its own daemon).
#ifndef MEND_TESTS_CLI_CLI_TEST_SUPPORT_H_
#define MEND_TESTS_CLI_CLI_TEST_SUPPORT_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "serve_fixture.h"

extern char** environ;

namespace mend::testing::cli_test_support {

// --- Running `mend` -----------------------------------------------------------------------------

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

inline MendRun mend(const std::vector<std::string>& args, const EnvChanges& env = {}) {
  return MendProcess(args, env).finish();
}

// A human table's lines split into cells: columns are separated by two spaces or more.
inline std::vector<std::vector<std::string>> table_rows(const std::string& text) {
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
inline std::vector<std::string> row_of(const std::vector<std::vector<std::string>>& rows,
                                       const std::string& key) {
  for (const auto& row : rows) {
    if (!row.empty() && row[0] == key) return row;
  }
  return {};
}

// --- The daemon the tests of CliTest share ------------------------------------------------------

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

inline SharedDaemon* CliTest::daemon_ = nullptr;
inline int CliTest::next_event_task_ = 1;

}  // namespace mend::testing::cli_test_support

#endif  // MEND_TESTS_CLI_CLI_TEST_SUPPORT_H_
