// Reading JS arguments into core views. Every reader names the argument in its error, in the
// better-sqlite3 style: "scores: expected a Float32Array". The TS layer validates user input
// first with friendlier messages; these checks keep the addon safe when called directly.
#pragma once
#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "calmoe/device.h"

namespace calmoe::addon {

template <class T>
struct View {
  T* data = nullptr;
  std::size_t length = 0;
};

View<const float> f32_array(const Napi::Value& v, const char* name);
View<float> f32_array_mut(const Napi::Value& v, const char* name);
View<const int32_t> i32_array(const Napi::Value& v, const char* name);
View<const uint8_t> u8_array(const Napi::Value& v, const char* name);
View<uint64_t> u64_array(const Napi::Value& v, const char* name);  // BigUint64Array
View<const double> f64_array(const Napi::Value& v, const char* name);

// A whole number in [lo, hi].
int64_t integer(const Napi::Value& v, const char* name, int64_t lo, int64_t hi);
double number(const Napi::Value& v, const char* name);
bool boolean(const Napi::Value& v, const char* name);
// One of `allowed`, returning its index.
int choice(const Napi::Value& v, const char* name, std::initializer_list<const char*> allowed);

Napi::Object object(const Napi::Value& v, const char* name);
// o[key] if o has it as its own property, else undefined: an option never comes from a prototype
// (a polluted Object.prototype must not change a call).
Napi::Value own(const Napi::Object& o, const char* key);
// The argument at `i`, or a TypeError naming it when missing.
Napi::Value arg(const Napi::CallbackInfo& info, std::size_t i, const char* name);

DeviceRequest device_request(const Napi::Value& v);  // 'auto' | 'cpu' | 'cuda'

void require_length(std::size_t got, std::size_t want, const char* name, const char* what);

}  // namespace calmoe::addon
