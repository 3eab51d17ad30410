// tiltedWeights(losses, eta, gradient, { weights, coefficients, device }, async)
#include <memory>

#include "addon/args.h"
#include "addon/async_task.h"
#include "addon/bindings.h"
#include "calmoe/tilted.h"

namespace calmoe::addon {
namespace {

Napi::Object stats_to_js(Napi::Env env, const TiltedStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("robustLoss", s.robust_loss);
  o.Set("tiltedErm", s.tilted_erm);
  o.Set("meanLoss", s.mean_loss);
  o.Set("maxWeight", s.max_weight);
  o.Set("effectiveRows", s.effective_rows);
  return o;
}

Napi::Value Tilted(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    View<const float> l = f32_array(arg(info, 0, "losses"), "losses");
    const double eta = number(arg(info, 1, "eta"), "eta");
    const TiltGradient g = TiltGradient(choice(arg(info, 2, "gradient"), "gradient", {"term", "through"}));
    Napi::Object o = object(arg(info, 3, "options"), "options");
    const bool want_w = boolean(o.Get("weights"), "weights");
    const bool want_c = boolean(o.Get("coefficients"), "coefficients");
    const Device dev = resolve_device(device_request(o.Get("device")));
    const std::size_t n = l.length;
    // Outputs are allocated here, on the main thread, and filled by the core (maybe off-thread).
    // One object holds the outputs so a single reference keeps them alive.
    Napi::Object out = Napi::Object::New(env);
    float* wd = nullptr;
    float* cd = nullptr;
    if (want_w) {
      auto w = Napi::Float32Array::New(env, n);
      wd = w.Data();
      out.Set("weights", w);
    }
    if (want_c) {
      auto c = Napi::Float32Array::New(env, n);
      cd = c.Data();
      out.Set("coefficients", c);
    }
    auto stats = std::make_shared<TiltedStats>();
    const float* ld = l.data;
    auto work = [=]() { *stats = tilted_weights(dev, ld, int64_t(n), eta, g, wd, cd); };
    auto out_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(out));
    auto done = [stats, out_ref](Napi::Env e) -> Napi::Value {
      Napi::Object r = stats_to_js(e, *stats);
      Napi::Object o = out_ref->Value();
      if (o.Has("weights")) r.Set("weights", o.Get("weights"));
      if (o.Has("coefficients")) r.Set("coefficients", o.Get("coefficients"));
      return r;
    };
    const bool async = info.Length() > 4 && boolean(info[4], "async");
    if (!async) {
      work();
      return done(env);
    }
    return AsyncTask::Start(env, {info[0]}, work, done);
  });
}

}  // namespace

void register_tilted(Napi::Env env, Napi::Object exports) {
  exports.Set("tiltedWeights", Napi::Function::New(env, Tilted, "tiltedWeights"));
}

}  // namespace calmoe::addon
