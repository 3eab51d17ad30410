#include "addon/args.h"

#include <cmath>

#include "calmoe/error.h"

namespace calmoe::addon {
namespace {

template <class T>
View<T> typed(const Napi::Value& v, napi_typedarray_type type, const char* name, const char* type_name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw_type(std::string(name) + ": expected a " + type_name);
  napi_env env = v.Env();
  napi_typedarray_type t;
  size_t length = 0;
  void* data = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, v, &t, &length, &data, &buffer, &offset) != napi_ok)
    throw_type(std::string(name) + ": expected a " + type_name);
  // Memory another thread may write while calmoe reads it (a SharedArrayBuffer) has no single
  // value to compute on: refused by name, like any other unsupported input.
  bool is_ab = false;
  if (napi_is_arraybuffer(env, buffer, &is_ab) != napi_ok || !is_ab)
    throw_type(std::string(name) + ": expected a " + type_name + " over an ArrayBuffer, got one over a SharedArrayBuffer (copy it: new " +
               type_name + "(array))");
  View<T> out;
  out.data = static_cast<T*>(data);
  out.length = length;
  return out;
}

}  // namespace

View<const float> f32_array(const Napi::Value& v, const char* name) { return typed<const float>(v, napi_float32_array, name, "Float32Array"); }
View<float> f32_array_mut(const Napi::Value& v, const char* name) { return typed<float>(v, napi_float32_array, name, "Float32Array"); }
View<const int32_t> i32_array(const Napi::Value& v, const char* name) { return typed<const int32_t>(v, napi_int32_array, name, "Int32Array"); }
View<const uint8_t> u8_array(const Napi::Value& v, const char* name) { return typed<const uint8_t>(v, napi_uint8_array, name, "Uint8Array"); }
View<uint64_t> u64_array(const Napi::Value& v, const char* name) { return typed<uint64_t>(v, napi_biguint64_array, name, "BigUint64Array"); }
View<const double> f64_array(const Napi::Value& v, const char* name) { return typed<const double>(v, napi_float64_array, name, "Float64Array"); }

double number(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw_type(std::string(name) + ": expected a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t integer(const Napi::Value& v, const char* name, int64_t lo, int64_t hi) {
  const double d = number(v, name);
  if (!std::isfinite(d) || std::floor(d) != d) throw_range(std::string(name) + ": expected an integer");
  if (d < double(lo) || d > double(hi))
    throw_range(std::string(name) + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(int64_t(d)));
  return int64_t(d);
}

bool boolean(const Napi::Value& v, const char* name) {
  if (!v.IsBoolean()) throw_type(std::string(name) + ": expected a boolean");
  return v.As<Napi::Boolean>().Value();
}

int choice(const Napi::Value& v, const char* name, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "'" : ", '") + std::string(a) + "'";
  if (!v.IsString()) throw_type(std::string(name) + ": expected one of " + list);
  const std::string s = v.As<Napi::String>().Utf8Value();
  int i = 0;
  for (const char* a : allowed) {
    if (s == a) return i;
    ++i;
  }
  throw_range(std::string(name) + ": expected one of " + list + ", got '" + s + "'");
}

Napi::Object object(const Napi::Value& v, const char* name) {
  if (!v.IsObject()) throw_type(std::string(name) + ": expected an object");
  return v.As<Napi::Object>();
}

Napi::Value own(const Napi::Object& o, const char* key) {
  return o.HasOwnProperty(key) ? o.Get(key) : o.Env().Undefined();
}

Napi::Value arg(const Napi::CallbackInfo& info, std::size_t i, const char* name) {
  if (i >= info.Length() || info[i].IsUndefined()) throw_type(std::string(name) + ": missing argument");
  return info[i];
}

DeviceRequest device_request(const Napi::Value& v) {
  if (v.IsUndefined()) return DeviceRequest::Auto;
  return DeviceRequest(choice(v, "device", {"auto", "cpu", "cuda"}));
}

void require_length(std::size_t got, std::size_t want, const char* name, const char* what) {
  if (got != want)
    throw_range(std::string(name) + ": expected " + std::to_string(want) + " " + what + ", got " + std::to_string(got));
}

}  // namespace calmoe::addon
