// Fuzz target: what mend reads from agents. The input is an agent's answer: its first line the
// status and a Retry-After value ("503 2.5"), the rest its body. It goes through the task
// answer's interpretation, the classifier (with the agent's context), and the /health answer's.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mend/core/classifier.h"
#include "mend/core/health.h"
#include "mend/runtime/agent_client.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string head = input.substr(0, newline);
  const std::string body = newline == std::string::npos ? "" : input.substr(newline + 1);
  mend::HttpResponse response;
  response.status = static_cast<int>(std::strtol(head.c_str(), nullptr, 10) % 1000);
  if (const std::size_t space = head.find(' '); space != std::string::npos) {
    response.headers.push_back({"Retry-After", head.substr(space + 1)});
  }
  response.headers.push_back({"Content-Type", "application/json"});
  response.body = body;

  static const mend::Classifier classifier;
  mend::Result<std::string> answer = mend::interpret_task_response(response, "fuzz-agent");
  if (!answer.ok()) {
    mend::Error error = answer.error();
    classifier.classify_in_place(error, mend::Context{{"agent", "fuzz-agent"}});
    (void)error.describe();
  }
  mend::ProbeResult probe = mend::interpret_health_response(response);
  (void)mend::observed_health(probe);
  (void)mend::json_nesting_within(body);
  return 0;
}
