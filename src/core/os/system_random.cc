// SeededRandom::system(): the operating-system side of random.h.
#include <pthread.h>
#include <unistd.h>

#include <cstdint>
#include <random>

#include "mend/core/random.h"

namespace mend {

SeededRandom& SeededRandom::system() {
  static SeededRandom random([] {
    // A forked child would otherwise draw the same jitter as its parent.
    ::pthread_atfork(nullptr, nullptr, [] {
      system().state_.fetch_xor(static_cast<std::uint64_t>(::getpid()) * 0x9E3779B97F4A7C15ULL);
    });
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
  }());
  return random;
}

}  // namespace mend
