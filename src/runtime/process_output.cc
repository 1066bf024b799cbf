// Output capture (process_output.h): a child's stdout or stderr pipe, read and split into lines.
#include "process_output.h"

#include <unistd.h>

#include <cerrno>

#include "mend/runtime/supervisor.h"

namespace mend::runtime_detail {

void OutputStream::emit(Outbox& out, std::string_view piece) {
  out.messages.emplace_back(LogLine{name, is_stderr, std::string(piece)});
}

void OutputStream::emit_line(Outbox& out, std::string_view line) {
  if (line.ends_with('\r')) line.remove_suffix(1);
  while (line.size() > kMaxLogLineBytes) {
    emit(out, line.substr(0, kMaxLogLineBytes));
    line.remove_prefix(kMaxLogLineBytes);
  }
  emit(out, line);
}

void OutputStream::take(Outbox& out, const char* data, std::size_t size) {
  pending.append(data, size);
  std::size_t begin = 0;
  for (;;) {
    const std::size_t newline = pending.find('\n', begin);
    if (newline == std::string::npos) break;
    emit_line(out, std::string_view(pending).substr(begin, newline - begin));
    begin = newline + 1;
  }
  // Without a newline in sight, cut only when more than a full line is waiting, so that the
  // pieces are the same however the reads split the output.
  while (pending.size() - begin > kMaxLogLineBytes) {
    emit(out, std::string_view(pending).substr(begin, kMaxLogLineBytes));
    begin += kMaxLogLineBytes;
  }
  pending.erase(0, begin);
}

void OutputStream::finish(Outbox& out) {
  if (!pending.empty()) emit_line(out, pending);
  pending.clear();
  at_eof = true;
  fd.reset();
}

void OutputStream::read_available(Outbox& out) {
  char buffer[64 * 1024];
  for (int round = 0; round < 16 && !at_eof; ++round) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n > 0) {
      take(out, buffer, static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      finish(out);
    }
  }
}

}  // namespace mend::runtime_detail
