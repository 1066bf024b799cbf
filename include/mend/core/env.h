// File: mend/core/env.h
//
// Env bundles everything a policy needs from the outside world: the clock, the sleeper that waits
// out backoff delays, the random source for jitter, the classifier, and where events go. As in
// LevelDB's Env, all such access passes through it, so tests swap in a manual clock, a sleeper that
// only advances that clock, a fixed random draw, and a recording event sink. Env is the one place
// that picks the operating system's implementations (system_clock.h) as the defaults.
//
//   mend::Env env = mend::Env::system();   // real time, standard classifier, no events
//   env.clock = &manual_clock;             // a test's own
//
// Thread-safety: Env is a bundle of pointers; what they point to must outlive every pipeline using
// it and be thread-safe (all of mend's own implementations are).
#ifndef MEND_CORE_ENV_H_
#define MEND_CORE_ENV_H_

#include "mend/core/classifier.h"
#include "mend/core/clock.h"
#include "mend/core/events.h"
#include "mend/core/random.h"
#include "mend/core/system_clock.h"

namespace mend {

// The shared instance of Classifier::standard().
const Classifier& standard_classifier();

struct Env {
  const Clock* clock = &SystemClock::instance();
  Sleeper* sleeper = &SystemSleeper::instance();
  RandomSource* random = &SeededRandom::system();
  const Classifier* classifier = &standard_classifier();
  EventSink* events = nullptr;  // none: decisions are not reported

  static Env system() { return Env{}; }

  void emit(const Event& event) const noexcept {
    if (events != nullptr) events->emit(event);
  }
};

}  // namespace mend

#endif  // MEND_CORE_ENV_H_
