#include "mend/store/task_writer.h"

#include <algorithm>
#include <exception>
#include <utility>
#include <vector>

namespace mend {
namespace {

std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(std::move(e));
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown error";
  }
}

}  // namespace

TaskWriter::TaskWriter(Store& store, const Clock& clock, Options options)
    : store_(store), clock_(clock), options_([&] {
        options.max_batch = std::max<std::size_t>(1, options.max_batch);
        options.max_queued = std::max<std::size_t>(1, options.max_queued);
        options.max_retried = std::max<std::size_t>(1, options.max_retried);
        options.retry_initial = std::max<Duration>(options.retry_initial, Duration(1));
        options.retry_max = std::max(options.retry_max, options.retry_initial);
        return options;
      }()) {
  if (options_.own_thread) thread_ = std::thread([this] { write_loop(); });
}

TaskWriter::~TaskWriter() {
  stop();
}

TaskWriter::Health TaskWriter::stop() {
  {
    MutexLock lock(mu_);
    if (stopped_) return health_locked();
    stopped_ = true;
    stopping_ = true;
  }
  work_.notify_one();
  if (thread_.joinable()) {
    thread_.join();
  } else {
    // No thread of its own: the last tries happen here.
    MutexLock lock(mu_);
    while (!queue_.empty()) write_batch();
    if (!retry_.empty()) {
      next_retry_ = clock_.now();
      while (!retry_.empty() && write_batch() > 0 && clock_.now() >= next_retry_) {
      }
    }
  }
  MutexLock lock(mu_);
  return health_locked();
}

bool TaskWriter::submit(TaskWrite write, Done done) {
  MutexLock lock(mu_);
  if (write.kind == TaskWrite::Kind::accept && queue_.size() >= options_.max_queued) return false;
  const bool idle = queue_.empty();
  queue_.push_back(Pending{std::move(write), std::move(done), false});
  ++submitted_;
  lock.unlock();
  // A busy writer comes back for the queue by itself.
  if (idle) work_.notify_one();
  return true;
}

void TaskWriter::raise_task_number(std::int64_t number) {
  std::int64_t current = task_number_.load(std::memory_order_relaxed);
  while (current < number &&
         !task_number_.compare_exchange_weak(current, number, std::memory_order_relaxed)) {
  }
}

void TaskWriter::flush() {
  MutexLock lock(mu_);
  const std::uint64_t target = submitted_;
  if (!options_.own_thread) {
    while (tried_count_ < target) write_batch();
    return;
  }
  tried_.wait(lock.native(), [&]() MEND_REQUIRES(mu_) { return tried_count_ >= target; });
}

std::size_t TaskWriter::run_once() {
  MutexLock lock(mu_);
  return write_batch();
}

TaskWriter::Health TaskWriter::health() const {
  MutexLock lock(mu_);
  return health_locked();
}

TaskWriter::Health TaskWriter::health_locked() const {
  Health h = health_;
  h.retry_pending = retry_.size();
  h.queued = queue_.size();
  return h;
}

void TaskWriter::keep_for_retry(Pending p) {
  // A task's progress carries its whole state (call out or not, calls made): a later change of
  // the same task makes an earlier progress still waiting here useless. Dropped, it keeps the
  // list at about one or two writes per task.
  // Looked for among the most recent only: a task's changes come close together, and a whole
  // scan of a long list on every change would make a long outage quadratic.
  constexpr std::size_t kLookBack = 256;
  if (p.write.kind != TaskWrite::Kind::accept) {
    std::size_t looked = 0;
    for (auto it = retry_.rbegin(); it != retry_.rend() && looked < kLookBack; ++it, ++looked) {
      if (it->write.kind == TaskWrite::Kind::progress && it->write.task.id == p.write.task.id) {
        retry_.erase(std::next(it).base());
        break;  // at most one is ever waiting: each new one replaces it
      }
    }
  }
  if (retry_.size() >= options_.max_retried) {
    retry_.pop_front();
    ++health_.dropped;
  }
  retry_.push_back(std::move(p));
}

void TaskWriter::note_recovered() {
  retry_delay_ = Duration::zero();
  if (!health_.failing) return;
  health_.failing = false;
  if (options_.on_health_change) {
    MutexUnlock unlocked(mu_);
    options_.on_health_change(false, "");
  }
}

void TaskWriter::note_failure(const std::string& error) {
  retry_delay_ = retry_delay_.count() == 0
                     ? options_.retry_initial
                     : std::min<Duration>(retry_delay_ * 2, options_.retry_max);
  next_retry_ = clock_.now() + retry_delay_;
  const bool was_failing = health_.failing;
  health_.failing = true;
  health_.last_error = error;
  if (!was_failing && options_.on_health_change) {
    MutexUnlock unlocked(mu_);
    options_.on_health_change(true, error);
  }
}

