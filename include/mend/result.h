// File: mend/result.h
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
#ifndef MEND_RESULT_H_
#define MEND_RESULT_H_

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "mend/error.h"

namespace mend {

namespace detail {
// The error half of a Result: out of line, so that a successful Result<T> is no bigger than T
// plus a pointer, and moving or destroying one costs a pointer test rather than a variant switch.
class ErrorSlot {
 public:
  ErrorSlot() = default;
  explicit ErrorSlot(Error error) : error_(std::make_unique<Error>(std::move(error))) {}
  ErrorSlot(const ErrorSlot& other)
      : error_(other.error_ ? std::make_unique<Error>(*other.error_) : nullptr) {}
  ErrorSlot& operator=(const ErrorSlot& other) {
    if (this != &other) error_ = other.error_ ? std::make_unique<Error>(*other.error_) : nullptr;
    return *this;
  }
  ErrorSlot(ErrorSlot&&) noexcept = default;
  ErrorSlot& operator=(ErrorSlot&&) noexcept = default;

  bool has_error() const noexcept { return error_ != nullptr; }
  Error& get() const noexcept { return *error_; }

 private:
  std::unique_ptr<Error> error_;
};
}  // namespace detail

template <class T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Error>, "Result<Error> is ambiguous");

 public:
  using value_type = T;
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit

  bool ok() const noexcept { return !error_.has_error(); }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return checked(); }
  const T& value() const& { return const_cast<Result*>(this)->checked(); }
  T&& value() && { return std::move(checked()); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  template <class U>
  T value_or(U&& fallback) const& {
    return ok() ? *value_ : static_cast<T>(std::forward<U>(fallback));
  }

  Error& error() & { return error_.get(); }
  const Error& error() const& { return error_.get(); }
  Error&& error() && { return std::move(error_.get()); }

 private:
  T& checked() {
    if (!ok()) throw_error(error());
    return *value_;
  }
  std::optional<T> value_;
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

}  // namespace mend

#endif  // MEND_RESULT_H_
