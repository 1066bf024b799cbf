// File: src/app/api_client.h (internal to the `mend` binary)
//
// ApiClient: the synchronous HTTP client the operator commands and `mend demo` use to talk to a
// running `mend serve` (docs/api.md). It owns one I/O thread and a pooled mend::HttpClient, adds
// the bearer token to every request when one is set, and turns "could not connect" into one
// message an operator can act on.
//
//   mend::app::ApiClient api("http://127.0.0.1:7070", token);
//   mend::Result<mend::app::ApiResponse> r = api.get("/v1/agents");
//   if (!r.ok()) { std::cerr << r.error().message << "\n"; return 3; }  // unreachable
//   if (r->status != 200) ...                                            // mend's error JSON
//   nlohmann::json agents = r->json();
//
// follow_events() reads GET /v1/events as a stream (server-sent events) and calls back once per
// event until the callback returns false, the stream ends or the time limit passes.
//
// Thread-safety: get(), post() and follow_events() may be called from several threads at once.
// follow_events()'s callbacks share the client's one I/O thread: one that blocks holds up the
// other calls meanwhile.
#ifndef MEND_APP_API_CLIENT_H_
#define MEND_APP_API_CLIENT_H_

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mend/core/result.h"

namespace mend::app {

struct ApiResponse {
  int status = 0;
  std::string body;
  std::string content_type;
  // The body as JSON; a value of type discarded when the body is not JSON.
  nlohmann::json json() const;
  // mend's error message from {"error": {"message": ...}}, or the body itself.
  std::string error_message() const;
};

// One server-sent event.
struct ServerEvent {
  std::string id;
  std::string name;  // the `event:` field ("message" when absent)
  std::string data;  // the `data:` lines joined by '\n'
};

class ApiClient {
 public:
  // `base_url`: "http://127.0.0.1:7070" (a trailing '/' is ignored). `token`: sent as
  // "Authorization: Bearer <token>" when not empty. `timeout` bounds each get()/post().
  ApiClient(std::string base_url, std::string token,
            std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Errors (kind "unreachable"): the daemon could not be reached or did not answer in time; the
  // message names the address and says what to check. An HTTP error status is not an error.
  Result<ApiResponse> get(std::string_view path_and_query);
  Result<ApiResponse> post(std::string_view path_and_query, const nlohmann::json& body,
                           std::vector<std::pair<std::string, std::string>> headers = {});

  // Streams `path_and_query` (GET /v1/events...) and calls `on_event` for each event, until it
  // returns false, the server ends the stream, or `limit` passes (nullopt: no limit); each of
  // these is a success. Errors: kind "unreachable" when the daemon cannot be reached, does not
  // answer within the client's timeout, or the stream goes silent (no byte, not even the 15 s
  // keep-alive comment) for 60 s; kind "http" (status set, message from mend's error JSON) for
  // an answer other than 200; kind "protocol" for an answer that is not an event stream, or a
  // malformed one. http or https. The stream is mend::HttpClient::request_stream_sync() on the
  // client's I/O thread, every wait under a deadline so that it can never outlive `limit`:
  // `on_event` is called on that thread while the calling thread waits, and what it throws is
  // thrown here.
  Result<void> follow_events(std::string_view path_and_query,
                             const std::function<bool(const ServerEvent&)>& on_event,
                             std::optional<std::chrono::milliseconds> limit = std::nullopt);

  const std::string& base_url() const noexcept { return base_url_; }

 private:
  struct Impl;
  std::string base_url_;
  std::string token_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mend::app

#endif  // MEND_APP_API_CLIENT_H_
