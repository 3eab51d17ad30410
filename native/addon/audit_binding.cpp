// N-API surface of the MoE per-row audit (see src/audit/ for the typed TS API).
// moeAuditRows({ rows, slots, experts, classes, routing, expertIds, expertProbs, mixture, labels,
//                sumTolerance, device, outputs: { top1, maxWeight, entropy, disagreement, loss,
//                regret, ownProbs } }, async) -> { top1?, maxWeight?, ... } (typed arrays)
#include <memory>

#include "addon/args.h"
#include "addon/async_task.h"
#include "addon/call_inputs.h"
#include "addon/bindings.h"
#include "calmoe/audit.h"
#include "calmoe/limits.h"

namespace calmoe::addon {
namespace {

bool wants(const Napi::Object& outputs, const char* key) {
  const Napi::Value v = own(outputs, key);
  return !v.IsUndefined() && boolean(v, key);
}

Napi::Value MoeAuditRows(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object o = object(arg(info, 0, "options"), "options");
    MoeAuditArg a;
    a.rows = integer(own(o, "rows"), "rows", 0, limits::kMaxElements);
    a.slots = integer(own(o, "slots"), "slots", 1, limits::kMaxIds);
    a.experts = own(o, "experts").IsUndefined() ? 0 : integer(own(o, "experts"), "experts", 1, limits::kMaxIds);
    a.classes = own(o, "classes").IsUndefined() ? 0 : integer(own(o, "classes"), "classes", 1, limits::kMaxIds);
    a.sum_tolerance = number(own(o, "sumTolerance"), "sumTolerance");
    const std::size_t B = std::size_t(a.rows), K = std::size_t(a.slots), C = std::size_t(a.classes);
    const bool async = info.Length() > 1 && boolean(info[1], "async");
    auto in = std::make_shared<CallInputs>(async);
    View<const float> r = f32_array(own(o, "routing"), "routing");
    require_length(r.length, B * K, "routing", "weights (rows x slots)");
    a.routing = in->hold(r);
    if (!own(o, "expertIds").IsUndefined()) {
      View<const int32_t> ids = i32_array(own(o, "expertIds"), "experts");
      require_length(ids.length, B * K, "experts", "expert ids (rows x slots)");
      a.expert_ids = in->hold(ids);
    }
    if (!own(o, "expertProbs").IsUndefined()) {
      View<const float> P = f32_array(own(o, "expertProbs"), "expertProbs");
      require_length(P.length, B * K * C, "expertProbs", "probabilities (rows x slots x classes)");
      a.expert_probs = in->hold(P);
    }
    if (!own(o, "mixture").IsUndefined()) {
      View<const float> p = f32_array(own(o, "mixture"), "mixture");
      require_length(p.length, B * C, "mixture", "probabilities (rows x classes)");
      a.mixture = in->hold(p);
    }
    if (!own(o, "labels").IsUndefined()) {
      View<const int32_t> y = i32_array(own(o, "labels"), "labels");
      require_length(y.length, B, "labels", "labels (one per row)");
      a.labels = in->hold(y);
    }
    const Device dev = resolve_device(device_request(own(o, "device")));
    Napi::Object outputs = object(own(o, "outputs"), "outputs");
    // Outputs are allocated here, on the main thread, and filled by the core (maybe off-thread).
    Napi::Object res = Napi::Object::New(env);
    MoeAuditOut out;
    auto f32 = [&](const char* key, std::size_t n) -> float* {
      if (!wants(outputs, key)) return nullptr;
      auto arr = Napi::Float32Array::New(env, n);
      res.Set(key, arr);
      return arr.Data();
    };
    if (wants(outputs, "top1")) {
      auto arr = Napi::Int32Array::New(env, B);
      res.Set("top1", arr);
      out.top1 = arr.Data();
    }
    out.max_weight = f32("maxWeight", B);
    out.entropy = f32("entropy", B);
    out.disagreement = f32("disagreement", B);
    out.loss = f32("loss", B);
    out.regret = f32("regret", B);
    out.own_probs = f32("ownProbs", B * C);
    if (!async) {
      moe_audit_rows(dev, a, out);
      return res;
    }
    auto res_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(res));
    return AsyncTask::Start(
        env, {res}, [in, dev, a, out]() { moe_audit_rows(dev, a, out); },
        [res_ref](Napi::Env) -> Napi::Value { return res_ref->Value(); });
  });
}

}  // namespace

void register_audit(Napi::Env env, Napi::Object exports) {
  exports.Set("moeAuditRows", Napi::Function::New(env, MoeAuditRows, "moeAuditRows"));
}

}  // namespace calmoe::addon
