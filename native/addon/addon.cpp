// The calmoe N-API addon: glue only (no math). Loaded by src/native.ts.
#include <napi.h>

#include "addon/bindings.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  calmoe::addon::register_backend(env, exports);
  calmoe::addon::register_calibration(env, exports);
  calmoe::addon::register_tilted(env, exports);
  calmoe::addon::register_moe(env, exports);
  calmoe::addon::register_temperature(env, exports);
  calmoe::addon::register_audit(env, exports);
  calmoe::addon::register_drift(env, exports);
  calmoe::addon::register_limits(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace

NODE_API_MODULE(calmoe, Init)
