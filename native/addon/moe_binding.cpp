// N-API surface of the MoE classifier (the typed API is src/moe/). Training runs on a dedicated
// native thread; progress and completion come back through a thread-safe function, and a
// cancel() closure sets the flag the training loop polls between steps.
#include <algorithm>
#include <memory>
#include <thread>

#include "addon/args.h"
#include "addon/async_task.h"
#include "addon/call_inputs.h"
#include "addon/bindings.h"
#include "calmoe/moe.h"
#include "calmoe/limits.h"

namespace calmoe::addon {
namespace {

std::vector<int64_t> int_list(const Napi::Value& v, const char* name) {
  std::vector<int64_t> out;
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) throw_type(std::string(name) + ": expected an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > limits::kMaxHiddenLayers)
    throw_range(std::string(name) + ": expected at most " + std::to_string(limits::kMaxHiddenLayers) + " hidden layers, got " + std::to_string(a.Length()));
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(integer(a.Get(i), name, 1, limits::kMaxWidth));
  return out;
}

MoEConfig config_arg(const Napi::Value& v) {
  Napi::Object o = object(v, "config");
  MoEConfig c;
  c.input_dim = integer(own(o, "inputDim"), "inputDim", 1, limits::kMaxWidth);
  c.classes = integer(own(o, "classes"), "classes", 1, limits::kMaxWidth);
  c.experts = integer(own(o, "experts"), "experts", 1, limits::kMaxExperts);
  c.expert_hidden = int_list(own(o, "expertHidden"), "expertHidden");
  c.router_hidden = int_list(own(o, "routerHidden"), "routerHidden");
  c.activation = Activation(choice(own(o, "activation"), "activation", {"relu", "gelu"}));
  c.routing = Routing(choice(own(o, "routing"), "routing", {"soft", "topk", "hard"}));
  c.top_k = integer(own(o, "topK"), "topK", 1, limits::kMaxExperts);
  c.router_temperature = float(number(own(o, "routerTemperature"), "routerTemperature"));
  const Napi::Value precision = own(o, "precision");
  if (!precision.IsUndefined()) c.precision = MatmulPrecision(choice(precision, "precision", {"tf32", "fp32", "bf16"}));
  moe_check_config(c);
  return c;
}

View<const float> temps_arg(const Napi::Value& v, const MoEConfig& c) {
  if (v.IsUndefined() || v.IsNull()) return {};
  View<const float> t = f32_array(v, "temperatures");
  require_length(t.length, std::size_t(c.experts), "temperatures", "values (one per expert)");
  return t;
}

// moeLayout(config) -> { total, tensors: [{ name, offset, shape }] }
Napi::Value Layout(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const ParamLayout l = moe_layout(config_arg(arg(info, 0, "config")));
    Napi::Env env = info.Env();
    Napi::Array tensors = Napi::Array::New(env, l.tensors.size());
    for (std::size_t i = 0; i < l.tensors.size(); ++i) {
      Napi::Object t = Napi::Object::New(env);
      t.Set("name", l.tensors[i].name);
      t.Set("offset", double(l.tensors[i].offset));
      Napi::Array shape = Napi::Array::New(env, l.tensors[i].shape.size());
      for (std::size_t j = 0; j < l.tensors[i].shape.size(); ++j) shape.Set(uint32_t(j), double(l.tensors[i].shape[j]));
      t.Set("shape", shape);
      tensors.Set(uint32_t(i), t);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("total", double(l.total));
    o.Set("tensors", tensors);
    return o;
  });
}

// moeParamCount(config) -> the model's parameter count (checked; no layout built)
Napi::Value ParamCount(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value { return Napi::Number::New(info.Env(), double(moe_param_count(config_arg(arg(info, 0, "config"))))); });
}

// moeInit(config, params, seed, kind, std)
Napi::Value Init(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const MoEConfig c = config_arg(arg(info, 0, "config"));
    View<float> p = f32_array_mut(arg(info, 1, "params"), "params");
    require_length(p.length, std::size_t(moe_layout(c).total), "params", "values (the model's parameter count)");
    const double seed = number(arg(info, 2, "seed"), "seed");
    const InitKind kind = InitKind(choice(arg(info, 3, "init"), "init", {"default", "normal"}));
    moe_init_params(c, p.data, uint64_t(seed), kind, float(number(arg(info, 4, "std"), "std")));
    return info.Env().Undefined();
  });
}

