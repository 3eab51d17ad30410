// N-API surface of the calibration histogram (see src/metrics/ for the typed TS API).
#include <exception>
#include <memory>

#include "addon/args.h"
#include "addon/async_task.h"
#include "addon/call_inputs.h"
#include "addon/bindings.h"
#include "calmoe/calibration.h"
#include "calmoe/limits.h"

namespace calmoe::addon {
namespace {

Napi::Float64Array f64(Napi::Env env, std::size_t n) { return Napi::Float64Array::New(env, n); }

Napi::Object group_to_js(Napi::Env env, const CalibGroupSummary& g) {
  const std::size_t M = g.bins.size();
  auto lower = f64(env, M), upper = f64(env, M), count = f64(env, M), weight = f64(env, M), conf = f64(env, M), acc = f64(env, M);
  for (std::size_t b = 0; b < M; ++b) {
    lower[b] = g.bins[b].lower;
    upper[b] = g.bins[b].upper;
    count[b] = double(g.bins[b].count);
    weight[b] = g.bins[b].weight;
    conf[b] = g.bins[b].mean_confidence;
    acc[b] = g.bins[b].accuracy;
  }
  Napi::Object bins = Napi::Object::New(env);
  bins.Set("lower", lower);
  bins.Set("upper", upper);
  bins.Set("count", count);
  bins.Set("weight", weight);
  bins.Set("meanConfidence", conf);
  bins.Set("accuracy", acc);
  Napi::Object o = Napi::Object::New(env);
  o.Set("rows", double(g.rows));
  o.Set("weight", g.weight);
  o.Set("accuracy", g.accuracy);
  o.Set("ece", g.ece);
  o.Set("mce", g.mce);
  o.Set("rmsce", g.rmsce);
  o.Set("bins", bins);
  return o;
}

Napi::Object summary_to_js(Napi::Env env, const CalibSummary& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("rows", double(s.rows));
  o.Set("weight", s.weight);
  o.Set("accuracy", s.accuracy);
  o.Set("nll", s.nll);
  o.Set("brier", s.brier);
  o.Set("ece", s.ece);
  o.Set("mce", s.mce);
  o.Set("rmsce", s.rmsce);
  o.Set("overall", group_to_js(env, s.overall));
  Napi::Array groups = Napi::Array::New(env, s.groups.size());
  for (std::size_t g = 0; g < s.groups.size(); ++g) groups.Set(uint32_t(g), group_to_js(env, s.groups[g]));
  o.Set("groups", groups);
  return o;
}

CalibKind kind_arg(const Napi::Value& v) {
  return CalibKind(choice(v, "kind", {"top-label", "classwise", "binary", "confidence"}));
}

ScoreKind score_kind_arg(const Napi::Value& v) {
  return ScoreKind(choice(v, "input", {"probabilities", "logits"}));
}

// An update's optional per-row array `key` (group ids, weights): empty when absent.
template <class T>
View<const T> per_row(const Napi::Object& o, const char* key, std::size_t rows, View<const T> (*read)(const Napi::Value&, const char*), const char* what) {
  const Napi::Value v = own(o, key);
  if (v.IsUndefined()) return {};
  View<const T> a = read(v, key);
  require_length(a.length, rows, key, what);
  return a;
}
View<const int32_t> group_ids(const Napi::Object& o, std::size_t rows) { return per_row<int32_t>(o, "groups", rows, i32_array, "group ids (one per row)"); }
View<const float> row_weights(const Napi::Object& o, std::size_t rows) { return per_row<float>(o, "weights", rows, f32_array, "weights (one per row)"); }

bool async_arg(const Napi::CallbackInfo& info, std::size_t i) { return info.Length() > i && boolean(info[i], "async"); }

// calibStateNew({ kind, bins, classes, groups, edges, extras, weighted? }) -> BigUint64Array
Napi::Value StateNew(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Object o = object(arg(info, 0, "options"), "options");
    CalibConfig c;
    c.kind = kind_arg(own(o, "kind"));
    c.bins = int(integer(own(o, "bins"), "bins", 1, limits::kMaxCalibrationBins));
    if (c.kind == CalibKind::Classwise) {
      c.groups = int(integer(own(o, "classes"), "classes", 1, limits::kMaxIds));
    } else if (!own(o, "groups").IsUndefined()) {
      c.groups = int(integer(own(o, "groups"), "groups", 1, limits::kMaxIds));
      c.grouped = true;
    }
    c.edges = BinEdges(choice(own(o, "edges"), "edges", {"right-closed", "left-closed"}));
    c.extras = boolean(own(o, "extras"), "extras");
    if (!own(o, "weighted").IsUndefined()) c.weighted = boolean(own(o, "weighted"), "weighted");
    const std::vector<uint64_t> w = calib_state_new(c);
    auto out = Napi::BigUint64Array::New(info.Env(), w.size());
    std::copy(w.begin(), w.end(), out.Data());
    return out;
  });
}

