// File: src/app/operator_cli.h (internal to the `mend` binary)
//
// The operator's commands (docs/cli.md): `agents`, `circuits` (and `circuits open|close NAME`),
// `tickets`, `incidents`, `ack`, `resolve`, `submit` and `events` talk to a running `mend serve`
// over its HTTP API (docs/api.md, through ApiClient); `check-config` reads a file and needs no
// daemon. Each prints a human table by default and, with --json, the daemon's JSON as it came
// (one document; `events`: one JSON object per line) for scripts and jq. Every command that
// talks to the daemon takes --address (env MEND_ADDRESS, default http://127.0.0.1:7070),
// --token (env MEND_API_TOKEN), --json and --timeout; a flag wins over the environment.
//
//   CLI::App app{"mend"};
//   mend::app::OperatorCommands commands(app);  // registers the subcommands and their options
//   app.footer(mend::app::kExitStatusHelp);
//   ... app.parse(argc, argv) ...
//   if (std::optional<int> status = commands.run(std::cout, std::cerr)) return *status;
//
// Thread-safety: run() runs one command; use an OperatorCommands from one thread.
#ifndef MEND_APP_OPERATOR_CLI_H_
#define MEND_APP_OPERATOR_CLI_H_

#include <memory>
#include <optional>
#include <ostream>

namespace CLI {
class App;
}

namespace mend::app {

// The exit statuses of `mend`, for scripts (docs/cli.md lists them too).
namespace exit_status {
inline constexpr int kOk = 0;
inline constexpr int kFailed = 1;        // mend answered an error: 404, 409, invalid config...
inline constexpr int kUsage = 2;         // the command line is wrong
inline constexpr int kUnreachable = 3;   // the daemon could not be reached (or did not answer)
inline constexpr int kUnauthorized = 4;  // the daemon refused the token (401)
inline constexpr int kTaskFailed = 5;    // `mend submit`: the task's outcome is `failed`
inline constexpr int kStillRunning = 6;  // `mend submit`: --wait ran out, the task still runs
}  // namespace exit_status

// The exit statuses as `mend --help` lists them (its footer).
extern const char* const kExitStatusHelp;

class OperatorCommands {
 public:
  // Adds the operator's subcommands, with their options, to `app`.
  explicit OperatorCommands(CLI::App& app);
  ~OperatorCommands();
  OperatorCommands(const OperatorCommands&) = delete;
  OperatorCommands& operator=(const OperatorCommands&) = delete;

  // After app.parse(): runs the operator command that was chosen and returns its exit status
  // (exit_status above); nullopt when the command line chose none of them.
  std::optional<int> run(std::ostream& out, std::ostream& err);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mend::app

#endif  // MEND_APP_OPERATOR_CLI_H_
