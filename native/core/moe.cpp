// MoE entry points: engine selection, prediction, and the training loop (device-agnostic: the
// engine does the math, this file does epochs, shuffling, schedules, validation, progress,
// cancellation and the divergence guard).
#include <chrono>
#include <cmath>
#include <numeric>
#include <string>

#include "calmoe/calibration.h"
#include "calmoe/device.h"
#include "calmoe/error.h"
#include "core/float_mode.h"
#include "core/format.h"
#include "core/moe_engine.h"
#include "host/thread_pool.h"

namespace calmoe {
namespace {

// The first non-finite value of v[0, n), or -1 (chunks over the thread pool).
int64_t first_non_finite(const float* v, int64_t n) {
  const int64_t chunk = int64_t(1) << 18, chunks = (n + chunk - 1) / chunk;
  std::vector<int64_t> first(std::size_t(chunks), -1);
  cpu::parallel_for(chunks, [&](int64_t k, int) {
    for (int64_t i = k * chunk, e = std::min(n, (k + 1) * chunk); i < e; ++i) {
      if (!std::isfinite(v[i])) { first[k] = i; return; }
    }
  });
  for (int64_t f : first)
    if (f >= 0) return f;
  return -1;
}

// A model's probabilities as the metrics accept them: the mixture sum_k r_k p_k of probabilities
// that each are <= 1 can round to 1 + an ulp in float32 (a calmoe experiment run on Fashion-MNIST
// stopped on one), which calibration's input check rightly refuses. Such values become 1; the
// first non-finite value's index is returned (-1: none).
int64_t settle_probabilities(float* p, int64_t n) {
  const int64_t chunk = int64_t(1) << 18, chunks = (n + chunk - 1) / chunk;
  std::vector<int64_t> first(std::size_t(chunks), -1);
  cpu::parallel_for(chunks, [&](int64_t k, int) {  // one pass: clamp, and note the first non-finite
    for (int64_t i = k * chunk, e = std::min(n, (k + 1) * chunk); i < e; ++i) {
      if (!std::isfinite(p[i]) && first[k] < 0) first[k] = i;
      p[i] = p[i] > 1.0f ? 1.0f : p[i];
    }
  });
  for (int64_t f : first)
    if (f >= 0) return f;
  return -1;
}

// Non-finite features poison every later step (fit) or give NaN probabilities (predict): both
// reject them up front, naming the first. `name` prefixes the message ("x", "train x").
void check_features(const MoEConfig& c, const float* x, int64_t rows, const std::string& name) {
  const int64_t f = first_non_finite(x, rows * c.input_dim);
  if (f >= 0) throw_range(name + ": row " + std::to_string(f / c.input_dim) + ", feature " + std::to_string(f % c.input_dim) + " is not finite");
}

void check_dataset(const MoEConfig& c, const Dataset& d, const char* name) {
  const std::string nm(name);
  if (d.rows < 1) throw_range(nm + ": expected at least one row");
  if (d.rows > limits::kMaxFitRows) throw_range(nm + ": " + std::to_string(d.rows) + " rows is more than the supported " + std::to_string(limits::kMaxFitRows));
  if (d.x == nullptr || d.y == nullptr) throw_type(nm + ": missing data");
  for (int64_t i = 0; i < d.rows; ++i) {
    if (d.y[i] < 0 || d.y[i] >= c.classes)
      throw_range(nm + " labels[" + std::to_string(i) + "] = " + std::to_string(d.y[i]) + " is outside [0, " + std::to_string(c.classes) + ")");
  }
  check_features(c, d.x, d.rows, nm + " x");
}

std::vector<EpochLog> last_epochs(std::vector<EpochLog> h) {
  if (h.size() > std::size_t(limits::kMaxHistory)) h.erase(h.begin(), h.end() - std::ptrdiff_t(limits::kMaxHistory));
  return h;
}

void check_fit(const FitConfig& f) {
  if (f.epochs < 1 || f.epochs > limits::kMaxEpochs) throw_range("epochs: expected an integer in [1, " + std::to_string(limits::kMaxEpochs) + "], got " + std::to_string(f.epochs));
  if (f.batch_size < 1 || f.batch_size > limits::kMaxBatchSize) throw_range("batchSize: expected an integer in [1, " + std::to_string(limits::kMaxBatchSize) + "], got " + std::to_string(f.batch_size));
  const OptimizerConfig& o = f.optimizer;
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw_range("optimizer.lr: expected a finite number > 0");
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) throw_range("optimizer.weightDecay: expected a finite number >= 0");
  const std::string beta_range = "expected a number in [0, " + fmt(limits::kMaxMomentum) + "]";
  if (!(o.momentum >= 0 && o.momentum <= limits::kMaxMomentum)) throw_range("optimizer.momentum: " + beta_range);
  if (!(o.beta1 >= 0 && o.beta1 <= limits::kMaxMomentum)) throw_range("optimizer.betas[0]: " + beta_range);
  if (!(o.beta2 >= 0 && o.beta2 <= limits::kMaxMomentum)) throw_range("optimizer.betas[1]: " + beta_range);
  if (!(o.eps > 0)) throw_range("optimizer.eps: expected a number > 0");
  if (!(o.clip_norm >= 0) || !std::isfinite(o.clip_norm)) throw_range("clipNorm: expected a finite number >= 0");
  const ObjectiveConfig& ob = f.objective;
  if (!(std::fabs(ob.eta) <= limits::kMaxEta)) throw_range("objective.eta: expected a number in [" + fmt(-limits::kMaxEta) + ", " + fmt(limits::kMaxEta) + "], got " + fmt(ob.eta));
  if (ob.warmup_epochs < 0 || ob.warmup_epochs > limits::kMaxEpochs) throw_range("objective.warmupEpochs: expected an integer in [0, " + std::to_string(limits::kMaxEpochs) + "]");
  if (!(ob.balance_alpha >= 0) || !std::isfinite(ob.balance_alpha)) throw_range("balanceLoss: expected a finite number >= 0");
  if (!(ob.tau_regret >= 0) || !(ob.tau_disagreement >= 0)) throw_range("objective thresholds: expected numbers >= 0");
  if (f.schedule.warmup_steps < 0 || f.schedule.warmup_steps > limits::kMaxSteps) throw_range("schedule.warmupSteps: expected an integer in [0, " + std::to_string(limits::kMaxSteps) + "]");
  if (!(f.schedule.min_lr_ratio >= 0 && f.schedule.min_lr_ratio <= 1)) throw_range("schedule.minLrRatio: expected a number in [0, 1]");
  if (f.checkpoint_every < 0 || f.checkpoint_every > limits::kMaxEpochs) throw_range("checkpoint.everyEpochs: expected an integer in [1, " + std::to_string(limits::kMaxEpochs) + "]");
  if (f.start_epoch < 0) throw_range("resumeFrom: expected a checkpoint at an epoch >= 0");
}

struct Validation {
  double loss, accuracy, ece;
};

Validation validate(moe::Engine& e, const MoEConfig& c, const Dataset& v) {
  std::vector<float> probs(static_cast<std::size_t>(v.rows * c.classes));
  PredictOutputs out;
  out.probs = probs.data();
  e.predict(v.x, v.rows, out);
  settle_probabilities(probs.data(), v.rows * c.classes);
  CalibConfig cc;
  auto st = calib_state_new(cc);
  ScoresArg s;
  s.data = probs.data();
  s.rows = v.rows;
  s.cols = c.classes;
  s.sum_tolerance = 1e-3;
  calib_update_rows(Device::Cpu, s, v.y, st.data(), st.size());
  const CalibSummary sum = calib_finalize(st.data(), st.size());
  return {sum.nll, sum.accuracy, sum.ece};
}

// A resumed fit: the checkpoint's epoch and optimiser state must fit this run, then the engine
// takes the state (the parameters are the caller's, already the checkpoint's).
void resume_fit(moe::Engine& e, const MoEConfig& c, const FitConfig& f, int64_t batches) {
  const int64_t start = f.start_epoch, P = moe_layout(c).total;
  const OptimizerState& s = f.resume;
  if (start >= f.epochs)
    throw_range("epochs: the checkpoint (resumeFrom) holds " + std::to_string(start) + " finished epochs; expected epochs > " + std::to_string(start) +
                " (the total of the run), got " + std::to_string(f.epochs));
  if (s.steps != start * batches)
    throw_range("resumeFrom: the checkpoint's optimiser took " + std::to_string(s.steps) + " steps in " + std::to_string(start) + " epochs; this data and batchSize give " +
                std::to_string(start * batches) + " (the rows or batchSize differ from the checkpointed run's)");
  if (std::int64_t(s.m.size()) != (s.steps > 0 ? P : 0) ||
      std::int64_t(s.v.size()) != (s.steps > 0 && f.optimizer.kind == OptimizerKind::AdamW ? P : 0))
    throw_range("resumeFrom: the checkpoint's optimiser state does not fit this model and optimizer.type (expected " + std::to_string(P) + " values per moment)");
  e.set_optimizer_state(s);
}

}  // namespace

