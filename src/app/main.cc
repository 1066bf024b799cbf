// mend: the daemon (`mend serve`) and the commands that go with it. Command-line parsing only;
// everything else lives in the libraries.
//
// Exit status: 0 success; 1 the command failed (the daemon could not start, the configuration
// is invalid); 2 the command line is wrong.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "mend/config.h"
#include "mend/daemon.h"

namespace {

constexpr int kFailed = 1;

void print_problems(const mend::ConfigLoad& load) {
  for (const mend::ConfigProblem& p : load.problems) std::cerr << p.to_string() << "\n";
}

int check_config(const std::string& path) {
  mend::ConfigLoad load = mend::load_config_file(path);
  if (!load.ok()) {
    print_problems(load);
    std::cerr << path << ": " << load.problems.size()
              << (load.problems.size() == 1 ? " problem" : " problems") << "\n";
    return kFailed;
  }
  std::size_t supervised = 0;
  for (const mend::AgentConfig& a : load.config->agents) supervised += a.supervised() ? 1 : 0;
  std::cout << path << ": valid (" << load.config->agents.size() << " agents, " << supervised
            << " supervised)\n";
  return 0;
}

int serve(const std::string& path) {
  mend::ConfigLoad load = mend::load_config_file(path);
  if (!load.ok()) {
    print_problems(load);
    std::cerr << "mend serve: the configuration is invalid; nothing was started\n";
    return kFailed;
  }
  mend::Daemon daemon(std::move(*load.config));
  if (auto started = daemon.start(); !started.ok()) {
    std::cerr << "mend serve: cannot start: " << started.error().message << "\n";
    daemon.stop();
    daemon.wait();
    return kFailed;
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

  std::string serve_config = "mend.yaml";
  CLI::App* serve_cmd = app.add_subcommand(
      "serve", "Run the daemon: front the configured agents, supervise the ones it starts");
  serve_cmd->add_option("-c,--config,config", serve_config, "Configuration file (YAML)")
      ->capture_default_str();

  std::string check_path;
  CLI::App* check_cmd = app.add_subcommand(
      "check-config", "Validate a configuration file; print every problem with file, line, key");
  check_cmd->add_option("file", check_path, "Configuration file (YAML)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // app.exit() prints help, the version or the mistake; CLI11's own codes (100 and up) are
    // folded into 2, the conventional status of a wrong command line.
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*check_cmd) return check_config(check_path);
  if (*serve_cmd) return serve(serve_config);
  return 2;
}
