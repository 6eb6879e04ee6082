// Result<T>: what an operation that can fail on its input returns — the value, or an Error
// with a kind and a one-line message. Parsers, validators and codecs use it (not out-parameter
// strings, not exceptions); exceptions are kept for start-up that cannot continue.
//
//   Result<Port> ParsePort(std::string_view text) {
//     if (text.empty()) return Error::Invalid("port: empty");
//     ...
//     return port;
//   }
//   auto port = ParsePort(flag);
//   if (!port) return port.error();   // pass the error on unchanged
//   Use(*port);
#pragma once

#include <concepts>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace tunnelkit {

// What kind of failure, for callers that react differently (a codec's kTooLarge closes the
// session; a config's kInvalid is reported with its field path).
enum class ErrorKind : std::uint8_t {
  kInvalid,      // malformed or out-of-range input
  kTooLarge,     // a limit (size, count, length) was exceeded
  kUnsupported,  // well-formed, but something this side does not speak
  kNotFound,     // a named thing (file, rule, tunnel) does not exist
  kIo,           // the operating system refused (open, bind, read)
};

constexpr std::string_view ToString(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalid:
      return "invalid";
    case ErrorKind::kTooLarge:
      return "too large";
    case ErrorKind::kUnsupported:
      return "unsupported";
    case ErrorKind::kNotFound:
      return "not found";
    case ErrorKind::kIo:
      return "i/o";
  }
  return "unknown";
}

struct Error {
  ErrorKind kind = ErrorKind::kInvalid;
  std::string message;  // one line, names the field or position where it can

  static Error Invalid(std::string message) { return {ErrorKind::kInvalid, std::move(message)}; }
  static Error TooLarge(std::string message) { return {ErrorKind::kTooLarge, std::move(message)}; }
  static Error Unsupported(std::string message) {
    return {ErrorKind::kUnsupported, std::move(message)};
  }
  static Error NotFound(std::string message) { return {ErrorKind::kNotFound, std::move(message)}; }
  static Error Io(std::string message) { return {ErrorKind::kIo, std::move(message)}; }

  // The same error with `context` in front ("tunnel.ingress[2]: " + message).
  Error Prefixed(std::string_view context) const& { return {kind, std::string(context) + message}; }
};

// Thrown by value()/operator* on an error: using a failed result's value is a programming error.
class BadResultAccess : public std::logic_error {
 public:
  explicit BadResultAccess(const Error& error)
      : std::logic_error("value of a failed result: " + error.message) {}
};

template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cv_t<T>, Error>, "Result<Error> is ambiguous");
  static_assert(!std::is_reference_v<T>, "Result holds values");

 public:
  Result(const T& value) : state_(std::in_place_index<0>, value) {}  // NOLINT: implicit by design
  Result(T&& value) : state_(std::in_place_index<0>, std::move(value)) {}    // NOLINT
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
  // Any value T can be made from (a string literal for Result<std::string>, a derived pointer).
  template <typename U>
  requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::remove_cvref_t<U>, T> &&
           !std::is_same_v<std::remove_cvref_t<U>, Error> &&
           !std::is_same_v<std::remove_cvref_t<U>, Result>) Result(U&& value)
      : state_(std::in_place_index<0>, T(std::forward<U>(value))) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    Check();
    return std::get<0>(state_);
  }
  const T& value() const& {
    Check();
    return std::get<0>(state_);
  }
  T&& value() && {
    Check();
    return std::get<0>(std::move(state_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  template <typename U>
  T value_or(U&& fallback) const& {
    return ok() ? std::get<0>(state_) : static_cast<T>(std::forward<U>(fallback));
  }

  // Only on a failed result (std::logic_error otherwise).
  const Error& error() const& {
    if (ok()) throw std::logic_error("error() of a successful result");
    return std::get<1>(state_);
  }
  Error&& error() && {
    if (ok()) throw std::logic_error("error() of a successful result");
    return std::get<1>(std::move(state_));
  }
  const std::string& message() const { return error().message; }
  ErrorKind kind() const { return error().kind; }

  // A successful result holding `value` (tests: EXPECT_EQ(ParseDuration("1s"), 1s)).
  friend bool operator==(const Result& result,
                         const T& value) requires std::equality_comparable<T> {
    return result.ok() && std::get<0>(result.state_) == value;
  }

 private:
  void Check() const {
    if (!ok()) throw BadResultAccess(std::get<1>(state_));
  }
  std::variant<T, Error> state_;
};

// For operations that produce nothing but can fail: `return {};` is success.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT: implicit by design

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const {
    if (ok()) throw std::logic_error("error() of a successful result");
    return error_;
  }
  const std::string& message() const { return error().message; }
  ErrorKind kind() const { return error().kind; }

 private:
  Error error_;
  bool failed_ = false;
};

}  // namespace tunnelkit
