// Test support: a throwaway PostgreSQL server of the test program's own, started on first use and
// stopped when the program exits. It never touches a system service: initdb in a fresh temporary
// directory, its own free loopback port (listen_addresses=127.0.0.1) and its own unix socket
// directory, fsync off (nothing in it must survive). Each test takes a fresh database of it
// (create_database()), so tests do not see one another's rows.
//
//   mend::testing::PgServer& server = mend::testing::PgServer::shared();
//   if (!server.available()) GTEST_SKIP() << server.why_unavailable();
//   std::string url = server.create_database();     // postgresql://mend@127.0.0.1:PORT/mend_test_N
//
// The binaries are looked for in $MEND_PG_BIN, then /usr/lib/postgresql/{17..13}/bin (Debian's
// postgresql-NN package; `scripts/setup.sh test` installs postgresql-15). initdb refuses to run as
// root: a root test run starts the server as the `postgres` user (which Debian's package creates)
// through runuser. When no server can be started, available() is false and why_unavailable() says
// why: the PostgreSQL tests skip with that message, never pass silently.
//
// Thread-safety: shared() starts the server once, whichever thread asks first; create_database(),
// exec() and query_int() may be called from any thread.
#ifndef MEND_TESTS_SUPPORT_PG_SERVER_H_
#define MEND_TESTS_SUPPORT_PG_SERVER_H_

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>

namespace mend::testing {

class PgServer {
 public:
  static PgServer& shared() {
    static PgServer server;
    return server;
  }

  bool available() const { return port_ != 0; }
  const std::string& why_unavailable() const { return why_; }
  int port() const { return port_; }

  // The URL of database `dbname` on this server, as its superuser `mend` (trust authentication,
  // loopback only).
  std::string url(const std::string& dbname) const {
    return "postgresql://mend@127.0.0.1:" + std::to_string(port_) + "/" + dbname;
  }

  // A new, empty database; returns its URL.
  std::string create_database() {
    static std::atomic<int> next{0};
    const std::string name =
        "mend_test_" + std::to_string(::getpid()) + "_" + std::to_string(++next);
    exec("postgres", "CREATE DATABASE " + name);
    return url(name);
  }

  // Runs `sql` (no parameters; tests' own statements) in `dbname`; throws std::runtime_error on
  // an error.
  void exec(const std::string& dbname, const std::string& sql) const {
    PGconn* conn = connect(dbname);
    PGresult* r = PQexec(conn, sql.c_str());
    const ExecStatusType status = PQresultStatus(r);
    const std::string error = PQresultErrorMessage(r);
    PQclear(r);
    PQfinish(conn);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      throw std::runtime_error(sql + ": " + error);
    }
  }
  // The first column of the first row of `sql`'s answer, as a number (-1 for no row or NULL).
  std::int64_t query_int(const std::string& dbname, const std::string& sql) const {
    PGconn* conn = connect(dbname);
    PGresult* r = PQexec(conn, sql.c_str());
    std::int64_t value = -1;
    const bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    const std::string error = PQresultErrorMessage(r);
    if (ok && PQntuples(r) > 0 && PQgetisnull(r, 0, 0) == 0) {
      value = std::strtoll(PQgetvalue(r, 0, 0), nullptr, 10);
    }
    PQclear(r);
    PQfinish(conn);
    if (!ok) throw std::runtime_error(sql + ": " + error);
    return value;
  }

  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

 private:
  PgServer() {
    try {
      start();
    } catch (const std::exception& e) {
      why_ = std::string("no throwaway PostgreSQL server: ") + e.what();
      port_ = 0;
      stop();
    }
  }
  ~PgServer() { stop(); }

  PGconn* connect(const std::string& dbname) const {
    PGconn* conn = PQconnectdb(url(dbname).c_str());
    if (PQstatus(conn) != CONNECTION_OK) {
      const std::string error = PQerrorMessage(conn);
      PQfinish(conn);
      throw std::runtime_error("cannot connect to the test server: " + error);
    }
    return conn;
  }

  static std::string quoted(const std::string& s) { return "'" + s + "'"; }

  static std::string find_binaries() {
    namespace fs = std::filesystem;
    if (const char* dir = std::getenv("MEND_PG_BIN"); dir != nullptr && *dir != '\0') return dir;
    for (int version = 17; version >= 13; --version) {
      const std::string dir = "/usr/lib/postgresql/" + std::to_string(version) + "/bin";
      if (fs::exists(dir + "/initdb") && fs::exists(dir + "/pg_ctl")) return dir;
    }
    throw std::runtime_error(
        "initdb and pg_ctl not found (set MEND_PG_BIN, or run `scripts/setup.sh test`, which "
        "installs postgresql-15)");
  }

  // A loopback port nothing listens on now (the server takes it a moment later; start() retries
  // with another one should something else take it first).
  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
      if (fd >= 0) ::close(fd);
      throw std::runtime_error("cannot find a free loopback port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
  }

  // Runs `command` (its output sent to `log`); a failure says what the log's end says, since the
  // directory is removed with the server.
  void run(const std::string& command, const std::string& what, const std::string& log) {
    // The paths are this object's own temporary directory: no quoting beyond '...' is needed.
    if (std::system((as_user_ + command + " > " + quoted(log) + " 2>&1").c_str()) != 0) {
      std::ifstream in(log);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (text.size() > 600) text = "..." + text.substr(text.size() - 600);
      throw std::runtime_error(what + " failed: " + (text.empty() ? "(no output)" : text));
    }
  }

  void start() {
    bin_ = find_binaries();
    std::string pattern = (std::filesystem::temp_directory_path() / "mend-pg-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) {
        throw std::runtime_error(
            "running as root, and initdb refuses root: there is no 'postgres' user to run it as");
      }
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        throw std::runtime_error("cannot hand " + dir_ + " to the postgres user");
      }
      as_user_ = "cd / && runuser -u postgres -- ";  // cd: a directory it may read
    }
    const std::string data = dir_ + "/data";
    run(bin_ + "/initdb -D " + quoted(data) +
            " -U mend -A trust -E UTF8 --locale=C --no-sync --no-instructions",
        "initdb", dir_ + "/initdb.log");
    std::string last_error;
    for (int attempt = 0; attempt < 3; ++attempt) {
      const int port = free_port();
      const std::string options = "-p " + std::to_string(port) + " -k " + dir_ +
                                  " -c listen_addresses=127.0.0.1 -c fsync=off"
                                  " -c synchronous_commit=off -c full_page_writes=off"
                                  " -c max_connections=100 -c deadlock_timeout=100ms";
      try {
        run(bin_ + "/pg_ctl -D " + quoted(data) + " -l " + quoted(dir_ + "/server.log") +
                " -w -t 60 -o " + quoted(options) + " start",
            "pg_ctl start", dir_ + "/pg_ctl.log");
        started_ = true;
        port_ = port;
        PQfinish(connect("postgres"));
        return;
      } catch (const std::exception& e) {
        last_error = e.what();
        port_ = 0;
      }
    }
    throw std::runtime_error(last_error);
  }

  void stop() noexcept {
    if (started_) {
      (void)std::system((as_user_ + bin_ + "/pg_ctl -D " + quoted(dir_ + "/data") +
                         " -m immediate -w stop > /dev/null 2>&1")
                            .c_str());
      started_ = false;
    }
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
      dir_.clear();
    }
  }

  std::string bin_;
  std::string dir_;
  std::string as_user_;
  bool started_ = false;
  int port_ = 0;
  std::string why_;
};

}  // namespace mend::testing

#endif  // MEND_TESTS_SUPPORT_PG_SERVER_H_