// moePredict(config, params, temps, x, rows, { routing, selected, gates, expertProbs, expertLogits?, device }, async)
Napi::Value Predict(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const MoEConfig c = config_arg(arg(info, 0, "config"));
    View<const float> p = f32_array(arg(info, 1, "params"), "params");
    require_length(p.length, std::size_t(moe_layout(c).total), "params", "values (the model's parameter count)");
    const View<const float> t = temps_arg(info[2], c);
    View<const float> x = f32_array(arg(info, 3, "x"), "x");
    const int64_t rows = integer(arg(info, 4, "rows"), "rows", 1, limits::kMaxElements);
    require_length(x.length, std::size_t(rows * c.input_dim), "x", "elements (rows x inputDim)");
    Napi::Object o = object(arg(info, 5, "options"), "options");
    const Device dev = moe_resolve_device(device_request(own(o, "device")));
    const int64_t A = moe_active_experts(c, false);
    Napi::Object out = Napi::Object::New(env);
    PredictOutputs po;
    auto f32 = [&](const char* key, int64_t n) {
      auto a = Napi::Float32Array::New(env, std::size_t(n));
      out.Set(key, a);
      return a.Data();
    };
    po.probs = f32("probs", rows * c.classes);
    if (boolean(own(o, "routing"), "routing")) po.routing = f32("routing", rows * c.experts);
    if (boolean(own(o, "selected"), "selected")) {
      auto s = Napi::Int32Array::New(env, std::size_t(rows * A));
      out.Set("selected", s);
      po.selected = s.Data();
    }
    if (boolean(own(o, "gates"), "gates")) po.gates = f32("gates", rows * A);
    if (boolean(own(o, "expertProbs"), "expertProbs")) po.expert_probs = f32("expertProbs", rows * A * c.classes);
    if (!own(o, "expertLogits").IsUndefined() && boolean(own(o, "expertLogits"), "expertLogits"))
      po.expert_logits = f32("expertLogits", rows * A * c.classes);
    out.Set("active", double(A));
    const bool async = info.Length() > 6 && boolean(info[6], "async");
    auto in = std::make_shared<CallInputs>(async);
    const float* pd = in->hold(p);
    const float* temps = in->hold(t);
    const float* xd = in->hold(x);
    auto work = [=]() { moe_predict(dev, c, pd, temps, xd, rows, po); };
    if (!async) {
      work();
      return out;
    }
    auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(out));
    return AsyncTask::Start(env, {out}, [in, work]() { work(); }, [ref](Napi::Env) -> Napi::Value { return ref->Value(); });
  });
}

Napi::Object epoch_to_js(Napi::Env env, const EpochLog& l) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("epoch", double(l.epoch));
  o.Set("steps", double(l.steps));
  o.Set("loss", l.loss);
  o.Set("objective", l.objective);
  o.Set("accuracy", l.accuracy);
  o.Set("lr", l.lr);
  o.Set("seconds", l.seconds);
  o.Set("examplesPerSecond", l.examples_per_s);
  o.Set("robustActive", l.robust_active);
  if (l.has_validation) {
    o.Set("valLoss", l.val_loss);
    o.Set("valAccuracy", l.val_accuracy);
    o.Set("valEce", l.val_ece);
  }
  return o;
}

Napi::Object step_to_js(Napi::Env env, const Progress& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("epoch", double(p.epoch));
  o.Set("batch", double(p.batch));
  o.Set("batches", double(p.batches));
  o.Set("step", double(p.step));
  o.Set("objective", p.step_stats.objective);
  o.Set("loss", p.step_stats.mean_loss);
  o.Set("accuracy", p.step_stats.accuracy);
  o.Set("gradNorm", p.step_stats.grad_norm);
  o.Set("lr", p.step_stats.lr);
  o.Set("filtered", double(p.step_stats.filtered));
  return o;
}

