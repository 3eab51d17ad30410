// N-API surface of drift (see src/drift/ for the typed TS API).
#include <memory>

#include "addon/args.h"
#include "addon/async_task.h"
#include "addon/call_inputs.h"
#include "addon/bindings.h"
#include "calmoe/drift.h"
#include "calmoe/error.h"
#include "calmoe/limits.h"

namespace calmoe::addon {
namespace {

KsMethod method_arg(const Napi::Value& v) { return KsMethod(choice(v, "method", {"auto", "exact", "asymp"})); }
PCorrection correction_arg(const Napi::Value& v) { return PCorrection(choice(v, "correction", {"none", "bh", "by", "bonferroni"})); }
const char* method_name(uint8_t m) { return m == uint8_t(KsMethod::Exact) ? "exact" : m == uint8_t(KsMethod::Asymp) ? "asymp" : "auto"; }

// A rows x cols float32 matrix argument (data at i, rows at i + 1); cols given separately.
// `in` holds its data (a copy when the call is async).
FeatureMatrix matrix_arg(const Napi::CallbackInfo& info, std::size_t i, int64_t cols, const char* name, CallInputs& in) {
  View<const float> x = f32_array(arg(info, i, name), name);
  FeatureMatrix m;
  m.rows = integer(arg(info, i + 1, "rows"), "rows", 0, limits::kMaxElements);
  m.cols = cols;
  require_length(x.length, std::size_t(m.rows * cols), name, "elements (rows x cols)");
  m.data = in.hold(x);
  return m;
}

void report_options(const Napi::Object& o, DriftOptions* d) {
  d->method = method_arg(own(o, "method"));
  d->psi_epsilon = number(own(o, "epsilon"), "epsilon");
  d->correction = correction_arg(own(o, "correction"));
  d->alpha = number(own(o, "alpha"), "alpha");
}

Napi::Value report_to_js(Napi::Env env, const DriftReport& r) {
  const std::size_t d = std::size_t(r.features);
  auto f64 = [&](const std::vector<double>& v) {
    auto a = Napi::Float64Array::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
  };
  auto counts = [&](const std::vector<uint64_t>& v) {
    auto a = Napi::Float64Array::New(env, v.size());
    for (std::size_t k = 0; k < v.size(); ++k) a[k] = double(v[k]);
    return a;
  };
  Napi::Object o = Napi::Object::New(env);
  o.Set("features", double(r.features));
  o.Set("referenceRows", double(r.reference_rows));
  o.Set("currentRows", double(r.current_rows));
  o.Set("histogram", r.histogram);
  o.Set("statistic", f64(r.statistic));
  o.Set("pValue", f64(r.p_value));
  o.Set("adjustedPValue", f64(r.adjusted_p_value));
  o.Set("psi", f64(r.psi));
  auto sign = Napi::Int8Array::New(env, d);
  auto drifted = Napi::Uint8Array::New(env, d);
  auto order = Napi::Int32Array::New(env, d);
  Napi::Array method = Napi::Array::New(env, d);
  for (std::size_t f = 0; f < d; ++f) {
    sign[f] = r.sign[f];
    drifted[f] = r.drifted[f];
    order[f] = int32_t(r.order[f]);
    method.Set(uint32_t(f), method_name(r.method[f]));
  }
  o.Set("sign", sign);
  o.Set("drifted", drifted);
  o.Set("order", order);
  o.Set("method", method);
  o.Set("psiBins", r.psi_bins);
  auto edges = Napi::Float32Array::New(env, r.psi_edges.size());
  std::copy(r.psi_edges.begin(), r.psi_edges.end(), edges.Data());
  o.Set("psiEdges", edges);
  o.Set("psiReferenceCounts", counts(r.psi_reference_counts));
  o.Set("psiCurrentCounts", counts(r.psi_current_counts));
  return o;
}

// driftCompare(ref, refRows, cur, curRows, cols, { ks, bins, method, epsilon, correction, alpha, device }, async)
Napi::Value Compare(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t cols = integer(arg(info, 4, "cols"), "cols", 1, limits::kMaxIds);
    const bool async = info.Length() > 6 && boolean(info[6], "async");
    auto in = std::make_shared<CallInputs>(async);
    const FeatureMatrix ref = matrix_arg(info, 0, cols, "reference", *in);
    const FeatureMatrix cur = matrix_arg(info, 2, cols, "current", *in);
    Napi::Object o = object(arg(info, 5, "options"), "options");
    DriftOptions d;
    d.ks = boolean(own(o, "ks"), "ks");
    d.psi_bins = int(integer(own(o, "bins"), "bins", 0, limits::kMaxDriftBins));
    report_options(o, &d);
    const Device dev = resolve_device(device_request(own(o, "device")));
    if (!async) return report_to_js(info.Env(), drift_compare(dev, ref, cur, d));
    auto out = std::make_shared<DriftReport>();
    return AsyncTask::Start(
        info.Env(), {}, [in, out, dev, ref, cur, d]() { *out = drift_compare(dev, ref, cur, d); },
        [out](Napi::Env env) -> Napi::Value { return report_to_js(env, *out); });
  });
}

