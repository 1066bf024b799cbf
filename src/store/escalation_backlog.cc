#include "mend/store/escalation_backlog.h"

#include <algorithm>
#include <utility>

namespace mend {
namespace {

bool store_refused(const Error& error) {
  return error.type == ErrorType::database_error;
}

}  // namespace

EscalationBacklog::EscalationBacklog(const Clock& clock, Options options)
    : clock_(clock), options_(std::move(options)) {}

void EscalationBacklog::merge_into(Entry& entry, const EscalationRequest& request) {
  EscalationRequest& kept = entry.request;
  kept.occurrences += std::max<std::int64_t>(1, request.occurrences);
  if (request.level > kept.level) {
    // The record opens (or is raised) at the most severe level seen, with the error that was.
    kept.level = request.level;
    kept.error = request.error;
    kept.labels = request.labels;
    if (kept.error.message.size() > options_.max_message_bytes) {
      kept.error.message.resize(options_.max_message_bytes);
    }
  }
}

bool EscalationBacklog::keep(EscalationRequest request, const std::string& fingerprint) {
  const std::int64_t occurrences = std::max<std::int64_t>(1, request.occurrences);
  if (auto found = by_print_.find(fingerprint); found != by_print_.end()) {
    merge_into(*found->second, request);
    stats_.deferred += occurrences;
    return true;
  }
  if (waiting_.size() >= options_.max_pending) {
    stats_.dropped += occurrences;
    return false;
  }
  stats_.deferred += occurrences;
  request.occurrences = occurrences;
  if (request.error.message.size() > options_.max_message_bytes) {
    request.error.message.resize(options_.max_message_bytes);
  }
  waiting_.push_back({std::move(request), fingerprint});
  by_print_[fingerprint] = std::prev(waiting_.end());
  return true;
}

Result<EscalationTaken> EscalationBacklog::escalate(Escalator& escalator,
                                                    const EscalationRequest& request) {
  const EscalationPlan plan = escalator.policy().plan(request.level);
  if (!plan.ticket && !plan.incident) return escalator.escalate(request);  // logged only

  EscalationRequest stamped = request;
  if (!stamped.at) stamped.at = clock_.wall_now();
  const std::string fingerprint = escalator.policy().fingerprint(stamped.labels);
  EscalationTaken pending = EscalationTaken::planned(plan);
  pending.fingerprint = fingerprint;
  pending.pending = true;

  {
    MutexLock lock(mu_);
    if (!waiting_.empty()) {
      // Others wait for the store: this one waits behind them without trying it.
      if (keep(stamped, fingerprint)) return pending;
      return Error::classified_as(
          ErrorType::database_error, Severity::high,
          "the store refuses writes and " + std::to_string(options_.max_pending) +
              " escalations wait already: dropped (" + stats_.last_error + ")");
    }
  }
  Result<EscalationTaken> taken = escalator.escalate(stamped);
  if (taken.ok() || !store_refused(taken.error())) return taken;

  const std::string refusal = taken.error().message;
  bool kept = false;
  {
    MutexLock lock(mu_);
    stats_.last_error = refusal;
    kept = keep(stamped, fingerprint);
    if (kept) {
      failing_ = true;
      if (next_retry_ == TimePoint{}) {
        retry_delay_ = options_.retry_initial;
        next_retry_ = clock_.now() + retry_delay_;
      }
    }
  }
  report_health();
  if (!kept) return taken.error();
  return pending;
}

EscalationBacklog::Pass EscalationBacklog::retry(Escalator& escalator) {
  return write_waiting(escalator, /*when_due=*/true);
}

EscalationBacklog::Pass EscalationBacklog::retry_now(Escalator& escalator) {
  return write_waiting(escalator, /*when_due=*/false);
}

EscalationBacklog::Pass EscalationBacklog::write_waiting(Escalator& escalator, bool when_due) {
  Pass pass;
  {
    MutexLock lock(mu_);
    if (retrying_ || waiting_.empty() || (when_due && clock_.now() < next_retry_)) return pass;
    retrying_ = true;
  }
  for (;;) {
    Entry entry;
    {
      MutexLock lock(mu_);
      if (waiting_.empty()) break;
      entry = std::move(waiting_.front());
      by_print_.erase(entry.fingerprint);
      waiting_.pop_front();
    }
    Result<EscalationTaken> taken = escalator.escalate(entry.request);
    MutexLock lock(mu_);
    if (taken.ok()) {
      pass.written += entry.request.occurrences;
      stats_.written_late += entry.request.occurrences;
      pass.records.push_back(std::move(*taken));
      continue;
    }
    if (!store_refused(taken.error())) {
      // Not the store: retrying would fail the same way. Counted as dropped, said by the caller.
      stats_.dropped += entry.request.occurrences;
      pass.error = taken.error().message;
      continue;
    }
    // Back to the front, with what arrived for its fingerprint meanwhile folded in.
    if (auto found = by_print_.find(entry.fingerprint); found != by_print_.end()) {
      merge_into(entry, found->second->request);
      waiting_.erase(found->second);
      by_print_.erase(found);
    }
    waiting_.push_front(std::move(entry));
    by_print_[waiting_.front().fingerprint] = waiting_.begin();
    stats_.failed_tries += 1;
    stats_.last_error = taken.error().message;
    pass.error = taken.error().message;
    retry_delay_ = std::min(retry_delay_ * 2, options_.retry_max);
    if (retry_delay_ < options_.retry_initial) retry_delay_ = options_.retry_initial;
    next_retry_ = clock_.now() + retry_delay_;
    break;
  }
  {
    MutexLock lock(mu_);
    retrying_ = false;
    if (waiting_.empty()) {
      failing_ = false;
      next_retry_ = TimePoint{};
      retry_delay_ = Duration{};
    }
  }
  report_health();
  return pass;
}

void EscalationBacklog::report_health() {
  // Reports the state as it is now, not as the caller saw it: two threads that change it at once
  // leave the last report true.
  MutexLock order(health_mu_);
  bool now = false;
  std::string error;
  {
    MutexLock lock(mu_);
    now = failing_;
    error = stats_.last_error;
  }
  if (now == reported_failing_) return;
  reported_failing_ = now;
  if (options_.on_health_change) options_.on_health_change(now, error);
}

EscalationBacklog::Stats EscalationBacklog::stats() const {
  MutexLock lock(mu_);
  Stats s = stats_;
  s.pending = waiting_.size();
  s.pending_occurrences = 0;
  for (const Entry& e : waiting_) s.pending_occurrences += e.request.occurrences;
  return s;
}

bool EscalationBacklog::failing() const {
  MutexLock lock(mu_);
  return failing_;
}

}  // namespace mend