FitConfig fit_arg(const Napi::Value& v) {
  Napi::Object o = object(v, "options");
  FitConfig f;
  f.epochs = integer(own(o, "epochs"), "epochs", 1, limits::kMaxEpochs);
  f.batch_size = integer(own(o, "batchSize"), "batchSize", 1, limits::kMaxBatchSize);
  f.shuffle = boolean(own(o, "shuffle"), "shuffle");
  f.seed = uint64_t(number(own(o, "seed"), "seed"));
  f.progress_every = integer(own(o, "progressEvery"), "progressEvery", 0, limits::kMaxSteps);
  f.snapshot_epochs = !own(o, "snapshotEpochs").IsUndefined() && boolean(own(o, "snapshotEpochs"), "snapshotEpochs");
  if (!own(o, "checkpointEvery").IsUndefined()) f.checkpoint_every = integer(own(o, "checkpointEvery"), "checkpointEvery", 1, limits::kMaxEpochs);
  if (!own(o, "resume").IsUndefined()) {  // { epoch, steps, m, v, rng: BigUint64Array(1) }: copied, the thread reads its own
    Napi::Object r = object(own(o, "resume"), "resume");
    f.start_epoch = integer(own(r, "epoch"), "resume.epoch", 1, limits::kMaxEpochs);
    f.resume.steps = integer(own(r, "steps"), "resume.steps", 0, int64_t(1) << 52);
    const View<const float> m = f32_array(own(r, "m"), "resume.m"), vv = f32_array(own(r, "v"), "resume.v");
    f.resume.m.assign(m.data, m.data + m.length);
    f.resume.v.assign(vv.data, vv.data + vv.length);
    const View<uint64_t> rng = u64_array(own(r, "rng"), "resume.rng");
    require_length(rng.length, 1, "resume.rng", "value");
    f.resume_rng = rng.data[0];
  }
  Napi::Object opt = object(own(o, "optimizer"), "optimizer");
  f.optimizer.kind = OptimizerKind(choice(own(opt, "type"), "optimizer.type", {"sgd", "adamw"}));
  f.optimizer.lr = number(own(opt, "lr"), "optimizer.lr");
  f.optimizer.weight_decay = number(own(opt, "weightDecay"), "optimizer.weightDecay");
  f.optimizer.momentum = number(own(opt, "momentum"), "optimizer.momentum");
  f.optimizer.nesterov = boolean(own(opt, "nesterov"), "optimizer.nesterov");
  f.optimizer.beta1 = number(own(opt, "beta1"), "optimizer.beta1");
  f.optimizer.beta2 = number(own(opt, "beta2"), "optimizer.beta2");
  f.optimizer.eps = number(own(opt, "eps"), "optimizer.eps");
  f.optimizer.clip_norm = number(own(o, "clipNorm"), "clipNorm");
  Napi::Object sch = object(own(o, "schedule"), "schedule");
  f.schedule.kind = ScheduleKind(choice(own(sch, "type"), "schedule.type", {"constant", "cosine"}));
  f.schedule.warmup_steps = integer(own(sch, "warmupSteps"), "schedule.warmupSteps", 0, limits::kMaxSteps);
  f.schedule.min_lr_ratio = number(own(sch, "minLrRatio"), "schedule.minLrRatio");
  Napi::Object ob = object(own(o, "objective"), "objective");
  f.objective.kind = ObjectiveKind(choice(own(ob, "type"), "objective.type", {"erm", "robust", "robust-filtered"}));
  f.objective.eta = number(own(ob, "eta"), "objective.eta");
  f.objective.gradient = TiltGradient(choice(own(ob, "gradient"), "objective.gradient", {"term", "through"}));
  f.objective.warmup_epochs = integer(own(ob, "warmupEpochs"), "objective.warmupEpochs", 0, limits::kMaxEpochs);
  f.objective.tau_regret = number(own(ob, "tauRegret"), "objective.tauRegret");
  f.objective.tau_disagreement = number(own(ob, "tauDisagreement"), "objective.tauDisagreement");
  f.objective.median_disagreement = boolean(own(ob, "medianDisagreement"), "objective.medianDisagreement");
  if (!own(ob, "tiltLoss").IsUndefined())
    f.objective.hard_tilt = HardTilt(choice(own(ob, "tiltLoss"), "objective.tiltLoss", {"competitive", "top1"}));
  f.objective.balance_alpha = number(own(o, "balanceLoss"), "balanceLoss");
  if (!own(o, "balanceForm").IsUndefined())
    f.objective.balance_form = BalanceForm(choice(own(o, "balanceForm"), "balanceForm", {"switch", "squared-mean"}));
  return f;
}

