// File: mend/core/result.h
//
// Result<T>: a value or an `Error`, for code that does not use exceptions (and for mend's own
// insides, which carry errors as values so that classification is the same either way).
//
//   mend::Result<int> parse(std::string_view s) {
//     if (s.empty()) return mend::Error::classified_as(mend::ErrorType::validation_failed,
//                                                      mend::Severity::low, "empty");
//     return 42;
//   }
//   if (auto r = parse(text); r.ok()) use(*r); else log(r.error().describe());
//
// Thread-safety: a value type.
#ifndef MEND_CORE_RESULT_H_
#define MEND_CORE_RESULT_H_

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "mend/core/error.h"

namespace mend {

namespace detail {
// The error half of a Result: out of line, so that a successful Result<T> is no bigger than T
// plus a pointer, and moving or destroying one costs a pointer test rather than a variant switch.
// The pointer is also the Result's discriminant. A moved-from error slot points at a shared,
// immutable placeholder (not null), so a moved-from failed Result still reads as failed.
class ErrorSlot {
 public:
  ErrorSlot() = default;
  explicit ErrorSlot(Error error) : error_(new Error(std::move(error))) {}
  ErrorSlot(const ErrorSlot& other)
      : error_(other.owns() ? new Error(*other.error_) : other.error_) {}
  ErrorSlot& operator=(const ErrorSlot& other) {
    if (this != &other) {
      ErrorSlot copy(other);
      swap(copy);
    }
    return *this;
  }
  ErrorSlot(ErrorSlot&& other) noexcept : error_(other.error_) {
    if (other.error_ != nullptr) other.error_ = moved_from();
  }
  ErrorSlot& operator=(ErrorSlot&& other) noexcept {
    if (this != &other) {
      ErrorSlot taken(std::move(other));
      swap(taken);
    }
    return *this;
  }
  ~ErrorSlot() {
    if (owns()) delete error_;
  }

  bool has_error() const noexcept { return error_ != nullptr; }
  Error& get() const noexcept { return *error_; }

 private:
  static Error* moved_from() noexcept;
  bool owns() const noexcept { return error_ != nullptr && error_ != moved_from(); }
  void swap(ErrorSlot& other) noexcept { std::swap(error_, other.error_); }
  Error* error_ = nullptr;
};
}  // namespace detail

template <class T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Error>, "Result<Error> is ambiguous");

 public:
  using value_type = T;
  Result(T value) { ::new (static_cast<void*>(&value_)) T(std::move(value)); }  // NOLINT: implicit
  Result(Error error) : error_(std::move(error)) {}                             // NOLINT: implicit
  Result(const Result& other) : error_(other.error_) {
    if (ok()) ::new (static_cast<void*>(&value_)) T(other.value_);
  }
  Result(Result&& other) noexcept(std::is_nothrow_move_constructible_v<T>)
      : error_(std::move(other.error_)) {
    if (ok()) ::new (static_cast<void*>(&value_)) T(std::move(other.value_));
  }
  Result& operator=(const Result& other) {
    if (this != &other) {
      Result copy(other);
      *this = std::move(copy);
    }
    return *this;
  }
  Result& operator=(Result&& other) noexcept(std::is_nothrow_move_constructible_v<T>) {
    if (this != &other) {
      destroy_value();
      error_ = std::move(other.error_);
      if (ok()) ::new (static_cast<void*>(&value_)) T(std::move(other.value_));
    }
    return *this;
  }
  ~Result() { destroy_value(); }

  bool ok() const noexcept { return !error_.has_error(); }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return checked(); }
  const T& value() const& { return const_cast<Result*>(this)->checked(); }
  T&& value() && { return std::move(checked()); }
  T& operator*() & { return value_; }
  const T& operator*() const& { return value_; }
  T* operator->() { return &value_; }
  const T* operator->() const { return &value_; }
  template <class U>
  T value_or(U&& fallback) const& {
    return ok() ? value_ : static_cast<T>(std::forward<U>(fallback));
  }

  Error& error() & { return error_.get(); }
  const Error& error() const& { return error_.get(); }
  Error&& error() && { return std::move(error_.get()); }

 private:
  T& checked() {
    if (!ok()) throw_error(error());
    return value_;
  }
  void destroy_value() noexcept {
    if (ok()) value_.~T();
  }
  // The value lives here exactly when there is no error. A union rather than std::optional: the
  // error pointer already says which, and optional's extra flag byte, copied together with a
  // small T as one word, stalled every call on store forwarding.
  union {
    T value_;
  };
  detail::ErrorSlot error_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  using value_type = void;
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit

  bool ok() const noexcept { return !error_.has_error(); }
  explicit operator bool() const noexcept { return ok(); }
  void value() const {
    if (!ok()) throw_error(error());
  }
  Error& error() & { return error_.get(); }
  const Error& error() const& { return error_.get(); }
  Error&& error() && { return std::move(error_.get()); }

 private:
  detail::ErrorSlot error_;
};

template <class T>
struct is_result : std::false_type {};
template <class T>
struct is_result<Result<T>> : std::true_type {};
template <class T>
inline constexpr bool is_result_v = is_result<std::remove_cvref_t<T>>::value;

namespace detail {
// Calls `fn`, which returns a Result, turning an exception it throws into the error of that
// Result: for callers of user code (invokers, sinks, receivers) whose failure must fail one step,
// not the caller's whole loop.
template <class Fn>
auto guarded(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Error::from_live_exception(e, std::current_exception());
  } catch (...) {
    return Error::from_exception(std::current_exception());
  }
}
}  // namespace detail

}  // namespace mend

#endif  // MEND_CORE_RESULT_H_
