// File: mend/core/text.h
//
// The few text helpers every layer needs, written once: ASCII lower case (for names, units,
// schemes and header values, which are ASCII by their protocols; other bytes pass unchanged),
// and how mend writes times for people.
//
//   mend::ascii_lower("Bearer")                  // "bearer"
//   mend::duration_text(std::chrono::minutes(90))  // "90m": as a configuration file spells it
//   mend::seconds_text(0.0417)                   // "42 ms": a measured time, to read at a glance
//
// Thread-safety: pure functions.
#ifndef MEND_CORE_TEXT_H_
#define MEND_CORE_TEXT_H_

#include <string>
#include <string_view>

#include "mend/core/clock.h"

namespace mend {

std::string ascii_lower(std::string_view text);

// The shortest exact spelling that the configuration loader reads back: "2d", "2h", "90s",
// "250ms", "0s"; a duration with no exact unit is written in seconds ("1.0005s").
std::string duration_text(Duration d);

// "0.4 ms", "57 ms", "1.50 s", "41.7 s": three significant figures at most.
std::string seconds_text(double seconds);

}  // namespace mend

#endif  // MEND_CORE_TEXT_H_
