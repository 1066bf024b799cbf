// File: src/app/operator_commands.h (internal to the `mend` binary)
//
// The operator's commands, one function each, for OperatorCommands (operator_cli.cc) to run once
// the command line is parsed: agents and circuits (operator_agents.cc), tickets, incidents, ack
// and resolve (operator_records.cc), submit (operator_submit.cc), events (operator_events.cc) and
// check-config (operator_check_config.cc). Each prints its answer, or what went wrong, and
// returns the exit status (exit_status in operator_cli.h).
//
// Thread-safety: each runs one command on the calling thread.
#ifndef MEND_APP_OPERATOR_COMMANDS_H_
#define MEND_APP_OPERATOR_COMMANDS_H_

#include <ostream>
#include <string>
#include <vector>

#include "operator_session.h"

namespace mend::app {

struct SubmitOptions {
  std::string type;
  std::string agent;
  std::vector<std::string> capabilities;
  std::string payload;
  std::string id;
  double deadline_seconds = 0;
  double attempt_timeout_seconds = 0;
  double wait_seconds = 30;
  std::string idempotency_key;
};

struct EventsOptions {
  int replay = 0;
  int count = 0;           // 0: no limit
  double for_seconds = 0;  // 0: no limit
  std::vector<std::string> kinds;
};

// `mend agents [NAME]`: the agents in a table, or one in detail.
int run_agents(Session& s, const std::string& name);
// `mend circuits`: each agent's circuit breaker.
int run_circuits(Session& s);
// `mend circuits open|close NAME`.
int run_circuit_change(Session& s, const std::string& action, const std::string& agent);

// `mend tickets` and `mend incidents` (`collection`), optionally of one status.
int run_records(Session& s, const std::string& collection, const std::string& status);
// `mend ack ID` and `mend resolve ID`: `action` is "acknowledge" or "resolve".
int run_record_action(Session& s, const std::string& action, const std::string& id,
                      const std::string& by);
// --by's default: $USER, else "operator".
std::string default_actor();

int run_submit(const SubmitOptions& o, const Connection& c, std::ostream& out, std::ostream& err);

int run_events(const EventsOptions& o, const Connection& c, std::ostream& out, std::ostream& err);

// `mend check-config FILE`: needs no daemon.
int run_check_config(const std::string& path, bool json_output, std::ostream& out,
                     std::ostream& err);

}  // namespace mend::app

#endif  // MEND_APP_OPERATOR_COMMANDS_H_
