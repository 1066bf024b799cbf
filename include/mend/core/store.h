// File: mend/core/store.h
//
// What mend keeps for people: tickets and incidents with their timelines (war rooms are the
// incident's war_room_url plus a timeline entry), the notification outbox, the task journal, and
// the tasks `mend serve` accepted (so that a restart loses none).
// `Store` is the interface; `SqliteStore` (mend/store/sqlite_store.h) is the embedded default, and
// `PgStore` (mend/store/pg_store.h) implements it on PostgreSQL, for several nodes sharing one
// database. Both pass one conformance suite (src/store/store_conformance_*_test.cc).
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
#ifndef MEND_CORE_STORE_H_
#define MEND_CORE_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/escalation.h"

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
  // The delivery lease (claim_due): who holds the message and until when ('' and 0: nobody), and
  // the fencing number, raised by every claim, that a completion must name.
  std::string lease_owner;
  WallTime lease_until{};
  std::int64_t fence = 0;
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

// A task as `mend serve` keeps it, from the moment it is accepted to its outcome, so that a
// restart loses none: one that was running is resumed or ends `interrupted` (docs/api.md).
struct StoredTask {
  std::string id;
  std::string idempotency_key;  // "" when the client sent none; unique among stored tasks
  std::string request_digest;   // of the submitted body: tells a replay from a conflict
  std::string type;
  std::string agent;
  // While running: the task as submitted (the API's JSON), to run it again; "" once done.
  std::string request_json;
  bool done = false;
  // While running: a call to an agent may be in flight. False only while the task is known to
  // wait (in backoff) with no call out.
  bool call_in_flight = true;
  int attempts = 0;  // calls made to agents so far
  WallTime submitted_at{};
  std::optional<WallTime> deadline_at;
  std::optional<WallTime> finished_at;
  std::string status;        // once done: the outcome's status
  std::string outcome_json;  // once done: the outcome (the API's JSON)
};

// One change to a stored task. accept inserts the whole task; progress sets call_in_flight and
// attempts of a running one; finish sets done, status, outcome_json and finished_at and drops
// request_json. A finish may carry the task's journal entry, written in the same transaction: a
// crash leaves both or neither.
struct TaskWrite {
  enum class Kind : std::uint8_t { accept, progress, finish };
  Kind kind = Kind::accept;
  StoredTask task;
  std::optional<JournalEntry> journal;
};

class Store {
 public:
  virtual ~Store() = default;

  // Runs `body` atomically: every call it makes on this store commits together or not at all
  // (an exception rolls back and propagates). Calls may nest; the outermost commits.
  virtual void transaction(const std::function<void()>& body) = 0;

  // --- Tickets and incidents -------------------------------------------------------------------
  // The active record (open or acknowledged) with fresh.fingerprint gets fresh.occurrences more
  // occurrences (one, unless escalations waited for the store together) and last_seen_at = now
  // (never moved back), and an "occurrence" timeline entry for each of the first ten and then at
  // each power of ten it reaches (so that an outage leaves a readable timeline; the count stays
  // exact); without one, `fresh` is inserted with an "opened" entry. Atomic: two threads reporting
  // the same fingerprint make one record.
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
  // Pending messages with next_attempt_at <= now, oldest first (a listing: leases are ignored).
  virtual std::vector<OutboxMessage> due_messages(WallTime now, std::size_t limit) = 0;
  // The dispatcher's read: up to `limit` pending messages with next_attempt_at <= now that no
  // other owner holds under an unexpired lease (lease_until > now), oldest first, each now leased
  // to `owner` until now + lease and its fence raised by one (returned in the messages). Atomic
  // across nodes sharing the store: two concurrent claims never return the same message while its
  // lease holds. A lease owner's own unexpired rows are claimable again (a new fence).
  virtual std::vector<OutboxMessage> claim_due(WallTime now, std::size_t limit,
                                               const std::string& owner, Duration lease) = 0;
  virtual std::vector<OutboxMessage> outbox(std::optional<OutboxState> state,
                                            std::size_t limit) = 0;
  // True when a message for the same receiver and record, enqueued before `message`, is still
  // pending: the dispatcher holds `message` back so that a receiver never sees "resolve" before
  // the "trigger" it closes. False for messages about no record.
  virtual bool has_older_pending(const OutboxMessage& message) = 0;
  // Completions of a claim: they change the message, and clear its lease, only while it is pending
  // and its fence is still `fence` (the claim's; 0 for a message never claimed). False, and
  // nothing written, otherwise: the lease was lost (another claim took the message since), it
  // was completed already, or there is no such message.
  // Delivered: delivered_at = at, attempts + 1, last_error kept.
  virtual bool mark_delivered(std::int64_t message_id, std::int64_t fence, WallTime at) = 0;
  // A failed delivery: attempts recorded, retried at next_attempt_at, or `dead` when mend gave up.
  virtual bool mark_failed(std::int64_t message_id, std::int64_t fence, int attempts,
                           WallTime next_attempt_at, const std::string& error, bool dead) = 0;

  // --- Task journal ----------------------------------------------------------------------------
  virtual std::int64_t append_journal(const JournalEntry& entry) = 0;
  virtual std::vector<JournalEntry> journal(std::size_t limit) = 0;  // newest first

  // --- Tasks -----------------------------------------------------------------------------------
  // Applies `writes` in order, in one transaction, and raises the counter of generated task ids
  // to at least `next_task_number`. An accept whose id or idempotency key is stored already
  // writes nothing: the indexes of such writes are returned. progress and finish of an unknown id
  // do nothing.
  virtual std::vector<std::size_t> write_tasks(const std::vector<TaskWrite>& writes,
                                               std::int64_t next_task_number) = 0;
  // Every running task, and the `finished` most recently finished ones; oldest accepted first.
  virtual std::vector<StoredTask> load_tasks(std::size_t finished) = 0;
  virtual std::optional<StoredTask> stored_task(const std::string& id) = 0;
  // Deletes the finished tasks beyond the `keep` most recently finished; returns how many.
  virtual std::size_t prune_tasks(std::size_t keep) = 0;
  // The counter write_tasks() raises: no generated id below it was ever handed out.
  virtual std::int64_t next_task_number() = 0;
};

}  // namespace mend

#endif  // MEND_CORE_STORE_H_
