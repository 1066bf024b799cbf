// File: mend/core/boxed.h
//
// Boxed<T>: an optional value kept on the heap. It has the parts of std::optional's interface
// that mend's structs are read with (has_value(), operator bool, *, ->, value(), reset(),
// emplace(), assignment from a T or std::nullopt), and copies deeply, but it is one pointer
// wide whatever T's size. Unlike std::optional, a Boxed moved from is empty. It is for members that
// are rarely set in structs that many tasks hold at once: Outcome::error and Outcome::escalation
// are unset in a task waiting in backoff, and such a task should be small (100,000 of them at once
// in an outage; docs/benchmarks.md).
//
//   mend::Boxed<mend::Error> error;      // 8 bytes, empty
//   error = mend::Error::http(503, "busy");
//   if (error) std::puts(error->message.c_str());
//
// Thread-safety: as a std::optional: const access from many threads, changes from one.
#ifndef MEND_CORE_BOXED_H_
#define MEND_CORE_BOXED_H_

#include <memory>
#include <optional>
#include <utility>

namespace mend {

template <class T>
class Boxed {
 public:
  Boxed() noexcept = default;
  Boxed(std::nullopt_t) noexcept {}  // NOLINT(google-explicit-constructor): as std::optional
  Boxed(const T& value) : value_(std::make_unique<T>(value)) {}        // NOLINT: as std::optional
  Boxed(T&& value) : value_(std::make_unique<T>(std::move(value))) {}  // NOLINT: as std::optional
  Boxed(const Boxed& other) : value_(other ? std::make_unique<T>(*other) : nullptr) {}
  Boxed(Boxed&&) noexcept = default;
  ~Boxed() = default;

  Boxed& operator=(const Boxed& other) {
    if (this != &other) value_ = other ? std::make_unique<T>(*other) : nullptr;
    return *this;
  }
  Boxed& operator=(Boxed&&) noexcept = default;
  Boxed& operator=(std::nullopt_t) noexcept {
    value_.reset();
    return *this;
  }
  Boxed& operator=(const T& value) {
    if (value_) {
      *value_ = value;
    } else {
      value_ = std::make_unique<T>(value);
    }
    return *this;
  }
  Boxed& operator=(T&& value) {
    if (value_) {
      *value_ = std::move(value);
    } else {
      value_ = std::make_unique<T>(std::move(value));
    }
    return *this;
  }

  template <class... Args>
  T& emplace(Args&&... args) {
    value_ = std::make_unique<T>(std::forward<Args>(args)...);
    return *value_;
  }
  void reset() noexcept { value_.reset(); }

  bool has_value() const noexcept { return value_ != nullptr; }
  explicit operator bool() const noexcept { return value_ != nullptr; }

  // Unchecked, as std::optional's: the box must hold a value.
  T& operator*() & noexcept { return *value_; }
  const T& operator*() const& noexcept { return *value_; }
  T&& operator*() && noexcept { return std::move(*value_); }
  T* operator->() noexcept { return value_.get(); }
  const T* operator->() const noexcept { return value_.get(); }

  // Checked: throws std::bad_optional_access when empty.
  T& value() & { return value_ ? *value_ : throw std::bad_optional_access(); }
  const T& value() const& { return value_ ? *value_ : throw std::bad_optional_access(); }
  T&& value() && { return value_ ? std::move(*value_) : throw std::bad_optional_access(); }

 private:
  std::unique_ptr<T> value_;
};

}  // namespace mend

#endif  // MEND_CORE_BOXED_H_
