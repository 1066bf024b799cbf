// The configuration loader: agents (replicas, probes, supervision of each), the degraded answers,
// escalation (levels, receivers, routes) and supervision (config_checker.h).
#include <arpa/inet.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "config_checker.h"
#include "mend/core/text.h"
#include "mend/runtime/http_client.h"  // parse_url

namespace mend::config_detail {

// --- agents --------------------------------------------------------------------------------------

bool valid_agent_name(std::string_view name) {
  return !name.empty() && name.size() <= 100 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  });
}

void Checker::read_probe(const Item& item, ProbeOptions& probe) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_duration(s, "period", probe.period, DurationRule::positive);
  set_duration(s, "timeout", probe.timeout, DurationRule::positive);
  set_integer(s, "failure_threshold", probe.failure_threshold, {1, 1'000'000});
  set_integer(s, "success_threshold", probe.success_threshold, {1, 1'000'000});
  set_duration(s, "initial_delay", probe.initial_delay, DurationRule::non_negative);
  s.finish();
}

void Checker::read_probes(const Item& item, ProbesConfig& probes) {
  Section s(*this, item);
  if (!s.ok()) return;
  if (auto path = s.get("path")) {
    if (auto text = string(*path)) {
      if (text->front() == '/' && std::none_of(text->begin(), text->end(), [](char c) {
            return static_cast<unsigned char>(c) <= 0x20;
          })) {
        probes.path = *text;
      } else {
        at_value(*path,
                 "expected a path that starts with '/', such as /health, got " + in_quotes(*text));
      }
    }
  }
  if (auto p = s.get("startup")) read_probe(*p, probes.startup);
  if (auto p = s.get("readiness")) read_probe(*p, probes.readiness);
  if (auto p = s.get("liveness")) read_probe(*p, probes.liveness);
  s.finish();
}

void Checker::read_replica_range(const Item& item, AgentConfig& agent) {
  Section s(*this, item);
  if (!s.ok()) return;
  auto min = s.get("min");
  auto max = s.get("max");
  long long low = 0;
  long long high = 0;
  bool valid = min && max;
  if (min) {
    if (auto n = integer(*min, {1, 1000}))
      low = *n;
    else
      valid = false;
  }
  if (max) {
    if (auto n = integer(*max, {1, 1000}))
      high = *n;
    else
      valid = false;
  }
  if (!min || !max) {
    at_key(item, std::string("missing key '") + (min ? "max" : "min") +
                     "' (replicas: {min, max} gives the fewest replicas mend runs and the most "
                     "it scales up to)");
  }
  s.finish();
  if (!valid) return;
  if (high < low) {
    at_value(*max,
             "must be at least min (" + std::to_string(low) + "), got " + std::to_string(high));
    return;
  }
  ScalingConfig scaling;
  scaling.scaler.min_replicas = static_cast<int>(low);
  scaling.scaler.max_replicas = static_cast<int>(high);
  agent.replicas = scaling.scaler.min_replicas;
  agent.scaling = scaling;
}

void Checker::read_scaling(const Item& item, ScalingConfig& scaling) {
  Section s(*this, item);
  if (!s.ok()) return;
  ReplicaScalerOptions& o = scaling.scaler;
  set_duration(s, "interval", scaling.interval, DurationRule::positive);
  set_duration(s, "scale_up_cooldown", o.scale_up_cooldown, DurationRule::non_negative);
  set_duration(s, "scale_down_delay", o.scale_down_delay, DurationRule::non_negative);
  set_real(s, "scale_down_utilisation", o.scale_down_utilisation,
           {0, 1, true, false, " (a share of the replicas' capacity)"});
  set_duration(s, "latency_threshold", o.latency_threshold, DurationRule::non_negative);
  set_integer(s, "replica_capacity", o.replica_capacity, {0, 1'000'000});
  set_duration(s, "start_timeout", o.start_timeout, DurationRule::positive);
  s.finish();
}

