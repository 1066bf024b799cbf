// File: src/app/demo_script.h (internal to the `mend` binary)
//
// What `mend demo` runs: the specification's eight agents, the workload's mix of task types and
// primary agents, the chaos timeline, and the configuration file that puts them under mend
// (docs/demo.md describes them for users).
//
//   std::string yaml = demo_config_yaml(find_sample_agent(""), webhook_url, 120);
//   for (const ChaosStep& step : kTimeline) ...   // at step.at * duration, POST step.knobs
//
// Thread-safety: constants and pure functions, except find_sample_agent and make_directory,
// which read the environment and the file system.
#ifndef MEND_APP_DEMO_SCRIPT_H_
#define MEND_APP_DEMO_SCRIPT_H_

#include <string>

namespace mend::app {

struct DemoAgent {
  const char* name;
  const char* capabilities;  // YAML flow sequence
  int latency_ms;            // each answer takes this long: the agents "think"
  bool generalist = false;
};

// The specification's agents. Capabilities: where a task can go when its primary and chain fail.
inline constexpr DemoAgent kAgents[] = {
    {"senior-frontend-developer", "[frontend, code_review, ui]", 30},
    {"senior-backend-developer", "[backend, code_review, deployment, database]", 30},
    {"senior-full-stack-developer", "[frontend, backend, code_review, deployment, security_scan]",
     40},
    {"senior-ai-engineer", "[ai_analysis, llm, code_review]", 60},
    {"code-generation-improver", "[code_review, code_generation]", 40},
    {"infrastructure-devops-manager", "[deployment, infrastructure, security_scan]", 50},
    {"ollama-integration-specialist", "[ai_analysis, llm]", 80},
    {"agentzero-coordinator", "[coordination, code_review, deployment, ai_analysis, security_scan]",
     50, true},
};

// What the workload sends: a task type, its primary agent, and how often (weights sum to 100).
struct TaskKind {
  const char* type;
  const char* primary;
  int weight;
};
inline constexpr TaskKind kWorkload[] = {
    {"code_review", "senior-frontend-developer", 14},
    {"code_review", "senior-backend-developer", 14},
    {"code_review", "code-generation-improver", 12},
    {"deployment", "infrastructure-devops-manager", 20},
    {"ai_analysis", "ollama-integration-specialist", 15},
    {"ai_analysis", "senior-ai-engineer", 10},
    {"security_scan", "senior-full-stack-developer", 5},
    {"security_scan", "infrastructure-devops-manager", 5},
    // The generalist takes some work of its own, so that after its outage traffic comes back to
    // it and its circuit closes.
    {"security_scan", "agentzero-coordinator", 5},
};

// One step of the chaos timeline: at `at` (a fraction of the run), POST `knobs` to the agent's
// /admin/chaos.
struct ChaosStep {
  double at;
  const char* agent;
  const char* action;
  const char* detail;
  const char* knobs;  // JSON
};
inline constexpr ChaosStep kTimeline[] = {
    {0.08, "senior-backend-developer", "rate_limit",
     "rate-limits: 429 with Retry-After: 1 s to its next two calls, then to 30 % of them",
     R"({"fail_next": [{"kind": "429", "count": 2}], "fail": {"429": 0.3}, "retry_after": 1})"},
    {0.15, "senior-frontend-developer", "crash", "crashes after its next answer (exit status 1)",
     R"({"crash_after": 1})"},
    {0.20, "senior-backend-developer", "recover", "stops rate-limiting", R"({"reset": true})"},
    {0.25, "ollama-integration-specialist", "hang", "hangs: takes tasks, never answers",
     R"({"hang": true})"},
    // The leak's size per task is set by memory_leak_knobs(): about 12 % of the run to pass the
    // memory limit.
    {0.33, "code-generation-improver", "memory_leak", "leaks memory with every task", ""},
    {0.42, "senior-full-stack-developer", "database_down",
     "loses its database connection: its health check fails", R"({"database_down": true})"},
    {0.47, "senior-ai-engineer", "data_corruption", "corrupts the data of one answer (critical)",
     R"({"fail_next": [{"kind": "critical", "count": 1}]})"},
    {0.50, "ollama-integration-specialist", "recover", "answers again", R"({"reset": true})"},
    {0.55, "infrastructure-devops-manager", "hard_down", "goes hard down (503 to every task)",
     R"({"fail": {"503": 1.0}})"},
    {0.62, "agentzero-coordinator", "outage",
     "loses an external service (503 external_service_down to every task)",
     R"({"fail": {"external": 1.0}})"},
    {0.72, "agentzero-coordinator", "recover", "its external service is back",
     R"({"reset": true})"},
    {0.80, "infrastructure-devops-manager", "recover", "comes back up", R"({"reset": true})"},
};

// Agent names, comma separated, in configuration order.
std::string agent_names_csv();

// The configuration the demo runs (YAML), with `agent_command` as every agent's command and the
// notifications routed to `webhook_url`.
std::string demo_config_yaml(const std::string& agent_command, const std::string& webhook_url,
                             double duration_seconds);

// The sample agent: `configured`, $MEND_SAMPLE_AGENT, next to this binary (installed), in the
// build tree beside it, or on PATH; "" when none is found.
std::string find_sample_agent(const std::string& configured);

// `requested` created (with its parents), or a fresh mend-demo-XXXXXX under $TMPDIR; the
// absolute path, or "" when it cannot be created.
std::string make_directory(const std::string& requested);

}  // namespace mend::app

#endif  // MEND_APP_DEMO_SCRIPT_H_
