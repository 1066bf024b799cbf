// File: mend/store/task_writer.h
//
// How `mend serve` keeps the tasks it accepted in its Store (mend/core/store.h) so that a crash
// loses none: every change to a task (TaskWrite: accept, progress, finish) goes through a
// TaskWriter, which writes them from a thread of its own, a batch per transaction (group commit),
// in the order they were submitted, and tells each submitter when its change is in the store.
//
//   mend::TaskWriter writer(store, mend::SystemClock::instance());
//   writer.raise_task_number(next_generated_id + 1);   // no generated id is ever handed out twice
//   writer.submit({TaskWrite::Kind::accept, task}, [](TaskWriter::Result r, const std::string&) {
//     // written: answer 202 and start the task; refused: 409; failed: 503 (nothing was run)
//   });
//
// What a failing store costs (a full disk, a file that went read-only):
// - an accept that fails is not retried: its submitter refuses the task, and the client, which
//   was never told "accepted", sends it again;
// - a progress or finish that fails is kept in memory and written again, in order, with backoff
//   (Options::retry_initial doubling up to retry_max) until the store takes it. Its submitter hears
//   `failed` at the first failure (the task's outcome stands and is answered from memory), and
//   every later progress or finish queues behind it, so that the store never sees them out of
//   order. A task's progress still waiting is replaced by its next change (each carries the whole
//   state). At most Options::max_retried are kept; beyond that the oldest are dropped and counted.
// - while failing with nothing to retry (only accepts failed), an empty transaction is tried with
//   the same backoff, so that the store's recovery is noticed without waiting for a task.
// - health() says whether writes are waiting to be retried (the daemon's /readyz is then not
//   ready), and Options::on_health_change is called when that starts and when it ends.
//
// Thread-safety: submit(), raise_task_number(), flush() and health() may be called from any
// thread. Done callbacks and on_health_change run on the writer's thread (or on the thread calling
// run_once()) and must be quick: they delay the next batch. With Options::own_thread false,
// nothing is written until run_once() is called: tests drive the writer with a manual clock.
#ifndef MEND_STORE_TASK_WRITER_H_
#define MEND_STORE_TASK_WRITER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "mend/core/clock.h"
#include "mend/core/store.h"
#include "mend/core/thread_annotations.h"

namespace mend {

class TaskWriter {
 public:
  enum class Result : std::uint8_t {
    written,  // in the store
    refused,  // an accept whose id or idempotency key the store holds already
    failed,   // the store failed (the error says why); a progress or finish is retried
  };
  using Done = std::function<void(Result, const std::string& error)>;

  struct Options {
    std::size_t max_batch = 1024;     // writes per transaction at most
    std::size_t max_queued = 20000;   // writes waiting for their first try; submit() refuses more
    std::size_t max_retried = 50000;  // progress and finish writes kept for retry at most
    Duration retry_initial = std::chrono::milliseconds(100);
    Duration retry_max = std::chrono::seconds(5);
    bool own_thread = true;
    // Called when writes start waiting for a retry (failing true, with the store's error) and when
    // the last of them is written (failing false).
    std::function<void(bool failing, const std::string& error)> on_health_change;
  };

  struct Health {
    // The last transaction failed, or progress and finish writes wait to be retried.
    bool failing = false;
    std::size_t retry_pending = 0;  // how many
    std::size_t queued = 0;         // writes not tried yet
    std::int64_t written = 0;       // writes in the store
    std::int64_t failed_tries = 0;  // writes the store refused with an error, retries included
    std::int64_t dropped = 0;       // retried writes given up because max_retried were waiting
    std::int64_t batches = 0;       // transactions that committed
    std::string last_error;         // the store's last error ("" when none yet)
  };

  TaskWriter(Store& store, const Clock& clock) : TaskWriter(store, clock, Options{}) {}
  TaskWriter(Store& store, const Clock& clock, Options options);
  // stop(), unless it was called.
  ~TaskWriter();
  TaskWriter(const TaskWriter&) = delete;
  TaskWriter& operator=(const TaskWriter&) = delete;

  // Queues `write`; `done` (may be empty) is called once with its result. An accept is refused
  // (false, and `done` is not called) when Options::max_queued writes wait already: the caller
  // refuses the task. Progress and finish are always queued: each belongs to a task running
  // already, and so they are bounded by the tasks in flight.
  bool submit(TaskWrite write, Done done);
  // Every later transaction raises the store's counter of generated ids to at least `number`.
  void raise_task_number(std::int64_t number);
  // Waits until every write submitted before the call has been tried at least once.
  void flush();
  // Writes one batch (retries first when they are due); returns how many writes it tried.
  std::size_t run_once();
  Health health() const;
  // Tries once more every write still queued or waiting for a retry, stops the writer, and
  // returns its health after those tries: what is pending then is lost with the process. Later
  // submissions are never written. Call once, before the store goes.
  Health stop();

 private:
  struct Pending {
    TaskWrite write;
    Done done;
    bool reported = false;  // done was called already (a retried write reports only once)
  };
  // Releases mu_ while it writes and while it calls out; holds it again when it returns or throws.
  std::size_t write_batch() MEND_REQUIRES(mu_);
  void write_loop() noexcept;
  // Releases mu_ while it calls on_health_change.
  void note_failure(const std::string& error) MEND_REQUIRES(mu_);
  // The store took a write and nothing waits for a retry: failing ends.
  void note_recovered() MEND_REQUIRES(mu_);
  void keep_for_retry(Pending p) MEND_REQUIRES(mu_);
  Health health_locked() const MEND_REQUIRES(mu_);

  Store& store_;
  const Clock& clock_;
  const Options options_;
  std::atomic<std::int64_t> task_number_{1};
  mutable Mutex mu_;
  std::condition_variable work_;                    // the writer waits for writes
  std::condition_variable tried_;                   // flush() waits for the writer's progress
  std::deque<Pending> queue_ MEND_GUARDED_BY(mu_);  // not tried yet
  std::deque<Pending> retry_ MEND_GUARDED_BY(mu_);  // failed, in submission order
  TimePoint next_retry_ MEND_GUARDED_BY(mu_) = {};
  Duration retry_delay_ MEND_GUARDED_BY(mu_) = {};
  std::uint64_t submitted_ MEND_GUARDED_BY(mu_) = 0;    // writes ever queued
  std::uint64_t tried_count_ MEND_GUARDED_BY(mu_) = 0;  // writes ever taken from queue_ and tried
  bool stopping_ MEND_GUARDED_BY(mu_) = false;
  bool stopped_ MEND_GUARDED_BY(mu_) = false;  // stop() ran
  Health health_ MEND_GUARDED_BY(mu_);
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace mend

#endif  // MEND_STORE_TASK_WRITER_H_
