// One registration function per binding file; addon.cpp calls them all.
#pragma once
#include <napi.h>

namespace calmoe::addon {
void register_backend(Napi::Env env, Napi::Object exports);
void register_calibration(Napi::Env env, Napi::Object exports);
void register_tilted(Napi::Env env, Napi::Object exports);
void register_moe(Napi::Env env, Napi::Object exports);
void register_temperature(Napi::Env env, Napi::Object exports);
void register_audit(Napi::Env env, Napi::Object exports);
void register_drift(Napi::Env env, Napi::Object exports);
void register_limits(Napi::Env env, Napi::Object exports);
}  // namespace calmoe::addon
