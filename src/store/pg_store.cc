// PgStore's connections: opening the store, the pool, prepared statements, errors and
// transactions. The tables' methods are in pg_store_{records,outbox,tasks}.cc, the schema and its
// migrations in pg_store_schema.cc.
#include "mend/store/pg_store.h"

#include <libpq-fe.h>

#include <algorithm>
#include <string>
#include <utility>

#include "pg_store_connection.h"

namespace mend {
namespace pg_detail {
namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// How many bytes of a valid UTF-8 sequence start at text[i] (1 to 4), or 0 for an invalid one.
std::size_t utf8_sequence(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b = byte(i);
  if (b < 0x80) return b == 0 ? 0 : 1;
  std::size_t n = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) low = 0xA0;   // no overlong forms
    if (b == 0xED) high = 0x9F;  // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) low = 0x90;
    if (b == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  if (byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

std::string storable_text(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t n = utf8_sequence(text, i);
    if (n == 0) break;
    i += n;
  }
  if (i == text.size()) return std::string(text);
  std::string out(text.substr(0, i));
  while (i < text.size()) {
    const std::size_t n = utf8_sequence(text, i);
    if (n == 0) {
      out.append("\xEF\xBF\xBD");  // U+FFFD
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

Rows Connection::run(std::string_view sql, const Params& params, std::string_view doing) {
  const int count = static_cast<int>(params.values().size());
  auto it = prepared_.find(std::string(sql));
  if (it == prepared_.end()) {
    std::string name = "mend_" + std::to_string(prepared_.size() + 1);
    std::string text(sql);
    PGresult* r = PQprepare(conn_, name.c_str(), text.c_str(), count, nullptr);
    Rows owned(r);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) fail(r, "preparing " + text);
    it = prepared_.emplace(std::move(text), std::move(name)).first;
  }
  std::vector<const char*> values;
  values.reserve(params.values().size());
  for (const std::optional<std::string>& v : params.values()) {
    values.push_back(v ? v->c_str() : nullptr);
  }
  PGresult* r = PQexecPrepared(conn_, it->second.c_str(), count, values.data(), nullptr, nullptr,
                               /*resultFormat=*/0);
  const ExecStatusType status = PQresultStatus(r);
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) return Rows(r);
  Rows failed(r);  // freed when fail() throws
  fail(r, doing.empty() ? sql : doing);
}

void Connection::command(const char* sql, std::string_view doing) {
  PGresult* r = PQexec(conn_, sql);
  Rows owned(r);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) fail(r, doing.empty() ? sql : doing);
}

void Connection::fail(const PGresult* result, std::string_view doing) const {
  std::string state;
  std::string why;
  if (result != nullptr) {
    if (const char* s = PQresultErrorField(result, PG_DIAG_SQLSTATE)) state = s;
    if (const char* m = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY)) why = m;
  }
  if (why.empty()) why = trimmed(PQerrorMessage(conn_));
  if (why.empty()) why = "no answer from the server";
  if (!state.empty()) why.append(" (SQLSTATE ").append(state).append(")");
  const bool transient = !usable() || transient_sqlstate(state);
  throw QueryError(database_error(server_, doing, why, transient), state);
}

}  // namespace pg_detail

using pg_detail::Connection;

namespace {

void ignore_notice(void*, const char*) {}

// postgresql://user@host:port/dbname from what libpq makes of the URL: no password, ever.
std::string describe_server(const std::string& url) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (options == nullptr) {
    if (error != nullptr) PQfreemem(error);
    return "postgresql (an invalid connection URL)";
  }
  std::string user;
  std::string host;
  std::string port;
  std::string dbname;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view key = o->keyword;
    if (key == "user") user = o->val;
    if (key == "host" || (key == "hostaddr" && host.empty())) host = o->val;
    if (key == "port") port = o->val;
    if (key == "dbname") dbname = o->val;
  }
  PQconninfoFree(options);
  std::string out = "postgresql://";
  if (!user.empty()) out.append(user).append("@");
  out.append(host);
  if (!port.empty()) out.append(":").append(port);
  if (!dbname.empty()) out.append("/").append(dbname);
  return out;
}

}  // namespace

PgStore::PgStore(std::string conninfo, std::string server, PgOptions options)
    : conninfo_(std::move(conninfo)), server_(std::move(server)), options_([&] {
        options.pool_size = std::max<std::size_t>(1, options.pool_size);
        options.acquire_timeout = std::max(options.acquire_timeout, std::chrono::milliseconds(0));
        options.connect_timeout = std::max(options.connect_timeout, std::chrono::seconds(1));
        return options;
      }()) {}

PgStore::~PgStore() = default;

Result<std::unique_ptr<PgStore>> PgStore::open(const std::string& url, PgOptions options) {
  const std::string server = describe_server(url);
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string why = parse_error != nullptr ? pg_detail::trimmed(parse_error) : "out of memory";
    if (parse_error != nullptr) PQfreemem(parse_error);
    return pg_detail::database_error(server, "cannot open", why, false);
  }
  PQconninfoFree(parsed);
  std::unique_ptr<PgStore> store(new PgStore(url, server, options));
  try {
    store->migrate();
  } catch (const Exception& e) {
    return e.error();
  }
  return store;
}

