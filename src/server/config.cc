// The configuration loader: walks the whole YAML tree once, fills a Config with what is valid and
// records a ConfigProblem for everything that is not, so that one run of `mend check-config`
// shows every mistake at once. Nothing here throws out of the public functions. This file: the
// whole document, and the server, store and tasks sections; the rest is in config_*.cc
// (config_checker.h).
#include "mend/server/config.h"

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

namespace mend {
namespace config_detail {

// --- server, store -------------------------------------------------------------------------------

void Checker::read_server(const Item& item, ServerConfig& server) {
  Section s(*this, item);
  if (!s.ok()) return;
  if (auto address = s.get("address")) read_address(*address, server.address);
  set_integer(s, "port", server.port, {0, 65535});
  auto token = s.get("token");
  auto token_env = s.get("token_env");
  if (token && token_env) {
    at_key(*token_env, "give either token or token_env, not both");
  } else if (token) {
    set_string(s, "token", server.token);
    server.token_inline = !server.token.empty();
  } else if (token_env) {
    if (auto value = from_environment(*token_env)) server.token = *value;
  }
  if (!server.token.empty() && std::any_of(server.token.begin(), server.token.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
      })) {
    at_value(token ? *token : *token_env,
             "the token must not contain spaces or control characters");
    server.token.clear();
  }
  set_size(s, "max_body_bytes", server.max_body_bytes, 1);
  set_duration(s, "read_timeout", server.read_timeout, DurationRule::positive);
  set_integer(s, "max_connections", server.max_connections, {1, 1'000'000});
  set_integer(s, "max_connections_per_client", server.max_connections_per_client, {0, 1'000'000});
  set_integer(s, "threads", server.threads, {1, 256});
  set_integer(s, "max_tasks_in_flight", server.max_tasks_in_flight, {1, 100'000'000});
  set_duration(s, "task_deadline", server.task_deadline, DurationRule::positive);
  set_duration(s, "drain_timeout", server.drain_timeout, DurationRule::non_negative);
  set_integer(s, "max_wait_seconds", server.max_wait_seconds, {0, 86400});
  s.finish();
}

bool Checker::read_address(const Item& item, std::string& out) {
  auto text = string(item);
  if (!text) return false;
  unsigned char buffer[sizeof(in6_addr)];
  if (inet_pton(AF_INET, text->c_str(), buffer) == 1 ||
      inet_pton(AF_INET6, text->c_str(), buffer) == 1) {
    out = *text;
    return true;
  }
  at_value(item,
           "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1 (not a host name), got " +
               in_quotes(*text));
  return false;
}

void Checker::read_relays(const Item& item, const ServerConfig& server,
                          std::vector<RelayConfig>& relays) {
  auto elements = list(item, "a list of relays");
  if (!elements) return;
  std::map<unsigned short, int> first_line;  // fixed ports, to catch two relays on one
  for (const Item& element : *elements) {
    Section s(*this, element, "a relay (a mapping)", false);
    if (!s.ok()) continue;
    RelayConfig relay;
    relay.address = server.address;
    if (auto agent = s.get("agent")) {
      if (auto name = string(*agent)) {
        if (agent_names_.contains(*name)) {
          relay.agent = *name;
        } else {
          const std::vector<std::string> known(agent_names_.begin(), agent_names_.end());
          at_value(*agent, unknown_name("agent", *name, known));
        }
      }
    } else {
      at_key(element, "missing key 'agent' (the agent the relay passes requests to)");
    }
    if (auto address = s.get("address")) read_address(*address, relay.address);
    if (!s.has("port")) at_key(element, "missing key 'port' (0 for any free port)");
    set_integer(s, "port", relay.port, {0, 65535});
    set_integer(s, "threads", relay.threads, {1, 256});
    set_size(s, "max_response_bytes", relay.max_response_bytes, 1);
    set_bool(s, "pass_admin", relay.pass_admin);
    s.finish();
    if (relay.port != 0) {
      if (relay.port == server.port) {
        at_value(*s.get("port"), "port " + std::to_string(relay.port) + " is server.port");
      }
      auto [first, fresh] = first_line.emplace(relay.port, line_of(element.mark));
      if (!fresh) {
        at_value(*s.get("port"), "port " + std::to_string(relay.port) +
                                     " is taken by the relay at line " +
                                     std::to_string(first->second));
      }
    }
    if (!relay.agent.empty()) relays.push_back(std::move(relay));
  }
}

void Checker::read_tasks(const Item& item, TasksConfig& tasks) {
  Section s(*this, item);
  if (!s.ok()) return;
  set_strings(s, "idempotent_types", tasks.idempotent_types);
  set_integer(s, "retained", tasks.retained, {1, 10'000'000});
  s.finish();
}

void Checker::read_store(const Item& item, StoreConfig& store) {
  Section s(*this, item);
  if (!s.ok()) return;
  const bool has_path = s.get("path").has_value();
  if (auto path = s.get("path")) {
    if (auto text = string(*path)) store.path = *text;
  }
  set_duration(s, "busy_timeout", store.busy_timeout, DurationRule::positive);
  if (auto url = s.get("url")) {
    if (auto text = string(*url)) {
      // The URL itself is not repeated: it may hold a password.
      if (!text->starts_with("postgresql://") && !text->starts_with("postgres://")) {
        at_value(*url, "expected a PostgreSQL URL (postgresql://user@host:port/dbname)");
      } else if (has_path) {
        at_key(*url, "set either store.path (SQLite) or store.url (PostgreSQL), not both");
      } else {
        store.url = *text;
      }
    }
  }
  s.finish();
}

// --- The whole file ---------------------------------------------------------------------------

Config Checker::run(const YAML::Node& root) {
  Config config;
  Item top{root, root.Mark(), ""};
  Section s(*this, top, "a mapping of sections (server, agents, ...)");
  if (!s.ok()) return config;
  if (auto item = s.get("server")) read_server(*item, config.server);
  if (auto item = s.get("store")) read_store(*item, config.store);
  if (config.store.path != ":memory:") config.store.path = resolve(config.store.path);
  if (auto item = s.get("tasks")) read_tasks(*item, config.tasks);
  if (auto item = s.get("policies")) {
    config.policies = read_policies(*item, PolicyConfig{});
  }
  if (auto item = s.get("classifier")) read_classifier(*item, config.classifier_rules);
  if (auto item = s.get("agents")) {
    read_agents(*item, config.policies, config.agents);
  } else {
    problem(YAML::Mark::null_mark(), "agents", "no agents configured (at least one is needed)");
  }
  if (auto item = s.get("fallback_chains")) read_chains(*item, config.fallback_chains);
  if (auto item = renamed(s, "default_fallback_chains", "seed_fallback_chains")) {
    if (auto v = boolean(*item)) config.default_fallback_chains = *v;
  }
  if (auto item = s.get("degradation")) read_degradation(*item, config.degradation);
  if (auto item = s.get("escalation")) read_escalation(*item, config.escalation);
  if (auto item = s.get("supervision")) read_supervision(*item, config.supervision);
  if (auto item = s.get("relays")) read_relays(*item, config.server, config.relays);
  s.finish();
  return config;
}

// Whether line `line` (0-based) is indented with a tab: yaml-cpp's message then says only
// "illegal map value" or the like.
bool tab_indented(std::string_view text, int line) {
  for (int i = 0; i < line; ++i) {
    std::size_t end = text.find('\n');
    if (end == std::string_view::npos) return false;
    text.remove_prefix(end + 1);
  }
  for (char c : text) {
    if (c == '\t') return true;
    if (c != ' ') return false;
  }
  return false;
}

ConfigLoad check(std::string_view yaml, const std::string& source_name, fs::path base_dir) {
  ConfigLoad load;
  auto whole_file = [&](int line, int column, std::string message) {
    load.problems.push_back({source_name, line, column, "", std::move(message)});
  };
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    Checker checker(source_name, std::move(base_dir));
    Config config = checker.run(root);
    config.source_path = source_name;
    load.problems = checker.take_problems();
    load.warnings = checker.take_warnings();
    if (load.problems.empty()) load.config = std::move(config);
  } catch (const YAML::DeepRecursion& e) {
    load.problems.clear();
    whole_file(line_of(e.mark), e.mark.is_null() ? 0 : e.mark.column + 1,
               "invalid YAML: nested " + std::to_string(e.depth()) + " levels deep or more");
  } catch (const YAML::ParserException& e) {
    load.problems.clear();
    std::string message = "invalid YAML: " + e.msg;
    if (!e.mark.is_null() && tab_indented(yaml, e.mark.line)) {
      message += " (YAML does not allow tabs for indentation)";
    }
    whole_file(line_of(e.mark), e.mark.is_null() ? 0 : e.mark.column + 1, std::move(message));
  } catch (const YAML::Exception& e) {
    load.problems.clear();
    whole_file(0, 0, "invalid YAML: " + e.msg);
  } catch (const std::exception& e) {
    load.problems.clear();
    whole_file(0, 0, std::string("cannot check the file: ") + e.what());
  }
  return load;
}

}  // namespace config_detail

