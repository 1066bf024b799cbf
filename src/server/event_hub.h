// Internal to mend::server: fans the daemon's events out to the clients of GET /v1/events as
// server-sent events, and keeps the last few for late subscribers that ask for them.
//
// Thread-safety: every member may be called from any thread. publish() never blocks on a
// client: a client too slow to follow is dropped by its responder (HttpResponder::send).
#ifndef MEND_SERVER_EVENT_HUB_H_
#define MEND_SERVER_EVENT_HUB_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "mend/core/thread_annotations.h"
#include "mend/runtime/http_server.h"

namespace mend::server_detail {

class EventHub {
 public:
  explicit EventHub(std::size_t history = 256) : history_limit_(history) {}

  // Starts the stream on `responder` and sends the last `replay` events first.
  void subscribe(std::shared_ptr<HttpResponder> responder, std::size_t replay);
  // `kind` names the SSE event; `body` is one line of JSON (no newlines).
  void publish(const std::string& kind, const std::string& body);
  // A comment line that keeps idle connections (and proxies) from timing out; drops the
  // subscribers that have gone.
  void heartbeat();
  // Ends every stream (shutdown) and returns them, for the caller to wait until each has sent its
  // last chunk.
  std::vector<std::shared_ptr<HttpResponder>> close_all();

  std::size_t subscribers() const;
  std::uint64_t published() const;

 private:
  std::string frame(std::uint64_t id, const std::string& kind, const std::string& body) const;

  const std::size_t history_limit_;
  mutable Mutex mu_;
  std::vector<std::shared_ptr<HttpResponder>> subscribers_ MEND_GUARDED_BY(mu_);
  std::deque<std::string> history_ MEND_GUARDED_BY(mu_);  // framed
  std::uint64_t next_id_ MEND_GUARDED_BY(mu_) = 1;
};

}  // namespace mend::server_detail

#endif  // MEND_SERVER_EVENT_HUB_H_
