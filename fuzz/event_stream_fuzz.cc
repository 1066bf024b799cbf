// Fuzz target: the CLI's reader of the event stream (`mend events`, `mend demo`): the input is
// the whole answer a server sends to GET /v1/events (status line, headers, chunked or not, the
// server-sent events). It must call back per event, or fail with an error, never crash or hang.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "api_client.h"
#include "raw_server.h"

namespace {
mend::fuzzing::RawServer* server = nullptr;
mend::app::ApiClient* api = nullptr;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (server == nullptr) {
    // Made once, taken down at exit before the statics they use.
    server = new mend::fuzzing::RawServer;
    api = new mend::app::ApiClient(server->url(), "fuzz-token", std::chrono::milliseconds(300));
    std::atexit([] {
      delete api;
      delete server;
    });
  }
  server->answer_with(std::string(reinterpret_cast<const char*>(data), size));
  std::size_t events = 0;
  mend::Result<void> r = api->follow_events(
      "/v1/events",
      [&](const mend::app::ServerEvent& e) {
        events += e.data.size() + e.name.size() + e.id.size() > 0 ? 1 : 0;
        return events < 1000;
      },
      std::chrono::milliseconds(300));
  if (!r.ok()) (void)r.error().describe();
  return 0;
}