void Checker::read_agent(const Item& item, const PolicyConfig& global, AgentConfig& agent) {
  Section s(*this, item, "an agent (a mapping)", false);
  if (!s.ok()) return;
  if (auto name = s.get("name")) {
    if (auto text = string(*name)) {
      if (valid_agent_name(*text)) {
        agent.name = *text;
      } else {
        at_value(*name,
                 "an agent name is 1 to 100 characters from a-z, 0-9, '-', '_' and '.', "
                 "got " +
                     in_quotes(*text));
      }
    }
  } else {
    at_key(item, "missing key 'name' (every agent needs a name)");
  }

  auto url = s.get("url");
  auto urls = s.get("urls");
  auto command = s.get("command");
  const int ways = (url ? 1 : 0) + (urls ? 1 : 0) + (command ? 1 : 0);
  if (ways == 0) {
    at_key(item,
           "an agent needs one of url, urls (an agent mend reaches) or command (one mend "
           "starts)");
  } else if (ways > 1) {
    at_key(command ? *command : *urls, "give only one of url, urls and command");
  }
  auto check_url = [&](const Item& where, const std::string& text) {
    Result<UrlParts> parts = parse_url(text);
    if (!parts.ok()) {
      at_value(where, parts.error().message);
      return false;
    }
    return true;
  };
  std::size_t urls_written = 0;  // valid or not: replicas is checked against what was written
  if (url) {
    urls_written = 1;
    if (auto text = string(*url); text && check_url(*url, *text)) agent.urls = {*text};
  }
  if (urls) {
    if (auto elements = list(*urls, "a list of URLs")) {
      urls_written = elements->size();
      if (elements->empty()) at_value(*urls, "expected at least one URL");
      for (const Item& e : *elements) {
        if (auto text = string(e); text && check_url(e, *text)) agent.urls.push_back(*text);
      }
    }
  }
  if (command) {
    if (auto text = string(*command)) {
      if (text->find('/') == std::string::npos) {
        agent.command = *text;  // looked up on PATH when started, as execvp does
      } else {
        const std::string path = resolve(*text);
        std::error_code ec;
        if (!fs::is_regular_file(path, ec) || ::access(path.c_str(), X_OK) != 0) {
          at_value(*command, "no executable file at " + path);
        } else {
          agent.command = path;
        }
      }
    }
  }
  // Keys that make sense only for a process mend starts.
  for (std::string_view key :
       {"args", "env", "working_dir", "memory_limit", "stop_timeout", "scaling"}) {
    auto entry = s.get(key);
    if (entry && !command) {
      at_key(*entry, "'" + std::string(key) +
                         "' applies only to an agent that mend starts (with a command)");
    }
  }
  if (command) {
    set_strings(s, "args", agent.args);
    if (auto env = s.get("env")) {
      if (auto pairs = entries(*env)) {
        for (const auto& [key, value] : *pairs) {
          auto text = string(value, /*allow_empty=*/true);
          if (!valid_env_name(key)) {
            at_key(value, "an environment variable name is letters, digits and '_', got " +
                              in_quotes(key));
          } else if (key == "PORT") {
            at_key(value, "PORT is set by mend: it is the port mend assigns to each replica");
          } else if (text) {
            agent.env[key] = *text;
          }
        }
      }
    }
    agent.working_dir = base_dir_.lexically_normal().string();
    if (auto dir = s.get("working_dir")) {
      if (auto text = string(*dir)) {
        const std::string path = resolve(*text);
        std::error_code ec;
        if (fs::is_directory(path, ec)) {
          agent.working_dir = path;
        } else {
          at_value(*dir, "no directory at " + path);
        }
      }
    }
    set_size(s, "memory_limit", agent.memory_limit_bytes, std::size_t{1} << 20);
    set_duration(s, "stop_timeout", agent.stop_timeout, DurationRule::positive);
  }
  set_strings(s, "capabilities", agent.capabilities);
  set_bool(s, "generalist", agent.generalist);
  auto replicas = s.get("replicas");
  if (replicas && replicas->value.IsMap()) {
    if (!command) {
      at_key(*replicas,
             "replicas: {min, max} applies only to an agent that mend starts (with a command); "
             "an agent reached by URL has one replica per URL");
    } else {
      read_replica_range(*replicas, agent);
    }
  } else if (replicas) {
    if (auto n = integer(*replicas, {1, 1000})) {
      agent.replicas = static_cast<int>(*n);
      if (urls_written > 0 && static_cast<std::size_t>(*n) != urls_written) {
        at_value(*replicas, "must equal the number of URLs (" + std::to_string(urls_written) +
                                ") for an agent reached by URL, got " + std::to_string(*n) +
                                " (or leave replicas out)");
      }
    }
  } else if (!agent.urls.empty()) {
    agent.replicas = static_cast<int>(agent.urls.size());
  }
  set_integer(s, "max_concurrent", agent.max_concurrent, {0, 1'000'000});
  if (auto scaling = s.get("scaling"); scaling && command) {
    if (agent.scaling) {
      read_scaling(*scaling, *agent.scaling);
    } else if (!replicas || !replicas->value.IsMap()) {
      at_key(*scaling,
             "'scaling' applies only to an agent with replicas: {min, max} (the range mend "
             "scales it in)");
    }
  }
  if (auto probes = s.get("probes")) read_probes(*probes, agent.probes);
  agent.policies = global;
  if (auto policies = s.get("policies")) {
    agent.policies = read_policies(*policies, global);
  }
  s.finish();
}