using config_detail::check;
using config_detail::kMaxConfigBytes;
namespace fs = std::filesystem;

ConfigLoad parse_config(std::string_view yaml, std::string source_name, std::string base_dir) {
  try {
    fs::path base = base_dir.empty() ? fs::current_path() : fs::absolute(base_dir);
    return check(yaml, source_name, base);
  } catch (const std::exception& e) {
    ConfigLoad load;
    load.problems.push_back({source_name, 0, 0, "", std::string("cannot check: ") + e.what()});
    return load;
  }
}

ConfigLoad load_config_file(const std::string& path) {
  ConfigLoad load;
  auto unreadable = [&](const std::string& why) {
    load.problems.push_back({path, 0, 0, "", "cannot read the configuration: " + why});
    return load;
  };
  try {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return unreadable("it is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) return unreadable(std::strerror(errno));
    std::string text;
    char buffer[65536];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
      text.append(buffer, static_cast<std::size_t>(in.gcount()));
      if (text.size() > kMaxConfigBytes) {
        return unreadable("it is larger than " + std::to_string(kMaxConfigBytes >> 20) + " MiB");
      }
    }
    if (in.bad()) return unreadable(std::strerror(errno));
    ConfigLoad load_result = check(text, path, fs::absolute(path).parent_path());
    if (load_result.ok() && load_result.config->server.token_inline) {
      const fs::perms mode = fs::status(path, ec).permissions();
      if (!ec && (mode & (fs::perms::group_read | fs::perms::others_read)) != fs::perms::none) {
        load_result.warnings.push_back(
            path +
            ": others may read this file, and it holds server.token inline: chmod 600 "
            "it, or give the token by server.token_env");
      }
    }
    return load_result;
  } catch (const std::exception& e) {
    return unreadable(e.what());
  }
}

}  // namespace mend