// Runs `update(delta)` into a zeroed state of the same config, then merges delta into `state`.
// Async: the merge runs on the main thread when the promise settles, so concurrent updates of one
// accumulator compose exactly (integer sums). Where `update` runs:
// - in copies (CUDA): on a worker thread, reading the copies `in` holds (call_inputs.h);
// - in place (CPU, the default): during the call, on the CPU threads. The update is one pass over
//   the inputs into a fixed-size histogram; a copy would read the same bytes and write them once
//   more, so the pass costs less than the copy it replaces (bench/async-inputs.ts, W3) and blocks
//   the event loop for less time. Nothing of the caller's memory is read after the call returns.
template <class Update>
Napi::Value run_update(const Napi::CallbackInfo& info, bool async, std::shared_ptr<CallInputs> in, Update update) {
  Napi::Value state_v = arg(info, 0, "state");
  View<uint64_t> state = u64_array(state_v, "state");
  const CalibConfig cfg = calib_state_config(state.data, state.length);
  auto delta = std::make_shared<std::vector<uint64_t>>(calib_state_new(cfg));
  if (!async) {
    update(*delta);
    calib_merge(state.data, state.length, delta->data(), delta->size());
    return info.Env().Undefined();
  }
  AsyncTask::Work work;
  if (in->copies()) {
    work = [delta, update, in]() { update(*delta); };
  } else {
    std::exception_ptr failure;  // settles the promise as the worker's error would
    try {
      update(*delta);
    } catch (...) {
      failure = std::current_exception();
    }
    work = [failure]() {
      if (failure) std::rethrow_exception(failure);
    };
  }
  return AsyncTask::Start(
      info.Env(), {}, std::move(work),
      [delta, state_v_ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(state_v))](Napi::Env env) -> Napi::Value {
        View<uint64_t> s = u64_array(state_v_ref->Value(), "state");
        calib_merge(s.data, s.length, delta->data(), delta->size());
        return env.Undefined();
      });
}

// An async histogram update copies its inputs only where it runs on a worker (CUDA); on the CPU it
// reads them in place during the call (run_update).
bool update_copies(bool async, Device dev) { return async && dev != Device::Cpu; }

// calibUpdateRows(state, scores, rows, cols, labels, { input, sumTolerance, device, groups }, async)
Napi::Value UpdateRows(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<const float> scores = f32_array(arg(info, 1, "scores"), "scores");
    const int64_t rows = integer(arg(info, 2, "rows"), "rows", 0, limits::kMaxElements);
    const int64_t cols = integer(arg(info, 3, "cols"), "cols", 1, limits::kMaxIds);
    View<const int32_t> labels = i32_array(arg(info, 4, "labels"), "labels");
    require_length(scores.length, std::size_t(rows * cols), "scores", "elements (rows x cols)");
    require_length(labels.length, std::size_t(rows), "labels", "labels (one per row)");
    Napi::Object o = object(arg(info, 5, "options"), "options");
    const bool async = async_arg(info, 6);
    ScoresArg s;
    s.rows = rows;
    s.cols = cols;
    s.kind = score_kind_arg(own(o, "input"));
    s.sum_tolerance = number(own(o, "sumTolerance"), "sumTolerance");
    const Device dev = calib_resolve_device(device_request(own(o, "device")));
    const View<const int32_t> groups = group_ids(o, std::size_t(rows));
    const View<const float> weights = row_weights(o, std::size_t(rows));
    auto in = std::make_shared<CallInputs>(update_copies(async, dev));
    s.data = in->hold(scores);
    const int32_t* y = in->hold(labels);
    const int32_t* g = in->hold(groups);
    const float* wt = in->hold(weights);
    return run_update(info, async, in, [=](std::vector<uint64_t>& d) {
      calib_update_rows(dev, s, y, d.data(), d.size(), g, wt);
    });
  });
}

// calibUpdateBinary(state, scores, labels, { device, groups }, async)
Napi::Value UpdateBinary(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<const float> p = f32_array(arg(info, 1, "scores"), "scores");
    View<const int32_t> labels = i32_array(arg(info, 2, "labels"), "labels");
    require_length(labels.length, p.length, "labels", "labels (one per score)");
    Napi::Object o = object(arg(info, 3, "options"), "options");
    const Device dev = calib_resolve_device(device_request(own(o, "device")));
    const View<const int32_t> groups = group_ids(o, p.length);
    const bool async = async_arg(info, 4);
    auto in = std::make_shared<CallInputs>(update_copies(async, dev));
    const float* pd = in->hold(p);
    const int32_t* y = in->hold(labels);
    const int64_t n = int64_t(p.length);
    const int32_t* g = in->hold(groups);
    const float* wt = in->hold(row_weights(o, p.length));
    return run_update(info, async, in, [=](std::vector<uint64_t>& d) {
      calib_update_binary(dev, pd, y, n, d.data(), d.size(), g, wt);
    });
  });
}

