// `mend serve` on PostgreSQL (`store: {url: postgresql://...}`): the store the daemon writes its
// tasks, tickets and timeline to is the test's throwaway server (mend_test/pg_server.h), and a
// daemon started again on the same database finds them. Runs in the program's one-process group
// (tests/CMakeLists.txt: ONE_PROCESS), so the server starts once.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <string>

#include "mend_test/pg_server.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using ::testing::HasSubstr;

class ServeOnPostgresTest : public ServeTest {
 protected:
  void SetUp() override {
    if (!PgServer::shared().available()) {
      GTEST_SKIP() << "PostgreSQL store not tested: " << PgServer::shared().why_unavailable();
    }
    url_ = PgServer::shared().create_database();
    dbname_ = url_.substr(url_.rfind('/') + 1);
  }

  // The fixture's configuration with the store on PostgreSQL instead of the SQLite file.
  std::string pg_config(const std::string& agents) const {
    std::string yaml = config_yaml(agents);
    const std::string sqlite = "store:\n  path: mend.db\n";
    const std::size_t at = yaml.find(sqlite);
    EXPECT_NE(at, std::string::npos);
    if (at != std::string::npos)
      yaml.replace(at, sqlite.size(), "store:\n  url: \"" + url_ + "\"\n");
    return yaml;
  }
  std::int64_t query_int(const std::string& sql) const {
    return PgServer::shared().query_int(dbname_, sql);
  }

  std::string url_;
  std::string dbname_;
};

TEST_F(ServeOnPostgresTest, TasksAndTicketsAreWrittenToPostgresAndOutliveTheDaemon) {
  start_daemon(pg_config(agent_yaml("reviewer")));
  if (HasFatalFailure()) return;
  chaos("reviewer", {{"fail", {{"500", 1.0}}}});
  Reply failed = submit("reviewer");
  ASSERT_EQ(failed.status, 200) << failed.text;
  const std::string task = failed.body["id"];
  Reply tickets = get("/v1/tickets?status=open");
  ASSERT_EQ(tickets.status, 200) << tickets.text;
  ASSERT_EQ(tickets.body["records"].size(), 1u) << tickets.text;
  const std::string ticket = tickets.body["records"][0]["id"];
  EXPECT_THAT(ticket, HasSubstr("TKT-"));
  // In the database itself, not in a file beside the configuration.
  EXPECT_EQ(query_int("SELECT count(*) FROM records WHERE status = 'open'"), 1);
  EXPECT_EQ(query_int("SELECT count(*) FROM tasks WHERE done"), 1);
  EXPECT_FALSE(std::filesystem::exists(dir_.file("mend.db")));

  daemon_->signal(SIGKILL);
  daemon_.reset();  // waits for the process to be gone
  start_daemon(pg_config(agent_yaml("reviewer")));
  if (HasFatalFailure()) return;
  Reply shown = get("/v1/tickets/" + ticket);
  ASSERT_EQ(shown.status, 200) << shown.text;
  EXPECT_EQ(shown.body["status"], "open");
  Reply again = get("/v1/tasks/" + task);
  ASSERT_EQ(again.status, 200) << again.text;
  EXPECT_EQ(again.body["state"], "done");
  // The same failure on the new daemon counts on the same ticket.
  chaos("reviewer", {{"fail", {{"500", 1.0}}}});
  ASSERT_EQ(submit("reviewer").status, 200);
  EXPECT_EQ(query_int("SELECT count(*) FROM records"), 1);
  EXPECT_EQ(query_int("SELECT occurrences FROM records"), 2);
}

}  // namespace
}  // namespace mend::testing
