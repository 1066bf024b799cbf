// `mend check-config FILE`: validates a configuration file without a daemon.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

#include "mend/server/config.h"
#include "operator_commands.h"

namespace mend::app {

using nlohmann::json;

int run_check_config(const std::string& path, bool json_output, std::ostream& out,
                     std::ostream& err) {
  ConfigLoad load = load_config_file(path);
  if (json_output) {
    json report = {{"file", path}, {"valid", load.ok()}, {"warnings", load.warnings}};
    if (load.ok()) {
      std::size_t supervised = 0;
      for (const AgentConfig& a : load.config->agents) supervised += a.supervised() ? 1 : 0;
      report["agents"] = load.config->agents.size();
      report["supervised"] = supervised;
    } else {
      json problems = json::array();
      for (const ConfigProblem& p : load.problems) {
        problems.push_back({{"file", p.file},
                            {"line", p.line},
                            {"column", p.column},
                            {"key", p.key},
                            {"message", p.message}});
      }
      report["problems"] = problems;
    }
    out << report.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    return load.ok() ? exit_status::kOk : exit_status::kFailed;
  }
  if (!load.ok()) {
    for (const ConfigProblem& p : load.problems) err << p.to_string() << "\n";
    err << path << ": " << load.problems.size()
        << (load.problems.size() == 1 ? " problem" : " problems") << "\n";
    return exit_status::kFailed;
  }
  for (const std::string& warning : load.warnings) err << "warning: " << warning << "\n";
  std::size_t supervised = 0;
  for (const AgentConfig& a : load.config->agents) supervised += a.supervised() ? 1 : 0;
  out << path << ": valid (" << load.config->agents.size() << " agents, " << supervised
      << " supervised)\n";
  return exit_status::kOk;
}

}  // namespace mend::app
