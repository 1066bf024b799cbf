// The operator commands' command line: their subcommands and options (OperatorCommands), and which
// command run() runs; the commands themselves are in operator_commands.h.
#include "operator_cli.h"

#include <CLI/CLI.hpp>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "mend/runtime/http_client.h"
#include "operator_commands.h"

namespace mend::app {

const char* const kExitStatusHelp =
    "Exit status:\n"
    "  0  success\n"
    "  1  the command failed: mend answered an error (unknown agent or record, conflict),\n"
    "     or the configuration is invalid\n"
    "  2  wrong command line\n"
    "  3  the daemon could not be reached (or did not answer in time)\n"
    "  4  the daemon refused the token (401)\n"
    "  5  mend submit: the task's outcome is `failed`\n"
    "  6  mend submit: --wait ran out while the task was still running\n"
    "Environment: MEND_ADDRESS (default http://127.0.0.1:7070), MEND_API_TOKEN; a flag wins.\n"
    "Details: docs/cli.md\n";

namespace {

// The longest --timeout, --wait, --for, --deadline: a day (mend caps its waits lower still).
constexpr double kMaxSeconds = 86400;

void add_connection_options(CLI::App* cmd, Connection& c) {
  const char* group = "Connection and output";
  cmd->add_option("--address", c.address, "mend's base URL")
      ->envname("MEND_ADDRESS")
      ->check(
          [](const std::string& url) -> std::string {
            Result<UrlParts> parts = parse_url(url);
            if (!parts.ok()) return parts.error().message;
            return {};
          },
          "URL")
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--token", c.token, "The daemon's API token (POST calls need it when set)")
      ->envname("MEND_API_TOKEN")
      ->group(group);
  cmd->add_flag("--json", c.json, "Print mend's JSON instead of a table (for scripts and jq)")
      ->group(group);
  cmd->add_option("--timeout", c.timeout_seconds, "Seconds to wait for each answer")
      ->check(CLI::Range(0.001, kMaxSeconds))
      ->capture_default_str()
      ->group(group);
}

}  // namespace

// --- Registration -------------------------------------------------------------------------------

struct OperatorCommands::State {
  std::deque<Connection> connections;  // one per subcommand; a deque keeps their addresses
  std::map<const CLI::App*, Connection*> connection_of;

  CLI::App* agents = nullptr;
  std::string agent_name;

  CLI::App* circuits = nullptr;
  std::string circuit_action;
  std::string circuit_agent;

  CLI::App* tickets = nullptr;
  CLI::App* incidents = nullptr;
  std::string ticket_status;
  std::string incident_status;

  CLI::App* ack = nullptr;
  CLI::App* resolve = nullptr;
  std::string ack_id, resolve_id;
  std::string ack_by = default_actor();
  std::string resolve_by = default_actor();

  CLI::App* submit = nullptr;
  SubmitOptions submit_options;

  CLI::App* events = nullptr;
  EventsOptions events_options;

  CLI::App* check_config = nullptr;
  std::string config_path;
  bool config_json = false;

