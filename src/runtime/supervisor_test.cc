#include "mend/runtime/supervisor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mend_test/eventually.h"

namespace mend {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = ProcessEvent::Kind;
using mend::testing::eventually;

struct Line {
  std::string name;
  bool is_stderr;
  std::string text;
  bool operator==(const Line&) const = default;
};

// Collects what the supervisor reports; declared before the supervisor, so it outlives it.
class Recorder {
 public:
  ProcessSupervisor::LogSink log_sink() {
    return [this](const std::string& name, bool is_stderr, std::string_view line) {
      std::lock_guard lock(mu_);
      lines_.push_back({name, is_stderr, std::string(line)});
    };
  }
  ProcessSupervisor::EventSink event_sink() {
    return [this](const ProcessEvent& e) {
      std::function<void(const ProcessEvent&)> hook;
      {
        std::lock_guard lock(mu_);
        events_.push_back(e);
        times_.push_back(std::chrono::steady_clock::now());
        hook = hook_;
      }
      if (hook) hook(e);
    };
  }
  void on_event(std::function<void(const ProcessEvent&)> hook) {
    std::lock_guard lock(mu_);
    hook_ = std::move(hook);
  }
  std::vector<Line> lines() const {
    std::lock_guard lock(mu_);
    return lines_;
  }
  std::vector<ProcessEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::vector<ProcessEvent> events(Kind kind) const {
    std::vector<ProcessEvent> picked;
    for (const ProcessEvent& e : events()) {
      if (e.kind == kind) picked.push_back(e);
    }
    return picked;
  }
  std::vector<std::chrono::steady_clock::time_point> times() const {
    std::lock_guard lock(mu_);
    return times_;
  }
  int count(const Line& line) const {
    int n = 0;
    for (const Line& l : lines()) n += l == line ? 1 : 0;
    return n;
  }
  bool has_line(const Line& line) const { return count(line) > 0; }
  // The text after `prefix` on the first line starting with it, or "".
  std::string line_after(const std::string& prefix) const {
    for (const Line& l : lines()) {
      if (l.text.starts_with(prefix)) return l.text.substr(prefix.size());
    }
    return "";
  }

 private:
  mutable std::mutex mu_;
  std::vector<Line> lines_;
  std::vector<ProcessEvent> events_;
  std::vector<std::chrono::steady_clock::time_point> times_;
  std::function<void(const ProcessEvent&)> hook_;
};

ProcessSpec shell(std::string name, std::string script) {
  ProcessSpec spec;
  spec.name = std::move(name);
  spec.command = "/bin/sh";
  spec.args = {"-c", std::move(script)};
  return spec;
}

// Keeps running, with its output closed: the pipes reach EOF while it lives.
constexpr const char* kThenSleep = "exec >/dev/null 2>&1; exec sleep 100";

// True when `pid` is gone or only a zombie (a reparented grandchild that init has not reaped).
bool dead(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  if (!std::getline(stat, content)) return true;
  const std::size_t paren = content.rfind(')');
  return paren != std::string::npos && paren + 2 < content.size() && content[paren + 2] == 'Z';
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "mend-super-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string write(const std::string& name, const std::string& content, bool executable) {
    const std::string file = path_ + "/" + name;
    std::ofstream(file) << content;
    ::chmod(file.c_str(), executable ? 0755 : 0644);
    return file;
  }

 private:
  std::string path_;
};

CrashLoopOptions fast_crash_loop() {
  return {.initial = 50ms, .max = 200ms, .intensity_max_restarts = 100};
}

