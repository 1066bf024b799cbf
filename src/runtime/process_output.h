// Internal to mend::runtime: output capture for ProcessSupervisor (mend/runtime/supervisor.h): one
// pipe from a child, read without blocking and split into the lines the LogSink is handed. Defined
// in process_output.cc; the supervisor's streams (supervisor_impl.h) are these.
#ifndef MEND_SRC_RUNTIME_PROCESS_OUTPUT_H_
#define MEND_SRC_RUNTIME_PROCESS_OUTPUT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mend/core/clock.h"
#include "process_spawn.h"
#include "supervisor_outbox.h"

namespace mend::runtime_detail {

// One pipe from a child (stdout or stderr), split into lines.
struct OutputStream {
  std::string name;
  bool is_stderr = false;
  std::uint64_t instance = 0;  // which start of the process wrote it
  Fd fd;
  std::string pending;  // bytes after the last complete line
  std::optional<TimePoint> close_by;
  bool at_eof = false;

  void emit(Outbox& out, std::string_view piece);
  // A whole line (its newline, or EOF, seen): without a trailing CR, in pieces of at most
  // kMaxLogLineBytes. A line of exactly that length stays whole.
  void emit_line(Outbox& out, std::string_view line);
  void take(Outbox& out, const char* data, std::size_t size);
  void finish(Outbox& out);
  // Reads what is there now (a bounded amount, so that one chatty process cannot starve the
  // others); at EOF or on an error, passes on the last partial line and closes.
  void read_available(Outbox& out);
};

}  // namespace mend::runtime_detail

#endif  // MEND_SRC_RUNTIME_PROCESS_OUTPUT_H_
