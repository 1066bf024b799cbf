// File: mend/store/escalation_backlog.h
//
// What keeps an escalation when the store refuses it (a full disk, a file locked or gone
// read-only): the ticket or incident, its timeline and its notifications are one transaction in
// the Escalator (mend/store/escalator.h), so a refused escalation leaves nothing in the store. The
// backlog keeps the request in memory and writes it through the Escalator again, oldest first,
// with backoff, until the store takes it; the record then opens (or counts the occurrences) at the
// time of the failure, and its notifications go out.
//
//   mend::EscalationBacklog backlog(clock, {.on_health_change = on_store_health});
//   mend::Result<mend::EscalationTaken> t = backlog.escalate(escalator, request);
//   if (t.ok() && t->pending) ...        // kept: no record yet, written by a later retry()
//   backlog.retry(escalator);            // call periodically (the daemon: every housekeeping pass)
//
// How it keeps memory bounded while a store is down for hours: escalations of one fingerprint
// (mend/core/escalation.h) wait as one entry that counts their occurrences and keeps the most
// severe level, so an outage of ten thousand failed tasks waits as a handful of entries. At most
// Options::max_pending fingerprints wait; an escalation of a new fingerprint beyond that is
// dropped, counted and logged by the caller (Stats::dropped). Error messages are kept to their
// first Options::max_message_bytes.
//
// Order and cost: once something waits, later escalations wait behind it without trying the store
// (a locked store would cost each one its busy timeout), and retry() writes them in order, stopping
// at the first refusal. An escalation refused for another reason than the store (a validation
// error) is returned as the error it is, never kept.
//
// Thread-safety: every method may be called from any thread. retry() runs one pass at a time (a
// second caller returns at once); the Escalator is called without the backlog's lock held.
// on_health_change runs on the thread whose call changed the state, without the lock held.
#ifndef MEND_STORE_ESCALATION_BACKLOG_H_
#define MEND_STORE_ESCALATION_BACKLOG_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <vector>

#include "mend/core/clock.h"
#include "mend/core/result.h"
#include "mend/core/thread_annotations.h"
#include "mend/core/workflow.h"
#include "mend/store/escalator.h"

namespace mend {

class EscalationBacklog {
 public:
  struct Options {
    std::size_t max_pending = 1000;        // fingerprints waiting at most
    std::size_t max_message_bytes = 4096;  // of a waiting error's message
    Duration retry_initial = std::chrono::milliseconds(100);
    Duration retry_max = std::chrono::seconds(5);
    // Called when an escalation starts waiting (failing true, with the store's error) and when
    // the last waiting one is written (failing false).
    std::function<void(bool failing, const std::string& error)> on_health_change;
  };

  struct Stats {
    std::size_t pending = 0;               // fingerprints waiting
    std::int64_t pending_occurrences = 0;  // escalations they stand for
    std::int64_t deferred = 0;             // escalations kept because the store refused them
    std::int64_t written_late = 0;         // escalations a retry wrote (occurrences)
    std::int64_t dropped = 0;              // escalations given up: max_pending fingerprints waited
    std::int64_t failed_tries = 0;         // retries the store refused
    std::string last_error;                // the store's last error ("" when none yet)
  };

  // What one retry() pass did.
  struct Pass {
    std::int64_t written = 0;              // occurrences written
    std::vector<EscalationTaken> records;  // what each written entry opened or touched
    std::string error;                     // the refusal that stopped the pass ("" when none)
  };

  explicit EscalationBacklog(const Clock& clock) : EscalationBacklog(clock, Options{}) {}
  EscalationBacklog(const Clock& clock, Options options);

  // Escalates through `escalator`, or keeps `request` when the store refuses it or when others
  // wait already: the answer is then the plan with `pending` set and no record. Errors: what the
  // escalator refused for another reason than the store; the store's error when the request had
  // to be dropped (max_pending fingerprints wait).
  Result<EscalationTaken> escalate(Escalator& escalator, const EscalationRequest& request);
  // When the backoff allows, writes the waiting escalations, oldest first, until the store
  // refuses one.
  Pass retry(Escalator& escalator);
  // The same pass, backoff or not (the daemon's last try at shutdown).
  Pass retry_now(Escalator& escalator);
  Stats stats() const;
  bool failing() const;

 private:
  struct Entry {
    EscalationRequest request;  // the first one, with `at`, the most severe level, the count
    std::string fingerprint;
  };
  Pass write_waiting(Escalator& escalator, bool when_due);
  // Waits with the entry of its fingerprint, or as a new one; counted as deferred, or as dropped
  // (false) when max_pending fingerprints wait already. `request.at` is set.
  bool keep(EscalationRequest request, const std::string& fingerprint) MEND_REQUIRES(mu_);
  void merge_into(Entry& entry, const EscalationRequest& request) MEND_REQUIRES(mu_);
  // Calls on_health_change when the state differs from the last one reported.
  void report_health() MEND_EXCLUDES(mu_, health_mu_);

  const Clock& clock_;
  const Options options_;
  mutable Mutex mu_;
  std::list<Entry> waiting_ MEND_GUARDED_BY(mu_);  // oldest first
  std::map<std::string, std::list<Entry>::iterator> by_print_ MEND_GUARDED_BY(mu_);
  Stats stats_ MEND_GUARDED_BY(mu_);
  bool failing_ MEND_GUARDED_BY(mu_) = false;
  bool retrying_ MEND_GUARDED_BY(mu_) = false;
  TimePoint next_retry_ MEND_GUARDED_BY(mu_) = {};
  Duration retry_delay_ MEND_GUARDED_BY(mu_) = {};
  Mutex health_mu_;  // orders on_health_change calls
  bool reported_failing_ MEND_GUARDED_BY(health_mu_) = false;
};

}  // namespace mend

#endif  // MEND_STORE_ESCALATION_BACKLOG_H_
