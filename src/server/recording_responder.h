// For the server's part tests: a client that only remembers what it was answered, so that a
// handler's or a registry's answers can be read without a socket. Not thread-safe.
#ifndef MEND_SERVER_RECORDING_RESPONDER_H_
#define MEND_SERVER_RECORDING_RESPONDER_H_

#include <string>
#include <utility>
#include <vector>

#include "mend/runtime/http_server.h"

namespace mend::server_detail {

class RecordingResponder final : public HttpResponder {
 public:
  explicit RecordingResponder(std::string target = "GET /v1/tasks/x")
      : target_(std::move(target)) {}
  void respond(HttpResponse response) override { answers.push_back(std::move(response)); }
  bool start_stream(int, std::vector<HttpHeader>) override { return false; }
  bool send(std::string) override { return false; }
  void end_stream() override {}
  void abort() override {}
  bool closed() const override { return !answers.empty(); }
  const std::string& target() const override { return target_; }
  std::vector<HttpResponse> answers;

 private:
  std::string target_;
};

}  // namespace mend::server_detail

#endif  // MEND_SERVER_RECORDING_RESPONDER_H_
