// File: src/app/demo.h (internal to the `mend` binary)
//
// `mend demo`: the whole ecosystem in one command. It writes a configuration with the
// specification's eight agents (supervised mend-sample-agent processes) and fallback chains into
// a fresh directory, starts the daemon on it, runs a loopback webhook receiver for its
// notifications, drives a workload of the four task types while a scripted timeline injects chaos
// through each agent's /admin/chaos, shows a live view, and ends with a report (text and HTML,
// demo_report.h).
//
//   mend::app::DemoOptions options;
//   CLI::App app;
//   mend::app::add_demo_command(app, options);   // `mend demo --duration 120 --keep-running ...`
//   ... app.parse(...) ...
//   return mend::app::run_demo(options);         // 0 when the run completed
//
// Thread-safety: run_demo() runs one demo; call it from one thread.
#ifndef MEND_APP_DEMO_H_
#define MEND_APP_DEMO_H_

#include <string>

namespace CLI {
class App;
}

namespace mend::app {

struct DemoOptions {
  double duration_seconds = 120;  // the workload and chaos timeline; the report comes after
  double tasks_per_second = 8;
  std::string directory;      // empty: a fresh directory under $TMPDIR
  std::string html_path;      // empty: <directory>/mend-demo-report.html
  std::string json_path;      // empty: <directory>/mend-demo-report.json
  std::string agent_command;  // empty: $MEND_SAMPLE_AGENT, or found (demo_script.h)
  bool keep_running = false;  // leave the daemon up afterwards, until Ctrl-C
  std::string live = "auto";  // auto (a terminal gets the live view), always, never
  unsigned seed = 1;          // seeds the workload's choices
};

// Registers `demo` and its options on `app`; returns the subcommand.
CLI::App* add_demo_command(CLI::App& app, DemoOptions& options);

// Runs the demo; returns the process exit status (0 completed; 1 could not start or failed).
int run_demo(const DemoOptions& options);

}  // namespace mend::app

#endif  // MEND_APP_DEMO_H_