std::unique_ptr<Connection> PgStore::connect() {
  const std::string timeout = std::to_string(options_.connect_timeout.count());
  // dbname (the URL) comes last, so that what the URL says overrides these defaults.
  const char* const keys[] = {"connect_timeout", "fallback_application_name", "client_encoding",
                              "dbname", nullptr};
  const char* const values[] = {timeout.c_str(), "mend", "UTF8", conninfo_.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr) {
    throw Exception(pg_detail::database_error(server_, "cannot connect", "out of memory", true));
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string why = pg_detail::trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    throw Exception(pg_detail::database_error(server_, "cannot connect", why, true));
  }
  PQsetNoticeProcessor(conn, ignore_notice, nullptr);
  return std::make_unique<Connection>(conn, server_);
}

PgStore::Lease PgStore::acquire() {
  {
    MutexLock lock(mu_);
    if (auto it = pinned_.find(std::this_thread::get_id()); it != pinned_.end()) {
      return Lease(*this, it->second);
    }
    const auto deadline = std::chrono::steady_clock::now() + options_.acquire_timeout;
    for (;;) {
      while (!idle_.empty()) {
        std::unique_ptr<Connection> c = std::move(idle_.back());
        idle_.pop_back();
        if (c->usable()) return Lease(*this, std::move(c));
        --open_;  // lost while idle: closed here, and another opened in its place below
      }
      if (open_ < options_.pool_size) {
        ++open_;  // taken now, connected below without the lock
        break;
      }
      if (freed_.wait_until(lock.native(), deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= options_.pool_size) {
        throw Exception(pg_detail::database_error(
            server_, "waiting for a connection",
            "all " + std::to_string(options_.pool_size) + " are busy after " +
                std::to_string(options_.acquire_timeout.count()) + " ms",
            true));
      }
    }
  }
  try {
    return Lease(*this, connect());
  } catch (...) {
    {
      MutexLock lock(mu_);
      --open_;
    }
    freed_.notify_one();
    throw;
  }
}

void PgStore::release(std::unique_ptr<Connection> connection) noexcept {
  // A connection lost, or left inside a transaction (a ROLLBACK that failed), is closed: the next
  // caller opens a fresh one.
  const bool keep = connection->usable() && connection->idle() && connection->depth == 0;
  if (!keep) connection.reset();
  {
    MutexLock lock(mu_);
    if (keep) {
      idle_.push_back(std::move(connection));
    } else {
      --open_;
    }
  }
  freed_.notify_one();
}

std::size_t PgStore::open_connections() const {
  MutexLock lock(mu_);
  return open_;
}

bool PgStore::is_transient(const Error& error) noexcept {
  return error.type == ErrorType::database_error && error.code == pg_detail::transient_code();
}

pg_detail::Rows PgStore::run(std::string_view sql) {
  return run(sql, pg_detail::Params());
}

pg_detail::Rows PgStore::run(std::string_view sql, const pg_detail::Params& params,
                             std::string_view doing) {
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    Lease lease = acquire();
    // Outside transaction() the statement is a transaction of its own: one that PostgreSQL rolled
    // back whole (serialization failure, deadlock) can run again.
    const bool alone = lease->depth == 0;
    try {
      return lease->run(sql, params, doing);
    } catch (const pg_detail::QueryError& e) {
      if (!alone || attempt >= kAttempts || !e.sqlstate().starts_with("40")) throw;
    }
  }
}

// --- Transactions ------------------------------------------------------------------------------

void PgStore::transaction(const std::function<void()>& body) {
  Lease lease = acquire();
  Connection& c = *lease;
  const bool outermost = c.depth == 0;
  c.command(outermost ? "BEGIN" : "SAVEPOINT mend_nested");
  // The outermost call pins its connection to this thread, so that the body's calls (and nested
  // transactions) run inside it; unpinned before the lease gives the connection back.
  struct Pin {
    PgStore* store = nullptr;
    ~Pin() {
      if (store == nullptr) return;
      MutexLock lock(store->mu_);
      store->pinned_.erase(std::this_thread::get_id());
    }
  } pin;
  if (outermost) {
    MutexLock lock(mu_);
    pinned_[std::this_thread::get_id()] = &c;
    pin.store = this;
  }
  ++c.depth;
  auto roll_back = [&]() noexcept {
    try {
      if (outermost) {
        c.command("ROLLBACK");
      } else {
        c.command("ROLLBACK TO SAVEPOINT mend_nested");
        c.command("RELEASE SAVEPOINT mend_nested");
      }
    } catch (...) {
      // The error that matters is the one propagating; a connection left unusable is closed
      // when the lease returns it.
    }
  };
  try {
    body();
  } catch (...) {
    --c.depth;
    roll_back();
    throw;
  }
  --c.depth;
  if (PQtransactionStatus(c.raw()) == PQTRANS_INERROR) {
    // A statement failed and the body went on (it caught the error): PostgreSQL has aborted the
    // transaction, and COMMIT would silently roll it back.
    roll_back();
    throw Exception(pg_detail::database_error(
        server_, outermost ? "committing" : "releasing a savepoint",
        "a statement failed inside the transaction, which was rolled back", false));
  }
  if (!outermost) {
    c.command("RELEASE SAVEPOINT mend_nested");
    return;
  }
  try {
    c.command("COMMIT");
  } catch (...) {
    if (c.in_transaction()) roll_back();
    throw;
  }
}

}  // namespace mend
