// tiltedWeights(losses, eta, gradient, { weights, coefficients, device }, async)
#include <memory>

#include "addon/args.h"
#include "addon/async_task.h"
#include "addon/call_inputs.h"
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
    const bool want_w = boolean(own(o, "weights"), "weights");
    const bool want_c = boolean(own(o, "coefficients"), "coefficients");
    const Device dev = resolve_device(device_request(own(o, "device")));
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
    const bool async = info.Length() > 4 && boolean(info[4], "async");
    auto in = std::make_shared<CallInputs>(async);
    const float* ld = in->hold(l);
    auto work = [=]() { *stats = tilted_weights(dev, ld, int64_t(n), eta, g, wd, cd); };
    auto out_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(out));
    auto done = [stats, out_ref](Napi::Env e) -> Napi::Value {
      Napi::Object r = stats_to_js(e, *stats);
      Napi::Object o = out_ref->Value();
      if (o.Has("weights")) r.Set("weights", own(o, "weights"));
      if (o.Has("coefficients")) r.Set("coefficients", own(o, "coefficients"));
      return r;
    };
    if (!async) {
      work();
      return done(env);
    }
    return AsyncTask::Start(env, {out}, [in, work]() { work(); }, done);
  });
}

}  // namespace

void register_tilted(Napi::Env env, Napi::Object exports) {
  exports.Set("tiltedWeights", Napi::Function::New(env, Tilted, "tiltedWeights"));
}

}  // namespace calmoe::addon