namespace moe {
std::unique_ptr<Engine> make_engine(Device dev, const MoEConfig& c, float* params, const float* temps, int64_t max_batch) {
  if (dev == Device::Cuda) {
#if CALMOE_WITH_CUDA
    return cuda::make_moe_engine(c, params, temps, max_batch);
#else
    throw Error(ErrorKind::Unavailable, "device 'cuda': this build of calmoe has no CUDA backend; use device 'cpu' (or 'auto')",
                "CALMOE_CUDA_UNAVAILABLE");
#endif
  }
  return cpu::make_moe_engine(c, params, temps, max_batch);
}
}  // namespace moe

Device moe_resolve_device(DeviceRequest request) {
  // like every other entry point: 'auto' is CUDA when a GPU is usable (the CUDA MoE engine's
  // parity tests passed on an H200, bench/results/gpu-h200-2026-11-28), a missing GPU for 'cuda'
  // is reported (Unavailable)
  return resolve_device(request);
}

void moe_predict(Device dev, const MoEConfig& c, const float* params, const float* temps, const float* x, int64_t rows,
                 const PredictOutputs& out) {
  moe_check_config(c);
  if (rows < 1) throw_range("x: expected at least one row");
  if (out.probs == nullptr) throw_type("probs: missing output");
  if (out.expert_logits != nullptr && dev != Device::Cpu)
    throw_range("expertLogits: the CUDA engine does not return expert logits yet; predict them with device 'cpu'");
  check_features(c, x, rows, "x");
  // the engine only reads the parameters when predicting
  auto e = moe::make_engine(dev, c, const_cast<float*>(params), temps, 1);
  e->predict(x, rows, out);
  // Finite features can still overflow (huge values, huge parameters, a tiny router temperature):
  // a NaN probability is an error naming the row, never a silent result.
  const int64_t bad = settle_probabilities(out.probs, rows * c.classes);
  if (bad >= 0)
    throw_range("x: row " + std::to_string(bad / c.classes) +
                " gives non-finite probabilities (its features, the parameters or the router temperature overflow float32)");
}