// driftKsPValue(statistic, n1, n2, method) -> { pValue, statistic, method }
Napi::Value KsP(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const double s = number(arg(info, 0, "statistic"), "statistic");
    const int64_t n1 = integer(arg(info, 1, "n1"), "n1", 1, limits::kMaxSampleRows);
    const int64_t n2 = integer(arg(info, 2, "n2"), "n2", 1, limits::kMaxSampleRows);
    const KsPValue p = ks_2samp_pvalue(s, n1, n2, method_arg(arg(info, 3, "method")));
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("pValue", p.p_value);
    o.Set("statistic", p.statistic);
    o.Set("method", method_name(uint8_t(p.method)));
    return o;
  });
}

// driftAdjust(pValues: Float64Array, method) -> Float64Array
Napi::Value Adjust(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<const double> p = f64_array(arg(info, 0, "pValues"), "pValues");
    const std::vector<double> q = adjust_pvalues(p.data, int64_t(p.length), correction_arg(arg(info, 1, "method")));
    auto out = Napi::Float64Array::New(info.Env(), q.size());
    std::copy(q.begin(), q.end(), out.Data());
    return out;
  });
}

Napi::Value state_to_js(Napi::Env env, const std::vector<uint64_t>& w) {
  auto out = Napi::BigUint64Array::New(env, w.size());
  std::copy(w.begin(), w.end(), out.Data());
  return out;
}

// driftMonitorNew(ref, rows, cols, { bins, refinement, device }, async) -> BigUint64Array
Napi::Value MonitorNew(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t cols = integer(arg(info, 2, "cols"), "cols", 1, limits::kMaxIds);
    const bool async = info.Length() > 4 && boolean(info[4], "async");
    auto in = std::make_shared<CallInputs>(async);
    const FeatureMatrix ref = matrix_arg(info, 0, cols, "reference", *in);
    Napi::Object o = object(arg(info, 3, "options"), "options");
    const int bins = int(integer(own(o, "bins"), "bins", 1, limits::kMaxDriftBins));
    const int refinement = int(integer(own(o, "refinement"), "refinement", 1, limits::kMaxDriftBins));
    const Device dev = resolve_device(device_request(own(o, "device")));
    if (!async) return state_to_js(info.Env(), drift_monitor_new(dev, ref, bins, refinement));
    auto out = std::make_shared<std::vector<uint64_t>>();
    return AsyncTask::Start(
        info.Env(), {}, [in, out, dev, ref, bins, refinement]() { *out = drift_monitor_new(dev, ref, bins, refinement); },
        [out](Napi::Env env) -> Napi::Value { return state_to_js(env, *out); });
  });
}

