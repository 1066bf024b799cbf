// File: src/app/operator_session.h (internal to the `mend` binary)
//
// What every operator command that talks to the daemon shares: Connection (its --address,
// --token, --json and --timeout), Session (one command's calls through ApiClient: it prints what
// went wrong and remembers the exit status for it) and the two ways a command ends, rendered()
// and print_answer().
//
//   Session s("agents", connection, out, err);
//   std::optional<ApiResponse> r = s.get("/v1/agents");
//   return print_answer(s, r, [&](const nlohmann::json& body) { ...; return exit_status::kOk; });
//
// Thread-safety: a Session serves one command on one thread.
#ifndef MEND_APP_OPERATOR_SESSION_H_
#define MEND_APP_OPERATOR_SESSION_H_

#include <chrono>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "api_client.h"
#include "operator_cli.h"

namespace mend::app {

// How to reach the daemon, and how to print. One per subcommand: CLI11 may fill the environment
// into every subcommand's options, so that a shared one could be overwritten.
struct Connection {
  std::string address = "http://127.0.0.1:7070";
  std::string token;
  bool json = false;
  double timeout_seconds = 10;

  std::chrono::milliseconds timeout(double extra_seconds = 0) const {
    return std::chrono::milliseconds(
        static_cast<std::int64_t>(std::llround((timeout_seconds + extra_seconds) * 1000)));
  }
};

// One command's calls: prints what went wrong and remembers the exit status for it.
class Session {
 public:
  Session(std::string command, const Connection& connection, std::ostream& out, std::ostream& err,
          double extra_timeout_seconds = 0)
      : command_(std::move(command)),
        connection_(connection),
        out_(out),
        err_(err),
        api_(connection.address, connection.token, connection.timeout(extra_timeout_seconds)) {}

  // The answer when mend answered 2xx with JSON; nullopt after printing the problem.
  std::optional<ApiResponse> get(const std::string& path) { return checked(api_.get(path)); }
  std::optional<ApiResponse> post(const std::string& path, const nlohmann::json& body,
                                  std::vector<std::pair<std::string, std::string>> headers = {}) {
    return checked(api_.post(path, body, std::move(headers)));
  }

  ApiClient& api() { return api_; }
  int status() const noexcept { return status_; }
  bool json_output() const noexcept { return connection_.json; }
  std::ostream& out() { return out_; }

  // "mend agents: <message>" on stderr; the status to exit with.
  int fail(const std::string& message, int status = exit_status::kFailed) {
    err_ << "mend " << command_ << ": " << message << "\n";
    status_ = status;
    return status;
  }
  int fail_for(const Error& error) {
    if (error.kind == "unreachable") {
      err_ << "mend: " << error.message << "\n";
      status_ = exit_status::kUnreachable;
      return status_;
    }
    if (error.status && *error.status == 401) {
      return fail(error.message + " -- give the daemon's token with --token or MEND_API_TOKEN",
                  exit_status::kUnauthorized);
    }
    return fail(error.message);
  }
  // Prints mend's JSON answer as it came, for --json.
  void print_json(const ApiResponse& r) {
    out_ << r.body;
    if (r.body.empty() || r.body.back() != '\n') out_ << '\n';
    out_.flush();
  }

 private:
  std::optional<ApiResponse> checked(Result<ApiResponse> r) {
    if (!r.ok()) {
      fail_for(r.error());
      return std::nullopt;
    }
    if (r->status == 401) {
      fail(std::string(connection_.token.empty() ? "the daemon wants a token and none was given"
                                                 : "the daemon refused the token") +
               " (401): " + r->error_message() +
               " -- give the daemon's token with --token or MEND_API_TOKEN",
           exit_status::kUnauthorized);
      return std::nullopt;
    }
    if (r->status < 200 || r->status >= 300) {
      fail(r->error_message() + " (HTTP " + std::to_string(r->status) + ")");
      return std::nullopt;
    }
    if (r->json().is_discarded()) {
      fail("unexpected answer from mend (HTTP " + std::to_string(r->status) + "): not JSON");
      return std::nullopt;
    }
    return std::move(*r);
  }

  std::string command_;
  const Connection& connection_;
  std::ostream& out_;
  std::ostream& err_;
  ApiClient api_;
  int status_ = exit_status::kOk;
};

// Runs `render`, turning an answer of an unexpected shape into a clear failure.
template <class Render>
int rendered(Session& session, Render&& render) {
  try {
    return render();
  } catch (const nlohmann::json::exception& e) {
    return session.fail(std::string("unexpected answer from mend: ") + e.what());
  }
}

// How most commands end: the failure already reported, mend's JSON as it came (--json), or
// the answer rendered for people by `render(body)`.
template <class Render>
int print_answer(Session& s, const std::optional<ApiResponse>& r, Render&& render) {
  if (!r) return s.status();
  if (s.json_output()) {
    s.print_json(*r);
    return exit_status::kOk;
  }
  const nlohmann::json body = r->json();
  return rendered(s, [&] { return render(body); });
}

}  // namespace mend::app

#endif  // MEND_APP_OPERATOR_SESSION_H_
