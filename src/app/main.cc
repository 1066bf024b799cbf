// mend: the daemon (`mend serve`), the demo (`mend demo`) and the operator's commands against a
// running daemon (`mend agents`, `circuits`, `tickets`, `incidents`, `ack`, `resolve`, `submit`,
// `events`, `check-config`; docs/cli.md). Command-line parsing only; everything else lives in the
// libraries and in operator_cli / demo.
//
// Exit status: 0 success; 1 the command failed (the daemon could not start, the configuration
// is invalid, mend answered an error such as an unknown agent or record, or a conflict); 2 the
// command line is wrong; 3 the daemon could not be reached; 4 the daemon refused the token;
// 5 `mend submit`: the task's outcome is `failed`; 6 `mend submit`: --wait ran out while the
// task was still running.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "demo.h"
#include "mend/server/config.h"
#include "mend/server/daemon.h"
#include "operator_cli.h"

namespace {

void print_problems(const mend::ConfigLoad& load) {
  for (const mend::ConfigProblem& p : load.problems) std::cerr << p.to_string() << "\n";
}

int serve(const std::string& path) {
  mend::ConfigLoad load = mend::load_config_file(path);
  if (!load.ok()) {
    print_problems(load);
    std::cerr << "mend serve: the configuration is invalid; nothing was started\n";
    return mend::app::exit_status::kFailed;
  }
  for (const std::string& warning : load.warnings)
    std::cerr << "mend serve: warning: " << warning << "\n";
  mend::Daemon daemon(std::move(*load.config));
  if (auto started = daemon.start(); !started.ok()) {
    std::cerr << "mend serve: cannot start: " << started.error().message << "\n";
    daemon.stop();
    daemon.wait();
    return mend::app::exit_status::kFailed;
  }
  // Scripts and tests read the address from this line (the port may be chosen by the system).
  std::cout << "mend: listening on " << daemon.base_url() << std::endl;
  return daemon.wait();
}

}  // namespace

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("mend");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  spdlog::set_default_logger(logger);

  CLI::App app{"mend: error handling and recovery for ecosystems of agents"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mend 0.1.0");
  app.footer(mend::app::kExitStatusHelp);

  std::string serve_config = "mend.yaml";
  CLI::App* serve_cmd = app.add_subcommand(
      "serve", "Run the daemon: front the configured agents, supervise the ones it starts");
  serve_cmd->add_option("-c,--config,config", serve_config, "Configuration file (YAML)")
      ->capture_default_str();

  mend::app::DemoOptions demo_options;
  CLI::App* demo_cmd = mend::app::add_demo_command(app, demo_options);

  mend::app::OperatorCommands operator_commands(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // app.exit() prints help, the version or the mistake; CLI11's own codes (100 and up) are
    // folded into 2, the conventional status of a wrong command line.
    return app.exit(e) == 0 ? 0 : mend::app::exit_status::kUsage;
  }
  if (*serve_cmd) return serve(serve_config);
  if (*demo_cmd) return mend::app::run_demo(demo_options);
  if (std::optional<int> status = operator_commands.run(std::cout, std::cerr)) return *status;
  return mend::app::exit_status::kUsage;
}