// driftMonitorUpdate(state, cur, rows, cols, { device }, async): counts go into a fresh window on
// the worker and are merged into `state` on the main thread (concurrent updates compose exactly).
Napi::Value MonitorUpdate(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Value state_v = arg(info, 0, "state");
    View<uint64_t> state = u64_array(state_v, "state");
    const int64_t cols = integer(arg(info, 3, "cols"), "cols", 1, limits::kMaxIds);
    const bool async = info.Length() > 5 && boolean(info[5], "async");
    auto in = std::make_shared<CallInputs>(async);
    const FeatureMatrix cur = matrix_arg(info, 1, cols, "current", *in);
    Napi::Object o = object(arg(info, 4, "options"), "options");
    const Device dev = resolve_device(device_request(own(o, "device")));
    auto delta = std::make_shared<std::vector<uint64_t>>(drift_monitor_empty_like(state.data, state.length));
    if (!async) {
      drift_monitor_update(dev, cur, delta->data(), delta->size());
      drift_monitor_merge(state.data, state.length, delta->data(), delta->size());
      return info.Env().Undefined();
    }
    auto state_ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(state_v));
    return AsyncTask::Start(
        info.Env(), {}, [in, dev, cur, delta]() { drift_monitor_update(dev, cur, delta->data(), delta->size()); },
        [delta, state_ref](Napi::Env env) -> Napi::Value {
          View<uint64_t> s = u64_array(state_ref->Value(), "state");
          drift_monitor_merge(s.data, s.length, delta->data(), delta->size());
          return env.Undefined();
        });
  });
}

// driftMonitorMerge(into, from)
Napi::Value MonitorMerge(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<uint64_t> into = u64_array(arg(info, 0, "into"), "into");
    View<uint64_t> from = u64_array(arg(info, 1, "from"), "from");
    drift_monitor_merge(into.data, into.length, from.data, from.length);
    return info.Env().Undefined();
  });
}

// driftMonitorReset(state)
Napi::Value MonitorReset(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<uint64_t> s = u64_array(arg(info, 0, "state"), "state");
    drift_monitor_reset(s.data, s.length);
    return info.Env().Undefined();
  });
}

// driftMonitorConfig(state) -> { features, bins, refinement, referenceRows, currentRows, chunks }
Napi::Value MonitorConfig(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<uint64_t> s = u64_array(arg(info, 0, "state"), "state");
    const DriftMonitorConfig c = drift_monitor_config(s.data, s.length);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("features", double(c.features));
    o.Set("bins", c.bins);
    o.Set("refinement", c.refinement);
    o.Set("referenceRows", double(c.reference_rows));
    o.Set("currentRows", double(c.current_rows));
    o.Set("chunks", double(c.chunks));
    return o;
  });
}

// driftMonitorReport(state, { method, epsilon, correction, alpha }) -> report
Napi::Value MonitorReport(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<uint64_t> s = u64_array(arg(info, 0, "state"), "state");
    DriftOptions d;
    report_options(object(arg(info, 1, "options"), "options"), &d);
    return report_to_js(info.Env(), drift_monitor_report(s.data, s.length, d));
  });
}

}  // namespace

void register_drift(Napi::Env env, Napi::Object exports) {
  exports.Set("driftCompare", Napi::Function::New(env, Compare, "driftCompare"));
  exports.Set("driftKsPValue", Napi::Function::New(env, KsP, "driftKsPValue"));
  exports.Set("driftAdjust", Napi::Function::New(env, Adjust, "driftAdjust"));
  exports.Set("driftMonitorNew", Napi::Function::New(env, MonitorNew, "driftMonitorNew"));
  exports.Set("driftMonitorUpdate", Napi::Function::New(env, MonitorUpdate, "driftMonitorUpdate"));
  exports.Set("driftMonitorMerge", Napi::Function::New(env, MonitorMerge, "driftMonitorMerge"));
  exports.Set("driftMonitorReset", Napi::Function::New(env, MonitorReset, "driftMonitorReset"));
  exports.Set("driftMonitorConfig", Napi::Function::New(env, MonitorConfig, "driftMonitorConfig"));
  exports.Set("driftMonitorReport", Napi::Function::New(env, MonitorReport, "driftMonitorReport"));
}

}  // namespace calmoe::addon
