#include "mend/core/replica_balancer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "mend/core/attempt_policy.h"

namespace mend {

namespace {

const ReplicaBalancerOptions& checked_balancer_options(int replicas,
                                                       const ReplicaBalancerOptions& o) {
  auto invalid = [](const char* what) {
    throw std::invalid_argument(std::string("replica balancing: ") + what);
  };
  if (replicas < 1) invalid("an agent has at least one replica");
  if (o.consecutive_failures < 0) invalid("consecutive_failures must be >= 0");
  if (o.failure_rate_minimum_calls < 0) invalid("failure_rate_minimum_calls must be >= 0");
  if (!(o.failure_rate_threshold > 0 && o.failure_rate_threshold <= 1)) {
    invalid("failure_rate_threshold must be in (0, 1]");
  }
  if (o.failure_rate_window <= Duration{}) invalid("failure_rate_window must be positive");
  if (o.base_ejection_time <= Duration{}) invalid("base_ejection_time must be positive");
  if (o.max_ejection_time < o.base_ejection_time) {
    invalid("max_ejection_time must be >= base_ejection_time");
  }
  if (!(o.slow_call_factor == 0 || o.slow_call_factor >= 1)) {
    invalid("slow_call_factor must be 0 (off) or >= 1");
  }
  if (o.slow_call_minimum < Duration{}) invalid("slow_call_minimum must be >= 0");
  if (o.max_ejection_percent < 0 || o.max_ejection_percent > 100) {
    invalid("max_ejection_percent must be between 0 and 100");
  }
  return o;
}

// At least one once there are two replicas (unless the percentage is 0), never all of them.
int max_ejected_replicas(int replicas, int percent) {
  if (replicas < 2 || percent == 0) return 0;
  return std::min(replicas - 1, std::max(1, replicas * percent / 100));
}

bool replica_listed(std::span<const int> replicas, int replica) {
  return std::find(replicas.begin(), replicas.end(), replica) != replicas.end();
}

}  // namespace

ReplicaBalancer::ReplicaBalancer(int replicas, ReplicaBalancerOptions options)
    : replica_count_(replicas),
      options_(checked_balancer_options(replicas, options)),
      max_ejected_(max_ejected_replicas(replicas, options.max_ejection_percent)),
      replicas_(static_cast<std::size_t>(replicas)) {}

bool ReplicaBalancer::counts_against_replica(ErrorType type) noexcept {
  switch (category_of(type)) {
    case ErrorCategory::transient:
      // A 429 is the replica asking for less: ejecting it would only pile its share onto the
      // others, which are as likely to be asking the same.
      return type != ErrorType::rate_limit_exceeded;
    case ErrorCategory::resource:
    case ErrorCategory::system:
      return true;
    case ErrorCategory::logic:     // the task's own fault: every replica would refuse it
    case ErrorCategory::external:  // a service behind the agent, the same for every replica
      return false;
  }
  return false;
}

ReplicaCallResult ReplicaBalancer::result_of(const Error& error) noexcept {
  if (AttemptPolicy::refused_locally(error)) return ReplicaCallResult::ignored;
  // Any 5xx but 501 and 505 (the request's own fault) is the replica's, as Envoy's consecutive_5xx
  // counts it: a bare 500 (processing_failed, category logic) from one replica while the others
  // answer is that replica's fault, whatever the task's category says.
  if (error.status && *error.status >= 500 && *error.status < 600 && *error.status != 501 &&
      *error.status != 505) {
    return ReplicaCallResult::failed;
  }
  return counts_against_replica(error.type) ? ReplicaCallResult::failed
                                            : ReplicaCallResult::succeeded;
}

int ReplicaBalancer::pick(TimePoint now, RandomSource& random, std::span<const int> avoid) {
  MutexLock lock(mu_);
  if (replica_count_ == 1) {
    ++replicas_[0].outstanding;
    ++replicas_[0].calls;
    return 0;
  }
  // The candidates, counted without being listed (no allocation on a call's path): the replicas
  // in service and not avoided; else those in service; else the ready ones; else (every probe
  // fails) all of them.
  auto [first, second] = choose_two(Candidates::untried, now, avoid, random);
  if (first < 0) std::tie(first, second) = choose_two(Candidates::in_service, now, avoid, random);
  if (first < 0) std::tie(first, second) = choose_two(Candidates::ready, now, avoid, random);
  if (first < 0) std::tie(first, second) = choose_two(Candidates::all, now, avoid, random);
  int chosen = first;
  if (second >= 0) {
    const int first_load = replicas_[first].outstanding;
    const int second_load = replicas_[second].outstanding;
    if (first_load != second_load) {
      chosen = first_load < second_load ? first : second;
    } else {
      // The one that comes first after the last replica picked, in round-robin order.
      const int next = next_in_turn_;
      auto turn = [&](int r) { return (r - next + replica_count_) % replica_count_; };
      chosen = turn(first) < turn(second) ? first : second;
    }
  }
  next_in_turn_ = (chosen + 1) % replica_count_;
  ++replicas_[chosen].outstanding;
  ++replicas_[chosen].calls;
  return chosen;
}

bool ReplicaBalancer::candidate(int replica, Candidates which, TimePoint now,
                                std::span<const int> avoid) const {
  const Replica& r = replicas_[static_cast<std::size_t>(replica)];
  switch (which) {
    case Candidates::untried:
      return r.in_service(now) && !replica_listed(avoid, replica);
    case Candidates::in_service:
      return r.in_service(now);
    case Candidates::ready:
      return r.ready;
    case Candidates::all:
      return true;
  }
  return true;
}

std::pair<int, int> ReplicaBalancer::choose_two(Candidates which, TimePoint now,
                                                std::span<const int> avoid,
                                                RandomSource& random) const {
  int count = 0;
  int first = -1;
  int second = -1;
  for (int i = 0; i < replica_count_; ++i) {
    if (!candidate(i, which, now, avoid)) continue;
    if (count == 0) first = i;
    if (count == 1) second = i;
    ++count;
  }
  if (count > 2) {
    // Two distinct candidates, uniformly: the i-th and the j-th of them.
    const int i = std::min(count - 1, static_cast<int>(random.next_unit() * count));
    int j = std::min(count - 2, static_cast<int>(random.next_unit() * (count - 1)));
    if (j >= i) ++j;
    int seen = 0;
    for (int r = 0; r < replica_count_; ++r) {
      if (!candidate(r, which, now, avoid)) continue;
      if (seen == i) first = r;
      if (seen == j) second = r;
      ++seen;
    }
  }
  return {first, count == 1 ? -1 : second};
}

void ReplicaBalancer::set_ready(int replica, bool ready) {
  if (replica < 0 || replica >= replica_count_) return;
  MutexLock lock(mu_);
  replicas_[static_cast<std::size_t>(replica)].ready = ready;
}

bool ReplicaBalancer::has_untried(TimePoint now, std::span<const int> tried) const {
  MutexLock lock(mu_);
  for (int i = 0; i < replica_count_; ++i) {
    if (replicas_[i].in_service(now) && !replica_listed(tried, i)) return true;
  }
  return false;
}

void ReplicaBalancer::report(int replica, ReplicaCallResult result, TimePoint now,
                             Duration latency) {
  if (replica < 0 || replica >= replica_count_) return;
  MutexLock lock(mu_);
  Replica& r = replicas_[static_cast<std::size_t>(replica)];
  if (r.outstanding > 0) --r.outstanding;
  if (result == ReplicaCallResult::ignored) return;
  // A moving average over about the last eight calls (as TCP's smoothed round-trip time).
  r.average_latency =
      !r.latency_known ? latency : r.average_latency + (latency - r.average_latency) / 8;
  r.latency_known = true;
  // An answer far slower than the agent's other replicas give theirs counts against it too.
  const bool slow_answer = result == ReplicaCallResult::succeeded && slow(replica, latency);
  const bool failed = result == ReplicaCallResult::failed || slow_answer;
  if (result == ReplicaCallResult::failed) ++r.failures;
  if (slow_answer) ++r.slow_calls;
  // A call that was out while the replica was ejected tells nothing new: it is out already, and
  // comes back with its counts afresh.
  if (r.ejected(now)) return;
  if (!r.window_open || now - r.window_start >= options_.failure_rate_window) {
    r.window_open = true;
    r.window_start = now;
    r.window_calls = 0;
    r.window_failures = 0;
  }
  ++r.window_calls;
  if (!failed) {
    r.consecutive_failures = 0;
    return;
  }
  ++r.window_failures;
  ++r.consecutive_failures;
  const bool in_a_row =
      options_.consecutive_failures > 0 && r.consecutive_failures >= options_.consecutive_failures;
  const bool by_share = options_.failure_rate_minimum_calls > 0 &&
                        r.window_calls >= options_.failure_rate_minimum_calls &&
                        r.window_failures >= options_.failure_rate_threshold * r.window_calls;
  if (in_a_row || by_share) try_eject(r, now);
}

bool ReplicaBalancer::slow(int replica, Duration latency) const {
  if (options_.slow_call_factor == 0 || replica_count_ < 2 ||
      latency < options_.slow_call_minimum) {
    return false;
  }
  // Against the others' moving averages (the replica's own would follow its slowness).
  Duration sum{};
  int peers = 0;
  for (int i = 0; i < replica_count_; ++i) {
    const Replica& p = replicas_[static_cast<std::size_t>(i)];
    if (i == replica || !p.latency_known) continue;
    sum += p.average_latency;
    ++peers;
  }
  if (peers == 0) return false;
  return static_cast<double>(latency.count()) >
         options_.slow_call_factor * static_cast<double>(sum.count()) / peers;
}

void ReplicaBalancer::try_eject(Replica& r, TimePoint now) {
  // Its counts start afresh whether or not it goes: one more failure is not another reason.
  r.consecutive_failures = 0;
  r.window_open = false;
  r.window_calls = 0;
  r.window_failures = 0;
  const auto ejected_now = std::count_if(replicas_.begin(), replicas_.end(),
                                         [&](const Replica& x) { return x.ejected(now); });
  if (ejected_now >= max_ejected_) return;
  const Duration base = options_.base_ejection_time;
  if (r.ejection_multiplier > 0) {
    // One step down for each base ejection time it has since served without being ejected.
    const auto served = (now - r.ejected_until) / base;
    r.ejection_multiplier =
        static_cast<int>(std::max<std::int64_t>(0, r.ejection_multiplier - served));
  }
  const std::int64_t cap_steps = options_.max_ejection_time / base;
  r.ejection_multiplier =
      static_cast<int>(std::min<std::int64_t>(r.ejection_multiplier + 1, cap_steps + 1));
  const Duration time = std::min(base * r.ejection_multiplier, options_.max_ejection_time);
  r.ejected_until = now + time;
  ++r.ejections;
}

void ReplicaBalancer::continue_from(const ReplicaBalancer& before,
                                    std::span<const int> before_index) {
  if (&before == this) return;
  std::vector<Replica> theirs;
  {
    MutexLock lock(before.mu_);
    theirs = before.replicas_;
  }
  MutexLock lock(mu_);
  for (std::size_t i = 0; i < replicas_.size() && i < before_index.size(); ++i) {
    const int from = before_index[i];
    if (from < 0 || static_cast<std::size_t>(from) >= theirs.size()) continue;
    replicas_[i] = theirs[static_cast<std::size_t>(from)];
    replicas_[i].outstanding = 0;
  }
}

std::vector<ReplicaSnapshot> ReplicaBalancer::snapshot(TimePoint now) const {
  MutexLock lock(mu_);
  std::vector<ReplicaSnapshot> out;
  out.reserve(replicas_.size());
  for (const Replica& r : replicas_) {
    ReplicaSnapshot s;
    s.outstanding = r.outstanding;
    s.ready = r.ready;
    s.ejected = r.ejected(now);
    if (s.ejected) s.ejected_until = r.ejected_until;
    s.ejection_multiplier = r.ejection_multiplier;
    s.ejections = r.ejections;
    s.consecutive_failures = r.consecutive_failures;
    const bool window_current =
        r.window_open && now - r.window_start < options_.failure_rate_window;
    s.window_calls = window_current ? r.window_calls : 0;
    s.window_failures = window_current ? r.window_failures : 0;
    s.calls = r.calls;
    s.failures = r.failures;
    s.slow_calls = r.slow_calls;
    s.average_latency = r.average_latency;
    out.push_back(s);
  }
  return out;
}

}  // namespace mend
