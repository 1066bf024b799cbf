// What `mend demo` runs: see demo_script.h.
#include "demo_script.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>

namespace mend::app {
namespace {

namespace fs = std::filesystem;

// A YAML double-quoted scalar: any path, whatever characters it has.
std::string yaml_quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string agent_names_csv() {
  std::string out;
  for (const DemoAgent& a : kAgents) out += std::string(out.empty() ? "" : ", ") + a.name;
  return out;
}

// The configuration the demo runs: the specification's defaults where they fit a two-minute run,
// shorter times where the specification's would outlast it (breaker recovery, probes, delivery).
std::string demo_config_yaml(const std::string& agent_command, const std::string& webhook_url,
                             double duration_seconds) {
  // The circuits must be able to open and close again within the run.
  const double recovery = std::clamp(duration_seconds / 12.0, 2.0, 10.0);
  std::ostringstream y;
  y << "# Written by `mend demo`: eight agents, supervised, with the default fallback chains.\n"
    << "# Run it yourself: mend serve -c mend.yaml (the agents' command is an absolute path).\n"
    << "server:\n"
    << "  address: 127.0.0.1\n"
    << "  port: 0\n"
    << "  threads: 2\n"
    << "  task_deadline: 30s\n"
    << "  drain_timeout: 10s\n"
    << "store:\n"
    << "  path: mend.db\n"
    << "policies:\n"
    << "  retry:\n"
    << "    max_retries: 3\n"
    << "    backoff: {kind: error_scaled, base: 200ms, cap: 5s}\n"
    << "  breaker:\n"
    << "    mode: consecutive\n"
    << "    failure_threshold: 5\n"
    << "    recovery_timeout: " << recovery << "s\n"
    << "    success_threshold: 2\n"
    << "    half_open_calls: 2\n"
    << "  call_timeout: 2s\n"
    << "agents:\n";
  for (const DemoAgent& a : kAgents) {
    y << "  - name: " << a.name << "\n"
      << "    command: " << yaml_quoted(agent_command) << "\n"
      << "    args: [--port, \"{port}\", --name, " << a.name << ", --latency, " << a.latency_ms
      << ", --restart-exits, --memory-limit, \"2048\"]\n"
      << "    capabilities: " << a.capabilities << "\n"
      << "    max_concurrent: 16\n"
      << "    memory_limit: 160MiB\n"
      << "    stop_timeout: 3s\n"
      << "    probes:\n"
      << "      startup: {period: 100ms, failure_threshold: 200}\n"
      << "      readiness: {period: 500ms, timeout: 1s, failure_threshold: 2}\n"
      << "      liveness: {period: 1s, timeout: 1s, failure_threshold: 3}\n";
    if (a.generalist) y << "    generalist: true\n";
  }
  y << "default_fallback_chains: true\n"
    << "escalation:\n"
    << "  war_room_url_template: https://chat.example.com/war-room/{id}\n"
    << "  receivers:\n"
    << "    - name: demo-webhook\n"
    << "      kind: webhook\n"
    << "      url: " << webhook_url << "\n"
    << "  routes:\n"
    << "    engineering: [demo-webhook]\n"
    << "    on-call: [demo-webhook]\n"
    << "    emergency: [demo-webhook]\n"
    << "  delivery_interval: 250ms\n"
    << "  sla_check_interval: 1s\n"
    << "supervision:\n"
    << "  restart_backoff_initial: 1s\n"
    << "  restart_backoff_max: 10s\n"
    << "  ready_timeout: 20s\n";
  return y.str();
}

// The sample agent: the configured path, $MEND_SAMPLE_AGENT, next to this binary (installed), in
// the build tree beside it, or on PATH.
std::string find_sample_agent(const std::string& configured) {
  if (!configured.empty()) return configured;
  if (const char* env = std::getenv("MEND_SAMPLE_AGENT"); env && *env) return env;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& candidate :
         {self.parent_path() / "mend-sample-agent",
          self.parent_path() / ".." / ".." / "examples" / "agent" / "mend-sample-agent"}) {
      if (::access(candidate.c_str(), X_OK) == 0) return fs::weakly_canonical(candidate).string();
    }
  }
  if (const char* path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    for (std::string dir; std::getline(dirs, dir, ':');) {
      fs::path candidate = fs::path(dir.empty() ? "." : dir) / "mend-sample-agent";
      if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  }
  return {};
}

std::string make_directory(const std::string& requested) {
  if (!requested.empty()) {
    std::error_code ec;
    fs::create_directories(requested, ec);
    if (ec) return {};
    return fs::absolute(requested).string();
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/mend-demo-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return {};
  return pattern;
}

}  // namespace mend::app
