// Test support: waiting for something other threads or processes make true.
//
//   ASSERT_TRUE(eventually([&] { return server.connections() == 0; }));
//
// The condition is checked at once, then again after short pauses (50 us, doubling up to 5 ms), so
// that a fast change is seen within microseconds and a slow one costs no busy core. The limit is a
// bound for a test that would otherwise hang, not a timing assumption: pass a shorter one only
// where the test means "within this long".
#ifndef MEND_TESTS_SUPPORT_EVENTUALLY_H_
#define MEND_TESTS_SUPPORT_EVENTUALLY_H_

#include <algorithm>
#include <chrono>
#include <thread>

namespace mend::testing {

template <class Condition>
bool eventually(Condition condition,
                std::chrono::steady_clock::duration limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::chrono::microseconds pause(50);
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace mend::testing

#endif  // MEND_TESTS_SUPPORT_EVENTUALLY_H_
