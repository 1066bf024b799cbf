// File: src/store/store_detail.h (internal)
//
// What both stores (SqliteStore and PgStore) decide the same way, whatever the database: the
// codecs between mend's values and their columns (times as whole milliseconds, counts and limits
// as 64-bit integers, enums by name), which occurrences of a record leave a timeline line, and
// the outbox states' names.
#ifndef MEND_SRC_STORE_STORE_DETAIL_H_
#define MEND_SRC_STORE_STORE_DETAIL_H_

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "mend/core/store.h"

namespace mend::store_detail {

inline std::int64_t to_millis(WallTime t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

inline WallTime from_millis(std::int64_t ms) {
  // A stored value beyond what WallTime holds (about +-292 years) saturates instead of
  // overflowing.
  constexpr std::int64_t kLimit =
      std::chrono::duration_cast<std::chrono::milliseconds>(WallTime::duration::max()).count();
  ms = std::clamp(ms, -kLimit, kLimit);
  return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::milliseconds(ms)));
}

inline int clamp_to_int(std::int64_t v) {
  return static_cast<int>(std::clamp<std::int64_t>(v, std::numeric_limits<int>::min(),
                                                   std::numeric_limits<int>::max()));
}

inline std::int64_t limit_value(std::size_t limit) {
  return static_cast<std::int64_t>(std::min<std::size_t>(
      limit, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

template <class E, class Parse>
E parse_or(const std::string& name, Parse parse, E fallback) {
  std::optional<E> parsed = parse(name);
  return parsed ? *parsed : fallback;
}

// The highest milestone in (before, after], or 0: a count that jumps (escalations that waited for
// the store together) still leaves the line of the milestone it passed. Every count up to ten is
// one; above ten only the powers of ten are.
inline std::int64_t milestone_reached(std::int64_t before, std::int64_t after) {
  if (after <= before) return 0;
  if (after <= 10) return after;
  std::int64_t power = 10;
  while (power <= after / 10) power *= 10;
  return power > before ? power : 0;
}

inline std::optional<OutboxState> parse_outbox_state(std::string_view name) noexcept {
  for (OutboxState s : {OutboxState::pending, OutboxState::delivered, OutboxState::dead}) {
    if (to_string(s) == name) return s;
  }
  return std::nullopt;
}

}  // namespace mend::store_detail

#endif  // MEND_SRC_STORE_STORE_DETAIL_H_