TEST(ProcessSupervisor, CapturesStdoutAndStderrLinesWithTheProcessName) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ASSERT_TRUE(sup.add(shell("talker", std::string("echo one; echo two >&2; echo 'three\r';"
                                                  "printf 'no newline'; printf 'err tail' >&2;") +
                                          kThenSleep))
                  .ok());
  ASSERT_TRUE(eventually([&] { return rec.lines().size() >= 5; }));
  std::vector<Line> out, err;
  for (const Line& l : rec.lines()) (l.is_stderr ? err : out).push_back(l);
  EXPECT_THAT(out, ElementsAre(Line{"talker", false, "one"}, Line{"talker", false, "three"},
                               Line{"talker", false, "no newline"}));
  EXPECT_THAT(err, ElementsAre(Line{"talker", true, "two"}, Line{"talker", true, "err tail"}));
  // The partial lines came at EOF, with the process still running.
  EXPECT_TRUE(sup.status("talker")->running);
}

TEST(ProcessSupervisor, CutsOverlongLinesIntoBoundedPieces) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ASSERT_TRUE(sup.add(shell("long", std::string("head -c 40000 /dev/zero | tr '\\0' x; echo;"
                                                "head -c 16384 /dev/zero | tr '\\0' y; echo;"
                                                // the same line again, in two writes
                                                "head -c 20000 /dev/zero | tr '\\0' z; sleep 0.05;"
                                                "head -c 20000 /dev/zero | tr '\\0' z; echo;"
                                                "echo end;") +
                                        kThenSleep))
                  .ok());
  ASSERT_TRUE(eventually([&] { return rec.has_line({"long", false, "end"}); }));
  std::vector<std::size_t> sizes;
  for (const Line& l : rec.lines()) sizes.push_back(l.text.size());
  // 40000 = 16384 + 16384 + 7232, however the reads split it; a line of exactly the maximum
  // stays whole, with no empty piece after it.
  EXPECT_THAT(sizes, ElementsAre(16384, 16384, 7232, 16384, 16384, 16384, 7232, 3));
  EXPECT_EQ(kMaxLogLineBytes, 16384u);
}

TEST(ProcessSupervisor, EnvironmentAndWorkingDirectoryReachTheChild) {
  ::setenv("MEND_SUPERVISOR_TEST_INHERITED", "from-mend", 1);
  ::setenv("MEND_SUPERVISOR_TEST_OVERRIDDEN", "old", 1);
  TempDir dir;
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ProcessSpec spec =
      shell("env", std::string("echo \"env=$GREETING|$MEND_SUPERVISOR_TEST_INHERITED|"
                               "$MEND_SUPERVISOR_TEST_OVERRIDDEN|$(pwd)\";") +
                       kThenSleep);
  spec.env = {{"GREETING", "hello"}, {"MEND_SUPERVISOR_TEST_OVERRIDDEN", "new"}};
  spec.working_dir = dir.path();
  ASSERT_TRUE(sup.add(spec).ok());
  ASSERT_TRUE(eventually([&] { return !rec.line_after("env=").empty(); }));
  EXPECT_EQ(rec.line_after("env="), "hello|from-mend|new|" + dir.path());
}

TEST(ProcessSupervisor, ResolvesACommandRelativeToTheWorkingDirectory) {
  TempDir dir;
  dir.write("agent.sh", "#!/bin/sh\necho \"agent $1\"\nexec sleep 100\n", true);
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ProcessSpec spec{.name = "agent", .command = "./agent.sh", .args = {"up"}};
  spec.working_dir = dir.path();
  ASSERT_TRUE(sup.add(spec).ok());
  ASSERT_TRUE(eventually([&] { return rec.has_line({"agent", false, "agent up"}); }));

  // A bare name is looked up in the child's PATH, relative entries against the working dir.
  ProcessSpec by_path{.name = "by-path", .command = "agent.sh", .args = {"via-path"}};
  by_path.working_dir = dir.path();
  by_path.env = {{"PATH", "/nonexistent:.:/usr/bin:/bin"}};
  ASSERT_TRUE(sup.add(by_path).ok());
  ASSERT_TRUE(eventually([&] { return rec.has_line({"by-path", false, "agent via-path"}); }));
}