// calibUpdateConfidence(state, confidence, correct, { device, groups }, async)
Napi::Value UpdateConfidence(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<const float> c = f32_array(arg(info, 1, "confidence"), "confidence");
    View<const uint8_t> ok = u8_array(arg(info, 2, "correct"), "correct");
    require_length(ok.length, c.length, "correct", "flags (one per confidence)");
    Napi::Object o = object(arg(info, 3, "options"), "options");
    const Device dev = calib_resolve_device(device_request(own(o, "device")));
    const View<const int32_t> groups = group_ids(o, c.length);
    const bool async = async_arg(info, 4);
    auto in = std::make_shared<CallInputs>(update_copies(async, dev));
    const float* cd = in->hold(c);
    const uint8_t* okd = in->hold(ok);
    const int64_t n = int64_t(c.length);
    const int32_t* g = in->hold(groups);
    const float* wt = in->hold(row_weights(o, c.length));
    return run_update(info, async, in, [=](std::vector<uint64_t>& d) {
      calib_update_confidence(dev, cd, okd, n, d.data(), d.size(), g, wt);
    });
  });
}

// calibMerge(into, from)
Napi::Value Merge(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<uint64_t> into = u64_array(arg(info, 0, "into"), "into");
    View<uint64_t> from = u64_array(arg(info, 1, "from"), "from");
    calib_merge(into.data, into.length, from.data, from.length);
    return info.Env().Undefined();
  });
}

// calibStateCheck(state): throws unless `state` is a well-formed state (header, length, counts)
Napi::Value StateCheck(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<uint64_t> s = u64_array(arg(info, 0, "state"), "state");
    calib_state_config(s.data, s.length);
    return info.Env().Undefined();
  });
}

// calibFinalize(state) -> summary
Napi::Value Finalize(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    View<uint64_t> s = u64_array(arg(info, 0, "state"), "state");
    return summary_to_js(info.Env(), calib_finalize(s.data, s.length));
  });
}

// calibEqualMass({ kind, scores, rows, cols, labels, confidence, correct, bins, input,
//                  sumTolerance, extras, device }, async) -> summary
Napi::Value EqualMass(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Object o = object(arg(info, 0, "options"), "options");
    EqualMassArg a;
    a.kind = kind_arg(own(o, "kind"));
    a.bins = int(integer(own(o, "bins"), "bins", 1, limits::kMaxCalibrationBins));
    a.extras = boolean(own(o, "extras"), "extras");
    const bool async = async_arg(info, 1);
    auto in = std::make_shared<CallInputs>(async);
    if (a.kind == CalibKind::Confidence) {
      View<const float> c = f32_array(own(o, "confidence"), "confidence");
      View<const uint8_t> ok = u8_array(own(o, "correct"), "correct");
      require_length(ok.length, c.length, "correct", "flags (one per confidence)");
      a.confidence = in->hold(c);
      a.correct = in->hold(ok);
      a.n = int64_t(c.length);
    } else {
      View<const float> s = f32_array(own(o, "scores"), "scores");
      View<const int32_t> y = i32_array(own(o, "labels"), "labels");
      a.scores.rows = integer(own(o, "rows"), "rows", 0, limits::kMaxElements);
      a.scores.cols = a.kind == CalibKind::Binary ? 1 : integer(own(o, "cols"), "cols", 1, limits::kMaxIds);
      require_length(s.length, std::size_t(a.scores.rows * a.scores.cols), "scores", "elements (rows x cols)");
      require_length(y.length, std::size_t(a.scores.rows), "labels", "labels (one per row)");
      a.scores.kind = score_kind_arg(own(o, "input"));
      a.scores.sum_tolerance = number(own(o, "sumTolerance"), "sumTolerance");
      a.scores.data = in->hold(s);
      a.labels = in->hold(y);
    }
    const Device dev = calib_resolve_device(device_request(own(o, "device")));
    if (!async) return summary_to_js(info.Env(), calib_equal_mass(dev, a));
    auto out = std::make_shared<CalibSummary>();
    return AsyncTask::Start(
        info.Env(), {}, [in, out, dev, a]() { *out = calib_equal_mass(dev, a); },
        [out](Napi::Env env) -> Napi::Value { return summary_to_js(env, *out); });
  });
}

}  // namespace

void register_calibration(Napi::Env env, Napi::Object exports) {
  exports.Set("calibStateNew", Napi::Function::New(env, StateNew, "calibStateNew"));
  exports.Set("calibUpdateRows", Napi::Function::New(env, UpdateRows, "calibUpdateRows"));
  exports.Set("calibUpdateBinary", Napi::Function::New(env, UpdateBinary, "calibUpdateBinary"));
  exports.Set("calibUpdateConfidence", Napi::Function::New(env, UpdateConfidence, "calibUpdateConfidence"));
  exports.Set("calibMerge", Napi::Function::New(env, Merge, "calibMerge"));
  exports.Set("calibStateCheck", Napi::Function::New(env, StateCheck, "calibStateCheck"));
  exports.Set("calibFinalize", Napi::Function::New(env, Finalize, "calibFinalize"));
  exports.Set("calibEqualMass", Napi::Function::New(env, EqualMass, "calibEqualMass"));
}

}  // namespace calmoe::addon
