// File: src/store/pg_store_connection.h (internal)
//
// What the pg_store*.cc sources share: one libpq connection with its prepared statements
// (pg_detail::Connection), a query's result (pg_detail::Rows), the parameters bound to a statement
// (pg_detail::Params), the codecs between mend's values and the columns (as SqliteStore's: times
// as BIGINT milliseconds, enums by name), and the Error the store reports.
#ifndef MEND_SRC_STORE_PG_STORE_CONNECTION_H_
#define MEND_SRC_STORE_PG_STORE_CONNECTION_H_

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mend/store/pg_store.h"
#include "store_detail.h"

namespace mend::pg_detail {

// --- Errors ------------------------------------------------------------------------------------

// SQLSTATEs (and their classes) worth retrying at once: the transaction was rolled back whole, or
// the server is going away or full, or the connection is gone.
inline bool transient_sqlstate(std::string_view state) {
  return state.starts_with("40") ||  // transaction rollback: serialization failure, deadlock
         state.starts_with("08") ||  // connection exception
         state == "57P01" || state == "57P02" || state == "57P03" ||  // shutdown, cannot connect
         state == "53300";                                            // too many connections
}

// How PgStore::is_transient() recognises its own transient errors: database_error with this code.
inline std::error_code transient_code() {
  return std::make_error_code(std::errc::resource_unavailable_try_again);
}

inline Error database_error(const std::string& server, std::string_view doing, std::string_view why,
                            bool transient) {
  std::string message = "mend store '";
  message.append(server).append("': ").append(doing).append(": ").append(why);
  if (transient) message.append(" (transient)");
  Error e = Error::classified_as(ErrorType::database_error, Severity::high, std::move(message));
  e.kind = "database";
  if (transient) e.code = transient_code();
  return e;
}

// What a failed statement throws: a mend::Exception (as every store error), with the SQLSTATE
// ("" when the connection failed before the server answered).
class QueryError : public Exception {
 public:
  QueryError(Error error, std::string sqlstate)
      : Exception(std::move(error)), sqlstate_(std::move(sqlstate)) {}
  const std::string& sqlstate() const noexcept { return sqlstate_; }

 private:
  std::string sqlstate_;
};

// --- Codecs ------------------------------------------------------------------------------------

// Times as milliseconds, counts and limits, enums by name: as SqliteStore stores them.
using store_detail::clamp_to_int;
using store_detail::from_millis;
using store_detail::limit_value;
using store_detail::parse_or;
using store_detail::to_millis;

// PostgreSQL's text is UTF-8 without NUL: every byte that is not part of a valid UTF-8 sequence,
// and every NUL, becomes U+FFFD. Valid text (nearly always) is returned unchanged.
std::string storable_text(std::string_view text);

// The parameters of one statement, in text format ($1 is the first). NULL is std::nullopt.
class Params {
 public:
  Params& text(std::string_view v) {
    values_.emplace_back(storable_text(v));
    return *this;
  }
  Params& integer(std::int64_t v) {
    values_.emplace_back(std::to_string(v));
    return *this;
  }
  Params& boolean(bool v) {
    values_.emplace_back(v ? "true" : "false");
    return *this;
  }
  Params& time(WallTime t) { return integer(to_millis(t)); }
  Params& time(const std::optional<WallTime>& t) { return t ? time(*t) : null(); }
  // Ids where 0 means "none" are NULL, so that foreign keys hold.
  Params& id_or_null(std::int64_t id) { return id != 0 ? integer(id) : null(); }
  Params& text_or_null(const std::optional<std::string>& v) { return v ? text(*v) : null(); }
  Params& null() {
    values_.emplace_back(std::nullopt);
    return *this;
  }
  const std::vector<std::optional<std::string>>& values() const { return values_; }