  CLI::App* with_connection(CLI::App* cmd) {
    Connection& c = connections.emplace_back();
    connection_of[cmd] = &c;
    add_connection_options(cmd, c);
    return cmd;
  }
  const Connection& connection(const CLI::App* cmd) const { return *connection_of.at(cmd); }
};

OperatorCommands::OperatorCommands(CLI::App& app) : state_(std::make_unique<State>()) {
  State& s = *state_;
  const std::vector<std::string> statuses = {"open", "acknowledged", "resolved", "active"};

  s.agents = s.with_connection(app.add_subcommand(
      "agents", "List the agents: health, circuit, load, replicas, counters (or one in detail)"));
  s.agents->add_option("name", s.agent_name, "Show this agent in detail, with its replicas");

  s.circuits = s.with_connection(app.add_subcommand(
      "circuits", "List the circuit breakers; `circuits open|close NAME` forces one"));
  s.circuits
      ->add_option("action", s.circuit_action,
                   "open: hold NAME's circuit open (no traffic) until closed; close: close "
                   "it and forget its counts")
      ->check(CLI::IsMember({"open", "close"}));
  s.circuits->add_option("agent", s.circuit_agent, "The agent whose circuit to open or close");

  s.tickets = s.with_connection(
      app.add_subcommand("tickets", "List tickets (medium and high escalations)"));
  s.tickets
      ->add_option("--status", s.ticket_status,
                   "Only these: open, acknowledged, resolved, "
                   "active (open or acknowledged)")
      ->check(CLI::IsMember(statuses));

  s.incidents = s.with_connection(
      app.add_subcommand("incidents", "List incidents (critical escalations, with war rooms)"));
  s.incidents
      ->add_option("--status", s.incident_status,
                   "Only these: open, acknowledged, "
                   "resolved, active")
      ->check(CLI::IsMember(statuses));

  // `ack` and `resolve` take the same arguments.
  auto record_action = [&](const char* name, const char* description, std::string& id,
                           std::string& by, const char* by_help) {
    CLI::App* cmd = s.with_connection(app.add_subcommand(name, description));
    cmd->add_option("id", id, "TKT-3, INC-7, ESC-5 or a number")->required();
    cmd->add_option("--by", by, by_help)->capture_default_str();
    return cmd;
  };
  s.ack = record_action("ack", "Acknowledge a ticket or incident (stops its re-escalation)",
                        s.ack_id, s.ack_by, "Who acknowledges ($USER, else operator)");
  s.resolve = record_action("resolve", "Resolve a ticket or incident", s.resolve_id, s.resolve_by,
                            "Who resolves ($USER, else operator)");

  SubmitOptions& o = s.submit_options;
  s.submit = s.with_connection(
      app.add_subcommand("submit", "Submit a task, wait for its outcome and print it"));
  s.submit->add_option("--type", o.type, "Task type: code_review, deployment, ai_analysis, ...")
      ->required();
  s.submit->add_option("--agent", o.agent, "The primary agent");
  s.submit
      ->add_option("--capability", o.capabilities,
                   "A needed capability (repeatable); without --agent mend plans by them")
      ->allow_extra_args(false);
  s.submit->add_option("--payload", o.payload, "The task's payload: JSON text, or @FILE");
  s.submit->add_option("--id", o.id, "The task's id (default: task-N)");
  s.submit->add_option("--deadline", o.deadline_seconds, "Seconds for the whole task")
      ->check(CLI::Range(0.001, kMaxSeconds));
  s.submit
      ->add_option("--attempt-timeout", o.attempt_timeout_seconds,
                   "Seconds for each call to an agent")
      ->check(CLI::Range(0.001, kMaxSeconds));
  s.submit
      ->add_option("--wait", o.wait_seconds,
                   "Seconds to wait for the outcome; 0: do not wait, print the task's id")
      ->check(CLI::Range(0.0, kMaxSeconds))
      ->capture_default_str();
  s.submit->add_option("--idempotency-key", o.idempotency_key,
                       "Submitted again with the same key, the task is not run twice");

  EventsOptions& e = s.events_options;
  s.events = s.with_connection(app.add_subcommand(
      "events", "Follow mend's decisions as they happen (the event stream), one line each"));
  s.events->add_option("--replay", e.replay, "Print the last N events first (at most 256)")
      ->check(CLI::Range(0, 256));
  s.events->add_option("--count", e.count, "Stop after N events")->check(CLI::PositiveNumber);
  s.events->add_option("--for", e.for_seconds, "Stop after this many seconds")
      ->check(CLI::Range(0.001, kMaxSeconds));
  s.events
      ->add_option("--kind", e.kinds,
                   "Only events of this kind (repeatable): task_finished, retry_scheduled, "
                   "circuit_transition, agent_process, ...")
      ->allow_extra_args(false);

  s.check_config = app.add_subcommand(
      "check-config", "Validate a configuration file; print every problem with file, line, key");
  s.check_config->add_option("file", s.config_path, "Configuration file (YAML)")->required();
  s.check_config->add_flag("--json", s.config_json,
                           "Print {\"valid\", \"agents\"} or {\"valid\": false, \"problems\"}");
}

OperatorCommands::~OperatorCommands() = default;

std::optional<int> OperatorCommands::run(std::ostream& out, std::ostream& err) {
  State& s = *state_;
  if (*s.check_config) return run_check_config(s.config_path, s.config_json, out, err);
  if (*s.agents) {
    Session session("agents", s.connection(s.agents), out, err);
    return run_agents(session, s.agent_name);
  }
  if (*s.circuits) {
    Session session("circuits", s.connection(s.circuits), out, err);
    if (s.circuit_action.empty()) return run_circuits(session);
    if (s.circuit_agent.empty()) {
      return session.fail("which agent? `mend circuits " + s.circuit_action + " NAME`",
                          exit_status::kUsage);
    }
    return run_circuit_change(session, s.circuit_action, s.circuit_agent);
  }
  if (*s.tickets) {
    Session session("tickets", s.connection(s.tickets), out, err);
    return run_records(session, "tickets", s.ticket_status);
  }
  if (*s.incidents) {
    Session session("incidents", s.connection(s.incidents), out, err);
    return run_records(session, "incidents", s.incident_status);
  }
  if (*s.ack) {
    Session session("ack", s.connection(s.ack), out, err);
    return run_record_action(session, "acknowledge", s.ack_id, s.ack_by);
  }
  if (*s.resolve) {
    Session session("resolve", s.connection(s.resolve), out, err);
    return run_record_action(session, "resolve", s.resolve_id, s.resolve_by);
  }
  if (*s.submit) return run_submit(s.submit_options, s.connection(s.submit), out, err);
  if (*s.events) return run_events(s.events_options, s.connection(s.events), out, err);
  return std::nullopt;
}

}  // namespace mend::app