TEST(ProcessSupervisor, RejectsWhatCannotBeStartedBeforeForking) {
  TempDir dir;
  const std::string plain = dir.write("plain.txt", "not a program\n", false);
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());

  Result<void> unknown = sup.add({.name = "x", .command = "mend-no-such-command-4711"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, HasSubstr("'mend-no-such-command-4711' not found in PATH"));
  EXPECT_EQ(unknown.error().type, ErrorType::configuration_error);
  EXPECT_FALSE(sup.status("x").has_value());

  Result<void> not_executable = sup.add({.name = "x", .command = plain});
  ASSERT_FALSE(not_executable.ok());
  EXPECT_THAT(not_executable.error().message, HasSubstr("is not an executable file"));

  Result<void> missing = sup.add({.name = "x", .command = "./nope", .working_dir = dir.path()});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.error().message, HasSubstr("not found"));

  Result<void> bad_dir = sup.add({.name = "x", .command = "/bin/sh", .working_dir = plain});
  ASSERT_FALSE(bad_dir.ok());
  EXPECT_THAT(bad_dir.error().message, HasSubstr("is not a directory"));

  EXPECT_FALSE(sup.add({.name = "", .command = "/bin/sh"}).ok());
  EXPECT_FALSE(sup.add({.name = "x", .command = ""}).ok());
  EXPECT_FALSE(sup.add({.name = "x", .command = "/bin/sh", .env = {{"A=B", "c"}}}).ok());
  EXPECT_FALSE(sup.add({.name = "x", .command = "/bin/sh", .stop_timeout = -1s}).ok());

  ASSERT_TRUE(sup.add(shell("dup", kThenSleep)).ok());
  Result<void> duplicate = sup.add(shell("dup", kThenSleep));
  ASSERT_FALSE(duplicate.ok());
  EXPECT_THAT(duplicate.error().message, HasSubstr("already exists"));
  EXPECT_EQ(sup.statuses().size(), 1u);
  EXPECT_TRUE(rec.events(Kind::exited).empty());
}

TEST(ProcessSupervisor, AnExecFailureIsReportedAndTheProcessNotRegistered) {
  TempDir dir;
  // Executable, but its interpreter does not exist: execve itself fails (ENOENT).
  const std::string script = dir.write("broken.sh", "#!/nonexistent/interpreter\n", true);
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  Result<void> r = sup.add({.name = "broken", .command = script});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "exec failed: No such file or directory");
  EXPECT_FALSE(sup.status("broken").has_value());
  EXPECT_TRUE(rec.events().empty());
}

TEST(ProcessSupervisor, RestartsACrashAtOnceThenBacksOffAndReportsIntensity) {
  Recorder rec;
  ProcessSupervisor sup(
      {.initial = 50ms, .max = 200ms, .intensity_max_restarts = 2, .intensity_period = 10s},
      rec.log_sink(), rec.event_sink());
  ASSERT_TRUE(sup.add(shell("crasher", "exit 3")).ok());
  ASSERT_TRUE(eventually([&] { return rec.events(Kind::restart_scheduled).size() >= 5; }));
  const std::vector<ProcessEvent> events = rec.events();
  const auto times = rec.times();

  std::vector<Duration> delays;
  for (const ProcessEvent& e : rec.events(Kind::restart_scheduled)) delays.push_back(e.delay);
  delays.resize(5);
  EXPECT_THAT(delays, ElementsAre(Duration(0ms), Duration(50ms), Duration(100ms), Duration(200ms),
                                  Duration(200ms)));
  for (const ProcessEvent& e : rec.events(Kind::exited)) {
    EXPECT_EQ(e.description, "exited with status 3");
    EXPECT_GT(e.pid, 0);
  }
  // Every restart waited at least its delay.
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].kind != Kind::restart_scheduled) continue;
    for (std::size_t j = i + 1; j < events.size(); ++j) {
      if (events[j].kind != Kind::started) continue;
      // Less a little: the times are taken when the events are delivered, not when decided.
      EXPECT_GE(times[j] - times[i], events[i].delay - 25ms) << "restart after event " << i;
      break;
    }
  }
  // 3 restarts in 10 s exceed "at most 2": reported once, on the third crash.
  const std::vector<ProcessEvent> intensity = rec.events(Kind::intensity_exceeded);
  ASSERT_EQ(intensity.size(), 1u);
  EXPECT_EQ(intensity[0].description, "3 restarts within 10s (at most 2 allowed)");
  int exits_before = 0;
  for (const ProcessEvent& e : events) {
    if (e.kind == Kind::intensity_exceeded) break;
    if (e.kind == Kind::exited) ++exits_before;
  }
  EXPECT_EQ(exits_before, 3);

  const ProcessStatus s = *sup.status("crasher");
  EXPECT_GE(s.crashes, 5);
  EXPECT_GE(s.restarts, 4);  // the fifth waits out its 200 ms
  EXPECT_EQ(s.last_exit, "exited with status 3");
}