// State shared by the training thread and the main thread. The thread trains a copy of the
// parameters on copies of the data (CallInputs): the caller may detach, shrink or overwrite any of
// its arrays meanwhile. The trained parameters go back into the caller's array on the main
// thread when the fit settles (finished, cancelled or diverged).
struct FitJob {
  MoEConfig config;
  FitConfig fit;
  Device device = Device::Cpu;
  std::vector<float> params;
  CallInputs inputs{true};
  const float* temps = nullptr;
  Dataset train, val;
  bool has_val = false;
  std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
  Napi::Reference<Napi::Value> params_ref;  // where the trained parameters go back
  napi_env env = nullptr;
  bool cleanup_hook = false;  // registered and not yet run (main thread only)
  Napi::Promise::Deferred deferred;
  Napi::ThreadSafeFunction tsfn;
  std::thread thread;
  // results
  std::vector<EpochLog> history;
  bool cancelled = false, failed = false;
  ErrorKind kind = ErrorKind::Runtime;
  std::string message, code;
  explicit FitJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

// The trained parameters into the caller's array, unless it no longer has the model's size
// (transferred or resized during the fit): then the fit fails with an error saying so.
void write_back(FitJob& job) {
  View<float> p;
  try {
    p = f32_array_mut(job.params_ref.Value(), "params");
  } catch (const Error&) {
  }
  if (p.data != nullptr && p.length == job.params.size()) {
    std::copy(job.params.begin(), job.params.end(), p.data);
    return;
  }
  if (job.failed) return;  // the first error stands
  job.failed = true;
  job.kind = ErrorKind::Runtime;
  job.message = "params: the model's parameter array was transferred or resized while fit ran, so the trained parameters had nowhere to go";
  job.code = "CALMOE_DETACHED";
}

constexpr std::size_t kProgressQueue = 64;

void stop_on_teardown(void* arg) {
  auto* job = static_cast<FitJob*>(arg);
  job->cleanup_hook = false;
  job->cancel->store(true);
}

struct Event {
  bool done = false;
  Progress progress;
};

// moeFit(config, params, temps, x, y, rows, xVal, yVal, valRows, options, onProgress, device)
//   -> { promise, cancel }
Napi::Value Fit(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto* job = new FitJob(env);
    std::unique_ptr<FitJob> guard(job);
    job->config = config_arg(arg(info, 0, "config"));
    View<float> p = f32_array_mut(arg(info, 1, "params"), "params");
    require_length(p.length, std::size_t(moe_layout(job->config).total), "params", "values (the model's parameter count)");
    job->params.assign(p.data, p.data + p.length);
    job->temps = job->inputs.hold(temps_arg(info[2], job->config));
    View<const float> x = f32_array(arg(info, 3, "x"), "x");
    View<const int32_t> y = i32_array(arg(info, 4, "y"), "y");
    const int64_t rows = integer(arg(info, 5, "rows"), "rows", 1, limits::kMaxFitRows);
    require_length(x.length, std::size_t(rows * job->config.input_dim), "x", "elements (rows x inputDim)");
    require_length(y.length, std::size_t(rows), "y", "labels (one per row)");
    job->train = Dataset{job->inputs.hold(x), job->inputs.hold(y), rows};
    if (!info[6].IsUndefined() && !info[6].IsNull()) {
      View<const float> vx = f32_array(info[6], "validation.x");
      View<const int32_t> vy = i32_array(arg(info, 7, "validation.y"), "validation.y");
      const int64_t vrows = integer(arg(info, 8, "validation rows"), "validation rows", 1, limits::kMaxFitRows);
      require_length(vx.length, std::size_t(vrows * job->config.input_dim), "validation.x", "elements (rows x inputDim)");
      require_length(vy.length, std::size_t(vrows), "validation.y", "labels (one per row)");
      job->val = Dataset{job->inputs.hold(vx), job->inputs.hold(vy), vrows};
      job->has_val = true;
    }
    job->fit = fit_arg(arg(info, 9, "options"));
    Napi::Value cb = info.Length() > 10 ? info[10] : env.Undefined();
    if (!cb.IsFunction()) throw_type("onProgress: expected a function");
    job->device = moe_resolve_device(device_request(info.Length() > 11 ? info[11] : env.Undefined()));
    job->params_ref = Napi::Persistent(info[1]);
    job->env = env;

    // A bounded queue: the training thread waits for JS to take its progress events rather than
    // piling up millions of them (memory, and an abort that settles only after all are delivered).
    job->tsfn = Napi::ThreadSafeFunction::New(env, cb.As<Napi::Function>(), "calmoe.fit", kProgressQueue, 1, job,
                                              [](Napi::Env, FitJob* j) {  // finalizer: on the main thread
                                                if (j->cleanup_hook) napi_remove_env_cleanup_hook(j->env, stop_on_teardown, j);
                                                // torn down before the fit settled: deleting the reference may fail then,
                                                // which node-addon-api turns into a fatal error; the environment goes anyway
                                                if (!j->params_ref.IsEmpty()) j->params_ref.SuppressDestruct();
                                                if (j->thread.joinable()) j->thread.join();
                                                delete j;
                                              });
    // worker.terminate() / environment teardown stops the fit at its next step instead of waiting
    // for it to finish (the hook runs before the thread-safe function's, which joins the thread).
    if (napi_add_env_cleanup_hook(env, stop_on_teardown, job) == napi_ok) job->cleanup_hook = true;
    guard.release();  // owned by the thread-safe function from here
    Napi::Promise promise = job->deferred.Promise();
    job->thread = std::thread([job]() {
      auto report = [job](const Progress& p) {
        auto* ev = new Event{false, p};
        auto cancel = job->cancel;
        job->tsfn.BlockingCall(ev, [cancel](Napi::Env e, Napi::Function js, Event* ev) {
          std::unique_ptr<Event> owned(ev);
          // stopping: the steps still queued are not reported (checkpoints and snapshots still are)
          if (cancel->load() && !ev->progress.checkpoint && ev->progress.parameters.empty()) return;
          try {
            Napi::Object o = ev->progress.epoch_end ? epoch_to_js(e, ev->progress.epoch_log) : step_to_js(e, ev->progress);
            o.Set("type", ev->progress.epoch_end ? "epoch" : "batch");
            if (!ev->progress.parameters.empty()) {
              Napi::Float32Array snap = Napi::Float32Array::New(e, ev->progress.parameters.size());
              std::copy(ev->progress.parameters.begin(), ev->progress.parameters.end(), snap.Data());
              o.Set("parameters", snap);
            }
            if (ev->progress.checkpoint) {
              const OptimizerState& st = ev->progress.optimizer;
              Napi::Object ck = Napi::Object::New(e);
              Napi::Float32Array m = Napi::Float32Array::New(e, st.m.size()), v = Napi::Float32Array::New(e, st.v.size());
              std::copy(st.m.begin(), st.m.end(), m.Data());
              std::copy(st.v.begin(), st.v.end(), v.Data());
              ck.Set("m", m);
              ck.Set("v", v);
              ck.Set("steps", double(st.steps));
              ck.Set("rng", Napi::BigInt::New(e, ev->progress.rng));
              o.Set("checkpoint", ck);
            }
            js.Call({o});
          } catch (const Napi::Error&) {
            // JS is being stopped (worker.terminate()): nothing to report to; the cleanup hook stops the fit
          }
        });
      };
      try {
        job->history = moe_fit(job->device, job->config, job->params.data(), job->temps, job->train, job->has_val ? &job->val : nullptr,
                               job->fit, job->cancel.get(), report, &job->cancelled);
      } catch (const Error& e) {
        job->failed = true;
        job->kind = e.kind();
        job->message = e.what();
        job->code = e.code();
      } catch (const std::exception& e) {
        job->failed = true;
        job->message = std::string("calmoe: ") + e.what();
        job->code = "CALMOE_RUNTIME";
      }
      job->tsfn.BlockingCall(new Event{true, {}}, [job](Napi::Env e, Napi::Function, Event* ev) {
        delete ev;
        Napi::HandleScope scope(e);
        try {
          write_back(*job);
          job->params_ref.Reset();
          if (job->failed) {
            job->deferred.Reject(to_js_error(e, job->kind, job->message, job->code).Value());
            return;
          }
          Napi::Array h = Napi::Array::New(e, job->history.size());
          for (std::size_t i = 0; i < job->history.size(); ++i) h.Set(uint32_t(i), epoch_to_js(e, job->history[i]));
          Napi::Object r = Napi::Object::New(e);
          r.Set("epochs", h);
          r.Set("cancelled", job->cancelled);
          job->deferred.Resolve(r);
        } catch (const Napi::Error&) {
          // JS is being stopped: the promise has no one left to settle for
        }
      });
      job->tsfn.Release();
    });
    auto flag = job->cancel;
    Napi::Object handle = Napi::Object::New(env);
    handle.Set("promise", promise);
    handle.Set("cancel", Napi::Function::New(env, [flag](const Napi::CallbackInfo& ci) {
      flag->store(true);
      return ci.Env().Undefined();
    }, "cancel"));
    return handle;
  });
}

}  // namespace

void register_moe(Napi::Env env, Napi::Object exports) {
  exports.Set("moeLayout", Napi::Function::New(env, Layout, "moeLayout"));
  exports.Set("moeInit", Napi::Function::New(env, Init, "moeInit"));
  exports.Set("moeParamCount", Napi::Function::New(env, ParamCount, "moeParamCount"));
  exports.Set("moePredict", Napi::Function::New(env, Predict, "moePredict"));
  exports.Set("moeFit", Napi::Function::New(env, Fit, "moeFit"));
}

}  // namespace calmoe::addon
