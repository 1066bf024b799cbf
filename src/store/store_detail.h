// File: src/store/store_detail.h (internal)
//
// What both stores (SqliteStore and PgStore) decide the same way, whatever the database: which
// occurrences of a record leave a timeline line, and the outbox states' names.
#ifndef MEND_SRC_STORE_STORE_DETAIL_H_
#define MEND_SRC_STORE_STORE_DETAIL_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "mend/core/store.h"

namespace mend::store_detail {

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