void Checker::read_agents(const Item& item, const PolicyConfig& global,
                          std::vector<AgentConfig>& agents) {
  auto elements = list(item, "a list of agents");
  if (!elements) return;
  if (elements->empty()) {
    at_key(item, "no agents configured (at least one is needed)");
    return;
  }
  std::map<std::string, int> first_line;
  for (const Item& element : *elements) {
    AgentConfig agent;
    read_agent(element, global, agent);
    if (agent.name.empty()) continue;
    auto [first, fresh] = first_line.emplace(agent.name, line_of(element.mark));
    if (!fresh) {
      at_key(element, "duplicate agent name " + in_quotes(agent.name) + " (first at line " +
                          std::to_string(first->second) + ")");
      continue;
    }
    agent_names_.insert(agent.name);
    agents.push_back(std::move(agent));
  }
}

void Checker::read_chains(const Item& item,
                          std::map<std::string, std::vector<std::string>>& chains) {
  auto pairs = entries(item);
  if (!pairs) return;
  const std::vector<std::string> known(agent_names_.begin(), agent_names_.end());
  for (const auto& [primary, chain_item] : *pairs) {
    if (!agent_names_.contains(primary)) {
      at_key(chain_item, unknown_name("agent", primary, known));
    }
    auto members = list(chain_item, "a list of agent names");
    if (!members) continue;
    std::vector<std::string> chain;
    for (const Item& m : *members) {
      auto name = string(m);
      if (!name) continue;
      if (*name == primary) {
        at_value(m, "an agent cannot be its own fallback");
      } else if (!agent_names_.contains(*name)) {
        at_value(m, unknown_name("agent", *name, known));
      } else if (std::find(chain.begin(), chain.end(), *name) != chain.end()) {
        at_value(m, in_quotes(*name) + " is already in this chain");
      } else {
        chain.push_back(*name);
      }
    }
    chains[primary] = std::move(chain);
  }
}

// --- degradation, escalation, supervision -------------------------------------------------------

void Checker::read_degradation(const Item& item, DegradationTexts& t) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_string(s, "default_message", t.default_message);
  set_string(s, "default_estimated_recovery", t.default_estimated_recovery);
  set_strings(s, "default_alternatives", t.default_alternatives);
  set_string(s, "code_review_message", t.code_review_message);
  set_string(s, "code_review_recommendation", t.code_review_recommendation);
  set_size(s, "code_review_size_limit", t.code_review_size_limit, 1);
  set_string(s, "deployment_message", t.deployment_message);
  set_strings(s, "deployment_steps", t.deployment_steps);
  set_string(s, "deployment_monitoring", t.deployment_monitoring);
  set_string(s, "ai_analysis_message", t.ai_analysis_message);
  set_strings(s, "ai_analysis_alternatives", t.ai_analysis_alternatives);
  set_string(s, "ai_analysis_recommendation", t.ai_analysis_recommendation);
  set_string(s, "security_scan_message", t.security_scan_message);
  set_strings(s, "security_scan_steps", t.security_scan_steps);
  set_string(s, "security_scan_recommendation", t.security_scan_recommendation);
  s.finish();
}

