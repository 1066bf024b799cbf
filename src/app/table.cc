#include "table.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

namespace mend::app {
namespace {

constexpr std::string_view kEllipsis = "...";
constexpr std::size_t kColumnGap = 2;
constexpr std::size_t kMinShrunkWidth = 6;

bool is_continuation_byte(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

}  // namespace

std::size_t display_width(std::string_view text) {
  std::size_t n = 0;
  for (char c : text) n += is_continuation_byte(c) ? 0 : 1;
  return n;
}

std::string truncate_to_width(std::string_view text, std::size_t width) {
  if (display_width(text) <= width) return std::string(text);
  if (width <= kEllipsis.size()) return std::string(kEllipsis.substr(0, width));
  // Keep (width - 3) code points, cutting before a lead byte so that no character is split.
  const std::size_t keep = width - kEllipsis.size();
  std::size_t points = 0;
  std::size_t end = 0;
  for (; end < text.size(); ++end) {
    if (!is_continuation_byte(text[end])) {
      if (points == keep) break;
      ++points;
    }
  }
  return std::string(text.substr(0, end)) + std::string(kEllipsis);
}

std::string printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) c = ' ';
  }
  return out;
}

std::size_t terminal_width() {
  winsize size{};
  if (::isatty(STDOUT_FILENO) && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 &&
      size.ws_col > 0) {
    return size.ws_col;
  }
  if (const char* columns = std::getenv("COLUMNS"); columns != nullptr) {
    std::size_t value = 0;
    std::string_view text(columns);
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc() && end == text.data() + text.size()) return value;
  }
  return 0;
}

TextTable::TextTable(std::vector<TableColumn> columns) : columns_(std::move(columns)) {}

void TextTable::add_row(std::vector<std::string> cells) {
  cells.resize(columns_.size());
  for (std::string& cell : cells) cell = printable(cell);
  rows_.push_back(std::move(cells));
}

std::string TextTable::render(std::size_t width) const {
  const std::size_t n = columns_.size();
  std::vector<std::size_t> widths(n);
  std::vector<std::size_t> floors(n);  // the narrowest a column may become
  for (std::size_t c = 0; c < n; ++c) {
    const TableColumn& column = columns_[c];
    std::size_t w = display_width(column.header);
    for (const auto& row : rows_) w = std::max(w, display_width(row[c]));
    if (column.max_width > 0)
      w = std::min(w, std::max(column.max_width, display_width(column.header)));
    widths[c] = w;
    floors[c] = column.shrinkable
                    ? std::min(w, std::max(display_width(column.header), kMinShrunkWidth))
                    : w;
  }
  if (width > 0 && n > 0) {
    auto total = [&] {
      std::size_t sum = kColumnGap * (n - 1);
      for (std::size_t w : widths) sum += w;
      return sum;
    };
    while (total() > width) {
      // The widest column that can still give a character up.
      std::size_t best = n;
      for (std::size_t c = 0; c < n; ++c) {
        if (widths[c] > floors[c] && (best == n || widths[c] > widths[best])) best = c;
      }
      if (best == n) break;  // nothing left to shrink: the lines stay wider than the terminal
      --widths[best];
    }
  }

  std::string out;
  auto emit_line = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t c = 0; c < n; ++c) {
      std::string cell = truncate_to_width(cells[c], widths[c]);
      const std::size_t pad = widths[c] - display_width(cell);
      if (c > 0) line.append(kColumnGap, ' ');
      if (columns_[c].align == Align::right) line.append(pad, ' ');
      line += cell;
      if (columns_[c].align == Align::left) line.append(pad, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  };
  std::vector<std::string> header;
  for (const TableColumn& column : columns_) header.push_back(printable(column.header));
  emit_line(header);
  for (const auto& row : rows_) emit_line(row);
  return out;
}

}  // namespace mend::app