std::size_t TaskWriter::write_batch() {
  // Each submitter hears once: a retried write that succeeds later reported its failure already.
  struct Notice {
    Done done;
    Result result;
    std::string error;
  };
  std::vector<Notice> notices;
  auto notice = [&](Pending& p, Result result, const std::string& error) {
    if (p.reported || !p.done) return;
    p.reported = true;
    notices.push_back({std::move(p.done), result, error});
  };
  auto tell = [&] {
    for (Notice& n : notices) {
      try {
        n.done(n.result, n.error);
      } catch (...) {
        // A callback that throws loses only its own notice; the writer goes on.
      }
    }
    notices.clear();
  };
  std::vector<Pending> batch;
  // Retries first, once due: they were submitted before anything in queue_.
  if (!retry_.empty() && clock_.now() >= next_retry_) {
    while (!retry_.empty() && batch.size() < options_.max_batch) {
      batch.push_back(std::move(retry_.front()));
      retry_.pop_front();
    }
  }
  std::uint64_t taken = 0;  // from queue_: counted as tried once the try is over
  while (!queue_.empty() && batch.size() < options_.max_batch) {
    Pending p = std::move(queue_.front());
    queue_.pop_front();
    ++taken;
    if (!retry_.empty() && p.write.kind != TaskWrite::Kind::accept) {
      // Behind a write that failed: the store must see a task's changes in order. Its
      // submitter hears now that it is not in the store (and need not wait for a retry).
      notice(p, Result::failed, health_.last_error);
      keep_for_retry(std::move(p));
      continue;
    }
    batch.push_back(std::move(p));
  }
  if (batch.empty()) {
    tried_count_ += taken;
    // Failing with nothing to retry (only accepts failed): an empty transaction, when due, tells
    // whether the store takes writes again. Without it, "failing" would last until the next task.
    const bool probe = health_.failing && retry_.empty() && clock_.now() >= next_retry_;
    if (probe) {
      const std::int64_t number = task_number_.load(std::memory_order_relaxed);
      std::string error;
      {
        MutexUnlock unlocked(mu_);
        try {
          store_.write_tasks({}, number);
        } catch (...) {
          error = what_of(std::current_exception());
        }
      }
      if (!error.empty()) {
        ++health_.failed_tries;
        note_failure(error);
      } else {
        note_recovered();
      }
    }
    {
      MutexUnlock unlocked(mu_);
      tell();
    }
    tried_.notify_all();
    return 0;
  }
  // The store is written without the lock: submitters and health() go on meanwhile.
  std::vector<TaskWrite> writes;
  std::vector<Result> results;
  std::vector<std::string> errors;
  std::int64_t written = 0;
  std::int64_t failed = 0;
  std::int64_t batches = 0;
  std::string last_error;
  {
    MutexUnlock unlocked(mu_);
    writes.reserve(batch.size());
    for (const Pending& p : batch) writes.push_back(p.write);
    const std::int64_t number = task_number_.load(std::memory_order_relaxed);
    results.assign(batch.size(), Result::written);
    errors.resize(batch.size());
    try {
      for (std::size_t i : store_.write_tasks(writes, number)) results.at(i) = Result::refused;
      written = static_cast<std::int64_t>(batch.size());
      batches = 1;
    } catch (...) {
      // The transaction was rolled back: write them one by one, so that a write the store refuses
      // for its own sake costs only itself. Once one fails, the rest are not tried: the store
      // itself is failing (locked, full), and each try could wait the whole busy timeout.
      bool order_broken = false;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (order_broken) {
          results[i] = Result::failed;
          errors[i] = last_error;
          continue;
        }
        try {
          if (!store_.write_tasks({writes[i]}, number).empty()) results[i] = Result::refused;
          ++written;
          ++batches;
        } catch (...) {
          results[i] = Result::failed;
          errors[i] = last_error = what_of(std::current_exception());
          ++failed;
          order_broken = true;
        }
      }
    }

    for (std::size_t i = 0; i < batch.size(); ++i) notice(batch[i], results[i], errors[i]);
  }

  tried_count_ += taken;
  health_.written += written;
  health_.batches += batches;
  health_.failed_tries += failed;
  // Failed progress and finish writes go back to the front, in order: whatever is in retry_ now
  // came after them.
  for (std::size_t i = batch.size(); i-- > 0;) {
    if (results[i] == Result::failed && writes[i].kind != TaskWrite::Kind::accept) {
      retry_.push_front(std::move(batch[i]));
    }
  }
  while (retry_.size() > options_.max_retried) {
    retry_.pop_front();
    ++health_.dropped;
  }
  if (failed > 0) {
    note_failure(last_error);
  } else if (retry_.empty()) {
    note_recovered();
  }
  {
    MutexUnlock unlocked(mu_);
    tell();
  }
  tried_.notify_all();
  return batch.size();
}

void TaskWriter::write_loop() noexcept {
  MutexLock lock(mu_);
  bool last_try_done = false;
  for (;;) {
    const bool retry_due = (!retry_.empty() || health_.failing) && clock_.now() >= next_retry_;
    if (!queue_.empty() || retry_due) {
      try {
        write_batch();
      } catch (...) {
        // Out of memory building a batch: what was taken is gone with it; carry on (with mu_
        // held: write_batch() takes it again before an exception leaves).
      }
      continue;
    }
    if (stopping_) {
      if (retry_.empty() || last_try_done) return;  // (a probe alone is not worth a last try)
      // Shutting down with writes waiting for a retry: one last try now.
      last_try_done = true;
      next_retry_ = clock_.now();
      continue;
    }
    if (retry_.empty() && !health_.failing) {
      work_.wait(lock.native());
    } else {
      // The clock may be another than the system's: wait in real time, at most the retry delay.
      const Duration left =
          std::clamp<Duration>(next_retry_ - clock_.now(), Duration(1), options_.retry_max);
      work_.wait_for(lock.native(), left);
    }
  }
}

}  // namespace mend