void Checker::read_receiver(const Item& item, ReceiverConfig& receiver) {
  Section s(*this, item, "a receiver (a mapping)", false);
  if (!s.ok()) return;
  if (auto name = s.get("name")) {
    if (auto text = string(*name)) receiver.name = *text;
  } else {
    at_key(item, "missing key 'name' (routes refer to receivers by name)");
  }
  auto kind = s.get("kind");
  if (!kind) {
    at_key(item, "missing key 'kind' (webhook, slack, pagerduty or file)");
  } else if (auto k = choice(*kind, "receiver kind", {"webhook", "slack", "pagerduty", "file"})) {
    receiver.kind = *k;
  }
  const std::string& k = receiver.kind;
  // Which keys each kind takes; a key given to another kind is a mistake worth naming.
  const std::map<std::string, std::vector<std::string>> kUses = {
      {"url", {"webhook", "slack", "pagerduty"}},
      {"headers", {"webhook"}},
      {"routing_key", {"pagerduty"}},
      {"routing_key_env", {"pagerduty"}},
      {"path", {"file"}},
  };
  for (const auto& [key, kinds] : kUses) {
    if (!k.empty() && s.has(key) && std::find(kinds.begin(), kinds.end(), k) == kinds.end()) {
      at_key(*s.get(key),
             "'" + key + "' does not apply to a " + k + " receiver (only to " + join(kinds) + ")");
    }
  }
  auto url = s.get("url");
  if (url && k != "file") {
    if (auto text = string(*url)) {
      if (Result<UrlParts> parts = parse_url(*text); parts.ok()) {
        receiver.url = *text;
      } else {
        at_value(*url, parts.error().message);
      }
    }
  } else if (!url && (k == "webhook" || k == "slack")) {
    at_key(item, "missing key 'url' (a " + k + " receiver posts to it)");
  }
  if (k == "webhook") {
    if (auto headers = s.get("headers")) {
      if (auto pairs = entries(*headers)) {
        for (const auto& [name, value] : *pairs) {
          const bool token = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) ||
                   (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
          });
          auto text = string(value, /*allow_empty=*/true);
          if (!token) {
            at_key(value, "invalid header name " + in_quotes(name));
          } else if (text && text->find_first_of("\r\n") != std::string::npos) {
            at_value(value, "a header value cannot contain a line break");
          } else if (text) {
            receiver.headers[name] = *text;
          }
        }
      }
    }
  }
  if (k == "pagerduty") {
    auto key = s.get("routing_key");
    auto key_env = s.get("routing_key_env");
    if (key && key_env) {
      at_key(*key_env, "give either routing_key or routing_key_env, not both");
    } else if (key) {
      set_string(s, "routing_key", receiver.routing_key);
    } else if (key_env) {
      if (auto value = from_environment(*key_env)) receiver.routing_key = *value;
    } else {
      at_key(item, "missing key 'routing_key' or 'routing_key_env' (PagerDuty's integration key)");
    }
  }
  if (k == "file") {
    if (auto path = s.get("path")) {
      if (auto text = string(*path)) receiver.path = *text == "-" ? *text : resolve(*text);
    } else {
      at_key(item, "missing key 'path' (the file to append to, or - for standard error)");
    }
  }
  // Mark the remaining keys known: those that do not apply were reported above.
  for (const auto& [key, kinds] : kUses) (void)s.get(key);
  s.finish();
}

