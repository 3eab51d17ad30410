#include "addon/js_error.h"

namespace calmoe::addon {

Napi::Error to_js_error(Napi::Env env, ErrorKind kind, const std::string& message, const std::string& code) {
  Napi::Error err;
  switch (kind) {
    case ErrorKind::Type: err = Napi::TypeError::New(env, message); break;
    case ErrorKind::Range: err = Napi::RangeError::New(env, message); break;
    default: err = Napi::Error::New(env, message); break;
  }
  if (!code.empty()) err.Set("code", Napi::String::New(env, code));
  return err;
}

}  // namespace calmoe::addon