 private:
  std::vector<std::optional<std::string>> values_;
};

// A query's result: its rows, read by column index.
class Rows {
 public:
  explicit Rows(PGresult* result) : result_(result, &PQclear) {}
  int size() const { return PQntuples(result_.get()); }
  bool empty() const { return size() == 0; }
  // Rows a command changed (UPDATE, DELETE, INSERT).
  std::int64_t affected() const {
    const char* n = PQcmdTuples(result_.get());
    return n != nullptr && *n != '\0' ? std::stoll(n) : 0;
  }
  bool is_null(int row, int column) const { return PQgetisnull(result_.get(), row, column) != 0; }
  std::string text_at(int row, int column) const {
    if (is_null(row, column)) return {};
    return std::string(PQgetvalue(result_.get(), row, column),
                       static_cast<std::size_t>(PQgetlength(result_.get(), row, column)));
  }
  // A number column; NULL (or anything unparseable) reads as 0.
  std::int64_t int_at(int row, int column) const {
    if (is_null(row, column)) return 0;
    const char* v = PQgetvalue(result_.get(), row, column);
    char* end = nullptr;
    const long long n = std::strtoll(v, &end, 10);
    return end != v ? static_cast<std::int64_t>(n) : 0;
  }
  bool bool_at(int row, int column) const {
    return !is_null(row, column) && PQgetvalue(result_.get(), row, column)[0] == 't';
  }
  WallTime time_at(int row, int column) const { return from_millis(int_at(row, column)); }
  std::optional<WallTime> optional_time_at(int row, int column) const {
    if (is_null(row, column)) return std::nullopt;
    return time_at(row, column);
  }

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> result_;
};

// One connection to the server, with the statements prepared on it so far. Used by one thread at
// a time (the pool hands it out).
class Connection {
 public:
  Connection(PGconn* conn, const std::string& server) : conn_(conn), server_(server) {}
  ~Connection() { PQfinish(conn_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs `sql` with `params`, preparing it on this connection the first time (the SQL's text
  // keys the cache of prepared statements). Throws Exception naming `doing`
  // (or the SQL) on an error.
  Rows run(std::string_view sql, const Params& params = {}, std::string_view doing = {});
  // Commands without parameters that are not worth preparing (BEGIN, COMMIT, SAVEPOINT, a
  // migration's DDL). An error names `doing`, or else the SQL.
  void command(const char* sql, std::string_view doing = {});

  // False once the connection is lost: the pool closes it instead of handing it out again.
  bool usable() const { return PQstatus(conn_) == CONNECTION_OK; }
  bool idle() const { return PQtransactionStatus(conn_) == PQTRANS_IDLE; }
  bool in_transaction() const {
    const PGTransactionStatusType s = PQtransactionStatus(conn_);
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR;
  }
  PGconn* raw() const { return conn_; }

  int depth = 0;  // transaction() calls open on this connection

 private:
  [[noreturn]] void fail(const PGresult* result, std::string_view doing) const;

  PGconn* const conn_;
  const std::string& server_;
  std::unordered_map<std::string, std::string> prepared_;  // SQL -> statement name
};

}  // namespace mend::pg_detail

namespace mend {

// A connection borrowed from the pool for one call (returned when the Lease goes), or the one a
// running transaction() pinned to this thread (left pinned).
class PgStore::Lease {
 public:
  Lease(PgStore& store, std::unique_ptr<pg_detail::Connection> owned)
      : store_(store), owned_(std::move(owned)), connection_(owned_.get()) {}
  Lease(PgStore& store, pg_detail::Connection* pinned) : store_(store), connection_(pinned) {}
  ~Lease() {
    if (owned_) store_.release(std::move(owned_));
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  pg_detail::Connection& operator*() const { return *connection_; }
  pg_detail::Connection* operator->() const { return connection_; }

 private:
  PgStore& store_;
  std::unique_ptr<pg_detail::Connection> owned_;
  pg_detail::Connection* const connection_;
};

}  // namespace mend

#endif  // MEND_SRC_STORE_PG_STORE_CONNECTION_H_