TEST(ProcessSupervisor, WaitsOutTheBackoffOnItsOwnClock) {
  ManualClock clock;
  Recorder rec;
  ProcessSupervisor sup({.initial = 1h, .max = 4h}, rec.log_sink(), rec.event_sink(), clock);
  ASSERT_TRUE(sup.add(shell("crasher", "exit 3")).ok());
  // The first crash restarts at once; the second waits an hour of the manual clock.
  ASSERT_TRUE(eventually([&] { return sup.status("crasher")->state == ProcessState::backoff; }));
  ProcessStatus waiting = *sup.status("crasher");
  EXPECT_EQ(waiting.crashes, 2);
  EXPECT_EQ(waiting.restarts, 1);
  EXPECT_EQ(waiting.pid, 0);
  EXPECT_FALSE(waiting.running);
  ASSERT_TRUE(waiting.next_start.has_value());
  EXPECT_EQ(*waiting.next_start, clock.now() + 1h);

  std::this_thread::sleep_for(250ms);  // real time passes, manual time does not
  EXPECT_EQ(sup.status("crasher")->restarts, 1);

  clock.advance(1h);
  ASSERT_TRUE(eventually([&] { return sup.status("crasher")->restarts == 2; }));
  ASSERT_TRUE(eventually([&] { return sup.status("crasher")->crashes == 3; }));
  EXPECT_EQ(*sup.status("crasher")->next_start, clock.now() + 2h);
}

TEST(ProcessSupervisor, GracefulStopOfAProcessThatHandlesTermNeedsNoKill) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ProcessSpec spec =
      shell("polite", "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.05; done");
  spec.stop_timeout = 5s;
  ASSERT_TRUE(sup.add(spec).ok());
  ASSERT_TRUE(eventually([&] { return rec.has_line({"polite", false, "ready"}); }));
  const auto before = std::chrono::steady_clock::now();
  ASSERT_TRUE(sup.stop("polite").ok());
  EXPECT_LT(std::chrono::steady_clock::now() - before, 2s);

  const ProcessStatus s = *sup.status("polite");
  EXPECT_EQ(s.state, ProcessState::stopped);
  EXPECT_EQ(s.pid, 0);
  EXPECT_EQ(s.last_exit, "exited with status 0");
  EXPECT_EQ(s.crashes, 0);
  EXPECT_TRUE(rec.has_line({"polite", false, "bye"}));
  const std::vector<ProcessEvent> stopped = rec.events(Kind::stopped);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_EQ(stopped[0].description, "exited with status 0");

  // Not restarted: a stop is not a crash. Stopping again does nothing.
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(sup.status("polite")->state, ProcessState::stopped);
  EXPECT_TRUE(sup.stop("polite").ok());
  EXPECT_EQ(rec.events(Kind::started).size(), 1u);
  EXPECT_TRUE(rec.events(Kind::exited).empty());
}

