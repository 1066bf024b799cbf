// Fuzz target: mend's HTTP client reading an answer (status line, headers, Content-Length or
// chunked framing, size limits). The input is the whole answer a server sends; the client must
// return a response or an error, never crash or hang past its timeout.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mend/runtime/http_client.h"
#include "mend_test/io_loop.h"
#include "raw_server.h"

namespace {

struct Harness {
  mend::fuzzing::RawServer server;
  mend::testing::IoLoop io;
  mend::HttpClient client{io.executor(), [] {
                            mend::HttpClientOptions o;
                            o.max_response_bytes = 1 << 20;
                            return o;
                          }()};
};

Harness* harness = nullptr;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (harness == nullptr) {
    // Made once: the server, the I/O thread and the client's pool serve every input. Taken down
    // at exit, before the statics they use.
    harness = new Harness;
    std::atexit([] { delete harness; });
  }
  harness->server.answer_with(std::string(reinterpret_cast<const char*>(data), size));
  mend::Result<mend::HttpResponse> r = harness->client.request_sync(
      "GET", harness->server.url() + "/health", {}, "", std::chrono::milliseconds(300));
  if (r.ok()) {
    (void)r->header("Retry-After");
  } else {
    (void)r.error().describe();
  }
  return 0;
}
