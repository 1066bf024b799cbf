// What the SQLite store reads back from values another program wrote into its file: unparseable
// stored values as defaults. (Every field of every table read back, and times to the
// millisecond, are store_conformance_round_trip_test.cc's, for every store.)
#include <gtest/gtest.h>

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "mend/store/sqlite_store.h"
#include "sqlite_store_test_support.h"

namespace mend {
namespace {

using sqlite_store_test_support::a_full_record;
using sqlite_store_test_support::a_message;
using sqlite_store_test_support::kT0;
using sqlite_store_test_support::SqliteStoreTest;

TEST_F(SqliteStoreTest, UnparseableStoredValuesReadBackAsDefaults) {
  std::int64_t id = 0;
  std::int64_t message_id = 0;
  {
    auto store = open_store();
    ASSERT_NE(store, nullptr);
    id = store->open_or_touch(a_full_record(), kT0).record.id;
    OutboxMessage m = a_message("slack", "k", kT0);
    ASSERT_TRUE(store->enqueue(m));
    message_id = m.id;
  }
  raw_exec(
      "UPDATE records SET kind = 'spaceship', level = 'apocalyptic', status = '', "
      "error_type = 'gremlins', tier = 99999999999, review_at = 'soon' "
      "WHERE id = " +
      std::to_string(id));
  raw_exec("UPDATE outbox SET state = 'lost', attempts = 'many' WHERE id = " +
           std::to_string(message_id));

  auto store = open_store();
  ASSERT_NE(store, nullptr);
  std::optional<EscalationRecord> r = store->record(id);
  ASSERT_TRUE(r.has_value());
  const EscalationRecord defaults;
  EXPECT_EQ(r->kind, defaults.kind);
  EXPECT_EQ(r->level, defaults.level);
  EXPECT_EQ(r->status, defaults.status);
  EXPECT_EQ(r->error_type, defaults.error_type);
  EXPECT_EQ(r->tier, std::numeric_limits<int>::max());
  EXPECT_TRUE(r->review_at == WallTime{});  // text where a time belongs reads as 0
  EXPECT_EQ(r->agent, "deployer");          // the rest of the row is intact
  std::vector<OutboxMessage> outbox = store->outbox(std::nullopt, 10);
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].state, OutboxState::pending);
  EXPECT_EQ(outbox[0].attempts, 0);
}

}  // namespace
}  // namespace mend
