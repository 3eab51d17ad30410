// N-API surface of the temperature-scaling NLL (see src/calibrate/ for the typed TS API).
// temperatureNll(scores, rows, cols, labels, temperature,
//                { input, sumTolerance, rowStride, weights, name, device }, async)
//   -> { weight, nll, d1, d2, rows }
// temperatureApply(scores, rows, cols, temperature, { ... }, async) -> Float32Array
#include <memory>

#include "addon/args.h"
#include "addon/async_task.h"
#include "addon/call_inputs.h"
#include "addon/bindings.h"
#include "calmoe/error.h"
#include "calmoe/temperature.h"
#include "calmoe/limits.h"

namespace calmoe::addon {
namespace {

Napi::Object eval_to_js(Napi::Env env, const TemperatureEval& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("weight", e.weight);
  o.Set("nll", e.nll);
  o.Set("d1", e.d1);
  o.Set("d2", e.d2);
  o.Set("rows", double(e.rows));
  return o;
}

// The score view and its options (input, sumTolerance, rowStride, name), checked to lie inside
// the array: (rows - 1) * stride + cols elements.
TemperatureArg view_arg(const View<const float>& scores, int64_t rows, int64_t cols, const Napi::Object& o, CallInputs& in) {
  TemperatureArg a;
  a.kind = ScoreKind(choice(own(o, "input"), "input", {"probabilities", "logits"}));
  a.sum_tolerance = number(own(o, "sumTolerance"), "sumTolerance");
  a.row_stride = own(o, "rowStride").IsUndefined() ? cols : integer(own(o, "rowStride"), "rowStride", cols, limits::kMaxElements);
  if (!own(o, "name").IsUndefined()) {
    if (!own(o, "name").IsString()) throw_type("name: expected a string");
    a.name = own(o, "name").As<Napi::String>().Utf8Value();
  }
  const int64_t need = rows == 0 ? 0 : (rows - 1) * a.row_stride + cols;
  if (int64_t(scores.length) < need)
    throw_range(a.name + ": has " + std::to_string(scores.length) + " elements but " + std::to_string(rows) + " rows of " + std::to_string(cols) +
                " columns with row stride " + std::to_string(a.row_stride) + " need " + std::to_string(need));
  a.scores = in.hold(scores);
  a.rows = rows;
  a.cols = cols;
  return a;
}

Napi::Value TemperatureNll(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<const float> scores = f32_array(arg(info, 0, "scores"), "scores");
    const int64_t rows = integer(arg(info, 1, "rows"), "rows", 0, limits::kMaxElements);
    const int64_t cols = integer(arg(info, 2, "cols"), "cols", 1, limits::kMaxIds);
    View<const int32_t> labels = i32_array(arg(info, 3, "labels"), "labels");
    const double temperature = number(arg(info, 4, "temperature"), "temperature");
    Napi::Object o = object(arg(info, 5, "options"), "options");
    const bool async = info.Length() > 6 && boolean(info[6], "async");
    auto in = std::make_shared<CallInputs>(async);
    require_length(labels.length, std::size_t(rows), "labels", "labels (one per row)");
    TemperatureArg a = view_arg(scores, rows, cols, o, *in);
    if (!own(o, "weights").IsUndefined()) {
      View<const float> w = f32_array(own(o, "weights"), "weights");
      require_length(w.length, std::size_t(rows), "weights", "weights (one per row)");
      a.weights = in->hold(w);
    }
    a.labels = in->hold(labels);
    const Device dev = resolve_device(device_request(own(o, "device")));
    if (!async) return eval_to_js(info.Env(), temperature_nll(dev, a, temperature));
    auto out = std::make_shared<TemperatureEval>();
    return AsyncTask::Start(
        info.Env(), {}, [in, out, dev, a, temperature]() { *out = temperature_nll(dev, a, temperature); },
        [out](Napi::Env env) -> Napi::Value { return eval_to_js(env, *out); });
  });
}

// temperatureApply(scores, rows, cols, temperature, { input, sumTolerance, rowStride, name, device }, async)
//   -> Float32Array (rows x cols scaled probabilities)
Napi::Value TemperatureApply(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<const float> scores = f32_array(arg(info, 0, "scores"), "scores");
    const int64_t rows = integer(arg(info, 1, "rows"), "rows", 0, limits::kMaxElements);
    const int64_t cols = integer(arg(info, 2, "cols"), "cols", 1, limits::kMaxIds);
    const double temperature = number(arg(info, 3, "temperature"), "temperature");
    Napi::Object o = object(arg(info, 4, "options"), "options");
    const bool async = info.Length() > 5 && boolean(info[5], "async");
    auto in = std::make_shared<CallInputs>(async);
    TemperatureArg a = view_arg(scores, rows, cols, o, *in);
    const Device dev = resolve_device(device_request(own(o, "device")));
    if (rows < 1) throw_range(a.name + ": expected at least one row, got " + std::to_string(rows));
    auto out = Napi::Float32Array::New(info.Env(), std::size_t(rows * cols));
    float* od = out.Data();
    if (!async) {
      temperature_apply(dev, a, temperature, od);
      return out;
    }
    auto out_ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(out.As<Napi::Value>()));
    return AsyncTask::Start(
        info.Env(), {out}, [in, dev, a, temperature, od]() { temperature_apply(dev, a, temperature, od); },
        [out_ref](Napi::Env) -> Napi::Value { return out_ref->Value(); });
  });
}

}  // namespace

void register_temperature(Napi::Env env, Napi::Object exports) {
  exports.Set("temperatureNll", Napi::Function::New(env, TemperatureNll, "temperatureNll"));
  exports.Set("temperatureApply", Napi::Function::New(env, TemperatureApply, "temperatureApply"));
}

}  // namespace calmoe::addon
