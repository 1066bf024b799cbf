// Fuzz target: everything a client can send to `mend serve`: the API port (HTTP framing, the
// router, path and query, JSON bodies, every handler) and the relay port (its own framing, the
// pass-through, its degraded answer). One daemon runs in this process, with one agent (a real
// HTTP server here) and a relay in front of it. The input's first byte picks the port, the rest is
// sent as it is; the write side is then shut, and the answer read until the daemon closes or
// 100 ms pass (an event stream, or a wait on a task, would keep it open longer). The daemon must
// answer or close, never crash.
#include <netinet/in.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "mend/runtime/http_server.h"
#include "mend/server/config.h"
#include "mend/server/daemon.h"

namespace {

struct Harness {
  std::unique_ptr<mend::HttpServer> agent;
  std::unique_ptr<mend::Daemon> daemon;
  unsigned short api_port = 0;
  unsigned short relay_port = 0;
  std::mutex mu;
  std::string relay_url;
};

Harness* harness = nullptr;

unsigned short port_of(const std::string& url) {
  return static_cast<unsigned short>(std::stoi(url.substr(url.rfind(':') + 1)));
}

void start() {
  // OpenSSL sets up its digests on first use and keeps them: done here, before any input, so that
  // libFuzzer's leak check does not take that for a leak of the input that came first.
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>("warm-up"), 7, digest);
  harness = new Harness;
  harness->agent =
      std::make_unique<mend::HttpServer>(mend::HttpServerOptions{}, [](const mend::HttpRequest& r) {
        if (r.target == "/health") return mend::HttpResponse{200, {}, R"({"status":"healthy"})"};
        if (r.body.size() % 3 == 0) {
          return mend::HttpResponse{503,
                                    {{"Content-Type", "application/json"}},
                                    R"({"error":{"type":"temporary_unavailable"}})"};
        }
        return mend::HttpResponse{
            200, {{"Content-Type", "application/json"}}, R"({"result":{"ok":true}})"};
      });
  if (!harness->agent->start().ok()) __builtin_trap();
  const std::string yaml =
      "server: {port: 0, token: fuzz-token, max_body_bytes: 64KiB, read_timeout: 1s,"
      " drain_timeout: 0s, max_wait_seconds: 1, task_deadline: 2s}\n"
      "store: {path: \":memory:\"}\n"
      "policies: {retry: {max_retries: 1, backoff: {base: 1ms, cap: 2ms}}, call_timeout: 1s}\n"
      "agents:\n"
      "  - name: worker\n"
      "    url: " +
      harness->agent->base_url() +
      "\n"
      "    capabilities: [code_review]\n"
      "relays:\n"
      "  - {agent: worker, port: 0}\n";
  mend::ConfigLoad load = mend::parse_config(yaml, "fuzz.yaml", "/nonexistent-fuzz-dir");
  if (!load.ok()) __builtin_trap();
  mend::DaemonOptions options;
  options.handle_signals = false;
  options.log = [](std::string_view, std::string_view line) {
    constexpr std::string_view kRelay = "relay for worker on ";
    if (line.rfind(kRelay, 0) == 0) {
      std::lock_guard lock(harness->mu);
      harness->relay_url = std::string(line.substr(kRelay.size()));
    }
  };
  harness->daemon = std::make_unique<mend::Daemon>(std::move(*load.config), options);
  if (!harness->daemon->start().ok()) __builtin_trap();
  harness->api_port = port_of(harness->daemon->base_url());
  {
    std::lock_guard lock(harness->mu);
    harness->relay_port = port_of(harness->relay_url);
  }
  std::atexit([] {
    harness->daemon->stop();
    harness->daemon->wait();
    harness->daemon.reset();
    harness->agent->stop();
    delete harness;
  });
}

void exchange(unsigned short port, const std::uint8_t* data, std::size_t size) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) ::close(fd);
    return;
  }
  std::size_t sent = 0;
  while (sent < size) {
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  char chunk[16384];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    if (::recv(fd, chunk, sizeof chunk, 0) <= 0) break;
  }
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (harness == nullptr) start();
  if (size == 0) return 0;
  exchange(data[0] % 2 == 0 ? harness->api_port : harness->relay_port, data + 1, size - 1);
  return 0;
}
