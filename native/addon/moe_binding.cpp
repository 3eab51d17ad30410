// N-API surface of the MoE classifier (the typed API is src/moe/). Training runs on a dedicated
// native thread; progress and completion come back through a thread-safe function, and a
// cancel() closure sets the flag the training loop polls between steps.
#include <algorithm>
#include <memory>
#include <thread>

#include "addon/args.h"
#include "addon/async_task.h"
#include "addon/bindings.h"
#include "calmoe/moe.h"

namespace calmoe::addon {
namespace {

std::vector<int64_t> int_list(const Napi::Value& v, const char* name) {
  std::vector<int64_t> out;
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) throw_type(std::string(name) + ": expected an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(integer(a.Get(i), name, 1, int64_t(1) << 24));
  return out;
}

MoEConfig config_arg(const Napi::Value& v) {
  Napi::Object o = object(v, "config");
  MoEConfig c;
  c.input_dim = integer(o.Get("inputDim"), "inputDim", 1, int64_t(1) << 24);
  c.classes = integer(o.Get("classes"), "classes", 1, int64_t(1) << 24);
  c.experts = integer(o.Get("experts"), "experts", 1, 4096);
  c.expert_hidden = int_list(o.Get("expertHidden"), "expertHidden");
  c.router_hidden = int_list(o.Get("routerHidden"), "routerHidden");
  c.activation = Activation(choice(o.Get("activation"), "activation", {"relu", "gelu"}));
  c.routing = Routing(choice(o.Get("routing"), "routing", {"soft", "topk", "hard"}));
  c.top_k = integer(o.Get("topK"), "topK", 1, 4096);
  c.router_temperature = float(number(o.Get("routerTemperature"), "routerTemperature"));
  const Napi::Value precision = o.Get("precision");
  if (!precision.IsUndefined()) c.precision = MatmulPrecision(choice(precision, "precision", {"tf32", "fp32", "bf16"}));
  moe_check_config(c);
  return c;
}

const float* temps_arg(const Napi::Value& v, const MoEConfig& c) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  View<const float> t = f32_array(v, "temperatures");
  require_length(t.length, std::size_t(c.experts), "temperatures", "values (one per expert)");
  return t.data;
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
    const float* temps = temps_arg(info[2], c);
    View<const float> x = f32_array(arg(info, 3, "x"), "x");
    const int64_t rows = integer(arg(info, 4, "rows"), "rows", 1, int64_t(1) << 40);
    require_length(x.length, std::size_t(rows * c.input_dim), "x", "elements (rows x inputDim)");
    Napi::Object o = object(arg(info, 5, "options"), "options");
    const Device dev = moe_resolve_device(device_request(o.Get("device")));
    const int64_t A = moe_active_experts(c, false);
    Napi::Object out = Napi::Object::New(env);
    PredictOutputs po;
    auto f32 = [&](const char* key, int64_t n) {
      auto a = Napi::Float32Array::New(env, std::size_t(n));
      out.Set(key, a);
      return a.Data();
    };
    po.probs = f32("probs", rows * c.classes);
    if (boolean(o.Get("routing"), "routing")) po.routing = f32("routing", rows * c.experts);
    if (boolean(o.Get("selected"), "selected")) {
      auto s = Napi::Int32Array::New(env, std::size_t(rows * A));
      out.Set("selected", s);
      po.selected = s.Data();
    }
    if (boolean(o.Get("gates"), "gates")) po.gates = f32("gates", rows * A);
    if (boolean(o.Get("expertProbs"), "expertProbs")) po.expert_probs = f32("expertProbs", rows * A * c.classes);
    if (!o.Get("expertLogits").IsUndefined() && boolean(o.Get("expertLogits"), "expertLogits"))
      po.expert_logits = f32("expertLogits", rows * A * c.classes);
    out.Set("active", double(A));
    const float* pd = p.data;
    const float* xd = x.data;
    auto work = [=]() { moe_predict(dev, c, pd, temps, xd, rows, po); };
    const bool async = info.Length() > 6 && boolean(info[6], "async");
    if (!async) {
      work();
      return out;
    }
    auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(out));
    return AsyncTask::Start(env, {info[1], info[3], info[2].IsUndefined() || info[2].IsNull() ? info[1] : info[2]}, work,
                            [ref](Napi::Env) -> Napi::Value { return ref->Value(); });
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
  f.epochs = integer(o.Get("epochs"), "epochs", 1, int64_t(1) << 31);
  f.batch_size = integer(o.Get("batchSize"), "batchSize", 1, int64_t(1) << 24);
  f.shuffle = boolean(o.Get("shuffle"), "shuffle");
  f.seed = uint64_t(number(o.Get("seed"), "seed"));
  f.progress_every = integer(o.Get("progressEvery"), "progressEvery", 0, int64_t(1) << 40);
  f.snapshot_epochs = !o.Get("snapshotEpochs").IsUndefined() && boolean(o.Get("snapshotEpochs"), "snapshotEpochs");
  if (!o.Get("checkpointEvery").IsUndefined()) f.checkpoint_every = integer(o.Get("checkpointEvery"), "checkpointEvery", 1, int64_t(1) << 31);
  if (!o.Get("resume").IsUndefined()) {  // { epoch, steps, m, v, rng: BigUint64Array(1) }: copied, the thread reads its own
    Napi::Object r = object(o.Get("resume"), "resume");
    f.start_epoch = integer(r.Get("epoch"), "resume.epoch", 1, int64_t(1) << 31);
    f.resume.steps = integer(r.Get("steps"), "resume.steps", 0, int64_t(1) << 52);
    const View<const float> m = f32_array(r.Get("m"), "resume.m"), vv = f32_array(r.Get("v"), "resume.v");
    f.resume.m.assign(m.data, m.data + m.length);
    f.resume.v.assign(vv.data, vv.data + vv.length);
    const View<uint64_t> rng = u64_array(r.Get("rng"), "resume.rng");
    require_length(rng.length, 1, "resume.rng", "value");
    f.resume_rng = rng.data[0];
  }
  Napi::Object opt = object(o.Get("optimizer"), "optimizer");
  f.optimizer.kind = OptimizerKind(choice(opt.Get("type"), "optimizer.type", {"sgd", "adamw"}));
  f.optimizer.lr = number(opt.Get("lr"), "optimizer.lr");
  f.optimizer.weight_decay = number(opt.Get("weightDecay"), "optimizer.weightDecay");
  f.optimizer.momentum = number(opt.Get("momentum"), "optimizer.momentum");
  f.optimizer.nesterov = boolean(opt.Get("nesterov"), "optimizer.nesterov");
  f.optimizer.beta1 = number(opt.Get("beta1"), "optimizer.beta1");
  f.optimizer.beta2 = number(opt.Get("beta2"), "optimizer.beta2");
  f.optimizer.eps = number(opt.Get("eps"), "optimizer.eps");
  f.optimizer.clip_norm = number(o.Get("clipNorm"), "clipNorm");
  Napi::Object sch = object(o.Get("schedule"), "schedule");
  f.schedule.kind = ScheduleKind(choice(sch.Get("type"), "schedule.type", {"constant", "cosine"}));
  f.schedule.warmup_steps = integer(sch.Get("warmupSteps"), "schedule.warmupSteps", 0, int64_t(1) << 40);
  f.schedule.min_lr_ratio = number(sch.Get("minLrRatio"), "schedule.minLrRatio");
  Napi::Object ob = object(o.Get("objective"), "objective");
  f.objective.kind = ObjectiveKind(choice(ob.Get("type"), "objective.type", {"erm", "robust", "robust-filtered"}));
  f.objective.eta = number(ob.Get("eta"), "objective.eta");
  f.objective.gradient = TiltGradient(choice(ob.Get("gradient"), "objective.gradient", {"term", "through"}));
  f.objective.warmup_epochs = integer(ob.Get("warmupEpochs"), "objective.warmupEpochs", 0, int64_t(1) << 31);
  f.objective.tau_regret = number(ob.Get("tauRegret"), "objective.tauRegret");
  f.objective.tau_disagreement = number(ob.Get("tauDisagreement"), "objective.tauDisagreement");
  f.objective.median_disagreement = boolean(ob.Get("medianDisagreement"), "objective.medianDisagreement");
  if (!ob.Get("tiltLoss").IsUndefined())
    f.objective.hard_tilt = HardTilt(choice(ob.Get("tiltLoss"), "objective.tiltLoss", {"competitive", "top1"}));
  f.objective.balance_alpha = number(o.Get("balanceLoss"), "balanceLoss");
  if (!o.Get("balanceForm").IsUndefined())
    f.objective.balance_form = BalanceForm(choice(o.Get("balanceForm"), "balanceForm", {"switch", "squared-mean"}));
  return f;
}

