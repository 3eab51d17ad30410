// Turning core errors into JS errors: calmoe::Error kinds map onto TypeError / RangeError / Error,
// with a `code` property callers can branch on.
#pragma once
#include <napi.h>

#include "calmoe/error.h"

namespace calmoe::addon {

// The JS error value for a core error (used directly and by async workers on the main thread).
Napi::Error to_js_error(Napi::Env env, ErrorKind kind, const std::string& message, const std::string& code);

// Runs `body`, converting calmoe::Error and std::exception into the matching JS exception.
template <class F>
Napi::Value guarded(const Napi::CallbackInfo& info, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const calmoe::Error& e) {
    throw to_js_error(info.Env(), e.kind(), e.what(), e.code());
  } catch (const std::bad_alloc&) {
    throw to_js_error(info.Env(), ErrorKind::Runtime, "calmoe: out of host memory", "CALMOE_OOM");
  } catch (const std::exception& e) {
    throw to_js_error(info.Env(), ErrorKind::Runtime, std::string("calmoe: ") + e.what(), "CALMOE_RUNTIME");
  }
}

}  // namespace calmoe::addon
