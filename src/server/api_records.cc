// The daemon's tickets and incidents API (docs/api.md): list, read, acknowledge and resolve.

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "api_codec.h"
#include "daemon_impl.h"

namespace mend::server_detail {

namespace net = boost::asio;
using nlohmann::json;

void DaemonCore::api_records(std::optional<RecordKind> kind, const std::string& status,
                             const std::shared_ptr<HttpResponder>& responder) {
  RecordFilter filter;
  filter.kind = kind;
  if (status == "active") {
    filter.active_only = true;
  } else if (!status.empty()) {
    filter.status = parse_record_status(status);
    if (!filter.status) {
      return responder->respond(error_response(
          400, ErrorType::validation_failed,
          "status must be open, acknowledged, resolved or active, not '" + status + "'"));
    }
  }
  net::post(*blocking_, [this, filter, responder] {
    try {
      json list = json::array();
      for (const EscalationRecord& r : store_->records(filter)) list.push_back(record_json(r));
      responder->respond(json_response(200, {{"records", list}}));
    } catch (const std::exception& e) {
      log("error", std::string("listing records: ") + e.what());
      responder->respond(error_response(500, ErrorType::database_error, e.what()));
    }
  });
}

void DaemonCore::api_record(std::optional<RecordKind> kind, const std::string& id_text,
                            const std::string& action, const HttpRequest& request,
                            const std::shared_ptr<HttpResponder>& responder) {
  auto id = parse_record_id(id_text);
  if (!id || (kind && id->second && *kind != *id->second)) {
    return responder->respond(error_response(
        404, ErrorType::validation_failed,
        "no such record '" + id_text + "' (ids look like TKT-3 or INC-7, or a number)"));
  }
  std::string who = "api";
  if (!action.empty()) {
    Result<json> body = parse_body(request.body);
    if (!body.ok()) {
      return responder->respond(
          error_response(400, ErrorType::validation_failed, body.error().message));
    }
    if (auto by = body->find("by"); by != body->end()) {
      if (!by->is_string() || by->get_ref<const std::string&>().empty() ||
          by->get_ref<const std::string&>().size() > kMaxActorBytes ||
          !is_printable_text(by->get_ref<const std::string&>())) {
        return responder->respond(error_response(400, ErrorType::validation_failed,
                                                 "'by' must be a non-empty string of at most " +
                                                     std::to_string(kMaxActorBytes) +
                                                     " bytes without control characters"));
      }
      who = by->get<std::string>();
    }
  }
  const std::int64_t number = id->first;
  const std::optional<RecordKind> wanted = kind ? kind : id->second;
  net::post(*blocking_, [this, number, wanted, action, who, id_text, responder] {
    try {
      record_action(number, wanted, action, who, id_text, responder);
    } catch (const std::exception& e) {
      log("error", "record " + id_text + ": " + e.what());
      responder->respond(error_response(500, ErrorType::database_error, e.what()));
    }
  });
}

void DaemonCore::record_action(std::int64_t number, std::optional<RecordKind> wanted,
                               const std::string& action, const std::string& who,
                               const std::string& id_text,
                               const std::shared_ptr<HttpResponder>& responder) {
  {
    std::optional<EscalationRecord> record = store_->record(number);
    if (!record || (wanted && record->kind != *wanted)) {
      return responder->respond(
          error_response(404, ErrorType::validation_failed, "no such record '" + id_text + "'"));
    }
    if (action.empty()) {
      json j = record_json(*record);
      json timeline = json::array();
      for (const TimelineEntry& t : store_->timeline(number)) {
        timeline.push_back(
            {{"at", iso(t.at)}, {"event", t.event}, {"actor", t.actor}, {"detail", t.detail}});
      }
      j["timeline"] = timeline;
      return responder->respond(json_response(200, j));
    }
    std::shared_ptr<Generation> g = current();
    Result<EscalationRecord> changed = action == "acknowledge"
                                           ? g->escalator->acknowledge(number, who)
                                           : g->escalator->resolve(number, who);
    if (!changed.ok()) {
      return responder->respond(error_response(409, changed.error().type, changed.error().message));
    }
    log("info", record->display_id() + " " + action + "d by " + who);
    const std::string kind = action == "acknowledge" ? "acknowledged" : "resolved";
    publish(kind, dump({{"kind", kind},
                        {"at", iso(clock_.wall_now())},
                        {"source", who},
                        {"record", changed->display_id()}}));
    responder->respond(json_response(200, record_json(*changed)));
  }
}
}  // namespace mend::server_detail