// State shared by the training thread and the main thread.
struct FitJob {
  MoEConfig config;
  FitConfig fit;
  Device device = Device::Cpu;
  float* params = nullptr;
  const float* temps = nullptr;
  Dataset train, val;
  bool has_val = false;
  std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
  std::vector<Napi::Reference<Napi::Value>> keep;  // the typed arrays the thread reads and writes
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
    job->params = p.data;
    job->temps = temps_arg(info[2], job->config);
    View<const float> x = f32_array(arg(info, 3, "x"), "x");
    View<const int32_t> y = i32_array(arg(info, 4, "y"), "y");
    const int64_t rows = integer(arg(info, 5, "rows"), "rows", 1, int64_t(1) << 31);
    require_length(x.length, std::size_t(rows * job->config.input_dim), "x", "elements (rows x inputDim)");
    require_length(y.length, std::size_t(rows), "y", "labels (one per row)");
    job->train = Dataset{x.data, y.data, rows};
    std::vector<Napi::Value> keep = {info[1], info[3], info[4]};
    if (!info[2].IsUndefined() && !info[2].IsNull()) keep.push_back(info[2]);
    if (!info[6].IsUndefined() && !info[6].IsNull()) {
      View<const float> vx = f32_array(info[6], "validation.x");
      View<const int32_t> vy = i32_array(arg(info, 7, "validation.y"), "validation.y");
      const int64_t vrows = integer(arg(info, 8, "validation rows"), "validation rows", 1, int64_t(1) << 31);
      require_length(vx.length, std::size_t(vrows * job->config.input_dim), "validation.x", "elements (rows x inputDim)");
      require_length(vy.length, std::size_t(vrows), "validation.y", "labels (one per row)");
      job->val = Dataset{vx.data, vy.data, vrows};
      job->has_val = true;
      keep.push_back(info[6]);
      keep.push_back(info[7]);
    }
    job->fit = fit_arg(arg(info, 9, "options"));
    Napi::Value cb = info.Length() > 10 ? info[10] : env.Undefined();
    if (!cb.IsFunction()) throw_type("onProgress: expected a function");
    job->device = moe_resolve_device(device_request(info.Length() > 11 ? info[11] : env.Undefined()));
    for (auto& v : keep) job->keep.push_back(Napi::Persistent(v));

    job->tsfn = Napi::ThreadSafeFunction::New(env, cb.As<Napi::Function>(), "calmoe.fit", 0, 1, job,
                                              [](Napi::Env, FitJob* j) {  // finalizer: on the main thread
                                                if (j->thread.joinable()) j->thread.join();
                                                delete j;
                                              });
    guard.release();  // owned by the thread-safe function from here
    Napi::Promise promise = job->deferred.Promise();
    job->thread = std::thread([job]() {
      auto report = [job](const Progress& p) {
        auto* ev = new Event{false, p};
        job->tsfn.BlockingCall(ev, [](Napi::Env e, Napi::Function js, Event* ev) {
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
          delete ev;
          js.Call({o});
        });
      };
      try {
        job->history = moe_fit(job->device, job->config, job->params, job->temps, job->train, job->has_val ? &job->val : nullptr,
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
        job->keep.clear();
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
  exports.Set("moePredict", Napi::Function::New(env, Predict, "moePredict"));
  exports.Set("moeFit", Napi::Function::New(env, Fit, "moeFit"));
}

}  // namespace calmoe::addon