void Checker::read_routes(const Item& item, const EscalationConfig& escalation,
                          std::map<std::string, std::vector<std::string>>& routes) {
  auto pairs = entries(item);
  if (!pairs) return;
  const EscalationOptions& p = escalation.policy;
  const std::vector<std::string> channels = {p.team_channel, p.oncall_channel, p.emergency_channel};
  const std::vector<std::string> known(receiver_names_.begin(), receiver_names_.end());
  for (const auto& [channel, receivers] : *pairs) {
    if (std::find(channels.begin(), channels.end(), channel) == channels.end()) {
      at_key(receivers, unknown_name("channel", channel, channels) +
                            "; channels are set under escalation.channels");
    }
    auto names = list(receivers, "a list of receiver names");
    if (!names) continue;
    std::vector<std::string> route;
    for (const Item& n : *names) {
      auto name = string(n);
      if (!name) continue;
      if (!receiver_names_.contains(*name)) {
        at_value(n, known.empty() ? "unknown receiver " + in_quotes(*name) +
                                        " (no receivers are defined under escalation.receivers)"
                                  : unknown_name("receiver", *name, known));
      } else {
        route.push_back(*name);
      }
    }
    routes[channel] = std::move(route);
  }
}

void Checker::read_escalation(const Item& item, EscalationConfig& escalation) {
  Section s(*this, item);
  if (!s.ok()) return;
  EscalationOptions& p = escalation.policy;
  if (auto channels = s.get("channels")) {
    Section c(*this, *channels);
    if (c.ok()) {
      set_string(c, "team", p.team_channel);
      set_string(c, "oncall", p.oncall_channel);
      set_string(c, "emergency", p.emergency_channel);
      c.finish();
    }
  }
  if (auto slas = s.get("slas")) {
    Section c(*this, *slas);
    if (c.ok()) {
      set_duration(c, "medium", p.medium_sla, DurationRule::positive);
      set_duration(c, "high", p.high_sla, DurationRule::positive);
      set_duration(c, "critical", p.critical_sla, DurationRule::positive);
      c.finish();
    }
  }
  set_duration(s, "review_after", p.review_after, DurationRule::positive);
  set_string(s, "oncall_assignee", p.oncall_assignee);
  set_string(s, "war_room_url_template", p.war_room_url_template);
  set_strings(s, "fingerprint_labels", p.fingerprint_labels);
  set_bool(s, "reescalate", p.reescalate);
  set_integer(s, "max_tiers", p.max_tiers, {0, 100});
  if (auto receivers = s.get("receivers")) {
    if (auto elements = list(*receivers, "a list of receivers")) {
      std::map<std::string, int> first_line;
      for (const Item& element : *elements) {
        ReceiverConfig receiver;
        read_receiver(element, receiver);
        if (receiver.name.empty()) continue;
        auto [first, fresh] = first_line.emplace(receiver.name, line_of(element.mark));
        if (!fresh) {
          at_key(element, "duplicate receiver name " + in_quotes(receiver.name) +
                              " (first at line " + std::to_string(first->second) + ")");
          continue;
        }
        receiver_names_.insert(receiver.name);
        escalation.receivers.push_back(std::move(receiver));
      }
    }
  }
  if (auto routes = s.get("routes")) read_routes(*routes, escalation, escalation.routes);
  set_duration(s, "delivery_interval", escalation.delivery_interval, DurationRule::positive);
  set_duration(s, "sla_check_interval", escalation.sla_check_interval, DurationRule::positive);
  s.finish();
}

void Checker::read_supervision(const Item& item, SupervisionConfig& sup) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_duration(s, "restart_backoff_initial", sup.restart_backoff_initial, DurationRule::positive);
  set_duration(s, "restart_backoff_max", sup.restart_backoff_max, DurationRule::positive);
  set_duration(s, "restart_backoff_reset", sup.restart_backoff_reset, DurationRule::positive);
  set_integer(s, "intensity_max_restarts", sup.intensity_max_restarts, {1, 1'000'000});
  set_duration(s, "intensity_period", sup.intensity_period, DurationRule::positive);
  set_duration(s, "ready_timeout", sup.ready_timeout, DurationRule::positive);
  if (sup.restart_backoff_max < sup.restart_backoff_initial) {
    at_key(s.has("restart_backoff_max") ? *s.get("restart_backoff_max") : item,
           "restart_backoff_max (" + duration_text(sup.restart_backoff_max) +
               ") is below restart_backoff_initial (" + duration_text(sup.restart_backoff_initial) +
               ")");
  }
  s.finish();
}

}  // namespace mend::config_detail
