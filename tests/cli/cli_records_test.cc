// `mend tickets`, `mend incidents`, `mend ack` and `mend resolve` against a daemon the test
// starts: records listed (SLA breached, a narrow terminal), acknowledged and resolved.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "cli_test_support.h"
#include "mend_test/posix_regex.h"
#include "serve_fixture.h"

namespace mend::testing {
namespace {

using cli_test_support::CliTest;
using cli_test_support::MendRun;
using cli_test_support::row_of;
using cli_test_support::table_rows;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

// About 3 s: it waits out a ticket's 3 s SLA in real time to see it shown breached (the daemon
// runs on the system clock).
TEST_F(CliTest, TicketsAndIncidentsAreListedAcknowledgedAndResolved) {
  // The pager has no chain and no peer: its failures are its tasks' last word. A processing
  // failure opens a ticket (medium), data corruption an incident (critical).
  daemon().chaos("pager", {{"fail_next", {{{"kind", "500"}}, {{"kind", "critical"}}}}});
  MendRun ticket_task = run({"submit", "--type", "code_review", "--agent", "pager"});
  ASSERT_EQ(ticket_task.exit_code, 0) << ticket_task.describe();  // degraded is an answer
  EXPECT_THAT(ticket_task.out, HasSubstr(": degraded, answered by degraded_service"));
  std::optional<std::vector<std::string>> m =
      regex_search(ticket_task.out, "escalation: notified_and_ticketed \\(medium\\) (TKT-[0-9]+)");
  ASSERT_TRUE(m) << ticket_task.out;
  const std::string ticket = (*m)[1];
  MendRun incident_task = run({"submit", "--type", "deployment", "--agent", "pager", "--json"});
  ASSERT_EQ(incident_task.exit_code, 0) << incident_task.describe();
  const json outcome = incident_task.out_json()["outcome"];
  EXPECT_EQ(outcome["status"], "degraded");
  EXPECT_EQ(outcome["escalation"]["action"], "critical_incident");
  const std::string incident = outcome["escalation"]["record"];
  ASSERT_THAT(incident, StartsWith("INC-"));

  // Listed, human and JSON.
  MendRun tickets = run({"tickets", "--status", "open"}, false);
  ASSERT_EQ(tickets.exit_code, 0) << tickets.describe();
  auto rows = table_rows(tickets.out);
  EXPECT_THAT(rows[0],
              ElementsAre("ID", "LEVEL", "STATUS", "AGE", "SLA", "OCCURRENCES", "AGENT", "TITLE"));
  auto row = row_of(rows, ticket);
  ASSERT_EQ(row.size(), 8u) << tickets.out;
  EXPECT_EQ(row[1], "medium");
  EXPECT_EQ(row[2], "open");
  EXPECT_THAT(row[3], MatchesRegex("[0-9]+s"));
  EXPECT_THAT(row[4], MatchesRegex("in [0-9]+s|BREACHED [0-9]+s ago"));  // a 3 s SLA
  EXPECT_EQ(row[5], "1");
  EXPECT_EQ(row[6], "pager");
  EXPECT_THAT(row[7], HasSubstr("processing_failed on pager"));
  MendRun tickets_json = run({"tickets", "--json"}, false);
  ASSERT_EQ(tickets_json.exit_code, 0) << tickets_json.describe();
  bool found = false;
  const json listed = tickets_json.out_json();
  for (const json& r : listed["records"]) {
    if (r["id"] == ticket) {
      found = true;
      EXPECT_EQ(r["status"], "open");
      EXPECT_EQ(r["agent"], "pager");
    }
  }
  EXPECT_TRUE(found) << tickets_json.out;

  // Past its SLA, unacknowledged: BREACHED.
  daemon().wait_until(
      [&] {
        auto r = row_of(table_rows(run({"tickets", "--status", "open"}, false).out), ticket);
        return r.size() == 8 && r[4].rfind("BREACHED", 0) == 0;
      },
      10s, "the ticket's SLA to be shown breached");

  // On a narrow terminal ($COLUMNS) the title gives way, cut with "...".
  MendRun narrow = run({"tickets", "--status", "open"}, false, {{"COLUMNS", "80"}});
  ASSERT_EQ(narrow.exit_code, 0) << narrow.describe();
  for (const std::string& line : narrow.out_lines()) EXPECT_LE(line.size(), 80u) << line;
  row = row_of(table_rows(narrow.out), ticket);
  ASSERT_EQ(row.size(), 8u) << narrow.out;
  EXPECT_THAT(row[7], MatchesRegex("Medium.*\\.\\.\\."));
  EXPECT_THAT(narrow.out, Not(HasSubstr("processing_failed on pager")));

  MendRun incidents = run({"incidents"}, false);
  ASSERT_EQ(incidents.exit_code, 0) << incidents.describe();
  row = row_of(table_rows(incidents.out), incident);
  ASSERT_EQ(row.size(), 8u) << incidents.out;
  EXPECT_EQ(row[1], "critical");
  EXPECT_EQ(row[2], "open");
  EXPECT_THAT(row[4], MatchesRegex("in 1[45]m[0-9]+s"));  // the default 15 min
  EXPECT_THAT(row[7], HasSubstr("data_corruption on pager"));
  MendRun incidents_json = run({"incidents", "--status", "open", "--json"}, false);
  ASSERT_EQ(incidents_json.exit_code, 0);
  const json open_incidents = incidents_json.out_json();
  ASSERT_FALSE(open_incidents["records"].empty()) << incidents_json.out;
  for (const json& r : open_incidents["records"]) EXPECT_EQ(r["kind"], "incident");

  // Acknowledge and resolve the ticket; a resolved record cannot be acknowledged again.
  EXPECT_EQ(run({"ack", ticket, "--by", "alice"}, false).exit_code, 4);  // no token
  MendRun acked = run({"ack", ticket, "--by", "alice"});
  ASSERT_EQ(acked.exit_code, 0) << acked.describe();
  EXPECT_THAT(acked.out, StartsWith(ticket + " acknowledged by alice"));
  row = row_of(table_rows(run({"tickets", "--status", "acknowledged"}, false).out), ticket);
  ASSERT_EQ(row.size(), 8u);
  EXPECT_EQ(row[2], "acknowledged");
  EXPECT_EQ(row[4], "missed");  // acknowledged after its 3 s
  EXPECT_THAT(row_of(table_rows(run({"tickets", "--status", "open"}, false).out), ticket),
              IsEmpty());
  MendRun resolved = run({"resolve", ticket, "--by", "bob", "--json"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved.describe();
  EXPECT_EQ(resolved.out_json()["status"], "resolved");
  EXPECT_EQ(resolved.out_json()["resolved_by"], "bob");
  MendRun late = run({"ack", ticket});
  EXPECT_EQ(late.exit_code, 1) << late.describe();
  EXPECT_THAT(late.err, HasSubstr("already resolved"));
  EXPECT_THAT(late.out, IsEmpty());

  // The incident, acknowledged in time by $USER.
  MendRun inc_ack = run({"ack", incident, "--json"}, true, {{"USER", "carol"}});
  ASSERT_EQ(inc_ack.exit_code, 0) << inc_ack.describe();
  EXPECT_EQ(inc_ack.out_json()["acknowledged_by"], "carol");
  row = row_of(table_rows(run({"incidents", "--status", "acknowledged"}, false).out), incident);
  ASSERT_EQ(row.size(), 8u);
  EXPECT_EQ(row[4], "met");
  MendRun inc_resolved = run({"resolve", incident}, true, {{"USER", "carol"}});
  ASSERT_EQ(inc_resolved.exit_code, 0) << inc_resolved.describe();
  EXPECT_THAT(inc_resolved.out, StartsWith(incident + " resolved by carol"));

  MendRun missing = run({"ack", "TKT-99999"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("no such record"));
  MendRun not_an_id = run({"resolve", "yesterday"});
  EXPECT_EQ(not_an_id.exit_code, 2);
  EXPECT_THAT(not_an_id.err, HasSubstr("not a record id"));
}

}  // namespace
}  // namespace mend::testing
