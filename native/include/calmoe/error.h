// calmoe core error type. The core never includes N-API; the addon maps ErrorKind onto the JS
// error class (TypeError, RangeError, Error) and copies `code` so callers can branch on it.
#pragma once
#include <stdexcept>
#include <string>

namespace calmoe {

enum class ErrorKind {
  Type,         // wrong type or layout of an argument
  Range,        // value out of its allowed range (shape mismatch, label out of [0, C), NaN, ...)
  Unavailable,  // a requested backend is not usable here (device: 'cuda' without a GPU)
  Aborted,      // cancelled through an AbortSignal
  Runtime,      // anything else (CUDA runtime failure, out of memory)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message, const char* code = "")
      : std::runtime_error(message), kind_(kind), code_(code) {}
  ErrorKind kind() const noexcept { return kind_; }
  const char* code() const noexcept { return code_; }

 private:
  ErrorKind kind_;
  const char* code_;
};

[[noreturn]] inline void throw_type(const std::string& msg) { throw Error(ErrorKind::Type, msg, "CALMOE_INVALID_ARG_TYPE"); }
[[noreturn]] inline void throw_range(const std::string& msg) { throw Error(ErrorKind::Range, msg, "CALMOE_INVALID_ARG_VALUE"); }
[[noreturn]] inline void throw_runtime(const std::string& msg) { throw Error(ErrorKind::Runtime, msg, "CALMOE_RUNTIME"); }

}  // namespace calmoe