std::vector<EpochLog> moe_fit(Device dev, const MoEConfig& c, float* params, const float* temps, const Dataset& train,
                              const Dataset* val, const FitConfig& fit, const std::atomic<bool>* cancel,
                              const std::function<void(const Progress&)>& report, bool* cancelled) {
  // subnormal optimiser state is slow on x86 (core/float_mode.h); the pool's workers follow this thread
  ScopedDenormalMode fp_mode(flush_denormals() ? flush_denormal_bits() : denormal_mode());
  moe_check_config(c);
  check_fit(fit);
  if (dev != Device::Cpu && fit.objective.balance_alpha > 0 && fit.objective.balance_form != BalanceForm::Switch)
    throw_range("balanceForm: 'squared-mean' is not on the CUDA engine yet; train with device 'cpu' or balanceForm 'switch'");
  if (fit.objective.hard_tilt == HardTilt::Top1) {
    if (c.routing != Routing::Hard) throw_range("objective.tiltLoss: 'top1' applies to routing 'hard' only");
    if (fit.objective.kind != ObjectiveKind::Robust) throw_range("objective.tiltLoss: 'top1' applies to objective 'robust' only");
    if (fit.objective.gradient != TiltGradient::Term) throw_range("objective.tiltLoss: 'top1' needs gradient 'term' (the weights held constant)");
    if (dev != Device::Cpu) throw_range("objective.tiltLoss: 'top1' is not on the CUDA engine yet; train with device 'cpu'");
  }
  check_dataset(c, train, "train");
  if (val) check_dataset(c, *val, "validation");
  if (cancelled) *cancelled = false;
  const int64_t N = train.rows, B = std::min(fit.batch_size, N);
  const int64_t batches = (N + B - 1) / B, total = batches * fit.epochs;
  auto engine = moe::make_engine(dev, c, params, temps, B);
  engine->attach_dataset(train.x, train.y, N);
  std::vector<int32_t> order(static_cast<std::size_t>(N));
  std::iota(order.begin(), order.end(), 0);
  uint64_t rng = fit.seed ^ 0x6a09e667f3bcc909ull;
  auto next = [&rng]() {  // splitmix64
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  auto shuffle = [&]() {
    if (fit.shuffle) {
      for (int64_t i = N - 1; i > 0; --i) std::swap(order[i], order[next() % uint64_t(i + 1)]);
    }
  };
  const int64_t start = fit.start_epoch;
  if (start > 0) resume_fit(*engine, c, fit, batches);
  // a resumed run replays the finished epochs' shuffles: the same order and RNG state as then
  for (int64_t epoch = 0; epoch < start; ++epoch) shuffle();
  if (start > 0 && rng != fit.resume_rng)
    throw_range("resumeFrom: the data shuffling does not reach the checkpoint's state (the seed, shuffle or the number of rows differ from the checkpointed run's)");
  std::vector<EpochLog> history;
  int64_t step = start * batches;
  for (int64_t epoch = start; epoch < fit.epochs; ++epoch) {
    shuffle();
    const bool robust = epoch >= fit.objective.warmup_epochs;
    const auto t0 = std::chrono::steady_clock::now();
    EpochLog log;
    log.epoch = epoch;
    log.robust_active = robust && fit.objective.kind != ObjectiveKind::Erm;
    double loss_sum = 0, obj_sum = 0, acc_sum = 0;
    int64_t seen = 0;
    for (int64_t bi = 0; bi < batches; ++bi) {
      if (cancel && cancel->load()) {
        if (cancelled) *cancelled = true;
        engine->sync_to_host(params);
        return last_epochs(std::move(history));
      }
      // this batch and, within the epoch, the next (an engine may stage it while this step runs)
      auto batch_at = [&](int64_t i) {
        moe::Batch b;
        b.x = train.x;
        b.y = train.y;
        b.rows = order.data() + i * B;
        b.size = std::min(B, N - i * B);
        return b;
      };
      const moe::Batch b = batch_at(bi), following = bi + 1 < batches ? batch_at(bi + 1) : moe::Batch{};
      const std::string where = "step " + std::to_string(step + 1) + " (epoch " + std::to_string(epoch + 1) + ", batch " + std::to_string(bi + 1) + ")";
      StepStats st;
      try {
        st = engine->forward_backward(b, fit.objective, robust, bi + 1 < batches ? &following : nullptr);
      } catch (const Error& e) {
        engine->sync_to_host(params);
        throw Error(e.kind(), std::string("training diverged at ") + where + ": " + e.what() +
                                   "; the parameters keep their values from the previous step", "CALMOE_DIVERGED");
      }
      const double lr = schedule_lr(fit.schedule, fit.optimizer.lr, step, total);
      const double norm = engine->update(fit.optimizer, lr);
      if (!std::isfinite(norm) || !std::isfinite(st.objective)) {
        engine->sync_to_host(params);
        throw Error(ErrorKind::Range, "training diverged at " + where + ": the " +
                                          (std::isfinite(st.objective) ? "gradient or the updated parameters are" : "loss is") +
                                          " not finite; the parameters keep their values from the previous step (lower the learning rate or set clipNorm)",
                    "CALMOE_DIVERGED");
      }
      ++step;
      st.grad_norm = norm;
      st.lr = lr;
      loss_sum += st.mean_loss * double(b.size);
      obj_sum += st.objective * double(b.size);
      acc_sum += st.accuracy * double(b.size);
      seen += b.size;
      log.lr = lr;
      if (report && fit.progress_every > 0 && (bi + 1) % fit.progress_every == 0) {
        Progress p;
        p.epoch = epoch;
        p.batch = bi;
        p.batches = batches;
        p.step = step;
        p.step_stats = st;
        report(p);
      }
    }
    log.steps = batches;
    log.loss = loss_sum / double(seen);
    log.objective = obj_sum / double(seen);
    log.accuracy = acc_sum / double(seen);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log.seconds = secs;
    log.examples_per_s = secs > 0 ? double(seen) / secs : 0;
    if (val) {
      const Validation v = validate(*engine, c, *val);
      log.has_validation = true;
      log.val_loss = v.loss;
      log.val_accuracy = v.accuracy;
      log.val_ece = v.ece;
    }
    history.push_back(log);
    if (history.size() >= 2 * std::size_t(limits::kMaxHistory)) history.erase(history.begin(), history.end() - std::ptrdiff_t(limits::kMaxHistory));  // amortised O(1)
    if (report) {
      Progress p;
      p.epoch_end = true;
      p.epoch = epoch;
      p.batches = batches;
      p.step = step;
      p.epoch_log = log;
      p.checkpoint = fit.checkpoint_every > 0 && (epoch + 1) % fit.checkpoint_every == 0;
      if (fit.snapshot_epochs || p.checkpoint) {
        engine->sync_to_host(params);  // the CPU engine trains in place; a device engine copies back
        p.parameters.assign(params, params + moe_layout(c).total);
      }
      if (p.checkpoint) {
        p.optimizer = engine->optimizer_state();
        p.rng = rng;
      }
      report(p);
    }
  }
  engine->sync_to_host(params);
  return last_epochs(std::move(history));
}

}  // namespace calmoe