TEST(ProcessSupervisor, AProcessIgnoringTermIsKilledWithItsGroupAfterTheStopTimeout) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ProcessSpec spec = shell("stubborn", "trap '' TERM; sleep 100 & echo child=$!; wait");
  spec.stop_timeout = 200ms;
  ASSERT_TRUE(sup.add(spec).ok());
  ASSERT_TRUE(eventually([&] { return !rec.line_after("child=").empty(); }));
  const int child = std::stoi(rec.line_after("child="));
  ASSERT_FALSE(dead(child));

  const auto before = std::chrono::steady_clock::now();
  ASSERT_TRUE(sup.stop("stubborn").ok());
  const auto took = std::chrono::steady_clock::now() - before;
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 3s);
  EXPECT_EQ(sup.status("stubborn")->last_exit, "killed by signal 9 (SIGKILL)");
  const std::vector<ProcessEvent> stopped = rec.events(Kind::stopped);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_EQ(stopped[0].description, "killed by signal 9 (SIGKILL) after the 200ms stop timeout");
  // The sleep in the same process group died too.
  EXPECT_TRUE(eventually([&] { return dead(child); }, 2s));
}

TEST(ProcessSupervisor, StopAllStopsInReverseAddOrderAndIsIdempotent) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  for (const char* name : {"first", "second", "third"}) {
    ASSERT_TRUE(sup.add(shell(name, "exec sleep 100")).ok());
  }
  sup.stop_all();
  std::vector<std::string> order;
  for (const ProcessEvent& e : rec.events(Kind::stopped)) order.push_back(e.name);
  EXPECT_THAT(order, ElementsAre("third", "second", "first"));
  for (const ProcessStatus& s : sup.statuses()) {
    EXPECT_EQ(s.state, ProcessState::stopped) << s.name;
    EXPECT_EQ(s.last_exit, "killed by signal 15 (SIGTERM)") << s.name;
  }
  std::vector<std::string> listed;
  for (const ProcessStatus& s : sup.statuses()) listed.push_back(s.name);
  EXPECT_THAT(listed, ElementsAre("first", "second", "third"));  // add order

  sup.stop_all();
  EXPECT_EQ(rec.events(Kind::stopped).size(), 3u);
}

TEST(ProcessSupervisor, RemoveStopsAndForgetsAProcessSoItsNameCanBeAddedAgain) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ASSERT_TRUE(sup.add(shell("agent#0", "exec sleep 100")).ok());
  const int pid = sup.status("agent#0")->pid;
  ASSERT_TRUE(sup.remove("agent#0").ok());
  EXPECT_FALSE(sup.status("agent#0").has_value());
  EXPECT_TRUE(sup.statuses().empty());
  EXPECT_NE(::kill(pid, 0), 0);  // gone, and reaped
  EXPECT_FALSE(sup.remove("agent#0").ok());
  ASSERT_TRUE(sup.add(shell("agent#0", "exec sleep 100")).ok());
  EXPECT_GT(sup.status("agent#0")->pid, 0);
}

TEST(ProcessSupervisor, AKilledProcessIsRestartedAutomatically) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ASSERT_TRUE(sup.add(shell("victim", "exec sleep 100")).ok());
  const int first_pid = sup.status("victim")->pid;
  ASSERT_GT(first_pid, 0);
  ASSERT_TRUE(sup.kill("victim", SIGKILL).ok());
  ASSERT_TRUE(eventually([&] { return rec.events(Kind::started).size() == 2; }));
  const ProcessStatus s = *sup.status("victim");
  EXPECT_TRUE(s.running);
  EXPECT_NE(s.pid, first_pid);
  EXPECT_EQ(s.crashes, 1);
  EXPECT_EQ(s.restarts, 1);
  EXPECT_EQ(s.last_exit, "killed by signal 9 (SIGKILL)");
  const std::vector<ProcessEvent> exited = rec.events(Kind::exited);
  ASSERT_EQ(exited.size(), 1u);
  EXPECT_EQ(exited[0].pid, first_pid);
  EXPECT_EQ(rec.events(Kind::restart_scheduled).at(0).delay, Duration::zero());
  EXPECT_TRUE(dead(first_pid));
}

