// File: mend/server/daemon.h
//
// The daemon behind `mend serve`: it puts the whole workflow (detect -> classify -> route ->
// recover -> escalate) in front of agents written in any language. Clients submit tasks over
// HTTP (docs/api.md); mend runs them against the agents of its configuration
// (mend/server/config.h), starts and heals the agents it supervises, delivers notifications from
// its outbox, re-escalates on SLA breaches, and serves metrics and a stream of events.
//
//   mend::ConfigLoad load = mend::load_config_file("mend.yaml");
//   if (!load.ok()) return 2;
//   mend::Daemon daemon(*load.config);
//   if (auto started = daemon.start(); !started.ok()) return 1;   // agents up, API listening
//   std::cout << daemon.base_url() << "\n";
//   return daemon.wait();   // until SIGTERM/SIGINT (or stop()); SIGHUP reloads the config
//
// Shutdown (SIGTERM, SIGINT, stop()): new tasks are refused (503), tasks in flight are given up to
// server.drain_timeout to finish, pending notifications get one last delivery pass, supervised
// agents are stopped in reverse order, and wait() returns 0.
//
// Reload (SIGHUP, POST /v1/reload, reload()): a valid new file replaces agents, policies, chains,
// degradation texts and escalation settings for tasks submitted from then on; tasks in flight
// finish under the configuration they started with. Supervised agents whose command, arguments,
// environment and replicas are unchanged keep running; others are started, restarted or stopped.
// An invalid file changes nothing and its problems are logged and returned. server.* and
// store.path take effect at the next start only.
//
// Thread-safety: start(), stop(), reload() and the accessors may be called from any thread;
// wait() from one thread at a time.
#ifndef MEND_SERVER_DAEMON_H_
#define MEND_SERVER_DAEMON_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/random.h"
#include "mend/core/result.h"
#include "mend/server/config.h"

namespace mend {

struct DaemonOptions {
  // Where log lines go; default: stderr through spdlog ("[2026-11-28 18:00:00.123] [info] ...").
  std::function<void(std::string_view level, std::string_view line)> log;
  // Handle SIGTERM, SIGINT and SIGHUP in wait(). Default true; tests that embed a daemon turn it
  // off and call stop()/reload().
  bool handle_signals = true;
  // The clock every decision of the daemon reads (deadlines, backoff due times, probe schedules,
  // timestamps); default (null): the system clock. Waits still run on real timers: a manual
  // clock suits tests that embed a daemon and check what it stamps and decides.
  const Clock* clock = nullptr;
  // The random source of every jitter and draw the daemon makes (backoff, notification retries,
  // the relays' per-thread sources are seeded from it); default (null): one seeded from the
  // system. Called from many threads: it must be thread-safe (SeededRandom and FixedRandom are).
  RandomSource* random = nullptr;
};

class Daemon {
 public:
  explicit Daemon(Config config, DaemonOptions options = {});
  ~Daemon();  // stop()s and waits
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Opens the store, starts the supervised agents (without waiting for them to be ready: they
  // take traffic once their startup probe passes), then listens. Errors: the store cannot be
  // opened, an agent command cannot be started, the address cannot be bound.
  Result<void> start();
  // Blocks until the daemon has shut down; returns the process exit status (0 after a clean
  // shutdown).
  int wait();
  // Begins the shutdown described above; returns at once. Idempotent.
  void stop();
  // Loads `path` (default: the file the running configuration came from) and applies it.
  // Returns the problems when it is invalid (and keeps the running configuration).
  Result<void> reload(const std::string& path = "");

  std::string base_url() const;  // "http://127.0.0.1:7070"; "" before start()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mend

#endif  // MEND_SERVER_DAEMON_H_
