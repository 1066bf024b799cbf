// Internal to mend::runtime: what one turn of ProcessSupervisor's loop has to tell (output lines,
// process events, finished requests), collected under the supervisor's lock and delivered after.
// Shared by the supervisor's files (supervisor_impl.h) and output capture (process_output.h).
#ifndef MEND_SRC_RUNTIME_SUPERVISOR_OUTBOX_H_
#define MEND_SRC_RUNTIME_SUPERVISOR_OUTBOX_H_

#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/result.h"
#include "mend/runtime/supervisor.h"

namespace mend::runtime_detail {

// A request a caller waits for (add(), stop(), ...), completed by the loop.
struct Completion {
  bool done = false;
  Result<void> result;
};
using CompletionPtr = std::shared_ptr<Completion>;

// One line of a process's output (or a piece of a long one), for the LogSink.
struct LogLine {
  std::string name;
  bool is_stderr = false;
  std::string line;
};

// What one turn of the supervisor's loop has to tell, delivered after its lock is released, in
// order: output lines and events; then the callers waiting for their request are released.
struct Outbox {
  std::vector<std::variant<LogLine, ProcessEvent>> messages;
  std::vector<std::pair<CompletionPtr, Result<void>>> completions;

  void event(ProcessEvent::Kind kind, const std::string& name, int pid, std::string description,
             Duration delay = {}) {
    messages.emplace_back(ProcessEvent{kind, name, pid, std::move(description), delay});
  }
  void complete(const CompletionPtr& c, Result<void> result) {
    if (c) completions.emplace_back(c, std::move(result));
  }
};

}  // namespace mend::runtime_detail

#endif  // MEND_SRC_RUNTIME_SUPERVISOR_OUTBOX_H_