TEST(ProcessSupervisor, RestartOnRequestIsCountedButIsNoCrash) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ProcessSpec spec = shell("svc", "trap 'exit 0' TERM; echo up; while true; do sleep 0.05; done");
  spec.stop_timeout = 5s;
  ASSERT_TRUE(sup.add(spec).ok());
  // The shell may also say "Terminated" on stderr when its sleep is signalled: count stdout.
  ASSERT_TRUE(eventually([&] { return rec.count({"svc", false, "up"}) == 1; }));  // trap set
  const int pid1 = sup.status("svc")->pid;

  ASSERT_TRUE(sup.restart("svc", /*graceful=*/true).ok());
  ProcessStatus s = *sup.status("svc");
  EXPECT_TRUE(s.running);
  EXPECT_NE(s.pid, pid1);
  EXPECT_EQ(s.restarts, 1);
  EXPECT_EQ(s.crashes, 0);
  EXPECT_EQ(s.last_exit, "exited with status 0");  // it heard SIGTERM and left by itself

  ASSERT_TRUE(eventually([&] { return rec.count({"svc", false, "up"}) == 2; }));

  const auto before = std::chrono::steady_clock::now();
  ASSERT_TRUE(sup.restart("svc", /*graceful=*/false).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - before, 2s);  // well before the 5 s stop timeout
  s = *sup.status("svc");
  EXPECT_EQ(s.restarts, 2);
  EXPECT_EQ(s.crashes, 0);
  EXPECT_EQ(s.last_exit, "killed by signal 9 (SIGKILL)");  // no SIGTERM it could have handled

  std::vector<Kind> kinds;
  for (const ProcessEvent& e : rec.events()) kinds.push_back(e.kind);
  EXPECT_THAT(kinds, ElementsAre(Kind::started, Kind::stopped, Kind::started, Kind::stopped,
                                 Kind::started));
  EXPECT_EQ(rec.events()[2].description, "restarted on request");

  // A stopped process is simply started by restart().
  ASSERT_TRUE(sup.stop("svc").ok());
  ASSERT_TRUE(sup.restart("svc", true).ok());
  EXPECT_TRUE(sup.status("svc")->running);
  EXPECT_EQ(sup.status("svc")->restarts, 3);
}

TEST(ProcessSupervisor, StartAfterStopAndErrorsForWrongRequests) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ASSERT_TRUE(sup.add(shell("svc", "exec sleep 100")).ok());
  Result<void> again = sup.start("svc");
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.error().message, HasSubstr("already running"));

  ASSERT_TRUE(sup.stop("svc").ok());
  Result<void> not_running = sup.kill("svc", SIGTERM);
  ASSERT_FALSE(not_running.ok());
  EXPECT_THAT(not_running.error().message, HasSubstr("not running"));
  ASSERT_TRUE(sup.start("svc").ok());
  EXPECT_TRUE(sup.status("svc")->running);
  EXPECT_EQ(sup.status("svc")->restarts, 0);

  EXPECT_FALSE(sup.kill("svc", 0).ok());
  EXPECT_FALSE(sup.kill("svc", 1000).ok());
  for (Result<void> r : {sup.stop("nobody"), sup.start("nobody"), sup.restart("nobody", true),
                         sup.kill("nobody", SIGTERM)}) {
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.error().message, HasSubstr("no process named 'nobody'"));
  }
  EXPECT_FALSE(sup.status("nobody").has_value());
}

