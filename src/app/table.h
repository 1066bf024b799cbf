// File: src/app/table.h (internal to the `mend` binary)
//
// TextTable: the plain-text tables of the operator's commands (`mend agents`, `mend tickets`,
// ...). Columns are left- or right-aligned, separated by two spaces, under an upper-case header;
// lines carry no trailing blanks. A column may have a maximum width, and columns marked
// shrinkable give up width, widest first, when the table must fit a terminal. A cell cut short
// ends in "...". Widths count UTF-8 code points (one column each), and control characters in
// cells (newlines, tabs, escapes) are shown as spaces so that a record's title cannot break the
// table or drive the terminal.
//
//   mend::app::TextTable table({{"NAME"}, {"CALLS", mend::app::Align::right},
//                               {"TITLE", mend::app::Align::left, 60, /*shrinkable=*/true}});
//   table.add_row({"reviewer", "120", "processing_failed on reviewer"});
//   std::cout << table.render(terminal_width());  // 0: as wide as the cells need
//
// Thread-safety: a TextTable is a value; distinct tables may be used from distinct threads.
#ifndef MEND_APP_TABLE_H_
#define MEND_APP_TABLE_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mend::app {

enum class Align { left, right };

struct TableColumn {
  std::string header;
  Align align = Align::left;
  std::size_t max_width = 0;  // 0: no maximum
  bool shrinkable = false;    // may be narrowed further to fit render()'s width
};

class TextTable {
 public:
  explicit TextTable(std::vector<TableColumn> columns);

  // A row with fewer cells than columns gets blanks for the rest; extra cells are dropped.
  void add_row(std::vector<std::string> cells);
  std::size_t row_count() const noexcept { return rows_.size(); }

  // The header line and one line per row, each ending in '\n'. `width` > 0: shrinkable columns
  // are narrowed (widest first, never below their header's width or 6) until a line fits, when
  // they can.
  std::string render(std::size_t width = 0) const;

 private:
  std::vector<TableColumn> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// Code points in `text` (its width on a terminal, near enough: one column each).
std::size_t display_width(std::string_view text);
// `text` cut to at most `width` code points; a cut text ends in "..." (within the width).
std::string truncate_to_width(std::string_view text, std::size_t width);
// `text` with every control character (newline, tab, escape, ...) replaced by a space.
std::string printable(std::string_view text);
// The width of the terminal on stdout: its size when stdout is a terminal, else $COLUMNS when
// set, else 0 (no limit: output piped to a file or another program is not cut).
std::size_t terminal_width();

}  // namespace mend::app

#endif  // MEND_APP_TABLE_H_
