// File: src/store/sqlite_store_statement.h (internal)
//
// What the sqlite_store*.cc sources share: SqliteStore::Statement, the wrapper around a cached
// prepared statement; the codecs between mend's values and the file's columns (times as
// milliseconds, counts and limits as INTEGER, enums by name); and the Error the store reports.
#ifndef MEND_SRC_STORE_SQLITE_STORE_STATEMENT_H_
#define MEND_SRC_STORE_SQLITE_STORE_STATEMENT_H_

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "mend/store/sqlite_store.h"
#include "store_detail.h"

namespace mend::sqlite_detail {

// The codecs both stores share (store_detail.h): times as whole milliseconds in the file, enough
// for SLAs and retries and readable with SQLite's own date functions
// (datetime(created_at / 1000, 'unixepoch')).
using store_detail::clamp_to_int;
using store_detail::from_millis;
using store_detail::limit_value;
using store_detail::parse_or;
using store_detail::to_millis;

inline WallTime truncated(WallTime t) {
  return from_millis(to_millis(t));
}

inline Error database_error(const std::string& path, std::string_view doing, std::string_view why) {
  std::string message = "mend store '";
  message.append(path).append("': ").append(doing).append(": ").append(why);
  Error e = Error::classified_as(ErrorType::database_error, Severity::high, std::move(message));
  e.kind = "database";
  return e;
}

}  // namespace mend::sqlite_detail

namespace mend {

// Statements are prepared once per connection and cached: open_or_touch runs three of them for
// every escalation, and compiling SQL (parsing, planning) costs more than running these small
// indexed statements. A Statement borrows a cached one and resets it (and its bindings) when it
// goes out of scope, so that it holds no read snapshot open and is ready for the next caller.
// The same SQL must not be used by two Statements at once (no method nests them).
class SqliteStore::Statement {
 public:
  Statement(const SqliteStore& store, sqlite3_stmt* stmt) : store_(store), stmt_(stmt) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  void bind_int(int index, std::int64_t value) {
    check_bind(sqlite3_bind_int64(stmt_, index, value));
  }
  void bind_text(int index, std::string_view value) {
    if (value.size() > static_cast<std::size_t>(INT_MAX)) {
      throw Exception(
          sqlite_detail::database_error(store_.path_, "binding a value", "string too large"));
    }
    check_bind(sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                                 SQLITE_TRANSIENT));
  }
  void bind_time(int index, WallTime value) { bind_int(index, sqlite_detail::to_millis(value)); }
  void bind_time(int index, const std::optional<WallTime>& value) {
    if (value) {
      bind_time(index, *value);
    } else {
      check_bind(sqlite3_bind_null(stmt_, index));
    }
  }
  void bind_null(int index) { check_bind(sqlite3_bind_null(stmt_, index)); }
  // Ids where 0 means "none" are NULL in the file, so that foreign keys hold.
  void bind_id_or_null(int index, std::int64_t id) {
    if (id != 0) {
      bind_int(index, id);
    } else {
      check_bind(sqlite3_bind_null(stmt_, index));
    }
  }

  // True with a row to read, false when done. An error names `doing`, or else the SQL.
  bool step(std::string_view doing = {}) {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    store_.fail(doing.empty() ? sql() : doing);
  }
  // For statements that return no rows.
  void run() {
    while (step()) {
    }
  }

  std::int64_t int_at(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string text_at(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    if (text == nullptr) return {};
    const int bytes = sqlite3_column_bytes(stmt_, column);
    return std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(bytes));
  }
  WallTime time_at(int column) const { return sqlite_detail::from_millis(int_at(column)); }
  std::optional<WallTime> optional_time_at(int column) const {
    if (sqlite3_column_type(stmt_, column) == SQLITE_NULL) return std::nullopt;
    return time_at(column);
  }

 private:
  std::string_view sql() const { return sqlite3_sql(stmt_); }
  void check_bind(int rc) {
    if (rc != SQLITE_OK) store_.fail("binding a parameter");
  }

  const SqliteStore& store_;
  sqlite3_stmt* const stmt_;
};

}  // namespace mend

#endif  // MEND_SRC_STORE_SQLITE_STORE_STATEMENT_H_
