#include "event_hub.h"

#include <algorithm>
#include <utility>

namespace mend::server_detail {

std::string EventHub::frame(std::uint64_t id, const std::string& kind,
                            const std::string& body) const {
  std::string out;
  out.reserve(body.size() + kind.size() + 32);
  out += "id: ";
  out += std::to_string(id);
  out += "\nevent: ";
  out += kind;
  out += "\ndata: ";
  out += body;
  out += "\n\n";
  return out;
}

void EventHub::subscribe(std::shared_ptr<HttpResponder> responder, std::size_t replay) {
  if (!responder->start_stream(200, {{"Content-Type", "text/event-stream"},
                                     {"Cache-Control", "no-cache"},
                                     {"X-Accel-Buffering", "no"}})) {
    return;
  }
  MutexLock lock(mu_);
  // Sent under the lock so that no event published meanwhile overtakes the replay.
  responder->send(": mend event stream\n\n");
  std::size_t skip = history_.size() > replay ? history_.size() - replay : 0;
  for (std::size_t i = skip; i < history_.size(); ++i) responder->send(history_[i]);
  subscribers_.push_back(std::move(responder));
}

void EventHub::publish(const std::string& kind, const std::string& body) {
  MutexLock lock(mu_);
  std::string framed = frame(next_id_++, kind, body);
  std::erase_if(subscribers_,
                [&](const std::shared_ptr<HttpResponder>& r) { return !r->send(framed); });
  history_.push_back(std::move(framed));
  while (history_.size() > history_limit_) history_.pop_front();
}

void EventHub::heartbeat() {
  MutexLock lock(mu_);
  std::erase_if(subscribers_, [](const std::shared_ptr<HttpResponder>& r) {
    return !r->send(": keepalive\n\n");
  });
}

std::vector<std::shared_ptr<HttpResponder>> EventHub::close_all() {
  std::vector<std::shared_ptr<HttpResponder>> closing;
  {
    MutexLock lock(mu_);
    closing.swap(subscribers_);
  }
  for (const auto& r : closing) r->end_stream();
  return closing;
}

std::size_t EventHub::subscribers() const {
  MutexLock lock(mu_);
  return subscribers_.size();
}

std::uint64_t EventHub::published() const {
  MutexLock lock(mu_);
  return next_id_ - 1;
}

}  // namespace mend::server_detail
