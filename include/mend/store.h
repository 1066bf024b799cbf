// File: mend/store.h
//
// What mend keeps for people: tickets and incidents with their timelines (war rooms are the
// incident's war_room_url plus a timeline entry), the notification outbox, and the task journal.
// `Store` is the interface; `SqliteStore` (mend/sqlite_store.h) is the embedded default, and a
// PostgreSQL store will implement the same interface.
//
//   auto store = mend::SqliteStore::open("mend.db");         // Result<std::unique_ptr<...>>
//   mend::RecordUpsert u = (*store)->open_or_touch(record, clock.wall_now());
//   if (u.created) ...                                        // a first occurrence
//
// The outbox is how a notification survives a crash: it is written (in the same transaction as
// the record it is about) before anything is sent, and a dispatcher delivers what is due, marking
// each message delivered or scheduling its retry. A message is unique per (receiver, dedup_key):
// enqueueing it again is a no-op, so a replayed escalation never notifies twice.
//
// Errors: methods throw mend::Exception carrying a database_error Error when the database fails
// (disk full, corrupt file); they never crash on stored data they cannot parse (the field falls
// back to its default, and the row is kept).
//
// Thread-safety: implementations are safe to call from many threads at once. transaction() makes
// a group of calls atomic with respect to other threads and to crashes.
#ifndef MEND_STORE_H_
#define MEND_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mend/clock.h"
#include "mend/escalation.h"

namespace mend {

struct RecordUpsert {
  EscalationRecord record;  // as stored after the call
  bool created = false;     // true: a new record; false: an occurrence of an active one
};

struct RecordFilter {
  std::optional<RecordKind> kind;
  std::optional<RecordStatus> status;
  bool active_only = false;  // open or acknowledged
  std::size_t limit = 1000;
};

enum class OutboxState : std::uint8_t { pending, delivered, dead };
std::string_view to_string(OutboxState state) noexcept;

struct OutboxMessage {
  std::int64_t id = 0;    // assigned by the store
  std::string receiver;   // the configured receiver's name
  std::string dedup_key;  // unique per receiver
  std::int64_t record_id = 0;
  std::string event;    // trigger, acknowledge, resolve, reescalate
  std::string payload;  // the neutral JSON notification (docs/notifications.md)
  OutboxState state = OutboxState::pending;
  int attempts = 0;
  WallTime created_at{};
  WallTime next_attempt_at{};
  std::optional<WallTime> delivered_at;
  std::string last_error;
};

// One task's run through the workflow, for "what happened to task X?".
struct JournalEntry {
  std::int64_t id = 0;
  std::string task_id;
  std::string task_type;
  std::string primary_agent;
  std::string status;  // succeeded, succeeded_after_retry, fallback, degraded, failed
  std::string answered_by;
  int attempts = 0;
  std::int64_t record_id = 0;  // the escalation record, 0 when none
  WallTime started_at{};
  WallTime finished_at{};
  std::string outcome_json;  // the whole outcome, as the workflow reports it
};

class Store {
 public:
  virtual ~Store() = default;

  // Runs `body` atomically: every call it makes on this store commits together or not at all
  // (an exception rolls back and propagates). Calls may nest; the outermost commits.
  virtual void transaction(const std::function<void()>& body) = 0;

  // --- Tickets and incidents -------------------------------------------------------------------
  // The active record (open or acknowledged) with fresh.fingerprint gets one more occurrence and
  // last_seen_at = now, and an "occurrence" timeline entry for each of the first ten and then at
  // each power of ten (so that an outage leaves a readable timeline; the count stays exact);
  // without one, `fresh` is inserted with an "opened" entry. Atomic: two threads reporting the same
  // fingerprint make one record.
  virtual RecordUpsert open_or_touch(const EscalationRecord& fresh, WallTime now) = 0;
  virtual std::optional<EscalationRecord> record(std::int64_t id) = 0;
  virtual std::vector<EscalationRecord> records(const RecordFilter& filter) = 0;
  // Writes every field of an existing record (found by id). False when there is none.
  virtual bool update_record(const EscalationRecord& record) = 0;
  virtual void append_timeline(const TimelineEntry& entry) = 0;
  virtual std::vector<TimelineEntry> timeline(std::int64_t record_id) = 0;

  // --- Notification outbox ---------------------------------------------------------------------
  // False, and nothing written, when (receiver, dedup_key) is already there. Returns the id in
  // message.id otherwise.
  virtual bool enqueue(OutboxMessage& message) = 0;
  // Pending messages with next_attempt_at <= now, oldest first.
  virtual std::vector<OutboxMessage> due_messages(WallTime now, std::size_t limit) = 0;
  virtual std::vector<OutboxMessage> outbox(std::optional<OutboxState> state,
                                            std::size_t limit) = 0;
  // True when a message for the same receiver and record, enqueued before `message`, is still
  // pending: the dispatcher holds `message` back so that a receiver never sees "resolve" before
  // the "trigger" it closes. False for messages about no record.
  virtual bool has_older_pending(const OutboxMessage& message) = 0;
  virtual void mark_delivered(std::int64_t message_id, WallTime at) = 0;
  // A failed delivery: attempts recorded, retried at next_attempt_at, or `dead` when mend gave up.
  virtual void mark_failed(std::int64_t message_id, int attempts, WallTime next_attempt_at,
                           const std::string& error, bool dead) = 0;

  // --- Task journal ----------------------------------------------------------------------------
  virtual std::int64_t append_journal(const JournalEntry& entry) = 0;
  virtual std::vector<JournalEntry> journal(std::size_t limit) = 0;  // newest first
};

}  // namespace mend

#endif  // MEND_STORE_H_