TEST(ProcessSupervisor, StoppingAProcessInBackoffCancelsItsRestart) {
  Recorder rec;
  ProcessSupervisor sup({.initial = 1h, .max = 1h}, rec.log_sink(), rec.event_sink());
  ASSERT_TRUE(sup.add(shell("crasher", "exit 1")).ok());
  ASSERT_TRUE(eventually([&] { return sup.status("crasher")->state == ProcessState::backoff; }));
  ASSERT_TRUE(sup.stop("crasher").ok());
  const ProcessStatus s = *sup.status("crasher");
  EXPECT_EQ(s.state, ProcessState::stopped);
  EXPECT_FALSE(s.next_start.has_value());
  EXPECT_EQ(rec.events(Kind::stopped).at(0).description, "stopped while waiting to restart");
  // start() begins afresh: at once, and its next crash is again "the first".
  ASSERT_TRUE(sup.start("crasher").ok());
  ASSERT_TRUE(eventually([&] { return rec.events(Kind::restart_scheduled).size() >= 3; }));
  EXPECT_EQ(rec.events(Kind::restart_scheduled)[2].delay, Duration::zero());
}

TEST(ProcessSupervisor, ASinkMayStopTheProcessItHearsAbout) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  rec.on_event([&sup](const ProcessEvent& e) {
    if (e.kind == Kind::exited) {
      Result<void> r = sup.stop(e.name);  // queued: carried out after the sink returns
      EXPECT_TRUE(r.ok());
      (void)sup.status(e.name);  // reading from a sink is fine too
    }
  });
  ASSERT_TRUE(sup.add(shell("once", "sleep 0.05; exit 2")).ok());
  ASSERT_TRUE(eventually([&] { return sup.status("once")->state == ProcessState::stopped; }));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(sup.status("once")->state, ProcessState::stopped);
}

TEST(ProcessSupervisor, ReportsTheResidentMemoryOfARunningProcess) {
  Recorder rec;
  ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
  ASSERT_TRUE(sup.add(shell("mem", "exec sleep 100")).ok());
  EXPECT_TRUE(eventually([&] { return sup.status("mem")->rss_bytes > 0; }));
  EXPECT_EQ(sup.status("mem")->rss_bytes % 1024, 0u);
  ASSERT_TRUE(sup.stop("mem").ok());
  EXPECT_EQ(sup.status("mem")->rss_bytes, 0u);
}

TEST(ProcessSupervisor, TheDestructorLeavesNoChildRunning) {
  Recorder rec;
  std::vector<int> pids;
  int grandchild = 0;
  {
    ProcessSupervisor sup(fast_crash_loop(), rec.log_sink(), rec.event_sink());
    ASSERT_TRUE(sup.add(shell("plain", "exec sleep 100")).ok());
    ProcessSpec stubborn = shell("stubborn", "trap '' TERM; sleep 100 & echo child=$!; wait");
    stubborn.stop_timeout = 200ms;
    ASSERT_TRUE(sup.add(stubborn).ok());
    ASSERT_TRUE(eventually([&] { return !rec.line_after("child=").empty(); }));
    grandchild = std::stoi(rec.line_after("child="));
    for (const ProcessStatus& s : sup.statuses()) pids.push_back(s.pid);
  }
  for (int pid : pids) {
    EXPECT_GT(pid, 0);
    EXPECT_NE(::kill(pid, 0), 0) << pid << " (our child, reaped) is still there";
  }
  EXPECT_TRUE(eventually([&] { return dead(grandchild); }, 2s));
  std::vector<std::string> stopped;
  for (const ProcessEvent& e : rec.events(Kind::stopped)) stopped.push_back(e.name);
  EXPECT_THAT(stopped, ElementsAre("stubborn", "plain"));
}

TEST(ProcessSupervisor, RejectsInvalidCrashLoopOptions) {
  EXPECT_THROW(ProcessSupervisor({.initial = 2s, .max = 1s}, {}), std::invalid_argument);
}

TEST(ProcessSupervisor, NamesItsStatesAndEvents) {
  EXPECT_EQ(to_string(ProcessState::backoff), "backoff");
  EXPECT_EQ(to_string(Kind::restart_scheduled), "restart_scheduled");
  EXPECT_EQ(to_string(Kind::intensity_exceeded), "intensity_exceeded");
}

}  // namespace
}  // namespace mend
