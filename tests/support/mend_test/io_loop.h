// Test support: an io_context run by its own threads until the object goes, for HTTP clients and
// servers in tests.
#ifndef MEND_TESTS_SUPPORT_IO_LOOP_H_
#define MEND_TESTS_SUPPORT_IO_LOOP_H_

// clang-format off
#include <utility>  // before Asio's coroutine headers: Boost 1.74's awaitable.hpp forgets it
// clang-format on

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <thread>
#include <vector>

namespace mend::testing {

class IoLoop {
 public:
  explicit IoLoop(int threads = 1) : guard_(boost::asio::make_work_guard(io_)) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~IoLoop() {
    guard_.reset();
    io_.stop();
    for (std::thread& t : threads_) t.join();
  }
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  boost::asio::any_io_executor executor() { return io_.get_executor(); }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
};

// An io_context run by one thread of its own, for as long as it lives, for tests that check which
// thread ran what. Declare what its handlers use (promises, sinks, the workflow) before it, so that
// they outlive its thread.
struct RunningIo {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread{[this] { io.run(); }};
  ~RunningIo() {
    work.reset();
    io.stop();
    thread.join();
  }
};

}  // namespace mend::testing

#endif  // MEND_TESTS_SUPPORT_IO_LOOP_H_
